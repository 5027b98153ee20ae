"""Live sources: stream URLs, V4L2 devices and growing files, their names, and ``cameras.yaml``.

Each source gets the FFmpeg options that make it behave as a live input (measured against real
servers on loopback; the README sums them up): UDP keeps going when its receive buffer overruns
instead of failing, RTSP uses TCP unless told otherwise, HLS starts at
the newest segment, a growing file is followed (``follow=1`` needs ``seekable=0``, or probing reads
to the end and never returns). Timeouts are not options here: the reader gives every open and
every read PyAV's own ``timeout=(open, read)``, the one mechanism that works for every protocol.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from vadindex.config import DEFAULT_RTSP_TRANSPORT
from vadindex.errors import InputError

#: URL schemes ``watch`` accepts, and the kind of source each is.
SCHEMES = {
    "udp": "udp", "rtp": "udp", "rtsp": "rtsp", "rtsps": "rtsp", "rtmp": "rtmp", "rtmps": "rtmp",
    "http": "http", "https": "http", "srt": "srt", "tcp": "tcp", "file": "file",
}  # fmt: skip
#: Probing longer than this (microseconds) only delays the first frame of a live stream.
ANALYZE_DURATION = "1000000"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class StreamSource:
    """One live input: a camera name, where to read it and how to open it."""

    name: str
    url: str
    kind: str
    #: FFmpeg demuxer name when it must be forced (``v4l2``), else ``None`` (probed).
    format: str | None = None
    #: FFmpeg options given to ``av.open`` (protocol and demuxer options; strings).
    options: Mapping[str, str] = field(default_factory=dict)
    follow: bool = False

    @property
    def display_url(self) -> str:
        """The URL without credentials, as logs, alerts and the index show it."""
        return redact(self.url)

    def describe(self) -> str:
        """``name (url)`` for messages."""
        return f"{self.name} ({self.display_url})"


def redact(url: str) -> str:
    """``url`` without a ``user:password@`` part (cameras often carry credentials in the URL)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.scheme or "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def default_name(url: str) -> str:
    """A stable camera name derived from a source: ``udp-127.0.0.1-5000``, ``cam-lobby`` for a file."""
    parts = urlsplit(url) if "://" in url else None
    if parts is None or parts.scheme == "file":
        path = Path(parts.path if parts is not None else url)
        base = path.name if path.name.startswith("video") else path.stem
    else:
        host = parts.hostname or "local"
        bits = [parts.scheme, host] + ([str(parts.port)] if parts.port else [])
        tail = parts.path.strip("/").rsplit(".", 1)[0] if parts.path.strip("/") else ""
        base = "-".join(bits + ([tail] if tail else []))
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.") or "camera"
    return name[:64]


def check_name(name: str, where: str) -> str:
    """Refuse a camera name that cannot name files and index rows (letters, digits, ``._-``)."""
    if not NAME_PATTERN.match(name):
        raise InputError(
            f"{where}: camera name {name!r} must start with a letter or digit and hold only letters, "
            "digits, '.', '_' and '-' (at most 64)"
        )
    return name


def parse_source(
    text: str,
    name: str | None = None,
    *,
    follow: bool = False,
    options: Mapping[str, Any] | None = None,
    rtsp_transport: str = DEFAULT_RTSP_TRANSPORT,
    where: str = "SOURCE",
) -> StreamSource:
    """A :class:`StreamSource` from a URL, a V4L2 device path or (with ``follow``) a growing file.

    Args:
        text: ``rtsp://``, ``rtmp://``, ``http(s)://`` (MPEG-TS or HLS ``.m3u8``), ``udp://``,
            ``srt://``, ``/dev/videoN``, or a file path (only with ``follow``).
        name: the camera name; derived from ``text`` when ``None``.
        follow: read a file that is still being written, following it as it grows.
        options: extra FFmpeg options (override the defaults for the kind of source).
        rtsp_transport: ``tcp`` or ``udp`` for RTSP sources.
        where: what to name in error messages.

    Raises:
        InputError: an unknown scheme, a recorded file without ``follow``, or a bad name.
    """
    text = str(text).strip()
    if not text:
        raise InputError(f"{where}: empty source")
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    fmt: str | None = None
    defaults: dict[str, str] = {}
    if scheme:
        kind = SCHEMES.get(scheme)
        if kind is None:
            raise InputError(
                f"{where}: {redact(text)}: unsupported scheme {scheme}://; use one of "
                f"{', '.join(sorted(SCHEMES))}, a /dev/video* device or --follow FILE"
            )
        if kind == "file":
            follow = True
    elif text.startswith("/dev/video"):
        kind, fmt = "v4l2", "v4l2"
    else:
        path = Path(text).expanduser()
        if path.is_dir():
            raise InputError(f"{where}: {text}: is a folder; `vadindex build` indexes recorded video")
        if not follow:
            raise InputError(
                f"{where}: {text}: a file, not a stream; index recorded video with `vadindex build`, "
                "or pass --follow to read a file that is still being written"
            )
        kind = "file"
    if follow and kind != "file":
        raise InputError(f"{where}: {redact(text)}: --follow applies to files, not {kind} streams")
    if kind == "udp":
        # An overrun of the receive FIFO then drops data instead of ending the stream.
        defaults = {"overrun_nonfatal": "1", "analyzeduration": ANALYZE_DURATION}
    elif kind == "rtsp":
        defaults = {"rtsp_transport": rtsp_transport, "analyzeduration": ANALYZE_DURATION}
    elif kind in ("rtmp", "tcp"):
        defaults = {"analyzeduration": ANALYZE_DURATION}
    elif kind == "http":
        if urlsplit(text).path.lower().endswith(".m3u8"):
            defaults = {"live_start_index": "-1"}  # the newest segment, not three back
        else:
            defaults = {"analyzeduration": ANALYZE_DURATION}
    elif kind == "file":
        # Without seekable=0, probing estimates the duration by reading to the end: it never returns.
        defaults = {"follow": "1", "seekable": "0"}
    given = {str(k): _option_value(v) for k, v in (options or {}).items()}
    name = check_name(name if name is not None else default_name(text), where)
    return StreamSource(name, text, kind, fmt, {**defaults, **given}, follow)


