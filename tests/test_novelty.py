"""Novelty against a brute-force numpy reference, per-group calibration, and the novelty mix."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vadindex.detect.novelty import keep_neighbours, max_excluded, novelty_scores
from vadindex.detect.options import DetectOptions
from vadindex.detect.scoring import (
    Calibration,
    apply_rule,
    calibrate_similarities,
)
from vadindex.detect.similarity import load_novelty, segment_novelty
from vadindex.index.cache import camera_neighbours
from vadindex.index.manifest import SEGMENT_COLUMNS
from vadindex.index.reader import open_index
from vadindex.index.writer import IndexWriter, PendingVideo
from vadindex.models.identity import ModelIdentity

DIM = 16
SAMPLING = {"fps": 4.0, "segment_seconds": 1.0, "min_tail_fraction": 0.5}


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def write_random_index(
    path: Path,
    videos: list[tuple[int, str | None]],
    seed: int = 0,
    index_type: str = "flat",
    drift: bool = False,
) -> Path:
    """An index of random unit vectors: ``(segments, camera)`` per video (one frame per segment)."""
    rng = np.random.default_rng(seed)
    writer = IndexWriter(
        path, ModelIdentity("synthetic", "random"), DIM, 100.0, dict(SAMPLING), index_type=index_type
    )
    with writer:
        for v, (n, camera) in enumerate(videos):
            if drift:  # neighbouring segments alike, as in video
                vectors = _unit(
                    rng.standard_normal(DIM) + 0.6 * np.cumsum(rng.standard_normal((n, DIM)), axis=0) / 3
                )
            else:
                vectors = _unit(rng.standard_normal((n, DIM)))
            vid = f"{v:020x}"
            segs = pd.DataFrame({
                "video_id": vid, "video": f"v{v}.mp4", "segment": np.arange(n, dtype=np.int32),
                "start": np.arange(n, dtype=float), "end": np.arange(1, n + 1, dtype=float),
                "start_frame": np.arange(n, dtype=np.int64) * 10, "end_frame": np.arange(1, n + 1, dtype=np.int64) * 10,
                "frame_row": np.arange(n, dtype=np.int64), "n_frames": np.ones(n, dtype=np.int32),
                "label": pd.array([None] * n, dtype="Int8"), "class": pd.array([None] * n, dtype="string"),
            })[SEGMENT_COLUMNS]  # fmt: skip
            video = {"video_id": vid, "video": f"v{v}.mp4", "path": f"/x/v{v}.mp4", "label": None, "class": None,
                     "duration": float(n), "n_frames": 10 * n, "width": 64, "height": 48, "codec": "h264",
                     "n_segments": n, "warning": "", "camera": camera}  # fmt: skip
            writer.add(PendingVideo(video, segs, vectors.astype(np.float32), vectors.astype(np.float16)))
        writer.commit(final=True)
    return path


def reference_novelty(
    x: np.ndarray, camera: np.ndarray, video: np.ndarray, start: np.ndarray, k: int, gap: float
):  # type: ignore[no-untyped-def]
    """The module docstring's formula with loops: candidates, their best k cosines, one minus the mean."""
    out = np.zeros(len(x))
    for i in range(len(x)):
        cands = [
            j for j in range(len(x))
            if j != i and camera[j] == camera[i] and not (video[j] == video[i] and abs(start[j] - start[i]) <= gap)
        ]  # fmt: skip
        sims = sorted((float(x[i] @ x[j]) for j in cands), reverse=True)[:k]
        out[i] = 1.0 - np.mean(sims) if sims else 0.0
    return out


