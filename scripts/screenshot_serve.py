"""The README's picture of ``vadindex serve``: the search page of the demo index (event cards) above
the review page's controls and first videos, photographed in headless Debian Chromium (Playwright)
from a real server, and saved as one small palette PNG.

    vadindex demo --out demo-out
    python scripts/screenshot_serve.py demo-out docs/serve.png
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import quote

from PIL import Image
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo", type=Path, help="A `vadindex demo` output folder.")
    parser.add_argument("out", type=Path)
    parser.add_argument("--width", type=int, default=1100)
    parser.add_argument("--colors", type=int, default=128, help="Palette size of the PNG.")
    args = parser.parse_args()
    from vadindex.demo import synth

    cmd = [sys.executable, "-m", "vadindex._cli.main", "serve", "--index", str(args.demo / "index"), "--port", "0",
           "--annotations", str(args.demo / "scenes" / "annotations.txt")]  # fmt: skip
    server = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(server.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(120)
    match = re.search(r"http://\S+?/", line[0] if line else "")
    if match is None:
        server.kill()
        raise SystemExit(f"vadindex serve did not start: {line}")
    base = match.group(0).rstrip("/")
    shots = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": args.width, "height": 800})
            # The first search loads the model: not the time a reader should see on the picture.
            page.goto(base + "/search?text=a+street", wait_until="load", timeout=180_000)
            page.goto(base + "/search?text=smoke+and+flames&k=24", wait_until="networkidle", timeout=180_000)
            shots.append(page.screenshot(clip={"x": 0, "y": 0, "width": args.width, "height": 560}))
            page.goto(
                base + "/review?prompts=" + quote("; ".join(synth.DEMO_ANOMALY_PROMPTS)), wait_until="load"
            )
            page.wait_for_selector("#videos li", timeout=180_000)
            page.wait_for_timeout(300)
            top = page.evaluate(
                "document.getElementById('review-form').getBoundingClientRect().top + window.scrollY"
            )
            shots.append(
                page.screenshot(
                    clip={"x": 0, "y": top - 10, "width": args.width, "height": 1080}, full_page=True
                )
            )
            browser.close()
    finally:
        server.terminate()
        server.wait(20)
    images = [Image.open(io.BytesIO(png)).convert("RGB") for png in shots]
    sheet = Image.new(
        "RGB", (args.width, sum(i.height for i in images) + 8 * (len(images) - 1)), (200, 205, 214)
    )
    y = 0
    for image in images:
        sheet.paste(image, (0, y))
        y += image.height + 8
    sheet = sheet.quantize(args.colors, method=Image.Quantize.MEDIANCUT)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(json.dumps({"out": str(args.out), "bytes": args.out.stat().st_size, "size": list(sheet.size)}))


if __name__ == "__main__":
    main()
