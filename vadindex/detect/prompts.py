"""Prompts: inline lists and prompt sets, classes of prompts expanded by templates into ensembled
class embeddings (YAML or inline).

A prompt set is a list of classes, each anomalous or normal and each with one or more prompts, and a
list of templates such as ``"a CCTV frame of {}"``. As in CLIP's zero-shot classification, every
template is filled with every prompt of a class, each text is embedded and L2-normalised, and the
class embedding is the re-normalised mean::

    e_c = normalise(mean_{t in T_c} e_t)

Since ``e_c`` is a fixed linear combination of the text embeddings, the similarity of a segment
``x`` to a class follows from its similarities to the texts, ``x . e_c = mean_t (x . e_t) / ||mean_t
e_t||``, which is how :func:`class_similarities` computes it from cached text similarities.

YAML layout (``vadindex/detect/prompt_sets/*.yaml`` are the built-in sets)::

    name: my-set
    templates: ["a CCTV frame of {}", "a surveillance camera video of {}"]   # optional, default "{}"
    anomaly:                       # class -> prompts (a list or one string)
      Fighting: ["people fighting", "a brawl"]
      Fire: "a building on fire"
      Loitering:                   # or prompts and/or examples
        prompts: ["a person waiting by a door for a long time"]
        examples: ["loiter.jpg", "cam3/2024-05-01.mp4@125.5", "9f3c0a1b2c3d4e5f6a7b:42"]
    normal:                        # the same, or a plain list (each prompt its own class)
      Street: ["people walking calmly", "an empty street"]

**Examples.** A class may list ``examples`` besides (or instead of) prompts: image files (relative
to the YAML file), or segments of the index as ``VIDEO@SECONDS`` or ``VIDEO_ID:SEGMENT``. Image
examples are embedded by the index's image encoder (once: cached in the index), segment examples
are the stored segment vectors. With ``t_c`` the class's text embedding above and
``x_c = normalise(mean_e x_e)`` the mean of its examples' unit embeddings, the class embedding is::

    e_c = normalise((1 - beta) t_c + beta x_c)      (t_c alone without examples, x_c alone without texts)

with ``beta`` the example weight (``--example-weight``, 0.5): again a fixed linear combination, so
its similarities follow from those to ``t_c`` and ``x_c`` (:func:`vadindex.detect.similarity.mix_examples`).

Inline prompts (``"a fire; people fighting"``) and text files keep their old meaning: every prompt is
its own class and the only template is ``"{}"``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from vadindex.errors import InputError

#: Folder of the built-in prompt sets, one ``<name>.yaml`` each.
BUILTIN_DIR = Path(__file__).parent / "prompt_sets"
PLAIN_TEMPLATE = "{}"
_YAML_KEYS = {"name", "description", "templates", "anomaly", "normal"}
_CLASS_KEYS = {"prompts", "examples"}
#: Names of the classes ``--anomaly-examples`` / ``--normal-examples`` add.
EXAMPLE_CLASS = {True: "examples (anomaly)", False: "examples (normal)"}


#: Normal-activity prompts used when ``--normal-prompts`` is not given: everyday scenes that
#: surveillance cameras see, so anomaly prompts must beat ordinary activity, not nothing.
DEFAULT_NORMAL_PROMPTS = (
    "a normal scene with nothing unusual happening",
    "people walking calmly",
    "an empty street",
    "cars driving normally on a road",
    "a quiet indoor room",
    "people standing and talking",
    "a parking lot with parked cars",
    "a surveillance camera view of an ordinary day",
)


@dataclass(frozen=True)
class PromptSet:
    """Anomaly prompts and normal prompts, in order."""

    anomaly: tuple[str, ...]
    normal: tuple[str, ...]

    @property
    def texts(self) -> list[str]:
        """All prompts, anomaly first."""
        return [*self.anomaly, *self.normal]

    @property
    def is_anomaly(self) -> list[bool]:
        """One flag per prompt in :attr:`texts`."""
        return [True] * len(self.anomaly) + [False] * len(self.normal)


def parse_prompts(value: str | list[str] | tuple[str, ...], what: str = "--prompts") -> tuple[str, ...]:
    """Prompts from ``;``-separated text, a list, or a text file with one prompt per line.

    Lines starting with ``#`` and blank entries are ignored; duplicates are dropped, order kept.
    """
    if isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
    else:
        text = str(value)
        path = Path(text).expanduser()
        if "\n" not in text and len(text) < 4096 and _is_file(path):
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(f"{path}: cannot read prompts ({exc})") from None
            items = [ln for ln in lines if not ln.lstrip().startswith("#")]
            what = str(path)
        else:
            items = text.split(";")
    prompts = list(dict.fromkeys(p.strip() for p in items if p.strip()))
    if not prompts:
        raise InputError(f"{what}: no prompts given (separate several with ';')")
    return tuple(prompts)


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False for text that cannot be a path (a name part over 255 bytes, say)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def build_prompt_set(
    prompts: str | list[str] | tuple[str, ...],
    normal_prompts: str | list[str] | tuple[str, ...] | None = None,
) -> PromptSet:
    """Combine anomaly prompts with normal ones (the built-in set when none are given)."""
    anomaly = parse_prompts(prompts)
    normal = parse_prompts(normal_prompts, "--normal-prompts") if normal_prompts else DEFAULT_NORMAL_PROMPTS
    overlap = set(anomaly) & set(normal)
    if overlap:
        raise InputError(f"prompts are both anomaly and normal: {', '.join(sorted(overlap))}")
    return PromptSet(anomaly, tuple(normal))


@dataclass(frozen=True)
class PromptClass:
    """One class: its name, prompts, and whether it is an anomaly."""

    name: str
    prompts: tuple[str, ...]
    anomaly: bool
    #: Image files or segments (``VIDEO@SECONDS``, ``VIDEO_ID:SEGMENT``) that show the class.
    examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClassPromptSet:
    """Anomaly and normal classes and the templates that expand their prompts into texts."""

    name: str
    classes: tuple[PromptClass, ...]
    templates: tuple[str, ...] = (PLAIN_TEMPLATE,)
    source: str = "inline"

    @property
    def anomaly(self) -> tuple[str, ...]:
        """Anomaly class names, in order."""
        return tuple(c.name for c in self.classes if c.anomaly)

    @property
    def normal(self) -> tuple[str, ...]:
        """Normal class names, in order."""
        return tuple(c.name for c in self.classes if not c.anomaly)

    @property
    def class_names(self) -> list[str]:
        """All class names in order."""
        return [c.name for c in self.classes]

    @property
    def is_anomaly(self) -> list[bool]:
        """One flag per class."""
        return [c.anomaly for c in self.classes]

    def class_texts(self, cls: PromptClass) -> list[str]:
        """The texts of one class: every template filled with every prompt."""
        return [t.replace("{}", p) for t in self.templates for p in cls.prompts]

    @property
    def texts(self) -> list[str]:
        """Every text to embed, without duplicates, in class order."""
        return list(dict.fromkeys(t for c in self.classes for t in self.class_texts(c)))

    def text_weights(self) -> np.ndarray:
        """``(n_classes, n_texts)`` matrix ``W`` with ``W[c, t] = 1 / |T_c|`` for the texts of class ``c``."""
        index = {t: j for j, t in enumerate(self.texts)}
        weights = np.zeros((len(self.classes), len(index)), dtype=np.float64)
        for i, cls in enumerate(self.classes):
            cols = [index[t] for t in self.class_texts(cls)]
            if cols:  # a class of examples only has no texts
                weights[i, cols] += 1.0 / len(cols)
        return weights

    @property
    def has_examples(self) -> bool:
        """True when some class has examples."""
        return any(c.examples for c in self.classes)

    def with_examples(self, examples: list[tuple[str, bool, str | None]]) -> ClassPromptSet:
        """The set with more examples: each ``(example, anomaly, class name)`` joins the class of
        that name (of the same kind), or a new class of examples only; no name: the class
        :data:`EXAMPLE_CLASS` of its kind (what ``--anomaly-examples`` and ``--normal-examples`` add).

        Raises:
            InputError: a name that is a class of the other kind.
        """
        classes = list(self.classes)
        for example, anomaly, name in examples:
            name = name or EXAMPLE_CLASS[anomaly]
            at = next((i for i, c in enumerate(classes) if c.name == name), None)
            if at is None:
                classes.append(PromptClass(name, (), anomaly, (example,)))
                continue
            cls = classes[at]
            if cls.anomaly != anomaly:
                kind = "an anomaly" if cls.anomaly else "a normal"
                raise InputError(
                    f"example {example}: {name!r} is {kind} class, not {'anomaly' if anomaly else 'normal'}"
                )
            if example not in cls.examples:
                classes[at] = PromptClass(cls.name, cls.prompts, cls.anomaly, (*cls.examples, example))
        # Anomaly classes first, as everywhere.
        ordered = tuple(c for c in classes if c.anomaly) + tuple(c for c in classes if not c.anomaly)
        return ClassPromptSet(self.name, ordered, self.templates, self.source)

    def with_normal(self, normal_prompts: str | list[str] | tuple[str, ...]) -> ClassPromptSet:
        """The same anomaly classes with other normal prompts, each its own class."""
        normal = parse_prompts(normal_prompts, "--normal-prompts")
        anomaly = [c for c in self.classes if c.anomaly]
        clash = {c.name for c in anomaly} & set(normal)
        # A normal prompt whose texts are an anomaly class's texts would count for both classes.
        anomaly_texts = {t for c in anomaly for t in self.class_texts(c)}
        clash |= {p for p in normal if anomaly_texts & set(self.class_texts(PromptClass(p, (p,), False)))}
        if clash:
            raise InputError(f"prompts are both anomaly and normal: {', '.join(sorted(clash))}")
        classes = (*anomaly, *(PromptClass(p, (p,), False) for p in normal))
        return ClassPromptSet(self.name, classes, self.templates, self.source)

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-ready: name, templates, and class -> prompts (and examples) for anomaly and
        normal classes."""

        def body(c: PromptClass) -> Any:
            if not c.examples:
                return list(c.prompts)
            return (
                {"prompts": list(c.prompts), "examples": list(c.examples)}
                if c.prompts
                else {"examples": list(c.examples)}
            )

        return {
            "name": self.name,
            "templates": list(self.templates),
            "anomaly": {c.name: body(c) for c in self.classes if c.anomaly},
            "normal": {c.name: body(c) for c in self.classes if not c.anomaly},
        }


