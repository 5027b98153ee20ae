"""Segment thumbnails: a JPEG of the frame at the middle of a segment, from the index, a cache or the video.

A :class:`ThumbnailStore` answers for one index, in this order:

1. a thumbnail the build stored in the index (``vadindex build --thumbnails``), which survives the
   videos being moved or deleted;
2. ``INDEX/cache/thumbs/<video id>/<milliseconds>-<size>.jpg``, keyed by the video's content id and
   the time, written atomically (derived data: delete it at will);
3. the video itself, decoded with a seek to the keyframe before the time
   (:func:`vadindex.ingest.decode.read_frames_at`), after checking that the file at the recorded
   path (remapped by ``--video-root``) is still the video that was indexed;
4. otherwise a placeholder image, with a note saying why (moved, deleted, changed, undecodable):
   never an error.

Reports, the hits page of ``vadindex query --html``, and later the web UI and live alerts use it.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vadindex.config import DEFAULT_THUMBNAIL_SIZE
from vadindex.errors import StoreError, VideoError
from vadindex.files import write_bytes_atomic
from vadindex.index.manifest import CACHE
from vadindex.index.reader import IndexSnapshot, open_index
from vadindex.ingest.decode import read_frames_at
from vadindex.ingest.images import encode_jpeg
from vadindex.ingest.sources import VideoRoots, fingerprint

log = logging.getLogger("vadindex")

#: Folder of cached thumbnails inside an index's cache.
THUMBS = "thumbs"
#: Where each thumbnail came from.
SOURCES = ("index", "cache", "video", "placeholder")


@dataclass(frozen=True)
class Thumbnail:
    """A segment's picture: JPEG bytes, the time shown, where it came from and, for a placeholder,
    why there is no real picture."""

    jpeg: bytes
    #: Seconds from the video's first frame.
    time: float
    #: One of :data:`SOURCES`.
    source: str
    note: str = ""

    @property
    def available(self) -> bool:
        """False for a placeholder."""
        return self.source != "placeholder"

    def data_uri(self) -> str:
        """The image as a ``data:image/jpeg;base64,...`` URI, for self-contained pages."""
        return "data:image/jpeg;base64," + base64.b64encode(self.jpeg).decode("ascii")


@functools.lru_cache(maxsize=8)
def placeholder_jpeg(size: int = DEFAULT_THUMBNAIL_SIZE) -> bytes:
    """A neutral 16:9 JPEG (a grey card with a crossed-out frame) standing in for a missing picture."""
    from PIL import Image, ImageDraw  # only placeholders draw

    w, h = max(16, size), max(9, round(size * 9 / 16))
    image = Image.new("RGB", (w, h), (226, 228, 232))
    draw = ImageDraw.Draw(image)
    m = max(2, h // 4)
    box = (w // 2 - m, h // 2 - m * 3 // 4, w // 2 + m, h // 2 + m * 3 // 4)
    line = max(1, size // 96)
    draw.rectangle(box, outline=(140, 144, 152), width=line)
    draw.line((box[0], box[3], box[2], box[1]), fill=(140, 144, 152), width=line)
    return encode_jpeg(np.asarray(image))


class ThumbnailStore:
    """Thumbnails of one index's segments (see the module docstring for where they come from).

    Args:
        index: the index folder or an open snapshot.
        video_root: ``OLD=NEW`` (or a :class:`~vadindex.ingest.sources.VideoRoots`): videos recorded
            under ``OLD`` are read from ``NEW``.
        size: longest side in pixels of thumbnails decoded from the videos.
        stored: use the thumbnails stored in the index.
        cache: read and write ``INDEX/cache/thumbs``.
        decode: decode thumbnails from the videos when neither has one.
    """

    def __init__(
        self,
        index: str | os.PathLike[str] | IndexSnapshot,
        *,
        video_root: str | VideoRoots | None = None,
        size: int = DEFAULT_THUMBNAIL_SIZE,
        stored: bool = True,
        cache: bool = True,
        decode: bool = True,
    ) -> None:
        self.snapshot = index if isinstance(index, IndexSnapshot) else open_index(index, with_faiss=False)
        self.roots = video_root if isinstance(video_root, VideoRoots) else VideoRoots.parse(video_root)
        self.size = int(size)
        self.use_stored, self.use_cache, self.use_decode = stored, cache, decode
        self.cache_dir = self.snapshot.path / CACHE / THUMBS
        #: ``video id -> note`` for every video that gave a placeholder, and why.
        self.notes: dict[str, str] = {}
        self._problems: dict[str, str] = {}
        videos = self.snapshot.videos
        self._row_of = {str(v): i for i, v in enumerate(videos["video_id"].astype(str))}

    # -- where the videos are ---------------------------------------------------------------

    def video_path(self, video_id: str) -> Path | None:
        """Where the video is read from: its recorded path, remapped by ``video_root``."""
        row = self._row_of.get(str(video_id))
        if row is None:
            return None
        return self.roots.apply(str(self.snapshot.videos["path"].iloc[row]))

    def video_problem(self, video_id: str) -> str:
        """Why the video cannot give thumbnails ("" when it can): missing, not a file, or not the
        content that was indexed (its content id differs). Checked once per video."""
        video_id = str(video_id)
        if video_id not in self._problems:
            self._problems[video_id] = self._check_video(video_id)
        return self._problems[video_id]

    def _check_video(self, video_id: str) -> str:
        path = self.video_path(video_id)
        if path is None:
            return "not in the index"
        recorded = str(self.snapshot.videos["path"].iloc[self._row_of[video_id]])
        where = f"{path}" + (f" (remapped from {recorded})" if str(path) != recorded else "")
        try:
            if not path.exists():
                return f"video not found at {where}; moved or deleted (use --video-root OLD=NEW if it moved)"
            if not path.is_file():
                return f"{where} is not a regular file"
            if fingerprint(path) != video_id:
                return f"{where} is not the video that was indexed (its size or content changed)"
        except OSError as exc:
            return f"cannot read {where} ({exc.strerror or exc})"
        return ""

    # -- thumbnails ----------------------------------------------------------------------------

    def segment(self, row: int) -> Thumbnail:
        """The thumbnail of segment ``row`` (its middle frame)."""
        return self.segments([row])[0]

    def segments(self, rows: Sequence[int], workers: int = 1) -> list[Thumbnail]:
        """Thumbnails of segment ``rows`` (index rows), in the order given; each video is opened
        at most once, ``workers`` videos at a time."""
        rows = [int(r) for r in rows]
        if not rows:
            return []
        segs = self.snapshot.segment_arrays()
        ids = self.snapshot.videos["video_id"].astype(str).to_numpy()
        out: dict[int, Thumbnail] = {}
        if self.use_stored and self.snapshot.has_thumbnails:
            try:
                stored = self.snapshot.stored_thumbnails(rows)
            except StoreError as exc:  # a damaged part file: the videos (or placeholders) stand in
                log.warning("%s; thumbnails are taken from the videos", exc)
                stored = {}
            for row, (time, jpeg) in stored.items():
                out[row] = Thumbnail(jpeg, time, "index")
        rest = [r for r in dict.fromkeys(rows) if r not in out]
        requests = [(str(ids[segs.video[r]]), float(segs.start[r] + segs.end[r]) / 2) for r in rest]
        out.update(zip(rest, self.many(requests, workers), strict=True))
        return [out[r] for r in rows]

    def segment_row(self, video_id: str, segment: int) -> int | None:
        """The index row of segment number ``segment`` of a video (a video's segments are
        consecutive rows from its ``first_row``); ``None`` when there is no such segment."""
        row = self._row_of.get(str(video_id))
        if row is None:
            return None
        videos = self.snapshot.videos
        first, count = int(videos["first_row"].iloc[row]), int(videos["n_segments"].iloc[row])
        return first + int(segment) if 0 <= int(segment) < count else None

    def at(self, video_id: str, time: float) -> Thumbnail:
        """The thumbnail of the frame on screen at ``time`` seconds into video ``video_id``."""
        return self.many([(video_id, time)])[0]

    def many(self, requests: Sequence[tuple[str, float]], workers: int = 1) -> list[Thumbnail]:
        """Thumbnails of ``(video_id, time)`` pairs, in the order given: cached ones from the cache,
        the others decoded (one open and a few seeks per video, ``workers`` videos at a time: PyAV
        and JPEG encoding release the GIL), then cached."""
        out: list[Thumbnail | None] = [None] * len(requests)
        todo: dict[str, list[int]] = {}
        for i, (video_id, time) in enumerate(requests):
            cached = self._cached(str(video_id), time)
            if cached is not None:
                out[i] = Thumbnail(cached, time, "cache")
            else:
                todo.setdefault(str(video_id), []).append(i)

        def decode(item: tuple[str, list[int]]) -> list[Thumbnail]:
            return self._decode(item[0], [float(requests[i][1]) for i in item[1]])

        jobs = list(todo.items())
        if workers > 1 and len(jobs) > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                decoded = list(pool.map(decode, jobs))
        else:
            decoded = [decode(job) for job in jobs]
        for (_, positions), thumbs in zip(jobs, decoded, strict=True):
            for i, thumb in zip(positions, thumbs, strict=True):
                out[i] = thumb
        return out  # type: ignore[return-value]

    def _decode(self, video_id: str, times: list[float]) -> list[Thumbnail]:
        problem = self.video_problem(video_id) if self.use_decode else "decoding is off"
        if not problem:
            path = self.video_path(video_id)
            assert path is not None
            try:
                images = read_frames_at(path, times, self.size)
            except VideoError as exc:
                problem = f"cannot decode {path}: {exc.reason}"
                self._problems[video_id] = problem
            except Exception as exc:  # noqa: BLE001 - one bad video never stops a page
                log.debug("thumbnail of %s failed", path, exc_info=True)
                problem = f"cannot decode {path}: {type(exc).__name__}"
                self._problems[video_id] = problem
            else:
                thumbs = []
                for time, image in zip(times, images, strict=True):
                    jpeg = encode_jpeg(image)
                    self._store(video_id, time, jpeg)
                    thumbs.append(Thumbnail(jpeg, time, "video"))
                return thumbs
        if self.use_decode:
            self.notes.setdefault(video_id, problem)
        return [Thumbnail(placeholder_jpeg(self.size), t, "placeholder", problem) for t in times]

    # -- the cache -----------------------------------------------------------------------------

    def cache_path(self, video_id: str, time: float) -> Path:
        """Where the thumbnail of ``(video_id, time)`` at this store's size is cached."""
        return self.cache_dir / str(video_id) / f"{round(time * 1000):d}-{self.size}.jpg"

    def _cached(self, video_id: str, time: float) -> bytes | None:
        if not self.use_cache:
            return None
        with contextlib.suppress(OSError):
            data = self.cache_path(video_id, time).read_bytes()
            if data[:2] == b"\xff\xd8":
                return data
        return None

    def _store(self, video_id: str, time: float, jpeg: bytes) -> None:
        if not self.use_cache:
            return
        target = self.cache_path(video_id, time)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(target, jpeg, sync=False)
        except OSError as exc:  # a read-only index: thumbnails still work, uncached
            log.debug("cannot cache thumbnails in %s (%s)", self.cache_dir, exc)
            self.use_cache = False
