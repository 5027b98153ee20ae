"""``kill -9`` at random points across whole builds, then ``check`` and a rerun that must equal a
clean build.

A set of small videos is built once cleanly. Then, per trial, the same build starts on an empty
index and dies by SIGKILL at a point drawn from the seed:

- ``time``: after a delay drawn uniformly over the clean build's duration (from the start of the
  process to its end: loading the model, decoding, encoding, every commit);
- ``commit``: at the ``k``-th file move of the build (``os.replace``: a part, the video table, the
  FAISS file, the manifest, ``failures.csv``), ``k`` drawn over all the moves of a clean build, so
  the kill lands inside a commit, between two of its steps; the process kills itself there with
  a real SIGKILL, so nothing of Python runs after it.

After each kill, ``check`` (every file against the SHA-256 recorded at its commit, rows aligned)
must pass on whatever commit is on disk, and rerunning the same build must finish with an index
equal to the clean one: the same videos, segment rows, segment and frame vectors (bit for bit, in
fp32) and search results, and no leftover file.

Each build is ``python -m vadindex._cli.main build ...`` in a process of its own. To pay the
import of torch and open_clip once rather than per build, the processes are forked from one
parent that has imported them (and runs nothing); each child then runs the module exactly as
``python -m`` does (``runpy``). ``tests/test_crash.py`` runs a few trials with a fixed seed (in CI);
this script runs many:

    python scripts/kill_builds.py --seeds 0-49 --trials 4

Prints one line per seed; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: Reads one JSON object per line, ``{"argv", "stderr", "kill_at_replace", "count_file",
#: "pause_file"}``; forks ``python -m vadindex._cli.main *argv`` for each and prints the child's
#: pid, then its wait status. In the child, ``kill_at_replace = k`` sends SIGKILL to itself at the
#: k-th ``os.replace`` (before the move), ``count_file`` receives the number of moves at exit, and
#: ``pause_file`` is created at the first image batch after the first commit, where the child then
#: waits (for a signal from outside).
SERVER = r"""
import json, os, runpy, signal, sys, time
import open_clip, torch  # the slow imports, once; no torch op runs in this parent
import av, faiss, pandas, pyarrow.parquet
import vadindex._cli.main, vadindex.ingest.build, vadindex.models.openclip, vadindex.index.check
for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        # Ctrl-C as in a terminal, even when whoever started the server ignores SIGINT (a shell's
        # background job does): Python then leaves it ignored.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        os.dup2(os.open(job["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
        moves = [0]
        real_replace = os.replace
        def replace(src, dst, *a, **k):
            moves[0] += 1
            if moves[0] == job.get("kill_at_replace"):
                os.kill(os.getpid(), signal.SIGKILL)
            return real_replace(src, dst, *a, **k)
        os.replace = replace
        if job.get("count_file"):
            import atexit
            atexit.register(lambda: open(job["count_file"], "w").write(str(moves[0])))
        if job.get("pause_file"):
            import vadindex.models.openclip as oc
            real_encode = oc.OpenClipEncoder.encode_images
            def encode_images(self, pixels):
                if moves[0] and not os.path.exists(job["pause_file"]):
                    open(job["pause_file"], "w").close()
                    for _ in range(60000):
                        time.sleep(0.001)
                return real_encode(self, pixels)
            oc.OpenClipEncoder.encode_images = encode_images
        sys.argv = ["vadindex", *job["argv"]]
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


class BuildServer:
    """The fork server: one process per build, torch imported once."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER], cwd=ROOT, bufsize=0, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._out = self.proc.stdout.fileno()

    def start(self, argv: list[str], stderr: Path, **hooks: Any) -> int:
        """Fork a build; returns its pid."""
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"argv": argv, "stderr": str(stderr), **hooks}) + "\n").encode())
        return int(self._read_line())

    def finished(self) -> bool:
        """True once the current build's wait status is ready to read."""
        return bool(select.select([self._out], [], [], 0)[0])

    def wait(self, timeout: float = 300.0) -> int:
        """The current build's wait status (as ``os.waitpid`` gives it)."""
        return int(self._read_line(timeout))

    def _read_line(self, timeout: float = 300.0) -> str:
        out = b""
        while not out.endswith(b"\n"):
            if not select.select([self._out], [], [], timeout)[0]:
                raise TimeoutError("the build server stopped answering")
            chunk = os.read(self._out, 1)
            if not chunk:
                raise RuntimeError("the build server exited")
            out += chunk
        return out.decode()

    def close(self) -> None:
        """Stop the (idle) server at once: its interpreter's teardown after torch takes seconds."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.kill()
        self.proc.wait(timeout=60)


def make_videos(folder: Path, n: int = 8) -> Path:
    """``n`` small distinct H.264 clips of two seconds."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import write_video

    for i in range(n):
        write_video(folder / f"cam{i:02d}.mp4", seconds=2, size=(64, 48), seed=100 + i)
    return folder


