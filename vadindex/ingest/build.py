"""A build: plan what to index, lock the index, run an engine over the videos, commit, report.

The engines differ only in where :func:`vadindex.ingest.video.ingest_video` runs: :func:`run_local`
runs it here, one video after another (decoding in a thread beside the encoder);
:mod:`vadindex.ingest.ray_engine` runs it in a pool of Ray actors. Whatever the engine, one
:class:`BuildLedger` in this process is the index's single writer: it skips what the index holds,
commits every ``commit_every`` videos (or minute, or :data:`PENDING_BYTES` of results), and records
failures.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from vadindex.config import DEFAULT_FPS, DEFAULT_MODEL, DEFAULT_SEGMENT_SECONDS, SamplingSettings
from vadindex.errors import InputError
from vadindex.index.lock import lock_index
from vadindex.index.manifest import LOCK, MANIFEST, PARTS, read_manifest
from vadindex.index.writer import IndexWriter, PendingVideo
from vadindex.ingest.gate import GateSettings, describe_gate
from vadindex.ingest.options import BuildOptions
from vadindex.ingest.ray_engine import RayEngine
from vadindex.ingest.sources import VideoRoots, VideoSource, assign_cameras, collect_sources, fingerprint
from vadindex.ingest.video import encoder_precision, failure_reason, ingest_for_build
from vadindex.models.identity import Encoder

log = logging.getLogger("vadindex")

#: Commit at least this often (seconds) while videos are pending, whatever ``commit_every`` says.
COMMIT_INTERVAL = 60.0
#: Commit once the pending videos' vectors take this many bytes, whatever ``commit_every`` says:
#: the writer's memory stays bounded when videos are hours long (16 one-hour videos hold ~350 MB).
PENDING_BYTES = 256 << 20


@dataclass(frozen=True)
class BuildSummary:
    """What a build did."""

    index: str
    videos_added: int
    videos_skipped: int
    segments_added: int
    #: Sampled frames the image encoder ran on (all of them unless ``--gate auto``).
    frames_encoded: int
    failures: tuple[tuple[str, str], ...]
    seconds: float
    total_videos: int
    total_segments: int
    model: str
    #: The image encoder's arithmetic at the end of the build (``fp32``, ``int8``, ``fp16``).
    precision: str = ""
    #: What ``--precision auto`` measured before choosing between int8 and fp32 on a CPU
    #: (``frames``, ``min_cosine``, ``mean_cosine``, ``accepted``); ``None`` when it did not run.
    int8_check: dict[str, Any] | None = None
    #: Where the videos were encoded (``build --engine``).
    engine: str = "local"
    #: Ray workers lost while encoding (died, node lost, stopped answering); their videos were retried.
    workers_lost: int = 0
    #: Sampled frames that reuse an earlier frame's embedding (the change gate, ``--gate auto``).
    frames_reused: int = 0
    #: The change gate's settings (``off``, or ``auto/<version> threshold T max-gap G``).
    gate: str = ""

    @property
    def frames_sampled(self) -> int:
        """Sampled frames stored, encoded or reused."""
        return self.frames_encoded + self.frames_reused

    @property
    def frames_per_second(self) -> float:
        """Sampled frames stored per wall-clock second, decoding, encoding and storage included."""
        return self.frames_sampled / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "index": self.index,
            "model": self.model,
            "videos_added": self.videos_added,
            "videos_skipped": self.videos_skipped,
            "segments_added": self.segments_added,
            "frames_sampled": self.frames_sampled,
            "frames_encoded": self.frames_encoded,
            "frames_reused": self.frames_reused,
            "gate": self.gate,
            "failures": [{"path": p, "reason": r} for p, r in self.failures],
            "seconds": round(self.seconds, 3),
            "frames_per_second": round(self.frames_per_second, 2),
            "total_videos": self.total_videos,
            "total_segments": self.total_segments,
            "precision": self.precision,
            "int8_check": self.int8_check,
            "engine": self.engine,
            "workers_lost": self.workers_lost,
        }


@dataclass(frozen=True)
class BuildPlan:
    """What a build will do, settled before any model loads: the options reconciled with the
    index's (an existing index keeps its model and sampling), and the videos to look at."""

    index: Path
    options: BuildOptions
    settings: SamplingSettings
    videos: tuple[VideoSource, ...]
    #: ``(path, reason)`` of sources that are not readable files (missing, broken links, pipes).
    unreadable: tuple[tuple[str, str], ...]


