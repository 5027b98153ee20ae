"""Ingestion: sources -> decode + sample -> segments -> image encoder -> index writer.

``sources`` finds the videos, ``decode`` samples frames on their own timestamps, ``gate`` lets only
frames that changed reach the encoder (``--gate auto``), ``segment`` cuts the timeline, ``video``
runs one video through them and the encoder, ``options`` declares every build option, and ``build``
plans a build and drives an engine (``run_local``) whose results one ledger commits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vadindex._lazy import exports

if TYPE_CHECKING:
    from vadindex.ingest.build import BuildSummary, build_index
    from vadindex.ingest.options import BuildOptions
    from vadindex.ingest.video import ingest_video

__all__ = ["BuildOptions", "BuildSummary", "build_index", "ingest_video"]
__getattr__ = exports(
    __name__,
    {"BuildOptions": "options", "BuildSummary": "build", "build_index": "build", "ingest_video": "video"},
)