def build_argv(videos: Path, index: Path, commit_every: int = 2) -> list[str]:
    """The build every trial runs: the test model in fp32, so embeddings are reproducible bit for bit."""
    return ["build", str(videos), "--index", str(index), "--model", "vadindex-test", "--pretrained", "random",
            "--device", "cpu", "--precision", "fp32", "--commit-every", str(commit_every), "--no-progress"]  # fmt: skip


def index_differences(index: Path, clean: Path) -> list[str]:
    """How ``index`` differs from ``clean`` (empty when they are the same index)."""
    import numpy as np
    import pandas as pd

    from vadindex.index.reader import open_index
    from vadindex.search.vectors import search_vector

    a, b = open_index(index), open_index(clean)
    out = []
    for key in ("n_videos", "n_segments", "n_frames", "model", "pretrained", "dim", "sampling"):
        if getattr(a.manifest, key) != getattr(b.manifest, key):
            out.append(f"manifest {key}: {getattr(a.manifest, key)} != {getattr(b.manifest, key)}")
    for name in ("videos", "segments"):
        x, y = getattr(a, name).reset_index(drop=True), getattr(b, name).reset_index(drop=True)
        # When a video was added is not part of what it is.
        x, y = x.drop(columns=["added"], errors="ignore"), y.drop(columns=["added"], errors="ignore")
        try:
            pd.testing.assert_frame_equal(x, y)
        except AssertionError as exc:
            out.append(f"{name} table: {str(exc).splitlines()[0]}")
    if not np.array_equal(a.vectors(), b.vectors()):
        out.append("segment vectors differ")
    if not np.array_equal(a.frame_vectors(), b.frame_vectors()):
        out.append("frame vectors differ")
    if a.faiss_index().ntotal != b.faiss_index().ntotal:
        out.append("FAISS sizes differ")
    rng = np.random.default_rng(0)
    for _ in range(3):
        q = rng.normal(size=a.manifest.dim).astype(np.float32)
        q /= np.linalg.norm(q)
        ra, rb = search_vector(a, q, 5), search_vector(b, q, 5)
        if list(ra["video_id"]) != list(rb["video_id"]) or list(ra["segment"]) != list(rb["segment"]):
            out.append("search results differ")
            break
    return out


@dataclass
class Trial:
    """What one trial did and found."""

    mode: str  # "time" or "commit"
    at: float  # seconds after the start, or the file move
    killed: bool
    committed: int  # videos in the index when it died
    problems: list[str]

    def describe(self) -> str:
        where = f"{self.at:.3f} s" if self.mode == "time" else f"file move {int(self.at)}"
        state = f"killed at {where}" if self.killed else f"finished before {where}"
        return f"{state}, {self.committed} videos committed" + (f": {self.problems}" if self.problems else "")


