"""Scoring rules and video aggregation against brute-force loops over plain numpy."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from vadindex.detect.aggregate import aggregate_segments, aggregate_videos, video_scores
from vadindex.detect.options import DetectOptions
from vadindex.detect.scoring import (
    apply_rule,
    calibrate_similarities,
    decide_segments,
    knn_blend,
    kth_largest_per_segment,
    score_segments,
    smooth_scores,
)
from vadindex.errors import InputError
from vadindex.index.cache import nearest_neighbours

LAM = 100.0


def _data(seed: int = 0, n_videos: int = 5, n_classes: int = 6):  # type: ignore[no-untyped-def]
    """Seeded segments of several videos, with frames, as an index would store them."""
    rng = np.random.default_rng(seed)
    per_video = rng.integers(1, 7, n_videos)
    video_ids = np.repeat([f"v{i}" for i in range(n_videos)], per_video)
    position = np.concatenate([np.arange(k) for k in per_video])
    n = len(video_ids)
    n_frames = rng.integers(1, 6, n)
    frame_row = np.cumsum(n_frames) - n_frames
    frame_sims = rng.normal(0.2, 0.05, (int(n_frames.sum()), n_classes)).astype(np.float32)
    sims = rng.normal(0.2, 0.05, (n, n_classes)).astype(np.float32)
    is_anomaly = np.array([True, True, True, False, False, False][:n_classes])
    return sims, is_anomaly, video_ids, position, frame_sims, frame_row, n_frames


def _softmax_mass(row: np.ndarray, is_anomaly: np.ndarray) -> float:
    e = np.exp(LAM * row - (LAM * row).max())
    return float(e[is_anomaly].sum() / e.sum())


def test_calibration_matches_loops() -> None:
    sims = _data()[0]
    z = calibrate_similarities(sims, "zscore")
    pct = calibrate_similarities(sims, "percentile")
    for c in range(sims.shape[1]):
        col = sims[:, c].astype(np.float64)
        for i in range(len(col)):
            assert z[i, c] == pytest.approx((col[i] - col.mean()) / col.std())
            assert pct[i, c] == pytest.approx(sum(v <= col[i] for v in col) / len(col))


@pytest.mark.parametrize("calibrate", ["none", "zscore", "percentile"])
@pytest.mark.parametrize("rule", ["threshold", "balanced", "topk"])
def test_rules_match_loops(rule: str, calibrate: str) -> None:
    sims, is_anomaly, *_ = _data(1)
    tau = {"none": 0.5, "zscore": 0.8, "percentile": 0.7}[calibrate]
    params = DetectOptions(rule, tau, 3, calibrate)
    res = apply_rule(sims, is_anomaly, LAM, params)
    values = calibrate_similarities(sims, calibrate)
    for i in range(len(sims)):
        if calibrate == "none":
            a = _softmax_mass(sims[i].astype(np.float64), is_anomaly)
        else:
            a = max(values[i, c] for c in range(len(is_anomaly)) if is_anomaly[c])
        best_a = max(values[i, c] for c in range(len(is_anomaly)) if is_anomaly[c])
        best_n = max(values[i, c] for c in range(len(is_anomaly)) if not is_anomaly[c])
        if rule == "threshold":
            expected = a >= tau
        elif rule == "balanced":
            expected = a >= tau and best_a > best_n
        else:
            ranked = sorted(range(len(is_anomaly)), key=lambda c: -values[i, c])
            if values[i, ranked[2]] == values[i, ranked[3]]:
                continue  # a tie at the k-th place: either class may vote (percentiles tie often)
            expected = sum(is_anomaly[c] for c in ranked[:3]) > 1.5
        assert res.score[i] == pytest.approx(a, abs=1e-6)
        assert bool(res.anomalous[i]) == expected
        assert is_anomaly[res.best_anomaly_class[i]]
        assert values[i, res.best_anomaly_class[i]] == pytest.approx(best_a)


def _readme_score(row: np.ndarray, is_anomaly: np.ndarray, lam: float) -> float:
    """The README's ``a_i = Σ_{c∈A} softmax_c(λ·S[i,:])``, term by term in plain Python floats."""
    terms = [math.exp(lam * float(v)) for v in row]
    return sum(t for t, a in zip(terms, is_anomaly, strict=True) if a) / sum(terms)


