"""Ingestion: per-video units of work (decode, sample, encode, segment) and one committer."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vadindex.config import (
    DEFAULT_BACKEND,
    DEFAULT_BATCH_SIZE,
    DEFAULT_COMMIT_EVERY,
    DEFAULT_DEVICE,
    DEFAULT_FPS,
    DEFAULT_MODEL,
    DEFAULT_PRECISION,
    DEFAULT_SEGMENT_SECONDS,
    DEFAULT_STALL_TIMEOUT,
    SamplingSettings,
)
from vadindex.decode import SampledVideo
from vadindex.encoder import Encoder
from vadindex.errors import InputError, VadindexError, VideoError
from vadindex.segment import build_segments
from vadindex.sources import VideoSource, collect_sources, fingerprint
from vadindex.store import LOCK, MANIFEST, PARTS, IndexWriter, PendingVideo, lock_index, read_manifest

log = logging.getLogger("vadindex")

#: Seconds one video may take in all before it is abandoned; ``None``: no limit (hours-long videos
#: are legitimate, and the stall timeout already catches a decoder that hangs).
DEFAULT_VIDEO_TIMEOUT: float | None = None
#: Commit at least this often (seconds) while videos are pending, whatever ``commit_every`` says.
COMMIT_INTERVAL = 60.0


@dataclass(frozen=True)
class BuildSummary:
    """What a build did."""

    index: str
    videos_added: int
    videos_skipped: int
    segments_added: int
    frames_encoded: int
    failures: tuple[tuple[str, str], ...]
    seconds: float
    total_videos: int
    total_segments: int
    model: str
    #: The image encoder's arithmetic at the end of the build (``fp32``, ``int8``, ``fp16``).
    precision: str = ""
    #: What ``--precision auto`` measured before choosing between int8 and fp32 on a CPU
    #: (``frames``, ``min_cosine``, ``mean_cosine``, ``accepted``); ``None`` when it did not run.
    int8_check: dict[str, Any] | None = None

    @property
    def frames_per_second(self) -> float:
        """Frames encoded per wall-clock second, decoding and storage included."""
        return self.frames_encoded / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "index": self.index,
            "model": self.model,
            "videos_added": self.videos_added,
            "videos_skipped": self.videos_skipped,
            "segments_added": self.segments_added,
            "frames_encoded": self.frames_encoded,
            "failures": [{"path": p, "reason": r} for p, r in self.failures],
            "seconds": round(self.seconds, 3),
            "frames_per_second": round(self.frames_per_second, 2),
            "total_videos": self.total_videos,
            "total_segments": self.total_segments,
            "precision": self.precision,
            "int8_check": self.int8_check,
        }


def _prefetch(
    source: Iterator[np.ndarray],
    depth: int,
    stall_timeout: float,
    path: Path,
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

    thread = threading.Thread(target=work, name=f"decode:{path.name}", daemon=True)
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


class _Rows:
    """A float32 matrix grown by doubling: one long-lived allocation, not one per batch.

    Thousands of small blocks kept alive between large transient batches fragment the C heap,
    and an hours-long video then costs several times its embeddings in resident memory.
    """

    def __init__(self, dim: int) -> None:
        self._data = np.zeros((0, dim), np.float32)
        self._n = 0

    def append(self, block: np.ndarray) -> None:
        end = self._n + len(block)
        if end > len(self._data):
            grown = np.empty((max(end, 2 * len(self._data), 256), self._data.shape[1]), np.float32)
            grown[: self._n] = self._data[: self._n]
            self._data = grown
        self._data[self._n : end] = block
        self._n = end

    def array(self) -> np.ndarray:
        return self._data[: self._n]


def ingest_video(
    source: VideoSource,
    encoder: Encoder,
    settings: SamplingSettings,
    batch_size: int = DEFAULT_BATCH_SIZE,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT,
    video_id: str | None = None,
    video_timeout: float | None = DEFAULT_VIDEO_TIMEOUT,
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

    Returns:
        The video's metadata, segment rows, segment vectors and frame vectors, ready to commit.

    Raises:
        VideoError: the video cannot be decoded or is shorter than one segment.
    """
    path = source.path
    sampled = SampledVideo(path, settings.fps, encoder.image_size, batch_size)
    batches = _prefetch(sampled.batches(), 2, stall_timeout, path, video_timeout)
    rows = _Rows(encoder.dim)
    precision_before = _precision(encoder)
    for batch in batches:
        rows.append(encoder.encode_images(batch))
    info = sampled.info
    assert info is not None
    frame_vectors = rows.array()
    segments = build_segments(sampled.frame_times, len(frame_vectors), info.duration, settings)
    if not segments:
        raise VideoError(
            str(path),
            f"{info.duration:.2f} s long, shorter than one segment ({settings.segment_seconds:g} s)",
        )
    frame_vectors = frame_vectors[: segments[-1].sample_end]
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
        "path": str(path.absolute()),
        "label": source.label,
        "class": source.cls,
        "duration": info.duration,
        "n_frames": info.n_frames,
        "width": info.width,
        "height": info.height,
        "codec": info.codec,
        "n_segments": len(segments),
        "warning": info.warning,
    }
    return PendingVideo(
        video,
        rows,
        seg_vectors.astype(np.float32),
        frame_vectors.astype(np.float16),
        # both, when --precision auto moved to int8 during this video
        precision=",".join(sorted({precision_before, _precision(encoder)} - {""})),
    )


