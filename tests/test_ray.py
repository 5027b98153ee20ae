"""``build --engine ray`` on real Ray: a private local instance, a 2-node cluster on this machine,
and its faults (a worker killed while it encodes, a poison video, a hung worker, a corrupt video,
a missing S3 object, the driver killed with SIGKILL).

Ray clusters here start with their own temporary folders and are stopped by these fixtures, never
with ``ray stop`` (which would kill every Ray process on the machine). Workers are found by their
process title, ``ray::vadindex:<video>``, which the engine gives each task.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import ROOT, S3_CLIPS, TEST_MODEL, free_port

from vadindex import VideoIndex
from vadindex._cli.main import cli
from vadindex.errors import InputError, ModelError
from vadindex.index.check import check_index
from vadindex.index.manifest import IndexManifest
from vadindex.index.reader import open_index
from vadindex.ingest import BuildOptions, build_index

MODEL = ["--model", TEST_MODEL, "--pretrained", "random", "--precision", "fp32"]
KW = {"model": TEST_MODEL, "pretrained": "random", "precision": "fp32", "progress": False}
#: Ray settings for every cluster, driver and CLI process of these tests: no token file written to
#: the home folder, no usage report.
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
#: What the worker nodes are started with: credentials stay on the nodes (the engine never
#: forwards them), as on a real cluster.
NODE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture(scope="module")
def ray_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {**RAY_ENV, **NODE_ENV}.items():
            mp.setenv(key, value)
        yield


@pytest.fixture(scope="module")
def cluster(ray_env: None) -> Iterator[object]:
    """A real 2-node Ray cluster on this machine (a head and a worker node, 1 CPU each)."""
    from ray.cluster_utils import Cluster

    nodes = {"num_cpus": 1, "object_store_memory": 80 << 20}
    c = Cluster(initialize_head=True, head_node_args={**nodes, "include_dashboard": False})
    try:
        c.add_node(**nodes)
        c.wait_for_nodes()
        yield c
    finally:
        c.shutdown()


@pytest.fixture
def connected(cluster: object) -> Iterator[object]:
    """This process connected to the cluster: builds in it use that session (and leave it on)."""
    import ray

    ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.WARNING)  # type: ignore[attr-defined]
    try:
        yield cluster
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def local_index(shared_videos: Path, encoder, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    """The 26 real clips built by the local engine, fp32: the reference for the Ray builds."""
    path = tmp_path_factory.mktemp("local") / "ix"
    summary = build_index([shared_videos], path, encoder=encoder, progress=False)
    assert summary.videos_added == 26 and summary.engine == "local"
    return path


def _cli_process(*args: object, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **RAY_ENV, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "vadindex._cli.main", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT,
    )  # fmt: skip


def _sorted_rows(path: Path) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Segments sorted by (video, segment) with their stored segment and frame vectors."""
    snap = open_index(path)
    seg = snap.segments.assign(row=np.arange(len(snap.segments))).sort_values(["video", "segment"])
    vectors = np.asarray(snap.vectors())[seg["row"].to_numpy()]
    frames_all = np.asarray(snap.frame_vectors())
    frames = np.concatenate(
        [frames_all[r : r + n] for r, n in zip(seg["frame_row"], seg["n_frames"], strict=True)]
    )
    return seg.reset_index(drop=True), vectors, frames


def assert_same_index(ray_index: Path, local_index: Path) -> None:
    """Same segments (video, start, end, frames) and identical stored vectors."""
    cols = ["video", "segment", "start", "end", "start_frame", "end_frame", "n_frames"]
    a, va, fa = _sorted_rows(ray_index)
    b, vb, fb = _sorted_rows(local_index)
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert np.array_equal(va, vb) and np.array_equal(fa, fb)


