"""``build --engine ray`` against ``--engine local``, and how many GPU workers one driver can feed.

Two measurements, in one run:

1. **Frames/s, Ray against local**, on the same clips (``../shared/data/videos`` by default), same
   model and options, each build end to end as a user runs it (model loading; for Ray also starting
   a private Ray instance, its workers, and stopping it): ``local_fps``, ``ray_fps`` and ``ratio``
   (target >= 0.8). Both indexes are then compared: the same segments must come out.
2. **The driver alone**: the real Ray driver loop (:class:`~vadindex.ingest.ray_engine.RayEngine`:
   ``ray.wait``, copying results out of the object store, the ledger, background group commits
   through the real ``IndexWriter``) fed by replay actors that return ready-made results for
   synthetic videos (``--segments-per-video`` 1-s segments at 4 fps, 512-d vectors) at once.
   ``driver_segments_per_s`` is what it took in, end to end; on a small machine the replay actors
   share its cores, so that is a floor. The driver's own cost is measured as CPU time: its loop
   thread per video (``loop_us_per_video``) and its commit thread per segment
   (``commit_us_per_segment``); with a core for each (a third for Ray's client threads,
   ``ray_threads_us_per_video``), it takes in ``driver_capacity_segments_per_s``, the smaller of
   the two threads' rates. A GPU encoding 1,500 frames/s makes 1,500 / 4 = 375 segments/s, so
   ``gpus_per_driver = driver_capacity_segments_per_s / 375``. Also: the same results through the
   ledger and writer without Ray (``commit_segments_per_s``, wall clock).

The last line printed is one JSON object.

    python scripts/bench_ray.py                                     # all 26 clips, ViT-B-32 random
    python scripts/bench_ray.py --limit 6 --driver-videos 300       # a quick check
    python scripts/bench_ray.py --workers 1 --cpus-per-worker 2     # one 2-thread worker instead
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
GPU_FRAMES_PER_S = 1500.0
FPS, SEGMENT_SECONDS = 4.0, 1.0
DIM = 512


def load() -> str:
    """The 1-minute load average (other work on the machine skews every figure)."""
    with open("/proc/loadavg", encoding="ascii") as fh:
        return fh.read().split()[0]


def synthetic_video(video_id: str, name: str, segments: int, rng: np.random.Generator) -> Any:
    """A :class:`PendingVideo` shaped like a real one: ``segments`` 1-s segments of 4 frames."""
    from vadindex.index.manifest import SEGMENT_COLUMNS
    from vadindex.index.writer import PendingVideo

    per = round(FPS * SEGMENT_SECONDS)
    frames = rng.standard_normal((segments * per, DIM)).astype(np.float32)
    frames /= np.linalg.norm(frames, axis=1, keepdims=True)
    seg = frames.reshape(segments, per, DIM).mean(axis=1)
    seg /= np.linalg.norm(seg, axis=1, keepdims=True)
    n = segments
    table = pd.DataFrame(
        {
            "video_id": video_id, "video": name, "segment": np.arange(n, dtype=np.int32),
            "start": np.arange(n, dtype=float), "end": np.arange(1, n + 1, dtype=float),
            "start_frame": np.arange(n, dtype=np.int64) * 25, "end_frame": np.arange(1, n + 1, dtype=np.int64) * 25,
            "frame_row": np.arange(n, dtype=np.int64) * per, "n_frames": np.full(n, per, dtype=np.int32),
            "label": pd.array([None] * n, dtype="Int8"), "class": pd.array([None] * n, dtype="string"),
        }
    )[SEGMENT_COLUMNS]  # fmt: skip
    video = {
        "video_id": video_id, "video": name, "path": f"/cams/{name}", "label": None, "class": None,
        "duration": float(n), "n_frames": n * 25, "width": 1280, "height": 720, "codec": "h264",
        "n_segments": n, "warning": "",
    }  # fmt: skip
    return PendingVideo(video, table, seg, frames.astype(np.float16), "fp16")


def replay_worker_class(segments: int) -> Any:
    """A Ray actor with the worker's interface that returns a ready-made video at once."""
    import ray

    @ray.remote(concurrency_groups={"control": 1}, max_restarts=0, max_task_retries=0)
    class ReplayWorker:
        def __init__(self, *args: Any) -> None:
            self.template = synthetic_video("0" * 20, "template.mp4", segments, np.random.default_rng(0))

        @ray.method(concurrency_group="control")
        def describe(self) -> dict[str, Any]:
            from vadindex.models.identity import ModelIdentity

            ident = ModelIdentity("ViT-B-32", "random")
            return {"identity": ident, "dim": DIM, "logit_scale": 100.0, "image_size": 224, "precision": "fp16",
                    "where": f"pid {os.getpid()}"}  # fmt: skip

        @ray.method(concurrency_group="control")
        def heartbeat(self) -> float:
            return 0.0

        def ingest(self, source: Any, video_id: str) -> Any:
            from vadindex.index.writer import PendingVideo
            from vadindex.ingest.ray_worker import WorkerResult

            t = self.template
            table = t.segments.assign(video_id=video_id, video=source.video)
            video = dict(t.video, video_id=video_id, video=source.video)
            return WorkerResult(
                PendingVideo(video, table, t.segment_vectors, t.frame_vectors, "fp16"), precision="fp16"
            )

    return ReplayWorker


