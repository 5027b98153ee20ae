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


def _readme_segment_vectors(path: Path, encoder, fps: float, spans: list[tuple[float, float]]):  # type: ignore[no-untyped-def]
    """Segment vectors re-derived from the README's sampling rules with PyAV and the encoder alone:
    a sample at ``t = j / fps`` is the frame on screen at ``t`` (timestamps from the first frame),
    each frame scaled (bicubic) so its shortest side is the model's input size and centre-cropped;
    segment ``k`` holds the samples in its span ``[k L, min((k+1) L, duration))``; its vector is
    the L2-normalised mean."""
    size = encoder.image_size
    with av.open(str(path)) as c:
        frames = [(f.time, f) for f in c.decode(video=0)]
    t0 = frames[0][0]
    times = np.array([t - t0 for t, _ in frames])
    crops, seg_of = [], []
    for k, (start, end) in enumerate(spans):
        j = int(np.ceil(start * fps - 1e-9))
        while j / fps < end - 1e-9:
            shown = frames[int(np.searchsorted(times, j / fps + 1e-9, side="right")) - 1][1]
            scale = size / min(shown.width, shown.height)
            w, h = max(size, round(shown.width * scale)), max(size, round(shown.height * scale))
            rgb = shown.reformat(width=w, height=h, format="rgb24", interpolation="BICUBIC").to_ndarray()
            crops.append(
                rgb[(h - size) // 2 : (h - size) // 2 + size, (w - size) // 2 : (w - size) // 2 + size]
            )
            seg_of.append(k)
            j += 1
    frame_vectors = encoder.encode_images(np.stack(crops))
    seg_of = np.array(seg_of)
    means = np.stack([frame_vectors[seg_of == k].mean(axis=0) for k in range(len(spans))])
    return frame_vectors, means / np.linalg.norm(means, axis=1, keepdims=True)


@pytest.mark.parametrize("name", ["fight/fi001.mp4", "traffic_camera_vfr.mp4"])
def test_stored_vectors_equal_a_reencoding_by_the_readme(built_index: Path, encoder, name: str) -> None:  # type: ignore[no-untyped-def]
    snap = open_index(built_index)
    video = snap.videos.set_index("video").loc[name]
    rows = np.flatnonzero(snap.segments["video_id"].to_numpy() == video["video_id"])
    segs = snap.segments.iloc[rows]
    fps, seconds = snap.manifest.sampling["fps"], snap.manifest.sampling["segment_seconds"]
    assert list(segs["start"]) == [k * seconds for k in range(len(rows))]
    assert list(segs["end"]) == [min((k + 1) * seconds, video["duration"]) for k in range(len(rows))]
    spans = list(zip(segs["start"], segs["end"], strict=True))
    frame_vectors, expected = _readme_segment_vectors(Path(video["path"]), encoder, fps, spans)
    stored_frames = snap.frame_vectors()[
        segs["frame_row"].iloc[0] : segs["frame_row"].iloc[-1] + segs["n_frames"].iloc[-1]
    ]
    assert stored_frames.shape == frame_vectors.shape  # the same samples, one per grid point
    np.testing.assert_allclose(stored_frames.astype(np.float32), frame_vectors, atol=3e-3)
    np.testing.assert_allclose(snap.vectors()[rows], expected, atol=3e-3)


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
