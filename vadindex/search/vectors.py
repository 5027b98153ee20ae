"""Nearest segments to a query vector: FAISS proposes, the stored vectors decide."""

from __future__ import annotations

import fnmatch
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from vadindex.config import DEFAULT_TOP_K_RESULTS
from vadindex.errors import InputError, StoreError
from vadindex.index import faiss_index
from vadindex.index.reader import IndexSnapshot

if TYPE_CHECKING:
    import pandas as pd

RESULT_COLUMNS = ["rank", "score", "video", "start", "end", "segment", "start_frame", "end_frame", "video_id"]


@dataclass(frozen=True)
class SearchHits:
    """Ranked segments as numpy columns, :data:`RESULT_COLUMNS` in order (no pandas needed)."""

    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.columns["rank"])

    def to_frame(self) -> pd.DataFrame:
        """The hits as a pandas table."""
        import pandas as pd  # here: a command-line query prints its hits without pandas

        return pd.DataFrame(self.columns, columns=RESULT_COLUMNS)


def _hits(ids: np.ndarray, scores: np.ndarray, columns: dict[str, np.ndarray]) -> SearchHits:
    out = {"rank": np.arange(1, len(ids) + 1), "score": np.asarray(scores, dtype=float), **columns}
    return SearchHits({c: out[c] for c in RESULT_COLUMNS})


def search_vector(
    snap: IndexSnapshot,
    query: np.ndarray,
    k: int = DEFAULT_TOP_K_RESULTS,
    video: str | None = None,
    *,
    exact: bool = False,
) -> pd.DataFrame:
    """The ``k`` segments most similar to a unit query vector, best first, as a table.

    See :func:`search_hits`, which this wraps.
    """
    return search_hits(snap, query, k, video, exact=exact).to_frame()


def search_hits(
    snap: IndexSnapshot,
    query: np.ndarray,
    k: int = DEFAULT_TOP_K_RESULTS,
    video: str | None = None,
    *,
    exact: bool = False,
) -> SearchHits:
    """The ``k`` segments most similar to a unit query vector, best first.

    On an exact (``flat``) index the FAISS scan is exact. On an approximate one (``ivf``, ``hnsw``)
    FAISS proposes :data:`vadindex.index.faiss_index.RERANK_FACTOR` times ``k`` candidates, which are re-scored
    from the stored float16 vectors, so the scores shown are always exact cosine similarities. A
    ``video`` filter, or ``exact=True``, scans the stored vectors directly instead. Rows a build
    has committed since it last wrote the FAISS file are scanned exactly and merged in.

    Args:
        snap: the index.
        query: ``(dim,)`` unit vector.
        k: number of results.
        video: optional glob on the video name (``fight/*``) or path.
        exact: scan every vector even when the index is approximate.

    Returns:
        The hits, with :data:`RESULT_COLUMNS`.
    """
    if k < 1:
        raise InputError(f"-k must be at least 1, got {k}")
    q = np.asarray(query, dtype=np.float32).reshape(1, -1)
    lookup = _lookup(snap)
    lookup.searches += 1
    none = np.zeros(0, dtype=np.int64)
    if video:
        videos = snap.segment_columns(["video"])["video"]
        names = [
            v for v in np.unique(videos) if fnmatch.fnmatch(v, video) or fnmatch.fnmatch(Path(v).name, video)
        ]
        rows = np.flatnonzero(np.isin(videos, names))
        if len(rows) == 0:
            return _hits(none, none, lookup.columns(none))
        sims = snap.vectors(rows) @ q[0]
        top = np.argsort(-sims, kind="stable")[:k]
        ids, scores = rows[top], sims[top]
    elif snap.manifest.n_segments == 0:
        return _hits(none, none, lookup.columns(none))
    else:
        index = lookup.index()
        if exact and not faiss_index.is_exact(index):
            ids, scores = _scan_top_k(snap, q[0], k)
        else:
            scores, ids = faiss_index.search(index, q, k)
            keep = ids[0] >= 0
            ids, scores = ids[0][keep], scores[0][keep]
            if not faiss_index.is_exact(index) and len(ids):
                exact_scores = lookup.vectors(ids) @ q[0]
                top = np.argsort(-exact_scores, kind="stable")[:k]
                ids, scores = ids[top], exact_scores[top]
            covered = snap.manifest.faiss_covered
            if covered < snap.manifest.n_segments:  # a build is under way: its newest rows, exactly
                tail_ids, tail_scores = _scan_top_k(snap, q[0], k, start=covered)
                ids, scores = _best([ids, tail_ids], [scores, tail_scores], k)
    ids = np.asarray(ids, dtype=np.int64)
    return _hits(ids, scores, lookup.columns(ids))


