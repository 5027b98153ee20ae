"""The change gate: encode a sampled frame only when it differs from the last frame that was encoded.

A fixed camera looks at an unchanged scene most of the time; its frames then have (up to noise) the
embedding of the frame before. :class:`ChangeGate` compares each sampled frame, as a small blurred
grey image, with the last frame it let through, and :class:`GatedEncoder` encodes only the frames the
gate lets through and gives every other frame the embedding of that last encoded frame. Segment
vectors are then built from frame embeddings exactly as without the gate.

The comparison follows Frigate's motion detector (``frigate/motion/improved_motion.py``) in its
cheap steps: luma only, a downscaled frame, a small Gaussian blur, an absolute difference against a
fixed grey-level threshold, one 3x3 dilation, a minimum blob size, and a "most of the picture
changed" test. It differs where the question differs: Frigate asks whether something moves against a
slowly learned background (which absorbs slow changes for good); the gate asks whether the embedding
we already hold is still the frame's, so it compares with the last *encoded* frame (a slow change
accumulates until it is re-encoded), cancels global gain and offset (noise, auto-exposure) but
bounds how far they may go, and treats a large change (a cut, a camera move, lights switching) as a
reason to encode at once, never as one to ignore.

The gate works on the model-sized centre crop the decoder already makes: it sees what the encoder
sees (nothing in the cropped-off sides of a wide frame re-encodes), at about 0.2 ms a frame.

Every engine uses it the same way, one :class:`GatedEncoder` per video or stream, built from the
options' ``gate``, ``gate_threshold`` and ``gate_max_gap`` (:meth:`GateSettings.from_options`):
:func:`vadindex.ingest.video.ingest_video` does so for the local loop (and for anything that runs it,
such as a Ray actor); a live stream keeps one for as long as it runs and passes each frame's time.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from vadindex.config import DEFAULT_GATE_MAX_GAP, DEFAULT_GATE_THRESHOLD, check_gate
from vadindex.models.identity import Encoder

#: Bump when a change to the comparison changes which frames are encoded (recorded in the manifest).
GATE_VERSION = 1
#: Side of the square grey image the gate compares (the crop is area-averaged down to it). 96 px of
#: a 224-px crop keeps a hand on a table (~0.1 % of the crop) visible; 64 px averaged it away.
SIZE = 96
#: Gaussian blur kernel at ``SIZE``: takes off sensor noise and compression speckle.
BLUR = 3
#: A connected changed region of at least this fraction of the image is motion (~18 px at 96 px).
MIN_BLOB = 0.002
#: At least this fraction of the image changed, or a correlation with the reference below
#: ``CUT_CORR``, is a cut or a camera move.
CUT_FRACTION = 0.35
CUT_CORR = 0.9
#: Global lighting is compensated, but only this far: a mean shift over ``MAX_SHIFT`` grey levels or
#: a contrast ratio outside ``[1 / MAX_GAIN, MAX_GAIN]`` re-encodes. Embeddings move with absolute
#: brightness: on a flat car park, +3 grey levels moved ViT-B-32 (random weights) to a cosine of
#: 0.982 and +12 to 0.77, and +12 moved vadindex-tiny to 0.965 indoors, so the bound is tight. Real
#: fixed cameras change by 0.04-0.3 grey levels from frame to frame, so a slow drift costs one encode
#: per ~3 grey levels, not one per frame.
MAX_SHIFT = 3.0
MAX_GAIN = 1.03
#: Frames whose grey standard deviation is below this are flat (black, a covered lens): compared raw.
FLAT_STD = 2.0

_KERNEL = np.ones((3, 3), np.uint8)


@dataclass(frozen=True)
class GateSettings:
    """The user's gate settings: the sensitivity and the longest run of reused frames."""

    #: Grey levels (0-255) a pixel must change by, after lighting compensation, to count as changed.
    threshold: float = DEFAULT_GATE_THRESHOLD
    #: A frame is encoded when this many seconds have passed since the last encoded one.
    max_gap: float = DEFAULT_GATE_MAX_GAP

    def __post_init__(self) -> None:
        check_gate(self.threshold, self.max_gap)

    def describe(self) -> str:
        """How an index records the gate a part was built with, e.g. ``auto/1 threshold 12 max-gap 5``."""
        return f"auto/{GATE_VERSION} threshold {self.threshold:g} max-gap {self.max_gap:g}"

    @classmethod
    def from_options(cls, options: Any) -> GateSettings | None:
        """The gate of any options object with ``gate``, ``gate_threshold`` and ``gate_max_gap``
        (``BuildOptions``, and the options of other engines); ``None`` when ``gate`` is ``off``."""
        if options.gate == "off":
            return None
        return cls(float(options.gate_threshold), float(options.gate_max_gap))


