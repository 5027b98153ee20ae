"""Reading an index: a snapshot of one committed generation, its tables, vectors and FAISS file.

pandas is imported only when a table is asked for as a DataFrame: a query reads the few segment
rows it shows with pyarrow alone (importing pandas costs about 0.2 s, a third of a cold query).
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vadindex.errors import StoreError
from vadindex.index.manifest import ADDED_VIDEO_COLUMNS, PARTS, SEGMENT_COLUMNS, VIDEO_COLUMNS, read_manifest
from vadindex.index.thumbs import THUMBNAILS, read_thumbnails

if TYPE_CHECKING:
    import pandas as pd

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
        self._video_bytes: bytes | None = None
        self._faiss: Any = None

    @property
    def segments(self) -> pd.DataFrame:
        """Segment metadata; row i describes vector i."""
        if self._segments is None:
            import pandas as pd

            files = [self.path / PARTS / f"{p.name}.segments.parquet" for p in self.manifest.parts]
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
                import pandas as pd

                self._videos = pd.DataFrame(columns=VIDEO_COLUMNS)
            else:
                file = self.path / self.manifest.videos_file
                self._videos = self._read_parquet(file, self._video_bytes)
                self._video_bytes = None
                for column, value in ADDED_VIDEO_COLUMNS.items():
                    if column not in self._videos.columns:
                        self._videos[column] = value
        return self._videos

    def hold_videos(self) -> None:
        """Read this generation's video table into memory (unparsed), so that the snapshot stays whole
        when a writer later deletes the file."""
        if self._videos is None and self._video_bytes is None and self.manifest.videos_file:
            file = self.path / self.manifest.videos_file
            try:
                self._video_bytes = file.read_bytes()
            except FileNotFoundError:
                raise StoreError(
                    f"{file}: missing from the index; run `vadindex check {self.path}`"
                ) from None

    def segment_columns(self, names: Sequence[str], rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Columns of the segment table as numpy arrays (text as object arrays), for every row or for
        ``rows`` in the order given.

        Only the parts that hold ``rows`` are read, so the ten rows a query shows cost a few
        milliseconds however large the index is (the whole table, with its text columns, takes
        most of a second at a million segments), and without pandas: pyarrow's own conversions
        to numpy import it (0.2 s), so picked rows are converted value by value.
        """
        if self._segments is not None:
            segs = self._segments
            return {c: segs[c].to_numpy() if rows is None else segs[c].to_numpy()[rows] for c in names}
        parts = self.manifest.parts
        firsts = np.cumsum([0] + [p.segments for p in parts])
        wanted = np.arange(firsts[-1]) if rows is None else np.asarray(rows, dtype=np.int64)
        part_of = np.searchsorted(firsts, wanted, side="right") - 1
        positions: list[np.ndarray] = []
        pieces: dict[str, list[np.ndarray]] = {c: [] for c in names}
        for p in np.unique(part_of):
            table = self._read_table(self.path / PARTS / f"{parts[p].name}.segments.parquet", list(names))
            sel = np.flatnonzero(part_of == p)
            positions.append(sel)
            local = (wanted[sel] - firsts[p]).tolist()
            for c in names:
                column = table.column(c)
                if rows is None:
                    pieces[c].append(column.to_numpy())
                else:
                    dtype = object if column.null_count else column.type.to_pandas_dtype()
                    pieces[c].append(np.array([column[i].as_py() for i in local], dtype=dtype))
        order = np.concatenate(positions) if positions else np.zeros(0, dtype=np.int64)
        out = {}
        for c in names:
            values = np.concatenate(pieces[c]) if pieces[c] else np.zeros(0, dtype=object)
            out[c] = np.empty_like(values)
            out[c][order] = values
        return out

    def segment_cameras(self) -> np.ndarray:
        """The camera of every segment (row order), as strings; see :func:`video_cameras`."""
        return video_cameras(self.videos)[self.segment_arrays().video]

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
        names = list(SEGMENT_ARRAY_COLUMNS)
        blocks: dict[str, list[np.ndarray]] = {c: [] for c in names}
        for p in self.manifest.parts:
            table = self._read_table(self.path / PARTS / f"{p.name}.segments.parquet", names)
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
        import pandas as pd

        ids = pd.Index(videos["video_id"].astype(str))
        codes = ids.get_indexer(self.segments["video_id"].astype(str))
        if (codes < 0).any():
            raise StoreError(
                f"{self.path}: segments of videos missing from the video table; run `vadindex check`"
            )
        return codes.astype(np.int64)

    def _read_table(self, file: Path, columns: list[str]) -> Any:
        try:
            # ParquetFile, not pq.read_table: that goes through pyarrow.dataset, which imports pandas.
            with pq.ParquetFile(file) as parquet:
                return parquet.read(columns=columns)
        except FileNotFoundError:
            raise StoreError(f"{file}: missing from the index; run `vadindex check {self.path}`") from None
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for damaged files
            raise StoreError(f"{file}: unreadable ({str(exc).splitlines()[0]})") from None

    def _read_parquet(self, file: Path, data: bytes | None = None) -> pd.DataFrame:
        import pandas as pd

        try:
            return pd.read_parquet(file if data is None else io.BytesIO(data))
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
                vectors = self._load_npy(self.path / PARTS / f"{part.name}.vectors.npy")
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
                fd = os.open(self.path / PARTS / f"{part.name}.{suffix}.npy", os.O_RDONLY)
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
            file = self.path / PARTS / f"{part.name}.{suffix}.npy"
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
        blocks = [self._load_npy(self.path / PARTS / f"{p.name}.frames.npy") for p in self.manifest.parts]
        if not blocks:
            return np.zeros((0, self.manifest.dim), dtype=np.float16)
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)

    @property
    def has_thumbnails(self) -> bool:
        """True when some part stores thumbnails (``build --thumbnails``)."""
        return any(p.thumbnails for p in self.manifest.parts)

    def stored_thumbnails(self, rows: Iterable[int]) -> dict[int, tuple[float, bytes]]:
        """The thumbnails stored in the index for segment ``rows``: ``{row: (time, jpeg)}``.

        Rows without one (parts built without ``--thumbnails``) are left out. Only the row groups
        holding the rows are read.
        """
        wanted = np.unique(np.asarray(list(rows), dtype=np.int64))
        out: dict[int, tuple[float, bytes]] = {}
        first = 0
        for part in self.manifest.parts:
            local = wanted[(wanted >= first) & (wanted < first + part.segments)] - first
            if part.thumbnails and len(local):
                file = self.path / PARTS / f"{part.name}.{THUMBNAILS}"
                try:
                    found = read_thumbnails(file, local.tolist())
                except FileNotFoundError:
                    raise StoreError(
                        f"{file}: missing from the index; run `vadindex check {self.path}`"
                    ) from None
                except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for damaged files
                    raise StoreError(f"{file}: unreadable ({str(exc).splitlines()[0]})") from None
                out.update({first + r: (t, b) for r, (t, b) in found.items() if b is not None})
            first += part.segments
        return out

    def faiss_index(self) -> Any:
        """The FAISS index, memory-mapped read-only (importing faiss on first use)."""
        if self._faiss is None:
            from vadindex.index import faiss_index

            self._faiss = faiss_index.read(self.path / self.manifest.faiss_file, mmap=True)
        return self._faiss


