"""Tests for the synthetic surveillance scene generator."""

from __future__ import annotations

import csv
import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from vadindex.demo import synth

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scene_set(tmp_path_factory: pytest.TempPathFactory) -> synth.SceneSet:
    """One normal video and one video per event class."""
    return synth.generate_scenes(tmp_path_factory.mktemp("scenes"), seed=3, n_normal=1, n_anomaly=5)


def _file_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generate_is_deterministic_by_seed(tmp_path: Path) -> None:
    a = synth.generate_scenes(tmp_path / "a", seed=11, n_normal=1, n_anomaly=1)
    b = synth.generate_scenes(tmp_path / "b", seed=11, n_normal=1, n_anomaly=1, workers=2)
    c = synth.generate_scenes(tmp_path / "c", seed=12, n_normal=1, n_anomaly=1)
    assert a.videos == b.videos
    assert _file_bytes(a.root) == _file_bytes(b.root)
    fa, fc = _file_bytes(a.root), _file_bytes(c.root)
    assert any(fa.get(k) != fc.get(k) for k in fa if k.endswith(".mp4"))


def test_manifest_matches_videos(scene_set: synth.SceneSet) -> None:
    with open(scene_set.manifest_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["path", "label", "class"]
    assert len(rows) == len(scene_set.videos)
    for row, v in zip(rows, scene_set.videos, strict=True):
        assert (scene_set.manifest_path.parent / row["path"]).is_file()
        assert row["path"] == v.path and row["class"] == v.cls
        assert row["label"] == ("normal" if row["class"] == synth.NORMAL_CLASS else "anomaly")
    assert {r["class"] for r in rows} == {synth.NORMAL_CLASS, *synth.EVENT_CLASSES}


def test_annotations_match_manifest_and_leave_normal_stretches(scene_set: synth.SceneSet) -> None:
    lines = scene_set.annotations_path.read_text().splitlines()
    assert len(lines) == len(scene_set.videos)
    ann = synth.read_annotations(scene_set.annotations_path)
    for line, v in zip(lines, scene_set.videos, strict=True):
        parts = line.split()
        assert len(parts) == 6 and parts[0] == Path(v.path).name and parts[1] == v.cls
        cls, spans = ann[parts[0]]
        assert cls == v.cls and spans == v.spans
        if v.cls == synth.NORMAL_CLASS:
            assert parts[2:] == ["-1"] * 4
            continue
        assert 1 <= len(spans) <= 2
        for s0, s1 in spans:
            assert 0 < s0 < s1 < v.n_frames
        # normal footage before and after the event (at least 1 s each)
        assert spans[0][0] >= v.fps and v.n_frames - spans[-1][1] >= v.fps
        labels = synth.frame_classes(v)
        assert labels[0] == synth.NORMAL_CLASS and labels[-1] == synth.NORMAL_CLASS
        assert np.sum(labels == v.cls) == sum(s1 - s0 for s0, s1 in spans)


def test_scenes_json_matches(scene_set: synth.SceneSet) -> None:
    meta = json.loads(scene_set.scenes_json_path.read_text())
    assert meta["seed"] == scene_set.seed
    assert meta["generator_version"] == synth.GENERATOR_VERSION
    assert [v["name"] for v in meta["videos"]] == [v.name for v in scene_set.videos]
    assert [tuple(map(tuple, v["spans"])) for v in meta["videos"]] == [v.spans for v in scene_set.videos]


def test_videos_decode_with_stated_duration(scene_set: synth.SceneSet) -> None:
    import av

    for v in scene_set.videos:
        with av.open(str(scene_set.root / v.path)) as container:
            stream = container.streams.video[0]
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
            assert stream.average_rate == v.fps
            assert container.duration / 1e6 == pytest.approx(v.duration_s, abs=1.0 / v.fps)
        assert len(frames) == v.n_frames
        assert frames[0].shape == (v.height, v.width, 3)
        assert 8.0 <= v.duration_s <= synth.MAX_DURATION


def test_fire_is_visible_exactly_inside_its_span() -> None:
    info, frames = synth.build_video(
        Path("unused"), seed=5, index=0, cls="Fire", name="Fire_001.mp4", write=False
    )
    (s0, s1), *_ = info.spans

    def flame_pixels(img: np.ndarray) -> int:
        r, g, b = (img[..., k].astype(int) for k in range(3))
        return int(np.sum((r > 200) & (g > 40) & (g < 190) & (b < 90) & (r - g > 60)))

    inside = [flame_pixels(f) for f in frames[s0:s1]]
    outside = [flame_pixels(f) for f in frames[:s0] + frames[s1:]]
    assert min(inside) > 20
    assert max(outside) < min(inside) / 4


def test_demo_prompts_never_appear_in_training_captions() -> None:
    captions = set(synth.list_training_captions())
    wordings = {w for ws in synth.TRAIN_WORDINGS.values() for w in ws}
    demo = [*synth.DEMO_ANOMALY_PROMPTS, *synth.DEMO_NORMAL_PROMPTS, *synth.DEMO_QUERIES]
    for text in demo:
        assert text.lower() not in captions
        assert text.lower() not in wordings
    assert set(synth.DEMO_QUERIES.values()) == set(synth.EVENT_CLASSES)


def test_make_caption_draws_from_the_training_captions() -> None:
    captions = set(synth.list_training_captions())
    rng = np.random.default_rng(0)
    for cls in (synth.NORMAL_CLASS, *synth.EVENT_CLASSES):
        for scene in synth.SCENE_KINDS:
            for _ in range(20):
                assert synth.make_caption(cls, scene, rng) in captions


def test_plan_spreads_anomalies_over_classes() -> None:
    plan = synth.plan_scene_set(seed=0, n_normal=3, n_anomaly=10)
    classes = [c for _, c, _ in plan]
    assert classes.count(synth.NORMAL_CLASS) == 3
    assert all(classes.count(c) == 2 for c in synth.EVENT_CLASSES)
    assert len({name for _, _, name in plan}) == len(plan)
    with pytest.raises(ValueError):
        synth.plan_scene_set(seed=0, n_normal=1, n_anomaly=1, classes=("Explosion",))


def test_make_scenes_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "set"
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "make_scenes.py",
            "--seed",
            "2",
            "--out",
            str(out),
            "--n-normal",
            "1",
            "--n-anomaly",
            "1",
            "--classes",
            "Falling",
        ],
    )
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(str(ROOT / "scripts" / "make_scenes.py"), run_name="__main__")
    assert exc.value.code == 0
    rows = (out / "manifest.csv").read_text().splitlines()
    assert rows[0] == "path,label,class" and len(rows) == 3
    assert "2 videos" in capsys.readouterr().out
