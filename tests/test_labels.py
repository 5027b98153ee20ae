"""Reviewer labels: round trip, segment references, crash safety, and metrics that leave them out."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from vadindex._cli.main import cli
from vadindex.detect import detect
from vadindex.errors import InputError, StoreError
from vadindex.evaluate.annotations import Annotation, build_ground_truth
from vadindex.evaluate.detection import evaluate
from vadindex.index.labels import add_label, label_rows, read_labels
from vadindex.index.manifest import CACHE, LABELS
from vadindex.index.reader import open_index
from vadindex.index.refs import find_segment

PROMPTS = "people fighting; a person punching another person"


@pytest.fixture
def index(built_index: Path, tmp_path: Path) -> Path:
    path = tmp_path / "ix"
    shutil.copytree(built_index, path, ignore=shutil.ignore_patterns(CACHE, LABELS))
    return path


def _longest(snap):  # type: ignore[no-untyped-def]
    return snap.videos.sort_values("n_segments", kind="stable").iloc[-1]


def test_labels_round_trip_and_replace(index: Path) -> None:
    snap = open_index(index)
    video = _longest(snap)
    assert int(video["n_segments"]) >= 4
    assert read_labels(index).version == 0 and not read_labels(index).labels
    first, labels = add_label(index, f"{video['video']}@1.5", "anomaly", "Fighting")
    assert (first.segment, first.label, first.cls, labels.version) == (1, "anomaly", "Fighting", 1)
    _, labels = add_label(index, f"{video['video_id']}:3", "normal")
    again, labels = add_label(index, f"{Path(video['video']).name}@1.2", "normal")  # the same segment
    assert labels.version == 3 and len(labels.labels) == 2
    stored = read_labels(index)
    assert stored == labels
    assert {(lab.segment, lab.label) for lab in stored.labels} == {(3, "normal"), (1, "normal")}
    rows = label_rows(snap, stored)
    assert sorted(rows) == [int(video["first_row"]) + 1, int(video["first_row"]) + 3]
    on_disk = json.loads((index / LABELS).read_text())
    assert on_disk["format"] == 1 and on_disk["version"] == 3 and on_disk["labels"][-1]["class"] is None


def test_segment_references(index: Path) -> None:
    snap = open_index(index)
    video = _longest(snap)
    first, count = int(video["first_row"]), int(video["n_segments"])
    end = float(snap.segments["end"][first + count - 1])
    assert find_segment(snap, f"{video['video']}@0") == first
    assert find_segment(snap, f"{video['path']}@0.99") == first
    assert find_segment(snap, f"{video['video_id']}:{count - 1}") == first + count - 1
    tail = (end + max(float(video["duration"]), end)) / 2  # in the trailing part the index dropped
    assert find_segment(snap, f"{video['video']}@{tail}") == first + count - 1
    for bad, message in (("nonsense", "not a segment"), ("nope.mp4@1", "no video"),
                         (f"{video['video_id']}:{count}", "has segments 0 to"),
                         (f"{video['video']}@{end + 100}", "no segment at")):  # fmt: skip
        with pytest.raises(InputError, match=message):
            find_segment(snap, bad)
    with pytest.raises(InputError, match="label must be one of"):
        add_label(index, f"{video['video']}@0", "maybe")


_WRITER = """
import sys
from vadindex.index.labels import add_label
index, video, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
print("ready", flush=True)
for i in range(100000):
    add_label(index, f"{video}:{i % n}", "anomaly" if i % 2 else "normal")
