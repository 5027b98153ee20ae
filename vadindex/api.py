"""The Python API: a :class:`VideoIndex` with the same operations as the CLI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vadindex.config import DEFAULT_DEVICE, DEFAULT_TEXT_ENCODER, DEFAULT_TOP_K_RESULTS
from vadindex.detect.pipeline import detect
from vadindex.detect.result import DetectResult
from vadindex.index.manifest import IndexManifest
from vadindex.index.reader import IndexSnapshot, open_index
from vadindex.ingest.build import BuildSummary, build_index
from vadindex.models.identity import Encoder, TextEncoder
from vadindex.search import encoders
from vadindex.search.query import query_index


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

    def __init__(
        self,
        path: str | os.PathLike[str],
        device: str = DEFAULT_DEVICE,
        text_encoder: str = DEFAULT_TEXT_ENCODER,
    ) -> None:
        self.path = Path(path).expanduser()
        self.device = device
        #: How new texts are encoded: ``auto``, ``onnx`` or ``torch`` (see
        #: :func:`vadindex.search.encoders.load_text_encoder`).
        self.text_encoder = text_encoder
        self._snap: IndexSnapshot | None = None
        self._encoder: Encoder | None = None
        self._text: TextEncoder | None = None

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
        """The index's model (torch), loaded once on first use."""
        if self._encoder is None:
            self._encoder = encoders.load_index_encoder(self.snapshot, self.device)
        return self._encoder

    def text_model(self) -> TextEncoder:
        """The encoder of new texts (the ONNX text tower when it can be; the model when it is
        already loaded), loaded once on first use."""
        if self._text is None:
            if self._encoder is not None and self.text_encoder != "onnx":
                return self._encoder
            self._text = encoders.load_text_encoder(self.snapshot, self.text_encoder, self.device)
        return self._text

    def query(
        self,
        text: str | None = None,
        *,
        image: str | os.PathLike[str] | None = None,
        k: int = DEFAULT_TOP_K_RESULTS,
        video: str | None = None,
    ) -> pd.DataFrame:
        """Segments most similar to a text or an example image, best first (a text asked before is
        answered from the index's cache; see :func:`vadindex.search.query.query_index`)."""
        return query_index(self.snapshot, text, image=image, k=k, video=video, encoder=_LazyEncoder(self))

    def detect(self, prompts: str | list[str], **options: Any) -> DetectResult:
        """Score and decide every segment and video (see :func:`vadindex.detect.pipeline.detect`).

        A text encoder is loaded only when some prompt is not in the index's text cache, and then
        kept: later calls with new prompts encode them without loading it again.
        """
        same = options.get("device", self.device) == self.device
        if (
            "pretrained" not in options
            and same
            and options.get("text_encoder", self.text_encoder) == self.text_encoder
        ):
            options.setdefault("encoder", _LazyEncoder(self))
        options.setdefault("device", self.device)
        options.setdefault("text_encoder", self.text_encoder)
        return detect(self.snapshot, prompts, **options)


class _LazyEncoder:
    """The index's encoders, loaded (once, by the :class:`VideoIndex`) only when a text or an image
    must be encoded: texts by :meth:`VideoIndex.text_model`, images by the whole model.

    Its identity is the index's own, so handing it to a query or a detection costs nothing when
    every text is cached; the real encoders are checked against the index when they load.
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
        return self._owner.text_model().encode_texts(texts)
