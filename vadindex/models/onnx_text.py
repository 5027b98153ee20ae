"""Text towers exported to ONNX and run by ONNX Runtime without torch: the fast path of queries and prompts.

A text tower is exported once per set of weights, when torch is loaded anyway (a build, or the
first text encoded with torch; :func:`vadindex.models.onnx.export_text_tower`), into a folder of
the user cache::

    $XDG_CACHE_HOME/vadindex/onnx/text-<model>-<key>/
        text.onnx        the graph, already optimised by ONNX Runtime
        text.onnx.data   its weights, memory-mapped when a session opens
        meta.json        identity, dim, logit scale, context length, versions

and beside them ``products-1.onnx``, a two-node graph (float16 to float32, then a matrix product)
that multiplies text embeddings with stored vectors (:func:`open_products`).

``<key>`` hashes the weights (:meth:`~vadindex.models.identity.ModelIdentity.weights_key`), this
layout's version and ONNX Runtime's minor version. A folder is written under a temporary name and
renamed into place whole, and never rewritten (ONNX Runtime maps its files), so a reader sees a
whole export or none. The cache is derived data: delete it at any time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from vadindex.config import user_cache_dir
from vadindex.models.identity import ModelIdentity

log = logging.getLogger("vadindex")

#: Version of the export folder's layout; a new one is exported when it changes.
FORMAT = 1
GRAPH = "text.onnx"
WEIGHTS = "text.onnx.data"
META = "meta.json"
#: Texts per ONNX Runtime call.
BATCH = 256
#: The graph of :func:`open_products`, written beside the exported towers with the first of them.
PRODUCTS = "products-1.onnx"


def runtime_version() -> str | None:
    """ONNX Runtime's ``major.minor`` version, or ``None`` when it cannot be imported."""
    try:
        import onnxruntime as ort  # here: a text that is cached needs no runtime at all
    except ImportError:
        return None
    return ".".join(ort.__version__.split(".")[:2])


def text_tower_dir(identity: ModelIdentity, runtime: str) -> Path:
    """The folder of the text tower exported for ``identity`` and ONNX Runtime ``runtime``."""
    key = hashlib.sha256(repr((FORMAT, identity.weights_key(), runtime)).encode()).hexdigest()[:16]
    model = re.sub(r"[^A-Za-z0-9_.-]+", "_", identity.model)
    return user_cache_dir() / "onnx" / f"text-{model}-{key}"


def read_meta(folder: Path, identity: ModelIdentity) -> dict[str, Any] | None:
    """The export's ``meta.json`` when the folder holds a whole export for ``identity``, else ``None``."""
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        return None
    stored = meta.get("identity")
    try:
        same = isinstance(stored, dict) and ModelIdentity(**stored) == identity
    except TypeError:
        same = False
    if not same:
        return None
    if meta.get("tokenizer") != "clip" or not (folder / GRAPH).is_file() or not (folder / WEIGHTS).is_file():
        return None
    return meta


def open_session(folder: Path) -> Any:
    """An ONNX Runtime session for an exported text tower, tuned to open fast and run small batches.

    The graph was optimised when it was exported, so it loads with optimisation off; weight
    prepacking costs more at start (about 140 ms for ViT-B-32) than it saves on a query; one
    thread, because text batches are small and on busy cores a thread pool waits on its barriers
    (measured: 10 prompts in 290 ms to 2.5 s on two threads, steady on one).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.disable_prepacking", "1")
    return ort.InferenceSession(str(folder / GRAPH), options, providers=["CPUExecutionProvider"])


class OnnxTextEncoder:
    """A model's text tower as a :class:`~vadindex.models.identity.TextEncoder`, without torch.

    Texts are tokenized by :class:`~vadindex.models.tokenizer.ClipTokenizer` (open_clip's ids),
    cut after the last end-of-text token (the tower is causal and pools there, so the padding
    after it never reaches the output), run on the CPU and L2-normalised. The embeddings agree
    with ``model.encode_text`` to a cosine above 0.99999 (``tests/test_text_onnx.py``).
    """

    def __init__(self, folder: Path, meta: dict[str, Any], session: Any) -> None:
        self.folder = folder
        self.identity = ModelIdentity(**meta["identity"])
        self.dim = int(meta["dim"])
        self.logit_scale = float(meta["logit_scale"])
        self.context_length = int(meta["context_length"])
        self.session = session
        self._tokenizer: Any = None

    def tokenize(self, texts: list[str]) -> np.ndarray:
        """``(n, context_length)`` int64 token ids, as the model's open_clip tokenizer gives them."""
        if self._tokenizer is None:
            from vadindex.models.tokenizer import ClipTokenizer  # its vocabulary loads in ~20 ms

            self._tokenizer = ClipTokenizer(self.context_length)
        return self._tokenizer(texts)

    def encode_tokens(self, tokens: np.ndarray) -> np.ndarray:
        """Unnormalised ``(n, dim)`` float32 features of token ids (cut after the last end of text)."""
        tokens = tokens[:, : int(tokens.argmax(axis=1).max()) + 1] if len(tokens) else tokens
        out = self.session.run(None, {"tokens": np.ascontiguousarray(tokens, dtype=np.int64)})[0]
        return np.asarray(out, dtype=np.float32)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Embed texts; returns ``(n, dim)`` float32 unit vectors."""
        out = [self.encode_tokens(self.tokenize(texts[i : i + BATCH])) for i in range(0, len(texts), BATCH)]
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        features = np.concatenate(out)
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        return features / np.maximum(norms, 1e-12)


def open_text_encoder(identity: ModelIdentity) -> OnnxTextEncoder | None:
    """The exported text tower of ``identity``, or ``None`` when there is none to run here.

    ``None`` when ONNX Runtime is not installed, nothing was exported for these weights (or for
    this ONNX Runtime), or the export cannot be opened; the caller then encodes with torch.
    """
    runtime = runtime_version()
    if runtime is None:
        log.debug("ONNX Runtime is not installed; text is encoded with torch")
        return None
    folder = text_tower_dir(identity, runtime)
    meta = read_meta(folder, identity)
    if meta is None:
        return None
    try:
        session = open_session(folder)
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own types for bad files
        log.info("cannot open the exported text tower %s (%s); encoding text with torch", folder, exc)
        return None
    return OnnxTextEncoder(folder, meta, session)


def products_path() -> Path:
    """Where the products graph is (written by :func:`vadindex.models.onnx.write_products_graph`)."""
    return user_cache_dir() / "onnx" / PRODUCTS


def open_products() -> Any | None:
    """An ONNX Runtime session that computes ``texts @ vectors.T`` from float32 ``texts`` ``(t, d)``
    and float16 ``vectors`` ``(n, d)``, or ``None`` without ONNX Runtime or the graph.

    numpy converts float16 one value at a time and its BLAS threads spin on busy cores; this
    converts and multiplies in one vectorised pass on one thread: 0.4 s of CPU for 10 texts
    against a million vectors here, against 1 s for numpy on one thread.
    """
    path = products_path()
    if not path.is_file() or runtime_version() is None:
        return None
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own types for bad files
        log.debug("cannot open %s (%s); multiplying with numpy", path, exc)
        return None