@dataclass
class _Progress:
    """A tqdm bar over videos, or nothing."""

    total: int
    enabled: bool
    bar: Any = field(default=None)

    def __post_init__(self) -> None:
        if self.enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, unit="video", desc="indexing", dynamic_ncols=True)

    def update(self, frames: int, seconds: float, name: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{frames / max(seconds, 1e-9):.1f} frames/s {name[-30:]}")
            self.bar.update(1)

    def write(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message)
        else:
            log.warning(message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def build_index(
    sources: list[str | os.PathLike[str]],
    index: str | os.PathLike[str],
    *,
    manifest: str | os.PathLike[str] | None = None,
    model: str | None = None,
    pretrained: str | None = None,
    device: str = DEFAULT_DEVICE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    fps: float | None = None,
    segment_seconds: float | None = None,
    commit_every: int = DEFAULT_COMMIT_EVERY,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT,
    video_timeout: float | None = DEFAULT_VIDEO_TIMEOUT,
    progress: bool = True,
    encoder: Encoder | None = None,
    on_failure: Callable[[str, str], None] | None = None,
    precision: str = DEFAULT_PRECISION,
    index_type: str | None = None,
    backend: str = DEFAULT_BACKEND,
) -> BuildSummary:
    """Index videos: decode, sample, encode and store every segment; skip videos already indexed.

    When the index exists, its model and sampling are used unless given; giving different ones is
    refused. A video that cannot be read is reported and skipped; the build goes on. The index is
    locked before the model loads, so a second build on the same index is refused at once.

    Args:
        sources: video files and folders.
        index: the index folder (created if missing).
        manifest: optional manifest CSV (path, label, class).
        model: open_clip architecture; default the index's, else ``ViT-B-32``.
        pretrained: open_clip tag, checkpoint path, ``builtin`` or ``random``.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        batch_size: frames per encoder batch.
        fps: frames sampled per second.
        segment_seconds: segment length.
        commit_every: videos per commit.
        stall_timeout: seconds a decoder may produce nothing before its file is abandoned.
        video_timeout: seconds one video may take in all before it is abandoned (``None``: no limit).
        progress: show a progress bar.
        encoder: an already-loaded encoder (overrides ``model``/``pretrained``/``device``).
        on_failure: called with ``(path, reason)`` for each video that fails.
        precision: encoder arithmetic, ``auto``, ``fp32``, ``int8`` (CPU) or ``fp16`` (CUDA).
        backend: image-tower runtime, ``torch`` or ``onnxruntime`` (CPU fp32, optional install).
        index_type: FAISS index type (``auto``, ``flat``, ``ivf``, ``hnsw``); default the index's, else ``auto``.

    Returns:
        A :class:`BuildSummary`; ``failures`` lists every video that was not indexed, also written
        to ``failures.csv`` in the index at each commit.
    """
    t_start = time.perf_counter()
    index_path = Path(index).expanduser()
    if batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")
    if commit_every < 1:
        raise InputError(f"--commit-every must be at least 1, got {commit_every}")
    if not stall_timeout > 0 or (video_timeout is not None and not video_timeout > 0):
        raise InputError("--stall-timeout and --video-timeout must be positive")
    existing = read_manifest(index_path) if (index_path / MANIFEST).exists() else None
    if existing is not None:
        model = model or existing.model
        if pretrained is None and model == existing.model:
            pretrained = existing.pretrained_path or existing.pretrained
            if pretrained.startswith("file:"):
                raise InputError(
                    f"{index_path}: built from checkpoint {pretrained[5:]}; pass it again with --pretrained PATH"
                )
        fps = fps if fps is not None else existing.sampling["fps"]
        segment_seconds = (
            segment_seconds if segment_seconds is not None else existing.sampling["segment_seconds"]
        )
    settings = SamplingSettings(
        fps=fps if fps is not None else DEFAULT_FPS,
        segment_seconds=segment_seconds if segment_seconds is not None else DEFAULT_SEGMENT_SECONDS,
    )
    settings.validate()
    videos, failures = collect_sources(sources, manifest)
    if not videos:
        detail = "; ".join(f"{p}: {r}" for p, r in failures) or "no sources given"
        raise InputError(f"no videos to index ({detail})")
    if index_type is not None:
        from vadindex.ann import check_index_type

        check_index_type(index_type)
    created = not index_path.exists()
    lock = lock_index(index_path)
    try:
        if encoder is None:
            from vadindex.encoder import load_encoder

            encoder = load_encoder(model or DEFAULT_MODEL, pretrained, device, precision, backend)
        writer = IndexWriter(
            index_path,
            encoder.identity,
            encoder.dim,
            encoder.logit_scale,
            _sampling_dict(settings),
            pretrained_path=_pretrained_path(encoder, pretrained),
            lock=lock,
            index_type=index_type,
        )
        writer.open()
    except BaseException:
        lock.release()
        if created:
            _remove_empty_index(index_path)
        raise
    failures = list(failures)
    if on_failure:
        for p, r in failures:
            on_failure(p, r)
    added = skipped = segments_added = frames = 0
    with writer:
        bar = _Progress(len(videos), progress)
        last_commit = time.perf_counter()

        def commit(final: bool = False) -> None:
            writer.commit(final)
            writer.write_failures(failures)

        try:
            for src in videos:
                t_video = time.perf_counter()
                log.debug("ingesting %s", src.path)
                try:
                    vid = fingerprint(src.path)
                    if writer.has_video(vid):
                        skipped += 1
                        bar.update(0, 1.0, src.video)
                        continue
                    item = ingest_video(src, encoder, settings, batch_size, stall_timeout, vid, video_timeout)
                except VadindexError as exc:
                    if not isinstance(exc, VideoError):
                        raise
                    reason = exc.reason
                except OSError as exc:
                    reason = exc.strerror or str(exc)
                except Exception as exc:  # noqa: BLE001 - one bad video never stops a build
                    log.debug("unexpected error on %s", src.path, exc_info=True)
                    reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                else:
                    writer.add(item)
                    added += 1
                    segments_added += len(item.segments)
                    frames += len(item.frame_vectors)
                    bar.update(len(item.frame_vectors), time.perf_counter() - t_video, src.video)
                    if writer.pending >= commit_every or time.perf_counter() - last_commit > COMMIT_INTERVAL:
                        commit()
                        last_commit = time.perf_counter()
                    continue
                failures.append((str(src.path), reason))
                bar.write(f"skipped {src.path}: {reason}")
                if on_failure:
                    on_failure(str(src.path), reason)
                bar.update(0, 1.0, src.video)
        except KeyboardInterrupt:
            commit(final=True)  # keep what is finished
            raise
        finally:
            bar.close()
        commit(final=True)
        manifest_now = writer.manifest
        assert manifest_now is not None
    return BuildSummary(
        index=str(index_path),
        videos_added=added,
        videos_skipped=skipped,
        segments_added=segments_added,
        frames_encoded=frames,
        failures=tuple(failures),
        seconds=time.perf_counter() - t_start,
        total_videos=manifest_now.n_videos,
        total_segments=manifest_now.n_segments,
        model=encoder.identity.describe(),
        precision=_precision(encoder),
        int8_check=getattr(encoder, "int8_check", None),
    )


def _precision(encoder: Encoder) -> str:
    """The encoder's current arithmetic (``OpenClipEncoder.precision``); empty for encoders without one."""
    return str(getattr(encoder, "precision", ""))


def _sampling_dict(settings: SamplingSettings) -> dict[str, float]:
    return {
        "fps": settings.fps,
        "segment_seconds": settings.segment_seconds,
        "min_tail_fraction": settings.min_tail_fraction,
    }


def _pretrained_path(encoder: Encoder, pretrained: str | None) -> str | None:
    """The checkpoint file's absolute path, recorded so queries can find the same weights."""
    if encoder.identity.pretrained.startswith("file:") and pretrained:
        return str(Path(pretrained).expanduser().absolute())
    return None


def _remove_empty_index(path: Path) -> None:
    """Undo the folder a build created before it failed to start (model missing, index locked)."""
    with contextlib.suppress(OSError):
        (path / LOCK).unlink(missing_ok=True)
        (path / PARTS).rmdir()
        path.rmdir()
