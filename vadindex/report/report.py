"""The detection report: one self-contained HTML file from a :class:`~vadindex.detect.result.DetectResult`.

Contents, top to bottom: the settings and the command line that reproduces the report; metric cards
and the confusion matrix (when labelled); ROC and precision-recall curves at video level (labels)
and frame level (``--annotations``) with AUC/AP in the legend, the detection's operating point and
the Youden-optimal threshold marked; the per-class table; a histogram of segment scores with the
threshold; then one section per video (misclassified ones first when labelled, then by score): its
segment score over time with the threshold, the segments decided anomalous shaded, the annotated
spans, and thumbnails of its three best segments. At most ``max_videos`` sections are drawn; the
others are listed in a table and the page says so.
"""

from __future__ import annotations

import logging
import os
import shlex
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vadindex.config import DEFAULT_DEVICE, REPORT_TOP_SEGMENTS
from vadindex.detect.options import DetectOptions
from vadindex.detect.pipeline import detect
from vadindex.detect.prompts import ClassPromptSet, PromptSet, builtin_prompt_sets
from vadindex.detect.result import DetectResult
from vadindex.evaluate.metrics import precision_recall_curve, roc_curve, youden_threshold
from vadindex.index.reader import IndexSnapshot, open_index
from vadindex.report import figures
from vadindex.report.options import ReportOptions
from vadindex.report.page import png_uri, write_page
from vadindex.report.thumbnails import ThumbnailStore

log = logging.getLogger("vadindex")

#: Rows of the table of videos left out of the sections (the rest are counted).
LEFT_OUT_ROWS = 2000
#: Placeholder notes listed by name before the rest are counted.
NOTES_SHOWN = 5
#: Videos decoded at once for thumbnails (PyAV and JPEG encoding run without the GIL).
THUMBNAIL_WORKERS = 2


@dataclass(frozen=True)
class ReportSummary:
    """What a report holds and how it was made."""

    path: Path
    bytes: int
    videos: int
    sections: int
    left_out: int
    misclassified_left_out: int
    plots: int
    #: Thumbnails by where they came from (``index``, ``cache``, ``video``, ``placeholder``).
    thumbnails: dict[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "path": str(self.path),
            "bytes": self.bytes,
            "videos": self.videos,
            "sections": self.sections,
            "left_out": self.left_out,
            "misclassified_left_out": self.misclassified_left_out,
            "plots": self.plots,
            "thumbnails": dict(self.thumbnails),
            "notes": list(self.notes),
            "seconds": round(self.seconds, 3),
        }


def report_index(
    index: str | os.PathLike[str] | IndexSnapshot,
    prompts: Any,
    out: str | os.PathLike[str],
    *,
    normal_prompts: Any = None,
    options: DetectOptions | None = None,
    annotations: str | os.PathLike[str] | None = None,
    annotation_format: str = "auto",
    report_options: ReportOptions | None = None,
    device: str = DEFAULT_DEVICE,
    pretrained: str | None = None,
    use_cache: bool = True,
    config: str | os.PathLike[str] | None = None,
) -> ReportSummary:
    """Run a detection over an index and write its report (``vadindex report``).

    Args:
        index: the index folder or an open snapshot.
        prompts, normal_prompts, options, annotations, annotation_format, device, pretrained,
            use_cache: as for :func:`vadindex.detect.detect`.
        out: the HTML file to write.
        report_options: what the report shows (:class:`~vadindex.report.options.ReportOptions`).
        config: the ``--config`` file the settings came from, for the reproducing command line.

    Returns:
        A :class:`ReportSummary`.
    """
    opts = options or DetectOptions()
    snap = index if isinstance(index, IndexSnapshot) else open_index(index, with_faiss=False)
    result = detect(snap, prompts, normal_prompts=normal_prompts, options=opts, annotations=annotations,
                    annotation_format=annotation_format, device=device, pretrained=pretrained,
                    use_cache=use_cache)  # fmt: skip
    ropts = report_options or ReportOptions()
    command = command_line(
        "report", snap.path, prompts, normal_prompts, opts, annotations, annotation_format, config,
        extra=_report_flags(ropts, out),
    )  # fmt: skip
    return write_report(result, out, snapshot=snap, options=ropts, command=command)


