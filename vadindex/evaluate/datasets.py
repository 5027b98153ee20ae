"""Benchmark layouts: build a ``path,label,class`` manifest from UCF-Crime folders or XD-Violence names.

- UCF-Crime: a video's class is its folder (``Abuse/``, ..., ``Vandalism/``); ``Normal_Videos_event/``,
  ``Testing_Normal_Videos_Anomaly/`` and ``Training_Normal_Videos_Anomaly/`` hold normal videos. Files
  outside such folders are classified by name (``Abuse028_x264.mp4``, ``Normal_Videos_003_x264.mp4``).
- XD-Violence: the labels are in the file name, ``..._label_A`` (normal) or ``..._label_B2-G-0``
  (codes ``B1`` Fighting, ``B2`` Shooting, ``B4`` Riot, ``B5`` Abuse, ``B6`` CarAccident, ``G``
  Explosion, ``0`` padding). A video with several codes gets the first one's class.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

from vadindex.config import DATASET_LAYOUTS, VIDEO_EXTENSIONS
from vadindex.errors import InputError
from vadindex.files import write_output
from vadindex.ingest.sources import is_video_file

UCF_CRIME_CLASSES = (
    "Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion", "Fighting", "RoadAccidents",
    "Robbery", "Shooting", "Shoplifting", "Stealing", "Vandalism",
)  # fmt: skip
XD_VIOLENCE_CODES = {
    "A": "Normal", "B1": "Fighting", "B2": "Shooting", "B4": "Riot", "B5": "Abuse", "B6": "CarAccident",
    "G": "Explosion",
}  # fmt: skip
NORMAL = "Normal"
_UCF_BY_LOWER = {c.lower(): c for c in UCF_CRIME_CLASSES}
_XD_LABEL = re.compile(r"_label_([A-Za-z0-9-]+)$")
_UCF_NAME = re.compile(r"^([A-Za-z]+?)_?\d+_x264$")


@dataclass(frozen=True)
class ManifestRow:
    """One line of a manifest."""

    path: str
    label: str  # "anomaly", "normal" or "" (unknown)
    cls: str


def video_key(name: str) -> str:
    """Matching key of a video name: base name, lower case, without a video extension."""
    base = os.path.basename(str(name).strip().replace("\\", "/")).lower()
    for ext in VIDEO_EXTENSIONS:
        if base.endswith(ext):
            return base[: -len(ext)]
    return base


def xd_violence_class(name: str) -> str | None:
    """The class encoded in an XD-Violence file name, ``Normal`` for ``_label_A``; ``None`` if absent."""
    match = _XD_LABEL.search(video_key(name))
    if not match:
        return None
    codes = [c.upper() for c in match.group(1).split("-") if c and c != "0"]
    for code in codes:
        if code in XD_VIOLENCE_CODES:
            return XD_VIOLENCE_CODES[code]
    return "Anomaly" if codes else None


def ucf_crime_class(path: Path) -> str | None:
    """The UCF-Crime class of a video from its folders or name; ``Normal`` for normal videos."""
    for folder in reversed(path.parent.parts):
        lower = folder.lower()
        if lower in _UCF_BY_LOWER:
            return _UCF_BY_LOWER[lower]
        if lower.startswith(("normal_videos", "testing_normal", "training_normal")) or lower == "normal":
            return NORMAL
    stem = path.name.rsplit(".", 1)[0]
    if stem.lower().startswith("normal_videos"):
        return NORMAL
    match = _UCF_NAME.match(stem)
    if match and match.group(1).lower() in _UCF_BY_LOWER:
        return _UCF_BY_LOWER[match.group(1).lower()]
    return None


def classify_video(path: Path, layout: str = "auto") -> tuple[str, str]:
    """``(label, class)`` of a video under ``layout`` (``auto``, ``ucf-crime``, ``xd-violence``)."""
    cls = None
    if layout in ("auto", "xd-violence"):
        cls = xd_violence_class(path.name)
    if cls is None and layout in ("auto", "ucf-crime"):
        cls = ucf_crime_class(path)
    if cls is None:
        return "", ""
    return ("normal" if cls == NORMAL else "anomaly"), cls


def _listed_keys(file: Path) -> set[str]:
    try:
        lines = file.read_text(encoding="utf-8-sig").splitlines()
    except OSError as exc:
        raise InputError(f"{file}: cannot read the video list ({exc})") from None
    return {video_key(ln.split()[0]) for ln in lines if ln.strip() and not ln.lstrip().startswith("#")}


def build_manifest(
    root: str | os.PathLike[str],
    layout: str = "auto",
    only: str | os.PathLike[str] | None = None,
    relative_to: str | os.PathLike[str] | None = None,
) -> list[ManifestRow]:
    """Find the videos under ``root`` and label them by the benchmark's conventions.

    Args:
        root: the dataset folder (searched recursively).
        layout: ``auto`` (XD-Violence names first, then UCF-Crime folders), ``ucf-crime`` or ``xd-violence``.
        only: optional file whose lines start with video names (an annotation file, ``Anomaly_Test.txt``);
            only those videos are kept.
        relative_to: write paths relative to this folder (the manifest's), absolute when impossible.

    Returns:
        The rows, sorted by path; a video that matches no convention has an empty label and class.
    """
    if layout not in DATASET_LAYOUTS:
        raise InputError(f"unknown layout {layout!r}; choose one of {', '.join(DATASET_LAYOUTS)}")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise InputError(f"{base}: no such folder")
    keys = _listed_keys(Path(only).expanduser()) if only else None
    rows = []
    for file in sorted(
        p for p in base.rglob("*") if p.is_file() and is_video_file(p) and not p.name.startswith(".")
    ):
        if keys is not None and video_key(file.name) not in keys:
            continue
        label, cls = classify_video(file.relative_to(base), layout)
        if relative_to is not None:
            try:
                shown = os.path.relpath(file.resolve(), Path(relative_to).expanduser().resolve())
            except ValueError:  # another drive on Windows
                shown = str(file.resolve())
        else:
            shown = str(file)
        rows.append(ManifestRow(Path(shown).as_posix(), label, cls))
    if not rows:
        raise InputError(f"{base}: no video files found" + (f" listed in {only}" if only else ""))
    return rows


def manifest_csv(rows: list[ManifestRow]) -> str:
    """The manifest as CSV text with a ``path,label,class`` header."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "label", "class"])
    writer.writerows((r.path, r.label, r.cls) for r in rows)
    return buf.getvalue()


def write_manifest(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    layout: str = "auto",
    only: str | os.PathLike[str] | None = None,
) -> list[ManifestRow]:
    """Find and label the videos under ``root`` (:func:`build_manifest`) and write the manifest CSV
    to ``out`` atomically, with paths relative to its folder; returns the rows."""
    target = Path(out).expanduser()
    rows = build_manifest(root, layout, only, relative_to=target.parent.absolute())
    write_output(target, manifest_csv(rows))
    return rows
