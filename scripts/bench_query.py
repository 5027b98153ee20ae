"""Query latency on a synthetic index of N segments: exact float16 scan against the approximate (IVF) index.

The index is written through ``vadindex.index.writer.IndexWriter`` exactly as a build writes it (float16
parts, Parquet metadata, FAISS file), first with ``--index-type flat``; then one more commit with
``--index-type ivf`` makes the writer rebuild the FAISS index from the float16 parts, as a real index
switches when it grows. Figures, all in this process with the index memory-mapped and warm:

- ``exact_ms``: median wall time of ``search_vector`` (top 10, metadata included) for one text query
  on the exact index;
- ``ann_ms``: the same on the IVF index (candidates re-scored exactly from the float16 vectors);
- ``ann_recall_at_10``: overlap of the IVF top 10 with the exact top 10 over ``--queries`` queries.

Synthetic data (``--data clustered``, the default) imitates CLIP segment embeddings of video: each
video has a centre, its segments drift slowly around it, and all centres share a common direction.
Queries are data points moved away from the data (``near``: cosine ~0.75 to their source segment) or
cluster centres buried in noise (``text``: cosine ~0.3 to the best segments, like CLIP text-to-image
scores). ``--data random`` uses independent uniform unit vectors, the worst case for any ANN index
(no structure to exploit). The last line printed is one JSON object.

    python scripts/bench_query.py --segments 1000000
    python scripts/bench_query.py --segments 100000 --data random
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
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

SEGMENTS_PER_VIDEO = 200
SAMPLING = {"fps": 4.0, "segment_seconds": 1.0, "min_tail_fraction": 0.5}


class SyntheticData:
    """Seeded synthetic segment vectors, generated video by video (never all in memory at once)."""

    def __init__(self, n: int, dim: int, kind: str, seed: int = 0) -> None:
        self.n, self.dim, self.kind, self.seed = n, dim, kind, seed
        rng = np.random.default_rng(seed)
        self.common = _unit(rng.standard_normal(dim))
        self.n_videos = -(-n // SEGMENTS_PER_VIDEO)
        self.centres = _unit(0.6 * self.common + _unit(rng.standard_normal((self.n_videos, dim))))

    def video(self, v: int) -> np.ndarray:
        """Unit float32 vectors of video ``v``'s segments."""
        count = min(SEGMENTS_PER_VIDEO, self.n - v * SEGMENTS_PER_VIDEO)
        rng = np.random.default_rng((self.seed, v))
        if self.kind == "random":
            return _unit(rng.standard_normal((count, self.dim))).astype(np.float32)
        # A slow drift (AR(1) noise) around the video's centre: neighbouring segments look alike.
        noise = rng.standard_normal((count, self.dim)) / np.sqrt(self.dim)
        drift = np.empty_like(noise)
        drift[0] = noise[0]
        for t in range(1, count):
            drift[t] = 0.9 * drift[t - 1] + np.sqrt(1 - 0.81) * noise[t]
        jitter = 0.35 * rng.standard_normal((count, self.dim)) / np.sqrt(self.dim)
        return _unit(self.centres[v] + 0.8 * drift + jitter).astype(np.float32)

    def queries(self, count: int, kind: str) -> np.ndarray:
        """``near``: data points moved away; ``text``: noisy cluster centres (low cosine, like text)."""
        rng = np.random.default_rng((self.seed, 10**9 + (kind == "text")))
        if self.kind == "random":
            return _unit(rng.standard_normal((count, self.dim))).astype(np.float32)
        videos = rng.integers(0, self.n_videos, count)
        if kind == "near":
            base = np.stack(
                [
                    self.video(v)[rng.integers(0, min(SEGMENTS_PER_VIDEO, self.n - v * SEGMENTS_PER_VIDEO))]
                    for v in videos
                ]
            )
            return _unit(base + 0.9 * rng.standard_normal(base.shape) / np.sqrt(self.dim)).astype(np.float32)
        return _unit(
            self.centres[videos] + 3.0 * rng.standard_normal((count, self.dim)) / np.sqrt(self.dim)
        ).astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def pending_video(vectors: np.ndarray, v: int, label: int | None):  # type: ignore[no-untyped-def]
    """A :class:`PendingVideo` for synthetic video ``v`` (one frame per segment)."""
    from vadindex.index.manifest import SEGMENT_COLUMNS
    from vadindex.index.writer import PendingVideo

    n = len(vectors)
    name = f"synthetic/v{v:07d}.mp4"
    vid = f"{v:020x}"
    segs = pd.DataFrame(
        {
            "video_id": vid,
            "video": name,
            "segment": np.arange(n, dtype=np.int32),
            "start": np.arange(n, dtype=float),
            "end": np.arange(1, n + 1, dtype=float),
            "start_frame": np.arange(n, dtype=np.int64) * 25,
            "end_frame": np.arange(1, n + 1, dtype=np.int64) * 25,
            "frame_row": np.arange(n, dtype=np.int64),
            "n_frames": np.ones(n, dtype=np.int32),
            "label": pd.array([label] * n, dtype="Int8"),
            "class": pd.array(["Fighting" if label else "Normal"] * n, dtype="string"),
        }
    )[SEGMENT_COLUMNS]
    video = {
        "video_id": vid, "video": name, "path": f"/synthetic/{name}", "label": label,
        "class": "Fighting" if label else "Normal", "duration": float(n), "n_frames": n * 25,
        "width": 320, "height": 240, "codec": "h264", "n_segments": n, "warning": "",
    }  # fmt: skip
    return PendingVideo(video, segs, vectors, vectors.astype(np.float16))


