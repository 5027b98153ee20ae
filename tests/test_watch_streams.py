"""``vadindex watch`` against real streams on loopback: FFmpeg over UDP and HTTP, GStreamer's RTSP
server, a file growing in real time, garbage and silence; generated scenes with known events.

The scenes come from the scene generator (held-out seed 7): a street where a car burns from 3.5 s to
8.5 s, and a street where nothing happens. Their sender plays them in real time, so each test
takes about as long as its streams; the streams of one scenario share one watch.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ROOT
from stream_servers import (
    Blackhole,
    GarbageSender,
    WebhookReceiver,
    free_port,
    growing_file,
    http_server,
    rtsp_server,
    udp_sender,
)

from vadindex._cli.main import cli
from vadindex.demo import synth
from vadindex.demo.live import SCENE, live_prompt_set
from vadindex.detect import DetectOptions, detect
from vadindex.errors import StoreError
from vadindex.index.check import check_index
from vadindex.index.reader import IndexSnapshot
from vadindex.live.options import WatchOptions
from vadindex.live.sources import parse_source
from vadindex.live.watch import watch

#: The issue's bound on alert latency: 1.5 s after the end of the first flagged segment (plus one
#: segment, the time it takes to complete).
LATENCY_BOUND = 1.5 + 1.0
FAST = {"open_timeout": 4.0, "read_timeout": 2.0, "commit_seconds": 1.0}


@pytest.fixture(scope="module")
def tiny():  # type: ignore[no-untyped-def]
    """vadindex-tiny on one CPU thread (as watch loads it), restored afterwards."""
    import torch

    from vadindex.models.openclip import load_encoder

    before = torch.get_num_threads()
    yield load_encoder("vadindex-tiny", "builtin", "cpu", "fp32", threads=1)
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The fire scene of ``demo --live`` and a quiet street (seed 7), as H.264 files."""
    root = tmp_path_factory.mktemp("live-clips")
    seed, index, cls = SCENE
    fire, _ = synth.build_video(root, seed, index, cls, "fire.mp4")
    quiet, _ = synth.build_video(root, seed, 4, synth.NORMAL_CLASS, "quiet.mp4")
    assert fire.spans == ((35, 85),) and fire.fps == 10
    return {"fire": root / fire.path, "quiet": root / quiet.path}


class Watching:
    """A watch in a thread, with its alert records and status lines."""

    def __init__(self, sources: list[Any], index: Path, encoder: Any, **kwargs: Any) -> None:
        self.records: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self.stop_event = threading.Event()
        self.summary: Any = None
        self.error: BaseException | None = None
        self.index = index

        def run() -> None:
            try:
                self.summary = watch(
                    sources, index, live_prompt_set(), encoder=encoder, on_alert=self.records.append,
                    on_status=self.lines.append, stop=self.stop_event, **kwargs,
                )  # fmt: skip
            except BaseException as exc:  # noqa: BLE001 - re-raised by stop()
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        self.wait_for(lambda: any("watching" in line for line in self.lines), 60, "the watch to start")

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.error is not None:
                raise self.error
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}; status lines:\n" + "\n".join(self.lines))
            time.sleep(0.1)

    def said(self, text: str) -> int:
        return sum(text in line for line in self.lines)

    def stop(self) -> Any:
        self.stop_event.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the watch did not stop"
        if self.error is not None:
            raise self.error
        return self.summary


def camera_segments(index: Path, camera: str) -> int:
    """Committed segments of one camera (0 before the first commit)."""
    if not (index / "manifest.json").exists():
        return 0
    videos = IndexSnapshot(index).videos
    return int(videos.loc[videos["camera"] == camera, "n_segments"].sum()) if "camera" in videos else 0


# -- two cameras, one event ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_cameras(tiny, clips, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A fire scene and a quiet one, each played once over UDP to one watch, with a webhook receiver."""
    index = tmp_path_factory.mktemp("two") / "ix"
    fire_port, quiet_port = free_port(), free_port()
    receiver = WebhookReceiver()
    senders = []
    try:
        w = Watching(
            [parse_source(f"udp://127.0.0.1:{fire_port}", "fire-cam"),
             parse_source(f"udp://127.0.0.1:{quiet_port}", "quiet-cam")],
            index, tiny, webhook=receiver.url,
            options=WatchOptions(open_timeout=8.0, read_timeout=3.0, commit_seconds=2.0, cooldown=10.0),
        )  # fmt: skip
        senders = [udp_sender(clips["fire"], fire_port), udp_sender(clips["quiet"], quiet_port)]
        for s in senders:
            s.wait(60)
        # UDP never ends: each stream is lost only when nothing arrived for the read timeout.
        w.wait_for(
            lambda: w.said("fire-cam: lost") and w.said("quiet-cam: lost"), 20, "both streams to be lost"
        )
        summary = w.stop()
    finally:
        for s in senders:
            s.stop()
        receiver.stop()
    return {"watch": w, "summary": summary, "index": index, "webhook": receiver.received}


