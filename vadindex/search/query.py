"""A query, end to end: a text or an example image, encoded by the index's model, to ranked segments."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from vadindex.config import DEFAULT_DEVICE, DEFAULT_PRECISION, DEFAULT_TEXT_ENCODER, DEFAULT_TOP_K_RESULTS
from vadindex.errors import InputError
from vadindex.index.cache import IndexCache
from vadindex.index.reader import IndexSnapshot, open_index
from vadindex.models.identity import Encoder, TextEncoder
from vadindex.search.encoders import check_encoder, encode_query_image, load_index_encoder, load_text_encoder
from vadindex.search.vectors import SearchHits, search_hits

if TYPE_CHECKING:
    import pandas as pd


def check_query(text: str | None, image: str | os.PathLike[str] | None, k: int) -> None:
    """Refuse a query with neither or both of a text and an image, an empty text, or ``k < 1``."""
    if (text is None) == (image is None):
        raise InputError("give a query TEXT or --image PATH (one of them)")
    if text is not None and not text.strip():
        raise InputError("empty query text")
    if k < 1:
        raise InputError(f"-k must be at least 1, got {k}")


def encode_query(
    encoder: Encoder, text: str | None = None, image: str | os.PathLike[str] | None = None
) -> np.ndarray:
    """The unit query vector of a text or an example image, encoded now (no cache)."""
    if text is not None:
        return encoder.encode_texts([text])[0]
    assert image is not None
    return encode_query_image(encoder, image)


def query_vector(
    snap: IndexSnapshot,
    text: str | None = None,
    image: str | os.PathLike[str] | None = None,
    *,
    encoder: TextEncoder | Encoder | None = None,
    text_encoder: str = DEFAULT_TEXT_ENCODER,
    device: str = DEFAULT_DEVICE,
    pretrained: str | None = None,
    precision: str = DEFAULT_PRECISION,
) -> np.ndarray:
    """The unit query vector of a text or an example image, loading only what it needs.

    A text's embedding is cached in the index (like prompt embeddings), so a repeated query
    encodes nothing and loads no model; a new text is encoded by :func:`load_text_encoder` (the
    ONNX text tower when it can, no torch). An image needs the whole model, with torch.
    """
    if encoder is not None:
        check_encoder(snap, encoder)
    if text is not None:
        loaded = encoder

        def text_encoder_now() -> TextEncoder:
            return loaded or load_text_encoder(snap, text_encoder, device, pretrained)

        return IndexCache(snap).text_vectors([text], text_encoder_now)[0]
    assert image is not None
    # Looked up on the type: a lazy encoder's attributes may load a model when read.
    if encoder is None or not hasattr(type(encoder), "encode_images"):
        encoder = load_index_encoder(snap, device, pretrained, precision)
    return encode_query_image(encoder, image)  # type: ignore[arg-type]


def query_index(
    index: str | os.PathLike[str] | IndexSnapshot,
    text: str | None = None,
    *,
    image: str | os.PathLike[str] | None = None,
    k: int = DEFAULT_TOP_K_RESULTS,
    video: str | None = None,
    device: str = DEFAULT_DEVICE,
    pretrained: str | None = None,
    precision: str = DEFAULT_PRECISION,
    exact: bool = False,
    text_encoder: str = DEFAULT_TEXT_ENCODER,
    encoder: TextEncoder | Encoder | None = None,
) -> pd.DataFrame:
    """The ``k`` segments most similar to ``text`` (or to ``image``), best first, as a table.

    Args:
        index: the index folder or an open snapshot.
        text, image: the query; exactly one of them.
        k: number of results.
        video: only videos whose name or path matches this glob.
        device, pretrained, precision: how to load the index's model with torch (``pretrained``
            only if the checkpoint moved; ``precision`` only affects image queries).
        exact: scan every segment even when the index is approximate.
        text_encoder: ``auto``, ``onnx`` or ``torch`` (see :func:`load_text_encoder`).
        encoder: the index's model (or text encoder), already loaded.

    Returns:
        A table with :data:`vadindex.search.vectors.RESULT_COLUMNS`.
    """
    hits = query_hits(index, text, image=image, k=k, video=video, device=device, pretrained=pretrained,
                      precision=precision, exact=exact, text_encoder=text_encoder, encoder=encoder)  # fmt: skip
    return hits.to_frame()


def query_hits(
    index: str | os.PathLike[str] | IndexSnapshot,
    text: str | None = None,
    *,
    image: str | os.PathLike[str] | None = None,
    k: int = DEFAULT_TOP_K_RESULTS,
    video: str | None = None,
    device: str = DEFAULT_DEVICE,
    pretrained: str | None = None,
    precision: str = DEFAULT_PRECISION,
    exact: bool = False,
    text_encoder: str = DEFAULT_TEXT_ENCODER,
    encoder: TextEncoder | Encoder | None = None,
) -> SearchHits:
    """:func:`query_index` as numpy columns: what ``vadindex query`` prints, without importing pandas."""
    check_query(text, image, k)
    snap = index if isinstance(index, IndexSnapshot) else open_index(index)
    vector = query_vector(snap, text, image, encoder=encoder, text_encoder=text_encoder, device=device,
                          pretrained=pretrained, precision=precision)  # fmt: skip
    return search_hits(snap, vector, k, video, exact=exact)
