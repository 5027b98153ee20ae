"""Novelty: how unlike the rest of its camera's footage a segment is, from its nearest neighbours (pure numpy).

With ``x_i`` the unit vector of segment ``i``, ``cam(i)`` its camera, ``v(i)`` its video, ``t_i`` its
start in seconds, ``g`` the gap (``--novelty-gap``) and ``K`` the neighbours (``--novelty``), the
candidates of segment ``i`` are the other segments of its camera, less those of its own video that
start within ``g`` seconds of it (so an event lasting a few seconds is not its own neighbour)::

    C(i) = { j != i : cam(j) = cam(i), and not (v(j) = v(i) and |t_j - t_i| <= g) }

and with ``s_(1) >= s_(2) >= ...`` the cosines ``x_i . x_j`` over ``C(i)``::

    nu_i = 1 - (1 / m) * sum_{r = 1..m} s_(r),   m = min(K, |C(i)|)

(``nu_i = 0`` when ``C(i)`` is empty: nothing to compare with). ``nu_i`` is in ``[0, 2]``; 0 means
the camera has seen this exact picture before. Times within a microsecond count as equal.

The search itself (exact per camera, or through the IVF cells for large cameras) is
:func:`vadindex.index.cache.camera_neighbours`; it returns each segment's nearest segments of its
camera, of which :func:`keep_neighbours` drops the ones too close in time, and
:func:`novelty_scores` averages the rest.
"""

from __future__ import annotations

import numpy as np

#: Start times closer than this (seconds) count as equal when testing the gap.
TIME_TOLERANCE = 1e-6


def max_excluded(video: np.ndarray, start: np.ndarray, gap: float) -> int:
    """The most segments any one segment loses to the gap: ``max_i #{j != i : v(j) = v(i), |t_j - t_i| <= g}``.

    A neighbour search that returns ``K + max_excluded`` segments per row therefore still holds
    ``K`` candidates (or all of them) after :func:`keep_neighbours`.
    """
    v = np.asarray(video)
    t = np.asarray(start, dtype=np.float64)
    if len(t) == 0:
        return 0
    codes = v if v.dtype.kind in "iu" else np.unique(v.astype(str), return_inverse=True)[1].reshape(-1)
    # One integer per row that sorts by video, then time (microseconds): each video's times are
    # shifted past every other video's by more than the gap.
    micros = np.round((t - t.min()) / TIME_TOLERANCE).astype(np.int64)
    reach = int(np.ceil(gap / TIME_TOLERANCE)) + 1
    key = np.sort(codes.astype(np.int64) * (int(micros.max()) + 2 * reach + 1) + micros)
    lo = np.searchsorted(key, key - reach, side="left")
    hi = np.searchsorted(key, key + reach, side="right")
    return int((hi - lo - 1).max())


def keep_neighbours(
    ids: np.ndarray, sims: np.ndarray, video: np.ndarray, start: np.ndarray, gap: float, k: int
) -> np.ndarray:
    """The ``k`` best cosines of every segment over its candidates ``C(i)``, best first.

    Args:
        ids: ``(n, k')`` rows of each segment's nearest segments of its camera (any order; -1 where
            there are fewer); the segment itself may be among them and is dropped.
        sims: ``(n, k')`` their cosines.
        video: the video of every segment (any keys).
        start: the start of every segment, in seconds.
        gap: ``g``, seconds.
        k: ``K``.

    Returns:
        ``(n, k)`` float32 cosines, best first, NaN where a segment has fewer than ``k`` candidates.
    """
    ids = np.asarray(ids, dtype=np.int64)
    s = np.asarray(sims, dtype=np.float32)
    n = len(ids)
    if n == 0 or ids.shape[1] == 0 or k == 0:
        return np.full((n, k), np.nan, dtype=np.float32)
    v = np.asarray(video)
    t = np.asarray(start, dtype=np.float64)
    rows = np.arange(n)[:, None]
    valid = (ids >= 0) & (ids != rows)
    safe = np.where(valid, ids, 0)
    too_close = (v[safe] == v[:, None]) & (np.abs(t[safe] - t[:, None]) <= gap + TIME_TOLERANCE)
    keep = valid & ~too_close
    ranked = np.where(keep, s, -np.inf)
    order = np.argsort(-ranked, axis=1, kind="stable")[:, :k]
    best = np.take_along_axis(ranked, order, axis=1)
    out = np.full((n, k), np.nan, dtype=np.float32)
    width = best.shape[1]
    out[:, :width] = np.where(np.isfinite(best), best, np.nan)
    return out


def novelty_scores(neighbour_sims: np.ndarray, k: int | None = None) -> np.ndarray:
    """``nu_i = 1 - mean`` of the first ``k`` cosines of each row (NaN ones skipped; 0 when none).

    Args:
        neighbour_sims: ``(n, K')`` cosines from :func:`keep_neighbours`, best first.
        k: neighbours to average (at most ``K'``); ``None``: all columns.

    Returns:
        ``(n,)`` float64 novelty.
    """
    s = np.asarray(neighbour_sims)
    if k is not None:
        s = s[:, :k]
    if s.shape[1] == 0:
        return np.zeros(len(s))
    have = ~np.isnan(s)
    if have.all():  # the usual case: every segment has k candidates (one pass, no copies)
        return 1.0 - s.mean(axis=1, dtype=np.float64)
    count = have.sum(axis=1)
    total = np.where(have, s, 0.0).sum(axis=1, dtype=np.float64)
    return np.where(count > 0, 1.0 - total / np.maximum(count, 1), 0.0)
