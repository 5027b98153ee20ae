"""Atomic file writes and content hashes: every file vadindex writes goes through here.

A file is written to a temporary name beside its target, synced, and moved into place with
``os.replace``, so a reader (or a crash) sees the old file or the new one, never half of either
(open_clip writes its checkpoints the same way).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def fsync_dir(path: Path) -> None:
    """Sync a folder's entries (a rename is durable only once its folder is synced)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(target: Path, sync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` atomically.

    ``sync=False`` skips the fsyncs: still all-or-nothing for readers, but a power cut may lose the
    file (right for derived data such as cached thumbnails, written by the hundred).
    """
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        if sync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
        if sync:
            fsync_dir(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_text_atomic(target: Path, text: str) -> None:
    """Write ``text`` to ``target`` atomically (UTF-8)."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes_atomic(target: Path, data: bytes, sync: bool = True) -> None:
    """Write ``data`` to ``target`` atomically (see :func:`atomic_path` for ``sync``)."""
    with atomic_path(target, sync) as tmp:
        tmp.write_bytes(data)


def write_output(target: str | os.PathLike[str], text: str) -> Path:
    """Write a user-named output file atomically, creating its folder; returns its path."""
    path = Path(target).expanduser()
    if path.parent != Path(""):
        path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)
    return path


def save_npy(target: Path, array: np.ndarray) -> None:
    """Write a ``.npy`` array atomically, never as a pickle."""
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array), allow_pickle=False)


def save_parquet(target: Path, frame: Any) -> None:
    """Write a pandas frame as Parquet atomically."""
    with atomic_path(target) as tmp:
        frame.to_parquet(tmp, index=False)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_record(path: Path) -> dict[str, Any]:
    """``{"bytes": size, "sha256": hex}`` of a file, as an index manifest records it."""
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
