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

The full pipeline (:func:`apply_rule`) works on classes ``c`` (a class is one prompt, or an ensemble of
prompts and templates, see :mod:`vadindex.promptsets`) and adds, in this order:

1. Calibration (``--calibrate``), per class against its distribution over all ``n`` segments of the
   index, so one threshold means the same for every prompt and model:
   ``zscore``: ``Z[i, c] = (S[i, c] - mean_j S[j, c]) / std_j S[j, c]``;
   ``percentile``: ``P[i, c] = #{j : S[j, c] <= S[i, c]} / n`` (empirical CDF, in (0, 1]).
   A calibrated score is ``a_i = max_{c in A} Z[i, c]`` (or ``P``): how unusually close the segment is
   to its nearest anomaly class; ``balanced`` then requires ``max_A Z > max_N Z``. Without
   calibration the score is the softmax mass above.
2. ``frame-vote``: each stored frame ``f`` gets a score ``a_f`` as in 1 (frame calibration is against
   all frames); segment ``i`` with frames ``F_i`` scores ``a_i = m-th largest {a_f : f in F_i}`` with
   ``m = min(--frame-votes, |F_i|)``, so ``a_i >= tau`` exactly when at least ``m`` frames vote
   anomalous. ``topk`` keeps the score ``a_i`` of 1 but decides by the vote share
   ``v_i = |topk_c S[i, c] & A| / k`` (on calibrated values when calibrated): ``v_i > 1/2``.
3. kNN refinement (``--knn-k K``, ``--knn-alpha alpha``), with ``N_K(i)`` the ``K`` segments of the
   index nearest to segment ``i`` (cosine of the segment vectors, itself excluded):
   ``a'_i = (1 - alpha) a_i + alpha * mean_{j in N_K(i)} a_j``.
4. Temporal smoothing (``--smooth h``): the mean over the segments of the same video at most ``h``
   positions away, ``a''_i = mean_{j in v(i), |pos_j - pos_i| <= h} a'_j`` (windows shrink at the ends).

Steps 3 and 4 are linear; ``balanced`` applies them to its margin ``max_A - max_N`` as well, and
``topk`` to its vote share.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vadindex.config import CALIBRATIONS
from vadindex.detect.options import DetectOptions
from vadindex.errors import InputError


@dataclass(frozen=True)
class SegmentScores:
    """Per-segment quantities every rule is built from."""

    score: np.ndarray  # a_i, softmax mass on anomaly prompts
    best_anomaly: np.ndarray  # max_{p in A} S[i, p]
    best_normal: np.ndarray  # max_{p in N} S[i, p]
    best_prompt: np.ndarray  # argmax_p S[i, p] over all prompts


def by_class(x: np.ndarray) -> np.ndarray:
    """``(n, C)`` values as a ``(C, n)`` C-contiguous array.

    Reductions over a handful of classes are much faster across contiguous per-class rows than
    along short rows (at a million segments, 2 ms against 45 ms for a maximum), so the rules work
    class by class on this layout.
    """
    return np.ascontiguousarray(np.asarray(x).T)


def argmax_rows(cols: np.ndarray) -> np.ndarray:
    """``argmax`` over the first axis of a ``(C, n)`` array (the first maximum on ties), as int64."""
    best = cols.max(axis=0)
    idx = np.zeros(cols.shape[1], dtype=np.int64)
    hit = np.empty(cols.shape[1], dtype=bool)
    for c in range(len(cols) - 1, -1, -1):  # backwards, so the first maximum is written last
        np.equal(cols[c], best, out=hit)
        np.copyto(idx, c, where=hit)
    return idx


