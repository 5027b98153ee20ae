"""The index on disk: a FAISS index, Parquet metadata and a JSON manifest, written atomically.

Layout of an index folder::

    manifest.json                 commit point: format version, model, sampling, counts, file names
    index.g<N>.faiss              FAISS inner-product index over the segment vectors (float32)
    videos.g<N>.parquet           one row per video
    parts/<P>.segments.parquet    row i describes segment vector i of the part
    parts/<P>.vectors.npy         segment embeddings, float16, L2-normalised (source of truth)
    parts/<P>.frames.npy          frame embeddings, float16, L2-normalised
    failures.csv                  videos the last build could not index, with the reason
    .lock                         held (flock) by the one writer
    cache/                        derived data (vadindex.cache), safe to delete

Parts are append-only: each commit adds one part and rewrites the video table (and, now and then,
the FAISS file) under a new generation number, then replaces ``manifest.json``. The FAISS file may
cover only the first ``faiss_rows`` segments: rewriting a large file at every commit would make a
build's writes grow with the square of its size, so during a build it is rewritten only when the
segments it lacks exceed a quarter of those it holds, and always at the end of a build. Readers
search the rows it lacks exactly, from the float16 parts (at most a fifth of the index).

Everything is written to a temporary file in the same folder and moved into place with
``os.replace``; the manifest goes last,
so a crash at any moment leaves the previous commit intact. Files of a newer generation than the
manifest are leftovers of a crash and are removed by the next writer. The manifest records the size
and SHA-256 of every file it refers to, so ``vadindex check`` can tell a damaged file from a good one.
Only files named like the index's own are ever removed; a folder that holds anything else and has no
manifest is refused as an index location.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vadindex import __version__, ann
from vadindex.config import DEFAULT_INDEX_TYPE
from vadindex.encoder import ModelIdentity
from vadindex.errors import StoreError

log = logging.getLogger("vadindex")

#: Newest index format this code reads. Format 2 is written only while the FAISS file covers fewer
#: rows than the index holds (``faiss_rows``), so older vadindex versions refuse such a generation
#: instead of silently missing rows; a finished build writes format 1.
FORMAT_VERSION = 2
#: Format of a generation whose FAISS file covers every segment.
FORMAT_COMPLETE = 1
#: A commit rewrites the FAISS file when the rows it lacks would exceed this fraction of the rows it
#: holds (so a build writes the file O(log n) times, about 5x its final size in all)...
FAISS_TAIL_FRACTION = 0.25
#: ... or when the index would hold at most this many segments (files of a few tens of MB).
FAISS_ALWAYS_WRITE_ROWS = 50_000
MANIFEST = "manifest.json"
LOCK = ".lock"
FAILURES = "failures.csv"
METRIC = "inner_product"
PARTS = "parts"
CACHE = "cache"
#: Names an index writes in its folder and in ``parts/``, with the ``.NAME.tmp-PID`` files of atomic writes.
OWN_FILE = re.compile(
    r"^\.?(manifest\.json|failures\.csv|index\.g\d+\.faiss|videos\.g\d+\.parquet)(\.tmp-\d+)?$"
)
OWN_PART = re.compile(r"^\.?\d+\.(segments\.parquet|vectors\.npy|frames\.npy)(\.tmp-\d+)?$")

SEGMENT_COLUMNS = [
    "video_id", "video", "segment", "start", "end", "start_frame", "end_frame",
    "frame_row", "n_frames", "label", "class",
]  # fmt: skip
VIDEO_COLUMNS = [
    "video_id", "video", "path", "label", "class", "duration", "n_frames", "width", "height",
    "codec", "n_segments", "first_row", "warning", "added",
]  # fmt: skip


@dataclass(frozen=True)
class Part:
    """One commit's worth of segments and frames."""

    name: str
    segments: int
    frames: int
    #: The image encoder's arithmetic for this part's videos (``fp32``, ``int8``, ``fp16``; several
    #: comma-separated if they differ); empty in parts written before it was recorded.
    precision: str = ""


