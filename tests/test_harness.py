"""The suite's own rules: nothing skips silently for want of the real clips, and in CI nothing skips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

#: One cheap test that needs the real clips.
NEEDS_CLIPS = "tests/test_ingest.py::test_index_records_model_and_sampling"


def _pytest(tmp_path: Path, ci: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["VADINDEX_TEST_VIDEOS"] = str(tmp_path / "no-clips-here")
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", NEEDS_CLIPS],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_missing_clips_skip_with_one_line_locally(tmp_path: Path) -> None:
    proc = _pytest(tmp_path, ci=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 skipped" in proc.stdout
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("vadindex: ")]
    assert len(lines) == 1 and "1 test skipped: real clips not found at" in lines[0], proc.stdout
    assert "no-clips-here" in lines[0] and "CI=true" in lines[0]


def test_missing_clips_are_an_error_in_ci(tmp_path: Path) -> None:
    proc = _pytest(tmp_path, ci=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "skipped" not in proc.stdout and "1 error" in proc.stdout, proc.stdout
    assert "real clips not found at" in proc.stdout and "CI=true: a test may not skip" in proc.stdout
