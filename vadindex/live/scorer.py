"""Detection on segments as they arrive: the ``detect`` rule, calibrated against the index's history.

Each new segment is compared with the prompt classes exactly as ``detect`` compares stored ones
(text embeddings from the index's cache, its vectors rounded to the float16 the index stores, the
same class ensembles), and decided by :func:`vadindex.detect.scoring.apply_rule`. What differs is
the context a rule may use:

- ``--calibrate zscore|percentile`` compares each class's similarity with its distribution over
  the index's segments, as ``detect`` does; here the index is the history watched so far plus the
  segments committed before, and the statistics grow with it (z-score moments with every batch,
  the percentile's sorted columns whenever the history grew by :data:`PERCENTILE_REFRESH`). Until
  the history holds ``--min-history`` segments a calibrated rule raises no alert (the segments are
  indexed and scored all the same).
- ``--smooth h`` averages a segment with up to ``h`` neighbours each side on its stream's timeline,
  so a decision waits for the ``h`` segments after it (``h`` segments of latency).
- ``--knn-k``, ``--novelty``, ``--use-labels`` and ``--calibrate-by camera|video`` need the whole
  index around each segment: not supported live (refused, see :func:`check_live_options`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vadindex.detect.options import DetectOptions
from vadindex.detect.prompts import ClassPromptSet, class_similarities
from vadindex.detect.scoring import Calibration, apply_rule, rule_decision
from vadindex.detect.similarity import compute_class_similarities
from vadindex.errors import InputError
from vadindex.index.cache import IndexCache
from vadindex.index.manifest import MANIFEST
from vadindex.index.reader import IndexSnapshot
from vadindex.models.identity import Encoder

#: The percentile calibration's sorted history is rebuilt once the history grew by this fraction.
PERCENTILE_REFRESH = 0.05


@dataclass(frozen=True)
class SegmentScore:
    """A segment's score before smoothing, and the anomaly class that fits it best."""

    score: float
    margin: float
    best_class: str


@dataclass(frozen=True)
class Decision:
    """What the rule decided for one segment (after smoothing)."""

    item: Any
    score: float
    anomalous: bool
    best_class: str


class History:
    """Per-class similarities of the index's segments (and frames), grown as segments arrive; the
    calibration statistics ``detect --calibrate`` would compute over them."""

    def __init__(self, method: str, sims: np.ndarray, frame_sims: np.ndarray | None = None) -> None:
        self.method = method
        n_classes = sims.shape[1]
        self._rows = [np.asarray(sims, dtype=np.float32)] if len(sims) else []
        self._frame_rows = (
            [np.asarray(frame_sims, dtype=np.float32)] if frame_sims is not None and len(frame_sims) else []
        )
        self.n = len(sims)
        self.n_frames = 0 if frame_sims is None else len(frame_sims)
        self._sums = _moments(sims, n_classes)
        self._frame_sums = _moments(frame_sims, n_classes) if frame_sims is not None else None
        self._fitted: tuple[int, Calibration] | None = None
        self._frame_fitted: tuple[int, Calibration] | None = None

    def add(self, sims: np.ndarray, frame_sims: np.ndarray | None = None) -> None:
        """Append the new segments' (and frames') class similarities."""
        self._rows.append(np.asarray(sims, dtype=np.float32))
        self.n += len(sims)
        self._sums = self._sums + _moments(sims, sims.shape[1])
        if frame_sims is not None and self._frame_sums is not None:
            self._frame_rows.append(np.asarray(frame_sims, dtype=np.float32))
            self.n_frames += len(frame_sims)
            self._frame_sums = self._frame_sums + _moments(frame_sims, frame_sims.shape[1])

    def calibration(self, frames: bool = False) -> Calibration:
        """The current statistics of segments (or frames)."""
        n = self.n_frames if frames else self.n
        sums = self._frame_sums if frames else self._sums
        if self.method == "zscore":
            assert sums is not None
            mean = sums[1] / max(n, 1)
            var = np.maximum(sums[2] / max(n, 1) - mean**2, 0.0)
            std = np.sqrt(var)
            return Calibration("zscore", n, mean=mean, std=np.where(std > 1e-12, std, 1.0))
        fitted = self._frame_fitted if frames else self._fitted
        if fitted is None or n - fitted[0] > PERCENTILE_REFRESH * fitted[0]:
            rows = self._frame_rows if frames else self._rows
            joined = np.concatenate(rows) if len(rows) > 1 else rows[0]
            rows[:] = [joined]
            fitted = (n, Calibration.fit(joined, self.method))
            if frames:
                self._frame_fitted = fitted
            else:
                self._fitted = fitted
        return fitted[1]


