"""Video decoding with PyAV and frame sampling on the stream's own timestamps."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vadindex.errors import VideoError

log = logging.getLogger("vadindex")


@dataclass(frozen=True)
class VideoInfo:
    """What decoding learned about one video; times are seconds from its first frame."""

    width: int
    height: int
    codec: str
    n_frames: int
    duration: float
    rotation: int = 0
    warning: str = ""


@dataclass
class SampledVideo:
    """A video decoded once: the sampled frames come out in batches, the timeline at the end.

    Iterate over :meth:`batches` first; ``frame_times``, ``sample_frames`` and ``info`` are complete
    only after the iteration has finished.
    """

    path: Path
    fps: float
    image_size: int
    batch_size: int = 64
    frame_times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sample_frames: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    info: VideoInfo | None = None

    def batches(self) -> Iterator[np.ndarray]:
        """Yield ``(n, S, S, 3)`` uint8 RGB batches of the frames shown at ``t = j / fps``.

        Each sample is the frame on screen at its grid time: the last frame whose presentation
        time is at or before it, so variable frame rates and headers that lie about frame counts
        change nothing. Frames are scaled so the shortest side is ``image_size`` (bicubic) and
        centre-cropped, as CLIP's preprocessing does.
        """
        yield from _decode(self)


def open_video(path: Path) -> av.container.InputContainer:  # noqa: F821 - av imported lazily
    """Open ``path`` with PyAV, turning every failure into a one-line :class:`VideoError`."""
    import av

    if not path.exists():
        raise VideoError(str(path), "no such file")
    if path.is_dir():
        raise VideoError(str(path), "is a folder, not a video file")
    if path.stat().st_size == 0:
        raise VideoError(str(path), "empty file (0 bytes)")
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise VideoError(str(path), f"not a readable video ({_ffmpeg_reason(exc)})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VideoError(str(path), f"cannot open ({exc})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(str(path), "has no video stream")
    return container


def _ffmpeg_reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).split(":")[0].strip() or type(exc).__name__


def _resize_crop(frame: object, size: int) -> np.ndarray:
    """Scale a PyAV frame so its shortest side is ``size`` and centre-crop it to a square."""
    w, h = frame.width, frame.height  # type: ignore[attr-defined]
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    rgb = frame.reformat(width=nw, height=nh, format="rgb24", interpolation="BICUBIC").to_ndarray()  # type: ignore[attr-defined]
    top, left = (nh - size) // 2, (nw - size) // 2
    return rgb[top : top + size, left : left + size]


def _rotate(img: np.ndarray, rotation: int) -> np.ndarray:
    """Apply the display-matrix rotation (degrees counter-clockwise) that players apply."""
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(img, k)) if k else img


def _decode(video: SampledVideo) -> Iterator[np.ndarray]:
    import av

    path = video.path
    container = open_video(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        codec = stream.codec_context.name
        rate = float(stream.average_rate) if stream.average_rate else 25.0
        step = 1.0 / video.fps
        times: list[float] = []
        samples: list[int] = []
        batch: list[np.ndarray] = []
        prev = None  # (index, frame) on screen before the current one
        t0: float | None = None
        next_grid = 0.0
        rotation = 0
        warning = ""
        width = height = 0
        try:
            for index, frame in enumerate(container.decode(stream)):
                t = frame.time
                if t is None:
                    t = (times[-1] + 1.0 / rate) if times else 0.0
                if t0 is None:
                    t0 = t
                    width, height = frame.width, frame.height
                    rotation = int(getattr(frame, "rotation", 0) or 0)
                t -= t0
                if times and t <= times[-1]:
                    # Out-of-order or repeated timestamps: keep the timeline strictly increasing.
                    t = times[-1] + 1e-6
                times.append(t)
                # Every grid point before this frame's time shows the previous frame.
                while prev is not None and next_grid < t:
                    samples.append(prev[0])
                    batch.append(_rotate(_resize_crop(prev[1], video.image_size), rotation))
                    next_grid = len(samples) * step
                    if len(batch) >= video.batch_size:
                        yield np.stack(batch)
                        batch = []
                prev = (index, frame)
        except av.error.FFmpegError as exc:
            if not times:
                raise VideoError(str(path), f"cannot decode any frame ({_ffmpeg_reason(exc)})") from None
            warning = f"decoding stopped at {times[-1]:.2f} s ({_ffmpeg_reason(exc)}); kept the readable part"
            log.warning("%s: %s", path, warning)
        if not times:
            raise VideoError(str(path), "contains no decodable video frame")
        # The last frame stays on screen for one frame interval.
        last_dt = (times[-1] - times[-2]) if len(times) > 1 else 1.0 / rate
        if len(times) > 1:
            last_dt = min(last_dt, float(np.median(np.diff(times))) * 2)
        duration = times[-1] + max(last_dt, 1e-3)
        while prev is not None and next_grid < duration - 1e-9:
            samples.append(prev[0])
            batch.append(_rotate(_resize_crop(prev[1], video.image_size), rotation))
            next_grid = len(samples) * step
            if len(batch) >= video.batch_size:
                yield np.stack(batch)
                batch = []
        if batch:
            yield np.stack(batch)
        if rotation % 180:
            width, height = height, width
        video.frame_times = np.asarray(times, dtype=np.float64)
        video.sample_frames = np.asarray(samples, dtype=np.int64)
        video.info = VideoInfo(
            width=width,
            height=height,
            codec=codec,
            n_frames=len(times),
            duration=float(duration),
            rotation=rotation,
            warning=warning,
        )
    finally:
        container.close()
