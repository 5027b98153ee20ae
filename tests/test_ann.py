"""FAISS index types: recall of the approximate ones, exactness of flat, and round trips through build + query."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from vadindex._cli.main import cli
from vadindex.errors import InputError
from vadindex.index import faiss_index as ann
from vadindex.index.manifest import SEGMENT_COLUMNS
from vadindex.index.reader import open_index
from vadindex.index.writer import IndexWriter, PendingVideo
from vadindex.search.vectors import search_vector


def clustered_unit_vectors(n: int, dim: int, n_clusters: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around ``n_clusters`` centres (segments of one video resemble each other)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim))
    x = centres[rng.integers(0, n_clusters, n)] + 0.6 * rng.standard_normal((n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def recall_at(ids: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(ids, truth, strict=True)]))


def exact_top(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :k]


def pending(vectors: np.ndarray, name: str) -> PendingVideo:
    """One synthetic video whose segments carry ``vectors`` (one frame per segment)."""
    n = len(vectors)
    segs = pd.DataFrame(
        {
            "video_id": name,
            "video": name,
            "segment": np.arange(n, dtype=np.int32),
            "start": np.arange(n, dtype=float),
            "end": np.arange(1, n + 1, dtype=float),
            "start_frame": np.arange(n, dtype=np.int64) * 25,
            "end_frame": np.arange(1, n + 1, dtype=np.int64) * 25,
            "frame_row": np.arange(n, dtype=np.int64),
            "n_frames": np.ones(n, dtype=np.int32),
            "label": pd.array([pd.NA] * n, dtype="Int8"),
            "class": pd.array([pd.NA] * n, dtype="string"),
        }
    )[SEGMENT_COLUMNS]
    video = {
        "video_id": name,
        "video": name,
        "path": f"/synthetic/{name}",
        "duration": float(n),
        "n_segments": n,
    }
    return PendingVideo(video, segs, vectors, vectors.astype(np.float16))


SAMPLING = {"fps": 4.0, "segment_seconds": 1.0, "min_tail_fraction": 0.5}


def writer_for(path: Path, encoder, index_type: str | None = None) -> IndexWriter:  # type: ignore[no-untyped-def]
    """An index writer for synthetic videos under the test model's identity."""
    return IndexWriter(
        path, encoder.identity, encoder.dim, encoder.logit_scale, dict(SAMPLING), index_type=index_type
    )


def write_synthetic(
    path: Path, batches: list[np.ndarray], index_type: str | None, encoder, first: int = 0
) -> None:  # type: ignore[no-untyped-def]
    """One commit per batch, each batch one video named ``v<first + i>``."""
    for b, vectors in enumerate(batches, start=first):
        with writer_for(path, encoder, index_type) as writer:
            writer.add(pending(vectors, f"v{b:03d}"))
            writer.commit()


@pytest.mark.parametrize("kind, bound", [("ivf", 0.9), ("hnsw", 0.9)])
def test_ann_recall_on_a_seeded_set(kind: str, bound: float) -> None:
    x = clustered_unit_vectors(6000, 64, 60, seed=1)
    q = clustered_unit_vectors(50, 64, 60, seed=1)[:50] + 0.05
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    index = ann.build(64, kind, lambda: iter([x[:2500].astype(np.float16), x[2500:]]), len(x))
    assert ann.kind_of(index) == kind and index.ntotal == len(x)
    _, ids = ann.search(index, q, 10, rerank=False)
    assert recall_at(ids, exact_top(x, q, 10)) >= bound
    # Candidates re-scored exactly (what search_vector does) do at least as well.
    _, cand = ann.search(index, q, 10)
    reranked = [c[np.argsort(-(x[c] @ qi), kind="stable")][:10] for c, qi in zip(cand, q, strict=True)]
    assert recall_at(np.array(reranked), exact_top(x, q, 10)) >= recall_at(ids, exact_top(x, q, 10))


def test_flat_is_exact_float16_scan() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x16 = x.astype(np.float16)
    index = ann.build(32, "flat", lambda: iter([x16]), len(x))
    assert ann.is_exact(index) and ann.kind_of(index) == "flat"
    q = x[:20]
    scores, ids = ann.search(index, q, 10)
    truth = x16.astype(np.float32) @ q.T
    assert np.allclose(scores, -np.sort(-truth.T, axis=1)[:, :10], atol=1e-5)
    assert (ids[:, 0] == np.arange(20)).all()


def test_index_type_rules() -> None:
    assert ann.resolve_kind("auto", 10) == "flat"
    assert ann.resolve_kind("auto", ann.AUTO_ANN_MIN_SEGMENTS) == "ivf"
    assert ann.resolve_kind("hnsw", 10) == "hnsw"
    with pytest.raises(InputError, match="index-type"):
        ann.resolve_kind("pq", 10)
    assert ann.nlist_for(100) == 0  # too few vectors for IVF cells: searched exactly
    assert ann.nlist_for(1_000_000) == 4096


