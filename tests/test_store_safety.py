"""The index on disk: safe folders, crash-safe commits, one writer, readers during writes,
``vadindex check`` and ``info``, and loading without pickle."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import ROOT, TEST_MODEL, write_video

from vadindex._cli.main import cli
from vadindex.config import SamplingSettings
from vadindex.errors import ModelError, StoreError
from vadindex.index import faiss_index
from vadindex.index import writer as store
from vadindex.index.check import check_index
from vadindex.index.lock import lock_index
from vadindex.index.manifest import MANIFEST
from vadindex.index.reader import open_index
from vadindex.index.writer import IndexWriter
from vadindex.ingest import build_index, ingest_video
from vadindex.ingest.sources import VideoSource
from vadindex.models.identity import ModelIdentity

SIZE = (64, 48)
SETTINGS = SamplingSettings()
SAMPLING = {"fps": SETTINGS.fps, "segment_seconds": SETTINGS.segment_seconds,
            "min_tail_fraction": SETTINGS.min_tail_fraction}  # fmt: skip


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four tiny distinct clips."""
    folder = tmp_path_factory.mktemp("clips")
    for i in range(4):
        write_video(folder / f"clip{i}.mp4", seconds=2 + i % 2, size=SIZE, seed=10 + i)
    return folder


@pytest.fixture(scope="module")
def template(clips: Path, encoder, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    """An index over the four clips in two commits; copy it before damaging it."""
    path = tmp_path_factory.mktemp("template") / "ix"
    build_index([clips], path, encoder=encoder, progress=False, commit_every=2)
    return path


def _copy(template: Path, tmp_path: Path) -> Path:
    target = tmp_path / "ix"
    shutil.copytree(template, target)
    return target


def _invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args))


# ------------------------------------------------------------------------------------------------
# Where an index may be written, and what a writer may delete
# ------------------------------------------------------------------------------------------------


