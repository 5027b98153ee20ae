"""Anomaly detection over an index: prompt similarities, scoring rules, video decisions, metrics."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vadindex.aggregate import aggregate_videos
from vadindex.config import (
    DEFAULT_DEVICE,
    DEFAULT_PROMPT_TOP_K,
    DEFAULT_RULE,
    DEFAULT_SEGMENT_THRESHOLD,
    DEFAULT_VIDEO_RATIO,
)
from vadindex.encoder import Encoder
from vadindex.metrics import binary_metrics
from vadindex.prompts import PromptSet, build_prompt_set
from vadindex.scoring import RuleParams, decide_segments, score_segments
from vadindex.store import IndexSnapshot, open_index, write_text_atomic


@dataclass(frozen=True)
class DetectResult:
    """Segment and video decisions, and metrics when the index has labels."""

    segments: pd.DataFrame
    videos: pd.DataFrame
    metrics: dict[str, Any] | None
    prompts: PromptSet
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``videos``, ``segments``, ``metrics`` (when labelled), ``settings``."""
        out: dict[str, Any] = {
            "settings": self.settings,
            "prompts": {"anomaly": list(self.prompts.anomaly), "normal": list(self.prompts.normal)},
            "videos": _records(self.videos),
            "segments": _records(self.segments),
        }
        if self.metrics is not None:
            out["metrics"] = self.metrics
        return out


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    # pandas' own JSON writer turns NA into null and numpy scalars into plain numbers.
    return json.loads(frame.to_json(orient="records", double_precision=6))


def similarity_matrix(snap: IndexSnapshot, text_vectors: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Cosine similarity of every segment to every prompt, ``(n_segments, n_prompts)`` float32.

    The stored float16 vectors are multiplied in float32 chunks, so memory stays bounded by the
    chunk and the result.
    """
    t = np.asarray(text_vectors, dtype=np.float32)
    out = np.empty((snap.manifest.n_segments, len(t)), dtype=np.float32)
    for first, block in snap.iter_vectors(chunk):
        out[first : first + len(block)] = np.asarray(block, dtype=np.float32) @ t.T
    return out


def detect(
    index: str | os.PathLike[str] | IndexSnapshot,
    prompts: str | list[str] | tuple[str, ...],
    *,
    normal_prompts: str | list[str] | tuple[str, ...] | None = None,
    rule: str = DEFAULT_RULE,
    segment_threshold: float = DEFAULT_SEGMENT_THRESHOLD,
    top_k: int = DEFAULT_PROMPT_TOP_K,
    video_ratio: float = DEFAULT_VIDEO_RATIO,
    device: str = DEFAULT_DEVICE,
    pretrained: str | None = None,
    encoder: Encoder | None = None,
) -> DetectResult:
    """Score every segment of an index against anomaly and normal prompts and decide.

    Only the prompts are encoded; segment vectors come from the index.

    Args:
        index: index folder or an open snapshot.
        prompts: anomaly prompts (``;``-separated text, a list, or a file).
        normal_prompts: normal prompts; the built-in set when ``None``.
        rule: ``threshold``, ``topk`` or ``balanced`` (see :mod:`vadindex.scoring`).
        segment_threshold: threshold on the segment score.
        top_k: prompts that vote in the ``topk`` rule.
        video_ratio: fraction of anomalous segments from which a video is anomalous.
        device: device for the text encoder.
        pretrained: weights, when the index's checkpoint moved.
        encoder: an already-loaded encoder (must be the index's model).

    Returns:
        A :class:`DetectResult`.
    """
    snap = index if isinstance(index, IndexSnapshot) else open_index(index)
    prompt_set = build_prompt_set(prompts, normal_prompts)
    params = RuleParams(rule, segment_threshold, top_k)
    params.validate(len(prompt_set.texts))
    if not 0.0 < video_ratio <= 1.0:
        from vadindex.errors import InputError

        raise InputError(f"--video-ratio must be in (0, 1], got {video_ratio}")
    from vadindex.search import check_encoder, load_index_encoder

    if encoder is None:
        encoder = load_index_encoder(snap, device, pretrained)
    else:
        check_encoder(snap, encoder)
    text = encoder.encode_texts(prompt_set.texts)
    sims = similarity_matrix(snap, text)
    return decide(snap, sims, prompt_set, params, video_ratio)


def decide(
    snap: IndexSnapshot, sims: np.ndarray, prompt_set: PromptSet, params: RuleParams, video_ratio: float
) -> DetectResult:
    """Apply the rules to a precomputed similarity matrix (no model involved)."""
    is_anomaly = np.array(prompt_set.is_anomaly)
    segs = snap.segments
    scores = score_segments(sims, is_anomaly, snap.manifest.logit_scale)
    anomalous = decide_segments(sims, is_anomaly, scores, params)
    texts = np.array(prompt_set.texts, dtype=object)
    seg_out = pd.DataFrame(
        {
            "video": segs["video"].to_numpy(),
            "segment": segs["segment"].to_numpy(),
            "start": segs["start"].to_numpy(),
            "end": segs["end"].to_numpy(),
            "score": scores.score,
            "anomalous": anomalous,
            "best_prompt": texts[scores.best_prompt] if len(segs) else [],
            "best_anomaly_sim": scores.best_anomaly,
            "best_normal_sim": scores.best_normal,
            "label": segs["label"].to_numpy(),
            "video_id": segs["video_id"].to_numpy(),
        }
    )
    vids = aggregate_videos(segs["video_id"].to_numpy(), scores.score, anomalous, video_ratio)
    meta = snap.videos.set_index("video_id")
    vids.insert(0, "video", meta.loc[vids["video_id"], "video"].to_numpy())
    vids = vids.rename(columns={"ratio": "score"})
    vids["label"] = pd.array(meta.loc[vids["video_id"], "label"].to_numpy(), dtype="Int8")
    vids["class"] = meta.loc[vids["video_id"], "class"].to_numpy()
    vids = vids[["video", "score", "anomalous", "label", "class", "max_score", "n_segments", "n_anomalous", "video_id"]]
    metrics = None
    labelled = vids["label"].notna().to_numpy()
    if labelled.any():
        metrics = binary_metrics(vids.loc[labelled, "label"].astype(int).to_numpy(), vids.loc[labelled, "anomalous"])
        metrics["level"] = "video"
        metrics["unlabelled_videos"] = int((~labelled).sum())
    settings = {
        "rule": params.rule,
        "segment_threshold": params.segment_threshold,
        "top_k": params.top_k,
        "video_ratio": video_ratio,
        "logit_scale": snap.manifest.logit_scale,
        "model": snap.manifest.identity.describe(),
        "index": str(snap.path),
    }
    return DetectResult(seg_out, vids, metrics, prompt_set, settings)


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
