"""``kill -9`` at random moments of a real build: the index stays whole, and a rerun completes it.

Each build is ``python -m vadindex._cli.main build ... --commit-every 1`` in a process of its own,
killed with SIGKILL. To pay the 5-10 s import of torch and open_clip once rather than per build,
the processes are forked from one parent that has imported them (and run nothing); each child
then runs the module exactly as ``python -m`` does (``runpy``), so the kernel sees a real process
die mid-build: no ``finally``, no ``atexit``, half-written files left behind, its lock dropped.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT, TEST_MODEL, write_video

from vadindex.errors import StoreError
from vadindex.index.check import check_index
from vadindex.index.manifest import MANIFEST, read_manifest
from vadindex.index.reader import open_index
from vadindex.ingest import build_index

N_VIDEOS = 10
KILLS = 3

#: Reads ``[stderr_file, *argv]`` lines; forks ``python -m vadindex._cli.main *argv`` for each and
#: prints the child's pid, then its wait status.
SERVER = r"""
import json, os, runpy, sys
import open_clip, torch  # the slow imports, once; no torch op runs in this parent
import vadindex._cli.main
for line in sys.stdin:
    stderr_file, *argv = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        os.dup2(os.open(stderr_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
        sys.argv = ["vadindex", *argv]
        code = 1
        try:
            runpy.run_module("vadindex._cli.main", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        finally:
            sys.stderr.flush()
            os._exit(code)
    print(pid, flush=True)
    print(os.waitpid(pid, 0)[1], flush=True)
"""


def _read_line(fd: int, timeout: float = 120.0) -> str:
    """One line from a raw pipe, unbuffered (so ``select`` on it stays truthful)."""
    out = b""
    while not out.endswith(b"\n"):
        assert select.select([fd], [], [], timeout)[0], "the build server stopped answering"
        chunk = os.read(fd, 1)
        assert chunk, "the build server exited"
        out += chunk
    return out.decode()


def _generation(ix: Path) -> int:
    try:
        return read_manifest(ix).generation if (ix / MANIFEST).exists() else 0
    except StoreError:
        return 0


def test_kill_9_at_random_moments_then_rerun_completes(tmp_path: Path, encoder) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "videos"
    for i in range(N_VIDEOS):
        write_video(folder / f"cam{i:02d}.mp4", seconds=2, size=(64, 48), seed=100 + i)
    ix = tmp_path / "ix"
    argv = ["build", str(folder), "--index", str(ix), "--model", TEST_MODEL, "--pretrained", "random",
            "--device", "cpu", "--commit-every", "1", "--no-progress"]  # fmt: skip
    seed = int(os.environ.get("VADINDEX_KILL_SEED", time.time_ns() % 100_000))
    rng = random.Random(seed)
    where = f"(rerun with VADINDEX_KILL_SEED={seed})"
    server = subprocess.Popen([sys.executable, "-c", SERVER], cwd=ROOT, bufsize=0,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
    assert server.stdin is not None and server.stdout is not None
    out = server.stdout.fileno()
    killed = 0
    try:
        for run in range(KILLS):
            start_gen = _generation(ix)
            log = tmp_path / f"build{run}.log"
            server.stdin.write((json.dumps([str(log), *argv]) + "\n").encode())
            pid = int(_read_line(out))

            def finished() -> bool:
                return bool(select.select([out], [], [], 0.01)[0])

            # Wait until this run has made 1-3 commits, so the kill lands inside the build loop (a
            # commit takes tens of milliseconds on an idle machine, so the extra delay stays short:
            # after a fixed wait the build had often finished).
            target = start_gen + rng.randint(1, 3)
            deadline = time.monotonic() + 120
            while not finished() and _generation(ix) < target and time.monotonic() < deadline:
                pass
            time.sleep(rng.uniform(0.0, 0.05))
            if not finished():
                # It may finish, and be reaped, between the check and the kill.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            status = int(_read_line(out))
            if os.WIFSIGNALED(status):
                killed += 1
            else:
                assert os.WEXITSTATUS(status) == 0, log.read_text()
            assert "Traceback" not in log.read_text(), log.read_text()
            # Whatever moment it died at, the index opens at a whole commit.
            snap = open_index(ix)
            m = snap.manifest
            assert len(snap.segments) == snap.faiss_index().ntotal == m.n_segments == 2 * m.n_videos, where
            report = check_index(ix)
            assert report.ok, (where, report.problems)
    finally:
        server.stdin.close()
        server.wait(timeout=60)
    assert killed >= 1, f"every build finished before its kill {where}"
    # Rerunning the same build completes it: every video once, every segment present.
    summary = build_index([folder], ix, encoder=encoder, progress=False)
    assert summary.failures == ()
    report = check_index(ix)
    assert report.ok and not report.notes, (where, report.problems, report.notes)
    snap = open_index(ix)
    assert sorted(snap.videos["video"]) == [f"cam{i:02d}.mp4" for i in range(N_VIDEOS)], where
    assert snap.videos["video_id"].is_unique
    assert snap.manifest.n_segments == len(snap.segments) == 2 * N_VIDEOS, where
    assert snap.segments.groupby("video")["segment"].apply(list).map(lambda s: s == [0, 1]).all(), where