def test_one_alert_for_the_event_of_the_right_class_in_time(two_cameras) -> None:  # type: ignore[no-untyped-def]
    records = two_cameras["watch"].records
    alerts = [r for r in records if r["type"] == "alert"]
    assert len(alerts) == 1, records
    alert = alerts[0]
    assert alert["camera"] == "fire-cam" and alert["best_class"] == "Fire"
    assert alert["latency_s"] <= LATENCY_BOUND
    ends = [r for r in records if r["type"] == "end"]
    assert [e["alert_id"] for e in ends] == [alert["alert_id"]]
    # The event burns from 3.5 s to 8.5 s of the scene: the alert's span lies in it (give or take
    # the segment that straddles each edge).
    videos = IndexSnapshot(two_cameras["index"]).videos
    origin = videos.loc[videos["camera"] == "fire-cam", "stream_start"].min()
    assert 2.5 <= ends[0]["stream_start"] - origin <= 4.5
    assert 7.5 <= ends[0]["stream_end"] - origin <= 9.5
    assert Path(alert["thumbnail"]).is_file() and Path(alert["thumbnail"]).stat().st_size > 1000
    assert two_cameras["summary"].alert_latencies[0] <= LATENCY_BOUND


def test_no_alert_on_the_normal_scene_and_every_segment_indexed(two_cameras) -> None:  # type: ignore[no-untyped-def]
    assert not [r for r in two_cameras["watch"].records if r["camera"] == "quiet-cam"]
    streams = two_cameras["summary"].streams
    # 10.7 s and 11.3 s of video at 1 s segments: every one of them, from one encoder, in one index
    assert streams["fire-cam"]["segments_indexed"] >= 9 and streams["quiet-cam"]["segments_indexed"] >= 10
    assert streams["fire-cam"]["dropped_segments"] == 0 and streams["quiet-cam"]["dropped_segments"] == 0
    index = two_cameras["index"]
    assert check_index(index).ok
    assert camera_segments(index, "fire-cam") == streams["fire-cam"]["segments_indexed"]


def test_the_watched_index_reads_like_any_other(two_cameras, tiny) -> None:  # type: ignore[no-untyped-def]
    index = two_cameras["index"]
    snap = IndexSnapshot(index)
    videos = snap.videos
    assert set(videos["camera"]) == {"fire-cam", "quiet-cam"}
    for _, chunk in videos.groupby("camera"):  # both clocks, every chunk
        assert (np.diff(chunk["wall_start"]) > 0).all() and chunk["stream_start"].notna().all()
    assert videos["path"].str.startswith("udp://127.0.0.1:").all()
    # detect over the stored segments decides what the live rule decided
    result = detect(index, live_prompt_set(), encoder=tiny, options=DetectOptions())
    segs = snap.segments.assign(anomalous=result.segment_columns["anomalous"])
    alert = next(r for r in two_cameras["watch"].records if r["type"] == "end")
    flagged = {
        f"{v}:{s}" for v, s, a in segs[["video_id", "segment", "anomalous"]].itertuples(index=False) if a
    }
    assert set(alert["segments"]) <= flagged
    assert not {f for f in flagged if f.startswith("live-quiet-cam")}
    code = CliRunner().invoke(cli, ["alerts", "--index", str(index), "--format", "json"])
    rows = json.loads(code.stdout)
    assert (
        code.exit_code == 0 and len(rows) == 1 and rows[0]["best_class"] == "Fire" and not rows[0]["ongoing"]
    )


def test_the_webhook_receiver_gets_every_record(two_cameras) -> None:  # type: ignore[no-untyped-def]
    assert two_cameras["webhook"] == two_cameras["watch"].records
    assert two_cameras["summary"].webhook == {"sent": 2, "failed": 0, "dropped": 0}


# -- losses, reconnects, garbage, silence ----------------------------------------------------------


