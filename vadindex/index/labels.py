"""Reviewer labels stored in an index: ``DIR/labels.json``, versioned and written atomically.

A label says that one segment is ``normal`` or ``anomaly`` (optionally of a named class), keyed by
the video's content id and the segment number, so it stays true as the index grows. The file is
not one of the immutable parts: every change rewrites it whole to a temporary file, syncs it and
moves it into place (:func:`vadindex.files.write_text_atomic`), under an ``flock`` of its own so
two reviewers never lose each other's labels, and a build running at the same time is not
disturbed. A crash at any moment leaves the previous file, whole. ``version`` counts the changes;
``format`` is the layout (a newer one is refused)::

    {"format": 1, "version": 3, "updated": "...",
     "labels": [{"video_id": "...", "video": "cam1/a.mp4", "segment": 12, "start": 12.0, "end": 13.0,
                 "label": "anomaly", "class": "Fighting", "added": "..."}, ...]}
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vadindex.config import LABEL_KINDS
from vadindex.errors import InputError, StoreError
from vadindex.files import write_text_atomic
from vadindex.index.manifest import LABELS, LABELS_LOCK, now
from vadindex.index.reader import IndexSnapshot, open_index
from vadindex.index.refs import find_segment

#: Layout of ``labels.json`` this code writes and reads.
LABELS_FORMAT = 1


@dataclass(frozen=True)
class Label:
    """One reviewed segment."""

    video_id: str
    video: str
    segment: int
    start: float
    end: float
    label: str  # "normal" or "anomaly"
    cls: str | None = None
    added: str = ""

    @property
    def key(self) -> tuple[str, int]:
        """What identifies the segment: the video's content id and the segment number."""
        return self.video_id, self.segment

    @property
    def ref(self) -> str:
        """The segment as ``VIDEO_ID:SEGMENT``, the form example classes take."""
        return f"{self.video_id}:{self.segment}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, ``cls`` as ``class``."""
        data = asdict(self)
        data["class"] = data.pop("cls")
        return data


@dataclass(frozen=True)
class LabelSet:
    """Every label of an index and the version of the file they came from (0: no file yet)."""

    version: int = 0
    labels: tuple[Label, ...] = ()
    updated: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with counts."""
        return {
            "version": self.version,
            "updated": self.updated,
            "count": len(self.labels),
            "anomaly": sum(lab.label == "anomaly" for lab in self.labels),
            "normal": sum(lab.label == "normal" for lab in self.labels),
            "labels": [lab.to_dict() for lab in self.labels],
        }


def read_labels(index: str | os.PathLike[str] | IndexSnapshot) -> LabelSet:
    """The labels of an index (an empty set when it has none).

    Raises:
        StoreError: the file is damaged or of a newer format.
    """
    folder = index.path if isinstance(index, IndexSnapshot) else Path(index).expanduser()
    file = folder / LABELS
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return LabelSet()
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"{file}: cannot read the labels ({exc})") from None
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if int(data.get("format", 0)) > LABELS_FORMAT:
            raise StoreError(
                f"{file}: labels of format {data['format']} are newer than this vadindex; upgrade it"
            )
        labels = tuple(
            Label(
                str(d["video_id"]),
                str(d["video"]),
                int(d["segment"]),
                float(d["start"]),
                float(d["end"]),
                _kind(d["label"], str(file)),
                d.get("class") or None,
                str(d.get("added", "")),
            )  # fmt: skip
            for d in data.get("labels", [])
        )
        return LabelSet(int(data["version"]), labels, str(data.get("updated", "")))
    except StoreError:
        raise
    except (ValueError, KeyError, TypeError, InputError) as exc:
        raise StoreError(f"{file}: damaged labels file ({exc})") from None


def _kind(value: Any, where: str) -> str:
    kind = str(value).strip().lower()
    if kind not in LABEL_KINDS:
        raise InputError(f"{where}: label must be one of {', '.join(LABEL_KINDS)}, got {value!r}")
    return kind


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold the labels' own ``flock`` (blocking: a label write takes milliseconds)."""
    try:
        fd = os.open(folder / LABELS_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"{folder}: cannot write labels ({exc.strerror or exc})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _write(folder: Path, labels: list[Label], version: int) -> LabelSet:
    stamp = now()
    body = {"format": LABELS_FORMAT, "version": version, "updated": stamp,
            "labels": [lab.to_dict() for lab in labels]}  # fmt: skip
    try:
        write_text_atomic(folder / LABELS, json.dumps(body, indent=1))
    except OSError as exc:
        raise StoreError(f"{folder / LABELS}: cannot write the labels ({exc.strerror or exc}); "
                         "the previous labels are kept") from None  # fmt: skip
    for stale in folder.glob(f".{LABELS}.tmp-*"):  # left by a writer that crashed mid-write
        with contextlib.suppress(OSError):
            stale.unlink()
    return LabelSet(version, tuple(labels), stamp)


def add_label(
    index: str | os.PathLike[str] | IndexSnapshot, segment: str, label: str, cls: str | None = None
) -> tuple[Label, LabelSet]:
    """Label one segment (replacing an earlier label of the same segment) and store it.

    Args:
        index: the index folder or snapshot.
        segment: ``VIDEO@SECONDS`` or ``VIDEO_ID:SEGMENT`` (see :mod:`vadindex.index.refs`).
        label: ``normal`` or ``anomaly``.
        cls: the class the reviewer saw (an anomaly class of a prompt set, say), if any.

    Returns:
        The new label and the whole set as written.
    """
    snap = index if isinstance(index, IndexSnapshot) else open_index(index, with_faiss=False)
    kind = _kind(label, "label")
    if cls is not None and not cls.strip():
        raise InputError("--class must not be empty")
    row = find_segment(snap, segment)
    segs = snap.segment_arrays()
    video = snap.videos.iloc[int(segs.video[row])]
    new = Label(str(video["video_id"]), str(video["video"]), int(segs.segment[row]), float(segs.start[row]),
                float(segs.end[row]), kind, cls.strip() if cls else None, now())  # fmt: skip
    with _locked(snap.path):
        current = read_labels(snap.path)
        kept = [lab for lab in current.labels if lab.key != new.key]
        written = _write(snap.path, [*kept, new], current.version + 1)
    return new, written


def label_rows(snap: IndexSnapshot, labels: LabelSet) -> np.ndarray:
    """The index row of every label's segment (-1 for a video or segment the index no longer holds)."""
    videos = snap.videos
    where = {str(v): (int(f), int(c)) for v, f, c in
             zip(videos["video_id"], videos["first_row"], videos["n_segments"], strict=True)}  # fmt: skip
    rows = np.full(len(labels.labels), -1, dtype=np.int64)
    for i, lab in enumerate(labels.labels):
        found = where.get(lab.video_id)
        if found is not None and 0 <= lab.segment < found[1]:
            rows[i] = found[0] + lab.segment
    return rows