def bench_driver(n_videos: int, segments: int, workers: int, workdir: Path) -> dict[str, float]:
    """The Ray driver loop over replayed results: segments/s in, driver CPU time."""
    from vadindex.config import SamplingSettings
    from vadindex.ingest.build import BuildLedger, BuildPlan, open_build
    from vadindex.ingest.options import BuildOptions
    from vadindex.ingest.ray_engine import RayEngine, _Job
    from vadindex.ingest.sources import VideoSource

    cpu = {"loop": 0.0, "commit": 0.0}

    class ReplayEngine(RayEngine):
        def _jobs(self, ledger: Any) -> list[Any]:
            return [_Job(src, f"{i:020x}", 0) for i, src in enumerate(self.plan.videos)]

        def run(self, ledger: Any) -> None:
            t = time.thread_time()
            try:
                super().run(ledger)
            finally:
                cpu["loop"] += time.thread_time() - t

    class TimedLedger(BuildLedger):
        def _commit_in_thread(self, failures: list[tuple[str, str]]) -> None:
            t = time.thread_time()
            try:
                super()._commit_in_thread(failures)
            finally:
                cpu["commit"] += time.thread_time() - t

        def commit(self, final: bool = False) -> None:
            t = time.thread_time()
            try:
                super().commit(final)
            finally:
                cpu["commit"] += time.thread_time() - t

    options = BuildOptions(model="ViT-B-32", pretrained="random", engine="ray", workers=workers, cpus_per_worker=0.25,
                           index_type="flat")  # fmt: skip
    videos = tuple(VideoSource(Path(f"/cams/v{i:07d}.mp4"), f"v{i:07d}.mp4") for i in range(n_videos))
    plan = BuildPlan(workdir / "driver", options, SamplingSettings(FPS, SEGMENT_SECONDS), videos, ())
    with (
        ReplayEngine(plan, replay_worker_class(segments)) as engine,
        open_build(plan, start=engine.start) as (_, writer),
    ):
        ledger = TimedLedger(writer, plan, progress=False, background=True)
        cpu0, t0 = time.process_time(), time.perf_counter()
        try:
            engine.run(ledger)
            ledger.commit(final=True)
        finally:
            ledger.close()
        seconds = time.perf_counter() - t0
        process_cpu = time.process_time() - cpu0
        generations = writer.manifest.generation if writer.manifest else 0
    total = n_videos * segments
    loop_per_video = cpu["loop"] / n_videos
    commit_per_segment = cpu["commit"] / total
    capacity = min(segments / loop_per_video, 1 / commit_per_segment)
    return {
        "driver_segments_per_s": round(total / seconds, 1),
        "driver_videos_per_s": round(n_videos / seconds, 1),
        "driver_seconds": round(seconds, 2),
        "driver_cpu_s": round(process_cpu, 2),
        "loop_us_per_video": round(loop_per_video * 1e6),
        "commit_us_per_segment": round(commit_per_segment * 1e6, 1),
        "ray_threads_us_per_video": round((process_cpu - cpu["loop"] - cpu["commit"]) / n_videos * 1e6),
        "driver_capacity_segments_per_s": round(capacity, 1),
        "driver_commits": generations,
    }


def bench_commit(n_videos: int, segments: int, commit_every: int, workdir: Path) -> dict[str, float]:
    """The same results through the ledger and writer alone (no Ray), background commits."""
    from vadindex.config import SamplingSettings
    from vadindex.index.writer import IndexWriter
    from vadindex.ingest.build import BuildLedger, BuildPlan
    from vadindex.ingest.options import BuildOptions
    from vadindex.ingest.sources import VideoSource
    from vadindex.models.identity import ModelIdentity

    rng = np.random.default_rng(1)
    template = synthetic_video("0" * 20, "t.mp4", segments, rng)
    options = BuildOptions(
        model="ViT-B-32", pretrained="random", commit_every=commit_every, index_type="flat"
    )
    plan = BuildPlan(workdir / "commit", options, SamplingSettings(FPS, SEGMENT_SECONDS), (), ())
    sampling = {"fps": FPS, "segment_seconds": SEGMENT_SECONDS, "min_tail_fraction": 0.5}
    items = []
    for i in range(n_videos):
        vid = f"{i:020x}"
        table = template.segments.assign(video_id=vid)
        items.append((VideoSource(Path(f"/cams/v{i}.mp4"), f"v{i}.mp4"),
                      type(template)(dict(template.video, video_id=vid), table, template.segment_vectors,
                                     template.frame_vectors, "fp16")))  # fmt: skip
    with IndexWriter(
        plan.index, ModelIdentity("ViT-B-32", "random"), DIM, 100.0, sampling, index_type="flat"
    ) as w:
        ledger = BuildLedger(w, plan, progress=False, background=True)
        t0 = time.perf_counter()
        try:
            for src, item in items:
                ledger.add(src, item, 0.0)
            ledger.commit(final=True)
        finally:
            ledger.close()
        seconds = time.perf_counter() - t0
    return {
        "commit_segments_per_s": round(n_videos * segments / seconds, 1),
        "commit_seconds": round(seconds, 2),
    }


