"""What an index holds, for ``vadindex info`` (and any page that shows an index)."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from vadindex.index.labels import read_labels
from vadindex.index.manifest import FAILURES
from vadindex.index.reader import IndexSnapshot, open_index


def index_info(index: str | os.PathLike[str] | IndexSnapshot) -> dict[str, Any]:
    """The manifest of the latest commit, with counts the manifest does not hold directly.

    Returns:
        The manifest's fields, with ``parts`` and ``files`` as counts, and ``failures_last_build``,
        ``faiss_covered`` (segments the FAISS file holds), ``precision`` (the image encoder's
        arithmetic over all parts), ``frames_encoded`` and ``frames_reused`` (sampled frames the image
        encoder ran on, and those that reuse an earlier frame's embedding by the change gate;
        frames of parts written before this was recorded count as encoded), ``gate`` (the gate
        settings over all parts), ``bytes`` (the size of the committed files), ``thumbnails``
        (segments with a stored thumbnail, ``build --thumbnails``), ``engines`` (parts built by
        each ``build --engine``), ``search`` (the FAISS index type as built), ``cameras``
        (``named``: videos per named camera; ``own``: videos on a camera of their own), ``labels``
        (the reviewer labels, see :func:`vadindex.index.labels.read_labels`) and ``path``.
    """
    snap = index if isinstance(index, IndexSnapshot) else open_index(index)
    m = snap.manifest
    data = asdict(m)
    data["parts"] = len(m.parts)
    data["files"] = len(m.files)
    data["failures_last_build"] = count_failures(snap.path)
    data["faiss_covered"] = m.faiss_covered
    data["precision"] = sorted({x for p in m.parts for x in p.precision.split(",") if x})
    data["frames_encoded"] = sum(p.frames if p.frames_encoded is None else p.frames_encoded for p in m.parts)
    data["frames_reused"] = m.n_frames - data["frames_encoded"]
    data["gate"] = sorted({x for p in m.parts for x in p.gate.split(",") if x})
    data["bytes"] = sum(int(r.get("bytes", 0)) for r in m.files.values())
    data["thumbnails"] = sum(p.thumbnails for p in m.parts)
    data["engines"] = dict(sorted(Counter(p.engine for p in m.parts).items()))
    data["path"] = str(snap.path)
    named = snap.videos["camera"].dropna().astype(str) if len(snap.videos) else []
    named = [c for c in named if c]
    data["cameras"] = {"named": dict(Counter(named).most_common()), "own": int(len(snap.videos) - len(named))}
    data["labels"] = read_labels(snap).to_dict()
    if m.faiss_file:
        from vadindex.index import faiss_index  # imports faiss

        data["search"] = faiss_index.describe(snap.faiss_index())
    return data


def count_failures(index: str | os.PathLike[str]) -> int:
    """Rows of the index's ``failures.csv`` (0 when absent or unreadable)."""
    try:
        with open(Path(index) / FAILURES, encoding="utf-8") as fh:
            return max(sum(1 for _ in fh) - 1, 0)
    except OSError:
        return 0
