"""Benchmark annotation parsers, dataset manifests and frame-level evaluation in ``detect``."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from vadindex.errors import InputError
from vadindex.evaluate.annotations import (
    load_annotations,
    match_annotations,
    parse_ucf_crime_line,
    parse_xd_violence_line,
    video_key,
)
from vadindex.evaluate.datasets import build_manifest, classify_video, xd_violence_class

# Lines in the layout of UCF-Crime's Temporal_Anomaly_Annotation_for_Testing_Videos.txt.
UCF_LINES = """\
Abuse028_x264.mp4  Abuse  165  240  -1  -1
Arson011_x264.mp4  Arson  150  420  680  1267
Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1
RoadAccidents001_x264.mp4  RoadAccidents  210  240  -1  -1
"""
# Lines in the layout of XD-Violence's test annotations.txt (name, then any number of span pairs).
XD_LINES = """\
A.Beautiful.Mind.2001__#00-25-20_00-29-20_label_B2-0-0 1232 1385 1560 1690
Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6 0 430
v=wVey5JDRf_g__#00-00-00_00-01-20_label_B4-0-0 0 1664 1700 1800 1900 1920
"""


def test_parse_ucf_crime_lines() -> None:
    a = parse_ucf_crime_line("Abuse028_x264.mp4  Abuse  165  240  -1  -1")
    assert (a.name, a.cls, a.spans, a.label) == ("Abuse028_x264.mp4", "Abuse", ((165, 240),), 1)
    b = parse_ucf_crime_line("Arson011_x264.mp4  Arson  150  420  680  1267")
    assert b.spans == ((150, 420), (680, 1267))
    n = parse_ucf_crime_line("Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1")
    assert n.spans == () and n.label == 0


def test_parse_xd_violence_lines() -> None:
    a = parse_xd_violence_line("A.Beautiful.Mind.2001__#00-25-20_00-29-20_label_B2-0-0 1232 1385 1560 1690")
    assert a.cls == "Shooting" and a.spans == ((1232, 1385), (1560, 1690)) and a.label == 1
    b = parse_xd_violence_line("Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6 0 430")
    assert b.cls == "Explosion" and b.spans == ((0, 430),)
    c = parse_xd_violence_line("v=wVey5JDRf_g__#00-00-00_00-01-20_label_B4-0-0 0 1664 1700 1800 1900 1920")
    assert c.cls == "Riot" and len(c.spans) == 3


@pytest.mark.parametrize(("text", "fmt"), [(UCF_LINES, "ucf-crime"), (XD_LINES, "xd-violence")])
def test_load_detects_the_format(tmp_path: Path, text: str, fmt: str) -> None:
    f = tmp_path / "ann.txt"
    f.write_text("\n" + text)
    auto = load_annotations(f)
    assert auto == load_annotations(f, fmt)
    assert len(auto) == len(text.splitlines())


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("Abuse028_x264.mp4  Abuse  165  240  -1", "pairs"),
        ("Abuse028_x264.mp4  Abuse  165  x  -1  -1", "frame numbers"),
        ("Abuse028_x264.mp4  Abuse  240  165  -1  -1", "ends before"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    f = tmp_path / "ann.txt"
    f.write_text(f"Abuse030_x264.mp4  Abuse  1  2  -1  -1\n{line}\n")
    with pytest.raises(InputError, match=f"line 2: .*{message}") as err:
        load_annotations(f, "ucf-crime")
    assert str(err.value).startswith(str(f))


def test_names_match_across_folders_and_extensions() -> None:
    assert video_key("UCF/Abuse/Abuse028_x264.AVI") == video_key("Abuse028_x264.mp4") == "abuse028_x264"
    xd = "A.Beautiful.Mind.2001__#00-25-20_00-29-20_label_A"
    assert video_key(xd + ".mp4") == video_key(xd) == xd.lower()  # dots in the name are kept
    anns = [parse_ucf_crime_line("Abuse028_x264.mp4  Abuse  1  2  -1  -1"), parse_xd_violence_line(xd)]
    matched, missing = match_annotations(anns, ["x/Abuse028_x264.avi", "other.mp4", f"xd/{xd}.mp4"])
    assert sorted(matched) == [0, 2] and missing == []
    with pytest.raises(InputError, match="matches two index videos"):
        match_annotations(anns, ["a/Abuse028_x264.mp4", "b/Abuse028_x264.mp4"])


def test_xd_violence_names() -> None:
    assert xd_violence_class("Foo__#00-01_label_A.mp4") == "Normal"
    assert xd_violence_class("Foo__#00-01_label_B1-0-0") == "Fighting"
    assert xd_violence_class("Foo__#00-01_label_B6-G-0.mp4") == "CarAccident"
    assert xd_violence_class("Abuse028_x264.mp4") is None


def test_ucf_crime_layout() -> None:
    assert classify_video(Path("Anomaly-Videos-Part-1/Abuse/Abuse028_x264.mp4")) == ("anomaly", "Abuse")
    assert classify_video(Path("Testing_Normal_Videos_Anomaly/Normal_Videos_003_x264.mp4")) == (
        "normal",
        "Normal",
    )
    assert classify_video(Path("Normal_Videos_event/Normal_Videos_015_x264.mp4")) == ("normal", "Normal")
    assert classify_video(Path("flat/RoadAccidents001_x264.mp4")) == ("anomaly", "RoadAccidents")
    assert classify_video(Path("misc/holiday.mp4")) == ("", "")


def test_manifest_command(tmp_path: Path) -> None:
    from vadindex._cli.main import cli

    root = tmp_path / "data"
    for rel in ("Abuse/Abuse028_x264.mp4", "Arson/Arson011_x264.mp4", "Testing_Normal_Videos_Anomaly/Normal_Videos_003_x264.mp4",
                "xd/Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6.mp4", "xd/Up.2009__#00-00-00_00-01-00_label_A.mp4",
                "notes/readme.txt"):  # fmt: skip
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")
    out = tmp_path / "lists" / "manifest.csv"
    res = CliRunner().invoke(cli, ["manifest", str(root), "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(out.open()))
    got = {Path(r["path"]).name: (r["label"], r["class"]) for r in rows}
    assert got == {
        "Abuse028_x264.mp4": ("anomaly", "Abuse"),
        "Arson011_x264.mp4": ("anomaly", "Arson"),
        "Normal_Videos_003_x264.mp4": ("normal", "Normal"),
        "Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6.mp4": ("anomaly", "Explosion"),
        "Up.2009__#00-00-00_00-01-00_label_A.mp4": ("normal", "Normal"),
    }
    assert all((out.parent / r["path"]).is_file() for r in rows)  # relative to the manifest
    only = tmp_path / "ann.txt"
    only.write_text(UCF_LINES)
    assert [r.path.split("/")[-1] for r in build_manifest(root, only=only)] == [
        "Abuse028_x264.mp4", "Arson011_x264.mp4", "Normal_Videos_003_x264.mp4",
    ]  # fmt: skip
    res = CliRunner().invoke(cli, ["manifest", str(root), "--out", str(out), "--only", str(only)])
    assert res.exit_code == 0, res.output
    assert [Path(r["path"]).name for r in csv.DictReader(out.open())] == [
        "Abuse028_x264.mp4", "Arson011_x264.mp4", "Normal_Videos_003_x264.mp4",
    ]  # fmt: skip


def test_detect_with_annotations(built_index: Path, encoder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from sklearn.metrics import average_precision_score, roc_auc_score

    from vadindex.detect import detect
    from vadindex.index.reader import open_index

    index = tmp_path / "ix"
    shutil.copytree(built_index, index)
    ann = tmp_path / "ann.txt"
    ann.write_text(
        "fi001.avi  Fighting  10  30  -1  -1\nfi010.mp4  Fighting  0  20  40  45\n"
        "nofi001.mp4  Normal  -1  -1  -1  -1\nnofi020.mp4  Normal  -1  -1  -1  -1\n"
        "Missing001_x264.mp4  Abuse  1  5  -1  -1\n"
    )
    res = detect(index, "people fighting; a brawl", encoder=encoder, annotations=ann, segment_threshold=0.1)
    m = res.metrics
    assert m is not None and m["annotated_videos"] == 4 and m["annotations_missing"] == 1
    # Reference: expand every annotated video's segments to frames with loops, pool, use scikit-learn.
    snap = open_index(index)
    labels, scores = [], []
    spans = {"fi001": [(10, 30)], "fi010": [(0, 20), (40, 45)], "nofi001": [], "nofi020": []}
    for _, video in snap.videos.iterrows():
        key = Path(video["video"]).stem
        if key not in spans:
            continue
        segs = res.segments[res.segments["video_id"] == video["video_id"]]
        meta = snap.segments[snap.segments["video_id"] == video["video_id"]]
        for f in range(int(video["n_frames"])):
            inside = np.flatnonzero(
                (meta["start_frame"].to_numpy() <= f) & (f < meta["end_frame"].to_numpy())
            )
            scores.append(segs["score"].to_numpy()[inside[0] if len(inside) else -1])
            labels.append(any(s <= f < e for s, e in spans[key]))
    assert m["frames"] == len(labels) and m["frame_positives"] == sum(labels)
    assert m["frame_auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert m["frame_ap"] == pytest.approx(average_precision_score(labels, scores))
    # Videos without index labels take them from the annotations; the others stay unlabelled.
    assert m["support"] == 4 and m["unlabelled_videos"] == len(res.videos) - 4
    assert set(m["per_class"]) == {"Fighting", "Normal"} and "frame_auc" in m["per_class"]["Fighting"]
    assert {"precision", "recall", "f1", "confusion_matrix", "auc", "ap"} <= set(m["segment"])
