"""Building an index from real clips: times, alignment, incremental builds."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from tests.conftest import write_video
from vadindex.index.reader import open_index
from vadindex.ingest import build_index


def _decoded_duration(path: Path) -> float:
    with av.open(str(path)) as c:
        times = [f.time for f in c.decode(video=0)]
    return times[-1] - times[0]


def test_segment_times_match_video_durations(built_index: Path, small_clips: Path) -> None:
    snap = open_index(built_index)
    assert snap.manifest.n_videos == 6
    for _, video in snap.videos.iterrows():
        segs = snap.segments[snap.segments["video_id"] == video["video_id"]]
        true = _decoded_duration(small_clips / video["video"])
        # Duration = last frame time + one frame; segments tile [0, duration) in 1 s steps.
        assert true < video["duration"] < true + 0.25
        assert segs["start"].iloc[0] == 0.0
        assert np.allclose(segs["start"].to_numpy()[1:], segs["end"].to_numpy()[:-1])
        assert segs["end"].iloc[-1] <= video["duration"] + 1e-9
        assert video["duration"] - segs["end"].iloc[-1] < 0.5
        assert (segs["end_frame"].to_numpy() <= video["n_frames"]).all()
        assert (segs["segment"].to_numpy() == np.arange(len(segs))).all()


def test_zero_frame_header_and_vfr_clips(built_index: Path) -> None:
    videos = open_index(built_index).videos.set_index("video")
    assert videos.loc["highway-cyclist.avi", "n_frames"] == 748  # the header claims 0
    assert videos.loc["highway-cyclist.avi", "n_segments"] == 30
    assert videos.loc["traffic_camera_vfr.mp4", "duration"] == pytest.approx(34.5, abs=0.1)
    assert videos.loc["traffic_camera_vfr.mp4", "n_segments"] == 35


def test_metadata_aligned_with_vectors(built_index: Path, encoder) -> None:  # type: ignore[no-untyped-def]
    snap = open_index(built_index)
    segs = snap.segments
    vectors = snap.vectors()
    frames = snap.frame_vectors().astype(np.float32)
    assert len(segs) == len(vectors) == snap.faiss_index().ntotal == snap.manifest.n_segments
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=2e-3)
    # Row i's vector is the normalised mean of its own frames.
    for i in (0, len(segs) // 2, len(segs) - 1):
        r, n = segs["frame_row"].iloc[i], segs["n_frames"].iloc[i]
        mean = frames[r : r + n].mean(axis=0)
        assert np.allclose(mean / np.linalg.norm(mean), vectors[i], atol=3e-3)
    # And the segment's frames re-encoded from the video give the same vector.
    from vadindex.config import SamplingSettings
    from vadindex.ingest import ingest_video
    from vadindex.ingest.sources import VideoSource

    first = snap.videos.iloc[0]
    item = ingest_video(VideoSource(Path(first["path"]), first["video"]), encoder, SamplingSettings())
    rows = segs.index[segs["video_id"] == first["video_id"]]
    assert np.allclose(item.segment_vectors, vectors[rows], atol=3e-3)


def test_incremental_build_adds_only_new_videos(tmp_path: Path, small_clips: Path, encoder) -> None:  # type: ignore[no-untyped-def]
    index = tmp_path / "ix"
    first = build_index([small_clips / "fight"], index, encoder=encoder, progress=False)
    assert first.videos_added == 2
    again = build_index(
        [small_clips / "fight", small_clips / "nofight"], index, encoder=encoder, progress=False
    )
    assert (again.videos_added, again.videos_skipped) == (2, 2)
    copy = tmp_path / "copy.mp4"
    shutil.copy(small_clips / "fight" / "fi001.mp4", copy)  # same content, other name
    third = build_index([copy], index, encoder=encoder, progress=False)
    assert (third.videos_added, third.videos_skipped) == (0, 1)
    snap = open_index(index)
    assert snap.videos["video_id"].is_unique and len(snap.videos) == 4
    assert snap.segments.groupby("video_id").size().sum() == snap.manifest.n_segments


def test_bad_videos_are_skipped_and_listed(tmp_path: Path, encoder) -> None:  # type: ignore[no-untyped-def]
    good = write_video(tmp_path / "v" / "good.mp4", seconds=2.0)
    (tmp_path / "v" / "empty.mp4").write_bytes(b"")
    (tmp_path / "v" / "text.mp4").write_text("not a video at all\n" * 50)
    write_video(tmp_path / "v" / "short.mp4", seconds=0.5)
    truncated = tmp_path / "v" / "trunc.mp4"
    truncated.write_bytes(good.read_bytes()[:300])
    summary = build_index([tmp_path / "v"], tmp_path / "ix", encoder=encoder, progress=False)
    assert summary.videos_added == 1
    reasons = {Path(p).name: r for p, r in summary.failures}
    assert set(reasons) == {"empty.mp4", "text.mp4", "short.mp4", "trunc.mp4"}
    assert "empty" in reasons["empty.mp4"] and "shorter than one segment" in reasons["short.mp4"]
    assert all("\n" not in r for r in reasons.values())
    assert (tmp_path / "ix" / "failures.csv").read_text().count("\n") == 5


def test_index_records_model_and_sampling(built_index: Path) -> None:
    m = open_index(built_index).manifest
    assert (m.model, m.pretrained, m.dim) == ("vadindex-test", "random", 64)
    assert m.sampling["fps"] == 4.0 and m.sampling["segment_seconds"] == 1.0
    assert m.metric == "inner_product" and m.logit_scale > 1