class _Lookup:
    """What repeated searches on one snapshot reuse (a snapshot never changes).

    Built at the second search, so a one-shot query does not pay for them (it reads only the rows it
    shows from the Parquet parts that hold them): the result columns as plain arrays, and an
    approximate FAISS index read into memory (its scattered reads of inverted lists run about twice
    as fast as from the memory-mapped file).
    """

    COLUMNS = ("video", "start", "end", "segment", "start_frame", "end_frame", "video_id")

    def __init__(self, snap: IndexSnapshot) -> None:
        self.snap = snap
        self.searches = 0
        self._columns: dict[str, np.ndarray] | None = None
        self._parts: tuple[np.ndarray, list[np.ndarray]] | None = None
        self._index: Any = None

    def index(self) -> Any:
        """The snapshot's FAISS index (memory-mapped), or its in-memory copy from the second search."""
        if self._index is not None:
            return self._index
        index = self.snap.faiss_index()
        if self.searches < 2 or faiss_index.is_exact(index):
            return index
        try:
            self._index = faiss_index.read(self.snap.path / self.snap.manifest.faiss_file)
        except StoreError:  # a writer has since removed this generation's file: keep the mapping
            self._index = index
        return self._index

    def columns(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """The result columns of rows ``ids``."""
        if self._columns is None and self.searches < 2:
            return self.snap.segment_columns(self.COLUMNS, ids)
        if self._columns is None:
            self._columns = self.snap.segment_columns(self.COLUMNS)
        return {c: self._columns[c][ids] for c in self.COLUMNS}

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors of rows ``ids`` as float32, in the order given (memory-mapped parts)."""
        if self._parts is None:
            blocks = list(self.snap.iter_vectors(chunk=1 << 62))
            self._parts = (np.array([first for first, _ in blocks], dtype=np.int64), [b for _, b in blocks])
        firsts, parts = self._parts
        part = np.searchsorted(firsts, ids, side="right") - 1
        out = np.empty((len(ids), self.snap.manifest.dim), dtype=np.float32)
        for p in np.unique(part):
            sel = part == p
            out[sel] = parts[p][ids[sel] - firsts[p]]
        return out


_LOOKUPS: weakref.WeakKeyDictionary[IndexSnapshot, _Lookup] = weakref.WeakKeyDictionary()


def _lookup(snap: IndexSnapshot) -> _Lookup:
    found = _LOOKUPS.get(snap)
    if found is None:
        found = _LOOKUPS[snap] = _Lookup(snap)
    return found


def _scan_top_k(snap: IndexSnapshot, q: np.ndarray, k: int, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Exact top ``k`` over the stored vectors from row ``start`` on: ``(ids, scores)``, best first.

    Each float16 block is handed to FAISS as the codes of a ``SQfp16`` index (whose codes are
    exactly IEEE float16 values) and scanned there: FAISS decodes and multiplies in one SIMD pass,
    faster than numpy's float16-to-float32 conversion followed by a product (710 ms against 1,268 ms
    for a million rows, BENCHMARKS.md).
    """
    best_ids: list[np.ndarray] = []
    best_scores: list[np.ndarray] = []
    query = np.ascontiguousarray(q, dtype=np.float32).reshape(1, -1)
    for first, block in snap.iter_vectors(start=start):
        codes = np.ascontiguousarray(block, dtype=np.float16)
        index = faiss.IndexScalarQuantizer(
            codes.shape[1], faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
        )
        faiss.copy_array_to_vector(codes.view(np.uint8).ravel(), index.codes)
        index.ntotal = len(codes)
        scores, ids = index.search(query, min(k, len(codes)))
        keep = ids[0] >= 0
        best_ids.append(ids[0][keep] + first)
        best_scores.append(scores[0][keep])
    return _best(best_ids, best_scores, k)


def _best(ids: list[np.ndarray], scores: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of several ``(ids, scores)`` candidate lists, ties broken by row."""
    if not ids:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    all_ids, all_scores = np.concatenate(ids), np.concatenate(scores)
    order = np.lexsort((all_ids, -all_scores))[:k]
    return all_ids[order], all_scores[order]
