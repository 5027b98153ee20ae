"""``vadindex serve`` as a person uses it: real server processes, Debian's Chromium (headless, via
Playwright), the demo index. Every page is checked for console errors, failed or foreign requests,
script dialogs and images that did not load; screenshots go to $VADINDEX_SCREENSHOTS (else a
temporary folder)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from conftest import write_video

from vadindex.demo import synth
from vadindex.ingest import build_index

EVIL = "<img src=x onerror=alert(1)>.mp4"
#: The first query loads the model in the server (PyTorch and open_clip: seconds on a busy machine).
SLOW_MS = 180_000


class Server:
    """``vadindex serve`` in its own process on a free port; ``url`` is what it printed."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vadindex._cli.main", "serve", "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        self.err: list[str] = []
        threading.Thread(target=lambda: self.err.extend(self.proc.stderr), daemon=True).start()  # type: ignore[arg-type]
        found: list[str] = []
        reader = threading.Thread(target=lambda: found.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(120)
        match = re.search(r"http://\S+", found[0] if found else "")
        if match is None:
            self.stop()
            raise AssertionError(f"vadindex serve printed no URL: {found} {''.join(self.err)}")
        self.url = match.group(0)
        parts = urlsplit(self.url)
        #: Where to connect (the printed host may be this machine's name when listening everywhere).
        self.base = f"http://127.0.0.1:{parts.port}"
        self.query = parts.query

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Session:
    """A browser context on one server, with everything its pages said and asked for."""

    page: Any
    base: str
    shots: Path
    problems: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def js(self, expression: str) -> Any:
        return self.page.evaluate(expression)

    def goto(self, path: str) -> None:
        self.page.goto(self.base + path, wait_until="load", timeout=SLOW_MS)

    def wait_images(self, selector: str) -> list[list[Any]]:
        """Wait until the images matching ``selector`` have loaded (or failed); their [complete, width]."""
        images: list[list[Any]] = []
        for _ in range(300):
            images = self.js(
                f"Array.from(document.querySelectorAll({selector!r})).map(i => [i.complete, i.naturalWidth])"
            )
            if images and all(done for done, _ in images):
                break
            self.page.wait_for_timeout(100)
        return images

    def wait_text_change(self, selector: str, before: str) -> str:
        text = before
        for _ in range(600):
            text = self.page.inner_text(selector)
            if text != before:
                break
            self.page.wait_for_timeout(100)
        return text

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.shots / f"serve-{name}.png"), full_page=True)

    def assert_clean(self) -> None:
        assert not self.problems, self.problems
        assert not self.dialogs, self.dialogs


def session(browser: Any, base: str, shots: Path) -> Session:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    s = Session(page, base, shots)

    def route(r: Any) -> None:  # anything but the server itself is refused, and reported
        if r.request.url.startswith(base + "/"):
            r.continue_()
        else:
            s.problems.append(f"request outside the server: {r.request.url}")
            r.abort()

    context.route("**/*", route)
    page.on(
        "console",
        lambda m: m.type in ("error", "warning") and s.problems.append(f"console.{m.type}: {m.text}"),
    )
    page.on("pageerror", lambda e: s.problems.append(f"pageerror: {e}"))
    # ERR_ABORTED is the browser cancelling a request itself (leaving a page while its video
    # loads); foreign requests that the route refuses are reported above.
    page.on(
        "requestfailed",
        lambda r: "ERR_ABORTED" not in str(r.failure) and s.problems.append(f"failed: {r.url} {r.failure}"),
    )
    page.on("dialog", lambda d: (s.dialogs.append(d.message), d.dismiss()))
    return s


# -- the demo index, served -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def served_demo(demo_run) -> Iterator[Server]:  # type: ignore[no-untyped-def]
    server = Server("--index", str(demo_run.out / "index"), "--annotations",
                    str(demo_run.out / "scenes" / "annotations.txt"))  # fmt: skip
    yield server
    server.stop()


