"""Detection reruns on a synthetic index of N segments: thresholds only, new prompts, memory, and what re-encoding would cost.

The index holds N random unit vectors (dim 512, one frame per segment) with metadata, written through
``vadindex.index.writer.IndexWriter`` under the identity of a random-weight ViT-B-32, so ``vadindex detect``
accepts it and can load the text tower for new prompts. Every figure is the wall time of a
``vadindex detect`` process, as a user would run it:

- ``first_run_s``: the first detect with the anomaly prompts (encodes them and the normal prompts,
  multiplies them against every segment and fills the index's similarity cache);
- ``rescore_s``: the same prompts with another ``--segment-threshold`` (warm cache: no model, no
  vectors), default table output (every video, a summary); ``rescore_json_s`` prints everything
  with ``--format json`` (every segment), ``rescore_json_anomalous_s`` with ``--segments anomalous``;
- ``new_prompts_s``: 10 prompts never seen before, with the weights loaded from a checkpoint file
  (how pretrained weights always load): text tower, 10 new similarity columns; the index is
  relabelled as built from a safetensors file of the same random weights for this;
  ``new_prompts_random_init_s`` is the same with ``--pretrained random`` (the seeded random
  initialisation of all of ViT-B-32 runs in the process, about a second);
- ``novelty_first_s``: the first detect with ``--novelty K --novelty-weight 0.5`` (K = ``--novelty``,
  10): every segment's K nearest segments of its camera, searched through the IVF cells when the
  index has them (``--index-type ivf``) and cached; the videos are spread over ``--cameras`` named
  cameras (20: 50,000 segments each at a million); ``novelty_rescore_s``: the same with another
  threshold (novelty read from the cache); ``novelty_recall_at_k``: the share of the exact
  K nearest (same camera, gap respected) that the cached lists hold, over 200 sampled segments;
- ``peak_rss_mb``: the largest peak resident memory of those processes (``os.wait4``);
- ``reencode_estimate_s``: N segments x frames per segment / encoder frames per second, what
  re-encoding the videos would cost instead (``--encoder-fps`` from bench_ingest.py, else measured
  here on random frames).

The last line printed is one JSON object.

    python scripts/bench_rescore.py --segments 1000000 --index-type ivf
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
from bench_query import (  # noqa: E402
    SAMPLING,
    SEGMENTS_PER_VIDEO,
    SyntheticData,
    pending_video,
    write_synthetic_index,
)

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
sys.stderr.write("__CPU_S__ %.3f\\n" % (usage.ru_utime + usage.ru_stime))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_detect(index: Path, args: list[str]) -> tuple[float, float, int, float]:
    """Run ``vadindex detect``; returns (wall seconds, peak RSS in MB, bytes written to stdout, CPU
    seconds: user + system, which a busy machine does not inflate the way it does wall time)."""
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
    cpu_s = float(err.rsplit("__CPU_S__", 1)[1].split()[0])
    return seconds, rss_kb / 1024, size, cpu_s


def measure_encoder_fps(encoder, batches: int = 2, batch_size: int = 64) -> float:  # type: ignore[no-untyped-def]
    x = np.random.default_rng(0).integers(
        0, 255, (batch_size, encoder.image_size, encoder.image_size, 3), np.uint8
    )
    encoder.encode_images(x[:8])
    t = time.perf_counter()
    for _ in range(batches):
        encoder.encode_images(x)
    return batches * batch_size / (time.perf_counter() - t)


def relabel_as_checkpoint(index: Path, checkpoint: Path) -> None:
    """Record ``checkpoint`` (the same weights the index was written with) as the index's model.

    Benchmark-only surgery on the manifest, so one written index serves both loading paths.
    """
    from vadindex.files import write_text_atomic
    from vadindex.index.manifest import MANIFEST
    from vadindex.models.weights import checkpoint_sha256

    manifest = json.loads((index / MANIFEST).read_text())
    manifest.update(
        pretrained=f"file:{checkpoint.name}",
        checkpoint_sha256=checkpoint_sha256(checkpoint),
        pretrained_path=str(checkpoint.absolute()),
    )
    write_text_atomic(index / MANIFEST, json.dumps(manifest, indent=2))


def novelty_recall_at_k(index: Path, k: int, samples: int = 200) -> float:
    """Share of each sampled segment's exact ``k`` nearest candidates (same camera, gap respected;
    a brute-force scan) whose cosines the cached novelty lists hold."""
    from vadindex.config import DEFAULT_NOVELTY_GAP
    from vadindex.detect.similarity import load_novelty
    from vadindex.index.reader import open_index

    snap = open_index(index)
    cached = np.asarray(load_novelty(snap, k, DEFAULT_NOVELTY_GAP))
    cams = snap.segment_cameras()
    segs = snap.segment_arrays()
    rows = np.random.default_rng(0).choice(len(cams), min(samples, len(cams)), replace=False)
    found = []
    for i in rows:
        same = np.flatnonzero(cams == cams[i])
        ok = (same != i) & ~(
            (segs.video[same] == segs.video[i])
            & (np.abs(segs.start[same] - segs.start[i]) <= DEFAULT_NOVELTY_GAP + 1e-6)
        )
        cand = same[ok]
        truth = np.sort(snap.vectors(cand) @ snap.vectors(np.array([i]))[0])[::-1][:k]
        # A cached cosine within float rounding of an exact top-k cosine counts as found.
        got = cached[i][~np.isnan(cached[i])]
        found.append(np.mean([np.any(np.abs(got - t) < 1e-4) for t in truth]) if len(truth) else 1.0)
    return float(np.mean(found))


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
        "--index-type", default="flat",
        help="FAISS index of the synthetic index (only the novelty search uses it: its IVF cells); a type "
        "other than flat is built over all the vectors once they are written.",
    )  # fmt: skip
    ap.add_argument(
        "--repeats", type=int, default=3, help="Runs of each warm measurement (the median is reported)."
    )
    ap.add_argument("--cameras", type=int, default=20, help="Named cameras the videos are spread over.")
    ap.add_argument(
        "--data", choices=["clustered", "random"], default="clustered",
        help="Synthetic vectors (bench_query.py): videos that drift around a centre, or uniform noise "
        "(the rescoring figures do not depend on it; novelty recall does).",
    )  # fmt: skip
    ap.add_argument(
        "--novelty", type=int, default=10, help="Novelty neighbours K (0: skip the novelty case)."
    )
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    logging.getLogger("vadindex").setLevel(logging.ERROR)

    from safetensors.torch import save_file

    from vadindex.config import SamplingSettings
    from vadindex.index.writer import IndexWriter
    from vadindex.models.openclip import load_encoder

    encoder = load_encoder("ViT-B-32", "random", "cpu")
    encoder_fps = args.encoder_fps or measure_encoder_fps(encoder)
    frames_per_segment = SamplingSettings().frames_per_segment
    root = Path(tempfile.mkdtemp(prefix="bench_rescore_", dir=args.workdir))
    index = root / "index"
    checkpoint = root / "vit-b-32-random.safetensors"
    save_file({k: v.contiguous() for k, v in encoder.model.state_dict().items()}, str(checkpoint))
    runs: dict[str, tuple[float, float, int, float]] = {}
    loads: dict[str, float] = {}

    def once(name: str, extra: list[str]) -> tuple[float, float, int, float]:
        loads[name] = os.getloadavg()[0]
        runs[name] = run_detect(index, extra)
        seconds, rss, size, cpu = runs[name]
        print(
            f"{name}: {seconds:.2f} s ({cpu:.2f} s CPU), peak RSS {rss:.0f} MB, {size / 1e6:.1f} MB printed, "
            f"load {loads[name]:.2f}"
        )
        return runs[name]

    def median(name: str, extra: list[str]) -> None:
        loads[name] = os.getloadavg()[0]
        got = []
        for i in range(args.repeats):
            threshold = ["--segment-threshold", f"{0.3 + 0.1 * i:.2f}"]
            got.append(run_detect(index, ["--prompts", ANOMALY_PROMPTS, *threshold, *extra]))
        got.sort()
        runs[name] = got[len(got) // 2]
        seconds, rss, size, cpu = runs[name]
        print(
            f"{name} (median of {args.repeats}): {seconds:.2f} s ({cpu:.2f} s CPU), peak RSS {rss:.0f} MB, "
            f"{size / 1e6:.1f} MB printed, load {loads[name]:.2f}"
        )

    def prompt_file(name: str, suffix: str) -> Path:
        file = root / f"{name}.txt"
        file.write_text("\n".join(f"{p.strip()}{suffix}" for p in NEW_PROMPTS.split(";")) + "\n")
        return file

    try:
        data = SyntheticData(args.segments, encoder.dim, args.data)
        write_s = write_synthetic_index(
            index, data, encoder.identity, encoder.logit_scale, "flat", args.commit_size, args.cameras
        )
        if args.index_type != "flat":
            # One more video committed with the wanted type: the writer rebuilds the FAISS index from
            # all the parts (as an index does when it grows past `auto`'s threshold), so IVF cells
            # are trained on every video rather than on the first commit's.
            t = time.perf_counter()
            with IndexWriter(index, encoder.identity, encoder.dim, encoder.logit_scale, dict(SAMPLING),
                             index_type=args.index_type) as writer:  # fmt: skip
                extra = SyntheticData(SEGMENTS_PER_VIDEO, encoder.dim, args.data, seed=99)
                writer.add(pending_video(extra.video(0), data.n_videos, label=0))
                writer.commit(final=True)
            write_s += time.perf_counter() - t
        del encoder
        print(f"wrote {args.segments} segments in {write_s:.1f} s")
        # --pretrained random first: its cache is keyed by that identity.
        once("new_prompts_random_init", ["--prompts", str(prompt_file("random", " at night"))])
        relabel_as_checkpoint(index, checkpoint)
        once("first_run", ["--prompts", ANOMALY_PROMPTS])
        median("rescore", [])
        median("rescore_json", ["--format", "json"])
        median("rescore_json_anomalous", ["--format", "json", "--segments", "anomalous"])
        once("new_prompts", ["--prompts", str(prompt_file("new", ""))])
        once(
            "new_prompts_json",
            ["--prompts", str(prompt_file("new_json", " seen from above")), "--format", "json"],
        )
        novelty_recall = None
        if args.novelty:
            nov = ["--novelty", str(args.novelty), "--novelty-weight", "0.5"]
            once("novelty_first", ["--prompts", ANOMALY_PROMPTS, *nov])
            median("novelty_rescore", nov)
            novelty_recall = novelty_recall_at_k(index, args.novelty)
            print(f"novelty_recall_at_{args.novelty}: {novelty_recall:.3f}")
        # In a long-lived process (a notebook, a service) the model loads once: new prompts then
        # cost their encoding, the product with every segment and the decisions.
        from vadindex import VideoIndex

        idx = VideoIndex(index, device="cpu")
        idx.detect(str(prompt_file("warm", " on a rainy day")))  # loads the model once
        t = time.perf_counter()
        idx.detect(str(prompt_file("in_process", " in the snow")))
        in_process_s = time.perf_counter() - t
        print(f"new_prompts_in_process: {in_process_s:.2f} s (VideoIndex.detect, model already loaded)")
        cache_mb = (
            sum(f.stat().st_size for f in (index / "cache").glob("*")) / 1e6
            if (index / "cache").is_dir()
            else 0.0
        )
        reencode = args.segments * frames_per_segment / encoder_fps
        result = {
            "bench": "rescore",
            "segments": args.segments,
            **{f"{name}_s": round(v[0], 2) for name, v in runs.items()},
            "new_prompts_in_process_s": round(in_process_s, 2),
            "rescore_json_mb": round(runs["rescore_json"][2] / 1e6, 1),
            "novelty_recall_at_k": None if novelty_recall is None else round(novelty_recall, 4),
            "cameras": args.cameras,
            "data": args.data,
            "index_type": args.index_type,
            "peak_rss_mb": round(max(v[1] for v in runs.values()), 1),
            "peak_rss_mb_by_run": {name: round(v[1]) for name, v in runs.items()},
            "cpu_s_by_run": {name: round(v[3], 2) for name, v in runs.items()},
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
