"""``vadindex watch``: follow live streams, grow the index, raise alerts.

One decoding thread per stream (:mod:`vadindex.live.reader`) cuts its stream into segments; this
module's engine takes them round-robin from their bounded queues, encodes them in batches across
streams with the one encoder, scores them (:mod:`vadindex.live.scorer`), turns flagged ones into
alerts (:mod:`vadindex.live.alerts`) and hands them to the one index writer, which a thread of its
own commits every ``--commit-seconds`` (a commit never holds up an alert).

How a stream becomes index rows: every commit turns each stream's segments since the previous
commit into one video row, a *recording chunk* (a new chunk also starts when the stream reconnects
or its timestamps jump). Its ``video`` is ``<camera>/<wall-clock start>``, its ``path`` the source
URL without credentials, and ``camera``, ``wall_start`` (Unix seconds) and ``stream_start`` (the
stream's own timestamp) record when it starts; a segment's ``start``/``end`` are seconds from
there, so both clocks are known for every segment. Segment numbers run 0, 1, ... within a chunk;
their times show any gap (segments dropped when the encoder fell behind). ``query``, ``detect``
and ``check`` read a watched index like any other, while it grows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from vadindex.detect.options import DetectOptions
from vadindex.detect.prompts import ClassPromptSet, load_prompt_set
from vadindex.errors import InputError, StoreError
from vadindex.index.writer import IndexWriter, PendingVideo
from vadindex.ingest.build import BuildPlan, open_build, resolve_options
from vadindex.ingest.options import BuildOptions
from vadindex.ingest.video import encoder_precision
from vadindex.live.alerts import AlertLog, AlertTracker, FlaggedSegment, Webhook, alerts_file
from vadindex.live.options import WatchOptions
from vadindex.live.reader import SegmentQueues, StreamReader, check_supported
from vadindex.live.scorer import LiveScorer, check_live_options
from vadindex.live.segmenter import LiveSegment
from vadindex.live.sources import StreamSource, parse_source
from vadindex.models.identity import Encoder

log = logging.getLogger("vadindex")

#: Seconds between the engine's status lines.
STATUS_SECONDS = 60.0
#: A batch takes about this many seconds of encoding at most once segments are waiting (see
#: ``_Engine._batch_frames``); with ``--max-lag`` it bounds how late a segment is decided.
BATCH_SECONDS = 1.25
#: Segment delays kept per camera for the summary's percentiles.
DELAY_SAMPLES = 4096
#: Seconds the shutdown waits for reader threads to notice the stop, and for the webhook to deliver.
STOP_WAIT = 2.0


class FrameGate(Protocol):
    """Decides which of a stream's sampled frames need encoding (one gate per stream, kept across
    segments); the others reuse the embedding of the stream's last encoded frame."""

    def select(self, frames: np.ndarray) -> np.ndarray:
        """A boolean mask over ``(n, S, S, 3)`` frames: True where the frame must be encoded."""
        ...


@dataclass(frozen=True)
class WatchSummary:
    """What a watch did, once it has stopped and committed."""

    index: str
    #: Why it stopped: ``interrupted`` (Ctrl-C), ``terminated`` (SIGTERM), ``duration``,
    #: ``stopped`` (the caller's event), or ``sources failed`` (every source permanently).
    stopped: str
    seconds: float
    segments_indexed: int
    frames_encoded: int
    alerts: int
    generation: int
    total_segments: int
    model: str
    precision: str
    #: Seconds the encoder ran (frames_encoded / encode_seconds is its throughput here).
    encode_seconds: float
    alert_latencies: tuple[float, ...]
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: POSTs ``sent``, ``failed`` (after every retry) and ``dropped`` (queue full); ``None``: no webhook.
    webhook: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "index": self.index,
            "stopped": self.stopped,
            "seconds": round(self.seconds, 3),
            "segments_indexed": self.segments_indexed,
            "frames_encoded": self.frames_encoded,
            "encoder_fps": round(self.frames_encoded / self.encode_seconds, 2)
            if self.encode_seconds
            else None,
            "alerts": self.alerts,
            "alert_latencies_s": [round(x, 3) for x in self.alert_latencies],
            "generation": self.generation,
            "total_segments": self.total_segments,
            "model": self.model,
            "precision": self.precision,
            "streams": self.streams,
            "webhook": self.webhook,
        }


