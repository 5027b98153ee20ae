"""FAISS index types for the segment vectors: exact float16 scan for small indexes, IVF or HNSW for large ones.

The float16 ``parts/*.vectors.npy`` files are the source of truth; the FAISS file is derived from
them and can always be rebuilt. Every type stores the vectors compactly and searches by inner
product (the vectors are L2-normalised, so scores are cosine similarities):

``flat``
    Exact search. An IVF index with a single inverted list of float16 codes (``IVF1,SQfp16``):
    searching it scans every vector, exactly like ``IndexFlatIP``, at half the bytes per vector
    (the values equal the stored float16 vectors, so rankings match a float32 scan), and FAISS can
    memory-map inverted lists, which it cannot do for flat codes, so a query opens a large index
    without reading it into memory.
``ivf``
    ``IVF<nlist>,SQ8``: k-means cells over 8-bit codes, ``nlist`` about ``4 sqrt(n)`` (4096 for a
    million segments); a search visits :data:`DEFAULT_NPROBE_FRACTION` of the cells. Trained on a
    sample of the index when the index is (re)built; retrained when the index has grown enough that
    ``nlist`` should be 4x larger. Fine cells matter for text queries, which sit far from every
    image embedding (CLIP's modality gap): at a million segments, 1024 cells reach a recall@10 of
    0.80 visiting 64 of them, 4096 cells reach 0.99 visiting 64 (BENCHMARKS.md).
``hnsw``
    ``HNSW32,SQfp16``: a graph over float16 vectors; no training, fast incremental adds, but held
    in memory (FAISS cannot memory-map it) and slow to build for millions of vectors.
``auto``
    ``flat`` below :data:`AUTO_ANN_MIN_SEGMENTS` segments, ``ivf`` from there on.

Approximate types return :data:`RERANK_FACTOR` times more candidates than asked, which the caller
re-scores exactly from the float16 vectors (:func:`vadindex.search.search_vector` does this).

Imported only where FAISS is used (builds, searches, checks): importing it imports faiss.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from vadindex.config import INDEX_TYPES
from vadindex.errors import InputError, StoreError
from vadindex.files import atomic_path

log = logging.getLogger("vadindex")

#: Index size (segments) from which ``auto`` switches from exact search to IVF. At 200,000 segments
#: (about 55 hours of video at one-second segments) an exact scan costs ~40 ms on two CPU cores.
AUTO_ANN_MIN_SEGMENTS = 200_000
#: Fraction of the IVF cells a search visits (at least :data:`MIN_NPROBE`).
DEFAULT_NPROBE_FRACTION = 1 / 64
MIN_NPROBE = 8
#: IVF cells per square root of the index size.
NLIST_PER_SQRT_N = 4
#: Training points per IVF cell (FAISS warns below 39), and the fewest an IVF index is built with.
TRAIN_POINTS_PER_CELL = 40
MIN_POINTS_PER_CELL = 39
#: Fewest IVF cells; an index too small for them is searched exactly (``flat``) until it grows.
MIN_NLIST = 16
#: k-means iterations when training IVF cells (FAISS's default is 25; 6 costs 4x less at the same
#: recall here: training 4096 cells takes ~50 s on two cores).
KMEANS_ITERATIONS = 6
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 64
HNSW_EF_SEARCH = 128
#: Candidates per requested result that approximate indexes return for exact re-scoring.
RERANK_FACTOR = 4
_SEED = 1234


def read(file: Path, mmap: bool = False) -> Any:
    """Read a FAISS file, memory-mapped read-only with ``mmap``; a clear error when it is damaged."""
    if not file.exists():
        raise StoreError(f"{file}: missing from the index; run `vadindex check {file.parent}`")
    flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
    try:
        return faiss.read_index(str(file), flags)
    except RuntimeError as exc:
        raise StoreError(
            f"{file}: unreadable FAISS index ({str(exc).splitlines()[0]}); run `vadindex check {file.parent}`"
        ) from None


def save(target: Path, index: Any) -> None:
    """Write a FAISS index atomically; a failed write (a full disk) is an ``OSError``."""
    with atomic_path(target) as tmp:
        try:
            faiss.write_index(index, str(tmp))
        except RuntimeError as exc:  # faiss reports a failed write (disk full) as a RuntimeError
            raise OSError(f"writing {target.name} failed ({str(exc).splitlines()[0]})") from None


def check_index_type(index_type: str) -> str:
    """Return ``index_type`` or raise :class:`InputError` if it is not one of :data:`vadindex.config.INDEX_TYPES`."""
    if index_type not in INDEX_TYPES:
        raise InputError(f"--index-type must be one of {', '.join(INDEX_TYPES)}, got {index_type!r}")
    return index_type


def resolve_kind(index_type: str, n: int) -> str:
    """The concrete type (``flat``, ``ivf`` or ``hnsw``) that ``index_type`` means for ``n`` segments."""
    check_index_type(index_type)
    if index_type == "auto":
        return "ivf" if n >= AUTO_ANN_MIN_SEGMENTS else "flat"
    return index_type


def nlist_for(n: int) -> int:
    """IVF cells for ``n`` vectors: the power of two nearest to ``4 sqrt(n)``, at most 65536, and
    small enough that every cell gets :data:`MIN_POINTS_PER_CELL` training points; 0 when ``n`` is
    too small for :data:`MIN_NLIST` cells (such an index is searched exactly)."""
    nlist = int(min(65536, 2 ** round(np.log2(NLIST_PER_SQRT_N * np.sqrt(max(n, 1))))))
    while nlist >= MIN_NLIST and n < MIN_POINTS_PER_CELL * nlist:
        nlist //= 2
    return nlist if nlist >= MIN_NLIST else 0


def nprobe_for(nlist: int) -> int:
    """Cells a search visits."""
    return int(min(nlist, max(MIN_NPROBE, round(nlist * DEFAULT_NPROBE_FRACTION))))


def _ivf(index: Any) -> Any:
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def kind_of(index: Any) -> str:
    """``flat``, ``ivf`` or ``hnsw`` for a FAISS index made here (a plain ``IndexFlatIP`` is ``flat``)."""
    ivf = _ivf(index)
    if ivf is not None:
        return "flat" if ivf.nlist == 1 else "ivf"
    if isinstance(faiss.downcast_index(index), faiss.IndexHNSW):
        return "hnsw"
    return "flat"


def is_exact(index: Any) -> bool:
    """True when a search visits every vector."""
    return kind_of(index) == "flat"


def describe(index: Any) -> str:
    """A short description, e.g. ``ivf (IVF1024,SQ8, nprobe 32)``."""
    kind = kind_of(index)
    ivf = _ivf(index)
    if ivf is not None:
        codes = "SQfp16" if ivf.code_size == 2 * ivf.d else "SQ8" if ivf.code_size == ivf.d else "codes"
        probe = "" if kind == "flat" else f", nprobe {nprobe_for(ivf.nlist)}"
        return f"{kind} (IVF{ivf.nlist},{codes}{probe})"
    if kind == "hnsw":
        return f"hnsw (HNSW{faiss.downcast_index(index).hnsw.nb_neighbors(1)},SQfp16)"
    return f"flat ({type(faiss.downcast_index(index)).__name__})"


def new_index(dim: int, kind: str, nlist: int = 0) -> Any:
    """An empty FAISS index of ``kind``; ``ivf`` needs :func:`train` before vectors are added."""
    ip = faiss.METRIC_INNER_PRODUCT
    if kind == "flat":
        # One inverted list whose centroid is the origin: assignment is trivial and residuals equal
        # the vectors, so nothing needs training.
        quantizer = faiss.IndexFlatIP(dim)
        quantizer.add(np.zeros((1, dim), dtype=np.float32))
        index = faiss.IndexIVFScalarQuantizer(quantizer, dim, 1, faiss.ScalarQuantizer.QT_fp16, ip, False)
        index.is_trained = True
        index.own_fields = True
        quantizer.this.disown()
        return index
    if kind == "ivf":
        nlist = nlist or 1024
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, ip, True)
        index.own_fields = True
        quantizer.this.disown()
        index.cp.niter = KMEANS_ITERATIONS
        index.cp.seed = _SEED
        return index
    if kind == "hnsw":
        index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_fp16, HNSW_M, ip)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        return index
    raise InputError(f"unknown index kind {kind!r}")


def _train_sample(chunks: Iterable[np.ndarray], n: int, size: int) -> np.ndarray:
    """``min(size, n)`` rows drawn uniformly (seeded) from ``n`` rows given in chunks."""
    rows = np.sort(np.random.default_rng(_SEED).choice(n, min(size, n), replace=False))
    picked, first = [], 0
    for block in chunks:
        sel = rows[(rows >= first) & (rows < first + len(block))] - first
        if len(sel):
            picked.append(np.asarray(block[sel], dtype=np.float32))
        first += len(block)
    return np.concatenate(picked)


def build(dim: int, kind: str, chunks: Callable[[], Iterator[np.ndarray]], n: int) -> Any:
    """Build an index of ``kind`` over ``n`` vectors, read (twice for IVF) from ``chunks()``.

    Args:
        dim: vector dimension.
        kind: ``flat``, ``ivf`` or ``hnsw``.
        chunks: returns a fresh iterator over the vectors in row order (float16 or float32 blocks).
        n: total number of vectors.
    """
    nlist = nlist_for(n) if kind == "ivf" else 0
    if kind == "ivf" and not nlist:
        log.debug("%d vectors are too few for an IVF index; searching them exactly", n)
        kind = "flat"
    index = new_index(dim, kind, nlist)
    if kind == "ivf":
        sample = _train_sample(chunks(), n, TRAIN_POINTS_PER_CELL * nlist)
        with _gpu_clustering(index) as where:
            log.info("training %d IVF cells on %d vectors (%s)", nlist, len(sample), where)
            index.train(sample)
    for block in chunks():
        index.add(np.ascontiguousarray(block, dtype=np.float32))
    if index.ntotal != n:
        raise AssertionError(f"built an index of {index.ntotal} vectors, expected {n}")
    log.debug("built %s over %d vectors (FAISS %s)", describe(index), n, faiss.__version__)
    return index


def add(
    index: Any, vectors: np.ndarray, index_type: str, previous: Callable[[], Iterator[np.ndarray]]
) -> Any:
    """Add ``vectors`` to ``index``, rebuilding it when ``index_type`` calls for another structure.

    A rebuild happens when the concrete type for the new size differs from the index's (``auto``
    crossing :data:`AUTO_ANN_MIN_SEGMENTS`, or a changed ``--index-type``), or when an IVF index has
    grown so that its cell count should be four times larger. Rebuilds read the vectors already in
    the index from ``previous()`` (the float16 parts) followed by ``vectors``.

    Returns:
        The index holding the old and new vectors (``index`` itself, or a new one).
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = index.ntotal + len(vectors)
    want = resolve_kind(index_type, n)
    have = kind_of(index)
    rebuild = want != have
    if want == "ivf" and have == "flat" and not nlist_for(n):
        rebuild = False  # still too small for IVF cells: stay exact
    if not rebuild and have == "ivf":
        rebuild = nlist_for(n) >= 4 * _ivf(index).nlist
    if not rebuild:
        index.add(vectors)
        return index
    log.info("rebuilding the FAISS index as %s for %d segments", want, n)

    def chunks() -> Iterator[np.ndarray]:
        yield from previous()
        yield vectors

    return build(index.d, want, chunks, n)