class Killer:
    """Sends ``sig`` to Ray workers whose process title says they ingest a video matching ``match``
    (after they have run ``after`` seconds), ``times`` times at most, from a thread."""

    def __init__(
        self, match: Callable[[str], bool], times: int, sig: int = signal.SIGKILL, after: float = 0.3
    ):
        self.match, self.times, self.sig, self.after = match, times, sig, after
        self.hits: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Killer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @staticmethod
    def workers() -> dict[int, str]:
        out = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    title = Path(entry.path, "cmdline").read_bytes().split(b"\0")[0].decode()
                except OSError:
                    continue
                if title.startswith("ray::vadindex:"):
                    out[int(entry.name)] = title.removeprefix("ray::vadindex:").strip()
        return out

    def _run(self) -> None:
        seen: dict[tuple[int, str], float] = {}
        while not self._stop.is_set() and len(self.hits) < self.times:
            now = time.monotonic()
            for pid, video in self.workers().items():
                if self.match(video) and (pid, video) not in self.hits:
                    first = seen.setdefault((pid, video), now)
                    if now - first >= self.after:
                        os.kill(pid, self.sig)
                        self.hits.append((pid, video))
                        break
            time.sleep(0.02)


# -- without Ray ---------------------------------------------------------------------------------


def test_options_are_checked_and_listed() -> None:
    with pytest.raises(InputError, match="need --engine ray"):
        BuildOptions(workers=2)
    with pytest.raises(InputError, match="--workers must be at least 1"):
        BuildOptions(engine="ray", workers=0)
    with pytest.raises(InputError, match="--cpus-per-worker"):
        BuildOptions(engine="ray", cpus_per_worker=0)
    result = CliRunner().invoke(cli, ["build", "--help"])
    for flag in (
        "--engine [local|ray]",
        "--ray-address",
        "--workers",
        "--cpus-per-worker",
        "--gpus-per-worker",
    ):
        assert flag in result.stdout
    result = CliRunner().invoke(cli, ["build", "x.mp4", "--index", "ix", "--ray-address", "auto"])
    assert result.exit_code == 2 and "need --engine ray" in result.stderr