def test_refuses_a_folder_that_holds_other_files(tmp_path: Path, encoder) -> None:
    folder = tmp_path / "videos"
    write_video(folder / "cam1.mp4", seconds=2, size=SIZE)
    (folder / "notes.txt").write_text("keep me")
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(StoreError, match="not empty and is not a vadindex index"):
        build_index([folder], folder, encoder=encoder, progress=False)
    assert sorted(p.name for p in folder.iterdir()) == before
    result = _invoke(
        "build", str(folder), "--index", str(folder), "--model", TEST_MODEL, "--pretrained", "random"
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert sorted(p.name for p in folder.iterdir()) == before


def test_writer_removes_only_its_own_leftovers(template: Path, clips: Path, tmp_path: Path, encoder) -> None:
    ix = _copy(template, tmp_path)
    gen = open_index(ix).manifest.generation
    user = [ix / "notes.txt", ix / "parts" / "README"]
    leftovers = [ix / "index.g000099.faiss", ix / "videos.g000099.parquet", ix / ".manifest.json.tmp-123",
                 ix / "parts" / "000099.vectors.npy", ix / "parts" / ".000003.frames.npy.tmp-5"]  # fmt: skip
    for f in user + leftovers:
        f.write_bytes(b"x")
    assert any("belong to no commit" in n for n in check_index(ix).notes)
    summary = build_index([clips], ix, encoder=encoder, progress=False)
    assert summary.videos_skipped == 4
    assert all(f.exists() for f in user) and not any(f.exists() for f in leftovers)
    assert (ix / f"index.g{gen - 1:06d}.faiss").exists()  # the previous generation stays for readers
    report = check_index(ix)
    assert report.ok and not report.notes


def test_failed_start_leaves_no_empty_folder(tmp_path: Path, clips: Path) -> None:
    with pytest.raises(ModelError):
        build_index([clips], tmp_path / "new", model="no-such-model", progress=False)
    assert not (tmp_path / "new").exists()


# ------------------------------------------------------------------------------------------------
# Crash safety of a commit
# ------------------------------------------------------------------------------------------------


class _Crash(BaseException):
    """Stands for the process dying: nothing catches it."""


@pytest.fixture(scope="module")
def items(clips: Path, encoder) -> list:  # type: ignore[no-untyped-def]
    """The four clips ingested once, ready to commit."""
    return [ingest_video(VideoSource(p, p.name), encoder, SETTINGS) for p in sorted(clips.iterdir())]


def _writer(ix: Path, encoder) -> IndexWriter:  # type: ignore[no-untyped-def]
    return IndexWriter(ix, encoder.identity, encoder.dim, encoder.logit_scale, SAMPLING)


def _commit(ix: Path, encoder, items: list) -> None:  # type: ignore[no-untyped-def]
    """What a build does: add the videos not yet indexed, commit, record failures."""
    with _writer(ix, encoder) as writer:
        for item in items:
            if not writer.has_video(item.video["video_id"]):
                writer.add(item)
        writer.commit()
        writer.write_failures([])


def test_crash_at_every_step_of_a_commit(items: list, tmp_path: Path, encoder, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    base = tmp_path / "base"
    _commit(base, encoder, items[:2])
    replace = os.replace
    steps = 0
    while True:
        steps += 1
        ix = tmp_path / f"ix{steps}"
        shutil.copytree(base, ix)
        calls = 0

        def crashing_replace(src, dst, *, limit=steps):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            if calls == limit:
                raise _Crash(f"crash at file move {limit} ({Path(dst).name})")
            return replace(src, dst)

        monkeypatch.setattr(os, "replace", crashing_replace)
        try:
            _commit(ix, encoder, items)
            finished = True
        except _Crash:
            finished = False
        finally:
            monkeypatch.setattr(os, "replace", replace)
        # The index opens at a whole commit: before (2 videos) or after (4 videos).
        snap = open_index(ix)
        assert snap.manifest.n_videos in (2, 4)
        assert len(snap.segments) == snap.faiss_index().ntotal == snap.manifest.n_segments
        assert check_index(ix).ok, check_index(ix).problems
        # Committing again completes it, with no duplicate and no leftover.
        _commit(ix, encoder, items)
        report = check_index(ix)
        assert report.ok and not report.notes, (report.problems, report.notes)
        assert open_index(ix).manifest.n_videos == 4
        if finished:
            break
    # Seven crash points (three parts, the video table, FAISS, the manifest, failures.csv), then a clean run.
    assert steps == 8


def test_disk_full_keeps_the_last_commit(clips: Path, tmp_path: Path, encoder, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    ix = tmp_path / "ix"
    build_index([clips / "clip0.mp4"], ix, encoder=encoder, progress=False)
    real = store.save_parquet

    def full(target, frame):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store, "save_parquet", full)
    with pytest.raises(StoreError, match="No space left on device.*still holds its last commit"):
        build_index([clips], ix, encoder=encoder, progress=False)
    monkeypatch.setattr("vadindex.models.openclip.load_encoder", lambda *args, **kwargs: encoder)
    result = _invoke("build", str(clips), "--index", str(ix))
    assert result.exit_code == 1 and "No space left" in result.stderr and "Traceback" not in result.output
    assert check_index(ix).ok and open_index(ix).manifest.n_videos == 1
    monkeypatch.setattr(store, "save_parquet", real)
    build_index([clips], ix, encoder=encoder, progress=False)
    assert check_index(ix).ok and open_index(ix).manifest.n_videos == 4


def test_failed_commit_can_be_retried_without_duplicates(
    items: list, tmp_path: Path, encoder, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    item = items[0]
    ix = tmp_path / "ix"
    with _writer(ix, encoder) as writer:
        writer.add(item)
        real = faiss_index.save

        def failing(target, index):  # type: ignore[no-untyped-def]
            raise OSError(errno.EIO, "I/O error")

        monkeypatch.setattr(faiss_index, "save", failing)
        with pytest.raises(StoreError, match="I/O error"):
            writer.commit()
        monkeypatch.setattr(faiss_index, "save", real)
        writer.commit()
    snap = open_index(ix)
    assert snap.faiss_index().ntotal == len(item.segments) == snap.manifest.n_segments
    assert check_index(ix).ok


class _SlowClockEncoder:
    """The test encoder on a clock that each image batch moves ``seconds`` ahead (no sleeping)."""

    def __init__(self, inner, clock: list[float], seconds: float) -> None:  # type: ignore[no-untyped-def]
        self._inner, self._clock, self._seconds = inner, clock, seconds
        self.identity, self.dim = inner.identity, inner.dim
        self.image_size, self.logit_scale = inner.image_size, inner.logit_scale

    def encode_images(self, pixels):  # type: ignore[no-untyped-def]
        self._clock[0] += self._seconds
        return self._inner.encode_images(pixels)

    def encode_texts(self, texts):  # type: ignore[no-untyped-def]
        return self._inner.encode_texts(texts)


@pytest.mark.parametrize(("interval", "expected"), [(None, [3, 3]), (10.0, [1] * 6), (1e9, [6])])
def test_a_build_commits_at_least_once_a_minute(
    tmp_path: Path, encoder, monkeypatch, interval, expected
) -> None:  # type: ignore[no-untyped-def]
    """``--commit-every`` 100 is never reached by six videos; the time limit commits (README: "every
    --commit-every videos or minute"). Each video takes 25 s of a test clock, so the default 60 s
    commits after every third video; ``COMMIT_INTERVAL`` is patchable."""
    import types

    import vadindex.ingest.build as build_module

    folder = tmp_path / "v"
    for i in range(6):
        write_video(folder / f"v{i}.mp4", seconds=2, size=SIZE, seed=60 + i)
    clock = [1000.0]
    monkeypatch.setattr(build_module, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    if interval is None:
        assert build_module.COMMIT_INTERVAL == 60.0
    else:
        monkeypatch.setattr(build_module, "COMMIT_INTERVAL", interval)
    commits: list[int] = []
    real_commit = IndexWriter.commit

    def counting_commit(self, final: bool = False):  # type: ignore[no-untyped-def]
        if self.pending:
            commits.append(self.pending)
        return real_commit(self, final)

    monkeypatch.setattr(IndexWriter, "commit", counting_commit)
    summary = build_index([folder], tmp_path / "ix", encoder=_SlowClockEncoder(encoder, clock, 25.0),
                          progress=False, commit_every=100)  # fmt: skip
    assert summary.videos_added == 6
    assert commits == expected
    assert check_index(tmp_path / "ix").ok


# ------------------------------------------------------------------------------------------------
# One writer, many readers
# ------------------------------------------------------------------------------------------------


def test_second_writer_is_refused_before_loading_a_model(template: Path, clips: Path, tmp_path: Path,
                                                         monkeypatch) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    ix = _copy(template, tmp_path)
    lock = lock_index(ix)
    try:

        def no_model(*args, **kwargs):  # type: ignore[no-untyped-def]
            raise AssertionError("the model was loaded before the lock was taken")

        monkeypatch.setattr("vadindex.models.openclip.load_encoder", no_model)
        result = _invoke("build", str(clips), "--index", str(ix))
        assert result.exit_code == 1, result.output
        assert f"index is being written by pid {os.getpid()}" in result.stderr
        assert "only one build may write an index at a time" in result.stderr
    finally:
        lock.release()
    assert check_index(ix).ok


def test_lock_is_dropped_when_its_holder_is_killed(tmp_path: Path) -> None:
    ix = tmp_path / "ix"
    # The holder keeps the lock until it is killed (it waits for input that never comes), however
    # long the test takes.
    code = "import sys; from pathlib import Path; from vadindex.index.lock import lock_index; " \
           "lock = lock_index(Path(sys.argv[1])); print('locked', flush=True); sys.stdin.read()"  # fmt: skip
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(ix)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreError, match=f"being written by pid {holder.pid}"):
            lock_index(ix)
    finally:
        holder.kill()  # SIGKILL: no cleanup runs in the holder
        holder.wait()
    lock = lock_index(ix)
    lock.release()


def test_readers_query_while_a_build_commits(tmp_path: Path, encoder, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Every commit is held at its last step (new files in place, manifest not yet moved) until a
    reader has opened and searched the index: each read overlaps a commit, and sees the previous
    commit whole."""
    from vadindex.search.vectors import search_vector

    folder = tmp_path / "v"
    for i in range(6):
        write_video(folder / f"v{i}.mp4", seconds=2, size=SIZE, seed=40 + i)
    ix = tmp_path / "ix"
    errors: list[BaseException] = []
    mid_commit: queue.Queue[int] = queue.Queue()  # the generation being committed
    read_done = threading.Event()
    replace = os.replace

    def held_replace(src, dst, *args, **kwargs):  # type: ignore[no-untyped-def]
        if Path(dst).name == MANIFEST and threading.current_thread() is writer:
            read_done.clear()
            mid_commit.put(json.loads(Path(src).read_text())["generation"])
            assert read_done.wait(60), "no reader came"
        return replace(src, dst, *args, **kwargs)

    def write() -> None:
        try:
            build_index([folder], ix, encoder=encoder, progress=False, commit_every=1)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)
        finally:
            mid_commit.put(-1)

    monkeypatch.setattr(os, "replace", held_replace)
    writer = threading.Thread(target=write)
    writer.start()
    overlapped = []
    rng = np.random.default_rng(0)
    try:
        while (committing := mid_commit.get(timeout=120)) != -1:
            if committing == 1:
                assert not (ix / MANIFEST).exists()  # nothing committed yet: nothing to read
            else:
                snap = open_index(ix)
                n = snap.manifest.n_segments
                assert snap.manifest.generation == committing - 1
                assert len(snap.segments) == snap.faiss_index().ntotal == len(snap.vectors()) == n
                query = rng.normal(size=snap.manifest.dim).astype(np.float32)
                hits = search_vector(snap, query / np.linalg.norm(query), 3, None)
                assert len(hits) == min(3, n) and set(hits["video"]) <= set(snap.videos["video"])
                assert check_index(ix).ok
                overlapped.append(committing)
            read_done.set()
    finally:
        read_done.set()
        writer.join(120)
    assert not errors, errors
    # One commit per video (the last one is the build's final commit): all but the first overlapped.
    assert overlapped == list(range(2, open_index(ix).manifest.generation + 1)) == [2, 3, 4, 5, 6]
    assert open_index(ix).manifest.n_videos == 6 and check_index(ix).ok


# ------------------------------------------------------------------------------------------------
# vadindex check and info
# ------------------------------------------------------------------------------------------------


def test_check_passes_on_a_good_index(template: Path) -> None:
    report = check_index(template)
    assert report.ok and not report.notes, report.to_dict()
    assert report.counts["videos"] == 4 and report.counts["parts"] == 2
    result = _invoke("check", str(template))
    assert result.exit_code == 0 and result.output.startswith("OK ")
    data = json.loads(_invoke("check", str(template), "--format", "json").output)
    assert data["ok"] is True and data["problems"] == []


def test_rows_align_with_vectors_and_frames_across_parts(template: Path) -> None:
    snap = open_index(template)
    segs, vectors = snap.segments, snap.vectors()
    frames = snap.frame_vectors().astype(np.float32)
    assert len(snap.manifest.parts) == 2 and len(frames) == snap.manifest.n_frames
    for i in range(len(segs)):  # every row, in both parts: vector i is the mean of row i's own frames
        r, n = int(segs["frame_row"].iloc[i]), int(segs["n_frames"].iloc[i])
        mean = frames[r : r + n].mean(axis=0)
        assert np.allclose(mean / np.linalg.norm(mean), vectors[i], atol=3e-3), i
    for _, video in snap.videos.iterrows():
        rows = np.flatnonzero(segs["video_id"].to_numpy() == video["video_id"])
        assert rows[0] == video["first_row"] and len(rows) == video["n_segments"]


def _flip_byte(file: Path, offset: int = -5) -> None:
    data = bytearray(file.read_bytes())
    data[offset] ^= 0x40
    file.write_bytes(bytes(data))


def _truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[:-40])


def _edit_manifest(ix: Path, **changes: object) -> None:
    data = json.loads((ix / MANIFEST).read_text())
    data.update(changes)
    (ix / MANIFEST).write_text(json.dumps(data))


def _drop_video_row(ix: Path) -> None:
    file = ix / json.loads((ix / MANIFEST).read_text())["videos_file"]
    pd.read_parquet(file).iloc[1:].to_parquet(file, index=False)


def _pickled_frames(ix: Path) -> None:
    np.save(ix / "parts" / "000001.frames.npy", np.array([{"evil": 1}], dtype=object), allow_pickle=True)


def _shift_frame_rows(ix: Path) -> None:
    file = ix / "parts" / "000002.segments.parquet"
    table = pd.read_parquet(file)
    table["frame_row"] -= 1  # still inside the frame table, but each row now points at other frames
    table.to_parquet(file, index=False)


def _previous_faiss(ix: Path) -> None:
    m = json.loads((ix / MANIFEST).read_text())
    shutil.copy(ix / f"index.g{m['generation'] - 1:06d}.faiss", ix / m["faiss_file"])


DAMAGES = {
    "flipped byte in vectors": (lambda ix: _flip_byte(ix / "parts" / "000001.vectors.npy"), r"vectors\.npy: SHA-256"),
    "truncated segments table": (lambda ix: _truncate(ix / "parts" / "000002.segments.parquet"), r"segments\.parquet: (\d+ bytes|unreadable)"),
    "missing frames": (lambda ix: (ix / "parts" / "000002.frames.npy").unlink(), r"000002\.frames\.npy: missing"),
    "FAISS of the previous commit": (_previous_faiss, r"\.faiss: \d+ vectors, the manifest says"),
    "manifest counts edited": (lambda ix: _edit_manifest(ix, n_segments=3), r"parts hold \d+ segments, n_segments says 3"),
    "video row lost": (_drop_video_row, r"videos\.g\d+\.parquet: 3 rows, the manifest says 4"),
    "frame rows shifted": (_shift_frame_rows, r"frame rows do not tile"),
    "pickle in frames": (_pickled_frames, r"frames\.npy: unreadable \((Object arrays cannot be loaded|Array can't be memory-mapped: Python obj)"),
}  # fmt: skip


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_check_finds_damage(template: Path, tmp_path: Path, damage: str) -> None:
    ix = _copy(template, tmp_path)
    apply, expected = DAMAGES[damage]
    apply(ix)
    report = check_index(ix)
    assert not report.ok
    assert any(re.search(expected, p) for p in report.problems), report.problems
    result = _invoke("check", str(ix), "--format", "json")
    assert result.exit_code == 1 and json.loads(result.output)["ok"] is False


def test_check_quick_compares_sizes_only(template: Path, tmp_path: Path) -> None:
    ix = _copy(template, tmp_path)
    _flip_byte(ix / "parts" / "000001.frames.npy", offset=-2)  # same size, a low mantissa bit of a float16
    assert any("SHA-256" in p for p in check_index(ix).problems)
    assert not any("SHA-256" in p for p in check_index(ix, checksums=False).problems)
    # The CLI forms: check hashes (exit 1, the file named), check --quick compares sizes (exit 0).
    result = _invoke("check", "--index", str(ix))
    assert result.exit_code == 1 and "000001.frames.npy: SHA-256" in result.output, result.output
    result = _invoke("check", "--index", str(ix), "--quick")
    assert result.exit_code == 0 and result.output.startswith("OK "), result.output


def test_check_on_a_folder_that_is_not_an_index(tmp_path: Path) -> None:
    result = _invoke("check", str(tmp_path))
    assert result.exit_code == 1 and "not a vadindex index" in result.stderr


@pytest.mark.parametrize("content", [b"[]", b"\xff\xfe not text"])
def test_unreadable_manifest_is_one_line(template: Path, tmp_path: Path, content: bytes) -> None:
    ix = _copy(template, tmp_path)
    (ix / MANIFEST).write_bytes(content)
    for command in ("info", "check"):
        result = _invoke(command, str(ix))
        assert result.exit_code == 1 and "manifest" in result.stderr, result.stderr
        assert isinstance(result.exception, SystemExit), result.exception  # not an uncaught error


def test_info_shows_manifest_and_counts(template: Path) -> None:
    m = open_index(template).manifest
    result = _invoke("info", str(template))
    assert result.exit_code == 0
    assert f"{m.n_videos} videos, {m.n_segments} segments, {m.n_frames} frames in 2 parts" in result.output
    assert f"{TEST_MODEL} (random)" in result.output and "SHA-256 recorded" in result.output
    data = json.loads(_invoke("info", str(template), "--format", "json").output)
    assert (data["n_videos"], data["n_segments"], data["parts"], data["files"]) == (4, m.n_segments, 2, 8)
    assert data["failures_last_build"] == 0


# ------------------------------------------------------------------------------------------------
# Safe loading
# ------------------------------------------------------------------------------------------------


def test_index_files_load_without_pickle(template: Path) -> None:
    m = json.loads((template / MANIFEST).read_text())
    for name in m["files"]:
        file = template / name
        if file.suffix == ".npy":
            assert np.load(file, allow_pickle=False).dtype == np.float16
        elif file.suffix == ".parquet":
            pd.read_parquet(file)
    names = {p.suffix for p in template.rglob("*") if p.is_file()}
    assert names <= {".json", ".faiss", ".parquet", ".npy", ".csv", ""}


def test_package_never_unpickles() -> None:
    """No pickle, unsafe YAML or torch.load without weights_only anywhere in the package."""
    unsafe = re.compile(r"allow_pickle\s*=\s*True|pickle\.loads?\(|yaml\.(unsafe_)?load\((?![^)]*SafeLoader)"
                        r"|yaml\.(Unsafe|Full)?Loader\b|torch\.load\((?![^)]*weights_only\s*=\s*True)")  # fmt: skip
    hits = []
    for file in (ROOT / "vadindex").rglob("*.py"):
        for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            if unsafe.search(line):
                hits.append(f"{file.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not hits


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The test model's weights saved as .safetensors and as .pt (a state_dict), seeded differently."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    from vadindex.models.weights import register_builtin_models

    register_builtin_models()
    folder = tmp_path_factory.mktemp("ckpt")
    out = {}
    for seed, suffix in ((1, ".safetensors"), (2, ".pt")):
        torch.manual_seed(seed)
        state = {k: v.contiguous() for k, v in open_clip.create_model(TEST_MODEL).state_dict().items()}
        path = folder / f"weights{suffix}"
        if suffix == ".safetensors":
            save_file(state, str(path))
        else:
            torch.save({"state_dict": state}, path)
        out[suffix] = path
    return out


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_checkpoint_hash_is_recorded_and_other_weights_are_refused(checkpoints, clips: Path, tmp_path: Path,
                                                                   suffix: str) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    from vadindex.search.encoders import load_index_encoder

    path = checkpoints[suffix]
    ix = tmp_path / "ix"
    result = _invoke("build", str(clips / "clip0.mp4"), "--index", str(ix), "--model", TEST_MODEL,
                     "--pretrained", str(path), "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    m = open_index(ix).manifest
    assert m.checkpoint_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert m.pretrained == f"file:{path.name}" and m.pretrained_path == str(path.absolute())
    snap = open_index(ix)
    assert load_index_encoder(snap, "cpu").identity.checkpoint_sha256 == m.checkpoint_sha256
    other = checkpoints[".pt" if suffix == ".safetensors" else ".safetensors"]
    with pytest.raises(ModelError, match="query it with the same model"):
        load_index_encoder(snap, "cpu", str(other))
    result = _invoke("query", "a person", "--index", str(ix), "--pretrained", str(other), "--device", "cpu")
    assert result.exit_code == 1 and "query it with the same model" in result.stderr


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (str(self.marker),))


def test_pickle_checkpoint_is_not_executed(tmp_path: Path) -> None:
    import torch

    from vadindex.models.openclip import load_encoder

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": _Evil(marker)}, path)
    with pytest.raises(ModelError, match="cannot load checkpoint"):
        load_encoder(TEST_MODEL, str(path), "cpu")
    assert not marker.exists()


def test_newer_format_is_refused_with_an_upgrade_message(template: Path, clips: Path, tmp_path: Path,
                                                         encoder) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    ix = _copy(template, tmp_path)
    _edit_manifest(ix, format_version=store.FORMAT_VERSION + 1)
    with pytest.raises(StoreError, match="newer than this vadindex supports.*upgrade vadindex"):
        open_index(ix)
    with pytest.raises(StoreError, match="upgrade vadindex"):
        build_index([clips], ix, encoder=encoder, progress=False)
    result = _invoke("info", str(ix))
    assert result.exit_code == 1 and "upgrade vadindex" in result.stderr
    assert not check_index(ix).ok


class _OtherEncoder:
    """The test encoder under another identity (other weights)."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self._inner = inner
        self.identity = ModelIdentity(TEST_MODEL, "other-weights")
        self.dim, self.image_size, self.logit_scale = inner.dim, inner.image_size, inner.logit_scale

    def encode_images(self, pixels):  # type: ignore[no-untyped-def]
        return self._inner.encode_images(pixels)

    def encode_texts(self, texts):  # type: ignore[no-untyped-def]
        return self._inner.encode_texts(texts)


def test_other_model_is_refused_for_building_and_querying(template: Path, clips: Path, tmp_path: Path,
                                                          encoder) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    from vadindex.search.encoders import check_encoder

    ix = _copy(template, tmp_path)
    other = _OtherEncoder(encoder)
    with pytest.raises(StoreError, match="index was built with vadindex-test \\(random\\)"):
        build_index([clips], ix, encoder=other, progress=False)
    with pytest.raises(ModelError, match="query it with the same model"):
        check_encoder(open_index(ix), other)
    assert check_index(ix).ok
