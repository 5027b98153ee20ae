"""Every option of ``vadindex watch`` beyond the build and detect ones, declared once in :class:`WatchOptions`."""

from __future__ import annotations

import math
from dataclasses import dataclass

from vadindex import config as C
from vadindex.errors import InputError
from vadindex.options import Options, option


@dataclass(frozen=True)
class WatchOptions(Options):
    """How streams are followed, committed and turned into alerts. Validated on construction."""

    commit_seconds: float = option(
        C.DEFAULT_COMMIT_SECONDS, "Commit the index this often; a kill -9 loses at most this much video."
    )
    cooldown: float = option(
        C.DEFAULT_COOLDOWN,
        "An event starting less than this many seconds after the camera's previous event ended raises "
        "no new alert: it extends the previous one.",
    )
    open_timeout: float = option(
        C.DEFAULT_OPEN_TIMEOUT, "Seconds a stream may take to open (probing may take twice this)."
    )
    read_timeout: float = option(
        C.DEFAULT_READ_TIMEOUT, "Seconds without data before a stream counts as lost and is reconnected."
    )
    max_lag: float = option(
        C.DEFAULT_MAX_LAG,
        "Seconds of finished segments a stream may have waiting for the encoder; beyond that the oldest "
        "are dropped (counted and reported), so alerts never fall further behind.",
    )
    rtsp_transport: str = option(
        C.DEFAULT_RTSP_TRANSPORT,
        "RTSP transport: tcp, or udp for servers and cameras without RTP over TCP.",
        choices=C.RTSP_TRANSPORTS,
    )
    min_history: int = option(
        C.DEFAULT_MIN_HISTORY,
        "With --calibrate, segments the index must hold before alerts are raised (calibration needs a "
        "history to compare with).",
    )
    webhook_timeout: float = option(C.DEFAULT_WEBHOOK_TIMEOUT, "Seconds per webhook POST.")
    webhook_retries: int = option(
        C.DEFAULT_WEBHOOK_RETRIES, "Webhook attempts after the first, with back-off."
    )
    threads: int = option(
        C.DEFAULT_WATCH_THREADS,
        "CPU threads of the encoder (PyTorch). Decoding threads share the cores, and on busy cores a "
        "multi-threaded encoder waits at every operation's barrier (BENCHMARKS.md).",
    )
    duration: float | None = option(
        None, "Stop (commit and exit 0) after this many seconds. [default: run until Ctrl-C]"
    )

    def __post_init__(self) -> None:
        for name in ("commit_seconds", "open_timeout", "read_timeout", "max_lag", "webhook_timeout"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise InputError(
                    f"--{name.replace('_', '-')} must be a positive number of seconds, got {value}"
                )
        if not (math.isfinite(self.cooldown) and self.cooldown >= 0):
            raise InputError(f"--cooldown must be 0 or more seconds, got {self.cooldown}")
        if self.duration is not None and not (math.isfinite(self.duration) and self.duration > 0):
            raise InputError(f"--duration must be a positive number of seconds, got {self.duration}")
        if self.min_history < 0:
            raise InputError(f"--min-history must be 0 or more, got {self.min_history}")
        if self.threads < 1:
            raise InputError(f"--threads must be at least 1, got {self.threads}")
        if self.webhook_retries < 0:
            raise InputError(f"--webhook-retries must be 0 or more, got {self.webhook_retries}")
        if self.rtsp_transport not in C.RTSP_TRANSPORTS:
            raise InputError(
                f"--rtsp-transport must be one of {', '.join(C.RTSP_TRANSPORTS)}, got {self.rtsp_transport!r}"
            )
