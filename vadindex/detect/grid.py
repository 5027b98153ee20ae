"""Grid search over rules, thresholds and aggregation with cross-validation split by video.

Every candidate is a rule configuration (rule, calibration and its grouping, smoothing, kNN,
novelty ``K``, gap and weight, example weight, ``top_k``, ``frame_votes``) and a decision
configuration (segment threshold, video aggregation, video ratio or threshold). Segment scores of a
rule configuration are computed once over the whole index from the cached class similarities and
novelty neighbours (no model is loaded), then every decision configuration is evaluated on any
subset of videos with array operations. Several indexes may be tuned together (the held-out scene
sets of the demo, say): each is scored on its own (its own calibration, neighbours and novelty),
and their segments and videos are pooled for the search.

Cross-validation: the labelled videos are split into ``k`` folds (``StratifiedKFold`` on the video
label when every class has at least ``k`` videos, ``KFold`` otherwise); for each fold the candidate
with the best metric on the training videos is scored on the held-out videos, so the reported
figure is held-out. No video is in both the training and the test part of a fold. Calibration
statistics and nearest neighbours use all segments of the index but no label, like any transductive
zero-shot method. The settings written out are the best candidate on all labelled videos.

Metrics: ``f1`` is video-level F1. ``auc`` is the frame-level ROC-AUC with annotations (pooled
frames, :mod:`vadindex.evaluate.metrics`) and the video-level ROC-AUC without; as AUC ignores thresholds,
the thresholds of the best rule configuration are then chosen by video F1. ``segment-f1`` (with
annotations) is the F1 of the segment decisions over the annotated segments of the videos, ties
going to the better video F1.
"""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from vadindex.config import (
    CALIBRATION_GROUPS,
    CALIBRATIONS,
    DEFAULT_CALIBRATE_BY,
    DEFAULT_EXAMPLE_WEIGHT,
    DEFAULT_NOVELTY_GAP,
    DEFAULT_NOVELTY_WEIGHT,
    DEFAULT_TUNE_FOLDS,
    DEFAULT_VIDEO_TOP_K,
    RULES,
    TUNE_METRICS,
)
from vadindex.detect.aggregate import decide_videos, video_scores
from vadindex.detect.novelty import novelty_scores
from vadindex.detect.options import DetectOptions
from vadindex.detect.prompts import safe_load_yaml
from vadindex.detect.scoring import apply_rule
from vadindex.detect.similarity import ClassSimilarityParts
from vadindex.errors import InputError
from vadindex.evaluate.annotations import GroundTruth
from vadindex.evaluate.metrics import roc_auc

log = logging.getLogger("vadindex")

#: The default search space; a ``--grid`` YAML file may replace any entry.
DEFAULT_GRID: dict[str, list[Any]] = {
    "rule": ["threshold", "balanced", "topk", "frame-vote"],
    "calibrate": ["none", "zscore", "percentile"],
    "calibrate_by": ["index", "camera"],
    "smooth": [0, 1, 2],
    "knn_k": [0, 5],
    "knn_alpha": [0.5],
    "top_k": [3, 5],
    "frame_votes": [1, 2],
    # Novelty and example weight are varied only where the index has what they need (novelty
    # neighbours, classes with both texts and examples).
    "novelty": [0, 10],
    "novelty_gap": [DEFAULT_NOVELTY_GAP],
    "novelty_weight": [0.25, 0.5, 0.75],
    "example_weight": [0.25, 0.5, 0.75],
    "video_agg": ["ratio", "max", "topk-mean"],
    "video_ratio": [0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0],
    "video_top_k": [DEFAULT_VIDEO_TOP_K],
    "n_thresholds": [20],
}


