"""Segment thumbnails: seek-based frame grabs, thumbnails stored by ``build --thumbnails`` and checked
by ``vadindex check``, the thumbnail cache, placeholders for moved, deleted or changed videos, and
``--video-root``."""

from __future__ import annotations

import io
import json
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from conftest import run, write_video
from PIL import Image

from vadindex.config import STORED_THUMBNAIL_SIZE
from vadindex.errors import InputError
from vadindex.index.check import check_index
from vadindex.index.manifest import MANIFEST, PARTS
from vadindex.index.reader import open_index
from vadindex.ingest import build_index
from vadindex.ingest.decode import read_frames_at
from vadindex.ingest.sources import VideoRoots
from vadindex.report.thumbnails import ThumbnailStore, placeholder_jpeg

RATE = 10
STEP = 5  # grey level of frame i is STEP * i: the picture says which frame it is


def numbered_video(path: Path, n: int = 30, size: tuple[int, int] = (64, 48), gop: int = 8) -> Path:
    """A video whose frame ``i`` (shown at ``i / RATE`` s) is a flat grey of level ``STEP * i``,
    with a keyframe every ``gop`` frames (and B-frames), so a grab can be checked frame-exactly."""
    w, h = size
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(
            "libx264", rate=RATE, options={"g": str(gop), "keyint_min": str(gop), "bf": "2"}
        )
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), STEP * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, RATE)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def frame_number(image: np.ndarray) -> int:
    return round(float(image.mean()) / STEP)


