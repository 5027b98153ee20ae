"""Bad and odd inputs: each is indexed correctly or reported as one line, and the build goes on."""

from __future__ import annotations

import json
import os
import threading
import tracemalloc
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import TEST_MODEL, write_video

from vadindex._cli.main import EXIT_PARTIAL, cli
from vadindex.index.manifest import FAILURES
from vadindex.index.reader import open_index
from vadindex.ingest import build_index
from vadindex.ingest.decode import MAX_TIMESTAMP_GAP, SampledVideo

SIZE = (64, 48)


def _write_frames(
    path: Path, images: list[np.ndarray], pts: list[int], rate: int = 10, **stream_opts
) -> Path:
    """Write RGB images with explicit presentation timestamps (time base ``1/rate``)."""
    import av

    h, w = images[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if "rotation" in stream_opts:
            stream.set_display_rotation(stream_opts["rotation"], hflip=stream_opts.get("hflip", False))
        for img, t in zip(images, pts, strict=True):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _write_audio_only(path: Path) -> Path:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _unsupported_codec(src: Path, dst: Path) -> Path:
    """An AVI whose codec tag names no decoder (the MPEG-4 fourcc replaced by ZZZZ)."""
    data = src.read_bytes()
    for tag in (b"FMP4", b"DIVX", b"XVID", b"mp4v"):
        data = data.replace(tag, b"ZZZZ")
    dst.write_bytes(data)
    return dst


@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str], set[str]]:
    """A folder of good, damaged and strange files; returns it, the bad names and the good names."""
    d = tmp_path_factory.mktemp("odd")
    good = write_video(d / "good.mp4", seconds=3, size=SIZE, seed=1)
    data = good.read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (d / "empty.mp4").write_bytes(b"")
    (d / "text.mp4").write_text("this is not a video\n" * 20)
    rng = np.random.default_rng(3)
    flipped = np.frombuffer(data, np.uint8).copy()
    flipped[rng.integers(0, len(flipped), 50)] ^= 0xFF
    (d / "corrupt.mp4").write_bytes(flipped.tobytes())
    _write_audio_only(d / "audio only.mp4")
    mpeg4 = write_video(d / "sub" / "mpeg4.avi", seconds=2, size=SIZE, codec="mpeg4", seed=2)
    _unsupported_codec(mpeg4, d / "unknown codec.avi")
    write_video(d / "one frame.mp4", seconds=0.1, size=SIZE, seed=4)
    write_video(d / "vidéo ünïcode 名前 x.mp4", seconds=2, size=SIZE, seed=5)
    (d / "link to good.mp4").symlink_to(good)
    (d / "copy of good.mp4").write_bytes(data)
    (d / "dangling.mp4").symlink_to(d / "no-such-target.mp4")
    bad = {"truncated.mp4", "empty.mp4", "text.mp4", "corrupt.mp4", "audio only.mp4", "unknown codec.avi",
           "one frame.mp4", "dangling.mp4"}  # fmt: skip
    good_names = {"good.mp4", "sub/mpeg4.avi", "vidéo ünïcode 名前 x.mp4"}
    return d, bad, good_names


