"""Find the videos to index: files, folders (recursive), URIs and manifest CSVs with labels and classes."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from vadindex.config import CAMERA_FROM_PARENT, VIDEO_EXTENSIONS
from vadindex.errors import InputError
from vadindex.ingest.remote import is_uri, list_uri, read_ends

log = logging.getLogger("vadindex")

_NORMAL = {"normal", "0", "false", "no", "negative", "neg"}
_ANOMALY = {"anomaly", "anomalous", "abnormal", "1", "true", "yes", "positive", "pos"}
_NORMAL_CLASSES = {
    "normal",
    "normal_videos",
    "normal_videos_event",
    "testing_normal_videos_anomaly",
    "none",
    "",
}


@dataclass(frozen=True)
class VideoRoots:
    """``--video-root OLD=NEW``: paths under ``OLD`` are read from ``NEW`` (footage that moved).

    Only whole leading path components are replaced, so ``/mnt/cam=/data`` remaps ``/mnt/cam/a.mp4``
    but not ``/mnt/camera/a.mp4``.
    """

    old: str = ""
    new: str = ""

    @classmethod
    def parse(cls, value: str | None) -> VideoRoots:
        """Read ``OLD=NEW`` (``None`` or empty: no remapping).

        Raises:
            InputError: no ``=``, or an empty side.
        """
        if not value:
            return cls()
        old, sep, new = str(value).partition("=")
        if not sep or not old.strip() or not new.strip():
            raise InputError(f"--video-root must be OLD=NEW (two folders), got {value!r}")
        return cls(_folder(old.strip()), _folder(new.strip()))

    def __bool__(self) -> bool:
        return bool(self.old)

    def apply(self, path: str | os.PathLike[str]) -> Path:
        """``path`` with a leading ``OLD`` replaced by ``NEW`` (unchanged when it is not under ``OLD``)."""
        if not self.old:
            return Path(path)
        text = os.path.abspath(os.fspath(path))
        if text == self.old:
            return Path(self.new)
        prefix = self.old if self.old.endswith(os.sep) else self.old + os.sep
        return Path(self.new) / text[len(prefix) :] if text.startswith(prefix) else Path(path)


def _folder(text: str) -> str:
    """A folder as ``--video-root`` compares it: absolute, without a trailing separator."""
    return os.path.abspath(os.path.expanduser(text))


@dataclass(frozen=True)
class VideoSource:
    """One video to index, with its ground truth when the user supplied it."""

    #: A local file, or a URI (``s3://bucket/key``, as text) read through ``pyarrow.fs``.
    path: Path | str
    video: str
    label: int | None = None
    cls: str | None = None
    #: The camera that filmed it; ``None``: a camera of its own.
    camera: str | None = None


def parse_label(value: str | None, where: str) -> int | None:
    """``normal``/``anomaly`` or ``0``/``1`` (and a few synonyms) to 0/1; empty to ``None``."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in ("", "nan", "none"):
        return None
    if text in _NORMAL:
        return 0
    if text in _ANOMALY:
        return 1
    raise InputError(f"{where}: label {value!r} is not one of normal, anomaly, 0, 1")


def read_manifest_csv(path: Path, roots: VideoRoots | None = None) -> list[VideoSource]:
    """Read a manifest CSV with a ``path`` column and optional ``label``, ``class`` and ``camera`` columns.

    Relative paths are taken relative to the manifest's folder, then remapped by ``roots``. A row
    with a class but no label is labelled normal when the class says so (``Normal``,
    ``Normal_Videos``...) and anomalous otherwise.
    """
    if not path.is_file():
        raise InputError(f"{path}: manifest not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            fields = [f.strip().lower() for f in (reader.fieldnames or [])]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: not a readable CSV manifest ({exc})") from None
    if "path" not in fields:
        raise InputError(
            f"{path}: manifest needs a 'path' column (found: {', '.join(fields) or 'no header'})"
        )
    sources = []
    for line, row in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
        where = f"{path} line {line}"
        if not row.get("path"):
            raise InputError(f"{where}: empty path")
        label = parse_label(row.get("label"), where)
        cls = row.get("class") or None
        if label is None and cls is not None:
            label = 0 if cls.lower() in _NORMAL_CLASSES else 1
        if is_uri(row["path"]):
            sources.append(VideoSource(row["path"], row["path"], label, cls))
            continue
        video_path = Path(row["path"]).expanduser()
        if not video_path.is_absolute():
            video_path = path.parent / video_path
        if roots:
            video_path = roots.apply(video_path)
        sources.append(VideoSource(video_path, row["path"], label, cls, row.get("camera") or None))
    return sources


def check_camera_from(camera_from: str | None) -> re.Pattern[str] | None:
    """The regular expression of ``--camera-from`` (``None`` for ``parent`` or nothing).

    Raises:
        InputError: not a valid regular expression.
    """
    if camera_from is None or camera_from == CAMERA_FROM_PARENT:
        return None
    try:
        return re.compile(camera_from)
    except re.error as exc:
        raise InputError(
            f"--camera-from {camera_from!r}: not 'parent' nor a valid regular expression ({exc})"
        ) from None


