"""Video decoding with PyAV and frame sampling on the stream's own timestamps."""

from __future__ import annotations

import contextlib
import logging
import math
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from vadindex.errors import VideoError
from vadindex.ingest.images import encode_jpeg
from vadindex.ingest.remote import is_uri, open_uri

log = logging.getLogger("vadindex")

#: A jump between consecutive timestamps longer than this (seconds) is taken as damage, not as a
#: recording gap: the timeline goes on at the nominal frame rate instead.
MAX_TIMESTAMP_GAP = 300.0
#: Decoding gives up after this many packets in a row fail to decode: the rest of the file is not
#: video any more (data shifted against the container's index). Fewer failures are skipped, so a
#: damaged stretch costs that stretch and not the rest of the video.
MAX_BAD_PACKETS_IN_A_ROW = 500


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

    #: A local file, or a URI read through ``pyarrow.fs``.
    path: Path | str
    fps: float
    image_size: int
    batch_size: int = 64
    frame_times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sample_frames: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    info: VideoInfo | None = None
    #: Segment length for which to keep one thumbnail per segment while decoding (``None``: none).
    thumbnail_seconds: float | None = None
    #: Longest side of those thumbnails, in pixels.
    thumbnail_size: int = 160
    #: Segment number -> ``(time in seconds, JPEG)`` of its middle sample (see :class:`SegmentThumbnails`).
    thumbnails: dict[int, tuple[float, bytes]] = field(default_factory=dict)

    def batches(self) -> Iterator[np.ndarray]:
        """Yield ``(n, S, S, 3)`` uint8 RGB batches of the frames shown at ``t = j / fps``.

        Each sample is the frame on screen at its grid time: the last frame whose presentation
        time is at or before it, so variable frame rates and headers that lie about frame counts
        change nothing. Frames are scaled so the shortest side is ``image_size`` (bicubic) and
        centre-cropped, as CLIP's preprocessing does.
        """
        yield from _decode(self)