def from_prompt_set(prompt_set: PromptSet) -> ClassPromptSet:
    """Every prompt of a flat :class:`PromptSet` as its own class, with the plain template."""
    classes = tuple(
        PromptClass(p, (p,), a) for p, a in zip(prompt_set.texts, prompt_set.is_anomaly, strict=True)
    )
    return ClassPromptSet("inline", classes, (PLAIN_TEMPLATE,), "inline")


def builtin_prompt_sets() -> list[str]:
    """Names of the built-in prompt sets."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def _prompt_list(value: Any, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise InputError(f"{where}: expected a prompt or a non-empty list of prompts")
    out = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise InputError(f"{where}: every prompt must be non-empty text, got {item!r}")
        out.append(" ".join(item.split()))
    return tuple(dict.fromkeys(out))


def _classes(value: Any, anomaly: bool, where: str, base: Path | None) -> list[PromptClass]:
    what = "anomaly" if anomaly else "normal"
    if isinstance(value, list) and not anomaly:
        return [PromptClass(p, (p,), False) for p in _prompt_list(value, f"{where}: {what}")]
    if not isinstance(value, dict) or not value:
        raise InputError(f"{where}: '{what}' must map class names to prompts")
    out = []
    for name, body in value.items():
        at = f"{where}: {what} class {name!r}"
        if not isinstance(body, dict):
            out.append(PromptClass(str(name).strip(), _prompt_list(body, at), anomaly))
            continue
        unknown = set(map(str, body)) - _CLASS_KEYS
        if unknown:
            raise InputError(f"{at}: unknown keys {', '.join(sorted(unknown))}; allowed: prompts, examples")
        prompts = _prompt_list(body["prompts"], at) if body.get("prompts") else ()
        examples = parse_examples(body["examples"], f"{at}: examples", base) if body.get("examples") else ()
        if not prompts and not examples:
            raise InputError(f"{at}: needs prompts or examples")
        out.append(PromptClass(str(name).strip(), prompts, anomaly, examples))
    return out


def parse_examples(value: Any, where: str, base: Path | None = None) -> tuple[str, ...]:
    """Examples from a list or ``;``-separated text: image files (relative ones taken from ``base``
    when they exist there) or segments (``VIDEO@SECONDS``, ``VIDEO_ID:SEGMENT``), kept as given
    otherwise; duplicates dropped, order kept."""
    items = value.split(";") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise InputError(f"{where}: expected a list of image files or segments")
    out = []
    for item in items:
        if not isinstance(item, (str, int, float)) or not str(item).strip():
            if isinstance(item, str):
                continue  # an empty entry between two ';'
            raise InputError(f"{where}: every example must be an image file or a segment, got {item!r}")
        text = str(item).strip()
        path = Path(text).expanduser()
        if base is not None and not path.is_absolute() and _is_file(base / path):
            text = str(base / path)
        out.append(text)
    if not out:
        raise InputError(f"{where}: no examples given")
    return tuple(dict.fromkeys(out))


def parse_prompt_yaml(
    data: Any, where: str, default_name: str = "custom", base: Path | None = None
) -> ClassPromptSet:
    """Validate a loaded YAML document and turn it into a :class:`ClassPromptSet`.

    Args:
        base: the folder relative example image paths are taken from (the YAML file's).

    Raises:
        InputError: with a one-line message starting with ``where``.
    """
    if not isinstance(data, dict):
        raise InputError(f"{where}: a prompt set must be a mapping with 'anomaly' (and 'normal') classes")
    unknown = set(data) - _YAML_KEYS
    if unknown:
        raise InputError(
            f"{where}: unknown keys {', '.join(sorted(map(str, unknown)))}; allowed: {', '.join(sorted(_YAML_KEYS))}"
        )
    if "anomaly" not in data:
        raise InputError(f"{where}: no 'anomaly' classes")
    templates_raw = data.get("templates", [PLAIN_TEMPLATE])
    templates = _prompt_list(templates_raw, f"{where}: templates")
    for t in templates:
        if t.count("{}") != 1:
            raise InputError(f"{where}: template {t!r} must contain '{{}}' exactly once")
    anomaly = _classes(data["anomaly"], True, where, base)
    normal = (
        _classes(data["normal"], False, where, base)
        if data.get("normal")
        else [PromptClass(p, (p,), False) for p in DEFAULT_NORMAL_PROMPTS]
    )
    names = [c.name for c in (*anomaly, *normal)]
    if any(not n for n in names):
        raise InputError(f"{where}: empty class name")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"{where}: class names used twice: {', '.join(dupes)}")
    spec = ClassPromptSet(str(data.get("name") or default_name), (*anomaly, *normal), templates, where)
    owner: dict[str, str] = {}
    for cls in spec.classes:
        for text in dict.fromkeys(spec.class_texts(cls)):
            if text in owner:
                raise InputError(f"{where}: text {text!r} is in both {owner[text]!r} and {cls.name!r}")
            owner[text] = cls.name
    return spec


def safe_load_yaml(text: str) -> Any:
    """``yaml.safe_load``, with libyaml's C implementation of the same safe loader when available."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader


def load_prompt_yaml(path: str | os.PathLike[str]) -> ClassPromptSet:
    """Read a prompt-set YAML file (``yaml.safe_load``) and validate it."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{file}: no such prompt set file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{file}: cannot read prompt set ({exc})") from None
    try:
        data = safe_load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"{file}: not valid YAML{at} ({problem})") from None
    return parse_prompt_yaml(data, str(file), file.stem, file.parent)


def load_prompt_set(
    prompts: str | list[str] | tuple[str, ...] | ClassPromptSet | PromptSet,
    normal_prompts: str | list[str] | tuple[str, ...] | None = None,
) -> ClassPromptSet:
    """Resolve ``--prompts`` / ``--normal-prompts`` into classes.

    Args:
        prompts: a built-in set name (``ucf-crime``, ``xd-violence``, ``general``), a ``.yaml`` file,
            a text file with one prompt per line, ``;``-separated text, a list, or a set object.
        normal_prompts: normal prompts (same forms as for :func:`parse_prompts`);
            they replace a set's normal classes. ``None`` keeps the set's (or the built-in default).

    Returns:
        A :class:`ClassPromptSet`.
    """
    if isinstance(prompts, PromptSet):
        spec = from_prompt_set(prompts)
        return spec.with_normal(normal_prompts) if normal_prompts else spec
    if isinstance(prompts, ClassPromptSet):
        return prompts.with_normal(normal_prompts) if normal_prompts else prompts
    if isinstance(prompts, str):
        text = prompts.strip()
        if text in builtin_prompt_sets():
            spec = load_prompt_yaml(BUILTIN_DIR / f"{text}.yaml")
            spec = ClassPromptSet(spec.name, spec.classes, spec.templates, text)
            return spec.with_normal(normal_prompts) if normal_prompts else spec
        if "\n" not in text and ";" not in text and Path(text).suffix.lower() in (".yaml", ".yml"):
            spec = load_prompt_yaml(text)
            return spec.with_normal(normal_prompts) if normal_prompts else spec
    return from_prompt_set(build_prompt_set(prompts, normal_prompts))


def class_similarities(text_sims: np.ndarray, text_vectors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Similarities to ensembled class embeddings from similarities to their texts.

    ``S_class[:, c] = (S_text @ W.T)[:, c] / ||(W @ E)[c]||`` equals ``X @ normalise(W @ E).T`` for
    the vectors ``X`` behind ``S_text = X @ E.T``, without touching ``X``.

    Args:
        text_sims: ``(n, n_texts)`` similarities to the unit text embeddings.
        text_vectors: ``(n_texts, dim)`` unit text embeddings ``E``.
        weights: ``(n_classes, n_texts)`` averaging matrix ``W`` (:meth:`ClassPromptSet.text_weights`).

    Returns:
        ``(n, n_classes)`` float32 similarities, the transpose of a class-major array.
    """
    w = np.asarray(weights, dtype=np.float64)
    norms = np.maximum(np.linalg.norm(w @ np.asarray(text_vectors, dtype=np.float64), axis=1), 1e-12)
    scaled = (w / norms[:, None]).astype(np.float32)  # (n_classes, n_texts)
    by_text = np.asarray(text_sims, dtype=np.float32).T  # (n_texts, n): free for the cache's layout
    # Worked class by class, each class's similarities contiguous (the layout scoring wants): a
    # one-text class (inline prompts, a set without templates) is that text's row, scaled; an
    # ensemble is a weighted sum of its texts' rows.
    out = np.empty((scaled.shape[0], by_text.shape[1]), dtype=np.float32)
    for c, row in enumerate(scaled):
        used = np.flatnonzero(row)
        if len(used) == 0:
            out[c] = 0.0
        elif len(used) == 1:
            np.multiply(by_text[used[0]], row[used[0]], out=out[c])
        else:
            contiguous = used[-1] - used[0] + 1 == len(used)  # a class's texts are usually adjacent
            rows = by_text[used[0] : used[-1] + 1] if contiguous else by_text[used]
            np.matmul(row[used], rows, out=out[c])
    return out.T
