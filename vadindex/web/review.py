"""The review page's detection: prompts to class similarities (once), then rules and thresholds per request.

Class similarities come from the index's similarity cache (:mod:`vadindex.index.cache`, encoding only
prompts it does not hold) and stay in memory for the index generation, so moving a threshold or
changing the rule only re-runs :func:`vadindex.detect.pipeline.decide_classes`: milliseconds per
thousand segments, no model, no vector read.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from vadindex import config as C
from vadindex.detect.options import DetectOptions
from vadindex.detect.pipeline import decide_classes
from vadindex.detect.prompts import ClassPromptSet, builtin_prompt_sets, load_prompt_set
from vadindex.detect.result import DetectResult
from vadindex.detect.similarity import compute_class_similarities, load_neighbours
from vadindex.errors import InputError
from vadindex.web.search import is_missing, jsonable
from vadindex.web.state import IndexState, IndexView, NotFound

#: Bins of the segment-score histogram.
HISTOGRAM_BINS = 40
#: Points of a timeline on the review page (the max of each bucket: a one-segment spike stays visible).
TIMELINE_POINTS = 300
#: Points of the timeline on a video's own page.
VIDEO_TIMELINE_POINTS = 2000
#: Videos listed by default, and at most.
DEFAULT_VIDEOS = 50
MAX_VIDEOS = 1000


def prompt_list(text: str | None, what: str) -> list[str] | None:
    """Prompts typed into a page: separated by ``;`` or new lines. Never a file name (a server takes
    no paths), so a built-in set is named by :func:`prompt_spec` only."""
    if text is None or not text.strip():
        return None
    if len(text) > C.SERVE_MAX_PROMPTS_TEXT:
        raise InputError(f"{what}: at most {C.SERVE_MAX_PROMPTS_TEXT:,} characters, got {len(text):,}")
    items = list(dict.fromkeys(p.strip() for p in re.split(r"[;\n]", text) if p.strip()))
    long = [p for p in items if len(p) > C.SERVE_MAX_TEXT]
    if long:
        raise InputError(f"{what}: a prompt is longer than {C.SERVE_MAX_TEXT:,} characters")
    return items or None


def prompt_spec(prompts: str | None, normal_prompts: str | None = None) -> ClassPromptSet:
    """The prompt set of a review: a built-in set's name (``ucf-crime``...) or typed prompts.

    Raises:
        InputError: no prompts, or prompts that are both anomaly and normal.
    """
    name = (prompts or "").strip()
    normal = prompt_list(normal_prompts, "normal_prompts")
    if name in builtin_prompt_sets():
        return load_prompt_set(name, normal)
    anomaly = prompt_list(prompts, "prompts")
    if anomaly is None:
        sets = ", ".join(builtin_prompt_sets())
        raise InputError(f"prompts: name a built-in set ({sets}) or type prompts separated by ';'")
    return load_prompt_set(anomaly, normal)


def detection(
    state: IndexState, view: IndexView, spec: ClassPromptSet, options: DetectOptions
) -> DetectResult:
    """Score every segment of ``view`` with ``spec`` under ``options``.

    The class similarities of a prompt set are computed once per generation (through the index's
    cache; the model loads only for texts it does not hold), then kept in memory.
    """
    options.check_classes(len(spec.classes))
    frames = options.rule == "frame-vote"
    key = (spec.classes, spec.templates, frames)
    neighbours = None
    with view.compute_lock:
        found = view.class_sims.get(key)
        if found is None:
            found = compute_class_similarities(view.snap, spec, frames=frames, encoder=state.lazy_encoder())
            view.class_sims.put(key, found)
        if options.knn_k > 0:
            neighbours = view.neighbours.get(options.knn_k)
            if neighbours is None:
                neighbours = load_neighbours(view.snap, options.knn_k)
                view.neighbours.put(options.knn_k, neighbours)
    sims, frame_sims = found
    result = decide_classes(
        view.snap,
        sims,
        spec,
        options,
        frame_sims=frame_sims,
        neighbours=neighbours,
        annotations=state.annotations,
    )
    if state.annotations_file:  # as `vadindex detect --annotations` records it
        result.settings.update(annotations=state.annotations_file, annotation_format=state.annotation_format)
    return result


def summary(
    view: IndexView, result: DetectResult, options: DetectOptions, videos: int = DEFAULT_VIDEOS
) -> dict[str, Any]:
    """What the review page shows: counts, metrics, a histogram of segment scores, and the
    ``videos`` best-scoring videos with their timelines."""
    if not 1 <= videos <= MAX_VIDEOS:
        raise InputError(f"videos: must be between 1 and {MAX_VIDEOS:,}, got {videos}")
    seg = result.segment_columns
    score = np.asarray(seg["score"], dtype=np.float64)
    flagged = np.asarray(seg["anomalous"], dtype=bool)
    truth = _segment_truth(result)
    lo, hi = score_range(score, options)
    vids = result.videos
    order = np.argsort(-np.nan_to_num(vids["score"].to_numpy(np.float64), nan=-np.inf), kind="stable")
    labels = vids["label"]
    known = labels.notna().to_numpy()
    decided = vids["anomalous"].to_numpy(bool)
    label_values = labels.fillna(-1).astype(int).to_numpy()
    wrong = known & (decided != (label_values == 1))
    listed = [
        video_entry(view, result, int(i), truth, TIMELINE_POINTS, bool(wrong[i])) for i in order[:videos]
    ]
    return jsonable({
        "generation": view.generation,
        "segments": len(score),
        "flagged_segments": int(flagged.sum()),
        "videos": len(vids),
        "flagged_videos": int(decided.sum()),
        "misclassified_videos": int(wrong.sum()),
        "labelled": bool(known.any()),
        "annotated": result.ground_truth is not None,
        "metrics": result.metrics,
        "settings": options.to_dict(),
        "classes": list(result.class_names),
        "threshold": options.segment_threshold,
        "score_range": [lo, hi],
        "histogram": histogram(score, truth, lo, hi),
        "listed": listed,
    })  # fmt: skip


def video_summary(view: IndexView, result: DetectResult, video_id: str) -> dict[str, Any]:
    """One video's decision and its full timeline (up to :data:`VIDEO_TIMELINE_POINTS` points)."""
    matches = np.flatnonzero(result.videos["video_id"].astype(str).to_numpy() == video_id)
    if not len(matches):
        raise NotFound(f"no video {video_id!r} with segments in this index")
    i = int(matches[0])
    vids = result.videos
    label = vids["label"].iloc[i]
    known = not is_missing(label)
    wrong = known and bool(vids["anomalous"].iloc[i]) != (int(label) == 1)
    lo, hi = score_range(
        np.asarray(result.segment_columns["score"], dtype=np.float64), result_options(result)
    )
    entry = video_entry(view, result, i, _segment_truth(result), VIDEO_TIMELINE_POINTS, wrong)
    return jsonable({"video": entry, "threshold": result.settings["segment_threshold"], "score_range": [lo, hi],
                     "generation": view.generation})  # fmt: skip


