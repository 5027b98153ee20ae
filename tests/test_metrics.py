"""Metrics against scikit-learn, and the frame-level expansion against loops."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from vadindex.evaluate.annotations import Annotation, build_ground_truth
from vadindex.evaluate.metrics import (
    average_precision,
    binary_metrics,
    frame_scores,
    roc_auc,
    score_metrics,
    span_labels,
)


@pytest.mark.parametrize("seed", range(10))
def test_auc_and_ap_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    scores = np.round(rng.random(n), int(rng.integers(1, 4)))  # coarse rounding makes many ties
    weights = rng.integers(1, 9, n).astype(float)
    assert roc_auc(y, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    assert average_precision(y, scores) == pytest.approx(average_precision_score(y, scores), abs=1e-12)
    assert roc_auc(y, scores, weights) == pytest.approx(
        roc_auc_score(y, scores, sample_weight=weights), abs=1e-12
    )
    assert average_precision(y, scores, weights) == pytest.approx(
        average_precision_score(y, scores, sample_weight=weights), abs=1e-12
    )


def test_weights_equal_repeated_items() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 40)
    s = rng.random(40)
    w = rng.integers(1, 5, 40)
    assert roc_auc(y, s, w) == pytest.approx(roc_auc(np.repeat(y, w), np.repeat(s, w)))
    assert average_precision(y, s, w) == pytest.approx(average_precision(np.repeat(y, w), np.repeat(s, w)))


def test_undefined_scores_are_none() -> None:
    assert roc_auc([1, 1, 1], [0.1, 0.2, 0.3]) is None
    assert average_precision([0, 0], [0.1, 0.2]) is None
    assert score_metrics([0, 0], [0.1, 0.2])["auc"] is None


@pytest.mark.parametrize("seed", range(5))
def test_binary_metrics_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y, p = rng.integers(0, 2, 50), rng.integers(0, 2, 50)
    m = binary_metrics(y, p)
    assert m["confusion_matrix"] == confusion_matrix(y, p, labels=[0, 1]).tolist()
    assert m["precision"] == pytest.approx(precision_score(y, p, zero_division=0))
    assert m["recall"] == pytest.approx(recall_score(y, p, zero_division=0))
    assert m["f1"] == pytest.approx(f1_score(y, p, zero_division=0))


def test_frame_scores_match_loop() -> None:
    starts = np.array([0, 25, 50, 75])
    ends = np.array([25, 50, 75, 100])
    scores = np.array([0.1, 0.2, 0.3, 0.4])
    got = frame_scores(starts[::-1], ends[::-1], scores[::-1], 130)  # any segment order
    for f in range(130):
        inside = [i for i in range(4) if starts[i] <= f < ends[i]]
        assert got[f] == (scores[inside[0]] if inside else scores[-1])  # after the end: the last segment


def test_span_labels_are_half_open_and_clipped() -> None:
    labels = span_labels([(2, 4), (8, 20)], 10)
    assert np.flatnonzero(labels).tolist() == [2, 3, 8, 9]


def test_ground_truth_and_pooled_frame_metrics() -> None:
    segments = pd.DataFrame(
        {
            "video_id": ["a", "a", "b", "b", "c"],
            "start_frame": [0, 10, 0, 10, 0],
            "end_frame": [10, 20, 10, 20, 10],
        }
    )
    videos = pd.DataFrame({"video_id": ["a", "b", "c"], "video": ["x/A1.mp4", "N1.avi", "other.mp4"],
                           "n_frames": [25, 20, 10]})  # fmt: skip
    anns = [Annotation("A1.mkv", "Fighting", ((5, 12),)), Annotation("N1.mp4", "Normal", ()),
            Annotation("gone.mp4", "Arson", ((1, 2),))]  # fmt: skip
    truth = build_ground_truth(segments, videos, anns)
    assert truth.missing == ["gone.mp4"]
    assert truth.video_label.tolist() == [1, 0, -1]
    assert truth.segment_label.tolist() == [1, 1, 0, 0, -1]
    # Video a has 25 frames: frames 20..24 come after its last segment and take segment 1's score.
    assert truth.frame_segment.tolist() == [0] * 10 + [1] * 15 + [2] * 10 + [3] * 10
    assert np.flatnonzero(truth.frame_label).tolist() == list(range(5, 12))
    seg_scores = np.array([0.9, 0.2, 0.4, 0.1, 0.7])
    frames = seg_scores[truth.frame_segment]
    pooled = score_metrics(truth.group_label, seg_scores[truth.group_segment], truth.group_count)
    assert pooled["auc"] == pytest.approx(roc_auc_score(truth.frame_label, frames))
    assert pooled["ap"] == pytest.approx(average_precision_score(truth.frame_label, frames))
    assert pooled["n"] == 45 and pooled["positives"] == 7
