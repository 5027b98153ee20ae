"""Similarities of every segment (and frame) to prompt classes, and each segment's novelty, from the
index's cache when it can.

The model is loaded only to encode texts (and example images) that are not cached yet; the vector
parts are read only for texts whose similarities are not cached yet.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vadindex.config import DEFAULT_DEVICE, DEFAULT_EXAMPLE_WEIGHT, DEFAULT_TEXT_ENCODER
from vadindex.detect.novelty import keep_neighbours, max_excluded, novelty_scores
from vadindex.detect.prompts import ClassPromptSet, class_similarities
from vadindex.errors import InputError
from vadindex.index.cache import IndexCache, camera_neighbours, nearest_neighbours, text_products
from vadindex.index.reader import IndexSnapshot, open_index
from vadindex.index.refs import find_segment, parse_segment_ref
from vadindex.models.identity import Encoder, TextEncoder, encodes_images
from vadindex.search import encoders


def open_snapshot(path: str | os.PathLike[str], retries: int = 3) -> IndexSnapshot:
    """Open an index for scoring: like :func:`vadindex.index.reader.open_index` but without the FAISS file.

    Detection reads only the metadata, the cache and (on a cache miss) the vector parts, so it skips
    importing faiss, which would cost a noticeable part of an instant rescoring run.
    """
    return open_index(path, retries, with_faiss=False)


@dataclass(frozen=True)
class ClassSimilarityParts:
    """Similarities of every segment (and frame) to the two halves of each class embedding: its
    texts' ``t_c`` and its examples' ``x_c`` (see :mod:`vadindex.detect.prompts`), which
    :func:`mix_examples` combines for any example weight."""

    text: np.ndarray  # (n, C) X . t_c (0 for a class without texts)
    examples: np.ndarray | None  # (n, C) X . x_c (0 for a class without examples); None: no class has any
    has_text: np.ndarray  # (C,) bool
    has_examples: np.ndarray  # (C,) bool
    cross: np.ndarray  # (C,) t_c . x_c
    frame_text: np.ndarray | None = None
    frame_examples: np.ndarray | None = None

    def mixed(self, weight: float) -> tuple[np.ndarray, np.ndarray | None]:
        """Segment (and frame) similarities to the class embeddings at example weight ``weight``."""
        segs = mix_examples(self.text, self.examples, self.has_text, self.has_examples, self.cross, weight)
        frames = None
        if self.frame_text is not None:
            frames = mix_examples(self.frame_text, self.frame_examples, self.has_text, self.has_examples,
                                  self.cross, weight)  # fmt: skip
        return segs, frames


def mix_examples(
    text: np.ndarray,
    examples: np.ndarray | None,
    has_text: np.ndarray,
    has_examples: np.ndarray,
    cross: np.ndarray,
    weight: float,
) -> np.ndarray:
    """Similarities to ``e_c = normalise((1 - beta) t_c + beta x_c)`` from those to ``t_c`` and ``x_c``.

    ``X . e_c = ((1 - beta) X . t_c + beta X . x_c) / ||(1 - beta) t_c + beta x_c||`` with
    ``||.||^2 = (1 - beta)^2 + beta^2 + 2 beta (1 - beta) t_c . x_c`` (both halves are unit
    vectors); a class with only texts (or only examples) keeps that half.

    Returns:
        ``(n, C)`` float32.
    """
    if examples is None or not np.any(has_examples):
        return np.asarray(text, dtype=np.float32)
    beta = float(weight)
    both = np.asarray(has_text, bool) & np.asarray(has_examples, bool)
    a = np.where(both, 1.0 - beta, np.asarray(has_text, bool).astype(np.float64))
    b = np.where(both, beta, np.asarray(has_examples, bool).astype(np.float64))
    norm = np.sqrt(np.maximum(a * a + b * b + 2 * a * b * np.asarray(cross, np.float64), 1e-12))
    t = np.asarray(text, dtype=np.float32)
    x = np.asarray(examples, dtype=np.float32)
    # Class by class (each class's column contiguous after the transpose, the layout scoring wants).
    out = np.empty((t.shape[1], len(t)), dtype=np.float32)
    for c in range(t.shape[1]):
        out[c] = (a[c] / norm[c]) * t[:, c] + (b[c] / norm[c]) * x[:, c]
    return out.T


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
    example_weight: float = DEFAULT_EXAMPLE_WEIGHT,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Similarity of every segment (and, with ``frames``, every frame) to every class of ``spec``.

    Text embeddings and text similarities come from the index's cache; a text encoder is loaded
    only to encode texts that are not cached yet (``text_encoder``: ``auto``, ``onnx`` or
    ``torch``, see :func:`vadindex.search.encoders.load_text_encoder`), and the whole model only
    for example images not cached yet.

    Returns:
        ``(n_segments, n_classes)`` and, with ``frames``, ``(n_frames, n_classes)`` float32 arrays.
    """
    parts = class_similarity_parts(snap, spec, frames=frames, encoder=encoder, device=device,
                                   pretrained=pretrained, use_cache=use_cache, text_encoder=text_encoder)  # fmt: skip
    return parts.mixed(example_weight)


