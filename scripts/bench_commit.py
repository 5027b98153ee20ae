"""Commit cost of a long build: the FAISS file rewritten at every commit against geometric rewrites.

A build commits every ``--commit-every`` videos (16 by default) or every minute. Each commit used to
rewrite (and SHA-256) the whole FAISS file, so a build's writes grew with the square of the index
size. Now a commit rewrites it only when the rows it lacks exceed a quarter of those it holds, and
the build's end writes it whole; readers scan the missing rows exactly. Both ways run here in one
process, on the same synthetic index (random unit vectors, float16 parts, ``--index-type flat``),
written through ``vadindex.index.writer.IndexWriter`` as a build writes it:

- ``writer_s``: wall time of all the commits (parts, video table, FAISS file, manifest, fsyncs);
- ``faiss_gb``: bytes of FAISS file written;
- ``last_commits_s``: mean time of the last 10 commits (what a commit costs once the index is large);
- ``partial_query_ms`` / ``complete_query_ms``: one exact top-10 search just before the final commit
  (the newest rows scanned from the parts) and just after it.

The last line printed is one JSON object.

    python scripts/bench_commit.py                                  # 200,000 segments, commits of 4,000
    python scripts/bench_commit.py --segments 1000000 --commit-segments 4000 --workdir /tmp
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_query import SAMPLING, SEGMENTS_PER_VIDEO, pending_video  # noqa: E402


def write(path: Path, vectors: np.ndarray, commit_segments: int, query: np.ndarray) -> dict[str, float]:
    """Write ``vectors`` as an index in commits of ``commit_segments``; time it."""
    from vadindex.index import faiss_index
    from vadindex.index.reader import open_index
    from vadindex.index.writer import IndexWriter
    from vadindex.models.identity import ModelIdentity
    from vadindex.search.vectors import search_vector

    written = [0]
    real_save = faiss_index.save

    def counting_save(target: Path, index) -> None:  # type: ignore[no-untyped-def]
        real_save(target, index)
        written[0] += target.stat().st_size

    faiss_index.save = counting_save
    identity = ModelIdentity("ViT-B-32", "random")
    commit_times: list[float] = []
    try:
        t0 = time.perf_counter()
        with IndexWriter(
            path, identity, vectors.shape[1], 100.0, dict(SAMPLING), index_type="flat"
        ) as writer:
            queued = 0
            for v, first in enumerate(range(0, len(vectors), SEGMENTS_PER_VIDEO)):
                block = vectors[first : first + SEGMENTS_PER_VIDEO]
                writer.add(pending_video(block, v, label=0))
                queued += len(block)
                if queued >= commit_segments:
                    t = time.perf_counter()
                    writer.commit()
                    commit_times.append(time.perf_counter() - t)
                    queued = 0
            writer.commit()
            snap = open_index(path)
            partial_rows = snap.manifest.faiss_covered
            search_vector(snap, query, k=10)  # warm
            t = time.perf_counter()
            partial = search_vector(snap, query, k=10)
            partial_ms = (time.perf_counter() - t) * 1000
            t = time.perf_counter()
            writer.commit(final=True)
            final_s = time.perf_counter() - t
            generations = writer.manifest.generation
        writer_s = time.perf_counter() - t0
        snap = open_index(path)
        search_vector(snap, query, k=10)
        t = time.perf_counter()
        complete = search_vector(snap, query, k=10)
        complete_ms = (time.perf_counter() - t) * 1000
        assert list(partial["video"]) == list(complete["video"]), "partial and complete searches disagree"
    finally:
        faiss_index.save = real_save
    return {
        "writer_s": round(writer_s, 2),
        "commits": generations,
        "faiss_gb": round(written[0] / 1e9, 3),
        "last_commits_s": round(float(np.mean(commit_times[-10:])), 3),
        "final_commit_s": round(final_s, 3),
        "faiss_rows_before_final": partial_rows,
        "partial_query_ms": round(partial_ms, 1),
        "complete_query_ms": round(complete_ms, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segments", type=int, default=200_000)
    ap.add_argument(
        "--commit-segments", type=int, default=4000, help="Segments per commit (16 videos of 250)."
    )
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument(
        "--workdir", type=Path, default=None, help="Where to write the indexes [default: a temp dir]."
    )
    args = ap.parse_args()
    logging.getLogger("vadindex").setLevel(logging.ERROR)

    from vadindex.index import writer as store

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.segments, args.dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    query = vectors[-5] + 0.5 * rng.standard_normal(args.dim).astype(np.float32) / np.sqrt(args.dim)
    query /= np.linalg.norm(query)
    print(f"{args.segments} segments of dim {args.dim}, commits of {args.commit_segments} segments")
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_commit_", dir=args.workdir) as tmp:
        for name, fraction in (("every_commit", -1.0), ("geometric", store.FAISS_TAIL_FRACTION)):
            saved = store.FAISS_TAIL_FRACTION
            store.FAISS_TAIL_FRACTION = fraction  # -1: the old behaviour, a rewrite at every commit
            try:
                results[name] = write(Path(tmp) / name, vectors, args.commit_segments, query)
            finally:
                store.FAISS_TAIL_FRACTION = saved
            shutil.rmtree(Path(tmp) / name)
            print(f"{name:13s} {results[name]}", flush=True)
    old, new = results["every_commit"], results["geometric"]
    print(
        json.dumps(
            {
                "bench": "commit",
                "segments": args.segments,
                "commit_segments": args.commit_segments,
                **{f"{k}_{name}": v for name, r in results.items() for k, v in r.items()},
                "writer_speedup": round(old["writer_s"] / new["writer_s"], 2),
                "faiss_bytes_ratio": round(old["faiss_gb"] / max(new["faiss_gb"], 1e-9), 1),
            }
        )
    )


if __name__ == "__main__":
    main()
