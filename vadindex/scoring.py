"""Scoring rules: prompt similarities to per-segment anomaly scores and decisions (pure numpy).

Notation: ``S[i, p]`` is the cosine similarity of segment ``i`` to prompt ``p``; ``A`` is the set of
anomaly prompts and ``N`` the normal ones; ``lam`` is CLIP's logit scale (``exp`` of the learned
temperature, 100 for the OpenAI and LAION models).

- score (every rule):  ``a_i = sum_{p in A} softmax_p(lam * S[i, :])``, in [0, 1].
- ``threshold``:       anomalous when ``a_i >= tau`` (``--segment-threshold``).
- ``topk``:            the ``k`` prompts most similar to the segment vote; anomalous when anomaly
                       prompts hold a strict majority, ``|topk_p S[i, p] & A| > k / 2`` (``--top-k``).
- ``balanced``:        anomalous when ``a_i >= tau`` and the best anomaly prompt beats the best
                       normal one, ``max_{p in A} S[i, p] > max_{p in N} S[i, p]``, so a large set of
                       anomaly prompts cannot win by sheer number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vadindex.config import DEFAULT_PROMPT_TOP_K, DEFAULT_RULE, DEFAULT_SEGMENT_THRESHOLD
from vadindex.errors import InputError

RULES = ("threshold", "topk", "balanced")


@dataclass(frozen=True)
class RuleParams:
    """Which segment rule to apply, and its parameters."""

    rule: str = DEFAULT_RULE
    segment_threshold: float = DEFAULT_SEGMENT_THRESHOLD
    top_k: int = DEFAULT_PROMPT_TOP_K

    def validate(self, n_prompts: int | None = None) -> None:
        """Raise :class:`InputError` on an unknown rule or a parameter out of range."""
        if self.rule not in RULES:
            raise InputError(f"unknown rule {self.rule!r}; choose one of {', '.join(RULES)}")
        if not 0.0 <= self.segment_threshold <= 1.0:
            raise InputError(f"--segment-threshold must be in [0, 1], got {self.segment_threshold}")
        if self.top_k < 1:
            raise InputError(f"--top-k must be at least 1, got {self.top_k}")
        if n_prompts is not None and self.rule == "topk" and self.top_k > n_prompts:
            raise InputError(f"--top-k {self.top_k} is more than the {n_prompts} prompts")


@dataclass(frozen=True)
class SegmentScores:
    """Per-segment quantities every rule is built from."""

    score: np.ndarray  # a_i, softmax mass on anomaly prompts
    best_anomaly: np.ndarray  # max_{p in A} S[i, p]
    best_normal: np.ndarray  # max_{p in N} S[i, p]
    best_prompt: np.ndarray  # argmax_p S[i, p] over all prompts


def softmax_anomaly_score(sims: np.ndarray, is_anomaly: np.ndarray, logit_scale: float) -> np.ndarray:
    """``a_i = sum_{p in A} softmax_p(logit_scale * sims[i, :])``, computed stably."""
    logits = logit_scale * np.asarray(sims, dtype=np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e[:, is_anomaly].sum(axis=1) / e.sum(axis=1)


def score_segments(sims: np.ndarray, is_anomaly: np.ndarray, logit_scale: float) -> SegmentScores:
    """Compute :class:`SegmentScores` from an ``(n_segments, n_prompts)`` similarity matrix."""
    sims = np.asarray(sims, dtype=np.float32)
    is_anomaly = np.asarray(is_anomaly, dtype=bool)
    if sims.ndim != 2 or sims.shape[1] != len(is_anomaly):
        raise ValueError("sims must be (n_segments, n_prompts) with one flag per prompt")
    if not is_anomaly.any() or is_anomaly.all():
        raise InputError("scoring needs at least one anomaly prompt and one normal prompt")
    return SegmentScores(
        score=softmax_anomaly_score(sims, is_anomaly, logit_scale),
        best_anomaly=sims[:, is_anomaly].max(axis=1),
        best_normal=sims[:, ~is_anomaly].max(axis=1),
        best_prompt=sims.argmax(axis=1),
    )


def topk_votes(sims: np.ndarray, is_anomaly: np.ndarray, k: int) -> np.ndarray:
    """Number of anomaly prompts among the ``k`` prompts most similar to each segment."""
    k = min(k, sims.shape[1])
    top = np.argpartition(-np.asarray(sims), k - 1, axis=1)[:, :k]
    return np.asarray(is_anomaly, dtype=bool)[top].sum(axis=1)


def decide_segments(
    sims: np.ndarray, is_anomaly: np.ndarray, scores: SegmentScores, params: RuleParams
) -> np.ndarray:
    """Apply ``params.rule`` to every segment; returns a boolean array."""
    params.validate(sims.shape[1])
    if params.rule == "threshold":
        return scores.score >= params.segment_threshold
    if params.rule == "topk":
        return topk_votes(sims, is_anomaly, params.top_k) * 2 > min(params.top_k, sims.shape[1])
    return (scores.score >= params.segment_threshold) & (scores.best_anomaly > scores.best_normal)