#: What the index records for a part built without the gate.
GATE_OFF = "off"


def describe_gate(settings: GateSettings | None) -> str:
    """How an index and a build summary name the gate: :meth:`GateSettings.describe`, or ``off``."""
    return GATE_OFF if settings is None else settings.describe()


@dataclass(frozen=True)
class GateDecision:
    """Why the gate encoded a frame or let it reuse the last embedding.

    ``reason`` is one of ``first`` (no reference yet), ``cut`` (most of the picture changed, or
    its structure did: a cut, a camera move), ``motion`` (a changed region of at least
    :data:`MIN_BLOB`), ``light`` (a global brightness or contrast change beyond what is compensated),
    ``gap`` (``max_gap`` seconds since the last encode) or ``static`` (reuse).
    """

    encode: bool
    reason: str
    #: Fraction of the small image that changed (after dilation).
    changed: float = 0.0
    #: Largest connected changed region, as a fraction of the image.
    blob: float = 0.0
    #: Pearson correlation with the reference (1 for flat frames).
    corr: float = 1.0


class ChangeGate:
    """The gate of one video or stream: the last encoded frame (small and grey) and when it was.

    Call :meth:`decide` for each sampled frame in order (or :meth:`select` for a batch); the first
    frame is always encoded. One gate never serves two videos: call :meth:`reset` between them.
    """

    def __init__(self, settings: GateSettings, fps: float) -> None:
        """Args:
        settings: threshold and longest gap.
        fps: sampling rate, for the times of frames given without one.
        """
        self.settings = settings
        self.interval = 1.0 / fps
        self.reset()

    def reset(self) -> None:
        """Forget the reference: the next frame is encoded."""
        self._ref: np.ndarray | None = None
        self._ref_mean = self._ref_std = 0.0
        self._ref_time = 0.0
        self._count = 0

    @staticmethod
    def prepare(frame: np.ndarray) -> np.ndarray:
        """An ``(H, W, 3)`` uint8 RGB frame (or ``(H, W)`` grey) as the gate's small blurred grey image."""
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame
        side = min(SIZE, *grey.shape[:2])
        small = cv2.resize(grey, (side, side), interpolation=cv2.INTER_AREA)
        return cv2.GaussianBlur(small, (BLUR, BLUR), 0).astype(np.float32)

    def decide(self, frame: np.ndarray, t: float | None = None) -> GateDecision:
        """Whether to encode ``frame`` (the next sampled frame of this video or stream).

        Args:
            frame: ``(H, W, 3)`` uint8 RGB, the crop the encoder would see.
            t: its time in seconds; by default its sample number over the sampling rate.

        Returns:
            The decision; an encoded frame becomes the new reference.
        """
        t = self._count * self.interval if t is None else t
        self._count += 1
        small = self.prepare(frame)
        mean, std = (float(v[0, 0]) for v in cv2.meanStdDev(small))
        if self._ref is None or self._ref.shape != small.shape:
            return self._accept(small, mean, std, t, GateDecision(True, "first"))
        ref, ref_mean, ref_std = self._ref, self._ref_mean, self._ref_std
        flat = std < FLAT_STD and ref_std < FLAT_STD
        if flat:
            compensated, gain, corr = small, 1.0, 1.0
        else:
            # Map this frame's mean and contrast onto the reference's: a global gain/offset change
            # (auto-exposure, a cloud) cancels, and is bounded separately below.
            gain = std / max(ref_std, 1e-3)
            compensated = (small - mean) * (ref_std / max(std, 1e-3)) + ref_mean
            corr = float(np.dot((small - mean).ravel(), (ref - ref_mean).ravel())) / (
                small.size * max(std * ref_std, 1e-6)
            )
        mask = cv2.dilate((cv2.absdiff(compensated, ref) > self.settings.threshold).view(np.uint8), _KERNEL)
        changed = cv2.countNonZero(mask) / mask.size
        blob = 0.0
        if changed > 0:
            n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
            blob = float(stats[1:, cv2.CC_STAT_AREA].max()) / mask.size if n > 1 else 0.0
        if changed >= CUT_FRACTION or corr < CUT_CORR:
            reason = "cut"
        elif blob >= MIN_BLOB:
            reason = "motion"
        elif abs(mean - ref_mean) > MAX_SHIFT or not 1 / MAX_GAIN <= gain <= MAX_GAIN:
            reason = "light"
        elif t - self._ref_time >= self.settings.max_gap - 1e-9:
            reason = "gap"
        else:
            return GateDecision(False, "static", changed, blob, corr)
        return self._accept(small, mean, std, t, GateDecision(True, reason, changed, blob, corr))

    def _accept(self, small: np.ndarray, mean: float, std: float, t: float, d: GateDecision) -> GateDecision:
        self._ref, self._ref_mean, self._ref_std, self._ref_time = small, mean, std, t
        return d

    def select(self, frames: np.ndarray, times: np.ndarray | None = None) -> np.ndarray:
        """:meth:`decide` for each frame of a batch, in order (``times`` in seconds, or by sample
        number); returns a boolean mask of the frames to encode."""
        if times is None:
            return np.fromiter((self.decide(f).encode for f in frames), dtype=bool, count=len(frames))
        return np.fromiter(
            (self.decide(f, float(t)).encode for f, t in zip(frames, times, strict=True)),
            dtype=bool,
            count=len(frames),
        )


