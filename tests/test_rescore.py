"""Instant rescoring: cached text embeddings and similarities, no model for rule or threshold changes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import vadindex.models.openclip as enc
from vadindex.detect import detect
from vadindex.index.cache import MAX_BLOCKS, IndexCache
from vadindex.index.manifest import CACHE
from vadindex.index.reader import open_index

PROMPTS = "people fighting; a person punching another person"


class CountingEncoder:
    """The session encoder, recording every text it is asked to encode."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.identity, self.dim = inner.identity, inner.dim
        self.image_size, self.logit_scale = inner.image_size, inner.logit_scale
        self.texts: list[str] = []

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        return self.inner.encode_images(pixels)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        self.texts += list(texts)
        return self.inner.encode_texts(texts)


@pytest.fixture
def index(built_index: Path, tmp_path: Path) -> Path:
    """A private copy of the session index, so cache files stay out of other tests."""
    path = tmp_path / "ix"
    shutil.copytree(built_index, path, ignore=shutil.ignore_patterns(CACHE))
    return path


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(enc, "load_encoder", lambda *a, **k: pytest.fail("a model was loaded"))


def test_rescoring_loads_no_model_in_a_fresh_process(index: Path, encoder) -> None:  # type: ignore[no-untyped-def]
    detect(index, PROMPTS, encoder=encoder)  # warm the cache
    code = (
        "import sys, json\n"
        "from vadindex._cli.main import cli\n"
        f"args = ['detect', '--index', {str(index)!r}, '-p', {PROMPTS!r}, '--segment-threshold', '0.2',\n"
        "        '--rule', 'balanced', '--video-agg', 'max', '--smooth', '1', '--format', 'json']\n"
        "try:\n    cli.main(args, standalone_mode=False)\n"
        "finally:\n"
        "    heavy = [m for m in ('torch', 'open_clip', 'faiss', 'sklearn') if m in sys.modules]\n"
        "    print('HEAVY=' + json.dumps(heavy), file=sys.stderr)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY=[]" in proc.stderr
    assert json.loads(proc.stdout)["settings"]["segment_threshold"] == 0.2


def test_only_new_texts_are_encoded(index: Path, encoder, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    counting = CountingEncoder(encoder)
    detect(index, PROMPTS, encoder=counting)
    first = list(counting.texts)
    assert "people fighting" in first
    counting.texts.clear()
    detect(index, PROMPTS + "; a fire", encoder=counting, segment_threshold=0.9)
    assert counting.texts == ["a fire"]
    counting.texts.clear()
    detect(index, "a fire; people fighting", encoder=counting, rule="topk")
    assert counting.texts == []


def test_rules_and_thresholds_need_no_model(index: Path, encoder, no_model: None) -> None:  # type: ignore[no-untyped-def]
    detect(index, PROMPTS, encoder=encoder, rule="frame-vote")  # caches texts and frame similarities
    for kwargs in ({"segment_threshold": 0.1}, {"rule": "balanced", "calibrate": "zscore", "segment_threshold": 1.0},
                   {"rule": "topk", "top_k": 2}, {"rule": "frame-vote", "frame_votes": 3},
                   {"knn_k": 3, "smooth": 2, "video_agg": "topk-mean"}, {"calibrate": "percentile", "video_agg": "max"}):  # fmt: skip
        res = detect(index, PROMPTS, **kwargs)  # no encoder given: only the cache can serve it
        # The same settings computed from scratch: texts encoded, similarities from the vectors.
        cold = detect(index, PROMPTS, encoder=encoder, use_cache=False, **kwargs)
        pd.testing.assert_frame_equal(res.segments, cold.segments, atol=1e-5, obj=str(kwargs))
        pd.testing.assert_frame_equal(res.videos, cold.videos, atol=1e-5, obj=str(kwargs))
        assert res.settings == cold.settings


def test_cached_and_uncached_results_agree(index: Path, encoder) -> None:  # type: ignore[no-untyped-def]
    kwargs = {"rule": "frame-vote", "knn_k": 2, "smooth": 1, "calibrate": "zscore", "segment_threshold": 0.5}
    cold = detect(index, "ucf-crime", encoder=encoder, use_cache=False, **kwargs)
    assert not (index / CACHE).exists()
    detect(index, "ucf-crime", encoder=encoder, **kwargs)
    warm = detect(index, "ucf-crime", encoder=encoder, **kwargs)
    pd.testing.assert_frame_equal(cold.segments, warm.segments, atol=1e-5)
    pd.testing.assert_frame_equal(cold.videos, warm.videos, atol=1e-5)


def test_cache_follows_the_index_generation(
    index: Path, encoder, shared_videos: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from vadindex.ingest import build_index

    counting = CountingEncoder(encoder)
    before = detect(index, PROMPTS, encoder=counting)
    extra = tmp_path / "more"
    extra.mkdir()
    shutil.copy(shared_videos / "nofight" / "nofi030.mp4", extra / "new.mp4")  # not in the session index
    build_index([extra], index, encoder=encoder, progress=False)
    counting.texts.clear()
    after = detect(index, PROMPTS, encoder=counting)
    assert counting.texts == []  # text embeddings survive a new generation
    assert len(after.segments) > len(before.segments)
    snap = open_index(index)
    fresh = IndexCache(snap).similarities(
        "segments", ["people fighting"], encoder.encode_texts(["people fighting"])
    )
    assert fresh.shape == (snap.manifest.n_segments, 1)
    assert np.allclose(fresh[:, 0], snap.vectors() @ encoder.encode_texts(["people fighting"])[0], atol=1e-5)


def test_damaged_or_half_written_blocks_are_ignored(index: Path, encoder) -> None:  # type: ignore[no-untyped-def]
    before = detect(index, PROMPTS, encoder=encoder)
    folder = index / CACHE
    damaged = list(folder.glob("simt-*.npy"))
    assert damaged  # the similarity blocks this test damages exist
    for f in damaged:
        f.write_bytes(b"not an array")
    (folder / "simt-segments-half-written.json").write_text("{")  # an interrupted writer's leftovers
    counting = CountingEncoder(encoder)
    res = detect(index, PROMPTS, encoder=counting)
    assert counting.texts == []  # text vectors were fine; similarities were recomputed from the store
    assert np.allclose(res.segments["score"], before.segments["score"], atol=1e-6)


def test_blocks_of_the_old_row_major_layout_are_ignored_and_removed(index: Path, encoder) -> None:  # type: ignore[no-untyped-def]
    folder = index / CACHE
    folder.mkdir(exist_ok=True)
    old = folder / "sims-segments-oldmodel-g000001-abc-def"
    np.save(old.with_suffix(".npy"), np.zeros((3, 2), np.float32))
    old.with_suffix(".json").write_text('{"texts": ["people fighting", "x"], "shape": [3, 2]}')
    res = detect(index, "a brand new prompt for this test", encoder=encoder)  # a miss: writes and prunes
    assert res.segments["score"].notna().all()
    assert not old.with_suffix(".json").exists() and not old.with_suffix(".npy").exists()


def test_blocks_are_compacted(index: Path, encoder) -> None:  # type: ignore[no-untyped-def]
    for i in range(MAX_BLOCKS + 3):
        detect(index, f"event number {i}", encoder=encoder)
    texts = list((index / CACHE).glob("text-*.json"))
    assert len(texts) <= MAX_BLOCKS
    counting = CountingEncoder(encoder)
    detect(index, "; ".join(f"event number {i}" for i in range(MAX_BLOCKS + 3)), encoder=counting)
    assert counting.texts == []


def test_cache_refuses_another_model(index: Path, encoder) -> None:  # type: ignore[no-untyped-def]
    from vadindex.errors import ModelError

    detect(index, PROMPTS, encoder=encoder)
    other = CountingEncoder(encoder)
    other.identity = enc.ModelIdentity("ViT-B-32", "openai")
    with pytest.raises(ModelError, match="built with"):
        detect(index, PROMPTS, encoder=other)