def open_video(path: Path | str) -> av.container.InputContainer:
    """Open ``path`` (a file, or a URI read through ``pyarrow.fs``) with PyAV, turning every failure
    into a one-line :class:`VideoError`."""
    if isinstance(path, str) and is_uri(path):
        return _open_uri(path)
    path = Path(path)
    if not path.exists():
        raise VideoError(str(path), "no such file")
    if path.is_dir():
        raise VideoError(str(path), "is a folder, not a video file")
    if not path.is_file():
        # A FIFO or device would block av.open forever.
        raise VideoError(str(path), "not a regular file")
    if path.stat().st_size == 0:
        raise VideoError(str(path), "empty file (0 bytes)")
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        hint = _mp4_hint(path)
        raise VideoError(str(path), hint or f"not a readable video ({_ffmpeg_reason(exc)})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VideoError(str(path), f"cannot open ({exc})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(str(path), "has no video stream")
    if container.streams.video[0].codec_context is None:
        # The container names a codec this FFmpeg build has no decoder for.
        container.close()
        raise VideoError(str(path), "unsupported video codec (no decoder for it in this FFmpeg build)")
    return container


def _open_uri(uri: str) -> av.container.InputContainer:
    """Open a remote video: PyAV reads (and seeks in) a buffered file over the object.

    The container keeps the file open while it lives; closing the container and dropping it
    closes the file too.
    """
    fh = open_uri(uri)
    try:
        container = av.open(fh, mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        fh.close()
        raise VideoError(uri, f"not a readable video ({_ffmpeg_reason(exc)})") from None
    except OSError as exc:
        fh.close()
        raise VideoError(uri, f"cannot read ({str(exc).splitlines()[0] if str(exc) else exc})") from None
    if not container.streams.video or container.streams.video[0].codec_context is None:
        container.close()
        fh.close()
        raise VideoError(uri, "has no video stream, or one this FFmpeg build cannot decode")
    return container


def _mp4_hint(path: Path) -> str:
    """Name the usual cause when an MP4/MOV file will not open: its ``moov`` index is missing.

    Recorders write ``moov`` when they stop, so a recording cut off by a crash or a full disk
    has none. Only the top-level box headers are read.
    """
    if path.suffix.lower() not in (".mp4", ".m4v", ".mov", ".3gp"):
        return ""
    boxes = []
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            at = 0
            while at + 8 <= size and len(boxes) < 1000:
                fh.seek(at)
                header = fh.read(16)
                length, name = int.from_bytes(header[:4], "big"), header[4:8]
                if length == 1 and len(header) == 16:
                    length = int.from_bytes(header[8:16], "big")
                elif length == 0:
                    length = size - at
                if length < 8 or not name.isalnum():
                    return ""  # not a box structure we can follow
                boxes.append(name)
                at += length
    except OSError:
        return ""
    if boxes and boxes[0] == b"ftyp" and b"moov" not in boxes:
        return (
            "truncated or damaged MP4: no 'moov' index (a recording cut off before it was finalised has none)"
        )
    return ""


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


#: A frame's display transform as the signs ``(a, b, c, d)`` of its display matrix: a display pixel
#: ``(x', y') = (a x + c y, b x + d y)`` up to a shift, as FFmpeg defines it. Identity is (1, 0, 0, 1).
Orientation = tuple[int, int, int, int]
IDENTITY: Orientation = (1, 0, 0, 1)


def _orientation(frame: object) -> tuple[Orientation, str]:
    """The display transform players apply to ``frame`` (rotations by 90 degrees and mirrors).

    Returns:
        The orientation, and a warning when the matrix is not a multiple of 90 degrees (rounded).
    """
    matrix = None
    for side in getattr(frame, "side_data", None) or ():
        if str(getattr(side, "type", "")).endswith("DISPLAYMATRIX"):
            with contextlib.suppress(TypeError, ValueError):
                matrix = np.frombuffer(bytes(side), dtype="<i4")[[0, 1, 3, 4]] / 65536.0  # of 3x3
    if matrix is None:
        rotation = int(getattr(frame, "rotation", 0) or 0)
        theta = np.deg2rad(rotation)
        matrix = np.array([np.cos(theta), -np.sin(theta), np.sin(theta), np.cos(theta)])
    a, b, c, d = (float(v) for v in matrix)
    if abs(a) + abs(d) >= abs(b) + abs(c):
        orientation, off_axis = (int(np.sign(a)), 0, 0, int(np.sign(d))), abs(b) + abs(c)
    else:
        orientation, off_axis = (0, int(np.sign(b)), int(np.sign(c)), 0), abs(a) + abs(d)
    if 0 in (orientation[0] or orientation[1], orientation[2] or orientation[3]):
        return IDENTITY, "display matrix is degenerate; shown as stored"
    if off_axis > 1e-3 * (abs(a) + abs(b) + abs(c) + abs(d)):
        return orientation, "display matrix is not a multiple of 90 degrees; rotated to the nearest"
    return orientation, ""


def _orient(img: np.ndarray, orientation: Orientation) -> np.ndarray:
    """Rotate and mirror ``img`` (rows y, columns x) the way players apply the display matrix."""
    if orientation == IDENTITY:
        return img
    a, b, c, d = orientation
    if a == 0:  # x' follows y and y' follows x: a transpose, then mirrors
        img, flip_x, flip_y = img.transpose(1, 0, 2), c < 0, b < 0
    else:
        flip_x, flip_y = a < 0, d < 0
    if flip_x:
        img = img[:, ::-1]
    if flip_y:
        img = img[::-1]
    return np.ascontiguousarray(img)


def sample_image(frame: object, size: int, orientation: Orientation = IDENTITY) -> np.ndarray:
    """A decoded frame as the encoder is fed it: shortest side scaled to ``size`` (bicubic),
    centre-cropped to a square and turned upright (what ``build`` samples; ``watch`` uses it too)."""
    return _orient(_resize_crop(frame, size), orientation)


def _timestamp(t: float | None, times: Sequence[float], rate: float) -> tuple[float, str]:
    """A frame's time (``None`` when it has none) placed on a strictly increasing timeline.

    Damaged files can carry timestamps that jump hours ahead or back to zero; one such jump would
    otherwise turn into millions of repeated samples, or hide the rest of the video behind a
    timeline that no longer advances.
    """
    if not times:
        return (0.0 if t is None else t), ""
    if t is None:
        return times[-1] + _frame_interval(times, rate), ""
    if t - times[-1] > MAX_TIMESTAMP_GAP:
        note = f"timestamp jumps {t - times[-1]:.0f} s ahead at {times[-1]:.2f} s"
        return times[-1] + _frame_interval(times, rate), note
    if t < times[-1] - 1.0:
        note = f"timestamp jumps {times[-1] - t:.0f} s back at {times[-1]:.2f} s"
        return times[-1] + _frame_interval(times, rate), note
    if t <= times[-1]:
        # Out-of-order or repeated timestamps: keep the timeline strictly increasing.
        return times[-1] + 1e-6, ""
    return t, ""


@dataclass
class _PacketErrors:
    """Packets :func:`_frames` skipped because they failed to decode."""

    count: int = 0
    in_a_row: int = 0
    reason: str = ""


def _frames(container: object, stream: object, errors: _PacketErrors) -> Iterator[object]:
    """The stream's frames in presentation order, skipping packets that fail to decode.

    ``container.decode(stream)`` stops at the first bad packet; decoding packet by packet lets the
    decoder resume at the next keyframe. Demuxer errors still end the stream (raised).
    """
    for packet in container.demux(stream):  # type: ignore[attr-defined]
        try:
            frames = packet.decode()
        except av.error.FFmpegError as exc:
            errors.count += 1
            errors.in_a_row += 1
            errors.reason = _ffmpeg_reason(exc)
            if errors.in_a_row >= MAX_BAD_PACKETS_IN_A_ROW:
                return
            continue
        errors.in_a_row = 0
        yield from frames


def _frame_interval(times: Sequence[float], rate: float) -> float:
    """The usual time between frames so far (the header's rate is skewed by a damaged timestamp)."""
    if len(times) > 1:
        return float(np.median(np.diff(times[-50:])))
    return 1.0 / rate


def _decode(video: SampledVideo) -> Iterator[np.ndarray]:
    path = video.path
    container = open_video(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        codec = stream.codec_context.name
        rate = float(stream.average_rate) if stream.average_rate else 25.0
        step = 1.0 / video.fps
        # Compact arrays: an hours-long video has millions of frames.
        times = array("d")
        samples = array("q")
        batch: list[np.ndarray] = []
        prev = None  # (index, frame) on screen before the current one
        t0 = offset = 0.0  # the first frame's own time; shift added by repaired timestamp jumps
        next_grid = 0.0
        orientation = IDENTITY
        rotation = 0
        warnings: list[str] = []
        width = height = 0
        errors = _PacketErrors()
        thumbs = (
            SegmentThumbnails(video.fps, video.thumbnail_seconds, video.thumbnail_size, video.thumbnails)
            if video.thumbnail_seconds
            else None
        )
        try:
            for index, frame in enumerate(_frames(container, stream, errors)):
                if not times:
                    t0 = frame.time or 0.0
                    width, height = frame.width, frame.height
                    rotation = int(getattr(frame, "rotation", 0) or 0)
                    orientation, note = _orientation(frame)
                    warnings += [note] if note else []
                raw = None if frame.time is None else frame.time - t0 + offset
                t, note = _timestamp(raw, times, rate)
                if note:
                    if raw is not None:
                        offset += t - raw  # later frames keep their spacing after the repaired jump
                    if len(warnings) < 5:
                        warnings.append(note)
                times.append(t)
                # Every grid point before this frame's time shows the previous frame.
                while prev is not None and next_grid < t:
                    samples.append(prev[0])
                    batch.append(_orient(_resize_crop(prev[1], video.image_size), orientation))
                    if thumbs is not None:
                        thumbs.add(len(samples) - 1, prev[1], orientation)
                    next_grid = len(samples) * step
                    if len(batch) >= video.batch_size:
                        yield np.stack(batch)
                        batch = []
                prev = (index, frame)
        except av.error.FFmpegError as exc:
            if not times:
                raise VideoError(str(path), f"cannot decode any frame ({_ffmpeg_reason(exc)})") from None
            warnings.append(
                f"decoding stopped at {times[-1]:.2f} s ({_ffmpeg_reason(exc)}); kept the readable part"
            )
        if errors.count and not times:
            raise VideoError(str(path), f"cannot decode any frame ({errors.reason})")
        if errors.in_a_row >= MAX_BAD_PACKETS_IN_A_ROW:
            warnings.append(
                f"decoding stopped at {times[-1]:.2f} s after {errors.in_a_row} undecodable packets in a row "
                f"({errors.reason}); kept the readable part"
            )
        elif errors.count:
            warnings.append(f"skipped {errors.count} undecodable packets ({errors.reason})")
        if not times:
            raise VideoError(str(path), "contains no decodable video frame")
        for note in warnings:
            log.warning("%s: %s", path, note)
        # The last frame stays on screen for one frame interval.
        last_dt = (times[-1] - times[-2]) if len(times) > 1 else 1.0 / rate
        if len(times) > 1:
            last_dt = min(last_dt, float(np.median(np.diff(times))) * 2)
        duration = times[-1] + max(last_dt, 1e-3)
        while prev is not None and next_grid < duration - 1e-9:
            samples.append(prev[0])
            batch.append(_orient(_resize_crop(prev[1], video.image_size), orientation))
            if thumbs is not None:
                thumbs.add(len(samples) - 1, prev[1], orientation)
            next_grid = len(samples) * step
            if len(batch) >= video.batch_size:
                yield np.stack(batch)
                batch = []
        if batch:
            yield np.stack(batch)
        if thumbs is not None:
            thumbs.finish()
        if orientation[0] == 0:  # shown transposed: portrait becomes landscape and back
            width, height = height, width
        video.frame_times = np.frombuffer(times, dtype=np.float64).copy()
        video.sample_frames = np.frombuffer(samples, dtype=np.int64).copy()
        video.info = VideoInfo(
            width=width,
            height=height,
            codec=codec,
            n_frames=len(times),
            duration=float(duration),
            rotation=rotation,
            warning="; ".join(warnings),
        )
    finally:
        container.close()


def frame_image(frame: object, max_side: int, orientation: Orientation = IDENTITY) -> np.ndarray:
    """A decoded frame as an upright RGB image whose longest side is at most ``max_side`` (never
    enlarged), aspect ratio kept (area-averaged, so small thumbnails do not alias)."""
    w, h = frame.width, frame.height  # type: ignore[attr-defined]
    scale = min(1.0, max_side / max(w, h, 1))
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    rgb = frame.reformat(width=nw, height=nh, format="rgb24", interpolation="AREA").to_ndarray()  # type: ignore[attr-defined]
    return _orient(rgb, orientation)


class SegmentThumbnails:
    """Keeps one small JPEG per segment while a video decodes: its middle sample.

    Sample ``j`` (shown at ``j / fps``) belongs to segment ``k`` when ``k L <= j / fps < (k + 1) L``,
    as in :func:`vadindex.ingest.segment.build_segments`; a full segment's thumbnail is its sample
    ``j0 + n // 2`` (the one at the segment's middle when ``fps L`` is even). A trailing partial
    segment has fewer samples, so its first half is held (a few frame references, thinned beyond
    :attr:`MAX_HELD`) until the video ends.
    """

    MAX_HELD = 8

    def __init__(self, fps: float, seconds: float, size: int, out: dict[int, tuple[float, bytes]]) -> None:
        self.fps, self.seconds, self.size, self.out = fps, seconds, size, out
        self.k = -1
        self.j0 = self.mid = 0
        self.last = -1
        self.held: list[tuple[int, object, Orientation]] = []

    def _first_sample(self, k: int) -> int:
        return math.ceil((k * self.seconds - 1e-9) * self.fps - 1e-9)

    def add(self, j: int, frame: object, orientation: Orientation) -> None:
        """Sample ``j`` was taken from ``frame``."""
        k = int(math.floor((j / self.fps + 1e-9) / self.seconds))
        if k != self.k:
            self.k, self.held = k, []
            self.j0 = self._first_sample(k)
            self.mid = self.j0 + (self._first_sample(k + 1) - self.j0) // 2
        self.last = j
        if k in self.out:
            return
        if j >= self.mid:
            self._keep(j, frame, orientation)
            self.held = []
        else:
            step = max(1, math.ceil((self.mid - self.j0) / self.MAX_HELD))
            if (j - self.j0) % step == 0:
                self.held.append((j, frame, orientation))

    def finish(self) -> None:
        """The video ended: a segment without its thumbnail yet (a partial one) takes its middle sample."""
        if self.k >= 0 and self.k not in self.out and self.held:
            middle = self.j0 + (self.last - self.j0 + 1) // 2
            j, frame, orientation = min(self.held, key=lambda h: abs(h[0] - middle))  # type: ignore[arg-type, return-value]
            self._keep(j, frame, orientation)
        self.held = []

    def _keep(self, j: int, frame: object, orientation: Orientation) -> None:
        self.out[self.k] = (j / self.fps, encode_jpeg(frame_image(frame, self.size, orientation)))


def read_frames_at(
    path: Path, times: Sequence[float], max_side: int, *, reseek_after: float = 4.0
) -> list[np.ndarray]:
    """The frames on screen at ``times`` (seconds from the first frame), upright, longest side at
    most ``max_side``: a thumbnail grab that never decodes a video from its start.

    For each time (in increasing order) the demuxer seeks to the keyframe at or before it and decodes
    forward to the last frame whose presentation time is at or before it. A time less than
    ``reseek_after`` seconds past the previous one is reached by decoding on instead of seeking
    again (within one group of pictures that is cheaper). A file that cannot seek is decoded
    forward from the start.

    Args:
        path: the video file.
        times: seconds from the video's first frame; before the first frame gives the first frame,
            past the end the last one.
        max_side: longest side of the returned images (never enlarged).
        reseek_after: seconds ahead beyond which seeking beats decoding on.

    Returns:
        One ``(h, w, 3)`` uint8 RGB image per time, in the order given.

    Raises:
        VideoError: the file cannot be opened or no frame decodes.
    """
    out: list[np.ndarray | None] = [None] * len(times)
    container = open_video(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        base = stream.time_base
        t0 = float(stream.start_time * base) if stream.start_time is not None and base else 0.0
        can_seek = bool(base)
        frames: Iterator[object] | None = None
        shown: tuple[float, object] | None = None  # the frame on screen, with its time
        pending: object | None = None  # decoded past the previous target, not shown yet
        errors = _PacketErrors()
        for i in sorted(range(len(times)), key=lambda n: times[n]):
            target = max(float(times[i]), 0.0)
            if frames is None or (shown is not None and target - shown[0] > reseek_after):
                sought = False
                if can_seek and target > 0:
                    try:
                        container.seek(
                            round((t0 + target) / base), stream=stream, backward=True, any_frame=False
                        )
                        sought = True
                    except av.error.FFmpegError:
                        can_seek = False  # an unindexed file: decode forward instead
                        if frames is None:  # nothing decoded yet: start again from a clean state
                            container.close()
                            container = open_video(path)
                            stream = container.streams.video[0]
                            stream.thread_type = "AUTO"
                if sought or frames is None:
                    if frames is not None:
                        frames.close()  # type: ignore[attr-defined]
                    frames, shown, pending = _frames(container, stream, errors), None, None
            while True:
                frame = pending if pending is not None else next(frames, None)
                pending = None
                if frame is None:
                    break  # the end: the last frame stays on screen
                raw = frame.time  # type: ignore[attr-defined]
                t = raw - t0 if raw is not None else (shown[0] + 1e-3 if shown else 0.0)
                if shown is not None and t > target + 1e-6:
                    pending = frame
                    break
                shown = (t, frame)
            if shown is None:
                reason = errors.reason or "no frame"
                raise VideoError(str(path), f"cannot decode a frame at {target:.2f} s ({reason})")
            out[i] = frame_image(shown[1], max_side, _orientation(shown[1])[0])
    except av.error.FFmpegError as exc:
        raise VideoError(str(path), f"cannot decode a frame ({_ffmpeg_reason(exc)})") from None
    finally:
        container.close()
    return out  # type: ignore[return-value]