def test_search_open_and_more_like_this(browser: Any, served_demo: Server, shots: Path) -> None:
    s = session(browser, served_demo.base, shots)
    s.goto("/search")
    s.page.fill("#text", "smoke and flames")
    with s.page.expect_navigation(timeout=SLOW_MS):
        s.page.press("#text", "Enter")
    assert "text=smoke+and+flames" in s.page.url  # the state is in the URL
    events = s.wait_images("#events a.card img.thumb")
    assert events and all(width > 0 for _, width in events), events
    top = s.page.inner_text("#events a.card >> nth=0")
    assert "Fire" in top, top
    s.shot("search-events")
    # Raw segments: every hit its own card, in place, the URL updated.
    s.page.click("#view-toggle")
    assert "view=segments" in s.page.url and s.js("document.getElementById('events').hidden")
    cards = s.wait_images("#segments a.card img.thumb")
    assert len(cards) >= 5 and all(width > 0 for _, width in cards), cards
    s.shot("search-segments")
    # A card opens the segment: its frames, the segment playing from its video, its neighbours.
    with s.page.expect_navigation():
        s.page.click("#segments a.card >> nth=0")
    assert "/segments/" in s.page.url
    frames = s.wait_images("#frames img")
    assert len(frames) == 4 and all(width > 0 for _, width in frames)
    assert all(width > 0 for _, width in s.wait_images("#neighbours img"))
    for _ in range(200):  # metadata arrives through range requests
        if s.js("document.getElementById('player').readyState") >= 1:
            break
        s.page.wait_for_timeout(100)
    player = s.js(
        "(() => { const v = document.getElementById('player'); return [v.readyState, v.duration, v.currentTime]; })()"
    )
    assert player[0] >= 1 and player[1] > 5, player
    s.page.click("#play-segment")
    s.shot("segment")
    with s.page.expect_navigation():
        s.page.click("#more-like-this")
    assert "like=" in s.page.url
    similar = s.wait_images("#events a.card img.thumb")
    assert similar and all(width > 0 for _, width in similar)
    assert "Fire" in s.page.inner_text("#events a.card >> nth=0")
    s.shot("more-like-this")
    s.goto("/index")
    assert "20 videos" in s.page.inner_text("#contents")
    s.assert_clean()


def test_review_threshold_rescores_in_place(browser: Any, served_demo: Server, shots: Path) -> None:
    s = session(browser, served_demo.base, shots)
    prompts = "; ".join(synth.DEMO_ANOMALY_PROMPTS)
    s.goto("/review?prompts=" + quote(prompts))
    s.page.wait_for_selector("#videos li", timeout=SLOW_MS)
    before = s.page.inner_text("#flagged-segments")
    assert s.js("document.querySelectorAll('#histogram rect').length") > 3
    assert s.js("document.querySelectorAll('#videos li svg polyline').length") == 20
    s.shot("review")
    loads = s.js("performance.getEntriesByType('navigation').length")
    s.page.locator("#opt-segment_threshold-range").fill("0.15")  # drag the slider
    after = s.wait_text_change("#flagged-segments", before)
    assert after != before and int(after.split()[0]) > int(before.split()[0]), (before, after)
    assert "segment_threshold=0.15" in s.page.url  # the state is in the URL
    assert s.js("performance.getEntriesByType('navigation').length") == loads  # no reload
    s.page.select_option("#opt-calibrate", "zscore")
    s.page.fill("#opt-segment_threshold", "1.5")
    s.page.dispatch_event("#opt-segment_threshold", "input")
    z = s.wait_text_change("#flagged-segments", after)
    assert z != after
    # A video's own page: its timeline under these settings, thumbnails along it.
    with s.page.expect_navigation():
        s.page.click("#videos li:has-text('Fire_') >> nth=0")
    assert "/videos/" in s.page.url and "calibrate=zscore" in s.page.url
    for _ in range(300):
        if s.js("document.querySelectorAll('#timeline polyline').length"):
            break
        s.page.wait_for_timeout(100)
    assert s.js("document.querySelectorAll('#timeline polyline').length") == 1
    assert s.js("document.querySelectorAll('#timeline rect[fill=\"#2a9d4b\"]').length") > 0  # annotated spans
    assert all(width > 0 for _, width in s.wait_images("#thumbnails img"))
    s.shot("video")
    s.assert_clean()