def bench_fps(clips: list[Path], args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Local and Ray builds of the same clips, end to end; the indexes must agree."""
    from vadindex.index.reader import open_index
    from vadindex.ingest import build_index

    common = {
        "model": args.model,
        "pretrained": args.pretrained,
        "precision": args.precision,
        "progress": False,
    }
    out: dict[str, Any] = {"load_before_local": load()}
    local = build_index(clips, workdir / "local", **common)
    out["load_before_ray"] = load()
    ray_opts = {"workers": args.workers, "cpus_per_worker": args.cpus_per_worker}
    ray = build_index(
        clips, workdir / "ray", engine="ray", **{k: v for k, v in ray_opts.items() if v}, **common
    )
    assert local.failures == ray.failures == (), (local.failures, ray.failures)
    a = open_index(workdir / "local").segments.sort_values(["video", "segment"])[["video", "start", "end"]]
    b = open_index(workdir / "ray").segments.sort_values(["video", "segment"])[["video", "start", "end"]]
    assert a.reset_index(drop=True).equals(b.reset_index(drop=True)), "local and Ray builds differ"
    out.update(
        videos=local.videos_added,
        frames=local.frames_encoded,
        local_seconds=round(local.seconds, 2),
        ray_seconds=round(ray.seconds, 2),
        local_fps=round(local.frames_per_second, 2),
        ray_fps=round(ray.frames_per_second, 2),
        ratio=round(ray.frames_per_second / local.frames_per_second, 3),
        precision_local=local.precision,
        precision_ray=ray.precision,
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=Path, default=ROOT.parent / "shared" / "data" / "videos")
    ap.add_argument("--limit", type=int, default=0, help="Only the first N clips (sorted) [default: all].")
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--pretrained", default="random")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--workers", type=int, default=None, help="Ray workers [default: the engine's].")
    ap.add_argument("--cpus-per-worker", type=float, default=None)
    ap.add_argument("--driver-videos", type=int, default=3000, help="Replayed videos for the driver figure.")
    ap.add_argument("--segments-per-video", type=int, default=60, help="1-s segments per replayed video.")
    ap.add_argument("--replay-workers", type=int, default=4)
    ap.add_argument("--skip-fps", action="store_true", help="Only the driver figures.")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    logging.getLogger("vadindex").setLevel(logging.ERROR)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    from vadindex.config import VIDEO_EXTENSIONS

    clips = sorted(p for p in args.videos.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)
    clips = clips[: args.limit] if args.limit else clips
    result: dict[str, Any] = {"bench": "ray", "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bench_ray_", dir=args.workdir) as tmp:
        work = Path(tmp)
        if not args.skip_fps:
            result.update(bench_fps(clips, args, work))
            print(f"local {result['local_fps']} frames/s, ray {result['ray_fps']} frames/s: "
                  f"ratio {result['ratio']} ({result['frames']} frames)", flush=True)  # fmt: skip
        result["load_before_driver"] = load()
        result.update(bench_commit(args.driver_videos, args.segments_per_video, 16, work))
        print(f"ledger + writer alone: {result['commit_segments_per_s']} segments/s", flush=True)
        result.update(bench_driver(args.driver_videos, args.segments_per_video, args.replay_workers, work))
    per_gpu = GPU_FRAMES_PER_S / (FPS * SEGMENT_SECONDS)
    result["segments_per_video"] = args.segments_per_video
    result["gpus_per_driver"] = round(result["driver_capacity_segments_per_s"] / per_gpu, 1)
    result["gpus_per_driver_wall"] = round(result["driver_segments_per_s"] / per_gpu, 1)
    print(f"driver, end to end here: {result['driver_segments_per_s']} segments/s ({result['driver_videos_per_s']} "
          f"videos/s, {result['driver_commits']} commits); its loop {result['loop_us_per_video']} us CPU per video, "
          f"its commits {result['commit_us_per_segment']} us CPU per segment: "
          f"{result['driver_capacity_segments_per_s']} segments/s with a core each, "
          f"{result['gpus_per_driver']} GPUs at {GPU_FRAMES_PER_S:g} frames/s", flush=True)  # fmt: skip
    keys = ["local_fps", "ray_fps", "ratio", "driver_segments_per_s", "gpus_per_driver"]
    print(json.dumps({**{k: result.get(k) for k in keys}, **result}))


if __name__ == "__main__":
    main()
