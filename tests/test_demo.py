"""End to end with the shipped vadindex-tiny model on freshly generated scenes (held-out seed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vadindex.files import sha256_file
from vadindex.models.weights import builtin_weights

ROOT = Path(__file__).resolve().parents[1]
#: README rows of the demo's figures, and the metric each one reports.
PUBLISHED_ROWS = {"video-level F1": "video_f1", "segment-level F1": "segment_f1",
                  "precision@5 over the 5 demo queries": "precision_at_5", "frame-level ROC-AUC": "frame_auc",
                  "frame-level AP": "frame_ap"}  # fmt: skip
#: What other CPUs' rounding may move a figure by (int8 on some, fp32 on others): a segment or two,
#: never a video or a query hit (either would cost more than this).
ROUNDING = 0.01


def published_figures() -> dict[str, float]:
    """The seed-7 column of the README's table of demo figures."""
    figures = {}
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] in PUBLISHED_ROWS:
            figures[PUBLISHED_ROWS[cells[0]]] = float(cells[1])
    assert figures.keys() == set(PUBLISHED_ROWS.values()), figures
    return figures


@pytest.fixture(scope="module")
def demo(demo_run):  # type: ignore[no-untyped-def]
    """``vadindex demo`` exactly as the README measures it: seed 7, 20 videos (shared with the
    served-pages tests, conftest.py)."""
    return demo_run


def test_model_ships_and_loads_offline(demo) -> None:  # type: ignore[no-untyped-def]
    weights = builtin_weights("vadindex-tiny")
    assert weights is not None and weights.stat().st_size <= 25 * 2**20
    manifest = json.loads((demo.out / "index" / "manifest.json").read_text())
    assert manifest["model"] == "vadindex-tiny" and manifest["pretrained"] == "builtin"
    assert manifest["checkpoint_sha256"] == sha256_file(weights)


def test_detection_and_search_work_on_unseen_scenes(demo) -> None:  # type: ignore[no-untyped-def]
    """The figures the README publishes for the demo, reproduced (chance: frame AUC 0.5, and about
    0.05 precision@5, as a hit needs the right class and the event's time span)."""
    m = demo.metrics
    assert m["videos"] == 20 and m["segments"] == 222
    for key, published in published_figures().items():
        assert m[key] >= published - ROUNDING, (key, m[key], published)
    assert m["video_f1"] >= 0.9 and m["segment_f1"] >= 0.8 and m["precision_at_5"] >= 0.8  # the targets


def test_demo_writes_its_outputs(demo) -> None:  # type: ignore[no-untyped-def]
    out: Path = demo.out
    for rel in ("scenes/manifest.csv", "scenes/annotations.txt", "detect/videos.csv", "detect/segments.csv",
                "detect/report.html"):  # fmt: skip
        assert (out / rel).is_file(), rel
    assert set(demo.to_dict()["metrics"]) >= {"video_f1", "segment_f1", "precision_at_5"}
    html = (out / "detect" / "report.html").read_text()
    assert html.count('<section class="video') == demo.metrics["videos"] and "vadindex report --index" in html