# -- a token, and a name that is HTML ---------------------------------------------------------------


@pytest.fixture(scope="module")
def served_evil(tmp_path_factory: pytest.TempPathFactory, encoder) -> Iterator[Server]:  # type: ignore[no-untyped-def]
    """An index holding a video named like an HTML tag, served on every address: a token is needed."""
    root = tmp_path_factory.mktemp("evil")
    write_video(root / "videos" / EVIL, seconds=3.0, size=(96, 64), seed=1)
    write_video(root / "videos" / "plain.mp4", seconds=2.0, size=(96, 64), seed=2)
    build_index([root / "videos"], root / "ix", encoder=encoder, progress=False)
    server = Server("--index", str(root / "ix"), "--host", "0.0.0.0")
    yield server
    server.stop()


def test_token_link_and_escaping(browser: Any, served_evil: Server, shots: Path) -> None:
    token = re.search(r"token=([A-Za-z0-9._~-]+)", served_evil.query)
    assert token is not None and len(token.group(1)) >= 32, served_evil.url  # generated and printed
    # Without the token nothing is served, pages or API.
    assert httpx.get(served_evil.base + "/api/info").status_code == 401
    assert httpx.get(served_evil.base + "/api/info", headers={"X-Token": token.group(1)}).status_code == 200
    refused = session(browser, served_evil.base, shots)  # its console reports the 401s: expected
    refused.page.goto(served_evil.base + "/search", wait_until="load")
    assert "needs a token" in refused.page.inner_text("#error")
    s = session(browser, served_evil.base, shots)
    # The printed link sets the cookie and drops the token from the address.
    s.goto("/search?text=a%20moving%20square&k=10&view=segments&" + served_evil.query)
    assert "token=" not in s.page.url and "text=a+moving+square" in s.page.url
    captions = s.js(
        "Array.from(document.querySelectorAll('#segments a.card')).map(a => a.querySelectorAll('.cap b')[1].textContent)"
    )
    assert EVIL in captions, captions
    assert s.js("Array.from(document.images).filter(i => i.getAttribute('src') === 'x').length") == 0
    assert all(width > 0 for _, width in s.wait_images("#segments img"))
    s.shot("escaped-search")
    video_id = s.js("document.querySelector('#segments a.card').href.split('/segments/')[1].split('-')[0]")
    card = next(i for i, c in enumerate(captions) if c == EVIL)
    with s.page.expect_navigation():
        s.page.click(f"#segments a.card >> nth={card}")
    assert s.page.inner_text("#title") == EVIL
    s.goto("/review?prompts=" + quote("a moving square; people fighting"))
    s.page.wait_for_selector("#videos li", timeout=SLOW_MS)
    names = s.js("Array.from(document.querySelectorAll('#videos .name')).map(n => n.textContent)")
    assert EVIL in names
    s.shot("escaped-review")
    assert video_id
    s.assert_clean()
    assert "Traceback" not in "".join(served_evil.err)


def test_serve_needs_a_token_off_loopback_and_stops_cleanly(served_evil: Server) -> None:
    code = subprocess.run(
        [sys.executable, "-m", "vadindex._cli.main", "serve", "--index", "/nonexistent/ix"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )  # fmt: skip
    assert code.returncode == 1 and code.stderr.count("\n") == 1 and "no such index" in code.stderr
    t = time.perf_counter()
    r = httpx.get(served_evil.base + "/api/query", params={"text": "a", "k": 3},
                  headers={"Authorization": "Bearer " + served_evil.query.split("=", 1)[1]})  # fmt: skip
    assert r.status_code == 200 and len(r.json()) == 3, (r.status_code, r.text[:200], time.perf_counter() - t)