@pytest.mark.parametrize(
    ("row", "is_anomaly", "expected"),
    [
        # One anomaly and one normal class: the logistic function of λ times their difference.
        ([0.25, 0.20], [True, False], 1 / (1 + math.exp(-LAM * 0.05))),
        ([0.20, 0.25], [True, False], 1 / (1 + math.exp(LAM * 0.05))),
        # Equal similarities: the anomaly classes' share of the classes.
        ([0.3, 0.3, 0.3, 0.3], [True, False, False, False], 0.25),
        ([0.3, 0.3, 0.3, 0.3, 0.3], [True, True, True, False, False], 0.6),
        # Two anomaly classes 0.01 above two normal ones: 2e / (2e + 2), e = exp(λ·0.01).
        ([0.31, 0.31, 0.30, 0.30], [True, True, False, False], math.e / (math.e + 1)),
        # Far apart: saturates without overflow (λ·S = 100 would overflow a naive exp in float32).
        ([1.0, 0.0, 0.0], [True, False, False], 1 / (1 + 2 * math.exp(-LAM))),
        ([0.0, 1.0], [True, False], math.exp(-LAM)),
    ],
)
def test_softmax_score_matches_the_readme_formula(
    row: list[float], is_anomaly: list[bool], expected: float
) -> None:
    sims = np.array([row], dtype=np.float32)
    flags = np.array(is_anomaly)
    assert _readme_score(np.array(row), flags, LAM) == pytest.approx(expected, rel=1e-9, abs=1e-300)
    # float32 inside (see softmax_anomaly_score): agreement to 1e-5 relative (tiny values absolutely).
    assert score_segments(sims, flags, LAM).score[0] == pytest.approx(expected, rel=1e-5, abs=1e-30)
    res = apply_rule(sims, flags, LAM, DetectOptions("threshold", 0.5))
    assert res.score[0] == pytest.approx(expected, rel=1e-5, abs=1e-30)
    assert bool(res.anomalous[0]) == (expected >= 0.5)


@pytest.mark.parametrize("rule", ["threshold", "topk", "balanced"])
def test_apply_rule_keeps_old_rules(rule: str) -> None:
    sims, is_anomaly, *_ = _data(2)
    params = DetectOptions(rule, 0.4, 3)
    old = decide_segments(sims, is_anomaly, score_segments(sims, is_anomaly, LAM), params)
    new = apply_rule(sims, is_anomaly, LAM, params)
    assert (old == new.anomalous).all()
    expected = [_readme_score(row, is_anomaly, LAM) for row in sims]
    assert np.allclose(new.score, expected, rtol=1e-5, atol=1e-9)
    assert np.allclose(score_segments(sims, is_anomaly, LAM).score, expected, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("m", [1, 2, 3, 9])
def test_frame_vote_matches_loop(m: int) -> None:
    sims, is_anomaly, video_ids, position, frame_sims, frame_row, n_frames = _data(3)
    tau = 0.5
    params = DetectOptions("frame-vote", tau, frame_votes=m)
    res = apply_rule(
        sims, is_anomaly, LAM, params, frame_sims=frame_sims, frame_row=frame_row, n_frames=n_frames
    )
    for i in range(len(sims)):
        frame_scores = [_softmax_mass(frame_sims[f].astype(np.float64), is_anomaly)
                        for f in range(frame_row[i], frame_row[i] + n_frames[i])]  # fmt: skip
        votes = sum(s >= tau for s in frame_scores)
        assert bool(res.anomalous[i]) == (votes >= min(m, n_frames[i]))
        # The softmax runs in float32 (see softmax_anomaly_score): agreement to 1e-5 relative.
        expected = sorted(frame_scores, reverse=True)[min(m, n_frames[i]) - 1]
        assert res.score[i] == pytest.approx(expected, rel=1e-5)


def test_kth_largest_handles_unordered_rows() -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.3])
    out = kth_largest_per_segment(scores, np.array([3, 0]), np.array([2, 3]), 2)
    assert out.tolist() == [0.3, 0.5]


