"""``vadindex demo --live``: a generated scene with an event, streamed over loopback and watched.

A thread renders a held-out scene (a car on fire in a street, seed 7) and sends it as MPEG-TS over
UDP to ``127.0.0.1`` in real time with PyAV, as a camera would; :func:`vadindex.live.watch.watch`
follows that stream with ``vadindex-tiny`` and the demo's prompts (wordings never used in
training), and the demo ends once the event's alert came.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from vadindex.config import DEFAULT_DEVICE
from vadindex.demo import synth
from vadindex.detect.prompts import ClassPromptSet, parse_prompt_yaml
from vadindex.errors import InputError
from vadindex.ingest.options import BuildOptions
from vadindex.live.options import WatchOptions
from vadindex.live.sources import parse_source
from vadindex.live.watch import WatchSummary, watch
from vadindex.models.weights import builtin_weights

log = logging.getLogger("vadindex")

DEMO_MODEL = "vadindex-tiny"
CAMERA = "demo-cam"
#: The streamed scene: ``(seed, index, class)`` of :func:`vadindex.demo.synth.build_video`. Held out
#: (seed 7); a 10.7 s street scene where a car burns from 3.5 s to 8.5 s.
SCENE = (synth.DEMO_SEED, 7, "Fire")
#: Seconds of the scene's first frame sent before it, so the watcher is connected when it starts.
LEAD_IN = 2.0
#: The scene is sent this many times at most (a watcher that missed the first event sees the next).
REPEATS = 2
#: Seconds to wait for the alert after the stream ended.
GRACE = 8.0


def live_prompt_set() -> ClassPromptSet:
    """The demo's anomaly prompts grouped into the scene generator's event classes (so an alert
    names its class), with the demo's normal prompts."""
    p = synth.DEMO_ANOMALY_PROMPTS
    classes = {"Fire": p[0:2], "Fighting": p[2:4], "Falling": p[4:6], "CarCrash": p[6:7], "Stampede": p[7:8]}
    data = {
        "name": "demo-live",
        "anomaly": {k: list(v) for k, v in classes.items()},
        "normal": list(synth.DEMO_NORMAL_PROMPTS),
    }
    return parse_prompt_yaml(data, "demo prompts")


@dataclass(frozen=True)
class LiveDemoResult:
    """What the live demo saw."""

    detected: bool
    event_class: str
    alerts: tuple[dict[str, Any], ...]
    #: Seconds from the end of the event's first flagged segment to its alert (``None``: no alert).
    latency_s: float | None
    url: str
    index: Path
    summary: WatchSummary
    frames_sent: int
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "detected": self.detected,
            "event_class": self.event_class,
            "latency_s": self.latency_s,
            "alerts": list(self.alerts),
            "url": self.url,
            "index": str(self.index),
            "frames_sent": self.frames_sent,
            "timings": {k: round(v, 2) for k, v in self.timings.items()},
            "watch": self.summary.to_dict(),
        }


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that nothing is bound to right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def send_stream(
    frames: list[np.ndarray],
    fps: int,
    url: str,
    stop: threading.Event,
    repeats: int = 1,
    lead_in: float = 0.0,
) -> int:
    """Send RGB frames as H.264 in MPEG-TS to ``url`` in real time (a keyframe every second).

    Returns:
        Frames sent.
    """
    import av

    h, w = frames[0].shape[:2]
    out = av.open(url, mode="w", format="mpegts")
    sent = 0
    try:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
        stream.codec_context.gop_size = fps  # late joiners start within a second
        still = [frames[0]] * round(lead_in * fps)
        t0 = time.monotonic()
        for _ in range(repeats):
            for img in still + list(frames):
                if stop.is_set():
                    return sent
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts = sent
                for packet in stream.encode(frame):
                    out.mux(packet)
                sent += 1
                delay = t0 + sent / fps - time.monotonic()
                if delay > 0:
                    stop.wait(delay)
        for packet in stream.encode(None):
            out.mux(packet)
    finally:
        out.close()
    return sent


def run_live_demo(
    out: str | os.PathLike[str] = "demo-out",
    *,
    port: int | None = None,
    device: str = DEFAULT_DEVICE,
    on_alert: Callable[[dict[str, Any]], None] | None = None,
    on_status: Callable[[str], None] | None = None,
) -> LiveDemoResult:
    """Stream the demo scene over loopback UDP, watch it into ``out/live/index``, stop at the alert.

    Args:
        out: output folder (``live/index`` inside it: the watched index, its ``alerts.jsonl`` and
            thumbnails).
        port: UDP port on 127.0.0.1 (a free one by default).
        device: encoder device.
        on_alert, on_status: called with each alert record and status line as they come.

    Returns:
        A :class:`LiveDemoResult`; ``detected`` tells whether the event's alert came.
    """
    if builtin_weights(DEMO_MODEL) is None:
        raise InputError(f"the built-in model {DEMO_MODEL} has no weights in this installation")
    timings: dict[str, float] = {}
    t = time.perf_counter()
    seed, index, cls = SCENE
    info, frames = synth.build_video(Path(out), seed, index, cls, f"{cls}_live.mp4", write=False)
    assert frames is not None
    timings["render_s"] = time.perf_counter() - t
    port = port or free_udp_port()
    url = f"udp://127.0.0.1:{port}"
    stop = threading.Event()
    alerts: list[dict[str, Any]] = []
    sent: list[int] = []
    sender_done = threading.Event()
    started = threading.Event()

    def alert(record: dict[str, Any]) -> None:
        alerts.append(record)
        if on_alert is not None:
            on_alert(record)
        if record["type"] == "alert" and record["best_class"] == cls:
            stop.set()

    def send() -> None:
        try:
            sent.append(
                send_stream(frames, info.fps, f"{url}?pkt_size=1316", stop, repeats=REPEATS, lead_in=LEAD_IN)
            )
        except Exception as exc:  # noqa: BLE001 - reported; the watch then times out and says so
            log.warning("demo stream failed: %s", exc)
        finally:
            sender_done.set()

    def watchdog() -> None:
        # The sender starts once the model is loaded and the reader is listening (UDP keeps nothing
        # for a receiver that is not there yet), and the watch stops GRACE seconds after it ended.
        while not stop.is_set() and not started.is_set():
            stop.wait(0.1)
        threading.Thread(target=send, name="demo:sender", daemon=True).start()
        while not stop.is_set():
            if sender_done.wait(0.2):
                stop.wait(GRACE)
                stop.set()

    def status(line: str) -> None:
        if "watching" in line:
            started.set()
        if on_status is not None:
            on_status(line)

    threading.Thread(target=watchdog, name="demo:watchdog", daemon=True).start()
    t = time.perf_counter()
    summary = watch(
        [parse_source(url, CAMERA)], Path(out) / "live" / "index", live_prompt_set(),
        build=BuildOptions(model=DEMO_MODEL, pretrained="builtin", device=device),
        options=WatchOptions(commit_seconds=2.0, cooldown=5.0, open_timeout=5.0, read_timeout=3.0),
        on_alert=alert, on_status=status, stop=stop,
    )  # fmt: skip
    timings["watch_s"] = time.perf_counter() - t
    raised = [a for a in alerts if a["type"] == "alert"]
    hit = next((a for a in raised if a["best_class"] == cls), None)
    return LiveDemoResult(
        detected=hit is not None,
        event_class=cls,
        alerts=tuple(alerts),
        latency_s=None if hit is None else hit["latency_s"],
        url=url,
        index=Path(out) / "live" / "index",
        summary=summary,
        frames_sent=sent[0] if sent else 0,
        timings=timings,
    )
