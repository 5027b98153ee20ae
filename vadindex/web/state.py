"""What the server keeps between requests: the index as last committed, the model, and small caches.

:class:`IndexState` follows the index folder: every request asks it for the current
:class:`IndexView`, and when a build has committed since (the manifest file changed and names a
new generation) it opens the new snapshot, so new videos are searchable without a restart. It only
ever reads the index (it never takes the writer's lock); what it writes goes to the index's
``cache/`` folder (text embeddings, similarities, thumbnails), like ``vadindex detect``.

The model is loaded once, by the first request that encodes something (a text or an image not seen
before); encodes run one at a time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import numpy as np

from vadindex.config import DEFAULT_DEVICE, DEFAULT_THUMBNAIL_SIZE
from vadindex.errors import InputError, StoreError
from vadindex.evaluate.annotations import Annotation, load_annotations
from vadindex.index.manifest import MANIFEST, IndexManifest, read_manifest
from vadindex.index.reader import IndexSnapshot, open_index
from vadindex.ingest.sources import VideoRoots
from vadindex.models.identity import Encoder, TextEncoder, encodes_images
from vadindex.report.thumbnails import ThumbnailStore
from vadindex.search import encoders

log = logging.getLogger("vadindex")

#: Query texts whose embeddings are kept in memory (a repeated query encodes nothing).
TEXT_VECTORS_KEPT = 2048
#: Uploaded query images whose embeddings are kept, so that a search by image has a URL.
UPLOADS_KEPT = 256
#: Prompt sets whose class similarities are kept in memory per index generation.
CLASS_SIMS_KEPT = 4
#: A segment id is ``<video id>-<segment number>``: the video's content id and the segment's
#: position in it, so an id means the same segment in every generation, and an id taken from
#: another index names nothing here.
SEGMENT_ID = re.compile(r"([A-Za-z0-9_]{1,64})-(\d{1,9})")
VIDEO_ID = re.compile(r"[A-Za-z0-9_]{1,64}")


class NotFound(InputError):
    """An id that names nothing in this index (answered with 404)."""


class LRU:
    """A small thread-safe least-recently-used mapping."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


class IndexView:
    """One committed generation of the index and what the server derives from it (a snapshot never
    changes, so neither does a view)."""

    def __init__(self, snap: IndexSnapshot, roots: VideoRoots, thumbnail_size: int) -> None:
        self.snap = snap
        self.manifest: IndexManifest = snap.manifest
        self.generation = snap.manifest.generation
        videos = snap.videos
        self.video_ids = videos["video_id"].astype(str).to_numpy()
        self.video_names = videos["video"].astype(str).to_numpy()
        n = len(videos)
        self.first_row = videos["first_row"].to_numpy(np.int64) if n else np.zeros(0, np.int64)
        self.n_segments = videos["n_segments"].to_numpy(np.int64) if n else np.zeros(0, np.int64)
        self._row_of = {v: i for i, v in enumerate(self.video_ids)}
        self.thumbs = ThumbnailStore(snap, video_root=roots, size=thumbnail_size)
        #: Class similarities by prompt set, kept for instant rescoring (see :mod:`vadindex.web.review`).
        self.class_sims = LRU(CLASS_SIMS_KEPT)
        self.neighbours = LRU(2)
        self.compute_lock = threading.Lock()

    def video_row(self, video_id: str) -> int | None:
        """The video's row in the video table, or ``None`` (an unknown or malformed id)."""
        if not VIDEO_ID.fullmatch(video_id):
            return None
        return self._row_of.get(video_id)

    def segment_id(self, video_row: int, segment: int) -> str:
        """The id of segment number ``segment`` of the video in row ``video_row``."""
        return f"{self.video_ids[video_row]}-{int(segment)}"

    def segment_row(self, segment_id: str) -> int | None:
        """The index row of a segment id, or ``None`` (unknown, malformed, or out of range)."""
        match = SEGMENT_ID.fullmatch(segment_id)
        if match is None:
            return None
        video = self._row_of.get(match.group(1))
        number = int(match.group(2))
        if video is None or not 0 <= number < self.n_segments[video]:
            return None
        return int(self.first_row[video] + number)

    def require_segment(self, segment_id: str) -> int:
        """:meth:`segment_row`, or :class:`NotFound`."""
        row = self.segment_row(segment_id) if len(segment_id) <= 100 else None
        if row is None:
            raise NotFound(f"no segment {segment_id[:100]!r} in this index")
        return row

    def require_video(self, video_id: str) -> int:
        """:meth:`video_row`, or :class:`NotFound`."""
        row = self.video_row(video_id) if len(video_id) <= 100 else None
        if row is None:
            raise NotFound(f"no video {video_id[:100]!r} in this index")
        return row

    def video_rows(self, video_row: int) -> np.ndarray:
        """Index rows of a video's segments, in time order."""
        first = int(self.first_row[video_row])
        return np.arange(first, first + int(self.n_segments[video_row]), dtype=np.int64)


