"""Anomaly detection over an index: prompt similarities, scoring rules, video decisions, metrics."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from vadindex.config import DEFAULT_DEVICE, DEFAULT_TEXT_ENCODER
from vadindex.detect.aggregate import VideoAggregate, aggregate_codes
from vadindex.detect.options import DetectOptions
from vadindex.detect.prompts import (
    ClassPromptSet,
    PromptSet,
    from_prompt_set,
    load_prompt_set,
    parse_examples,
)
from vadindex.detect.result import DetectResult
from vadindex.detect.scoring import RuleResult, apply_rule
from vadindex.detect.similarity import (
    compute_class_similarities,
    load_neighbours,
    open_snapshot,
    segment_novelty,
)
from vadindex.evaluate.annotations import Annotation, build_ground_truth, load_annotations
from vadindex.evaluate.detection import evaluate, fill_from_annotations
from vadindex.index.labels import LabelSet, label_rows, read_labels
from vadindex.index.reader import IndexSnapshot
from vadindex.models.identity import TextEncoder

log = logging.getLogger("vadindex")

ExampleList = str | list[str] | tuple[str, ...] | None


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
    anomaly_examples: ExampleList = None,
    normal_examples: ExampleList = None,
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
        anomaly_examples, normal_examples: image files or segments (``VIDEO@SECONDS``,
            ``VIDEO_ID:SEGMENT``; a list or ``;``-separated text) added as a class of examples of
            each kind (see :mod:`vadindex.detect.prompts`).

    Returns:
        A :class:`~vadindex.detect.result.DetectResult`.
    """
    opts = (options or DetectOptions()).replace(**option_overrides)
    snap = index if isinstance(index, IndexSnapshot) else open_snapshot(index)
    spec = with_examples(load_prompt_set(prompts, normal_prompts), anomaly_examples, normal_examples)
    labels = None
    if opts.use_labels:

        def similarities(plain: ClassPromptSet) -> np.ndarray:
            return compute_class_similarities(snap, plain, encoder=encoder, device=device, pretrained=pretrained,
                                              use_cache=use_cache, example_weight=opts.example_weight,
                                              text_encoder=text_encoder)[0]  # fmt: skip

        spec, labels = with_labels(snap, spec, similarities)
    opts.check_classes(len(spec.classes))
    truth = (
        load_annotations(annotations, annotation_format)
        if isinstance(annotations, (str, os.PathLike))
        else annotations
    )
    sims, frame_sims = compute_class_similarities(
        snap, spec, frames=opts.rule == "frame-vote", encoder=encoder, device=device, pretrained=pretrained,
        use_cache=use_cache, example_weight=opts.example_weight, text_encoder=text_encoder,
    )  # fmt: skip
    neighbours = load_neighbours(snap, opts.knn_k, use_cache) if opts.knn_k > 0 else None
    novelty = segment_novelty(snap, opts.novelty, opts.novelty_gap, use_cache) if opts.novelty > 0 else None
    result = decide_classes(
        snap, sims, spec, opts, frame_sims=frame_sims, neighbours=neighbours, annotations=truth,
        novelty=novelty, labels=labels,
    )  # fmt: skip
    if isinstance(annotations, (str, os.PathLike)):  # recorded so that reports can repeat the detection
        result.settings.update(annotations=os.fspath(annotations), annotation_format=annotation_format)
    return result


def with_examples(
    spec: ClassPromptSet, anomaly: ExampleList = None, normal: ExampleList = None
) -> ClassPromptSet:
    """``spec`` with the ``--anomaly-examples`` and ``--normal-examples`` classes added."""
    added = [(e, True, None) for e in (parse_examples(anomaly, "--anomaly-examples") if anomaly else ())]
    added += [(e, False, None) for e in (parse_examples(normal, "--normal-examples") if normal else ())]
    return spec.with_examples(added) if added else spec


