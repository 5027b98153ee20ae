"""Anomaly detection over an index: prompt similarities, scoring rules, video decisions, metrics."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
import pandas as pd

from vadindex.aggregate import aggregate_codes, check_video_options
from vadindex.config import (
    DEFAULT_CALIBRATE,
    DEFAULT_DEVICE,
    DEFAULT_FRAME_VOTES,
    DEFAULT_KNN_ALPHA,
    DEFAULT_KNN_K,
    DEFAULT_PROMPT_TOP_K,
    DEFAULT_RULE,
    DEFAULT_SEGMENT_THRESHOLD,
    DEFAULT_SMOOTH,
    DEFAULT_VIDEO_AGG,
    DEFAULT_VIDEO_RATIO,
    DEFAULT_VIDEO_TOP_K,
)
from vadindex.encoder import Encoder
from vadindex.errors import InputError
from vadindex.metrics import binary_metrics, roc_auc, score_metrics
from vadindex.prompts import PromptSet
from vadindex.promptsets import ClassPromptSet, class_similarities, from_prompt_set, load_prompt_set
from vadindex.scoring import RuleParams, RuleResult, apply_rule
from vadindex.store import IndexSnapshot, open_index, write_text_atomic

if TYPE_CHECKING:
    from vadindex.annotations import Annotation, GroundTruth

#: Every option of ``vadindex detect`` that a ``--config`` file may set, with its default.
DETECT_DEFAULTS: dict[str, Any] = {
    "prompts": None,
    "normal_prompts": None,
    "rule": DEFAULT_RULE,
    "segment_threshold": DEFAULT_SEGMENT_THRESHOLD,
    "top_k": DEFAULT_PROMPT_TOP_K,
    "calibrate": DEFAULT_CALIBRATE,
    "smooth": DEFAULT_SMOOTH,
    "knn_k": DEFAULT_KNN_K,
    "knn_alpha": DEFAULT_KNN_ALPHA,
    "frame_votes": DEFAULT_FRAME_VOTES,
    "video_agg": DEFAULT_VIDEO_AGG,
    "video_ratio": DEFAULT_VIDEO_RATIO,
    "video_threshold": None,
    "video_top_k": DEFAULT_VIDEO_TOP_K,
    "annotations": None,
}
#: Type of the options above whose default is ``None`` but whose value is a number.
CONFIG_NUMBERS: dict[str, type] = {"video_threshold": float}
#: Sections of a config file that ``detect`` ignores (``vadindex tune`` writes its report there).
CONFIG_IGNORED = ("tuning",)


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
        return pd.DataFrame({c: cols[c] for c in SEGMENT_OUTPUT_COLUMNS})

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
        if segments not in SEGMENT_CHOICES:
            raise InputError(f"segments must be one of {', '.join(SEGMENT_CHOICES)}, got {segments!r}")
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
#: Which segments JSON output lists.
SEGMENT_CHOICES = ("all", "anomalous", "none")


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


def similarity_matrix(snap: IndexSnapshot, text_vectors: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Cosine similarity of every segment to every prompt, ``(n_segments, n_prompts)`` float32.

    The stored float16 vectors are multiplied in float32 chunks, so memory stays bounded by the
    chunk and the result.
    """
    from vadindex.cache import _multiply

    return _multiply(snap, "segments", text_vectors, chunk).T


