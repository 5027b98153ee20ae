"""Reports and result pages, opened in a real browser (Debian's Chromium, headless, via Playwright):
no console error, every image loaded, the right sections and plots, no request leaving the page,
and bad input (no labels, a deleted video, HTML in a file name, nothing flagged, an empty index)."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import run, write_video

from vadindex.demo import synth
from vadindex.detect import detect
from vadindex.index.manifest import MANIFEST, IndexManifest
from vadindex.ingest import build_index
from vadindex.report import ReportOptions, write_report

EVIL = "<img src=x onerror=alert(1)>.mp4"


# -- the browser ----------------------------------------------------------------------------------


@dataclass
class Opened:
    """A page as the browser loaded it, with everything it said and asked for."""

    page: Any
    url: str
    console: list[tuple[str, str]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def js(self, expression: str) -> Any:
        return self.page.evaluate(expression)

    def assert_clean(self) -> None:
        """No console error or warning (a blocked fetch is one), no request but the page itself, no
        script dialog, and every image decoded."""
        assert not [m for m in self.console if m[0] in ("error", "warning")], self.console
        assert not self.dialogs, self.dialogs
        assert set(self.requests) <= {self.url}, self.requests
        images = self.js("Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
        assert images and all(done and width > 0 for done, width in images), images


@pytest.fixture()
def open_page(browser, shots: Path, request: pytest.FixtureRequest) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    pages = []

    def opener(path: Path) -> Opened:
        context = browser.new_context(viewport={"width": 1200, "height": 900}, offline=True)
        page = context.new_page()
        opened = Opened(page, path.resolve().as_uri())

        def route(r: Any) -> None:  # every request of the page passes here: anything remote is refused
            if r.request.url.startswith(("file:", "data:")):
                r.continue_()
            else:
                opened.requests.append(r.request.url)
                r.abort()

        context.route("**/*", route)
        page.on("console", lambda m: opened.console.append((m.type, m.text)))
        page.on("pageerror", lambda e: opened.console.append(("error", str(e))))
        page.on("request", lambda r: opened.requests.append(r.url))
        page.on("dialog", lambda d: (opened.dialogs.append(d.message), d.dismiss()))
        page.goto(opened.url, wait_until="load")
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{request.node.name}-{path.stem}")
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
        pages.append(context)
        return opened

    yield opener
    for context in pages:
        context.close()


# -- an index with labels and annotations -----------------------------------------------------------


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Generated scenes (held-out seed) indexed with the shipped vadindex-tiny: labels, classes and
    frame-level annotations, thumbnails decoded from the videos."""
    root = tmp_path_factory.mktemp("scenes")
    scene_set = synth.generate_scenes(root / "scenes", seed=7, n_normal=2, n_anomaly=3, duration=(5.0, 7.0))
    build_index([], root / "index", manifest=scene_set.manifest_path, model="vadindex-tiny",
                pretrained="builtin", device="cpu", progress=False)  # fmt: skip
    return scene_set, root / "index"


def _detect(index: Path, scene_set: Any, **options: Any) -> Any:
    return detect(index, list(synth.DEMO_ANOMALY_PROMPTS), normal_prompts=list(synth.DEMO_NORMAL_PROMPTS),
                  annotations=scene_set.annotations_path, device="cpu", **options)  # fmt: skip


