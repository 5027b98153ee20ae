"""One decoding thread per stream: open with timeouts, reconnect with back-off, sample, segment, queue.

What live input does that files do not, and how each is handled (each has a test):

- A silent peer blocks ``av.open`` and every read forever. Every open and read gets PyAV's
  ``timeout=(open, read)``: an FFmpeg interrupt callback on the clock, the one mechanism that works
  for every protocol (FFmpeg's own option names differ per protocol and changed across versions).
  It raises ``av.error.ExitError``; the container is dead after it, so the stream is reopened.
- UDP never ends: a sender that stops shows up only as that read timeout.
- A container must never be closed from another thread (FFmpeg crashes); :meth:`StreamReader.stop`
  sets a flag that the thread sees at its next packet, or within the read timeout.
- Every FFmpeg error (a refused connection, a server gone, garbage that does not probe, a 404 on
  an RTSP mount without a publisher) and every clean end of stream is "lost": reconnect after a
  jittered, doubling back-off (:data:`~vadindex.config.RECONNECT_MIN_DELAY` up to
  :data:`~vadindex.config.RECONNECT_MAX_DELAY`, back to the minimum once frames flowed), said on
  one line. Only a protocol this FFmpeg build lacks is permanent.
- Processing slower than real time: the encoder takes finished segments from a bounded queue per
  stream (:class:`SegmentQueues`) that drops its oldest segment when full (counted), and a decoder
  that falls behind real time decodes keyframes only until it has caught up.
- Timestamps: each sample keeps its stream time and a wall-clock time from the timeline's anchor;
  a stream whose timestamps jump (a camera's clock reset, a sender restarted) starts a new timeline.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np

from vadindex import config as C
from vadindex.config import SamplingSettings
from vadindex.errors import InputError
from vadindex.ingest.decode import sample_image
from vadindex.live.options import WatchOptions
from vadindex.live.segmenter import LiveSegment, Sample, Segmenter, StreamFormat
from vadindex.live.sources import StreamSource

log = logging.getLogger("vadindex")

#: Longest side of the whole-frame image kept for alert thumbnails.
DISPLAY_SIZE = 320
#: A session ends (and the stream is reopened) after this many undecodable packets in a row.
MAX_BAD_PACKETS_IN_A_ROW = 500
#: Stream time going back by more than this (seconds) starts a new timeline...
MAX_BACKWARD_JUMP = 1.0
#: ... and so does stream time running ahead of wall time by more than this.
MAX_FORWARD_JUMP = 10.0


def check_supported(sources: list[StreamSource]) -> None:
    """Refuse sources whose protocol this PyAV build's FFmpeg lacks (``srt://`` often), at once.

    Raises:
        InputError: naming the source and how to relay it.
    """
    checked = set()
    for src in sources:
        scheme = src.url.split("://", 1)[0].lower() if "://" in src.url else ""
        if not scheme or scheme in checked:
            continue
        checked.add(scheme)
        try:
            # An unknown protocol fails before any I/O; anything else (refused, timed out) is fine here.
            with av.open(f"{scheme}://127.0.0.1:1", timeout=(0.05, 0.05)):
                pass
        except av.error.ProtocolNotFoundError:
            raise InputError(
                f"{src.describe()}: this PyAV build's FFmpeg has no {scheme}:// protocol; relay the stream, "
                f"e.g. `ffmpeg -i {src.display_url} -c copy -f mpegts udp://127.0.0.1:5000` and watch that"
            ) from None
        except Exception:  # noqa: BLE001, S110 - the protocol exists: nothing listens at that address
            pass


class SegmentQueues:
    """Finished segments waiting for the encoder: a bounded queue per stream, drained round-robin.

    The drop policy: a stream's oldest waiting segment is dropped (and counted) when its queue
    holds ``max_segments``, and when it has waited ``max_age`` seconds by the time the encoder
    comes to it; so no stream is ever more than ``max_age`` seconds plus one batch behind, memory
    stays bounded, and one busy stream cannot starve the others. Streams in ``keep`` (files being
    followed, which lose nothing by waiting) are never dropped from.
    """

    def __init__(
        self, names: list[str], max_segments: int, max_age: float | None = None, keep: tuple[str, ...] = ()
    ) -> None:
        self.max_segments = max(1, max_segments)
        self.max_age = max_age
        self.keep = set(keep)
        self._queues: dict[str, deque[LiveSegment]] = {n: deque() for n in names}
        self._order = list(names)
        self._next = 0
        self.dropped: dict[str, int] = dict.fromkeys(names, 0)
        self.dropped_frames: dict[str, int] = dict.fromkeys(names, 0)
        self._cond = threading.Condition()

    def put(self, segment: LiveSegment, wait: threading.Event | None = None) -> None:
        """Queue a segment, dropping the stream's oldest when its queue is full.

        Args:
            wait: instead of dropping, wait for room until this event is set (a file being
                followed loses nothing by waiting, unlike a live stream).
        """
        with self._cond:
            q = self._queues[segment.camera]
            while wait is not None and len(q) >= self.max_segments and not wait.is_set():
                self._cond.wait(0.2)
            if len(q) >= self.max_segments:
                old = q.popleft()
                self.dropped[segment.camera] += 1
                self.dropped_frames[segment.camera] += old.n_frames
            q.append(segment)
            self._cond.notify()

    def take(self, max_frames: int, timeout: float) -> list[LiveSegment]:
        """Up to about ``max_frames`` frames of segments, one per stream per round (waits up to
        ``timeout`` seconds for the first)."""
        with self._cond:
            if not any(self._queues.values()):
                self._cond.wait(timeout)
            if self.max_age is not None:
                self._drop_stale(time.time() - self.max_age)
            out: list[LiveSegment] = []
            frames = 0
            while frames < max_frames and any(self._queues.values()):
                for _ in range(len(self._order)):
                    name = self._order[self._next]
                    self._next = (self._next + 1) % len(self._order)
                    if self._queues[name]:
                        seg = self._queues[name].popleft()
                        self._cond.notify_all()  # room for a follower waiting in put()
                        out.append(seg)
                        frames += seg.n_frames
                        if frames >= max_frames:
                            break
            return out

    def _drop_stale(self, cutoff: float) -> None:
        for name, q in self._queues.items():
            while q and q[0].completed < cutoff and name not in self.keep:
                old = q.popleft()
                self.dropped[name] += 1
                self.dropped_frames[name] += old.n_frames
                self._cond.notify_all()

    def pending(self) -> int:
        """Segments waiting."""
        with self._cond:
            return sum(len(q) for q in self._queues.values())

    def wake(self) -> None:
        """Wake a waiting :meth:`take` (to stop)."""
        with self._cond:
            self._cond.notify_all()


@dataclass
class StreamStats:
    """What one reader has seen (written by its thread, read by the engine)."""

    state: str = "connecting"
    connects: int = 0
    failures: int = 0
    frames_decoded: int = 0
    samples: int = 0
    segments: int = 0
    bad_packets: int = 0
    untimed_frames: int = 0
    discontinuities: int = 0
    keyframe_only: int = 0
    lag: float = 0.0
    last_error: str = ""
    format: StreamFormat | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "state": self.state,
            "connects": self.connects,
            "failures": self.failures,
            "frames_decoded": self.frames_decoded,
            "samples": self.samples,
            "segments": self.segments,
            "bad_packets": self.bad_packets,
            "untimed_frames": self.untimed_frames,
            "discontinuities": self.discontinuities,
            "keyframe_only_episodes": self.keyframe_only,
            "lag_s": round(self.lag, 3),
            "last_error": self.last_error,
            **self.extra,
        }


class _Lost(Exception):
    """A session ended for a reason worth one line (no video stream, too many bad packets)."""


class StreamReader(threading.Thread):
    """Decodes one stream, samples it at the index's rate and queues its finished segments."""

    def __init__(
        self,
        source: StreamSource,
        settings: SamplingSettings,
        image_size: int,
        queues: SegmentQueues,
        options: WatchOptions,
        status: Callable[[str], None],
    ) -> None:
        super().__init__(name=f"watch:{source.name}", daemon=True)
        self.source = source
        self.settings = settings
        self.image_size = image_size
        self.queues = queues
        self.options = options
        self.status = status
        self.stats = StreamStats()
        self._halt = threading.Event()
        self._timeline = 0
        self._segmenter = Segmenter(source.name, settings, self._emit, self._wall_of)
        #: The timeline's anchor: a stream time and the wall-clock time it was live.
        self._anchor = (0.0, 0.0)
        #: follow mode: the last stream time taken, and the file size when the last session ended.
        self._resume_t: float | None = None
        self._followed_size: int | None = None

    def stop(self) -> None:
        """Ask the thread to finish (it does within the read timeout; never closes from here)."""
        self._halt.set()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._halt.is_set()

    def _wall_of(self, t: float) -> float:
        """Wall-clock time of stream time ``t`` on the current timeline."""
        anchor_t, anchor_wall = self._anchor
        return anchor_wall + (t - anchor_t)

    def _emit(self, segment: LiveSegment) -> None:
        self.stats.segments += 1
        self.queues.put(segment, self._halt if self.source.follow else None)

    def _say(self, message: str) -> None:
        self.status(f"{self.source.name}: {message}")

    def run(self) -> None:
        delay = C.RECONNECT_MIN_DELAY
        last_reason = ""
        failures_in_a_row = 0
        while not self._halt.is_set():
            if self.source.follow and not self._file_changed():
                self._halt.wait(0.5)
                continue
            flowed = False
            reason = ""
            t_open = time.monotonic()
            try:
                flowed = self._session(t_open)
                reason = "stream ended"
            except av.error.ProtocolNotFoundError as exc:
                self.stats.state = "failed"
                self.stats.last_error = _reason(exc)
                self._say(f"cannot be read: {_reason(exc)} (this FFmpeg build lacks the protocol); giving up")
                return
            except av.error.ExitError:
                opened = self.stats.state == "live"
                reason = (
                    f"no data for {self.options.read_timeout:g} s"
                    if opened
                    else f"no stream within {time.monotonic() - t_open:.0f} s"
                )
            except (av.error.FFmpegError, OSError, _Lost) as exc:
                reason = _reason(exc)
            except Exception as exc:  # noqa: BLE001 - a bug here must not stop the other streams
                log.debug("reader %s", self.source.name, exc_info=True)
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                self._segmenter.flush()
            if self._halt.is_set():
                break
            was_live = self.stats.state == "live"
            self.stats.state = "lost"
            self.stats.last_error = reason
            if flowed:
                delay = C.RECONNECT_MIN_DELAY
                failures_in_a_row = 0
            failures_in_a_row += 1
            self.stats.failures += 1
            wait = delay * random.uniform(0.8, 1.2)
            # One line when a stream is lost or its reason changes; not one per retry of a dead camera.
            if was_live or reason != last_reason:
                self._say(f"{'lost' if was_live else 'cannot open'} ({reason}); reconnecting in {wait:.1f} s")
            else:
                log.debug("%s: still failing (%s), attempt %d", self.source.name, reason, failures_in_a_row)
            last_reason = reason
            self._halt.wait(wait)
            delay = min(delay * 2, C.RECONNECT_MAX_DELAY)
        self.stats.state = "stopped"

    def _file_changed(self) -> bool:
        """follow mode: whether the file exists and changed size since the last session ended, so
        a finished recording is not re-read from the start every back-off."""
        try:
            size = os.stat(self.source.url.removeprefix("file:")).st_size
        except OSError:
            return False
        return size > 0 and size != self._followed_size

    def _session(self, t_open: float) -> bool:
        """One connection: read until it ends or fails. Returns whether any frame was decoded."""
        src = self.source
        opts = self.options
        container = av.open(
            src.url,
            format=src.format,
            options=dict(src.options),
            timeout=(opts.open_timeout, opts.read_timeout),
            metadata_errors="ignore",
        )
        try:
            return self._read(container, t_open)
        finally:
            if src.follow:
                try:
                    self._followed_size = os.stat(src.url.removeprefix("file:")).st_size
                except OSError:
                    self._followed_size = None
            container.close()  # in this thread, the only one that ever touches it

    def _read(self, container: Any, t_open: float) -> bool:
        if not container.streams.video:
            raise _Lost("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        codec = stream.codec_context
        if codec is None:
            raise _Lost("no decoder for its video codec in this FFmpeg build")
        fmt = StreamFormat(container.format.name, codec.name, codec.width, codec.height)
        self.stats.format = fmt
        self._timeline += 1
        self._segmenter.start_timeline(self._timeline, fmt)
        self.stats.connects += 1
        self.stats.state = "live"
        again = " again" if self.stats.connects > 1 else ""
        self._say(
            f"connected{again} to {self.source.display_url} ({fmt.container}, {fmt.codec} "
            f"{fmt.width}x{fmt.height}) in {time.monotonic() - t_open:.1f} s"
        )
        step = 1.0 / self.settings.fps
        next_t: float | None = None
        last_t: float | None = None
        last_wall = anchor_t = anchor_wall = 0.0
        frame_no = 0
        keyframes_only = False
        bad_in_a_row = 0
        flowed = False
        for packet in container.demux(stream):
            if self._halt.is_set():
                return flowed
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                # Damaged data (a garbage burst, a lost UDP datagram): skip to the next keyframe.
                self.stats.bad_packets += 1
                bad_in_a_row += 1
                if bad_in_a_row >= MAX_BAD_PACKETS_IN_A_ROW:
                    raise _Lost(f"{bad_in_a_row} undecodable packets in a row") from None
                continue
            bad_in_a_row = 0
            for frame in frames:
                now = time.time()
                t = frame.time
                if t is None and packet.pts is not None and packet.time_base is not None:
                    t = float(packet.pts * packet.time_base)
                if t is None:
                    self.stats.untimed_frames += 1  # an RTSP stream's first frame may have no time yet
                    continue
                self.stats.frames_decoded += 1
                flowed = True
                if last_t is not None and (
                    t < last_t - MAX_BACKWARD_JUMP or t - last_t > now - last_wall + MAX_FORWARD_JUMP
                ):
                    # A camera's clock reset or a sender restarted: a new timeline, so segment
                    # times never run backwards or leave a day-long hole.
                    self.stats.discontinuities += 1
                    self._say(
                        f"timestamps jumped {'back' if t < last_t else 'ahead'} by {abs(t - last_t):.1f} s; "
                        "new timeline"
                    )
                    self._segmenter.flush()
                    self._timeline += 1
                    self._segmenter.start_timeline(self._timeline)
                    next_t = last_t = None
                    frame_no = 0
                if last_t is None:
                    anchor_t, anchor_wall = t, now
                elif now - (t - anchor_t) < anchor_wall:
                    # A frame that arrives earlier than the anchor predicts: the first frames came in a
                    # burst (probing buffered them); the earliest arrival is the best estimate.
                    anchor_wall = now - (t - anchor_t)
                last_t, last_wall = t, now
                self._anchor = (anchor_t, anchor_wall)
                wall = anchor_wall + (t - anchor_t)
                lag = now - wall
                self.stats.lag = lag
                if not keyframes_only and lag > C.KEYFRAME_ONLY_LAG:
                    keyframes_only = True
                    self.stats.keyframe_only += 1
                    codec.skip_frame = "NONKEY"
                    self._say(f"decoding keyframes only: {lag:.1f} s behind real time")
                elif keyframes_only and lag < C.KEYFRAME_RESUME_LAG:
                    keyframes_only = False
                    codec.skip_frame = "DEFAULT"
                    self._say("decoding every frame again: caught up with real time")
                frame_no += 1
                if self._resume_t is not None and self.source.follow and t <= self._resume_t:
                    continue  # follow mode reopened the file from its start: skip what was read
                if next_t is not None and t + 1e-9 < next_t:
                    continue
                # Sample on stream time; a late burst never builds a backlog of grid points.
                next_t = max((next_t if next_t is not None else t) + step, t)
                display = _display_image(frame) if self._segmenter.wants_display(t) else None
                self._segmenter.add(
                    Sample(t, wall, frame_no - 1, sample_image(frame, self.image_size), display)
                )
                self.stats.samples += 1
                if self.source.follow:
                    self._resume_t = t
        return flowed


def _display_image(frame: Any) -> np.ndarray:
    """The whole frame with its longest side at most :data:`DISPLAY_SIZE` (never enlarged)."""
    w, h = frame.width, frame.height
    scale = min(1.0, DISPLAY_SIZE / max(w, h))
    nw, nh = max(2, round(w * scale)), max(2, round(h * scale))
    return frame.reformat(width=nw, height=nh, format="rgb24", interpolation="AREA").to_ndarray()


def _reason(exc: BaseException) -> str:
    """An FFmpeg or OS error in a few words, without the URL FFmpeg appends (it may hold a password)."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text).split(": '")[0].strip()
