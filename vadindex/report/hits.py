"""A search's results as one self-contained page of thumbnail cards (``vadindex query --html``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from vadindex.index.reader import IndexSnapshot, open_index
from vadindex.report.options import ReportOptions
from vadindex.report.page import write_page
from vadindex.report.thumbnails import ThumbnailStore


def write_hits_page(
    index: str | os.PathLike[str] | IndexSnapshot,
    hits: pd.DataFrame,
    out: str | os.PathLike[str],
    *,
    query: str | None = None,
    image: str | os.PathLike[str] | None = None,
    options: ReportOptions | None = None,
    **overrides: Any,
) -> Path:
    """Write the results of a query as cards: thumbnail, video, start-end and score, best first.

    Args:
        index: the index searched (folder or snapshot).
        hits: the results (:func:`vadindex.search.query_index`: ``rank, score, video, start, end,
            segment, video_id``...).
        out: the HTML file to write.
        query, image: what was searched for (shown in the heading).
        options: thumbnail size and ``video_root`` (:class:`~vadindex.report.options.ReportOptions`);
            keywords named like its fields override it.

    Returns:
        The path written.
    """
    o = (options or ReportOptions()).replace(**overrides)
    snap = index if isinstance(index, IndexSnapshot) else open_index(index, with_faiss=False)
    cards: list[dict[str, Any]] = []
    notes: dict[str, str] = {}
    if len(hits):
        store = ThumbnailStore(snap, video_root=o.roots, size=o.thumbnail_size)
        rows = [store.segment_row(v, s) for v, s in zip(hits["video_id"], hits["segment"], strict=True)]
        known = [r for r in rows if r is not None]
        by_row = dict(zip(known, store.segments(known) if o.thumbnails else [], strict=False))
        for hit, row in zip(hits.itertuples(index=False), rows, strict=True):
            thumb = by_row.get(row) if row is not None else None
            cards.append({
                "rank": int(hit.rank), "score": float(hit.score), "video": str(hit.video),
                "start": float(hit.start), "end": float(hit.end),
                "uri": thumb.data_uri() if thumb is not None else None,
                "note": thumb.note if thumb is not None else "",
            })  # fmt: skip
        names = dict(zip(snap.videos["video_id"].astype(str), snap.videos["video"].astype(str), strict=True))
        notes = {names.get(v, v): why for v, why in store.notes.items()}
    what = (
        f"“{query}”"
        if query is not None
        else f"images like {os.fspath(image)}"
        if image is not None
        else "a query"
    )
    return write_page(
        out, "hits.html.j2", what=what, index=str(snap.path), model=snap.manifest.identity.describe(),
        cards=cards, notes=notes,
    )  # fmt: skip