@dataclass
class Harness:
    """A clean build to compare with, and trials against it."""

    server: BuildServer
    videos: Path
    work: Path
    clean: Path
    clean_seconds: float
    clean_moves: int

    @classmethod
    def prepare(cls, server: BuildServer, work: Path, n_videos: int = 8, twice: bool = True) -> Harness:
        """Build the videos cleanly (``twice``: the two must be equal, as builds are deterministic,
        and the faster one sets the span the ``time`` kills are drawn over)."""
        videos = make_videos(work / "videos", n_videos)
        seconds = []
        for name in ("clean", "clean2") if twice else ("clean",):
            t = time.perf_counter()
            server.start(
                build_argv(videos, work / name), work / f"{name}.log", count_file=str(work / f"{name}.moves")
            )
            status = server.wait()
            seconds.append(time.perf_counter() - t)
            if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
                raise RuntimeError(f"the clean build failed: {(work / f'{name}.log').read_text()}")
        if twice:
            differences = index_differences(work / "clean2", work / "clean")
            if differences:
                raise RuntimeError(f"two clean builds differ: {differences}")
            shutil.rmtree(work / "clean2")
        return cls(
            server, videos, work, work / "clean", min(seconds), int((work / "clean.moves").read_text())
        )

    def trial(self, rng: random.Random, n: int, mode: str | None = None) -> Trial:
        """One build killed at a random point, checked, rerun and compared with the clean build.

        Args:
            mode: ``time`` or ``commit``; drawn from ``rng`` when not given.
        """
        from vadindex.index.check import check_index
        from vadindex.index.manifest import MANIFEST
        from vadindex.index.reader import open_index

        index = self.work / f"ix{n}"
        shutil.rmtree(index, ignore_errors=True)
        log = self.work / f"build{n}.log"
        mode = mode or rng.choice(("time", "commit"))
        argv = build_argv(self.videos, index)
        if mode == "commit":
            at: float = rng.randint(1, self.clean_moves)
            self.server.start(argv, log, kill_at_replace=int(at))
        else:
            at = rng.uniform(0.0, self.clean_seconds)
            t0 = time.perf_counter()
            pid = self.server.start(argv, log)
            while not self.server.finished() and time.perf_counter() - t0 < at:
                time.sleep(0.001)
            if not self.server.finished():
                with contextlib.suppress(ProcessLookupError):  # it may end between the check and the kill
                    os.kill(pid, signal.SIGKILL)
        status = self.server.wait()
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        problems = []
        text = log.read_text(errors="replace")
        if not killed and not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
            problems.append(f"build exited with {status}: {text[-500:]}")
        if "Traceback" in text:
            problems.append(f"traceback: {text[-500:]}")
        committed = 0
        if (index / MANIFEST).exists():
            report = check_index(index)  # whatever commit is on disk is whole
            if not report.ok:
                problems.append(f"check after the kill: {report.problems}")
            snap = open_index(index)
            committed = snap.manifest.n_videos
            if not len(snap.segments) == snap.faiss_index().ntotal == snap.manifest.n_segments:
                problems.append("rows disagree after the kill")
        # Rerunning the same build completes it, and the result is the clean build.
        self.server.start(argv, self.work / f"rerun{n}.log")
        status = self.server.wait()
        if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
            problems.append(f"rerun exited with {status}: {(self.work / f'rerun{n}.log').read_text()[-500:]}")
        else:
            report = check_index(index)
            if not report.ok or report.notes:
                problems.append(f"check after the rerun: {report.problems} {report.notes}")
            problems += index_differences(index, self.clean)
        shutil.rmtree(index, ignore_errors=True)
        return Trial(mode, at, killed, committed, problems)


def parse_seeds(text: str) -> list[int]:
    """``0-49`` or ``1,5,9``."""
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0-19", help="Seeds, as 0-49 or 1,5,9 (one trial set each).")
    ap.add_argument("--trials", type=int, default=4, help="Kills per seed.")
    ap.add_argument("--videos", type=int, default=8, help="Videos per build.")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    t0 = time.perf_counter()
    server = BuildServer()
    totals = {"time": 0, "commit": 0, "killed": 0, "finished_first": 0, "failed": 0}
    failures = []
    try:
        with tempfile.TemporaryDirectory(prefix="vadindex-kill-") as tmp:
            harness = Harness.prepare(server, Path(tmp), args.videos)
            print(f"clean build: {harness.clean_seconds:.2f} s, {harness.clean_moves} file moves")
            for seed in parse_seeds(args.seeds):
                rng = random.Random(seed)
                trials = [harness.trial(rng, i) for i in range(args.trials)]
                for t in trials:
                    totals[t.mode] += 1
                    totals["killed" if t.killed else "finished_first"] += 1
                    if t.problems:
                        totals["failed"] += 1
                        failures.append({"seed": seed, "trial": t.describe()})
                print(f"seed {seed}: " + "; ".join(t.describe() for t in trials))
    finally:
        server.close()
    for f in failures:
        print(f"FAILED: {f}")
    print(json.dumps({"seeds": args.seeds, "trials": totals["time"] + totals["commit"], "time_kills": totals["time"],
                      "commit_kills": totals["commit"], "killed": totals["killed"],
                      "finished_before_kill": totals["finished_first"], "failed": totals["failed"],
                      "seconds": round(time.perf_counter() - t0, 1)}))  # fmt: skip
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
