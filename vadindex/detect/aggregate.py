"""Aggregation of segment decisions into video decisions (pure numpy/pandas).

For a video ``v`` with segments ``i in v`` and segment scores ``a_i`` (``--video-agg``):

- ``ratio``:     ``s_v = mean_{i in v} anomalous_i``; anomalous when ``s_v >= rho`` (``--video-ratio``).
- ``max``:       ``s_v = max_{i in v} a_i``; anomalous when ``s_v >= t_v`` (``--video-threshold``,
                 by default the segment threshold, so a video is anomalous when any segment is).
- ``topk-mean``: ``s_v = mean of the k largest a_i`` (``k = min(--video-top-k, |v|)``); anomalous
                 when ``s_v >= t_v``.

``max_score_v`` (the highest segment score) is reported with every method.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from vadindex.config import DEFAULT_VIDEO_AGG, DEFAULT_VIDEO_RATIO, DEFAULT_VIDEO_TOP_K, VIDEO_AGGS
from vadindex.detect.options import check_video_options
from vadindex.errors import InputError


def aggregate_videos(
    video_ids: np.ndarray, scores: np.ndarray, anomalous: np.ndarray, video_ratio: float = DEFAULT_VIDEO_RATIO
) -> pd.DataFrame:
    """Group segments by video.

    Args:
        video_ids: video of each segment.
        scores: anomaly score of each segment.
        anomalous: segment decisions.
        video_ratio: fraction of anomalous segments from which a video is anomalous, in (0, 1].

    Returns:
        One row per video in order of first appearance: ``video_id``, ``n_segments``,
        ``n_anomalous``, ``ratio``, ``max_score``, ``anomalous``.
    """
    if not 0.0 < video_ratio <= 1.0:
        raise InputError(f"--video-ratio must be in (0, 1], got {video_ratio}")
    frame = pd.DataFrame(
        {"video_id": video_ids, "score": np.asarray(scores, float), "anomalous": np.asarray(anomalous, bool)}
    )
    grouped = frame.groupby("video_id", sort=False)
    out = pd.DataFrame(
        {
            "n_segments": grouped.size(),
            "n_anomalous": grouped["anomalous"].sum().astype(int),
            "max_score": grouped["score"].max(),
        }
    )
    out["ratio"] = out["n_anomalous"] / out["n_segments"]
    out["anomalous"] = out["ratio"] >= video_ratio - 1e-12
    return out.reset_index()[["video_id", "n_segments", "n_anomalous", "ratio", "max_score", "anomalous"]]


def video_scores(
    codes: np.ndarray,
    n_videos: int,
    scores: np.ndarray,
    anomalous: np.ndarray,
    method: str,
    top_k: int = DEFAULT_VIDEO_TOP_K,
) -> np.ndarray:
    """Per-video score ``s_v`` of ``method`` (numpy core of :func:`aggregate_segments`).

    Args:
        codes: video number (``0 .. n_videos - 1``) of each segment.
        n_videos: number of videos.
        scores: segment scores ``a_i``.
        anomalous: segment decisions.
        method: ``ratio``, ``max`` or ``topk-mean``.
        top_k: ``k`` of ``topk-mean``.

    Returns:
        ``(n_videos,)`` float64; NaN for a video without segments.
    """
    codes = np.asarray(codes, dtype=np.int64)
    counts = np.bincount(codes, minlength=n_videos).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if method == "ratio":
            return np.bincount(codes, np.asarray(anomalous, dtype=np.float64), minlength=n_videos) / counts
        a = np.asarray(scores, dtype=np.float64)
        if method == "max":
            out = np.full(n_videos, -np.inf)
            np.maximum.at(out, codes, a)
            return np.where(counts > 0, out, np.nan)
        if method == "topk-mean":
            if top_k < 1:
                raise InputError(f"--video-top-k must be at least 1, got {top_k}")
            order = np.lexsort((-a, codes))
            starts = np.cumsum(counts) - counts
            rank = np.empty(len(a), dtype=np.int64)
            rank[order] = np.arange(len(a)) - starts[codes[order]].astype(np.int64)
            keep = rank < top_k
            return np.bincount(codes[keep], a[keep], minlength=n_videos) / np.minimum(counts, top_k)
    raise InputError(f"unknown video aggregation {method!r}; choose one of {', '.join(VIDEO_AGGS)}")


def decide_videos(
    vscores: np.ndarray, method: str, video_ratio: float, video_threshold: float, strict: bool = False
) -> np.ndarray:
    """Video decisions: ``s_v >= rho`` for ``ratio``, ``s_v >= t_v`` (``>`` when ``strict``) otherwise."""
    s = np.nan_to_num(np.asarray(vscores, dtype=np.float64), nan=-np.inf)
    if method == "ratio":
        return s >= video_ratio - 1e-12
    return s > video_threshold if strict else s >= video_threshold


@dataclass(frozen=True)
class VideoAggregate:
    """Per-video results of :func:`aggregate_codes`, one entry per video number."""

    n_segments: np.ndarray  # int64
    n_anomalous: np.ndarray  # int64
    ratio: np.ndarray  # n_anomalous / n_segments (0 for a video without segments)
    max_score: np.ndarray  # max_i a_i, NaN for a video without segments
    score: np.ndarray  # s_v of the method
    anomalous: np.ndarray  # video decisions
    top_segment: np.ndarray  # row of the highest-scoring segment (first on ties), -1 if none


def top_segments(codes: np.ndarray, n_videos: int, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and score of each video's highest-scoring segment (the first such row on ties).

    Linear when ``codes`` is non-decreasing (an index stores each video's segments as one run of
    rows); a stable sort otherwise. A NaN score is never the top row (unless all of its video's
    are), but it makes the video's maximum NaN, as ``np.maximum`` does.

    Returns:
        ``(rows, max_scores)``: ``-1`` and NaN for a video without segments.
    """
    codes = np.asarray(codes, dtype=np.int64)
    a = np.asarray(scores, dtype=np.float64)
    rows = np.full(n_videos, -1, dtype=np.int64)
    best = np.full(n_videos, np.nan)
    if len(a) == 0:
        return rows, best
    finite = np.where(np.isnan(a), -np.inf, a)  # for choosing rows only
    if np.all(codes[1:] >= codes[:-1]):
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
        group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(a)]))
        hits = np.flatnonzero(finite == np.maximum.reduceat(finite, starts)[group])
        rows[codes[starts]] = hits[np.r_[True, group[hits][1:] != group[hits][:-1]]]
        best[codes[starts]] = np.maximum.reduceat(a, starts)
        return rows, best
    order = np.lexsort((-finite, codes))  # stable: among equal scores, the lower row comes first
    lead = order[np.r_[True, codes[order][1:] != codes[order][:-1]]]
    rows[codes[lead]] = lead
    top = np.full(n_videos, -np.inf)
    with np.errstate(invalid="ignore"):  # a NaN score makes its video's maximum NaN, on purpose
        np.maximum.at(top, codes, a)
    present = np.bincount(codes, minlength=n_videos) > 0
    best[present] = top[present]
    return rows, best


