"""Grid search over rules, thresholds and aggregation with cross-validation split by video.

Every candidate is a rule configuration (rule, calibration, smoothing, kNN, ``top_k``,
``frame_votes``) and a decision configuration (segment threshold, video aggregation, video ratio or
threshold). Segment scores of a rule configuration are computed once over the whole index from the
cached class similarities (no model is loaded), then every decision configuration is evaluated on
any subset of videos with array operations.

Cross-validation: the labelled videos are split into ``k`` folds (``StratifiedKFold`` on the video
label when every class has at least ``k`` videos, ``KFold`` otherwise); for each fold the candidate
with the best metric on the training videos is scored on the held-out videos, so the reported
figure is held-out. No video is in both the training and the test part of a fold. Calibration
statistics and nearest neighbours use all segments of the index but no label, like any transductive
zero-shot method. The settings written out are the best candidate on all labelled videos.

Metrics: ``f1`` is video-level F1. ``auc`` is the frame-level ROC-AUC with annotations (pooled
frames, :mod:`vadindex.evaluate.metrics`) and the video-level ROC-AUC without; as AUC ignores thresholds,
the thresholds of the best rule configuration are then chosen by video F1.
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

from vadindex.config import CALIBRATIONS, DEFAULT_TUNE_FOLDS, DEFAULT_VIDEO_TOP_K, RULES, TUNE_METRICS
from vadindex.detect.aggregate import decide_videos, video_scores
from vadindex.detect.options import DetectOptions
from vadindex.detect.prompts import safe_load_yaml
from vadindex.detect.scoring import apply_rule
from vadindex.errors import InputError
from vadindex.evaluate.metrics import roc_auc

log = logging.getLogger("vadindex")

#: The default search space; a ``--grid`` YAML file may replace any entry.
DEFAULT_GRID: dict[str, list[Any]] = {
    "rule": ["threshold", "balanced", "topk", "frame-vote"],
    "calibrate": ["none", "zscore", "percentile"],
    "smooth": [0, 1, 2],
    "knn_k": [0, 5],
    "knn_alpha": [0.5],
    "top_k": [3, 5],
    "frame_votes": [1, 2],
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
    return grid


def rule_configs(grid: dict[str, list[Any]], frames: bool = True) -> list[dict[str, Any]]:
    """Distinct rule configurations of a grid (parameters a rule ignores are not varied)."""
    out = []
    seen = set()
    for rule, cal, smooth, knn_k, alpha, top_k, votes in itertools.product(
        grid["rule"], grid["calibrate"], grid["smooth"], grid["knn_k"], grid["knn_alpha"],
        grid["top_k"], grid["frame_votes"],
    ):  # fmt: skip
        if rule == "frame-vote" and not frames:
            continue
        cfg = {
            "rule": rule,
            "calibrate": cal,
            "smooth": int(smooth),
            "knn_k": int(knn_k),
            "knn_alpha": float(alpha) if knn_k else 0.5,
            "top_k": int(top_k) if rule == "topk" else 3,
            "frame_votes": int(votes) if rule == "frame-vote" else 2,
        }
        key = tuple(cfg.items())
        if key not in seen:
            seen.add(key)
            out.append(cfg)
    return out


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


def build_candidates(
    data: TuneData, grid: dict[str, list[Any]]
) -> tuple[_Candidates, dict[int, np.ndarray], list[dict[str, Any]]]:
    """Every candidate's video decisions and scores, and every rule configuration's segment scores."""
    n_videos = len(data.video_ids)
    cands = _Candidates()
    seg_scores: dict[int, np.ndarray] = {}
    configs = rule_configs(grid, frames=data.frame_sims is not None)
    n_thr = int(grid["n_thresholds"][0])
    for ci, cfg in enumerate(configs):
        try:
            params = DetectOptions(segment_threshold=0.5 if cfg["calibrate"] != "zscore" else 0.0, **cfg)
            params.check_classes(data.sims.shape[1])
        except InputError:
            continue
        res = apply_rule(
            data.sims, data.is_anomaly, data.logit_scale, params, video_ids=data.video_codes,
            position=data.position, frame_sims=data.frame_sims, frame_row=data.frame_row,
            n_frames=data.n_frames, neighbours=data.neighbours,
        )  # fmt: skip
        score = res.score
        seg_scores[ci] = score
        if cfg["rule"] == "topk":  # decided by votes alone: one set of segment decisions
            seg_decisions = [(params.segment_threshold, res.anomalous)]
        else:
            # The margin test of "balanced" does not depend on the threshold.
            margin_ok = res.margin > 0 if cfg["rule"] == "balanced" else True
            seg_decisions = [(float(t), (score >= t) & margin_ok) for t in _thresholds(score, n_thr)]
        for agg in grid["video_agg"]:
            if agg == "ratio":
                for t, anomalous in seg_decisions:
                    vs = video_scores(data.video_codes, n_videos, score, anomalous, "ratio")
                    for rho in grid["video_ratio"]:
                        cands.params.append({**cfg, "segment_threshold": t, "video_agg": "ratio", "video_ratio": float(rho),
                                             "video_threshold": None, "video_top_k": DEFAULT_VIDEO_TOP_K})  # fmt: skip
                        cands.config.append(ci)
                        cands.decisions.append(decide_videos(vs, "ratio", float(rho), 0.0))
                        cands.vscores.append(vs)
            else:
                for k in grid["video_top_k"] if agg == "topk-mean" else [DEFAULT_VIDEO_TOP_K]:
                    vs = video_scores(
                        data.video_codes, n_videos, score, np.zeros(len(score), bool), agg, int(k)
                    )
                    for t in _thresholds(vs, n_thr):
                        cands.params.append({**cfg, "segment_threshold": float(t), "video_agg": agg, "video_ratio": 0.1,
                                             "video_threshold": float(t), "video_top_k": int(k)})  # fmt: skip
                        cands.config.append(ci)
                        cands.decisions.append(decide_videos(vs, agg, 0.1, float(t)))
                        cands.vscores.append(vs)
    return cands, seg_scores, configs


def _f1(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """F1 of every row of ``pred`` (candidates x videos) against ``y``."""
    tp = (pred & y).sum(axis=1)
    fp = (pred & ~y).sum(axis=1)
    fn = (~pred & y).sum(axis=1)
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def _config_auc(data: TuneData, seg_scores: np.ndarray, vscore: np.ndarray, videos: np.ndarray) -> float:
    if data.truth is not None:
        t = data.truth
        keep = np.isin(t.group_video, videos)
        auc = roc_auc(t.group_label[keep], seg_scores[t.group_segment[keep]], t.group_count[keep])
    else:
        auc = roc_auc(data.labels[videos] == 1, np.nan_to_num(vscore[videos], nan=-np.inf))
    return float("nan") if auc is None else auc


def _select(
    data: TuneData,
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
    data: TuneData,
    grid: dict[str, list[Any]],
    metric: str = "f1",
    folds: int = DEFAULT_TUNE_FOLDS,
    seed: int = 0,
    splits: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> TuneResult:
    """Cross-validated grid search (see the module docstring).

    Args:
        data: the index's arrays (:func:`prepare`).
        grid: the search space.
        metric: ``f1`` or ``auc``.
        folds, seed: the split (:func:`fold_splits`), unless ``splits`` gives train/test video positions.
    """
    if metric not in TUNE_METRICS:
        raise InputError(f"unknown metric {metric!r}; choose one of {', '.join(TUNE_METRICS)}")
    splits = fold_splits(data.labels, folds, seed) if splits is None else splits
    cands, seg_scores, _ = build_candidates(data, grid)
    if not cands.params:
        raise InputError("the grid holds no valid candidate")
    P = np.stack(cands.decisions)
    log.info("tune: %d candidates, %d folds", len(cands.params), len(splits))
    report, held, heatmaps = [], [], []
    for i, (train, test) in enumerate(splits):
        best, train_value = _select(data, cands, seg_scores, P, train, metric)
        grid_f1 = threshold_grid(data, cands, P, best, test)
        if grid_f1 is not None:
            heatmaps.append({"name": f"fold {i + 1}: held-out F1 on {len(test)} videos", **grid_f1})
        y_test = data.labels[test] == 1
        test_f1 = float(_f1(P[best : best + 1, test], y_test)[0])
        test_auc = _config_auc(data, seg_scores[cands.config[best]], cands.vscores[best], test)
        value = test_f1 if metric == "f1" else test_auc
        held.append(value)
        report.append({
            "fold": i, "train_videos": [str(v) for v in data.video_ids[train]],
            "test_videos": [str(v) for v in data.video_ids[test]], f"train_{metric}": train_value,
            "test_f1": test_f1, "test_auc": test_auc, "settings": _clean(cands.params[best]),
        })  # fmt: skip
    everyone = np.flatnonzero(data.labels >= 0)
    best, value = _select(data, cands, seg_scores, P, everyone, metric)
    grid_f1 = threshold_grid(data, cands, P, best, everyone)
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
