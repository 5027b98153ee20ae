"""Evaluation metrics for binary decisions and scores, and frame-level expansion (pure numpy).

- ROC-AUC: the probability that a random positive scores above a random negative, ties counting one
  half (Mann-Whitney U with mid-ranks); equal to scikit-learn's ``roc_auc_score``.
- AP: ``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds in decreasing order, with
  precision ``P_n`` and recall ``R_n`` at the n-th threshold: the non-interpolated step-wise area that
  scikit-learn's ``average_precision_score`` computes (not the trapezoidal or 11-point VOC variants).
- Frame-level scores: frame ``f`` of a video takes the score of the segment whose frame range
  ``[start_frame, end_frame)`` contains it; frames before the first segment take the first segment's
  score and frames after the last segment take the last segment's.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def binary_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Precision, recall, F1, accuracy and the confusion matrix of binary decisions.

    ``confusion_matrix`` is ``[[tn, fp], [fn, tp]]`` (rows: truth normal, anomalous; columns:
    predicted normal, anomalous), as scikit-learn lays it out. Undefined ratios are 0.
    """
    t = np.asarray(y_true).astype(bool)
    p = np.asarray(y_pred).astype(bool)
    if t.shape != p.shape:
        raise ValueError("y_true and y_pred differ in shape")
    tp = int((t & p).sum())
    fp = int((~t & p).sum())
    fn = int((t & ~p).sum())
    tn = int((~t & ~p).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": (tp + tn) / len(t) if len(t) else 0.0,
        "support": int(len(t)),
        "positives": int(t.sum()),
        "confusion_matrix": [[tn, fp], [fn, tp]],
    }


def _tie_groups(scores: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative weight of every run of equal scores, from the highest score down."""
    order = np.argsort(-scores, kind="mergesort")
    s_sorted = scores[order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    pos = np.add.reduceat(np.where(y[order], w[order], 0.0), starts) if len(s_sorted) else np.zeros(0)
    neg = np.add.reduceat(np.where(y[order], 0.0, w[order]), starts) if len(s_sorted) else np.zeros(0)
    return pos, neg


def _prepare(
    y_true: np.ndarray, scores: np.ndarray, sample_weight: np.ndarray | None
) -> tuple[np.ndarray, ...]:
    t = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    w = np.ones(len(t)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if not (len(t) == len(s) == len(w)):
        raise ValueError("y_true, scores and sample_weight differ in length")
    return t, s, w


def roc_auc(y_true: np.ndarray, scores: np.ndarray, sample_weight: np.ndarray | None = None) -> float | None:
    """Area under the ROC curve (ties count one half); ``None`` when only one class is present.

    ``sample_weight`` counts an item that many times, so frames sharing a segment's score can be
    passed once per segment with their count.
    """
    t, s, w = _prepare(y_true, scores, sample_weight)
    pos, neg = _tie_groups(s, t, w)
    total_pos, total_neg = pos.sum(), neg.sum()
    if total_pos <= 0 or total_neg <= 0:
        return None
    # Negatives strictly below each group: all negatives minus those at or above it.
    below = total_neg - np.cumsum(neg)
    return float(np.sum(pos * (below + 0.5 * neg)) / (total_pos * total_neg))


def average_precision(
    y_true: np.ndarray, scores: np.ndarray, sample_weight: np.ndarray | None = None
) -> float | None:
    """Step-wise average precision (see the module docstring); ``None`` without positives."""
    t, s, w = _prepare(y_true, scores, sample_weight)
    pos, neg = _tie_groups(s, t, w)
    total_pos = pos.sum()
    if total_pos <= 0:
        return None
    tp = np.cumsum(pos)
    fp = np.cumsum(neg)
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
    recall = tp / total_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_curve(
    y_true: np.ndarray, scores: np.ndarray, sample_weight: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """The ROC curve: ``fpr``, ``tpr`` and ``thresholds`` (decision ``score >= threshold``), one
    point per distinct score from the highest down, starting at ``(0, 0)`` with threshold ``+inf``.

    Rates are 0 where a class is absent. Equal to scikit-learn's ``roc_curve`` with
    ``drop_intermediate=False``.
    """
    t, s, w = _prepare(y_true, scores, sample_weight)
    pos, neg = _tie_groups(s, t, w)
    tps, fps = np.r_[0.0, np.cumsum(pos)], np.r_[0.0, np.cumsum(neg)]
    thresholds = np.r_[np.inf, np.unique(s)[::-1]] if len(s) else np.array([np.inf])
    tpr = tps / tps[-1] if tps[-1] > 0 else np.zeros_like(tps)
    fpr = fps / fps[-1] if fps[-1] > 0 else np.zeros_like(fps)
    return {"fpr": fpr, "tpr": tpr, "thresholds": thresholds}


def precision_recall_curve(
    y_true: np.ndarray, scores: np.ndarray, sample_weight: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Precision and recall at every distinct score threshold, from the highest score down
    (``precision``, ``recall``, ``thresholds``); the step-wise area under it is :func:`average_precision`."""
    t, s, w = _prepare(y_true, scores, sample_weight)
    pos, neg = _tie_groups(s, t, w)
    tp, fp = np.cumsum(pos), np.cumsum(neg)
    precision = np.divide(tp, tp + fp, out=np.ones_like(tp), where=(tp + fp) > 0)
    recall = tp / tp[-1] if len(tp) and tp[-1] > 0 else np.zeros_like(tp)
    return {"precision": precision, "recall": recall, "thresholds": np.unique(s)[::-1]}


def youden_threshold(curve: dict[str, np.ndarray]) -> tuple[float, float, float]:
    """The ROC point that maximises Youden's ``J = tpr - fpr``: ``(threshold, fpr, tpr)``, the
    highest threshold among ties."""
    j = curve["tpr"] - curve["fpr"]
    best = int(np.argmax(j))
    return float(curve["thresholds"][best]), float(curve["fpr"][best]), float(curve["tpr"][best])


def score_metrics(
    y_true: np.ndarray, scores: np.ndarray, sample_weight: np.ndarray | None = None
) -> dict[str, Any]:
    """``auc`` and ``ap`` of continuous scores, with the (weighted) numbers of items and positives."""
    t = np.asarray(y_true).astype(bool)
    w = np.ones(len(t)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    return {
        "auc": roc_auc(t, scores, w),
        "ap": average_precision(t, scores, w),
        "n": int(round(w.sum())),
        "positives": int(round(w[t].sum())),
    }


def frame_scores(
    start_frame: np.ndarray, end_frame: np.ndarray, scores: np.ndarray, n_frames: int
) -> np.ndarray:
    """Expand one video's segment scores to ``n_frames`` frame scores (see the module docstring).

    Args:
        start_frame, end_frame: each segment's frame range ``[start, end)``, in time order.
        scores: segment scores.
        n_frames: frames in the video.
    """
    ends = np.asarray(end_frame, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    if len(s) == 0:
        return np.full(n_frames, np.nan)
    order = np.argsort(np.asarray(start_frame), kind="stable")
    ends, s = ends[order], s[order]
    seg = np.searchsorted(ends, np.arange(n_frames), side="right")
    return s[np.minimum(seg, len(s) - 1)]


def span_labels(spans: list[tuple[int, int]] | tuple[tuple[int, int], ...], n_frames: int) -> np.ndarray:
    """Boolean frame labels: frames ``start <= f < end`` of every span are anomalous (clipped to the video)."""
    out = np.zeros(n_frames, dtype=bool)
    for start, end in spans:
        out[max(int(start), 0) : max(min(int(end), n_frames), 0)] = True
    return out