def test_odd_inputs_each_reported_in_one_line_and_build_goes_on(
    odd_folder, tmp_path: Path, encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, bad, good = odd_folder
    index = tmp_path / "ix"
    monkeypatch.setattr(
        "vadindex.models.openclip.load_encoder", lambda *args, **kwargs: encoder
    )  # loaded once
    runner = CliRunner()
    result = runner.invoke(
        cli, ["build", str(folder), "--index", str(index), "--model", TEST_MODEL, "--pretrained", "random",
              "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == EXIT_PARTIAL, result.output
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    failed_lines = [ln for ln in result.stderr.splitlines() if ln.startswith("  failed: ")]
    assert len(failed_lines) == len(bad)
    for name in bad:
        line = next(ln for ln in failed_lines if Path(ln[10:].split(": ")[0]).name == name)
        assert len(line.split(": ", 2)[2]) > 5  # a reason
    failures = pd.read_csv(index / FAILURES)
    assert {Path(p).name for p in failures["path"]} == bad
    reasons = dict(zip((Path(p).name for p in failures["path"]), failures["reason"], strict=True))
    assert reasons["empty.mp4"] == "empty file (0 bytes)"
    assert reasons["audio only.mp4"] == "has no video stream"
    assert "unsupported video codec" in reasons["unknown codec.avi"]
    assert "moov" in reasons["truncated.mp4"]
    assert "shorter than one segment" in reasons["one frame.mp4"]
    assert "broken symbolic link" in reasons["dangling.mp4"]
    snap = open_index(index)
    # good.mp4, its symlink and its byte copy are one video; the copy comes first in sorted order.
    assert snap.manifest.n_videos == len(good)
    assert set(snap.videos["video"]) == {"copy of good.mp4", "sub/mpeg4.avi", "vidéo ünïcode 名前 x.mp4"}
    assert "1 already indexed" in result.output  # good.mp4 (its symlink collapses into it)


def test_same_file_twice_and_symlink_index_once(tmp_path: Path, encoder) -> None:
    clip = write_video(tmp_path / "a b" / "clip.mp4", seconds=2, size=SIZE, seed=7)
    (tmp_path / "link.mp4").symlink_to(clip)
    summary = build_index([clip, clip, tmp_path / "link.mp4", tmp_path / "a b"], tmp_path / "ix",
                          encoder=encoder, progress=False)  # fmt: skip
    assert (summary.videos_added, summary.failures) == (1, ())


def test_fifo_is_reported_not_waited_on(tmp_path: Path, encoder) -> None:
    folder = tmp_path / "v"
    write_video(folder / "ok.mp4", seconds=2, size=SIZE)
    os.mkfifo(folder / "pipe.mp4")
    summary = build_index([folder, folder / "pipe.mp4"], tmp_path / "ix", encoder=encoder, progress=False)
    assert summary.videos_added == 1
    assert summary.failures == ((str(folder / "pipe.mp4"), "not a regular file (a pipe, socket or device)"),)


def test_header_claiming_zero_frames_is_decoded_in_full(shared_videos: Path) -> None:
    video = SampledVideo(shared_videos / "highway-cyclist.avi", fps=4.0, image_size=32)
    n = sum(len(b) for b in video.batches())
    assert video.info is not None and abs(video.info.duration - 30.0) < 0.2
    assert n == len(video.sample_frames) == 120


def test_variable_frame_rate_follows_timestamps(tmp_path: Path) -> None:
    # Four frames at 10 fps, a 0.2 s gap, then 2 fps: the last frame lasts the usual 0.5 s.
    pts = [0, 1, 2, 3, 5, 10, 15, 20, 25, 30, 35]
    images = [np.full((48, 64, 3), 10 * i, np.uint8) for i in range(len(pts))]
    path = _write_frames(tmp_path / "vfr.mp4", images, pts)
    video = SampledVideo(path, fps=4.0, image_size=32)
    list(video.batches())
    assert video.info is not None
    assert video.info.duration == pytest.approx(4.0, abs=0.01)
    np.testing.assert_allclose(video.frame_times, np.array(pts) / 10, atol=1e-3)
    # The sample at t = j/4 shows the last frame at or before it.
    expected = [int(np.searchsorted(video.frame_times, j / 4 + 1e-9, side="right")) - 1 for j in range(16)]
    assert video.sample_frames.tolist() == expected


def test_timestamp_jump_is_repaired_not_sampled(tmp_path: Path) -> None:
    # A damaged timestamp 1000 s ahead must not become 4000 repeated samples.
    pts = list(range(20)) + [10 * (int(MAX_TIMESTAMP_GAP) + 700) + i for i in range(20)]
    images = [np.full((48, 64, 3), 6 * i, np.uint8) for i in range(len(pts))]
    path = _write_frames(tmp_path / "jump.mp4", images, pts)
    video = SampledVideo(path, fps=4.0, image_size=32)
    n = sum(len(b) for b in video.batches())
    assert video.info is not None and video.info.duration == pytest.approx(4.0, abs=0.2)
    assert n == 16 and "timestamp jumps" in video.info.warning


def test_undecodable_packet_costs_that_packet_not_the_rest(tmp_path: Path) -> None:
    import av

    path = write_video(tmp_path / "clip.mp4", seconds=4, size=SIZE, seed=3)
    with av.open(str(path)) as container:
        packet = [p for p in container.demux(video=0) if p.size][15]
        pos, size = packet.pos, packet.size
    data = bytearray(path.read_bytes())
    data[pos : pos + size] = b"\xff" * size  # one frame's bytes turned to garbage, 1.5 s in
    path.write_bytes(bytes(data))
    video = SampledVideo(path, fps=4.0, image_size=32)
    n = sum(len(b) for b in video.batches())
    assert video.info is not None and video.info.duration == pytest.approx(4.0)
    assert n == 16 and video.info.n_frames == 39
    assert video.info.warning.startswith("skipped 1 undecodable packets")


@pytest.mark.parametrize(
    ("rotation", "hflip", "corner", "shape"),
    [(0, False, "TL", (64, 48)), (90, False, "BL", (48, 64)), (-90, False, "TR", (48, 64)),
     (180, False, "BR", (64, 48)), (0, True, "TR", (64, 48))],
)  # fmt: skip
def test_display_matrix_is_applied(tmp_path: Path, encoder, rotation, hflip, corner, shape) -> None:
    """A red top-left quadrant lands where players show it (rotation counter-clockwise, then mirror)."""
    img = np.zeros((48, 64, 3), np.uint8)
    img[:24, :32] = (255, 0, 0)
    path = _write_frames(tmp_path / "rot.mp4", [img] * 12, list(range(12)), rotation=rotation, hflip=hflip)
    video = SampledVideo(path, fps=4.0, image_size=32)
    first = next(iter(video.batches()))[0]
    red = {"TL": first[4, 4, 0], "TR": first[4, 27, 0], "BL": first[27, 4, 0], "BR": first[27, 27, 0]}
    assert [k for k, v in red.items() if v > 128] == [corner]
    build_index([path], tmp_path / "ix", encoder=encoder, progress=False)
    row = open_index(tmp_path / "ix").videos.iloc[0]
    assert (row["width"], row["height"]) == shape


def test_one_frame_video_is_reported(tmp_path: Path, encoder) -> None:
    path = write_video(tmp_path / "still.mp4", seconds=0.1, size=SIZE)
    summary = build_index([path], tmp_path / "ix", encoder=encoder, progress=False)
    assert summary.videos_added == 0 and "shorter than one segment" in summary.failures[0][1]


def test_long_video_decodes_in_bounded_memory(tmp_path: Path) -> None:
    """Two minutes at 96 px would hold 13 MB of samples if kept; streaming keeps a batch or two."""
    path = write_video(tmp_path / "long.mp4", seconds=120, fps=10, size=SIZE)
    video = SampledVideo(path, fps=4.0, image_size=96, batch_size=16)
    tracemalloc.start()
    try:
        n = sum(len(batch) for batch in video.batches())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 480
    assert peak < 4_000_000, f"peak {peak / 1e6:.1f} MB"


def test_high_resolution_video(tmp_path: Path, encoder) -> None:
    path = write_video(tmp_path / "uhd.avi", seconds=2, fps=1, size=(3840, 2160), codec="mpeg4")
    summary = build_index([path], tmp_path / "ix", encoder=encoder, progress=False)
    assert summary.failures == ()
    row = open_index(tmp_path / "ix").videos.iloc[0]
    assert (row["width"], row["height"], row["n_segments"]) == (3840, 2160, 2)


def _slow(batches, release: threading.Event, first_delay: float, delay: float):
    """Wrap a decoder: wait ``first_delay`` before the first batch, ``delay`` before each later one."""
    release.wait(first_delay)
    for i, batch in enumerate(batches):
        if i:
            release.wait(delay)
        yield batch
    while not release.is_set():  # a decoder that never ends
        release.wait(delay)
        yield batch


def test_hung_and_slow_decoders_are_abandoned(
    tmp_path: Path, encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--stall-timeout`` and ``--video-timeout`` as a user gives them, on a decoder that hangs and
    one that never ends; the build goes on to the healthy clip."""
    folder = tmp_path / "v"
    for name in ("a-hangs.mp4", "b-ok.mp4", "c-endless.mp4"):
        write_video(folder / name, seconds=2, size=SIZE, seed=len(name) + ord(name[0]))
    release = threading.Event()
    original = SampledVideo.batches

    def batches(self):
        if self.path.name.startswith("a-"):
            return _slow(original(self), release, first_delay=60, delay=0)
        if self.path.name.startswith("c-"):
            return _slow(original(self), release, first_delay=0, delay=0.05)
        # The healthy clip is decoded here, before the watchdog starts, and then handed over at
        # once: the 1 s stall limit is for the broken decoders, and a busy machine must not make
        # this one miss it.
        return iter(list(original(self)))

    monkeypatch.setattr(SampledVideo, "batches", batches)
    monkeypatch.setattr("vadindex.models.openclip.load_encoder", lambda *args, **kwargs: encoder)
    try:
        result = CliRunner().invoke(
            cli, ["build", str(folder), "--index", str(tmp_path / "ix"), "--model", TEST_MODEL,
                  "--pretrained", "random", "--stall-timeout", "1", "--video-timeout", "2", "--batch-size", "2",
                  "--no-progress", "--format", "json"],
        )  # fmt: skip
    finally:
        release.set()
    assert result.exit_code == EXIT_PARTIAL, result.output
    summary = json.loads(result.stdout)
    reasons = {Path(f["path"]).name: f["reason"] for f in summary["failures"]}
    assert reasons.keys() == {"a-hangs.mp4", "c-endless.mp4"}
    assert reasons["a-hangs.mp4"] == "decoder stalled for 1 s; abandoned"
    assert reasons["c-endless.mp4"] == "took longer than --video-timeout 2 s; abandoned"
    assert summary["videos_added"] == 1
    assert list(open_index(tmp_path / "ix").videos["video"]) == ["b-ok.mp4"]