def class_similarity_parts(
    snap: IndexSnapshot,
    spec: ClassPromptSet,
    *,
    frames: bool = False,
    encoder: TextEncoder | None = None,
    device: str = DEFAULT_DEVICE,
    pretrained: str | None = None,
    use_cache: bool = True,
    text_encoder: str = DEFAULT_TEXT_ENCODER,
) -> ClassSimilarityParts:
    """The text and example halves of every class's similarities (see :class:`ClassSimilarityParts`).

    Texts are encoded by ``encoder`` or the index's text encoder (``text_encoder``), example
    images by ``encoder`` when it encodes images, else by the index's whole model.
    """
    if encoder is not None:
        encoders.check_encoder(snap, encoder)
    text: list[TextEncoder] = [encoder] if encoder is not None else []
    image: list[Encoder] = [encoder] if encodes_images(encoder) else []  # type: ignore[list-item]

    def get_encoder() -> TextEncoder:
        if not text:
            text.append(encoders.load_text_encoder(snap, text_encoder, device, pretrained))
        return text[0]

    def get_image_encoder() -> Encoder:
        if not image:
            loaded = get_encoder() if text else None
            whole = (
                loaded if encodes_images(loaded) else encoders.load_index_encoder(snap, device, pretrained)
            )
            image.append(whole)  # type: ignore[arg-type]
        return image[0]

    cache = IndexCache(snap) if use_cache else None
    texts = spec.texts
    kinds = ("segments", "frames") if frames else ("segments",)
    if cache is not None:
        for kind in kinds:
            if cache.uncached(kind, texts):
                # The vectors are read after the model has loaded (seconds): have the kernel fetch
                # them from disk meanwhile.
                snap.prefetch_vectors(kind)
        text_vectors = cache.text_vectors(texts, get_encoder)
    else:
        text_vectors = (
            np.asarray(get_encoder().encode_texts(texts), dtype=np.float32)
            if texts
            else np.zeros((0, snap.manifest.dim), np.float32)
        )
    weights = spec.text_weights()
    sims = {kind: class_similarities(_products(snap, cache, kind, texts, text_vectors), text_vectors, weights)
            for kind in kinds}  # fmt: skip
    has_text = np.array([bool(c.prompts) for c in spec.classes])
    has_examples = np.array([bool(c.examples) for c in spec.classes])
    n_classes = len(spec.classes)
    cross = np.zeros(n_classes)
    example_sims: dict[str, np.ndarray] = {}
    if has_examples.any():
        centres = np.zeros((n_classes, snap.manifest.dim), dtype=np.float32)
        for c, cls in enumerate(spec.classes):
            if cls.examples:
                vectors = example_vectors(snap, cls.examples, get_image_encoder, cache, f"class {cls.name!r}")
                centres[c] = _unit(vectors.mean(axis=0))
        text_centres = (
            weights @ text_vectors.astype(np.float64) if len(text_vectors) else np.zeros_like(centres)
        )
        text_centres /= np.maximum(np.linalg.norm(text_centres, axis=1, keepdims=True), 1e-12)
        cross = np.where(has_text & has_examples, (text_centres * centres).sum(axis=1), 0.0)
        used = np.flatnonzero(has_examples)
        keys = ["example:" + hashlib.sha256(centres[c].tobytes()).hexdigest()[:24] for c in used]
        for kind in kinds:
            got = _products(snap, cache, kind, keys, centres[used])
            full = np.zeros((len(got), n_classes), dtype=np.float32)
            full[:, used] = got
            example_sims[kind] = full
    return ClassSimilarityParts(
        text=sims["segments"], examples=example_sims.get("segments"), has_text=has_text,
        has_examples=has_examples, cross=cross, frame_text=sims.get("frames"),
        frame_examples=example_sims.get("frames"),
    )  # fmt: skip