@dataclass(frozen=True)
class IndexManifest:
    """The JSON manifest of an index: what is in it and how it was made."""

    format_version: int
    generation: int
    model: str
    pretrained: str
    checkpoint_sha256: str | None
    dim: int
    logit_scale: float
    sampling: dict[str, float]
    metric: str = METRIC
    index_type: str = "flat"
    n_videos: int = 0
    n_segments: int = 0
    n_frames: int = 0
    faiss_file: str = ""
    videos_file: str = ""
    parts: tuple[Part, ...] = ()
    created: str = ""
    updated: str = ""
    vadindex_version: str = __version__
    pretrained_path: str | None = None
    #: ``relative path -> {"bytes": size, "sha256": hex}`` of every file of this generation.
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Segment rows ``0 .. faiss_rows - 1`` are in the FAISS file; ``None``: all of them.
    faiss_rows: int | None = None

    @property
    def identity(self) -> ModelIdentity:
        """The model the index was built with."""
        return ModelIdentity(self.model, self.pretrained, self.checkpoint_sha256)

    @property
    def faiss_covered(self) -> int:
        """How many leading segment rows the FAISS file holds (the rest are searched exactly)."""
        return self.n_segments if self.faiss_rows is None else self.faiss_rows

    def to_json(self) -> str:
        """Serialise, parts as a list of objects."""
        data = asdict(self)
        data["parts"] = [asdict(p) for p in self.parts]
        return json.dumps(data, indent=2, sort_keys=False)

    @classmethod
    def from_json(cls, text: str, where: Path) -> IndexManifest:
        """Parse a manifest, refusing formats newer than this code."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StoreError(f"{where}: manifest is not valid JSON ({exc.msg})") from None
        if not isinstance(data, dict):
            raise StoreError(f"{where}: manifest is not a JSON object; not a vadindex index")
        version = data.get("format_version")
        if not isinstance(version, int):
            raise StoreError(f"{where}: manifest has no format_version; not a vadindex index")
        if version > FORMAT_VERSION:
            raise StoreError(
                f"{where}: index format {version} is newer than this vadindex supports ({FORMAT_VERSION}); "
                "upgrade vadindex (pip install -U vadindex)"
            )
        known = set(cls.__dataclass_fields__)
        part_fields = set(Part.__dataclass_fields__)
        try:
            data["parts"] = tuple(
                Part(**{k: v for k, v in p.items() if k in part_fields}) for p in data.get("parts", [])
            )
            return cls(**{k: v for k, v in data.items() if k in known})
        except (TypeError, AttributeError) as exc:
            raise StoreError(f"{where}: manifest is incomplete ({exc})") from None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` atomically."""
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_text_atomic(target: Path, text: str) -> None:
    """Write ``text`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def file_record(path: Path) -> dict[str, Any]:
    """``{"bytes": size, "sha256": hex}`` of a file, as the manifest records it."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def foreign_files(path: Path) -> list[str]:
    """Entries of ``path`` (and its ``parts/``) that an index does not write: user files, not ours."""
    if not path.is_dir():
        return []
    foreign = []
    for entry in path.iterdir():
        if entry.name == PARTS and entry.is_dir():
            foreign += [f"{PARTS}/{f.name}" for f in entry.iterdir() if not OWN_PART.match(f.name)]
        elif entry.name not in (LOCK, CACHE) and not OWN_FILE.match(entry.name):
            foreign.append(entry.name)
    return sorted(foreign)


def lock_index(path: Path) -> IndexLock:
    """Create ``path`` if needed and take its writer lock, refusing a folder that is not an index.

    A folder without a manifest may only hold what a crashed first build leaves behind; anything
    else (the videos themselves, say) means the user pointed ``--index`` at the wrong folder, and
    writing there would mix the index with their files.
    """
    if path.exists() and not path.is_dir():
        raise StoreError(f"{path}: exists and is not a folder")
    if not (path / MANIFEST).exists():
        foreign = foreign_files(path)
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise StoreError(
                f"{path}: folder is not empty and is not a vadindex index (holds {shown}); "
                "give --index a new or empty folder"
            )
    try:
        (path / PARTS).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{path}: cannot create the index folder ({exc.strerror or exc})") from None
    lock = IndexLock(path)
    lock.acquire()
    return lock


def _save_npy(target: Path, array: np.ndarray) -> None:
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)


