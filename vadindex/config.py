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
#: Image-tower runtime: ``torch``, or ``onnxruntime`` (CPU fp32, ~1.2x faster here).
DEFAULT_BACKEND = "torch"
#: How queries, detections and tuning encode text: ``auto`` runs the text tower exported to ONNX
#: (no torch, well under a second from a cold start) when this model's tower has been exported on
#: this machine, else torch, exporting it for next time; ``onnx`` insists on ONNX (exporting first if
#: needed), ``torch`` never uses it. See :mod:`vadindex.models.onnx_text`.
DEFAULT_TEXT_ENCODER = "auto"
#: FAISS index type: ``auto`` searches exactly (float16 scan) below 200,000 segments and with an
#: IVF index above; ``flat``, ``ivf`` or ``hnsw`` force one (see :mod:`vadindex.index.faiss_index`).
DEFAULT_INDEX_TYPE = "auto"
#: Change gate between decoding and encoding (see :mod:`vadindex.ingest.gate`): ``auto`` encodes a
#: sampled frame only when it differs from the last encoded frame of its video, and gives the
#: others that frame's embedding; ``off`` encodes every sampled frame.
GATE_MODES = ("auto", "off")
DEFAULT_GATE = "off"
#: Grey levels (0-255) a pixel of the gate's small, blurred frame must change by, after global
#: lighting is compensated, to count as changed; lower is more sensitive. 20 missed a person falling
#: at night (low contrast) that moved vadindex-tiny's embedding to a cosine of 0.80; 12 caught that
#: but missed a fallen person stirring (demo seed 8) that vadindex-tiny moves to 0.973; 4 catches it,
#: and encodes 9.0 % of an idle feed's frames instead of 8.2 % (``scripts/sweep_gate.py``;
#: BENCHMARKS.md, "Change gate").
DEFAULT_GATE_THRESHOLD = 4.0
#: Seconds of video after which the gate encodes a frame whatever it sees, so a change it cannot
#: see (colour only, very small) lives at most this long in the index.
DEFAULT_GATE_MAX_GAP = 5.0
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

#: ``vadindex serve``: loopback unless told otherwise (any other address needs a token).
DEFAULT_SERVE_HOST = "127.0.0.1"
DEFAULT_SERVE_PORT = 8000
#: Bounds on every request of ``vadindex serve``: results per query, characters of a query text (and
#: of one prompt field), bytes of an uploaded image, and its pixels (checked from the header, before
#: anything is decoded: a few KB of PNG can claim gigapixels).
SERVE_MAX_K = 1000
SERVE_MAX_TEXT = 1000
SERVE_MAX_PROMPTS_TEXT = 20000
SERVE_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
SERVE_MAX_UPLOAD_PIXELS = 25_000_000

#: ``--device`` values besides ``cuda:N``.
DEVICES = ("auto", "cpu", "cuda", "mps")
#: ``--precision`` values (see :func:`vadindex.models.precision.resolve_precision`).
PRECISIONS = ("auto", "fp32", "int8", "fp16")
#: ``--backend`` values for the image tower: PyTorch, or ONNX Runtime (CPU, fp32).
BACKENDS = ("torch", "onnxruntime")
#: ``--text-encoder`` values (see :data:`DEFAULT_TEXT_ENCODER`).
TEXT_ENCODERS = ("auto", "onnx", "torch")
#: FAISS index types (see :mod:`vadindex.index.faiss_index`).
INDEX_TYPES = ("auto", "flat", "ivf", "hnsw")
#: Temporal annotation file formats (see :mod:`vadindex.evaluate.annotations`).
ANNOTATION_FORMATS = ("auto", "ucf-crime", "xd-violence")
#: Benchmark folder layouts ``vadindex manifest`` reads (see :mod:`vadindex.evaluate.datasets`).
DATASET_LAYOUTS = ("auto", "ucf-crime", "xd-violence")
#: Which segments ``detect --format json`` lists.
SEGMENT_LISTINGS = ("all", "anomalous", "none")
#: Metrics ``vadindex tune`` maximises.
TUNE_METRICS = ("f1", "auc", "segment-f1")

