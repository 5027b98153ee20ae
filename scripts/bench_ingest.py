"""Ingestion throughput: the full build against the bare encoder and against a naive frame-by-frame loop.

All three are measured in one run on the same videos and the same model:

- ``pipeline_fps``: frames encoded per second by ``build_index`` (decode, sampling, encoding,
  segmenting, fingerprinting and storage included; the model is loaded beforehand, as in a
  long-running build where loading is a one-off);
- ``encoder_fps``: the same encoder on the same frames, already decoded and preprocessed, in full
  batches of ``--batch-size`` (the mean of a run just before and one just after the build);
- ``naive_fps``: OpenCV reads every frame, every ``native_fps / fps``-th frame goes through PIL and
  open_clip's own preprocessing and is encoded alone (batch size 1) by the model as open_clip
  builds it (PyTorch fp32, whatever ``--precision`` the build uses).

``--precision`` defaults to vadindex's own default, ``auto``: on an x86 CPU the encoder checks int8
against fp32 on its first batches and moves to int8 if they agree (``int8_check`` in the output).
That one-off runs before anything is timed, as it does in the first seconds of a long build; its
batches and seconds are printed (``int8_check_batches``, ``int8_check_s``).

The last line printed is one JSON object with the figures.

    python scripts/bench_ingest.py                       # all clips in ../shared/data/videos
    python scripts/bench_ingest.py --limit 6 --naive-limit 3
    python scripts/bench_ingest.py --precision fp32
    python scripts/bench_ingest.py --backend onnxruntime      # needs pip install onnxruntime onnx
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def load_average() -> float:
    return os.getloadavg()[0]


def pick_videos(folder: Path, limit: int | None) -> list[Path]:
    """The videos under ``folder``, sorted; ``limit`` of them spread evenly over the sorted list."""
    from vadindex.ingest.sources import collect_sources

    videos, _ = collect_sources([folder], None)
    return spread(sorted(v.path for v in videos), limit)


def spread(paths: list[Path], limit: int | None) -> list[Path]:
    """``limit`` items spread evenly over ``paths`` (all of them when ``limit`` is not smaller)."""
    if not limit or limit >= len(paths):
        return paths
    return [paths[round(i * (len(paths) - 1) / max(limit - 1, 1))] for i in range(limit)]


def run_pipeline(paths: list[Path], encoder, batch_size: int, workdir: Path) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    """A full build into a new index; returns (frames encoded, seconds)."""
    from vadindex.ingest import build_index

    links = workdir / "videos"
    links.mkdir()
    for i, p in enumerate(paths):  # one folder, so the build sees exactly these files
        (links / f"{i:03d}_{p.name}").symlink_to(p)
    summary = build_index([links], workdir / "index", encoder=encoder, batch_size=batch_size, progress=False)
    if summary.failures:
        print(f"  build failures: {summary.failures}", file=sys.stderr)
    return summary.frames_encoded, summary.seconds


def decode_all(paths: list[Path], fps: float, size: int, batch_size: int) -> tuple[np.ndarray, list[int]]:
    """All sampled frames, and the sizes of the per-video batches the build feeds the encoder."""
    from vadindex.ingest.decode import SampledVideo

    batches = [b for p in paths for b in SampledVideo(p, fps, size, batch_size).batches()]
    return np.concatenate(batches), [len(b) for b in batches]


def run_encoder(encoder, frames: np.ndarray, batch_size: int) -> tuple[float, np.ndarray]:  # type: ignore[no-untyped-def]
    """Frames per second of ``encode_images`` on full batches of already-decoded frames, and the embeddings."""
    encoder.encode_images(frames[: min(batch_size, len(frames))])  # warm-up (allocator, oneDNN kernels)
    t = time.perf_counter()
    out = [encoder.encode_images(frames[i : i + batch_size]) for i in range(0, len(frames), batch_size)]
    return len(frames) / (time.perf_counter() - t), np.concatenate(out)


def run_naive(paths: list[Path], encoder, fps: float) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    """OpenCV reads every frame; PIL + open_clip preprocessing and batch-1 encoding of the sampled ones."""
    import cv2
    import open_clip
    import torch
    from PIL import Image

    model = encoder.model
    device = next(model.parameters()).device
    pp = open_clip.get_model_preprocess_cfg(model)
    preprocess = open_clip.image_transform(
        encoder.image_size, is_train=False, mean=pp.get("mean"), std=pp.get("std"),
        interpolation=pp.get("interpolation"), resize_mode=pp.get("resize_mode"),
    )  # fmt: skip
    n = 0
    t = time.perf_counter()
    for path in paths:
        cap = cv2.VideoCapture(str(path))
        native = cap.get(cv2.CAP_PROP_FPS) or 25.0
        step = max(native / fps, 1.0)
        next_pick, index = 0.0, 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            if index >= next_pick:
                next_pick += step
                image = (
                    preprocess(Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))).unsqueeze(0).to(device)
                )
                with torch.inference_mode():
                    emb = model.encode_image(image)
                    torch.nn.functional.normalize(emb, dim=-1).cpu().numpy()
                n += 1
            index += 1
        cap.release()
    return n, time.perf_counter() - t


def run_onnxruntime(
    encoder, frames: np.ndarray, reference: np.ndarray, batch_size: int, workdir: Path
) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """ONNX Runtime (fp32, and int8 by its dynamic quantisation) on the image tower: frames/s and
    the lowest cosine to the PyTorch fp32 embeddings. Needs ``pip install onnxruntime onnx``."""
    import warnings

    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    visual = encoder.model.visual.eval()
    fp32_file, int8_file = workdir / "visual.onnx", workdir / "visual.int8.onnx"
    probe = torch.zeros(2, 3, encoder.image_size, encoder.image_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            visual, (probe,), str(fp32_file), input_names=["x"], output_names=["y"],
            dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, opset_version=17, dynamo=False,
        )  # fmt: skip
    quantize_dynamic(str(fp32_file), str(int8_file), weight_type=QuantType.QInt8)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()

    def preprocess(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float().div_(255.0)
        return ((x - encoder._mean) / encoder._std).numpy()

    out: dict[str, float] = {}
    for name, file in (("fp32", fp32_file), ("int8", int8_file)):
        session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
        session.run(None, {"x": preprocess(frames[:batch_size])})
        t = time.perf_counter()
        emb = np.concatenate(
            [
                session.run(None, {"x": preprocess(frames[i : i + batch_size])})[0]
                for i in range(0, len(frames), batch_size)
            ]
        )
        out[f"onnxruntime_{name}_fps"] = round(len(frames) / (time.perf_counter() - t), 3)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        out[f"onnxruntime_{name}_min_cosine"] = round(float((emb * reference).sum(axis=1).min()), 5)
    return out


def machine() -> dict[str, object]:
    """nproc, CPU model and RAM, for the record."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    mem = next((int(line.split()[1]) for line in meminfo if line.startswith("MemTotal")), 0)
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "ram_gib": round(mem / 2**20, 1),
        "python": platform.python_version(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=Path, default=ROOT.parent / "shared" / "data" / "videos")
    ap.add_argument(
        "--limit", type=int, default=None, help="Use this many videos (spread over the sorted list)."
    )
    ap.add_argument("--naive-limit", type=int, default=None, help="Run the naive loop on this many of them.")
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--pretrained", default="random")
    ap.add_argument("--precision", default="auto", choices=["fp32", "int8", "fp16", "auto"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"])
    ap.add_argument("--batch-size", type=int, default=None, help="[default: vadindex's DEFAULT_BATCH_SIZE]")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads [default: torch's, one per core]")
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument(
        "--video-batches", action="store_true", help="Also time the encoder on the build's per-video batches."
    )
    ap.add_argument(
        "--onnxruntime", action="store_true", help="Also time ONNX Runtime fp32/int8 on the same frames."
    )
    ap.add_argument(
        "--int8-agreement", action="store_true", help="Also report int8 vs fp32 cosine on these frames."
    )
    args = ap.parse_args()
    logging.getLogger("vadindex").setLevel(logging.ERROR)

    import torch

    from vadindex.config import DEFAULT_BATCH_SIZE, DEFAULT_FPS
    from vadindex.models.openclip import load_encoder

    if args.threads:
        torch.set_num_threads(args.threads)
    batch_size = args.batch_size or DEFAULT_BATCH_SIZE
    paths = pick_videos(args.videos, args.limit)
    naive_paths = spread(paths, args.naive_limit) if args.naive_limit else paths
    load_before = load_average()
    t = time.perf_counter()
    encoder = load_encoder(
        args.model, args.pretrained, args.device, args.precision, args.backend, args.threads
    )
    load_s = time.perf_counter() - t
    print(f"{len(paths)} videos, {args.model} ({args.pretrained}, --precision {args.precision}), batch {batch_size}, "
          f"torch threads {torch.get_num_threads()}, model load {load_s:.1f} s, load avg {load_before:.2f}")  # fmt: skip

    t = time.perf_counter()
    frames, video_batches = decode_all(paths, DEFAULT_FPS, encoder.image_size, batch_size)
    decode_s = time.perf_counter() - t
    decode_fps = len(frames) / decode_s
    print(
        f"decode only (sampled, resized): {len(frames)} frames in {decode_s:.1f} s = {len(frames) / decode_s:.1f} frames/s"
    )
    # --precision auto checks int8 on its first batches, a one-off at the start of a build: it is
    # done here, before anything is timed, and its cost printed.
    t, settle = time.perf_counter(), 0
    while getattr(encoder, "checking_int8", False) and settle * batch_size < len(frames):
        encoder.encode_images(frames[settle * batch_size : (settle + 1) * batch_size])
        settle += 1
    check_s = time.perf_counter() - t
    if settle:
        print(f"int8 check: {settle} batches in {check_s:.1f} s -> {encoder.precision} {encoder.int8_check}")
    # The encoder runs before and after the build; the load of a shared machine drifts, and the
    # bracket exposes both to the same drift.
    encoder_before, embeddings = run_encoder(encoder, frames, batch_size)
    print(f"encoder (before): {encoder_before:.2f} frames/s on pre-decoded batches of {batch_size}")
    with tempfile.TemporaryDirectory(prefix="bench_ingest_") as tmp:
        frames_done, seconds = run_pipeline(paths, encoder, batch_size, Path(tmp))
    pipeline_fps = frames_done / seconds
    print(f"pipeline: {frames_done} frames in {seconds:.1f} s = {pipeline_fps:.2f} frames/s")
    encoder_after, _ = run_encoder(encoder, frames, batch_size)
    encoder_fps = (encoder_before + encoder_after) / 2
    print(f"encoder (after): {encoder_after:.2f} frames/s; mean {encoder_fps:.2f}")
    extra: dict[str, object] = {}
    if args.video_batches:
        # The build encodes each video on its own, so short clips give small batches.
        bounds = np.cumsum([0, *video_batches])
        t = time.perf_counter()
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            encoder.encode_images(frames[a:b])
        extra["encoder_fps_video_batches"] = round(len(frames) / (time.perf_counter() - t), 3)
        extra["mean_video_batch"] = round(float(np.mean(video_batches)), 1)
        print(
            f"encoder on the build's per-video batches (mean {extra['mean_video_batch']}): {extra['encoder_fps_video_batches']} frames/s"
        )
    if args.int8_agreement:
        other = "int8" if encoder.precision == "fp32" else "fp32"
        alt = load_encoder(args.model, args.pretrained, "cpu", other)
        alt_fps, alt_embeddings = run_encoder(alt, frames, batch_size)
        cosine = (embeddings * alt_embeddings).sum(axis=1)
        extra["int8_fp32_cosine"] = {
            "min": round(float(cosine.min()), 5),
            "mean": round(float(cosine.mean()), 5),
        }
        extra[f"{other}_encoder_fps"] = round(alt_fps, 3)
        print(
            f"int8 vs fp32 cosine: {extra['int8_fp32_cosine']}; {other} encoder {extra[f'{other}_encoder_fps']} frames/s"
        )
        del alt
    if args.onnxruntime:
        with tempfile.TemporaryDirectory(prefix="bench_onnx_") as tmp:
            extra |= run_onnxruntime(encoder, frames, embeddings, batch_size, Path(tmp))
        print(f"onnxruntime: {extra}")
    del frames

    naive_fps = naive_n = None
    if not args.skip_naive:
        naive_encoder = encoder
        if encoder.precision != "fp32":  # int8 replaced the image tower: the naive loop gets open_clip's own
            naive_encoder = load_encoder(
                args.model, args.pretrained, args.device, "fp32", threads=args.threads
            )
        naive_n, naive_s = run_naive(naive_paths, naive_encoder, DEFAULT_FPS)
        naive_fps = naive_n / naive_s
        print(
            f"naive: {naive_n} frames in {naive_s:.1f} s = {naive_fps:.2f} frames/s ({len(naive_paths)} videos)"
        )

    result = {
        "bench": "ingest",
        "videos": len(paths),
        "frames": frames_done,
        "model": args.model,
        "precision": encoder.precision,
        "int8_check": encoder.int8_check,
        "int8_check_batches": settle,
        "int8_check_s": round(check_s, 2),
        "backend": encoder.backend,
        "batch_size": batch_size,
        "torch_threads": torch.get_num_threads(),
        "pipeline_fps": round(pipeline_fps, 3),
        "encoder_fps": round(encoder_fps, 3),
        "encoder_fps_before_after": [round(encoder_before, 3), round(encoder_after, 3)],
        "naive_fps": round(naive_fps, 3) if naive_fps else None,
        "naive_frames": naive_n,
        "decode_fps": round(decode_fps, 1),
        "ratio_to_encoder": round(pipeline_fps / encoder_fps, 3),
        "speedup_vs_naive": round(pipeline_fps / naive_fps, 3) if naive_fps else None,
        **extra,
        "model_load_s": round(load_s, 2),
        "load_avg_1m_before": round(load_before, 2),
        "load_avg_1m_after": round(load_average(), 2),
        **machine(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
