"""The report's figures as PNG bytes, drawn with matplotlib's object API on the Agg canvas.

matplotlib is imported on first use (it costs about half a second), never through pyplot, so no
global backend or figure state is touched and nothing is fetched: fonts are matplotlib's own.
Every function returns PNG bytes; the page inlines them as data URIs.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Colours shared by every figure (and the page's CSS): scores, flagged, ground truth, threshold.
SCORE = "#1f4e99"
FLAGGED = "#e4572e"
TRUTH = "#2a9d4b"
THRESHOLD = "#555555"
YOUDEN = "#8e44ad"
DPI = 100


def _figure(width: float, height: float, layout: str | None = "constrained") -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout=layout)


def _png(fig: Any, dpi: int = DPI) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(first, last + 1)`` of every run of consecutive true values."""
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return []
    edges = np.flatnonzero(np.diff(np.r_[0, m.astype(np.int8), 0]))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


@dataclass(frozen=True)
class CurveSet:
    """One level's ROC and PR curves with their operating points (see :func:`curves_figure`)."""

    label: str
    roc: dict[str, np.ndarray]
    pr: dict[str, np.ndarray]
    auc: float | None
    ap: float | None
    #: ``(fpr, tpr, precision, recall)`` of the decisions the detection made.
    chosen: tuple[float, float, float, float] | None
    chosen_label: str
    #: ``(threshold, fpr, tpr, precision, recall)`` where Youden's J is largest.
    youden: tuple[float, float, float, float, float] | None


def curves_figure(curve: CurveSet) -> bytes:
    """ROC (left) and precision-recall (right) curves of one level, AUC and AP in the legends, the
    detection's operating point (circle) and the Youden-optimal threshold (diamond) marked."""
    fig = _figure(9.0, 3.6)
    roc_ax, pr_ax = fig.subplots(1, 2)
    auc = "n/a" if curve.auc is None else f"{curve.auc:.3f}"
    ap = "n/a" if curve.ap is None else f"{curve.ap:.3f}"
    roc_ax.plot(curve.roc["fpr"], curve.roc["tpr"], color=SCORE, lw=1.8, label=f"{curve.label} (AUC {auc})")
    roc_ax.plot([0, 1], [0, 1], color="#bbbbbb", lw=1, ls=":", label="chance")
    pr_ax.step(curve.pr["recall"], curve.pr["precision"], where="post", color=SCORE, lw=1.8,
               label=f"{curve.label} (AP {ap})")  # fmt: skip
    if curve.chosen is not None:
        fpr, tpr, precision, recall = curve.chosen
        roc_ax.plot([fpr], [tpr], "o", color=FLAGGED, ms=8, label=curve.chosen_label)
        pr_ax.plot([recall], [precision], "o", color=FLAGGED, ms=8, label=curve.chosen_label)
    if curve.youden is not None:
        thr, fpr, tpr, precision, recall = curve.youden
        label = f"Youden-optimal: {thr:.3g} (J {tpr - fpr:.2f})"
        roc_ax.plot([fpr], [tpr], "D", color=YOUDEN, ms=7, label=label)
        pr_ax.plot([recall], [precision], "D", color=YOUDEN, ms=7, label=label)
    roc_ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), xlabel="false positive rate",
               ylabel="true positive rate", title=f"ROC, {curve.label}")  # fmt: skip
    pr_ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.03), xlabel="recall", ylabel="precision",
              title=f"Precision-recall, {curve.label}")  # fmt: skip
    for ax in (roc_ax, pr_ax):
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right" if ax is roc_ax else "lower left", fontsize=8)
    return _png(fig)


def histogram_figure(
    scores: np.ndarray,
    threshold: float | None,
    truth: np.ndarray | None = None,
    flagged: np.ndarray | None = None,
) -> bytes:
    """Histogram of segment scores (stacked by ground truth when known), the threshold as a line."""
    fig = _figure(9.0, 2.8)
    ax = fig.subplots()
    s = np.asarray(scores, dtype=np.float64)
    finite = s[np.isfinite(s)]
    lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    if threshold is not None and np.isfinite(threshold):
        lo, hi = min(lo, threshold), max(hi, threshold)
    bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 51)
    if truth is not None and (truth >= 0).any():
        known = truth >= 0
        groups = [s[known & (truth == 0)], s[known & (truth == 1)]]
        labels = ["normal segments (ground truth)", "anomalous segments (ground truth)"]
        colours = ["#9db4d8", FLAGGED]
        if (~known).any():
            groups.append(s[~known])
            labels.append("not annotated")
            colours.append("#cccccc")
        ax.hist(groups, bins=bins, stacked=True, color=colours, label=labels)
    else:
        ax.hist(finite, bins=bins, color="#9db4d8", label="segments")
    if threshold is not None and np.isfinite(threshold):
        n_flagged = (
            int(np.count_nonzero(flagged)) if flagged is not None else int((finite >= threshold).sum())
        )
        ax.axvline(threshold, color=THRESHOLD, ls="--", lw=1.5,
                   label=f"threshold {threshold:.3g} ({n_flagged:,} segments flagged)")  # fmt: skip
    ax.set(xlabel="segment score", ylabel="segments")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return _png(fig)


