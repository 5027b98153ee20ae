"""The change gate (``--gate auto``): speed, fidelity and detection against ``--gate off``, in one run.

Footage:

- ``idle``: long generated fixed-camera feeds (``synth.generate_feeds``: ``--feeds`` feeds of
  ``--minutes`` minutes at 640x360, 10 fps, about ``--activity`` of the frames with something in
  view, one annotated anomaly each), what cameras record at night;
- ``clips``: the real clips in ``../shared/data/videos``;
- ``demo``: the demo scene sets of the held-out seeds ``--seeds`` (7-12 by default).

Measured:

- speed: effective frames/s (sampled frames stored / wall time of ``build_index``, decoding and
  storage included, the model loaded beforehand) with the gate and without it, on the same files one
  after the other, with ``--model`` (ViT-B-32 with random weights by default) in ``--precision``
  (fp32 by default, so that the gate's error is not mixed with int8's): ``speedup_idle``,
  ``speedup_clips``; and on the idle feeds again at vadindex's default ``--precision auto`` (int8
  after its check), each build with a fresh encoder: ``speedup_idle_default_precision``;
- fidelity: for every frame the gate let reuse an embedding, the cosine between the stored (reused)
  embedding and the one the ungated build stored for that frame, with ``--model`` on ``idle`` and
  ``clips`` and with vadindex-tiny on all three: ``min_cosine`` (lowest over all), ``mean_cosine``
  (lowest of the per-footage, per-model means); also the lowest cosine between segment vectors;
- detection (vadindex-tiny, the demo's prompts and annotations): video F1, segment F1, frame AUC and
  AP, the demo queries' precision at 5 on each demo seed, and the same detection on the idle feeds;
  ``metrics_delta_max`` is the largest absolute difference gate on vs off; ``top5_changed`` counts
  demo queries whose top 5 segments (video, start) differ in membership, ``top5_order_changed``
  in order;
- the gate's own cost: ``ChangeGate.decide`` on the crops the build makes from a 640x360 feed, with
  OpenCV on one thread (``gate_ms_per_frame``).

The last line printed is one JSON object with the figures and the machine's load average.

    python scripts/bench_gate.py                                   # the full run (long: ~30 min idle)
    python scripts/bench_gate.py --minutes 3 --feeds 1 --seeds 7 --clips 4   # a quick check
    python scripts/bench_gate.py --work /tmp/gate --keep            # keep feeds, indexes, outputs
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DETECT_METRICS = ("video_f1", "segment_f1", "frame_auc", "frame_ap")
TINY = "vadindex-tiny"


def load() -> float:
    return round(os.getloadavg()[0], 2)


def build(sources: list[Path], index: Path, encoder: Any, gate: str, manifest: Path | None = None) -> Any:
    """``build_index`` into a new folder with an already-loaded encoder; returns the summary."""
    from vadindex.ingest import build_index

    shutil.rmtree(index, ignore_errors=True)
    summary = build_index(
        [str(s) for s in sources], index, manifest=manifest, encoder=encoder, gate=gate, progress=False
    )
    if summary.failures:
        raise SystemExit(f"build failures in {index}: {summary.failures}")
    return summary


def fidelity(off: Path, on: Path) -> dict[str, Any]:
    """Cosines between the reused frame embeddings of ``on`` and the ungated ones of ``off``."""
    from vadindex.index.reader import open_index

    a, b = open_index(off), open_index(on)
    same = (
        a.videos[["video", "n_segments"]]
        .reset_index(drop=True)
        .equals(b.videos[["video", "n_segments"]].reset_index(drop=True))
    )
    if not same or a.manifest.n_frames != b.manifest.n_frames:
        raise SystemExit(f"{off} and {on} hold different videos or frames; cannot compare")
    fa, fb = a.frame_vectors().astype(np.float32), b.frame_vectors().astype(np.float32)
    reused = ~b.frames_encoded()
    cos = _cosines(fa[reused], fb[reused])
    # The model's own frame-to-frame jitter on the same frames: the cosine between each reused
    # frame's true embedding and the previous frame's (a reused frame is never a video's first).
    rows = np.flatnonzero(reused)
    floor = _cosines(fa[rows], fa[rows - 1])
    sa = np.concatenate([blk for _, blk in a.iter_vectors()]).astype(np.float32)
    sb = np.concatenate([blk for _, blk in b.iter_vectors()]).astype(np.float32)
    seg = _cosines(sa, sb)
    return {
        "frames": int(len(reused)),
        "encoded": int((~reused).sum()),
        "encoded_fraction": round(float((~reused).mean()), 4),
        "reused": int(reused.sum()),
        "min_cosine": round(float(cos.min()), 5) if len(cos) else None,
        "mean_cosine": round(float(cos.mean()), 5) if len(cos) else None,
        "p01_cosine": round(float(np.percentile(cos, 1)), 5) if len(cos) else None,
        "min_segment_cosine": round(float(seg.min()), 5),
        "neighbour_min_cosine": round(float(floor.min()), 5) if len(floor) else None,
    }


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b) / np.maximum(
        np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12
    )


def detection(index: Path, annotations: Path) -> tuple[dict[str, float], Any]:
    """The demo's detection (prompts, normal prompts) on ``index``, evaluated against ``annotations``."""
    from vadindex.api import VideoIndex
    from vadindex.demo import synth

    result = VideoIndex(index).detect(
        list(synth.DEMO_ANOMALY_PROMPTS),
        normal_prompts=list(synth.DEMO_NORMAL_PROMPTS),
        annotations=annotations,
    )
    m = result.metrics or {}
    out = {
        "video_f1": m.get("f1", 0.0),
        "segment_f1": m.get("segment", {}).get("f1", 0.0),
        "frame_auc": m.get("frame_auc"),
        "frame_ap": m.get("frame_ap"),
    }
    return {k: (round(float(v), 4) if v is not None else None) for k, v in out.items()}, result