def aggregate_codes(
    codes: np.ndarray,
    n_videos: int,
    scores: np.ndarray,
    anomalous: np.ndarray,
    *,
    method: str = DEFAULT_VIDEO_AGG,
    video_ratio: float = DEFAULT_VIDEO_RATIO,
    video_threshold: float = 0.5,
    top_k: int = DEFAULT_VIDEO_TOP_K,
    strict: bool = False,
) -> VideoAggregate:
    """Group segments by video number with any method of the module docstring (pure numpy).

    Args:
        codes: video number (``0 .. n_videos - 1``) of each segment.
        n_videos: number of videos.
        scores: segment scores ``a_i``.
        anomalous: segment decisions.
        method, video_ratio, video_threshold, top_k: see the module docstring.
        strict: ``s_v > t_v`` instead of ``>=`` for ``max``/``topk-mean``.
    """
    check_video_options(method, video_ratio, top_k, video_threshold)
    codes = np.asarray(codes, dtype=np.int64)
    anomalous = np.asarray(anomalous, dtype=bool)
    counts = np.bincount(codes, minlength=n_videos).astype(np.int64)
    n_anom = np.bincount(codes[anomalous], minlength=n_videos).astype(np.int64)
    top, vmax = top_segments(codes, n_videos, scores)
    vs = vmax if method == "max" else video_scores(codes, n_videos, scores, anomalous, method, top_k)
    return VideoAggregate(
        n_segments=counts,
        n_anomalous=n_anom,
        ratio=n_anom / np.maximum(counts, 1),
        max_score=vmax,
        score=vs,
        anomalous=decide_videos(vs, method, video_ratio, video_threshold, strict),
        top_segment=top,
    )


def aggregate_segments(
    video_ids: np.ndarray,
    scores: np.ndarray,
    anomalous: np.ndarray,
    *,
    method: str = DEFAULT_VIDEO_AGG,
    video_ratio: float = DEFAULT_VIDEO_RATIO,
    video_threshold: float = 0.5,
    top_k: int = DEFAULT_VIDEO_TOP_K,
    strict: bool = False,
) -> pd.DataFrame:
    """Group segments by video with any method of the module docstring (by id; see :func:`aggregate_codes`).

    Returns:
        One row per video in order of first appearance: ``video_id``, ``n_segments``,
        ``n_anomalous``, ``ratio``, ``max_score``, ``score`` (``s_v``), ``anomalous``.
    """
    codes, uniques = pd.factorize(pd.Series(np.asarray(video_ids, dtype=object)), sort=False)
    agg = aggregate_codes(
        codes, len(uniques), scores, anomalous, method=method, video_ratio=video_ratio,
        video_threshold=video_threshold, top_k=top_k, strict=strict,
    )  # fmt: skip
    return pd.DataFrame(
        {
            "video_id": np.asarray(uniques, dtype=object),
            "n_segments": agg.n_segments,
            "n_anomalous": agg.n_anomalous,
            "ratio": agg.ratio,
            "max_score": agg.max_score,
            "score": agg.score,
            "anomalous": agg.anomalous,
        }
    )
