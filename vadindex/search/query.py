"""A query, end to end: a text or an example image, encoded by the index's model, to ranked segments."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from vadindex.config import DEFAULT_DEVICE, DEFAULT_PRECISION, DEFAULT_TOP_K_RESULTS
from vadindex.errors import InputError
from vadindex.index.reader import IndexSnapshot, open_index
from vadindex.models.identity import Encoder
from vadindex.search.encoders import encode_query_image, load_index_encoder
from vadindex.search.vectors import search_vector


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
    """The unit query vector of a text or an example image."""
    if text is not None:
        return encoder.encode_texts([text])[0]
    assert image is not None
    return encode_query_image(encoder, image)


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
    encoder: Encoder | None = None,
) -> pd.DataFrame:
    """The ``k`` segments most similar to ``text`` (or to ``image``), best first.

    Args:
        index: the index folder or an open snapshot.
        text, image: the query; exactly one of them.
        k: number of results.
        video: only videos whose name or path matches this glob.
        device, pretrained, precision: how to load the index's model (``pretrained`` only if the
            checkpoint moved; ``precision`` only affects image queries).
        exact: scan every segment even when the index is approximate.
        encoder: the index's model, already loaded.

    Returns:
        A table with :data:`vadindex.search.vectors.RESULT_COLUMNS`.
    """
    check_query(text, image, k)
    snap = index if isinstance(index, IndexSnapshot) else open_index(index)
    encoder = encoder or load_index_encoder(snap, device, pretrained, precision)
    return search_vector(snap, encode_query(encoder, text, image), k, video, exact=exact)
