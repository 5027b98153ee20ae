"""One video through the pipeline: decode and sample (in a thread), gate, encode, cut into segments.

:func:`ingest_video` is the independent unit of ingestion work: every engine (the local loop, a
Ray actor) runs it through :func:`ingest_for_build` with the build's options, classifies what goes
wrong with :func:`failure_reason`, and the index writer commits what it returns.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from vadindex.config import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_STALL_TIMEOUT,
    DEFAULT_VIDEO_TIMEOUT,
    STORED_THUMBNAIL_SIZE,
    SamplingSettings,
)
from vadindex.errors import VadindexError, VideoError
from vadindex.index.writer import PendingVideo
from vadindex.ingest.decode import SampledVideo
from vadindex.ingest.gate import GatedEncoder, GateSettings, describe_gate
from vadindex.ingest.segment import build_segments
from vadindex.ingest.sources import VideoSource, fingerprint
from vadindex.models.identity import Encoder

if TYPE_CHECKING:
    from vadindex.ingest.options import BuildOptions


def _prefetch(
    source: Iterator[np.ndarray],
    depth: int,
    stall_timeout: float,
    path: Path | str,
    video_timeout: float | None = None,
) -> Iterator[np.ndarray]:
    """Run ``source`` in a thread so decoding overlaps encoding; give up on a stalled or slow decoder.

    A decoder stuck inside FFmpeg cannot be interrupted from Python: its thread is left behind (a
    daemon, so it never blocks exit) and the build moves on to the next file. A decoder that is
    merely slow stops at its next batch.
    """
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    deadline = None if video_timeout is None else time.monotonic() + video_timeout

    def put(kind: str, value: Any) -> bool:
        while not stop.is_set():
            try:
                q.put((kind, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in source:
                if not put("item", item):
                    return
            put("done", None)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put("error", exc)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()  # closes the container now, not when the generator is collected

    thread = threading.Thread(target=work, name=f"decode:{str(path).rsplit('/', 1)[-1]}", daemon=True)
    thread.start()
    try:
        while True:
            wait = stall_timeout
            if deadline is not None:
                wait = min(wait, max(deadline - time.monotonic(), 0.0))
            try:
                kind, value = q.get(timeout=wait)
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise VideoError(
                        str(path), f"took longer than --video-timeout {video_timeout:g} s; abandoned"
                    ) from None
                raise VideoError(str(path), f"decoder stalled for {stall_timeout:g} s; abandoned") from None
            if kind == "item":
                yield value
                if deadline is not None and time.monotonic() >= deadline:
                    raise VideoError(
                        str(path), f"took longer than --video-timeout {video_timeout:g} s; abandoned"
                    )
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()


def ingest_video(
    source: VideoSource,
    encoder: Encoder,
    settings: SamplingSettings,
    batch_size: int = DEFAULT_BATCH_SIZE,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT,
    video_id: str | None = None,
    video_timeout: float | None = DEFAULT_VIDEO_TIMEOUT,
    thumbnail_size: int | None = None,
    gate: GateSettings | None = None,
) -> PendingVideo:
    """Decode, sample, encode and segment one video: the independent unit of ingestion work.

    Args:
        source: the video.
        encoder: the image encoder.
        settings: sampling settings.
        batch_size: frames per encoder batch.
        stall_timeout: seconds without a decoded batch before the file is abandoned.
        video_id: the content fingerprint, if already computed.
        video_timeout: seconds the whole video may take (decoding and encoding); ``None`` for no limit.
        thumbnail_size: also keep a JPEG of each segment's middle sample, this many pixels on its
            longest side, for the index (``build --thumbnails``); ``None``: none.
        gate: the change gate (only frames that differ from the last encoded one are encoded, the
            others reuse its embedding); ``None`` encodes every sampled frame.

    Returns:
        The video's metadata, segment rows, segment vectors and frame vectors, ready to commit.

    Raises:
        VideoError: the video cannot be decoded or is shorter than one segment.
    """
    path = source.path
    sampled = SampledVideo(path, settings.fps, encoder.image_size, batch_size)
    if thumbnail_size:
        sampled.thumbnail_seconds, sampled.thumbnail_size = settings.segment_seconds, thumbnail_size
    batches = _prefetch(sampled.batches(), 2, stall_timeout, path, video_timeout)
    gated = GatedEncoder(encoder, gate, settings.fps, batch_size)
    precision_before = encoder_precision(encoder)
    for batch in batches:
        gated.add(batch)
    info = sampled.info
    assert info is not None
    frame_vectors = gated.vectors()
    segments = build_segments(sampled.frame_times, len(frame_vectors), info.duration, settings)
    if not segments:
        raise VideoError(
            str(path),
            f"{info.duration:.2f} s long, shorter than one segment ({settings.segment_seconds:g} s)",
        )
    frame_vectors = frame_vectors[: segments[-1].sample_end]
    encoded = gated.encoded_mask()[: segments[-1].sample_end]
    seg_vectors = np.stack([frame_vectors[s.sample_start : s.sample_end].mean(axis=0) for s in segments])
    seg_vectors /= np.maximum(np.linalg.norm(seg_vectors, axis=1, keepdims=True), 1e-12)
    vid = video_id or fingerprint(path)
    rows = pd.DataFrame(
        {
            "video_id": vid,
            "video": source.video,
            "segment": np.array([s.index for s in segments], dtype=np.int32),
            "start": [s.start for s in segments],
            "end": [s.end for s in segments],
            "start_frame": np.array([s.start_frame for s in segments], dtype=np.int64),
            "end_frame": np.array([s.end_frame for s in segments], dtype=np.int64),
            "frame_row": np.array([s.sample_start for s in segments], dtype=np.int64),
            "n_frames": np.array([s.sample_end - s.sample_start for s in segments], dtype=np.int32),
            "label": pd.array([source.label] * len(segments), dtype="Int8"),
            "class": pd.array([source.cls] * len(segments), dtype="string"),
        }
    )
    video = {
        "video_id": vid,
        "video": source.video,
        "path": path if isinstance(path, str) else str(path.absolute()),  # a URI as given
        "label": source.label,
        "class": source.cls,
        "duration": info.duration,
        "n_frames": info.n_frames,
        "width": info.width,
        "height": info.height,
        "codec": info.codec,
        "n_segments": len(segments),
        "warning": info.warning,
        "camera": source.camera,
    }
    return PendingVideo(
        video,
        rows,
        seg_vectors.astype(np.float32),
        frame_vectors.astype(np.float16),
        # both, when --precision auto moved to int8 during this video
        precision=",".join(sorted({precision_before, encoder_precision(encoder)} - {""})),
        thumbnails=segment_thumbnails(sampled, segments) if thumbnail_size else None,
        encoded=encoded,
        gate=describe_gate(gate),
    )


def segment_thumbnails(sampled: SampledVideo, segments: list[Any]) -> pd.DataFrame:
    """The thumbnails decoding kept, one row per segment (``time``, ``jpeg``; ``None`` if missing)."""
    kept = [sampled.thumbnails.get(s.index) for s in segments]
    return pd.DataFrame(
        {
            "time": [k[0] if k else float("nan") for k in kept],
            "jpeg": pd.Series([k[1] if k else None for k in kept], dtype=object),
        }
    )


def encoder_precision(encoder: Encoder) -> str:
    """The encoder's current arithmetic (``OpenClipEncoder.precision``); empty for encoders without one."""
    return str(getattr(encoder, "precision", ""))


