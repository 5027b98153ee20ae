"""The index manifest: format versions, file names, table columns and the JSON commit record."""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vadindex import __version__
from vadindex.errors import StoreError
from vadindex.models.identity import ModelIdentity

#: Newest index format this code reads. Format 2 is written only while the FAISS file covers fewer
#: rows than the index holds (``faiss_rows``), so older vadindex versions refuse such a generation
#: instead of silently missing rows; a finished build writes format 1.
FORMAT_VERSION = 2
#: Format of a generation whose FAISS file covers every segment.
FORMAT_COMPLETE = 1
MANIFEST = "manifest.json"
LOCK = ".lock"
FAILURES = "failures.csv"
METRIC = "inner_product"
PARTS = "parts"
CACHE = "cache"
#: ``vadindex watch``'s alert log and the thumbnails of its alerts, kept beside the index they describe.
ALERTS = "alerts.jsonl"
ALERTS_DIR = "alerts"
#: Reviewer labels (``vadindex label``): not part of any generation, rewritten whole on each change.
LABELS = "labels.json"
LABELS_LOCK = ".labels.lock"
#: Names an index writes in its folder and in ``parts/``, with the ``.NAME.tmp-PID`` files of atomic writes.
OWN_FILE = re.compile(
    r"^\.?(manifest\.json|failures\.csv|index\.g\d+\.faiss|videos\.g\d+\.parquet)(\.tmp-\d+)?$"
)
OWN_PART = re.compile(
    r"^\.?\d+\.(segments\.parquet|vectors\.npy|frames\.npy|thumbs\.parquet|encoded\.npy)(\.tmp-\d+)?$"
)

SEGMENT_COLUMNS = [
    "video_id", "video", "segment", "start", "end", "start_frame", "end_frame",
    "frame_row", "n_frames", "label", "class",
]  # fmt: skip
VIDEO_COLUMNS = [
    "video_id", "video", "path", "label", "class", "duration", "n_frames", "width", "height",
    "codec", "n_segments", "first_row", "warning", "added", "camera",
]  # fmt: skip
#: Video-table columns only ``vadindex watch`` writes (absent from indexes that were only built): the
#: wall-clock time (Unix seconds) and stream timestamp (seconds) at which a recording chunk starts.
#: A segment's own times are these plus its ``start``.
LIVE_VIDEO_COLUMNS = ["wall_start", "stream_start"]
#: Video columns that later versions added, and what an older index's videos hold instead (readers
#: fill them in, so an old index reads like a new one). ``camera``: none, each video is its own.
ADDED_VIDEO_COLUMNS = {"camera": None}


@dataclass(frozen=True)
class Part:
    """One commit's worth of segments and frames."""

    name: str
    segments: int
    frames: int
    #: The image encoder's arithmetic for this part's videos (``fp32``, ``int8``, ``fp16``; several
    #: comma-separated if they differ); empty in parts written before it was recorded.
    precision: str = ""
    #: Segments with a stored thumbnail (``build --thumbnails``: ``parts/<name>.thumbs.parquet``);
    #: 0 means the part has no thumbnail file (parts written without the option, or before it existed).
    thumbnails: int = 0
    #: Where its videos were encoded: ``local`` or ``ray`` (``build --engine``); parts written before
    #: it was recorded were all built locally.
    engine: str = "local"
    #: Frames the image encoder ran on; the others reuse an earlier frame's embedding (the change
    #: gate). ``parts/<name>.encoded.npy`` says which, one boolean per frame. ``None`` in parts
    #: written before it was recorded (every frame encoded, no file).
    frames_encoded: int | None = None
    #: The change gate's settings for this part's videos (``off``, or ``auto/<version> threshold T
    #: max-gap G``; several comma-separated if they differ); empty in parts written before it was recorded.
    gate: str = ""


@dataclass(frozen=True)
class IndexManifest:
    """The JSON manifest of an index: what is in it and how it was made."""

    format_version: int
    generation: int
    model: str
    pretrained: str
    checkpoint_sha256: str | None
    dim: int
    logit_scale: float
    sampling: dict[str, float]
    metric: str = METRIC
    index_type: str = "flat"
    n_videos: int = 0
    n_segments: int = 0
    n_frames: int = 0
    faiss_file: str = ""
    videos_file: str = ""
    parts: tuple[Part, ...] = ()
    created: str = ""
    updated: str = ""
    vadindex_version: str = __version__
    pretrained_path: str | None = None
    #: ``relative path -> {"bytes": size, "sha256": hex}`` of every file of this generation.
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Segment rows ``0 .. faiss_rows - 1`` are in the FAISS file; ``None``: all of them.
    faiss_rows: int | None = None

    @property
    def identity(self) -> ModelIdentity:
        """The model the index was built with."""
        return ModelIdentity(self.model, self.pretrained, self.checkpoint_sha256)

    @property
    def faiss_covered(self) -> int:
        """How many leading segment rows the FAISS file holds (the rest are searched exactly)."""
        return self.n_segments if self.faiss_rows is None else self.faiss_rows

    def to_json(self) -> str:
        """Serialise, parts as a list of objects."""
        data = asdict(self)
        data["parts"] = [asdict(p) for p in self.parts]
        return json.dumps(data, indent=2, sort_keys=False)

    @classmethod
    def from_json(cls, text: str, where: Path) -> IndexManifest:
        """Parse a manifest, refusing formats newer than this code."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StoreError(f"{where}: manifest is not valid JSON ({exc.msg})") from None
        if not isinstance(data, dict):
            raise StoreError(f"{where}: manifest is not a JSON object; not a vadindex index")
        version = data.get("format_version")
        if not isinstance(version, int):
            raise StoreError(f"{where}: manifest has no format_version; not a vadindex index")
        if version > FORMAT_VERSION:
            raise StoreError(
                f"{where}: index format {version} is newer than this vadindex supports ({FORMAT_VERSION}); "
                "upgrade vadindex (pip install -U vadindex)"
            )
        known = set(cls.__dataclass_fields__)
        part_fields = set(Part.__dataclass_fields__)
        try:
            data["parts"] = tuple(
                Part(**{k: v for k, v in p.items() if k in part_fields}) for p in data.get("parts", [])
            )
            return cls(**{k: v for k, v in data.items() if k in known})
        except (TypeError, AttributeError) as exc:
            raise StoreError(f"{where}: manifest is incomplete ({exc})") from None


def now() -> str:
    """The local time as the manifest records it."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def read_manifest(path: Path) -> IndexManifest:
    """Read ``path/manifest.json``; a clear error when the folder is not an index."""
    if not path.exists():
        raise StoreError(f"{path}: no such index (build one with `vadindex build SOURCES --index {path}`)")
    if not path.is_dir():
        raise StoreError(f"{path}: not an index folder")
    manifest = path / MANIFEST
    if not manifest.exists():
        raise StoreError(f"{path}: not a vadindex index (no {MANIFEST}); build one with `vadindex build`")
    try:
        text = manifest.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StoreError(f"{manifest}: cannot read the manifest ({reason})") from None
    return IndexManifest.from_json(text, path)
