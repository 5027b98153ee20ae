"""Sources named by URI, read through pyarrow.fs from a real S3 API (moto's server on loopback)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import S3_CLIPS as CLIPS

from vadindex.errors import VideoError
from vadindex.ingest.decode import SampledVideo, open_video
from vadindex.ingest.remote import is_uri, list_uri
from vadindex.ingest.sources import collect_sources, fingerprint, fingerprint_and_size


def test_is_uri() -> None:
    assert is_uri("s3://b/k.mp4") and is_uri("gs://b/k") and is_uri("hdfs://host:8020/x")
    assert not is_uri("videos/a.mp4") and not is_uri("C:\\videos\\a.mp4") and not is_uri(Path("s3://b"))


def test_prefix_lists_videos_with_relative_names(s3: str, shared_videos: Path) -> None:
    videos, problems = collect_sources(
        ["s3://vids/cams/", "s3://vids/cams/fight/fi001.mp4", "s3://vids/nope/"]
    )
    names = sorted(v.video for v in videos)
    assert names == sorted(["broken.mp4", *CLIPS]), names  # the object named twice is listed once
    assert problems == [("s3://vids/nope/", "no such object or prefix")]
    fi001 = next(v for v in videos if v.video == "fight/fi001.mp4")
    assert fi001.path == "s3://vids/cams/fight/fi001.mp4"
    # The same bytes get the same id wherever they are read from: a video is indexed once.
    local = shared_videos / "fight" / "fi001.mp4"
    assert fingerprint(fi001.path) == fingerprint(local)
    assert fingerprint_and_size(fi001.path)[1] == local.stat().st_size


def test_query_parameters_stay_on_listed_uris(s3: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    host = s3.removeprefix("http://")
    files, reason = list_uri(f"s3://vids/cams/fight?endpoint_override={host}&scheme=http", lambda n: True)
    assert reason == "" and [f.relative for f in files] == ["fi001.mp4"]
    assert files[0].uri == f"s3://vids/cams/fight/fi001.mp4?endpoint_override={host}&scheme=http"
    assert fingerprint(files[0].uri)


def test_decodes_remote_video_like_the_local_file(s3: str, shared_videos: Path) -> None:
    remote = SampledVideo("s3://vids/cams/highway-cyclist.avi", 4.0, 32, 16)  # type: ignore[arg-type]
    local = SampledVideo(shared_videos / "highway-cyclist.avi", 4.0, 32, 16)
    a = np.concatenate(list(remote.batches()))
    b = np.concatenate(list(local.batches()))
    assert a.shape == b.shape and np.array_equal(a, b)
    assert remote.info == local.info and np.array_equal(remote.frame_times, local.frame_times)


def test_missing_and_broken_objects_are_one_line_video_errors(s3: str) -> None:
    with pytest.raises(VideoError, match="no such object"):
        open_video("s3://vids/cams/missing.mp4")
    with pytest.raises(VideoError, match="no such object"):
        fingerprint("s3://vids/cams/missing.mp4")
    with pytest.raises(VideoError, match="not a readable video"):
        open_video("s3://vids/cams/broken.mp4")
    with pytest.raises(VideoError, match="cannot open this URI"):
        fingerprint("nosuchscheme://x/y.mp4")


def test_local_build_from_s3_and_manifest_with_uris(s3: str, tmp_path: Path, encoder) -> None:  # type: ignore[no-untyped-def]
    from vadindex.ingest import build_index

    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,label\ns3://vids/cams/fight/fi001.mp4,anomaly\ns3://vids/cams/gone.mp4,normal\n",
        encoding="utf-8",
    )
    summary = build_index([], tmp_path / "ix", manifest=manifest, encoder=encoder, progress=False)
    assert summary.videos_added == 1
    assert summary.failures == (("s3://vids/cams/gone.mp4", "no such object"),)
    from vadindex.index.reader import open_index

    videos = open_index(tmp_path / "ix").videos
    assert videos["path"].tolist() == ["s3://vids/cams/fight/fi001.mp4"] and videos["label"].tolist() == [1]
