"""``vadindex watch`` speed: alert latency, and how many real-time streams one CPU follows.

Everything runs on this machine over loopback, with the scenes of ``vadindex demo --live``
(generated, seed 7, 320x240 at 10 frames/s, H.264 with a keyframe every second) sent in real time
by ``ffmpeg -re`` without re-encoding (``-c copy``), so the senders cost next to nothing.

- **Alert latency**: seconds from the end (wall clock) of the first flagged segment of an event to
  the moment its alert line is handed to stdout. With vadindex-tiny on the real event (the fire of
  ``demo --live``), over ``--runs`` fresh watches; and, for both vadindex-tiny and ViT-B-32 (random
  weights, whose scores mean nothing), on the quiet scene with ``--calibrate zscore
  --segment-threshold 1.5 --cooldown 0``: every segment unusual for the model raises an alert
  somewhere mid-stream, ``--seconds`` long. Each run also reports the delay from every segment's
  end to its decision (an alert follows its decision at once). Target: <= 1.5 s plus one segment.
- **Capacity**: ``encoder_fps`` is the bare encoder on ready batches (decoded, preprocessed),
  measured in the same run with the same encoder, at the batch size a busy watch forms (about
  ``BATCH_SECONDS`` of encoding; the speed at every batch size is printed too); the prediction is
  ``encoder_fps / fps`` streams. Then ``--seconds`` of watching N streams at once for N around the
  prediction: a stream is followed when no segment was dropped and the 95th percentile of the delay
  from a segment's end to its decision is at most ``--max-delay`` seconds. ``max_streams_followed``
  is the largest N followed; the target is the prediction within 15 % (in whole streams:
  ``target_met``). Above it, the runs show the
  drop policy at work: oldest segments dropped (counted), delay bounded by ``--max-lag``.

The last line printed is one JSON object with the figures.

    python scripts/bench_watch.py                         # latency for both models, capacity with ViT-B-32
    python scripts/bench_watch.py --runs 2 --seconds 10 --streams 2,3   # a quick check
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: ``until_alert`` value that stops a latency run at its first alert, whatever its class.
ANY_CLASS = "*"
sys.path.insert(0, str(ROOT))

from vadindex.demo import synth  # noqa: E402
from vadindex.demo.live import SCENE, live_prompt_set  # noqa: E402
from vadindex.detect.options import DetectOptions  # noqa: E402
from vadindex.live.options import WatchOptions  # noqa: E402
from vadindex.live.sources import parse_source  # noqa: E402
from vadindex.live.watch import BATCH_SECONDS, watch  # noqa: E402


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_clips(folder: Path) -> dict[str, Path]:
    """The fire scene and a quiet street as MPEG-TS with a keyframe every second (sent with -c copy)."""
    seed, index, cls = SCENE
    out = {}
    for name, (i, c) in {"fire": (index, cls), "quiet": (4, synth.NORMAL_CLASS)}.items():
        info, _ = synth.build_video(folder, seed, i, c, f"{name}.mp4")
        ts = folder / f"{name}.ts"
        subprocess.run(
            ["ffmpeg", "-y", "-hide_banner", "-loglevel", "error", "-i", str(folder / info.path), "-c:v", "libx264",
             "-preset", "veryfast", "-g", "10", "-pix_fmt", "yuv420p", "-f", "mpegts", str(ts)],
            check=True,
        )  # fmt: skip
        out[name] = ts
    return out


def sender(clip: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip), "-c", "copy",
         "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"],
        stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()


def run_watch(
    encoder: Any,
    clip: Path,
    n_streams: int,
    *,
    seconds: float | None,
    detect: DetectOptions,
    max_lag: float,
    until_alert: str | None = None,
    timeout: float = 60.0,
    cooldown: float = 60.0,
    min_history: int = 0,
) -> tuple[Any, list[float]]:
    """Watch ``n_streams`` copies of ``clip`` (senders start once the readers listen). Returns the
    summary and, per alert, the seconds from its first segment's end to the alert line."""
    ports = [free_udp_port() for _ in range(n_streams)]
    stop_event = threading.Event()
    line_latency: list[float] = []
    started = threading.Event()
    procs: list[subprocess.Popen] = []

    def on_alert(record: dict[str, Any]) -> None:
        if record["type"] == "alert":
            line_latency.append(time.time() - record["end_ts"])
            if until_alert is not None and until_alert in (ANY_CLASS, record["best_class"]):
                stop_event.set()

    def on_status(line: str) -> None:
        if "watching" in line:
            started.set()

    def start_senders() -> None:
        started.wait(120)
        procs.extend(sender(clip, p) for p in ports)
        if not stop_event.wait(timeout if seconds is None else seconds + 3.0):
            stop_event.set()

    helper = threading.Thread(target=start_senders, daemon=True)
    helper.start()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            summary = watch(
                [parse_source(f"udp://127.0.0.1:{p}", f"cam{i}") for i, p in enumerate(ports)],
                Path(tmp) / "ix", live_prompt_set(), encoder=encoder, detect=detect,
                options=WatchOptions(commit_seconds=5.0, cooldown=cooldown, max_lag=max_lag, open_timeout=5.0,
                                     read_timeout=3.0, min_history=min_history),
                on_alert=on_alert, on_status=on_status, stop=stop_event,
            )  # fmt: skip
        finally:
            stop_event.set()
            stop(procs)
    return summary, line_latency


