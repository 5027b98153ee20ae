"""Shared fixtures: offline, CPU-only, small real inputs."""

from __future__ import annotations

import logging
import os
import shutil
import socket
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The real clips beside the repository (``VADINDEX_TEST_VIDEOS`` points elsewhere).
SHARED_VIDEOS = Path(os.environ.get("VADINDEX_TEST_VIDEOS") or ROOT.parent / "shared" / "data" / "videos")
TEST_MODEL = "vadindex-test"
#: In CI (``CI=true``, as GitHub Actions, GitLab and most runners set it) nothing may skip for want
#: of data or of an optional package that CI installs: a green run must have run every test.
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
#: Reason of the skips that :func:`pytest_terminal_summary` counts.
NO_VIDEOS = f"real clips not found at {SHARED_VIDEOS}"


def skip_unless_ci(reason: str) -> None:
    """Skip the current test locally; in CI, fail it: CI must provide what the test needs."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a test may not skip for want of data or packages)", pytrace=False)
    pytest.skip(reason)


def import_or_skip_unless_ci(module: str):  # type: ignore[no-untyped-def]
    """``pytest.importorskip`` that fails in CI instead of skipping (CI installs the extras)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        skip_unless_ci(f"{module} is not installed")


@pytest.fixture(scope="session", autouse=True)
def _session_caches(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The same temporary caches for module- and session-scoped fixtures, which are set up before
    (and outside) :func:`_offline`: builds there export text towers and remember int8 verdicts in
    the user cache, never the real one."""
    patch = pytest.MonkeyPatch()
    cache = tmp_path_factory.getbasetemp() / "cache"
    patch.setenv("HF_HUB_OFFLINE", "1")
    patch.setenv("HF_HOME", str(cache / "hf"))
    patch.setenv("XDG_CACHE_HOME", str(cache))
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def _offline(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> None:
    """No network, ever, and caches in a temporary folder; no GPU except for ``gpu`` tests."""
    cache = tmp_path_factory.getbasetemp() / "cache"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(cache / "hf"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    if request.node.get_closest_marker("gpu") is None:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture(scope="session")
def shared_videos() -> Path:
    """The real clips in ../shared/data/videos (skips when absent; an error in CI)."""
    if not SHARED_VIDEOS.is_dir():
        skip_unless_ci(NO_VIDEOS)
    return SHARED_VIDEOS


def write_video(
    path: Path,
    seconds: float = 3.0,
    fps: int = 10,
    size: tuple[int, int] = (96, 64),
    color: tuple[int, int, int] | None = None,
    codec: str = "libx264",
    seed: int = 0,
) -> Path:
    """Write a small real video: a moving square on a background, H.264 by default."""
    import av

    rng = np.random.default_rng(seed)
    w, h = size
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        base = np.array(color if color is not None else rng.integers(0, 255, 3), dtype=np.uint8)
        n = max(1, round(seconds * fps))
        for i in range(n):
            img = np.empty((h, w, 3), np.uint8)
            img[:] = base
            x = int((w - 16) * i / max(n - 1, 1))
            img[h // 2 - 8 : h // 2 + 8, x : x + 16] = 255 - base
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="session")
def encoder():  # type: ignore[no-untyped-def]
    """A tiny random-initialised open_clip model (seeded: the same in every process), in fp32.

    fp32, not ``auto``: on a CPU ``auto`` moves to int8 after its first frames, and tests compare
    with this encoder as the reference.
    """
    from vadindex.models.openclip import load_encoder

    return load_encoder(TEST_MODEL, "random", "cpu", "fp32")


@pytest.fixture(scope="session")
def small_clips(shared_videos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a few real clips: 2 fights, 2 normal, the VFR clip and the 0-frame-header AVI."""
    folder = tmp_path_factory.mktemp("clips")
    for rel in ("fight/fi001.mp4", "fight/fi010.mp4", "nofight/nofi001.mp4", "nofight/nofi020.mp4",
                "traffic_camera_vfr.mp4", "highway-cyclist.avi"):  # fmt: skip
        dst = folder / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_videos / rel, dst)
    return folder


@pytest.fixture(scope="session")
def built_index(small_clips: Path, encoder, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    """An index over :func:`small_clips`, built once per session with the test model."""
    from vadindex.ingest import build_index

    path = tmp_path_factory.mktemp("index") / "ix"
    build_index([small_clips], path, encoder=encoder, progress=False)
    return path


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """``vadindex demo`` as the README measures it (held-out seed 7, 20 videos), run once per
    session: its index, scenes, detection and report are what the demo tests and the served pages
    look at."""
    from vadindex.demo import run_demo

    return run_demo(tmp_path_factory.mktemp("demo"), seed=7)


#: Real clips the S3 fixture uploads under ``s3://vids/cams/`` (beside ``broken.mp4``, not a video).
S3_CLIPS = ("fight/fi001.mp4", "nofight/nofi001.mp4", "highway-cyclist.avi")


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_server(shared_videos: Path) -> Iterator[str]:
    """moto's S3 server on a loopback port (a real S3 API, no network), with a bucket ``vids``
    holding :data:`S3_CLIPS` under ``cams/``, a garbage ``cams/broken.mp4`` and a text file;
    yields the endpoint URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        client = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        client.create_bucket(Bucket="vids")
        for rel in S3_CLIPS:
            client.upload_file(str(shared_videos / rel), "vids", f"cams/{rel}")
        client.put_object(Bucket="vids", Key="cams/broken.mp4", Body=b"not a video" * 100)
        client.put_object(Bucket="vids", Key="cams/notes.txt", Body=b"not listed")
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
def s3(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The S3 endpoint, with this process's AWS settings pointing at it (as a node's would)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return s3_server


def run(*args: object) -> tuple[int, str, str]:
    """``vadindex ARGS...`` in this process: exit status, stdout, stderr; an error of ours is raised
    with its traceback rather than hidden in an exit status."""
    from click.testing import CliRunner

    from vadindex._cli.main import cli

    result = CliRunner().invoke(cli, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


#: Debian's Chromium: page and report tests drive it through Playwright (no browser download).
CHROMIUM = "/usr/bin/chromium"
#: Root-safe headless flags (CI runs as root); no GPU, no background traffic of the browser's own.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]  # fmt: skip


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless. Missing, it is a failure (CI installs it), unless the developer
    opts out with VADINDEX_SKIP_BROWSER=1."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("VADINDEX_SKIP_BROWSER") == "1":
            pytest.skip("VADINDEX_SKIP_BROWSER=1 and no Chromium")
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (or set VADINDEX_SKIP_BROWSER=1)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: $VADINDEX_SCREENSHOTS, else a temporary folder."""
    folder = Path(os.environ.get("VADINDEX_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    """One line when tests skipped for want of the real clips: a green run without them proves
    nothing end to end."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if NO_VIDEOS in str(r.longrepr)]
    if skipped:
        terminalreporter.write_line(
            f"vadindex: {len(skipped)} test{'s' * (len(skipped) != 1)} skipped: {NO_VIDEOS} (put the sample clips there, or set "
            "VADINDEX_TEST_VIDEOS; with CI=true they are errors)",
            yellow=True,
        )
