"""Similarities of every segment (and frame) to prompt classes, from the index's cache when it can.

The model is loaded only to encode texts that are not cached yet; the vector parts are read only
for texts whose similarities are not cached yet.
"""

from __future__ import annotations

import os

import numpy as np

from vadindex.config import DEFAULT_DEVICE, DEFAULT_TEXT_ENCODER
from vadindex.detect.prompts import ClassPromptSet, class_similarities
from vadindex.index.cache import IndexCache, nearest_neighbours, text_products
from vadindex.index.reader import IndexSnapshot, open_index
from vadindex.models.identity import TextEncoder
from vadindex.search import encoders


def open_snapshot(path: str | os.PathLike[str], retries: int = 3) -> IndexSnapshot:
    """Open an index for scoring: like :func:`vadindex.index.reader.open_index` but without the FAISS file.

    Detection reads only the metadata, the cache and (on a cache miss) the vector parts, so it skips
    importing faiss, which would cost a noticeable part of an instant rescoring run.
    """
    return open_index(path, retries, with_faiss=False)


def compute_class_similarities(
    snap: IndexSnapshot,
    spec: ClassPromptSet,
    *,
    frames: bool = False,
    encoder: TextEncoder | None = None,
    device: str = DEFAULT_DEVICE,
    pretrained: str | None = None,
    use_cache: bool = True,
    text_encoder: str = DEFAULT_TEXT_ENCODER,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Similarity of every segment (and, with ``frames``, every frame) to every class of ``spec``.

    Text embeddings and text similarities come from the index's cache; a text encoder is loaded
    only to encode texts that are not cached yet (``text_encoder``: ``auto``, ``onnx`` or
    ``torch``, see :func:`vadindex.search.encoders.load_text_encoder`).

    Returns:
        ``(n_segments, n_classes)`` and, with ``frames``, ``(n_frames, n_classes)`` float32 arrays.
    """
    if encoder is not None:
        encoders.check_encoder(snap, encoder)
    loaded: list[TextEncoder] = [encoder] if encoder is not None else []

    def get_encoder() -> TextEncoder:
        if not loaded:
            loaded.append(encoders.load_text_encoder(snap, text_encoder, device, pretrained))
        return loaded[0]

    texts = spec.texts
    if use_cache:
        cache = IndexCache(snap)
        kinds = ("segments", "frames") if frames else ("segments",)
        for kind in kinds:
            if cache.uncached(kind, texts):
                # The vectors are read after the model has loaded (seconds): have the kernel fetch
                # them from disk meanwhile.
                snap.prefetch_vectors(kind)
        text_vectors = cache.text_vectors(texts, get_encoder)
        text_sims = cache.similarities("segments", texts, text_vectors)
        frame_text_sims = cache.similarities("frames", texts, text_vectors) if frames else None
    else:
        text_vectors = np.asarray(get_encoder().encode_texts(texts), dtype=np.float32)
        text_sims = text_products(snap, "segments", text_vectors).T
        frame_text_sims = text_products(snap, "frames", text_vectors).T if frames else None
    weights = spec.text_weights()
    sims = class_similarities(text_sims, text_vectors, weights)
    frame_sims = (
        class_similarities(frame_text_sims, text_vectors, weights) if frame_text_sims is not None else None
    )
    return sims, frame_sims


def load_neighbours(snap: IndexSnapshot, k: int, use_cache: bool = True) -> np.ndarray:
    """Each segment's ``k`` nearest other segments in the index (cached in the index folder)."""
    if use_cache:
        return IndexCache(snap).neighbours(k)
    return nearest_neighbours(snap.vectors(), k)