def detect(
    index: str | os.PathLike[str] | IndexSnapshot,
    prompts: str | list[str] | tuple[str, ...] | ClassPromptSet,
    *,
    normal_prompts: str | list[str] | tuple[str, ...] | None = None,
    rule: str = DEFAULT_RULE,
    segment_threshold: float = DEFAULT_SEGMENT_THRESHOLD,
    top_k: int = DEFAULT_PROMPT_TOP_K,
    video_ratio: float = DEFAULT_VIDEO_RATIO,
    device: str = DEFAULT_DEVICE,
    pretrained: str | None = None,
    encoder: Encoder | None = None,
    calibrate: str = DEFAULT_CALIBRATE,
    smooth: int = DEFAULT_SMOOTH,
    knn_k: int = DEFAULT_KNN_K,
    knn_alpha: float = DEFAULT_KNN_ALPHA,
    frame_votes: int = DEFAULT_FRAME_VOTES,
    video_agg: str = DEFAULT_VIDEO_AGG,
    video_threshold: float | None = None,
    video_top_k: int = DEFAULT_VIDEO_TOP_K,
    annotations: str | os.PathLike[str] | list[Annotation] | None = None,
    annotation_format: str = "auto",
    use_cache: bool = True,
) -> DetectResult:
    """Score every segment of an index against anomaly and normal prompts and decide.

    Only the prompts are encoded, and only those not in the index's cache (see
    :mod:`vadindex.cache`): with every text cached no model is loaded, so changing thresholds,
    rules or aggregation is instant.

    Args:
        index: index folder or an open snapshot.
        prompts: a built-in prompt set (``ucf-crime``, ``xd-violence``, ``general``), a YAML set,
            ``;``-separated anomaly prompts, a list, or a text file (see :mod:`vadindex.promptsets`).
        normal_prompts: normal prompts; the set's (or the built-in ones) when ``None``.
        rule: ``threshold``, ``topk``, ``balanced`` or ``frame-vote`` (see :mod:`vadindex.scoring`).
        segment_threshold: threshold on the segment score.
        top_k: classes that vote in the ``topk`` rule.
        video_ratio: fraction of anomalous segments from which a video is anomalous (``ratio``).
        device: device for the text encoder.
        pretrained: weights, when the index's checkpoint moved.
        encoder: an already-loaded encoder (must be the index's model).
        calibrate: ``none``, ``zscore`` or ``percentile`` per-class calibration over the index.
        smooth: temporal smoothing half-width in segments.
        knn_k: neighbours blended into each score (0: off); ``knn_alpha`` is their weight.
        frame_votes: frames that must pass the threshold under ``frame-vote``.
        video_agg: ``ratio``, ``max`` or ``topk-mean`` (see :mod:`vadindex.aggregate`).
        video_threshold: threshold of ``max``/``topk-mean``; the segment threshold when ``None``.
        video_top_k: segments averaged by ``topk-mean``.
        annotations: a UCF-Crime or XD-Violence temporal annotation file (or parsed annotations),
            for frame-level ``frame_auc``/``frame_ap`` and segment-level metrics.
        annotation_format: ``auto``, ``ucf-crime`` or ``xd-violence``.
        use_cache: read and write the index's similarity cache.

    Returns:
        A :class:`DetectResult`.
    """
    snap = index if isinstance(index, IndexSnapshot) else open_snapshot(index)
    spec = load_prompt_set(prompts, normal_prompts)
    params = RuleParams(rule, segment_threshold, top_k, calibrate, smooth, knn_k, knn_alpha, frame_votes)
    params.validate(len(spec.classes))
    check_video_options(video_agg, video_ratio, video_top_k, video_threshold)
    truth_source = annotations
    if isinstance(annotations, (str, os.PathLike)):
        from vadindex.annotations import load_annotations

        truth_source = load_annotations(annotations, annotation_format)
    sims, frame_sims = compute_class_similarities(
        snap, spec, frames=rule == "frame-vote", encoder=encoder, device=device, pretrained=pretrained,
        use_cache=use_cache,
    )  # fmt: skip
    neighbours = load_neighbours(snap, knn_k, use_cache) if knn_k > 0 else None
    return decide_classes(
        snap, sims, spec, params, frame_sims=frame_sims, neighbours=neighbours, video_agg=video_agg,
        video_ratio=video_ratio, video_threshold=video_threshold, video_top_k=video_top_k,
        annotations=truth_source,  # type: ignore[arg-type]
    )  # fmt: skip


def open_snapshot(path: str | os.PathLike[str], retries: int = 3) -> IndexSnapshot:
    """Open an index for scoring: like :func:`vadindex.store.open_index` but without the FAISS file.

    Detection reads only the metadata, the cache and (on a cache miss) the vector parts, so it skips
    importing faiss, which would cost a noticeable part of an instant rescoring run.
    """
    return open_index(path, retries, with_faiss=False)


