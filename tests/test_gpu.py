"""CUDA paths, for a machine with a GPU (``pytest -m gpu``; ``scripts/device_gpu_check.sh``).

Deselected by default (``-m 'not slow and not gpu'`` in pyproject.toml) and skipped without CUDA.
Only torch and open_clip are needed, so the lent GPU machine can run them with three small wheels.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")

from vadindex.models.openclip import load_encoder  # noqa: E402


@pytest.fixture(autouse=True)
def _cuda() -> None:
    # Asked when a test runs, never while tests are collected: querying CUDA at import would fix
    # the device count before the CPU-only tests hide the GPU (CUDA reads CUDA_VISIBLE_DEVICES once).
    if not torch.cuda.is_available():  # pragma: no cover - depends on the machine
        pytest.skip("no CUDA device")


@pytest.mark.parametrize("model", ["vadindex-test", "ViT-B-32"])
def test_auto_on_cuda_is_fp16_and_agrees_with_cpu_fp32(model: str) -> None:  # pragma: no cover - needs CUDA
    cpu = load_encoder(model, "random", "cpu", "fp32")
    gpu = load_encoder(model, "random", "cuda", "auto")
    assert gpu.precision == "fp16" and gpu.device == "cuda" and gpu._probe is None
    frames = np.random.default_rng(0).integers(0, 255, (48, cpu.image_size, cpu.image_size, 3), np.uint8)
    a, b = cpu.encode_images(frames), gpu.encode_images(frames)
    assert b.dtype == np.float32 and np.allclose(np.linalg.norm(b, axis=1), 1, atol=1e-3)
    assert (a * b).sum(axis=1).min() > 0.999
    texts = ["a person running", "two people fighting in a parking lot", "an empty street at night"]
    assert (cpu.encode_texts(texts) * gpu.encode_texts(texts)).sum(axis=1).min() > 0.999
    assert gpu.identity.same_as(cpu.identity)


def test_cuda_encoding_in_small_and_odd_batches() -> None:  # pragma: no cover - needs CUDA
    gpu = load_encoder("vadindex-test", "random", "cuda", "fp16")
    frames = np.random.default_rng(1).integers(0, 255, (7, gpu.image_size, gpu.image_size, 3), np.uint8)
    whole = gpu.encode_images(frames)
    parts = np.concatenate([gpu.encode_images(frames[:1]), gpu.encode_images(frames[1:])])
    assert np.allclose(whole, parts, atol=2e-3)
    assert gpu.encode_images(frames[:0]).shape == (0, gpu.dim)
