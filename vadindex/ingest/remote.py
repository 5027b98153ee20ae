"""Videos named by URI (``s3://``, ``gs://``, ``hdfs://``...), listed and read through ``pyarrow.fs``.

Workers on other machines cannot see the driver's disk, so a build may name its sources by URI;
every process opens them with the credentials and endpoints of its own environment (the AWS
variables, ``AWS_ENDPOINT_URL_S3``, instance roles...). Query parameters that ``pyarrow`` reads
from a URI (``?endpoint_override=host:port&scheme=http``) stay on every URI listed under it.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any

from vadindex.errors import VideoError

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")
#: Bytes fetched per read from a remote file: PyAV asks for a few KiB at a time, and each miss of
#: this buffer is one ranged request (a 100 MB video is 25 requests, not 3,000).
READ_BUFFER = 4 << 20


def is_uri(location: object) -> bool:
    """True for ``scheme://...`` text (a local path, even ``C:\\...``, is not one)."""
    return isinstance(location, str) and bool(_URI.match(location))


@dataclass(frozen=True)
class RemoteFile:
    """One object found under a URI: its own URI, its path relative to the URI listed, its size."""

    uri: str
    relative: str
    size: int


def _split(uri: str) -> tuple[str, str]:
    """``(uri without its query, "?query" or "")``."""
    base, sep, query = uri.partition("?")
    return base, sep + query


def _filesystem(uri: str) -> tuple[Any, str]:
    """The ``pyarrow`` file system for ``uri`` and the path inside it.

    Raises:
        VideoError: the scheme is unknown to ``pyarrow`` or its file system cannot be set up.
    """
    from pyarrow import fs as pafs

    try:
        return pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as exc:
        raise VideoError(uri, f"cannot open this URI ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    """The first line of a ``pyarrow`` error (its messages carry a detail line per attempt)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def list_uri(uri: str, is_video: Any) -> tuple[list[RemoteFile], str]:
    """The objects at ``uri``: itself if it names an object, else the videos under it (recursive).

    Args:
        uri: an object or a prefix ("folder").
        is_video: ``name -> bool``, which objects under a prefix to keep.

    Returns:
        The files, sorted by URI, and the reason when there are none (``""`` otherwise).
    """
    from pyarrow import fs as pafs

    try:
        fs, path = _filesystem(uri)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            return [RemoteFile(uri, uri, int(info.size or 0))], ""
        if info.type != pafs.FileType.Directory:
            return [], "no such object or prefix"
        base, query = _split(uri)
        root = path.rstrip("/")
        found = []
        for child in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
            rel = child.path[len(root) :].lstrip("/")
            name = rel.rsplit("/", 1)[-1]
            if child.type == pafs.FileType.File and is_video(name) and not name.startswith("."):
                found.append(RemoteFile(f"{base.rstrip('/')}/{rel}{query}", rel, int(child.size or 0)))
    except VideoError as exc:
        return [], exc.reason
    except OSError as exc:
        return [], f"cannot list ({_reason(exc)})"
    found.sort(key=lambda f: f.uri)
    return found, "" if found else "holds no video files"


def open_uri(uri: str) -> io.BufferedReader:
    """A seekable, buffered binary file over the object at ``uri`` (what PyAV reads from).

    Raises:
        VideoError: no such object, or it cannot be opened.
    """
    fs, path = _filesystem(uri)
    try:
        raw = fs.open_input_file(path)
    except FileNotFoundError:
        raise VideoError(uri, "no such object") from None
    except OSError as exc:
        raise VideoError(uri, f"cannot open ({_reason(exc)})") from None
    return io.BufferedReader(raw, buffer_size=READ_BUFFER)  # type: ignore[arg-type]


def uri_size(uri: str) -> int:
    """The object's size in bytes.

    Raises:
        VideoError: no such object, or it cannot be reached.
    """
    from pyarrow import fs as pafs

    fs, path = _filesystem(uri)
    try:
        info = fs.get_file_info(path)
    except OSError as exc:
        raise VideoError(uri, f"cannot read ({_reason(exc)})") from None
    if info.type != pafs.FileType.File:
        raise VideoError(uri, "no such object")
    return int(info.size or 0)


def read_ends(uri: str, block: int) -> tuple[int, bytes, bytes]:
    """The object's size, its first ``block`` bytes and (when it is longer than two blocks) its
    last ``block`` bytes: two ranged reads, what a content fingerprint needs.

    Raises:
        VideoError: no such object, or it cannot be read.
    """
    fs, path = _filesystem(uri)
    try:
        with fs.open_input_file(path) as fh:
            size = fh.size()
            head = fh.read(block)
            tail = fh.read_at(block, size - block) if size > 2 * block else b""
    except FileNotFoundError:
        raise VideoError(uri, "no such object") from None
    except OSError as exc:
        raise VideoError(uri, f"cannot read ({_reason(exc)})") from None
    return size, bytes(head), bytes(tail)