def command_line(
    command: str,
    index: str | os.PathLike[str],
    prompts: Any,
    normal_prompts: Any = None,
    options: DetectOptions | None = None,
    annotations: Any = None,
    annotation_format: str = "auto",
    config: str | os.PathLike[str] | None = None,
    extra: Sequence[str] = (),
) -> str:
    """The ``vadindex`` command line that repeats a detection, every option spelled out."""
    args = ["vadindex", command, "--index", os.fspath(index)]
    if config:
        args += ["--config", os.fspath(config)]
    if config:  # a prompt set the config file holds is repeated by the file itself
        prompts = prompts if isinstance(prompts, str) else None
        normal_prompts = normal_prompts if isinstance(normal_prompts, str) else None
    anomaly, normal = _prompt_args(prompts, normal_prompts)
    if anomaly:
        args += ["--prompts", anomaly]
    if normal:
        args += ["--normal-prompts", normal]
    args += (options or DetectOptions()).to_args()
    if isinstance(annotations, (str, os.PathLike)):
        args += ["--annotations", os.fspath(annotations)]
        if annotation_format != "auto":
            args += ["--annotation-format", annotation_format]
    return shlex.join([*args, *extra])


def _prompt_args(prompts: Any, normal_prompts: Any) -> tuple[str | None, str | None]:
    def text(value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, (list, tuple)):
            return "; ".join(str(v) for v in value)
        return str(value)

    if isinstance(prompts, PromptSet):
        return text(prompts.anomaly), text(normal_prompts) or text(prompts.normal)
    if isinstance(prompts, ClassPromptSet):
        source = Path(prompts.source)
        if prompts.source in builtin_prompt_sets() or (
            source.suffix in (".yaml", ".yml") and source.is_file()
        ):
            return prompts.source, text(normal_prompts)
        # Inline classes are their prompts (a set read from a config file is shown by its class names).
        return text(prompts.anomaly), text(normal_prompts) or text(prompts.normal)
    return text(prompts), text(normal_prompts)


def _report_flags(o: ReportOptions, out: str | os.PathLike[str] | None) -> list[str]:
    flags = [] if out is None else ["--out", os.fspath(out)]
    defaults = ReportOptions()
    if o.max_videos != defaults.max_videos:
        flags += ["--max-videos", str(o.max_videos)]
    if not o.thumbnails:
        flags += ["--no-thumbnails"]
    if o.thumbnail_size != defaults.thumbnail_size:
        flags += ["--thumbnail-size", str(o.thumbnail_size)]
    if o.video_root:
        flags += ["--video-root", o.video_root]
    return flags


def write_report(
    result: DetectResult,
    out: str | os.PathLike[str],
    *,
    snapshot: IndexSnapshot | None = None,
    options: ReportOptions | None = None,
    command: str | None = None,
    **overrides: Any,
) -> ReportSummary:
    """Write the HTML report of a detection (see the module docstring for what it shows).

    Args:
        result: a detection (``vadindex.detect.detect``); with annotations, its ``ground_truth``
            gives the frame-level curves and the annotated spans.
        out: the HTML file to write (its folder is created).
        snapshot: the index the detection ran on (opened from ``result.settings["index"]`` if not given).
        options: a :class:`~vadindex.report.options.ReportOptions`; keywords named like its fields
            (``max_videos=50``...) override it.
        command: the command line shown as the way to reproduce the report (built from the
            detection's settings when ``None``).

    Returns:
        A :class:`ReportSummary`.
    """
    started = time.perf_counter()
    o = (options or ReportOptions()).replace(**overrides)
    snap = snapshot or open_index(result.settings["index"], with_faiss=False)
    detect_options = DetectOptions.from_mapping(
        {k: result.settings[k] for k in DetectOptions.names() if k in result.settings}
    )
    if command is None:
        command = command_line(
            "report", snap.path, result.prompts, None, detect_options, result.settings.get("annotations"),
            result.settings.get("annotation_format", "auto"), extra=_report_flags(o, out),
        )  # fmt: skip
    page = _Page(result, snap, o, detect_options)
    context = page.context(command)
    path = write_page(out, "report.html.j2", **context)
    size = path.stat().st_size
    seconds = time.perf_counter() - started
    log.info("wrote %s (%.1f MB, %d sections) in %.1f s", path, size / 1e6, len(page.sections), seconds)
    return ReportSummary(
        path=path, bytes=size, videos=len(result.videos), sections=len(page.sections),
        left_out=page.left_out_count, misclassified_left_out=page.misclassified_left_out, plots=page.plots,
        thumbnails=page.thumb_sources, notes=tuple(n["text"] for n in context["notes"]), seconds=seconds,
    )  # fmt: skip


