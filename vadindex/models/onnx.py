"""Towers exported to ONNX: the image tower for ``--backend onnxruntime`` (CPU fp32), and the text
tower that :mod:`vadindex.models.onnx_text` runs without torch."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock

from vadindex.config import user_cache_dir
from vadindex.errors import ModelError
from vadindex.files import write_bytes_atomic
from vadindex.models import onnx_text
from vadindex.models.identity import ModelIdentity
from vadindex.models.tokenizer import EOT, ClipTokenizer

log = logging.getLogger("vadindex")


class OnnxImageTower:
    """An image tower exported to ONNX (once, cached on disk) and run by ONNX Runtime on the CPU.

    ONNX Runtime fuses attention, layer norms and GELU and keeps its own thread pool; on two CPU
    cores it encodes ViT-B-32 frames 1.16-1.24x faster than PyTorch with the same embeddings
    (cosine to PyTorch's above 0.99999; see BENCHMARKS.md). The file is keyed by the model identity
    and the torch and open_clip versions, under ``$XDG_CACHE_HOME/vadindex/onnx``.
    """

    def __init__(self, visual: Any, image_size: int, identity: ModelIdentity) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError(
                "--backend onnxruntime needs ONNX Runtime: pip install onnxruntime onnx (or vadindex[onnx])"
            ) from None
        key = hashlib.sha256(
            repr((identity, image_size, torch.__version__, open_clip.__version__)).encode()
        ).hexdigest()[:16]
        cache = user_cache_dir() / "onnx"
        self.path = cache / f"{identity.model}-{key}.onnx"
        if not self.path.is_file():
            self._export(visual, image_size)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    def _export(self, visual: Any, image_size: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        log.info("exporting the image tower to %s (once)", self.path)
        try:
            # Not under no_grad: there nn.MultiheadAttention takes a fused fast path ONNX cannot express.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer and deprecation notices
                torch.onnx.export(
                    visual, (torch.zeros(2, 3, image_size, image_size),), str(tmp),
                    input_names=["pixels"], output_names=["embedding"],
                    dynamic_axes={"pixels": {0: "n"}, "embedding": {0: "n"}}, opset_version=17, dynamo=False,
                )  # fmt: skip
            os.replace(tmp, self.path)
        except Exception as exc:  # noqa: BLE001 - exporters raise many types
            raise ModelError(f"cannot export the image tower to ONNX: {str(exc).splitlines()[0]}") from None
        finally:
            tmp.unlink(missing_ok=True)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """``(n, 3, S, S)`` normalised float32 pixels to ``(n, dim)`` unnormalised embeddings."""
        return self.session.run(None, {"pixels": np.ascontiguousarray(pixels, dtype=np.float32)})[0]


#: Texts an export is checked on before it is used: short and long, over the context length,
#: Unicode, HTML entities, and a literal end-of-text token early in the text.
CHECK_TEXTS = (
    "a",
    "",
    "a person climbing a fence",
    "People FIGHTING; a building on fire!!",
    "a red car drives into a parked truck at night, seen from a camera above the street",
    "word " * 100,
    "x" * 300,
    "caf\u00e9 na\u00efve \u4e2d\u6587 \U0001f525 smoke &amp; flames",
    "<end_of_text> early, then more words",
)
#: Lowest cosine to ``model.encode_text`` an export must reach on :data:`CHECK_TEXTS`.
TEXT_MIN_COSINE = 0.99999
#: Identities whose text tower was reported as not exportable in this process (said once).
_REPORTED: set[ModelIdentity] = set()


class _SelfAttention(torch.nn.Module):
    """``nn.MultiheadAttention`` (batch first, self-attention) in shape-free operations.

    The TorchScript tracer records the example's sequence length in ``nn.MultiheadAttention``'s
    reshapes, so a text tower traced at 6 tokens would fail at 7; this computes the same with
    ``unflatten``/``flatten`` only, sharing the module's parameters.
    """

    def __init__(self, mha: torch.nn.MultiheadAttention) -> None:
        super().__init__()
        if not mha.batch_first or mha.in_proj_weight is None or mha.bias_k is not None or mha.add_zero_attn:
            raise ValueError("an nn.MultiheadAttention variant the export does not handle")
        self.mha = mha
        self.heads = mha.num_heads
        self.head_dim = mha.embed_dim // mha.num_heads

    def forward(
        self, q_x: torch.Tensor, k_x: Any = None, v_x: Any = None, need_weights: bool = False,
        attn_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, None]:  # fmt: skip
        m = self.mha
        qkv = F.linear(q_x, m.in_proj_weight, m.in_proj_bias).unflatten(-1, (3, self.heads, self.head_dim))
        qkv = qkv.permute(2, 0, 3, 1, 4)  # (3, n, heads, L, head_dim)
        q, k, v = qkv[0], qkv[1], qkv[2]
        weights = (q * self.head_dim**-0.5) @ k.transpose(-2, -1)
        if attn_mask is not None:
            weights = weights + attn_mask
        out = (weights.softmax(dim=-1) @ v).transpose(1, 2).flatten(2)
        return F.linear(out, m.out_proj.weight, m.out_proj.bias), None


def _traceable_transformer(transformer: Any) -> Any:
    """A shallow copy of an open_clip text transformer whose blocks attend with :class:`_SelfAttention`."""
    out = copy.copy(transformer)
    out._modules = dict(transformer._modules)
    blocks = []
    for block in transformer.resblocks:
        if type(block) is not ResidualAttentionBlock or hasattr(block, "ln_1_kv"):
            raise ValueError(f"text blocks of type {type(block).__name__}")
        b = copy.copy(block)
        b._modules = dict(block._modules)
        b._modules["attn"] = _SelfAttention(block.attn)
        blocks.append(b)
    out._modules["resblocks"] = torch.nn.ModuleList(blocks)
    return out


class TextTower(torch.nn.Module):
    """``CLIP.encode_text`` (unnormalised) on ``(n, L)`` tokens, ``L`` up to the context length."""

    def __init__(self, clip: Any) -> None:
        super().__init__()
        self.token_embedding = clip.token_embedding
        self.positional_embedding = clip.positional_embedding
        self.transformer = _traceable_transformer(clip.transformer)
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        self.register_buffer("attn_mask", clip.attn_mask, persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n, length = tokens.shape[0], tokens.shape[1]
        cast = self.transformer.get_cast_dtype()
        x = self.token_embedding(tokens).to(cast) + self.positional_embedding[:length].to(cast)
        x = self.ln_final(self.transformer(x, attn_mask=self.attn_mask[:length, :length]))
        # Pool at the end-of-text token, the highest id (the first, if repeated). int32: ONNX
        # Runtime before 1.20 has no int64 ArgMax.
        x = x[torch.arange(n), tokens.to(torch.int32).argmax(dim=-1)]
        p = self.text_projection
        if p is None:
            return x
        return p(x) if isinstance(p, torch.nn.Linear) else x @ p


def text_tower_unsupported(clip: Any, tokenizer: Any) -> str | None:
    """Why a model's text tower cannot run as an ONNX :class:`TextTower`; ``None`` when it can.

    Supported: open_clip ``CLIP`` models with a causal text transformer of plain
    ``ResidualAttentionBlock``s pooled at the end-of-text token, and open_clip's CLIP tokenizer
    (lower-case cleaning, no extra special tokens). Others (Hugging Face and MobileCLIP text
    towers, CoCa, SigLIP, custom attention blocks) stay on torch.
    """
    from open_clip import tokenizer as oc_tokenizer

    if not isinstance(clip, open_clip.model.CLIP):
        return f"{type(clip).__name__} models are not exported"
    if getattr(clip, "text_pool_type", None) != "argmax" or getattr(clip, "attn_mask", None) is None:
        return "its text tower is not causal with end-of-text pooling"
    if not all(type(b) is ResidualAttentionBlock for b in clip.transformer.resblocks):
        return "its text tower has custom attention blocks"
    if (
        type(tokenizer) is not oc_tokenizer.SimpleTokenizer
        or tokenizer.clean_fn is not oc_tokenizer._clean_lower
        or tokenizer.reduction_fn is not None
        or len(tokenizer.encoder) != EOT + 1
    ):
        return f"its tokenizer ({type(tokenizer).__name__}) is not the standard CLIP tokenizer"
    return None


def ensure_text_tower(
    clip: Any, tokenizer: Any, identity: ModelIdentity, logit_scale: float, required: bool = False
) -> Path | None:
    """Export a model's text tower for torch-free text encoding, unless that is done or impossible.

    Args:
        clip: the open_clip model (left unchanged, on any device).
        tokenizer: its open_clip tokenizer.
        identity: the model's identity (names the export).
        logit_scale: the model's CLIP logit scale (stored with the export).
        required: raise instead of returning ``None``.

    Returns:
        The export's folder, or ``None`` when this tower stays on torch; why is logged once per
        model and process (``-v`` shows it). An export that fails is remembered beside the folder
        and not tried again with the same torch.

    Raises:
        ModelError: with ``required``, when the tower cannot be exported, saying why.
    """
    runtime = onnx_text.runtime_version()
    if runtime is None:
        return _stay_on_torch(identity, "ONNX Runtime is not installed", required)
    folder = onnx_text.text_tower_dir(identity, runtime)
    if onnx_text.read_meta(folder, identity) is not None:
        return folder
    failed = folder.with_name(folder.name + ".failed.json")
    reason = text_tower_unsupported(clip, tokenizer) or _failed_before(failed)
    if reason is None:
        try:
            export_text_tower(clip, tokenizer, identity, logit_scale, folder)
        except Exception as exc:  # noqa: BLE001 - exporters and runtimes raise many types
            reason = (
                f"the export failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            )
            log.debug("text tower export failed", exc_info=True)
            _write_json(
                failed, {"reason": reason, "torch": torch.__version__, "open_clip": open_clip.__version__}
            )
        else:
            if not onnx_text.products_path().is_file():
                try:
                    write_products_graph(onnx_text.products_path())
                except Exception as exc:  # noqa: BLE001 - without it, products are computed by numpy
                    log.debug("cannot write the products graph (%s)", exc)
            return folder
    return _stay_on_torch(identity, reason, required)


def _stay_on_torch(identity: ModelIdentity, reason: str, required: bool) -> None:
    if required:
        raise ModelError(f"{identity.describe()}: the text tower cannot run in ONNX: {reason}")
    if identity not in _REPORTED:
        _REPORTED.add(identity)
        log.info("%s: text is encoded with torch (%s)", identity.describe(), reason)


def _failed_before(marker: Path) -> str | None:
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and data.get("torch") == torch.__version__:
        return str(data.get("reason", "the export failed before"))
    return None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, json.dumps(data).encode("utf-8"), sync=False)
    except OSError as exc:
        log.debug("cannot write %s (%s)", path, exc)


def export_text_tower(
    clip: Any, tokenizer: Any, identity: ModelIdentity, logit_scale: float, folder: Path
) -> None:
    """Export, optimise and check a text tower into ``folder`` (see :mod:`vadindex.models.onnx_text`).

    The tower is traced with both axes dynamic (texts and tokens), optimised once by ONNX Runtime
    at its portable level (no hardware-specific layouts) and saved with its weights in a separate
    file, which a session maps instead of reading; then every text of :data:`CHECK_TEXTS` must get
    the same token ids as open_clip's tokenizer and an embedding within :data:`TEXT_MIN_COSINE`
    of ``model.encode_text``, or nothing is kept.

    Raises:
        ValueError: the tokenizer or the embeddings disagree.
        Exception: whatever the exporter or ONNX Runtime raise.
    """
    import onnxruntime as ort

    t0 = time.perf_counter()
    log.info("exporting the text tower of %s to ONNX (once)", identity.describe())
    device = next(clip.parameters()).device
    tower = TextTower(clip).eval()
    if device.type != "cpu":
        tower = copy.deepcopy(tower).cpu().float()
    context_length = int(tokenizer.context_length)
    if context_length > clip.positional_embedding.shape[0]:
        raise ValueError(f"the tokenizer's context length {context_length} exceeds the tower's")
    mine = ClipTokenizer(context_length)
    texts = list(CHECK_TEXTS)
    ids = tokenizer(texts).cpu().numpy()
    if not np.array_equal(mine(texts), ids):
        raise ValueError("the torch-free tokenizer gives other ids than the model's")
    with torch.inference_mode():
        reference = clip.encode_text(torch.from_numpy(ids).to(device)).float().cpu()
        reference = F.normalize(reference, dim=-1).numpy()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        raw = tmp / "raw.onnx"
        example = torch.tensor([[49406, 320, 1125, 49407, 0, 0], [49406, 320, 49407, 0, 0, 0]])
        # Not under no_grad: there nn.MultiheadAttention takes a fused fast path ONNX cannot express.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and deprecation notices
            torch.onnx.export(
                tower, (example,), str(raw), input_names=["tokens"], output_names=["features"],
                dynamic_axes={"tokens": {0: "n", 1: "length"}, "features": {0: "n"}}, opset_version=17,
                dynamo=False,
            )  # fmt: skip
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(tmp / onnx_text.GRAPH)
        options.log_severity_level = 3
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_file_name", onnx_text.WEIGHTS
        )
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
        )
        ort.InferenceSession(
            str(raw), options, providers=["CPUExecutionProvider"]
        )  # writes the optimised pair
        raw.unlink()
        meta = {
            "format": onnx_text.FORMAT,
            "identity": dataclasses.asdict(identity),
            "dim": int(reference.shape[1]),
            "logit_scale": float(logit_scale),
            "context_length": context_length,
            "tokenizer": "clip",
            "onnxruntime": ort.__version__,
            "torch": torch.__version__,
            "open_clip": open_clip.__version__,
        }
        encoder = onnx_text.OnnxTextEncoder(tmp, meta, onnx_text.open_session(tmp))
        # In one batch (cut to the longest text) and each text alone (cut to its own length).
        cosines = [(encoder.encode_texts(texts) * reference).sum(axis=1)]
        cosines += [
            (encoder.encode_texts([t]) * r).sum(axis=1) for t, r in zip(texts, reference, strict=True)
        ]
        worst = float(np.concatenate(cosines).min())
        if not worst >= TEXT_MIN_COSINE:
            raise ValueError(f"ONNX text embeddings agree with torch only to a cosine of {worst:.6f}")
        del encoder
        meta["min_cosine"] = round(worst, 8)
        meta["seconds"] = round(time.perf_counter() - t0, 2)
        (tmp / onnx_text.META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        try:
            os.rename(tmp, folder)  # the whole folder at once; never over an existing export
        except OSError:
            if onnx_text.read_meta(folder, identity) is None:
                raise
            # another process exported the same tower meanwhile: keep theirs
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info(
        "exported the text tower to %s in %.1f s (cosine to torch >= %.7f)", folder, meta["seconds"], worst
    )


def write_products_graph(path: Path) -> None:
    """Write the graph of :func:`vadindex.models.onnx_text.open_products`.

    It needs the ``onnx`` package, which takes a second or more to import: so it is written here,
    where torch's exporter has imported it, and only read where text is encoded without torch.
    """
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["vectors"], ["vectors32"], to=TensorProto.FLOAT),
            helper.make_node("Gemm", ["texts", "vectors32"], ["products"], transB=1),
        ],
        "products",
        [
            helper.make_tensor_value_info("texts", TensorProto.FLOAT, ["t", "d"]),
            helper.make_tensor_value_info("vectors", TensorProto.FLOAT16, ["n", "d"]),
        ],
        [helper.make_tensor_value_info("products", TensorProto.FLOAT, ["t", "n"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every ONNX Runtime this package accepts
    onnx.checker.check_model(model)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, model.SerializeToString(), sync=False)
    except OSError as exc:
        log.debug("cannot write %s (%s)", path, exc)
