"""The Ray engine (``build --engine ray``): a pool of Ray actors decodes and encodes whole videos,
and this process, the driver, commits what they send back through the one index writer.

Why a pool of plain actors driven from here, and not Ray Data's ``map_batches`` or
``ray.util.ActorPool`` (measured with Ray 2.60): Ray Data aborts the whole dataset when one video
raises, and retries a video that kills its worker forever (a poison video restarted 17 worker
processes in 86 s and the build never ended), with no per-video record; ``ActorPool`` does not say
which video a dead actor was on and cannot replace it. Here the driver owns every decision: each
actor has at most one video in flight, so when an actor dies (``ActorDiedError`` within
milliseconds, or ``ActorUnavailableError`` when its node is lost) exactly that video is charged
one attempt and requeued, or recorded as failed after :data:`MAX_ATTEMPTS`; a replacement actor
starts; an actor that stops answering its heartbeat is killed and treated the same way. A video is
added once: the driver fingerprints and de-duplicates before submitting, and only a result from a
tracked task is accepted. Bounded memory: at most one result per actor in flight, and the ledger
commits by count, time or pending bytes.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import os
import re
import socket
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from vadindex import errors
from vadindex.config import RAY_LOCAL
from vadindex.errors import ClusterError, InputError, VadindexError
from vadindex.index.writer import PendingVideo
from vadindex.ingest.sources import VideoSource, fingerprint_and_size
from vadindex.ingest.video import failure_reason
from vadindex.models.identity import ModelIdentity

if TYPE_CHECKING:
    from vadindex.ingest.build import BuildLedger, BuildPlan

log = logging.getLogger("vadindex")

#: Attempts a video gets when the worker encoding it is lost (the process dies, its node goes, it
#: stops answering); a video that loses its worker this often is recorded as failed, not retried
#: forever (a file that crashes the decoder, or exhausts the worker's memory).
MAX_ATTEMPTS = 2
#: Seconds the driver waits for results before it looks at heartbeats and idle workers.
POLL_SECONDS = 1.0
#: Seconds between heartbeats to a busy worker.
HEARTBEAT_SECONDS = 5.0
#: A busy worker whose encoder made no progress, or that did not answer its heartbeat, for this
#: many times ``--stall-timeout`` is taken as lost (its own stall and video timeouts fire first).
HANG_FACTOR = 2.0
#: Seconds the build waits for a worker to start (the model loads; the cluster frees resources)
#: while no worker is running, before it gives up with an error.
WORKER_START_TIMEOUT = 600.0
#: Seconds to wait for a cluster's head to accept a connection before the build is refused.
CONNECT_SECONDS = 10.0
#: Sources fingerprinted at once while the workers start (two small reads each; for objects in
#: remote storage the time is round trips, not bandwidth).
FINGERPRINT_THREADS = 8
#: Object store of the private Ray instance: results are embeddings (an hour of video at 4 fps
#: is ~21 MB), at most one per worker in flight.
OBJECT_STORE_BYTES = 256 << 20
#: Environment the driver passes on to its workers (with every ``VADINDEX_*`` variable): offline
#: and cache settings, and where object storage is; never credentials, which each node keeps.
FORWARDED_ENV = (
    "HF_HUB_OFFLINE",
    "HF_HOME",
    "XDG_CACHE_HOME",
    "TORCH_HOME",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
)


def import_ray() -> Any:
    """The ``ray`` module, or a one-line error naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise InputError("--engine ray needs Ray: pip install 'vadindex[ray]'") from None
    return ray


@dataclass
class PoolModel:
    """The workers' model, as the index writer and the build summary need it; the driver never
    loads it (a worker's copy is the one whose identity the index records)."""

    identity: ModelIdentity
    dim: int
    logit_scale: float
    image_size: int
    #: The workers' encoder arithmetic, all that occurred (``fp32``, ``int8``...), comma-separated.
    precision: str = ""
    #: What the first worker's ``--precision auto`` check measured.
    int8_check: dict[str, Any] | None = None

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        raise NotImplementedError("a Ray build encodes on its workers")

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError("a Ray build encodes on its workers")