def softmax_anomaly_score(
    sims: np.ndarray, is_anomaly: np.ndarray, logit_scale: float, cols: np.ndarray | None = None
) -> np.ndarray:
    """``a_i = sum_{p in A} softmax_p(logit_scale * sims[i, :])``, computed stably.

    In float32 (a relative error near 1e-6, far below the float16 precision of the stored vectors
    and any threshold's resolution), class by class. Returned as float64.

    Args:
        cols: ``by_class(sims)`` when the caller has it already.
    """
    is_anomaly = np.asarray(is_anomaly, dtype=bool)
    t = by_class(np.asarray(sims, dtype=np.float32)) if cols is None else cols.astype(np.float32, copy=False)
    n = t.shape[1]
    top = t.max(axis=0) if len(t) else np.zeros(n, np.float32)
    lam = np.float32(logit_scale)
    mass = {True: np.zeros(n, np.float32), False: np.zeros(n, np.float32)}
    buf = np.empty(n, np.float32)
    for c, anomaly in enumerate(is_anomaly):
        np.subtract(t[c], top, out=buf)
        buf *= lam
        np.exp(buf, out=buf)
        mass[bool(anomaly)] += buf
    return (mass[True] / (mass[True] + mass[False])).astype(np.float64)


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
    sims: np.ndarray, is_anomaly: np.ndarray, scores: SegmentScores, params: DetectOptions
) -> np.ndarray:
    """Apply ``params.rule`` to every segment; returns a boolean array."""
    params.check_classes(sims.shape[1])
    if params.rule == "frame-vote":
        raise InputError("the frame-vote rule needs frame similarities; use apply_rule")
    if params.rule == "threshold":
        return scores.score >= params.segment_threshold
    if params.rule == "topk":
        return topk_votes(sims, is_anomaly, params.top_k) * 2 > min(params.top_k, sims.shape[1])
    return (scores.score >= params.segment_threshold) & (scores.best_anomaly > scores.best_normal)


def calibrate_similarities(sims: np.ndarray, method: str) -> np.ndarray:
    """Calibrate every column against its own distribution over the rows (see the module docstring)."""
    if method == "none":
        return np.asarray(sims, dtype=np.float32)  # used as is: no need for a float64 copy
    return Calibration.fit(sims, method).apply(sims)


@dataclass(frozen=True)
class Calibration:
    """The per-class statistics of a calibration, fitted on some rows and applicable to others.

    ``detect`` fits and applies it on the same rows (the whole index); ``watch`` fits it on the
    index's history and applies it to segments as they arrive.
    """

    method: str
    n: int
    mean: np.ndarray | None = None  # zscore: per class
    std: np.ndarray | None = None
    sorted_columns: np.ndarray | None = None  # percentile: (n_classes, n), each row sorted

    @classmethod
    def fit(cls, sims: np.ndarray, method: str) -> Calibration:
        """The statistics of ``method`` over the rows of ``(n, n_classes)`` similarities."""
        s = np.asarray(sims, dtype=np.float64)
        if method == "none":
            return cls(method, len(s))
        if method == "zscore":
            std = s.std(axis=0)
            return cls(method, len(s), mean=s.mean(axis=0), std=np.where(std > 1e-12, std, 1.0))
        if method == "percentile":
            return cls(method, len(s), sorted_columns=np.sort(s.T, axis=1))
        raise InputError(f"unknown calibration {method!r}; choose one of {', '.join(CALIBRATIONS)}")

    def apply(self, sims: np.ndarray) -> np.ndarray:
        """Calibrated values of ``(m, n_classes)`` similarities against the fitted rows."""
        if self.method == "none":
            return np.asarray(sims, dtype=np.float32)
        s = np.asarray(sims, dtype=np.float64)
        if self.method == "zscore":
            assert self.mean is not None and self.std is not None
            return (s - self.mean) / self.std
        assert self.sorted_columns is not None
        out = np.empty_like(s)
        for c, col in enumerate(self.sorted_columns):
            out[:, c] = np.searchsorted(col, s[:, c], side="right") / max(self.n, 1)
        return out


