"""Every option of a build, declared once: ``vadindex build``, :func:`build_index` and
``VideoIndex.build`` read them from :class:`BuildOptions`."""

from __future__ import annotations

from dataclasses import dataclass

from vadindex import config as C
from vadindex.errors import InputError
from vadindex.ingest.sources import VideoRoots, check_camera_from
from vadindex.options import Options, option


@dataclass(frozen=True)
class BuildOptions(Options):
    """How videos are sampled, encoded and stored. ``None`` means: the index's, else the default."""

    model: str | None = option(
        None,
        f"open_clip architecture or a built-in model (vadindex-tiny, vadindex-test). "
        f"[default: the index's, else {C.DEFAULT_MODEL}]",
    )
    pretrained: str | None = option(
        None,
        "open_clip pretrained tag, a local checkpoint file, 'builtin' or 'random' (tests only). "
        "[default: the model's usual tag]",
    )
    device: str = option(C.DEFAULT_DEVICE, "auto, cpu, cuda, cuda:N or mps.")
    batch_size: int = option(C.DEFAULT_BATCH_SIZE, "Frames per encoder batch.")
    fps: float | None = option(
        None, f"Frames sampled per second. [default: {C.DEFAULT_FPS:g}, or the index's]"
    )
    segment_seconds: float | None = option(
        None, f"Segment length in seconds. [default: {C.DEFAULT_SEGMENT_SECONDS:g}, or the index's]"
    )
    commit_every: int = option(
        C.DEFAULT_COMMIT_EVERY,
        "Videos per commit (and a commit at least once a minute); a crash loses at most these.",
    )
    video_timeout: float | None = option(
        C.DEFAULT_VIDEO_TIMEOUT,
        "Abandon a video (reported as failed) that takes longer than this many seconds in all. "
        "[default: no limit]",
    )
    stall_timeout: float = option(
        C.DEFAULT_STALL_TIMEOUT, "Abandon a video whose decoder produces nothing for this many seconds."
    )
    precision: str = option(
        C.DEFAULT_PRECISION,
        "Encoder arithmetic. auto: fp16 on CUDA; on a CPU, int8 (about 2x faster) once 32 frames of its "
        "first batches match fp32 to a cosine of 0.998, else fp32. fp32; int8 (CPU, unchecked); fp16 (CUDA).",
        choices=C.PRECISIONS,
    )
    index_type: str | None = option(
        None,
        "FAISS index: flat (exact), ivf or hnsw (approximate, for large indexes), auto (flat below "
        "200,000 segments, then ivf). [default: the index's, else auto]",
        choices=C.INDEX_TYPES,
    )
    gate: str = option(
        C.DEFAULT_GATE,
        "Change gate between decoding and encoding. auto: encode a sampled frame only when it differs "
        "from the last encoded frame of its video (small grey images; noise and slow lighting "
        "tolerated, a cut or camera move re-encodes at once) and give the others that frame's "
        "embedding; off: encode every sampled frame.",
        choices=C.GATE_MODES,
    )
    gate_threshold: float = option(
        C.DEFAULT_GATE_THRESHOLD,
        "Change gate sensitivity: grey levels (0-255) a pixel must change by, after lighting is "
        "compensated; lower encodes more frames.",
    )
    gate_max_gap: float = option(
        C.DEFAULT_GATE_MAX_GAP,
        "Change gate safety valve: encode a frame at least every this many seconds of video.",
    )
    backend: str = option(
        C.DEFAULT_BACKEND,
        "Image-tower runtime; onnxruntime (CPU, fp32, same embeddings, ~1.2x faster than torch fp32).",
        choices=C.BACKENDS,
    )

    thumbnails: bool = option(
        False,
        f"Also store one small JPEG per segment (its middle frame, {C.STORED_THUMBNAIL_SIZE} px) in the index, "
        "so reports and pages show it after the videos move or are deleted (about 4 MB per 1,000 segments). "
        "[default: off]",
    )
    video_root: str | None = option(None, C.VIDEO_ROOT_HELP, metavar="OLD=NEW")
    camera: str | None = option(
        None,
        "Camera name of every video of this build (a manifest's camera column wins). "
        "[default: each video is its own camera]",
        metavar="NAME",
    )
    camera_from: str | None = option(
        None,
        "Camera of each video from its path: 'parent' (its folder's name) or a regular expression "
        "(its first group, or the whole match).",
        metavar="parent|REGEX",
    )

    engine: str = option(
        C.DEFAULT_ENGINE,
        "Where videos are decoded and encoded: local (this process) or ray (a pool of Ray workers, one "
        "encoder each, on this machine or a cluster; `pip install 'vadindex[ray]'`). Either way this "
        "process alone writes the index.",
        choices=C.ENGINES,
    )
    ray_address: str | None = option(
        None,
        f"--engine ray: the cluster's head as HOST:PORT, auto (the cluster this machine joined with "
        f"`ray start`), or {C.RAY_LOCAL} (a private Ray instance on this machine for this build). "
        f"[default: {C.RAY_LOCAL}]",
        metavar="auto|HOST:PORT",
    )
    workers: int | None = option(
        None,
        "--engine ray: Ray workers, each loading the encoder once. "
        "[default: as many as the cluster's free CPUs (GPUs with --gpus-per-worker) allow]",
    )
    cpus_per_worker: float = option(
        C.DEFAULT_CPUS_PER_WORKER, "--engine ray: CPUs each worker reserves (and its PyTorch threads)."
    )
    gpus_per_worker: float = option(
        C.DEFAULT_GPUS_PER_WORKER,
        "--engine ray: GPUs each worker reserves (0.5 packs two on one GPU); above 0 it encodes on CUDA.",
    )

    def __post_init__(self) -> None:
        if self.camera is not None and not self.camera.strip():
            raise InputError("--camera must not be empty")
        check_camera_from(self.camera_from)
        if self.batch_size < 1:
            raise InputError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.commit_every < 1:
            raise InputError(f"--commit-every must be at least 1, got {self.commit_every}")
        if not self.stall_timeout > 0 or (self.video_timeout is not None and not self.video_timeout > 0):
            raise InputError("--stall-timeout and --video-timeout must be positive")
        if self.video_root:
            VideoRoots.parse(self.video_root)  # refuse a malformed value before any work
        if self.engine != "ray" and (self.ray_address is not None or self.workers is not None):
            raise InputError("--ray-address and --workers need --engine ray")
        if self.workers is not None and self.workers < 1:
            raise InputError(f"--workers must be at least 1, got {self.workers}")
        if not self.cpus_per_worker > 0 or not self.gpus_per_worker >= 0:
            raise InputError("--cpus-per-worker must be positive and --gpus-per-worker at least 0")
        C.check_gate(self.gate_threshold, self.gate_max_gap)
        for name, value, choices in (
            ("precision", self.precision, C.PRECISIONS),
            ("backend", self.backend, C.BACKENDS),
            ("index-type", self.index_type, C.INDEX_TYPES),
            ("engine", self.engine, C.ENGINES),
            ("gate", self.gate, C.GATE_MODES),
        ):
            if value is not None and value not in choices:
                raise InputError(f"--{name} must be one of {', '.join(choices)}, got {value!r}")
