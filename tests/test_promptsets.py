"""Prompt sets: built-in YAML sets, validation, inline compatibility and ensembled class embeddings."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from vadindex.detect.prompts import (
    DEFAULT_NORMAL_PROMPTS,
    builtin_prompt_sets,
    class_similarities,
    load_prompt_set,
    load_prompt_yaml,
)
from vadindex.errors import InputError
from vadindex.evaluate.datasets import UCF_CRIME_CLASSES


def test_builtin_sets() -> None:
    assert {"ucf-crime", "xd-violence", "general"} <= set(builtin_prompt_sets())
    ucf = load_prompt_set("ucf-crime")
    assert ucf.anomaly == UCF_CRIME_CLASSES
    assert ucf.normal and all(len(c.prompts) >= 1 for c in ucf.classes)
    assert all("{}" not in t for t in ucf.texts)
    xd = load_prompt_set("xd-violence")
    assert [c.lower() for c in xd.anomaly] == [
        "fighting",
        "shooting",
        "riot",
        "abuse",
        "caraccident",
        "explosion",
    ]
    assert load_prompt_set("general").templates


def test_inline_prompts_keep_their_meaning() -> None:
    spec = load_prompt_set("people fighting; a fire")
    assert spec.anomaly == ("people fighting", "a fire")
    assert spec.normal == DEFAULT_NORMAL_PROMPTS
    assert spec.texts == ["people fighting", "a fire", *DEFAULT_NORMAL_PROMPTS]
    w = spec.text_weights()
    assert (w == np.eye(len(spec.texts))).all()
    spec = load_prompt_set(["a", "b"], "c; d")
    assert spec.normal == ("c", "d") and spec.is_anomaly == [True, True, False, False]


def test_long_inline_prompts_are_not_taken_for_a_file_name() -> None:
    # Over 255 bytes without a '/' cannot be a file name; checking for a file used to raise
    # "File name too long".
    long = "; ".join(f"a person doing something unusual in the street, number {i}" for i in range(6))
    assert len(long) > 255
    assert len(load_prompt_set(long).anomaly) == 6


def test_normal_prompt_may_not_repeat_an_anomaly_prompt() -> None:
    with pytest.raises(InputError, match="both anomaly and normal: people fighting"):
        load_prompt_set("ucf-crime", "people fighting; an empty street")  # a Fighting prompt
    assert load_prompt_set("ucf-crime", "Fighting fans at a match").normal == ("Fighting fans at a match",)


def test_text_file_prompts(tmp_path: Path) -> None:
    f = tmp_path / "p.txt"
    f.write_text("# comment\npeople fighting\na fire\n")
    assert load_prompt_set(str(f)).anomaly == ("people fighting", "a fire")


def test_yaml_set_expands_templates(tmp_path: Path) -> None:
    f = tmp_path / "mine.yaml"
    f.write_text(
        "templates: ['a photo of {}', 'CCTV of {}']\n"
        "anomaly:\n  Fire: [a fire, smoke]\n  Fall: a person falling\n"
        "normal: [an empty street]\n"
    )
    spec = load_prompt_set(str(f))
    assert spec.name == "mine" and spec.anomaly == ("Fire", "Fall") and spec.normal == ("an empty street",)
    fire = spec.classes[0]
    assert spec.class_texts(fire) == [
        "a photo of a fire",
        "a photo of smoke",
        "CCTV of a fire",
        "CCTV of smoke",
    ]
    w = spec.text_weights()
    assert w.shape == (3, 8) and np.allclose(w.sum(axis=1), 1) and (w[0] > 0).sum() == 4
    replaced = load_prompt_set(str(f), "a quiet room")
    assert replaced.normal == ("a quiet room",) and replaced.anomaly == spec.anomaly


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("anomaly: [", "not valid YAML at line"),
        ("- a\n- b\n", "must be a mapping"),
        ("normal: [x]\n", "no 'anomaly' classes"),
        ("anomaly: {A: [x]}\ncolour: red\n", "unknown keys colour"),
        ("templates: ['no slot']\nanomaly: {A: [x]}\n", "exactly once"),
        ("anomaly: {A: [x], B: []}\n", "class 'B'"),
        ("anomaly: {A: [x, 3]}\n", "non-empty text"),
        ("anomaly: {A: [x]}\nnormal: {A: [y]}\n", "used twice: A"),
        ("anomaly: {A: [x], B: [x]}\n", "in both 'A' and 'B'"),
    ],
)
def test_yaml_errors_are_one_line_and_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(InputError, match=message) as err:
        load_prompt_yaml(f)
    assert str(err.value).startswith(str(f)) and "\n" not in str(err.value)


def test_missing_yaml_file() -> None:
    with pytest.raises(InputError, match="no such prompt set file"):
        load_prompt_set("/nonexistent/set.yaml")


def test_class_similarities_equal_ensembled_embeddings() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    e = rng.normal(size=(7, 16))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    groups = [[0, 1, 2], [3], [4, 5, 6]]
    w = np.zeros((3, 7))
    for c, g in enumerate(groups):
        w[c, g] = 1 / len(g)
    got = class_similarities(x @ e.T, e, w)
    for c, g in enumerate(groups):
        emb = e[g].mean(axis=0)
        emb /= np.linalg.norm(emb)  # CLIP zero-shot: average the normalised texts, re-normalise
        assert np.allclose(got[:, c], x @ emb, atol=1e-6)


def test_detect_with_a_set_reports_classes(built_index: Path, encoder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from vadindex.detect import detect

    index = tmp_path / "ix"
    shutil.copytree(built_index, index)
    res = detect(index, "ucf-crime", encoder=encoder)
    assert set(res.segments["best_class"]) <= set(UCF_CRIME_CLASSES)
    assert set(res.videos["best_class"]) <= set(UCF_CRIME_CLASSES)
    assert res.class_sims is not None and res.class_sims.shape == (len(res.segments), len(res.class_names))
    d = res.to_dict()
    assert d["prompts"]["set"] == "ucf-crime" and list(d["prompts"]["anomaly"]) == list(UCF_CRIME_CLASSES)
    # The ensembled class similarity equals the segment vectors against the averaged text embeddings.
    from vadindex.index.reader import open_index

    spec = load_prompt_set("ucf-crime")
    t = encoder.encode_texts(spec.texts).astype(np.float64)
    emb = spec.text_weights() @ t
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    assert np.allclose(res.class_sims, open_index(index).vectors() @ emb.T, atol=1e-4)


def test_class_with_no_text_has_zero_similarity() -> None:
    x = np.eye(3, dtype=np.float32)
    e = np.eye(3, dtype=np.float32)
    w = np.array([[1.0, 0, 0], [0, 0, 0]])
    got = class_similarities(x @ e.T, e, w)
    assert got.shape == (3, 2) and (got[:, 1] == 0).all() and np.allclose(got[:, 0], [1, 0, 0])