def deltas(off: dict[str, Any], on: dict[str, Any]) -> dict[str, float]:
    return {k: round(abs(on[k] - off[k]), 4) for k in off if off[k] is not None and on.get(k) is not None}


def speed_and_fidelity(name: str, sources: list[Path], work: Path, encoder: Any, tag: str) -> dict[str, Any]:
    """Build ``sources`` without and with the gate; effective frames/s of both and the fidelity."""
    row: dict[str, Any] = {"footage": name, "model": tag, "load_before": load()}
    for gate in ("off", "auto"):
        s = build(sources, work / f"{name}-{tag}-{gate}", encoder, gate)
        row[f"fps_{gate}"] = round(s.frames_per_second, 2)
        row[f"seconds_{gate}"] = round(s.seconds, 1)
    row["speedup"] = round(row["fps_auto"] / row["fps_off"], 2)
    row.update(fidelity(work / f"{name}-{tag}-off", work / f"{name}-{tag}-auto"))
    row["load_after"] = load()
    print(
        f"{name:6s} {tag:22s} {row['frames']:6d} frames, {row['encoded_fraction']:.1%} encoded; "
        f"{row['fps_off']:7.1f} -> {row['fps_auto']:7.1f} frames/s ({row['speedup']:.2f}x); reused cosine "
        f"min {row['min_cosine']} mean {row['mean_cosine']} (neighbours {row['neighbour_min_cosine']}); "
        f"segment min {row['min_segment_cosine']} "
        f"(load {row['load_before']} -> {row['load_after']})",
        flush=True,
    )
    return row


def speed_at_default_precision(
    name: str, sources: list[Path], work: Path, model: str, pretrained: str
) -> dict[str, Any]:
    """Effective frames/s without and with the gate at vadindex's default ``--precision auto`` (int8
    after its check, on an x86 CPU): a fresh encoder for each build, so that both run the check."""
    from vadindex.config import DEFAULT_PRECISION
    from vadindex.models.openclip import load_encoder

    row: dict[str, Any] = {"footage": name, "precision": DEFAULT_PRECISION, "load_before": load()}
    for gate in ("off", "auto"):
        encoder = load_encoder(model, pretrained, "cpu", DEFAULT_PRECISION)
        s = build(sources, work / f"{name}-default-precision-{gate}", encoder, gate)
        row[f"fps_{gate}"] = round(s.frames_per_second, 2)
        row[f"precision_{gate}"] = s.precision
        shutil.rmtree(work / f"{name}-default-precision-{gate}", ignore_errors=True)
    row["speedup"] = round(row["fps_auto"] / row["fps_off"], 2)
    row["load_after"] = load()
    print(
        f"{name:6s} {model} --precision {DEFAULT_PRECISION} ({row['precision_off']}, {row['precision_auto']}): "
        f"{row['fps_off']:.1f} -> {row['fps_auto']:.1f} frames/s ({row['speedup']:.2f}x) "
        f"(load {row['load_before']} -> {row['load_after']})",
        flush=True,
    )
    return row