def plan_build(
    sources: list[str | os.PathLike[str]],
    index: str | os.PathLike[str],
    options: BuildOptions,
    manifest: str | os.PathLike[str] | None = None,
) -> BuildPlan:
    """Reconcile ``options`` with the index (when it exists) and list the videos.

    Raises:
        InputError: no video to index, bad sampling, or an index built from a checkpoint file
            that is not passed again.
    """
    path = Path(index).expanduser()
    resolved, settings = resolve_options(path, options)
    videos, unreadable = collect_sources(sources, manifest, VideoRoots.parse(options.video_root))
    videos = assign_cameras(videos, options.camera, options.camera_from)
    if not videos:
        detail = "; ".join(f"{p}: {r}" for p, r in unreadable) or "no sources given"
        raise InputError(f"no videos to index ({detail})")
    return BuildPlan(path, resolved, settings, tuple(videos), tuple(unreadable))


def resolve_options(path: Path, options: BuildOptions) -> tuple[BuildOptions, SamplingSettings]:
    """``options`` with the model and sampling filled in: the index's when it exists, else the defaults.

    Raises:
        InputError: bad sampling, or an index built from a checkpoint file that is not passed again.
    """
    existing = read_manifest(path) if (path / MANIFEST).exists() else None
    model, pretrained, fps, seconds = options.model, options.pretrained, options.fps, options.segment_seconds
    if existing is not None:
        model = model or existing.model
        if pretrained is None and model == existing.model:
            pretrained = existing.pretrained_path or existing.pretrained
            if pretrained.startswith("file:"):
                raise InputError(
                    f"{path}: built from checkpoint {pretrained[5:]}; pass it again with --pretrained PATH"
                )
        fps = fps if fps is not None else existing.sampling["fps"]
        seconds = seconds if seconds is not None else existing.sampling["segment_seconds"]
    settings = SamplingSettings(
        fps=fps if fps is not None else DEFAULT_FPS,
        segment_seconds=seconds if seconds is not None else DEFAULT_SEGMENT_SECONDS,
    )
    settings.validate()
    return options.replace(model=model or DEFAULT_MODEL, pretrained=pretrained), settings


