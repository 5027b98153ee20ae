"""The torch-free text path: the tokenizer port, ONNX text towers, the encoder choice and what a query imports."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vadindex.errors import ModelError
from vadindex.models.onnx_text import OnnxTextEncoder, open_text_encoder
from vadindex.models.tokenizer import EOT, SOT, ClipTokenizer

PROMPT_SETS = Path(__file__).resolve().parents[1] / "vadindex" / "detect" / "prompt_sets"

#: Texts that stress the tokenizer: empty and blank, case, punctuation, contractions, HTML entities,
#: mojibake, combining marks (U+0345 is dropped by Python's regex under IGNORECASE), scripts,
#: emoji, literal special tokens, and texts far over the context length.
EDGE_TEXTS = [
    "", " ", "\t\n", "a", "A Person CLIMBING a fence", "people fighting; a building on fire",
    "caf\u00e9", "cafe\u0301", "\u00c3\u00a9t\u00c3\u00a9 mojibake", "&amp;lt;b&amp;gt; html &quot;x&quot; &#39;y&#39;",
    "don't I'll we've they're she'd he's", "\u00a0nbsp\u2003em\u3000ideo", "\x1c\x1d\x1e\x1f separators",
    "emoji \U0001f525\U0001f468\u200d\U0001f469", "\u4e2d\u6587 \u65e5\u672c\u8a9e \ud55c\uad6d\uc5b4",
    "<start_of_text> literal <end_of_text> specials", "<END_OF_TEXT>", "numbers 12345 3.14 1,000,000",
    "\uff26\uff35\uff2c\uff2c\uff37\uff29\uff24\uff34\uff28", "\u0130stanbul \u1e9e", "x \u0345 \u0300 y",
    "word " * 100, "x" * 500, "supercalifragilisticexpialidocious " * 20, "a, " * 40, "\ufeffbom",
    "line\r\nbreak", "\u2028\u2029", "CCTV-cam #3 @ 23:59:59!!!", "a--b__c..d",
]  # fmt: skip


def _prompt_set_texts() -> list[str]:
    import yaml

    out: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, dict):
            for k, v in node.items():
                walk(k)
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for file in sorted(PROMPT_SETS.glob("*.yaml")):
        walk(yaml.safe_load(file.read_text(encoding="utf-8")))
    return out


def varied_texts(n_unicode: int = 1500, n_words: int = 1200, seed: int = 0) -> list[str]:
    """Edge cases, every prompt-set text, random Unicode strings and random word sequences."""
    rng = random.Random(seed)
    ranges = [(0x20, 0x7F), (0xA0, 0x250), (0x300, 0x370), (0x370, 0x400), (0x400, 0x450), (0x2000, 0x2070),
              (0x3000, 0x3040), (0x4E00, 0x4E80), (0xAC00, 0xAC40)]  # fmt: skip
    alphabet = [chr(c) for a, b in ranges for c in range(a, b)]
    alphabet += [chr(c) for c in (0x1F600, 0x1F525, 0x200D, 0xFE0F, 0x9, 0xA, 0xD, 0x1C, 0x85, 0xAD, 0x345)]
    texts = [*EDGE_TEXTS, *_prompt_set_texts()]
    for _ in range(n_unicode):
        texts.append("".join(rng.choice(alphabet) for _ in range(rng.choice([1, 3, 10, 40, 200]))))
    words = [
        "a",
        "the",
        "person",
        "car",
        "fire",
        "smoke",
        "running",
        "fight",
        "street",
        "night",
        "camera",
        "crowd",
        "falling",
        "bicycle",
    ]
    punct = ["", "", "", ",", ".", "!", "?", ";", "'s", "n't", "-", "&amp;", "(", ")"]
    for _ in range(n_words):
        n = rng.choice([1, 2, 5, 12, 40, 90])
        texts.append(
            " ".join(rng.choice(words).capitalize() * rng.randint(1, 2) + rng.choice(punct) for _ in range(n))
        )
    return texts


@pytest.mark.parametrize("context_length", [77, 32])
def test_tokenizer_ids_equal_open_clips(context_length: int) -> None:
    import open_clip

    texts = varied_texts()
    assert len(texts) > 2500
    reference = open_clip.get_tokenizer("ViT-B-32")(texts, context_length=context_length).numpy()
    ours = ClipTokenizer(context_length)(texts)
    mismatched = [texts[i] for i in np.flatnonzero((reference != ours).any(axis=1))]
    assert not mismatched, mismatched[:5]
    # The cases the port must get right: truncation keeps EOT last; an empty text; literal specials.
    long = ours[texts.index("word " * 100)]
    assert long[0] == SOT and long[-1] == EOT and (long != 0).all()
    assert list(ours[texts.index("")][:3]) == [SOT, EOT, 0]


def _texts_for_towers() -> list[str]:
    return ["a", "", "a person climbing a fence", "smoke and flames rising from a parked car at night",
            "word " * 100, "x" * 300, "<end_of_text> early, then more", "caf\u00e9 \u4e2d\u6587 \U0001f525",
            "People FIGHTING!!!"]  # fmt: skip


@pytest.mark.parametrize(
    ("model", "pretrained"),
    [("vadindex-test", "random"), ("vadindex-tiny", "builtin"), ("ViT-B-32", "random")],
)
def test_onnx_text_embeddings_match_torch(
    model: str, pretrained: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from vadindex.models.openclip import load_encoder

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    enc = load_encoder(model, pretrained, "cpu", "fp32")
    folder = enc.export_text_onnx(required=True)
    assert folder is not None and (folder / "text.onnx.data").is_file()
    onnx = open_text_encoder(enc.identity)
    assert isinstance(onnx, OnnxTextEncoder)
    assert onnx.identity == enc.identity and onnx.dim == enc.dim
    assert onnx.logit_scale == pytest.approx(enc.logit_scale)
    texts = _texts_for_towers()
    with torch.inference_mode():
        tokens = enc.tokenizer(texts)  # open_clip's tokenizer, the full 77 positions
        reference = torch.nn.functional.normalize(enc.model.encode_text(tokens), dim=-1).numpy()
    batch = onnx.encode_texts(texts)  # one batch, cut after the longest text's end of text
    single = np.concatenate([onnx.encode_texts([t]) for t in texts])  # each cut to its own length
    assert batch.shape == (len(texts), enc.dim) and batch.dtype == np.float32
    assert (batch * reference).sum(axis=1).min() >= 0.99999
    assert (single * reference).sum(axis=1).min() >= 0.99999
    # The graph runs at any length and batch size, not the traced example's (2 x 6).
    for n, length in ((1, 2), (3, 7), (5, 77)):
        rows = np.resize(np.arange(len(texts)), n)
        features = onnx.encode_tokens(tokens.numpy()[rows][:, :length])
        assert features.shape == (n, enc.dim)
    assert onnx.encode_texts([]).shape == (0, enc.dim)
    # A second export is a no-op: the folder is reused, never rewritten.
    before = (folder / "meta.json").stat().st_mtime_ns
    assert enc.export_text_onnx() == folder and (folder / "meta.json").stat().st_mtime_ns == before


def test_towers_that_cannot_be_exported_stay_on_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import vadindex.models.onnx as onnx_export
    from vadindex.models.openclip import load_encoder

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    enc = load_encoder("vadindex-test", "random", "cpu", "fp32")
    monkeypatch.setattr(enc.model, "text_pool_type", "last")  # pools elsewhere than the end of text
    with caplog.at_level(logging.INFO, logger="vadindex"):
        assert enc.export_text_onnx() is None
        assert enc.export_text_onnx() is None
    said = [r for r in caplog.records if "text is encoded with torch" in r.getMessage()]
    assert len(said) == 1 and "not causal" in said[0].getMessage()  # once per model and process
    with pytest.raises(ModelError, match="cannot run in ONNX"):
        enc.export_text_onnx(required=True)
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    # An export that fails is remembered and not tried again with the same torch.
    calls = []

    def failing(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        raise RuntimeError("exporter broke")

    monkeypatch.setattr(onnx_export, "export_text_tower", failing)
    assert enc.export_text_onnx() is None and enc.export_text_onnx() is None
    assert calls == [1]
    assert open_text_encoder(enc.identity) is None
    with pytest.raises(ModelError, match="exporter broke"):
        enc.export_text_onnx(required=True)


def test_text_encoder_choice(
    built_index: Path, encoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from vadindex.errors import InputError
    from vadindex.index.reader import open_index
    from vadindex.models.openclip import OpenClipEncoder
    from vadindex.search.encoders import load_text_encoder

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    snap = open_index(built_index)
    with pytest.raises(InputError, match="--text-encoder"):
        load_text_encoder(snap, "tensorrt")
    # Nothing exported yet: auto encodes with torch and exports for next time.
    first = load_text_encoder(snap, "auto", "cpu")
    assert isinstance(first, OpenClipEncoder)
    then = load_text_encoder(snap, "auto", "cpu")
    assert isinstance(then, OnnxTextEncoder)
    assert isinstance(load_text_encoder(snap, "torch", "cpu"), OpenClipEncoder)
    assert isinstance(load_text_encoder(snap, "onnx"), OnnxTextEncoder)
    texts = ["a person running", "a car"]
    assert ((then.encode_texts(texts) * encoder.encode_texts(texts)).sum(axis=1) >= 0.99999).all()
    # onnx on a fresh machine exports first.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "fresh"))
    assert isinstance(load_text_encoder(snap, "onnx", "cpu"), OnnxTextEncoder)


@pytest.fixture(scope="module")
def demo_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's index (vadindex-tiny on generated scenes), smaller than ``vadindex demo``'s."""
    from vadindex.demo import run_demo

    return run_demo(tmp_path_factory.mktemp("demo"), seed=7, n_normal=2, n_anomaly=4).out / "index"


