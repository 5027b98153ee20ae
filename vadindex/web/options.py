"""Every option of ``vadindex serve`` that is not a report option, declared once in :class:`ServeOptions`.

The module imports neither numpy nor FastAPI, so the CLI can declare its flags from it cheaply.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
from dataclasses import dataclass

from vadindex import config as C
from vadindex.errors import InputError
from vadindex.options import Options, option

#: Host names that always mean this machine.
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")
#: A token travels in a header, a cookie and a link: URL-unreserved characters only.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~-]{8,256}")


@dataclass(frozen=True)
class ServeOptions(Options):
    """Where the server listens and who may use it."""

    host: str = option(
        C.DEFAULT_SERVE_HOST,
        "Address to listen on. Any address but loopback needs a token (generated and printed in the URL "
        "when --token is not given).",
    )
    port: int = option(
        C.DEFAULT_SERVE_PORT, "Port to listen on (0: any free port; the printed URL says which)."
    )
    token: str | None = option(
        None,
        "Access token every request must carry (X-Token or Authorization: Bearer header, or the cookie "
        "the printed ?token= link sets); 8-256 characters of A-Z a-z 0-9 . _ ~ -. "
        "[default: none on loopback, generated on any other address]",
    )

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise InputError(f"--port must be between 0 and 65535, got {self.port}")
        if not self.host.strip():
            raise InputError("--host must not be empty")
        if self.token is not None and not TOKEN_PATTERN.fullmatch(self.token):
            raise InputError(
                "--token must be 8-256 characters of letters, digits and . _ ~ - "
                "(it travels in headers, cookies and links)"
            )

    @property
    def loopback(self) -> bool:
        """True when the server listens on this machine only."""
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


#: Modules ``vadindex serve`` needs beyond the core (the ``web`` extra), by the package that provides them.
WEB_MODULES = {"fastapi": "fastapi", "uvicorn": "uvicorn", "python_multipart": "python-multipart"}


def missing_web_packages() -> list[str]:
    """The packages of the ``web`` extra that are not installed (found without importing them)."""
    missing = []
    for module, package in WEB_MODULES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found and not (module == "python_multipart" and importlib.util.find_spec("multipart")):
            missing.append(package)
    return missing


#: Threads each numeric library may use per call in a server. Requests run in up to 40 threads at
#: once; with OpenBLAS or OpenMP at their default (a thread per core) in each, every call competes
#: with all the others, and 50 concurrent searches ran 60-80x slower than with one thread per call
#: (measured while designing the server). Parallelism comes from concurrent requests instead.
THREAD_LIMITS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def limit_threads() -> None:
    """One thread per numeric call, unless the environment says otherwise. Must run before numpy,
    FAISS or PyTorch load (they read these once), so ``vadindex serve`` calls it first."""
    for name in THREAD_LIMITS:
        os.environ.setdefault(name, "1")
