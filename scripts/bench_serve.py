"""``vadindex serve`` under load: search round trips on the demo index and at 1M segments, 50 concurrent
clients, and review rescoring at 100,000 segments. Every server is a real ``vadindex serve`` process
on loopback; every figure is a wall-clock HTTP round trip measured by the client (httpx, keep-alive).

- ``demo``: the demo index (``vadindex demo``, 20 videos, or ``--demo DIR``). ``first_query_s`` is the
  first search (it loads the model); ``query_ms`` the median and p95 of warm searches for texts never
  seen before (each is encoded), ``query_repeat_ms`` the same texts again (embeddings kept);
  ``page_ms`` the search page with its thumbnails, fetched 6 at a time like a browser;
- ``load``: ``--clients`` clients, each sending ``--queries`` searches for new texts one after the
  other, all at once against the demo server: errors, p50/p95/p99 and requests per second;
- ``review``: a synthetic index of ``--review-segments`` segments (random unit vectors, written through
  the index writer under a random-weight ViT-B-32's identity so the server can load its text tower):
  the first ``/api/review`` (encodes the prompts, fills the similarity cache) and then rescoring
  with other thresholds and rules (prompts cached): median and max;
- ``million``: a synthetic index of ``--segments`` segments (IVF above 200,000), warm search round
  trips for new texts (the text tower encodes each one): median and p95.

Targets (issue 12): warm search round trip <= 150 ms on the demo index and <= 300 ms at 1M segments;
review rescoring <= 1 s at 100,000 segments once prompts are cached; 0 errors under load. The last
line printed is one JSON object.

    python scripts/bench_serve.py
    python scripts/bench_serve.py --segments 20000 --review-segments 5000 --clients 10 --queries 5   # a quick check
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_query import SyntheticData, write_synthetic_index  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SUBJECTS = ["a person", "two men", "a red car", "a crowd", "a cyclist", "smoke", "a dog", "a truck", "a woman",
            "a child", "a bus", "fire", "a bag", "a van", "people"]  # fmt: skip
ACTIONS = ["running", "fighting", "falling down", "crossing the street", "standing still", "on fire", "crashing",
           "walking at night", "climbing a fence", "lying on the ground", "driving fast", "waiting"]  # fmt: skip
PROMPTS = "people fighting; a person falling down; a car crash; a building on fire"


def texts(count: int, seed: int) -> list[str]:
    """``count`` different query texts (deterministic)."""
    rng = np.random.default_rng(seed)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < count:
        t = f"{SUBJECTS[rng.integers(len(SUBJECTS))]} {ACTIONS[rng.integers(len(ACTIONS))]} {int(rng.integers(1000))}"
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


class Server:
    """``vadindex serve`` in its own process on a free loopback port."""

    def __init__(self, index: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        cmd = [
            sys.executable,
            "-m",
            "vadindex._cli.main",
            "-q",
            "serve",
            "--index",
            str(index),
            "--port",
            "0",
        ]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
        )
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(300)
        match = re.search(r"http://[^/\s]+", line[0] if line else "")
        if match is None:
            self.stop()
            raise SystemExit(f"vadindex serve did not start: {line}")
        self.url = match.group(0)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def ms(values: list[float]) -> dict[str, float]:
    """Median, p95 and max of seconds, in milliseconds."""
    q = sorted(values)
    p95 = q[min(len(q) - 1, int(round(0.95 * (len(q) - 1))))]
    return {
        "median": round(statistics.median(q) * 1000, 1),
        "p95": round(p95 * 1000, 1),
        "max": round(q[-1] * 1000, 1),
    }


def timed_get(client: httpx.Client, url: str, **params: Any) -> float:
    t = time.perf_counter()
    r = client.get(url, params=params)
    r.raise_for_status()
    return time.perf_counter() - t


def search_round_trips(server: Server, count: int, seed: int) -> dict[str, Any]:
    """First search (loads the model), then warm searches for new texts and for repeated ones."""
    with httpx.Client(base_url=server.url, timeout=600) as c:
        first = timed_get(c, "/api/query", text="a person walking", k=10)
        new = texts(count, seed)
        warm = [timed_get(c, "/api/query", text=t, k=10) for t in new]
        repeat = [timed_get(c, "/api/query", text=t, k=10) for t in new]
    return {"first_query_s": round(first, 2), "query_ms": ms(warm), "query_repeat_ms": ms(repeat)}


def page_with_thumbnails(server: Server, count: int, seed: int) -> dict[str, float]:
    """The search page for a new text and the thumbnails of its raw grid, 6 at a time (a browser's
    connections per host)."""
    times = []
    with httpx.Client(base_url=server.url, timeout=600) as c, ThreadPoolExecutor(6) as pool:
        for text in texts(count, seed):
            t = time.perf_counter()
            page = c.get("/search", params={"text": text, "k": 10, "view": "segments"})
            page.raise_for_status()
            urls = sorted(set(re.findall(r'src="(/api/segments/[^"]+/thumbnail)"', page.text)))
            for r in pool.map(c.get, urls):
                r.raise_for_status()
            times.append(time.perf_counter() - t)
    return ms(times)


async def _client(ac: httpx.AsyncClient, queries: list[str], lat: list[float], errors: list[str]) -> None:
    for text in queries:
        t = time.perf_counter()
        try:
            r = await ac.get("/api/query", params={"text": text, "k": 10})
            r.raise_for_status()
            if len(r.json()) != 10:
                raise ValueError(f"{len(r.json())} rows")
            lat.append(time.perf_counter() - t)
        except Exception as exc:  # noqa: BLE001 - every failure is counted, whatever it is
            errors.append(repr(exc))


async def _load(url: str, clients: int, per_client: int, seed: int) -> dict[str, Any]:
    all_texts = texts(clients * per_client, seed)
    lat: list[float] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as ac:
        t = time.perf_counter()
        await asyncio.gather(
            *(
                _client(ac, all_texts[i * per_client : (i + 1) * per_client], lat, errors)
                for i in range(clients)
            )
        )
        wall = time.perf_counter() - t
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [lat[0] * 1000] * 99
    return {
        "clients": clients,
        "queries_per_client": per_client,
        "ok": len(lat),
        "errors": len(errors),
        "first_errors": errors[:3],
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(lat) / wall, 1),
        "p50_ms": round(q[49] * 1000, 1),
        "p95_ms": round(q[94] * 1000, 1),
        "p99_ms": round(q[98] * 1000, 1),
    }


def review_rescoring(server: Server) -> dict[str, Any]:
    """The first review (prompts encoded and cached), then rescoring with other settings."""
    settings = [{"segment_threshold": t} for t in (0.3, 0.4, 0.5, 0.6, 0.7)] + [
        {"rule": "balanced"}, {"video_agg": "max", "segment_threshold": 0.4}, {"smooth": 2},
        {"calibrate": "zscore", "segment_threshold": 2.0}, {"rule": "topk", "top_k": 2},
    ]  # fmt: skip
    with httpx.Client(base_url=server.url, timeout=900) as c:
        first = timed_get(c, "/api/review", prompts=PROMPTS)
        again = [timed_get(c, "/api/review", prompts=PROMPTS, **s) for s in settings]
        flagged = [c.get("/api/review", params={"prompts": PROMPTS, "segment_threshold": t}).json()["flagged_segments"]
                   for t in (0.3, 0.7)]  # fmt: skip
    return {"first_review_s": round(first, 2), "rescore_ms": ms(again), "flagged_at_0.3_and_0.7": flagged}


def synthetic_index(path: Path, segments: int) -> float:
    """A synthetic index of ``segments`` segments under a random-weight ViT-B-32's identity."""
    from vadindex.models.openclip import load_encoder

    encoder = load_encoder("ViT-B-32", "random", "cpu")
    data = SyntheticData(segments, encoder.dim, "clustered")
    return write_synthetic_index(path, data, encoder.identity, encoder.logit_scale, "auto")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--demo", type=Path, default=None, help="A `vadindex demo` output folder [default: run the demo]."
    )
    ap.add_argument("--segments", type=int, default=1_000_000, help="Segments of the large index (0: skip).")
    ap.add_argument(
        "--review-segments", type=int, default=100_000, help="Segments of the review index (0: skip)."
    )
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--queries", type=int, default=20, help="Searches per client in the load test.")
    ap.add_argument("--round-trips", type=int, default=30, help="Timed warm searches per index.")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="Keep the indexes written.")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench_serve_", dir=args.workdir))
    result: dict[str, Any] = {
        "bench": "serve",
        "nproc": os.cpu_count(),
        "load_avg_1m": {"start": round(os.getloadavg()[0], 2)},
    }
    try:
        demo = args.demo
        if demo is None:
            demo = root / "demo"
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "vadindex._cli.main", "-q", "demo", "--out", str(demo)], check=True,
                           stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
            print(f"demo written in {time.perf_counter() - t:.0f} s", flush=True)
        server = Server(demo / "index")
        try:
            result["demo"] = search_round_trips(server, args.round_trips, seed=1)
            result["demo"]["page_ms"] = page_with_thumbnails(server, 10, seed=2)
            print(f"demo: {result['demo']}", flush=True)
            result["load_avg_1m"]["load_test"] = round(os.getloadavg()[0], 2)
            result["load"] = asyncio.run(_load(server.url, args.clients, args.queries, seed=3))
            print(f"load: {result['load']}", flush=True)
        finally:
            server.stop()

        if args.review_segments:
            path = root / "review"
            write_s = synthetic_index(path, args.review_segments)
            server = Server(path)
            try:
                result["review"] = {"segments": args.review_segments, "write_s": round(write_s, 1),
                                    **review_rescoring(server)}  # fmt: skip
            finally:
                server.stop()
            print(f"review: {result['review']}", flush=True)
            if not args.keep:
                shutil.rmtree(path, ignore_errors=True)

        if args.segments:
            path = root / "million"
            write_s = synthetic_index(path, args.segments)
            result["load_avg_1m"]["million"] = round(os.getloadavg()[0], 2)
            server = Server(path)
            try:
                info = httpx.get(server.url + "/api/info", timeout=60).json()
                result["million"] = {"segments": info["n_segments"], "search": info.get("search"),
                                     "write_s": round(write_s, 1), **search_round_trips(server, args.round_trips, seed=4)}  # fmt: skip
            finally:
                server.stop()
            print(f"million: {result['million']}", flush=True)
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    result["load_avg_1m"]["end"] = round(os.getloadavg()[0], 2)
    targets = {
        "demo_query_ms<=150": result.get("demo", {}).get("query_ms", {}).get("median", 1e9) <= 150,
        "million_query_ms<=300": result.get("million", {}).get("query_ms", {}).get("median", 1e9) <= 300
        if "million" in result
        else None,
        "review_rescore_ms<=1000": result.get("review", {}).get("rescore_ms", {}).get("max", 1e9) <= 1000
        if "review" in result
        else None,
        "load_errors==0": result.get("load", {}).get("errors", 1) == 0,
    }
    result["targets_met"] = targets
    print(json.dumps(result))


if __name__ == "__main__":
    main()
