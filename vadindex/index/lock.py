"""The single writer of an index: an ``flock`` the kernel releases when its holder dies."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path

from vadindex.errors import StoreError
from vadindex.index.manifest import ALERTS, ALERTS_DIR, CACHE, LOCK, MANIFEST, OWN_FILE, OWN_PART, PARTS


def foreign_files(path: Path) -> list[str]:
    """Entries of ``path`` (and its ``parts/``) that an index does not write: user files, not ours."""
    if not path.is_dir():
        return []
    foreign = []
    for entry in path.iterdir():
        if entry.name == PARTS and entry.is_dir():
            foreign += [f"{PARTS}/{f.name}" for f in entry.iterdir() if not OWN_PART.match(f.name)]
        elif entry.name not in (LOCK, CACHE, ALERTS, ALERTS_DIR) and not OWN_FILE.match(entry.name):
            foreign.append(entry.name)
    return sorted(foreign)


def lock_index(path: Path) -> IndexLock:
    """Create ``path`` if needed and take its writer lock, refusing a folder that is not an index.

    A folder without a manifest may only hold what a crashed first build leaves behind; anything
    else (the videos themselves, say) means the user pointed ``--index`` at the wrong folder, and
    writing there would mix the index with their files.
    """
    if path.exists() and not path.is_dir():
        raise StoreError(f"{path}: exists and is not a folder")
    if not (path / MANIFEST).exists():
        foreign = foreign_files(path)
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise StoreError(
                f"{path}: folder is not empty and is not a vadindex index (holds {shown}); "
                "give --index a new or empty folder"
            )
    try:
        (path / PARTS).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{path}: cannot create the index folder ({exc.strerror or exc})") from None
    lock = IndexLock(path)
    lock.acquire()
    return lock


class IndexLock:
    """An exclusive, non-blocking ``flock`` on ``DIR/.lock``; the kernel drops it if the holder dies."""

    def __init__(self, path: Path) -> None:
        self.path = path / LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`StoreError` naming the holder."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"{self.path.parent}: cannot write the index ({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StoreError(
                f"{self.path.parent}: index is being written by {holder}; wait for it to finish "
                "(only one build may write an index at a time)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        self._fd = fd

    def release(self) -> None:
        """Release the lock."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