class GatedEncoder:
    """Encode one video's (or stream's) sampled frames through a :class:`ChangeGate`.

    :meth:`add` gates each batch and queues the frames to encode; they are encoded in batches of
    ``batch_size`` (the encoder stays efficient when few frames pass). :meth:`vectors` returns one
    embedding per frame added: an encoded frame's own, or that of the last encoded frame before it.
    Without settings (``--gate off``) every frame is encoded. Engines that ingest a whole video
    (the local loop, a Ray actor) and engines that follow a live stream use this same class, one per
    video or stream.
    """

    def __init__(self, encoder: Encoder, settings: GateSettings | None, fps: float, batch_size: int) -> None:
        self.encoder = encoder
        self.gate = ChangeGate(settings, fps) if settings is not None else None
        self.batch_size = max(1, batch_size)
        self._queue: list[np.ndarray] = []
        self._rows = _Rows(encoder.dim)
        #: For each frame added, the number of the encoded frame whose embedding it gets.
        self._source = array("q")
        self._encoded = array("b")

    @property
    def frames(self) -> int:
        """Frames added so far."""
        return len(self._source)

    @property
    def encoded(self) -> int:
        """Frames encoded so far, or queued for encoding."""
        return len(self._rows) + len(self._queue)

    def add(self, frames: np.ndarray, times: np.ndarray | None = None) -> None:
        """Gate a batch of ``(n, S, S, 3)`` uint8 RGB frames, in time order; encode what passes.

        Without a gate the batch is encoded as it is; with one, the frames that pass are queued and
        encoded ``batch_size`` at a time.

        Args:
            frames: the frames.
            times: their times in seconds (a live stream's clock); by default sample number / fps.
        """
        start = self.encoded
        if self.gate is None:
            fresh = np.ones(len(frames), bool)
            self._rows.append(self.encoder.encode_images(frames))
        else:
            fresh = self.gate.select(frames, times)
            self._queue.extend(frames[fresh])
            while len(self._queue) >= self.batch_size:
                self._encode(self.batch_size)
        # Each frame takes the embedding of the last encoded frame at or before it.
        self._source.extend((start + np.cumsum(fresh) - 1).tolist())
        self._encoded.extend(fresh.astype(np.int8).tolist())

    def _encode(self, n: int) -> None:
        batch, self._queue = np.stack(self._queue[:n]), self._queue[n:]
        self._rows.append(self.encoder.encode_images(batch))

    def flush(self) -> None:
        """Encode whatever is queued."""
        if self._queue:
            self._encode(len(self._queue))

    def vectors(self) -> np.ndarray:
        """One ``float32`` embedding per frame added (encoding what is still queued)."""
        self.flush()
        source = np.frombuffer(self._source, dtype=np.int64)
        if source.size and source[0] < 0:
            raise AssertionError("the first frame of a video or stream is always encoded")
        rows = self._rows.array()
        # Without a gate every frame is its own source: the rows themselves, not a copy.
        return rows if len(rows) == len(source) else rows[source]

    def encoded_mask(self) -> np.ndarray:
        """For each frame added, whether it was encoded (``False``: it reuses an earlier embedding)."""
        return np.frombuffer(self._encoded, dtype=np.int8).astype(bool)


class _Rows:
    """A float32 matrix grown by doubling: one long-lived allocation, not one per batch.

    Thousands of small blocks kept alive between large transient batches fragment the C heap,
    and an hours-long video then costs several times its embeddings in resident memory.
    """

    def __init__(self, dim: int) -> None:
        self._data = np.zeros((0, dim), np.float32)
        self._n = 0

    def __len__(self) -> int:
        return self._n

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
