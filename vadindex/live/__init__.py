"""Live streams: sources -> one reader thread each (decode, sample, segment) -> the encoder ->
the index writer, with detection and alerts as segments arrive (``vadindex watch``).

``sources`` parses stream URLs and ``cameras.yaml``, ``reader`` runs a stream's decoding thread
(timeouts, reconnects, the drop policy), ``segmenter`` cuts its samples into segments, ``scorer``
applies the detect rule to new segments, ``alerts`` turns flagged segments into events and alerts,
``options`` declares the watch's options, and ``watch`` is the engine that ties them together
(``vadindex.live.watch.watch``; not re-exported here, where the name is the module's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vadindex._lazy import exports

if TYPE_CHECKING:
    from vadindex.live.alerts import read_alerts
    from vadindex.live.options import WatchOptions
    from vadindex.live.sources import StreamSource, load_cameras, parse_source
    from vadindex.live.watch import WatchSummary, watch

__all__ = [
    "StreamSource",
    "WatchOptions",
    "WatchSummary",
    "load_cameras",
    "parse_source",
    "read_alerts",
    "watch",
]
__getattr__ = exports(
    __name__,
    {
        "read_alerts": "alerts",
        "WatchOptions": "options",
        "StreamSource": "sources",
        "load_cameras": "sources",
        "parse_source": "sources",
        "WatchSummary": "watch",
    },
)
