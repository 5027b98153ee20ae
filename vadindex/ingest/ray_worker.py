"""The Ray actor of ``build --engine ray``: loads the encoder once, then ingests whole videos.

Imported only by the Ray engine and inside Ray worker processes (it imports ``ray``). A worker
never writes the index: it returns embedding-sized rows (segment and frame vectors, small tables),
never decoded frames, and the driver commits them.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray

from vadindex.config import DEFAULT_MODEL, SamplingSettings
from vadindex.errors import VadindexError
from vadindex.index.writer import PendingVideo
from vadindex.ingest.options import BuildOptions
from vadindex.ingest.sources import VideoSource
from vadindex.ingest.video import encoder_precision, failure_reason, ingest_for_build
from vadindex.models.identity import Encoder

log = logging.getLogger("vadindex")


@dataclass(frozen=True)
class WorkerResult:
    """What a worker sends back for one video: the ingested video, or why it failed."""

    video: PendingVideo | None
    #: Why the video could not be indexed (a recorded failure, as in a local build).
    reason: str = ""
    #: ``(error class, message)`` of an error that is not the video's (a full disk): stops the build.
    fatal: tuple[str, str] | None = None
    seconds: float = 0.0
    #: The worker's encoder arithmetic after this video, and what ``--precision auto`` measured.
    precision: str = ""
    int8_check: dict[str, Any] | None = None
    #: Warnings logged while the video was ingested (damaged stretches...), for the driver's log.
    warnings: tuple[str, ...] = ()


class _Watched:
    """The encoder, stamping the time of each batch it starts and finishes (the worker's heartbeat
    reports how long ago that was)."""

    def __init__(self, encoder: Encoder) -> None:
        self._encoder = encoder
        self.last_progress = time.monotonic()

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        self.last_progress = time.monotonic()
        out = self._encoder.encode_images(pixels)
        self.last_progress = time.monotonic()
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._encoder, name)


class _Collect(logging.Handler):
    """Keeps the warnings logged while one video is ingested."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.lines) < 20:
            self.lines.append(record.getMessage())


@ray.remote(concurrency_groups={"control": 1}, max_restarts=0, max_task_retries=0)
class VideoWorker:
    """One encoder in a Ray worker process.

    Ray restarts and retries nothing by itself (``max_restarts=0``): when the process dies the
    driver sees it at once, charges the video it was on, and starts a replacement. ``describe`` and
    ``heartbeat`` run in their own thread (the ``control`` group), so they answer while a video
    is being encoded; ``ingest`` runs one video at a time.
    """

    def __init__(self, options: BuildOptions, settings: SamplingSettings, device: str, threads: int) -> None:
        self.options = options
        self.settings = settings
        self.error: tuple[str, str] | None = None
        self.encoder: _Watched | None = None
        self.busy = False
        try:
            from vadindex.models.openclip import load_encoder

            o = options
            model = o.model or DEFAULT_MODEL
            encoder = load_encoder(
                model, o.pretrained, device, o.precision, o.backend, threads=threads, remember_int8=True
            )
            self.encoder = _Watched(encoder)
        except VadindexError as exc:  # reported by describe(): the driver stops the build with it
            self.error = (type(exc).__name__, str(exc))
        except Exception as exc:  # noqa: BLE001 - a CUDA or memory error: the same, named
            text = str(exc).strip()
            self.error = (
                "ModelError",
                f"cannot load the model: {type(exc).__name__}: {text.splitlines()[0] if text else ''}",
            )

    @ray.method(concurrency_group="control")
    def describe(self) -> dict[str, Any]:
        """The model as loaded here (what the index records), or the error that stopped it."""
        where = f"{socket.gethostname()} pid {os.getpid()}"
        if self.encoder is None:
            assert self.error is not None
            return {"error": self.error, "where": where}
        e = self.encoder
        return {
            "identity": e.identity,
            "dim": e.dim,
            "logit_scale": e.logit_scale,
            "image_size": e.image_size,
            "precision": encoder_precision(e),
            "where": where,
        }

    @ray.method(concurrency_group="control")
    def heartbeat(self) -> float:
        """Seconds since the encoder last started or finished a batch (0 when idle)."""
        if not self.busy or self.encoder is None:
            return 0.0
        return time.monotonic() - self.encoder.last_progress

    def ingest(self, source: VideoSource, video_id: str) -> WorkerResult:
        """Decode, sample, encode and segment one video, as a local build does.

        Args:
            source: the video (a path every node can read, or a URI).
            video_id: its content fingerprint, computed by the driver.

        Returns:
            The ingested video, or the reason it failed.
        """
        assert self.encoder is not None
        t0 = time.perf_counter()
        collect = _Collect()
        logger = logging.getLogger("vadindex")
        logger.addHandler(collect)
        self.busy = True
        self.encoder.last_progress = time.monotonic()
        video: PendingVideo | None = None
        reason = ""
        fatal = None
        try:
            video = ingest_for_build(source, self.encoder, self.settings, self.options, video_id)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - classified as in a local build
            why = failure_reason(exc)
            if why is None:
                fatal = (type(exc).__name__, str(exc))
            reason = why or ""
        finally:
            self.busy = False
            logger.removeHandler(collect)
        return WorkerResult(
            video,
            reason,
            fatal,
            time.perf_counter() - t0,
            encoder_precision(self.encoder),  # type: ignore[arg-type]
            getattr(self.encoder, "int8_check", None),
            tuple(collect.lines),
        )
