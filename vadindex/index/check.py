"""Verify an index on disk: counts, parts, frame rows, checksums and the FAISS file agree."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd

from vadindex.errors import StoreError
from vadindex.files import file_record
from vadindex.index import faiss_index
from vadindex.index.manifest import (
    ADDED_VIDEO_COLUMNS,
    FAILURES,
    MANIFEST,
    METRIC,
    OWN_FILE,
    OWN_PART,
    PARTS,
    SEGMENT_COLUMNS,
    VIDEO_COLUMNS,
    IndexManifest,
    Part,
    read_manifest,
)
from vadindex.index.thumbs import THUMBNAILS, jpeg_size, looks_like_jpeg, read_thumbnails

#: FAISS rows compared with ``vectors.npy`` (evenly spread); float16 storage allows this error.
SAMPLE_ROWS = 2048
VECTOR_TOLERANCE = 2e-3
#: Rows read at a time when checking vectors (bounded memory on large parts).
CHUNK = 65536
#: 8-bit scalar-quantised IVF codes (``--index-type ivf``) are coarser.
VECTOR_TOLERANCE_SQ8 = 0.05
#: Stored thumbnails fully decoded per part (the others have their JPEG framing checked).
THUMBNAIL_SAMPLES = 8


@dataclass(frozen=True)
class CheckReport:
    """What ``check_index`` found: ``problems`` make the index unusable or untrustworthy,
    ``notes`` are harmless (crash leftovers that the next build removes, missing checksums)."""

    index: str
    problems: tuple[str, ...]
    notes: tuple[str, ...]
    counts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "index": self.index,
            "ok": self.ok,
            "problems": list(self.problems),
            "notes": list(self.notes),
            "counts": self.counts,
        }


class _Findings:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.counts: dict[str, Any] = {}

    def expect(self, condition: bool, message: str) -> bool:
        if not condition:
            self.problems.append(message)
        return condition

    def guarded(self, what: str, load: Callable[[], Any]) -> Any:
        """Run ``load``; a failure is a problem naming ``what``, and gives ``None``."""
        try:
            return load()
        except Exception as exc:  # noqa: BLE001 - damaged files raise many types
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.problems.append(f"{what}: unreadable ({text})")
            return None


def check_index(path: str | os.PathLike[str], *, checksums: bool = True, retries: int = 3) -> CheckReport:
    """Verify one committed generation of an index.

    Checks that the manifest parses and adds up; that every file it names is present, has the
    recorded size (and SHA-256 unless ``checksums`` is false) and loads without pickle; that the
    FAISS index, the segment table, ``vectors.npy`` and the manifest hold the same number of rows
    and the same vectors; that frame rows and video rows agree with the segments. Files no commit
    refers to are reported as notes.

    A build may commit while the check runs; when the generation changed underneath, the check is
    run again on the new one.

    Args:
        path: the index folder.
        checksums: hash every file (reads the whole index); otherwise compare sizes only.
        retries: how many times to start over when a writer commits during the check.

    Returns:
        A :class:`CheckReport`; ``report.ok`` is true when nothing is wrong.
    """
    folder = Path(path).expanduser()
    for _ in range(max(retries, 1)):
        try:
            manifest = read_manifest(folder)
        except StoreError as exc:
            return CheckReport(str(folder), (str(exc),), ())
        found = _Findings()
        _check(folder, manifest, found, checksums)
        try:
            now = read_manifest(folder).generation
        except StoreError:
            now = -1
        if now == manifest.generation:
            break
    return CheckReport(str(folder), tuple(found.problems), tuple(found.notes), found.counts)


def _check(folder: Path, m: IndexManifest, found: _Findings, checksums: bool) -> None:
    found.counts.update(
        generation=m.generation,
        videos=m.n_videos,
        segments=m.n_segments,
        frames=m.n_frames,
        parts=len(m.parts),
    )
    _check_manifest(m, found)
    _check_files(folder, m, found, checksums)
    segments = _check_parts(folder, m, found)
    videos = _check_videos(folder, m, found)
    if segments is not None:
        _check_rows(m, segments, videos, found)
    _check_faiss(folder, m, found)
    _note_leftovers(folder, m, found)
    failures = folder / FAILURES
    if failures.is_file():
        rows = found.guarded(FAILURES, lambda: pd.read_csv(failures))
        if rows is not None:
            found.counts["failures_last_build"] = len(rows)


def _check_manifest(m: IndexManifest, found: _Findings) -> None:
    where = MANIFEST
    found.expect(m.dim > 0, f"{where}: dim is {m.dim}")
    found.expect(m.metric == METRIC, f"{where}: metric {m.metric!r}, expected {METRIC!r}")
    seg_sum = sum(p.segments for p in m.parts)
    frame_sum = sum(p.frames for p in m.parts)
    found.expect(
        seg_sum == m.n_segments, f"{where}: parts hold {seg_sum} segments, n_segments says {m.n_segments}"
    )
    found.expect(
        frame_sum == m.n_frames, f"{where}: parts hold {frame_sum} frames, n_frames says {m.n_frames}"
    )
    names = [p.name for p in m.parts]
    found.expect(len(set(names)) == len(names), f"{where}: a part is listed twice")
    found.expect(len(m.parts) <= m.generation, f"{where}: {len(m.parts)} parts in generation {m.generation}")
    if m.parts:
        found.expect(bool(m.faiss_file and m.videos_file), f"{where}: names no FAISS file or video table")
    for key in ("fps", "segment_seconds"):
        value = m.sampling.get(key) if isinstance(m.sampling, dict) else None
        found.expect(isinstance(value, (int, float)) and value > 0, f"{where}: sampling {key} is {value!r}")


def _expected_files(m: IndexManifest) -> list[str]:
    files = [m.faiss_file, m.videos_file] if m.parts else []
    for p in m.parts:
        files += [
            f"{PARTS}/{p.name}.segments.parquet",
            f"{PARTS}/{p.name}.vectors.npy",
            f"{PARTS}/{p.name}.frames.npy",
        ]
        if p.thumbnails:
            files.append(f"{PARTS}/{p.name}.{THUMBNAILS}")
    return files


def _check_files(folder: Path, m: IndexManifest, found: _Findings, checksums: bool) -> None:
    expected = _expected_files(m)
    missing = [name for name in expected if not (folder / name).is_file()]
    for name in missing:
        found.problems.append(f"{name}: missing")
    if not m.files:
        if m.parts:
            found.notes.append("the manifest records no checksums (index written by an older vadindex)")
        return
    for name in expected:
        if name not in m.files and name not in missing:
            found.problems.append(f"{name}: no checksum in the manifest")
    bytes_total = 0
    for name, record in m.files.items():
        file = folder / name
        if name not in expected:
            found.problems.append(f"manifest.json: checksum for {name}, which no part refers to")
            continue
        if not file.is_file():
            continue
        size = file.stat().st_size
        bytes_total += size
        if size != record.get("bytes"):
            found.problems.append(
                f"{name}: {size} bytes, the manifest recorded {record.get('bytes')} (damaged)"
            )
        elif checksums and file_record(file)["sha256"] != record.get("sha256"):
            found.problems.append(f"{name}: SHA-256 differs from the one recorded at commit (damaged)")
    found.counts["bytes"] = bytes_total
    found.counts["checksums_verified"] = checksums


def _check_parts(folder: Path, m: IndexManifest, found: _Findings) -> pd.DataFrame | None:
    tables = []
    complete = True
    for p in m.parts:
        base = folder / PARTS / p.name
        table = found.guarded(
            f"{PARTS}/{p.name}.segments.parquet", lambda b=base: pd.read_parquet(f"{b}.segments.parquet")
        )
        if table is not None:
            lacking = [c for c in SEGMENT_COLUMNS if c not in table.columns]
            found.expect(not lacking, f"{PARTS}/{p.name}.segments.parquet: lacks columns {lacking}")
            found.expect(
                len(table) == p.segments,
                f"{PARTS}/{p.name}.segments.parquet: {len(table)} rows, the manifest says {p.segments}",
            )
            tables.append(table)
        else:
            complete = False
        for kind, rows in (("vectors", p.segments), ("frames", p.frames)):
            name = f"{PARTS}/{p.name}.{kind}.npy"
            array = found.guarded(
                name, lambda b=base, k=kind: np.load(f"{b}.{k}.npy", mmap_mode="r", allow_pickle=False)
            )
            if array is None:
                continue
            if not found.expect(
                array.ndim == 2 and array.shape == (rows, m.dim),
                f"{name}: shape {array.shape}, expected ({rows}, {m.dim})",
            ):
                continue
            found.expect(array.dtype == np.float16, f"{name}: dtype {array.dtype}, expected float16")
            norms = np.concatenate(
                [
                    np.linalg.norm(np.asarray(array[i : i + CHUNK], np.float32), axis=1)
                    for i in range(0, rows, CHUNK)
                ]
                or [np.zeros(0)]
            )
            if not found.expect(bool(np.isfinite(norms).all()), f"{name}: holds NaN or infinite values"):
                continue
            bad = int((np.abs(norms - 1.0) > 0.01).sum())
            found.expect(bad == 0, f"{name}: {bad} vectors are not unit length")
        if p.thumbnails:
            _check_thumbnails(folder, p, found)
    if not complete or not tables:
        return None if not complete else pd.DataFrame(columns=SEGMENT_COLUMNS)
    return pd.concat(tables, ignore_index=True)


def _check_thumbnails(folder: Path, p: Part, found: _Findings) -> None:
    """A part's stored thumbnails: one row per segment, the recorded number of images, each a whole
    JPEG (framing checked for all, a few decoded)."""
    name = f"{PARTS}/{p.name}.{THUMBNAILS}"
    if not (folder / name).is_file():
        return  # reported as missing
    rows = found.guarded(name, lambda: read_thumbnails(folder / name))
    if rows is None:
        return
    found.expect(len(rows) == p.segments, f"{name}: {len(rows)} rows, the manifest says {p.segments}")
    blobs = [b for _, b in rows.values() if b is not None]
    found.expect(
        len(blobs) == p.thumbnails, f"{name}: {len(blobs)} thumbnails, the manifest says {p.thumbnails}"
    )
    broken = sum(not looks_like_jpeg(b) for b in blobs)
    found.expect(broken == 0, f"{name}: {broken} thumbnails are not whole JPEG images")
    for blob in blobs[:: max(1, len(blobs) // THUMBNAIL_SAMPLES)][:THUMBNAIL_SAMPLES]:
        if looks_like_jpeg(blob) and found.guarded(name, lambda b=blob: jpeg_size(b)) is None:
            break


def _check_videos(folder: Path, m: IndexManifest, found: _Findings) -> pd.DataFrame | None:
    if not m.videos_file:
        return None
    videos = found.guarded(m.videos_file, lambda: pd.read_parquet(folder / m.videos_file))
    if videos is None:
        return None
    lacking = [c for c in VIDEO_COLUMNS if c not in videos.columns and c not in ADDED_VIDEO_COLUMNS]
    if not found.expect(not lacking, f"{m.videos_file}: lacks columns {lacking}"):
        return None
    found.expect(
        len(videos) == m.n_videos, f"{m.videos_file}: {len(videos)} rows, the manifest says {m.n_videos}"
    )
    dupes = int(videos["video_id"].duplicated().sum())
    found.expect(dupes == 0, f"{m.videos_file}: {dupes} videos are listed more than once")
    total = int(videos["n_segments"].sum()) if len(videos) else 0
    found.expect(
        total == m.n_segments,
        f"{m.videos_file}: videos hold {total} segments, the manifest says {m.n_segments}",
    )
    return videos


def _check_rows(
    m: IndexManifest, segments: pd.DataFrame, videos: pd.DataFrame | None, found: _Findings
) -> None:
    """Segment rows against frame rows, times and the video table."""
    if len(segments) != m.n_segments or segments.empty:
        found.expect(
            len(segments) == m.n_segments, f"segments: {len(segments)} rows, the manifest says {m.n_segments}"
        )
        return
    first = segments["frame_row"].to_numpy(np.int64)
    count = segments["n_frames"].to_numpy(np.int64)
    found.expect(bool((count >= 1).all()), "segments: a segment has no sampled frame")
    found.expect(
        bool((first >= 0).all() and (first + count <= m.n_frames).all()),
        f"segments: frame rows outside the {m.n_frames} stored frames",
    )
    # Each commit stores exactly the sampled frames of its segments, in row order, so the segments'
    # frame ranges tile the frame table; a gap or an overlap means a row points at other frames.
    found.expect(
        bool(
            first[0] == 0
            and (first[1:] == first[:-1] + count[:-1]).all()
            and first[-1] + count[-1] == m.n_frames
        ),
        "segments: frame rows do not tile the stored frames in row order (misaligned frame_row)",
    )
    found.expect(
        bool((segments["end"] > segments["start"]).all()), "segments: a segment ends before it starts"
    )
    found.expect(
        bool((segments["end_frame"] >= segments["start_frame"]).all()),
        "segments: a frame range ends before it starts",
    )
    if videos is None or videos.empty:
        return
    known = set(videos["video_id"].astype(str))
    stray = set(segments["video_id"].astype(str)) - known
    found.expect(not stray, f"segments: {len(stray)} videos are missing from the video table")
    per_video = segments.groupby(segments["video_id"].astype(str), sort=False).agg(
        rows=("segment", "size"), first=("segment", lambda s: s.index[0]), contiguous=("segment", _contiguous)
    )
    table = videos.assign(video_id=videos["video_id"].astype(str)).set_index("video_id")
    joined = per_video.join(table[["n_segments", "first_row"]], how="inner")
    bad_count = joined.index[joined["rows"] != joined["n_segments"]].tolist()
    bad_first = joined.index[joined["first"] != joined["first_row"]].tolist()
    found.expect(
        not bad_count, f"segments: segment counts differ from the video table for {len(bad_count)} videos"
    )
    found.expect(
        not bad_first, f"segments: first rows differ from the video table for {len(bad_first)} videos"
    )
    found.expect(bool(per_video["contiguous"].all()), "segments: a video's segments are not consecutive rows")


def _contiguous(column: pd.Series) -> bool:
    rows = column.index.to_numpy()
    return bool((np.diff(rows) == 1).all()) and bool((np.diff(column.to_numpy()) == 1).all())


def _check_faiss(folder: Path, m: IndexManifest, found: _Findings) -> None:
    if not m.faiss_file or not (folder / m.faiss_file).is_file():
        return

    def load() -> Any:
        return faiss.read_index(str(folder / m.faiss_file), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)

    index = found.guarded(m.faiss_file, load)
    if index is None:
        return
    found.expect(index.d == m.dim, f"{m.faiss_file}: dimension {index.d}, the manifest says {m.dim}")
    covered = m.faiss_covered
    found.expect(
        0 < covered <= m.n_segments or m.n_segments == 0,
        f"manifest: faiss_rows {covered} outside 1..{m.n_segments}",
    )
    if not found.expect(
        index.ntotal == covered,
        f"{m.faiss_file}: {index.ntotal} vectors, the manifest says {covered}",
    ):
        return
    if index.d != m.dim or covered <= 0:
        return
    rows = np.unique(np.linspace(0, covered - 1, min(SAMPLE_ROWS, covered)).astype(np.int64))
    stored = []
    offset = 0
    for p in m.parts:
        sel = rows[(rows >= offset) & (rows < offset + p.segments)] - offset
        if len(sel):
            file = folder / PARTS / f"{p.name}.vectors.npy"
            array = found.guarded(
                str(file.relative_to(folder)), lambda f=file: np.load(f, mmap_mode="r", allow_pickle=False)
            )
            if array is None or array.shape != (p.segments, m.dim):
                return  # reported by _check_parts
            stored.append(np.asarray(array[sel], dtype=np.float32))
        offset += p.segments
    in_faiss = found.guarded(m.faiss_file, lambda: faiss_index.reconstruct(index, rows))
    if in_faiss is None:
        return
    error = float(np.abs(in_faiss - np.concatenate(stored)).max())
    tolerance = VECTOR_TOLERANCE_SQ8 if "SQ8" in faiss_index.describe(index) else VECTOR_TOLERANCE
    found.expect(
        error <= tolerance,
        f"{m.faiss_file}: vectors differ from parts/*.vectors.npy (max error {error:.3g}); the files are mismatched",
    )


def _note_leftovers(folder: Path, m: IndexManifest, found: _Findings) -> None:
    referenced = set(_expected_files(m)) | {MANIFEST, FAILURES}
    previous = {f"index.g{m.generation - 1:06d}.faiss", f"videos.g{m.generation - 1:06d}.parquet"}
    names = [f.name for f in folder.iterdir() if OWN_FILE.match(f.name)]
    if (folder / PARTS).is_dir():
        names += [f"{PARTS}/{f.name}" for f in (folder / PARTS).iterdir() if OWN_PART.match(f.name)]
    leftovers = sorted(n for n in names if n not in referenced and n not in previous)
    if leftovers:
        shown = ", ".join(leftovers[:3]) + (f" and {len(leftovers) - 3} more" if len(leftovers) > 3 else "")
        found.notes.append(
            f"{len(leftovers)} files belong to no commit ({shown}): left by an interrupted build or a commit in "
            "progress; the next build removes them"
        )