def _moments(x: np.ndarray | None, n_classes: int) -> np.ndarray:
    """``[count, sum, sum of squares]`` per class, in float64."""
    if x is None or not len(x):
        return np.zeros((3, n_classes))
    v = np.asarray(x, dtype=np.float64)
    return np.stack([np.full(n_classes, float(len(v))), v.sum(axis=0), (v * v).sum(axis=0)])


def check_live_options(options: DetectOptions) -> None:
    """Refuse the detect options that need the whole index around each segment, which a segment
    that just arrived does not have yet (run ``vadindex detect`` on the index for them)."""
    refused = {
        "--knn-k": options.knn_k > 0,
        "--novelty": options.novelty > 0 and options.novelty_weight > 0,
        "--use-labels": options.use_labels,
        f"--calibrate-by {options.calibrate_by}": options.calibrate != "none"
        and options.calibrate_by != "index",
    }
    for flag, used in refused.items():
        if used:
            raise InputError(
                f"{flag}: watch scores each segment as it arrives, against the index's history as a "
                f"whole; use --smooth or --calibrate, or run `vadindex detect {flag.split()[0]}` on the index"
            )


class LiveScorer:
    """Scores new segments against the prompt classes and decides them, one stream at a time."""

    def __init__(
        self,
        spec: ClassPromptSet,
        text_vectors: np.ndarray,
        logit_scale: float,
        options: DetectOptions,
        history: History | None = None,
        min_history: int = 0,
    ) -> None:
        check_live_options(options)
        options.check_classes(len(spec.classes))
        self.spec = spec
        self.text_vectors = np.asarray(text_vectors, dtype=np.float32)
        self.weights = spec.text_weights()
        self.is_anomaly = np.array(spec.is_anomaly)
        self.logit_scale = float(logit_scale)
        self.options = options
        self.history = history
        self.min_history = min_history
        self._frames = options.rule == "frame-vote"
        self._rule = options.replace(smooth=0)
        self._windows: dict[str, _Window] = {}

    @property
    def calibrated(self) -> bool:
        """True when the rule calibrates against the index's history."""
        return self.options.calibrate != "none"

    @property
    def ready(self) -> bool:
        """False while a calibrated rule's history is shorter than ``min_history`` segments."""
        return not self.calibrated or (
            self.history is not None and self.history.n >= max(self.min_history, 1)
        )

    @classmethod
    def for_index(
        cls,
        index: Path,
        spec: ClassPromptSet,
        encoder: Encoder,
        options: DetectOptions,
        min_history: int = 0,
    ) -> LiveScorer:
        """A scorer for ``index``: text embeddings from its cache (encoded and cached when new) and,
        for a calibrated rule, the class similarities of every segment it holds as the history."""
        snap = IndexSnapshot(index) if (index / MANIFEST).exists() else None
        frames = options.rule == "frame-vote"
        if snap is not None:
            text_vectors = IndexCache(snap).text_vectors(spec.texts, lambda: encoder)
        else:
            text_vectors = np.asarray(encoder.encode_texts(spec.texts), dtype=np.float32)
        history = None
        if options.calibrate != "none":
            n_classes = len(spec.classes)
            sims = np.zeros((0, n_classes), np.float32)
            frame_sims = np.zeros((0, n_classes), np.float32) if frames else None
            if snap is not None and snap.manifest.n_segments:
                s, f = compute_class_similarities(snap, spec, frames=frames, encoder=encoder)
                sims, frame_sims = (
                    np.array(s, dtype=np.float32),
                    (None if f is None else np.array(f, np.float32)),
                )
            history = History(options.calibrate, sims, frame_sims)
        return cls(spec, text_vectors, encoder.logit_scale, options, history, min_history)

    def class_sims(self, vectors: np.ndarray) -> np.ndarray:
        """``(n, n_classes)`` similarities of unit vectors to the classes, as ``detect`` computes
        them from the index (the vectors rounded to the float16 the index stores)."""
        stored = np.asarray(vectors, dtype=np.float16).astype(np.float32)
        return class_similarities(stored @ self.text_vectors.T, self.text_vectors, self.weights)

    def score(
        self, segment_vectors: np.ndarray, frame_vectors: np.ndarray, n_frames: np.ndarray
    ) -> list[SegmentScore]:
        """Score a batch of new segments (any streams) before smoothing, and add them to the history.

        Args:
            segment_vectors: ``(n, dim)`` unit segment vectors.
            frame_vectors: ``(sum(n_frames), dim)`` unit frame vectors, segment after segment.
            n_frames: frames of each segment.
        """
        sims = self.class_sims(segment_vectors)
        frame_sims = self.class_sims(frame_vectors) if self._frames else None
        n_frames = np.asarray(n_frames, dtype=np.int64)
        calibration = frame_calibration = None
        if self.history is not None and self.history.n:
            calibration = self.history.calibration()
            if self._frames and self.history.n_frames:
                frame_calibration = self.history.calibration(frames=True)
        if self.calibrated and calibration is None:
            calibration = Calibration.fit(sims, self.options.calibrate)  # no history at all yet: scores only
            if self._frames:
                frame_calibration = Calibration.fit(frame_sims, self.options.calibrate)
        res = apply_rule(
            sims, self.is_anomaly, self.logit_scale, self._rule,
            frame_sims=frame_sims, frame_row=np.cumsum(n_frames) - n_frames, n_frames=n_frames,
            calibration=calibration, frame_calibration=frame_calibration,
        )  # fmt: skip
        if self.history is not None:
            self.history.add(sims, frame_sims)
        names = self.spec.class_names
        margin = res.margin if res.margin is not None else np.zeros(len(sims))
        return [
            SegmentScore(float(res.score[i]), float(margin[i]), names[int(res.best_anomaly_class[i])])
            for i in range(len(sims))
        ]

    def decide(self, stream: str, timeline: int, item: Any, scored: SegmentScore) -> list[Decision]:
        """Decisions that became final with this segment of ``stream`` (in order).

        Without smoothing that is this segment; with ``--smooth h`` it is the segment ``h`` before
        it. A new ``timeline`` first finishes the previous one's pending segments.
        """
        window = self._windows.get(stream)
        out: list[Decision] = []
        if window is None or window.timeline != timeline:
            if window is not None:
                out += self._finish(window, final=True)
            window = self._windows[stream] = _Window(timeline, self.options.smooth)
        window.entries.append((item, scored))
        return out + self._finish(window, final=False)

    def flush(self, stream: str | None = None) -> list[Decision]:
        """Decide every segment still waiting for its smoothing window (a stream stopped)."""
        out = []
        for name in [stream] if stream is not None else list(self._windows):
            window = self._windows.pop(name, None)
            if window is not None:
                out += self._finish(window, final=True)
        return out

    def _finish(self, window: _Window, final: bool) -> list[Decision]:
        h = window.h
        entries = window.entries
        out = []
        while window.decided < len(entries) and (final or len(entries) - window.decided > h):
            i = window.decided
            lo, hi = max(0, i - h), min(len(entries), i + h + 1)
            scores = [e[1] for e in list(entries)[lo:hi]]
            score = float(np.mean([s.score for s in scores]))
            margin = float(np.mean([s.margin for s in scores]))
            item, own = entries[i]
            flagged = bool(rule_decision(np.array([score]), np.array([margin]), self.options)[0])
            out.append(Decision(item, score, flagged and self.ready, own.best_class))
            window.decided += 1
            while window.decided > h:  # keep the h decided entries the next window still needs
                entries.popleft()
                window.decided -= 1
        return out


@dataclass
class _Window:
    """One stream's segments waiting for (or still needed by) a smoothing window."""

    timeline: int
    h: int
    decided: int = 0

    def __post_init__(self) -> None:
        self.entries: deque[tuple[Any, SegmentScore]] = deque()