def gpus() -> int:
    """CUDA devices that this FAISS can use: 0 for faiss-cpu, or when ``VADINDEX_FAISS_GPU=0``."""
    if os.environ.get("VADINDEX_FAISS_GPU", "1") == "0" or not hasattr(faiss, "StandardGpuResources"):
        return 0
    try:
        return int(faiss.get_num_gpus())
    except Exception:  # noqa: BLE001 - a GPU build without a working driver
        return 0


@contextlib.contextmanager
def _gpu_clustering(index: Any) -> Iterator[str]:
    """Run an IVF index's k-means assignment step on the GPUs while training, when faiss-gpu has
    any (``pip install vadindex[gpu]``): the k-means of a million-segment index takes about 50 s on
    two CPU cores. The trained index is an ordinary CPU index either way; the clustering index has
    the quantiser's metric (inner product) and k-means its seed and iterations, so the cells are
    the CPU's up to floating-point ties."""
    ivf = _ivf(index)
    if ivf is None or not gpus():
        yield "CPU"
        return
    try:
        clustering = faiss.index_cpu_to_all_gpus(faiss.IndexFlatIP(ivf.d))
    except Exception as exc:  # noqa: BLE001 - GPU out of memory, a broken driver: the CPU will do
        log.warning(
            "IVF k-means on the GPU is unavailable (%s); training on the CPU", str(exc).splitlines()[0]
        )
        yield "CPU"
        return
    ivf.clustering_index = clustering
    try:
        yield f"k-means on {gpus()} GPU(s)"
    finally:
        ivf.clustering_index = None
        del clustering