class _Page:
    """Everything the report template needs, computed once from a detection."""

    def __init__(
        self, result: DetectResult, snap: IndexSnapshot, o: ReportOptions, opts: DetectOptions
    ) -> None:
        self.result, self.snap, self.o, self.opts = result, snap, o, opts
        cols = result.segment_columns
        self.score = np.asarray(cols["score"], dtype=np.float64)
        self.flagged = np.asarray(cols["anomalous"], dtype=bool)
        self.start = np.asarray(cols["start"], dtype=np.float64)
        self.end = np.asarray(cols["end"], dtype=np.float64)
        self.video_row = np.asarray(cols["video_row"], dtype=np.int64)
        self.truth = result.ground_truth
        self.vids = result.videos.reset_index(drop=True)
        labels = pd.to_numeric(self.vids["label"], errors="coerce")
        self.labelled = labels.notna().to_numpy()
        self.label = labels.fillna(-1).to_numpy().astype(np.int8)
        self.decided = self.vids["anomalous"].to_numpy(bool)
        self.misclassified = self.labelled & ((self.label == 1) != self.decided)
        self.thumb_sources: dict[str, int] = {}
        self.sections: list[dict[str, Any]] = []
        self.left_out_count = self.misclassified_left_out = self.plots = 0
        self._store: ThumbnailStore | None = None
        # Segments of each video (index rows), in time order.
        order = np.lexsort((self.start, self.video_row))
        bounds = np.searchsorted(self.video_row[order], np.arange(len(result.video_ids) + 1))
        self._rows_of = {v: order[bounds[v] : bounds[v + 1]] for v in range(len(result.video_ids))}
        self._row_of_id = {str(v): i for i, v in enumerate(result.video_ids)}

    # -- the page --------------------------------------------------------------------------

    def context(self, command: str) -> dict[str, Any]:
        r = self.result
        notes: list[dict[str, str]] = []
        metrics = r.metrics
        if metrics is None and r.n_segments:
            notes.append({"kind": "info", "text": "The index holds no labels and no annotations were given, so "
                          "there are no metrics, curves or per-class figures; scores and decisions are shown."})  # fmt: skip
        if r.n_segments == 0:
            notes.append({"kind": "info", "text": "The index holds no segments: there is nothing to report."})
        elif not self.flagged.any():
            notes.append({"kind": "info", "text": "No segment was decided anomalous with these settings."})
        chosen, selected = self._select()
        tops = {int(i): self._top_rows(int(i)) for i in chosen}
        wanted = np.concatenate(list(tops.values())) if tops and self.o.thumbnails else np.zeros(0, np.int64)
        # Thumbnails decode (in C, without the GIL) while matplotlib draws the figures here.
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(self._thumbnails, wanted)
            histogram = self._histogram()
            curves = self._curves() if metrics is not None else []
            self.sections = self._sections(chosen, tops, pending)
        self.plots = 1 + len(curves) + len(self.sections)
        left_out = self._left_out(selected)
        if left_out["count"]:
            notes.append({"kind": "warn", "text": left_out["text"]})
        notes += self._thumbnail_notes()
        m = self.snap.manifest
        return {
            "index": str(self.snap.path),
            "index_name": self.snap.path.name,
            "model": r.settings.get("model", m.identity.describe()),
            "n_videos": int(m.n_videos),
            "n_segments": int(r.n_segments),
            "settings": self._settings(),
            "prompts": {
                "anomaly": list(r.prompts.anomaly),
                "normal": list(r.prompts.normal),
                "kind": "classes" if getattr(r.prompts, "source", "inline") != "inline" else "prompts",
            },
            "command": command,
            "notes": notes,
            "metrics": metrics,
            "cards": self._cards() if metrics else [],
            "confusion": _confusion(metrics.get("confusion_matrix")) if metrics else None,
            "segment_confusion": _confusion((metrics or {}).get("segment", {}).get("confusion_matrix")),
            "curves": curves,
            "per_class": self._per_class(),
            "per_class_auc": self.truth is not None,
            "histogram": histogram,
            "annotated": self.truth is not None,
            "sections": self.sections,
            "order_text": (
                "Misclassified videos first, then by video score, highest first."
                if self.labelled.any()
                else "By video score, highest first."
            ),
            "left_out": left_out,
        }

    def _settings(self) -> list[tuple[str, str]]:
        s = self.result.settings
        m = self.snap.manifest
        rows = [
            ("index", f"{self.snap.path} (generation {m.generation})"),
            ("model", str(s.get("model", m.identity.describe()))),
            ("prompt set", str(s.get("prompt_set", "inline"))),
            ("sampling", f"{m.sampling.get('fps', 0):g} frames/s, {m.sampling.get('segment_seconds', 0):g} s segments"),
        ]  # fmt: skip
        for name, value in self.opts.to_dict().items():
            rows.append(
                (
                    name.replace("_", " "),
                    "default" if value is None else f"{value:g}" if isinstance(value, float) else str(value),
                )
            )
        return rows

    def _cards(self) -> list[dict[str, str]]:
        m = self.result.metrics or {}
        cards = [
            ("video F1", m.get("f1"), "F1 of the video decisions against the labels"),
            ("video precision", m.get("precision"), ""),
            ("video recall", m.get("recall"), ""),
            ("video accuracy", m.get("accuracy"), ""),
            ("video AUC", m.get("video_auc"), "ROC-AUC of the video scores"),
        ]
        (tn, fp), _ = m.get("confusion_matrix", [[0, 0], [0, 0]])
        out = [{"k": k, "v": _fmt(v), "hint": h} for k, v, h in cards]
        far = fp / (fp + tn) if fp + tn else None
        out.append(
            {
                "k": "false alarms: normal videos flagged",
                "v": _pct(far),
                "hint": f"{fp} of {fp + tn} normal videos",
            }
        )
        normal_rows = self._segments_of_videos(self.labelled & (self.label == 0))
        if normal_rows.any():
            rate = float(self.flagged[normal_rows].mean())
            out.append({"k": "false alarms: segments of normal videos flagged", "v": _pct(rate),
                        "hint": f"{int(self.flagged[normal_rows].sum()):,} of {int(normal_rows.sum()):,} segments"})  # fmt: skip
        if "frame_auc" in m:
            out += [
                {"k": "frame AUC", "v": _fmt(m.get("frame_auc")), "hint": "pooled frame-level ROC-AUC"},
                {
                    "k": "frame AP",
                    "v": _fmt(m.get("frame_ap")),
                    "hint": "pooled frame-level average precision",
                },
            ]
            seg = m.get("segment", {})
            out.append({"k": "segment F1", "v": _fmt(seg.get("f1")), "hint": "against the annotated spans"})
        return out

    def _segments_of_videos(self, video_mask: np.ndarray) -> np.ndarray:
        """Index rows of the segments of the videos (rows of ``result.videos``) in ``video_mask``."""
        wanted = np.zeros(len(self.result.video_ids), dtype=bool)
        for i in np.flatnonzero(video_mask):
            wanted[self._row_of_id[str(self.vids["video_id"].iloc[i])]] = True
        return wanted[self.video_row] if len(self.video_row) else np.zeros(0, bool)

    def _per_class(self) -> list[dict[str, Any]]:
        per = (self.result.metrics or {}).get("per_class") or {}
        rows = []
        for name, e in per.items():
            rate = e.get("recall", e.get("false_positive_rate"))
            rows.append({"name": name, "videos": e.get("videos", 0), "flagged": e.get("flagged", 0), "rate": rate,
                         "auc": e.get("frame_auc"), "ap": e.get("frame_ap")})  # fmt: skip
        return rows

    # -- figures ---------------------------------------------------------------------------

    def _histogram(self) -> dict[str, str]:
        truth = self.truth.segment_label if self.truth is not None else None
        threshold = self._threshold()
        png = figures.histogram_figure(self.score, threshold, truth, self.flagged)
        caption = f"{len(self.score):,} segment scores"
        if threshold is not None:
            caption += f"; dashed line: the segment threshold {threshold:.3g}"
        if self.opts.rule == "topk":
            caption += "; the topk rule decides by votes, not by this score"
        return {"uri": png_uri(png), "alt": "histogram of segment scores", "caption": caption}

    def _threshold(self) -> float | None:
        return None if self.opts.rule == "topk" else float(self.opts.segment_threshold)

    def _curves(self) -> list[dict[str, str]]:
        out = []
        video = self._video_curve()
        if video is not None:
            out.append({"uri": png_uri(figures.curves_figure(video)), "alt": "video-level ROC and precision-recall curves",
                        "caption": f"Video level, {int(self.labelled.sum()):,} labelled videos, video score "
                                   f"({self.opts.video_agg})."})  # fmt: skip
        frame = self._frame_curve()
        if frame is not None:
            t = self.truth
            out.append({"uri": png_uri(figures.curves_figure(frame)), "alt": "frame-level ROC and precision-recall curves",
                        "caption": f"Frame level, {int(t.group_count.sum()):,} frames of {int((t.video_label >= 0).sum()):,} "
                                   "annotated videos pooled; each frame takes its segment's score."})  # fmt: skip
        return out

    def _video_curve(self) -> figures.CurveSet | None:
        y = self.label[self.labelled] == 1
        if not (y.any() and (~y).any()):
            return None
        s = np.nan_to_num(self.vids["score"].to_numpy(np.float64)[self.labelled], nan=-np.inf)
        decided = self.decided[self.labelled]
        o = self.opts
        where = (
            f"ratio >= {o.video_ratio:g}"
            if o.video_agg == "ratio"
            else f"score >= {o.effective_video_threshold:.3g}"
        )
        return _curve_set("videos", y, s, None, decided, f"this detection ({where})")

    def _frame_curve(self) -> figures.CurveSet | None:
        t = self.truth
        if t is None or not (t.group_label.any() and (~t.group_label).any()):
            return None
        s = self.score[t.group_segment]
        decided = self.flagged[t.group_segment]
        o = self.opts
        what = f"threshold {o.segment_threshold:g}" if o.rule != "topk" else f"top {o.top_k} vote"
        return _curve_set(
            "frames", t.group_label, s, t.group_count, decided, f"this detection ({o.rule}, {what})"
        )

    # -- video sections --------------------------------------------------------------------

    def _select(self) -> tuple[np.ndarray, np.ndarray]:
        """Result-video positions of the sections, in page order, and a mask of those selected."""
        n = len(self.vids)
        score = np.nan_to_num(self.vids["score"].to_numpy(np.float64), nan=-np.inf)
        order = np.lexsort((-score, ~self.misclassified))  # misclassified first, then by score
        chosen = order[: self.o.max_videos]
        mask = np.zeros(n, dtype=bool)
        mask[chosen] = True
        return chosen, mask

    def _left_out(self, selected: np.ndarray) -> dict[str, Any]:
        n_left = int((~selected).sum())
        self.left_out_count = n_left
        self.misclassified_left_out = int((~selected & self.misclassified).sum())
        if not n_left:
            return {"count": 0, "rows": [], "more": 0, "text": ""}
        score = np.nan_to_num(self.vids["score"].to_numpy(np.float64), nan=-np.inf)
        rest = np.flatnonzero(~selected)
        rest = rest[np.lexsort((-score[rest], ~self.misclassified[rest]))]
        rows = [
            {"name": str(self.vids["video"].iloc[i]), "score": float(self.vids["score"].iloc[i]),
             "flagged": bool(self.decided[i]), "label": _label_text(self.label[i]) if self.labelled[i] else None}
            for i in rest[:LEFT_OUT_ROWS]
        ]  # fmt: skip
        text = (
            f"{n_left:,} of {len(self.vids):,} videos have no section (--max-videos {self.o.max_videos}): "
            "the sections show misclassified videos first, then the best-scoring ones."
        )
        if self.misclassified_left_out:
            text += f" {self.misclassified_left_out:,} misclassified videos are among those left out."
        return {"count": n_left, "rows": rows, "more": max(0, n_left - LEFT_OUT_ROWS), "text": text}

    def _video_rows(self, i: int) -> np.ndarray:
        """Index rows of the segments of ``result.videos`` row ``i``, in time order."""
        return self._rows_of[self._row_of_id[str(self.vids["video_id"].iloc[i])]]

    def _top_rows(self, i: int) -> np.ndarray:
        """The video's best segments (highest score, earliest first on ties)."""
        rows = self._video_rows(i)
        return rows[np.lexsort((self.start[rows], -self.score[rows]))][:REPORT_TOP_SEGMENTS]

    def _sections(
        self, chosen: np.ndarray, tops: dict[int, np.ndarray], thumbnails: Future
    ) -> list[dict[str, Any]]:
        if not len(chosen):
            return []
        spans = self._truth_spans()
        y_range = self._y_range()
        plotter = figures.TimelinePlotter()
        threshold = self._threshold()
        plots = {}
        for i in chosen:
            i = int(i)
            rows = self._video_rows(i)
            video_row = self._row_of_id[str(self.vids["video_id"].iloc[i])]
            plots[i] = plotter.plot(self.start[rows], self.end[rows], self.score[rows], self.flagged[rows], threshold,
                                    spans.get(video_row, ()), y_range)  # fmt: skip
        thumbs = thumbnails.result()
        sections = []
        for i in chosen:
            i = int(i)
            rows = self._video_rows(i)
            png = plots[i]
            cls = self.vids["class"].iloc[i]
            best_class = self.vids["best_class"].iloc[i]
            sections.append({
                "anchor": f"video-{len(sections) + 1}",
                "name": str(self.vids["video"].iloc[i]),
                "score": float(self.vids["score"].iloc[i]),
                "flagged": bool(self.decided[i]),
                "label": _label_text(self.label[i]) if self.labelled[i] else None,
                "misclassified": bool(self.misclassified[i]),
                "cls": None if pd.isna(cls) else str(cls),
                "best_class": None if best_class is None or pd.isna(best_class) else str(best_class),
                "n_segments": int(len(rows)),
                "n_flagged": int(self.flagged[rows].sum()),
                "duration": float(self.end[rows].max() if len(rows) else 0.0),
                "plot": png_uri(png),
                "thumbs": [
                    {"uri": thumbs[r].data_uri(), "time": thumbs[r].time, "start": float(self.start[r]),
                     "end": float(self.end[r]), "score": float(self.score[r]), "note": thumbs[r].note}
                    for r in tops[i] if int(r) in thumbs
                ],
            })  # fmt: skip
        return sections

    def _thumbnails(self, rows: np.ndarray) -> dict[int, Any]:
        if not len(rows):
            return {}
        self._store = ThumbnailStore(self.snap, video_root=self.o.roots, size=self.o.thumbnail_size)
        got = self._store.segments(rows.tolist(), workers=THUMBNAIL_WORKERS)
        for t in got:
            self.thumb_sources[t.source] = self.thumb_sources.get(t.source, 0) + 1
        return {int(r): t for r, t in zip(rows, got, strict=True)}

    def _thumbnail_notes(self) -> list[dict[str, str]]:
        store = self._store
        if store is None or not store.notes:
            return []
        names = dict(
            zip(self.snap.videos["video_id"].astype(str), self.snap.videos["video"].astype(str), strict=True)
        )
        items = list(store.notes.items())
        shown = "; ".join(f"{names.get(v, v)}: {why}" for v, why in items[:NOTES_SHOWN])
        more = f"; and {len(items) - NOTES_SHOWN} more" if len(items) > NOTES_SHOWN else ""
        return [{"kind": "warn", "text": f"{len(items)} videos could not give thumbnails and show a placeholder "
                 f"({shown}{more}). Build with --thumbnails to keep pictures in the index."}]  # fmt: skip

    def _truth_spans(self) -> dict[int, list[tuple[float, float]]]:
        """Annotated spans of each video (by index video row), in seconds."""
        t = self.truth
        if t is None or not len(t.frame_video):
            return {}
        sf = self.snap.segment_arrays()
        out: dict[int, list[tuple[float, float]]] = {}
        bounds = np.flatnonzero(np.diff(np.r_[-1, t.frame_video, -2]))
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            video = int(t.frame_video[a])
            frame_runs = figures.runs(t.frame_label[a:b])
            if not frame_runs:
                continue
            rows = self._rows_of.get(video, np.zeros(0, np.int64))
            if not len(rows):
                continue
            # Frame numbers to seconds along the video's own segments (exact for variable frame rates).
            xf = np.r_[sf.start_frame[rows], sf.end_frame[rows][-1]].astype(np.float64)
            xt = np.r_[self.start[rows], self.end[rows][-1]]
            xf, keep = np.unique(xf, return_index=True)
            xt = xt[keep]
            out[video] = [
                (float(np.interp(f0, xf, xt)), float(np.interp(f1, xf, xt))) for f0, f1 in frame_runs
            ]
        return out

    def _y_range(self) -> tuple[float, float]:
        if self.opts.calibrate == "none":
            return (0.0, 1.02)
        finite = self.score[np.isfinite(self.score)]
        lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
        if self.opts.rule != "topk":
            lo, hi = min(lo, self.opts.segment_threshold), max(hi, self.opts.segment_threshold)
        pad = 0.05 * (hi - lo or 1.0)
        return (lo - pad, hi + pad)