def _latency_figures(latencies: list[float]) -> dict[str, Any]:
    return {
        "alerts": len(latencies),
        "latency_s": [round(x, 3) for x in latencies],
        "median_s": round(float(np.median(latencies)), 3) if latencies else None,
        "max_s": round(float(np.max(latencies)), 3) if latencies else None,
    }


def latency_on_event(encoder: Any, clip: Path, runs: int) -> dict[str, Any]:
    """The first alert of the fire event, over ``runs`` fresh watches."""
    latencies = []
    for _ in range(runs):
        summary, lines = run_watch(encoder, clip, 1, seconds=None, detect=DetectOptions(), max_lag=4.0,
                                   until_alert="Fire")  # fmt: skip
        if lines:
            latencies.append(lines[0])
        else:
            print(f"  no alert in this run ({summary.streams})", file=sys.stderr)
    out = {"runs": runs, **_latency_figures(latencies)}
    print(f"  latency {out['latency_s']} (median {out['median_s']}, max {out['max_s']})", flush=True)
    return out


def latency_mid_stream(encoder: Any, clip: Path, seconds: float) -> dict[str, Any]:
    """Alerts wherever a segment is unusual for the model (z-score over the history), ``seconds`` long."""
    summary, lines = run_watch(
        encoder, clip, 1, seconds=seconds, detect=DetectOptions(calibrate="zscore", segment_threshold=1.5),
        max_lag=4.0, cooldown=0.0, min_history=8,
    )  # fmt: skip
    stream = next(iter(summary.streams.values()))
    out = {
        "seconds": seconds,
        **_latency_figures(lines),
        "decision_delay_p50_s": stream["delay_p50_s"],
        "decision_delay_p95_s": stream["delay_p95_s"],
        "decision_delay_max_s": stream["delay_max_s"],
        "segments": stream["segments_indexed"],
        "dropped_segments": stream["dropped_segments"],
    }
    print(f"  {json.dumps(out)}", flush=True)
    return out