class _Chunk:
    """One stream's segments since the last commit: one video row of the index."""

    def __init__(self, source: StreamSource, first: LiveSegment, dropped_before: int) -> None:
        self.source = source
        self.timeline = first.timeline
        self.wall_start = first.wall_start
        self.stream_start = first.start
        self.first_frame = first.start_frame
        stamp = datetime.fromtimestamp(first.wall_start).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        self.video = f"{source.name}/{stamp}"
        self.video_id = f"live-{source.name}-{int(round(first.wall_start * 1000))}"
        self.dropped_before = dropped_before
        self.segments: list[LiveSegment] = []
        self.frames: list[np.ndarray] = []
        self.vectors: list[np.ndarray] = []

    def add(self, segment: LiveSegment, frames: np.ndarray, vector: np.ndarray) -> int:
        """Append a segment; returns its position (its ``segment`` number in the index)."""
        self.segments.append(segment)
        self.frames.append(frames.astype(np.float16))
        self.vectors.append(vector)
        return len(self.segments) - 1

    def pending(self, dropped_now: int) -> PendingVideo:
        """The chunk as a video for the writer."""
        segs = self.segments
        n_frames = np.array([s.n_frames for s in segs], dtype=np.int32)
        dropped = dropped_now - self.dropped_before
        fmt = segs[-1].format
        rows = pd.DataFrame(
            {
                "video_id": self.video_id,
                "video": self.video,
                "segment": np.arange(len(segs), dtype=np.int32),
                "start": [s.start - self.stream_start for s in segs],
                "end": [s.end - self.stream_start for s in segs],
                "start_frame": np.array([s.start_frame - self.first_frame for s in segs], dtype=np.int64),
                "end_frame": np.array([s.end_frame - self.first_frame for s in segs], dtype=np.int64),
                "frame_row": (np.cumsum(n_frames) - n_frames).astype(np.int64),
                "n_frames": n_frames,
                "label": pd.array([None] * len(segs), dtype="Int8"),
                "class": pd.array([None] * len(segs), dtype="string"),
            }
        )
        video = {
            "video_id": self.video_id,
            "video": self.video,
            "path": self.source.display_url,
            "label": None,
            "class": None,
            "duration": segs[-1].end - self.stream_start,
            "n_frames": segs[-1].end_frame - self.first_frame,
            "width": fmt.width if fmt else 0,
            "height": fmt.height if fmt else 0,
            "codec": fmt.codec if fmt else "",
            "n_segments": len(segs),
            "warning": f"{dropped} segments dropped: the encoder was behind" if dropped else "",
            "camera": self.source.name,
            "wall_start": self.wall_start,
            "stream_start": self.stream_start,
        }
        return PendingVideo(
            video, rows, np.stack(self.vectors).astype(np.float32), np.concatenate(self.frames)
        )


class _Committer(threading.Thread):
    """The index writer's thread: commits what the engine hands it, merging what queued up meanwhile."""

    def __init__(self, writer: IndexWriter, status: Callable[[str], None]) -> None:
        super().__init__(name="watch:commit", daemon=True)
        self.writer = writer
        self.status = status
        self.commits = 0
        self.error: BaseException | None = None
        self._queue: queue.Queue[list[PendingVideo] | None] = queue.Queue()

    def submit(self, items: list[PendingVideo]) -> None:
        """Commit these videos (soon, in this thread)."""
        self._queue.put(items)

    def close(self) -> None:
        """Commit what is queued and end the thread."""
        self._queue.put(None)
        self.join()

    def run(self) -> None:
        done = False
        while not done:
            batch = self._queue.get()
            if batch is None:
                return
            with contextlib.suppress(queue.Empty):
                while True:
                    more = self._queue.get_nowait()
                    if more is None:
                        done = True
                        break
                    batch = batch + more
            try:
                for item in batch:
                    self.writer.add(item)
                self.writer.commit()
                self.commits += 1
            except StoreError as exc:
                # The videos stay queued in the writer; the next commit retries them.
                self.status(f"commit failed: {exc}; retrying at the next commit")
            except BaseException as exc:  # noqa: BLE001 - handed to the engine, which stops
                self.error = exc
                return


