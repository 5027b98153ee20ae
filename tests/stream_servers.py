"""Real stream servers on loopback for the watch tests: FFmpeg over UDP and HTTP, GStreamer's RTSP
server, a file growing in real time, garbage datagrams, webhook receivers that answer or never do.

Every server is a real process or socket bound to 127.0.0.1 on a free port, started in its own
session and ended in the tests' ``finally`` (terminate, then kill).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
#: Debian's Python, which has GStreamer's bindings (python3-gi); a virtual environment usually does not.
SYSTEM_PYTHON = "/usr/bin/python3"
#: What to install when a tool is missing (the CI installs exactly these, see .ci/run).
APT = (
    "ffmpeg python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
    "gstreamer1.0-plugins-ugly"
)
#: Encoding of every FFmpeg sender: cheap, no lookahead, a keyframe every second at 10 frames/s.
X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "10", "-pix_fmt", "yuv420p"]


def ffmpeg() -> str:
    """The system ffmpeg (fails, not skips: the stream tests must run wherever the suite runs)."""
    path = shutil.which("ffmpeg")
    if path is None:
        pytest.fail(f"ffmpeg not found; install it: apt-get install {APT}")
    return path


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port on 127.0.0.1 that nothing is bound to right now (UDP by default)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A server process: stopped, paused or resumed by the test."""

    def __init__(self, args: list[str], ready: str | None = None, timeout: float = 15.0) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if ready else subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            text=True,
        )
        if ready:
            assert self.proc.stdout is not None
            line = ""
            deadline = time.monotonic() + timeout
            while ready not in line:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    pytest.fail(f"{args[0]} did not start ({' '.join(args)})")
                line = self.proc.stdout.readline()

    def running(self) -> bool:
        return self.proc.poll() is None

    def pause(self) -> None:
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGCONT)
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def wait(self, timeout: float) -> None:
        self.proc.wait(timeout)


def udp_sender(clip: Path, port: int, loop: bool = False) -> Server:
    """``ffmpeg -re`` sending ``clip`` as MPEG-TS over UDP (once, or looped)."""
    looping = ["-stream_loop", "-1"] if loop else []
    return Server(
        [ffmpeg(), "-hide_banner", "-loglevel", "error", "-re", *looping, "-i", str(clip), *X264,
         "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"]
    )  # fmt: skip


def http_server(clip: Path, port: int) -> Server:
    """``ffmpeg -listen 1``: a one-client HTTP server of ``clip`` as MPEG-TS, looped.

    Never probe it with a connection: the probe would be its one client.
    """
    return Server(
        [ffmpeg(), "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip), *X264,
         "-f", "mpegts", "-listen", "1", f"http://127.0.0.1:{port}/live.ts"]
    )  # fmt: skip


def growing_file(clip: Path, target: Path) -> Server:
    """``ffmpeg -re`` writing ``clip`` into an MPEG-TS file in real time, flushing every packet."""
    return Server(
        [ffmpeg(), "-hide_banner", "-loglevel", "error", "-re", "-i", str(clip), *X264,
         "-flush_packets", "1", "-f", "mpegts", str(target)]
    )  # fmt: skip


def rtsp_server(port: int, mount: str = "/live") -> Server:
    """GStreamer's RTSP server (tests/rtsp_server.py under Debian's Python) serving a live pattern."""
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0')"], capture_output=True
    )
    if probe.returncode != 0:
        pytest.fail(
            f"GStreamer's RTSP server is not usable from {SYSTEM_PYTHON}; install: apt-get install {APT}"
        )
    return Server([SYSTEM_PYTHON, str(HERE / "rtsp_server.py"), str(port), mount], ready="READY")


class GarbageSender:
    """Random 1316-byte datagrams to a UDP port, 100 a second, from a thread."""

    def __init__(self, port: int, seed: int = 0) -> None:
        import numpy as np

        self._rng = np.random.default_rng(seed)
        self._port = port
        self._stop = threading.Event()
        self.sent = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while not self._stop.wait(0.01):
                s.sendto(self._rng.bytes(1316), ("127.0.0.1", self._port))
                self.sent += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class WebhookReceiver:
    """An HTTP server on loopback that records the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        received: list[dict] = []
        self.received = received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Blackhole:
    """A TCP listener that accepts connections and never answers: a webhook that hangs."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/hook"
        self.connections: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                conn, _ = self._sock.accept()
                self.connections.append(conn)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self.connections:
            conn.close()
        self._sock.close()