def _option_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def parse_option_pairs(pairs: Sequence[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings (``-o`` on the command line) as a dict.

    Raises:
        InputError: an entry without ``=``.
    """
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"-o {pair!r}: expected KEY=VALUE (an FFmpeg option)")
        out[key.strip()] = value.strip()
    return out


def load_cameras(
    path: str | os.PathLike[str],
    *,
    rtsp_transport: str = DEFAULT_RTSP_TRANSPORT,
    options: Mapping[str, Any] | None = None,
) -> list[StreamSource]:
    """Read ``cameras.yaml``: camera names mapped to a URL, or to ``url``/``options``/``follow``.

    Example::

        cameras:
          gate: rtsp://10.0.0.5/stream1
          lobby:
            url: udp://0.0.0.0:5000
          yard:
            url: rtsp://10.0.0.7/live
            options: {rtsp_transport: udp}
          backlog:
            url: /var/rec/cam3.ts
            follow: true

    A list of entries with a ``name`` key works too. ``options`` apply to every camera; a camera's
    own ``options`` override them.

    Raises:
        InputError: a missing or unreadable file, bad YAML, or a bad entry (named).
    """
    import yaml

    from vadindex.detect.prompts import safe_load_yaml

    file = Path(path).expanduser()
    try:
        data = safe_load_yaml(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{file}: no such cameras file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{file}: cannot read cameras file ({exc})") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{file}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if isinstance(data, dict) and "cameras" in data:
        data = data["cameras"]
    if isinstance(data, dict):
        entries = [(str(k), v) for k, v in data.items()]
    elif isinstance(data, list):
        entries = []
        for i, item in enumerate(data):
            if not isinstance(item, dict) or "name" not in item:
                raise InputError(f"{file}: entry {i + 1} needs a name and a url")
            entries.append((str(item["name"]), {k: v for k, v in item.items() if k != "name"}))
    else:
        raise InputError(f"{file}: expected 'cameras:' mapping names to URLs")
    if not entries:
        raise InputError(f"{file}: lists no cameras")
    sources = []
    for name, value in entries:
        where = f"{file}: camera {name!r}"
        if isinstance(value, str):
            value = {"url": value}
        if not isinstance(value, dict) or not isinstance(value.get("url"), str):
            raise InputError(f"{where}: needs a url")
        unknown = set(value) - {"url", "options", "follow"}
        if unknown:
            raise InputError(f"{where}: unknown keys {', '.join(sorted(map(str, unknown)))}")
        own = value.get("options") or {}
        if not isinstance(own, dict):
            raise InputError(f"{where}: options must map FFmpeg option names to values")
        follow = value.get("follow", False)
        if not isinstance(follow, bool):
            raise InputError(f"{where}: follow must be true or false")
        sources.append(
            parse_source(
                value["url"],
                name,
                follow=follow,
                options={**(options or {}), **own},
                rtsp_transport=rtsp_transport,
                where=where,
            )
        )
    return sources


def resolve_sources(
    sources: Sequence[str],
    *,
    names: Sequence[str] = (),
    cameras: str | os.PathLike[str] | None = None,
    follow: bool = False,
    options: Mapping[str, Any] | None = None,
    rtsp_transport: str = DEFAULT_RTSP_TRANSPORT,
) -> list[StreamSource]:
    """Every source of a ``watch``: the SOURCE arguments (named by ``names`` in order) and ``cameras``.

    Raises:
        InputError: no source, more names than sources, or two sources with one name.
    """
    if len(names) > len(sources):
        raise InputError(f"{len(names)} --name values for {len(sources)} sources")
    out = [
        parse_source(
            s, names[i] if i < len(names) else None, follow=follow, options=options,
            rtsp_transport=rtsp_transport, where=f"SOURCE {i + 1}",
        )
        for i, s in enumerate(sources)
    ]  # fmt: skip
    if cameras is not None:
        out += load_cameras(cameras, rtsp_transport=rtsp_transport, options=options)
    if not out:
        raise InputError("no sources: give stream URLs or --cameras cameras.yaml")
    seen: dict[str, str] = {}
    for s in out:
        if s.name in seen:
            raise InputError(
                f"two sources are named {s.name!r} ({seen[s.name]} and {s.display_url}); name them with "
                "--name or in cameras.yaml"
            )
        seen[s.name] = s.display_url
    return out
