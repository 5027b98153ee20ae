"""Anomaly detection over an index: prompt similarities, scoring rules, video decisions, metrics."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from vadindex.config import DEFAULT_DEVICE, DEFAULT_TEXT_ENCODER
from vadindex.detect.aggregate import VideoAggregate, aggregate_codes
from vadindex.detect.options import DetectOptions
from vadindex.detect.prompts import ClassPromptSet, PromptSet, from_prompt_set, load_prompt_set
from vadindex.detect.result import DetectResult
from vadindex.detect.scoring import RuleResult, apply_rule
from vadindex.detect.similarity import compute_class_similarities, load_neighbours, open_snapshot
from vadindex.evaluate.annotations import Annotation, build_ground_truth, load_annotations
from vadindex.evaluate.detection import evaluate, fill_from_annotations
from vadindex.index.reader import IndexSnapshot
from vadindex.models.identity import TextEncoder


def detect(
    index: str | os.PathLike[str] | IndexSnapshot,
    prompts: str | list[str] | tuple[str, ...] | ClassPromptSet,
    *,
    normal_prompts: str | list[str] | tuple[str, ...] | None = None,
    options: DetectOptions | None = None,
    annotations: str | os.PathLike[str] | list[Annotation] | None = None,
    annotation_format: str = "auto",
    device: str = DEFAULT_DEVICE,
    pretrained: str | None = None,
    encoder: TextEncoder | None = None,
    use_cache: bool = True,
    text_encoder: str = DEFAULT_TEXT_ENCODER,
    **option_overrides: Any,
) -> DetectResult:
    """Score every segment of an index against anomaly and normal prompts and decide.

    Only the prompts are encoded, and only those not in the index's cache (see
    :mod:`vadindex.index.cache`): with every text cached no model is loaded, so changing thresholds,
    rules or aggregation is instant.

    Args:
        index: index folder or an open snapshot.
        prompts: a built-in prompt set (``ucf-crime``, ``xd-violence``, ``general``), a YAML set,
            ``;``-separated anomaly prompts, a list, or a text file (see :mod:`vadindex.detect.prompts`).
        normal_prompts: normal prompts; the set's (or the built-in ones) when ``None``.
        options: the rule and aggregation (:class:`~vadindex.detect.options.DetectOptions`); keyword
            arguments named like its fields (``rule="balanced"``, ``video_ratio=0.2``...) override it.
        annotations: a UCF-Crime or XD-Violence temporal annotation file (or parsed annotations),
            for frame-level ``frame_auc``/``frame_ap`` and segment-level metrics.
        annotation_format: ``auto``, ``ucf-crime`` or ``xd-violence``.
        device: device for the text encoder.
        pretrained: weights, when the index's checkpoint moved.
        encoder: an already-loaded encoder (must be the index's model).
        use_cache: read and write the index's similarity cache.
        text_encoder: ``auto``, ``onnx`` or ``torch``: how prompts not cached yet are encoded (see
            :func:`vadindex.search.encoders.load_text_encoder`).

    Returns:
        A :class:`~vadindex.detect.result.DetectResult`.
    """
    opts = (options or DetectOptions()).replace(**option_overrides)
    snap = index if isinstance(index, IndexSnapshot) else open_snapshot(index)
    spec = load_prompt_set(prompts, normal_prompts)
    opts.check_classes(len(spec.classes))
    truth = (
        load_annotations(annotations, annotation_format)
        if isinstance(annotations, (str, os.PathLike))
        else annotations
    )
    sims, frame_sims = compute_class_similarities(
        snap, spec, frames=opts.rule == "frame-vote", encoder=encoder, device=device, pretrained=pretrained,
        use_cache=use_cache, text_encoder=text_encoder,
    )  # fmt: skip
    neighbours = load_neighbours(snap, opts.knn_k, use_cache) if opts.knn_k > 0 else None
    result = decide_classes(
        snap, sims, spec, opts, frame_sims=frame_sims, neighbours=neighbours, annotations=truth
    )
    if isinstance(annotations, (str, os.PathLike)):  # recorded so that reports can repeat the detection
        result.settings.update(annotations=os.fspath(annotations), annotation_format=annotation_format)
    return result


def decide(
    snap: IndexSnapshot, sims: np.ndarray, prompt_set: PromptSet | ClassPromptSet, options: DetectOptions
) -> DetectResult:
    """Apply the rules to a precomputed ``(n_segments, n_prompts)`` similarity matrix (no model involved)."""
    spec = from_prompt_set(prompt_set) if isinstance(prompt_set, PromptSet) else prompt_set
    result = decide_classes(snap, sims, spec, options)
    return DetectResult(result.segment_columns, result.videos, result.metrics, prompt_set, result.settings,
                        result.class_sims, result.class_names, result.video_names, result.video_ids)  # fmt: skip


def apply_options(
    snap: IndexSnapshot,
    sims: np.ndarray,
    is_anomaly: np.ndarray,
    options: DetectOptions,
    frame_sims: np.ndarray | None = None,
    neighbours: np.ndarray | None = None,
) -> RuleResult:
    """:func:`vadindex.detect.scoring.apply_rule` with the index's segment table as context."""
    segs = snap.segment_arrays()
    return apply_rule(
        sims, is_anomaly, snap.manifest.logit_scale, options,
        video_ids=segs.video, position=segs.segment,
        frame_sims=frame_sims, frame_row=segs.frame_row, n_frames=segs.n_frames,
        neighbours=neighbours,
    )  # fmt: skip


def decide_classes(
    snap: IndexSnapshot,
    sims: np.ndarray,
    spec: ClassPromptSet,
    options: DetectOptions,
    *,
    frame_sims: np.ndarray | None = None,
    neighbours: np.ndarray | None = None,
    annotations: list[Annotation] | None = None,
) -> DetectResult:
    """Apply rules, aggregation and metrics to precomputed class similarities (no model involved).

    Everything per segment stays in numpy; only the video table (one row per video) is pandas.
    """
    o = options
    is_anomaly = np.array(spec.is_anomaly)
    segs = snap.segment_arrays()
    videos = snap.videos
    res = apply_options(snap, sims, is_anomaly, o, frame_sims, neighbours)
    agg = aggregate_codes(
        segs.video, len(videos), res.score, res.anomalous, method=o.video_agg, video_ratio=o.video_ratio,
        video_threshold=o.effective_video_threshold, top_k=o.video_top_k,
    )  # fmt: skip
    ids = videos["video_id"].astype(str).to_numpy() if len(videos) else np.zeros(0, dtype=object)
    names = videos["video"].astype(str).to_numpy() if len(videos) else np.zeros(0, dtype=object)
    seg_cols = {
        "video_row": segs.video,
        "segment": segs.segment,
        "start": segs.start,
        "end": segs.end,
        "score": res.score,
        "anomalous": res.anomalous,
        "best_prompt": res.best_class,
        "best_class": res.best_anomaly_class,
        "best_anomaly_sim": res.best_anomaly,
        "best_normal_sim": res.best_normal,
        "label": segs.label,
    }
    vids = _video_table(videos, agg, res, spec, names, ids)
    truth = None
    if annotations is not None:
        seg_frame = pd.DataFrame(
            {"video_id": ids[segs.video], "start_frame": segs.start_frame, "end_frame": segs.end_frame}
        )
        truth = build_ground_truth(seg_frame, videos, annotations)
        fill_from_annotations(vids, videos, truth)
    metrics = evaluate(vids, res.score, res.anomalous, truth, ids)
    settings = {
        **o.to_dict(),
        "logit_scale": snap.manifest.logit_scale,
        "model": snap.manifest.identity.describe(),
        "index": str(snap.path),
        "prompt_set": spec.source,
    }
    return DetectResult(seg_cols, vids, metrics, spec, settings, np.asarray(sims), tuple(spec.class_names),
                        names, ids, truth)  # fmt: skip


def _video_table(
    videos: pd.DataFrame,
    agg: VideoAggregate,
    res: RuleResult,
    spec: ClassPromptSet,
    names: np.ndarray,
    ids: np.ndarray,
) -> pd.DataFrame:
    """One row per video that has segments: its score, decision, label and the class that fired
    (the class of its highest-scoring segment, the first such segment in index order on ties)."""
    n_videos = len(videos)
    class_names = np.array(spec.class_names, dtype=object)
    top = agg.top_segment
    fired = np.full(n_videos, None, dtype=object)
    has = top >= 0
    fired[has] = class_names[res.best_anomaly_class[top[has]]]
    present = agg.n_segments > 0
    return pd.DataFrame(
        {
            "video": names,
            "score": agg.score,
            "anomalous": agg.anomalous,
            "label": pd.array(pd.to_numeric(videos["label"], errors="coerce"), dtype="Int8"),
            "class": videos["class"].to_numpy(dtype=object) if n_videos else np.zeros(0, dtype=object),
            "max_score": agg.max_score,
            "n_segments": agg.n_segments,
            "n_anomalous": agg.n_anomalous,
            "best_class": fired,
            "video_id": ids,
        }
    )[present].reset_index(drop=True)