def _curve_set(
    label: str, y: np.ndarray, s: np.ndarray, w: np.ndarray | None, decided: np.ndarray, chosen_label: str
) -> figures.CurveSet:
    """ROC and PR curves of scores ``s`` against ``y`` (weights ``w``), the operating point of the
    ``decided`` decisions and the Youden-optimal threshold."""
    from vadindex.evaluate.metrics import average_precision, roc_auc

    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=np.float64)
    roc = roc_curve(y, s, w)
    pr = precision_recall_curve(y, s, w)
    pos, neg = w[y].sum(), w[~y].sum()
    tp, fp = w[y & decided].sum(), w[~y & decided].sum()
    chosen = (fp / neg if neg else 0.0, tp / pos if pos else 0.0, tp / (tp + fp) if tp + fp else 1.0,
              tp / pos if pos else 0.0)  # fmt: skip
    thr, yfpr, ytpr = youden_threshold(roc)
    k = int(np.argmax(roc["tpr"] - roc["fpr"]))
    precision = float(pr["precision"][k - 1]) if k > 0 else 1.0
    youden = (thr, yfpr, ytpr, precision, ytpr) if np.isfinite(thr) else None
    return figures.CurveSet(
        label, roc, pr, roc_auc(y, s, w), average_precision(y, s, w), chosen, chosen_label, youden
    )


def _confusion(cm: Any) -> dict[str, int] | None:
    if not cm:
        return None
    (tn, fp), (fn, tp) = cm
    return {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)}


def _label_text(label: int) -> str:
    return "anomalous" if label == 1 else "normal"


def _fmt(value: Any) -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and not np.isfinite(value))
        else f"{float(value):.3f}"
    )


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * float(value):.1f} %"
