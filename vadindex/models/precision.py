"""Encoder arithmetic: fp32, fp16 on CUDA, dynamic int8 on x86 CPUs, and the check ``auto`` runs
before it trusts int8 with a build.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vadindex.config import BACKENDS, INT8_MIN_COSINE, INT8_PROBE_FRAMES, PRECISIONS, user_cache_dir
from vadindex.errors import InputError, ModelError
from vadindex.files import write_bytes_atomic
from vadindex.models.identity import ModelIdentity

log = logging.getLogger("vadindex")


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


class Int8Check:
    """The check ``--precision auto`` runs on a CPU before it trusts int8 with a build.

    While it runs, the encoder hands it every batch (:meth:`encode`). It encodes the whole batch
    with a dynamic-int8 copy of the image tower and some of its frames also in fp32: at most a
    quarter of ``INT8_PROBE_FRAMES`` from any one batch, spread over it, so the check sees at least
    four stretches of footage (four videos, when they are short). A batch whose sampled frames all
    agree with fp32 to ``INT8_MIN_COSINE`` keeps its int8 embeddings, as every batch after an
    accepted check does; the first one that does not is encoded in fp32 and ends the check in fp32.
    Once ``INT8_PROBE_FRAMES`` frames have agreed it is int8 for good (``on_accept`` receives the
    int8 tower). So the check costs its sampled frames in fp32 and a copy of the tower, not whole
    batches in fp32. It runs on the user's own weights and frames, which is what "equal quality"
    has to mean for weights this code has never seen. Anything that goes wrong in it (a tower
    whose quantised copy fails to run, a torch without quantisation) ends it in fp32 with a
    warning: ``auto`` never fails a build that fp32 would run. Safe to call from several threads;
    the decision is taken once.
    """

    def __init__(self, visual: Any, on_accept: Callable[[Any], None]) -> None:
        self._visual = visual
        self._on_accept = on_accept
        self._tower: Any = None
        self._cosines: list[np.ndarray] = []
        self._lock = threading.Lock()
        #: True once the check has decided (or found nothing to quantise, or failed).
        self.done = False
        #: What it measured: ``{"frames", "min_cosine", "mean_cosine", "accepted"}`` (or ``error``);
        #: ``None`` until it decides, and for a tower with nothing to quantise.
        self.result: dict[str, Any] | None = None

    def encode(self, x: Any, fp32: Callable[[Any], Any]) -> tuple[Any, bool]:
        """Unit embeddings of the normalised pixel batch ``x``, checking int8 on some of its frames.

        Args:
            x: the batch, preprocessed for the tower.
            fp32: the encoder's own unit embeddings of a batch (fp32 until the check accepts int8).

        Returns:
            The embeddings, and whether they are the int8 tower's.
        """
        with self._lock:
            if self.done:
                return fp32(x), False
            try:
                if self._tower is None:
                    self._tower = quantized_tower(self._visual)
                    if self._tower is None:  # nothing to quantise (a ResNet tower): fp32, silently
                        self.done = True
                        return fp32(x), False
                need = INT8_PROBE_FRAMES - sum(len(c) for c in self._cosines)
                take = min(need, -(-INT8_PROBE_FRAMES // 4), len(x))
                rows = np.unique(np.linspace(0, len(x) - 1, take).round().astype(np.int64))
                reference = fp32(x[rows])
                quantized = torch.nn.functional.normalize(_pooled(self._tower(x)).float(), dim=-1)
                cosines = (quantized[rows] * reference).sum(dim=-1).cpu().numpy()
            except Exception as exc:  # noqa: BLE001 - any failure means: stay in fp32
                reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                log.warning("--precision auto: the int8 check failed (%s); encoding in fp32", reason)
                self.result = {"frames": 0, "accepted": False, "error": reason}
                self.done = True
                return fp32(x), False
            self._cosines.append(cosines)
            seen = np.concatenate(self._cosines)
            if cosines.min() < INT8_MIN_COSINE:  # refused: this batch, and every later one, in fp32
                self._decide(seen)
                return fp32(x), False
            if len(seen) >= INT8_PROBE_FRAMES:
                self._decide(seen)
            return quantized, True

    def _decide(self, cosines: np.ndarray) -> None:
        accepted = bool(cosines.min() >= INT8_MIN_COSINE)
        self.result = {
            "frames": len(cosines),
            "min_cosine": round(float(cosines.min()), 6),
            "mean_cosine": round(float(cosines.mean()), 6),
            "accepted": accepted,
        }
        if accepted:
            self._on_accept(self._tower)
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
        self.done = True


def _pooled(out: Any) -> Any:
    """An image tower's embedding: the tensor itself, or the first of the tuple that towers with
    token outputs return (CoCa: ``(pooled, tokens)``)."""
    return out[0] if isinstance(out, tuple) else out


def cpu_name() -> str:
    """This CPU as int8 speed and accuracy depend on it: its model name, architecture, the SIMD level
    PyTorch uses and its quantised engine (``Intel(R) Xeon(R) ... | x86_64 | AVX512 | x86``)."""
    name = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            name = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), name)
    except OSError:
        pass
    capability = torch.backends.cpu.get_cpu_capability()
    return " | ".join((name or "?", platform.machine(), capability, torch.backends.quantized.engine))


class Int8Verdicts:
    """What ``--precision auto``'s int8 check concluded, remembered per weights and CPU.

    A build that loads its model looks the verdict up before encoding: found, it starts in int8
    (accepted) or fp32 (refused) at once and runs no check; otherwise it checks, and remembers
    the verdict with what was measured. The key hashes the weights
    (:meth:`~vadindex.models.identity.ModelIdentity.weights_key`), :func:`cpu_name`, the torch
    version and the check's settings (frames, threshold), so another CPU, torch or threshold
    checks again. The file is ``$XDG_CACHE_HOME/vadindex/int8.json``; delete it to check again.
    Where it cannot be read or written, every build checks, as before.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or user_cache_dir() / "int8.json"

    @staticmethod
    def key(identity: ModelIdentity) -> str:
        """The verdict's key for ``identity`` on this CPU, torch and check settings."""
        parts = (identity.weights_key(), cpu_name(), torch.__version__, INT8_PROBE_FRAMES, INT8_MIN_COSINE)
        return hashlib.sha256(repr(parts).encode("utf-8")).hexdigest()[:24]

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, identity: ModelIdentity) -> dict[str, Any] | None:
        """The remembered verdict (``accepted``, ``frames``, ``min_cosine``, ``mean_cosine``, what it
        was measured on and when), or ``None``."""
        found = self._read().get(self.key(identity))
        return found if isinstance(found, dict) and isinstance(found.get("accepted"), bool) else None

    def put(self, identity: ModelIdentity, result: dict[str, Any]) -> None:
        """Remember a verdict :class:`Int8Check` measured (a failed check is not remembered)."""
        if "error" in result or not isinstance(result.get("accepted"), bool):
            return
        known = self._read()
        known[self.key(identity)] = {
            **result,
            "model": identity.describe(),
            "cpu": cpu_name(),
            "torch": torch.__version__,
            "checked": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(self.path, json.dumps(known, indent=1).encode("utf-8"), sync=False)
        except OSError as exc:
            log.debug("cannot remember the int8 verdict in %s (%s)", self.path, exc)
