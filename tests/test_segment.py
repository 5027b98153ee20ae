"""Segmentation: exact times, frame ranges and tails."""

from __future__ import annotations

import numpy as np
import pytest

from vadindex.config import SamplingSettings
from vadindex.ingest.segment import build_segments


def test_full_segments_cover_video_and_frames_partition() -> None:
    settings = SamplingSettings(fps=4, segment_seconds=1.0)
    times = np.arange(0, 100) / 25.0  # 4 s at 25 fps
    segs = build_segments(times, 16, 4.0, settings)
    assert [(s.start, s.end) for s in segs] == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert [(s.start_frame, s.end_frame) for s in segs] == [(0, 25), (25, 50), (50, 75), (75, 100)]
    assert [(s.sample_start, s.sample_end) for s in segs] == [(0, 4), (4, 8), (8, 12), (12, 16)]


def test_tail_kept_only_when_long_enough() -> None:
    settings = SamplingSettings(fps=4, segment_seconds=1.0)
    times = np.arange(0, 70) / 25.0  # 2.8 s
    segs = build_segments(times, 12, 2.8, settings)
    assert len(segs) == 3 and segs[-1].end == pytest.approx(2.8)
    assert segs[-1].sample_end == 12
    short_tail = build_segments(np.arange(0, 55) / 25.0, 9, 2.2, settings)
    assert len(short_tail) == 2  # 0.2 s tail < half a segment


def test_video_shorter_than_one_segment_has_none() -> None:
    settings = SamplingSettings(fps=4, segment_seconds=2.0)
    assert build_segments(np.arange(0, 30) / 25.0, 5, 1.2, settings) == []


def test_variable_frame_rate_uses_timestamps() -> None:
    settings = SamplingSettings(fps=2, segment_seconds=1.0)
    # Frames bunched in the first second, sparse afterwards.
    times = np.array([0.0, 0.1, 0.2, 0.3, 0.5, 0.9, 1.5, 2.6, 2.9])
    segs = build_segments(times, 6, 3.0, settings)
    assert [(s.start_frame, s.end_frame) for s in segs] == [(0, 6), (6, 7), (7, 9)]


def test_settings_validation() -> None:
    from vadindex.errors import InputError

    with pytest.raises(InputError):
        SamplingSettings(fps=0).validate()
    with pytest.raises(InputError):
        SamplingSettings(fps=1, segment_seconds=0.5).validate()