def jpeg_image(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


# -- frame grabs ------------------------------------------------------------------------------


def test_grab_gives_the_frame_on_screen_at_each_time(tmp_path: Path) -> None:
    path = numbered_video(tmp_path / "n.mp4")
    # Unsorted, repeated, before the first frame, between frames, far apart (a seek), past the end.
    times = [2.05, 0.0, 0.45, 0.45, 1.3, -1.0, 0.1, 9.0, 2.9]
    images = read_frames_at(path, times, 256)
    assert [frame_number(img) for img in images] == [20, 0, 4, 4, 13, 0, 1, 29, 29]
    assert images[0].shape == (48, 64, 3)  # never enlarged


def test_grab_matches_decoding_from_the_start_on_real_720p(shared_videos: Path) -> None:
    path = shared_videos / "traffic_camera.mp4"
    with av.open(str(path)) as c:
        frames = [(f.time, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    times = [0.5, 7.77, 12.0, 12.04, 21.3]  # 12.0 is a frame time, 12.04 the next one
    images = read_frames_at(path, times, 4096)
    for t, image in zip(times, images, strict=True):
        expected = max(i for i, (ft, _) in enumerate(frames) if ft <= t + 1e-6)
        assert np.array_equal(image, frames[expected][1]), t
    small = read_frames_at(path, [3.0], 256)[0]
    assert small.shape == (144, 256, 3)


def test_grab_from_a_file_with_a_lying_header(shared_videos: Path) -> None:
    # An AVI whose header claims 0 frames: seeking and decoding still find the frames.
    images = read_frames_at(shared_videos / "highway-cyclist.avi", [1.0, 25.0], 160)
    assert [img.shape for img in images] == [(120, 160, 3)] * 2
    assert not np.array_equal(images[0], images[1])


# -- thumbnails stored in the index --------------------------------------------------------------


@pytest.fixture(scope="module")
def thumbs_index(tmp_path_factory: pytest.TempPathFactory, encoder) -> Path:  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("thumbclips")
    numbered_video(folder / "numbered.mp4", n=45)  # 4.5 s: 4 full segments (the tail is too short)
    write_video(folder / "moving.mp4", seconds=3.0, size=(96, 64), seed=3)
    index = tmp_path_factory.mktemp("thumbix") / "ix"
    build_index([folder], index, encoder=encoder, progress=False, thumbnails=True, commit_every=1)
    return index


def test_build_stores_one_thumbnail_per_segment_in_the_same_commit(thumbs_index: Path) -> None:
    manifest = json.loads((thumbs_index / MANIFEST).read_text())
    assert [p["thumbnails"] for p in manifest["parts"]] == [p["segments"] for p in manifest["parts"]]
    for p in manifest["parts"]:
        assert f"{PARTS}/{p['name']}.thumbs.parquet" in manifest["files"]
    snap = open_index(thumbs_index)
    segs = snap.segments
    stored = snap.stored_thumbnails(range(len(segs)))
    assert sorted(stored) == list(range(len(segs)))
    numbered = segs.index[segs["video"] == "numbered.mp4"]
    for row in numbered:
        time, jpeg = stored[row]
        start, end = segs.loc[row, ["start", "end"]]
        assert time == pytest.approx((start + end) / 2)  # the middle sample at 4 fps, 1 s
        image = jpeg_image(jpeg)
        assert max(image.shape[:2]) == min(STORED_THUMBNAIL_SIZE, 64)
        assert frame_number(image) == round(time * RATE)  # the frame on screen at that time
    assert check_index(thumbs_index).ok
    code, out, _ = run("info", "--index", thumbs_index)
    assert code == 0 and f"thumbnails {len(segs)} of {len(segs)} segments stored" in out


def test_check_finds_damaged_thumbnails(thumbs_index: Path, tmp_path: Path) -> None:
    index = tmp_path / "ix"
    shutil.copytree(thumbs_index, index)
    part = sorted((index / PARTS).glob("*.thumbs.parquet"))[0]
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    report = check_index(index)
    assert not report.ok and any("thumbs.parquet" in p and "SHA-256" in p for p in report.problems)
    part.unlink()
    code, _, err = run("check", "--index", index)
    assert code == 1 and f"{part.name}: missing" in err


def test_index_without_thumbnails_is_unchanged_and_old_manifests_open(
    tmp_path: Path,
    encoder,  # type: ignore[no-untyped-def]
) -> None:
    write_video(tmp_path / "v" / "a.mp4", seconds=2.0, size=(64, 48))
    index = tmp_path / "ix"
    build_index([tmp_path / "v"], index, encoder=encoder, progress=False)
    assert not list((index / PARTS).glob("*.thumbs.parquet"))
    # A manifest written before thumbnails existed has no "thumbnails" key in its parts.
    manifest = json.loads((index / MANIFEST).read_text())
    for p in manifest["parts"]:
        assert p.pop("thumbnails") == 0
    (index / MANIFEST).write_text(json.dumps(manifest))
    snap = open_index(index)
    assert not snap.has_thumbnails and snap.stored_thumbnails([0, 1]) == {}
    assert check_index(index).ok


# -- the store: cache, placeholders, remapping ----------------------------------------------------


@pytest.fixture()
def moved(tmp_path: Path, encoder):  # type: ignore[no-untyped-def]
    """An index without stored thumbnails over two clips, built from ``tmp_path/old``."""
    old = tmp_path / "old"
    numbered_video(old / "n.mp4", n=30)
    write_video(old / "m.mp4", seconds=2.0, size=(64, 48), seed=5)
    index = tmp_path / "ix"
    build_index([old], index, encoder=encoder, progress=False)
    return index, old


def test_thumbnails_are_decoded_then_cached_atomically(moved) -> None:  # type: ignore[no-untyped-def]
    index, _ = moved
    store = ThumbnailStore(index)
    segs = store.snapshot.segments
    rows = segs.index[segs["video"] == "n.mp4"].tolist()
    first = store.segments(rows)
    assert [t.source for t in first] == ["video"] * len(rows)
    assert [frame_number(jpeg_image(t.jpeg)) for t in first] == [5, 15, 25]  # middles: 0.5, 1.5, 2.5 s
    vid = str(segs.loc[rows[0], "video_id"])
    cached = sorted(p.name for p in (index / "cache" / "thumbs" / vid).iterdir())
    assert cached == ["1500-256.jpg", "2500-256.jpg", "500-256.jpg"]  # no temporary file left
    again = ThumbnailStore(index).segments(rows)
    assert [t.source for t in again] == ["cache"] * len(rows)
    assert [t.jpeg for t in again] == [t.jpeg for t in first]
    assert ThumbnailStore(index, cache=False).segment(rows[0]).source == "video"


def test_moved_deleted_or_changed_videos_give_placeholders_and_notes(moved, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    index, old = moved
    new = tmp_path / "new"
    shutil.move(str(old), str(new))
    store = ThumbnailStore(index, cache=False)
    thumbs = store.segments(range(len(store.snapshot.segments)))
    assert {t.source for t in thumbs} == {"placeholder"}
    assert all("not found" in t.note and "--video-root" in t.note for t in thumbs)
    assert thumbs[0].jpeg == placeholder_jpeg(256) and len(store.notes) == 2
    # --video-root finds the footage where it went.
    remapped = ThumbnailStore(index, cache=False, video_root=f"{old}={new}")
    assert {t.source for t in remapped.segments(range(len(remapped.snapshot.segments)))} == {"video"}
    # A different file at the recorded place is not the video that was indexed.
    numbered_video(new / "n.mp4", n=31)
    changed = ThumbnailStore(index, cache=False, video_root=f"{old}={new}")
    segs = changed.snapshot.segments
    thumb = changed.segment(int(segs.index[segs["video"] == "n.mp4"][0]))
    assert thumb.source == "placeholder" and "not the video that was indexed" in thumb.note


def test_stored_thumbnails_survive_deleted_videos(tmp_path: Path, encoder) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "v"
    numbered_video(folder / "n.mp4", n=30)
    build_index([folder], tmp_path / "ix", encoder=encoder, progress=False, thumbnails=True)
    shutil.rmtree(folder)
    store = ThumbnailStore(tmp_path / "ix")
    thumbs = store.segments([0, 1, 2])
    assert [t.source for t in thumbs] == ["index"] * 3 and not store.notes
    assert [frame_number(jpeg_image(t.jpeg)) for t in thumbs] == [5, 15, 25]


def test_thumbnail_at_any_time_and_by_segment_number(moved) -> None:  # type: ignore[no-untyped-def]
    index, _ = moved
    store = ThumbnailStore(index, size=32)
    vid = str(store.snapshot.videos.set_index("video").loc["n.mp4", "video_id"])
    assert frame_number(jpeg_image(store.at(vid, 1.72).jpeg)) == 17
    assert max(jpeg_image(store.at(vid, 1.72).jpeg).shape[:2]) == 32
    assert store.segment_row(vid, 2) is not None and store.segment_row(vid, 3) is None
    assert store.at("no-such-video", 1.0).source == "placeholder"


# -- --video-root ---------------------------------------------------------------------------------


def test_video_roots_replace_whole_leading_folders(tmp_path: Path) -> None:
    roots = VideoRoots.parse(f"{tmp_path}/cams/=/data")
    assert roots.apply(f"{tmp_path}/cams/a/b.mp4") == Path("/data/a/b.mp4")
    assert roots.apply(f"{tmp_path}/cameras/a.mp4") == Path(f"{tmp_path}/cameras/a.mp4")
    assert not VideoRoots.parse(None) and VideoRoots.parse(None).apply("x.mp4") == Path("x.mp4")
    for bad in ("/only-one-side", "=/new", "/old="):
        with pytest.raises(InputError, match="OLD=NEW"):
            VideoRoots.parse(bad)


def test_build_reads_a_manifest_written_where_the_footage_used_to_be(
    tmp_path: Path,
    encoder,  # type: ignore[no-untyped-def]
) -> None:
    write_video(tmp_path / "new" / "a.mp4", seconds=2.0, size=(64, 48))
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"path": [str(tmp_path / "old" / "a.mp4")], "label": ["normal"]}).to_csv(
        manifest, index=False
    )
    summary = build_index([], tmp_path / "ix", manifest=manifest, encoder=encoder, progress=False,
                          video_root=f"{tmp_path / 'old'}={tmp_path / 'new'}")  # fmt: skip
    assert summary.videos_added == 1 and not summary.failures
    assert open_index(tmp_path / "ix").videos["path"].iloc[0] == str(tmp_path / "new" / "a.mp4")
    code, _, err = run("build", "--manifest", manifest, "--index", tmp_path / "ix2", "--video-root", "nonsense",
                       "--model", "vadindex-test", "--pretrained", "random")  # fmt: skip
    assert code == 2 and "--video-root must be OLD=NEW" in err and "Traceback" not in err


def test_a_damaged_thumbnail_part_falls_back_to_the_videos(thumbs_index: Path, tmp_path: Path) -> None:
    index = tmp_path / "ix"
    shutil.copytree(thumbs_index, index)
    for part in (index / PARTS).glob("*.thumbs.parquet"):
        part.write_bytes(b"not parquet")
    store = ThumbnailStore(index, cache=False)
    assert {t.source for t in store.segments([0, 1])} == {"video"}
