"""Report and thumbnail speed: the demo's report, a report over 1,000 videos x 100 segments, and 20
cold thumbnails from a 720p H.264 clip.

1. ``demo``: the demo's scene set (seed 7, 20 videos) indexed with vadindex-tiny; the figure is
   :func:`vadindex.report.write_report` on its detection with annotations, thumbnails decoded
   from the videos with an empty cache (``demo_report_s``, target <= 5 s), and the whole
   ``vadindex report`` command in a fresh process, imports and the cached detection included
   (``demo_report_cli_s``).
2. ``synthetic``: 1,000 videos x 100 one-second segments written through ``IndexWriter`` under the
   identity of the random-weight ``vadindex-test`` model, every segment with a stored 160x90
   thumbnail (``build --thumbnails``); the anomalous fifth of the videos carry an event (segment
   vectors pulled towards the anomaly prompts' text embeddings) that an annotation file marks.
   Figures: the report's wall time (``synthetic_report_s``, target <= 60 s) and size
   (``synthetic_report_mb``, target <= 30 MB) at the default ``--max-videos 200``; the detection
   before it is timed apart (``synthetic_detect_s``).
3. ``thumbnails``: ``traffic_camera.mp4`` (1280x720 H.264, 25 fps, a keyframe every 5.12 s) indexed
   with ``vadindex-test``; 20 of its segments' thumbnails from a new :class:`ThumbnailStore`
   without cache (open, check the file, seek and decode to each segment's middle frame, scale,
   JPEG): ``thumbnails_20_s`` (target <= 2 s). The baseline measured in the same run decodes the clip
   from its start to the last of those frames (``decode_from_start_s``) and the ratio is given.

The last line printed is one JSON object. ``uptime`` is printed first: figures from a loaded
machine are upper bounds; the ``*_cpu_s`` figures (CPU time of this process, all its threads) change
less with the load.

    python scripts/bench_report.py
    python scripts/bench_report.py --only thumbnails --videos ../shared/data/videos
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_query import SAMPLING, pending_video  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ANOMALY = ["people fighting", "a building on fire", "a car crash"]
NORMAL = ["people walking calmly", "an empty street", "cars driving normally"]


def bench_demo(work: Path) -> dict[str, float]:
    from vadindex.demo import synth
    from vadindex.detect import detect
    from vadindex.ingest import build_index
    from vadindex.report import write_report

    scenes = synth.generate_scenes(
        work / "scenes", synth.DEMO_SEED, 10, 10, workers=min(2, os.cpu_count() or 1)
    )
    build_index([], work / "index", manifest=scenes.manifest_path, model="vadindex-tiny", pretrained="builtin",
                device="cpu", progress=False)  # fmt: skip
    prompts, normal = list(synth.DEMO_ANOMALY_PROMPTS), list(synth.DEMO_NORMAL_PROMPTS)
    detect(work / "index", prompts, normal_prompts=normal, device="cpu")  # fills the similarity cache
    t = time.perf_counter()
    result = detect(work / "index", prompts, normal_prompts=normal, annotations=scenes.annotations_path)
    detect_s = time.perf_counter() - t
    t, cpu = time.perf_counter(), time.process_time()
    summary = write_report(result, work / "report.html")
    report_s, report_cpu = time.perf_counter() - t, time.process_time() - cpu
    assert summary.sections == 20 and summary.thumbnails == {"video": 60}, summary
    shutil.rmtree(work / "index" / "cache" / "thumbs")
    cmd = [sys.executable, "-m", "vadindex._cli.main", "-q", "report", "--index", str(work / "index"),
           "--prompts", "; ".join(prompts), "--normal-prompts", "; ".join(normal), "--annotations",
           str(scenes.annotations_path), "--out", str(work / "cli.html")]  # fmt: skip
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    cli_s = time.perf_counter() - t
    print(f"demo: detect {detect_s:.2f} s, report {report_s:.2f} s ({report_cpu:.2f} s of CPU, "
          f"{summary.bytes / 1e6:.2f} MB, {summary.plots} plots), `vadindex report` {cli_s:.2f} s", flush=True)  # fmt: skip
    return {"demo_detect_s": round(detect_s, 3), "demo_report_s": round(report_s, 3),
            "demo_report_cpu_s": round(report_cpu, 3),
            "demo_report_cli_s": round(cli_s, 3), "demo_report_mb": round(summary.bytes / 1e6, 3)}  # fmt: skip


def synthetic_thumbnails(count: int, seed: int = 0) -> list[bytes]:
    """``count`` distinct 160x90 JPEGs that compress like camera frames (smooth gradients, a few
    shapes, sensor noise), not like flat colour."""
    from vadindex.ingest.images import encode_jpeg

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:90, 0:160]
    out = []
    for _ in range(count):
        base = rng.uniform(40, 200, 3)
        img = (
            base
            + rng.uniform(-40, 40, 3) * (x[..., None] / 160)
            + rng.uniform(-30, 30, 3) * (y[..., None] / 90)
        )
        for _ in range(6):
            x0, y0 = rng.integers(0, 150), rng.integers(0, 80)
            img[y0 : y0 + rng.integers(6, 30), x0 : x0 + rng.integers(6, 40)] = rng.uniform(0, 255, 3)
        img += rng.normal(0, 6, img.shape)
        out.append(encode_jpeg(np.clip(img, 0, 255).astype(np.uint8)))
    return out


def bench_synthetic(work: Path, n_videos: int, n_segments: int) -> dict[str, float]:
    from vadindex.detect import detect
    from vadindex.index.writer import IndexWriter
    from vadindex.models.openclip import load_encoder
    from vadindex.report import write_report

    encoder = load_encoder("vadindex-test", "random", "cpu", "fp32")
    text = encoder.encode_texts(ANOMALY)
    rng = np.random.default_rng(1)
    jpegs = synthetic_thumbnails(64)
    index = work / "synthetic"
    annotations = []
    t = time.perf_counter()
    writer = IndexWriter(index, encoder.identity, encoder.dim, encoder.logit_scale, dict(SAMPLING))
    with writer:
        for v in range(n_videos):
            vectors = rng.standard_normal((n_segments, encoder.dim))
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            label = int(v % 5 == 0)
            if label:  # an event: 10-30 segments pulled towards one anomaly prompt
                a = int(rng.integers(0, n_segments - 30))
                b = a + int(rng.integers(10, 30))
                vectors[a:b] += rng.uniform(0.3, 1.2) * text[v % len(ANOMALY)]
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                annotations.append(f"v{v:07d}.mp4 Fighting {a * 25} {b * 25} -1 -1")
            else:
                annotations.append(f"v{v:07d}.mp4 Normal -1 -1 -1 -1")
            item = pending_video(vectors.astype(np.float32), v, label)
            item.thumbnails = pd.DataFrame(
                {"time": np.arange(n_segments) + 0.5,
                 "jpeg": pd.Series([jpegs[int(i)] for i in rng.integers(0, len(jpegs), n_segments)], dtype=object)}
            )  # fmt: skip
            writer.add(item)
            if writer.pending >= 100:
                writer.commit()
        writer.commit(final=True)
    write_s = time.perf_counter() - t
    (work / "annotations.txt").write_text("\n".join(annotations) + "\n")
    t = time.perf_counter()
    result = detect(index, ANOMALY, normal_prompts=NORMAL, annotations=work / "annotations.txt", encoder=encoder,
                    segment_threshold=0.9)  # fmt: skip
    detect_s = time.perf_counter() - t
    t, cpu = time.perf_counter(), time.process_time()
    summary = write_report(result, work / "synthetic.html")
    report_s, report_cpu = time.perf_counter() - t, time.process_time() - cpu
    m = result.metrics or {}
    print(f"synthetic: {n_videos} videos x {n_segments} segments written in {write_s:.1f} s; detect {detect_s:.2f} s "
          f"(video F1 {m.get('f1', 0):.2f}, frame AUC {m.get('frame_auc') or 0:.2f}); report {report_s:.2f} s "
          f"({report_cpu:.2f} s of CPU), "
          f"{summary.bytes / 1e6:.1f} MB, {summary.sections} sections, {summary.left_out} listed, "
          f"thumbnails {summary.thumbnails}", flush=True)  # fmt: skip
    return {"synthetic_videos": n_videos, "synthetic_segments": n_videos * n_segments,
            "synthetic_detect_s": round(detect_s, 3), "synthetic_report_s": round(report_s, 3),
            "synthetic_report_cpu_s": round(report_cpu, 3),
            "synthetic_report_mb": round(summary.bytes / 1e6, 2), "synthetic_sections": summary.sections}  # fmt: skip


def bench_thumbnails(work: Path, videos: Path) -> dict[str, float]:
    import av

    from vadindex.ingest import build_index
    from vadindex.models.openclip import load_encoder
    from vadindex.report import ThumbnailStore

    clip = videos / "traffic_camera.mp4"
    encoder = load_encoder("vadindex-test", "random", "cpu", "fp32")
    build_index([clip], work / "traffic", encoder=encoder, progress=False)
    rows = list(range(20))
    t, cpu = time.perf_counter(), time.process_time()
    store = ThumbnailStore(work / "traffic", cache=False)
    thumbs = store.segments(rows)
    thumbs_s, thumbs_cpu = time.perf_counter() - t, time.process_time() - cpu
    assert [x.source for x in thumbs] == ["video"] * 20, store.notes
    last = max(x.time for x in thumbs)
    t = time.perf_counter()
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if frame.time is not None and frame.time > last:
                break
            frame.reformat(width=256, height=144, format="rgb24")
    baseline_s = time.perf_counter() - t
    size = np.mean([len(x.jpeg) for x in thumbs])
    # One thumbnail near the end: a seek decodes at most one group of pictures, not the whole clip.
    t = time.perf_counter()
    late = ThumbnailStore(work / "traffic", cache=False).segment(22)
    late_s = time.perf_counter() - t
    print(f"thumbnails: 20 from {clip.name} in {thumbs_s:.2f} s ({thumbs_cpu:.2f} s of CPU, decoder threads "
          f"included; {size / 1024:.1f} KiB each); decoding from the "
          f"start to {last:.1f} s takes {baseline_s:.2f} s ({baseline_s / thumbs_s:.2f}x); one thumbnail at "
          f"{late.time:.1f} s: {late_s:.3f} s", flush=True)  # fmt: skip
    return {"thumbnails_20_s": round(thumbs_s, 3), "thumbnails_20_cpu_s": round(thumbs_cpu, 3),
            "decode_from_start_s": round(baseline_s, 3),
            "thumbnail_speedup": round(baseline_s / thumbs_s, 2), "thumbnail_kib": round(size / 1024, 2),
            "thumbnail_one_late_s": round(late_s, 3)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("demo", "synthetic", "thumbnails"), action="append")
    parser.add_argument("--videos", type=Path, default=ROOT.parent / "shared" / "data" / "videos")
    parser.add_argument("--synthetic-videos", type=int, default=1000)
    parser.add_argument("--synthetic-segments", type=int, default=100)
    parser.add_argument("--keep", type=Path, default=None, help="Work here and keep the files.")
    args = parser.parse_args()
    logging.getLogger("vadindex").setLevel(logging.ERROR)
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(), flush=True)
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_report_"))
    work.mkdir(parents=True, exist_ok=True)
    only = set(args.only or ("demo", "synthetic", "thumbnails"))
    out: dict[str, float] = {}
    try:
        if "thumbnails" in only:
            out.update(bench_thumbnails(work, args.videos))
        if "demo" in only:
            out.update(bench_demo(work / "demo"))
        if "synthetic" in only:
            out.update(bench_synthetic(work, args.synthetic_videos, args.synthetic_segments))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
