"""Derived-data cache inside an index folder: text embeddings, similarity matrices, neighbour lists.

Layout of ``INDEX/cache/`` (``.npy`` arrays with a small JSON beside each; no pickle)::

    text-<model>-<h>.npy / .json                      (texts x dim) text embeddings, keyed by model identity
    simt-<kind>-<model>-g<gen>-<state>-<h>.npy / .json  (texts x rows) similarities, kind = segments|frames
    knn-<model>-g<gen>-<state>-k<K>.npy / .json       K nearest neighbours of every segment

Similarity blocks are text-major: each text's similarities to all rows are contiguous, so a rerun
memory-maps them and scores class by class without copying or transposing (an older row-major
``sims-`` layout is ignored and deleted).

``<model>`` hashes the model identity, ``<gen>``/``<state>`` the index generation and its parts, and
``<h>`` the texts of the block. Blocks are immutable: a new text adds a new block instead of rewriting
one, so concurrent readers and writers never see a half-written block. Each array is written
atomically before its JSON, and readers only trust blocks whose JSON exists and matches the array.
Blocks of generations older than the previous one are deleted by the next writer; the cache is
derived data and may be deleted at any time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vadindex.files import save_npy, write_text_atomic
from vadindex.index.manifest import CACHE
from vadindex.index.reader import IndexSnapshot
from vadindex.models.identity import ModelIdentity, TextEncoder
from vadindex.models.onnx_text import open_products

log = logging.getLogger("vadindex")

#: Blocks per key above which a writer merges them into one.
MAX_BLOCKS = 8
KINDS = ("segments", "frames")
#: From this many segments, neighbours are searched with FAISS (multi-threaded) instead of numpy.
FAISS_MIN_ROWS = 20000


def _digest(*parts: object, n: int = 12) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(repr(p).encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:n]


def model_key(identity: ModelIdentity) -> str:
    """Short hash of a model identity."""
    return _digest(identity.model, identity.pretrained, identity.checkpoint_sha256)


def state_key(snap: IndexSnapshot) -> str:
    """``g<generation>-<hash>``: the committed state of an index (a rebuilt folder gets a new hash)."""
    m = snap.manifest
    parts = tuple((p.name, p.segments, p.frames) for p in m.parts)
    return f"g{m.generation:06d}-{_digest(m.created, m.n_segments, m.n_frames, parts, n=8)}"


class IndexCache:
    """Read and write the derived data of one index snapshot."""

    def __init__(self, snap: IndexSnapshot) -> None:
        self.snap = snap
        self.folder = snap.path / CACHE
        self.model = model_key(snap.manifest.identity)
        self.state = state_key(snap)

    # -- blocks ---------------------------------------------------------------------------------

    def _blocks(self, prefix: str) -> list[tuple[dict[str, Any], Path]]:
        if not self.folder.is_dir():
            return []
        out = []
        for meta_file in sorted(self.folder.glob(f"{prefix}*.json")):
            try:
                meta = json.loads(meta_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # removed by a concurrent writer, or damaged: derived data, skip it
            out.append((meta, meta_file.with_suffix(".npy")))
        return out

    def _load(self, meta: dict[str, Any], file: Path, width: int | None) -> np.ndarray | None:
        """A block's array, memory-mapped read-only; ``None`` unless it is whole and ``width`` wide."""
        try:
            array = np.load(file, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            log.debug("cache: ignoring %s (%s)", file, exc)
            return None
        shape = tuple(meta.get("shape", ()))
        if array.shape != shape or array.ndim != 2 or (width is not None and array.shape[1] != width):
            log.debug("cache: ignoring %s (shape %s, expected %s)", file, array.shape, shape)
            return None
        return array

    def _write(self, name: str, array: np.ndarray, meta: dict[str, Any]) -> None:
        try:
            self.folder.mkdir(exist_ok=True)
            save_npy(self.folder / f"{name}.npy", array)
            meta = {**meta, "shape": list(array.shape), "dtype": str(array.dtype)}
            write_text_atomic(self.folder / f"{name}.json", json.dumps(meta))
        except OSError as exc:  # a read-only index still works, just without a cache
            log.warning("cannot write cache %s (%s); results are unaffected", self.folder / name, exc)

    def _remove(self, meta_file: Path) -> None:
        for f in (meta_file.with_suffix(".json"), meta_file.with_suffix(".npy")):
            with contextlib.suppress(OSError):
                f.unlink()

    def _lookup(
        self, prefix: str, texts: Sequence[str], width: int | None
    ) -> dict[str, tuple[np.ndarray, int]]:
        """Where each text is cached: ``(block array, row)`` (every block has one row per text)."""
        wanted = set(texts)
        found: dict[str, tuple[np.ndarray, int]] = {}
        for meta, file in self._blocks(prefix):
            have = [t for t in meta.get("texts", []) if t in wanted and t not in found]
            if not have:
                continue
            array = self._load(meta, file, width)
            if array is None:
                continue
            pos = {t: i for i, t in enumerate(meta["texts"])}
            for t in have:
                found[t] = (array, pos[t])
        return found

    def _compact(
        self, prefix: str, width: int | None, name: Callable[[list[str]], str], meta: dict[str, Any]
    ) -> None:
        blocks = self._blocks(prefix)
        if len(blocks) <= MAX_BLOCKS:
            return
        texts = list(dict.fromkeys(t for m, _ in blocks for t in m.get("texts", [])))
        cols = self._lookup(prefix, texts, width)
        texts = [t for t in texts if t in cols]
        if not texts:
            return
        array = _gather(cols, texts)
        self._write(name(texts), array, {**meta, "texts": texts})
        keep = f"{name(texts)}.json"
        for _, file in blocks:
            if file.with_suffix(".json").name != keep:
                self._remove(file)

    # -- text embeddings ------------------------------------------------------------------------

    def text_vectors(self, texts: Sequence[str], encoder: Callable[[], TextEncoder] | None) -> np.ndarray:
        """Unit text embeddings of ``texts``, encoding (and caching) only the ones not cached yet.

        Args:
            texts: the texts.
            encoder: returns the index's encoder; called only when some text is not cached.
        """
        prefix = f"text-{self.model}-"
        found = self._lookup(prefix, texts, None)
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            if encoder is None:
                raise LookupError(f"{len(missing)} texts are not cached")
            log.info("encoding %d new texts (%d cached)", len(missing), len(found))
            vectors = np.asarray(encoder().encode_texts(missing), dtype=np.float32)
            meta = {"model": self.snap.manifest.identity.describe(), "texts": missing}
            self._write(f"{prefix}{_digest(*missing)}", vectors, meta)
            found.update({t: (vectors, i) for i, t in enumerate(missing)})
            self._compact(prefix, None, lambda ts: f"{prefix}{_digest(*ts)}", {"model": meta["model"]})
        dim = self.snap.manifest.dim
        return np.array(_gather(found, texts)) if texts else np.zeros((0, dim), np.float32)

    # -- similarity matrices --------------------------------------------------------------------

    def _sims_block(self, kind: str) -> tuple[str, int]:
        """Name prefix and width (rows of the index) of ``kind`` similarity blocks."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        m = self.snap.manifest
        return f"simt-{kind}-{self.model}-{self.state}-", m.n_segments if kind == "segments" else m.n_frames

    def uncached(self, kind: str, texts: Sequence[str]) -> list[str]:
        """The texts whose similarities to every ``kind`` row are not cached yet."""
        prefix, rows = self._sims_block(kind)
        found = self._lookup(prefix, texts, rows)
        return [t for t in dict.fromkeys(texts) if t not in found]

    def similarities(self, kind: str, texts: Sequence[str], text_vectors: np.ndarray) -> np.ndarray:
        """``(rows, n_texts)`` similarities of every segment (or frame) to ``texts``, cached by generation.

        Only texts missing from the cache are multiplied against the stored vectors. The result is
        the transpose of a text-major array (column-major, each text's column contiguous), often a
        read-only memory map of the cache: read it, do not write into it.
        """
        prefix, rows = self._sims_block(kind)
        found = self._lookup(prefix, texts, rows)
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            pos = {t: i for i, t in enumerate(texts)}
            vecs = np.asarray(text_vectors, dtype=np.float32)[[pos[t] for t in missing]]
            sims = text_products(self.snap, kind, vecs)
            self._write(
                f"{prefix}{_digest(*missing)}", sims, {"kind": kind, "state": self.state, "texts": missing}
            )
            found.update({t: (sims, j) for j, t in enumerate(missing)})
            self._compact(
                prefix, rows, lambda ts: f"{prefix}{_digest(*ts)}", {"kind": kind, "state": self.state}
            )
            self._prune()
        if not texts:
            return np.zeros((rows, 0), np.float32)
        return _gather(found, texts).T

    # -- nearest neighbours ---------------------------------------------------------------------

    def neighbours(self, k: int) -> np.ndarray:
        """``(n_segments, k')`` int64 rows of each segment's nearest other segments (``k' = min(k, n-1)``)."""
        name = f"knn-{self.model}-{self.state}-k{k}"
        meta_file = self.folder / f"{name}.json"
        if meta_file.is_file():
            with contextlib.suppress(OSError, ValueError):
                meta = json.loads(meta_file.read_text(encoding="utf-8"))
                array = self._load(meta, meta_file.with_suffix(".npy"), None)
                if array is not None and len(array) == self.snap.manifest.n_segments:
                    return array.astype(np.int64)
        ids = nearest_neighbours(self.snap.vectors(), k)
        self._write(name, ids.astype(np.int32), {"k": k, "state": self.state})
        self._prune()
        return ids

    def _prune(self) -> None:
        """Delete blocks of generations older than the previous one, and blocks of the old layout."""
        gen = self.snap.manifest.generation
        for meta_file in self.folder.glob("sims-*.json"):
            self._remove(meta_file)
        for meta_file in self.folder.glob("*-g*.json"):
            for token in meta_file.stem.split("-"):
                if token.startswith("g") and token[1:].isdigit():
                    if int(token[1:]) < gen - 1:
                        self._remove(meta_file)
                    break


def _gather(found: dict[str, tuple[np.ndarray, int]], texts: Sequence[str]) -> np.ndarray:
    """The cached rows of ``texts`` as one ``(len(texts), width)`` float32 array.

    When one block holds exactly these texts in this order it is returned as it is (a memory map,
    no copy); otherwise the rows are copied, each a contiguous run.
    """
    first = found[texts[0]][0]
    whole = len(first) == len(texts) and all(
        found[t][0] is first and found[t][1] == j for j, t in enumerate(texts)
    )
    if whole:
        return first if first.dtype == np.float32 else first.astype(np.float32)
    out = np.empty((len(texts), first.shape[1]), dtype=np.float32)
    for j, t in enumerate(texts):
        array, row = found[t]
        out[j] = array[row]
    return out


def text_products(snap: IndexSnapshot, kind: str, text_vectors: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """``(n_texts, rows)`` float32 products of ``text_vectors`` with the stored float16 vectors.

    Text-major, the layout of the cache's similarity blocks. The vectors are streamed from the
    parts and converted to float32 chunk by chunk into one reused buffer (numpy has no fast float16
    product); chunks of 2,048 rows (4 MB in float32) stay in cache between conversion and product,
    twice as fast as 8,192 (BENCHMARKS.md). When PyTorch is already loaded (new prompts were just
    encoded with it) it converts and multiplies: about 0.35 s per million 512-d vectors here,
    against 1.3 s for numpy, whose float16 conversion is not vectorised; otherwise ONNX Runtime
    does, where its products graph has been written (:func:`vadindex.models.onnx_text.open_products`).
    """
    t = np.asarray(text_vectors, dtype=np.float32)
    total = snap.manifest.n_segments if kind == "segments" else snap.manifest.n_frames
    out = np.empty((len(t), total), dtype=np.float32)
    products = None if "torch" in sys.modules else open_products()
    if products is not None:
        # ONNX Runtime reads memory-mapped float16 blocks in place: no copy into a buffer (0.15 s
        # of system time per million vectors).
        mapped = snap.iter_vectors(chunk) if kind == "segments" else snap.stream_vectors(chunk, kind)
        for first, block in mapped:
            out[:, first : first + len(block)] = products.run(None, {"texts": t, "vectors": block})[0]
        return out
    blocks = snap.stream_vectors(chunk, kind)
    if "torch" in sys.modules:
        import torch

        with torch.inference_mode():
            tt = torch.from_numpy(t)
            wide = torch.empty((chunk, t.shape[1]), dtype=torch.float32)
            for first, block in blocks:
                x = wide[: len(block)]
                x.copy_(torch.from_numpy(block))
                out[:, first : first + len(block)] = torch.matmul(tt, x.T).numpy()
        return out
    wide_np = np.empty((chunk, t.shape[1]), dtype=np.float32)
    for first, block in blocks:
        x = wide_np[: len(block)]
        x[:] = block
        out[:, first : first + len(block)] = t @ x.T
    return out


def nearest_neighbours(vectors: np.ndarray, k: int, chunk: int = 4096) -> np.ndarray:
    """The ``k`` most similar other rows of every row by inner product, best first (exact search).

    Uses FAISS's flat inner-product search when there are many rows, numpy otherwise; the row itself is
    never its own neighbour. Ties break towards the lower row number.
    """
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(x)
    k = min(k, max(n - 1, 0))
    if k == 0:
        return np.zeros((n, 0), dtype=np.int64)
    if n > FAISS_MIN_ROWS:
        import faiss

        index = faiss.IndexFlatIP(x.shape[1])
        index.add(x)
        _, ids = index.search(x, k + 1)
        out = np.empty((n, k), dtype=np.int64)
        for i in range(n):
            row = ids[i][(ids[i] != i) & (ids[i] >= 0)]
            out[i] = row[:k]
        return out
    out = np.empty((n, k), dtype=np.int64)
    for first in range(0, n, chunk):
        sims = x[first : first + chunk] @ x.T
        rows = np.arange(first, min(first + chunk, n))
        sims[rows - first, rows] = -np.inf
        # A stable sort on -sims keeps lower row numbers first among ties.
        out[first : first + len(rows)] = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return out


def cache_size(path: str | os.PathLike[str]) -> int:
    """Bytes used by an index's cache folder."""
    folder = Path(path) / CACHE
    return sum(f.stat().st_size for f in folder.glob("*") if f.is_file()) if folder.is_dir() else 0