def compute_class_similarities(
    snap: IndexSnapshot,
    spec: ClassPromptSet,
    *,
    frames: bool = False,
    encoder: Encoder | None = None,
    device: str = DEFAULT_DEVICE,
    pretrained: str | None = None,
    use_cache: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Similarity of every segment (and, with ``frames``, every frame) to every class of ``spec``.

    Text embeddings and text similarities come from the index's cache; the model is loaded only
    to encode texts that are not cached yet.

    Returns:
        ``(n_segments, n_classes)`` and, with ``frames``, ``(n_frames, n_classes)`` float32 arrays.
    """
    from vadindex.search import check_encoder

    if encoder is not None:
        check_encoder(snap, encoder)
    loaded: list[Encoder] = [encoder] if encoder is not None else []

    def get_encoder() -> Encoder:
        if not loaded:
            from vadindex.search import load_index_encoder

            loaded.append(load_index_encoder(snap, device, pretrained))
        return loaded[0]

    texts = spec.texts
    if use_cache:
        from vadindex.cache import IndexCache

        cache = IndexCache(snap)
        kinds = ("segments", "frames") if frames else ("segments",)
        for kind in kinds:
            if cache.uncached(kind, texts):
                # The vectors are read after the model has loaded (seconds): have the kernel fetch
                # them from disk meanwhile.
                snap.prefetch_vectors(kind)
        text_vectors = cache.text_vectors(texts, get_encoder)
        text_sims = cache.similarities("segments", texts, text_vectors)
        frame_text_sims = cache.similarities("frames", texts, text_vectors) if frames else None
    else:
        from vadindex.cache import _multiply

        text_vectors = np.asarray(get_encoder().encode_texts(texts), dtype=np.float32)
        text_sims = _multiply(snap, "segments", text_vectors).T
        frame_text_sims = _multiply(snap, "frames", text_vectors).T if frames else None
    weights = spec.text_weights()
    sims = class_similarities(text_sims, text_vectors, weights)
    frame_sims = (
        class_similarities(frame_text_sims, text_vectors, weights) if frame_text_sims is not None else None
    )
    return sims, frame_sims


def load_neighbours(snap: IndexSnapshot, k: int, use_cache: bool = True) -> np.ndarray:
    """Each segment's ``k`` nearest other segments in the index (cached in the index folder)."""
    if use_cache:
        from vadindex.cache import IndexCache

        return IndexCache(snap).neighbours(k)
    from vadindex.cache import nearest_neighbours

    return nearest_neighbours(snap.vectors(), k)


def decide(
    snap: IndexSnapshot, sims: np.ndarray, prompt_set: PromptSet, params: RuleParams, video_ratio: float
) -> DetectResult:
    """Apply the rules to a precomputed ``(n_segments, n_prompts)`` similarity matrix (no model involved)."""
    spec = from_prompt_set(prompt_set) if isinstance(prompt_set, PromptSet) else prompt_set
    result = decide_classes(snap, sims, spec, params, video_ratio=video_ratio)
    return DetectResult(result.segment_columns, result.videos, result.metrics, prompt_set, result.settings,
                        result.class_sims, result.class_names, result.video_names, result.video_ids)  # fmt: skip


def apply_params(
    snap: IndexSnapshot,
    sims: np.ndarray,
    is_anomaly: np.ndarray,
    params: RuleParams,
    frame_sims: np.ndarray | None = None,
    neighbours: np.ndarray | None = None,
) -> RuleResult:
    """:func:`vadindex.scoring.apply_rule` with the index's segment table as context."""
    segs = snap.segment_arrays()
    return apply_rule(
        sims, is_anomaly, snap.manifest.logit_scale, params,
        video_ids=segs.video, position=segs.segment,
        frame_sims=frame_sims, frame_row=segs.frame_row, n_frames=segs.n_frames,
        neighbours=neighbours,
    )  # fmt: skip


def decide_classes(
    snap: IndexSnapshot,
    sims: np.ndarray,
    spec: ClassPromptSet,
    params: RuleParams,
    *,
    frame_sims: np.ndarray | None = None,
    neighbours: np.ndarray | None = None,
    video_agg: str = DEFAULT_VIDEO_AGG,
    video_ratio: float = DEFAULT_VIDEO_RATIO,
    video_threshold: float | None = None,
    video_top_k: int = DEFAULT_VIDEO_TOP_K,
    annotations: list[Annotation] | None = None,
) -> DetectResult:
    """Apply rules, aggregation and metrics to precomputed class similarities (no model involved).

    Everything per segment stays in numpy; only the video table (one row per video) is pandas.
    """
    check_video_options(video_agg, video_ratio, video_top_k, video_threshold)
    is_anomaly = np.array(spec.is_anomaly)
    segs = snap.segment_arrays()
    videos = snap.videos
    n_videos = len(videos)
    res = apply_params(snap, sims, is_anomaly, params, frame_sims, neighbours)
    v_threshold = params.segment_threshold if video_threshold is None else video_threshold
    agg = aggregate_codes(
        segs.video, n_videos, res.score, res.anomalous, method=video_agg, video_ratio=video_ratio,
        video_threshold=v_threshold, top_k=video_top_k,
    )  # fmt: skip
    ids = videos["video_id"].astype(str).to_numpy() if n_videos else np.zeros(0, dtype=object)
    names = videos["video"].astype(str).to_numpy() if n_videos else np.zeros(0, dtype=object)
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
    # Which anomaly class fired in each video: the one of its highest-scoring segment (the first
    # such segment in index order on ties).
    class_names = np.array(spec.class_names, dtype=object)
    top = agg.top_segment
    fired = np.full(n_videos, None, dtype=object)
    has = top >= 0
    fired[has] = class_names[res.best_anomaly_class[top[has]]]
    present = agg.n_segments > 0
    vids = pd.DataFrame(
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
    truth = None
    if annotations is not None:
        from vadindex.annotations import build_ground_truth

        seg_frame = pd.DataFrame(
            {"video_id": ids[segs.video], "start_frame": segs.start_frame, "end_frame": segs.end_frame}
        )
        truth = build_ground_truth(seg_frame, videos, annotations)
        _fill_from_annotations(vids, videos, truth)
    metrics = evaluate(vids, res.score, res.anomalous, truth, ids)
    settings = {
        "rule": params.rule,
        "segment_threshold": params.segment_threshold,
        "top_k": params.top_k,
        "calibrate": params.calibrate,
        "smooth": params.smooth,
        "knn_k": params.knn_k,
        "knn_alpha": params.knn_alpha,
        "frame_votes": params.frame_votes,
        "video_agg": video_agg,
        "video_ratio": video_ratio,
        "video_threshold": video_threshold,
        "video_top_k": video_top_k,
        "logit_scale": snap.manifest.logit_scale,
        "model": snap.manifest.identity.describe(),
        "index": str(snap.path),
        "prompt_set": spec.source,
    }
    return DetectResult(seg_cols, vids, metrics, spec, settings, np.asarray(sims), tuple(spec.class_names),
                        names, ids)  # fmt: skip


def _fill_from_annotations(vids: pd.DataFrame, videos: pd.DataFrame, truth: GroundTruth) -> None:
    """Label and class videos that the index left unlabelled from the annotation file."""
    pos = pd.Series(np.arange(len(videos)), index=videos["video_id"].astype(str).to_numpy())
    at = pos.reindex(vids["video_id"].astype(str)).to_numpy()
    ann_label = truth.video_label[at]
    missing = vids["label"].isna().to_numpy() & (ann_label >= 0)
    labels = vids["label"].copy()
    labels[missing] = ann_label[missing]
    vids["label"] = labels.astype("Int8")
    classes = np.array(vids["class"].astype(object).to_numpy(), dtype=object)
    for i in np.flatnonzero(pd.isna(classes)):
        classes[i] = truth.video_class[at[i]]
    vids["class"] = classes


def evaluate(
    vids: pd.DataFrame,
    seg_scores: np.ndarray,
    seg_anomalous: np.ndarray,
    truth: GroundTruth | None,
    video_ids: np.ndarray | None = None,
) -> dict[str, Any] | None:
    """Video-level metrics (flat), plus frame, segment and per-class metrics with annotations.

    Args:
        vids: video table with ``label``, ``anomalous``, ``score``, ``class``, ``video_id``.
        seg_scores, seg_anomalous: final segment scores and decisions, in index row order.
        truth: matched annotations, or ``None``.
        video_ids: the index's video ids in the order ``truth`` uses.

    Returns:
        ``None`` when nothing is labelled.
    """
    labelled = vids["label"].notna().to_numpy()
    if not labelled.any() and truth is None:
        return None
    y = vids.loc[labelled, "label"].astype(int).to_numpy()
    metrics: dict[str, Any] = binary_metrics(y, vids.loc[labelled, "anomalous"].to_numpy(bool))
    metrics["level"] = "video"
    metrics["unlabelled_videos"] = int((~labelled).sum())
    vscore = vids.loc[labelled, "score"].to_numpy(np.float64)
    metrics["video_auc"] = roc_auc(y, np.nan_to_num(vscore, nan=-np.inf))
    if truth is not None:
        scores = np.asarray(seg_scores, dtype=np.float64)
        frame = score_metrics(truth.group_label, scores[truth.group_segment], truth.group_count)
        metrics["frame_auc"], metrics["frame_ap"] = frame["auc"], frame["ap"]
        metrics["frames"], metrics["frame_positives"] = frame["n"], frame["positives"]
        known = truth.segment_label >= 0
        seg = binary_metrics(truth.segment_label[known] == 1, np.asarray(seg_anomalous)[known])
        seg.update(
            {
                k: v
                for k, v in score_metrics(truth.segment_label[known] == 1, scores[known]).items()
                if k in ("auc", "ap")
            }
        )
        metrics["segment"] = seg
        metrics["annotated_videos"] = int((truth.video_label >= 0).sum())
        metrics["annotations_missing"] = len(truth.missing)
        if truth.missing:
            metrics["annotations_missing_examples"] = truth.missing[:5]
    metrics["per_class"] = _per_class(vids[labelled], truth, video_ids, seg_scores)
    return metrics


def _per_class(
    vids: pd.DataFrame, truth: GroundTruth | None, video_ids: np.ndarray | None, seg_scores: np.ndarray
) -> dict[str, dict[str, Any]]:
    """Per ground-truth class: videos, how many were flagged (recall, or the false-positive rate of
    normal classes) and, with annotations, the frame AUC of the class's videos pooled with all normal
    videos, as the benchmarks report per-class AUC."""
    labels = vids["label"].astype(int).to_numpy()
    raw = vids["class"].astype(object).to_numpy()
    names = np.array(
        [
            str(c) if not pd.isna(c) else ("Normal" if lab == 0 else "Anomaly")
            for c, lab in zip(raw, labels, strict=True)
        ],
        dtype=object,
    )
    flagged = vids["anomalous"].to_numpy(bool)
    frame_video = None
    if truth is not None and video_ids is not None:
        where = pd.Series(np.arange(len(video_ids)), index=video_ids)
        positions = where.reindex(vids["video_id"].astype(str)).to_numpy()
        frame_video = truth.group_video
    scores = np.asarray(seg_scores, dtype=np.float64)
    out: dict[str, dict[str, Any]] = {}
    for cls in sorted(set(names)):
        mask = names == cls
        normal = bool((labels[mask] == 0).all())
        rate = "false_positive_rate" if normal else "recall"
        entry: dict[str, Any] = {"videos": int(mask.sum()), "flagged": int(flagged[mask].sum()),
                                 rate: float(flagged[mask].mean())}  # fmt: skip
        if frame_video is not None and truth is not None and not normal:
            pool = positions[mask | (labels == 0)]
            keep = np.isin(frame_video, pool[~np.isnan(pool)].astype(np.int64))
            if keep.any():
                entry["frame_auc"] = roc_auc(
                    truth.group_label[keep], scores[truth.group_segment[keep]], truth.group_count[keep]
                )
        out[cls] = entry
    return out


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


def load_detect_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``--config`` YAML file (as ``vadindex tune`` writes) into ``detect`` keyword arguments.

    Keys are the option names with ``_`` or ``-`` (``segment_threshold``, ``video-agg``...); the
    ``tuning`` section is ignored. Only keys present in the file are returned, so explicit options
    can override them.
    """
    import yaml

    from vadindex.promptsets import safe_load_yaml

    file = Path(path).expanduser()
    try:
        data = safe_load_yaml(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{file}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{file}: cannot read config ({exc})") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{file}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{file}: a config must be a mapping of option names to values")
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name in CONFIG_IGNORED:
            continue
        if name not in DETECT_DEFAULTS:
            raise InputError(f"{file}: unknown option {key!r}; known: {', '.join(sorted(DETECT_DEFAULTS))}")
        default = DETECT_DEFAULTS[name] if name not in CONFIG_NUMBERS else CONFIG_NUMBERS[name]()
        if isinstance(default, bool) or default is None or value is None:
            out[name] = value
            continue
        try:
            out[name] = type(default)(value) if not isinstance(default, str) else str(value)
        except (TypeError, ValueError):
            raise InputError(f"{file}: {key} must be a {type(default).__name__}, got {value!r}") from None
        if isinstance(default, int) and not isinstance(value, int):
            raise InputError(f"{file}: {key} must be a whole number, got {value!r}")
    if isinstance(out.get("prompts"), dict):
        from vadindex.promptsets import parse_prompt_yaml

        out["prompts"] = parse_prompt_yaml(out["prompts"], f"{file}: prompts")
    if out.get("annotations"):
        ann = Path(str(out["annotations"])).expanduser()
        out["annotations"] = str(ann if ann.is_absolute() else file.parent / ann)
    return out
