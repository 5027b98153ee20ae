"""Exemplar classes: the YAML schema, the class-embedding mix, segment and image examples."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from vadindex.detect import detect
from vadindex.detect.prompts import EXAMPLE_CLASS, PromptClass, load_prompt_set, load_prompt_yaml
from vadindex.detect.similarity import class_similarity_parts, mix_examples
from vadindex.errors import InputError
from vadindex.index.manifest import CACHE
from vadindex.index.reader import open_index


@pytest.fixture
def index(built_index: Path, tmp_path: Path) -> Path:
    path = tmp_path / "ix"
    shutil.copytree(built_index, path, ignore=shutil.ignore_patterns(CACHE))
    return path


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 1.0])
def test_mix_equals_the_mixed_embedding(beta: float) -> None:
    rng = np.random.default_rng(1)
    x = _unit(rng.standard_normal((50, 8)))
    t = _unit(rng.standard_normal((3, 8)))
    e = _unit(rng.standard_normal((3, 8)))
    has_text, has_examples = np.array([True, True, False]), np.array([True, False, True])
    text = np.where(has_text, x @ t.T, 0.0)
    examples = np.where(has_examples, x @ e.T, 0.0)
    cross = (t * e).sum(axis=1)
    got = mix_examples(text, examples, has_text, has_examples, cross, beta)
    expected = np.stack([x @ _unit((1 - beta) * t[0] + beta * e[0]), x @ t[1], x @ e[2]], axis=1)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_yaml_classes_take_examples(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "fire.jpg").write_bytes(b"not read here")
    file = tmp_path / "set.yaml"
    file.write_text(
        "anomaly:\n"
        "  Fire: {prompts: [a fire], examples: [img/fire.jpg, 'cam1/a.mp4@12.5']}\n"
        "  Loitering: {examples: ['0123456789abcdef0123:4']}\n"
        "  Fighting: people fighting\n"
        "normal: [people walking]\n"
    )
    spec = load_prompt_yaml(file)
    fire, loiter, fight = spec.classes[:3]
    assert fire.examples == (str(tmp_path / "img" / "fire.jpg"), "cam1/a.mp4@12.5")
    assert loiter.prompts == () and loiter.examples == ("0123456789abcdef0123:4",)
    assert fight.examples == () and spec.has_examples
    assert spec.to_dict()["anomaly"]["Loitering"] == {"examples": ["0123456789abcdef0123:4"]}
    assert spec.text_weights()[1].sum() == 0  # a class of examples only has no texts
    for bad, message in (("  Fire: {prompts: [a fire], images: [x.jpg]}\n", "unknown keys"),
                         ("  Fire: {}\n", "needs prompts or examples")):  # fmt: skip
        file.write_text("anomaly:\n" + bad)
        with pytest.raises(InputError, match=message):
            load_prompt_yaml(file)


def test_examples_join_classes_or_make_new_ones() -> None:
    spec = load_prompt_set("people fighting; a fire")
    more = spec.with_examples(
        [("a.mp4@1", True, "a fire"), ("b.mp4@2", True, None), ("c.mp4@3", False, None)]
    )
    by_name = {c.name: c for c in more.classes}
    assert by_name["a fire"] == PromptClass("a fire", ("a fire",), True, ("a.mp4@1",))
    assert by_name[EXAMPLE_CLASS[True]].examples == ("b.mp4@2",) and by_name[EXAMPLE_CLASS[True]].anomaly
    assert not by_name[EXAMPLE_CLASS[False]].anomaly
    assert more.is_anomaly == sorted(more.is_anomaly, reverse=True)  # anomaly classes first
    with pytest.raises(InputError, match="is an anomaly class"):
        spec.with_examples([("a.mp4@1", False, "a fire")])


def test_segment_examples_are_the_stored_vectors(index: Path, encoder) -> None:  # type: ignore[no-untyped-def]
    snap = open_index(index)
    video = snap.videos.iloc[1]
    ref_time = f"{video['video']}@{float(snap.segments['start'][int(video['first_row']) + 1]) + 0.2}"
    ref_id = f"{video['video_id']}:2"
    x = snap.vectors()
    rows = [int(video["first_row"]) + 1, int(video["first_row"]) + 2]
    res = detect(
        index, "people fighting", anomaly_examples=f"{ref_time};{ref_id}", encoder=encoder, example_weight=0.4
    )
    col = list(res.class_names).index(EXAMPLE_CLASS[True])
    np.testing.assert_allclose(res.class_sims[:, col], x @ _unit(x[rows].mean(axis=0)), atol=1e-4)
    # Mixed with a class's texts: the similarity to normalise((1 - b) t + b x).
    spec = load_prompt_set("people fighting").with_examples([(ref_id, True, "people fighting")])
    parts = class_similarity_parts(snap, spec, encoder=encoder)
    t = _unit(encoder.encode_texts(["people fighting"])[0])
    mixed = parts.mixed(0.4)[0][:, 0]
    np.testing.assert_allclose(mixed, x @ _unit(0.6 * t + 0.4 * x[rows[1]]), atol=1e-4)
    with pytest.raises(InputError, match="no segment at"):
        detect(index, "people fighting", anomaly_examples=f"{video['video']}@9999", encoder=encoder)
    with pytest.raises(InputError, match="no image file, nor a segment"):
        detect(index, "people fighting", normal_examples="nothing-here.jpg", encoder=encoder)


class _Counting:
    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner, self.images = inner, 0
        self.identity, self.dim, self.logit_scale = inner.identity, inner.dim, inner.logit_scale
        self.image_size = inner.image_size

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        self.images += len(pixels)
        return self.inner.encode_images(pixels)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return self.inner.encode_texts(texts)


def test_image_examples_are_encoded_once(index: Path, encoder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    from vadindex.search.encoders import encode_query_image

    image = tmp_path / "example.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(image)
    counting = _Counting(encoder)
    first = detect(index, "people fighting", normal_examples=str(image), encoder=counting)
    assert counting.images == 1
    again = detect(
        index, "people fighting", normal_examples=str(image), encoder=counting, segment_threshold=0.3
    )
    assert counting.images == 1  # cached in the index by the file's content
    col = list(first.class_names).index(EXAMPLE_CLASS[False])
    e = _unit(encode_query_image(encoder, image))
    np.testing.assert_allclose(again.class_sims[:, col], open_index(index).vectors() @ e, atol=1e-4)
