"""Speed options stay faithful: int8 image encoding agrees with fp32, precisions are checked, indexes stay queryable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import import_or_skip_unless_ci

from vadindex.errors import InputError
from vadindex.index.reader import open_index
from vadindex.ingest import build_index
from vadindex.ingest.decode import SampledVideo
from vadindex.models.openclip import load_encoder
from vadindex.models.precision import resolve_precision
from vadindex.search.encoders import check_encoder
from vadindex.search.vectors import search_vector


@pytest.fixture(scope="module")
def int8_encoder():  # type: ignore[no-untyped-def]
    return load_encoder("vadindex-test", "random", "cpu", precision="int8")


def test_int8_image_embeddings_agree_with_fp32(encoder, int8_encoder, small_clips: Path) -> None:  # type: ignore[no-untyped-def]
    frames = np.concatenate(
        list(SampledVideo(small_clips / "fight" / "fi010.mp4", 4.0, encoder.image_size, 64).batches())
    )
    fp32, int8 = encoder.encode_images(frames), int8_encoder.encode_images(frames)
    assert int8.dtype == np.float32 and np.allclose(np.linalg.norm(int8, axis=1), 1, atol=1e-5)
    cosine = (fp32 * int8).sum(axis=1)
    assert cosine.min() > 0.995
    # The text tower is not quantised: prompts and queries are identical.
    texts = ["a person running", "a car"]
    assert np.array_equal(encoder.encode_texts(texts), int8_encoder.encode_texts(texts))
    assert int8_encoder.identity.same_as(encoder.identity)


def test_int8_leaves_a_resnet_towers_attention_pooling_alone() -> None:
    # ModifiedResNet's AttentionPool2d reads q/k/v_proj.weight directly; quantising them made every
    # image fail with "expected Tensor ... but got method" (vadindex-tiny is such a tower).
    import torch

    fp32 = load_encoder("vadindex-tiny", "builtin", "cpu")
    int8 = load_encoder("vadindex-tiny", "builtin", "cpu", precision="int8")
    assert isinstance(int8.model.visual.attnpool.q_proj, torch.nn.Linear)
    frames = np.random.default_rng(0).integers(0, 255, (4, fp32.image_size, fp32.image_size, 3), np.uint8)
    assert np.allclose(int8.encode_images(frames), fp32.encode_images(frames), atol=1e-5)


def test_precision_choices() -> None:
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("auto", "cuda") == "fp16"
    assert resolve_precision("int8", "cpu") == "int8"
    with pytest.raises(InputError, match="CUDA"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(InputError, match="CPU only"):
        resolve_precision("int8", "cuda")
    with pytest.raises(InputError, match="precision"):
        resolve_precision("bf17", "cpu")


def test_int8_index_answers_fp32_queries(encoder, int8_encoder, small_clips: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fp32_ix, int8_ix = tmp_path / "fp32", tmp_path / "int8"
    sources = [small_clips / "fight", small_clips / "nofight"]
    build_index(sources, fp32_ix, encoder=encoder, progress=False)
    build_index(sources, int8_ix, encoder=int8_encoder, progress=False)
    a, b = open_index(fp32_ix), open_index(int8_ix)
    check_encoder(b, encoder)  # the same model identity: queries with the default encoder are accepted
    assert a.manifest.n_segments == b.manifest.n_segments
    assert ((a.vectors() * b.vectors()).sum(axis=1)).min() > 0.995
    q = encoder.encode_texts(["people fighting"])[0]
    ra, rb = search_vector(a, q, k=5), search_vector(b, q, k=5)
    assert np.allclose(ra["score"], rb["score"], atol=0.02)


def test_onnxruntime_backend_gives_the_same_embeddings(encoder, small_clips: Path) -> None:  # type: ignore[no-untyped-def]
    import_or_skip_unless_ci("onnxruntime")  # the [onnx] extra: .ci/run installs it
    import_or_skip_unless_ci("onnx")
    onnx_encoder = load_encoder("vadindex-test", "random", "cpu", "fp32", "onnxruntime")
    frames = np.concatenate(
        list(SampledVideo(small_clips / "fight" / "fi001.mp4", 4.0, encoder.image_size, 64).batches())
    )
    assert ((encoder.encode_images(frames) * onnx_encoder.encode_images(frames)).sum(axis=1)).min() > 0.99999
    assert onnx_encoder.identity.same_as(encoder.identity)


def test_backend_choices() -> None:
    from vadindex.models.precision import check_backend

    assert check_backend("onnxruntime", "cpu", "fp32") == "onnxruntime"
    with pytest.raises(InputError, match="backend"):
        check_backend("onnxruntime", "cpu", "int8")
    with pytest.raises(InputError, match="backend"):
        check_backend("tensorrt", "cpu", "fp32")


def _frames(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (n, size, size, 3), np.uint8)


def test_auto_moves_to_int8_after_checking_it_on_the_first_frames(encoder) -> None:  # type: ignore[no-untyped-def]
    import torch

    from vadindex.config import INT8_PROBE_FRAMES
    from vadindex.models.precision import int8_is_fast

    if not int8_is_fast():
        pytest.skip("int8 is not fast on this CPU; auto stays in fp32")
    auto = load_encoder("vadindex-test", "random", "cpu", "auto")
    assert auto.precision == "fp32"
    # A quarter of the check's frames at most from each batch: three big batches do not finish it.
    for seed in range(3):
        batch = _frames(64, encoder.image_size, seed=seed)
        # While its batches agree it answers with their int8 embeddings (checked against fp32 on
        # eight frames of each), as it will once the check is over.
        out, fp32 = auto.encode_images(batch), encoder.encode_images(batch)
        assert not np.array_equal(out, fp32) and (out * fp32).sum(axis=1).min() > 0.995
        assert auto.precision == "int8" and auto.int8_check is None
    more = _frames(5, encoder.image_size, seed=3)  # 5 more: 29 of 32
    assert (auto.encode_images(more) * encoder.encode_images(more)).sum(axis=1).min() > 0.995
    assert auto.int8_check is None
    last = _frames(64, encoder.image_size, seed=4)  # takes the 3 it still needs
    assert (auto.encode_images(last) * encoder.encode_images(last)).sum(axis=1).min() > 0.995
    check = auto.int8_check
    assert check is not None and check["accepted"] and check["frames"] == INT8_PROBE_FRAMES
    assert check["min_cosine"] >= 0.998 and check["mean_cosine"] >= check["min_cosine"]
    assert auto.precision == "int8"
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in auto.model.visual.modules())
    later = _frames(8, encoder.image_size, seed=2)
    out = auto.encode_images(later)
    assert not np.array_equal(out, encoder.encode_images(later))  # now int8 ...
    assert (out * encoder.encode_images(later)).sum(axis=1).min() > 0.995  # ... and faithful
    texts = ["a person running"]
    assert np.array_equal(auto.encode_texts(texts), encoder.encode_texts(texts))


def test_auto_stays_in_fp32_when_int8_disagrees(encoder, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import torch

    import vadindex.config as C
    import vadindex.models.openclip as E
    import vadindex.models.precision as P

    monkeypatch.setattr(E, "int8_is_fast", lambda: True)
    monkeypatch.setattr(P, "INT8_MIN_COSINE", 1.5)  # no cosine reaches it
    auto = load_encoder("vadindex-test", "random", "cpu", "auto")
    for seed in range(4):
        frames = _frames(C.INT8_PROBE_FRAMES, encoder.image_size, seed=seed)
        assert np.array_equal(auto.encode_images(frames), encoder.encode_images(frames))
    assert auto.int8_check is not None and not auto.int8_check["accepted"]
    assert auto.precision == "fp32"
    assert any(type(m) is torch.nn.Linear for m in auto.model.visual.modules())
    later = _frames(4, encoder.image_size, seed=3)
    assert np.array_equal(auto.encode_images(later), encoder.encode_images(later))


def test_auto_is_plain_fp32_where_int8_is_not_fast_or_not_possible(encoder, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import vadindex.models.openclip as E

    monkeypatch.setattr(E, "int8_is_fast", lambda: False)
    auto = load_encoder("vadindex-test", "random", "cpu", "auto")
    frames = _frames(40, encoder.image_size)
    assert np.array_equal(auto.encode_images(frames), encoder.encode_images(frames))
    assert auto.precision == "fp32" and auto.int8_check is None
    monkeypatch.undo()
    # A ResNet tower has nothing to quantise (its attention pooling stays float): no check, fp32.
    tiny = load_encoder("vadindex-tiny", "builtin", "cpu", "auto")
    tiny.encode_images(_frames(40, tiny.image_size))
    assert tiny.precision == "fp32" and tiny.int8_check is None
    # An explicit fp32 never checks.
    fp32 = load_encoder("vadindex-test", "random", "cpu", "fp32")
    fp32.encode_images(frames)
    assert fp32.precision == "fp32" and fp32.int8_check is None


def test_auto_build_records_what_it_chose(encoder, small_clips: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import json

    import vadindex.models.openclip as E

    monkeypatch.setattr(E, "int8_is_fast", lambda: True)
    auto = load_encoder("vadindex-test", "random", "cpu", "auto")
    summary = build_index([small_clips], tmp_path / "ix", encoder=auto, progress=False, commit_every=1)
    assert summary.precision == "int8" and summary.int8_check is not None
    assert summary.to_dict()["int8_check"]["accepted"] is True
    snap = open_index(tmp_path / "ix")
    parts = json.loads((tmp_path / "ix" / "manifest.json").read_text())["parts"]
    # The first video started in fp32 and its batches were answered in int8 as the check accepted
    # them (both recorded), the rest in int8.
    precisions = [p["precision"] for p in parts]
    assert precisions[0] == "fp32,int8" and precisions[-1] == "int8"
    assert set(precisions) <= {"fp32,int8", "int8"}
    reference = tmp_path / "ref"
    build_index([small_clips], reference, encoder=encoder, progress=False)
    ref = open_index(reference)
    assert ((snap.vectors() * ref.vectors()).sum(axis=1)).min() > 0.995
    assert [p.precision for p in ref.manifest.parts] == ["fp32"]


def test_image_queries_do_not_run_the_int8_check(encoder, small_clips: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from vadindex.search.encoders import load_index_encoder

    build_index([small_clips / "fight"], tmp_path / "ix", encoder=encoder, progress=False)
    loaded = load_index_encoder(open_index(tmp_path / "ix"), "cpu")
    assert loaded.precision == "fp32" and not loaded.checking_int8  # type: ignore[attr-defined]


def test_a_failing_int8_check_leaves_the_build_in_fp32(
    encoder, small_clips: Path, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import vadindex.models.openclip as E
    import vadindex.models.precision as P

    def broken(visual, inplace=False):  # type: ignore[no-untyped-def]
        raise RuntimeError("no quantized engine")

    monkeypatch.setattr(E, "int8_is_fast", lambda: True)
    monkeypatch.setattr(P, "quantized_tower", broken)
    auto = load_encoder("vadindex-test", "random", "cpu", "auto")
    summary = build_index([small_clips / "fight"], tmp_path / "ix", encoder=auto, progress=False)
    assert summary.failures == () and summary.videos_added == 2
    assert summary.precision == "fp32" and summary.int8_check is not None
    assert not summary.int8_check["accepted"] and "no quantized engine" in summary.int8_check["error"]
    reference = tmp_path / "ref"
    build_index([small_clips / "fight"], reference, encoder=encoder, progress=False)
    assert np.array_equal(open_index(tmp_path / "ix").vectors(), open_index(reference).vectors())


def test_the_check_handles_towers_that_return_tuples(encoder, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # CoCa's image tower returns (pooled, tokens); the check must compare the pooled embedding.
    import vadindex.models.openclip as E
    import vadindex.models.precision as P

    monkeypatch.setattr(E, "int8_is_fast", lambda: True)
    auto = load_encoder("vadindex-test", "random", "cpu", "auto")
    real = P.quantized_tower

    def tuple_tower(visual, inplace=False):  # type: ignore[no-untyped-def]
        tower = real(visual, inplace)

        class Pair(type(tower)):  # type: ignore[misc]
            def forward(self, x):  # type: ignore[no-untyped-def]
                return super().forward(x), None

        tower.__class__ = Pair
        return tower

    monkeypatch.setattr(P, "quantized_tower", tuple_tower)
    for seed in range(4):
        auto.encode_images(_frames(40, encoder.image_size, seed=seed))
    assert auto.int8_check is not None and auto.int8_check["accepted"], auto.int8_check
