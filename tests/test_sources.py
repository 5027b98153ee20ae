"""Source discovery and manifests."""

from __future__ import annotations

from pathlib import Path

import pytest

from vadindex.errors import InputError
from vadindex.ingest.sources import collect_sources, parse_label, read_manifest_csv


def test_folder_is_recursive_and_filtered(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/x.mp4", "a/b/y.AVI", "a/notes.txt", "z.mkv"):
        (tmp_path / name).write_bytes(b"0")
    found, problems = collect_sources([tmp_path])
    assert sorted(s.video for s in found) == ["a/b/y.AVI", "a/x.mp4", "z.mkv"]
    assert problems == []


def test_missing_path_is_reported_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "ok.mp4").write_bytes(b"0")
    found, problems = collect_sources([tmp_path / "ok.mp4", tmp_path / "nope.mp4"])
    assert len(found) == 1
    assert problems == [(str(tmp_path / "nope.mp4"), "no such file or folder")]


def test_same_file_twice_and_symlink_dedupe(tmp_path: Path) -> None:
    f = tmp_path / "v.mp4"
    f.write_bytes(b"0")
    (tmp_path / "link.mp4").symlink_to(f)
    found, _ = collect_sources([f, f, tmp_path / "link.mp4"])
    assert len(found) == 1


def test_manifest_labels_and_classes(tmp_path: Path) -> None:
    m = tmp_path / "m.csv"
    m.write_text(
        "path,label,class\nv1.mp4,anomaly,Fighting\nv2.mp4,0,\nv3.mp4,,Normal_Videos\nv4.mp4,,Arson\n"
    )
    rows = read_manifest_csv(m)
    assert [(r.label, r.cls) for r in rows] == [
        (1, "Fighting"),
        (0, None),
        (0, "Normal_Videos"),
        (1, "Arson"),
    ]
    assert rows[0].path == tmp_path / "v1.mp4"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("video,label\nv.mp4,1\n", "needs a 'path' column"),
        ("path,label\nv.mp4,maybe\n", "line 2: label 'maybe'"),
    ],
)
def test_malformed_manifest(tmp_path: Path, content: str, message: str) -> None:
    m = tmp_path / "m.csv"
    m.write_text(content)
    with pytest.raises(InputError, match=message):
        read_manifest_csv(m)


def test_parse_label() -> None:
    assert (
        parse_label("Anomaly", "x") == 1 and parse_label("normal", "x") == 0 and parse_label("", "x") is None
    )
