"""Events and alerts: consecutive flagged segments of a stream, one alert each, logged, posted, queryable.

An event opens with a stream's first flagged segment and raises its alert at once (the latency that
matters); it grows while its segments stay flagged and ends at the first segment that is not, or,
with ``--cooldown S``, once the stream has gone ``S`` seconds without a flagged segment: an event
that starts within the cooldown of the previous one's end raises no new alert but extends it.

``alerts.jsonl`` (in the index folder unless ``--alerts`` says otherwise) gets two records per
alert, one JSON object per line: ``{"type": "alert", ...}`` when it is raised and
``{"type": "end", ...}`` with the final end, peak and segments when its event is over. Every record
also goes to stdout and, with ``--webhook``, is POSTed from a thread with a bounded queue (a slow or
dead receiver never holds up ingestion; what it misses is still in the log). The thumbnail is the
peak segment's middle frame, ``alerts/<alert_id>.jpg`` beside the log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vadindex import __version__
from vadindex.errors import InputError, StoreError
from vadindex.files import atomic_path
from vadindex.index.manifest import ALERTS, ALERTS_DIR
from vadindex.live.segmenter import LiveSegment

log = logging.getLogger("vadindex")

#: Records the webhook thread may hold; beyond that the oldest waiting one is dropped (counted).
WEBHOOK_QUEUE = 256
#: Columns of :func:`read_alerts`, one row per alert.
ALERT_COLUMNS = [
    "alert_id", "camera", "best_class", "peak_score", "start", "end", "n_segments", "ongoing",
    "latency_s", "thumbnail", "source",
]  # fmt: skip


def alerts_file(index: str | os.PathLike[str], alerts: str | os.PathLike[str] | None = None) -> Path:
    """Where a watch of ``index`` logs its alerts: ``alerts``, else ``INDEX/alerts.jsonl``."""
    return Path(alerts).expanduser() if alerts else Path(index).expanduser() / ALERTS


def iso_time(ts: float) -> str:
    """Local time with milliseconds and the UTC offset, e.g. ``2026-05-01T12:00:03.250+02:00``."""
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class FlaggedSegment:
    """A decided segment as alerts see it: where it is stored and what was decided."""

    segment: LiveSegment
    #: ``video_id`` and position (``segment``) of its row in the index.
    video_id: str
    video: str
    position: int
    score: float
    anomalous: bool
    best_class: str
    source: str = ""

    @property
    def segment_id(self) -> str:
        """``<video_id>:<segment>``: its row in the index."""
        return f"{self.video_id}:{self.position}"


def save_thumbnail(path: Path, image: np.ndarray) -> None:
    """Write an RGB image as JPEG, atomically."""
    from PIL import Image  # here: only alerts need Pillow

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(image)).save(tmp, format="JPEG", quality=85)


class Webhook:
    """POSTs records as JSON from its own thread: a timeout per attempt, retries with back-off, and
    a bounded queue that drops the oldest waiting record when the receiver cannot keep up."""

    def __init__(self, url: str, timeout: float, retries: int, status: Callable[[str], None]) -> None:
        if not url.lower().startswith(("http://", "https://")):
            raise InputError(f"--webhook {url!r}: must be an http:// or https:// URL")
        self.url = url
        self.timeout = timeout
        self.retries = retries
        self.status = status
        self.sent = self.failed = self.dropped = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(WEBHOOK_QUEUE)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watch:webhook", daemon=True)
        self._thread.start()

    def send(self, record: dict[str, Any]) -> None:
        """Queue a record; never blocks."""
        while True:
            try:
                self._queue.put_nowait(record)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()
                    self.dropped += 1

    def close(self, wait: float) -> None:
        """Let the thread deliver what is queued for up to ``wait`` seconds, then leave it (a daemon)."""
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(wait)
        self._stop.set()

    def _run(self) -> None:
        while True:
            record = self._queue.get()
            if record is None:
                return
            self._post(record)

    def _post(self, record: dict[str, Any]) -> None:
        body = json.dumps(record).encode("utf-8")
        reason = ""
        for attempt in range(self.retries + 1):
            if attempt and self._stop.wait(min(0.5 * 2 ** (attempt - 1), 8.0)):
                break
            request = urllib.request.Request(
                self.url, data=body, method="POST",
                headers={"Content-Type": "application/json", "User-Agent": f"vadindex/{__version__}"},
            )  # fmt: skip
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - http(s) only
                    response.read(1024)
                self.sent += 1
                return
            except urllib.error.HTTPError as exc:
                reason = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = str(getattr(exc, "reason", None) or exc)
        self.failed += 1
        self.status(
            f"webhook: {record.get('type')} {record.get('alert_id')} not delivered after "
            f"{self.retries + 1} attempts ({reason}); it is in the alert log"
        )


class AlertLog:
    """Where alert records go: ``alerts.jsonl`` (appended, synced), a callback (stdout), a webhook."""

    def __init__(
        self,
        path: Path,
        on_record: Callable[[dict[str, Any]], None] | None = None,
        webhook: Webhook | None = None,
    ) -> None:
        self.path = path
        self.thumbnails = path.parent / ALERTS_DIR
        self.on_record = on_record
        self.webhook = webhook
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (one line), then hand it to stdout and the webhook."""
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        if self.on_record is not None:
            self.on_record(record)
        if self.webhook is not None:
            self.webhook.send(record)


