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


def _record_connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, object]]:
    """Record every TCP connection attempt (address, timeout) and refuse it, as an unplugged
    machine would; no download may start either."""
    import socket

    import open_clip

    attempts: list[tuple[object, object]] = []

    def refuse(address, timeout=None, *args, **kwargs):  # type: ignore[no-untyped-def]
        attempts.append((address, timeout))
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(open_clip, "download_pretrained", lambda *a, **k: pytest.fail("a download was tried"))
    return attempts


def test_uncached_pretrained_fails_at_once_and_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline (HF_HUB_OFFLINE=1): no connection, no download, one message naming the model, the
    tag and how to pass a local file. What a user waits is measured by
    ``scripts/bench_offline_failure.py`` (README, "fails in ..."), not here."""
    attempts = _record_connections(monkeypatch)
    with pytest.raises(ModelError) as err:
        load_encoder("ViT-B-32", "laion2b_s34b_b79k", "cpu")
    assert attempts == []
    msg = str(err.value)
    assert "ViT-B-32" in msg and "laion2b_s34b_b79k" in msg and "--pretrained" in msg


def test_uncached_pretrained_costs_one_short_connection_without_offline_flag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Even when HF_HUB_OFFLINE is not set, an unreachable host costs one connection attempt with a
    # short timeout, not a minute of download retries.
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "https://unreachable.invalid")
    import importlib

    import huggingface_hub.constants as c

    importlib.reload(c)
    try:
        attempts = _record_connections(monkeypatch)
        with pytest.raises(ModelError, match="cannot be reached"):
            load_encoder("ViT-B-32", "laion2b_s34b_b79k", "cpu")
        assert len(attempts) == 1, attempts
        (host, port), timeout = attempts[0]  # type: ignore[misc]
        assert (host, port) == ("unreachable.invalid", 443) and 0 < timeout <= 3  # type: ignore[operator]
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


#: Mixed lengths: empty, one word, a prompt, punctuation and accents, and one far past CLIP's 77 tokens.
PARITY_TEXTS = [
    "",
    "fire",
    "a CCTV frame of a person climbing a fence at night",
    "Two people fight; one falls -- the other runs off (café, 3 a.m.)!",
    " ".join(f"a person number {i} walking" for i in range(40)),
]


@pytest.mark.parametrize(
    ("model", "pretrained"),
    [("ViT-B-32", "random"), ("vadindex-test", "random"), ("vadindex-tiny", "builtin")],
)
def test_encode_texts_equals_open_clips_encode_text(model: str, pretrained: str) -> None:
    """``encode_texts`` skips the padding after the end-of-text token; open_clip's own
    ``model.encode_text`` over all 77 positions is the reference."""
    import torch

    enc = load_encoder(model, pretrained, "cpu", "fp32")
    tokens = enc.tokenizer(PARITY_TEXTS)
    assert tokens.shape[1] == 77 and int(tokens[-1].argmax()) == 76  # the long text is cut at 77 tokens
    with torch.inference_mode():
        reference = torch.nn.functional.normalize(enc.model.encode_text(tokens).float(), dim=-1).numpy()
    together = enc.encode_texts(PARITY_TEXTS)  # cut at the longest text of the batch
    alone = np.concatenate([enc.encode_texts([t]) for t in PARITY_TEXTS])  # each cut at its own length
    for got in (together, alone):
        assert got.shape == reference.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, reference, atol=2e-5)
        assert (got * reference).sum(axis=1).min() > 0.99999


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
    """The patches are process-wide, so a second thread entering ``_skip_weight_init`` must wait
    for the first to leave: it is seen blocked on the lock, and enters only after the first has
    restored ``torch.nn.init`` (then under its own patches)."""
    import inspect
    import threading

    import torch

    import vadindex.models.openclip as oc

    original = torch.nn.init.kaiming_uniform_
    code = inspect.unwrap(oc._skip_weight_init).__code__
    source, first_line = inspect.getsourcelines(code)
    lock_line = first_line + next(i for i, ln in enumerate(source) if "with _INIT_PATCH_LOCK" in ln)
    inside, release = threading.Event(), threading.Event()
    first_inside = False
    seen_by_second: list[tuple[bool, bool]] = []

    def first() -> None:
        nonlocal first_inside
        with oc._skip_weight_init():
            first_inside = True
            inside.set()
            release.wait()
            first_inside = False

    def second() -> None:
        with oc._skip_weight_init():
            seen_by_second.append((first_inside, torch.nn.init.kaiming_uniform_ is original))

    def blocked_on_the_lock(thread: threading.Thread) -> bool:
        frame = sys._current_frames().get(thread.ident)  # type: ignore[arg-type]
        while frame is not None and frame.f_code is not code:
            frame = frame.f_back
        return frame is not None and frame.f_lineno == lock_line

    t1 = threading.Thread(target=first)
    t1.start()
    try:
        assert inside.wait(60)
        t2 = threading.Thread(target=second)
        t2.start()
        # Until the second thread stands at the lock (or has wrongly gone through it).
        deadline = time.monotonic() + 60
        while not (blocked_on_the_lock(t2) or seen_by_second or not t2.is_alive()):
            assert time.monotonic() < deadline, "the second thread never reached the lock"
            time.sleep(0.001)
        assert not seen_by_second, "the second thread entered while the first was inside"
    finally:
        release.set()
        t1.join(60)
    t2.join(60)
    assert seen_by_second == [(False, False)]  # after the first left; under its own patches
    assert torch.nn.init.kaiming_uniform_ is original
    assert torch.nn.Linear(8, 8).weight.abs().sum() > 0  # initialisation works again
