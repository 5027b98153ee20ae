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

1. Calibration (``--calibrate``), per class against its distribution over the ``n_g`` segments of
   the segment's calibration group ``g(i)`` (``--calibrate-by``: the whole index, the segment's
   camera, or its video), so one threshold means the same for every prompt and model:
   ``zscore``: ``Z[i, c] = (S[i, c] - mean_{j in g(i)} S[j, c]) / std_{j in g(i)} S[j, c]``;
   ``percentile``: ``P[i, c] = #{j in g(i) : S[j, c] <= S[i, c]} / n_g`` (empirical CDF, in (0, 1]).
   A calibrated score is ``a_i = max_{c in A} Z[i, c]`` (or ``P``): how unusually close the segment is
   to its nearest anomaly class; ``balanced`` then requires ``max_A Z > max_N Z``. Without
   calibration the score is the softmax mass above.
2. ``frame-vote``: each stored frame ``f`` gets a score ``a_f`` as in 1 (frame calibration is against
   the frames of the same group); segment ``i`` with frames ``F_i`` scores
   ``a_i = m-th largest {a_f : f in F_i}`` with ``m = min(--frame-votes, |F_i|)``, so ``a_i >= tau``
   exactly when at least ``m`` frames vote anomalous. ``topk`` keeps the score ``a_i`` of 1 but
   decides by the vote share ``v_i = |topk_c S[i, c] & A| / k`` (on calibrated values when
   calibrated): ``v_i > 1/2``.
2b. Novelty (``--novelty K``, ``--novelty-weight w``): with ``nu_i`` the segment's novelty (one minus
   its mean cosine to its ``K`` nearest segments of the same camera, see :mod:`vadindex.detect.novelty`)
   calibrated like a class column (``none``: as it is), ``a_i <- (1 - w) a_i + w nu_i``; ``w = 0`` is
   text only, ``w = 1`` novelty only. ``topk`` still decides by its votes.
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


