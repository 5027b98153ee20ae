"""Aggregation of segment decisions into video decisions (pure numpy/pandas).

For a video ``v`` with segments ``i in v``: ``ratio_v = mean_i anomalous_i``; the video is anomalous
when ``ratio_v >= rho`` (``--video-ratio``). ``ratio_v`` is the video's score; ``max_score_v`` is the
highest segment score, reported alongside.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vadindex.config import DEFAULT_VIDEO_RATIO
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