def test_auto_switches_to_ivf_and_keeps_row_ids(
    tmp_path: Path, encoder, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(ann, "AUTO_ANN_MIN_SEGMENTS", 1500)
    x = clustered_unit_vectors(3000, encoder.dim, 40, seed=2)
    path = tmp_path / "ix"
    write_synthetic(path, [x[:1000]], None, encoder)
    snap = open_index(path)
    assert snap.manifest.index_type == "auto" and ann.kind_of(snap.faiss_index()) == "flat"
    # Crosses the threshold (rebuilt as IVF from the parts), then adds in place.
    write_synthetic(path, [x[1000:2000], x[2000:]], None, encoder, first=1)
    snap = open_index(path)
    index = snap.faiss_index()
    assert ann.kind_of(index) == "ivf" and index.ntotal == 3000 == snap.manifest.n_segments
    assert np.array_equal(snap.vectors(), x.astype(np.float16).astype(np.float32))
    # Row ids survive the rebuild and the later in-place add: every vector finds itself first.
    for row in (5, 1500, 2999):
        res = search_vector(snap, x[row], k=3)
        assert res["video"][0] == f"v{row // 1000:03d}" and res["segment"][0] == row % 1000
        assert res["score"][0] == pytest.approx(1.0, abs=2e-3)
    q = x[::97] + 0.02
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    truth = exact_top(snap.vectors(), q, 10)
    found = []
    for qi in q:
        res = search_vector(snap, qi, k=10)
        seg = res["segment"].to_numpy() + 1000 * res["video"].str[1:].astype(int).to_numpy()
        found.append(seg)
        exact = search_vector(snap, qi, k=10, exact=True)
        assert np.allclose(exact["score"], np.sort(snap.vectors() @ qi)[::-1][:10], atol=2e-3)
    assert recall_at(np.array(found), truth) >= 0.9


def test_index_type_round_trip_through_cli(small_clips: Path, tmp_path: Path, encoder) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    ix = tmp_path / "ix"
    common = ["--model", "vadindex-test", "--pretrained", "random", "--no-progress"]
    res = runner.invoke(
        cli, ["build", str(small_clips / "fight"), "--index", str(ix), "--index-type", "hnsw", *common]
    )
    assert res.exit_code == 0, res.output
    snap = open_index(ix)
    assert snap.manifest.index_type == "hnsw" and ann.kind_of(snap.faiss_index()) == "hnsw"
    # A later build without --index-type keeps the index's type; new videos go into the same graph.
    res = runner.invoke(cli, ["build", str(small_clips / "nofight"), "--index", str(ix), *common])
    assert res.exit_code == 0, res.output
    snap = open_index(ix)
    assert snap.manifest.index_type == "hnsw" and snap.faiss_index().ntotal == snap.manifest.n_segments
    res = runner.invoke(cli, ["info", str(ix)])
    assert "hnsw" in res.output
    q = encoder.encode_texts(["a person running"])[0]
    brute = np.sort(snap.vectors() @ q)[::-1][:5]
    for extra in ([], ["--exact"]):
        res = runner.invoke(
            cli, ["query", "a person running", "--index", str(ix), "-k", "5", "--format", "json", *extra]
        )
        assert res.exit_code == 0, res.output
        rows = json.loads(res.stdout)
        assert np.allclose([r["score"] for r in rows], brute, atol=2e-3)
    # Switching type rebuilds from the float16 parts at the next commit.
    res = runner.invoke(cli, ["build", str(small_clips), "--index", str(ix), "--index-type", "flat", *common])
    assert res.exit_code == 0, res.output  # every clip readable: status 0, not 3
    snap = open_index(ix)
    assert snap.manifest.index_type == "flat" and ann.is_exact(snap.faiss_index())
    assert snap.faiss_index().ntotal == snap.manifest.n_segments
    res = runner.invoke(cli, ["build", str(small_clips), "--index", str(ix), "--index-type", "pq", *common])
    assert res.exit_code == 2


def test_faiss_file_is_rewritten_geometrically_and_the_rows_it_lacks_are_searched(
    encoder, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import vadindex.index.writer as store
    from vadindex.index.check import check_index

    monkeypatch.setattr(store, "FAISS_ALWAYS_WRITE_ROWS", 0)  # as if the index were already large
    x = clustered_unit_vectors(2000, encoder.dim, 20, seed=3)
    path = tmp_path / "ix"
    written, covered = [], []
    writer = writer_for(path, encoder, "flat")
    with writer:
        for v in range(20):  # 20 commits of 100 segments
            writer.add(pending(x[v * 100 : (v + 1) * 100], f"v{v:03d}"))
            writer.commit()
            m = writer.manifest
            written.append(m.faiss_file)
            covered.append(m.faiss_covered)
            # Never more than a quarter of the covered rows is missing from the FAISS file.
            assert m.n_segments - m.faiss_covered <= store.FAISS_TAIL_FRACTION * m.faiss_covered
            assert m.format_version == (
                store.FORMAT_COMPLETE if m.faiss_rows is None else store.FORMAT_VERSION
            )
            snap = open_index(path)
            assert snap.faiss_index().ntotal == m.faiss_covered
            # Search sees every committed row: the newest ones by an exact scan of the parts.
            q = x[m.n_segments - 1 : m.n_segments]  # a vector among the newest rows
            hits = search_vector(snap, q[0], k=5)
            truth = exact_top(x[: m.n_segments], q, 5)[0]
            assert list(hits["video"]) == [f"v{i // 100:03d}" for i in truth]
            assert np.allclose(hits["score"], (x[truth] @ q[0]), atol=2e-3)
            report = check_index(path)
            assert report.ok, report.problems
        # Far fewer FAISS writes than commits: at 1, 2, 3, 4, 6, 8, 11, 14 and 18 hundred rows.
        assert len(set(written)) <= 9 and covered[-1] < 2000
        # A build's end writes it whole: format 1, as older vadindex versions read.
        writer.commit(final=True)
        m = writer.manifest
        assert m.faiss_rows is None and m.faiss_covered == 2000 and m.format_version == store.FORMAT_COMPLETE
        assert writer.manifest.generation == 21  # a generation of its own, with no new part
        assert len(m.parts) == 20
    snap = open_index(path)
    assert snap.faiss_index().ntotal == 2000 and check_index(path).ok
    # Only the current and the previous generation's FAISS files are kept.
    assert {f.name for f in path.glob("index.g*.faiss")} <= {m.faiss_file, written[-1]}


def test_a_writer_reopening_a_partial_faiss_file_adds_the_missing_rows(
    encoder, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import vadindex.index.writer as store

    monkeypatch.setattr(store, "FAISS_ALWAYS_WRITE_ROWS", 0)
    x = clustered_unit_vectors(900, encoder.dim, 9, seed=4)
    path = tmp_path / "ix"
    with writer_for(path, encoder) as writer:
        writer.add(pending(x[:800], "v0"))
        writer.commit()
        writer.add(pending(x[800:], "v1"))  # 100 more rows, fewer than a quarter of 800: not in FAISS
        writer.commit()
        assert writer.manifest.faiss_covered == 800 and writer.manifest.n_segments == 900
    # Like a build that was killed: the next writer rebuilds the in-memory index from file + parts.
    with writer_for(path, encoder) as writer:
        assert writer._faiss.ntotal == 900
        writer.commit(final=True)  # nothing queued: writes the FAISS file alone
        assert writer.manifest.faiss_rows is None
    snap = open_index(path)
    assert snap.faiss_index().ntotal == 900
    q = x[850:851]
    assert search_vector(snap, q[0], k=1)["video"].iloc[0] == "v1"


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_search_over_a_lagging_faiss_file_merges_exactly(
    encoder, tmp_path: Path, monkeypatch, kind: str
) -> None:  # type: ignore[no-untyped-def]
    import vadindex.index.writer as store

    monkeypatch.setattr(store, "FAISS_ALWAYS_WRITE_ROWS", 0)
    x = clustered_unit_vectors(1100, encoder.dim, 11, seed=5)
    path = tmp_path / "ix"
    with writer_for(path, encoder, kind) as w:
        w.add(pending(x[:1000], "v0"))
        w.commit()
        w.add(pending(x[1000:1030], "v1"))
        w.commit()
        w.add(pending(x[1030:], "v2"))
        w.commit()
    snap = open_index(path)
    covered = snap.manifest.faiss_covered
    assert covered == 1000 and snap.manifest.n_segments == 1100
    row_of = {("v0", i): i for i in range(1000)} | {("v1", i): 1000 + i for i in range(30)}
    row_of |= {("v2", i): 1030 + i for i in range(70)}
    for row in (covered - 1, covered, covered + 29, covered + 30, 1099):
        for k in (1, 5, 200):  # k larger than the v1 part and than the tail
            hits = search_vector(snap, x[row], k=k)
            rows = [row_of[(v, int(s))] for v, s in zip(hits["video"], hits["segment"], strict=True)]
            assert len(rows) == k and len(set(rows)) == k
            assert rows[0] == row and np.isclose(hits["score"].iloc[0], 1.0, atol=2e-3)
            if kind == "flat":  # exact: the same rows as a scan of everything
                truth = np.argsort(-(x @ x[row]), kind="stable")[:k]
                assert set(rows) == set(truth.tolist())


def test_a_final_commit_with_a_new_index_type_rebuilds_the_faiss_file(
    encoder, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import vadindex.index.writer as store

    monkeypatch.setattr(store, "FAISS_ALWAYS_WRITE_ROWS", 0)
    x = clustered_unit_vectors(1050, encoder.dim, 9, seed=6)
    path = tmp_path / "ix"
    with writer_for(path, encoder, "flat") as w:
        w.add(pending(x[:1000], "v0"))
        w.commit()
        w.add(pending(x[1000:], "v1"))
        w.commit()
        assert w.manifest.faiss_covered == 1000
    with writer_for(path, encoder, "hnsw") as w:
        w.commit(final=True)  # nothing queued
    snap = open_index(path)
    assert snap.manifest.index_type == "hnsw" and ann.kind_of(snap.faiss_index()) == "hnsw"
    assert snap.faiss_index().ntotal == 1050 and snap.manifest.faiss_rows is None


def test_ivf_training_through_a_clustering_index_finds_the_same_cells(monkeypatch) -> None:
    # With faiss-gpu, k-means runs through a GPU IndexFlatIP set as the IVF's clustering index. On
    # this CPU the same mechanics run with a CPU IndexFlatIP in its place: the cells must be those
    # of the ordinary training, and the index must keep no reference to the clustering index.
    import faiss

    x = clustered_unit_vectors(4000, 32, 40, seed=7)
    plain = ann.build(32, "ivf", lambda: iter([x]), len(x))
    monkeypatch.setattr(ann, "gpus", lambda: 1)
    moved: list = []
    monkeypatch.setattr(
        faiss, "index_cpu_to_all_gpus", lambda index: moved.append(index) or index, raising=False
    )
    routed = ann.build(32, "ivf", lambda: iter([x]), len(x))
    assert len(moved) == 1 and moved[0].metric_type == faiss.METRIC_INNER_PRODUCT
    a, b = ann._ivf(plain), ann._ivf(routed)
    assert a.nlist == b.nlist >= 16
    assert np.allclose(
        a.quantizer.reconstruct_n(0, a.nlist), b.quantizer.reconstruct_n(0, b.nlist), atol=1e-5
    )
    assert b.clustering_index is None


def test_vadindex_faiss_gpu_0_keeps_k_means_on_the_cpu(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``VADINDEX_FAISS_GPU=0`` (README, ``[gpu]``): a faiss-gpu build with GPUs, simulated here on
    faiss-cpu, trains IVF on the CPU when it is set, and through the GPUs when it is not."""
    import faiss

    monkeypatch.setattr(faiss, "StandardGpuResources", object, raising=False)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 2, raising=False)
    moved: list = []
    monkeypatch.setattr(
        faiss, "index_cpu_to_all_gpus", lambda index: moved.append(index) or index, raising=False
    )
    x = clustered_unit_vectors(4000, 32, 40, seed=7)
    monkeypatch.delenv("VADINDEX_FAISS_GPU", raising=False)
    assert ann.gpus() == 2
    ann.build(32, "ivf", lambda: iter([x]), len(x))
    assert len(moved) == 1  # the GPUs were used
    monkeypatch.setenv("VADINDEX_FAISS_GPU", "0")
    assert ann.gpus() == 0
    index = ann.build(32, "ivf", lambda: iter([x]), len(x))
    assert len(moved) == 1 and ann.kind_of(index) == "ivf" and index.ntotal == 4000  # not again


def test_ivf_training_falls_back_to_the_cpu_when_the_gpu_cannot_take_it(monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    import faiss

    def out_of_memory(index):  # type: ignore[no-untyped-def]
        raise RuntimeError("cudaMalloc error out of memory")

    monkeypatch.setattr(ann, "gpus", lambda: 1)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", out_of_memory, raising=False)
    x = clustered_unit_vectors(4000, 32, 40, seed=9)
    index = ann.build(32, "ivf", lambda: iter([x]), len(x))
    assert ann.kind_of(index) == "ivf" and index.ntotal == 4000
    assert "training on the CPU" in caplog.text


@pytest.mark.gpu
def test_ivf_training_on_the_gpu_matches_the_cpu() -> None:  # pragma: no cover - needs faiss-gpu and CUDA
    if not ann.gpus():
        pytest.skip("no GPU for FAISS")
    x = clustered_unit_vectors(20000, 64, 100, seed=8)
    q = clustered_unit_vectors(50, 64, 100, seed=8) + 0.05
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    index = ann.build(64, "ivf", lambda: iter([x]), len(x))
    _, ids = ann.search(index, q, 10, rerank=False)
    assert recall_at(ids, exact_top(x, q, 10)) >= 0.9