@pytest.mark.parametrize(("k", "gap"), [(1, 0.0), (3, 2.0), (5, 4.5), (10, 30.0)])
def test_novelty_matches_brute_force_on_a_random_index(tmp_path: Path, k: int, gap: float) -> None:
    videos = [(12, "north"), (9, "north"), (7, None), (15, "south"), (4, "south"), (6, None), (1, "east")]
    snap = open_index(write_random_index(tmp_path / "ix", videos, seed=k))
    x = snap.vectors()
    segs = snap.segment_arrays()
    cams = snap.segment_cameras()
    expected = reference_novelty(x, cams, segs.video, segs.start, k, gap)
    got = segment_novelty(snap, k, gap, use_cache=False)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # Cached: computed once, then read back with the same values.
    first = segment_novelty(snap, k, gap)
    assert list((snap.path / "cache").glob(f"nov-*-k{k}-gap{gap:g}.npy"))
    np.testing.assert_allclose(first, expected, atol=1e-5)
    np.testing.assert_allclose(segment_novelty(snap, k, gap), expected, atol=1e-5)


def test_cameras_and_the_gap_decide_who_is_a_neighbour(tmp_path: Path) -> None:
    """Two cameras with identical pictures: a segment never takes the other camera's twin, and its
    own video's segments within the gap are skipped."""
    videos = [(6, "a"), (6, "b")]
    path = write_random_index(tmp_path / "ix", videos)
    snap = open_index(path)
    x = snap.vectors()
    np.testing.assert_allclose(x[:6], x[:6])
    ids, sims = camera_neighbours(snap, snap.segment_cameras(), 11)
    cams = snap.segment_cameras()
    for i in range(12):
        got = ids[i][ids[i] >= 0]
        assert set(cams[got]) == {cams[i]} and i not in got and len(got) == 5
    kept = load_novelty(snap, 5, 2.0, use_cache=False)
    # Segment 0 keeps segments 3, 4, 5 of its video (starts 3-5 s away), not 1 and 2.
    expected = sorted((float(x[0] @ x[j]) for j in (3, 4, 5)), reverse=True)
    np.testing.assert_allclose(kept[0][:3], expected, atol=1e-5)
    assert np.isnan(kept[0][3:]).all()


def test_a_segment_without_candidates_has_novelty_zero(tmp_path: Path) -> None:
    snap = open_index(write_random_index(tmp_path / "ix", [(3, "solo"), (4, None)]))
    got = segment_novelty(snap, 3, 10.0, use_cache=False)  # every same-video segment is within the gap
    assert (got == 0).all()


def test_ivf_cells_find_the_exact_neighbours(tmp_path: Path) -> None:
    """Through the IVF cells: exact when the candidates cover the camera, and close when they do not."""
    videos = [(50, "a") for _ in range(16)] + [(50, None) for _ in range(4)]
    snap = open_index(write_random_index(tmp_path / "ix", videos, index_type="ivf", drift=True))
    assert "ivf" in snap.manifest.index_type
    cams = snap.segment_cameras()
    exact_ids, exact_sims = camera_neighbours(snap, cams, 5, exact_rows=10**9)
    all_ids, all_sims = camera_neighbours(snap, cams, 5, exact_rows=100, candidates=10**6)
    np.testing.assert_allclose(all_sims, exact_sims, atol=1e-5)
    few_ids, few_sims = camera_neighbours(snap, cams, 5, exact_rows=100, candidates=200)
    camera_a = np.flatnonzero(cams == "a")
    recall = np.mean([len(set(few_ids[i]) & set(exact_ids[i])) / 5 for i in camera_a])
    assert recall > 0.8
    assert (few_sims[camera_a] <= exact_sims[camera_a] + 1e-5).all()  # never better than exact


def test_max_excluded_and_keep_neighbours_against_loops() -> None:
    rng = np.random.default_rng(3)
    video = rng.integers(0, 4, 60)
    start = np.round(rng.uniform(0, 20, 60) * 2) / 2
    gap = 2.5
    brute = max(
        sum(1 for j in range(60) if j != i and video[j] == video[i] and abs(start[j] - start[i]) <= gap)
        for i in range(60)
    )
    assert max_excluded(video, start, gap) == brute
    ids = np.array([rng.permutation(60)[:12] for _ in range(60)])
    sims = rng.uniform(-1, 1, ids.shape).astype(np.float32)
    kept = keep_neighbours(ids, sims, video, start, gap, 4)
    for i in range(60):
        ok = [s for j, s in zip(ids[i], sims[i], strict=True)
              if j != i and not (video[j] == video[i] and abs(start[j] - start[i]) <= gap)]  # fmt: skip
        want = sorted(ok, reverse=True)[:4]
        np.testing.assert_allclose(kept[i][: len(want)], want)
        assert np.isnan(kept[i][len(want) :]).all()
    nov = novelty_scores(kept, 2)
    for i in range(60):
        have = kept[i][:2][~np.isnan(kept[i][:2])]
        assert nov[i] == pytest.approx(1 - have.astype(np.float64).mean() if len(have) else 0.0, abs=1e-6)