def test_report_with_labels_and_annotations_in_a_browser(scenes, tmp_path: Path, open_page) -> None:  # type: ignore[no-untyped-def]
    scene_set, index = scenes
    result = _detect(index, scene_set)
    summary = write_report(result, tmp_path / "report.html")
    n = len(result.videos)
    assert summary.sections == n == 5 and summary.left_out == 0
    assert summary.thumbnails == {"video": 3 * n}
    page = open_page(summary.path)
    page.assert_clean()
    assert page.js("document.querySelectorAll('section.video').length") == n
    # The histogram, the video- and frame-level curves, and one plot per video.
    assert page.js("document.querySelectorAll('img.plot').length") == summary.plots == 3 + n
    assert page.js("document.querySelectorAll('section.video figure.thumb img').length") == 3 * n
    assert page.js("document.querySelectorAll('.card').length") >= 8
    legends = page.js("Array.from(document.querySelectorAll('figcaption')).map(f => f.textContent).join(' ')")
    assert "Video level" in legends and "Frame level" in legends
    # Misclassified videos first, then by score.
    wrong = page.js(
        "Array.from(document.querySelectorAll('section.video')).map(s => s.classList.contains('misclassified'))"
    )
    assert wrong == sorted(wrong, reverse=True)
    v = result.videos
    misclassified = v["label"].astype(int).to_numpy(bool) != v["anomalous"].to_numpy(bool)
    assert sum(wrong) == int(misclassified.sum())
    text = page.js("document.body.innerText")
    assert "--annotations" in text and "Per class" in text and "false alarms" in text


def test_the_report_says_how_to_reproduce_it(scenes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    scene_set, index = scenes
    first = tmp_path / "first.html"
    code, out, err = run("report", "--index", index, "--prompts", "; ".join(synth.DEMO_ANOMALY_PROMPTS),
                         "--normal-prompts", "; ".join(synth.DEMO_NORMAL_PROMPTS), "--annotations",
                         scene_set.annotations_path, "--segment-threshold", "0.6", "--out", first)  # fmt: skip
    assert code == 0, err
    html = first.read_text()
    command = re.search(r"<pre><code>(.*?)</code></pre>", html, re.S).group(1)  # type: ignore[union-attr]
    args = shlex.split(command.replace("&#39;", "'").replace("&quot;", '"').replace("&amp;", "&"))
    assert args[:2] == ["vadindex", "report"] and "--segment-threshold" in args
    args[args.index("--out") + 1] = str(tmp_path / "again.html")
    code, _, err = run(*args[1:])
    assert code == 0, err

    def sections(text: str) -> list[str]:
        return re.findall(r'<section class="video[^"]*" id="[^"]+">\s*<h3>(.*?)</h3>', text, re.S)

    assert sections((tmp_path / "again.html").read_text()) == sections(html) and len(sections(html)) == 5


def test_detect_out_and_query_html(scenes, tmp_path: Path, open_page) -> None:  # type: ignore[no-untyped-def]
    scene_set, index = scenes
    code, _, err = run("detect", "--index", index, "--prompts", "ucf-crime", "--out", tmp_path / "d")
    assert code == 0, err
    assert {p.name for p in (tmp_path / "d").iterdir()} >= {"report.html", "videos.csv", "segments.csv"}
    open_page(tmp_path / "d" / "report.html").assert_clean()
    code, out, err = run("query", "a fire", "--index", index, "-k", "6", "--html", tmp_path / "hits.html",
                         "--format", "json")  # fmt: skip
    assert code == 0, err and len(json.loads(out)) == 6
    page = open_page(tmp_path / "hits.html")
    page.assert_clean()
    assert page.js("document.querySelectorAll('figure.hit img').length") == 6
    assert "a fire" in page.js("document.querySelector('.sub').textContent")


def test_max_videos_keeps_the_misclassified_and_says_what_it_left_out(
    scenes, tmp_path: Path, open_page
) -> None:  # type: ignore[no-untyped-def]
    scene_set, index = scenes
    result = _detect(index, scene_set, segment_threshold=0.0)  # everything flagged: normal videos are wrong
    v = result.videos
    wrong = int((v["label"].astype(int).to_numpy(bool) != v["anomalous"].to_numpy(bool)).sum())
    assert wrong >= 1
    summary = write_report(result, tmp_path / "r.html", max_videos=wrong + 1)
    assert summary.sections == wrong + 1 and summary.left_out == len(v) - wrong - 1
    assert summary.misclassified_left_out == 0
    page = open_page(summary.path)
    page.assert_clean()
    assert page.js("document.querySelectorAll('section.video.misclassified').length") == wrong
    assert page.js("document.querySelectorAll('#left-out ~ details tr').length") == summary.left_out + 1
    assert f"{summary.left_out} of {len(v)} videos have no section" in page.js("document.body.innerText")
    none = write_report(result, tmp_path / "none.html", max_videos=0)
    assert none.sections == 0 and none.left_out == len(v)


def test_nothing_flagged(scenes, tmp_path: Path, open_page) -> None:  # type: ignore[no-untyped-def]
    scene_set, index = scenes
    result = _detect(index, scene_set, segment_threshold=1.0)
    assert result.n_anomalous_segments == 0
    page = open_page(write_report(result, tmp_path / "r.html").path)
    page.assert_clean()
    assert "No segment was decided anomalous" in page.js("document.body.innerText")
    assert page.js("document.querySelectorAll('section.video').length") == 5


def test_tune_writes_its_heat_maps(scenes, tmp_path: Path, open_page) -> None:  # type: ignore[no-untyped-def]
    scene_set, index = scenes
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "rule: [threshold]\ncalibrate: [none]\nsmooth: [0]\nknn_k: [0]\nvideo_agg: [ratio, max]\n"
    )
    code, _, err = run("tune", "--index", index, "--prompts", "; ".join(synth.DEMO_ANOMALY_PROMPTS),
                       "--normal-prompts", "; ".join(synth.DEMO_NORMAL_PROMPTS), "--folds", "2", "--grid", grid,
                       "--out", tmp_path / "best.yaml")  # fmt: skip
    assert code == 0, err
    page = open_page(tmp_path / "best.html")
    page.assert_clean()
    assert page.js("document.querySelectorAll('img.plot').length") == 3  # two folds, then all videos
    assert "Held-out" not in page.js("document.title")


