"""Image-tower options side by side: frames per second and cosine agreement with PyTorch fp32.

One process, the same random frames, batch ``--batch-size``, after a warm-up: PyTorch fp32 with the
default threads and with one thread, bf16 autocast, dynamic int8 (``--precision int8``) and ONNX
Runtime fp32 (``--backend onnxruntime``, when onnxruntime and onnx are installed). The last line
printed is one JSON object.

    python scripts/bench_encoders.py
    python scripts/bench_encoders.py --model ViT-B-32 --batch-size 64 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed(encode, frames: np.ndarray, repeats: int) -> tuple[float, np.ndarray]:  # type: ignore[no-untyped-def]
    """Frames per second of ``encode`` over ``repeats`` batches, and its embeddings."""
    encode(frames[:8])  # warm-up
    t = time.perf_counter()
    for _ in range(repeats):
        out = encode(frames)
    return repeats * len(frames) / (time.perf_counter() - t), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--pretrained", default="random")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    logging.getLogger("vadindex").setLevel(logging.ERROR)

    import torch

    from vadindex.models.openclip import load_encoder

    fp32 = load_encoder(args.model, args.pretrained, "cpu", "fp32")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (args.batch_size, fp32.image_size, fp32.image_size, 3), np.uint8)
    rows: dict[str, dict[str, float]] = {}

    def record(name: str, fps: float, emb: np.ndarray) -> None:
        cos = float((emb * reference).sum(axis=1).min())
        rows[name] = {
            "fps": round(fps, 2),
            "vs_fp32": round(fps / rows["fp32"]["fps"], 2),
            "min_cosine": round(cos, 5),
        }
        print(
            f"{name:24s} {fps:7.2f} frames/s  {rows[name]['vs_fp32']:.2f}x  min cosine {cos:.5f}", flush=True
        )

    fps, reference = timed(fp32.encode_images, frames, args.repeats)
    rows["fp32"] = {"fps": round(fps, 2), "vs_fp32": 1.0, "min_cosine": 1.0}
    print(f"{'fp32':24s} {fps:7.2f} frames/s  (threads {torch.get_num_threads()})", flush=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    record("fp32_1_thread", *timed(fp32.encode_images, frames, args.repeats))
    torch.set_num_threads(threads)

    def bf16(x: np.ndarray) -> np.ndarray:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return fp32.encode_images(x)

    record("bf16_autocast", *timed(bf16, frames, args.repeats))
    int8 = load_encoder(args.model, args.pretrained, "cpu", precision="int8")
    record("int8_dynamic", *timed(int8.encode_images, frames, args.repeats))
    del int8
    try:
        onnx = load_encoder(args.model, args.pretrained, "cpu", backend="onnxruntime")
    except Exception as exc:  # noqa: BLE001 - the optional extra is missing
        print(f"onnxruntime: skipped ({str(exc).splitlines()[0]})")
    else:
        record("onnxruntime_fp32", *timed(onnx.encode_images, frames, args.repeats))
    print(json.dumps({"bench": "encoders", "model": args.model, "batch_size": args.batch_size, "runs": rows}))


if __name__ == "__main__":
    main()