def _copy_without_cache(index: Path, to: Path) -> Path:
    shutil.copytree(index, to, ignore=shutil.ignore_patterns("cache"))
    return to


def _cli(*args: str) -> str:
    from click.testing import CliRunner

    from vadindex._cli.main import cli

    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_query_and_detect_agree_between_onnx_and_torch(demo_index: Path, tmp_path: Path) -> None:
    ix = {name: _copy_without_cache(demo_index, tmp_path / name) for name in ("onnx", "torch")}
    queries = ["smoke and flames", "a person lying on the ground", "two cars crashing", "a quiet street"]
    for text in queries:
        rows = {
            name: json.loads(_cli("query", text, "--index", ix[name], "-k", "8", "--format", "json",
                                  "--text-encoder", name))
            for name in ix
        }  # fmt: skip
        a, b = rows["onnx"], rows["torch"]
        assert [(r["video"], r["segment"], r["rank"]) for r in a] == [
            (r["video"], r["segment"], r["rank"]) for r in b
        ]
        assert np.allclose([r["score"] for r in a], [r["score"] for r in b], atol=2e-6)
    prompts = "fire and smoke; people fighting; a car crash; a person falling down"
    out = {
        name: json.loads(_cli("detect", "--index", ix[name], "-p", prompts, "--format", "json",
                              "--text-encoder", name))
        for name in ix
    }  # fmt: skip
    a, b = out["onnx"], out["torch"]
    assert [(v["video"], v["anomalous"]) for v in a["videos"]] == [
        (v["video"], v["anomalous"]) for v in b["videos"]
    ]
    assert [s["anomalous"] for s in a["segments"]] == [s["anomalous"] for s in b["segments"]]
    assert np.allclose([s["score"] for s in a["segments"]], [s["score"] for s in b["segments"]], atol=1e-5)
    assert a["metrics"] == b["metrics"]