@dataclass(frozen=True)
class TuneData:
    """Everything the search needs, as arrays in index row order."""

    sims: np.ndarray  # (n_segments, n_classes)
    is_anomaly: np.ndarray
    logit_scale: float
    video_codes: np.ndarray  # (n_segments,) position of each segment's video in ``video_ids``
    position: np.ndarray  # segment number within its video
    video_ids: np.ndarray  # (n_videos,) str
    labels: np.ndarray  # (n_videos,) int8: 1, 0, -1 unknown
    frame_sims: np.ndarray | None = None
    frame_row: np.ndarray | None = None
    n_frames: np.ndarray | None = None
    neighbours: np.ndarray | None = None  # (n_segments, K_max), best first
    truth: Any = None  # vadindex.annotations.GroundTruth
    #: The text and example halves of the class similarities, when some class has examples
    #: (``sims`` is then their mix at the default example weight).
    parts: ClassSimilarityParts | None = None
    #: Novelty gap -> ``(n_segments, K_max)`` cosines to the nearest candidates (best first).
    novelty: dict[float, np.ndarray] | None = None
    cameras: np.ndarray | None = None  # camera of every segment, for calibrate_by="camera"


@dataclass
class TuneResult:
    """The best settings and the cross-validated report."""

    best: dict[str, Any]
    metric: str
    held_out: list[float]
    folds: list[dict[str, Any]]
    in_sample: float
    candidates: int
    extra: dict[str, Any] = field(default_factory=dict)
    #: Per fold, then for all labelled videos: video F1 over segment threshold x video ratio of the
    #: chosen rule configuration (:func:`threshold_grid`), for ``vadindex tune``'s heat maps.
    heatmaps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def options(self) -> DetectOptions:
        """The best settings as detection options."""
        return DetectOptions(**self.best)

    @property
    def held_out_mean(self) -> float:
        """Mean held-out metric over the folds."""
        vals = [v for v in self.held_out if v is not None and np.isfinite(v)]
        return float(np.mean(vals)) if vals else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-ready report."""
        vals = [v for v in self.held_out if v is not None and np.isfinite(v)]
        return {
            "metric": self.metric,
            "held_out_mean": self.held_out_mean,
            "held_out_std": float(np.std(vals)) if vals else float("nan"),
            "in_sample": self.in_sample,
            "candidates": self.candidates,
            "folds": self.folds,
            **self.extra,
        }


def load_grid(path: str | os.PathLike[str] | None) -> dict[str, list[Any]]:
    """The default grid with entries replaced from a YAML file (``key: [values]``)."""
    grid = {k: list(v) for k, v in DEFAULT_GRID.items()}
    if path is None:
        return grid
    file = Path(path).expanduser()
    try:
        data = safe_load_yaml(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{file}: cannot read grid ({exc})") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{file}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError(f"{file}: a grid maps option names to lists of values")
    for key, values in data.items():
        name = str(key).replace("-", "_")
        if name not in grid:
            raise InputError(f"{file}: unknown grid key {key!r}; known: {', '.join(sorted(grid))}")
        values = values if isinstance(values, list) else [values]
        if not values:
            raise InputError(f"{file}: {key} has no values")
        grid[name] = values
    for rule in grid["rule"]:
        if rule not in RULES:
            raise InputError(f"{file}: unknown rule {rule!r}")
    for cal in grid["calibrate"]:
        if cal not in CALIBRATIONS:
            raise InputError(f"{file}: unknown calibration {cal!r}")
    for by in grid["calibrate_by"]:
        if by not in CALIBRATION_GROUPS:
            raise InputError(f"{file}: unknown calibrate_by {by!r}")
    return grid


def rule_configs(
    grid: dict[str, list[Any]], frames: bool = True, novelty: bool = False, examples: bool = False
) -> list[dict[str, Any]]:
    """Distinct rule configurations of a grid (parameters a rule ignores are not varied, nor are
    novelty without novelty neighbours and the example weight without classes that mix texts and
    examples)."""
    out = []
    seen = set()
    for rule, cal, by, smooth, knn_k, alpha, top_k, votes, nov, gap, weight, ew in itertools.product(
        grid["rule"], grid["calibrate"], grid["calibrate_by"], grid["smooth"], grid["knn_k"], grid["knn_alpha"],
        grid["top_k"], grid["frame_votes"], grid["novelty"] if novelty else [0], grid["novelty_gap"],
        grid["novelty_weight"], grid["example_weight"] if examples else [DEFAULT_EXAMPLE_WEIGHT],
    ):  # fmt: skip
        if rule == "frame-vote" and not frames:
            continue
        cfg = {
            "rule": rule,
            "calibrate": cal,
            "calibrate_by": by if cal != "none" else DEFAULT_CALIBRATE_BY,
            "smooth": int(smooth),
            "knn_k": int(knn_k),
            "knn_alpha": float(alpha) if knn_k else 0.5,
            "top_k": int(top_k) if rule == "topk" else 3,
            "frame_votes": int(votes) if rule == "frame-vote" else 2,
            "novelty": int(nov),
            "novelty_gap": float(gap) if nov else DEFAULT_NOVELTY_GAP,
            "novelty_weight": float(weight) if nov else DEFAULT_NOVELTY_WEIGHT,
            "example_weight": float(ew),
        }
        key = tuple(cfg.items())
        if key not in seen:
            seen.add(key)
            out.append(cfg)
    return out


@dataclass(frozen=True)
class _Pooled:
    """The videos and ground truth of one or more indexes, pooled (rows and videos offset in order)."""

    video_codes: np.ndarray
    video_ids: np.ndarray
    labels: np.ndarray
    truth: Any
    row_offsets: list[int]

    @classmethod
    def of(cls, datas: list[TuneData]) -> _Pooled:
        if len(datas) == 1:
            d = datas[0]
            return cls(d.video_codes, d.video_ids, d.labels, d.truth, [0])
        rows = np.cumsum([0] + [len(d.video_codes) for d in datas]).tolist()
        vids = np.cumsum([0] + [len(d.video_ids) for d in datas]).tolist()
        codes = np.concatenate([d.video_codes + v for d, v in zip(datas, vids, strict=False)])
        ids = np.concatenate(
            [np.array([f"{i}/{v}" for v in d.video_ids], dtype=object) for i, d in enumerate(datas)]
        )
        labels = np.concatenate([d.labels for d in datas])
        truths = [d.truth for d in datas]
        truth = None
        if all(t is not None for t in truths):
            truth = _merge_truths(truths, rows, vids)
        elif any(t is not None for t in truths):
            raise InputError("tune several indexes with annotations for all of them or for none")
        return cls(codes, ids, labels, truth, rows)


def _merge_truths(truths: list[GroundTruth], rows: list[int], vids: list[int]) -> GroundTruth:
    """One :class:`GroundTruth` over indexes whose rows and videos follow each other."""

    def cat(name: str, offsets: list[int] | None = None) -> np.ndarray:
        parts = [getattr(t, name) + (offsets[i] if offsets else 0) for i, t in enumerate(truths)]
        return np.concatenate(parts)

    return GroundTruth(
        frame_segment=cat("frame_segment", rows), frame_label=cat("frame_label"), frame_video=cat("frame_video", vids),
        segment_label=cat("segment_label"), video_label=cat("video_label"),
        video_class=[c for t in truths for c in t.video_class], missing=[m for t in truths for m in t.missing],
        group_segment=cat("group_segment", rows), group_label=cat("group_label"), group_count=cat("group_count"),
        group_video=cat("group_video", vids),
    )  # fmt: skip


def _rule_scores(datas: list[TuneData], params: DetectOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segment scores, decisions and margins of ``params`` on every index, concatenated."""
    scores, decided, margins = [], [], []
    for data in datas:
        sims, frame_sims = data.sims, data.frame_sims
        if data.parts is not None:
            sims, mixed_frames = data.parts.mixed(params.example_weight)
            frame_sims = mixed_frames if frame_sims is not None else None
        novelty = None
        if params.novelty > 0:
            novelty = novelty_scores(data.novelty[params.novelty_gap], params.novelty)  # type: ignore[index]
        res = apply_rule(
            sims, data.is_anomaly, data.logit_scale, params, video_ids=data.video_codes,
            position=data.position, frame_sims=frame_sims, frame_row=data.frame_row,
            n_frames=data.n_frames, neighbours=data.neighbours, novelty=novelty, cameras=data.cameras,
        )  # fmt: skip
        scores.append(res.score)
        decided.append(res.anomalous)
        margins.append(res.margin)
    return np.concatenate(scores), np.concatenate(decided), np.concatenate(margins)


