"""Temporal ground truth of the benchmarks: UCF-Crime and XD-Violence annotation files, matched to an index.

UCF-Crime (``Temporal_Anomaly_Annotation_for_Testing_Videos.txt``), one video a line::

    Abuse028_x264.mp4  Abuse  165  240  -1  -1

file, class, then up to two ``start end`` frame spans, ``-1 -1`` for none (normal videos have class
``Normal`` and no span). XD-Violence (``annotations.txt``): ``name s1 e1 s2 e2 ...`` with any number of
pairs and no class (the class is read from the ``_label_`` part of the name, see
:mod:`vadindex.evaluate.datasets`); videos absent from the file are normal.

Spans are frame numbers of the original video, taken as 0-based and half-open, ``start <= f < end``
(the ``gt[start:end] = 1`` of the published Python evaluation scripts, and :mod:`vadindex.demo.synth`).
Names are matched to index videos by file name, ignoring folders, case and video extensions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from vadindex.config import ANNOTATION_FORMATS
from vadindex.errors import InputError
from vadindex.evaluate.datasets import video_key, xd_violence_class
from vadindex.evaluate.metrics import frame_scores, span_labels

NORMAL_CLASS = "Normal"


@dataclass(frozen=True)
class Annotation:
    """One annotated video: its name in the file, class and anomalous frame spans."""

    name: str
    cls: str
    spans: tuple[tuple[int, int], ...]

    @property
    def label(self) -> int:
        """1 for an anomalous video (any span, or a non-normal class), else 0."""
        return int(bool(self.spans) or not is_normal_class(self.cls))


def is_normal_class(cls: str | None) -> bool:
    """True for names that mean "no anomaly" (``Normal``, ``Normal_Videos_event``, ``A``...)."""
    text = (cls or "").strip().lower()
    return text in ("", "normal", "a", "none", "nan") or text.startswith(
        ("normal_videos", "testing_normal", "training_normal")
    )


def _ints(tokens: list[str], where: str) -> list[int]:
    try:
        return [int(float(t)) for t in tokens]
    except ValueError:
        raise InputError(f"{where}: expected frame numbers, got {' '.join(tokens)!r}") from None


def _pairs(values: list[int], where: str) -> tuple[tuple[int, int], ...]:
    if len(values) % 2:
        raise InputError(f"{where}: frame numbers come in start/end pairs, got {len(values)} numbers")
    spans = []
    for start, end in zip(values[::2], values[1::2], strict=True):
        if start < 0 or end < 0:
            continue  # -1 -1: no span
        if end < start:
            raise InputError(f"{where}: span ends before it starts ({start} {end})")
        spans.append((start, end))
    return tuple(spans)


def parse_ucf_crime_line(line: str, where: str = "annotation") -> Annotation:
    """Parse ``Abuse028_x264.mp4  Abuse  165  240  -1  -1``."""
    tokens = line.split()
    if len(tokens) < 2:
        raise InputError(f"{where}: expected 'file class start end [start end]', got {line.strip()!r}")
    name, cls, *rest = tokens
    return Annotation(name, cls, _pairs(_ints(rest, where), where))


def parse_xd_violence_line(line: str, where: str = "annotation") -> Annotation:
    """Parse ``name s1 e1 s2 e2 ...``; the class comes from the ``_label_`` part of the name."""
    tokens = line.split()
    if not tokens:
        raise InputError(f"{where}: empty line")
    name, *rest = tokens
    spans = _pairs(_ints(rest, where), where)
    cls = xd_violence_class(name) or ("Anomaly" if spans else NORMAL_CLASS)
    return Annotation(name, cls, spans)


def detect_format(lines: list[str]) -> str:
    """``ucf-crime`` when the second column is a word, else ``xd-violence``."""
    for line in lines:
        tokens = line.split()
        if len(tokens) >= 2:
            try:
                float(tokens[1])
            except ValueError:
                return "ucf-crime"
            return "xd-violence"
    return "xd-violence"


def load_annotations(path: str | os.PathLike[str], fmt: str = "auto") -> list[Annotation]:
    """Read an annotation file (``fmt``: ``auto``, ``ucf-crime`` or ``xd-violence``).

    Blank lines and lines starting with ``#`` are skipped. Errors name the file and line.
    """
    if fmt not in ANNOTATION_FORMATS:
        raise InputError(f"unknown annotation format {fmt!r}; choose one of {', '.join(ANNOTATION_FORMATS)}")
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{file}: no such annotation file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{file}: cannot read annotations ({exc})") from None
    numbered = [
        (i, ln)
        for i, ln in enumerate(text.splitlines(), start=1)
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    if fmt == "auto":
        fmt = detect_format([ln for _, ln in numbered])
    parse = parse_ucf_crime_line if fmt == "ucf-crime" else parse_xd_violence_line
    out: dict[str, Annotation] = {}
    for i, line in numbered:
        ann = parse(line, f"{file} line {i}")
        key = video_key(ann.name)
        if key in out and out[key] != ann:
            raise InputError(f"{file} line {i}: {ann.name} is annotated twice")
        out[key] = ann
    if not out:
        raise InputError(f"{file}: no annotations")
    return list(out.values())


def match_annotations(
    annotations: list[Annotation], videos: list[str]
) -> tuple[dict[int, Annotation], list[str]]:
    """Pair index videos with annotations by :func:`video_key`.

    Args:
        annotations: parsed annotations.
        videos: video names (or paths) in the index, in row order.

    Returns:
        ``{video position: annotation}`` and the names of annotations that match no video.

    Raises:
        InputError: when two index videos share a key that an annotation names (ambiguous).
    """
    by_key = {video_key(a.name): a for a in annotations}
    matched: dict[int, Annotation] = {}
    seen: dict[str, int] = {}
    for pos, name in enumerate(videos):
        key = video_key(name)
        if key not in by_key:
            continue
        if key in seen:
            raise InputError(
                f"annotation {by_key[key].name} matches two index videos: {videos[seen[key]]} and {name}"
            )
        seen[key] = pos
        matched[pos] = by_key[key]
    missing = [a.name for k, a in by_key.items() if k not in seen]
    return matched, missing


@dataclass(frozen=True)
class GroundTruth:
    """Frame, segment and video truth of the annotated videos of an index, ready for pooled metrics.

    Frames of all matched videos are concatenated; ``frame_segment[f]`` is the index row whose score
    frame ``f`` takes (:func:`vadindex.evaluate.metrics.frame_scores`), so frame scores are
    ``segment_scores[frame_segment]``.
    """

    frame_segment: np.ndarray  # (n_frames,) int64 segment row
    frame_label: np.ndarray  # (n_frames,) bool
    frame_video: np.ndarray  # (n_frames,) int64 position in the index's video table
    segment_label: np.ndarray  # (n_segments,) int8: 1, 0, or -1 for segments of unannotated videos
    video_label: np.ndarray  # (n_videos,) int8: 1, 0, or -1 when unannotated
    video_class: list[str | None]  # per video position, the annotation's class
    missing: list[str]  # annotation names that match no index video
    # Frames grouped by (segment, label): frames of one segment share its score, so pooled frame
    # metrics are exact as weighted metrics over these groups, and much faster.
    group_segment: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    group_label: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    group_count: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    group_video: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def build_ground_truth(
    segments: pd.DataFrame, videos: pd.DataFrame, annotations: list[Annotation]
) -> GroundTruth:
    """Match annotations to the index and expand them to frames and segments.

    Args:
        segments: the index's segment table (``video_id``, ``start_frame``, ``end_frame``).
        videos: the index's video table (``video_id``, ``video``, ``n_frames``).
        annotations: parsed annotations.

    Returns:
        A :class:`GroundTruth`. A video's frame count is its decoded ``n_frames``, or its last
        segment's ``end_frame`` when that is unknown.
    """
    matched, missing = match_annotations(annotations, videos["video"].astype(str).tolist())
    rows_of = (
        pd.Series(np.arange(len(segments))).groupby(segments["video_id"].to_numpy(), sort=False).agg(list)
    )
    seg_label = np.full(len(segments), -1, dtype=np.int8)
    video_label = np.full(len(videos), -1, dtype=np.int8)
    video_class: list[str | None] = [None] * len(videos)
    starts = segments["start_frame"].to_numpy(np.int64)
    ends = segments["end_frame"].to_numpy(np.int64)
    f_seg, f_lab, f_vid = [], [], []
    ids = videos["video_id"].astype(str).to_numpy()
    n_frames_col = pd.to_numeric(videos["n_frames"], errors="coerce").to_numpy(np.float64)
    for pos, ann in sorted(matched.items()):
        video_label[pos] = ann.label
        video_class[pos] = ann.cls
        rows = np.asarray(rows_of.get(ids[pos], []), dtype=np.int64)
        if len(rows) == 0:
            continue
        rows = rows[np.argsort(starts[rows], kind="stable")]
        n = n_frames_col[pos]
        n = int(n) if np.isfinite(n) and n > 0 else int(ends[rows].max())
        labels = span_labels(ann.spans, n)
        local = frame_scores(starts[rows], ends[rows], np.arange(len(rows), dtype=np.float64), n).astype(
            np.int64
        )
        f_seg.append(rows[local])
        f_lab.append(labels)
        f_vid.append(np.full(n, pos, dtype=np.int64))
        csum = np.r_[0, np.cumsum(labels)]
        lo, hi = np.clip(starts[rows], 0, n), np.clip(ends[rows], 0, n)
        seg_label[rows] = (csum[hi] - csum[lo] > 0).astype(np.int8)
    cat = lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dt)  # noqa: E731
    frame_segment, frame_label = cat(f_seg, np.int64), cat(f_lab, bool)
    frame_video = cat(f_vid, np.int64)
    keys, first, counts = np.unique(frame_segment * 2 + frame_label, return_index=True, return_counts=True)
    return GroundTruth(
        frame_segment=frame_segment,
        frame_label=frame_label,
        frame_video=frame_video,
        segment_label=seg_label,
        video_label=video_label,
        video_class=video_class,
        missing=missing,
        group_segment=keys // 2,
        group_label=(keys % 2).astype(bool),
        group_count=counts,
        group_video=frame_video[first],
    )