class TimelinePlotter:
    """Draws each video's score over time on one reused figure: building a figure (or clearing its
    axes, which rebuilds every tick) costs more than drawing it, so only the data artists change."""

    def __init__(self, width: float = 7.6, height: float = 1.8) -> None:
        # Fixed margins: a layout engine would measure every label of every plot again.
        self.fig = _figure(width, height, layout=None)
        self.fig.subplots_adjust(left=0.065, right=0.99, bottom=0.24, top=0.96)
        self.ax = self.fig.subplots()
        self.ax.set_xlabel("seconds", fontsize=8, labelpad=1)
        self.ax.set_ylabel("score", fontsize=8)
        self.ax.tick_params(labelsize=7)
        self.ax.grid(alpha=0.25)

    def plot(
        self,
        start: np.ndarray,
        end: np.ndarray,
        score: np.ndarray,
        flagged: np.ndarray,
        threshold: float | None,
        truth_spans: Sequence[tuple[float, float]] = (),
        y_range: tuple[float, float] | None = None,
    ) -> bytes:
        """A step plot of segment scores over time (seconds), flagged segments shaded, ground-truth
        spans drawn as a band along the top, the threshold as a dashed line."""
        ax = self.ax
        for artist in [*ax.lines, *ax.patches, *ax.collections]:
            artist.remove()
        start = np.asarray(start, dtype=np.float64)
        end = np.asarray(end, dtype=np.float64)
        score = np.asarray(score, dtype=np.float64)
        lo, hi = y_range if y_range is not None else (0.0, 1.0)
        if len(score):
            xs = np.r_[start, end[-1]]
            spans = [(start[a], end[b - 1] - start[a]) for a, b in runs(np.asarray(flagged, dtype=bool))]
            if spans:  # one artist for every flagged run (a span each costs a draw each)
                ax.broken_barh(
                    spans, (0, 1), facecolors=FLAGGED, alpha=0.18, lw=0, transform=ax.get_xaxis_transform()
                )
            ax.step(xs, np.r_[score, score[-1]], where="post", color=SCORE, lw=1.4)
        band = hi - (hi - lo) * 0.06
        for a, b in truth_spans:
            ax.plot([a, b], [band, band], color=TRUTH, lw=5, solid_capstyle="butt")
        if threshold is not None and np.isfinite(threshold):
            ax.axhline(threshold, color=THRESHOLD, ls="--", lw=1)
        ax.set_xlim(float(start[0]) if len(start) else 0.0, float(end[-1]) if len(end) else 1.0)
        ax.set_ylim(lo, hi)
        return _png(self.fig)


def heatmap_figure(
    values: np.ndarray,
    thresholds: Sequence[float],
    ratios: Sequence[float],
    title: str,
    chosen: tuple[int, int] | None = None,
    label: str = "F1",
) -> bytes:
    """A heat map of ``values[i, j]`` over segment threshold ``i`` (rows) and video ratio ``j``
    (columns), each cell annotated, the chosen cell outlined."""
    v = np.asarray(values, dtype=np.float64)
    rows, cols = v.shape
    fig = _figure(min(2.0 + 0.5 * cols, 8.0), min(1.3 + 0.19 * rows, 6.0))
    ax = fig.subplots()
    image = ax.imshow(v, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, origin="lower")
    ax.set_xticks(range(cols), [f"{r:g}" for r in ratios], fontsize=7)
    ax.set_yticks(range(rows), [f"{t:.3g}" for t in thresholds], fontsize=7)
    ax.set_xlabel("video ratio (--video-ratio)", fontsize=8)
    ax.set_ylabel("segment threshold", fontsize=8)
    ax.set_title(title, fontsize=9)
    if rows * cols <= 400:
        for i in range(rows):
            for j in range(cols):
                if np.isfinite(v[i, j]):
                    ax.text(j, i, f"{v[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="black" if v[i, j] > 0.6 else "white")  # fmt: skip
    if chosen is not None:
        from matplotlib.patches import Rectangle

        i, j = chosen
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec=FLAGGED, lw=2.2))
    fig.colorbar(image, ax=ax, label=label, shrink=0.9)
    return _png(fig)
