"""GPU throughput: image encoding in fp16 (ViT-B-32, ViT-L-14, random weights) and faiss-gpu search.

For a machine with CUDA; without one it says so and exits with status 0. Figures:

- ``encoder_fps``: frames per second of ``OpenClipEncoder.encode_images`` (uint8 frames copied to the
  GPU, normalised there, fp16 autocast) per model, at ``--batch-size``, after a warm-up;
- ``faiss_gpu``: top-10 latency of one query and throughput of a batch of 1,000 queries over
  ``--segments`` random unit vectors (dim 512) on ``GpuIndexFlatIP`` (float16 storage), when the
  installed FAISS has GPU support (``pip install vadindex[gpu]`` after uninstalling faiss-cpu);
- ``ivf_training``: vadindex's IVF build over ``--ivf-segments`` vectors with k-means on the CPU and
  on the GPU (the same cells; see ``vadindex.index.faiss_index``), when FAISS has GPU support.

``scripts/device_gpu_check.sh`` runs this, and the GPU tests, on the machine the ``device`` tool
lends some sessions.

The last line printed is one JSON object.

    python scripts/bench_gpu.py
    python scripts/bench_gpu.py --models ViT-B-32 --segments 1000000
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

import numpy as np


def cuda_device() -> str | None:
    """A description of the CUDA device, or ``None`` when there is none."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return f"{torch.cuda.get_device_name(0)} ({torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB)"


def bench_encoder(model: str, batch_size: int, seconds: float) -> dict[str, float]:
    import torch

    from vadindex.models.openclip import load_encoder

    encoder = load_encoder(model, "random", "cuda", "fp16")
    frames = np.random.default_rng(0).integers(
        0, 255, (batch_size, encoder.image_size, encoder.image_size, 3), np.uint8
    )
    for _ in range(3):
        encoder.encode_images(frames)
    torch.cuda.synchronize()
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        encoder.encode_images(frames)  # returns numpy, so every call is synchronised
        n += batch_size
    fps = n / (time.perf_counter() - t)
    t = time.perf_counter()
    encoder.encode_texts([f"a photo of thing {i}" for i in range(100)])
    text_ms = (time.perf_counter() - t) * 1000
    del encoder
    torch.cuda.empty_cache()
    return {"encoder_fps": round(fps, 1), "texts_100_ms": round(text_ms, 1)}


def bench_ivf_training(n: int, dim: int = 512) -> dict[str, object]:
    """Seconds to build vadindex's IVF index over ``n`` random unit vectors, k-means on the CPU
    (``VADINDEX_FAISS_GPU=0``) and on the GPU (faiss-gpu), in this process."""
    import os

    import faiss

    from vadindex.index import faiss_index as ann

    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        return {"skipped": "this FAISS has no GPU support (install faiss-gpu: pip install vadindex[gpu])"}
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    out: dict[str, object] = {"segments": n, "nlist": ann.nlist_for(n)}
    saved = os.environ.get("VADINDEX_FAISS_GPU")
    try:
        os.environ["VADINDEX_FAISS_GPU"] = "1"
        small = x[: 40 * 64]
        ann.build(dim, "ivf", lambda: iter([small]), len(small))  # untimed: GPU resources, cuBLAS
        for where, flag in (("cpu", "0"), ("gpu", "1")):
            os.environ["VADINDEX_FAISS_GPU"] = flag
            t = time.perf_counter()
            ann.build(dim, "ivf", lambda: iter([x]), n)
            out[f"{where}_build_s"] = round(time.perf_counter() - t, 2)
    finally:
        if saved is None:
            os.environ.pop("VADINDEX_FAISS_GPU", None)
        else:
            os.environ["VADINDEX_FAISS_GPU"] = saved
    out["speedup"] = round(out["cpu_build_s"] / out["gpu_build_s"], 2)  # type: ignore[operator]
    return out


def bench_faiss_gpu(n: int, dim: int = 512) -> dict[str, object]:
    try:
        import faiss
    except ImportError:
        return {"skipped": "FAISS is not installed"}

    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        return {"skipped": "this FAISS has no GPU support (install faiss-gpu: pip install vadindex[gpu])"}
    rng = np.random.default_rng(0)
    res = faiss.StandardGpuResources()
    config = faiss.GpuIndexFlatConfig()
    config.useFloat16 = True
    index = faiss.GpuIndexFlatIP(res, dim, config)
    for i in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - i), dim)).astype(np.float32)
        index.add(block / np.linalg.norm(block, axis=1, keepdims=True))
    q = rng.standard_normal((1000, dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    index.search(q[:1], 10)
    times = []
    for i in range(50):
        t = time.perf_counter()
        index.search(q[i : i + 1], 10)
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    index.search(q, 10)
    batch_s = time.perf_counter() - t
    return {
        "segments": n,
        "one_query_ms": round(float(np.median(times)) * 1000, 3),
        "batch_1000_queries_ms": round(batch_s * 1000, 2),
        "queries_per_s": round(1000 / batch_s, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="ViT-B-32,ViT-L-14")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=10.0, help="Timed encoding per model.")
    ap.add_argument("--segments", type=int, default=1_000_000, help="Vectors in the faiss-gpu index.")
    ap.add_argument(
        "--ivf-segments", type=int, default=1_000_000, help="Vectors for the IVF training timing."
    )
    args = ap.parse_args()
    logging.getLogger("vadindex").setLevel(logging.ERROR)

    device = cuda_device()
    if device is None:
        print(
            "No CUDA device on this machine: bench_gpu.py measures GPU throughput and has nothing to do here."
        )
        print(json.dumps({"bench": "gpu", "cuda": False, "skipped": "no CUDA device"}))
        sys.exit(0)
    print(f"CUDA device: {device}")
    result: dict[str, object] = {
        "bench": "gpu",
        "cuda": True,
        "device": device,
        "batch_size": args.batch_size,
    }
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        result[model] = bench_encoder(model, args.batch_size, args.seconds)
        print(f"{model} fp16: {result[model]}")
    result["faiss_gpu"] = bench_faiss_gpu(args.segments)
    print(f"faiss-gpu: {result['faiss_gpu']}")
    try:
        result["ivf_training"] = bench_ivf_training(args.ivf_segments)
    except ImportError as exc:
        result["ivf_training"] = {"skipped": str(exc)}
    print(f"IVF training: {result['ivf_training']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
