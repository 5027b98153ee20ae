"""Cameras: where a video's camera comes from, old indexes without one, and ``query --unusual``."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from vadindex._cli.main import cli
from vadindex.detect.similarity import segment_novelty
from vadindex.detect.unusual import query_unusual
from vadindex.errors import InputError
from vadindex.index.check import check_index
from vadindex.index.manifest import CACHE
from vadindex.index.reader import open_index, video_cameras
from vadindex.ingest import build_index
from vadindex.ingest.options import BuildOptions
from vadindex.ingest.sources import VideoSource, assign_cameras, read_manifest_csv


def test_where_cameras_come_from(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sources = [
        VideoSource(Path("/data/lot-3/2024/a.mp4"), "lot-3/2024/a.mp4"),
        VideoSource(Path("/data/gate/b.mp4"), "gate/b.mp4", camera="front-gate"),
        VideoSource(Path("/data/misc/c.mp4"), "misc/c.mp4"),
    ]
    assert [s.camera for s in assign_cameras(sources)] == [None, "front-gate", None]
    assert [s.camera for s in assign_cameras(sources, camera="cam9")] == ["cam9", "front-gate", "cam9"]
    assert [s.camera for s in assign_cameras(sources, camera_from="parent")] == ["2024", "front-gate", "misc"]
    with caplog.at_level(logging.WARNING, logger="vadindex"):
        got = assign_cameras(sources, camera_from=r"/(lot-\d+)/")
    assert [s.camera for s in got] == ["lot-3", "front-gate", None]
    assert "matched no camera in 1 video" in caplog.text
    assert [s.camera for s in assign_cameras(sources, camera_from=r"lot-\d")] == ["lot-3", "front-gate", None]
    with pytest.raises(InputError, match="camera-from"):
        BuildOptions(camera_from="(unclosed")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,camera\na.mp4,normal,north\nb.mp4,anomaly,\n")
    assert [s.camera for s in read_manifest_csv(manifest)] == ["north", None]


def test_build_records_cameras_and_old_indexes_read_without_them(
    small_clips: Path, encoder, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    index = tmp_path / "ix"
    build_index([small_clips], index, encoder=encoder, progress=False, camera_from="parent")
    videos = open_index(index).videos
    by_name = dict(zip(videos["video"], videos["camera"], strict=True))
    assert by_name["fight/fi001.mp4"] == by_name["fight/fi010.mp4"] == "fight"
    assert by_name["traffic_camera_vfr.mp4"] == small_clips.name  # the folder the clip is in
    info = json.loads(runner.invoke(cli, ["info", "--index", str(index), "--format", "json"]).output)
    assert info["cameras"]["named"]["fight"] == 2
    # An index written before cameras: no camera column, each video its own camera.
    old = tmp_path / "old"
    shutil.copytree(index, old, ignore=shutil.ignore_patterns(CACHE))
    snap = open_index(old)
    table = old / snap.manifest.videos_file
    pd.read_parquet(table).drop(columns=["camera"]).to_parquet(table, index=False)
    manifest = json.loads((old / "manifest.json").read_text())
    from vadindex.files import file_record

    manifest["files"][snap.manifest.videos_file] = file_record(table)
    (old / "manifest.json").write_text(json.dumps(manifest))
    reread = open_index(old)
    cams = video_cameras(reread.videos)
    assert len(set(cams)) == len(reread.videos)
    assert check_index(old).ok, check_index(old).problems
    assert len(segment_novelty(reread, 3, 1.0)) == reread.manifest.n_segments


def test_query_unusual_ranks_by_novelty(built_index: Path, encoder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    index = tmp_path / "ix"
    shutil.copytree(built_index, index, ignore=shutil.ignore_patterns(CACHE))
    snap = open_index(index)
    nu = segment_novelty(snap, 3, 2.0)
    top = query_unusual(snap, k=4, novelty=3, novelty_gap=2.0)
    assert list(top["novelty"]) == sorted(nu, reverse=True)[:4] and list(top["rank"]) == [1, 2, 3, 4]
    within = query_unusual(snap, "a person", k=3, novelty=3, novelty_gap=2.0, encoder=encoder)
    assert (np.diff(within["novelty"].to_numpy()) <= 0).all() and len(within) == 3
    only = query_unusual(snap, k=50, video="fight/*", novelty=3, novelty_gap=2.0)
    assert set(only["video"]) <= {"fight/fi001.mp4", "fight/fi010.mp4"} and len(only)
    out = CliRunner().invoke(cli, ["query", "--unusual", "--index", str(index), "-k", "2", "--novelty", "3",
                                   "--novelty-gap", "2", "--format", "json"])  # fmt: skip
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)
    assert [r["novelty"] for r in rows] == pytest.approx(sorted(nu, reverse=True)[:2], abs=1e-6)


def test_rescoring_with_novelty_loads_no_model_nor_faiss(built_index: Path, encoder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    from vadindex.detect import detect

    index = tmp_path / "ix"
    shutil.copytree(built_index, index, ignore=shutil.ignore_patterns(CACHE))
    detect(index, "people fighting", encoder=encoder, novelty=3, novelty_gap=1.0)  # fills the caches
    code = (
        "import sys, json\n"
        "from vadindex._cli.main import cli\n"
        f"args = ['detect', '--index', {str(index)!r}, '-p', 'people fighting', '--novelty', '3',\n"
        "        '--novelty-gap', '1', '--novelty-weight', '0.7', '--calibrate', 'zscore', '--calibrate-by', 'camera',\n"
        "        '--segment-threshold', '1', '--format', 'json']\n"
        "try:\n    cli.main(args, standalone_mode=False)\n"
        "finally:\n"
        "    heavy = [m for m in ('torch', 'open_clip', 'faiss') if m in sys.modules]\n"
        "    print('HEAVY=' + json.dumps(heavy), file=sys.stderr)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY=[]" in proc.stderr
    body = json.loads(proc.stdout)
    assert body["settings"]["novelty_weight"] == 0.7 and "novelty" in body["segments"][0]