"""


def test_labels_survive_a_crash_mid_write(index: Path) -> None:
    """A writer killed at random moments leaves the last whole file, which the next writer extends."""
    snap = open_index(index)
    video = snap.videos.iloc[0]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    rng = np.random.default_rng(0)
    versions = []
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(index), video["video_id"], str(video["n_segments"])],
                                stdout=subprocess.PIPE, env=env)  # fmt: skip
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        time.sleep(float(rng.uniform(0.2, 0.8)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        labels = read_labels(index)  # parses: never half a file
        versions.append(labels.version)
        assert len({lab.key for lab in labels.labels}) == len(labels.labels) <= int(video["n_segments"])
    assert versions == sorted(versions) and versions[-1] > 0
    _, after = add_label(index, f"{video['video_id']}:0", "anomaly")
    assert after.version == versions[-1] + 1
    assert not list(index.glob(f".{LABELS}.tmp-*"))  # a crashed writer's leftovers are swept


def test_a_failed_write_keeps_the_previous_labels(index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    video = open_index(index).videos.iloc[0]
    add_label(index, f"{video['video_id']}:0", "anomaly")
    before = (index / LABELS).read_text()

    def full_disk(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(StoreError, match="previous labels are kept"):
        add_label(index, f"{video['video_id']}:1", "normal")
    monkeypatch.undo()
    assert (index / LABELS).read_text() == before
    (index / LABELS).write_text('{"format": 99, "version": 1, "labels": []}')
    with pytest.raises(StoreError, match="newer"):
        read_labels(index)
    (index / LABELS).write_text("{broken")
    with pytest.raises(StoreError, match="damaged"):
        read_labels(index)


def test_use_labels_learns_from_them_and_leaves_them_out_of_metrics(index: Path, encoder) -> None:  # type: ignore[no-untyped-def]
    snap = open_index(index)
    videos = snap.videos
    # Fight clips are anomalies from 1 s to their end, the others normal throughout.
    annotations = [
        Annotation(
            Path(v).name, "Fighting" if "fight" in v else "Normal", ((10, 10**6),) if "fight" in v else ()
        )  # fmt: skip
        for v in videos["video"]
    ]
    fight = videos[videos["video"].str.contains("fight")].iloc[0]
    calm = videos[~videos["video"].str.contains("fight")].iloc[0]
    add_label(index, f"{fight['video_id']}:1", "anomaly")
    add_label(index, f"{calm['video_id']}:0", "normal")
    plain = detect(index, PROMPTS, encoder=encoder, annotations=annotations)
    taught = detect(index, PROMPTS, encoder=encoder, annotations=annotations, use_labels=True)
    assert taught.settings["labels"] == {"version": 2, "used": 2}
    assert set(taught.class_names) == set(plain.class_names)  # unnamed labels join existing classes
    assert not np.allclose(taught.class_sims, plain.class_sims)
    seg = taught.segments
    assert sorted(seg.loc[seg["reviewed"] != "", "reviewed"]) == ["anomaly", "normal"]
    m = taught.metrics
    assert m["excluded_segments"] == 2 and m["excluded_videos"] == 2
    # The same numbers from evaluate() on the unlabelled segments only.
    rows = label_rows(snap, read_labels(index))
    keep = np.ones(len(seg), dtype=bool)
    keep[rows] = False
    truth = build_ground_truth(snap.segments, videos, annotations)
    frames = truth.frame_segment
    assert m["frames"] == int(keep[frames].sum()) < len(frames)
    from vadindex.evaluate.metrics import roc_auc

    scores = seg["score"].to_numpy()
    assert m["frame_auc"] == pytest.approx(
        roc_auc(truth.frame_label[keep[frames]], scores[frames[keep[frames]]])
    )
    expected = evaluate(taught.videos, scores, seg["anomalous"].to_numpy(), truth, taught.video_ids,
                        exclude=~keep, segment_video=snap.segment_arrays().video)  # fmt: skip
    assert expected is not None and m["segment"] == expected["segment"]
    labelled_videos = {fight["video_id"], calm["video_id"]}
    video_rows = taught.videos[~taught.videos["video_id"].isin(labelled_videos)]
    cm = m["confusion_matrix"]
    assert sum(map(sum, cm)) == len(video_rows[pd.notna(video_rows["label"])])


def test_label_command_feeds_info_and_detect(index: Path) -> None:
    runner = CliRunner()
    video = open_index(index).videos.iloc[0]
    out = runner.invoke(
        cli, ["label", "--index", str(index), f"{video['video']}@0.5", "anomaly", "--class", "Fight"]
    )
    assert out.exit_code == 0, out.output
    assert "Labelled" in out.output and "version 1" in out.output
    out = runner.invoke(cli, ["label", "--index", str(index), "missing.mp4@1", "normal"])
    assert out.exit_code == 2 and "no video" in out.output and "Traceback" not in out.output
    info = runner.invoke(cli, ["info", "--index", str(index), "--format", "json"])
    data = json.loads(info.output)
    assert data["labels"]["count"] == 1 and data["labels"]["labels"][0]["class"] == "Fight"
    assert "reviewed segments" in runner.invoke(cli, ["info", "--index", str(index)]).output
    res = runner.invoke(cli, ["-q", "detect", "--index", str(index), "-p", PROMPTS, "--use-labels", "--format", "json",
                              "--pretrained", "random"])  # fmt: skip
    assert res.exit_code == 0, res.output
    body = json.loads(res.output)
    assert "Fight" in body["prompts"]["anomaly"] and body["settings"]["use_labels"] is True