@pytest.fixture(scope="module")
def rough(tiny, clips, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A looping fire stream killed and restarted, garbage on a second port, silence on a third,
    and a webhook that accepts connections and never answers."""
    index = tmp_path_factory.mktemp("rough") / "ix"
    ports = {"flaky": free_port(), "garbage": free_port(), "silent": free_port()}
    hole = Blackhole()
    garbage = GarbageSender(ports["garbage"])
    sender = restarted = None
    try:
        w = Watching(
            [parse_source(f"udp://127.0.0.1:{p}", name) for name, p in ports.items()], index, tiny,
            webhook=hole.url, options=WatchOptions(cooldown=0.0, webhook_timeout=1.0, webhook_retries=1, **FAST),
        )  # fmt: skip
        sender = udp_sender(clips["fire"], ports["flaky"], loop=True)
        w.wait_for(lambda: camera_segments(index, "flaky") >= 5, 60, "flaky to commit 5 segments")
        before = IndexSnapshot(index).videos[["video_id", "n_segments"]]
        sender.stop()
        w.wait_for(lambda: w.said("flaky: lost"), 10, "flaky to be lost")
        restarted = udp_sender(clips["fire"], ports["flaky"], loop=True)
        w.wait_for(lambda: w.said("flaky: connected again"), 30, "flaky to reconnect")
        w.wait_for(
            lambda: camera_segments(index, "flaky") >= before["n_segments"].sum() + 4, 30, "new segments"
        )
        t_stop = time.monotonic()
        summary = w.stop()
        stop_seconds = time.monotonic() - t_stop
    finally:
        for s in (sender, restarted):
            if s is not None:
                s.stop()
        garbage.stop()
        hole.stop()
    return {"watch": w, "summary": summary, "index": index, "before": before, "stop_s": stop_seconds}


def test_a_lost_stream_reconnects_and_no_committed_segment_is_lost(rough) -> None:  # type: ignore[no-untyped-def]
    w = rough["watch"]
    assert w.said("flaky: lost (no data for 2 s)") == 1 and w.said("flaky: connected again") == 1
    after = IndexSnapshot(rough["index"]).videos.set_index("video_id")["n_segments"]
    for video_id, n in rough["before"].itertuples(index=False):
        assert after[video_id] == n
    assert check_index(rough["index"]).ok
    # The sender restarted its clock: the chunk after the reconnect starts at a smaller stream time
    # but a later wall-clock time; both are recorded.
    chunks = IndexSnapshot(rough["index"]).videos.query("camera == 'flaky'")
    stream_end = chunks["stream_start"] + chunks["duration"]
    resets = (chunks["stream_start"].to_numpy()[1:] < stream_end.to_numpy()[:-1] - 1.0).sum()
    assert resets >= 1 and (np.diff(chunks["wall_start"]) > 0).all()


def test_garbage_and_silence_never_stop_the_other_streams(rough) -> None:  # type: ignore[no-untyped-def]
    streams = rough["summary"].streams
    w = rough["watch"]
    assert streams["garbage"]["segments_indexed"] == 0 and streams["garbage"]["failures"] >= 1
    assert streams["silent"]["segments_indexed"] == 0 and streams["silent"]["connects"] == 0
    assert w.said("silent: cannot open (no stream within") == 1  # said once, retried quietly
    assert w.said("garbage: cannot open") == 1
    assert streams["flaky"]["segments_indexed"] >= 10
    assert rough["stop_s"] < 10  # a silent open and a hung webhook do not hold up the stop


def test_a_dead_webhook_does_not_slow_ingestion(rough) -> None:  # type: ignore[no-untyped-def]
    summary = rough["summary"]
    assert summary.alerts >= 1 and max(summary.alert_latencies) <= LATENCY_BOUND
    assert summary.webhook["sent"] == 0
    assert summary.streams["flaky"]["dropped_segments"] == 0


# -- HTTP, RTSP and a growing file -----------------------------------------------------------------


def test_http_rtsp_and_a_growing_file(tiny, clips, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    index = tmp_path / "ix"
    http_port, rtsp_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
    recording = tmp_path / "rec.ts"
    servers = [
        http_server(clips["quiet"], http_port),
        rtsp_server(rtsp_port),
        growing_file(clips["quiet"], recording),
    ]
    try:
        sources = [
            parse_source(f"http://127.0.0.1:{http_port}/live.ts", "http-cam"),
            parse_source(f"rtsp://127.0.0.1:{rtsp_port}/live", "rtsp-cam"),  # RTP over TCP by default
            parse_source(str(recording), "file-cam", follow=True),
        ]
        w = Watching(sources, index, tiny, options=WatchOptions(**FAST))
        for cam in ("http-cam", "rtsp-cam", "file-cam"):
            w.wait_for(lambda c=cam: camera_segments(index, c) >= 2, 40, f"{cam} segments")
        assert servers[2].running()  # the file is still being written: segments came as it grew
        servers[0].stop()  # the HTTP server goes away: a clean end of stream, then refused connections
        w.wait_for(lambda: w.said("http-cam: lost (stream ended)"), 10, "http-cam to end")
        servers[0] = http_server(clips["quiet"], http_port)
        w.wait_for(lambda: w.said("http-cam: connected again"), 30, "http-cam to reconnect")
        servers[1].pause()  # an RTSP server that hangs: lost after the read timeout
        w.wait_for(lambda: w.said("rtsp-cam: lost (no data for 2 s)"), 15, "rtsp-cam to be lost")
        servers[1].resume()
        w.wait_for(lambda: w.said("rtsp-cam: connected again"), 30, "rtsp-cam to reconnect")
        summary = w.stop()
    finally:
        for s in servers:
            s.stop()
    assert all(summary.streams[c]["segments_indexed"] >= 2 for c in ("http-cam", "rtsp-cam", "file-cam"))
    assert summary.streams["rtsp-cam"]["connects"] == 2 and summary.streams["http-cam"]["connects"] == 2
    assert check_index(index).ok


# -- the drop policy -------------------------------------------------------------------------------


class SlowEncoder:
    """The real encoder, made slower than real time (a CPU that cannot keep up)."""

    def __init__(self, encoder: Any, seconds_per_frame: float) -> None:
        self._encoder = encoder
        self._delay = seconds_per_frame
        self.identity, self.dim, self.image_size = encoder.identity, encoder.dim, encoder.image_size
        self.logit_scale = encoder.logit_scale

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        time.sleep(self._delay * len(pixels))
        return self._encoder.encode_images(pixels)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return self._encoder.encode_texts(texts)


def test_when_the_encoder_falls_behind_old_segments_are_dropped_and_counted(
    tiny, clips, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from vadindex.live import reader

    ages: list[float] = []
    take = reader.SegmentQueues.take

    def timed_take(self, max_frames: int, timeout: float):  # type: ignore[no-untyped-def]
        got = take(self, max_frames, timeout)
        ages.extend(time.time() - s.completed for s in got)
        return got

    monkeypatch.setattr(reader.SegmentQueues, "take", timed_take)
    index = tmp_path / "ix"
    port = free_port()
    sender = udp_sender(clips["quiet"], port, loop=True)
    try:
        slow = SlowEncoder(tiny, 0.4)  # 1.6 s per 1 s segment
        w = Watching([parse_source(f"udp://127.0.0.1:{port}", "busy")], index, slow,
                     options=WatchOptions(max_lag=2.0, **FAST))  # fmt: skip
        w.wait_for(lambda: w.said("busy: the encoder is behind"), 40, "drops")
        w.wait_for(lambda: camera_segments(index, "busy") >= 6, 40, "segments")
        summary = w.stop()
    finally:
        sender.stop()
    busy = summary.streams["busy"]
    assert busy["dropped_segments"] >= 2 and busy["dropped_frames"] >= 4 * busy["dropped_segments"] - 4
    # Never more than max_lag seconds of segments wait: a segment is at most 2 segments plus one
    # batch (at most 2 segments' frames, 3.2 s here) old when the encoder takes it.
    assert max(ages) <= 2.0 + 3.2 + 1.0
    videos = IndexSnapshot(index).videos
    assert videos["warning"].str.contains("segments dropped: the encoder was behind").any()
    segs = IndexSnapshot(index).segments.merge(videos[["video_id", "wall_start"]], on="video_id")
    wall = np.sort(segs["wall_start"] + segs["start"])
    # Dropped seconds show as gaps in wall-clock time (segment numbers stay consecutive per chunk).
    assert np.diff(wall).max() >= 1.99
    assert check_index(index).ok


def test_a_decoder_behind_real_time_decodes_keyframes_only(clips, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from vadindex.config import SamplingSettings
    from vadindex.live import reader

    real = reader.sample_image

    def slow_sample(frame, size, *args):  # type: ignore[no-untyped-def]
        time.sleep(0.5)  # 2 s of work per second of stream at 4 samples/s
        return real(frame, size, *args)

    monkeypatch.setattr(reader, "sample_image", slow_sample)
    port = free_port()
    src = parse_source(f"udp://127.0.0.1:{port}", "slow")
    queues = reader.SegmentQueues(["slow"], 4)
    lines: list[str] = []
    r = reader.StreamReader(src, SamplingSettings(), 64, queues, WatchOptions(**FAST), lines.append)
    sender = udp_sender(clips["quiet"], port, loop=True)
    r.start()
    try:
        deadline = time.monotonic() + 40
        while not any("decoding every frame again" in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        r.stop()
        sender.stop()
        r.join(10)
    assert any("decoding keyframes only" in line for line in lines), lines
    assert any("decoding every frame again" in line for line in lines), lines
    assert r.stats.keyframe_only >= 1 and r.stats.lag < 5.0


# -- the command line ------------------------------------------------------------------------------


def test_ctrl_c_commits_and_exits_130_while_the_index_serves_queries(tiny, clips, tmp_path) -> None:  # type: ignore[no-untyped-def]
    index = tmp_path / "ix"
    port = free_port()
    sender = udp_sender(clips["quiet"], port, loop=True)
    seen: dict[str, Any] = {}

    def meanwhile() -> None:
        deadline = time.monotonic() + 90
        while camera_segments(index, "cam") < 3:
            if time.monotonic() > deadline:
                return  # the watch never got going: the assertions below say so
            time.sleep(0.2)
        try:
            # the index is valid while it is being written: search and detect work on it
            seen["query"] = len(__import__("vadindex").VideoIndex(index).query("people walking", k=2))
            seen["detect"] = detect(index, live_prompt_set(), encoder=tiny).n_segments
            try:  # a second writer is refused, as a second build is
                watch(["udp://127.0.0.1:1"], index, "fire", encoder=tiny)
            except StoreError as exc:
                seen["refused"] = str(exc)
            seen["segments"] = IndexSnapshot(index).manifest.n_segments
        finally:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C, handled by the watch in the main thread

    threading.Thread(target=meanwhile, daemon=True).start()
    try:
        result = CliRunner().invoke(cli, [
            "watch", f"udp://127.0.0.1:{port}", "--name", "cam", "--index", str(index), "--model", "vadindex-tiny",
            "--pretrained", "builtin", "--precision", "fp32", "-p", "a building on fire", "--commit-seconds", "1",
            "--summary", "json",
        ])  # fmt: skip
    finally:
        sender.stop()
    assert result.exit_code == 130, result.output
    assert seen["query"] == 2 and seen["detect"] >= 3 and "being written" in seen["refused"]
    summary = json.loads(result.stderr.strip().splitlines()[-1])
    assert summary["stopped"] == "interrupted"
    assert IndexSnapshot(index).manifest.n_segments >= seen["segments"] and check_index(index).ok


def test_kill_9_loses_at_most_the_commit_interval(clips, tmp_path) -> None:  # type: ignore[no-untyped-def]
    index = tmp_path / "ix"
    port = free_port()
    sender = udp_sender(clips["quiet"], port, loop=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vadindex._cli.main", "watch", f"udp://127.0.0.1:{port}", "--name", "cam",
         "--index", str(index), "--model", "vadindex-tiny", "--pretrained", "builtin", "-p", "a building on fire",
         "--commit-seconds", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while camera_segments(index, "cam") < 4:
            assert time.monotonic() < deadline and proc.poll() is None, "the watch did not commit"
            time.sleep(0.2)
        time.sleep(2.5)
        killed = time.time()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        sender.stop()
    assert check_index(index).ok
    videos = IndexSnapshot(index).videos
    newest = float((videos["wall_start"] + videos["duration"]).max())
    # at most --commit-seconds of video, plus the segment being completed and a commit in flight
    assert killed - newest <= 1.0 + 1.0 + 1.5


def test_demo_live_shows_the_alert(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["demo", "--live", "--out", str(tmp_path), "--format", "json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["detected"] and out["event_class"] == "Fire" and out["latency_s"] <= LATENCY_BOUND
    raised = [a for a in out["alerts"] if a["type"] == "alert"]
    assert raised[0]["best_class"] == "Fire" and Path(raised[0]["thumbnail"]).is_file()