def with_labels(
    snap: IndexSnapshot, spec: ClassPromptSet, similarities: Callable[[ClassPromptSet], np.ndarray]
) -> tuple[ClassPromptSet, LabelSet]:
    """``spec`` with the index's reviewer labels as examples.

    A label with a class joins that class (a new class of examples when the set has none of that
    name). A label without one confirms or corrects what the segment looks like: it joins the class
    of its kind most similar to the segment (the anomaly class that fired, or the nearest normal
    class), so the examples refine classes the set already has. Labels of segments the index no
    longer holds are skipped.

    Args:
        similarities: the ``(n_segments, n_classes)`` class similarities of a prompt set (called
            with ``spec`` only when some label has no class).
    """
    labels = read_labels(snap)
    rows = label_rows(snap, labels)
    if not labels.labels:
        log.warning("%s: no reviewer labels stored (add some with `vadindex label`)", snap.path)
    found = [(lab, int(row)) for lab, row in zip(labels.labels, rows, strict=True) if row >= 0]
    if len(found) < len(labels.labels):
        log.warning(
            "%d labels name segments this index does not hold; skipped", len(labels.labels) - len(found)
        )
    kept = LabelSet(labels.version, tuple(lab for lab, _ in found), labels.updated)
    names = spec.class_names
    is_anomaly = np.array(spec.is_anomaly)
    sims = similarities(spec) if any(lab.cls is None for lab, _ in found) else None
    examples = []
    for lab, row in found:
        anomaly = lab.label == "anomaly"
        cls = lab.cls
        if cls is None and sims is not None:
            kind = np.flatnonzero(is_anomaly == anomaly)
            cls = names[int(kind[np.argmax(np.asarray(sims[row])[kind])])]
        examples.append((lab.ref, anomaly, cls))
    return spec.with_examples(examples), kept


def decide(
    snap: IndexSnapshot,
    sims: np.ndarray,
    prompt_set: PromptSet | ClassPromptSet,
    options: DetectOptions,
    novelty: np.ndarray | None = None,
) -> DetectResult:
    """Apply the rules to a precomputed ``(n_segments, n_prompts)`` similarity matrix (no model involved);
    ``novelty``: every segment's raw novelty when ``options.novelty`` is on."""
    spec = from_prompt_set(prompt_set) if isinstance(prompt_set, PromptSet) else prompt_set
    result = decide_classes(snap, sims, spec, options, novelty=novelty)
    return DetectResult(result.segment_columns, result.videos, result.metrics, prompt_set, result.settings,
                        result.class_sims, result.class_names, result.video_names, result.video_ids)  # fmt: skip


def apply_options(
    snap: IndexSnapshot,
    sims: np.ndarray,
    is_anomaly: np.ndarray,
    options: DetectOptions,
    frame_sims: np.ndarray | None = None,
    neighbours: np.ndarray | None = None,
    novelty: np.ndarray | None = None,
) -> RuleResult:
    """:func:`vadindex.detect.scoring.apply_rule` with the index's segment table (and cameras) as context."""
    segs = snap.segment_arrays()
    cameras = (
        snap.segment_cameras() if options.calibrate_by == "camera" and options.calibrate != "none" else None
    )
    return apply_rule(
        sims, is_anomaly, snap.manifest.logit_scale, options,
        video_ids=segs.video, position=segs.segment,
        frame_sims=frame_sims, frame_row=segs.frame_row, n_frames=segs.n_frames,
        neighbours=neighbours, novelty=novelty, cameras=cameras,
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
    novelty: np.ndarray | None = None,
    labels: LabelSet | None = None,
) -> DetectResult:
    """Apply rules, aggregation and metrics to precomputed class similarities (no model involved).

    Everything per segment stays in numpy; only the video table (one row per video) is pandas.
    With ``labels`` (reviewer labels turned into examples), metrics leave out the labelled
    segments and the videos that hold them.
    """
    o = options
    is_anomaly = np.array(spec.is_anomaly)
    segs = snap.segment_arrays()
    videos = snap.videos
    res = apply_options(snap, sims, is_anomaly, o, frame_sims, neighbours, novelty)
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
    if novelty is not None:
        seg_cols["novelty"] = np.asarray(novelty, dtype=np.float64)
    reviewed = None
    if labels is not None:
        rows = label_rows(snap, labels)
        reviewed = np.zeros(len(segs), dtype=bool)
        reviewed[rows[rows >= 0]] = True
        kinds = np.full(len(segs), "", dtype=object)
        kinds[rows[rows >= 0]] = [lab.label for lab, r in zip(labels.labels, rows, strict=True) if r >= 0]
        seg_cols["reviewed"] = kinds
    vids = _video_table(videos, agg, res, spec, names, ids)
    truth = None
    if annotations is not None:
        seg_frame = pd.DataFrame(
            {"video_id": ids[segs.video], "start_frame": segs.start_frame, "end_frame": segs.end_frame}
        )
        truth = build_ground_truth(seg_frame, videos, annotations)
        fill_from_annotations(vids, videos, truth)
    metrics = evaluate(vids, res.score, res.anomalous, truth, ids, exclude=reviewed, segment_video=segs.video)
    settings = {
        **o.to_dict(),
        "logit_scale": snap.manifest.logit_scale,
        "model": snap.manifest.identity.describe(),
        "index": str(snap.path),
        "prompt_set": spec.source,
    }
    if labels is not None:
        settings["labels"] = {"version": labels.version, "used": len(labels.labels)}
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