@dataclass
class _Event:
    alert_id: str
    camera: str
    source: str
    first: FlaggedSegment
    last: FlaggedSegment
    peak: FlaggedSegment
    raised: float
    latency: float
    segments: list[str] = field(default_factory=list)
    videos: list[str] = field(default_factory=list)
    classes: Counter[str] = field(default_factory=Counter)
    thumbnail_written: str = ""


class AlertTracker:
    """Turns decided segments into events and alerts, per camera (called from one thread)."""

    def __init__(self, log_: AlertLog, cooldown: float) -> None:
        self.log = log_
        self.cooldown = cooldown
        self.raised = 0
        self._open: dict[str, _Event] = {}
        self._ids: Counter[str] = Counter()

    def add(self, item: FlaggedSegment) -> None:
        """Take the next decided segment of its camera (in stream order)."""
        seg = item.segment
        event = self._open.get(seg.camera)
        if event is not None:
            quiet = seg.wall_start - event.last.segment.wall_end  # since the last flagged segment
            if item.anomalous:
                over = self.cooldown > 0 and quiet > self.cooldown  # a new event after a long gap
            else:
                over = self.cooldown <= 0 or quiet >= self.cooldown - 1e-9
            if over:
                self._close(event)
                event = None
        if not item.anomalous:
            return
        if event is None:
            self._raise(item)
        else:
            self._extend(event, item)

    def tick(self, now: float) -> None:
        """Close events whose camera has sent nothing flagged for the cooldown (a stream that
        stopped sends no unflagged segment to close them)."""
        for event in list(self._open.values()):
            if now - event.last.segment.wall_end > max(self.cooldown, 1.0) + 2.0:
                self._close(event)

    def close_all(self) -> None:
        """End every open event (the watch stops)."""
        for event in list(self._open.values()):
            self._close(event)

    def _raise(self, item: FlaggedSegment) -> None:
        seg = item.segment
        stamp = datetime.fromtimestamp(seg.wall_start).strftime("%Y%m%dT%H%M%S")
        base = f"{seg.camera}-{stamp}"
        self._ids[base] += 1
        alert_id = base if self._ids[base] == 1 else f"{base}-{self._ids[base]}"
        now = time.time()
        event = _Event(alert_id, seg.camera, item.source, item, item, item, now, now - seg.wall_end)
        self._extend(event, item)
        self._open[seg.camera] = event
        self._write_thumbnail(event)
        self.raised += 1
        self.log.write(self._record(event, "alert"))

    def _extend(self, event: _Event, item: FlaggedSegment) -> None:
        event.last = item
        if item.score > event.peak.score:
            event.peak = item
        event.segments.append(item.segment_id)
        if item.video not in event.videos:
            event.videos.append(item.video)
        event.classes[item.best_class] += 1

    def _close(self, event: _Event) -> None:
        self._open.pop(event.camera, None)
        self._write_thumbnail(event)
        self.log.write(self._record(event, "end"))

    def _write_thumbnail(self, event: _Event) -> None:
        peak = event.peak.segment_id
        if event.thumbnail_written == peak:
            return
        path = self.log.thumbnails / f"{event.alert_id}.jpg"
        try:
            save_thumbnail(path, event.peak.segment.thumbnail())
            event.thumbnail_written = peak
        except OSError as exc:
            log.warning("cannot write thumbnail %s (%s)", path, exc)

    def _record(self, event: _Event, kind: str) -> dict[str, Any]:
        first, last, peak = event.first.segment, event.last.segment, event.peak
        return {
            "type": kind,
            "alert_id": event.alert_id,
            "camera": event.camera,
            "source": event.source,
            "best_class": peak.best_class,
            "peak_score": round(peak.score, 6),
            "start": iso_time(first.wall_start),
            "end": iso_time(last.wall_end),
            "start_ts": round(first.wall_start, 3),
            "end_ts": round(last.wall_end, 3),
            "stream_start": round(first.start, 3),
            "stream_end": round(last.end, 3),
            "segments": list(event.segments),
            "videos": list(event.videos),
            "n_segments": len(event.segments),
            "classes": dict(event.classes),
            "thumbnail": str((self.log.thumbnails / f"{event.alert_id}.jpg").absolute()),
            "ongoing": kind == "alert",
            "raised": iso_time(event.raised),
            "latency_s": round(event.latency, 3),
        }