@pytest.mark.parametrize("method", ["zscore", "percentile"])
def test_grouped_calibration_is_per_group(method: str) -> None:
    rng = np.random.default_rng(5)
    sims = rng.normal(0.2, 0.05, (200, 3))
    sims[:20] = np.round(sims[:20], 2)  # ties
    groups = np.array(["cam-a", "cam-b", "cam-c", 7], dtype=object)[rng.integers(0, 4, 200)].astype(str)
    got = calibrate_similarities(sims, method, groups)
    for g in np.unique(groups):
        rows = groups == g
        np.testing.assert_allclose(got[rows], calibrate_similarities(sims[rows], method), atol=1e-12)
    # Fitted statistics (what watch calibrates new segments with) give the same values.
    for g in np.unique(groups):
        rows = groups == g
        np.testing.assert_allclose(
            Calibration.fit(sims[rows], method).apply(sims[rows]), got[rows], atol=1e-12
        )
    np.testing.assert_allclose(
        calibrate_similarities(sims, method, None), calibrate_similarities(sims, method)
    )


@pytest.mark.parametrize(("calibrate", "by"), [("none", "index"), ("zscore", "index"), ("percentile", "camera"),
                                               ("zscore", "video")])  # fmt: skip
def test_novelty_mix_follows_the_formula(calibrate: str, by: str) -> None:
    rng = np.random.default_rng(9)
    n = 120
    sims = rng.normal(0.25, 0.04, (n, 4)).astype(np.float32)
    is_anomaly = np.array([True, True, False, False])
    video = np.repeat(np.arange(12), 10)
    cameras = np.array(["x", "y", "z"])[video % 3]
    novelty = rng.uniform(0, 0.4, n)
    w = 0.3
    base = DetectOptions(calibrate=calibrate, calibrate_by=by, segment_threshold=0.1)
    text = apply_rule(sims, is_anomaly, 100.0, base, video_ids=video, cameras=cameras)
    mixed = apply_rule(sims, is_anomaly, 100.0, base.replace(novelty=5, novelty_weight=w), video_ids=video,
                       novelty=novelty, cameras=cameras)  # fmt: skip
    groups = {"index": None, "camera": cameras, "video": video}[by]
    nu = calibrate_similarities(novelty[:, None], calibrate, groups)[:, 0]
    np.testing.assert_allclose(mixed.score, (1 - w) * text.score + w * nu, atol=1e-6)
    only = apply_rule(sims, is_anomaly, 100.0, base.replace(novelty=5, novelty_weight=1.0), video_ids=video,
                      novelty=novelty, cameras=cameras)  # fmt: skip
    np.testing.assert_allclose(only.score, nu, atol=1e-6)


def test_novelty_module_is_pure() -> None:
    tree = ast.parse((Path(__file__).resolve().parents[1] / "vadindex/detect/novelty.py").read_text())
    imported = {n.module for n in tree.body if isinstance(n, ast.ImportFrom)} | {
        a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names
    }
    assert imported <= {"__future__", "numpy"}, imported


def test_one_blas_thread_while_the_machine_is_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from threadpoolctl import threadpool_info

    from vadindex.index import cache

    def blas_threads() -> set[int]:
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    monkeypatch.setattr(os, "getloadavg", lambda: (float(os.cpu_count() or 1) + 5, 0.0, 0.0))
    with cache._blas_threads():
        assert blas_threads() <= {1}
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    before = blas_threads()
    with cache._blas_threads():
        assert blas_threads() == before
