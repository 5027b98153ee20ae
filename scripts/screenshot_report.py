"""The README's picture of a report: the metric cards and the first video sections of a report,
photographed in headless Debian Chromium (Playwright) and saved as a small palette PNG.

    vadindex demo --out demo-out
    python scripts/screenshot_report.py demo-out/detect/report.html docs/report.png
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--height", type=int, default=1300)
    parser.add_argument("--colors", type=int, default=128, help="Palette size of the PNG.")
    args = parser.parse_args()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        page.goto(args.report.resolve().as_uri(), wait_until="load")
        # From the metric cards down: what a reader sees first, then the first videos.
        top = page.evaluate("document.getElementById('metrics').getBoundingClientRect().top + window.scrollY")
        # Hide the long middle (curves, per-class table, histogram) so cards and videos fit one picture.
        page.evaluate(
            """() => { let e = document.getElementById('curves'); const stop = document.getElementById('videos');
                 while (e && e !== stop) { const next = e.nextElementSibling; e.style.display = 'none'; e = next; } }"""
        )
        videos = page.evaluate(
            "document.getElementById('videos').getBoundingClientRect().top + window.scrollY"
        )
        png = page.screenshot(
            clip={"x": 0, "y": top - 10, "width": args.width, "height": args.height}, full_page=True
        )
        browser.close()
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(args.colors, method=Image.Quantize.MEDIANCUT)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image.save(args.out, optimize=True)
    print(json.dumps({"out": str(args.out), "bytes": args.out.stat().st_size, "videos_at": videos - top}))


if __name__ == "__main__":
    main()
