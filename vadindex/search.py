"""Text-to-segment and image-to-segment search over an index."""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

import numpy as np
import pandas as pd

from vadindex.config import DEFAULT_TOP_K_RESULTS
from vadindex.encoder import Encoder
from vadindex.errors import InputError, ModelError
from vadindex.store import IndexSnapshot

RESULT_COLUMNS = ["rank", "score", "video", "start", "end", "segment", "start_frame", "end_frame", "video_id"]


def load_index_encoder(snap: IndexSnapshot, device: str = "auto", pretrained: str | None = None) -> Encoder:
    """Load the encoder an index was built with, and refuse any other."""
    from vadindex.encoder import load_encoder

    m = snap.manifest
    source = pretrained or m.pretrained_path or m.pretrained
    if source.startswith("file:"):
        raise ModelError(
            f"{snap.path}: built from checkpoint {source[5:]} which is no longer at its recorded path; "
            "pass it with --pretrained PATH"
        )
    if m.pretrained_path and not pretrained and not Path(m.pretrained_path).is_file():
        raise ModelError(
            f"{snap.path}: checkpoint {m.pretrained_path} is gone; pass the same weights with --pretrained PATH"
        )
    encoder = load_encoder(m.model, source, device)
    check_encoder(snap, encoder)
    return encoder


def check_encoder(snap: IndexSnapshot, encoder: Encoder) -> None:
    """Refuse an encoder that is not the one the index was built with."""
    m = snap.manifest
    if not encoder.identity.same_as(m.identity) or encoder.dim != m.dim:
        raise ModelError(
            f"{snap.path}: index was built with {m.identity.describe()}, not {encoder.identity.describe()}; "
            "query it with the same model"
        )


def encode_query_image(encoder: Encoder, image: str | os.PathLike[str]) -> np.ndarray:
    """Embed an example image, resized and centre-cropped like the indexed frames."""
    from PIL import Image, UnidentifiedImageError

    path = Path(image).expanduser()
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except FileNotFoundError:
        raise InputError(f"{path}: no such image") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path}: not a readable image ({exc})") from None
    size = encoder.image_size
    scale = size / min(rgb.size)
    w, h = max(size, round(rgb.width * scale)), max(size, round(rgb.height * scale))
    rgb = rgb.resize((w, h), Image.Resampling.BICUBIC)
    left, top = (w - size) // 2, (h - size) // 2
    pixels = np.asarray(rgb.crop((left, top, left + size, top + size)))[None]
    return encoder.encode_images(pixels)[0]


def search_vector(
    snap: IndexSnapshot, query: np.ndarray, k: int = DEFAULT_TOP_K_RESULTS, video: str | None = None
) -> pd.DataFrame:
    """The ``k`` segments most similar to a unit query vector, best first.

    Args:
        snap: the index.
        query: ``(dim,)`` unit vector.
        k: number of results.
        video: optional glob on the video name (``fight/*``) or path.

    Returns:
        A table with :data:`RESULT_COLUMNS`.
    """
    if k < 1:
        raise InputError(f"-k must be at least 1, got {k}")
    segs = snap.segments
    q = np.asarray(query, dtype=np.float32).reshape(1, -1)
    if video:
        mask = segs["video"].map(lambda v: fnmatch.fnmatch(v, video) or fnmatch.fnmatch(Path(v).name, video))
        rows = np.flatnonzero(mask.to_numpy())
        if len(rows) == 0:
            return pd.DataFrame(columns=RESULT_COLUMNS)
        sims = snap.vectors(rows) @ q[0]
        top = np.argsort(-sims, kind="stable")[:k]
        ids, scores = rows[top], sims[top]
    else:
        index = snap.faiss_index()
        scores, ids = index.search(q, min(k, index.ntotal))
        keep = ids[0] >= 0
        ids, scores = ids[0][keep], scores[0][keep]
    out = segs.iloc[ids][["video", "start", "end", "segment", "start_frame", "end_frame", "video_id"]].copy()
    out.insert(0, "score", np.asarray(scores, dtype=float))
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out.reset_index(drop=True)[RESULT_COLUMNS]