class IndexState:
    """The index a server serves, re-opened whenever a build commits a new generation.

    Args:
        index: the index folder.
        video_root: ``OLD=NEW`` for footage that moved (thumbnails and playback).
        thumbnail_size: longest side of thumbnails decoded from the videos.
        annotations: a temporal annotation file, shown as ground truth on the review page.
        annotation_format: its format (``auto``, ``ucf-crime``, ``xd-violence``).
        device: where the model runs once it is needed.
    """

    def __init__(
        self,
        index: str | os.PathLike[str],
        *,
        video_root: str | VideoRoots | None = None,
        thumbnail_size: int = DEFAULT_THUMBNAIL_SIZE,
        annotations: str | os.PathLike[str] | None = None,
        annotation_format: str = "auto",
        device: str = DEFAULT_DEVICE,
    ) -> None:
        self.path = Path(index).expanduser()
        self.roots = video_root if isinstance(video_root, VideoRoots) else VideoRoots.parse(video_root)
        self.thumbnail_size = int(thumbnail_size)
        self.device = device
        self.annotations_file = os.fspath(annotations) if annotations else None
        self.annotation_format = annotation_format
        self.annotations: list[Annotation] | None = (
            load_annotations(annotations, annotation_format) if annotations else None
        )
        self._lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self._encoder: Encoder | None = None
        self._text: TextEncoder | None = None
        self.text_vectors = LRU(TEXT_VECTORS_KEPT)
        self.uploads = LRU(UPLOADS_KEPT)
        self._stamp = _stamp(self.path)
        self._view = IndexView(open_index(self.path), self.roots, self.thumbnail_size)

    # -- the index ---------------------------------------------------------------------------

    def view(self) -> IndexView:
        """The latest committed generation (re-opened when the manifest changed since last asked)."""
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return self._view
        with self._lock:
            if stamp != self._stamp:
                manifest = read_manifest(self.path)  # a clear StoreError when the index went away
                if (
                    manifest.generation != self._view.generation
                    or manifest.created != self._view.manifest.created
                ):
                    self._view = IndexView(open_index(self.path), self.roots, self.thumbnail_size)
                    log.info("index %s: now at generation %d", self.path, self._view.generation)
                self._stamp = stamp
            return self._view

    # -- the model ---------------------------------------------------------------------------

    @property
    def model_loaded(self) -> bool:
        """True once a request has loaded a model (the text tower, or the whole model)."""
        return self._text is not None or self._encoder is not None

    def text_encoder(self) -> TextEncoder:
        """The index's text encoder, loaded by the first caller (the others wait for it): its text
        tower in ONNX Runtime when exported on this machine (no torch), else the whole model."""
        if self._text is None:
            with self._encode_lock:
                if self._text is None:
                    view = self.view()
                    log.info("loading the text encoder of %s", view.manifest.identity.describe())
                    self._text = encoders.load_text_encoder(view.snap, "auto", self.device)
                    if encodes_images(self._text):  # the whole model: images need no second one
                        self._encoder = self._text  # type: ignore[assignment]
        return self._text

    def encoder(self) -> Encoder:
        """The index's whole model (image uploads), loaded by the first caller."""
        if self._encoder is None:
            with self._encode_lock:
                if self._encoder is None:
                    view = self.view()
                    log.info("loading %s", view.manifest.identity.describe())
                    self._encoder = encoders.load_index_encoder(view.snap, self.device)
        return self._encoder

    def lazy_encoder(self) -> Encoder:
        """An encoder that loads a model only if something is encoded (for the similarity cache,
        which encodes only texts it does not hold)."""
        return _LazyEncoder(self, self.view().manifest)

    def encode(self, fn: Callable[[Encoder], np.ndarray]) -> np.ndarray:
        """Run ``fn(encoder)`` on the whole model, one encode at a time."""
        encoder = self.encoder()
        with self._encode_lock:
            return fn(encoder)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Embed texts with the text encoder, one encode at a time."""
        encoder = self.text_encoder()
        with self._encode_lock:
            return encoder.encode_texts(texts)

    def text_vector(self, text: str) -> np.ndarray:
        """The unit embedding of a query text (kept for repeated queries).

        Encodes run one at a time, each as its request arrives. Batching the texts of concurrent
        requests was measured slower over HTTP (56 against 94-99 requests/s with 50 clients on the
        demo index, BENCHMARKS.md): the text tower releases the GIL, so one request encodes while
        the others parse, search and answer, and a batch made every request wait for the slowest
        text, then compete for the GIL all at once.
        """
        found = self.text_vectors.get(text)
        if found is None:
            found = self.encode_texts([text])[0]
            self.text_vectors.put(text, found)
        return found

    def remember_upload(self, data: bytes, vector: np.ndarray) -> str:
        """Keep an uploaded image's embedding; returns the key a search URL names it by."""
        key = hashlib.sha256(data).hexdigest()[:20]
        self.uploads.put(key, vector)
        return key


class _LazyEncoder:
    """The index's encoder as far as the similarity cache can tell, loaded on the first encode."""

    def __init__(self, state: IndexState, manifest: IndexManifest) -> None:
        self._state = state
        self.identity = manifest.identity
        self.dim = manifest.dim
        self.logit_scale = manifest.logit_scale
        self.image_size = 0

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return self._state.encode_texts(texts)

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        return self._state.encode(lambda e: e.encode_images(pixels))


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when a writer replaces the manifest (a new file: inode, time, size)."""
    try:
        st = os.stat(path / MANIFEST)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the index ({exc.strerror or exc})") from None
    return (st.st_ino, st.st_mtime_ns, st.st_size)