@dataclass
class _Job:
    """One video to ingest, with the attempts it has had."""

    source: VideoSource
    video_id: str
    size: int
    attempts: int = 0


@dataclass
class _Slot:
    """One place in the pool: its current actor, what it is doing, and its heartbeat."""

    actor: Any
    starting: Any  # describe() in flight until the actor is up; None once ready
    job: _Job | None = None
    task: Any = None
    beat: Any = None
    beat_sent: float = 0.0


class RayEngine:
    """Connects to Ray, keeps a pool of :class:`~vadindex.ingest.ray_worker.VideoWorker` actors
    and feeds them the plan's videos, one in flight per actor.

    Use as a context manager around :func:`~vadindex.ingest.build.open_build`: :meth:`start` (called
    once the index is locked) connects and waits for the first worker's model, :meth:`run` drives
    the build, and leaving the context kills the actors and stops a Ray instance it started.
    """

    def __init__(self, plan: BuildPlan, worker: Any = None) -> None:
        """A driver for ``plan``.

        Args:
            plan: the build.
            worker: the Ray actor class; :class:`~vadindex.ingest.ray_worker.VideoWorker` unless
                given (``scripts/bench_ray.py`` replays ready-made results through this driver).
        """
        self.plan = plan
        o = plan.options
        self.address = o.ray_address or RAY_LOCAL
        self.device = o.device if o.device != "auto" else ("cuda" if o.gpus_per_worker > 0 else "cpu")
        self.threads = max(1, int(o.cpus_per_worker))
        self.hang_after = HANG_FACTOR * o.stall_timeout
        self.model: PoolModel | None = None
        #: Workers lost while on a video (died, node lost, stopped answering).
        self.workers_lost = 0
        self._ray: Any = None
        self._actor_class: Any = worker
        self._owns_ray = False
        self._slots: list[_Slot] = []
        self._start_failures = 0
        self._last_start_error = ""
        self._precisions: dict[int, str] = {}
        self._stack = contextlib.ExitStack()
        self._probes: list[Future[tuple[str, int]]] = []

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- start ---------------------------------------------------------------------------------

    def start(self) -> PoolModel:
        """Connect to Ray, start the workers and wait for the first one's model.

        Returns:
            The model the workers loaded (identity, dim, logit scale) for the index writer.

        Raises:
            InputError: Ray is not installed, or the cluster cannot be reached or is too small.
            ModelError: the workers cannot load the model (the message says where).
            ClusterError: no worker started within :data:`WORKER_START_TIMEOUT`.
        """
        ray = self._ray = import_ray()
        # Ray prints worker deaths from a thread to whatever sys.stdout is then: keep stdout for
        # the command's own output (``build --format json``).
        self._stack.enter_context(contextlib.redirect_stdout(sys.stderr))
        self._connect(ray)
        if self._actor_class is None:
            from vadindex.ingest.ray_worker import VideoWorker

            self._actor_class = VideoWorker
        n = self._pool_size(ray)
        self._slots = [self._new_slot() for _ in range(n)]
        # Fingerprint the sources while the workers load the model.
        pool = ThreadPoolExecutor(FINGERPRINT_THREADS, "vadindex-fingerprint")
        self._stack.callback(pool.shutdown, wait=True, cancel_futures=True)
        self._probes = [pool.submit(fingerprint_and_size, src.path) for src in self.plan.videos]
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        while self.model is None:
            pending = {s.starting: s for s in self._slots if s.starting is not None}
            if not pending:
                raise ClusterError(f"no Ray worker could start: {self._last_start_error}")
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"no Ray worker started within {WORKER_START_TIMEOUT:.0f} s "
                    f"(cluster resources: {self._resources(ray)})"
                )
            done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
            for ref in done:
                self._started(pending[ref])
        return self.model

    def _connect(self, ray: Any) -> None:
        if ray.is_initialized():  # the application's own Ray session: used as it is
            log.debug("using the running Ray session")
            return
        o = self.plan.options
        common = {"log_to_driver": False, "logging_level": logging.WARNING}
        if self.address == RAY_LOCAL:
            # A private instance: no usage report leaves the machine unless the user asked for it.
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            cpus = os.cpu_count() or 1
            if o.workers:
                cpus = max(cpus, math.ceil(o.workers * o.cpus_per_worker))
            ray.init(
                address="local",
                num_cpus=cpus,
                include_dashboard=False,
                object_store_memory=OBJECT_STORE_BYTES,
                **common,
            )
        else:
            _check_reachable(self.address)
            try:
                ray.init(address=self.address, **common)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise InputError(f"--ray-address {self.address}: cannot connect to Ray ({first})") from None
        self._owns_ray = True

    @staticmethod
    def _resources(ray: Any) -> str:
        res = ray.cluster_resources()
        return f"{res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs"

    def _pool_size(self, ray: Any) -> int:
        """Workers to start: as asked, else as many as the cluster's CPUs (GPUs) hold; never more
        than there are videos."""
        o = self.plan.options
        res = ray.cluster_resources()
        cpus, gpus = float(res.get("CPU", 0)), float(res.get("GPU", 0))
        if o.cpus_per_worker > cpus or o.gpus_per_worker > gpus:
            raise InputError(
                f"the Ray cluster has {cpus:g} CPUs and {gpus:g} GPUs: too few for one worker with "
                f"--cpus-per-worker {o.cpus_per_worker:g} --gpus-per-worker {o.gpus_per_worker:g}"
            )
        fit = int(cpus // o.cpus_per_worker)
        if o.gpus_per_worker > 0:
            fit = min(fit, int(gpus // o.gpus_per_worker))
        n = o.workers or max(1, fit)
        if n > fit:
            log.warning(
                "the Ray cluster holds %d of the %d workers asked for; the rest start when it has room",
                fit,
                n,
            )
        return max(1, min(n, len(self.plan.videos)))

    def _new_slot(self) -> _Slot:
        o = self.plan.options
        env = {k: v for k, v in os.environ.items() if k in FORWARDED_ENV or k.startswith("VADINDEX_")}
        actor = self._actor_class.options(
            num_cpus=o.cpus_per_worker,
            num_gpus=o.gpus_per_worker,
            runtime_env={"env_vars": env} if env else None,
        ).remote(o, self.plan.settings, self.device, self.threads)
        return _Slot(actor, actor.describe.remote())

    def _started(self, slot: _Slot) -> None:
        """A worker's ``describe`` answered (or its actor died while loading the model)."""
        ray = self._ray
        ref, slot.starting = slot.starting, None
        try:
            desc = ray.get(ref)
        except ray.exceptions.RayError as exc:
            self._start_failures += 1
            self._last_start_error = _first_line(exc)
            log.warning("a Ray worker failed to start: %s", self._last_start_error)
            self._kill(slot)
            if self._start_failures <= 2 * len(self._slots):
                self._slots[self._slots.index(slot)] = self._new_slot()
            else:
                self._slots.remove(slot)
            return
        if "error" in desc:
            kind, message = desc["error"]
            raise _error(kind, f"{message} (Ray worker on {desc['where']})")
        if self.model is None:
            self.model = PoolModel(
                desc["identity"], desc["dim"], desc["logit_scale"], desc["image_size"], desc["precision"]
            )
        elif not desc["identity"].same_as(self.model.identity):
            raise errors.ModelError(
                f"Ray worker on {desc['where']} loaded {desc['identity'].describe()}, not "
                f"{self.model.identity.describe()} like the others: give every node the same weights"
            )

    # -- run -----------------------------------------------------------------------------------

    def run(self, ledger: BuildLedger) -> None:
        """Fingerprint the plan's videos, skip what the index holds, and have the pool ingest the
        rest, largest first, reporting each to ``ledger``.

        Raises:
            ClusterError: no worker has run for :data:`WORKER_START_TIMEOUT` while videos wait.
            VadindexError: a worker hit an error that is not its video's (as a local build stops).
        """
        todo = collections.deque(self._jobs(ledger))
        self._slots.sort(key=lambda s: s.starting is not None)  # running workers first
        for slot in self._slots[max(len(todo), 1) :]:  # fewer videos than workers: free the rest
            self._kill(slot)
        del self._slots[max(len(todo), 1) :]
        idle_since = time.monotonic()
        while todo or any(s.job is not None for s in self._slots):
            self._assign(todo)
            self._step(ledger, todo)
            if any(s.starting is None for s in self._slots) or not todo:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > WORKER_START_TIMEOUT:
                raise ClusterError(
                    f"no Ray worker has been running for {WORKER_START_TIMEOUT:.0f} s "
                    f"({self._resources(self._ray)}); {len(todo)} videos not indexed, committed work kept"
                )

    def _jobs(self, ledger: BuildLedger) -> list[_Job]:
        """The videos to ingest: fingerprinted here, without those the index holds or that repeat
        another's content, largest first (so no long video is left alone at the end)."""
        jobs: list[_Job] = []
        submitted: set[str] = set()
        for src, probe in zip(self.plan.videos, self._probes, strict=True):
            try:
                vid, size = probe.result()
            except Exception as exc:  # noqa: BLE001 - classified as in a local build
                reason = failure_reason(exc)
                if reason is None:
                    raise
                ledger.fail(src, reason)
                continue
            if ledger.has_video(vid) or vid in submitted:
                ledger.skip(src)
                continue
            submitted.add(vid)
            jobs.append(_Job(src, vid, size))
        jobs.sort(key=lambda j: -j.size)
        return jobs

    def _assign(self, todo: collections.deque[_Job]) -> None:
        now = time.monotonic()
        for slot in self._slots:
            if todo and slot.starting is None and slot.job is None:
                job = slot.job = todo.popleft()
                # The task's name shows in the worker's process title: `ps` says who encodes what.
                name = f"vadindex:{job.source.video}"[:120]
                slot.task = slot.actor.ingest.options(name=name).remote(job.source, job.video_id)
                slot.beat, slot.beat_sent = None, now

    def _step(self, ledger: BuildLedger, todo: collections.deque[_Job]) -> None:
        """Wait up to :data:`POLL_SECONDS` for results, worker starts and heartbeats; handle them."""
        ray = self._ray
        waiting: dict[Any, tuple[str, _Slot]] = {}
        for slot in self._slots:
            for kind, ref in (("start", slot.starting), ("task", slot.task), ("beat", slot.beat)):
                if ref is not None:
                    waiting[ref] = (kind, slot)
        if not waiting:
            time.sleep(POLL_SECONDS)
            return
        refs = list(waiting)
        ready, rest = ray.wait(refs, num_returns=1, timeout=POLL_SECONDS)
        if ready and rest:
            ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        for ref in ready:
            kind, slot = waiting[ref]
            if slot not in self._slots:
                continue  # replaced while handling an earlier ref
            if kind == "start":
                self._started(slot)
            elif kind == "task" and slot.task is ref:
                self._finished(slot, ledger, todo)
            elif kind == "beat" and slot.beat is ref:
                slot.beat = None
                with contextlib.suppress(ray.exceptions.RayError):  # a death shows on the task
                    if slot.job is not None and ray.get(ref) > self.hang_after:
                        self._lost(slot, ledger, todo, f"no encoder progress for {self.hang_after:g} s")
        now = time.monotonic()
        for slot in list(self._slots):
            if slot.job is None:
                continue
            if slot.beat is not None and now - slot.beat_sent > self.hang_after:
                self._lost(slot, ledger, todo, f"no answer for {self.hang_after:g} s")
            elif slot.beat is None and now - slot.beat_sent > HEARTBEAT_SECONDS:
                slot.beat, slot.beat_sent = slot.actor.heartbeat.remote(), now

    def _finished(self, slot: _Slot, ledger: BuildLedger, todo: collections.deque[_Job]) -> None:
        ray = self._ray
        job, ref = slot.job, slot.task
        assert job is not None
        try:
            result = ray.get(ref)
        except ray.exceptions.RayActorError as exc:  # ActorDiedError, ActorUnavailableError (node lost)
            self._lost(slot, ledger, todo, _first_line(exc))
            return
        except ray.exceptions.RayError as exc:  # the task itself failed (it catches video errors)
            slot.job = slot.task = slot.beat = None
            ledger.fail(job.source, f"Ray worker error: {_first_line(exc)}")
            return
        slot.job = slot.task = slot.beat = None
        for line in result.warnings:
            log.warning("%s", line)
        if result.fatal is not None:
            raise _error(*result.fatal)
        self._precisions[id(slot.actor)] = result.precision
        assert self.model is not None
        self.model.precision = ",".join(
            sorted({p for v in self._precisions.values() for p in v.split(",") if p})
        )
        if self.model.int8_check is None:
            self.model.int8_check = result.int8_check
        if result.video is None:
            ledger.fail(job.source, result.reason)
        else:
            ledger.add(job.source, _own_copy(result.video), result.seconds)

    def _lost(self, slot: _Slot, ledger: BuildLedger, todo: collections.deque[_Job], reason: str) -> None:
        """The worker died, lost its node or stopped answering: charge its video one attempt
        (requeue it, or record it after :data:`MAX_ATTEMPTS`) and start a replacement."""
        self.workers_lost += 1
        job = slot.job
        if job is not None:
            job.attempts += 1
            if job.attempts < MAX_ATTEMPTS:
                log.warning("Ray worker lost on %s (%s); retrying it", job.source.video, reason)
                todo.appendleft(job)
            else:
                ledger.fail(
                    job.source, f"its Ray worker was lost on it {job.attempts} times (last: {reason})"
                )
        self._kill(slot)
        self._slots[self._slots.index(slot)] = self._new_slot()

    # -- end -----------------------------------------------------------------------------------

    def _kill(self, slot: _Slot) -> None:
        with contextlib.suppress(Exception):
            self._ray.kill(slot.actor, no_restart=True)
        slot.job = slot.task = slot.beat = slot.starting = None

    def close(self) -> None:
        """Kill the workers; stop the Ray instance this build started."""
        try:
            if self._ray is not None:
                for slot in self._slots:
                    self._kill(slot)
                self._slots = []
                if self._owns_ray:
                    self._ray.shutdown()
                    self._owns_ray = False
        finally:
            self._stack.close()


def _own_copy(item: PendingVideo) -> PendingVideo:
    """The result with arrays of its own: Ray hands out read-only views of its object store, which
    stay pinned while referenced."""
    return PendingVideo(
        dict(item.video),
        item.segments.copy(deep=True),
        np.array(item.segment_vectors),
        np.array(item.frame_vectors),
        item.precision,
        None if item.thumbnails is None else item.thumbnails.copy(deep=True),
        None if item.encoded is None else np.array(item.encoded),
        item.gate,
    )


def _check_reachable(address: str) -> None:
    """Refuse at once a ``HOST:PORT`` where nothing listens (Ray itself retries for minutes).

    Raises:
        InputError: the port is closed or the host unreachable.
    """
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # ``auto``, or a ``ray://`` client address: Ray resolves those
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS):
            pass
    except OSError as exc:
        raise InputError(
            f"--ray-address {address}: no Ray cluster answers there ({exc.strerror or exc}); start one "
            "with `ray start --head`, or leave --ray-address out to run Ray on this machine"
        ) from None


def _error(kind: str, message: str) -> VadindexError:
    """A worker's error as the same class here (their messages already say what and where)."""
    cls = getattr(errors, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, VadindexError)) or cls is errors.VideoError:
        cls = VadindexError
    return cls(message)


def _first_line(exc: BaseException) -> str:
    """The first line of a Ray error, without the terminal colours Ray puts in."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__
