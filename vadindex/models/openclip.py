"""CLIP image and text encoders behind a small interface, with open_clip as the implementation."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlparse

import numpy as np

from vadindex.config import DEFAULT_BACKEND, DEFAULT_PRECISION, DEFAULT_PRETRAINED
from vadindex.errors import InputError, ModelError

log = logging.getLogger("vadindex")

#: Model configs that ship inside the package (open_clip format), with optional weights beside them.
MODELS_DIR = Path(__file__).parent / "models"
#: ``--pretrained`` value that builds the model with seeded random weights (tests, benchmarks).
RANDOM = "random"
#: ``--pretrained`` value for a built-in model's shipped weights.
BUILTIN = "builtin"
_RANDOM_SEED = 0
#: ``--precision`` values; see :func:`resolve_precision`.
PRECISIONS = ("auto", "fp32", "int8", "fp16")
#: ``--backend`` values for the image tower: PyTorch, or ONNX Runtime (CPU, fp32; ``pip install
#: onnxruntime onnx``, the ``onnx`` extra). Text is always encoded by PyTorch.
BACKENDS = ("torch", "onnxruntime")


@dataclass(frozen=True)
class ModelIdentity:
    """What a model is, as stored in an index manifest; indexes refuse queries from another model."""

    model: str
    pretrained: str
    checkpoint_sha256: str | None = None

    def same_as(self, other: ModelIdentity) -> bool:
        """True when both name the same architecture and the same weights."""
        if self.model != other.model:
            return False
        if self.checkpoint_sha256 or other.checkpoint_sha256:
            return self.checkpoint_sha256 == other.checkpoint_sha256
        return self.pretrained == other.pretrained

    def describe(self) -> str:
        """Human-readable name, e.g. ``ViT-B-32 (laion2b_s34b_b79k)``."""
        return f"{self.model} ({self.pretrained})"


@runtime_checkable
class Encoder(Protocol):
    """Anything that maps frames and texts into one L2-normalised embedding space."""

    identity: ModelIdentity
    dim: int
    image_size: int
    logit_scale: float

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        """Embed ``(n, S, S, 3)`` uint8 RGB frames; returns ``(n, dim)`` float32 unit vectors."""
        ...

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Embed texts; returns ``(n, dim)`` float32 unit vectors."""
        ...


def resolve_device(device: str) -> str:
    """Turn ``auto`` into the best available torch device and check an explicit one exists."""
    import torch

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


def register_builtin_models() -> None:
    """Make the package's own model configs (``vadindex-*``) known to open_clip."""
    import open_clip

    known = set(open_clip.list_models())
    for cfg in sorted(MODELS_DIR.glob("*.json")):
        if cfg.stem not in known:
            open_clip.add_model_config(cfg)


def builtin_weights(model: str) -> Path | None:
    """The weights file shipped for a built-in model, if any."""
    path = MODELS_DIR / f"{model}.safetensors"
    return path if path.is_file() else None


def default_pretrained(model: str) -> str:
    """The weights used when ``--pretrained`` is not given."""
    if (MODELS_DIR / f"{model}.json").is_file():
        return BUILTIN if builtin_weights(model) else RANDOM
    if model in DEFAULT_PRETRAINED:
        return DEFAULT_PRETRAINED[model]
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(model)
    return tags[0] if tags else RANDOM


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/vadindex`` (``~/.cache/vadindex`` by default)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "vadindex"