def group_codes(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct group keys and each row's position among them (``np.unique(..., return_inverse=True)``)."""
    g = np.asarray(groups)
    keys, codes = np.unique(g if g.dtype.kind in "iub" else g.astype(str), return_inverse=True)
    return keys, codes.reshape(-1).astype(np.int64)


def calibrate_similarities(sims: np.ndarray, method: str, groups: np.ndarray | None = None) -> np.ndarray:
    """Calibrate every column against its own distribution over the rows of the same group.

    Args:
        sims: ``(n, C)`` values (class similarities, or a novelty column).
        method: ``none``, ``zscore`` or ``percentile`` (see the module docstring).
        groups: the calibration group of every row (any keys); ``None``: one group, all rows.

    Returns:
        ``(n, C)`` calibrated values (float32 for ``none``, float64 otherwise).
    """
    if method == "none":
        return np.asarray(sims, dtype=np.float32)  # used as is: no need for a float64 copy
    if method not in CALIBRATIONS:
        raise InputError(f"unknown calibration {method!r}; choose one of {', '.join(CALIBRATIONS)}")
    s = np.asarray(sims, dtype=np.float64)
    if groups is None or len(s) == 0:
        if method == "zscore":
            std = s.std(axis=0)
            return (s - s.mean(axis=0)) / np.where(std > 1e-12, std, 1.0)
        out = np.empty_like(s)
        for c in range(s.shape[1]):
            col = np.sort(s[:, c])
            out[:, c] = np.searchsorted(col, s[:, c], side="right") / max(len(col), 1)
        return out
    _, codes = group_codes(groups)
    count = np.bincount(codes).astype(np.float64)
    if method == "zscore":
        out = np.empty_like(s)
        for c in range(s.shape[1]):
            mean = np.bincount(codes, weights=s[:, c]) / count
            centred = s[:, c] - mean[codes]
            std = np.sqrt(np.bincount(codes, weights=centred * centred) / count)
            out[:, c] = centred / np.where(std > 1e-12, std, 1.0)[codes]
        return out
    return _grouped_percentile(s, codes, count)


def _grouped_percentile(s: np.ndarray, codes: np.ndarray, count: np.ndarray) -> np.ndarray:
    """``#{j in g(i) : s_j <= s_i} / n_g`` for every column, by one sort per column (no loop over groups)."""
    n = len(s)
    first = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
    out = np.empty_like(s)
    brk = np.empty(n, dtype=bool)
    for c in range(s.shape[1]):
        order = np.lexsort((s[:, c], codes))
        v, g = s[order, c], codes[order]
        # The rows <= s_i in its group end at the last row of its run of equal values.
        brk[-1] = True
        np.not_equal(v[1:], v[:-1], out=brk[:-1])
        brk[:-1] |= g[1:] != g[:-1]
        ends = np.flatnonzero(brk)
        run = np.concatenate([[0], np.cumsum(brk[:-1])])
        out[order, c] = (ends[run] + 1 - first[g]) / count[g]
    return out


@dataclass(frozen=True)
class Calibration:
    """The per-class statistics of a calibration, fitted on some rows and applicable to others.

    ``detect`` calibrates the index's rows against themselves (:func:`calibrate_similarities`, by
    group with ``--calibrate-by``); ``watch`` fits these statistics on the index's history and
    applies them to segments as they arrive.
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
        """Calibrated values of ``(m, n_classes)`` similarities against the fitted rows (the same
        formulas as :func:`calibrate_similarities`)."""
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


def calibration_groups(
    by: str, video_ids: np.ndarray | None, cameras: np.ndarray | None
) -> np.ndarray | None:
    """The calibration group of every segment for ``--calibrate-by``: ``None`` for the whole index,
    each segment's camera (its video when cameras are unknown), or its video."""
    if by == "index":
        return None
    groups = cameras if by == "camera" and cameras is not None else video_ids
    if groups is None:
        raise InputError(f"--calibrate-by {by} needs the video of every segment")
    return np.asarray(groups)


def mix_novelty(score: np.ndarray, novelty: np.ndarray, weight: float) -> np.ndarray:
    """``(1 - w) a_i + w nu_i``: the segment score with (calibrated) novelty mixed in."""
    a = np.asarray(score, dtype=np.float64)
    if weight == 0:
        return a
    return (1.0 - weight) * a + weight * np.asarray(novelty, dtype=np.float64)


def class_scores(
    sims: np.ndarray,
    is_anomaly: np.ndarray,
    logit_scale: float,
    calibrate: str,
    values: np.ndarray | None = None,
    cols: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row anomaly score and the calibrated best anomaly and best normal values.

    Args:
        values: ``calibrate_similarities(sims, calibrate, groups)`` when the caller has it already.
        cols: ``by_class(values)`` when the caller has it already.
        groups: calibration group of every row (``None``: one group).

    Returns:
        ``(a, best_A, best_N)``: ``a`` is the softmax mass on anomaly classes without calibration and
        ``max_{c in A}`` of the calibrated values otherwise.
    """
    is_anomaly = np.asarray(is_anomaly, dtype=bool)
    values = calibrate_similarities(sims, calibrate, groups) if values is None else values
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
    #: The calibrated novelty mixed into the score (``None`` when novelty is off).
    novelty: np.ndarray | None = None


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
    novelty: np.ndarray | None = None,
    cameras: np.ndarray | None = None,
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
        novelty: each segment's raw novelty for ``params.novelty`` neighbours (needed when
            ``novelty > 0`` and ``novelty_weight > 0``).
        cameras: each segment's camera (any keys), for ``calibrate_by="camera"``; ``None``: every
            video is its own camera.
        calibration, frame_calibration: statistics to calibrate segments (frames) against, fitted
            elsewhere (the index's history, by ``watch``); by default the rows given here are
            calibrated against themselves, by ``calibrate_by`` group.

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
    groups = (
        None
        if params.calibrate == "none" or calibration is not None
        else calibration_groups(params.calibrate_by, video_ids, cameras)
    )
    values = (
        calibration.apply(sims)
        if calibration is not None
        else calibrate_similarities(sims, params.calibrate, groups)
    )
    vcols = by_class(values)
    scols = vcols if params.calibrate == "none" else by_class(sims)
    score, best_a, best_n = class_scores(
        sims, is_anomaly, logit_scale, params.calibrate, values, vcols, groups
    )
    # The quantity each rule compares with zero besides the score: the balanced rule's margin, or
    # the topk rule's vote share above one half.
    margin = best_a - best_n
    if params.rule == "topk":
        k = min(params.top_k, sims.shape[1])
        margin = (topk_votes(values, is_anomaly, k) / k if n else np.zeros(0)) - 0.5
    elif params.rule == "frame-vote":
        if frame_sims is None or frame_row is None or n_frames is None:
            raise InputError("the frame-vote rule needs the index's frame embeddings")
        frame_groups = frame_values = None
        if frame_calibration is not None:
            frame_values = frame_calibration.apply(frame_sims)
        elif groups is not None:
            rows, seg = frame_rows(frame_row, n_frames)
            frame_groups = np.zeros(len(frame_sims), dtype=np.int64)
            frame_groups[rows] = group_codes(groups)[1][seg]
        frame_score, _, _ = class_scores(
            frame_sims, is_anomaly, logit_scale, params.calibrate, frame_values, groups=frame_groups
        )
        voted = kth_largest_per_segment(frame_score, frame_row, n_frames, params.frame_votes)
        score = np.where(np.isnan(voted), score, voted)
    calibrated_novelty = None
    if params.novelty > 0 and params.novelty_weight > 0:
        if novelty is None or len(novelty) != n:
            raise InputError("--novelty needs the novelty of every segment of the index")
        calibrated_novelty = calibrate_similarities(np.asarray(novelty)[:, None], params.calibrate, groups)[
            :, 0
        ]
        score = mix_novelty(score, calibrated_novelty, params.novelty_weight)
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
        novelty=calibrated_novelty,
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