def assign_cameras(
    sources: list[VideoSource], camera: str | None = None, camera_from: str | None = None
) -> list[VideoSource]:
    """Give every video its camera: a manifest's ``camera`` column first, then ``camera`` (one name
    for all), then ``camera_from``: ``parent`` (the name of the video's folder) or a regular
    expression searched in the video's path (its first group, or the whole match). A video none
    of these name keeps a camera of its own.
    """
    pattern = check_camera_from(camera_from)
    out, unmatched = [], 0
    for src in sources:
        name = src.camera or camera
        if name is None and camera_from == CAMERA_FROM_PARENT:
            name = src.path.parent.name or None
        elif name is None and pattern is not None:
            found = pattern.search(src.path.as_posix())
            if found is None:
                unmatched += 1
            else:
                name = (found.group(1) if pattern.groups else found.group(0)) or None
        out.append(src if name == src.camera else dataclasses.replace(src, camera=name))
    if unmatched:
        log.warning("--camera-from %r matched no camera in %d video paths; each is its own camera",
                    camera_from, unmatched)  # fmt: skip
    return out


def is_video_file(path: Path) -> bool:
    """True for a file whose extension is a known video container."""
    return path.suffix.lower() in VIDEO_EXTENSIONS


def collect_sources(
    paths: list[str | os.PathLike[str]],
    manifest: str | os.PathLike[str] | None = None,
    roots: VideoRoots | None = None,
) -> tuple[list[VideoSource], list[tuple[str, str]]]:
    """Expand files, folders and a manifest into a de-duplicated list of videos.

    Args:
        paths: video files and folders (searched recursively for video extensions), or URIs of
            objects and prefixes (``s3://bucket/cams/``, listed recursively through ``pyarrow.fs``).
        manifest: optional manifest CSV (its paths may be URIs).
        roots: ``--video-root``: paths (and manifest rows) under its old folder are read from its new one.

    Returns:
        The videos, and ``(path, reason)`` for each source that does not exist or is not a regular
        file (a broken symlink, a pipe).
    """
    found: list[VideoSource] = []
    problems: list[tuple[str, str]] = []
    if manifest is not None:
        for src in read_manifest_csv(Path(manifest).expanduser(), roots):
            if isinstance(src.path, str) or src.path.is_file():  # a missing object fails when it is read
                found.append(src)
            else:
                problems.append((str(src.path), _not_a_file(src.path)))
    for raw in paths:
        if is_uri(raw):
            files, reason = list_uri(str(raw), lambda name: is_video_file(Path(name)))
            if reason:
                problems.append((str(raw), reason))
            found.extend(VideoSource(f.uri, f.relative) for f in files)
            continue
        path = Path(raw).expanduser()
        if roots:
            path = roots.apply(path)
        if path.is_dir():
            # rglob does not follow symlinked folders (no loops); symlinked files are followed.
            candidates = sorted(p for p in path.rglob("*") if is_video_file(p) and not p.name.startswith("."))
            files = [p for p in candidates if p.is_file()]
            broken = [(str(p), _not_a_file(p)) for p in candidates if not p.is_file() and not p.is_dir()]
            problems.extend(broken)
            if not files and not broken:
                problems.append(
                    (str(path), f"folder holds no video files ({', '.join(VIDEO_EXTENSIONS[:4])}, ...)")
                )
            found.extend(VideoSource(f, f.relative_to(path).as_posix()) for f in files)
        elif path.is_file():
            found.append(VideoSource(path, path.as_posix()))
        else:
            problems.append((str(path), _not_a_file(path)))
    unique: dict[str, VideoSource] = {}
    for src in found:
        key = src.path if isinstance(src.path, str) else os.path.realpath(src.path)
        if key not in unique:
            unique[key] = src
    reported: dict[str, tuple[str, str]] = {}
    for path_text, reason in problems:  # a file named directly and found in a folder: report it once
        reported.setdefault(
            path_text if is_uri(path_text) else os.path.abspath(path_text), (path_text, reason)
        )
    return list(unique.values()), list(reported.values())


def _not_a_file(path: Path) -> str:
    """Why ``path``, which is not a regular file or a folder, cannot be indexed."""
    if path.is_symlink() and not path.exists():
        return f"broken symbolic link (to {os.readlink(path)})"
    if path.exists():
        return "not a regular file (a pipe, socket or device)"
    return "no such file or folder"


def fingerprint(path: Path | str, block: int = 1 << 20) -> str:
    """A content id for a video: SHA-256 of its size, first and last MiB (cheap on huge files).

    A URI's object gets the id its bytes would get on a local disk (two ranged reads), so a video
    is indexed once whether it was read from a folder or from object storage.
    """
    return fingerprint_and_size(path, block)[0]


def fingerprint_and_size(path: Path | str, block: int = 1 << 20) -> tuple[str, int]:
    """:func:`fingerprint` and the file's size in bytes.

    Raises:
        OSError: a local file cannot be read.
        VideoError: an object named by URI is missing or cannot be read.
    """
    digest = hashlib.sha256()
    if isinstance(path, str) and is_uri(path):
        size, head, tail = read_ends(path, block)
        for data in (str(size).encode(), head, tail):
            digest.update(data)
        return digest.hexdigest()[:20], size
    size = os.stat(path).st_size
    digest.update(str(size).encode())
    with open(path, "rb") as fh:
        digest.update(fh.read(block))
        if size > 2 * block:
            fh.seek(size - block)
            digest.update(fh.read(block))
    return digest.hexdigest()[:20], size