def _thresholds(values: np.ndarray, n: int) -> np.ndarray:
    """``n`` thresholds at evenly spaced quantiles, each midway between two distinct scores."""
    v = np.unique(np.asarray(values, dtype=np.float64)[np.isfinite(values)])
    if len(v) == 0:
        return np.array([0.5])
    if len(v) == 1:
        return v
    mids = (v[:-1] + v[1:]) / 2.0
    picks = np.unique(np.round(np.linspace(0, len(mids) - 1, min(n, len(mids)))).astype(int))
    return mids[picks]


@dataclass
class _Candidates:
    params: list[dict[str, Any]] = field(default_factory=list)
    config: list[int] = field(default_factory=list)  # rule configuration of each candidate
    decisions: list[np.ndarray] = field(default_factory=list)  # (n_videos,) bool each
    vscores: list[np.ndarray] = field(default_factory=list)  # (n_videos,) float each
    #: With annotations: each candidate's row in ``seg_counts``, the per-video (tp, fp, fn) of its
    #: segment decisions over annotated segments (one row per distinct configuration and threshold).
    seg_row: list[int] = field(default_factory=list)
    seg_counts: list[np.ndarray] = field(default_factory=list)  # (3, n_videos) each


def build_candidates(
    data: TuneData | list[TuneData], grid: dict[str, list[Any]]
) -> tuple[_Candidates, dict[int, np.ndarray], list[dict[str, Any]], _Pooled]:
    """Every candidate's video decisions and scores, and every rule configuration's segment scores."""
    datas = data if isinstance(data, list) else [data]
    pooled = _Pooled.of(datas)
    n_videos = len(pooled.video_ids)
    cands = _Candidates()
    seg_scores: dict[int, np.ndarray] = {}
    gaps = {float(g) for g in grid["novelty_gap"]}
    configs = rule_configs(
        grid,
        frames=all(d.frame_sims is not None for d in datas),
        novelty=all(d.novelty is not None and gaps <= set(d.novelty) for d in datas),
        examples=any(
            d.parts is not None and bool((d.parts.has_text & d.parts.has_examples).any()) for d in datas
        ),
    )
    n_thr = int(grid["n_thresholds"][0])
    known = positive = None
    if pooled.truth is not None:
        known = pooled.truth.segment_label >= 0
        positive = pooled.truth.segment_label == 1
    for ci, cfg in enumerate(configs):
        try:
            params = DetectOptions(segment_threshold=0.5 if cfg["calibrate"] != "zscore" else 0.0, **cfg)
            for d in datas:
                params.check_classes(d.sims.shape[1])
        except InputError:
            continue
        score, anomalous, margin = _rule_scores(datas, params)
        seg_scores[ci] = score
        # The margin test of "balanced" does not depend on the threshold.
        margin_ok = margin > 0 if cfg["rule"] == "balanced" else True
        rows = _SegmentRows(cands, known, positive, pooled.video_codes, n_videos, score, margin_ok,
                            anomalous if cfg["rule"] == "topk" else None)  # fmt: skip
        if cfg["rule"] == "topk":  # decided by votes alone: one set of segment decisions
            seg_decisions = [(params.segment_threshold, anomalous)]
        else:
            seg_decisions = [(float(t), (score >= t) & margin_ok) for t in _thresholds(score, n_thr)]
        for agg in grid["video_agg"]:
            if agg == "ratio":
                for t, anomalous_t in seg_decisions:
                    vs = video_scores(pooled.video_codes, n_videos, score, anomalous_t, "ratio")
                    row = rows.row(t, anomalous_t)
                    for rho in grid["video_ratio"]:
                        cands.params.append({**cfg, "segment_threshold": t, "video_agg": "ratio", "video_ratio": float(rho),
                                             "video_threshold": None, "video_top_k": DEFAULT_VIDEO_TOP_K})  # fmt: skip
                        cands.config.append(ci)
                        cands.decisions.append(decide_videos(vs, "ratio", float(rho), 0.0))
                        cands.vscores.append(vs)
                        cands.seg_row.append(row)
            else:
                for k in grid["video_top_k"] if agg == "topk-mean" else [DEFAULT_VIDEO_TOP_K]:
                    vs = video_scores(
                        pooled.video_codes, n_videos, score, np.zeros(len(score), bool), agg, int(k)
                    )
                    for t in _thresholds(vs, n_thr):
                        cands.params.append({**cfg, "segment_threshold": float(t), "video_agg": agg, "video_ratio": 0.1,
                                             "video_threshold": float(t), "video_top_k": int(k)})  # fmt: skip
                        cands.config.append(ci)
                        cands.decisions.append(decide_videos(vs, agg, 0.1, float(t)))
                        cands.vscores.append(vs)
                        cands.seg_row.append(rows.row(float(t)))
    return cands, seg_scores, configs, pooled