def read_alert_records(path: Path) -> list[dict[str, Any]]:
    """The records of an alert log, one dict per line (lines that are not JSON objects are skipped:
    a crash can cut the last one short)."""
    if not path.is_file():
        return []
    records = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the alert log ({exc.strerror or exc})") from None
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and "alert_id" in record:
                records.append(record)
    return records


def read_alerts(
    index: str | os.PathLike[str],
    *,
    alerts: str | os.PathLike[str] | None = None,
    camera: str | None = None,
    cls: str | None = None,
    last: int | None = None,
) -> pd.DataFrame:
    """One row per alert (its ``end`` record merged into it), oldest first.

    Args:
        index: the watched index folder (its ``alerts.jsonl``).
        alerts: another alert log (``watch --alerts``).
        camera, cls: only this camera / best class.
        last: only the most recent ``last`` alerts.

    Returns:
        A table with :data:`ALERT_COLUMNS` plus ``start_ts``, ``end_ts``, ``segments``, ``videos``,
        ``classes``.

    Raises:
        StoreError: neither the index nor the log exists.
    """
    path = alerts_file(index, alerts)
    if not path.is_file() and not Path(index).expanduser().is_dir():
        raise StoreError(f"{index}: no such index (watch one with `vadindex watch SOURCE --index {index}`)")
    merged: dict[str, dict[str, Any]] = {}
    for record in read_alert_records(path):
        merged.setdefault(record["alert_id"], {}).update(record)
    rows = [r for r in merged.values() if (camera is None or r.get("camera") == camera)]
    rows = [r for r in rows if cls is None or r.get("best_class") == cls]
    rows.sort(key=lambda r: (r.get("start_ts") or 0.0, r["alert_id"]))
    if last is not None:
        rows = rows[-last:] if last > 0 else []
    extra = ["start_ts", "end_ts", "segments", "videos", "classes"]
    return pd.DataFrame(
        [{c: r.get(c) for c in ALERT_COLUMNS + extra} for r in rows], columns=ALERT_COLUMNS + extra
    )