def result_options(result: DetectResult) -> DetectOptions:
    """The options a result was decided with."""
    return DetectOptions(**{k: result.settings[k] for k in DetectOptions.names()})


def video_entry(
    view: IndexView, result: DetectResult, i: int, truth: np.ndarray | None, points: int, wrong: bool
) -> dict[str, Any]:
    """Row ``i`` of ``result.videos`` with its timeline."""
    vids = result.videos
    video_id = str(vids["video_id"].iloc[i])
    row = view.video_row(video_id)
    rows = view.video_rows(row) if row is not None else np.zeros(0, np.int64)
    label = vids["label"].iloc[i]
    cls = vids["class"].iloc[i]
    best = vids["best_class"].iloc[i]
    return {
        "video_id": video_id,
        "video": str(vids["video"].iloc[i]),
        "score": float(vids["score"].iloc[i]),
        "anomalous": bool(vids["anomalous"].iloc[i]),
        "label": None if is_missing(label) else int(label),
        "class": None if is_missing(cls) else str(cls),
        "best_class": None if is_missing(best) else str(best),
        "n_segments": int(vids["n_segments"].iloc[i]),
        "n_anomalous": int(vids["n_anomalous"].iloc[i]),
        "misclassified": wrong,
        "timeline": timeline(result, rows, truth, points),
    }


def timeline(result: DetectResult, rows: np.ndarray, truth: np.ndarray | None, points: int) -> dict[str, Any]:
    """A video's segment scores over time, in at most ``points`` buckets of consecutive segments:
    each bucket's span, highest score, and whether any of its segments is flagged (or annotated)."""
    seg = result.segment_columns
    n = len(rows)
    if n == 0:
        return {"start": [], "end": [], "score": [], "flagged": [], "truth": None, "first_segment": []}
    edges = np.unique(np.linspace(0, n, min(n, points) + 1).astype(np.int64))
    starts, ends = edges[:-1], edges[1:]
    score = np.nan_to_num(np.asarray(seg["score"], dtype=np.float64)[rows], nan=-np.inf)
    flagged = np.asarray(seg["anomalous"], dtype=bool)[rows]
    out = {
        "start": np.round(np.asarray(seg["start"])[rows][starts], 3),
        "end": np.round(np.asarray(seg["end"])[rows][ends - 1], 3),
        "score": np.round(np.maximum.reduceat(score, starts), 4),
        "flagged": np.logical_or.reduceat(flagged, starts).astype(int),
        "truth": None,
        "first_segment": np.asarray(seg["segment"])[rows][starts],
    }
    if truth is not None:
        out["truth"] = np.maximum.reduceat(truth[rows].astype(np.int64), starts)  # -1 unknown, 0, 1
    return out


def histogram(score: np.ndarray, truth: np.ndarray | None, lo: float, hi: float) -> dict[str, Any]:
    """Counts of segment scores in :data:`HISTOGRAM_BINS` bins over ``[lo, hi]``, split by ground truth
    (``anomaly``, ``normal``, ``unknown``) when segments have one."""
    edges = np.linspace(lo, hi, HISTOGRAM_BINS + 1)
    finite = np.isfinite(score)
    clipped = np.clip(score, lo, hi)

    def count(mask: np.ndarray) -> list[int]:
        return np.histogram(clipped[mask & finite], bins=edges)[0].tolist()

    if truth is None:
        return {"edges": edges, "unknown": count(np.ones(len(score), bool))}
    return {
        "edges": edges,
        "anomaly": count(truth == 1),
        "normal": count(truth == 0),
        "unknown": count(truth < 0),
    }


def score_range(score: np.ndarray, options: DetectOptions) -> tuple[float, float]:
    """The axis of scores: [0, 1] for softmax scores, else the scores' range with the threshold in it."""
    if options.calibrate == "none" and options.rule != "topk":
        return 0.0, 1.0
    finite = score[np.isfinite(score)]
    lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    lo, hi = min(lo, options.segment_threshold), max(hi, options.segment_threshold)
    pad = 0.02 * (hi - lo or 1.0)
    return lo - pad, hi + pad


def _segment_truth(result: DetectResult) -> np.ndarray | None:
    """Per segment: 1 in an annotated event, 0 outside, -1 unknown; ``None`` without annotations
    (a video label says nothing about when)."""
    gt = result.ground_truth
    return None if gt is None else np.asarray(gt.segment_label, dtype=np.int8)
