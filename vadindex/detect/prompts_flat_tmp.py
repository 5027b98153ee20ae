"""Anomaly and normal prompts: parsing from the command line or a file, and built-in defaults."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vadindex.errors import InputError

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