def checkpoint_sha256(path: Path) -> str:
    """SHA-256 of a checkpoint, hashed once per version of the file.

    Every load checks the weights against the index's recorded hash, and hashing a ViT-L-14
    checkpoint takes seconds, so the hash is remembered in ``user_cache_dir()/sha256.json`` under
    the file's path, size, modification time and inode (as git's index does); a file that
    changes in any of these is hashed again. Where the cache cannot be written the file is hashed
    every time.
    """
    import json

    st = path.stat()
    prefix = f"{path.resolve()}|"
    key = f"{prefix}{st.st_size}|{st.st_mtime_ns}|{st.st_ino}|{st.st_dev}"
    store = user_cache_dir() / "sha256.json"
    try:
        known = json.loads(store.read_text(encoding="utf-8"))
        if not isinstance(known, dict):
            known = {}
    except (OSError, ValueError):
        known = {}
    digest = known.get(key)
    if isinstance(digest, str) and len(digest) == 64:
        return digest
    digest = sha256_file(path)
    known = {k: v for k, v in known.items() if not k.startswith(prefix)}  # forget older versions
    known[key] = digest
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        tmp = store.with_name(f".{store.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(known), encoding="utf-8")
        os.replace(tmp, store)
    except OSError as exc:
        log.debug("cannot remember checkpoint hashes in %s (%s)", store, exc)
    return digest


def _hub_reachable(url: str, timeout: float = 3.0) -> bool:
    """One quick TCP connection to the weights host, instead of a minute of download retries."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(url).hostname
    if not host:
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _cached_pretrained(cfg: dict[str, Any]) -> str | None:
    """The local path of a tag's weights when they are already in a cache, else ``None``."""
    if cfg.get("file"):
        return cfg["file"]
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import hf_hub_download

        repo, filename = os.path.split(hub)
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        if filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
        for name in names:
            try:
                return hf_hub_download(repo_id=repo, filename=name, local_files_only=True)
            except Exception:  # noqa: BLE001 - any miss means "not cached"
                continue
    url = cfg.get("url", "")
    if url:
        target = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if target.is_file():
            return str(target)
    return None


def resolve_weights(model: str, pretrained: str) -> tuple[Path | None, ModelIdentity]:
    """Find the weights file for ``model``/``pretrained``, downloading only when the host answers.

    Returns:
        The checkpoint path (``None`` for random weights) and the identity to store in manifests.
    """
    import open_clip

    if pretrained == RANDOM:
        return None, ModelIdentity(model, RANDOM)
    if pretrained == BUILTIN:
        path = builtin_weights(model)
        if path is None:
            raise ModelError(
                f"model {model!r} ships no weights; use --pretrained random or a checkpoint path"
            )
        return path, ModelIdentity(model, BUILTIN, checkpoint_sha256(path))
    as_path = Path(pretrained).expanduser()
    if as_path.suffix in (".pt", ".pth", ".bin", ".safetensors", ".ckpt") or as_path.exists():
        if not as_path.is_file():
            raise ModelError(f"checkpoint {pretrained}: no such file")
        return as_path, ModelIdentity(model, f"file:{as_path.name}", checkpoint_sha256(as_path))
    cfg = open_clip.get_pretrained_cfg(model, pretrained)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(model)
        raise ModelError(
            f"unknown pretrained tag {pretrained!r} for model {model}; known tags: "
            f"{', '.join(tags) or 'none'} (or pass 'random' or a checkpoint path)"
        )
    identity = ModelIdentity(model, pretrained)
    cached = _cached_pretrained(cfg)
    if cached:
        return Path(cached), identity
    from huggingface_hub import constants

    url = constants.ENDPOINT if cfg.get("hf_hub") else cfg.get("url", "")
    if not _hub_reachable(url):
        raise ModelError(
            f"weights for {model} ({pretrained}) are not in the local cache and {urlparse(url).hostname} "
            "cannot be reached; download them on a connected machine (they are cached under "
            "~/.cache/huggingface) or pass a local file with --pretrained /path/to/open_clip_model.safetensors"
        )
    try:
        return Path(open_clip.download_pretrained(cfg)), identity
    except Exception as exc:  # noqa: BLE001 - network and hub errors come in many types
        raise ModelError(f"cannot download weights for {model} ({pretrained}): {exc}") from None


def resolve_precision(precision: str, device: str) -> str:
    """Turn ``auto`` into ``fp16`` on CUDA and ``fp32`` elsewhere; refuse combinations that cannot run.

    ``int8`` quantises the image tower's linear layers dynamically (weights int8, activations
    quantised per batch; PyTorch's CPU kernels), ``fp16`` autocasts on CUDA. This is the precision an
    encoder starts in: :func:`load_encoder` with ``auto`` on a CPU may move to int8 after checking
    it on the first frames (see :class:`OpenClipEncoder`).
    """
    if precision not in PRECISIONS:
        raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    cuda = device.startswith("cuda")
    if precision == "auto":
        return "fp16" if cuda else "fp32"
    if precision == "int8" and device != "cpu":
        raise InputError(f"--precision int8 runs on the CPU only, not on {device}; use fp16 on a GPU")
    if precision == "fp16" and not cuda:
        raise InputError(f"--precision fp16 needs a CUDA device, not {device}; on a CPU use fp32 or int8")
    return precision


def quantize_image_tower(model: Any) -> Any:
    """Dynamic int8 quantisation of the image tower's ``nn.Linear`` layers, in place; returns ``model``.

    The text tower stays in fp32, so text embeddings, and so queries and prompts, are unchanged; the
    image embeddings agree with fp32 to a cosine of about 0.9998 (random ViT-B-32 weights; see
    ``tests/test_speed_options.py``), and ``--precision auto`` checks that on the frames it encodes.
    Attention projections inside ``nn.MultiheadAttention`` are not ``nn.Linear`` modules and stay fp32,
    and so do the projections of a ResNet tower's attention pooling (``AttentionPool2d``), which
    reads their weights directly instead of calling them (a quantised layer has no weight tensor).
    """
    quantized = quantized_tower(model.visual, inplace=True)
    if quantized is None:
        log.warning("--precision int8: the image tower has no linear layer to quantise; it runs in fp32")
        return model
    model.visual = quantized
    return model


def quantized_tower(visual: Any, inplace: bool = False) -> Any:
    """``visual`` with its quantisable ``nn.Linear`` layers in dynamic int8 (a copy unless ``inplace``);
    ``None`` when it has none (a ResNet tower's only linear layers are its attention pooling's)."""
    import warnings

    import torch

    try:
        from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic
    except ImportError:  # pragma: no cover - removed in some future torch
        raise ModelError(
            f"--precision int8 needs torch.ao.quantization, absent from torch {torch.__version__}"
        ) from None
    parents = dict(visual.named_modules())
    linear = [
        name
        for name, module in visual.named_modules()
        # exactly nn.Linear, as quantize_dynamic's type matching does: nn.MultiheadAttention's
        # out_proj (a subclass) must stay a float layer
        if type(module) is torch.nn.Linear
        and type(parents[name.rpartition(".")[0]]).__name__ not in _READS_LINEAR_WEIGHTS
    ]
    if not linear:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notices about the eager-mode API
        return quantize_dynamic(
            visual, dict.fromkeys(linear, default_dynamic_qconfig), dtype=torch.qint8, inplace=inplace
        )


def int8_is_fast() -> bool:
    """True where PyTorch's dynamic int8 kernels beat fp32: an x86 CPU with AVX2 or AVX-512 (FBGEMM).

    Elsewhere (ARM's QNNPACK, CPUs without AVX2) ``--precision auto`` stays in fp32.
    """
    import torch

    engine = torch.backends.quantized.engine
    capability = torch.backends.cpu.get_cpu_capability()
    return engine in ("x86", "fbgemm") and capability.startswith(("AVX2", "AVX512"))


#: Modules whose forward reads their ``nn.Linear`` children's ``weight``/``bias`` tensors directly.
_READS_LINEAR_WEIGHTS = frozenset({"AttentionPool2d"})


def check_backend(backend: str, device: str, precision: str) -> str:
    """Return ``backend`` or raise :class:`InputError` for a combination that cannot run."""
    if backend not in BACKENDS:
        raise InputError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "onnxruntime" and (device != "cpu" or precision != "fp32"):
        raise InputError(
            f"--backend onnxruntime runs the image tower in fp32 on the CPU, not {precision} on {device}; "
            "use --backend torch for int8 or a GPU"
        )
    return backend


@contextlib.contextmanager
def _one_cpu_thread(device: str) -> Iterator[None]:
    """Run PyTorch CPU ops on one thread for the duration.

    Text batches are small: their ops are short and each ends in an OpenMP barrier, which on a
    machine whose other cores are busy waits a scheduler slice. Measured on 2 busy cores, 10
    prompts took 124 ms on one thread and 1,636 ms on two; on idle cores one thread costs a few
    tens of milliseconds at most.
    """
    import torch

    if device != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class OnnxImageTower:
    """An image tower exported to ONNX (once, cached on disk) and run by ONNX Runtime on the CPU.

    ONNX Runtime fuses attention, layer norms and GELU and keeps its own thread pool; on two CPU
    cores it encodes ViT-B-32 frames 1.16-1.24x faster than PyTorch with the same embeddings
    (cosine to PyTorch's above 0.99999; see BENCHMARKS.md). The file is keyed by the model identity
    and the torch and open_clip versions, under ``$XDG_CACHE_HOME/vadindex/onnx``.
    """

    def __init__(self, visual: Any, image_size: int, identity: ModelIdentity) -> None:
        import torch

        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError(
                "--backend onnxruntime needs ONNX Runtime: pip install onnxruntime onnx (or vadindex[onnx])"
            ) from None
        import open_clip

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
        import warnings

        import torch

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


class OpenClipEncoder:
    """An open_clip CLIP model as an :class:`Encoder`.

    Images are normalised with the model's own mean and std in one batched step on the device,
    then encoded under ``torch.inference_mode`` (with fp16 autocast when ``precision`` is ``fp16``),
    or by ONNX Runtime with ``backend="onnxruntime"``.

    With ``int8_probe`` (``--precision auto`` on a CPU where int8 is fast), the encoder starts in
    fp32 and also encodes ``INT8_PROBE_FRAMES`` frames with an int8 copy of the image tower, at most
    a quarter of them from any one call, spread over it; it returns the fp32 embeddings meanwhile,
    and moves to int8 for good only if every probed frame agreed with fp32 to a cosine of
    ``INT8_MIN_COSINE`` or more. The check runs on the user's own weights and frames, which is what
    "equal quality" has to mean for weights this code has never seen. ``precision`` says where it
    stands (``fp32`` until then), ``int8_check`` what was measured.
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
    ) -> None:
        import open_clip
        import torch

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
        self._probe: _Int8Probe | None = None
        if int8_probe and self.precision == "fp32" and self._onnx is None and device == "cpu":
            self._probe = _Int8Probe()

    def _autocast(self) -> Any:
        import contextlib

        import torch

        if self.precision == "fp16" and self.device.startswith("cuda"):
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        """Embed ``(n, S, S, 3)`` uint8 RGB frames; returns ``(n, dim)`` float32 unit vectors."""
        import torch

        if len(pixels) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        with torch.inference_mode(), self._autocast():
            pixels = np.ascontiguousarray(pixels)
            if not pixels.flags.writeable:
                pixels = pixels.copy()
            x = torch.from_numpy(pixels).to(self.device, non_blocking=True)
            x = x.permute(0, 3, 1, 2).float().div_(255.0)
            x = (x - self._mean) / self._std
            if self._onnx is not None:
                emb = torch.from_numpy(self._onnx(x.numpy()))
            else:
                emb = self.model.encode_image(x).float()
            emb = torch.nn.functional.normalize(emb, dim=-1)
            if self._probe is not None:
                self._probe_int8(x, emb)
        return emb.cpu().numpy()

    def _probe_int8(self, x: Any, reference: Any) -> None:
        """Encode some frames of ``x`` with the int8 candidate, compare with the fp32 ``reference``,
        and decide once ``INT8_PROBE_FRAMES`` frames are in.

        Anything that goes wrong here (a tower whose quantised copy fails to run, a torch without
        quantisation) ends the check in fp32 with a warning: ``auto`` never fails a build that fp32
        would run.
        """
        from vadindex.config import INT8_PROBE_FRAMES

        probe = self._probe
        if probe is None:
            return
        with probe.lock:
            if self._probe is not probe:  # another thread decided meanwhile
                return
            try:
                if probe.tower is None:
                    probe.tower = quantized_tower(self.model.visual)
                    if probe.tower is None:  # nothing to quantise (a ResNet tower): fp32, silently
                        self._probe = None
                        return
                # At most a quarter of the frames from any one batch, spread over it: the check
                # then sees at least four stretches of footage (four videos, when they are short).
                need = INT8_PROBE_FRAMES - sum(len(c) for c in probe.cosines)
                take = min(need, -(-INT8_PROBE_FRAMES // 4), len(x))
                rows = np.unique(np.linspace(0, len(x) - 1, take).round().astype(np.int64))
                probe.cosines.append(_cosines(_pooled(probe.tower(x[rows])), reference[rows]))
            except Exception as exc:  # noqa: BLE001 - any failure means: stay in fp32
                reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                log.warning("--precision auto: the int8 check failed (%s); encoding in fp32", reason)
                self.int8_check = {"frames": 0, "accepted": False, "error": reason}
                self._probe = None
                return
            cosines = np.concatenate(probe.cosines)
            if len(cosines) >= INT8_PROBE_FRAMES:
                self._decide_int8(probe, cosines)

    def _decide_int8(self, probe: _Int8Probe, cosines: np.ndarray) -> None:
        """Move to the int8 tower if every probed cosine reaches ``INT8_MIN_COSINE``; end the check."""
        from vadindex.config import INT8_MIN_COSINE

        accepted = bool(cosines.min() >= INT8_MIN_COSINE)
        self.int8_check = {
            "frames": len(cosines),
            "min_cosine": round(float(cosines.min()), 6),
            "mean_cosine": round(float(cosines.mean()), 6),
            "accepted": accepted,
        }
        if accepted:
            self.model.visual = probe.tower
            self.precision = "int8"
            log.info(
                "--precision auto: int8 from here on (cosine to fp32 >= %.5f on %d frames)",
                cosines.min(), len(cosines),
            )  # fmt: skip
        else:
            log.info(
                "--precision auto: staying in fp32; int8 agreed only to a cosine of %.5f on %d frames "
                "(needs %g)",
                cosines.min(), len(cosines), INT8_MIN_COSINE,
            )  # fmt: skip
        self._probe = None

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Embed texts; returns ``(n, dim)`` float32 unit vectors."""
        import torch

        out = []
        with torch.inference_mode(), self._autocast(), _one_cpu_thread(self.device):
            for i in range(0, len(texts), 256):
                tokens = self.tokenizer(texts[i : i + 256]).to(self.device)
                emb = self._encode_tokens(tokens).float()
                out.append(torch.nn.functional.normalize(emb, dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)

    def _encode_tokens(self, tokens: Any) -> Any:
        """``model.encode_text``, skipping the padding after the last end-of-text token.

        CLIP's text tower is causal and pools at the end-of-text token (the highest token id), so
        positions after it never reach the output; cutting them turns 77 positions into the length
        of the longest text (about 10 for a short prompt): the same embeddings, 5-8x less work.
        Other text towers (Hugging Face, other pooling) run unchanged.
        """
        import torch
        from open_clip.model import CLIP

        m = self.model
        if not (
            isinstance(m, CLIP) and m.text_pool_type == "argmax" and getattr(m, "attn_mask", None) is not None
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


@dataclass
class _Int8Probe:
    """The int8 candidate of ``--precision auto`` on a CPU, and the cosines measured so far."""

    tower: Any = None
    cosines: list[np.ndarray] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _pooled(out: Any) -> Any:
    """An image tower's embedding: the tensor itself, or the first of the tuple that towers with
    token outputs return (CoCa: ``(pooled, tokens)``)."""
    return out[0] if isinstance(out, tuple) else out


def _cosines(emb: Any, reference: Any) -> np.ndarray:
    """Row-wise cosine of ``emb`` (any scale) with the unit rows of ``reference``."""
    import torch

    emb = torch.nn.functional.normalize(emb.float(), dim=-1)
    return (emb * reference).sum(dim=-1).cpu().numpy()


#: Held while ``torch.nn.init`` is patched, so two threads building models never record each other's
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
    import sys

    import torch

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

    Returns:
        The encoder, in eval mode on ``device``.
    """
    import open_clip
    import torch

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
    if precision == "int8":
        quantize_image_tower(clip)
    tokenizer = open_clip.get_tokenizer(model)
    return OpenClipEncoder(clip, tokenizer, identity, device, precision, backend, int8_probe=probe)