def _products(
    snap: IndexSnapshot, cache: IndexCache | None, kind: str, keys: list[str], vectors: np.ndarray
) -> np.ndarray:
    """``(rows, len(keys))`` products of the stored ``kind`` vectors with ``vectors``, cached by key."""
    if cache is not None:
        return cache.similarities(kind, keys, vectors)
    if not keys:
        rows = snap.manifest.n_segments if kind == "segments" else snap.manifest.n_frames
        return np.zeros((rows, 0), np.float32)
    return text_products(snap, kind, vectors).T


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / max(float(np.linalg.norm(x)), 1e-12)).astype(np.float32)


def example_vectors(
    snap: IndexSnapshot,
    examples: Sequence[str],
    get_encoder: Callable[[], Encoder],
    cache: IndexCache | None = None,
    where: str = "examples",
) -> np.ndarray:
    """Unit embeddings of examples: image files through the index's image encoder (cached by file
    content), segments (``VIDEO@SECONDS``, ``VIDEO_ID:SEGMENT``) from the stored vectors.

    Raises:
        InputError: an example that is neither a readable image nor a segment of the index.
    """
    images: list[tuple[int, Path]] = []
    rows: list[tuple[int, int]] = []
    for i, example in enumerate(examples):
        path = Path(example).expanduser()
        if _is_file(path):
            images.append((i, path))
        elif parse_segment_ref(example) is not None:
            rows.append((i, find_segment(snap, example, f"{where}: example {example}")))
        else:
            raise InputError(
                f"{where}: example {example!r} is no image file, nor a segment (VIDEO@SECONDS or VIDEO_ID:SEGMENT)"
            )
    out = np.zeros((len(examples), snap.manifest.dim), dtype=np.float32)
    if rows:
        out[[i for i, _ in rows]] = snap.vectors(np.array([r for _, r in rows], dtype=np.int64))
    if images:

        def encode(files: list[Path]) -> np.ndarray:
            enc = get_encoder()
            return np.stack([encoders.encode_query_image(enc, f) for f in files])

        files = [f for _, f in images]
        vectors = cache.image_vectors(files, encode) if cache is not None else encode(files)
        out[[i for i, _ in images]] = vectors
    return out


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def load_neighbours(snap: IndexSnapshot, k: int, use_cache: bool = True) -> np.ndarray:
    """Each segment's ``k`` nearest other segments in the index (cached in the index folder)."""
    if use_cache:
        return IndexCache(snap).neighbours(k)
    return nearest_neighbours(snap.vectors(), k)


def load_novelty(snap: IndexSnapshot, k: int, gap: float, use_cache: bool = True) -> np.ndarray:
    """Each segment's cosines to its ``k`` nearest candidates of the same camera, best first (NaN
    where it has fewer); :func:`vadindex.detect.novelty.novelty_scores` turns them into novelty.

    Computed once per index generation (:func:`vadindex.index.cache.camera_neighbours`, then
    :func:`vadindex.detect.novelty.keep_neighbours`) and cached in the index folder, so rescoring
    with novelty reads an ``(n, k)`` array.
    """

    def compute() -> np.ndarray:
        segs = snap.segment_arrays()
        excluded = max_excluded(segs.video, segs.start, gap)
        ids, sims = camera_neighbours(snap, snap.segment_cameras(), k + excluded)
        return keep_neighbours(ids, sims, segs.video, segs.start, gap, k)

    if not use_cache:
        return compute()
    cache = IndexCache(snap)
    return cache.derived(f"nov-{cache.model}-{cache.state}-k{k}-gap{gap:g}", compute, {"k": k, "gap": gap})


def segment_novelty(snap: IndexSnapshot, k: int, gap: float, use_cache: bool = True) -> np.ndarray:
    """``nu_i`` of every segment (see :mod:`vadindex.detect.novelty`)."""
    return novelty_scores(load_novelty(snap, k, gap, use_cache), k)
