"""The Python API: a :class:`VideoIndex` with the same operations as the CLI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vadindex.config import DEFAULT_DEVICE, DEFAULT_TOP_K_RESULTS
from vadindex.detect.pipeline import detect
from vadindex.detect.result import DetectResult
from vadindex.index.manifest import IndexManifest
from vadindex.index.reader import IndexSnapshot, open_index
from vadindex.ingest.build import BuildSummary, build_index
from vadindex.models.identity import Encoder
from vadindex.search import encoders
from vadindex.search.query import check_query, encode_query
from vadindex.search.vectors import search_vector


class VideoIndex:
    """An index folder: build it once, then search and detect without touching the videos again.

    Example::

        from vadindex import VideoIndex

        VideoIndex.build(["videos/"], "indexes/cams", model="ViT-B-32")
        idx = VideoIndex("indexes/cams")
        idx.query("a person climbing a fence", k=5)
        result = idx.detect("people fighting; a car crash")
        result.videos
    """

    def __init__(self, path: str | os.PathLike[str], device: str = DEFAULT_DEVICE) -> None:
        self.path = Path(path).expanduser()
        self.device = device
        self._snap: IndexSnapshot | None = None
        self._encoder: Encoder | None = None

    @classmethod
    def build(
        cls, sources: list[str | os.PathLike[str]], index: str | os.PathLike[str], **options: Any
    ) -> VideoIndex:
        """Index videos (see :func:`vadindex.ingest.build.build_index` for options); returns the index.

        The build summary is available as ``VideoIndex.last_build``.
        """
        options.setdefault("progress", False)
        summary = build_index(sources, index, **options)
        out = cls(index, options.get("device", DEFAULT_DEVICE))
        out.last_build = summary
        return out

    last_build: BuildSummary | None = None

    def add(self, sources: list[str | os.PathLike[str]], **options: Any) -> BuildSummary:
        """Index more videos into this index (only new ones are encoded)."""
        options.setdefault("progress", False)
        if self._encoder is not None and not {"precision", "backend", "model", "pretrained"} & set(options):
            options.setdefault("encoder", self._encoder)  # the model loaded for queries (fp32)
        self._snap = None
        return build_index(sources, self.path, **options)

    @property
    def snapshot(self) -> IndexSnapshot:
        """The latest committed state (re-read after :meth:`add`)."""
        if self._snap is None:
            self._snap = open_index(self.path)
        return self._snap

    @property
    def manifest(self) -> IndexManifest:
        """The index manifest."""
        return self.snapshot.manifest

    @property
    def segments(self) -> pd.DataFrame:
        """Segment metadata; row i describes vector i."""
        return self.snapshot.segments

    @property
    def videos(self) -> pd.DataFrame:
        """One row per video."""
        return self.snapshot.videos

    @property
    def encoder(self) -> Encoder:
        """The index's model, loaded once on first use."""
        if self._encoder is None:
            self._encoder = encoders.load_index_encoder(self.snapshot, self.device)
        return self._encoder

    def query(
        self,
        text: str | None = None,
        *,
        image: str | os.PathLike[str] | None = None,
        k: int = DEFAULT_TOP_K_RESULTS,
        video: str | None = None,
    ) -> pd.DataFrame:
        """Segments most similar to a text or an example image, best first."""
        check_query(text, image, k)
        return search_vector(self.snapshot, encode_query(self.encoder, text, image), k, video)

    def detect(self, prompts: str | list[str], **options: Any) -> DetectResult:
        """Score and decide every segment and video (see :func:`vadindex.detect.pipeline.detect`).

        The model is loaded only when some prompt is not in the index's text cache, and then kept:
        later calls with new prompts encode them without loading it again.
        """
        if "pretrained" not in options and options.get("device", self.device) == self.device:
            options.setdefault("encoder", self._encoder if self._encoder is not None else _LazyEncoder(self))
        options.setdefault("device", self.device)
        return detect(self.snapshot, prompts, **options)


class _LazyEncoder:
    """The index's encoder, loaded (once, by the :class:`VideoIndex`) only when a text must be encoded.

    Its identity is the index's own, so handing it to :func:`vadindex.detect.pipeline` costs nothing
    when every prompt is cached; the real model is checked against the index when it loads.
    """

    def __init__(self, owner: VideoIndex) -> None:
        self._owner = owner
        m = owner.manifest
        self.identity = m.identity
        self.dim = m.dim
        self.logit_scale = m.logit_scale

    @property
    def image_size(self) -> int:
        return self._owner.encoder.image_size

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        return self._owner.encoder.encode_images(pixels)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return self._owner.encoder.encode_texts(texts)
