"""The CLI in-process with click's CliRunner: the three commands and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from vadindex._cli.main import EXIT_PARTIAL, cli

MODEL = ["--model", "vadindex-test", "--pretrained", "random"]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def cli_index(small_clips: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    index = tmp_path_factory.mktemp("cli") / "ix"
    code, out, err = run("build", small_clips, "--index", index, *MODEL, "--format", "json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["videos_added"] == 6 and summary["failures"] == []
    assert "RANDOM WEIGHTS" in err
    return index


def test_help_has_examples() -> None:
    for cmd in ("build", "query", "detect", "info"):
        code, out, _ = run(cmd, "--help")
        assert code == 0 and "Example" in out


def test_query_json(cli_index: Path) -> None:
    code, out, err = run("query", "a car", "--index", cli_index, "-k", "5", "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert len(rows) == 5 and {"video", "start", "end", "score"} <= set(rows[0])
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    code, out, _ = run("query", "a car", "--index", cli_index, "-k", "3", "--format", "csv")
    assert code == 0 and out.splitlines()[0].startswith("rank,score,video,start,end")
    code, out, _ = run("query", "a car", "--index", cli_index, "-k", "2")
    assert code == 0 and "video" in out.splitlines()[0]


def test_detect_json_and_out(cli_index: Path, tmp_path: Path) -> None:
    code, out, err = run(
        "detect",
        "--index",
        cli_index,
        "--prompts",
        "people fighting",
        "--format",
        "json",
        "--out",
        tmp_path / "o",
    )
    assert code == 0, err
    data = json.loads(out)
    assert len(data["videos"]) == 6 and {"video", "score", "anomalous"} <= set(data["videos"][0])
    assert len(data["segments"]) == sum(v["n_segments"] for v in data["videos"])
    assert "metrics" not in data  # no labels in this index
    assert (tmp_path / "o" / "segments.csv").read_text().startswith("video,segment,start,end,score,anomalous")
    code, out, _ = run("detect", "--index", cli_index, "-p", "fire;smoke", "--rule", "balanced")
    assert code == 0 and "videos anomalous" in out


def test_prompts_from_file(cli_index: Path, tmp_path: Path) -> None:
    f = tmp_path / "p.txt"
    f.write_text("# anomalies\npeople fighting\n\na fire\n")
    code, out, _ = run("detect", "--index", cli_index, "-p", f, "--format", "json")
    assert code == 0 and json.loads(out)["prompts"]["anomaly"] == ["people fighting", "a fire"]


def test_info(cli_index: Path) -> None:
    code, out, _ = run("info", cli_index, "--format", "json")
    assert code == 0
    info = json.loads(out)
    assert info["n_videos"] == 6 and info["model"] == "vadindex-test"
    assert info["faiss_covered"] == info["n_segments"] and info["faiss_rows"] is None
    # Built with the default --precision auto: fp32 for the first frames, int8 after where it is fast.
    assert info["precision"] and set(info["precision"]) <= {"fp32", "int8"}
    code, out, _ = run("info", cli_index)
    assert code == 0 and "precision  image encoder " in out
    # --index as everywhere else; the positional form still works; both, or neither, is a usage error.
    code, out2, _ = run("info", "--index", cli_index)
    assert code == 0 and out2 == out
    assert run("check", "--index", cli_index, "--quick")[0] == 0
    for args in (("info",), ("check", cli_index, "--index", cli_index)):
        code, _, err = run(*args)
        assert code == 2 and "give the index folder once" in err


@pytest.mark.parametrize(
    ("args", "message", "status"),
    # The README's exit statuses: 1 error (not an index, other model or sampling, file system), 2 bad
    # input or usage.
    [
        (["query", "a car", "--index", "{missing}"], "no such index", 1),
        (["query", "a car", "--index", "{index}", "-k", "0"], "-k must be at least 1", 2),
        (["query", "  ", "--index", "{index}"], "empty query", 2),
        (["query", "--index", "{index}"], "give a query TEXT", 2),
        (["detect", "--index", "{index}", "-p", ";"], "no prompts", 2),
        (["detect", "--index", "{missing}", "-p", "x"], "no such index", 1),
        (["build", "{tmp}/nothing.mp4", "--index", "{tmp}/new", *MODEL], "no videos to index", 2),
        (
            ["build", "--manifest", "{tmp}/bad.csv", "--index", "{tmp}/new", *MODEL],
            "needs a 'path' column",
            2,
        ),
        (
            ["build", "{clips}", "--index", "{index}", "--model", "vadindex-test", "--pretrained", "{ckpt}"],
            "built with",
            1,
        ),
        (["build", "{clips}", "--index", "{index}", "--fps", "2"], "sampling", 1),
        (["build", "{clips}", "--index", "{tmp}/b", "--batch-size", "0", *MODEL], "batch-size", 2),
        (
            ["detect", "--index", "{index}", "-p", "x", "--video-agg", "max", "--video-threshold", "nan"],
            "video-threshold must be a number",
            2,
        ),
        (
            ["detect", "--index", "{index}", "-p", "x", "--out", "{tmp}/bad.csv/out"],
            "bad.csv/out: Not a directory",
            1,
        ),
        (["manifest", "{clips}", "--out", "{tmp}/bad.csv/m.csv"], "bad.csv: File exists", 1),
    ],
)
def test_bad_input_is_one_line_without_traceback(
    cli_index: Path, small_clips: Path, tmp_path: Path, args: list[str], message: str, status: int
) -> None:
    (tmp_path / "bad.csv").write_text("file,label\nx.mp4,1\n")
    ckpt = tmp_path / "other.safetensors"
    if "{ckpt}" in args:
        from safetensors.torch import save_file

        from vadindex.models.openclip import load_encoder

        enc = load_encoder("vadindex-test", "random", "cpu")
        save_file({k: v.contiguous() for k, v in enc.model.state_dict().items()}, str(ckpt))
    subs = {"{missing}": str(tmp_path / "nope"), "{index}": str(cli_index), "{tmp}": str(tmp_path),
            "{clips}": str(small_clips), "{ckpt}": str(ckpt)}  # fmt: skip
    for k, v in subs.items():
        args = [a.replace(k, v) for a in args]
    code, out, err = run(*args)
    assert code == status, (out, err)
    lines = [ln for ln in err.splitlines() if ln.startswith("Error")]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


def test_partial_failure_exit_status(tmp_path: Path, small_clips: Path) -> None:
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "broken.mp4").write_bytes(b"\x00" * 1000)
    code, out, err = run("build", small_clips / "fight", tmp_path / "v", "--index", tmp_path / "ix", *MODEL)
    assert code == EXIT_PARTIAL
    assert "Indexed 2 videos" in out and "broken.mp4" in err


def test_the_console_script_exits_fast_with_its_status_and_all_its_output(
    built_index: Path, tmp_path: Path
) -> None:
    """A real process: after torch is loaded, ``main`` ends it with ``os._exit`` once output is flushed."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "vadindex._cli.main", "query", "--index", str(built_index)]
    ok = subprocess.run(
        [*cmd, "a car", "-k", "2", "--format", "json"], capture_output=True, text=True, timeout=120
    )
    assert ok.returncode == 0, ok.stderr
    assert len(json.loads(ok.stdout)) == 2  # every byte of stdout arrived
    bad = subprocess.run(
        [*cmd, "--image", str(tmp_path / "missing.png")], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2  # an input error after the model loaded keeps its status
    assert "missing.png: no such image" in bad.stderr


def _json(*args: object) -> dict:
    code, out, err = run(*[str(a) for a in args])
    assert code == 0, err
    return json.loads(out)


def test_detect_segments_anomalous_and_none(cli_index: Path) -> None:
    base = ["detect", "--index", cli_index, "-p", "people fighting", "--format", "json"]
    scores = sorted(s["score"] for s in _json(*base)["segments"])
    tau = (scores[len(scores) // 2 - 1] + scores[len(scores) // 2]) / 2  # half the segments pass
    full = _json(*base, "--segment-threshold", tau)
    flagged = [s for s in full["segments"] if s["anomalous"]]
    assert 0 < len(flagged) < len(full["segments"])
    anomalous = _json(*base, "--segment-threshold", tau, "--segments", "anomalous")
    assert anomalous["segments"] == flagged
    assert anomalous["videos"] == full["videos"] and anomalous["settings"] == full["settings"]
    none = _json(*base, "--segment-threshold", tau, "--segments", "none")
    assert "segments" not in none and none["videos"] == full["videos"]


def test_detect_normal_prompts_replace_the_defaults(cli_index: Path, encoder) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from vadindex.index.reader import open_index

    normal = ["an empty street", "a quiet office"]
    data = _json("detect", "--index", cli_index, "-p", "people fighting", "--normal-prompts", "; ".join(normal),
                 "--format", "json")  # fmt: skip
    assert data["prompts"]["anomaly"] == ["people fighting"] and data["prompts"]["normal"] == normal
    # a_i = softmax mass of the one anomaly prompt against exactly these two normal ones.
    snap = open_index(cli_index)
    t = encoder.encode_texts(["people fighting", *normal])
    logits = snap.manifest.logit_scale * (snap.vectors().astype(np.float64) @ t.T.astype(np.float64))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected = e[:, 0] / e.sum(axis=1)
    assert np.allclose([s["score"] for s in data["segments"]], expected, atol=2e-3)


def test_query_video_filter(cli_index: Path, encoder) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from vadindex.index.reader import open_index

    rows = _json(
        "query", "a car", "--index", cli_index, "--video", "fight/*", "-k", "500", "--format", "json"
    )
    snap = open_index(cli_index)
    mine = snap.segments["video"].str.startswith("fight/").to_numpy()
    assert {r["video"] for r in rows} == {"fight/fi001.mp4", "fight/fi010.mp4"} and len(rows) == mine.sum()
    scores = snap.vectors()[mine] @ encoder.encode_texts(["a car"])[0]
    assert np.allclose([r["score"] for r in rows], np.sort(scores)[::-1], atol=2e-3)
    top = _json(
        "query", "a car", "--index", cli_index, "--video", "nofi020.mp4", "-k", "1", "--format", "json"
    )
    assert [r["video"] for r in top] == ["nofight/nofi020.mp4"]  # a bare name matches too