def plan_watch(index: str | os.PathLike[str], options: BuildOptions) -> BuildPlan:
    """The model and sampling of a watch: the index's when it exists, else ``options``' or the defaults."""
    path = Path(index).expanduser()
    resolved, settings = resolve_options(path, options)
    return BuildPlan(path, resolved, settings, (), ())


def watch(
    sources: Sequence[StreamSource | str],
    index: str | os.PathLike[str],
    prompts: str | list[str] | tuple[str, ...] | ClassPromptSet,
    *,
    normal_prompts: str | list[str] | tuple[str, ...] | None = None,
    detect: DetectOptions | None = None,
    build: BuildOptions | None = None,
    options: WatchOptions | None = None,
    alerts: str | os.PathLike[str] | None = None,
    webhook: str | None = None,
    encoder: Encoder | None = None,
    on_alert: Callable[[dict[str, Any]], None] | None = None,
    on_status: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
    gate: Callable[[str], FrameGate] | None = None,
) -> WatchSummary:
    """Follow streams until stopped: index every segment, detect, alert. Commits before returning.

    Args:
        sources: :class:`~vadindex.live.sources.StreamSource` objects or URLs (see
            :func:`~vadindex.live.sources.parse_source`).
        index: the index folder; created with ``build``'s model and sampling if it does not exist.
        prompts, normal_prompts: as for :func:`vadindex.detect.pipeline.detect`.
        detect: the rule (:class:`~vadindex.detect.options.DetectOptions`); see
            :func:`vadindex.live.scorer.check_live_options` for what a live rule cannot use.
        build: model, device, precision, batch size and sampling for a new index.
        options: :class:`~vadindex.live.options.WatchOptions`.
        alerts: the alert log (default ``INDEX/alerts.jsonl``).
        webhook: an http(s) URL that every alert record is POSTed to.
        encoder: an already-loaded encoder (the index's model).
        on_alert: called with every alert record (``type`` ``alert`` or ``end``), in order.
        on_status: called with one-line status messages (connections, losses, drops, commits).
        stop: set it to stop the watch from another thread. In the main thread, Ctrl-C and SIGTERM
            stop it too (a second Ctrl-C aborts without the final commit).
        gate: makes the :class:`FrameGate` of a stream (called with its name); none by default.

    Returns:
        A :class:`WatchSummary`.
    """
    t_start = time.monotonic()
    wopts = options or WatchOptions()
    srcs = [
        s if isinstance(s, StreamSource) else parse_source(s, rtsp_transport=wopts.rtsp_transport)
        for s in sources
    ]
    if not srcs:
        raise InputError("no sources: give stream URLs or --cameras cameras.yaml")
    names = [s.name for s in srcs]
    if len(set(names)) != len(names):
        raise InputError(f"two sources share a name: {sorted({n for n in names if names.count(n) > 1})[0]}")
    dopts = detect or DetectOptions()
    check_live_options(dopts)
    spec = load_prompt_set(prompts, normal_prompts)
    dopts.check_classes(len(spec.classes))
    check_supported(srcs)
    plan = plan_watch(index, build or BuildOptions())
    say = on_status or (lambda line: log.info("%s", line))
    hook = Webhook(webhook, wopts.webhook_timeout, wopts.webhook_retries, say) if webhook else None
    with open_build(plan, encoder, threads=wopts.threads) as (enc, writer):
        scorer = LiveScorer.for_index(plan.index, spec, enc, dopts, wopts.min_history)
        alert_log = AlertLog(alerts_file(plan.index, alerts), on_alert, hook)
        engine = _Engine(
            srcs, plan, enc, writer, scorer, AlertTracker(alert_log, wopts.cooldown), wopts, say, gate
        )
        return engine.run(stop or threading.Event(), t_start, hook)


