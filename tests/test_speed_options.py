"""Speed options stay faithful: int8 image encoding agrees with fp32, precisions are checked, indexes stay queryable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vadindex.decode import SampledVideo
from vadindex.encoder import load_encoder, resolve_precision
from vadindex.errors import InputError
from vadindex.ingest import build_index
from vadindex.search import check_encoder, search_vector
from vadindex.store import open_index


@pytest.fixture(scope="module")
def int8_encoder():  # type: ignore[no-untyped-def]
    return load_encoder("vadindex-test", "random", "cpu", precision="int8")


def test_int8_image_embeddings_agree_with_fp32(encoder, int8_encoder, small_clips: Path) -> None:  # type: ignore[no-untyped-def]
    frames = np.concatenate(
        list(SampledVideo(small_clips / "fight" / "fi010.mp4", 4.0, encoder.image_size, 64).batches())
    )
    fp32, int8 = encoder.encode_images(frames), int8_encoder.encode_images(frames)
    assert int8.dtype == np.float32 and np.allclose(np.linalg.norm(int8, axis=1), 1, atol=1e-5)
    cosine = (fp32 * int8).sum(axis=1)
    assert cosine.min() > 0.995
    # The text tower is not quantised: prompts and queries are identical.
    texts = ["a person running", "a car"]
    assert np.array_equal(encoder.encode_texts(texts), int8_encoder.encode_texts(texts))
    assert int8_encoder.identity.same_as(encoder.identity)


def test_int8_leaves_a_resnet_towers_attention_pooling_alone() -> None:
    # ModifiedResNet's AttentionPool2d reads q/k/v_proj.weight directly; quantising them made every
    # image fail with "expected Tensor ... but got method" (vadindex-tiny is such a tower).
    import torch

    fp32 = load_encoder("vadindex-tiny", "builtin", "cpu")
    int8 = load_encoder("vadindex-tiny", "builtin", "cpu", precision="int8")
    assert isinstance(int8.model.visual.attnpool.q_proj, torch.nn.Linear)
    frames = np.random.default_rng(0).integers(0, 255, (4, fp32.image_size, fp32.image_size, 3), np.uint8)
    assert np.allclose(int8.encode_images(frames), fp32.encode_images(frames), atol=1e-5)


def test_precision_choices() -> None:
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("auto", "cuda") == "fp16"
    assert resolve_precision("int8", "cpu") == "int8"
    with pytest.raises(InputError, match="CUDA"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(InputError, match="CPU only"):
        resolve_precision("int8", "cuda")
    with pytest.raises(InputError, match="precision"):
        resolve_precision("bf17", "cpu")


def test_int8_index_answers_fp32_queries(encoder, int8_encoder, small_clips: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fp32_ix, int8_ix = tmp_path / "fp32", tmp_path / "int8"
    sources = [small_clips / "fight", small_clips / "nofight"]
    build_index(sources, fp32_ix, encoder=encoder, progress=False)
    build_index(sources, int8_ix, encoder=int8_encoder, progress=False)
    a, b = open_index(fp32_ix), open_index(int8_ix)
    check_encoder(b, encoder)  # the same model identity: queries with the default encoder are accepted
    assert a.manifest.n_segments == b.manifest.n_segments
    assert ((a.vectors() * b.vectors()).sum(axis=1)).min() > 0.995
    q = encoder.encode_texts(["people fighting"])[0]
    ra, rb = search_vector(a, q, k=5), search_vector(b, q, k=5)
    assert np.allclose(ra["score"], rb["score"], atol=0.02)


def test_onnxruntime_backend_gives_the_same_embeddings(encoder, small_clips: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    onnx_encoder = load_encoder("vadindex-test", "random", "cpu", "fp32", "onnxruntime")
    frames = np.concatenate(
        list(SampledVideo(small_clips / "fight" / "fi001.mp4", 4.0, encoder.image_size, 64).batches())
    )
    assert ((encoder.encode_images(frames) * onnx_encoder.encode_images(frames)).sum(axis=1)).min() > 0.99999
    assert onnx_encoder.identity.same_as(encoder.identity)


def test_backend_choices() -> None:
    from vadindex.encoder import check_backend

    assert check_backend("onnxruntime", "cpu", "fp32") == "onnxruntime"
    with pytest.raises(InputError, match="backend"):
        check_backend("onnxruntime", "cpu", "int8")
    with pytest.raises(InputError, match="backend"):
        check_backend("tensorrt", "cpu", "fp32")