@pytest.mark.parametrize("h", [1, 2, 5])
def test_smoothing_matches_loop(h: int) -> None:
    _, _, video_ids, position, *_ = _data(4, n_videos=6)
    rng = np.random.default_rng(0)
    scores = rng.random(len(video_ids))
    perm = rng.permutation(len(video_ids))  # rows need not be in video order
    got = smooth_scores(scores[perm], video_ids[perm], position[perm], h)
    for j, i in enumerate(perm):
        same = [
            k
            for k in range(len(scores))
            if video_ids[k] == video_ids[i] and abs(position[k] - position[i]) <= h
        ]
        assert got[j] == pytest.approx(np.mean(scores[same]))


def test_knn_blend_and_neighbours_match_loops() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    nb = nearest_neighbours(x, 4)
    for i in range(len(x)):
        sims = [(-(float(x[i] @ x[j])), j) for j in range(len(x)) if j != i]
        assert nb[i].tolist() == [j for _, j in sorted(sims)[:4]]
    a = rng.random(len(x))
    got = knn_blend(a, nb, 0.3)
    for i in range(len(x)):
        assert got[i] == pytest.approx(0.7 * a[i] + 0.3 * np.mean([a[j] for j in nb[i]]))


def test_faiss_neighbours_agree_with_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    import vadindex.index.cache as cache

    rng = np.random.default_rng(6)
    x = rng.normal(size=(200, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    expected = nearest_neighbours(x, 5)
    monkeypatch.setattr(cache, "FAISS_MIN_ROWS", 0)
    assert (nearest_neighbours(x, 5) == expected).all()


def test_pipeline_order_knn_then_smoothing() -> None:
    """kNN refinement, then smoothing, each as the README writes it, in loops."""
    sims, is_anomaly, video_ids, position, *_ = _data(7)
    nb = np.stack([np.roll(np.arange(len(sims)), -s) for s in (1, 2)], axis=1)
    alpha, h = 0.4, 1
    params = DetectOptions("threshold", 0.5, smooth=h, knn_k=2, knn_alpha=alpha)
    res = apply_rule(sims, is_anomaly, LAM, params, video_ids=video_ids, position=position, neighbours=nb)
    a = [_readme_score(row, is_anomaly, LAM) for row in sims]
    # a'_i = (1 − α)·a_i + α·mean_{j∈N_K(i)} a_j
    refined = [(1 - alpha) * a[i] + alpha * sum(a[j] for j in nb[i]) / len(nb[i]) for i in range(len(a))]
    # then the mean over the segments of the same video at most h positions away
    expected = []
    for i in range(len(a)):
        near = [
            refined[j]
            for j in range(len(a))
            if video_ids[j] == video_ids[i] and abs(position[j] - position[i]) <= h
        ]
        expected.append(sum(near) / len(near))
    assert np.allclose(res.raw_score, a, rtol=1e-5)
    assert np.allclose(res.score, expected, rtol=1e-5)
    clear = np.abs(np.array(expected) - 0.5) > 1e-5
    assert (res.anomalous[clear] == (np.array(expected) >= 0.5)[clear]).all()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"rule": "threshold", "segment_threshold": 1.5}, "segment-threshold"),
        ({"calibrate": "minmax"}, "unknown calibration"),
        ({"smooth": -1}, "smooth"),
        ({"knn_alpha": 2}, "knn-alpha"),
        ({"rule": "frame-vote", "frame_votes": 0}, "frame-votes"),
    ],
)
def test_bad_rule_params(params: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        DetectOptions(**params)


def test_topk_needs_enough_classes() -> None:
    DetectOptions("topk", top_k=4).check_classes(4)
    with pytest.raises(InputError, match="top-k 5 is more than the 4"):
        DetectOptions("topk", top_k=5).check_classes(4)


def test_zscore_threshold_may_exceed_one() -> None:
    DetectOptions("threshold", 2.5, calibrate="zscore").check_classes(4)


def test_pipeline_needs_its_context() -> None:
    sims, is_anomaly, *_ = _data()
    with pytest.raises(InputError, match="frame"):
        apply_rule(sims, is_anomaly, LAM, DetectOptions("frame-vote"))
    with pytest.raises(InputError, match="smooth"):
        apply_rule(sims, is_anomaly, LAM, DetectOptions(smooth=1))


# -- video aggregation ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["ratio", "max", "topk-mean"])
def test_video_scores_match_loops(method: str) -> None:
    rng = np.random.default_rng(8)
    codes = rng.integers(0, 6, 50)
    codes[:6] = np.arange(6)
    scores = rng.random(50)
    anomalous = rng.random(50) > 0.6
    got = video_scores(codes, 6, scores, anomalous, method, 3)
    for v in range(6):
        mine = scores[codes == v]
        if method == "ratio":
            expected = anomalous[codes == v].mean()
        elif method == "max":
            expected = mine.max()
        else:
            expected = np.mean(sorted(mine, reverse=True)[:3])
        assert got[v] == pytest.approx(expected)


def test_aggregate_segments_ratio_equals_aggregate_videos() -> None:
    rng = np.random.default_rng(9)
    vids = rng.choice(["a", "b", "c", "d"], 30)
    scores = rng.random(30)
    anomalous = scores > 0.6
    old = aggregate_videos(vids, scores, anomalous, 0.3)
    new = aggregate_segments(vids, scores, anomalous, method="ratio", video_ratio=0.3)
    pd.testing.assert_series_equal(old["anomalous"], new["anomalous"])
    assert np.allclose(old["ratio"], new["score"])
    assert np.allclose(old["max_score"], new["max_score"])
    assert list(new["video_id"]) == list(pd.unique(vids))


def test_aggregate_max_and_topk_mean_decisions() -> None:
    vids = np.array(["a", "a", "a", "b", "b"])
    scores = np.array([0.9, 0.1, 0.2, 0.4, 0.5])
    out = aggregate_segments(vids, scores, scores > 0.5, method="max", video_threshold=0.5)
    assert out["anomalous"].tolist() == [True, True]
    out = aggregate_segments(vids, scores, scores > 0.5, method="topk-mean", video_threshold=0.5, top_k=2)
    assert out["score"].tolist() == pytest.approx([0.55, 0.45])
    assert out["anomalous"].tolist() == [True, False]
    assert out["n_anomalous"].tolist() == [1, 0]
    assert out["n_anomalous"].dtype.kind == "i"  # counts, not floats
    with pytest.raises(InputError, match="video-threshold"):
        aggregate_segments(vids, scores, scores > 0.5, method="max", video_threshold=float("nan"))
    with pytest.raises(InputError, match="video aggregation"):
        aggregate_segments(vids, scores, scores > 0.5, method="median")


@pytest.mark.parametrize("contiguous", [True, False])
def test_top_segments_match_a_loop(contiguous: bool) -> None:
    from vadindex.detect.aggregate import top_segments

    rng = np.random.default_rng(4)
    codes = np.sort(rng.integers(0, 9, 300)) if contiguous else rng.integers(0, 9, 300)
    codes[codes == 4] = 5  # video 4 has no segment
    scores = rng.integers(0, 20, 300).astype(float)  # many ties: the first row must win
    rows, best = top_segments(codes, 10, scores)
    for v in range(10):
        mine = np.flatnonzero(codes == v)
        if len(mine) == 0:
            assert rows[v] == -1 and np.isnan(best[v])
            continue
        expected = mine[np.argmax(scores[mine])]  # argmax takes the first maximum
        assert rows[v] == expected and best[v] == scores[expected]


@pytest.mark.parametrize("contiguous", [True, False])
def test_top_segments_skip_nan_scores(contiguous: bool) -> None:
    from vadindex.detect.aggregate import top_segments

    codes = np.array([0, 0, 1, 1, 2] if contiguous else [1, 0, 2, 0, 1])
    scores = np.array([0.2, np.nan, 0.5, 0.1, np.nan])
    rows, best = top_segments(codes, 3, scores)
    # A NaN is never chosen over a number, and the chosen row belongs to its own video.
    assert [codes[r] for r in rows] == [0, 1, 2]
    assert not np.isnan(scores[rows[0]]) and not np.isnan(scores[rows[1]])
    assert np.isnan(best[codes[1]]) and np.isnan(best[codes[4]])  # a NaN makes its video's maximum NaN
