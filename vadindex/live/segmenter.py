"""A stream's sampled frames cut into completed fixed-length segments, on the stream's own timeline.

A timeline is one run of a stream's timestamps: it starts when a stream (re)connects or its
timestamps jump (a camera whose clock reset, a sender restarted), and its segment ``k`` covers
``[t0 + k L, t0 + (k + 1) L)`` stream seconds from its first sample ``t0``, as a built video's
segments do from its first frame. A segment is complete when a sample at or after its end arrives;
the partial segment at the end of a timeline is kept when it lasts at least the sampling settings'
``min_tail_fraction`` of a segment, as a build keeps a video's tail.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vadindex.config import SamplingSettings


@dataclass(frozen=True)
class Sample:
    """One sampled frame of a stream."""

    #: Presentation time in seconds, on the stream's own clock.
    t: float
    #: Wall-clock time (Unix seconds) at which the frame was live, from the timeline's anchor.
    wall: float
    #: Decoded frame number within the timeline.
    frame: int
    #: ``(S, S, 3)`` uint8 RGB, as the encoder is fed it.
    pixels: np.ndarray
    #: The whole frame, small (for an alert's thumbnail); only for one sample per segment.
    display: np.ndarray | None = None


@dataclass(frozen=True)
class StreamFormat:
    """What a stream's decoder reports once it is open."""

    container: str
    codec: str
    width: int
    height: int


@dataclass(frozen=True)
class LiveSegment:
    """One completed segment of a stream: its times, frame numbers and sampled frames."""

    camera: str
    #: The reader's timeline number (a new one at every reconnect and timestamp jump).
    timeline: int
    #: ``k``: the segment's position on its timeline.
    index: int
    #: Stream seconds (the stream's own timestamps).
    start: float
    end: float
    #: Wall-clock seconds (Unix time) of ``start`` and ``end``.
    wall_start: float
    wall_end: float
    #: Decoded frame numbers on the timeline (``end_frame`` exclusive).
    start_frame: int
    end_frame: int
    #: ``(n, S, S, 3)`` uint8 sampled frames, and their stream times.
    pixels: np.ndarray
    sample_times: np.ndarray
    #: The middle sample's whole frame, small; ``None`` when no sample reached the middle.
    display: np.ndarray | None
    format: StreamFormat | None = None
    #: ``time.time()`` when the segment was completed.
    completed: float = 0.0

    @property
    def n_frames(self) -> int:
        """Sampled frames."""
        return len(self.pixels)

    def thumbnail(self) -> np.ndarray:
        """An RGB image of the segment: the middle sample's frame, or its sampled crop."""
        return self.display if self.display is not None else self.pixels[len(self.pixels) // 2]


class Segmenter:
    """Collects one stream's samples and emits each segment once it is complete (one thread)."""

    def __init__(
        self,
        camera: str,
        settings: SamplingSettings,
        emit: Callable[[LiveSegment], None],
        clock: Callable[[float], float] | None = None,
    ) -> None:
        """``clock`` maps a stream time to wall-clock time as the stream's reader knows it when a
        segment is emitted (its anchor settles after the first frames' burst); by default each
        segment takes the wall time its first sample was given."""
        self.camera = camera
        self.settings = settings
        self.emit = emit
        self.clock = clock
        self.timeline = 0
        self.format: StreamFormat | None = None
        self._t0: float | None = None
        self._k = -1
        self._samples: list[Sample] = []
        self._display: np.ndarray | None = None

    def start_timeline(self, timeline: int, fmt: StreamFormat | None = None) -> None:
        """Begin a new timeline (after :meth:`flush`): the next sample is its origin."""
        self.timeline = timeline
        self.format = fmt or self.format
        self._t0 = None
        self._k = -1
        self._samples = []
        self._display = None

    def _position(self, t: float) -> int:
        assert self._t0 is not None
        return math.floor((t - self._t0) / self.settings.segment_seconds + 1e-9)

    def wants_display(self, t: float) -> bool:
        """True when a sample at ``t`` should carry its whole frame: the first one at or past
        the middle of its segment (decoding a second, larger image for every sample would be waste)."""
        if self._t0 is None:
            return False
        k = self._position(t)
        if k != self._k:
            return False  # the first sample of a new segment is at its start, not its middle
        start = self._t0 + k * self.settings.segment_seconds
        return self._display is None and t >= start + self.settings.segment_seconds / 2 - 1e-9

    def add(self, sample: Sample) -> None:
        """Take the next sample (stream times increase within a timeline); emits finished segments."""
        if self._t0 is None:
            self._t0 = sample.t
        k = self._position(sample.t)
        if k != self._k:
            if self._samples:
                self._emit(self._k, self._t0 + (self._k + 1) * self.settings.segment_seconds, sample.frame)
            self._k = k
            self._samples = []
            self._display = None
        self._samples.append(sample)
        if sample.display is not None:
            self._display = sample.display

    def flush(self) -> None:
        """End the timeline: emit the partial last segment when it is long enough."""
        if self._samples and self._t0 is not None:
            L = self.settings.segment_seconds
            start = self._t0 + self._k * L
            end = min(start + L, self._samples[-1].t + 1.0 / self.settings.fps)
            if end - start >= self.settings.min_tail_fraction * L - 1e-9:
                self._emit(self._k, end, self._samples[-1].frame + 1)
        self._samples = []
        self._display = None
        self._t0 = None
        self._k = -1

    def _emit(self, k: int, end: float, end_frame: int) -> None:
        assert self._t0 is not None
        samples = self._samples
        start = self._t0 + k * self.settings.segment_seconds
        first = samples[0]
        # The timeline's anchor maps stream time to wall time linearly.
        wall_start = self.clock(start) if self.clock is not None else first.wall - (first.t - start)
        self.emit(
            LiveSegment(
                camera=self.camera,
                timeline=self.timeline,
                index=k,
                start=start,
                end=end,
                wall_start=wall_start,
                wall_end=wall_start + (end - start),
                start_frame=first.frame,
                end_frame=max(end_frame, samples[-1].frame + 1),
                pixels=np.stack([s.pixels for s in samples]),
                sample_times=np.array([s.t for s in samples]),
                display=self._display,
                format=self.format,
                completed=time.time(),
            )
        )
