"""``kill -9`` at random points of whole builds, and Ctrl-C: the index on disk is always a whole
commit that ``check`` passes, and rerunning the build gives exactly the index of a clean build.

The harness is ``scripts/kill_builds.py`` (a fork server that runs ``python -m vadindex._cli.main
build`` in processes of their own, killed with a real SIGKILL): this module runs a few trials, one
kill at a random moment of the process and one at a random file move inside a commit at least;
the script runs many seeds. The seed is fixed in CI (``CI=true``) and drawn at random elsewhere;
``VADINDEX_KILL_SEED`` replays one.
"""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import sys
import time

import pytest
from conftest import IN_CI, ROOT

from vadindex.index.check import check_index
from vadindex.index.reader import open_index

TRIALS = ("commit", "time", None)  # None: drawn from the seed
#: The seed CI uses, so that a failure there can be replayed.
CI_SEED = 17


def _kill_builds():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("kill_builds", ROOT / "scripts" / "kill_builds.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


kb = _kill_builds()


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A fork server and a clean build of six small videos."""
    server = kb.BuildServer()
    try:
        yield kb.Harness.prepare(server, tmp_path_factory.mktemp("kill"), n_videos=6, twice=False)
    finally:
        server.close()


def _seed() -> int:
    if os.environ.get("VADINDEX_KILL_SEED"):
        return int(os.environ["VADINDEX_KILL_SEED"])
    return CI_SEED if IN_CI else time.time_ns() % 100_000


def test_kill_9_at_random_points_then_check_and_rerun(harness) -> None:  # type: ignore[no-untyped-def]
    seed = _seed()
    rng = random.Random(seed)
    trials = [harness.trial(rng, i, mode) for i, mode in enumerate(TRIALS)]
    report = [t.describe() for t in trials]
    where = f"(replay with VADINDEX_KILL_SEED={seed})"
    assert not [t for t in trials if t.problems], (where, report)
    # The file-move kill always lands: the build makes the same moves as the clean one.
    assert trials[0].killed and trials[0].mode == "commit", (where, report)


def test_ctrl_c_exits_130_and_keeps_committed_work(harness) -> None:  # type: ignore[no-untyped-def]
    """SIGINT from outside while the build encodes its second video: status 130, one line, the first
    video committed, the index whole; the rerun finishes it as a clean build would."""
    index, log, pause = harness.work / "sigint", harness.work / "sigint.log", harness.work / "sigint.pause"
    pid = harness.server.start(
        kb.build_argv(harness.videos, index, commit_every=1), log, pause_file=str(pause)
    )
    deadline = time.monotonic() + 300
    while not pause.exists():  # the child stands inside its second video's encoding, after a commit
        assert not harness.server.finished(), log.read_text()
        assert time.monotonic() < deadline, "the build never reached its second video"
        time.sleep(0.005)
    os.kill(pid, signal.SIGINT)
    status = harness.server.wait()
    text = log.read_text()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 130, (status, text)
    assert "Interrupted; committed work is kept." in text and "Traceback" not in text, text
    report = check_index(index)
    assert report.ok and not report.notes, (report.problems, report.notes)
    assert open_index(index).manifest.n_videos == 1
    harness.server.start(kb.build_argv(harness.videos, index), harness.work / "sigint-rerun.log")
    status = harness.server.wait()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert kb.index_differences(index, harness.clean) == []
    assert check_index(index).ok
