"""Metrics of a detection against the ground truth: video labels, and frame, segment and per-class
metrics with temporal annotations (the benchmarks' protocol; formulas in :mod:`vadindex.evaluate.metrics`)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from vadindex.evaluate.annotations import GroundTruth
from vadindex.evaluate.metrics import average_precision, binary_metrics, roc_auc, score_metrics


def fill_from_annotations(vids: pd.DataFrame, videos: pd.DataFrame, truth: GroundTruth) -> None:
    """Label and class videos that the index left unlabelled from the annotation file."""
    pos = pd.Series(np.arange(len(videos)), index=videos["video_id"].astype(str).to_numpy())
    at = pos.reindex(vids["video_id"].astype(str)).to_numpy()
    ann_label = truth.video_label[at]
    missing = vids["label"].isna().to_numpy() & (ann_label >= 0)
    labels = vids["label"].copy()
    labels[missing] = ann_label[missing]
    vids["label"] = labels.astype("Int8")
    classes = np.array(vids["class"].astype(object).to_numpy(), dtype=object)
    for i in np.flatnonzero(pd.isna(classes)):
        classes[i] = truth.video_class[at[i]]
    vids["class"] = classes


def without_segments(truth: GroundTruth, exclude: np.ndarray) -> GroundTruth:
    """``truth`` with the ``exclude``-d segments (a boolean mask over index rows) and their frames
    left out of every metric: their segment labels become unknown, their frames are dropped."""
    mask = np.asarray(exclude, dtype=bool)
    keep = ~mask[truth.group_segment]
    frames = ~mask[truth.frame_segment]
    return dataclasses.replace(
        truth, segment_label=np.where(mask, -1, truth.segment_label).astype(np.int8),
        frame_segment=truth.frame_segment[frames], frame_label=truth.frame_label[frames],
        frame_video=truth.frame_video[frames], group_segment=truth.group_segment[keep],
        group_label=truth.group_label[keep], group_count=truth.group_count[keep], group_video=truth.group_video[keep],
    )  # fmt: skip


def evaluate(
    vids: pd.DataFrame,
    seg_scores: np.ndarray,
    seg_anomalous: np.ndarray,
    truth: GroundTruth | None,
    video_ids: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
    segment_video: np.ndarray | None = None,
) -> dict[str, Any] | None:
    """Video-level metrics (flat), plus frame, segment and per-class metrics with annotations.

    Args:
        vids: video table with ``label``, ``anomalous``, ``score``, ``class``, ``video_id``.
        seg_scores, seg_anomalous: final segment scores and decisions, in index row order.
        truth: matched annotations, or ``None``.
        video_ids: the index's video ids in the order ``truth`` uses.
        exclude: segments to leave out (reviewer-labelled ones, whose scores their own labels
            raised): frame and segment metrics skip them, video metrics skip the videos that hold
            them (``segment_video``: each segment's position in ``video_ids``).

    Returns:
        ``None`` when nothing is labelled.
    """
    excluded: dict[str, int] = {}
    if exclude is not None and np.any(exclude):
        if video_ids is None or segment_video is None:
            raise ValueError("exclude needs video_ids and segment_video")
        mask = np.asarray(exclude, dtype=bool)
        held = set(np.asarray(video_ids)[np.unique(np.asarray(segment_video)[mask])].astype(str))
        drop = vids["video_id"].astype(str).isin(held).to_numpy()
        vids = vids[~drop]
        excluded = {"excluded_segments": int(mask.sum()), "excluded_videos": int(drop.sum())}
        if truth is not None:
            truth = without_segments(truth, mask)
    labelled = vids["label"].notna().to_numpy()
    if not labelled.any() and truth is None:
        return None
    y = vids.loc[labelled, "label"].astype(int).to_numpy()
    metrics: dict[str, Any] = binary_metrics(y, vids.loc[labelled, "anomalous"].to_numpy(bool))
    metrics["level"] = "video"
    metrics["unlabelled_videos"] = int((~labelled).sum())
    vscore = vids.loc[labelled, "score"].to_numpy(np.float64)
    metrics["video_auc"] = roc_auc(y, np.nan_to_num(vscore, nan=-np.inf))
    if truth is not None:
        scores = np.asarray(seg_scores, dtype=np.float64)
        frame = score_metrics(truth.group_label, scores[truth.group_segment], truth.group_count)
        metrics["frame_auc"], metrics["frame_ap"] = frame["auc"], frame["ap"]
        metrics["frames"], metrics["frame_positives"] = frame["n"], frame["positives"]
        known = truth.segment_label >= 0
        seg = binary_metrics(truth.segment_label[known] == 1, np.asarray(seg_anomalous)[known])
        seg.update(
            {
                k: v
                for k, v in score_metrics(truth.segment_label[known] == 1, scores[known]).items()
                if k in ("auc", "ap")
            }
        )
        metrics["segment"] = seg
        metrics["annotated_videos"] = int((truth.video_label >= 0).sum())
        metrics["annotations_missing"] = len(truth.missing)
        if truth.missing:
            metrics["annotations_missing_examples"] = truth.missing[:5]
    metrics["per_class"] = _per_class(vids[labelled], truth, video_ids, seg_scores)
    metrics.update(excluded)
    return metrics


def _per_class(
    vids: pd.DataFrame, truth: GroundTruth | None, video_ids: np.ndarray | None, seg_scores: np.ndarray
) -> dict[str, dict[str, Any]]:
    """Per ground-truth class: videos, how many were flagged (recall, or the false-positive rate of
    normal classes) and, with annotations, the frame AUC of the class's videos pooled with all normal
    videos, as the benchmarks report per-class AUC."""
    labels = vids["label"].astype(int).to_numpy()
    raw = vids["class"].astype(object).to_numpy()
    names = np.array(
        [
            str(c) if not pd.isna(c) else ("Normal" if lab == 0 else "Anomaly")
            for c, lab in zip(raw, labels, strict=True)
        ],
        dtype=object,
    )
    flagged = vids["anomalous"].to_numpy(bool)
    frame_video = None
    if truth is not None and video_ids is not None:
        where = pd.Series(np.arange(len(video_ids)), index=video_ids)
        positions = where.reindex(vids["video_id"].astype(str)).to_numpy()
        frame_video = truth.group_video
    scores = np.asarray(seg_scores, dtype=np.float64)
    out: dict[str, dict[str, Any]] = {}
    for cls in sorted(set(names)):
        mask = names == cls
        normal = bool((labels[mask] == 0).all())
        rate = "false_positive_rate" if normal else "recall"
        entry: dict[str, Any] = {"videos": int(mask.sum()), "flagged": int(flagged[mask].sum()),
                                 rate: float(flagged[mask].mean())}  # fmt: skip
        if frame_video is not None and truth is not None and not normal:
            pool = positions[mask | (labels == 0)]
            keep = np.isin(frame_video, pool[~np.isnan(pool)].astype(np.int64))
            if keep.any():
                args = (truth.group_label[keep], scores[truth.group_segment[keep]], truth.group_count[keep])
                entry["frame_auc"] = roc_auc(*args)
                entry["frame_ap"] = average_precision(*args)
        out[cls] = entry
    return out