def reconstruct(index: Any, rows: np.ndarray) -> np.ndarray:
    """The vectors stored in ``index`` at ``rows`` (IVF indexes need their id map built first)."""
    with contextlib.suppress(RuntimeError):  # not an IVF index: flat and HNSW reconstruct directly
        faiss.extract_index_ivf(index).make_direct_map()
    return np.stack([index.reconstruct(int(r)) for r in rows])


def cells(index: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """The IVF cells of an index: ``(centroids (nlist, d), cell of every row it holds)``.

    Read from the inverted lists (no vector is searched). ``None`` for an index without cells
    (``flat``'s single list, ``hnsw``).
    """
    ivf = _ivf(index)
    if ivf is None or ivf.nlist <= 1:
        return None
    centroids = ivf.quantizer.reconstruct_n(0, ivf.nlist)
    cell = np.full(ivf.ntotal, -1, dtype=np.int64)
    lists = ivf.invlists
    for c in range(ivf.nlist):
        size = lists.list_size(c)
        if size:
            ids = faiss.rev_swig_ptr(lists.get_ids(c), size)
            cell[np.asarray(ids, dtype=np.int64)] = c
    return np.asarray(centroids, dtype=np.float32), cell


def assign_cells(index: Any, vectors: np.ndarray) -> np.ndarray:
    """The IVF cell each vector falls in (what adding it would do)."""
    ivf = _ivf(index)
    _, cell = ivf.quantizer.search(np.ascontiguousarray(vectors, dtype=np.float32), 1)
    return cell[:, 0].astype(np.int64)


def configure(index: Any, nprobe: int | None = None, ef_search: int | None = None) -> Any:
    """Set search-time parameters (cells visited, graph breadth); returns ``index``."""
    ivf = _ivf(index)
    if ivf is not None:
        ivf.nprobe = ivf.nlist if ivf.nlist == 1 else (nprobe or nprobe_for(ivf.nlist))
    elif isinstance(faiss.downcast_index(index), faiss.IndexHNSW):
        faiss.downcast_index(index).hnsw.efSearch = ef_search or HNSW_EF_SEARCH
    return index


def search(index: Any, queries: np.ndarray, k: int, rerank: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` by inner product: ``(scores, ids)``, each ``(n_queries, k')``, ids -1 where missing.

    Approximate indexes return ``RERANK_FACTOR * k`` candidates when ``rerank`` is set, for the
    caller to re-score exactly.
    """
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    want = k if (is_exact(index) or not rerank) else k * RERANK_FACTOR
    want = max(1, min(want, index.ntotal))
    configure(index)
    if len(q) > 1:
        return index.search(q, want)
    # FAISS spreads work over queries, so one query runs on one thread anyway; waking an OpenMP team
    # for it costs milliseconds on a busy machine.
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        return index.search(q, want)
    finally:
        faiss.omp_set_num_threads(threads)
