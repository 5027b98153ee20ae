"""``vadindex serve``: bind, print the URL, and run the app on uvicorn until interrupted."""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Callable
from typing import Any

import uvicorn

from vadindex.errors import InputError
from vadindex.web.app import create_app
from vadindex.web.options import ServeOptions, is_loopback

log = logging.getLogger("vadindex")


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free one)."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host in ("::", ""):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(2048)
    except (OSError, UnicodeError) as exc:
        raise InputError(
            f"cannot listen on {host}:{port} ({getattr(exc, 'strerror', None) or exc})"
        ) from None
    return sock


def url_of(sock: socket.socket, host: str, token: str | None) -> str:
    """The address to open: loopback as given, an address that means every interface as this
    machine's name, the port as bound, and ``?token=`` when there is a token."""
    port = sock.getsockname()[1]
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def serve(
    index: str | os.PathLike[str],
    options: ServeOptions | None = None,
    *,
    announce: Callable[[str], None] = print,
    access_log: bool = False,
    **state_options: Any,
) -> None:
    """Serve an index until interrupted.

    Args:
        index: the index folder.
        options: host, port and token (:class:`~vadindex.web.options.ServeOptions`). Any host but
            loopback needs a token: one is generated when none is given.
        announce: called once with the URL to open (``?token=`` included) when the server listens.
        access_log: log every request (off by default: queries are in the URLs).
        state_options: :class:`~vadindex.web.state.IndexState` options (``video_root``,
            ``thumbnail_size``, ``annotations``, ``annotation_format``, ``device``).
    """
    o = options or ServeOptions()
    token = o.token
    if token is None and not is_loopback(o.host):
        token = secrets.token_urlsafe(32)
    app = create_app(index, token=token, check_host=token is None, **state_options)
    sock = listen(o.host, o.port)
    announce(url_of(sock, o.host, token))
    config = uvicorn.Config(
        app, log_level="warning", access_log=access_log, server_header=False, date_header=True,
        timeout_keep_alive=5, timeout_graceful_shutdown=3, lifespan="off",
    )  # fmt: skip
    uvicorn.Server(config).run(sockets=[sock])