def _save_parquet(target: Path, frame: pd.DataFrame) -> None:
    with atomic_path(target) as tmp:
        frame.to_parquet(tmp, index=False)


def _save_faiss(target: Path, index: Any) -> None:
    import faiss

    with atomic_path(target) as tmp:
        try:
            faiss.write_index(index, str(tmp))
        except RuntimeError as exc:  # faiss reports a failed write (disk full) as a RuntimeError
            raise OSError(f"writing {target.name} failed ({str(exc).splitlines()[0]})") from None


def read_manifest(path: Path) -> IndexManifest:
    """Read ``path/manifest.json``; a clear error when the folder is not an index."""
    if not path.exists():
        raise StoreError(f"{path}: no such index (build one with `vadindex build SOURCES --index {path}`)")
    if not path.is_dir():
        raise StoreError(f"{path}: not an index folder")
    manifest = path / MANIFEST
    if not manifest.exists():
        raise StoreError(f"{path}: not a vadindex index (no {MANIFEST}); build one with `vadindex build`")
    try:
        text = manifest.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StoreError(f"{manifest}: cannot read the manifest ({reason})") from None
    return IndexManifest.from_json(text, path)


#: Numeric columns of the segment table that :class:`SegmentArrays` holds, with their dtypes.
SEGMENT_ARRAY_COLUMNS = {
    "segment": np.int32, "start": np.float64, "end": np.float64, "start_frame": np.int64,
    "end_frame": np.int64, "frame_row": np.int64, "n_frames": np.int32, "label": np.int8,
}  # fmt: skip


@dataclass(frozen=True)
class SegmentArrays:
    """The segment table as numpy columns (row i = vector i), for code that needs speed, not pandas.

    ``video`` is each segment's row in the video table; ``label`` is -1 where unknown.
    """

    video: np.ndarray
    segment: np.ndarray
    start: np.ndarray
    end: np.ndarray
    start_frame: np.ndarray
    end_frame: np.ndarray
    frame_row: np.ndarray
    n_frames: np.ndarray
    label: np.ndarray

    def __len__(self) -> int:
        return len(self.video)