def encoder_fps(encoder: Any, size: int, batch: int, seconds: float = 6.0) -> float:
    """Frames per second of the bare encoder on ready batches of ``batch`` frames."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (batch, size, size, 3), dtype=np.uint8)
    encoder.encode_images(frames)
    t = time.perf_counter()
    n = 0
    while time.perf_counter() - t < seconds:
        encoder.encode_images(frames)
        n += batch
    return n / (time.perf_counter() - t)


def measure_capacity(
    encoder: Any, clip: Path, counts: list[int], seconds: float, max_delay: float, max_lag: float, fps: float
) -> list[dict[str, Any]]:
    runs = []
    for n in counts:
        summary, _ = run_watch(
            encoder, clip, n, seconds=seconds, detect=DetectOptions(segment_threshold=1.0), max_lag=max_lag
        )
        streams = list(summary.streams.values())
        dropped = sum(s["dropped_segments"] for s in streams)
        p95 = max((s["delay_p95_s"] or 0.0) for s in streams)
        worst = max((s["delay_max_s"] or 0.0) for s in streams)
        indexed = sum(s["segments_indexed"] for s in streams)
        keyframe_only = sum(s["keyframe_only_episodes"] for s in streams)
        followed = dropped == 0 and p95 <= max_delay and all(s["segments_indexed"] > 0 for s in streams)
        run = {
            "streams": n,
            "followed": followed,
            "segments_indexed": indexed,
            "dropped_segments": dropped,
            "dropped_fraction": round(dropped / max(dropped + indexed, 1), 3),
            "delay_p95_s": p95,
            "delay_max_s": worst,
            "keyframe_only_episodes": keyframe_only,
            "encoder_busy_fps": round(summary.frames_encoded / max(summary.encode_seconds, 1e-9), 2),
            "encoder_busy_fraction": round(summary.encode_seconds / max(summary.seconds, 1e-9), 3),
            "needed_fps": n * fps,
            "load_end": round(os.getloadavg()[0], 2),
        }
        print(f"  {n} streams: {json.dumps(run)}", flush=True)
        runs.append(run)
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="latency runs per model")
    ap.add_argument("--seconds", type=float, default=30.0, help="length of each capacity run")
    ap.add_argument("--streams", default=None, help="stream counts to try (default: around the prediction)")
    ap.add_argument("--capacity-model", default="ViT-B-32", help="model of the capacity runs")
    ap.add_argument(
        "--capacity-batch", type=int, default=32, help="batch whose speed sizes the watch's batches"
    )
    ap.add_argument(
        "--threads", type=int, default=WatchOptions().threads, help="encoder CPU threads (watch's default)"
    )
    ap.add_argument("--precision", default="auto")
    ap.add_argument(
        "--max-delay", type=float, default=2.5, help="p95 delay (s) that still counts as following"
    )
    ap.add_argument("--max-lag", type=float, default=WatchOptions().max_lag)
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-capacity", action="store_true")
    args = ap.parse_args()
    logging.getLogger("vadindex").setLevel(logging.ERROR)
    if shutil.which("ffmpeg") is None:
        sys.exit("ffmpeg is needed (apt-get install ffmpeg)")
    from vadindex.models.openclip import load_encoder

    load_start = round(os.getloadavg()[0], 2)
    print(
        f"load average at start: {load_start}; {os.cpu_count()} CPUs; {platform.processor() or platform.machine()}"
    )
    result: dict[str, Any] = {"load_start": load_start, "cpus": os.cpu_count(), "threads": args.threads}
    with tempfile.TemporaryDirectory() as tmp:
        clips = make_clips(Path(tmp))
        encoders = {
            "vadindex-tiny": load_encoder(
                "vadindex-tiny", "builtin", "cpu", args.precision, threads=args.threads
            ),
            "ViT-B-32": load_encoder("ViT-B-32", "random", "cpu", args.precision, threads=args.threads),
        }
        for enc in encoders.values():  # settle --precision auto (int8 check) before anything is timed
            for _ in range(4):
                enc.encode_images(np.zeros((16, enc.image_size, enc.image_size, 3), np.uint8))
        result["precision"] = {k: str(getattr(e, "precision", "")) for k, e in encoders.items()}
        if not args.skip_latency:
            latency: dict[str, Any] = {}
            print("latency: vadindex-tiny, the fire event", flush=True)
            latency["vadindex-tiny/event"] = latency_on_event(
                encoders["vadindex-tiny"], clips["fire"], args.runs
            )
            for name, enc in encoders.items():
                print(
                    f"latency: {name}, alerts mid-stream (--calibrate zscore --segment-threshold 1.5)",
                    flush=True,
                )
                latency[f"{name}/mid-stream"] = latency_mid_stream(enc, clips["quiet"], args.seconds)
            result["latency"] = latency
        if not args.skip_capacity:
            enc = encoders[args.capacity_model]
            fps = 4.0
            curve = {b: round(encoder_fps(enc, enc.image_size, b), 2) for b in (4, 8, 16, 32, 64)}
            print(f"capacity: {args.capacity_model} bare encoder frames/s by batch: {curve}", flush=True)
            # A busy watch takes batches of about BATCH_SECONDS of encoding: the encoder's frames/s is
            # its speed at that batch size.
            batch = min(64, max(4, int(BATCH_SECONDS * curve[args.capacity_batch])))
            bare = encoder_fps(enc, enc.image_size, batch)
            predicted = bare / fps
            print(
                f"capacity: encoder {bare:.1f} frames/s at batch {batch} -> {predicted:.2f} streams",
                flush=True,
            )
            if args.streams:
                counts = [int(x) for x in args.streams.split(",")]
            else:
                base = max(1, int(predicted))
                counts = sorted({max(1, round(predicted * f)) for f in (0.7, 0.85, 1.0, 1.15, 1.4)} | {base})
            runs = measure_capacity(
                enc, clips["quiet"], counts, args.seconds, args.max_delay, args.max_lag, fps
            )
            followed = [r["streams"] for r in runs if r["followed"]]
            best = max(followed) if followed else 0
            result["capacity"] = {
                "model": args.capacity_model,
                "encoder_fps": round(bare, 2),
                "encoder_batch": batch,
                "encoder_fps_by_batch": curve,
                "predicted_streams": round(predicted, 2),
                "max_streams_followed": best,
                "ratio_to_prediction": round(best / predicted, 3) if predicted else None,
                # Whole streams only: met when the largest followed count is a whole number of
                # streams within 15 % of the prediction (1 for 1.76, say).
                "target_met": math.floor(0.85 * predicted) <= best <= math.ceil(1.15 * predicted),
                "runs": runs,
            }
    result["load_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