# -- bad input ----------------------------------------------------------------------------------------


def test_report_without_labels(built_index: Path, tmp_path: Path, open_page) -> None:
    code, out, err = run("report", "--index", built_index, "--prompts", "people fighting", "--out",
                         tmp_path / "r.html", "--format", "json")  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    assert summary["sections"] == 6 and summary["plots"] == 7  # the histogram and one per video
    page = open_page(tmp_path / "r.html")
    page.assert_clean()
    assert page.js("document.getElementById('metrics')") is None
    assert page.js("document.getElementById('curves')") is None
    assert "no labels" in page.js("document.body.innerText")


@pytest.fixture()
def awkward(tmp_path: Path, encoder) -> Path:  # type: ignore[no-untyped-def]
    """An index over a video named like an HTML tag and one whose file is then deleted."""
    folder = tmp_path / "videos"
    write_video(folder / EVIL, seconds=2.0, size=(64, 48), seed=1)
    write_video(folder / "gone.mp4", seconds=3.0, size=(64, 48), seed=2)
    build_index([folder], tmp_path / "ix", encoder=encoder, progress=False)
    (folder / "gone.mp4").unlink()
    return tmp_path / "ix"


def test_deleted_video_and_html_in_a_name(awkward: Path, tmp_path: Path, open_page) -> None:
    code, out, err = run("report", "--index", awkward, "--prompts", "people fighting", "--segment-threshold",
                         "0", "--out", tmp_path / "r.html", "--format", "json")  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    assert summary["thumbnails"] == {"placeholder": 3, "video": 2}
    page = open_page(tmp_path / "r.html")
    page.assert_clean()  # no alert: the name is text, and the placeholders are real images
    headings = page.js(
        "Array.from(document.querySelectorAll('section.video h3')).map(h => h.firstChild.textContent.trim())"
    )
    assert EVIL in headings and "gone.mp4" in headings
    assert page.js("Array.from(document.images).filter(i => i.getAttribute('src') === 'x').length") == 0
    assert "gone.mp4: video not found" in page.js("document.body.innerText")
    assert "&lt;img src=x onerror=alert(1)&gt;.mp4" in (tmp_path / "r.html").read_text()

    code, out, err = run("query", "a person", "--index", awkward, "-k", "5", "--html", tmp_path / "hits.html")
    assert code == 0, err
    hits = open_page(tmp_path / "hits.html")
    hits.assert_clean()
    captions = hits.js(
        "Array.from(document.querySelectorAll('figure.hit figcaption')).map(f => f.textContent)"
    )
    assert len(captions) == 5 and any(EVIL in c for c in captions)
    assert "video not found" in hits.js("document.body.innerText")


