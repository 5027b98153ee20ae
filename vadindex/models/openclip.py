"""The open_clip implementation of the :class:`~vadindex.models.identity.Encoder` protocol.

Imported only by code that encodes (it imports torch and open_clip at once); everything that only
reads an index uses :mod:`vadindex.models.identity`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch

from vadindex.config import DEFAULT_BACKEND, DEFAULT_PRECISION
from vadindex.errors import InputError, ModelError
from vadindex.models.identity import RANDOM, ModelIdentity
from vadindex.models.onnx import OnnxImageTower, ensure_text_tower
from vadindex.models.precision import (
    Int8Check,
    Int8Verdicts,
    check_backend,
    int8_is_fast,
    quantize_image_tower,
    resolve_precision,
)
from vadindex.models.weights import default_pretrained, register_builtin_models, resolve_weights

log = logging.getLogger("vadindex")

#: Seed of ``--pretrained random`` weights: the same random model in every process.
_RANDOM_SEED = 0


def resolve_device(device: str) -> str:
    """Turn ``auto`` into the best available torch device and check an explicit one exists."""
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device}: CUDA is not available on this machine")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("--device mps: MPS is not available on this machine")
    if device not in ("cpu", "mps") and not device.startswith("cuda"):
        raise InputError(f"--device {device}: expected auto, cpu, cuda, cuda:N or mps")
    return device


@contextlib.contextmanager
def _one_cpu_thread(device: str) -> Iterator[None]:
    """Run PyTorch CPU ops on one thread for the duration.

    Text batches are small: their ops are short and each ends in an OpenMP barrier, which on a
    machine whose other cores are busy waits a scheduler slice. Measured on 2 busy cores, 10
    prompts took 124 ms on one thread and 1,636 ms on two; on idle cores one thread costs a few
    tens of milliseconds at most.
    """
    if device != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class OpenClipEncoder:
    """An open_clip CLIP model as an :class:`Encoder`.

    Images are normalised with the model's own mean and std in one batched step on the device,
    then encoded under ``torch.inference_mode`` (with fp16 autocast when ``precision`` is ``fp16``),
    or by ONNX Runtime with ``backend="onnxruntime"``.

    With ``int8_probe`` (``--precision auto`` on a CPU where int8 is fast), the encoder runs
    :class:`~vadindex.models.precision.Int8Check` on the batches it encodes: each is encoded in
    int8 and some of its frames in fp32, and answered in int8 while they agree; the first batch
    that does not is answered in fp32, and so is everything after it. ``precision`` says where it
    stands (``int8`` while the check's batches agree, ``fp32`` before the first and once refused),
    ``int8_check`` what was measured.
    With ``int8_verdicts``, the verdict is remembered there (see :func:`load_encoder`).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        identity: ModelIdentity,
        device: str,
        precision: str = DEFAULT_PRECISION,
        backend: str = DEFAULT_BACKEND,
        int8_probe: bool = False,
        int8_verdicts: Int8Verdicts | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.identity = identity
        self.device = device
        self.precision = resolve_precision(precision, device)
        self.backend = check_backend(backend, device, self.precision)
        pp = open_clip.get_model_preprocess_cfg(model)
        size = pp.get("size", getattr(model.visual, "image_size", 224))
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self._mean = torch.tensor(pp.get("mean", open_clip.OPENAI_DATASET_MEAN), device=device).view(
            1, 3, 1, 1
        )
        self._std = torch.tensor(pp.get("std", open_clip.OPENAI_DATASET_STD), device=device).view(1, 3, 1, 1)
        with torch.no_grad():
            self.logit_scale = float(model.logit_scale.exp().item())
            probe = self.encode_texts(["a"])
        self.dim = int(probe.shape[1])
        self._onnx = (
            OnnxImageTower(model.visual, self.image_size, identity) if backend == "onnxruntime" else None
        )
        #: What the int8 check measured: ``{"frames", "min_cosine", "mean_cosine", "accepted"}``, or
        #: ``None`` while it runs or when there is none.
        self.int8_check: dict[str, Any] | None = None
        self._int8: Int8Check | None = None
        self._verdicts = int8_verdicts
        if int8_probe and self.precision == "fp32" and self._onnx is None and device == "cpu":
            self._int8 = Int8Check(model.visual, self._use_int8)

    @property
    def checking_int8(self) -> bool:
        """True while ``--precision auto``'s int8 check is still deciding."""
        return self._int8 is not None

    def _use_int8(self, tower: Any) -> None:
        """Encode with the int8 image tower from now on (``--precision auto``'s check accepted it)."""
        self.model.visual = tower
        self.precision = "int8"

    def _autocast(self) -> Any:
        if self.precision == "fp16" and self.device.startswith("cuda"):
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        """Embed ``(n, S, S, 3)`` uint8 RGB frames; returns ``(n, dim)`` float32 unit vectors."""
        if len(pixels) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        with torch.inference_mode(), self._autocast():
            pixels = np.ascontiguousarray(pixels)
            if not pixels.flags.writeable:
                pixels = pixels.copy()
            x = torch.from_numpy(pixels).to(self.device, non_blocking=True)
            x = x.permute(0, 3, 1, 2).float().div_(255.0)
            x = (x - self._mean) / self._std
            check = self._int8
            if check is None:
                emb = self._embed(x)
            else:
                emb, int8 = check.encode(x, self._embed)
                self.precision = "int8" if int8 else "fp32"
                if check.done:
                    self.int8_check, self._int8 = check.result, None
                    if self._verdicts is not None and check.result is not None:
                        self._verdicts.put(self.identity, check.result)
        return emb.cpu().numpy()

    def _embed(self, x: Any) -> Any:
        """Unit embeddings of a normalised pixel batch (under ``inference_mode``)."""
        if self._onnx is not None:
            emb = torch.from_numpy(self._onnx(x.numpy()))
        else:
            emb = self.model.encode_image(x).float()
        return torch.nn.functional.normalize(emb, dim=-1)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Embed texts; returns ``(n, dim)`` float32 unit vectors."""
        out = []
        with torch.inference_mode(), self._autocast(), _one_cpu_thread(self.device):
            for i in range(0, len(texts), 256):
                tokens = self.tokenizer(texts[i : i + 256]).to(self.device)
                emb = self._encode_tokens(tokens).float()
                out.append(torch.nn.functional.normalize(emb, dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)

    def export_text_onnx(self, required: bool = False) -> Path | None:
        """Export the text tower to ONNX (once per model on this machine), so that later queries and
        prompts encode text without torch; the folder, or ``None`` when this model's text stays
        on torch (``required``: raise :class:`ModelError` instead; see
        :func:`vadindex.models.onnx.ensure_text_tower`)."""
        return ensure_text_tower(self.model, self.tokenizer, self.identity, self.logit_scale, required)

    def _encode_tokens(self, tokens: Any) -> Any:
        """``model.encode_text``, skipping the padding after the last end-of-text token.

        CLIP's text tower is causal and pools at the end-of-text token (the highest token id), so
        positions after it never reach the output; cutting them turns 77 positions into the length
        of the longest text (about 10 for a short prompt): the same embeddings, 5-8x less work.
        Other text towers (Hugging Face, other pooling) run unchanged.
        """
        m = self.model
        if not (
            isinstance(m, open_clip.model.CLIP)
            and m.text_pool_type == "argmax"
            and getattr(m, "attn_mask", None) is not None
        ):
            return m.encode_text(tokens)
        eot = tokens.argmax(dim=-1)
        n = int(eot.max()) + 1
        cast = m.transformer.get_cast_dtype()
        x = m.token_embedding(tokens[:, :n]).to(cast) + m.positional_embedding[:n].to(cast)
        x = m.transformer(x, attn_mask=m.attn_mask[:n, :n])
        x = m.ln_final(x)[torch.arange(len(x), device=x.device), eot]
        if m.text_projection is None:
            return x
        return (
            m.text_projection(x) if isinstance(m.text_projection, torch.nn.Linear) else x @ m.text_projection
        )


#: no-ops as the originals (reentrant: a nested build in the same thread restores in order).
_INIT_PATCH_LOCK = threading.RLock()


@contextlib.contextmanager
def _skip_weight_init() -> Iterator[None]:
    """Make ``torch.nn.init``'s in-place initialisers no-ops while a model is built.

    Parameters then hold whatever ``torch.empty`` gave them, so this is only for a model whose
    every parameter and persistent buffer is loaded strictly afterwards (buffers that are computed,
    not loaded, such as CLIP's causal attention mask, do not use these functions). Modules that
    imported an initialiser by name (``from torch.nn.init import xavier_uniform_``) are patched too.
    """
    with _INIT_PATCH_LOCK:
        by_id = {
            id(fn)
            for name, fn in vars(torch.nn.init).items()
            if name.endswith("_") and not name.startswith("_") and callable(fn)
        }
        patched: list[tuple[Any, str, Any]] = []
        for mod_name, mod in list(sys.modules.items()):
            if mod is None or not mod_name.startswith(("torch.nn", "open_clip", "timm")):
                continue
            for attr, value in list(vars(mod).items()):
                if id(value) in by_id and callable(value):
                    patched.append((mod, attr, value))
        try:
            for mod, attr, _ in patched:
                setattr(mod, attr, lambda tensor, *args, **kwargs: tensor)
            yield
        finally:
            for mod, attr, value in patched:
                setattr(mod, attr, value)


def load_encoder(
    model: str,
    pretrained: str | None = None,
    device: str = "auto",
    precision: str = DEFAULT_PRECISION,
    backend: str = DEFAULT_BACKEND,
    threads: int | None = None,
    remember_int8: bool = False,
) -> OpenClipEncoder:
    """Build an open_clip model with its weights and wrap it as an :class:`Encoder`.

    Args:
        model: an open_clip architecture (``ViT-B-32``) or a built-in one (``vadindex-tiny``).
        pretrained: an open_clip tag, a local checkpoint path, ``builtin`` or ``random``;
            ``None`` picks the model's default.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        precision: ``auto``, ``fp32``, ``int8`` (CPU) or ``fp16`` (CUDA). ``auto`` is fp16 on CUDA;
            on an x86 CPU it is int8 once the first frames have matched fp32 (see
            :class:`OpenClipEncoder`), else fp32. The model identity does not change with
            precision: text is encoded in fp32 either way.
        backend: ``torch``, or ``onnxruntime`` for the image tower (CPU, fp32).
        threads: CPU threads for PyTorch and ONNX Runtime, set process-wide with
            ``torch.set_num_threads``; ``None`` keeps PyTorch's (one per core). On a machine whose
            cores are busy with other work, 1 can be faster (BENCHMARKS.md).
        remember_int8: with ``auto`` on a CPU, use the int8 verdict remembered for these weights on
            this CPU (:class:`~vadindex.models.precision.Int8Verdicts`) instead of checking again,
            and remember a new one (builds do; ``int8_check`` then has ``"remembered": true``).

    Returns:
        The encoder, in eval mode on ``device``.
    """
    import open_clip

    register_builtin_models()
    if model not in open_clip.list_models():
        raise ModelError(
            f"unknown model {model!r}; see `python -c 'import open_clip; print(open_clip.list_models())'`"
        )
    pretrained = pretrained or default_pretrained(model)
    device = resolve_device(device)
    probe = precision == "auto" and int8_is_fast()  # the encoder itself checks device and backend
    precision = resolve_precision(precision, device)
    check_backend(backend, device, precision)
    path, identity = resolve_weights(model, pretrained)
    if identity.pretrained == RANDOM:
        log.warning(
            "RANDOM WEIGHTS: %s is using random weights (--pretrained random); embeddings and results "
            "carry no meaning: use this only for tests and benchmarks",
            model,
        )
    root = logging.getLogger()
    quiet = logging.Filter()
    quiet.filter = lambda record: "No pretrained weights loaded" not in record.getMessage()  # type: ignore[method-assign]
    root.addFilter(quiet)  # we load weights ourselves below; open_clip's notice would mislead
    try:
        # Random initialisation is wasted work when a checkpoint replaces every weight (a second or
        # more for ViT-B-32 on a CPU), so it is skipped then; a strict load below fills everything.
        init = contextlib.nullcontext() if path is None else _skip_weight_init()
        with torch.random.fork_rng(devices=[]), init:
            torch.manual_seed(_RANDOM_SEED)  # the same "random" model in every process
            clip = open_clip.create_model(model, pretrained=None, device="cpu")
    finally:
        root.removeFilter(quiet)
    if path is not None:
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                # Each tensor in the model's own dtype (a file may hold fp16 weights, or integer
                # counters stored as floats); assign: the loaded tensors become the parameters, so
                # the weights are not held twice (the never-initialised ones are freed untouched).
                dtypes = {k: t.dtype for k, t in clip.state_dict().items()}
                state = {k: v.to(dtypes.get(k, v.dtype)) for k, v in load_file(str(path)).items()}
                clip.load_state_dict(state, strict=True, assign=True)
            else:
                open_clip.load_checkpoint(clip, str(path), weights_only=True)
        except Exception as exc:  # noqa: BLE001 - corrupt files raise many types
            raise ModelError(
                f"cannot load checkpoint {path} into {model}: {str(exc).splitlines()[0]}"
            ) from None
    clip = clip.to(device)
    if device == "cpu" and threads:
        torch.set_num_threads(threads)
    verdicts = Int8Verdicts() if remember_int8 and probe and device == "cpu" and backend == "torch" else None
    remembered = verdicts.get(identity) if verdicts is not None else None
    if remembered is not None:
        probe = False
        precision = "int8" if remembered["accepted"] else "fp32"
        log.info(
            "--precision auto: %s, as checked on this CPU on %s (min cosine %s on %s frames)",
            precision, remembered.get("checked", "?"), remembered.get("min_cosine"), remembered.get("frames"),
        )  # fmt: skip
    if precision == "int8":
        quantize_image_tower(clip)
    tokenizer = open_clip.get_tokenizer(model)
    encoder = OpenClipEncoder(
        clip, tokenizer, identity, device, precision, backend, int8_probe=probe, int8_verdicts=verdicts
    )
    if remembered is not None:
        encoder.int8_check = {**remembered, "remembered": True}
    return encoder
