"""``vadindex tune``'s page: the held-out score, the settings chosen, and per fold a heat map of
video F1 over the two thresholds of the method (segment threshold x video ratio)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from vadindex.detect.grid import TuneResult
from vadindex.report import figures
from vadindex.report.page import png_uri, write_page


def write_tune_page(
    result: TuneResult, out: str | os.PathLike[str], settings_file: str | None = None
) -> Path:
    """Write the tuning page (one heat map per fold, then one over all labelled videos).

    Args:
        result: what :func:`vadindex.detect.tune.tune` returned.
        out: the HTML file to write.
        settings_file: the YAML file the settings were written to, named on the page.

    Returns:
        The path written.
    """
    maps = []
    for h in result.heatmaps:
        chosen = tuple(h["chosen"]) if h.get("chosen") is not None else None
        s = h["settings"]
        rule = ", ".join(f"{k} {s[k]}" for k in ("rule", "calibrate", "smooth", "knn_k") if k in s)
        png = figures.heatmap_figure(np.asarray(h["f1"], dtype=np.float64), h["thresholds"], h["ratios"],
                                     h["name"], chosen)  # fmt: skip
        how = (
            f"outlined: threshold {s['segment_threshold']:.3g}, ratio {s['video_ratio']:g} (chosen on the fold's training videos)"
            if chosen is not None and h["name"].startswith("fold")
            else f"outlined: threshold {s['segment_threshold']:.3g}, ratio {s['video_ratio']:g}"
            if chosen is not None
            else f"the chosen settings aggregate by {s['video_agg']}, not by ratio: no cell is theirs"
        )
        maps.append({"uri": png_uri(png), "name": h["name"], "caption": f"{rule}; {how}."})
    d = result.to_dict()
    folds: list[dict[str, Any]] = [
        {"fold": f["fold"] + 1, "videos": len(f["test_videos"]), "train": f.get(f"train_{result.metric}"),
         "test_f1": f.get("test_f1"), "test_auc": f.get("test_auc"),
         "settings": ", ".join(f"{k}={v}" for k, v in f["settings"].items() if v is not None)}
        for f in result.folds
    ]  # fmt: skip
    return write_page(
        out, "tune.html.j2", result=d, metric=result.metric, best=result.best, maps=maps, folds=folds,
        settings_file=settings_file, auc_note=result.metric == "auc",
    )  # fmt: skip