def test_empty_index(tmp_path: Path, encoder, open_page) -> None:  # type: ignore[no-untyped-def]
    # Every video failed: the folder holds no commit, and the report says so in one line.
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.mp4").write_text("not a video")
    failed = tmp_path / "failed"
    assert build_index([tmp_path / "bad"], failed, encoder=encoder, progress=False).failures
    code, _, err = run("report", "--index", failed, "--prompts", "a fire", "--out", tmp_path / "x.html")
    assert code == 1 and err.count("\n") == 1 and "not a vadindex index" in err
    # A committed index with no segment: a page that says there is nothing to report.
    empty = tmp_path / "empty"
    empty.mkdir()
    i = encoder.identity
    manifest = IndexManifest(format_version=1, generation=1, model=i.model, pretrained=i.pretrained,
                             checkpoint_sha256=i.checkpoint_sha256, dim=encoder.dim, logit_scale=encoder.logit_scale,
                             sampling={"fps": 4.0, "segment_seconds": 1.0, "min_tail_fraction": 0.5})  # fmt: skip
    (empty / MANIFEST).write_text(manifest.to_json())
    result = detect(empty, "a fire", encoder=encoder)
    summary = write_report(result, tmp_path / "empty.html", options=ReportOptions(max_videos=5))
    assert summary.sections == 0 and summary.plots == 1
    page = open_page(summary.path)
    page.assert_clean()
    assert "holds no segments" in page.js("document.body.innerText")
    assert np.isfinite(summary.seconds)


def test_the_browser_check_catches_what_it_looks_for(tmp_path: Path, open_page) -> None:
    """The checks above can fail: a remote image, a script error and a broken image are all caught."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<html><body><img src="http://example.invalid/x.png"><img src="data:image/png;base64,AAAA">'
        "<script>null.x</script></body></html>"
    )
    opened = open_page(page)
    assert any(u.startswith("http://example.invalid") for u in opened.requests)
    assert any(kind == "error" for kind, _ in opened.console)
    with pytest.raises(AssertionError):
        opened.assert_clean()


def test_command_lines_and_options() -> None:
    from vadindex.detect.options import DetectOptions
    from vadindex.detect.prompts import load_prompt_set
    from vadindex.errors import InputError
    from vadindex.report.report import command_line

    built_in = shlex.split(
        command_line("report", "ix", load_prompt_set("ucf-crime"), None, DetectOptions(smooth=2))
    )
    assert (
        built_in[built_in.index("--prompts") + 1] == "ucf-crime"
        and built_in[built_in.index("--smooth") + 1] == "2"
    )
    inline = shlex.split(command_line("detect", "ix", load_prompt_set("a fire; a fight", "a street")))
    assert inline[inline.index("--prompts") + 1] == "a fire; a fight"
    assert inline[inline.index("--normal-prompts") + 1] == "a street"
    # Prompts that came from a --config file are left to the file; a prompt given on the line is kept.
    from_config = shlex.split(command_line("report", "ix", load_prompt_set("a fire"), config="best.yaml"))
    assert "--prompts" not in from_config and from_config[from_config.index("--config") + 1] == "best.yaml"
    assert "--prompts" in shlex.split(command_line("report", "ix", "a fire", config="best.yaml"))
    for bad in ({"max_videos": -1}, {"thumbnail_size": 8}, {"video_root": "no-equals-sign"}):
        with pytest.raises(InputError):
            ReportOptions(**bad)