class _SegmentRows:
    """The rows of ``cands.seg_counts`` of one rule configuration, one per threshold (computed once)."""

    def __init__(
        self, cands: _Candidates, known: np.ndarray | None, positive: np.ndarray | None, codes: np.ndarray,
        n_videos: int, score: np.ndarray, margin_ok: Any, fixed: np.ndarray | None,
    ) -> None:  # fmt: skip
        self.cands, self.known, self.positive, self.codes, self.n_videos = (
            cands,
            known,
            positive,
            codes,
            n_videos,
        )
        self.score, self.margin_ok, self.fixed = score, margin_ok, fixed
        self.seen: dict[float, int] = {}

    def row(self, t: float, decided: np.ndarray | None = None) -> int:
        """The row of the decisions at threshold ``t`` (``fixed`` ones, for topk's votes); -1 without annotations."""
        if self.known is None or self.positive is None:
            return -1
        key = -1.0 if self.fixed is not None else t
        if key not in self.seen:
            if self.fixed is not None:
                decided = self.fixed
            elif decided is None:
                decided = (self.score >= t) & self.margin_ok
            self.seen[key] = len(self.cands.seg_counts)
            self.cands.seg_counts.append(
                _segment_counts(decided, self.known, self.positive, self.codes, self.n_videos)
            )
        return self.seen[key]


