"""What a detection found: segment and video decisions, metrics, and their CSV and JSON forms."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd

from vadindex.config import SEGMENT_LISTINGS
from vadindex.detect.prompts import ClassPromptSet, PromptSet
from vadindex.errors import InputError
from vadindex.files import write_text_atomic


@dataclass(frozen=True)
class DetectResult:
    """Segment and video decisions, and metrics when the index has labels.

    ``segments`` is built on first use from numpy columns (``segment_columns``): at a million
    segments the table costs more than all of the scoring, and a caller that wants only the videos
    or the metrics never pays for it.
    """

    #: Per-segment numpy columns: those of :data:`SEGMENT_OUTPUT_COLUMNS`, with ``video_row`` (row in
    #: ``video_names``/``video_ids``) for ``video``/``video_id`` and class numbers for the class columns.
    segment_columns: dict[str, np.ndarray]
    videos: pd.DataFrame
    metrics: dict[str, Any] | None
    prompts: PromptSet | ClassPromptSet
    settings: dict[str, Any] = field(default_factory=dict)
    #: ``(n_segments, n_classes)`` similarity of every segment to every class (column order: class_names).
    class_sims: np.ndarray | None = None
    class_names: tuple[str, ...] = ()
    #: Name and id of every video of the index, in its video-table order.
    video_names: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    video_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    #: The annotations matched to the index (a :class:`vadindex.evaluate.annotations.GroundTruth`),
    #: when the detection was given some; reports draw frame-level curves and spans from it.
    ground_truth: Any = None

    @cached_property
    def segments(self) -> pd.DataFrame:
        """One row per segment, in index order (see :data:`SEGMENT_OUTPUT_COLUMNS`)."""
        return self.segment_table()

    def segment_table(self, rows: np.ndarray | None = None) -> pd.DataFrame:
        """The rows of :attr:`segments` selected by a boolean mask or row numbers (all if ``None``),
        built from those rows alone."""
        cols = {k: (v if rows is None else v[rows]) for k, v in self.segment_columns.items()}
        row = cols.pop("video_row")
        cols["video"] = self.video_names[row]
        cols["video_id"] = self.video_ids[row]
        names = np.array(self.class_names, dtype=object)
        for name in ("best_prompt", "best_class"):
            cols[name] = names[cols[name]]
        label = cols["label"]
        cols["label"] = pd.arrays.IntegerArray(label.astype(np.int8), label < 0)
        extra = [c for c in OPTIONAL_SEGMENT_COLUMNS if c in cols]
        return pd.DataFrame({c: cols[c] for c in (*SEGMENT_OUTPUT_COLUMNS, *extra)})

    @property
    def n_segments(self) -> int:
        """Number of segments scored."""
        return len(self.segment_columns["score"])

    @property
    def n_anomalous_segments(self) -> int:
        """Number of segments decided anomalous."""
        return int(np.count_nonzero(self.segment_columns["anomalous"]))

    def prompts_dict(self) -> dict[str, Any]:
        """The prompts as JSON-ready data."""
        prompts: dict[str, Any] = {"anomaly": list(self.prompts.anomaly), "normal": list(self.prompts.normal)}
        if isinstance(self.prompts, ClassPromptSet) and self.prompts.source != "inline":
            prompts = {"set": self.prompts.source, **self.prompts.to_dict()}
        return prompts

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``videos``, ``segments``, ``metrics`` (when labelled), ``settings``."""
        out: dict[str, Any] = {
            "settings": self.settings,
            "prompts": self.prompts_dict(),
            "videos": _records(self.videos),
            "segments": _records(self.segments),
        }
        if self.metrics is not None:
            out["metrics"] = self.metrics
        return out

    def write_json(self, stream: TextIO, segments: str = "all") -> None:
        """Write :meth:`to_dict`'s object as indented JSON, streaming the row tables.

        Row tables are rendered by pandas' C JSON writer (see :func:`_write_records`) and never
        parsed back into Python objects, so a million segments take seconds, not minutes.

        Args:
            stream: where to write.
            segments: ``all``, ``anomalous`` (only segments decided anomalous) or ``none``.
        """
        if segments not in SEGMENT_LISTINGS:
            raise InputError(f"segments must be one of {', '.join(SEGMENT_LISTINGS)}, got {segments!r}")
        stream.write("{\n")
        stream.write(f'  "settings": {_indented(self.settings)},\n')
        stream.write(f'  "prompts": {_indented(self.prompts_dict())},\n')
        stream.write('  "videos": ')
        _write_records(stream, self.videos)
        if segments != "none":
            stream.write(',\n  "segments": ')
            mask = self.segment_columns["anomalous"]
            if segments == "all":
                table = self.segments
            elif "segments" in self.__dict__:  # already built: filter it
                table = self.segments[mask]
            else:
                table = self.segment_table(mask)
            _write_records(stream, table)
        if self.metrics is not None:
            stream.write(f',\n  "metrics": {_indented(self.metrics)}')
        stream.write("\n}\n")


#: Columns of :attr:`DetectResult.segments`, in order.
SEGMENT_OUTPUT_COLUMNS = (
    "video", "segment", "start", "end", "score", "anomalous", "best_prompt", "best_class",
    "best_anomaly_sim", "best_normal_sim", "label", "video_id",
)  # fmt: skip
#: Columns added when a detection has them: ``novelty`` (raw, with ``--novelty``) and ``reviewed``
#: (a reviewer's ``normal``/``anomaly``, empty elsewhere, with ``--use-labels``).
OPTIONAL_SEGMENT_COLUMNS = ("novelty", "reviewed")


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    # pandas' own JSON writer turns NA into null and numpy scalars into plain numbers.
    return json.loads(frame.to_json(orient="records", double_precision=6))


def _indented(value: Any) -> str:
    """``json.dumps(value, indent=2)`` nested one level (for a value inside the top-level object)."""
    return json.dumps(value, indent=2).replace("\n", "\n  ")


def _write_records(stream: TextIO, frame: pd.DataFrame, chunk: int = 100_000, per_line: int = 10_000) -> None:
    """Write ``frame`` as a JSON array of row objects, rendered by pandas in chunks of rows.

    Up to ``per_line`` rows, each row object goes on a line of its own; longer tables are written
    compactly (pandas' line splitting alone would cost a second per million rows).
    """
    if len(frame) == 0:
        stream.write("[]")
        return
    if len(frame) <= per_line:
        lines = frame.to_json(orient="records", lines=True, double_precision=6)
        stream.write("[\n    " + lines.rstrip("\n").replace("\n", ",\n    ") + "\n  ]")
        return
    stream.write("[")
    for first in range(0, len(frame), chunk):
        text = frame.iloc[first : first + chunk].to_json(orient="records", double_precision=6)
        stream.write(("," if first else "") + text[1:-1])
    stream.write("]")


def write_outputs(result: DetectResult, out: str | os.PathLike[str]) -> list[Path]:
    """Write ``segments.csv``, ``videos.csv`` and ``detect.json`` (settings, prompts, metrics) into ``out``."""
    folder = Path(out).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in (("segments.csv", result.segments), ("videos.csv", result.videos)):
        write_text_atomic(folder / name, frame.to_csv(index=False))
        written.append(folder / name)
    summary = {k: v for k, v in result.to_dict().items() if k not in ("videos", "segments")}
    write_text_atomic(folder / "detect.json", json.dumps(summary, indent=2))
    written.append(folder / "detect.json")
    return written