class _Engine:
    """The watch's main loop: queues -> encoder -> scorer -> alerts and chunks -> committer."""

    def __init__(
        self,
        sources: list[StreamSource],
        plan: BuildPlan,
        encoder: Encoder,
        writer: IndexWriter,
        scorer: LiveScorer,
        tracker: AlertTracker,
        options: WatchOptions,
        status: Callable[[str], None],
        gate: Callable[[str], FrameGate] | None,
    ) -> None:
        self.sources = {s.name: s for s in sources}
        self.plan = plan
        self.encoder = encoder
        self.writer = writer
        self.scorer = scorer
        self.tracker = tracker
        self.options = options
        self.status = status
        settings = plan.settings
        self.queues = SegmentQueues(
            [s.name for s in sources],
            int(np.ceil(options.max_lag / settings.segment_seconds)),
            max_age=options.max_lag,
            keep=tuple(s.name for s in sources if s.follow),
        )
        self.readers = [
            StreamReader(s, settings, encoder.image_size, self.queues, options, status) for s in sources
        ]
        self.committer = _Committer(writer, status)
        self.gates = {s.name: gate(s.name) for s in sources} if gate else {}
        self._last_vector: dict[str, np.ndarray] = {}
        self._chunks: dict[str, _Chunk] = {}
        self._closed: list[_Chunk] = []
        self._indexed: dict[str, int] = dict.fromkeys(self.sources, 0)
        self._drops_noted: dict[str, int] = dict.fromkeys(self.sources, 0)
        #: Seconds from each segment's end to its decision (the most recent ones, per camera).
        self._delays: dict[str, deque[float]] = {name: deque(maxlen=DELAY_SAMPLES) for name in self.sources}
        self.frames_encoded = 0
        self.encode_seconds = 0.0
        self._fps_estimate: float | None = None
        self.latencies: list[float] = []
        manifest = writer.manifest
        self._segments_before = manifest.n_segments if manifest else 0

    # -- the loop -------------------------------------------------------------------------------

    def run(self, stop: threading.Event, t_start: float, webhook: Webhook | None) -> WatchSummary:
        reason: list[str] = []
        restore = _stop_on_signals(stop, reason)
        o = self.options
        try:
            self.committer.start()
            for reader in self.readers:
                reader.start()
            self.status(
                f"watching {len(self.readers)} streams into {self.plan.index} "
                f"[{self.encoder.identity.describe()}, {self.plan.settings.fps:g} fps, "
                f"{self.plan.settings.segment_seconds:g} s segments]"
            )
            if self.scorer.calibrated and not self.scorer.ready:
                self.status(
                    f"--calibrate {self.scorer.options.calibrate}: the index holds "
                    f"{self.scorer.history.n if self.scorer.history else 0} segments; alerts start once it "
                    f"holds {self.scorer.min_history}"
                )
            last_commit = last_status = time.monotonic()
            reported_drops = dict.fromkeys(self.sources, 0)
            while not stop.is_set():
                if o.duration is not None and time.monotonic() - t_start >= o.duration:
                    reason.append("duration")
                    break
                if not any(r.is_alive() for r in self.readers) and not self.queues.pending():
                    reason.append("sources failed")
                    break
                if self.committer.error is not None:
                    raise self.committer.error
                segments = self.queues.take(self._batch_frames(), timeout=0.2)
                if segments:
                    self._process(segments)
                now = time.monotonic()
                if now - last_commit >= o.commit_seconds:
                    self._commit()
                    last_commit = now
                self.tracker.tick(time.time())
                self._report_drops(reported_drops)
                if now - last_status >= STATUS_SECONDS:
                    self.status(self._status_line())
                    last_status = now
        except KeyboardInterrupt:
            reason.append("interrupted")  # outside the main thread's handler: still commit
        except BaseException:
            restore()
            self._abort()
            raise
        restore()  # from here a second Ctrl-C interrupts the shutdown; committed work is kept
        stopped = reason[0] if reason else "stopped"
        self._shutdown(webhook)
        return self._summary(stopped, time.monotonic() - t_start, webhook)

    def _stop_readers(self) -> None:
        for reader in self.readers:
            reader.stop()
        self.queues.wake()
        deadline = time.monotonic() + STOP_WAIT
        for reader in self.readers:
            reader.join(max(deadline - time.monotonic(), 0.0))

    def _abort(self) -> None:
        """After an error: stop the readers and keep what can still be committed."""
        self._stop_readers()
        with contextlib.suppress(Exception):
            self._commit()
            self.committer.close()
            self.writer.commit(final=True)

    def _shutdown(self, webhook: Webhook | None) -> None:
        """Stop the readers, score what they finished, commit everything, end open events."""
        self._stop_readers()
        while True:
            segments = self.queues.take(self.plan.options.batch_size, timeout=0.0)
            if not segments:
                break
            self._process(segments)
        for decision in self.scorer.flush():
            self._decided(decision)
        self._commit()
        self.committer.close()
        self.writer.commit(final=True)
        self.tracker.close_all()
        if webhook is not None:
            webhook.close(STOP_WAIT)

    # -- one batch ------------------------------------------------------------------------------

    def _batch_frames(self) -> int:
        """Frames to take for the next batch: a round (a segment per stream) at least, and, when
        segments are waiting, as many as the encoder does in about :data:`BATCH_SECONDS`.

        Bigger batches encode faster per frame (twice as fast at 32 frames as at 4 for ViT-B-32 on
        a CPU), which is what lets a busy encoder catch up; but every segment of a batch waits for
        all of it, so its encoding time bounds the latency the drop policy promises.
        """
        cap = self.plan.options.batch_size
        one_round = min(cap, self.plan.settings.frames_per_segment * len(self.readers))
        if self._fps_estimate is None:
            return one_round
        return max(one_round, min(cap, int(BATCH_SECONDS * self._fps_estimate)))

    def _process(self, segments: list[LiveSegment]) -> None:
        t0 = time.perf_counter()
        frame_vectors = self._encode(segments)
        took = time.perf_counter() - t0
        self.encode_seconds += took
        fps = sum(len(v) for v in frame_vectors) / max(took, 1e-6)
        self._fps_estimate = fps if self._fps_estimate is None else 0.7 * self._fps_estimate + 0.3 * fps
        seg_vectors = np.stack([v.mean(axis=0) for v in frame_vectors])
        seg_vectors /= np.maximum(np.linalg.norm(seg_vectors, axis=1, keepdims=True), 1e-12)
        scores = self.scorer.score(
            seg_vectors, np.concatenate(frame_vectors), np.array([len(v) for v in frame_vectors])
        )
        for seg, frames, vector, scored in zip(segments, frame_vectors, seg_vectors, scores, strict=True):
            chunk = self._chunk_for(seg)
            position = chunk.add(seg, frames, vector)
            self._indexed[seg.camera] += 1
            self._delays[seg.camera].append(time.time() - seg.wall_end)
            item = (seg, chunk.video_id, chunk.video, position)
            for decision in self.scorer.decide(seg.camera, seg.timeline, item, scored):
                self._decided(decision)

    def _decided(self, decision: Any) -> None:
        seg, video_id, video, position = decision.item
        before = self.tracker.raised
        self.tracker.add(
            FlaggedSegment(
                seg, video_id, video, position, decision.score, decision.anomalous, decision.best_class,
                self.sources[seg.camera].display_url,
            )
        )  # fmt: skip
        if self.tracker.raised > before:
            self.latencies.append(time.time() - seg.wall_end)

    def _encode(self, segments: list[LiveSegment]) -> list[np.ndarray]:
        """Frame embeddings of every segment, encoded as one batch across streams (a stream's
        gate, if any, spares frames that did not change: they reuse its last encoded embedding)."""
        masks = []
        for seg in segments:
            gate = self.gates.get(seg.camera)
            mask = np.ones(seg.n_frames, bool) if gate is None else np.asarray(gate.select(seg.pixels), bool)
            if not mask.any() and seg.camera not in self._last_vector:
                mask[0] = True  # nothing to reuse yet
            masks.append(mask)
        pixels = np.concatenate([seg.pixels[m] for seg, m in zip(segments, masks, strict=True)])
        encoded = np.asarray(self.encoder.encode_images(pixels), dtype=np.float32) if len(pixels) else None
        self.frames_encoded += len(pixels)
        out, at = [], 0
        for seg, mask in zip(segments, masks, strict=True):
            vectors = np.empty((seg.n_frames, self.encoder.dim), np.float32)
            for i, fresh in enumerate(mask):
                if fresh:
                    assert encoded is not None
                    self._last_vector[seg.camera] = encoded[at]
                    at += 1
                vectors[i] = self._last_vector[seg.camera]
            out.append(vectors)
        return out

    # -- chunks and commits ---------------------------------------------------------------------

    def _chunk_for(self, seg: LiveSegment) -> _Chunk:
        chunk = self._chunks.get(seg.camera)
        if chunk is not None and chunk.timeline != seg.timeline:
            self._closed.append(chunk)  # a reconnect or a timestamp jump: a new recording chunk
            chunk = None
        if chunk is None:
            # Drops since the camera's previous chunk was handed over are this chunk's to report.
            chunk = _Chunk(self.sources[seg.camera], seg, self._drops_noted[seg.camera])
            self._chunks[seg.camera] = chunk
        return chunk

    def _commit(self) -> None:
        chunks = self._closed + [c for c in self._chunks.values() if c.segments]
        self._closed, self._chunks = [], {}
        if chunks:
            self.committer.submit([c.pending(self.queues.dropped[c.source.name]) for c in chunks])
            for c in chunks:
                self._drops_noted[c.source.name] = self.queues.dropped[c.source.name]

    # -- reporting ------------------------------------------------------------------------------

    def _report_drops(self, reported: dict[str, int]) -> None:
        for name, dropped in self.queues.dropped.items():
            if dropped > reported[name] and (reported[name] == 0 or dropped - reported[name] >= 60):
                self.status(
                    f"{name}: the encoder is behind; dropped the {dropped} oldest waiting segments so far "
                    f"({self.queues.dropped_frames[name]} frames) to stay within {self.options.max_lag:g} s"
                )
                reported[name] = dropped

    def _status_line(self) -> str:
        live = sum(r.stats.state == "live" for r in self.readers)
        m = self.writer.manifest
        dropped = sum(self.queues.dropped.values())
        return (
            f"{live}/{len(self.readers)} streams live; {sum(self._indexed.values())} segments indexed "
            f"(index: {m.n_segments if m else 0} segments, generation {m.generation if m else 0}); "
            f"{self.tracker.raised} alerts; {dropped} segments dropped"
        )

    def _summary(self, stopped: str, seconds: float, webhook: Webhook | None) -> WatchSummary:
        m = self.writer.manifest
        assert m is not None
        streams = {}
        for reader in self.readers:
            name = reader.source.name
            streams[name] = {
                "source": reader.source.display_url,
                **reader.stats.to_dict(),
                "segments_indexed": self._indexed[name],
                "dropped_segments": self.queues.dropped[name],
                "dropped_frames": self.queues.dropped_frames[name],
                **_delay_stats(self._delays[name]),
            }
        return WatchSummary(
            index=str(self.plan.index),
            stopped=stopped,
            seconds=seconds,
            segments_indexed=m.n_segments - self._segments_before,
            frames_encoded=self.frames_encoded,
            alerts=self.tracker.raised,
            generation=m.generation,
            total_segments=m.n_segments,
            model=self.encoder.identity.describe(),
            precision=encoder_precision(self.encoder),
            encode_seconds=self.encode_seconds,
            alert_latencies=tuple(self.latencies),
            streams=streams,
            webhook=(
                None
                if webhook is None
                else {"sent": webhook.sent, "failed": webhook.failed, "dropped": webhook.dropped}
            ),
        )


def _delay_stats(delays: deque[float]) -> dict[str, float | None]:
    """Percentiles of the seconds from a segment's end (wall clock) to its decision."""
    if not delays:
        return {"delay_p50_s": None, "delay_p95_s": None, "delay_max_s": None}
    x = np.fromiter(delays, float)
    return {
        "delay_p50_s": round(float(np.percentile(x, 50)), 3),
        "delay_p95_s": round(float(np.percentile(x, 95)), 3),
        "delay_max_s": round(float(x.max()), 3),
    }


def _stop_on_signals(stop: threading.Event, reason: list[str]) -> Callable[[], None]:
    """In the main thread, make Ctrl-C and SIGTERM set ``stop`` (a second Ctrl-C raises
    KeyboardInterrupt); returns the function that restores the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        reason.append("interrupted" if signum == signal.SIGINT else "terminated")
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