def write_synthetic_index(
    path: Path,
    data: SyntheticData,
    identity,
    logit_scale: float,
    index_type: str,
    commit_size: int = 250_000,
    cameras: int = 0,
) -> float:  # type: ignore[no-untyped-def]
    """Write ``data`` as an index at ``path`` in commits of about ``commit_size`` segments; returns seconds.

    ``cameras``: spread the videos over this many named cameras (video ``v`` on ``cam<v % cameras>``);
    0 leaves each video on a camera of its own.
    """
    from vadindex.index.writer import IndexWriter

    t = time.perf_counter()
    writer = IndexWriter(path, identity, data.dim, logit_scale, dict(SAMPLING), index_type=index_type)
    with writer:
        queued = 0
        for v in range(data.n_videos):
            vectors = data.video(v)
            item = pending_video(vectors, v, label=int(v % 5 == 0))
            if cameras:
                item.video["camera"] = f"cam{v % cameras:03d}"
            writer.add(item)
            queued += len(vectors)
            if queued >= commit_size:
                writer.commit()
                queued = 0
                print(
                    f"  committed {writer.manifest.n_segments} segments ({time.perf_counter() - t:.0f} s)",
                    flush=True,
                )
        writer.commit(final=True)
    return time.perf_counter() - t


def exact_truth(snap, queries: np.ndarray, k: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Exact top-k rows of every query, by a chunked matrix product over the stored float16 vectors."""
    best = np.full((len(queries), 0), -np.inf, np.float32)
    ids = np.zeros((len(queries), 0), np.int64)
    for first, block in snap.iter_vectors(131072):
        sims = queries @ np.asarray(block, dtype=np.float32).T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        best = np.concatenate([best, np.take_along_axis(sims, top, 1)], axis=1)
        ids = np.concatenate([ids, top + first], axis=1)
        keep = np.argsort(-best, axis=1, kind="stable")[:, :k]
        best, ids = np.take_along_axis(best, keep, 1), np.take_along_axis(ids, keep, 1)
    return ids


def timed_searches(snap, queries: np.ndarray, k: int, **kw) -> tuple[list[float], list[np.ndarray]]:  # type: ignore[no-untyped-def]
    from vadindex.search.vectors import search_vector

    search_vector(snap, queries[0], k, **kw)  # warm-up: page cache, FAISS structures
    times, rows = [], []
    first_row = snap.videos.set_index("video")["first_row"]
    for q in queries:
        t = time.perf_counter()
        res = search_vector(snap, q, k, **kw)
        times.append(time.perf_counter() - t)
        rows.append(first_row.loc[res["video"]].to_numpy() + res["segment"].to_numpy())
    return times, rows


def recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segments", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--data", choices=["clustered", "random"], default="clustered")
    ap.add_argument("--queries", type=int, default=100, help="Queries for recall and ANN timing.")
    ap.add_argument("--repeats", type=int, default=20, help="Timed runs of the exact text query.")
    ap.add_argument(
        "--text-model",
        default="ViT-B-32",
        help="Model whose random text tower encodes the text query; 'none' for a random vector.",
    )
    ap.add_argument("--commit-size", type=int, default=250_000)
    ap.add_argument(
        "--workdir", type=Path, default=None, help="Where to write the index [default: a temporary folder]."
    )
    ap.add_argument("--keep", action="store_true", help="Keep the index folder.")
    args = ap.parse_args()
    logging.getLogger("vadindex").setLevel(logging.ERROR)

    from vadindex.index import faiss_index as ann
    from vadindex.index.reader import open_index
    from vadindex.models.identity import ModelIdentity
    from vadindex.models.openclip import load_encoder

    k = 10
    load_before = os.getloadavg()[0]
    if args.text_model != "none":
        encoder = load_encoder(args.text_model, "random", "cpu")
        identity, logit_scale, dim = encoder.identity, encoder.logit_scale, encoder.dim
        t = time.perf_counter()
        text_q = encoder.encode_texts(["a person climbing a fence at night"])[0]
        text_encode_ms = (time.perf_counter() - t) * 1000
    else:
        identity, logit_scale, dim = ModelIdentity("synthetic", "random"), 100.0, args.dim
        text_q, text_encode_ms = _unit(np.random.default_rng(7).standard_normal(dim)).astype(np.float32), None
    data = SyntheticData(args.segments, dim, args.data)
    root = Path(tempfile.mkdtemp(prefix="bench_query_", dir=args.workdir))
    path = root / "index"
    try:
        write_s = write_synthetic_index(path, data, identity, logit_scale, "flat", args.commit_size)
        snap = open_index(path)
        print(
            f"wrote {snap.manifest.n_segments} segments in {write_s:.1f} s: {ann.describe(snap.faiss_index())}"
        )
        load_exact = os.getloadavg()[0]
        times, _ = timed_searches(snap, np.repeat(text_q[None], args.repeats, 0), k)
        exact_ms = float(np.median(times) * 1000)
        print(
            f"exact: {exact_ms:.1f} ms median of {args.repeats} (min {min(times) * 1000:.1f}), load {load_exact:.2f}"
        )

        # One more video committed with --index-type ivf: the writer rebuilds the FAISS index from the parts.
        t = time.perf_counter()
        extra = SyntheticData(SEGMENTS_PER_VIDEO, dim, args.data, seed=99)
        from vadindex.index.writer import IndexWriter

        with IndexWriter(path, identity, dim, logit_scale, dict(SAMPLING), index_type="ivf") as writer:
            writer.add(pending_video(extra.video(0), data.n_videos, label=0))
            writer.commit(final=True)
        rebuild_s = time.perf_counter() - t
        snap = open_index(path)
        index = snap.faiss_index()
        print(f"rebuilt as {ann.describe(index)} in {rebuild_s:.1f} s")

        out: dict[str, object] = {}
        for qkind in ("text", "near"):
            queries = data.queries(args.queries, qkind)
            truth = exact_truth(snap, queries, k)
            load_ann = os.getloadavg()[0]
            times, found = timed_searches(snap, queries, k)
            out[qkind] = (float(np.median(times) * 1000), recall(found, truth), load_ann)
            print(
                f"ann ({qkind} queries): {out[qkind][0]:.2f} ms median, recall@10 {out[qkind][1]:.3f}, load {load_ann:.2f}"
            )
        t = time.perf_counter()
        timed_searches(snap, queries[:3], k, exact=True)
        exact_scan_ms = (time.perf_counter() - t) / 4 * 1000
        ann_ms = max(out["text"][0], out["near"][0])
        ann_recall = min(out["text"][1], out["near"][1])
        result = {
            "bench": "query",
            "segments": int(snap.manifest.n_segments),
            "dim": dim,
            "data": args.data,
            "exact_index": "flat (IVF1,SQfp16)",
            "exact_ms": round(exact_ms, 2),
            "text_encode_ms": round(text_encode_ms, 1) if text_encode_ms else None,
            "ann_index": ann.describe(index),
            "ann_ms": round(ann_ms, 2),
            "ann_recall_at_10": round(ann_recall, 4),
            "ann_text_queries": {"ms": round(out["text"][0], 2), "recall_at_10": round(out["text"][1], 4)},
            "ann_near_queries": {"ms": round(out["near"][0], 2), "recall_at_10": round(out["near"][1], 4)},
            "exact_scan_ms": round(exact_scan_ms, 1),
            "write_s": round(write_s, 1),
            "ivf_rebuild_s": round(rebuild_s, 1),
            "faiss_file_mb": round((path / snap.manifest.faiss_file).stat().st_size / 1e6, 1),
            "load_avg_1m": {
                "start": round(load_before, 2),
                "exact": round(load_exact, 2),
                "end": round(os.getloadavg()[0], 2),
            },
            "nproc": os.cpu_count(),
        }
    finally:
        if args.keep:
            print(f"kept {path}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result))


def iter_video_vectors(data: SyntheticData) -> Iterator[np.ndarray]:
    for v in range(data.n_videos):
        yield data.video(v)


if __name__ == "__main__":
    main()
