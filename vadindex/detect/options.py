"""Every option of a detection, declared once in :class:`DetectOptions` and validated there.

``vadindex detect``, ``--config`` files (as ``vadindex tune`` writes them), :func:`vadindex.detect.detect`,
``VideoIndex.detect`` and the tuner all read the rule parameters and the video aggregation from
it. The module imports no numpy, so the CLI can declare its options from it cheaply.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vadindex import config as C
from vadindex.errors import InputError
from vadindex.options import Options, convert, field_type, option

#: Keys of a ``--config`` file besides the options: what to compare with, and the ground truth.
CONFIG_INPUTS = ("prompts", "normal_prompts", "annotations", "anomaly_examples", "normal_examples")
#: Sections of a config file that ``detect`` ignores (``vadindex tune`` writes its report there).
CONFIG_IGNORED = ("tuning",)


@dataclass(frozen=True)
class DetectOptions(Options):
    """The segment rule, its pipeline (calibration, kNN, smoothing) and the video aggregation.

    The formulas are in :mod:`vadindex.detect.scoring` and :mod:`vadindex.detect.aggregate`.
    Construction validates every value (an :class:`InputError` names the option).
    """

    rule: str = option(
        C.DEFAULT_RULE,
        "Segment rule: threshold (score >= --segment-threshold), topk (anomaly classes are a majority of "
        "the --top-k nearest), balanced (threshold, and the best anomaly class beats the best normal "
        "one), frame-vote (--frame-votes frames pass the threshold).",
        choices=C.RULES,
    )
    segment_threshold: float = option(C.DEFAULT_SEGMENT_THRESHOLD, "Threshold on the segment score.")
    top_k: int = option(C.DEFAULT_PROMPT_TOP_K, "Classes that vote in the topk rule.")
    calibrate: str = option(
        C.DEFAULT_CALIBRATE,
        "Calibrate each class (and the novelty) against its values over the index, or each camera or "
        "video (--calibrate-by).",
        choices=C.CALIBRATIONS,
    )
    smooth: int = option(
        C.DEFAULT_SMOOTH, "Average each score with this many neighbouring segments each side (same video)."
    )
    knn_k: int = option(
        C.DEFAULT_KNN_K, "Blend each score with its K nearest segments in the index (0: off)."
    )
    knn_alpha: float = option(C.DEFAULT_KNN_ALPHA, "Weight of the neighbours' mean score.")
    frame_votes: int = option(
        C.DEFAULT_FRAME_VOTES, "frame-vote rule: frames of a segment that must pass the threshold."
    )
    video_agg: str = option(
        C.DEFAULT_VIDEO_AGG,
        "Video score: ratio of anomalous segments, max segment score, or mean of the top segment scores.",
        choices=C.VIDEO_AGGS,
    )
    video_ratio: float = option(
        C.DEFAULT_VIDEO_RATIO, "ratio: a video is anomalous when at least this fraction of its segments is."
    )
    video_threshold: float | None = option(
        None, "max/topk-mean: threshold on the video score. [default: --segment-threshold]"
    )
    video_top_k: int = option(C.DEFAULT_VIDEO_TOP_K, "topk-mean: segments averaged.")
    # Fields added after 0.2 go last, so positional construction keeps its meaning.
    calibrate_by: str = option(
        C.DEFAULT_CALIBRATE_BY,
        "Calibrate (classes and novelty) against every segment of the index, of the segment's camera, "
        "or of its video.",
        choices=C.CALIBRATION_GROUPS,
    )
    novelty: int = option(
        C.DEFAULT_NOVELTY,
        "Novelty: one minus the mean cosine of each segment to its K nearest segments of the same camera "
        "(0: off).",
        metavar="K",
    )
    novelty_gap: float = option(
        C.DEFAULT_NOVELTY_GAP,
        "Novelty: segments of the same video starting at most this many seconds away are not neighbours.",
    )
    novelty_weight: float = option(
        C.DEFAULT_NOVELTY_WEIGHT, "Novelty's weight in the segment score: 0 text only, 1 novelty only."
    )
    example_weight: float = option(
        C.DEFAULT_EXAMPLE_WEIGHT,
        "Weight of a class's examples against its texts in its embedding (0 texts, 1 examples).",
    )
    use_labels: bool = option(
        False,
        "Turn the reviewer labels stored in the index (`vadindex label`) into example classes; metrics then "
        "leave the labelled segments out.",
    )

    def __post_init__(self) -> None:
        check_rule(self.rule, self.calibrate, self.segment_threshold)
        if self.top_k < 1:
            raise InputError(f"--top-k must be at least 1, got {self.top_k}")
        if self.smooth < 0:
            raise InputError(f"--smooth must be 0 or more, got {self.smooth}")
        if self.knn_k < 0:
            raise InputError(f"--knn-k must be 0 or more, got {self.knn_k}")
        if not 0.0 <= self.knn_alpha <= 1.0:
            raise InputError(f"--knn-alpha must be in [0, 1], got {self.knn_alpha}")
        if self.novelty < 0:
            raise InputError(f"--novelty must be 0 or more, got {self.novelty}")
        if not (math.isfinite(self.novelty_gap) and self.novelty_gap >= 0):
            raise InputError(f"--novelty-gap must be 0 or more seconds, got {self.novelty_gap}")
        for name, value in (("novelty-weight", self.novelty_weight), ("example-weight", self.example_weight)):
            if not 0.0 <= value <= 1.0:
                raise InputError(f"--{name} must be in [0, 1], got {value}")
        if self.calibrate_by not in C.CALIBRATION_GROUPS:
            raise InputError(
                f"unknown --calibrate-by {self.calibrate_by!r}; choose one of {', '.join(C.CALIBRATION_GROUPS)}"
            )
        if self.frame_votes < 1:
            raise InputError(f"--frame-votes must be at least 1, got {self.frame_votes}")
        check_video_options(self.video_agg, self.video_ratio, self.video_top_k, self.video_threshold)

    def check_classes(self, n_classes: int) -> None:
        """Refuse options that the prompt set cannot satisfy (more topk voters than classes)."""
        if self.rule == "topk" and self.top_k > n_classes:
            raise InputError(f"--top-k {self.top_k} is more than the {n_classes} prompts")

    @property
    def effective_video_threshold(self) -> float:
        """The threshold of ``max``/``topk-mean``: ``video_threshold``, else the segment threshold."""
        return self.segment_threshold if self.video_threshold is None else self.video_threshold


def check_rule(rule: str, calibrate: str, segment_threshold: float) -> None:
    """Raise :class:`InputError` for an unknown rule or calibration, or a threshold out of range."""
    if rule not in C.RULES:
        raise InputError(f"unknown rule {rule!r}; choose one of {', '.join(C.RULES)}")
    if calibrate not in C.CALIBRATIONS:
        raise InputError(f"unknown calibration {calibrate!r}; choose one of {', '.join(C.CALIBRATIONS)}")
    if calibrate == "zscore":
        if not math.isfinite(segment_threshold):
            raise InputError(f"--segment-threshold must be a number, got {segment_threshold}")
    elif not 0.0 <= segment_threshold <= 1.0:
        raise InputError(f"--segment-threshold must be in [0, 1], got {segment_threshold}")


def check_video_options(
    video_agg: str, video_ratio: float, video_top_k: int, video_threshold: float | None = None
) -> None:
    """Raise :class:`InputError` for bad video aggregation options."""
    if video_agg not in C.VIDEO_AGGS:
        raise InputError(f"unknown video aggregation {video_agg!r}; choose one of {', '.join(C.VIDEO_AGGS)}")
    if not 0.0 < video_ratio <= 1.0:
        raise InputError(f"--video-ratio must be in (0, 1], got {video_ratio}")
    if video_top_k < 1:
        raise InputError(f"--video-top-k must be at least 1, got {video_top_k}")
    if video_threshold is not None and not math.isfinite(video_threshold):
        raise InputError(f"--video-threshold must be a number, got {video_threshold}")


def load_detect_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``--config`` YAML file (as ``vadindex tune`` writes) into ``detect`` keyword arguments.

    Keys are :class:`DetectOptions` names (``segment_threshold`` or ``segment-threshold``) and
    :data:`CONFIG_INPUTS`; the ``tuning`` section is ignored. Only keys present in the file are
    returned, so explicit options can override them. ``prompts`` may be a prompt-set mapping;
    ``annotations`` is taken relative to the file.
    """
    # Here, not at the top: the CLI declares its options from this module without numpy or yaml.
    import yaml

    from vadindex.detect.prompts import parse_examples, parse_prompt_yaml, safe_load_yaml

    file = Path(path).expanduser()
    try:
        data = safe_load_yaml(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{file}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{file}: cannot read config ({exc})") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{file}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{file}: a config must be a mapping of option names to values")
    known = (*DetectOptions.names(), *CONFIG_INPUTS)
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name in CONFIG_IGNORED:
            continue
        if name not in known:
            raise InputError(f"{file}: unknown option {key!r}; known: {', '.join(sorted(known))}")
        if name in CONFIG_INPUTS:
            out[name] = value
        else:
            out[name] = convert(value, field_type(DetectOptions, name), f"{file}: {key}")
    if isinstance(out.get("prompts"), dict):
        out["prompts"] = parse_prompt_yaml(out["prompts"], f"{file}: prompts", base=file.parent)
    if out.get("annotations"):
        ann = Path(str(out["annotations"])).expanduser()
        out["annotations"] = str(ann if ann.is_absolute() else file.parent / ann)
    for key in ("anomaly_examples", "normal_examples"):
        if out.get(key):  # image files are taken relative to the config file
            out[key] = list(parse_examples(out[key], f"{file}: {key}", file.parent))
    return out


def resolve_settings(
    config: str | os.PathLike[str] | None, given: dict[str, Any]
) -> tuple[DetectOptions, dict[str, Any]]:
    """Options and inputs of a detection from a ``--config`` file, overridden by ``given`` values.

    Args:
        config: a config file (as ``vadindex tune`` writes), or ``None``.
        given: option and input names (:class:`DetectOptions` fields and :data:`CONFIG_INPUTS`) to
            values; ``None`` means "not given" and leaves the file's value (or the default).

    Returns:
        The options, and ``{"prompts", "normal_prompts", "annotations"}`` (``None`` when unset).
    """
    merged = load_detect_config(config) if config else {}
    merged.update({k: v for k, v in given.items() if v is not None})
    inputs = {k: merged.pop(k, None) for k in CONFIG_INPUTS}
    return DetectOptions.from_mapping(merged, str(config or "options")), inputs