def ingest_for_build(
    source: VideoSource,
    encoder: Encoder,
    settings: SamplingSettings,
    options: BuildOptions,
    video_id: str | None = None,
) -> PendingVideo:
    """:func:`ingest_video` with a build's options: what every engine runs for each video.

    Args:
        source: the video.
        encoder: the image encoder.
        settings: the index's sampling settings.
        options: the build's options (batch size, timeouts, thumbnails, the change gate...).
        video_id: the content fingerprint, if already computed.

    Returns:
        The ingested video, ready to commit.
    """
    o = options
    return ingest_video(
        source, encoder, settings, o.batch_size, o.stall_timeout, video_id, o.video_timeout,
        thumbnail_size=STORED_THUMBNAIL_SIZE if o.thumbnails else None, gate=GateSettings.from_options(o),
    )  # fmt: skip


def failure_reason(exc: BaseException) -> str | None:
    """Why a video could not be indexed, as a build records it; ``None`` when the error is not the
    video's (a full disk, a lost lock, an interrupt): then the build stops.

    Args:
        exc: what fingerprinting or :func:`ingest_for_build` raised.

    Returns:
        One line for ``failures.csv``, or ``None``.
    """
    if isinstance(exc, VadindexError):
        return exc.reason if isinstance(exc, VideoError) else None
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    if isinstance(exc, Exception):  # one bad video never stops a build
        text = str(exc)
        return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
    return None