def video_cameras(videos: pd.DataFrame) -> np.ndarray:
    """The camera of every video: its ``camera`` column, or, where that is empty (not given at
    build time, or an index older than cameras), a camera of its own (a key no name can take)."""
    own = "\0" + videos["video_id"].astype(str).to_numpy(dtype=object) if len(videos) else np.zeros(0, object)
    if "camera" not in videos.columns:
        return np.asarray(own, dtype=object)
    named = videos["camera"].to_numpy(dtype=object)
    given = np.array([isinstance(c, str) and c != "" for c in named], dtype=bool)
    return np.where(given, named, own).astype(object)


def _numeric(column: Any, dtype: Any) -> np.ndarray:
    """A (possibly nullable) pandas column as a plain numpy array, nulls as -1."""
    import pandas as pd

    return pd.to_numeric(column, errors="coerce").fillna(-1).to_numpy().astype(dtype)


def open_index(path: str | os.PathLike[str], retries: int = 3, with_faiss: bool = True) -> IndexSnapshot:
    """Open the latest committed generation of an index for reading.

    A writer may commit while we read; a file that vanished under us means a newer manifest, so
    the read is retried. The video table is read (:meth:`IndexSnapshot.hold_videos`) and the FAISS
    file memory-mapped here, so the snapshot stays whole when the writer later deletes its
    generation's files; parts are never deleted. ``with_faiss=False`` skips the FAISS file (and importing faiss), for readers such as
    detection that use only the metadata and the vector parts.
    """
    for attempt in range(retries):
        snap = IndexSnapshot(Path(path))
        try:
            snap.hold_videos()
            if with_faiss and snap.manifest.faiss_file:
                snap.faiss_index()
            return snap
        except StoreError:
            if attempt == retries - 1:
                raise
            time.sleep(0.05)
    raise AssertionError("unreachable")
