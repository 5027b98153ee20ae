"""Model loading: offline fast failure, deterministic random weights, identities."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from vadindex.errors import InputError, ModelError
from vadindex.models.identity import Encoder, ModelIdentity
from vadindex.models.openclip import load_encoder
from vadindex.models.weights import default_pretrained


def test_uncached_pretrained_fails_fast_and_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    t = time.perf_counter()
    with pytest.raises(ModelError) as err:
        load_encoder("ViT-B-32", "laion2b_s34b_b79k", "cpu")
    assert time.perf_counter() - t < 10
    msg = str(err.value)
    assert "ViT-B-32" in msg and "laion2b_s34b_b79k" in msg and "--pretrained" in msg


def test_uncached_pretrained_fails_fast_without_offline_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    # Even when HF_HUB_OFFLINE is not set, an unreachable host costs one short connection attempt.
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "https://unreachable.invalid")
    import importlib

    import huggingface_hub.constants as c

    importlib.reload(c)
    try:
        t = time.perf_counter()
        with pytest.raises(ModelError, match="cannot be reached"):
            load_encoder("ViT-B-32", "laion2b_s34b_b79k", "cpu")
        assert time.perf_counter() - t < 10
    finally:
        monkeypatch.undo()
        importlib.reload(c)


def test_unknown_model_tag_and_device() -> None:
    with pytest.raises(ModelError, match="unknown model"):
        load_encoder("NoSuchNet", "random", "cpu")
    with pytest.raises(ModelError, match="unknown pretrained tag"):
        load_encoder("ViT-B-32", "no_such_tag", "cpu")
    with pytest.raises(ModelError, match="no such file"):
        load_encoder("vadindex-test", "/nonexistent/ckpt.safetensors", "cpu")
    with pytest.raises(InputError, match="CUDA"):
        load_encoder("vadindex-test", "random", "cuda")


def test_random_weights_are_the_same_in_every_process(encoder) -> None:  # type: ignore[no-untyped-def]
    assert isinstance(encoder, Encoder)
    here = encoder.encode_texts(["a person running"])[0]
    code = (
        "import numpy as np, sys; from vadindex.models.openclip import load_encoder; "
        "e = load_encoder('vadindex-test', 'random', 'cpu'); "
        "np.save(sys.stdout.buffer, e.encode_texts(['a person running'])[0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout
    import io

    there = np.load(io.BytesIO(out))
    assert np.allclose(here, there, atol=1e-6)


def test_images_are_unit_vectors(encoder) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (5, encoder.image_size, encoder.image_size, 3), dtype=np.uint8)
    emb = encoder.encode_images(x)
    assert emb.shape == (5, encoder.dim) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)


def test_identity_comparison() -> None:
    a = ModelIdentity("ViT-B-32", "openai")
    assert a.same_as(ModelIdentity("ViT-B-32", "openai"))
    assert not a.same_as(ModelIdentity("ViT-B-32", "laion2b_s34b_b79k"))
    assert not a.same_as(ModelIdentity("ViT-L-14", "openai"))
    assert ModelIdentity("m", "file:a.pt", "abc").same_as(ModelIdentity("m", "file:b.pt", "abc"))
    assert default_pretrained("ViT-B-32") == "laion2b_s34b_b79k"
    assert default_pretrained("vadindex-test") == "random"


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_checkpoint_loads_exactly_without_random_init(encoder, tmp_path, suffix) -> None:  # type: ignore[no-untyped-def]
    """Loading skips the random initialisation; every weight must still come from the file."""
    import torch

    # A checkpoint unlike the seeded random weights, so a weight left uninitialised would show.
    state = {k: (v.float() * 0.5 + 0.01) for k, v in encoder.model.state_dict().items()}
    path = tmp_path / f"ckpt{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save({"state_dict": state}, path)
    loaded = load_encoder("vadindex-test", str(path), "cpu")
    for name, value in loaded.model.state_dict().items():
        assert torch.equal(value, state[name].to(value.dtype)), name
    # Computed buffers (the causal attention mask) are built, not loaded, and must be intact.
    assert torch.equal(loaded.model.attn_mask, encoder.model.attn_mask)
    texts = ["a person running", "an empty street"]
    reference = load_encoder("vadindex-test", "random", "cpu")
    reference.model.load_state_dict(state)
    assert np.allclose(loaded.encode_texts(texts), reference.encode_texts(texts), atol=1e-6)


def test_checkpoint_hash_is_remembered_until_the_file_changes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import hashlib
    import os

    from vadindex.config import user_cache_dir
    from vadindex.models.weights import checkpoint_sha256

    ckpt = tmp_path / "w.safetensors"
    ckpt.write_bytes(b"first version")
    assert checkpoint_sha256(ckpt) == hashlib.sha256(b"first version").hexdigest()
    assert (user_cache_dir() / "sha256.json").is_file()
    # The same bytes with a new modification time, or new bytes: hashed again, never a stale hash.
    ckpt.write_bytes(b"second versio")  # same size
    os.utime(ckpt, ns=(1, 1))
    assert checkpoint_sha256(ckpt) == hashlib.sha256(b"second versio").hexdigest()
    ckpt.write_bytes(b"third, longer version")
    assert checkpoint_sha256(ckpt) == hashlib.sha256(b"third, longer version").hexdigest()
    # A damaged cache file is ignored.
    (user_cache_dir() / "sha256.json").write_text("{not json")
    assert checkpoint_sha256(ckpt) == hashlib.sha256(b"third, longer version").hexdigest()


def test_safetensors_load_keeps_integer_buffers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import torch

    enc = load_encoder("vadindex-tiny", "builtin", "cpu")
    ints = {k: v.dtype for k, v in enc.model.state_dict().items() if not v.is_floating_point()}
    assert ints and all(dt == torch.int64 for dt in ints.values())  # BatchNorm's num_batches_tracked


def test_skipping_init_in_two_threads_restores_torch_init() -> None:
    import threading

    import torch

    from vadindex.models.openclip import _skip_weight_init

    original = torch.nn.init.kaiming_uniform_
    inside = threading.Event()
    release = threading.Event()

    def other() -> None:
        with _skip_weight_init():
            inside.set()
            release.wait(5)

    t = threading.Thread(target=other)
    t.start()
    assert inside.wait(5)
    done = threading.Event()

    def second() -> None:
        with _skip_weight_init():
            pass
        done.set()

    t2 = threading.Thread(target=second)
    t2.start()
    assert not done.wait(0.2)  # serialised behind the first
    release.set()
    t.join(5)
    t2.join(5)
    assert torch.nn.init.kaiming_uniform_ is original
    assert torch.nn.Linear(8, 8).weight.abs().sum() > 0  # initialisation works again
