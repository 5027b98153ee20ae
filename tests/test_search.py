"""Text and image search over an index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vadindex.api import VideoIndex
from vadindex.errors import InputError
from vadindex.index.reader import open_index
from vadindex.search.vectors import search_vector


def test_query_order_matches_brute_force(built_index: Path, encoder) -> None:  # type: ignore[no-untyped-def]
    snap = open_index(built_index)
    q = encoder.encode_texts(["a car on a highway"])[0]
    res = search_vector(snap, q, k=7)
    brute = snap.vectors() @ q
    order = np.argsort(-brute)[:7]
    assert list(res["rank"]) == list(range(1, 8))
    assert np.allclose(res["score"], brute[order], atol=2e-3)
    assert (np.diff(res["score"].to_numpy()) <= 1e-6).all()
    segs = snap.segments
    assert list(res["start"]) == list(segs["start"].to_numpy()[order])


def test_video_glob_filter(built_index: Path, encoder) -> None:  # type: ignore[no-untyped-def]
    snap = open_index(built_index)
    q = encoder.encode_texts(["people fighting"])[0]
    res = search_vector(snap, q, k=50, video="fight/*")
    assert set(res["video"]) == {"fight/fi001.mp4", "fight/fi010.mp4"}
    assert len(res) == len(snap.segments[snap.segments["video"].str.startswith("fight/")])
    assert search_vector(snap, q, k=3, video="nothing-*").empty


def _brute_force_top(snap, q: np.ndarray, k: int) -> tuple[list[tuple[str, int]], np.ndarray]:  # type: ignore[no-untyped-def]
    """The ``k`` best (video, segment) rows and their scores, by a full scan in numpy."""
    scores = snap.vectors().astype(np.float64) @ q.astype(np.float64)
    order = np.argsort(-scores, kind="stable")[:k]
    segs = snap.segments
    return list(zip(segs["video"].to_numpy()[order], segs["segment"].to_numpy()[order], strict=True)), scores[
        order
    ]


def test_api_query_text_and_image(built_index: Path, encoder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    idx = VideoIndex(built_index)
    idx._encoder = encoder
    snap = open_index(built_index)
    hits = idx.query("a car", k=5)
    rows, scores = _brute_force_top(snap, encoder.encode_texts(["a car"])[0], 5)
    assert list(zip(hits["video"], hits["segment"], strict=True)) == rows
    assert np.allclose(hits["score"], scores, atol=2e-3)
    # An image already at the model's input size is encoded as it is (no resize, no crop), so its
    # query vector is known without the package's image code; its colours are in RGB order.
    size = encoder.image_size
    pixels = np.random.default_rng(3).integers(0, 256, (size, size, 3), dtype=np.uint8)
    pixels[: size // 2, : size // 2] = (255, 0, 0)
    img = tmp_path / "q.png"
    Image.fromarray(pixels).save(img)
    hits = idx.query(image=img, k=3)
    rows, scores = _brute_force_top(snap, encoder.encode_images(pixels[None])[0], 3)
    assert list(zip(hits["video"], hits["segment"], strict=True)) == rows
    assert np.allclose(hits["score"], scores, atol=2e-3)
    with pytest.raises(InputError):
        idx.query("a car", k=0)
    with pytest.raises(InputError):
        idx.query(image=tmp_path / "missing.png")


def test_api_detect_loads_the_model_once_and_only_for_new_prompts(
    built_index: Path, encoder, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import vadindex.search.encoders as search

    loads = []

    def counting(snap, device="auto", pretrained=None, precision="auto"):  # type: ignore[no-untyped-def]
        loads.append(1)
        return encoder

    monkeypatch.setattr(search, "load_index_encoder", counting)
    idx = VideoIndex(built_index, text_encoder="torch")  # the model, not an exported text tower
    idx.detect("a person juggling in the street", use_cache=True)
    idx.detect("a dog chasing a ball; a person juggling in the street")
    assert loads == [1]  # loaded for the first new prompt, kept for the next
    fresh = VideoIndex(built_index, text_encoder="torch")
    res = fresh.detect("a person juggling in the street")  # cached text: no model at all
    assert loads == [1] and len(res.videos) > 0
    # A device given for one call is honoured (not the index's kept or lazy encoder) by torch.
    devices = []
    monkeypatch.setattr(
        search, "load_index_encoder", lambda snap, device="auto", *a, **k: devices.append(device) or encoder
    )
    VideoIndex(built_index, device="auto").detect("a cat on a wall", device="cpu", text_encoder="torch")
    assert devices == ["cpu"]
