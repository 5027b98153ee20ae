"""One source of defaults and choices for every option, shared by the CLI, config files and the API.

Choice lists live here rather than in the modules that act on them so that the CLI can offer them
(and ``vadindex --help`` can print them) without importing numpy, torch or faiss.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vadindex.errors import InputError

#: Sampling rate of frames fed to the encoder. Four frames per second sees every event that lasts
#: longer than a quarter of a second and costs four encoder passes per second of video.
DEFAULT_FPS = 4.0
#: Segment length in seconds. One second gives one-second temporal resolution for detection (close
#: to the 16-frame clips used on UCF-Crime and XD-Violence) and averages four frames per segment.
DEFAULT_SEGMENT_SECONDS = 1.0
#: A trailing partial segment is kept when it is at least this fraction of a full segment.
DEFAULT_MIN_TAIL_FRACTION = 0.5

DEFAULT_MODEL = "ViT-B-32"
#: Pretrained tag used when ``--pretrained`` is not given, per model; other open_clip models use
#: their first listed tag.
DEFAULT_PRETRAINED = {"ViT-B-32": "laion2b_s34b_b79k"}
DEFAULT_DEVICE = "auto"
DEFAULT_BATCH_SIZE = 64
#: Encoder arithmetic: ``auto`` is fp16 autocast on CUDA; on an x86 CPU it is fp32 until
#: ``INT8_PROBE_FRAMES`` frames (a quarter at most from each batch, so from at least four batches)
#: have also been encoded in int8, and int8 from then on if every one of them agreed with fp32 to a
#: cosine of at least ``INT8_MIN_COSINE`` (else fp32 throughout).
#: ``int8`` (CPU) quantises the image tower's linear layers dynamically, ``fp16`` needs CUDA.
#: See BENCHMARKS.md.
DEFAULT_PRECISION = "auto"
#: Frames ``--precision auto`` encodes both ways on a CPU before it settles on int8 or fp32 (taken
#: from at least four batches: four stretches of footage, or four short videos).
INT8_PROBE_FRAMES = 32
#: Lowest cosine between an int8 and an fp32 embedding of the same frame that ``auto`` accepts. A
#: cosine c moves a similarity by at most sqrt(2 (1 - c)): 0.063 at 0.998; the error is spread over
#: all 512 dimensions, so a text similarity typically moves by ~0.003.
INT8_MIN_COSINE = 0.998
#: Image-tower runtime: ``torch``, or ``onnxruntime`` (CPU fp32, ~1.2x faster here, an optional install).
DEFAULT_BACKEND = "torch"
#: FAISS index type: ``auto`` searches exactly (float16 scan) below 200,000 segments and with an
#: IVF index above; ``flat``, ``ivf`` or ``hnsw`` force one (see :mod:`vadindex.index.faiss_index`).
DEFAULT_INDEX_TYPE = "auto"
#: Videos per commit during a build: a crash loses at most this many videos' work.
DEFAULT_COMMIT_EVERY = 16
#: A decoder that produces no batch for this many seconds is abandoned (a file that hangs FFmpeg).
DEFAULT_STALL_TIMEOUT = 120.0
#: Seconds one video may take in all before it is abandoned; ``None``: no limit (hours-long videos
#: are legitimate, and the stall timeout already catches a decoder that hangs).
DEFAULT_VIDEO_TIMEOUT: float | None = None

DEFAULT_TOP_K_RESULTS = 10

#: Where a build runs :func:`vadindex.ingest.video.ingest_video`: ``local`` (this process, one
#: video after another) or ``ray`` (a pool of Ray actors, :mod:`vadindex.ingest.ray_engine`).
ENGINES = ("local", "ray")
DEFAULT_ENGINE = "local"
#: ``--ray-address`` that starts a private Ray instance on this machine for the build (and stops it after).
RAY_LOCAL = "local"
#: CPUs each Ray worker (one encoder) reserves; its PyTorch threads follow (at least 1).
DEFAULT_CPUS_PER_WORKER = 1.0
#: GPUs each Ray worker reserves (fractions pack several workers on one GPU); 0: encode on CPUs.
DEFAULT_GPUS_PER_WORKER = 0.0

#: Longest side (pixels) of a segment thumbnail decoded from its video (reports, search pages).
DEFAULT_THUMBNAIL_SIZE = 256
#: Longest side of the thumbnails ``build --thumbnails`` stores in the index: about 4 KB each.
STORED_THUMBNAIL_SIZE = 160
#: Video sections in a report (``--max-videos``); the rest are listed in one table.
DEFAULT_REPORT_MAX_VIDEOS = 200
#: Thumbnails shown per video section of a report: its best-scoring segments.
REPORT_TOP_SEGMENTS = 3
#: ``--video-root``, shared by ``build``, ``report``, ``query --html`` and ``detect --out``.
VIDEO_ROOT_HELP = (
    "OLD=NEW: footage that moved; a video recorded (or listed) under folder OLD is read from NEW."
)

#: ``--device`` values besides ``cuda:N``.
DEVICES = ("auto", "cpu", "cuda", "mps")
#: ``--precision`` values (see :func:`vadindex.models.precision.resolve_precision`).
PRECISIONS = ("auto", "fp32", "int8", "fp16")
#: ``--backend`` values for the image tower: PyTorch, or ONNX Runtime (CPU, fp32; ``pip install
#: onnxruntime onnx``, the ``onnx`` extra).
BACKENDS = ("torch", "onnxruntime")
#: FAISS index types (see :mod:`vadindex.index.faiss_index`).
INDEX_TYPES = ("auto", "flat", "ivf", "hnsw")
#: Temporal annotation file formats (see :mod:`vadindex.evaluate.annotations`).
ANNOTATION_FORMATS = ("auto", "ucf-crime", "xd-violence")
#: Benchmark folder layouts ``vadindex manifest`` reads (see :mod:`vadindex.evaluate.datasets`).
DATASET_LAYOUTS = ("auto", "ucf-crime", "xd-violence")
#: Which segments ``detect --format json`` lists.
SEGMENT_LISTINGS = ("all", "anomalous", "none")
#: Metrics ``vadindex tune`` maximises.
TUNE_METRICS = ("f1", "auc")

#: Segment rules, calibrations and video aggregations (see :mod:`vadindex.detect.scoring` and
#: :mod:`vadindex.detect.aggregate`).
RULES = ("threshold", "topk", "balanced", "frame-vote")
CALIBRATIONS = ("none", "zscore", "percentile")
VIDEO_AGGS = ("ratio", "max", "topk-mean")

DEFAULT_RULE = "threshold"
DEFAULT_SEGMENT_THRESHOLD = 0.5
DEFAULT_PROMPT_TOP_K = 3
DEFAULT_VIDEO_RATIO = 0.1
#: Per-index calibration of each prompt class's similarity: none, zscore or percentile.
DEFAULT_CALIBRATE = "none"
#: Temporal smoothing half-width in segments (0: off); 1 averages each segment with one neighbour each side.
DEFAULT_SMOOTH = 0
#: Nearest neighbours (in the whole index) blended into each segment's score (0: off).
DEFAULT_KNN_K = 0
#: Weight of the neighbours' mean score in the kNN blend.
DEFAULT_KNN_ALPHA = 0.5
#: Frames that must pass the threshold for a segment to be anomalous under the frame-vote rule.
DEFAULT_FRAME_VOTES = 2
#: Video aggregation: ratio of anomalous segments, max segment score, or mean of the top segment scores.
DEFAULT_VIDEO_AGG = "ratio"
#: Segments averaged by the topk-mean video aggregation.
DEFAULT_VIDEO_TOP_K = 3
#: Folds of the by-video cross-validation in ``vadindex tune``.
DEFAULT_TUNE_FOLDS = 5

VIDEO_EXTENSIONS = (
    ".mp4",
    ".avi",
    ".mkv",
    ".mov",
    ".m4v",
    ".webm",
    ".mpg",
    ".mpeg",
    ".wmv",
    ".flv",
    ".ts",
    ".3gp",
)


def user_cache_dir() -> Path:
    """Where vadindex keeps per-user derived files (checkpoint hashes, exported ONNX towers):
    ``$XDG_CACHE_HOME/vadindex``, ``~/.cache/vadindex`` by default."""
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "vadindex"


@dataclass(frozen=True)
class SamplingSettings:
    """How frames are sampled and grouped into segments; stored in the index manifest."""

    fps: float = DEFAULT_FPS
    segment_seconds: float = DEFAULT_SEGMENT_SECONDS
    min_tail_fraction: float = DEFAULT_MIN_TAIL_FRACTION

    @property
    def frames_per_segment(self) -> int:
        """Sampled frames in one full segment."""
        return max(1, round(self.fps * self.segment_seconds))

    def validate(self) -> None:
        """Raise ``InputError`` for settings that cannot produce segments."""
        if not self.fps > 0:
            raise InputError(f"--fps must be positive, got {self.fps}")
        if not self.segment_seconds > 0:
            raise InputError(f"--segment-seconds must be positive, got {self.segment_seconds}")
        if self.fps * self.segment_seconds < 1:
            raise InputError(
                f"--segment-seconds {self.segment_seconds} at --fps {self.fps} samples no frame per segment"
            )
