"""Writing an index: the one writer appends videos and commits each batch as a new generation.

A commit writes one new part and the new video table (and, now and then, the FAISS file) under a
new generation number, then replaces ``manifest.json``: the commit point. The FAISS file may cover
only the first ``faiss_rows`` segments: rewriting a large file at every commit would make a build's
writes grow with the square of its size, so during a build it is rewritten only when the segments
it lacks exceed a quarter of those it holds, and always at the end of a build.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vadindex import __version__
from vadindex.config import DEFAULT_ENGINE, DEFAULT_INDEX_TYPE
from vadindex.errors import StoreError
from vadindex.files import (
    atomic_path,
    file_record,
    save_npy,
    save_npy_blocks,
    save_parquet,
    write_text_atomic,
)
from vadindex.index import faiss_index
from vadindex.index.lock import IndexLock, lock_index
from vadindex.index.manifest import (
    FAILURES,
    FORMAT_COMPLETE,
    FORMAT_VERSION,
    LIVE_VIDEO_COLUMNS,
    MANIFEST,
    OWN_FILE,
    OWN_PART,
    PARTS,
    SEGMENT_COLUMNS,
    VIDEO_COLUMNS,
    IndexManifest,
    Part,
    now,
)
from vadindex.index.reader import IndexSnapshot
from vadindex.index.thumbs import THUMBNAILS, save_thumbnails
from vadindex.models.identity import ModelIdentity

log = logging.getLogger("vadindex")

#: A commit rewrites the FAISS file when the rows it lacks would exceed this fraction of the rows it
#: holds (so a build writes the file O(log n) times, about 5x its final size in all)...
FAISS_TAIL_FRACTION = 0.25
#: ... or when the index would hold at most this many segments (files of a few tens of MB).
FAISS_ALWAYS_WRITE_ROWS = 50_000


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
    #: ``build --thumbnails``: one row per segment, ``time`` (seconds) and ``jpeg`` (bytes or ``None``).
    thumbnails: pd.DataFrame | None = None
    #: Per frame, whether it was encoded (``False``: it reuses the embedding of the frame before it,
    #: by the change gate); ``None``: every frame was encoded.
    encoded: np.ndarray | None = None
    #: The change gate's settings (:meth:`vadindex.ingest.gate.GateSettings.describe`, or ``off``).
    gate: str = ""


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
    #: FAISS index type (:data:`vadindex.config.INDEX_TYPES`); ``None`` keeps the index's, else the default.
    index_type: str | None = None
    #: The build engine recorded in each part this writer commits (``build --engine``).
    engine: str = DEFAULT_ENGINE
    _lock: IndexLock | None = None
    _faiss: Any = None
    _videos: pd.DataFrame | None = None
    _known: set[str] = field(default_factory=set)
    _pending: list[PendingVideo] = field(default_factory=list)
    #: Guards ``_pending`` between :meth:`add` and a :meth:`commit` running in another thread.
    _queue: threading.Lock = field(default_factory=threading.Lock)

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
                created = now()
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
                    created=created,
                    updated=created,
                )
                self._videos = pd.DataFrame(columns=VIDEO_COLUMNS)
                self._faiss = faiss_index.new_index(self.dim, "flat")
            faiss_index.check_index_type(self.manifest.index_type)
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
        with self._queue:
            self._known.add(str(item.video["video_id"]))
            self._pending.append(item)

    def commit(self, final: bool = False) -> None:
        """Write the queued videos as one new part and a new generation, manifest last.

        The FAISS file is rewritten only when the rows it lacks grow past ``FAISS_TAIL_FRACTION`` of
        those it holds, unless ``final`` (the end of a build), which always leaves it covering every
        segment, writing a generation for that alone if nothing is queued.

        The videos queued when it starts are committed; one thread may go on calling :meth:`add`
        meanwhile (a Ray driver takes in results while the last ones are written), and what it adds
        waits for the next commit.

        Raises:
            StoreError: the files cannot be written (disk full, say). The previous commit stays
                intact on disk, and the queued videos stay queued, so the commit may be retried.
        """
        assert self.manifest is not None and self._videos is not None
        if not self._pending and not (final and self.manifest.faiss_covered < self.manifest.n_segments):
            return
        with self._queue:
            batch, self._pending = self._pending, []
        try:
            self._commit(batch, final)
        except OSError as exc:
            self._requeue(batch)
            self._rollback_faiss()
            raise StoreError(
                f"{self.path}: cannot write the index ({exc.strerror or exc}); it still holds its last commit "
                f"(generation {self.manifest.generation}, {self.manifest.n_videos} videos)"
            ) from None
        except BaseException:
            self._requeue(batch)
            self._rollback_faiss()
            raise

    def _requeue(self, batch: list[PendingVideo]) -> None:
        with self._queue:
            self._pending = batch + self._pending

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
        if not m.faiss_file:
            return faiss_index.new_index(self.dim, "flat")
        file = self.path / m.faiss_file
        index = faiss_index.read(file)
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

    def _commit(self, pending: list[PendingVideo], final: bool = False) -> None:
        assert self.manifest is not None and self._videos is not None
        m = self.manifest
        gen = m.generation + 1
        row0, frame0 = m.n_segments, m.n_frames
        files = {k: v for k, v in m.files.items() if k.startswith(f"{PARTS}/")}
        written: dict[str, Callable[[Path], dict[str, Any] | None]] = {}
        parts = m.parts
        videos = self._videos
        vectors = np.zeros((0, self.dim), np.float32)  # a final commit may only complete the FAISS file
        if pending:
            part = f"{gen:06d}"
            # Whole-part operations, not one per video: a Ray driver commits thousands of videos a
            # minute, and per-video DataFrame copies were most of a commit's time.
            added = now()
            n_segs = np.array([len(item.segments) for item in pending], dtype=np.int64)
            n_frames = np.array([len(item.frame_vectors) for item in pending], dtype=np.int64)
            first_rows = row0 + np.cumsum(n_segs) - n_segs
            first_frames = frame0 + np.cumsum(n_frames) - n_frames
            video_rows = [
                dict(item.video, first_row=int(first), added=added)
                for item, first in zip(pending, first_rows, strict=True)
            ]
            row0 += int(n_segs.sum())
            frame0 += int(n_frames.sum())
            precision = ",".join(sorted({x for item in pending for x in item.precision.split(",") if x}))
            segments = pd.concat([item.segments for item in pending], ignore_index=True)[SEGMENT_COLUMNS]
            segments["frame_row"] = segments["frame_row"].to_numpy(np.int64) + np.repeat(first_frames, n_segs)
            vectors = np.concatenate([item.segment_vectors for item in pending], dtype=np.float32)
            frame_blocks = [item.frame_vectors for item in pending]  # written one after another
            written[f"{PARTS}/{part}.vectors.npy"] = lambda f: save_npy(f, vectors.astype(np.float16))
            written[f"{PARTS}/{part}.frames.npy"] = lambda f: save_npy_blocks(f, frame_blocks, np.float16)
            encoded = np.concatenate(
                [
                    np.ones(len(item.frame_vectors), bool) if item.encoded is None else item.encoded
                    for item in pending
                ],
                dtype=bool,
            )
            if len(encoded) != int(n_frames.sum()):
                raise ValueError(
                    f"{len(encoded)} encoded flags for {int(n_frames.sum())} frames"
                )  # a bug, not input
            written[f"{PARTS}/{part}.encoded.npy"] = lambda f: save_npy(f, encoded)
            written[f"{PARTS}/{part}.segments.parquet"] = lambda f: save_parquet(f, segments)
            thumbs = _part_thumbnails(pending)
            if thumbs is not None:
                written[f"{PARTS}/{part}.{THUMBNAILS}"] = lambda f: save_thumbnails(f, *thumbs)
            live = [c for c in LIVE_VIDEO_COLUMNS if any(c in v for v in video_rows)]
            new_videos = pd.DataFrame(video_rows, columns=VIDEO_COLUMNS + live)
            videos = new_videos if videos.empty else pd.concat([videos, new_videos], ignore_index=True)
            n_thumbs = 0 if thumbs is None else sum(b is not None for b in thumbs[1])
            gate = ",".join(sorted({x for item in pending for x in item.gate.split(",") if x}))
            new_part = Part(part, len(segments), int(n_frames.sum()), precision, n_thumbs, self.engine)
            parts = (*parts, replace(new_part, frames_encoded=int(encoded.sum()), gate=gate))
        # Added in place, or rebuilt (auto crossing to IVF, a new --index-type) from the float16 parts.
        index = faiss_index.add(self._faiss, vectors, m.index_type, self._committed_vectors)
        videos_file = f"videos.g{gen:06d}.parquet"
        written[videos_file] = lambda f: save_parquet(f, videos)
        covered = m.faiss_covered if m.faiss_file else 0  # no file yet: the test below writes one
        rewrite = (
            final
            or index is not self._faiss  # rebuilt: the old file is of another structure
            or row0 <= FAISS_ALWAYS_WRITE_ROWS
            or row0 - covered > FAISS_TAIL_FRACTION * covered
        )
        if rewrite:
            faiss_file, covered = f"index.g{gen:06d}.faiss", row0
            written[faiss_file] = lambda f: faiss_index.save(f, index)
        else:
            faiss_file = m.faiss_file
            if faiss_file in m.files:
                files[faiss_file] = m.files[faiss_file]
        for name, save in written.items():
            files[name] = save(self.path / name) or file_record(self.path / name)
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
            updated=now(),
            vadindex_version=__version__,
            files=files,
        )
        write_text_atomic(self.path / MANIFEST, new.to_json())  # the commit
        self.manifest, self._videos, self._faiss = new, videos, index
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


def _part_thumbnails(pending: list[PendingVideo]) -> tuple[list[float], list[bytes | None]] | None:
    """The stored thumbnails of a part, one per segment in row order (``None`` where a video has
    none); ``None`` when no video of the part has any."""
    if all(item.thumbnails is None for item in pending):
        return None
    times: list[float] = []
    blobs: list[bytes | None] = []
    for item in pending:
        n = len(item.segments)
        if item.thumbnails is None or len(item.thumbnails) != n:
            times += [float("nan")] * n
            blobs += [None] * n
        else:
            times += item.thumbnails["time"].astype(float).tolist()
            blobs += [b if isinstance(b, bytes) and b else None for b in item.thumbnails["jpeg"]]
    return times, blobs


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