_PROBE = (
    "import sys, json\n"
    "from vadindex._cli.main import cli\n"
    "try:\n    cli.main(sys.argv[1:], standalone_mode=False)\n"
    "finally:\n"
    "    loaded = [m for m in ('torch', 'open_clip', 'pandas', 'onnxruntime') if m in sys.modules]\n"
    "    print('LOADED=' + json.dumps(loaded), file=sys.stderr)\n"
)


def _loaded(*args: str) -> tuple[list[str], str]:
    """Run the CLI in a fresh process: the heavy modules it imported, and its output."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stderr.rsplit("LOADED=", 1)[1].splitlines()[0]), proc.stdout


def test_a_text_query_imports_no_torch_and_a_repeated_one_encodes_nothing(
    demo_index: Path, tmp_path: Path
) -> None:
    from vadindex.models.onnx_text import products_path

    index = _copy_without_cache(demo_index, tmp_path / "ix")
    # The demo's build exported vadindex-tiny's text tower into this session's user cache.
    query = ["query", "a burning car", "--index", str(index), "-k", "3", "--format", "json"]
    assert _loaded(*query)[0] == ["onnxruntime"]  # no torch, no open_clip, no pandas
    assert _loaded(*query)[0] == []  # answered from the index's cache: no encoder at all
    cached = list((index / "cache").glob("text-*.json"))
    assert len(cached) == 1 and json.loads(cached[0].read_text())["texts"] == ["a burning car"]
    # New prompts without torch: encoded by the ONNX tower, multiplied by ONNX Runtime.
    assert products_path().is_file()
    prompts = "a burning car; people fighting; a person lying on the ground"
    loaded, out = _loaded("detect", "--index", str(index), "-p", prompts, "--format", "json")
    assert "torch" not in loaded
    reference = _copy_without_cache(demo_index, tmp_path / "torch")
    expected = json.loads(_cli("detect", "--index", reference, "-p", prompts, "--format", "json",
                               "--text-encoder", "torch"))  # fmt: skip
    got = json.loads(out)
    assert [s["anomalous"] for s in got["segments"]] == [s["anomalous"] for s in expected["segments"]]
    assert np.allclose(
        [s["score"] for s in got["segments"]], [s["score"] for s in expected["segments"]], atol=1e-5
    )


def test_a_second_build_skips_the_int8_check(
    small_clips: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vadindex.models.openclip as E
    import vadindex.models.precision as P
    from vadindex.ingest import build_index

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(E, "int8_is_fast", lambda: True)
    options = {"model": "vadindex-test", "pretrained": "random", "device": "cpu", "progress": False}
    first = build_index([small_clips / "fight", small_clips / "nofight"], tmp_path / "a", **options)
    assert (
        first.int8_check is not None and first.int8_check["accepted"] and "remembered" not in first.int8_check
    )
    stored = json.loads((tmp_path / "cache" / "vadindex" / "int8.json").read_text())
    (verdict,) = stored.values()
    assert verdict["frames"] == 32 and verdict["min_cosine"] == first.int8_check["min_cosine"]
    assert verdict["model"] == "vadindex-test (random)" and verdict["cpu"] == P.cpu_name()

    checks = []
    real = P.Int8Check.encode
    monkeypatch.setattr(P.Int8Check, "encode", lambda self, *a: checks.append(1) or real(self, *a))
    again = build_index([small_clips / "fight"], tmp_path / "b", **options)
    assert checks == [] and again.precision == "int8"
    assert again.int8_check is not None and again.int8_check["remembered"] is True
    parts = json.loads((tmp_path / "b" / "manifest.json").read_text())["parts"]
    assert [p["precision"] for p in parts] == ["int8"]

    # Another CPU checks again.
    monkeypatch.setattr(P, "cpu_name", lambda: "another CPU")
    other = build_index([small_clips / "fight", small_clips / "nofight"], tmp_path / "c", **options)
    assert checks and "remembered" not in (other.int8_check or {})
    assert len(json.loads((tmp_path / "cache" / "vadindex" / "int8.json").read_text())) == 2

    # A refusal is remembered too: the next build stays in fp32 without checking.
    monkeypatch.setattr(P, "INT8_MIN_COSINE", 1.5)
    refused = build_index([small_clips / "fight", small_clips / "nofight"], tmp_path / "d", **options)
    assert (
        refused.precision == "fp32" and refused.int8_check is not None and not refused.int8_check["accepted"]
    )
    checks.clear()
    still = build_index([small_clips / "fight"], tmp_path / "e", **options)
    assert checks == [] and still.precision == "fp32" and still.int8_check["remembered"] is True
