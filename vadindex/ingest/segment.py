"""Cut a sampled video timeline into fixed-length segments with exact times and frame numbers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vadindex.config import SamplingSettings


@dataclass(frozen=True)
class Segment:
    """One fixed-length piece of a video.

    ``start``/``end`` are seconds from the first frame; ``start_frame`` is the first decoded frame
    whose time falls in the segment and ``end_frame`` is exclusive. ``sample_start``/``sample_end`` index the
    video's sampled frames (and so its frame embeddings). Every decoded frame belongs to the one
    segment in which its presentation time falls, so frame ranges never overlap.
    """

    index: int
    start: float
    end: float
    start_frame: int
    end_frame: int
    sample_start: int
    sample_end: int


def build_segments(
    frame_times: np.ndarray, n_samples: int, duration: float, settings: SamplingSettings
) -> list[Segment]:
    """Group the samples taken at ``t = j / fps`` into segments of ``settings.segment_seconds``.

    Segment ``k`` covers ``[k L, min((k + 1) L, duration))``. A trailing partial segment is kept
    when it lasts at least ``min_tail_fraction * L`` and holds a sample; a video shorter than one
    full segment yields no segment.

    Args:
        frame_times: presentation time of every decoded frame, increasing, first one at 0.
        n_samples: number of sampled frames (grid points ``j / fps`` below ``duration``).
        duration: video length in seconds.
        settings: sampling settings.

    Returns:
        The segments in time order.
    """
    length = settings.segment_seconds
    if duration + 1e-9 < length:
        return []
    sample_times = np.arange(n_samples) / settings.fps
    segments: list[Segment] = []
    k = 0
    while k * length < duration - 1e-9:
        start = k * length
        end = min((k + 1) * length, duration)
        s0, s1 = np.searchsorted(sample_times, [start - 1e-9, end - 1e-9], side="left")
        full = end >= (k + 1) * length - 1e-6
        if s1 <= s0 or (not full and end - start < settings.min_tail_fraction * length - 1e-9):
            break
        # Frames belong to the segment in which their presentation time falls.
        f0, f1 = np.searchsorted(frame_times, [start - 1e-9, end - 1e-9], side="left")
        segments.append(Segment(k, float(start), float(end), int(f0), int(f1), int(s0), int(s1)))
        k += 1
    return segments
