"""The offline demo: synthetic scenes, the built-in vadindex-tiny model, search, detection, evaluation."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vadindex.api import VideoIndex
from vadindex.config import DEFAULT_DEVICE
from vadindex.demo import synth
from vadindex.detect.options import DetectOptions
from vadindex.detect.result import write_outputs
from vadindex.errors import InputError
from vadindex.models.weights import builtin_weights
from vadindex.report.report import command_line, write_report

log = logging.getLogger("vadindex")

DEMO_MODEL = "vadindex-tiny"
QUERY_K = 5
#: Detection settings of the demo beyond ``detect``'s defaults: those of a variant of
#: ``scripts/eval_demo_seeds.py`` that met its targets on the held-out seeds (none so far: the
#: defaults, text prompts only; README, "The demo").
DEMO_DETECT_OPTIONS: dict[str, Any] = {}


@dataclass(frozen=True)
class DemoResult:
    """Where the demo wrote its outputs, and what it measured."""

    out: Path
    metrics: dict[str, Any]
    queries: list[dict[str, Any]]
    videos: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with ``metrics``, ``queries``, ``timings`` and output paths."""
        return {
            "out": str(self.out),
            "index": str(self.out / "index"),
            "scenes": str(self.out / "scenes"),
            "detect": str(self.out / "detect"),
            "report": str(self.out / "detect" / "report.html"),
            "metrics": self.metrics,
            "queries": self.queries,
            "timings": {k: round(v, 2) for k, v in self.timings.items()},
        }


def segment_truth(segments: pd.DataFrame, spans: dict[str, tuple[tuple[int, int], ...]]) -> np.ndarray:
    """Ground truth per segment: some of its frames lie in an annotated span of its video.

    This is the definition ``detect --annotations`` uses for segment-level metrics.

    Args:
        segments: rows with ``video``, ``start_frame``, ``end_frame`` (end exclusive).
        spans: video name (as in the index) to ``(start, end)`` frame spans, end exclusive.

    Returns:
        A boolean array, one entry per segment.
    """
    truth = np.zeros(len(segments), dtype=bool)
    for i, (video, f0, f1) in enumerate(
        segments[["video", "start_frame", "end_frame"]].itertuples(index=False)
    ):
        truth[i] = any(min(int(f1), e) > max(int(f0), s) for s, e in spans.get(video, ()))
    return truth


def run_demo(
    out: str | os.PathLike[str] = "demo-out",
    *,
    seed: int | None = None,
    n_normal: int = 10,
    n_anomaly: int = 10,
    device: str = DEFAULT_DEVICE,
    progress: bool = False,
) -> DemoResult:
    """Generate a scene set, index it with ``vadindex-tiny``, query, detect, evaluate and report.

    Everything runs offline: the scenes are rendered here and the model ships with the package.

    Args:
        out: output folder (scenes/, index/, detect/ inside it; the report is detect/report.html).
        seed: scene-set seed; the default is a seed never used for training.
        n_normal: normal videos to generate.
        n_anomaly: anomalous videos to generate (spread over the event classes).
        device: encoder device.
        progress: show progress bars.

    Returns:
        A :class:`DemoResult`.
    """
    if builtin_weights(DEMO_MODEL) is None:
        raise InputError(f"the built-in model {DEMO_MODEL} has no weights in this installation")
    seed = synth.DEMO_SEED if seed is None else seed
    if seed >= synth.TRAIN_SEED_START:
        log.warning("seed %d may overlap the training seeds (>= %d); results are not held-out",
                    seed, synth.TRAIN_SEED_START)  # fmt: skip
    root = Path(out).expanduser()
    timings: dict[str, float] = {}
    t = time.perf_counter()
    scenes = synth.generate_scenes(
        root / "scenes", seed, n_normal, n_anomaly, workers=min(2, os.cpu_count() or 1)
    )
    timings["generate_s"] = time.perf_counter() - t

    t = time.perf_counter()
    index = VideoIndex.build(
        [], root / "index", manifest=scenes.manifest_path, model=DEMO_MODEL, pretrained="builtin",
        device=device, progress=progress,
    )  # fmt: skip
    timings["build_s"] = time.perf_counter() - t
    if index.last_build and index.last_build.failures:
        raise InputError(f"demo videos failed to index: {index.last_build.failures}")

    t = time.perf_counter()
    queries = run_queries(index, scenes)
    timings["query_s"] = time.perf_counter() - t

    t = time.perf_counter()
    result = index.detect(
        list(synth.DEMO_ANOMALY_PROMPTS),
        normal_prompts=list(synth.DEMO_NORMAL_PROMPTS),
        annotations=scenes.annotations_path,
        **DEMO_DETECT_OPTIONS,
    )
    write_outputs(result, root / "detect")
    timings["detect_s"] = time.perf_counter() - t

    t = time.perf_counter()
    command = command_line(
        "report", root / "index", list(synth.DEMO_ANOMALY_PROMPTS), list(synth.DEMO_NORMAL_PROMPTS),
        DetectOptions(), scenes.annotations_path, extra=["--out", str(root / "detect" / "report.html")],
    )  # fmt: skip
    write_report(result, root / "detect" / "report.html", snapshot=index.snapshot, command=command)
    timings["report_s"] = time.perf_counter() - t

    metrics = {
        **_summary(result.metrics or {}),
        "precision_at_5": float(np.mean([q["precision_at_5"] for q in queries])),
        "seed": seed,
        "videos": len(scenes.videos),
        "segments": result.n_segments,
    }
    return DemoResult(root, metrics, queries, result.videos, timings)


def run_queries(index: VideoIndex, scenes: synth.SceneSet) -> list[dict[str, Any]]:
    """Each demo query's top :data:`QUERY_K` segments and its precision against the ground truth
    (a hit is a segment that overlaps an event of the query's class)."""
    spans = {v.path: v.spans for v in scenes.videos}
    classes = {v.path: v.cls for v in scenes.videos}
    queries = []
    for text, cls in synth.DEMO_QUERIES.items():
        hits = index.query(text, k=QUERY_K)
        relevant = segment_truth(hits, spans) & (hits["video"].map(classes) == cls).to_numpy()
        top = [
            {
                "video": r.video,
                "start": r.start,
                "end": r.end,
                "score": round(float(r.score), 4),
                "hit": bool(h),
            }
            for r, h in zip(hits.itertuples(index=False), relevant, strict=True)
        ]
        precision = float(relevant.mean()) if len(hits) else 0.0
        queries.append({"query": text, "class": cls, "precision_at_5": precision, "top": top})
    return queries


def _summary(m: dict[str, Any]) -> dict[str, Any]:
    """The demo's headline figures from a detection's metrics."""
    seg = m.get("segment", {})
    return {
        "video_f1": m.get("f1", 0.0),
        "video_precision": m.get("precision", 0.0),
        "video_recall": m.get("recall", 0.0),
        "video_confusion_matrix": m.get("confusion_matrix"),
        "segment_f1": seg.get("f1", 0.0),
        "segment_precision": seg.get("precision", 0.0),
        "segment_recall": seg.get("recall", 0.0),
        "segment_confusion_matrix": seg.get("confusion_matrix"),
        "frame_auc": m.get("frame_auc"),
        "frame_ap": m.get("frame_ap"),
    }