def gate_cost(video: Path, size: int, frames: int) -> float:
    """Milliseconds per frame of ``ChangeGate.decide`` on the crops the build makes, OpenCV on one thread."""
    import cv2

    from vadindex.ingest.decode import SampledVideo
    from vadindex.ingest.gate import ChangeGate, GateSettings

    crops = []
    for batch in SampledVideo(video, 4.0, size, 64).batches():
        crops.extend(batch)
        if len(crops) >= frames:
            break
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        best = float("inf")
        for _ in range(3):
            gate = ChangeGate(GateSettings(), 4.0)
            t = time.perf_counter()
            for crop in crops:
                gate.decide(crop)
            best = min(best, (time.perf_counter() - t) / len(crops))
    finally:
        cv2.setNumThreads(threads)
    return best * 1e3


def feeds(work: Path, args: argparse.Namespace) -> Any:
    """The idle feeds, generated once per set of parameters (reused from ``work`` when it has them)."""
    from vadindex.demo import synth

    folder = work / "feeds"
    params = {"seed": args.feed_seed, "feeds": args.feeds, "minutes": args.minutes, "activity": args.activity}
    stamp = folder / "bench_params.json"
    if stamp.exists() and json.loads(stamp.read_text()) == params and (folder / synth.MANIFEST_NAME).exists():
        print(f"reusing the feeds in {folder}", flush=True)
    else:
        shutil.rmtree(folder, ignore_errors=True)
        t = time.perf_counter()
        synth.generate_feeds(
            folder, args.feed_seed, args.feeds, minutes=args.minutes, activity=args.activity, workers=2
        )
        stamp.write_text(json.dumps(params))
        print(
            f"generated {args.feeds} feeds of {args.minutes:g} min in {time.perf_counter() - t:.0f} s",
            flush=True,
        )
    meta = json.loads((folder / synth.SCENES_JSON_NAME).read_text())
    return folder, [v["activity"] for v in meta["videos"]]


