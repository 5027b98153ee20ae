"""``vadindex query --unusual``: segments ranked by novelty, over the index or within a query's hits."""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

import numpy as np
import pandas as pd

from vadindex.config import (
    DEFAULT_DEVICE,
    DEFAULT_NOVELTY_GAP,
    DEFAULT_PRECISION,
    DEFAULT_TEXT_ENCODER,
    DEFAULT_TOP_K_RESULTS,
    DEFAULT_UNUSUAL_K,
    UNUSUAL_POOL_FACTOR,
)
from vadindex.detect.similarity import segment_novelty
from vadindex.errors import InputError
from vadindex.index.reader import IndexSnapshot, open_index
from vadindex.models.identity import Encoder
from vadindex.search.query import query_index
from vadindex.search.vectors import RESULT_COLUMNS

#: Columns of :func:`query_unusual`'s table: the query's, with ``novelty`` after ``score``.
UNUSUAL_COLUMNS = [*RESULT_COLUMNS[:2], "novelty", *RESULT_COLUMNS[2:]]


def query_unusual(
    index: str | os.PathLike[str] | IndexSnapshot,
    text: str | None = None,
    *,
    image: str | os.PathLike[str] | None = None,
    k: int = DEFAULT_TOP_K_RESULTS,
    video: str | None = None,
    novelty: int = DEFAULT_UNUSUAL_K,
    novelty_gap: float = DEFAULT_NOVELTY_GAP,
    device: str = DEFAULT_DEVICE,
    pretrained: str | None = None,
    precision: str = DEFAULT_PRECISION,
    exact: bool = False,
    text_encoder: str = DEFAULT_TEXT_ENCODER,
    encoder: Encoder | None = None,
    use_cache: bool = True,
) -> pd.DataFrame:
    """The ``k`` most unusual segments (highest novelty, see :mod:`vadindex.detect.novelty`), over the
    whole index or, with a text or image query, among its ``k *`` :data:`UNUSUAL_POOL_FACTOR` best hits.

    Args:
        index: the index folder or an open snapshot.
        text, image: an optional query (at most one).
        k: number of results.
        video: only videos whose name or path matches this glob.
        novelty, novelty_gap: the novelty's ``K`` and gap (seconds).
        device, pretrained, precision, exact, text_encoder, encoder: as for
            :func:`vadindex.search.query.query_index`.
        use_cache: read and write the index's novelty cache.

    Returns:
        A table with :data:`UNUSUAL_COLUMNS`, most unusual first; ``score`` is the query's cosine,
        or the novelty when there is no query.
    """
    if text is not None and image is not None:
        raise InputError("give a query TEXT or --image PATH, not both")
    if k < 1:
        raise InputError(f"-k must be at least 1, got {k}")
    if novelty < 1:
        raise InputError(f"--novelty must be at least 1 for --unusual, got {novelty}")
    snap = index if isinstance(index, IndexSnapshot) else open_index(index)
    nu = segment_novelty(snap, novelty, novelty_gap, use_cache)
    if text is not None or image is not None:
        hits = query_index(snap, text, image=image, k=k * UNUSUAL_POOL_FACTOR, video=video, device=device,
                           pretrained=pretrained, precision=precision, exact=exact, text_encoder=text_encoder,
                           encoder=encoder)  # fmt: skip
        first = pd.Series(snap.videos["first_row"].to_numpy(), index=snap.videos["video_id"].astype(str))
        rows = (
            first.reindex(hits["video_id"].astype(str)).to_numpy().astype(np.int64)
            + hits["segment"].to_numpy()
        )
        hits.insert(2, "novelty", nu[rows])
        order = np.lexsort((rows, -nu[rows]))[:k]
        out = hits.iloc[order].reset_index(drop=True)
        out["rank"] = np.arange(1, len(out) + 1)
        return out[UNUSUAL_COLUMNS]
    rows = np.arange(len(nu))
    if video:
        names = snap.videos["video"].astype(str).to_numpy()
        paths = snap.videos["path"].astype(str).to_numpy()
        match = np.array([fnmatch.fnmatch(n, video) or fnmatch.fnmatch(Path(n).name, video)
                          or fnmatch.fnmatch(p, video) for n, p in zip(names, paths, strict=True)], dtype=bool)  # fmt: skip
        rows = rows[match[snap.segment_arrays().video]]
    top = rows[np.lexsort((rows, -nu[rows]))[:k]]
    segs = snap.segments
    out = pd.DataFrame(
        {
            "rank": np.arange(1, len(top) + 1),
            "score": nu[top],
            "novelty": nu[top],
            **{c: segs[c].to_numpy()[top] for c in RESULT_COLUMNS[2:]},
        }  # fmt: skip
    )
    return out[UNUSUAL_COLUMNS]