class IndexSnapshot:
    """A read-only view of one committed generation of an index."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self._segments: pd.DataFrame | None = None
        self._arrays: SegmentArrays | None = None
        self._videos: pd.DataFrame | None = None
        self._faiss: Any = None

    @property
    def segments(self) -> pd.DataFrame:
        """Segment metadata; row i describes vector i."""
        if self._segments is None:
            files = [self.path / "parts" / f"{p.name}.segments.parquet" for p in self.manifest.parts]
            frames = [self._read_parquet(f) for f in files]
            self._segments = (
                pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SEGMENT_COLUMNS)
            )
            if len(self._segments) != self.manifest.n_segments:
                raise StoreError(
                    f"{self.path}: {len(self._segments)} segment rows but the manifest says "
                    f"{self.manifest.n_segments}; run `vadindex check {self.path}`"
                )
        return self._segments

    @property
    def videos(self) -> pd.DataFrame:
        """One row per indexed video."""
        if self._videos is None:
            if not self.manifest.videos_file:
                self._videos = pd.DataFrame(columns=VIDEO_COLUMNS)
            else:
                self._videos = self._read_parquet(self.path / self.manifest.videos_file)
        return self._videos

    def segment_arrays(self) -> SegmentArrays:
        """The numeric segment columns and each segment's video, read without the text columns.

        Reading a million rows this way takes milliseconds where the full table (with its video ids
        and names as text) takes most of a second; scoring needs only these.
        """
        if self._arrays is None:
            if self._segments is not None:
                segs = self._segments
                cols = {c: _numeric(segs[c], dt) for c, dt in SEGMENT_ARRAY_COLUMNS.items()}
            else:
                cols = self._read_segment_columns()
            n = len(cols["segment"])
            if n != self.manifest.n_segments:
                raise StoreError(
                    f"{self.path}: {n} segment rows but the manifest says "
                    f"{self.manifest.n_segments}; run `vadindex check {self.path}`"
                )
            self._arrays = SegmentArrays(video=self._segment_videos(n), **cols)
        return self._arrays

    def _read_segment_columns(self) -> dict[str, np.ndarray]:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        names = list(SEGMENT_ARRAY_COLUMNS)
        blocks: dict[str, list[np.ndarray]] = {c: [] for c in names}
        for p in self.manifest.parts:
            file = self.path / "parts" / f"{p.name}.segments.parquet"
            try:
                table = pq.read_table(file, columns=names)
            except FileNotFoundError:
                raise StoreError(
                    f"{file}: missing from the index; run `vadindex check {self.path}`"
                ) from None
            except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for damaged files
                raise StoreError(f"{file}: unreadable ({str(exc).splitlines()[0]})") from None
            for c in names:
                col = table.column(c)
                if col.null_count:
                    col = pc.fill_null(col, -1)
                blocks[c].append(col.to_numpy())
        return {
            c: (np.concatenate(b) if b else np.zeros(0)).astype(SEGMENT_ARRAY_COLUMNS[c], copy=False)
            for c, b in blocks.items()
        }

    def _segment_videos(self, n: int) -> np.ndarray:
        """Row of each segment's video in the video table.

        A commit writes each video's segments as one run of rows starting at its ``first_row``, so
        the video column follows from the video table alone; the (slow) text column is read only
        when an index breaks that rule.
        """
        videos = self.videos
        first = _numeric(videos["first_row"], np.int64) if len(videos) else np.zeros(0, np.int64)
        count = _numeric(videos["n_segments"], np.int64) if len(videos) else np.zeros(0, np.int64)
        order = np.argsort(first, kind="stable")
        runs = np.concatenate([[0], np.cumsum(count[order])])
        if runs[-1] == n and np.array_equal(first[order], runs[:-1]):
            return np.repeat(order, count[order]).astype(np.int64)
        ids = pd.Index(videos["video_id"].astype(str))
        codes = ids.get_indexer(self.segments["video_id"].astype(str))
        if (codes < 0).any():
            raise StoreError(
                f"{self.path}: segments of videos missing from the video table; run `vadindex check`"
            )
        return codes.astype(np.int64)

    def _read_parquet(self, file: Path) -> pd.DataFrame:
        try:
            return pd.read_parquet(file)
        except FileNotFoundError:
            raise StoreError(f"{file}: missing from the index; run `vadindex check {self.path}`") from None
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for damaged files
            raise StoreError(f"{file}: unreadable ({str(exc).splitlines()[0]})") from None

    def _load_npy(self, file: Path) -> np.ndarray:
        try:
            return np.load(file, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise StoreError(f"{file}: missing from the index; run `vadindex check {self.path}`") from None
        except ValueError as exc:
            raise StoreError(f"{file}: unreadable ({exc})") from None

    def iter_vectors(self, chunk: int = 65536, start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_row, float16 block)`` over the segment vectors from row ``start`` on (all of
        them, or the rows the FAISS file lacks, say), memory-mapped."""
        row = 0
        for part in self.manifest.parts:
            end = row + part.segments
            if end > start:
                vectors = self._load_npy(self.path / "parts" / f"{part.name}.vectors.npy")
                for i in range(max(start - row, 0), len(vectors), chunk):
                    yield row + i, vectors[i : i + chunk]
            row = end

    def prefetch_vectors(self, kind: str = "segments") -> None:
        """Ask the kernel to start reading the vector parts now (``POSIX_FADV_WILLNEED``), in the
        background, for a pass that will come later (after a model has loaded, say). A no-op where
        the call does not exist."""
        advise = getattr(os, "posix_fadvise", None)
        if advise is None:
            return
        suffix = "vectors" if kind == "segments" else "frames"
        for part in self.manifest.parts:
            with contextlib.suppress(OSError):
                fd = os.open(self.path / "parts" / f"{part.name}.{suffix}.npy", os.O_RDONLY)
                try:
                    advise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
                finally:
                    os.close(fd)

    def stream_vectors(self, chunk: int = 8192, kind: str = "segments") -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_row, float16 block)`` over all segment (or frame) vectors, read in chunks.

        Unlike :meth:`iter_vectors` the blocks are read into one reused buffer with ``readinto``
        rather than touched through a memory map: a full pass over a million vectors then costs
        no page faults beyond the buffer's (about half the time of the mapped pass). Each block is
        valid only until the next one is yielded.
        """
        suffix = "vectors" if kind == "segments" else "frames"
        largest = max(
            (p.segments if kind == "segments" else p.frames for p in self.manifest.parts), default=1
        )
        buffer: np.ndarray | None = None
        row = 0
        for part in self.manifest.parts:
            file = self.path / "parts" / f"{part.name}.{suffix}.npy"
            mapped = self._load_npy(file)  # validates the header; gives offset, shape and dtype
            n, dim = mapped.shape
            if buffer is None or buffer.shape[1] != dim or buffer.dtype != mapped.dtype:
                buffer = np.empty((max(1, min(chunk, largest)), dim), dtype=mapped.dtype)
            with open(file, "rb") as fh:
                fh.seek(mapped.offset)
                for i in range(0, n, len(buffer)):
                    view = buffer[: min(len(buffer), n - i)]
                    if fh.readinto(memoryview(view).cast("B")) != view.nbytes:
                        raise StoreError(
                            f"{file}: shorter than its header says; run `vadindex check {self.path}`"
                        )
                    yield row + i, view
            row += n

    def vectors(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Segment vectors as float32, all of them or the given rows."""
        out = []
        srt = None if rows is None else np.sort(rows)  # gathered in sorted order, reordered below
        for first, block in self.iter_vectors():
            if srt is None:
                out.append(np.asarray(block, dtype=np.float32))
            else:
                sel = srt[(srt >= first) & (srt < first + len(block))] - first
                out.append(np.asarray(block[sel], dtype=np.float32))
        if not out:
            return np.zeros((0, self.manifest.dim), dtype=np.float32)
        stacked = np.concatenate(out)
        if rows is not None:
            # Rows were gathered in sorted order; put them back in the caller's order.
            order = np.argsort(np.argsort(rows, kind="stable"), kind="stable")
            stacked = stacked[order]
        return stacked

    def frame_vectors(self) -> np.ndarray:
        """All frame embeddings (float16, memory-mapped parts concatenated)."""
        blocks = [self._load_npy(self.path / "parts" / f"{p.name}.frames.npy") for p in self.manifest.parts]
        if not blocks:
            return np.zeros((0, self.manifest.dim), dtype=np.float16)
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)

    def faiss_index(self) -> Any:
        """The FAISS index, memory-mapped read-only."""
        if self._faiss is None:
            import faiss

            file = self.path / self.manifest.faiss_file
            if not file.exists():
                raise StoreError(f"{file}: missing from the index; run `vadindex check {self.path}`")
            try:
                self._faiss = faiss.read_index(str(file), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
            except RuntimeError as exc:
                raise StoreError(f"{file}: unreadable FAISS index ({str(exc).splitlines()[0]})") from None
        return self._faiss


def _numeric(column: Any, dtype: Any) -> np.ndarray:
    """A (possibly nullable) pandas column as a plain numpy array, nulls as -1."""
    return pd.to_numeric(column, errors="coerce").fillna(-1).to_numpy().astype(dtype)


def open_index(path: str | os.PathLike[str], retries: int = 3, with_faiss: bool = True) -> IndexSnapshot:
    """Open the latest committed generation of an index for reading.

    A writer may commit while we read; a file that vanished under us means a newer manifest, so
    the read is retried. The video table and the (memory-mapped) FAISS file are opened here, so the
    snapshot stays whole when the writer later deletes its generation's files; parts are never
    deleted. ``with_faiss=False`` skips the FAISS file (and importing faiss), for readers such as
    detection that use only the metadata and the vector parts.
    """
    for attempt in range(retries):
        snap = IndexSnapshot(Path(path))
        try:
            _ = snap.videos
            if with_faiss and snap.manifest.faiss_file:
                snap.faiss_index()
            return snap
        except StoreError:
            if attempt == retries - 1:
                raise
            time.sleep(0.05)
    raise AssertionError("unreachable")


class IndexLock:
    """An exclusive, non-blocking ``flock`` on ``DIR/.lock``; the kernel drops it if the holder dies."""

    def __init__(self, path: Path) -> None:
        self.path = path / LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`StoreError` naming the holder."""
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"{self.path.parent}: cannot write the index ({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StoreError(
                f"{self.path.parent}: index is being written by {holder}; wait for it to finish "
                "(only one build may write an index at a time)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        self._fd = fd

    def release(self) -> None:
        """Release the lock."""
        if self._fd is not None:
            import fcntl

            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


@dataclass
class PendingVideo:
    """One ingested video waiting for the next commit."""

    video: dict[str, Any]
    segments: pd.DataFrame
    segment_vectors: np.ndarray
    frame_vectors: np.ndarray
    #: The encoder's precision once the video was encoded (``--precision auto`` settles on int8 or
    #: fp32 during the first frames of a build).
    precision: str = ""


@dataclass
class IndexWriter:
    """The single committer of an index: holds the lock, appends videos, commits atomically."""

    path: Path
    identity: ModelIdentity
    dim: int
    logit_scale: float
    sampling: dict[str, float]
    pretrained_path: str | None = None
    manifest: IndexManifest | None = None
    #: The folder's writer lock when the caller already holds it (see :func:`lock_index`).
    lock: IndexLock | None = None
    #: FAISS index type (:data:`vadindex.ann.INDEX_TYPES`); ``None`` keeps the index's, else the default.
    index_type: str | None = None
    _lock: IndexLock | None = None
    _faiss: Any = None
    _videos: pd.DataFrame | None = None
    _known: set[str] = field(default_factory=set)
    _pending: list[PendingVideo] = field(default_factory=list)

    def __enter__(self) -> IndexWriter:
        if self._lock is None:
            self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Lock the folder, load the current commit (or start a new index) and remove crash leftovers."""
        self._lock = self.lock or lock_index(self.path)
        self.lock = None
        try:
            if (self.path / MANIFEST).exists():
                snap = IndexSnapshot(self.path)
                self.manifest = replace(snap.manifest, index_type=self.index_type or snap.manifest.index_type)
                self._check_compatible(snap.manifest)
                self._videos = snap.videos
                self._faiss = self._committed_faiss(snap.manifest)
            else:
                now = _now()
                self.manifest = IndexManifest(
                    format_version=FORMAT_VERSION,
                    generation=0,
                    model=self.identity.model,
                    pretrained=self.identity.pretrained,
                    checkpoint_sha256=self.identity.checkpoint_sha256,
                    pretrained_path=self.pretrained_path,
                    dim=self.dim,
                    logit_scale=self.logit_scale,
                    sampling=dict(self.sampling),
                    index_type=self.index_type or DEFAULT_INDEX_TYPE,
                    created=now,
                    updated=now,
                )
                self._videos = pd.DataFrame(columns=VIDEO_COLUMNS)
                self._faiss = ann.new_index(self.dim, "flat")
            ann.check_index_type(self.manifest.index_type)
            self._known = set(self._videos["video_id"].astype(str))
            self._remove_leftovers()
        except BaseException:
            self.close()
            raise

    def _check_compatible(self, manifest: IndexManifest) -> None:
        if not manifest.identity.same_as(self.identity):
            raise StoreError(
                f"{self.path}: index was built with {manifest.identity.describe()}, not "
                f"{self.identity.describe()}; build into a new folder to use another model"
            )
        if {k: float(v) for k, v in manifest.sampling.items()} != {
            k: float(v) for k, v in self.sampling.items()
        }:
            raise StoreError(
                f"{self.path}: index was built with sampling {manifest.sampling}, not {self.sampling}; "
                "build into a new folder to change sampling"
            )

    def _remove_leftovers(self) -> None:
        """Delete index files that no committed generation refers to (a crash's half-written work).

        Only names an index writes are touched; anything else in the folder is the user's.
        """
        assert self.manifest is not None
        keep = {MANIFEST, FAILURES, self.manifest.faiss_file, self.manifest.videos_file}
        keep |= _previous_generation_files(self.path, self.manifest.generation)
        names = {p.name for p in self.manifest.parts}
        leftovers = [f for f in self.path.iterdir() if OWN_FILE.match(f.name) and f.name not in keep]
        leftovers += [
            f
            for f in (self.path / PARTS).iterdir()
            if OWN_PART.match(f.name) and f.name.split(".")[0] not in names
        ]
        for file in leftovers:
            log.debug("removing leftover %s", file)
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                file.unlink()

    def has_video(self, video_id: str) -> bool:
        """True if the video is committed or waiting for the next commit."""
        return video_id in self._known

    @property
    def pending(self) -> int:
        """Videos waiting for the next commit."""
        return len(self._pending)

    def add(self, item: PendingVideo) -> None:
        """Queue one ingested video for the next commit."""
        self._known.add(str(item.video["video_id"]))
        self._pending.append(item)

    def commit(self, final: bool = False) -> None:
        """Write the queued videos as one new part and a new generation, manifest last.

        The FAISS file is rewritten only when the rows it lacks grow past ``FAISS_TAIL_FRACTION`` of
        those it holds, unless ``final`` (the end of a build), which always leaves it covering every
        segment, writing a generation for that alone if nothing is queued.

        Raises:
            StoreError: the files cannot be written (disk full, say). The previous commit stays
                intact on disk, and the queued videos stay queued, so the commit may be retried.
        """
        assert self.manifest is not None and self._videos is not None
        if not self._pending and not (final and self.manifest.faiss_covered < self.manifest.n_segments):
            return
        try:
            self._commit(final)
        except OSError as exc:
            self._rollback_faiss()
            raise StoreError(
                f"{self.path}: cannot write the index ({exc.strerror or exc}); it still holds its last commit "
                f"(generation {self.manifest.generation}, {self.manifest.n_videos} videos)"
            ) from None
        except BaseException:
            self._rollback_faiss()
            raise

    def _rollback_faiss(self) -> None:
        """Undo what a failed commit added to the in-memory FAISS index, so a retry adds it once.

        The committed index is reloaded (not every index type can remove vectors).
        """
        assert self.manifest is not None
        if self._faiss is None or self._faiss.ntotal == self.manifest.n_segments:
            return
        self._faiss = self._committed_faiss(self.manifest)

    def _committed_faiss(self, m: IndexManifest) -> Any:
        """The FAISS index of commit ``m`` (the one on disk) in memory, with the rows its file lacks
        added from the parts."""
        import faiss

        if not m.faiss_file:
            return ann.new_index(self.dim, "flat")
        file = self.path / m.faiss_file
        try:
            index = faiss.read_index(str(file))
        except RuntimeError as exc:
            raise StoreError(
                f"{file}: unreadable FAISS index ({str(exc).splitlines()[0]}); run `vadindex check {self.path}`"
            ) from None
        if index.ntotal != m.faiss_covered:
            raise StoreError(
                f"{file}: holds {index.ntotal} vectors but the manifest says {m.faiss_covered}; "
                f"run `vadindex check {self.path}`"
            )
        if index.ntotal < m.n_segments:
            for _, block in IndexSnapshot(self.path).iter_vectors(start=m.faiss_covered):
                index.add(np.ascontiguousarray(block, dtype=np.float32))
        return index

    def _committed_vectors(self) -> Iterator[np.ndarray]:
        """The committed segment vectors in row order (float16 blocks), to rebuild the FAISS index."""
        assert self.manifest is not None
        if self.manifest.n_segments:
            for _, block in IndexSnapshot(self.path).iter_vectors():
                yield block

    def _commit(self, final: bool = False) -> None:
        assert self.manifest is not None and self._videos is not None
        m = self.manifest
        gen = m.generation + 1
        row0, frame0 = m.n_segments, m.n_frames
        files = {k: v for k, v in m.files.items() if k.startswith(f"{PARTS}/")}
        written: dict[str, Callable[[Path], None]] = {}
        parts = m.parts
        videos = self._videos
        vectors = np.zeros((0, self.dim), np.float32)  # a final commit may only complete the FAISS file
        if self._pending:
            part = f"{gen:06d}"
            seg_frames, seg_vecs, frame_vecs, video_rows = [], [], [], []
            for item in self._pending:
                segs = item.segments.copy()
                segs["frame_row"] = segs["frame_row"] + frame0
                video = dict(item.video, first_row=row0, added=_now())
                row0 += len(segs)
                frame0 += len(item.frame_vectors)
                seg_frames.append(segs)
                seg_vecs.append(item.segment_vectors)
                frame_vecs.append(item.frame_vectors)
                video_rows.append(video)
            precision = ",".join(
                sorted({x for item in self._pending for x in item.precision.split(",") if x})
            )
            segments = pd.concat(seg_frames, ignore_index=True)[SEGMENT_COLUMNS]
            vectors = np.concatenate(seg_vecs).astype(np.float32)
            frames = np.concatenate(frame_vecs).astype(np.float16)
            written[f"{PARTS}/{part}.vectors.npy"] = lambda f: _save_npy(f, vectors.astype(np.float16))
            written[f"{PARTS}/{part}.frames.npy"] = lambda f: _save_npy(f, frames)
            written[f"{PARTS}/{part}.segments.parquet"] = lambda f: _save_parquet(f, segments)
            new_videos = pd.DataFrame(video_rows, columns=VIDEO_COLUMNS)
            videos = new_videos if videos.empty else pd.concat([videos, new_videos], ignore_index=True)
            parts = (*parts, Part(part, len(segments), len(frames), precision))
        # Added in place, or rebuilt (auto crossing to IVF, a new --index-type) from the float16 parts.
        faiss_index = ann.add(self._faiss, vectors, m.index_type, self._committed_vectors)
        videos_file = f"videos.g{gen:06d}.parquet"
        written[videos_file] = lambda f: _save_parquet(f, videos)
        covered = m.faiss_covered if m.faiss_file else 0  # no file yet: the test below writes one
        rewrite = (
            final
            or faiss_index is not self._faiss  # rebuilt: the old file is of another structure
            or row0 <= FAISS_ALWAYS_WRITE_ROWS
            or row0 - covered > FAISS_TAIL_FRACTION * covered
        )
        if rewrite:
            faiss_file, covered = f"index.g{gen:06d}.faiss", row0
            written[faiss_file] = lambda f: _save_faiss(f, faiss_index)
        else:
            faiss_file = m.faiss_file
            if faiss_file in m.files:
                files[faiss_file] = m.files[faiss_file]
        for name, save in written.items():
            save(self.path / name)
            files[name] = file_record(self.path / name)
        new = replace(
            m,
            format_version=FORMAT_COMPLETE if covered == row0 else FORMAT_VERSION,
            generation=gen,
            n_videos=len(videos),
            n_segments=row0,
            n_frames=frame0,
            faiss_file=faiss_file,
            faiss_rows=None if covered == row0 else covered,
            videos_file=videos_file,
            parts=parts,
            updated=_now(),
            vadindex_version=__version__,
            files=files,
        )
        write_text_atomic(self.path / MANIFEST, new.to_json())  # the commit
        self.manifest, self._videos, self._pending, self._faiss = new, videos, [], faiss_index
        # Keep the previous generation's files for readers that opened it a moment ago, and the
        # FAISS file this generation still names; drop older ones (a reader of an older manifest
        # finds its file gone and reopens the index, as `open_index` does).
        keep = {new.faiss_file, new.videos_file}
        for stale in _generation_files(self.path):
            if stale.name not in keep and _generation_of(stale) < gen - 1:
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()

    def write_failures(self, failures: list[tuple[str, str]]) -> None:
        """Record the videos the last build could not index (``failures.csv``)."""
        frame = pd.DataFrame(failures, columns=["path", "reason"])
        with atomic_path(self.path / FAILURES) as tmp:
            frame.to_csv(tmp, index=False)

    def close(self) -> None:
        """Drop uncommitted work and release the lock."""
        self._pending = []
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _generation_of(file: Path) -> int:
    try:
        return int(file.name.split(".")[1][1:])
    except (IndexError, ValueError):
        return -1


def _generation_files(path: Path) -> list[Path]:
    return [
        f for f in path.iterdir() if f.name.startswith(("index.g", "videos.g")) and _generation_of(f) >= 0
    ]


def _previous_generation_files(path: Path, gen: int) -> set[str]:
    return {f.name for f in _generation_files(path) if _generation_of(f) == gen - 1}