def demo_seed(seed: int, work: Path, encoder: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """One demo seed with and without the gate: detection metrics, query top-5s and fidelity."""
    from vadindex.api import VideoIndex
    from vadindex.demo import synth
    from vadindex.demo.run import run_queries

    scenes = synth.generate_scenes(work / f"demo{seed}" / "scenes", seed, 10, 10, workers=2)
    out: dict[str, Any] = {}
    tops: dict[str, list[list[tuple[str, float]]]] = {}
    for gate in ("off", "auto"):
        index = work / f"demo{seed}" / f"index-{gate}"
        build([], index, encoder, gate, scenes.manifest_path)
        queries = run_queries(VideoIndex(index), scenes)
        metrics, _ = detection(index, scenes.annotations_path)
        metrics["precision_at_5"] = round(float(np.mean([q["precision_at_5"] for q in queries])), 4)
        out[gate] = metrics
        tops[gate] = [[(t["video"], round(t["start"], 3)) for t in q["top"]] for q in queries]
    changed = sum(set(a) != set(b) for a, b in zip(tops["off"], tops["auto"], strict=True))
    reordered = sum(a != b for a, b in zip(tops["off"], tops["auto"], strict=True))
    fid = fidelity(work / f"demo{seed}" / "index-off", work / f"demo{seed}" / "index-auto")
    row = {
        "seed": seed,
        "off": out["off"],
        "auto": out["auto"],
        "delta": deltas(out["off"], out["auto"]),
        "queries": len(tops["off"]),
        "top5_changed": changed,
        "top5_order_changed": reordered,
    }
    print(
        f"demo seed {seed}: "
        + "  ".join(
            f"{k} {out['off'][k]:.3f}->{out['auto'][k]:.3f}" for k in out["off"] if out["off"][k] is not None
        )
        + f"; top-5 changed {changed}/{len(tops['off'])} (order {reordered}); "
        f"{fid['encoded_fraction']:.1%} encoded, reused cosine min {fid['min_cosine']} mean {fid['mean_cosine']}",
        flush=True,
    )
    return row, {"footage": "demo", "model": TINY, "seed": seed, **fid}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ViT-B-32", help="model for speed and fidelity [ViT-B-32]")
    ap.add_argument("--pretrained", default="random", help="its weights [random]")
    ap.add_argument("--precision", default="fp32", help="encoder arithmetic for every build [fp32]")
    ap.add_argument("--feeds", type=int, default=2, help="idle feeds [2]")
    ap.add_argument("--minutes", type=float, default=30.0, help="length of each feed [30]")
    ap.add_argument("--activity", type=float, default=0.05, help="fraction of a feed with activity [0.05]")
    ap.add_argument("--feed-seed", type=int, default=7, help="seed of the feeds [7]")
    ap.add_argument("--videos", type=Path, default=ROOT.parent / "shared" / "data" / "videos")
    ap.add_argument("--clips", type=int, default=None, help="use only this many real clips [all]")
    ap.add_argument("--seeds", type=int, nargs="*", default=list(range(7, 13)), help="demo seeds [7..12]")
    ap.add_argument(
        "--no-default-precision",
        dest="default_precision",
        action="store_false",
        help="skip the speed check on the idle feeds at the default --precision auto",
    )
    ap.add_argument("--work", type=Path, default=None, help="working folder [a temporary one]")
    ap.add_argument("--keep", action="store_true", help="keep the working folder")
    args = ap.parse_args()
    logging.getLogger("vadindex").setLevel(logging.ERROR)

    from vadindex.ingest.sources import collect_sources
    from vadindex.models.openclip import load_encoder

    work = args.work or Path(tempfile.mkdtemp(prefix="bench_gate_"))
    work.mkdir(parents=True, exist_ok=True)
    t_start, load_start = time.perf_counter(), load()
    print(f"load average {load_start} on {os.cpu_count()} cores; work folder {work}", flush=True)
    encoder = load_encoder(args.model, args.pretrained, "cpu", args.precision)
    tag = f"{args.model} ({args.pretrained}, {args.precision})"
    tiny = load_encoder(TINY, "builtin", "cpu", "fp32")
    rows: list[dict[str, Any]] = []
    try:
        feed_dir, activity = feeds(work, args)
        feed_videos = sorted((feed_dir / "videos").glob("*.mp4"))
        ms = gate_cost(feed_videos[0], 224, 400)
        print(
            f"gate cost: {ms:.3f} ms/frame on 224-px crops of a 640x360 feed, one thread",
            flush=True,
        )

        idle = speed_and_fidelity("idle", feed_videos, work, encoder, tag)
        idle["activity"] = activity
        rows.append(idle)
        rows.append(speed_and_fidelity("idle", feed_videos, work, tiny, TINY))
        default_precision = (
            speed_at_default_precision("idle", feed_videos, work, args.model, args.pretrained)
            if args.default_precision
            else None
        )
        feed_detect = {}
        for gate in ("off", "auto"):
            feed_detect[gate], _ = detection(work / f"idle-{TINY}-{gate}", feed_dir / "annotations.txt")
        feed_delta = deltas(feed_detect["off"], feed_detect["auto"])
        print(
            f"idle feeds, detection with {TINY}: off {feed_detect['off']}  auto {feed_detect['auto']}",
            flush=True,
        )

        clips = sorted(v.path for v in collect_sources([args.videos], None)[0])
        if args.clips:
            clips = [clips[round(i * (len(clips) - 1) / max(args.clips - 1, 1))] for i in range(args.clips)]
        clip_row = speed_and_fidelity("clips", clips, work, encoder, tag)
        rows.append(clip_row)
        rows.append(speed_and_fidelity("clips", clips, work, tiny, TINY))

        demo_rows = []
        for seed in args.seeds:
            row, fid = demo_seed(seed, work, tiny)
            demo_rows.append(row)
            rows.append(fid)
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    cosines = [r for r in rows if r["min_cosine"] is not None]
    metric_deltas = [v for r in demo_rows for v in r["delta"].values()] + list(feed_delta.values())
    summary = {
        "bench": "gate",
        "model": tag,
        "speedup_idle": idle["speedup"],
        "speedup_clips": clip_row["speedup"],
        "speedup_idle_default_precision": default_precision["speedup"] if default_precision else None,
        "min_cosine": min(r["min_cosine"] for r in cosines),
        "mean_cosine": min(r["mean_cosine"] for r in cosines),
        "metrics_delta_max": max(metric_deltas, default=0.0),
        "top5_changed": sum(r["top5_changed"] for r in demo_rows),
        "top5_order_changed": sum(r["top5_order_changed"] for r in demo_rows),
        "demo_queries": sum(r["queries"] for r in demo_rows),
        "gate_ms_per_frame": round(ms, 3),
        "fidelity": rows,
        "demo": demo_rows,
        "idle_default_precision": default_precision,
        "idle_detection": {"off": feed_detect["off"], "auto": feed_detect["auto"], "delta": feed_delta},
        "feeds": {"count": args.feeds, "minutes": args.minutes, "activity": activity},
        "seconds": round(time.perf_counter() - t_start, 1),
        "load_start": load_start,
        "load_end": load(),
        "cpus": os.cpu_count(),
    }
    print(
        f"speedup idle {summary['speedup_idle']}x, clips {summary['speedup_clips']}x; reused cosine min "
        f"{summary['min_cosine']}, lowest mean {summary['mean_cosine']}; metrics delta max "
        f"{summary['metrics_delta_max']}; top-5 changed {summary['top5_changed']}/{summary['demo_queries']}; "
        f"gate {summary['gate_ms_per_frame']} ms/frame"
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
