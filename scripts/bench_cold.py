"""Cold starts as a user waits for them: each figure is the wall time of a fresh ``vadindex`` process,
from process start to exit.

Everything runs with its own user cache (``XDG_CACHE_HOME`` in the work folder), so the first build
here is the first on a "machine" that has never exported a text tower nor checked int8:

- ``import_s``: ``python -c "import torch, open_clip"``, what every command paid before;
- ``build_26_first_s``: ``vadindex build`` of the clips (ViT-B-32, random weights, default
  ``--precision auto``) with an empty user cache: it checks int8 and exports the text tower;
  ``build_26_again_s``: the same clips into a new index, the verdict and export remembered;
  ``build_one_s``: one clip into a new index (warm cache), the fixed cost of a small build;
- ``pipeline_fps``: frames/s of the same build in this process with the model loaded beforehand
  (the figure BENCHMARKS.md reports for ingestion), against which ``build_26_again_fps`` (frames over
  the whole process) is compared: ``again_ratio``;
- ``query_s``: ``vadindex query`` on the demo index (``vadindex demo``: vadindex-tiny, 222 segments),
  a new text each time (median of ``--repeats``); ``query_cached_s`` a text asked before;
  ``query_torch_s`` the same with ``--text-encoder torch`` (the path before the ONNX text tower);
  ``same_rows``: the onnx and torch answers list the same segments in the same order (scores
  within 1e-5), compared on copies of the index without its cache; ``image_query_s``: an
  ``--image`` query, which still loads torch;
- ``query_1m_s``: a new text on a synthetic index of ``--segments`` (ViT-B-32 identity, IVF as
  ``auto`` picks at that size); ``new_prompts_1m_s``: ``vadindex detect`` with 10 new prompts
  there (the built-in normal prompts already cached by a first run), ``new_prompts_1m_torch_s``
  the same with ``--text-encoder torch``.

``query_cpu_s`` and ``new_prompts_1m_cpu_s`` are the CPU time (user + system) of those processes,
which a busy machine stretches much less than their wall time. The last line printed is one JSON
object.

    python scripts/bench_cold.py
    python scripts/bench_cold.py --segments 100000 --limit 4 --repeats 1   # a quick check
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import pick_videos, run_pipeline  # noqa: E402
from bench_query import SyntheticData, write_synthetic_index  # noqa: E402

QUERIES = ["smoke and flames", "a person lying on the ground", "two cars crashing into each other",
           "a crowd running away", "people fighting in a car park", "a quiet street at night",
           "a man walking a dog"]  # fmt: skip
ANOMALY_PROMPTS = "people fighting; a person falling down; a car crash"
NEW_PROMPTS = ["a person climbing a fence", "smoke rising from a building", "a man running with a bag",
               "a crowd running away", "a person lying on the road", "a broken shop window",
               "two cars colliding at a crossing", "a person hitting another with a stick",
               "a bicycle stolen from a rack", "water flooding a street"]  # fmt: skip


#: CPU seconds (user + system) of every command run so far, by the command's first word.
CPU: dict[str, list[float]] = {}


def vadindex(*args: object, env: dict[str, str]) -> tuple[float, str]:
    """Run ``vadindex ARGS`` in a new process; returns (wall seconds from start to exit, stdout).

    Its CPU time is recorded in :data:`CPU`: on a busy machine wall times stretch, CPU times much less.
    """
    cmd = [sys.executable, "-m", "vadindex._cli.main", "-q", *map(str, args)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 3):
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    CPU.setdefault(str(args[0]), []).append(round(cpu, 3))
    return seconds, proc.stdout


def median_of(runs: list[float]) -> float:
    return round(statistics.median(runs), 3)


def load() -> float:
    return round(os.getloadavg()[0], 2)


def same_rows(a: list[dict], b: list[dict]) -> bool:
    keys = [(r["video"], r["segment"]) for r in a] == [(r["video"], r["segment"]) for r in b]
    return keys and bool(np.allclose([r["score"] for r in a], [r["score"] for r in b], atol=1e-5))


def copy_without_cache(index: Path, to: Path) -> Path:
    shutil.copytree(index, to, ignore=shutil.ignore_patterns("cache"))
    return to


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=Path, default=ROOT.parent / "shared" / "data" / "videos")
    ap.add_argument("--limit", type=int, default=None, help="Build this many of the clips [default: all].")
    ap.add_argument("--segments", type=int, default=1_000_000)
    ap.add_argument(
        "--repeats", type=int, default=3, help="Cold runs of each query (the median is reported)."
    )
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    logging.getLogger("vadindex").setLevel(logging.ERROR)

    root = Path(tempfile.mkdtemp(prefix="bench_cold_", dir=args.workdir))
    cache = root / "cache"
    os.environ["XDG_CACHE_HOME"] = str(cache)  # this process too: its exports and verdicts go there
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out: dict[str, object] = {"bench": "cold", "load_start": load()}
    try:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch, open_clip"], check=True, env=env)
        out["import_s"] = round(time.perf_counter() - t, 3)
        print(f"import torch, open_clip: {out['import_s']:.2f} s (load {load()})")

        # Builds: the first on this "machine", then the same again, then one clip.
        paths = pick_videos(args.videos, args.limit)
        clips = root / "clips"
        clips.mkdir()
        for i, p in enumerate(paths):  # one folder holding exactly these files
            (clips / f"{i:03d}_{p.name}").symlink_to(p)
        model = ["--model", "ViT-B-32", "--pretrained", "random", "--format", "json"]
        builds = {}
        for name, sources in (("build_26_first", clips), ("build_26_again", clips), ("build_one", paths[0])):
            seconds, stdout = vadindex("build", sources, "--index", root / name, *model, env=env)
            summary = json.loads(stdout)
            builds[name] = summary
            out[f"{name}_s"] = round(seconds, 2)
            out[f"{name}_frames"] = summary["frames_encoded"]
            out[f"{name}_fps"] = round(summary["frames_encoded"] / seconds, 2)
            out[f"{name}_precision"] = summary["precision"]
            check = summary["int8_check"] or {}
            print(f"{name}: {len(paths) if sources == clips else 1} clips, {summary['frames_encoded']} frames, "
                  f"{seconds:.1f} s end to end = {out[f'{name}_fps']} frames/s (in-process {summary['seconds']:.1f} s); "
                  f"{summary['precision']}, int8 check {'remembered' if check.get('remembered') else check} "
                  f"(load {load()})")  # fmt: skip

        from vadindex.models.openclip import load_encoder

        encoder = load_encoder("ViT-B-32", "random", "cpu", "auto", remember_int8=True)  # int8 as remembered
        (root / "pipeline").mkdir()
        frames, seconds = run_pipeline(paths, encoder, 64, root / "pipeline")
        out["pipeline_fps"] = round(frames / seconds, 2)
        out["again_ratio"] = round(float(out["build_26_again_fps"]) / out["pipeline_fps"], 3)  # type: ignore[arg-type]
        print(f"pipeline (model loaded beforehand): {frames} frames in {seconds:.1f} s = {out['pipeline_fps']} "
              f"frames/s; second build end to end / pipeline = {out['again_ratio']} (load {load()})")  # fmt: skip

        # The demo index: new texts, a text asked before, torch, an image.
        vadindex("demo", "--out", root / "demo", "--format", "json", env=env)
        demo = root / "demo" / "index"
        texts = [f"{QUERIES[i % len(QUERIES)]} #{i}" for i in range(args.repeats)]
        CPU.pop("query", None)
        out["query_s"] = median_of([vadindex("query", q, "--index", demo, env=env)[0] for q in texts])
        out["query_cpu_s"] = median_of(CPU["query"])
        out["query_cached_s"] = median_of([vadindex("query", texts[0], "--index", demo, env=env)[0]])
        torch_ix = copy_without_cache(demo, root / "demo-torch")
        onnx_ix = copy_without_cache(demo, root / "demo-onnx")
        agree, torch_runs = [], []
        for q in QUERIES[: max(args.repeats, 3)]:
            seconds, a = vadindex(
                "query", q, "--index", torch_ix, "--text-encoder", "torch", "--format", "json", env=env
            )
            torch_runs.append(seconds)
            b = vadindex(
                "query", q, "--index", onnx_ix, "--text-encoder", "onnx", "--format", "json", env=env
            )[1]
            agree.append(same_rows(json.loads(a), json.loads(b)))
        out["query_torch_s"] = median_of(torch_runs)
        out["same_rows"] = all(agree)
        from PIL import Image

        image = root / "query.png"
        Image.fromarray(np.full((120, 160, 3), (200, 90, 30), np.uint8)).save(image)
        out["image_query_s"] = median_of([vadindex("query", "--image", image, "--index", demo, env=env)[0]])
        print(f"demo index: query {out['query_s']} s (CPU {out['query_cpu_s']} s; median of {args.repeats} new texts), asked before "
              f"{out['query_cached_s']} s, --text-encoder torch {out['query_torch_s']} s, same rows {out['same_rows']}, "
              f"--image {out['image_query_s']} s (load {load()})")  # fmt: skip

        # A synthetic index of --segments with the identity of random ViT-B-32 (exported above).
        assert encoder.export_text_onnx() is not None
        big = root / "big"
        data = SyntheticData(args.segments, encoder.dim, "clustered")
        write_s = write_synthetic_index(big, data, encoder.identity, encoder.logit_scale, "auto")
        del encoder
        print(f"wrote {args.segments} segments in {write_s:.0f} s")
        out["query_1m_s"] = median_of([vadindex("query", q, "--index", big, env=env)[0] for q in texts])
        first, _ = vadindex("detect", "--index", big, "-p", ANOMALY_PROMPTS, env=env)
        out["first_detect_1m_s"] = round(first, 2)
        new, _ = vadindex("detect", "--index", big, "-p", "; ".join(NEW_PROMPTS), env=env)
        out["new_prompts_1m_s"] = round(new, 2)
        out["new_prompts_1m_cpu_s"] = CPU["detect"][-1]
        torch_prompts = "; ".join(f"{p} at night" for p in NEW_PROMPTS)
        torch_s, _ = vadindex(
            "detect", "--index", big, "-p", torch_prompts, "--text-encoder", "torch", env=env
        )
        out["new_prompts_1m_torch_s"] = round(torch_s, 2)
        print(f"{args.segments} segments: query {out['query_1m_s']} s, first detect {out['first_detect_1m_s']} s, "
              f"10 new prompts {out['new_prompts_1m_s']} s (CPU {out['new_prompts_1m_cpu_s']} s; --text-encoder torch {out['new_prompts_1m_torch_s']} s) "
              f"(load {load()})")  # fmt: skip
        out["segments"] = args.segments
        out["clips"] = len(paths)
        out["load_end"] = load()
        out["targets_met"] = {
            "query_s<=0.8": out["query_s"] <= 0.8,  # type: ignore[operator]
            "new_prompts_1m_s<=2": out["new_prompts_1m_s"] <= 2,  # type: ignore[operator]
            "again_ratio>=0.85": out["again_ratio"] >= 0.85,  # type: ignore[operator]
            "same_rows": out["same_rows"],
        }
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