#: Segment rules, calibrations and video aggregations (see :mod:`vadindex.detect.scoring` and
#: :mod:`vadindex.detect.aggregate`).
RULES = ("threshold", "topk", "balanced", "frame-vote")
CALIBRATIONS = ("none", "zscore", "percentile")
#: What a calibration is computed over: every segment of the index, each camera's, or each video's.
CALIBRATION_GROUPS = ("index", "camera", "video")
#: ``vadindex build --camera-from`` keyword (any other value is a regular expression).
CAMERA_FROM_PARENT = "parent"
#: Reviewer labels ``vadindex label`` stores.
LABEL_KINDS = ("normal", "anomaly")
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
#: Calibration statistics are taken over the whole index by default (the behaviour before cameras).
DEFAULT_CALIBRATE_BY = "index"
#: Novelty neighbours (0: off). Ten neighbours average out one look-alike without reaching far.
DEFAULT_NOVELTY = 0
#: Same-video segments whose start is at most this many seconds away are not novelty neighbours,
#: so an event lasting a few seconds is not its own neighbour.
DEFAULT_NOVELTY_GAP = 5.0
#: Weight of the novelty in the segment score: 0 text only, 1 novelty only.
DEFAULT_NOVELTY_WEIGHT = 0.5
#: Weight of a class's examples against its texts in the class embedding (0 texts only, 1 examples only).
DEFAULT_EXAMPLE_WEIGHT = 0.5
#: Novelty neighbours of ``query --unusual`` (on by nature there).
DEFAULT_UNUSUAL_K = 10
#: ``query --unusual TEXT``: the text query's best ``k`` times this many hits are ranked by novelty.
UNUSUAL_POOL_FACTOR = 10
#: Video aggregation: ratio of anomalous segments, max segment score, or mean of the top segment scores.
DEFAULT_VIDEO_AGG = "ratio"
#: Segments averaged by the topk-mean video aggregation.
DEFAULT_VIDEO_TOP_K = 3
#: Folds of the by-video cross-validation in ``vadindex tune``.
DEFAULT_TUNE_FOLDS = 5

#: ``vadindex watch``: seconds between commits; a ``kill -9`` loses at most this much of every stream.
DEFAULT_COMMIT_SECONDS = 10.0
#: ``vadindex watch``: an event of a camera that starts less than this many seconds after its previous
#: event ended raises no new alert; it extends the previous one.
DEFAULT_COOLDOWN = 10.0
#: ``vadindex watch``: seconds a stream may take to open (FFmpeg probes twice, so up to twice this)
#: and to deliver the next packet before it counts as lost and is reconnected.
DEFAULT_OPEN_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 5.0
#: ``vadindex watch``: seconds of completed segments a stream may have waiting for the encoder; beyond
#: that the oldest are dropped (counted), so latency stays bounded when the CPU cannot keep up.
DEFAULT_MAX_LAG = 4.0
#: ``vadindex watch``: a decoder this many seconds behind real time decodes keyframes only until it is
#: back within ``KEYFRAME_RESUME_LAG`` seconds.
KEYFRAME_ONLY_LAG = 1.5
KEYFRAME_RESUME_LAG = 0.3
#: ``vadindex watch``: reconnect back-off, first and longest wait in seconds (doubling, with jitter).
RECONNECT_MIN_DELAY = 0.5
RECONNECT_MAX_DELAY = 30.0
#: ``vadindex watch``: segments the index must hold before a calibrated rule (``--calibrate``) raises
#: alerts; until then segments are indexed and scored but calibration has nothing to compare with.
DEFAULT_MIN_HISTORY = 60
#: ``vadindex watch --webhook``: seconds per POST, and attempts after the first.
DEFAULT_WEBHOOK_TIMEOUT = 5.0
DEFAULT_WEBHOOK_RETRIES = 3
#: ``vadindex watch``: PyTorch CPU threads of the encoder. One: the stream decoders share the cores,
#: and a multi-threaded encoder on busy cores waits a scheduler slice at every operation's barrier
#: (measured on 2 cores shared with other jobs: vadindex-tiny on 4-frame batches, 119 frames/s on one
#: thread, 2.2 on two; BENCHMARKS.md).
DEFAULT_WATCH_THREADS = 1
#: RTSP transport of ``vadindex watch`` (``udp`` for servers and cameras without RTP over TCP).
RTSP_TRANSPORTS = ("tcp", "udp")
DEFAULT_RTSP_TRANSPORT = "tcp"

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


def check_gate(threshold: float, max_gap: float) -> None:
    """Raise ``InputError`` for change-gate settings that mean nothing."""
    if not 0 < threshold <= 255:
        raise InputError(f"--gate-threshold must be in (0, 255] grey levels, got {threshold:g}")
    if not max_gap > 0:
        raise InputError(f"--gate-max-gap must be positive (seconds), got {max_gap:g}")