def class_scores(
    sims: np.ndarray,
    is_anomaly: np.ndarray,
    logit_scale: float,
    calibrate: str,
    values: np.ndarray | None = None,
    cols: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row anomaly score and the calibrated best anomaly and best normal values.

    Args:
        values: ``calibrate_similarities(sims, calibrate)`` when the caller has it already.
        cols: ``by_class(values)`` when the caller has it already.

    Returns:
        ``(a, best_A, best_N)``: ``a`` is the softmax mass on anomaly classes without calibration and
        ``max_{c in A}`` of the calibrated values otherwise.
    """
    is_anomaly = np.asarray(is_anomaly, dtype=bool)
    values = calibrate_similarities(sims, calibrate) if values is None else values
    cols = by_class(values) if cols is None else cols
    best_a = cols[is_anomaly].max(axis=0) if len(values) else np.zeros(0)
    best_n = cols[~is_anomaly].max(axis=0) if len(values) else np.zeros(0)
    if calibrate == "none":
        return softmax_anomaly_score(sims, is_anomaly, logit_scale, cols), best_a, best_n
    return best_a, best_a, best_n


def frame_rows(frame_row: np.ndarray, n_frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The frame rows of every segment, concatenated, and the segment of each (``repeat(arange, n)``)."""
    n = np.asarray(n_frames, dtype=np.int64)
    seg = np.repeat(np.arange(len(n)), n)
    starts = np.cumsum(n) - n
    rows = np.repeat(np.asarray(frame_row, dtype=np.int64), n) + (np.arange(n.sum()) - np.repeat(starts, n))
    return rows, seg


def kth_largest_per_segment(
    frame_scores: np.ndarray, frame_row: np.ndarray, n_frames: np.ndarray, m: int
) -> np.ndarray:
    """``m``-th largest frame score of each segment (``min(m, n_i)``-th for short segments; NaN if none)."""
    n = np.asarray(n_frames, dtype=np.int64)
    rows, seg = frame_rows(frame_row, n)
    values = np.asarray(frame_scores, dtype=np.float64)[rows]
    order = np.lexsort((-values, seg))  # by segment, then descending score
    starts = np.cumsum(n) - n
    pick = starts + np.minimum(m, n) - 1
    out = np.full(len(n), np.nan)
    has = n > 0
    out[has] = values[order][pick[has]]
    return out


def knn_blend(scores: np.ndarray, neighbours: np.ndarray, alpha: float) -> np.ndarray:
    """``(1 - alpha) a_i + alpha * mean_{j in N(i)} a_j``; ``neighbours`` is ``(n, K)`` row numbers."""
    a = np.asarray(scores, dtype=np.float64)
    nb = np.asarray(neighbours, dtype=np.int64)
    if nb.ndim != 2 or nb.shape[1] == 0 or alpha == 0:
        return a
    return (1.0 - alpha) * a + alpha * a[nb].mean(axis=1)


def smooth_scores(
    scores: np.ndarray, video_ids: np.ndarray, position: np.ndarray, half_width: int
) -> np.ndarray:
    """Mean over the segments of the same video at most ``half_width`` positions away (shrinking at ends).

    Args:
        scores: one score per segment.
        video_ids: the video of each segment.
        position: order of the segment within its video (the segment number).
        half_width: ``h``; 0 returns the scores unchanged.
    """
    a = np.asarray(scores, dtype=np.float64)
    if half_width <= 0 or len(a) == 0:
        return a
    ids = np.asarray(video_ids)
    codes = ids if ids.dtype.kind in "iu" else np.unique(ids.astype(str), return_inverse=True)[1]
    order = np.lexsort((np.asarray(position), codes))
    sorted_codes = codes[order]
    sorted_a = a[order]
    n = len(a)
    first = np.searchsorted(sorted_codes, sorted_codes, side="left")
    last = np.searchsorted(sorted_codes, sorted_codes, side="right") - 1
    idx = np.arange(n)
    lo = np.maximum(first, idx - half_width)
    hi = np.minimum(last, idx + half_width)
    csum = np.concatenate([[0.0], np.cumsum(sorted_a)])
    out = np.empty(n)
    out[order] = (csum[hi + 1] - csum[lo]) / (hi - lo + 1)
    return out


@dataclass(frozen=True)
class RuleResult:
    """What :func:`apply_rule` decided, per segment."""

    score: np.ndarray  # final score (after kNN and smoothing); decisions threshold it
    anomalous: np.ndarray
    raw_score: np.ndarray  # before kNN and smoothing
    best_class: np.ndarray  # argmax over all classes of the (calibrated) values
    best_anomaly_class: np.ndarray  # argmax over anomaly classes: which anomaly class fired
    best_anomaly: np.ndarray  # max_{c in A} S[i, c], raw cosine
    best_normal: np.ndarray  # max_{c in N} S[i, c], raw cosine
    #: What the rule compares with zero besides the score (after kNN and smoothing): the balanced
    #: rule's ``max_A - max_N``, the topk rule's vote share minus one half.
    margin: np.ndarray | None = None


def apply_rule(
    sims: np.ndarray,
    is_anomaly: np.ndarray,
    logit_scale: float,
    params: DetectOptions,
    *,
    video_ids: np.ndarray | None = None,
    position: np.ndarray | None = None,
    frame_sims: np.ndarray | None = None,
    frame_row: np.ndarray | None = None,
    n_frames: np.ndarray | None = None,
    neighbours: np.ndarray | None = None,
    calibration: Calibration | None = None,
    frame_calibration: Calibration | None = None,
) -> RuleResult:
    """Score and decide every segment with the full pipeline of the module docstring.

    Args:
        sims: ``(n_segments, n_classes)`` cosine similarities.
        is_anomaly: one flag per class.
        logit_scale: CLIP's ``lam``.
        params: rule, threshold and pipeline parameters (the video options are not used here).
        video_ids, position: video and segment number of each segment (needed when ``smooth > 0``).
        frame_sims, frame_row, n_frames: frame similarities and each segment's frame rows
            (needed by ``frame-vote``).
        neighbours: ``(n_segments, K)`` nearest segments (needed when ``knn_k > 0``).
        calibration, frame_calibration: statistics to calibrate segments (frames) against, fitted
            elsewhere (the index's history); by default each is fitted on the rows given here.

    Returns:
        A :class:`RuleResult`.
    """
    sims = np.asarray(sims, dtype=np.float32)
    is_anomaly = np.asarray(is_anomaly, dtype=bool)
    if sims.ndim != 2 or sims.shape[1] != len(is_anomaly):
        raise ValueError("sims must be (n_segments, n_classes) with one flag per class")
    if not is_anomaly.any() or is_anomaly.all():
        raise InputError("scoring needs at least one anomaly prompt and one normal prompt")
    params.check_classes(sims.shape[1])
    n = len(sims)
    if calibration is not None and calibration.method != params.calibrate:
        raise ValueError(f"calibration is {calibration.method}, the options say {params.calibrate}")
    values = (
        calibration.apply(sims) if calibration is not None else calibrate_similarities(sims, params.calibrate)
    )
    vcols = by_class(values)
    scols = vcols if params.calibrate == "none" else by_class(sims)
    score, best_a, best_n = class_scores(sims, is_anomaly, logit_scale, params.calibrate, values, vcols)
    # The quantity each rule compares with zero besides the score: the balanced rule's margin, or
    # the topk rule's vote share above one half.
    margin = best_a - best_n
    if params.rule == "topk":
        k = min(params.top_k, sims.shape[1])
        margin = (topk_votes(values, is_anomaly, k) / k if n else np.zeros(0)) - 0.5
    elif params.rule == "frame-vote":
        if frame_sims is None or frame_row is None or n_frames is None:
            raise InputError("the frame-vote rule needs the index's frame embeddings")
        frame_values = frame_calibration.apply(frame_sims) if frame_calibration is not None else None
        frame_score, _, _ = class_scores(frame_sims, is_anomaly, logit_scale, params.calibrate, frame_values)
        voted = kth_largest_per_segment(frame_score, frame_row, n_frames, params.frame_votes)
        score = np.where(np.isnan(voted), score, voted)
    raw = np.asarray(score, dtype=np.float64)
    score = raw
    if params.knn_k > 0:
        if neighbours is None:
            raise InputError("--knn-k needs the index's nearest-neighbour lists")
        nb = np.asarray(neighbours)[:, : params.knn_k]
        score = knn_blend(score, nb, params.knn_alpha)
        margin = knn_blend(margin, nb, params.knn_alpha)
    if params.smooth > 0:
        if video_ids is None or position is None:
            raise InputError("--smooth needs the video and position of every segment")
        score = smooth_scores(score, video_ids, position, params.smooth)
        margin = smooth_scores(margin, video_ids, position, params.smooth)
    anomaly_cols = np.flatnonzero(is_anomaly)
    return RuleResult(
        score=score,
        anomalous=rule_decision(score, margin, params),
        raw_score=raw,
        best_class=argmax_rows(vcols) if n else np.zeros(0, np.int64),
        best_anomaly_class=anomaly_cols[argmax_rows(vcols[is_anomaly])] if n else np.zeros(0, np.int64),
        best_anomaly=scols[is_anomaly].max(axis=0) if n else np.zeros(0, np.float32),
        best_normal=scols[~is_anomaly].max(axis=0) if n else np.zeros(0, np.float32),
        margin=np.asarray(margin, dtype=np.float64),
    )


def rule_decision(score: np.ndarray, margin: np.ndarray, params: DetectOptions) -> np.ndarray:
    """The last step of every rule: compare the final score (and margin) with the threshold.

    ``threshold`` and ``frame-vote``: ``score >= tau``; ``balanced``: also ``margin > 0``; ``topk``:
    ``margin > 0`` (the vote share above one half).
    """
    score = np.asarray(score, dtype=np.float64)
    margin = np.asarray(margin, dtype=np.float64)
    if params.rule == "topk":
        return margin > 0
    anomalous = score >= params.segment_threshold
    if params.rule == "balanced":
        anomalous &= margin > 0
    return np.asarray(anomalous, dtype=bool)
