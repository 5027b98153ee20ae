"""Detection reruns on a synthetic index of N segments: thresholds only, new prompts, memory, and what re-encoding would cost.

The index holds N random unit vectors (dim 512, one frame per segment) with metadata, written through
``vadindex.store.IndexWriter`` under the identity of a random-weight ViT-B-32, so ``vadindex detect``
accepts it and can load the text tower for new prompts. Every figure is the wall time of a
``vadindex detect`` process, as a user would run it:

- ``first_run_s``: the first detect with the anomaly prompts (encodes them and the normal prompts,
  multiplies them against every segment and fills the index's similarity cache);
- ``rescore_s``: the same prompts with another ``--segment-threshold`` (warm cache: no model, no
  vectors), ``--format json`` (every segment printed), and ``rescore_table_s`` with the table output;
- ``new_prompts_s``: 10 prompts never seen before (text tower loaded, 10 new similarity columns);
- ``peak_rss_mb``: the largest peak resident memory of those processes (``os.wait4``);
- ``reencode_estimate_s``: N segments x frames per segment / encoder frames per second, what
  re-encoding the videos would cost instead (``--encoder-fps`` from bench_ingest.py, else measured
  here on random frames).

The last line printed is one JSON object.

    python scripts/bench_rescore.py --segments 1000000
    python scripts/bench_rescore.py --segments 50000 --encoder-fps 20
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_query import SyntheticData, write_synthetic_index  # noqa: E402

ANOMALY_PROMPTS = "people fighting; a person falling down; a car crash"
NEW_PROMPTS = "; ".join(
    [
        "a person climbing a fence", "smoke rising from a building", "a man running with a bag",
        "a crowd running away", "a person lying on the road", "a broken shop window at night",
        "two cars colliding at a crossing", "a person hitting another with a stick",
        "a bicycle stolen from a rack", "water flooding a street",
    ]
)  # fmt: skip


#: Runs a command in a fresh, small process and reports the command's own peak RSS: a child forked
#: straight from this (large) process would count this process's memory in its ``ru_maxrss``.
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
sys.stderr.write("\\n__PEAK_RSS_KB__ %d\\n" % usage.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_detect(index: Path, args: list[str]) -> tuple[float, float, int]:
    """Run ``vadindex detect``; returns (wall seconds, peak RSS in MB, bytes written to stdout)."""
    cmd = [sys.executable, "-m", "vadindex._cli.main", "-q", "detect", "--index", str(index), *args]
    with tempfile.TemporaryFile() as out:
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _LAUNCHER, *cmd], stdout=out, stderr=subprocess.PIPE)
        seconds = time.perf_counter() - t
        size = out.tell()
    err = proc.stderr.decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"detect failed ({proc.returncode}): {' '.join(cmd)}\n{err}")
    rss_kb = int(err.rsplit("__PEAK_RSS_KB__", 1)[1].split()[0])
    return seconds, rss_kb / 1024, size


def measure_encoder_fps(encoder, batches: int = 2, batch_size: int = 64) -> float:  # type: ignore[no-untyped-def]
    x = np.random.default_rng(0).integers(
        0, 255, (batch_size, encoder.image_size, encoder.image_size, 3), np.uint8
    )
    encoder.encode_images(x[:8])
    t = time.perf_counter()
    for _ in range(batches):
        encoder.encode_images(x)
    return batches * batch_size / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segments", type=int, default=100_000)
    ap.add_argument(
        "--encoder-fps",
        type=float,
        default=None,
        help="Encoder frames/s (bench_ingest.py); measured if absent.",
    )
    ap.add_argument("--commit-size", type=int, default=250_000)
    ap.add_argument(
        "--index-type", default="flat", help="FAISS index of the synthetic index (detect does not use it)."
    )
    ap.add_argument(
        "--repeats", type=int, default=3, help="Runs of each warm measurement (the median is reported)."
    )
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    logging.getLogger("vadindex").setLevel(logging.ERROR)

    from vadindex.config import SamplingSettings
    from vadindex.encoder import load_encoder

    encoder = load_encoder("ViT-B-32", "random", "cpu")
    encoder_fps = args.encoder_fps or measure_encoder_fps(encoder)
    frames_per_segment = SamplingSettings().frames_per_segment
    root = Path(tempfile.mkdtemp(prefix="bench_rescore_", dir=args.workdir))
    index = root / "index"
    try:
        data = SyntheticData(args.segments, encoder.dim, "random")
        write_s = write_synthetic_index(
            index, data, encoder.identity, encoder.logit_scale, args.index_type, args.commit_size
        )
        del encoder
        print(f"wrote {args.segments} segments in {write_s:.1f} s")
        base = ["--prompts", ANOMALY_PROMPTS, "--format", "json"]
        loads: dict[str, float] = {"first": os.getloadavg()[0]}
        first_s, first_rss, _ = run_detect(index, base)
        print(
            f"first run (cold cache): {first_s:.2f} s, peak RSS {first_rss:.0f} MB, load {loads['first']:.2f}"
        )

        def median_of(extra: list[str], fmt: str) -> tuple[float, float, int]:
            runs = []
            for i in range(args.repeats):
                threshold = ["--segment-threshold", f"{0.3 + 0.1 * i:.2f}"]
                runs.append(
                    run_detect(index, ["--prompts", ANOMALY_PROMPTS, *threshold, "--format", fmt, *extra])
                )
            runs.sort()
            return runs[len(runs) // 2]

        loads["rescore"] = os.getloadavg()[0]
        rescore_s, rescore_rss, json_bytes = median_of([], "json")
        print(
            f"rescore, json ({json_bytes / 1e6:.0f} MB printed): {rescore_s:.2f} s, peak RSS {rescore_rss:.0f} MB, load {loads['rescore']:.2f}"
        )
        table_s, table_rss, _ = median_of([], "table")
        print(f"rescore, table: {table_s:.2f} s, peak RSS {table_rss:.0f} MB")

        loads["new_prompts"] = os.getloadavg()[0]
        prompt_file = root / "new_prompts.txt"
        prompt_file.write_text("\n".join(p.strip() for p in NEW_PROMPTS.split(";")) + "\n")
        new_s, new_rss, _ = run_detect(index, ["--prompts", str(prompt_file), "--format", "json"])
        print(f"10 new prompts: {new_s:.2f} s, peak RSS {new_rss:.0f} MB, load {loads['new_prompts']:.2f}")
        other_file = root / "new_prompts_2.txt"
        other_file.write_text(
            "\n".join(f"{p.strip()} seen from above" for p in NEW_PROMPTS.split(";")) + "\n"
        )
        new_table_s, new_table_rss, _ = run_detect(index, ["--prompts", str(other_file), "--format", "table"])
        print(f"10 other new prompts, table: {new_table_s:.2f} s, peak RSS {new_table_rss:.0f} MB")
        cache_mb = (
            sum(f.stat().st_size for f in (index / "cache").glob("*")) / 1e6
            if (index / "cache").is_dir()
            else 0.0
        )
        reencode = args.segments * frames_per_segment / encoder_fps
        result = {
            "bench": "rescore",
            "segments": args.segments,
            "first_run_s": round(first_s, 2),
            "rescore_s": round(rescore_s, 2),
            "rescore_table_s": round(table_s, 2),
            "rescore_json_mb": round(json_bytes / 1e6, 1),
            "new_prompts_s": round(new_s, 2),
            "new_prompts_table_s": round(new_table_s, 2),
            "peak_rss_mb": round(max(first_rss, rescore_rss, table_rss, new_rss, new_table_rss), 1),
            "peak_rss_mb_by_run": {
                "first": round(first_rss),
                "rescore": round(rescore_rss),
                "rescore_table": round(table_rss),
                "new_prompts": round(new_rss),
                "new_prompts_table": round(new_table_rss),
            },
            "cache_mb": round(cache_mb, 1),
            "encoder_fps": round(encoder_fps, 2),
            "frames_per_segment": frames_per_segment,
            "reencode_estimate_s": round(reencode, 1),
            "write_s": round(write_s, 1),
            "load_avg_1m": {k: round(v, 2) for k, v in loads.items()} | {"end": round(os.getloadavg()[0], 2)},
            "nproc": os.cpu_count(),
        }
    finally:
        if args.keep:
            print(f"kept {index}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