@dataclass
class _Progress:
    """A tqdm bar over videos, or nothing."""

    total: int
    enabled: bool
    bar: Any = field(default=None)

    def __post_init__(self) -> None:
        if self.enabled:
            self.bar = tqdm(total=self.total, unit="video", desc="indexing", dynamic_ncols=True)

    def update(self, frames: int, seconds: float, name: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{frames / max(seconds, 1e-9):.1f} frames/s {name[-30:]}")
            self.bar.update(1)

    def write(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message)
        else:
            log.warning(message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class BuildLedger:
    """The driver's side of a build: the one writer, counters, failures, progress and commits.

    Engines report each video as skipped (already indexed), added (with its ingested rows) or
    failed; the ledger commits every ``commit_every`` added videos, or after
    :data:`COMMIT_INTERVAL` seconds, or once :data:`PENDING_BYTES` are pending, and writes
    ``failures.csv`` with each commit.

    With ``background`` (the Ray engine), those commits run in a thread while the engine goes on
    reporting videos: when videos arrive faster than commits are written, each commit takes all
    that arrived during the previous one (group commit), so a cluster's driver is not held up by
    fsyncs; the engine waits only when :data:`PENDING_BYTES` pile up behind a running commit.
    """

    def __init__(
        self,
        writer: IndexWriter,
        plan: BuildPlan,
        progress: bool = True,
        on_failure: Callable[[str, str], None] | None = None,
        background: bool = False,
    ) -> None:
        self.writer = writer
        self.plan = plan
        self.on_failure = on_failure
        self.failures: list[tuple[str, str]] = []
        self.added = self.skipped = self.segments = self.frames = self.encoded = 0
        self._bar = _Progress(len(plan.videos), progress)
        self._last_commit = time.perf_counter()
        self._pending_bytes = 0
        self._background = background
        self._committing: threading.Thread | None = None
        self._commit_error: BaseException | None = None
        for path, reason in plan.unreadable:
            self._record_failure(path, reason)

    def has_video(self, video_id: str) -> bool:
        """True when the index holds the video (or will at the next commit)."""
        return self.writer.has_video(video_id)

    def skip(self, src: VideoSource) -> None:
        """``src`` is already in the index."""
        self.skipped += 1
        self._bar.update(0, 1.0, src.video)

    def add(self, src: VideoSource, item: PendingVideo, seconds: float) -> None:
        """Queue an ingested video, committing when enough work is pending."""
        self.writer.add(item)
        self.added += 1
        self.segments += len(item.segments)
        self.frames += len(item.frame_vectors)
        self.encoded += len(item.frame_vectors) if item.encoded is None else int(item.encoded.sum())
        self._pending_bytes += item.segment_vectors.nbytes + item.frame_vectors.nbytes
        self._bar.update(len(item.frame_vectors), seconds, src.video)
        if (
            self.writer.pending >= self.plan.options.commit_every
            or self._pending_bytes >= PENDING_BYTES
            or time.perf_counter() - self._last_commit > COMMIT_INTERVAL
        ):
            if self._background:
                self._commit_behind()
            else:
                self.commit()

    def fail(self, src: VideoSource, reason: str) -> None:
        """``src`` could not be indexed: report it on one line and go on."""
        self._record_failure(str(src.path), reason)
        self._bar.write(f"skipped {src.path}: {reason}")
        self._bar.update(0, 1.0, src.video)

    def _record_failure(self, path: str, reason: str) -> None:
        self.failures.append((path, reason))
        if self.on_failure:
            self.on_failure(path, reason)

    def _commit_behind(self) -> None:
        """Start a commit in a thread, unless one runs and not too much is pending behind it."""
        running = self._committing is not None and self._committing.is_alive()
        if running and self._pending_bytes < PENDING_BYTES:
            return  # the next commit takes these too
        self._wait_for_commit()
        failures = list(self.failures)
        self._committing = threading.Thread(
            target=self._commit_in_thread, args=(failures,), name="vadindex-commit"
        )
        self._last_commit = time.perf_counter()
        self._pending_bytes = 0
        self._committing.start()

    def _commit_in_thread(self, failures: list[tuple[str, str]]) -> None:
        try:
            self.writer.commit()
            self.writer.write_failures(failures)
        except BaseException as exc:  # noqa: BLE001 - raised in the engine's thread by _wait_for_commit
            self._commit_error = exc

    def _wait_for_commit(self, raise_error: bool = True) -> None:
        """Wait for a background commit; raise what it raised."""
        if self._committing is not None:
            self._committing.join()
            self._committing = None
        if self._commit_error is not None and raise_error:
            error, self._commit_error = self._commit_error, None
            raise error

    def commit(self, final: bool = False) -> None:
        """Commit what is pending (``final``: and complete the FAISS file), with ``failures.csv``."""
        self._wait_for_commit()
        self.writer.commit(final)
        self.writer.write_failures(self.failures)
        self._last_commit = time.perf_counter()
        self._pending_bytes = 0

    def close(self) -> None:
        """Wait for a background commit (the writer must not close under it); close the progress bar."""
        try:
            self._wait_for_commit(raise_error=False)
        finally:
            self._bar.close()

    def summary(self, encoder: Encoder, seconds: float) -> BuildSummary:
        """What the build did, once it has committed."""
        manifest = self.writer.manifest
        assert manifest is not None
        return BuildSummary(
            index=str(self.plan.index),
            videos_added=self.added,
            videos_skipped=self.skipped,
            segments_added=self.segments,
            frames_encoded=self.encoded,
            frames_reused=self.frames - self.encoded,
            failures=tuple(self.failures),
            seconds=seconds,
            total_videos=manifest.n_videos,
            total_segments=manifest.n_segments,
            model=encoder.identity.describe(),
            precision=encoder_precision(encoder),
            int8_check=getattr(encoder, "int8_check", None),
            engine=self.plan.options.engine,
            gate=describe_gate(GateSettings.from_options(self.plan.options)),
        )


def run_local(plan: BuildPlan, encoder: Encoder, ledger: BuildLedger) -> None:
    """The local engine: ingest each video here, in order, and report it to the ledger.

    A video that cannot be read is a failure and the build goes on; any other error of ours (a
    full disk, a lost lock) stops it.
    """
    for src in plan.videos:
        t_video = time.perf_counter()
        log.debug("ingesting %s", src.path)
        try:
            vid = fingerprint(src.path)
            if ledger.has_video(vid):
                ledger.skip(src)
                continue
            item = ingest_for_build(src, encoder, plan.settings, plan.options, vid)
        except Exception as exc:  # noqa: BLE001 - classified: a bad video is recorded, ours stop the build
            reason = failure_reason(exc)
            if reason is None:
                raise
            log.debug("failed on %s", src.path, exc_info=True)
            ledger.fail(src, reason)
        else:
            ledger.add(src, item, time.perf_counter() - t_video)


@contextlib.contextmanager
def open_build(
    plan: BuildPlan,
    encoder: Encoder | None = None,
    threads: int | None = None,
    start: Callable[[], Encoder] | None = None,
) -> Iterator[tuple[Encoder, IndexWriter]]:
    """Lock the index, load the encoder (unless given; ``threads``: its CPU threads) and open the
    writer; release all on exit.

    An encoder loaded here remembers ``--precision auto``'s int8 verdict per weights and CPU (the
    second build on a machine skips the check), and exports its text tower to ONNX for torch-free
    queries, once per model on this machine
    (:meth:`~vadindex.models.openclip.OpenClipEncoder.export_text_onnx`).

    The index is locked before the model loads, so a second build on the same index is refused at
    once; a folder this build created is removed again when the build fails to start.

    Args:
        plan: the build.
        encoder: an already-loaded encoder.
        threads: the CPU threads of an encoder loaded here (``None``: PyTorch's, one per core).
        start: called once the index is locked, instead of loading the model here: returns what the
            writer needs to know of the model (identity, dim, logit scale), e.g. from remote workers.
    """
    o = plan.options
    created = not plan.index.exists()
    lock = lock_index(plan.index)
    try:
        if encoder is None and start is not None:
            encoder = start()
        if encoder is None:
            from vadindex.models.openclip import load_encoder

            model = load_encoder(
                o.model or DEFAULT_MODEL,
                o.pretrained,
                o.device,
                o.precision,
                o.backend,
                threads=threads,
                remember_int8=True,
            )
            # torch is loaded now: export the text tower once, so queries need no torch (a no-op when
            # done before on this machine, or for towers that cannot be exported).
            model.export_text_onnx()
            encoder = model
        writer = IndexWriter(
            plan.index,
            encoder.identity,
            encoder.dim,
            encoder.logit_scale,
            _sampling_dict(plan.settings),
            pretrained_path=_pretrained_path(encoder, o.pretrained),
            lock=lock,
            index_type=o.index_type,
            engine=o.engine,
        )
        writer.open()
    except BaseException:
        lock.release()
        if created:
            _remove_empty_index(plan.index)
        raise
    with writer:
        yield encoder, writer


def build_index(
    sources: list[str | os.PathLike[str]],
    index: str | os.PathLike[str],
    *,
    manifest: str | os.PathLike[str] | None = None,
    options: BuildOptions | None = None,
    progress: bool = True,
    encoder: Encoder | None = None,
    on_failure: Callable[[str, str], None] | None = None,
    **overrides: Any,
) -> BuildSummary:
    """Index videos: decode, sample, encode and store every segment; skip videos already indexed.

    When the index exists, its model and sampling are used unless given; giving different ones is
    refused. A video that cannot be read is reported and skipped; the build goes on.

    Args:
        sources: video files and folders.
        index: the index folder (created if missing).
        manifest: optional manifest CSV (path, label, class).
        options: a :class:`~vadindex.ingest.options.BuildOptions`; keyword arguments named like its
            fields (``model="ViT-B-32"``, ``batch_size=32``...) override it.
        progress: show a progress bar.
        encoder: an already-loaded encoder (overrides ``model``/``pretrained``/``device``; not with
            ``engine="ray"``, whose workers load their own).
        on_failure: called with ``(path, reason)`` for each video that fails.

    Returns:
        A :class:`BuildSummary`; ``failures`` lists every video that was not indexed, also written
        to ``failures.csv`` in the index at each commit.
    """
    t_start = time.perf_counter()
    plan = plan_build(sources, index, (options or BuildOptions()).replace(**overrides), manifest)
    if plan.options.engine == "ray":
        with RayEngine(plan) as engine, open_build(plan, start=engine.start) as (model, writer):
            ledger = BuildLedger(writer, plan, progress, on_failure, background=True)
            _drive(ledger, lambda: engine.run(ledger))
        summary = ledger.summary(model, time.perf_counter() - t_start)
        return dataclasses.replace(summary, workers_lost=engine.workers_lost)
    with open_build(plan, encoder) as (encoder, writer):
        ledger = BuildLedger(writer, plan, progress, on_failure)
        _drive(ledger, lambda: run_local(plan, encoder, ledger))
    return ledger.summary(encoder, time.perf_counter() - t_start)


def _drive(ledger: BuildLedger, run: Callable[[], None]) -> None:
    """Run an engine, then commit; Ctrl-C keeps what is finished."""
    try:
        run()
    except KeyboardInterrupt:
        ledger.commit(final=True)
        raise
    finally:
        ledger.close()
    ledger.commit(final=True)


def _sampling_dict(settings: SamplingSettings) -> dict[str, float]:
    return {
        "fps": settings.fps,
        "segment_seconds": settings.segment_seconds,
        "min_tail_fraction": settings.min_tail_fraction,
    }


def _pretrained_path(encoder: Encoder, pretrained: str | None) -> str | None:
    """The checkpoint file's absolute path, recorded so queries can find the same weights."""
    if encoder.identity.pretrained.startswith("file:") and pretrained:
        return str(Path(pretrained).expanduser().absolute())
    return None


def _remove_empty_index(path: Path) -> None:
    """Undo the folder a build created before it failed to start (model missing, index locked)."""
    with contextlib.suppress(OSError):
        (path / LOCK).unlink(missing_ok=True)
        (path / PARTS).rmdir()
        path.rmdir()
