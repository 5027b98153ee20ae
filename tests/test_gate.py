"""The change gate: what it encodes, what it reuses, and how builds, info and check record it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TEST_MODEL, write_video
from vadindex.errors import InputError
from vadindex.ingest.gate import GATE_OFF, ChangeGate, GatedEncoder, GateSettings, describe_gate


def _scene(seed: int = 0, size: int = 224) -> np.ndarray:
    """A textured still: smooth shapes and some detail, like a camera's view."""
    import cv2

    rng = np.random.default_rng(seed)
    img = cv2.resize(
        rng.integers(40, 200, (12, 12, 3)).astype(np.uint8), (size, size), interpolation=cv2.INTER_CUBIC
    )
    for _ in range(8):
        x, y = (int(v) for v in rng.integers(0, size - 40, 2))
        cv2.rectangle(img, (x, y), (x + 30, y + 20), tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
    return img


def _noisy(
    img: np.ndarray, rng: np.random.Generator, sigma: float = 6.0, gain: float = 1.0, offset: float = 0.0
):  # type: ignore[no-untyped-def]
    out = img.astype(np.float32) * gain + offset + rng.normal(0, sigma, img.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def _reasons(gate: ChangeGate, frames: list[np.ndarray]) -> list[str]:
    return [gate.decide(f).reason for f in frames]


def test_a_still_scene_under_sensor_noise_is_encoded_once_per_max_gap() -> None:
    rng = np.random.default_rng(1)
    base = _scene()
    gate = ChangeGate(GateSettings(max_gap=5.0), fps=4.0)
    reasons = _reasons(gate, [_noisy(base, rng) for _ in range(45)])
    assert reasons[0] == "first"
    encoded = [i for i, r in enumerate(reasons) if r != "static"]
    assert encoded == [0, 20, 40]  # every 5 s at 4 fps
    assert {reasons[i] for i in encoded[1:]} == {"gap"}


def test_an_object_entering_is_encoded_at_once() -> None:
    rng = np.random.default_rng(2)
    base = _scene()
    moved = base.copy()
    moved[100:120, 60:75] = 255 - moved[100:120, 60:75]  # a 20x15 object: 0.6 % of the crop
    gate = ChangeGate(GateSettings(), fps=4.0)
    assert _reasons(gate, [_noisy(base, rng), _noisy(base, rng), _noisy(moved, rng), _noisy(moved, rng)]) == [
        "first", "static", "motion", "static",
    ]  # fmt: skip


def test_a_cut_or_a_camera_move_re_encodes_at_once() -> None:
    gate = ChangeGate(GateSettings(), fps=4.0)
    base = _scene(0)
    shifted = np.roll(base, 40, axis=1)
    assert _reasons(gate, [base, base, _scene(7), _scene(7), shifted]) == [
        "first",
        "static",
        "cut",
        "static",
        "cut",
    ]


def test_lighting_drift_is_tolerated_up_to_a_bound() -> None:
    """A slow fade is compensated frame to frame but re-encoded whenever it has moved the picture's
    brightness by more than the gate's bound since the last encode: a few encodes, not all frames."""
    rng = np.random.default_rng(3)
    base = _scene()
    frames = [_noisy(base, rng, sigma=2.0, gain=1.0 + 0.2 * i / 79) for i in range(80)]
    reasons = _reasons(ChangeGate(GateSettings(max_gap=1000.0), fps=4.0), frames)
    # Past a gain of ~1.1 the scene's brightest patches clip at 255, which no gain/offset
    # compensation undoes: at the default threshold a few of those encodes read as "motion". What
    # the bound is about is how many frames are encoded: a few, not all 80.
    encodes = len(reasons) - reasons.count("static")
    assert reasons.count("light") >= 2 and 3 <= encodes <= 21, reasons
    assert set(reasons) <= {"first", "static", "light", "motion"}
    assert "motion" not in _reasons(ChangeGate(GateSettings(threshold=12.0, max_gap=1000.0), fps=4.0), frames)
    # lights switched on at once: re-encoded on that frame
    jump = _reasons(ChangeGate(GateSettings(), fps=4.0), [base, base, _noisy(base, rng, 0.5, gain=1.5)])
    assert jump[-1] != "static"


def test_black_frames_are_flat_not_changing() -> None:
    black = np.zeros((224, 224, 3), np.uint8)
    gate = ChangeGate(GateSettings(), fps=4.0)
    assert _reasons(gate, [black, black, black, _scene()]) == ["first", "static", "static", "cut"]


def test_times_given_by_the_caller_drive_the_max_gap() -> None:
    gate = ChangeGate(GateSettings(max_gap=2.0), fps=4.0)
    base = _scene()
    assert [gate.decide(base, t).reason for t in (10.0, 11.0, 11.9, 12.0, 13.0)] == [
        "first", "static", "static", "gap", "static",
    ]  # fmt: skip
    gate.reset()
    assert gate.decide(base).reason == "first"
    # a stream's own clock through the gated encoder: 3 s apart is past the 2 s gap
    gated = GatedEncoder(_CountingEncoder(), GateSettings(max_gap=2.0), fps=4.0, batch_size=8)
    gated.add(np.stack([base] * 4), times=np.array([0.0, 0.5, 3.5, 4.0]))
    assert gated.encoded_mask().tolist() == [True, False, True, False]


def test_a_lower_threshold_is_more_sensitive() -> None:
    rng = np.random.default_rng(4)
    base = _scene()
    faint = base.astype(np.int16)
    faint[90:130, 90:130] += 14  # a faint change: 14 grey levels on 3 % of the crop
    faint = faint.clip(0, 255).astype(np.uint8)
    frames = [_noisy(base, rng, 1.0), _noisy(faint, rng, 1.0)]
    assert _reasons(ChangeGate(GateSettings(threshold=30), 4.0), frames)[1] == "static"
    assert _reasons(ChangeGate(GateSettings(threshold=8), 4.0), frames)[1] == "motion"


@pytest.mark.parametrize("threshold, max_gap", [(0.0, 5.0), (300.0, 5.0), (20.0, 0.0), (20.0, -1.0)])
def test_meaningless_settings_are_refused(threshold: float, max_gap: float) -> None:
    with pytest.raises(InputError, match="--gate-"):
        GateSettings(threshold, max_gap)


def test_describe() -> None:
    assert describe_gate(None) == GATE_OFF == "off"
    assert describe_gate(GateSettings(12.5, 3.0)).endswith("threshold 12.5 max-gap 3")


class _CountingEncoder:
    """A fake encoder: each frame's embedding is a unit vector made from its pixels (frames that
    differ get different vectors); it records the batch sizes it was given."""

    dim = 8
    image_size = 224

    def __init__(self) -> None:
        self.batches: list[int] = []

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        self.batches.append(len(pixels))
        flat = pixels.reshape(len(pixels), -1).astype(np.float32)
        out = np.stack([flat[:, i :: self.dim].mean(axis=1) for i in range(self.dim)], axis=1) + 1.0
        out[:, 0] += flat[:, ::97].std(axis=1)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_gated_encoder_reuses_the_last_encoded_embedding_across_batches() -> None:
    rng = np.random.default_rng(5)
    scenes = [_scene(0), _scene(1), _scene(2)]
    plan = [0] * 7 + [1] * 9 + [2] * 4 + [0] * 5  # three cuts
    frames = np.stack([_noisy(scenes[k], rng, 2.0) for k in plan])
    enc = _CountingEncoder()
    gated = GatedEncoder(enc, GateSettings(max_gap=100.0), fps=4.0, batch_size=3)
    for i in range(0, len(frames), 6):  # decoder batches of 6, encoder batches of 3
        gated.add(frames[i : i + 6])
    vectors, encoded = gated.vectors(), gated.encoded_mask()
    assert encoded.tolist() == [i in (0, 7, 16, 20) for i in range(len(plan))]
    assert gated.frames == len(plan) and gated.encoded == 4
    assert sum(enc.batches) == 4 and max(enc.batches) <= 3
    truth = enc.encode_images(frames)
    for i, first in enumerate([0] * 7 + [7] * 9 + [16] * 4 + [20] * 5):
        np.testing.assert_allclose(vectors[i], truth[first], rtol=1e-6)


def test_gated_encoder_without_a_gate_encodes_every_batch_as_it_comes() -> None:
    rng = np.random.default_rng(6)
    frames = np.stack([_noisy(_scene(), rng) for _ in range(10)])
    enc = _CountingEncoder()
    gated = GatedEncoder(enc, None, fps=4.0, batch_size=64)
    gated.add(frames[:7])
    gated.add(frames[7:])
    assert enc.batches == [7, 3]
    assert gated.encoded_mask().all()
    np.testing.assert_array_equal(gated.vectors(), enc.encode_images(frames))


def test_settings_from_any_options_object() -> None:
    from vadindex.ingest.options import BuildOptions

    assert GateSettings.from_options(BuildOptions()) is None
    assert GateSettings.from_options(
        BuildOptions(gate="auto", gate_threshold=9, gate_max_gap=2)
    ) == GateSettings(9, 2)
    with pytest.raises(InputError, match="--gate must be one of auto, off"):
        BuildOptions(gate="on")
    with pytest.raises(InputError, match="--gate-max-gap"):
        BuildOptions(gate_max_gap=0)


# --- builds ------------------------------------------------------------------------------------


def _still_video(
    path: Path, seconds: float = 12.0, fps: int = 10, event: tuple[float, float] = (5.0, 6.0)
) -> Path:
    """A fixed camera on a still scene with sensor noise; an object crosses during ``event``."""
    from vadindex.demo.synth import write_mp4

    rng = np.random.default_rng(0)
    base = _scene(3, 128)
    frames = []
    for i in range(int(seconds * fps)):
        img = base.copy()
        t = i / fps
        if event[0] <= t < event[1]:
            x = int(10 + 100 * (t - event[0]) / (event[1] - event[0]))
            img[50:80, x : x + 12] = 20
        frames.append(_noisy(img, rng, 3.0))
    write_mp4(path, iter(frames), fps)
    return path


@pytest.fixture(scope="module")
def gated_build(tmp_path_factory: pytest.TempPathFactory, encoder):  # type: ignore[no-untyped-def]
    from vadindex.ingest import build_index

    root = tmp_path_factory.mktemp("gate")
    videos = root / "videos"
    _still_video(videos / "still.mp4")
    write_video(videos / "moving.mp4", seconds=3.0)
    off = build_index([videos], root / "off", encoder=encoder, progress=False)
    on = build_index([videos], root / "on", encoder=encoder, progress=False, gate="auto")
    return root, off, on


def test_a_gated_build_encodes_fewer_frames_and_stores_every_frame(gated_build) -> None:  # type: ignore[no-untyped-def]
    from vadindex.index.reader import open_index

    root, off, on = gated_build
    assert off.frames_reused == 0 and off.gate == "off" and off.frames_encoded == off.frames_sampled
    assert on.frames_sampled == off.frames_sampled == 60
    assert 0 < on.frames_encoded < on.frames_sampled / 2 and on.frames_reused == 60 - on.frames_encoded
    assert on.gate.startswith("auto/") and on.to_dict()["frames_reused"] == on.frames_reused
    a, b = open_index(root / "off"), open_index(root / "on")
    assert b.manifest.n_frames == a.manifest.n_frames and b.manifest.n_segments == a.manifest.n_segments
    part = b.manifest.parts[0]
    assert part.frames_encoded == on.frames_encoded and part.gate == on.gate
    flags = b.frames_encoded()
    assert flags.sum() == on.frames_encoded and a.frames_encoded().all()
    # every video starts with an encoded frame; reused frames hold the frame before's embedding
    assert flags[b.segments.loc[b.segments["segment"] == 0, "frame_row"].to_numpy()].all()
    frames = b.frame_vectors()
    reused = np.flatnonzero(~flags)
    np.testing.assert_array_equal(frames[reused], frames[reused - 1])
    # encoded frames are the ungated build's, reused ones close to them
    fa, fb = a.frame_vectors().astype(np.float32), frames.astype(np.float32)
    np.testing.assert_allclose(fb[flags], fa[flags], atol=2e-3)
    assert (np.einsum("ij,ij->i", fa[reused], fb[reused]) > 0.95).all()


def test_segment_vectors_are_means_of_the_stored_frames(gated_build) -> None:  # type: ignore[no-untyped-def]
    from vadindex.index.reader import open_index

    snap = open_index(gated_build[0] / "on")
    frames = snap.frame_vectors().astype(np.float32)
    vectors = np.concatenate([b for _, b in snap.iter_vectors()]).astype(np.float32)
    for i, (row, n) in enumerate(snap.segments[["frame_row", "n_frames"]].itertuples(index=False)):
        mean = frames[row : row + n].mean(axis=0)
        np.testing.assert_allclose(vectors[i], mean / np.linalg.norm(mean), atol=2e-3)


def test_info_and_check_report_the_gate(gated_build, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from vadindex.index.check import check_index
    from vadindex.index.info import index_info

    root, off, on = gated_build
    info = index_info(root / "on")
    assert (info["frames_encoded"], info["frames_reused"]) == (on.frames_encoded, on.frames_reused)
    assert info["gate"] == [on.gate]
    assert index_info(root / "off")["frames_reused"] == 0
    assert check_index(root / "on").ok

    # a reused flag that lies (the frame holds another embedding) is found
    ix = tmp_path / "ix"
    shutil.copytree(root / "on", ix)
    part = json.loads((ix / "manifest.json").read_text())["parts"][0]["name"]
    flags = np.load(ix / "parts" / f"{part}.encoded.npy")
    flags[np.flatnonzero(flags)[1]] = False
    np.save(ix / "parts" / f"{part}.encoded.npy", flags)
    report = check_index(ix, checksums=False)
    assert any("marked reused hold another embedding" in p for p in report.problems), report.problems
    assert any("encoded frames, the manifest says" in p for p in report.problems), report.problems


def test_an_index_from_before_the_gate_reads_and_checks(gated_build, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Parts written before the gate have neither the count nor the file: all frames count as encoded."""
    import shutil

    from vadindex.index.check import check_index
    from vadindex.index.info import index_info
    from vadindex.index.reader import open_index

    ix = tmp_path / "old"
    shutil.copytree(gated_build[0] / "off", ix)
    manifest = json.loads((ix / "manifest.json").read_text())
    for part in manifest["parts"]:
        del part["frames_encoded"], part["gate"]
        (ix / "parts" / f"{part['name']}.encoded.npy").unlink()
        del manifest["files"][f"parts/{part['name']}.encoded.npy"]
    (ix / "manifest.json").write_text(json.dumps(manifest))
    report = check_index(ix)
    assert report.ok, report.problems
    info = index_info(ix)
    assert info["frames_reused"] == 0 and info["frames_encoded"] == info["n_frames"] and info["gate"] == []
    assert open_index(ix).frames_encoded().all()


def test_the_ray_engine_gates_like_the_local_one(
    gated_build, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """``--engine ray`` workers run the same gate: the same frames encoded, flags and vectors stored."""
    from vadindex.index.check import check_index
    from vadindex.index.reader import open_index
    from vadindex.ingest import build_index

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    root, _, on = gated_build
    summary = build_index(
        [root / "videos"], tmp_path / "ix", engine="ray", workers=1, gate="auto", model=TEST_MODEL,
        pretrained="random", precision="fp32", progress=False,
    )  # fmt: skip
    assert summary.engine == "ray" and summary.gate == on.gate
    assert (summary.frames_encoded, summary.frames_reused) == (on.frames_encoded, on.frames_reused)
    a, b = open_index(tmp_path / "ix"), open_index(root / "on")
    order_a, order_b = (np.argsort(s.segments["video"].to_numpy(), kind="stable") for s in (a, b))
    rows_a, rows_b = (
        np.concatenate([np.arange(r, r + n) for r, n in s.segments[["frame_row", "n_frames"]].to_numpy()[o]])
        for s, o in ((a, order_a), (b, order_b))
    )
    np.testing.assert_array_equal(a.frames_encoded()[rows_a], b.frames_encoded()[rows_b])
    np.testing.assert_array_equal(a.frame_vectors()[rows_a], b.frame_vectors()[rows_b])
    assert a.manifest.parts[0].gate == on.gate and check_index(tmp_path / "ix").ok


def test_cli_build_with_the_gate(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from vadindex._cli.main import cli

    videos = tmp_path / "videos"
    _still_video(videos / "still.mp4", seconds=8.0)
    args = ["build", str(videos), "--index", str(tmp_path / "ix"), "--model", "vadindex-test",
            "--pretrained", "random", "--precision", "fp32", "--no-progress"]  # fmt: skip
    runner = CliRunner()
    bad = runner.invoke(cli, [*args, "--gate", "auto", "--gate-threshold", "0"])
    assert bad.exit_code == 2 and "--gate-threshold must be in (0, 255]" in bad.output
    assert not (tmp_path / "ix").exists()
    out = runner.invoke(cli, [*args, "--gate", "auto", "--gate-max-gap", "2", "--format", "json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output[out.output.index("{") :])
    assert summary["frames_sampled"] == 32 and 0 < summary["frames_encoded"] < 32
    assert summary["frames_reused"] == 32 - summary["frames_encoded"] and "max-gap 2" in summary["gate"]
    info = runner.invoke(cli, ["info", "--index", str(tmp_path / "ix")])
    assert f"{summary['frames_encoded']} frames encoded" in info.output
    assert "reused by the change gate" in info.output


def test_help_lists_the_gate_options() -> None:
    from click.testing import CliRunner

    from vadindex._cli.main import cli

    text = CliRunner().invoke(cli, ["build", "--help"]).output
    for flag in ("--gate [auto|off]", "--gate-threshold", "--gate-max-gap"):
        assert flag in text


# --- watch ---------------------------------------------------------------------------------------


def test_watch_gates_each_stream_and_records_it(encoder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A still camera streamed over UDP to ``vadindex watch`` with ``--gate auto``: most frames reuse
    the stream's last embedding, every recording chunk starts with an encoded frame, and the index
    records the counts like a build's (``check`` verifies the flags against the stored frames)."""
    import threading

    from stream_servers import free_port, udp_sender

    from vadindex.demo.live import live_prompt_set
    from vadindex.index.check import check_index
    from vadindex.index.info import index_info
    from vadindex.index.reader import open_index
    from vadindex.ingest.options import BuildOptions
    from vadindex.live.options import WatchOptions
    from vadindex.live.sources import parse_source
    from vadindex.live.watch import watch

    clip = _still_video(tmp_path / "still.mp4", seconds=10.0)
    port, lines, stop = free_port(), [], threading.Event()
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["summary"] = watch(
                [parse_source(f"udp://127.0.0.1:{port}", "still-cam")], tmp_path / "ix", live_prompt_set(),
                encoder=encoder, on_status=lines.append, stop=stop,
                build=BuildOptions(gate="auto", gate_max_gap=2.0),
                options=WatchOptions(open_timeout=8.0, read_timeout=2.0, commit_seconds=3.0),
            )  # fmt: skip
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    sender = None
    try:
        deadline = time.monotonic() + 60
        while not any("watching" in line for line in lines):
            assert "error" not in result and time.monotonic() < deadline, lines
            time.sleep(0.1)
        sender = udp_sender(clip, port)
        sender.wait(60)
        while not any("still-cam: lost" in line for line in lines):  # UDP never ends: lost after 2 s
            assert "error" not in result and time.monotonic() < deadline + 30, lines
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(60)
        if sender is not None:
            sender.stop()
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    summary = result["summary"]
    sampled = summary.frames_encoded + summary.frames_reused  # type: ignore[attr-defined]
    assert sampled >= 30 and 0 < summary.frames_encoded < sampled / 2, summary  # type: ignore[attr-defined]
    assert summary.to_dict()["frames_reused"] == summary.frames_reused  # type: ignore[attr-defined]
    snap = open_index(tmp_path / "ix")
    flags = snap.frames_encoded()
    assert len(flags) == snap.manifest.n_frames == sampled and flags.sum() == summary.frames_encoded  # type: ignore[attr-defined]
    assert flags[snap.segments.loc[snap.segments["segment"] == 0, "frame_row"].to_numpy()].all()
    assert len(snap.videos) >= 2  # several commits: several chunks, each starting encoded
    info = index_info(tmp_path / "ix")
    assert (info["frames_encoded"], info["frames_reused"]) == (summary.frames_encoded, summary.frames_reused)  # type: ignore[attr-defined]
    assert info["gate"] == [GateSettings(max_gap=2.0).describe()]
    report = check_index(tmp_path / "ix")
    assert report.ok, report.problems
