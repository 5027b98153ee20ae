"""Naming one segment of an index: ``VIDEO@SECONDS`` (the segment on screen at that time) or
``VIDEO_ID:SEGMENT`` (a video's content id, or its name, and the segment number), as ``query`` and
``detect`` print them."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vadindex.errors import InputError
from vadindex.index.reader import IndexSnapshot

_AT_TIME = re.compile(r"^(?P<video>.+)@(?P<seconds>[0-9]*\.?[0-9]+)$")
_SEGMENT_NUMBER = re.compile(r"^(?P<video>.+):(?P<segment>[0-9]+)$")


@dataclass(frozen=True)
class SegmentRef:
    """A parsed reference: a video and either a time or a segment number."""

    text: str
    video: str
    seconds: float | None = None
    segment: int | None = None


def parse_segment_ref(text: str) -> SegmentRef | None:
    """``VIDEO@SECONDS`` or ``VIDEO_ID:SEGMENT`` as a :class:`SegmentRef`; ``None`` for anything else."""
    value = str(text).strip()
    found = _AT_TIME.match(value)
    if found:
        seconds = float(found["seconds"])
        return SegmentRef(value, found["video"], seconds=seconds) if math.isfinite(seconds) else None
    found = _SEGMENT_NUMBER.match(value)
    if found:
        return SegmentRef(value, found["video"], segment=int(found["segment"]))
    return None


def find_video(snap: IndexSnapshot, name: str, where: str) -> int:
    """Row of the video called ``name`` in the video table: its content id, its name as indexed, its
    path, or (when only one video has it) its file name.

    Raises:
        InputError: no such video, or a file name several videos share.
    """
    videos = snap.videos
    for column in ("video_id", "video", "path"):
        hit = np.flatnonzero(videos[column].astype(str).to_numpy() == name)
        if len(hit):
            return int(hit[0])
    base = np.array([Path(str(v)).name for v in videos["video"]], dtype=object)
    hit = np.flatnonzero(base == Path(name).name)
    if len(hit) == 1:
        return int(hit[0])
    if len(hit) > 1:
        raise InputError(
            f"{where}: {len(hit)} videos are called {Path(name).name!r}; give the path or the id"
        )
    raise InputError(f"{where}: no video {name!r} in {snap.path}")


def find_segment(snap: IndexSnapshot, ref: str | SegmentRef, where: str | None = None) -> int:
    """The index row of the segment a reference names.

    ``VIDEO@SECONDS`` is the segment whose span ``[start, end)`` holds the time (the last segment
    for a time in a trailing part shorter than a segment, which the index does not keep).

    Raises:
        InputError: not a reference, no such video, or no segment there.
    """
    parsed = parse_segment_ref(ref) if isinstance(ref, str) else ref
    text = ref if isinstance(ref, str) else ref.text
    where = where or text
    if parsed is None:
        raise InputError(f"{where}: not a segment; write VIDEO@SECONDS or VIDEO_ID:SEGMENT")
    row = find_video(snap, parsed.video, where)
    video = snap.videos.iloc[row]
    first, count = int(video["first_row"]), int(video["n_segments"])
    segs = snap.segment_arrays()
    if parsed.segment is not None:
        if parsed.segment >= count:
            raise InputError(f"{where}: {video['video']} has segments 0 to {count - 1}")
        return first + parsed.segment
    start, end = segs.start[first : first + count], segs.end[first : first + count]
    assert parsed.seconds is not None
    inside = np.flatnonzero((start <= parsed.seconds) & (parsed.seconds < end))
    if len(inside):
        return first + int(inside[0])
    duration = float(video["duration"]) if video["duration"] == video["duration"] else float(end[-1])
    if count and end[-1] <= parsed.seconds <= max(duration, float(end[-1])):
        return first + count - 1
    raise InputError(
        f"{where}: {video['video']} has no segment at {parsed.seconds:g} s (it lasts {duration:.1f} s)"
    )
