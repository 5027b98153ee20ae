"""Atomic file writes and content hashes: every file vadindex writes goes through here.

A file is written to a temporary name beside its target, synced, and moved into place with
``os.replace``, so a reader (or a crash) sees the old file or the new one, never half of either
(open_clip writes its checkpoints the same way).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Sequence
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


class _Hashing:
    """A binary file that hashes what is written through it (so the file is not read back)."""

    def __init__(self, fh: Any) -> None:
        self._fh = fh
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: Any) -> int:
        view = memoryview(data)
        if not view.nbytes:
            return 0
        view = view.cast("B")
        self.digest.update(view)
        self.size += len(view)
        return int(self._fh.write(view))

    def record(self) -> dict[str, Any]:
        return {"bytes": self.size, "sha256": self.digest.hexdigest()}


def save_npy(target: Path, array: np.ndarray) -> dict[str, Any]:
    """Write a ``.npy`` array atomically, never as a pickle.

    Returns:
        The file's :func:`file_record`, hashed as it was written.
    """
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        out = _Hashing(fh)
        np.save(out, np.ascontiguousarray(array), allow_pickle=False)  # type: ignore[arg-type]
    return out.record()


def save_npy_blocks(target: Path, blocks: Sequence[np.ndarray], dtype: Any) -> dict[str, Any]:
    """Write the rows of ``blocks``, one after another, as one ``.npy`` array of ``dtype``
    atomically, without building it in memory (the same bytes as ``np.save`` of their concatenation).

    Returns:
        The file's :func:`file_record`, hashed as it was written.
    """
    dtype = np.dtype(dtype)
    shape = (sum(len(b) for b in blocks), *blocks[0].shape[1:])
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        out = _Hashing(fh)
        np.lib.format.write_array_header_1_0(out, header)
        for block in blocks:
            out.write(np.ascontiguousarray(block, dtype=dtype))
    return out.record()


def save_parquet(target: Path, frame: Any) -> dict[str, Any]:
    """Write a pandas frame as Parquet atomically.

    Returns:
        The file's :func:`file_record`, hashed as it was written.
    """
    data = frame.to_parquet(None, index=False)
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        out = _Hashing(fh)
        out.write(data)
    return out.record()


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