def _segment_counts(
    decided: np.ndarray, known: np.ndarray, positive: np.ndarray, video_codes: np.ndarray, n_videos: int
) -> np.ndarray:
    """Per video, ``(tp, fp, fn)`` of segment decisions over the annotated segments."""
    v = video_codes[known]
    d, y = decided[known], positive[known]
    return np.stack([np.bincount(v[d & y], minlength=n_videos), np.bincount(v[d & ~y], minlength=n_videos),
                     np.bincount(v[~d & y], minlength=n_videos)]).astype(np.int32)  # fmt: skip


def _segment_f1(cands: _Candidates, videos: np.ndarray) -> np.ndarray:
    """Segment-level F1 of every candidate over the annotated segments of ``videos``."""
    table = np.stack(cands.seg_counts)[:, :, videos].sum(axis=2)  # (distinct decisions, 3)
    tp, fp, fn = table[:, 0], table[:, 1], table[:, 2]
    denom = 2 * tp + fp + fn
    per_row = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return per_row[np.asarray(cands.seg_row)]


def _f1(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """F1 of every row of ``pred`` (candidates x videos) against ``y``."""
    tp = (pred & y).sum(axis=1)
    fp = (pred & ~y).sum(axis=1)
    fn = (~pred & y).sum(axis=1)
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def _config_auc(data: _Pooled, seg_scores: np.ndarray, vscore: np.ndarray, videos: np.ndarray) -> float:
    if data.truth is not None:
        t = data.truth
        keep = np.isin(t.group_video, videos)
        auc = roc_auc(t.group_label[keep], seg_scores[t.group_segment[keep]], t.group_count[keep])
    else:
        auc = roc_auc(data.labels[videos] == 1, np.nan_to_num(vscore[videos], nan=-np.inf))
    return float("nan") if auc is None else auc


def _select(
    data: _Pooled,
    cands: _Candidates,
    seg_scores: dict[int, np.ndarray],
    P: np.ndarray,
    videos: np.ndarray,
    metric: str,
) -> tuple[int, float]:
    """Best candidate on ``videos``: its index and metric value (first one wins ties)."""
    y = data.labels[videos] == 1
    f1 = _f1(P[:, videos], y)
    if metric == "f1":
        best = int(np.argmax(f1))
        return best, float(f1[best])
    if metric == "segment-f1":
        seg = _segment_f1(cands, videos)
        best = int(np.lexsort((-f1, -seg))[0])  # the best segment F1, then video F1; the first on ties
        return best, float(seg[best])
    cfg_of = np.asarray(cands.config)
    aucs = {}
    for ci in dict.fromkeys(cands.config):
        first = int(np.flatnonzero(cfg_of == ci)[0])
        aucs[ci] = _config_auc(data, seg_scores[ci], cands.vscores[first], videos)
    best_cfg = max(aucs, key=lambda c: np.nan_to_num(aucs[c], nan=-1.0))
    members = np.flatnonzero(cfg_of == best_cfg)
    best = int(members[np.argmax(f1[members])])
    return best, aucs[best_cfg]


def threshold_grid(
    data: TuneData, cands: _Candidates, P: np.ndarray, best: int, videos: np.ndarray
) -> dict[str, Any] | None:
    """Video F1 on ``videos`` over the two thresholds of the method, segment threshold x video
    ratio, for the rule configuration of candidate ``best`` with ratio aggregation.

    Returns:
        ``thresholds``, ``ratios``, ``f1`` (a thresholds x ratios list of lists, NaN where the grid
        has no candidate), ``chosen`` (the cell of ``best``, or ``None`` when it aggregates otherwise)
        and ``settings`` (``best``'s); ``None`` when the grid has no ratio aggregation.
    """
    config = cands.config[best]
    members = [
        i for i, c in enumerate(cands.config) if c == config and cands.params[i]["video_agg"] == "ratio"
    ]
    if not members:
        return None
    thresholds = sorted({float(cands.params[i]["segment_threshold"]) for i in members})
    ratios = sorted({float(cands.params[i]["video_ratio"]) for i in members})
    f1 = np.full((len(thresholds), len(ratios)), np.nan)
    values = _f1(P[members][:, videos], data.labels[videos] == 1)
    cell = {}
    for i, value in zip(members, values, strict=True):
        at = (
            thresholds.index(float(cands.params[i]["segment_threshold"])),
            ratios.index(float(cands.params[i]["video_ratio"])),
        )
        f1[at] = value
        cell[i] = at
    return {"thresholds": thresholds, "ratios": ratios, "f1": f1.tolist(), "chosen": cell.get(best),
            "settings": _clean(cands.params[best])}  # fmt: skip


def fold_splits(labels: np.ndarray, folds: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Train/test video positions of each fold, over the labelled videos only (split by video).

    Stratified by label when every label has at least ``folds`` videos.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    videos = np.flatnonzero(labels >= 0)
    if len(videos) < 2:
        raise InputError(
            "tuning needs at least two labelled videos (label them in a manifest or with --annotations)"
        )
    y = labels[videos]
    counts = np.bincount(y, minlength=2)
    k = min(folds, len(videos))
    if k < 2:
        raise InputError(f"--folds must be at least 2, got {folds}")
    if counts.min() >= k:
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        splits = splitter.split(videos, y)
    else:
        splits = KFold(n_splits=k, shuffle=True, random_state=seed).split(videos)
    return [(videos[tr], videos[te]) for tr, te in splits]


def search(
    data: TuneData | list[TuneData],
    grid: dict[str, list[Any]],
    metric: str = "f1",
    folds: int = DEFAULT_TUNE_FOLDS,
    seed: int = 0,
    splits: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> TuneResult:
    """Cross-validated grid search (see the module docstring).

    Args:
        data: the index's arrays (:func:`vadindex.detect.tune.prepare`), or several indexes' (pooled).
        grid: the search space.
        metric: ``f1``, ``auc`` or ``segment-f1``.
        folds, seed: the split (:func:`fold_splits`), unless ``splits`` gives train/test video positions.
    """
    if metric not in TUNE_METRICS:
        raise InputError(f"unknown metric {metric!r}; choose one of {', '.join(TUNE_METRICS)}")
    cands, seg_scores, _, pooled = build_candidates(data, grid)
    splits = fold_splits(pooled.labels, folds, seed) if splits is None else splits
    if not cands.params:
        raise InputError("the grid holds no valid candidate")
    if metric == "segment-f1" and not cands.seg_counts:
        raise InputError("--metric segment-f1 needs temporal annotations (--annotations)")
    P = np.stack(cands.decisions)
    log.info("tune: %d candidates, %d folds", len(cands.params), len(splits))
    report, held, heatmaps = [], [], []
    for i, (train, test) in enumerate(splits):
        best, train_value = _select(pooled, cands, seg_scores, P, train, metric)
        grid_f1 = threshold_grid(pooled, cands, P, best, test)
        if grid_f1 is not None:
            heatmaps.append({"name": f"fold {i + 1}: held-out F1 on {len(test)} videos", **grid_f1})
        y_test = pooled.labels[test] == 1
        test_f1 = float(_f1(P[best : best + 1, test], y_test)[0])
        test_auc = _config_auc(pooled, seg_scores[cands.config[best]], cands.vscores[best], test)
        test_seg = float(_segment_f1(cands, test)[best]) if cands.seg_counts else None
        value = {"f1": test_f1, "auc": test_auc, "segment-f1": test_seg}[metric]
        held.append(value)
        report.append({
            "fold": i, "train_videos": [str(v) for v in pooled.video_ids[train]],
            "test_videos": [str(v) for v in pooled.video_ids[test]], f"train_{metric}": train_value,
            "test_f1": test_f1, "test_auc": test_auc, "test_segment_f1": test_seg,
            "settings": _clean(cands.params[best]),
        })  # fmt: skip
    everyone = np.flatnonzero(pooled.labels >= 0)
    best, value = _select(pooled, cands, seg_scores, P, everyone, metric)
    grid_f1 = threshold_grid(pooled, cands, P, best, everyone)
    if grid_f1 is not None:
        heatmaps.append({"name": f"all {len(everyone)} labelled videos (the settings written)", **grid_f1})
    return TuneResult(
        _clean(cands.params[best]), metric, held, report, value, len(cands.params), heatmaps=heatmaps
    )


def _clean(params: dict[str, Any]) -> dict[str, Any]:
    out = dict(params)
    if out["video_agg"] == "ratio":
        out["video_threshold"] = None
    return {k: (float(v) if isinstance(v, np.floating) else v) for k, v in out.items()}
