"""Derived-data cache inside an index folder: text embeddings, similarity matrices, neighbour lists.

Layout of ``INDEX/cache/`` (``.npy`` arrays with a small JSON beside each; no pickle)::

    text-<model>-<h>.npy / .json                      (texts x dim) text embeddings, keyed by model identity
    img-<model>-<h>.npy / .json                       (images x dim) example-image embeddings, keyed by file SHA-256
    simt-<kind>-<model>-g<gen>-<state>-<h>.npy / .json  (texts x rows) similarities, kind = segments|frames
    knn-<model>-g<gen>-<state>-k<K>.npy / .json       K nearest neighbours of every segment
    nov-<model>-g<gen>-<state>-k<K>-gap<g>.npy / .json  cosines to the K nearest segments of the same camera

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
#: Cameras up to this many segments are searched exactly for their novelty neighbours (every pair of
#: their segments); larger ones through the IVF cells of the index, when it has them.
NOVELTY_EXACT_ROWS = 4096
#: IVF neighbour search: a segment is compared with its camera's segments in the cells nearest to its
#: own, taken nearest first until they hold this many (two or three cells of a million-segment
#: index). Image-to-image neighbours sit close to their own cell: on clustered synthetic data this
#: finds 99.6 % of the exact top 10 (BENCHMARKS.md).
NOVELTY_CANDIDATES = 512
#: Cells looked at around each cell, nearest centroid first.
NOVELTY_MAX_CELLS = 256
#: Query rows of one exact block (queries x camera segments, float32).
_EXACT_BLOCK = 1024
#: ... and at most this many products at a time (256 MB), for large cameras searched exactly.
_EXACT_BLOCK_VALUES = 64 << 20


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

        def encode(missing: list[str]) -> np.ndarray:
            if encoder is None:
                raise LookupError(f"{len(missing)} texts are not cached")
            log.info("encoding %d new texts", len(missing))
            return np.asarray(encoder().encode_texts(missing), dtype=np.float32)

        return self._embeddings("text", texts, encode)

    def image_vectors(self, files: Sequence[Path], encode: Callable[[list[Path]], np.ndarray]) -> np.ndarray:
        """Unit embeddings of example images, each encoded once: cached by the SHA-256 of the file.

        Args:
            files: image files.
            encode: embeds a list of files (called only for files not cached yet).
        """
        from vadindex.files import sha256_file

        keys = [sha256_file(Path(f)) for f in files]
        by_key = dict(zip(keys, files, strict=True))
        return self._embeddings("img", keys, lambda missing: encode([Path(by_key[k]) for k in missing]))

    def _embeddings(
        self, kind: str, keys: Sequence[str], encode: Callable[[list[str]], np.ndarray]
    ) -> np.ndarray:
        """``(len(keys), dim)`` embeddings by key, computing and caching the missing ones in one block."""
        prefix = f"{kind}-{self.model}-"
        found = self._lookup(prefix, keys, None)
        missing = [t for t in dict.fromkeys(keys) if t not in found]
        if missing:
            vectors = np.asarray(encode(missing), dtype=np.float32)
            meta = {"model": self.snap.manifest.identity.describe(), "texts": missing}
            self._write(f"{prefix}{_digest(*missing)}", vectors, meta)
            found.update({t: (vectors, i) for i, t in enumerate(missing)})
            self._compact(prefix, None, lambda ts: f"{prefix}{_digest(*ts)}", {"model": meta["model"]})
        dim = self.snap.manifest.dim
        return np.array(_gather(found, keys)) if keys else np.zeros((0, dim), np.float32)

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
        ids = self.derived(f"knn-{self.model}-{self.state}-k{k}", lambda: nearest_neighbours(self.snap.vectors(), k),
                           {"k": k}, np.int32)  # fmt: skip
        return np.asarray(ids, dtype=np.int64)

    def derived(
        self, name: str, compute: Callable[[], np.ndarray], meta: dict[str, Any], dtype: Any = np.float32
    ) -> np.ndarray:
        """A per-segment array cached under ``name`` (which must hold the model and state keys):
        read when a whole one is there, else ``compute()``-d, stored as ``dtype`` and returned.

        Returns:
            ``(n_segments, width)`` array, a read-only memory map when it came from the cache.
        """
        meta_file = self.folder / f"{name}.json"
        if meta_file.is_file():
            with contextlib.suppress(OSError, ValueError):
                found = json.loads(meta_file.read_text(encoding="utf-8"))
                array = self._load(found, meta_file.with_suffix(".npy"), None)
                if array is not None and len(array) == self.snap.manifest.n_segments:
                    return array
        array = np.asarray(compute())
        self._write(name, array.astype(dtype), {**meta, "state": self.state})
        self._prune()
        return array

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


def camera_neighbours(
    snap: IndexSnapshot,
    cameras: np.ndarray,
    k: int,
    *,
    exact_rows: int = NOVELTY_EXACT_ROWS,
    candidates: int = NOVELTY_CANDIDATES,
) -> tuple[np.ndarray, np.ndarray]:
    """Each segment's ``k`` most similar other segments of the same camera, best first.

    A camera of at most ``exact_rows`` segments (or any camera, when the index has no IVF cells) is
    searched exactly: every pair of its segments. A larger one is searched through the cells of the
    index's IVF file: a segment is compared with the camera's segments in the cells whose centroids
    are nearest its own cell's, nearest first, until they hold ``candidates`` segments; the cosines
    of the pairs compared are exact (products of the stored vectors). Rows the FAISS file does not
    cover yet (a build under way) are put in their cells by the quantiser.

    Args:
        snap: the index.
        cameras: the camera of every segment (any keys).
        k: neighbours per segment.
        exact_rows, candidates: see above.

    Returns:
        ``(ids, sims)``, each ``(n_segments, k)``: rows (int64, -1 where a camera has fewer than
        ``k + 1`` segments) and cosines (float32, NaN there).
    """
    n = snap.manifest.n_segments
    ids = np.full((n, k), -1, dtype=np.int64)
    sims = np.full((n, k), np.nan, dtype=np.float32)
    if n == 0 or k == 0:
        return ids, sims
    with _blas_threads():
        return _camera_neighbours(snap, cameras, k, ids, sims, exact_rows, candidates)


def _blas_threads() -> contextlib.AbstractContextManager[Any]:
    """One BLAS thread while the machine's load is at least its core count, else the library's own.

    The search is many medium-sized matrix products; on cores busy with other work, BLAS threads
    spin at each product's barrier waiting for a slice: 5x the CPU time of one thread here, and
    several times the wall time (BENCHMARKS.md).
    """
    try:
        busy = os.getloadavg()[0] >= (os.cpu_count() or 1)
    except OSError:
        busy = False
    if not busy:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits  # installed with scikit-learn
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _camera_neighbours(
    snap: IndexSnapshot, cameras: np.ndarray, k: int, ids: np.ndarray, sims: np.ndarray, exact_rows: int,
    candidates: int,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """:func:`camera_neighbours`, filling ``ids`` and ``sims`` camera by camera."""
    _, codes = np.unique(np.asarray(cameras).astype(str), return_inverse=True)
    codes = codes.reshape(-1)
    order = np.argsort(codes, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(codes))])
    cells: _Cells | None = None
    for g in range(len(bounds) - 1):
        rows = order[bounds[g] : bounds[g + 1]]  # ascending: the sort is stable
        if len(rows) < 2:
            continue
        if len(rows) > exact_rows and cells is None:
            cells = _Cells.of(snap)
        vectors = _gather_rows(snap, rows)
        if len(rows) <= exact_rows or cells is None:
            if len(rows) > exact_rows:
                log.info("novelty: searching the %d segments of one camera exactly (no IVF cells)", len(rows))
            got_ids, got_sims = _exact_neighbours(vectors, k)
        else:
            got_ids, got_sims = cells.neighbours(rows, vectors, k, candidates)
        ids[rows, : got_ids.shape[1]] = np.where(got_ids >= 0, rows[np.maximum(got_ids, 0)], -1)
        sims[rows, : got_sims.shape[1]] = got_sims
    return ids, sims


def _gather_rows(snap: IndexSnapshot, rows: np.ndarray) -> np.ndarray:
    """The float16 vectors of ascending ``rows``, read part by part from the memory maps."""
    out = np.empty((len(rows), snap.manifest.dim), dtype=np.float16)
    for first, block in snap.iter_vectors(chunk=1 << 62):
        lo, hi = np.searchsorted(rows, [first, first + len(block)])
        if hi > lo:
            out[lo:hi] = block[rows[lo:hi] - first]
    return out


def _top_k(sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column positions and values of each row's ``k`` largest entries, best first (``-inf`` entries
    come back as position -1 and NaN)."""
    k = min(k, sims.shape[1])
    if k == 0:
        return np.zeros((len(sims), 0), np.int64), np.zeros((len(sims), 0), np.float32)
    top = (
        np.argpartition(-sims, k - 1, axis=1)[:, :k]
        if k < sims.shape[1]
        else np.tile(np.arange(k), (len(sims), 1))
    )
    values = np.take_along_axis(sims, top, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    top, values = np.take_along_axis(top, order, axis=1), np.take_along_axis(values, order, axis=1)
    missing = ~np.isfinite(values)
    return np.where(missing, -1, top).astype(np.int64), np.where(missing, np.nan, values).astype(np.float32)


def _exact_neighbours(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Every row's ``k`` most similar other rows among ``vectors`` (positions, cosines): blocks of
    a float32 matrix product (BLAS), the diagonal left out."""
    base = np.asarray(vectors, dtype=np.float32)
    ids, sims = [], []
    step = max(1, min(_EXACT_BLOCK, _EXACT_BLOCK_VALUES // max(len(base), 1)))
    for i in range(0, len(base), step):
        block = base[i : i + step] @ base.T
        rows = np.arange(len(block))
        block[rows, rows + i] = -np.inf
        got = _top_k(block, k)
        ids.append(got[0])
        sims.append(got[1])
    return np.concatenate(ids), np.concatenate(sims)


class _Cells:
    """The IVF cells of an index, and the cells nearest each cell (by centroid), for neighbour search."""

    #: Cells with fewer of a camera's segments than this are searched together with their
    #: neighbours: one larger matrix product runs several times faster than many small ones.
    MIN_BATCH = 128

    def __init__(self, centroids: np.ndarray, cell: np.ndarray) -> None:
        import faiss

        self.cell = cell
        unit = centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
        width = min(NOVELTY_MAX_CELLS, len(centroids))
        # Ranked as the quantiser assigns points (inner product with the raw centroids), as seen
        # from the direction of each cell's centroid; each cell first in its own row.
        _, near = faiss.knn(unit, centroids, width, metric=faiss.METRIC_INNER_PRODUCT)
        own = np.arange(len(centroids))[:, None]
        rest = np.where(near == own, -1, near)
        self.near = np.concatenate([own, rest], axis=1)

    @classmethod
    def of(cls, snap: IndexSnapshot) -> _Cells | None:
        """The cells of ``snap``'s FAISS file, or ``None`` when it has none (flat, hnsw)."""
        from vadindex.index import faiss_index

        index = snap.faiss_index()
        found = faiss_index.cells(index)
        if found is None:
            return None
        centroids, cell = found
        n = snap.manifest.n_segments
        if len(cell) < n:  # rows committed since the FAISS file was written
            tail = np.asarray(_gather_rows(snap, np.arange(len(cell), n)), dtype=np.float32)
            cell = np.concatenate([cell, faiss_index.assign_cells(index, tail)])
        return cls(centroids, cell)

    def neighbours(
        self, rows: np.ndarray, vectors: np.ndarray, k: int, candidates: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Approximate ``k`` nearest of each of ``rows`` among ``rows`` (positions in ``rows``, cosines).

        Each segment is compared with the camera's segments in the cells nearest its own, taken
        until they hold ``candidates``; a small cell is searched together with its nearest cells
        that still have segments to search (a batch of at least :attr:`MIN_BATCH`), against the
        cells nearest it that hold ``candidates`` more than the batch.
        """
        cell = self.cell[rows]
        order = np.argsort(cell, kind="stable")
        counts = np.bincount(cell, minlength=len(self.near))
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        grouped = vectors[order]
        # In float32 at once when that takes at most 1 GB (the products need it), else per batch.
        if grouped.nbytes * 2 <= 1 << 30:
            grouped = grouped.astype(np.float32)
        out_ids = np.full((len(rows), k), -1, dtype=np.int64)
        out_sims = np.full((len(rows), k), np.nan, dtype=np.float32)
        done = np.zeros(len(counts), dtype=bool)
        for c in np.flatnonzero(counts)[np.argsort(-counts[np.flatnonzero(counts)], kind="stable")]:
            if done[c]:
                continue
            batch = [c]
            done[c] = True
            held = counts[c]
            for m in self.near[c][1:]:
                if held >= self.MIN_BATCH:
                    break
                if m >= 0 and counts[m] and not done[m]:
                    batch.append(int(m))
                    done[m] = True
                    held += counts[m]
            # One candidate set for the batch: the cells nearest its first (largest) cell, which its
            # other cells neighbour, until they hold ``candidates`` besides the batch's own segments.
            probe = np.unique(np.concatenate([batch, self._probe(c, counts, candidates + held)]))
            pos = _runs(first[probe], counts[probe])  # ascending: cells in order, rows in order
            queries = _runs(first[np.sort(batch)], counts[np.sort(batch)])
            sims = (
                np.asarray(grouped[queries], dtype=np.float32) @ np.asarray(grouped[pos], dtype=np.float32).T
            )
            sims[np.arange(len(queries)), np.searchsorted(pos, queries)] = -np.inf  # not its own neighbour
            found, got = _top_k(sims, k)
            width = found.shape[1]
            out_ids[order[queries], :width] = np.where(found >= 0, order[pos[np.maximum(found, 0)]], -1)
            out_sims[order[queries], :width] = got
        return out_ids, out_sims

    def _probe(self, c: int, counts: np.ndarray, candidates: int) -> np.ndarray:
        """The cells nearest cell ``c`` (itself first) that hold ``candidates`` of the camera's segments."""
        near = self.near[c]
        near = near[near >= 0]
        take = near[: int(np.searchsorted(np.cumsum(counts[near]), candidates)) + 1]
        return take[counts[take] > 0]


def _runs(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + n) for s, n in zip(starts, sizes)])``, without the loop."""
    sizes = np.asarray(sizes, dtype=np.int64)
    return np.repeat(np.asarray(starts, dtype=np.int64) - np.cumsum(sizes) + sizes, sizes) + np.arange(
        int(sizes.sum())
    )


def cache_size(path: str | os.PathLike[str]) -> int:
    """Bytes used by an index's cache folder."""
    folder = Path(path) / CACHE
    return sum(f.stat().st_size for f in folder.glob("*") if f.is_file()) if folder.is_dir() else 0