def test_missing_ray_is_one_line(
    tmp_path: Path, shared_videos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    clip = shared_videos / "fight" / "fi001.mp4"
    result = CliRunner().invoke(cli, ["build", str(clip), "--index", str(tmp_path / "ix"), "--engine", "ray"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: --engine ray needs Ray: pip install 'vadindex[ray]'"
    assert not (tmp_path / "ix").exists()  # the folder this build created is removed again


def test_a_cluster_address_where_nothing_listens_is_refused_at_once(
    small_clips: Path, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    result = CliRunner().invoke(cli, ["build", str(small_clips), "--index", str(tmp_path / "ix"), "--engine", "ray",
                                      "--ray-address", address])  # fmt: skip
    assert result.exit_code == 2 and time.monotonic() - t0 < 30
    assert result.stderr.startswith(f"Error: --ray-address {address}: no Ray cluster answers there")
    assert not (tmp_path / "ix").exists()


def test_parts_record_their_engine_and_old_parts_read_as_local() -> None:
    data = {"format_version": 1, "generation": 1, "model": "m", "pretrained": "p", "checkpoint_sha256": None,
            "dim": 4, "logit_scale": 1.0, "sampling": {}, "parts": [{"name": "000001", "segments": 1, "frames": 1}]}  # fmt: skip
    manifest = IndexManifest.from_json(json.dumps(data), Path("x"))
    assert manifest.parts[0].engine == "local"


# -- a private local instance ----------------------------------------------------------------------


def test_cli_with_a_private_ray_instance(small_clips: Path, tmp_path: Path, ray_env: None) -> None:
    """No --ray-address: the build starts its own Ray on this machine and stops it; stdout stays
    one JSON object whatever Ray prints."""
    index = tmp_path / "ix"
    done = _cli_process("build", small_clips, "--index", index, *MODEL, "--engine", "ray", "--workers", "2",
                        "--format", "json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["videos_added"] == 6 and summary["failures"] == [] and summary["engine"] == "ray"
    info = CliRunner().invoke(cli, ["info", "--index", str(index)])
    assert "engines    ray 1 part" in info.stdout


# -- a 2-node cluster ------------------------------------------------------------------------------


def test_two_node_cluster_builds_the_clips_like_the_local_engine(
    cluster: object, local_index: Path, shared_videos: Path, tmp_path: Path
) -> None:
    index = tmp_path / "ix"
    done = _cli_process("build", shared_videos, "--index", index, *MODEL, "--engine", "ray",
                        "--ray-address", cluster.address, "--format", "json")  # type: ignore[attr-defined]  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["videos_added"] == 26 and summary["failures"] == [] and summary["workers_lost"] == 0
    assert_same_index(index, local_index)
    ray_ix, local_ix = VideoIndex(index, device="cpu"), VideoIndex(local_index, device="cpu")
    for text in ("people fighting in a bar", "a car on a highway"):
        a, b = (ix.query(text, k=8)[["video", "start", "end", "score"]] for ix in (ray_ix, local_ix))
        order = ["score", "video", "start"]  # rows are stored in another order: ties may swap
        pd.testing.assert_frame_equal(
            a.sort_values(order, ignore_index=True), b.sort_values(order, ignore_index=True)
        )
    da = ray_ix.detect("people fighting; a car crash").videos.sort_values("video").reset_index(drop=True)
    db = local_ix.detect("people fighting; a car crash").videos.sort_values("video").reset_index(drop=True)
    pd.testing.assert_frame_equal(da, db)
    assert check_index(index).ok
    # Rerun with one more clip: only the new one is encoded, and the index records both engines.
    extra = tmp_path / "more"
    extra.mkdir()
    shutil.copy(shared_videos / "fight" / "fi001.mp4", extra / "same-content.mp4")
    summary = build_index([shared_videos, extra], index, engine="ray", ray_address=cluster.address, **KW)  # type: ignore[attr-defined]
    assert summary.videos_added == 0 and summary.videos_skipped == 27
    import ray

    assert not ray.is_initialized()  # the build disconnected from the cluster it connected to


def test_worker_killed_while_encoding_is_retried(connected: object, small_clips: Path, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    with caplog.at_level(logging.WARNING, "vadindex"), Killer(lambda video: True, times=1) as killer:
        summary = build_index([small_clips], tmp_path / "ix", engine="ray", commit_every=2, **KW)
    assert len(killer.hits) == 1, "no worker was caught encoding"
    assert summary.videos_added == 6 and summary.failures == () and summary.workers_lost == 1
    assert f"Ray worker lost on {killer.hits[0][1]}" in caplog.text and "retrying it" in caplog.text
    videos = open_index(tmp_path / "ix").videos
    assert len(videos) == 6 and videos["video_id"].is_unique and videos["video"].is_unique


def test_poison_and_corrupt_videos_are_recorded_and_the_rest_indexed(
    connected: object, shared_videos: Path, tmp_path: Path
) -> None:
    """A video that kills its worker every time fails after two attempts; a corrupt file fails as
    in a local build; nothing else is lost or duplicated."""
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("fi010", "fi020", "fi030"):
        shutil.copy(shared_videos / "fight" / f"{name}.mp4", clips / f"{name}.mp4")
    shutil.copy(shared_videos / "nofight" / "nofi001.mp4", clips / "poison.mp4")
    (clips / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(20_000))
    with Killer(lambda video: video == "poison.mp4", times=2, after=0.0) as killer:
        summary = build_index([clips], tmp_path / "ix", engine="ray", thumbnails=True, **KW)
    assert len(killer.hits) == 2
    failures = dict(summary.failures)
    assert set(failures) == {str(clips / "poison.mp4"), str(clips / "corrupt.mp4")}
    assert failures[str(clips / "poison.mp4")].startswith("its Ray worker was lost on it 2 times")
    assert (
        "not a readable video" in failures[str(clips / "corrupt.mp4")]
        or "MP4" in failures[str(clips / "corrupt.mp4")]
    )
    assert summary.videos_added == 3 and summary.workers_lost == 2
    snap = open_index(tmp_path / "ix")
    assert sorted(snap.videos["video"]) == ["fi010.mp4", "fi020.mp4", "fi030.mp4"]
    assert (
        sum(p.thumbnails for p in snap.manifest.parts) == snap.manifest.n_segments
    )  # --thumbnails works too
    assert "poison.mp4" in (tmp_path / "ix" / "failures.csv").read_text()


def test_hung_worker_is_replaced_not_waited_for(connected: object, small_clips: Path, tmp_path: Path) -> None:
    """A worker that stops answering (SIGSTOP) is killed after 2 x --stall-timeout and its video
    retried on a new one: no silent hang."""
    with Killer(lambda video: video.endswith("fi010.mp4"), times=1, sig=signal.SIGSTOP, after=0.0) as killer:
        t0 = time.monotonic()
        summary = build_index([small_clips], tmp_path / "ix", engine="ray", stall_timeout=2.0, **KW)
    try:
        assert len(killer.hits) == 1
        assert summary.videos_added == 6 and summary.failures == () and summary.workers_lost == 1
        assert time.monotonic() - t0 < 120
    finally:
        for pid, _ in killer.hits:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_s3_sources_on_the_cluster(connected: object, s3: str, shared_videos: Path, tmp_path: Path) -> None:
    """Workers read s3:// URIs themselves (moto's S3 server on loopback); a missing object and a
    broken one are recorded failures; the same bytes on a local disk are not indexed again."""
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path\ns3://vids/cams/fight/fi001.mp4\ns3://vids/cams/missing.mp4\n", encoding="utf-8"
    )
    index = tmp_path / "ix"
    summary = build_index(["s3://vids/cams/"], index, manifest=manifest, engine="ray", **KW)
    assert dict(summary.failures) == {
        "s3://vids/cams/missing.mp4": "no such object",
        "s3://vids/cams/broken.mp4": "not a readable video (Invalid data found when processing input)",
    }
    assert summary.videos_added == 3 and summary.total_videos == 3  # fi001, listed twice, is one source
    videos = open_index(index).videos
    assert sorted(videos["path"]) == sorted(f"s3://vids/cams/{c}" for c in S3_CLIPS)
    local = [shared_videos / c for c in S3_CLIPS]
    again = build_index(local, index, engine="ray", **KW)
    assert again.videos_added == 0 and again.videos_skipped == 3


def test_driver_killed_mid_build_then_rerun_completes(
    cluster: object, small_clips: Path, tmp_path: Path
) -> None:
    index = tmp_path / "ix"
    args = [sys.executable, "-m", "vadindex._cli.main", "build", str(small_clips), "--index", str(index), *MODEL,
            "--engine", "ray", "--ray-address", cluster.address, "--commit-every", "1"]  # type: ignore[attr-defined]  # fmt: skip
    env = {**os.environ, **RAY_ENV, "PYTHONPATH": str(ROOT)}
    driver = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and driver.poll() is None:
            if (index / "manifest.json").exists() and open_index(index).manifest.n_videos >= 1:
                break
            time.sleep(0.05)
        assert driver.poll() is None, "the build ended before it could be killed"
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    finally:
        if driver.poll() is None:
            driver.kill()
    committed = open_index(index).manifest.n_videos
    assert 1 <= committed < 6
    assert check_index(index).ok  # the last commit is whole
    done = _cli_process("build", small_clips, "--index", index, *MODEL, "--engine", "ray",
                        "--ray-address", cluster.address, "--format", "json")  # type: ignore[attr-defined]  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["videos_skipped"] == committed and summary["videos_added"] == 6 - committed
    videos = open_index(index).videos
    assert len(videos) == 6 and videos["video_id"].is_unique


def test_workers_that_cannot_load_the_model_stop_the_build(
    connected: object, small_clips: Path, tmp_path: Path
) -> None:
    with pytest.raises(ModelError, match=r"unknown model 'no-such-model'.*\(Ray worker on .* pid \d+\)"):
        build_index([small_clips], tmp_path / "ix", engine="ray", model="no-such-model", progress=False)
    assert not (tmp_path / "ix").exists()


# -- `ray start` nodes -------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_against_ray_start_nodes(small_clips: Path, tmp_path: Path, ray_env: None) -> None:
    """A head and a worker node started with `ray start --block` (own temp folders), stopped with
    SIGTERM: the CLI builds through --ray-address HOST:PORT."""
    port = free_port()
    ray_bin = Path(sys.executable).with_name("ray")
    common = ["--num-cpus=1", "--block", "--disable-usage-stats", "--node-ip-address=127.0.0.1"]
    temp = Path("/tmp") / f"vadray{port}"  # short: Ray's socket paths must fit in 107 bytes
    env = {**os.environ, **RAY_ENV}
    procs = []
    try:
        procs.append(subprocess.Popen([ray_bin, "start", "--head", f"--port={port}", "--include-dashboard=false",
                                       f"--temp-dir={temp}", *common], env=env, start_new_session=True,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
        address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while subprocess.run(
            [ray_bin, "status", f"--address={address}"], env=env, capture_output=True
        ).returncode:
            assert time.monotonic() < deadline, "the head did not start"
            time.sleep(1)
        procs.append(subprocess.Popen([ray_bin, "start", f"--address={address}", *common], env=env,
                                      start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
        done = _cli_process("build", small_clips, "--index", tmp_path / "ix", *MODEL, "--engine", "ray",
                            "--ray-address", address, "--workers", "2", "--format", "json")  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["videos_added"] == 6
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


# -- the driver's commit path ---------------------------------------------------------------------


def test_frames_are_written_without_concatenating_them(tmp_path: Path) -> None:
    from vadindex.files import file_record, save_npy, save_npy_blocks

    rng = np.random.default_rng(0)
    blocks = [rng.standard_normal((n, 7)).astype(np.float32) for n in (3, 0, 5, 1)]
    a = save_npy_blocks(tmp_path / "a.npy", blocks, np.float16)
    b = save_npy(tmp_path / "b.npy", np.concatenate(blocks).astype(np.float16))
    assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()
    assert a == b == file_record(tmp_path / "a.npy")


def _synthetic(i: int, n: int = 5) -> tuple[object, object]:
    from vadindex.index.manifest import SEGMENT_COLUMNS
    from vadindex.index.writer import PendingVideo
    from vadindex.ingest.sources import VideoSource

    vid, name = f"{i:020x}", f"v{i}.mp4"
    vec = np.eye(n, 8, i % 3, dtype=np.float32)
    table = pd.DataFrame(
        {"video_id": vid, "video": name, "segment": np.arange(n, dtype=np.int32), "start": np.arange(n, dtype=float),
         "end": np.arange(1, n + 1, dtype=float), "start_frame": np.arange(n), "end_frame": np.arange(1, n + 1),
         "frame_row": np.arange(n), "n_frames": np.ones(n, dtype=np.int32), "label": pd.array([None] * n, dtype="Int8"),
         "class": pd.array([None] * n, dtype="string")}
    )[SEGMENT_COLUMNS]  # fmt: skip
    info = {"video_id": vid, "video": name, "path": f"/x/{name}", "label": None, "class": None, "duration": float(n),
            "n_frames": n, "width": 8, "height": 8, "codec": "h264", "n_segments": n, "warning": ""}  # fmt: skip
    return VideoSource(Path(f"/x/{name}"), name), PendingVideo(
        info, table, vec, vec.astype(np.float16), "fp32"
    )


def _ledger(tmp_path: Path, commit_every: int) -> tuple[object, object]:
    from vadindex.config import SamplingSettings
    from vadindex.index.writer import IndexWriter
    from vadindex.ingest.build import BuildLedger, BuildPlan
    from vadindex.models.identity import ModelIdentity

    plan = BuildPlan(tmp_path / "ix", BuildOptions(commit_every=commit_every), SamplingSettings(), (), ())
    sampling = {"fps": 4.0, "segment_seconds": 1.0, "min_tail_fraction": 0.5}
    writer = IndexWriter(plan.index, ModelIdentity("m", "p"), 8, 1.0, sampling, engine="ray")
    writer.open()
    return writer, BuildLedger(writer, plan, progress=False, background=True)


def test_background_group_commits_keep_every_video_once(tmp_path: Path) -> None:
    writer, ledger = _ledger(tmp_path, commit_every=2)
    try:
        for i in range(40):
            ledger.add(*_synthetic(i), 0.0)
        ledger.commit(final=True)
    finally:
        ledger.close()
        writer.close()
    snap = open_index(tmp_path / "ix")
    assert snap.manifest.n_videos == 40 and snap.videos["video_id"].is_unique
    assert 1 < snap.manifest.generation <= 21 and {p.engine for p in snap.manifest.parts} == {"ray"}
    # Frame rows point at each video's own frames whatever commit it landed in.
    frames = np.asarray(snap.frame_vectors(), dtype=np.float32)
    seg = snap.segments
    assert np.array_equal(frames[seg["frame_row"].to_numpy()], np.asarray(snap.vectors(), dtype=np.float32))
    assert check_index(tmp_path / "ix").ok


def test_a_failed_background_commit_stops_the_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vadindex.errors import StoreError

    writer, ledger = _ledger(tmp_path, commit_every=1)

    def full_disk(final: bool = False) -> None:
        raise StoreError("disk full")

    monkeypatch.setattr(writer, "commit", full_disk)
    try:
        with pytest.raises(StoreError, match="disk full"):
            for i in range(10):
                ledger.add(*_synthetic(i), 0.0)
                time.sleep(0.05)
    finally:
        ledger.close()
        writer.close()
