"""Tuning the new knobs: novelty and example weight only where the data has them, several indexes
pooled, and the segment-F1 metric."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from vadindex.detect.grid import DEFAULT_GRID, TuneData, build_candidates, rule_configs, search
from vadindex.errors import InputError
from vadindex.evaluate.annotations import GroundTruth

GRID = {**DEFAULT_GRID, "rule": ["threshold"], "calibrate": ["none", "zscore"], "knn_k": [0], "smooth": [0],
        "n_thresholds": [6], "video_agg": ["ratio"], "video_ratio": [0.1, 0.5], "novelty": [0, 2],
        "novelty_gap": [1.0], "novelty_weight": [0.5, 1.0]}  # fmt: skip


def _data(seed: int, n_videos: int = 16, novelty: bool = True) -> TuneData:
    rng = np.random.default_rng(seed)
    labels = np.array([i % 2 for i in range(n_videos)], dtype=np.int8)
    sizes = rng.integers(4, 8, n_videos)
    codes = np.repeat(np.arange(n_videos), sizes)
    position = np.concatenate([np.arange(k) for k in sizes])
    hot = (labels[codes] == 1) & (position >= 2)
    sims = rng.normal(0.2, 0.02, (len(codes), 4))
    sims[hot, :2] += 0.02
    near = rng.uniform(0.6, 0.9, (len(codes), 3)).astype(np.float32)
    near[hot] -= 0.3  # anomalous segments look unlike the rest of their camera
    seg_label = hot.astype(np.int8)
    truth = GroundTruth(
        frame_segment=np.arange(len(codes)), frame_label=hot, frame_video=codes, segment_label=seg_label,
        video_label=labels, video_class=[None] * n_videos, missing=[], group_segment=np.arange(len(codes)),
        group_label=hot, group_count=np.ones(len(codes), np.int64), group_video=codes,
    )  # fmt: skip
    return TuneData(sims=sims.astype(np.float32), is_anomaly=np.array([True, True, False, False]),
                    logit_scale=100.0, video_codes=codes, position=position,
                    video_ids=np.array([f"v{i:02d}" for i in range(n_videos)]), labels=labels, truth=truth,
                    novelty={1.0: np.sort(near, axis=1)[:, ::-1].copy()} if novelty else None,
                    cameras=codes.astype(str))  # fmt: skip


def test_novelty_is_searched_only_with_neighbours() -> None:
    assert {c["novelty"] for c in rule_configs(GRID, novelty=False)} == {0}
    configs = rule_configs(GRID, novelty=True)
    assert {c["novelty"] for c in configs} == {0, 2}
    assert all(c["novelty_weight"] == DEFAULT_GRID["novelty_weight"][1] or c["novelty"] for c in configs)
    assert {c["example_weight"] for c in rule_configs(GRID, examples=False)} == {0.5}


def test_several_indexes_are_scored_apart_and_pooled() -> None:
    a, b = _data(1), _data(2, n_videos=10)
    cands, seg_scores, _, pooled = build_candidates([a, b], GRID)
    assert len(pooled.video_ids) == 26 and len(next(iter(seg_scores.values()))) == len(a.sims) + len(b.sims)
    assert pooled.truth.group_segment.max() == len(a.sims) + len(b.sims) - 1
    # Calibration stays per index: index b's z-scores do not move when index a changes.
    shifted = replace(a, sims=a.sims + 0.05)
    _, again, _, _ = build_candidates([shifted, b], GRID)
    zscore = next(i for i, c in enumerate(rule_configs(GRID, novelty=True)) if c["calibrate"] == "zscore")
    np.testing.assert_allclose(again[zscore][len(a.sims) :], seg_scores[zscore][len(a.sims) :])
    result = search([a, b], GRID, metric="segment-f1", folds=3)
    assert result.best["novelty"] == 2  # the novelty separates these segments best
    assert all(f["test_segment_f1"] is not None for f in result.folds)


def test_segment_f1_is_the_f1_of_the_chosen_segment_decisions() -> None:
    data = _data(3)
    result = search(data, GRID, metric="segment-f1", folds=2)
    from vadindex.detect.novelty import novelty_scores
    from vadindex.detect.options import DetectOptions
    from vadindex.detect.scoring import apply_rule

    best = result.best
    params = DetectOptions(**best)
    nov = novelty_scores(data.novelty[1.0], params.novelty) if params.novelty else None
    res = apply_rule(data.sims, data.is_anomaly, 100.0, params, video_ids=data.video_codes, novelty=nov)
    y = data.truth.segment_label == 1
    tp, fp, fn = (res.anomalous & y).sum(), (res.anomalous & ~y).sum(), (~res.anomalous & y).sum()
    assert result.in_sample == pytest.approx(2 * tp / (2 * tp + fp + fn))
    with pytest.raises(InputError, match="needs temporal annotations"):
        search(replace(data, truth=None), GRID, metric="segment-f1", folds=2)
