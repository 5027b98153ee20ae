"""``vadindex serve``'s app through FastAPI's TestClient: the JSON API against the CLI's JSON, pages,
security (token by header and cookie, Host, ids not paths, traversal, limits, decompression bombs,
escaping, never a 500) and an index growing under a running server."""

from __future__ import annotations

import hmac
import io
import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import run, write_video
from fastapi.testclient import TestClient
from PIL import Image

from vadindex import config as C
from vadindex.ingest import build_index
from vadindex.web import create_app
from vadindex.web import security as web_security
from vadindex.web.options import ServeOptions, is_loopback
from vadindex.web.search import events_of
from vadindex.web.state import IndexState

EVIL = "<img src=x onerror=alert(1)>.mp4"
TOKEN = "s3cret-token_for.tests"
PROMPTS = "a person walking; a moving square"


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three small real videos (one named like an HTML tag) and a manifest with labels."""
    folder = tmp_path_factory.mktemp("web-videos")
    write_video(folder / EVIL, seconds=3.0, size=(96, 64), seed=1)
    write_video(folder / "cam" / "a.mp4", seconds=4.0, size=(96, 64), seed=2)
    write_video(folder / "cam" / "b.mp4", seconds=5.0, size=(96, 64), seed=3)
    # Relative paths: the names shown are the paths as the manifest writes them.
    (folder / "manifest.csv").write_text(
        f"path,label,class\n{EVIL},normal,Normal\ncam/a.mp4,anomaly,Fighting\ncam/b.mp4,normal,Normal\n"
    )
    return folder


@pytest.fixture(scope="module")
def index(videos: Path, encoder, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("web-index") / "ix"
    build_index([], path, manifest=videos / "manifest.csv", encoder=encoder, progress=False)
    return path


@pytest.fixture(scope="module")
def client(index: Path) -> Iterator[TestClient]:
    with TestClient(create_app(index, device="cpu"), base_url="http://127.0.0.1:8000") as c:
        yield c


def _png(width: int, height: int, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


# -- the API mirrors the CLI ------------------------------------------------------------------------


def test_query_rows_are_the_cli_json_rows_with_ids(client: TestClient, index: Path) -> None:
    r = client.get("/api/query", params={"text": "a moving square", "k": 5})
    assert r.status_code == 200, r.text
    rows = r.json()
    code, out, err = run(
        "query", "a moving square", "--index", index, "-k", "5", "--format", "json", "--device", "cpu"
    )
    assert code == 0, err
    cli_rows = json.loads(out)
    assert len(rows) == 5
    assert [{k: v for k, v in row.items() if k != "segment_id"} for row in rows] == cli_rows
    assert all(row["segment_id"] == f"{row['video_id']}-{row['segment']}" for row in rows)
    # The ids are what the other endpoints take.
    first = rows[0]["segment_id"]
    seg = client.get(f"/api/segments/{first}").json()
    assert (seg["video"], seg["start"], seg["end"]) == (rows[0]["video"], rows[0]["start"], rows[0]["end"])
    assert client.get(f"/api/videos/{rows[0]['video_id']}").json()["video"] == rows[0]["video"]


def test_video_filter_and_more_like_this(client: TestClient) -> None:
    rows = client.get("/api/query", params={"text": "a square", "k": 50, "video": "cam/*"}).json()
    assert rows and {r["video"] for r in rows} <= {"cam/a.mp4", "cam/b.mp4"}
    like = rows[0]["segment_id"]
    similar = client.get("/api/query", params={"like": like, "k": 4}).json()
    assert len(similar) == 4 and like not in {r["segment_id"] for r in similar}
    assert [r["rank"] for r in similar] == [1, 2, 3, 4]
    assert all(a["score"] >= b["score"] for a, b in zip(similar, similar[1:], strict=False))


def test_image_upload_matches_cli_image_query(client: TestClient, index: Path, tmp_path: Path) -> None:
    image = tmp_path / "query.png"
    image.write_bytes(_png(320, 200))
    r = client.post(
        "/api/query", files={"image": ("q.png", image.read_bytes(), "image/png")}, data={"k": "3"}
    )
    assert r.status_code == 200, r.text
    code, out, err = run("query", "--image", image, "--index", index, "-k", "3", "--format", "json", "--device", "cpu",
                         "--precision", "fp32")  # fmt: skip
    assert code == 0, err
    assert [{k: v for k, v in row.items() if k != "segment_id"} for row in r.json()] == json.loads(out)


def test_detect_and_info_are_the_cli_json(client: TestClient, index: Path) -> None:
    params = {"prompts": PROMPTS, "segment_threshold": 0.4, "video_agg": "max"}
    r = client.get("/api/detect", params=params)
    assert r.status_code == 200, r.text
    code, out, err = run("detect", "--index", index, "--prompts", PROMPTS, "--segment-threshold", "0.4",
                         "--video-agg", "max", "--format", "json", "--device", "cpu")  # fmt: skip
    assert code == 0, err
    api, cli_json = r.json(), json.loads(out)
    assert api == cli_json
    assert api["metrics"]["support"] == 3 and len(api["segments"]) == sum(
        v["n_segments"] for v in api["videos"]
    )
    few = client.get("/api/detect", params={**params, "segments": "none"}).json()
    assert "segments" not in few and few["videos"] == api["videos"]

    code, out, _ = run("info", "--index", index, "--format", "json")
    assert client.get("/api/info").json() == json.loads(out)


def test_review_rescores_through_kept_similarities(client: TestClient) -> None:
    state: IndexState = client.app.state.index  # type: ignore[attr-defined]
    base = client.get("/api/review", params={"prompts": PROMPTS, "segment_threshold": 0.5})
    assert base.status_code == 200, base.text
    data = base.json()
    total = data["segments"]
    assert sum(data["histogram"]["unknown"]) == total == 12 and len(data["histogram"]["edges"]) == 41
    counts = []
    for t in (0.0, 0.5, 1.0):
        d = client.get("/api/review", params={"prompts": PROMPTS, "segment_threshold": t}).json()
        counts.append(d["flagged_segments"])
        assert d["threshold"] == t
    assert counts[0] == total and counts[2] <= counts[1] <= counts[0]
    scores = [v["score"] for v in data["listed"]]
    assert scores == sorted(scores, reverse=True) and len(data["listed"]) == 3
    evil = next(v for v in data["listed"] if v["video"] == EVIL)
    assert len(evil["timeline"]["score"]) == evil["n_segments"] == 3 and evil["label"] == 0
    assert data["labelled"] and data["metrics"]["support"] == 3
    # Other rules and calibrations reuse the class similarities kept for this prompt set.
    assert (
        client.get("/api/review", params={"prompts": PROMPTS, "rule": "topk", "top_k": 2}).status_code == 200
    )
    assert (
        client.get(
            "/api/review", params={"prompts": PROMPTS, "calibrate": "zscore", "segment_threshold": 1}
        ).status_code
        == 200
    )
    assert len(state.view().class_sims._items) == 1
    one = client.get(f"/api/review/videos/{evil['video_id']}", params={"prompts": PROMPTS}).json()
    assert one["video"]["video"] == EVIL and one["video"]["timeline"]["score"]


def test_yes_no_options_are_selects_the_api_parses() -> None:
    from vadindex.web.params import option_controls

    control = next(c for c in option_controls({}) if c["name"] == "use_labels")
    assert control["kind"] == "select" and control["choices"] == ["false", "true"]
    assert control["value"] == control["default"] == "false"  # never Python's "False" in an <input>
    assert (
        next(c for c in option_controls({"use_labels": "True"}) if c["name"] == "use_labels")["value"]
        == "true"
    )


def test_builtin_prompt_sets_and_no_paths(client: TestClient, tmp_path: Path) -> None:
    secret = tmp_path / "prompts.txt"
    secret.write_text("a secret prompt from a file\n")
    # A path is a prompt text like any other: the server never opens it.
    d = client.get("/api/detect", params={"prompts": str(secret), "segments": "none"}).json()
    assert d["prompts"]["anomaly"] == [str(secret)]
    yaml_path = tmp_path / "set.yaml"
    yaml_path.write_text("anomaly: {X: [a secret]}\n")
    d = client.get("/api/detect", params={"prompts": str(yaml_path), "segments": "none"}).json()
    assert d["prompts"]["anomaly"] == [str(yaml_path)]
    d = client.get("/api/detect", params={"prompts": "general", "segments": "none"}).json()
    assert d["prompts"]["set"] == "general" and len(d["prompts"]["anomaly"]) > 1


def test_thumbnails_frames_and_video_streaming(client: TestClient, index: Path) -> None:
    row = client.get("/api/query", params={"text": "a square", "k": 1}).json()[0]
    thumb = client.get(f"/api/segments/{row['segment_id']}/thumbnail")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content[:2] == b"\xff\xd8" and thumb.headers["x-thumbnail"] in ("video", "cache")
    frames = client.get(f"/api/segments/{row['segment_id']}").json()["frames"]
    assert len(frames) == 4  # 4 fps, one-second segments
    assert client.get(f"/api/segments/{row['segment_id']}/frames/3").content[:2] == b"\xff\xd8"
    assert client.get(f"/api/segments/{row['segment_id']}/frames/4").status_code == 404

    url = f"/api/videos/{row['video_id']}/stream"
    whole = client.get(url)
    assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-type"] == "video/mp4"
    size = len(whole.content)
    part = client.get(url, headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == whole.content[:100]
    assert part.headers["content-range"] == f"bytes 0-99/{size}"
    assert client.get(url, headers={"Range": "bytes=-10"}).content == whole.content[-10:]
    assert client.get(url, headers={"Range": f"bytes={size}-"}).status_code == 416
    head = client.head(url)
    assert head.status_code == 200 and int(head.headers["content-length"]) == size and not head.content


def test_events_merge_adjacent_hits_of_a_video() -> None:
    def row(video: str, segment: int, score: float, rank: int) -> dict[str, Any]:
        return {"video": video, "video_id": video, "segment": segment, "segment_id": f"{video}-{segment}",
                "start": float(segment), "end": segment + 1.0, "score": score, "rank": rank}  # fmt: skip

    rows = [
        row("a", 4, 0.9, 1),
        row("b", 0, 0.8, 2),
        row("a", 5, 0.7, 3),
        row("a", 7, 0.6, 4),
        row("a", 3, 0.5, 5),
    ]
    events = events_of(rows)
    assert [(e["video"], e["start"], e["end"], e["score"], len(e["segments"])) for e in events] == [
        ("a", 3.0, 6.0, 0.9, 3), ("b", 0.0, 1.0, 0.8, 1), ("a", 7.0, 8.0, 0.6, 1),
    ]  # fmt: skip
    assert events[0]["segment_id"] == "a-4" and events[0]["segments"] == ["a-3", "a-4", "a-5"]


# -- pages ----------------------------------------------------------------------------------------


def test_pages_render_and_escape_names(client: TestClient) -> None:
    evil_id = next(
        r for r in client.get("/api/query", params={"text": "a", "k": 20}).json() if r["video"] == EVIL
    )
    pages = [
        "/", "/search?text=a%20square", "/search?text=a%20square&view=segments", "/review",
        f"/review?prompts={PROMPTS}", "/index", f"/segments/{evil_id['segment_id']}", f"/videos/{evil_id['video_id']}",
        f"/videos/{evil_id['video_id']}?prompts=a%20square", f"/search?like={evil_id['segment_id']}",
    ]  # fmt: skip
    for url in pages:
        r = client.get(url)
        assert r.status_code == 200, (url, r.text[:300])
        assert r.headers["content-type"].startswith("text/html")
        assert "<img src=x" not in r.text, url
        assert "default-src 'none'" in r.headers["content-security-policy"]
        assert (
            "<script>" not in r.text and "style=" not in r.text
        )  # the policy allows no inline script or style
    listing = client.get("/search?text=a&k=20&view=segments").text
    assert "&lt;img src=x onerror=alert(1)&gt;.mp4" in listing
    assert client.get("/search?text=" + "x" * (C.SERVE_MAX_TEXT + 1)).status_code == 400
    assert client.get("/search?like=nope-1").status_code == 404
    assert client.get("/search?image=0123").status_code == 404


def test_search_by_uploaded_image_has_a_url(client: TestClient) -> None:
    r = client.post("/search", files={"image": ("q.png", _png(64, 64), "image/png")}, data={"k": "3"},
                    follow_redirects=False)  # fmt: skip
    assert r.status_code == 303 and r.headers["location"].startswith("/search?image=")
    page = client.get(r.headers["location"])
    assert page.status_code == 200 and page.text.count('class="card hit"') == 3


# -- security ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def locked(index: Path) -> Iterator[TestClient]:
    with TestClient(create_app(index, token=TOKEN, device="cpu"), base_url="http://10.1.2.3:8000") as c:
        yield c


def test_token_by_header_bearer_and_cookie(locked: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest
    monkeypatch.setattr(
        web_security.hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b)
    )
    locked.cookies.clear()
    for url in ("/api/info", "/openapi.json", "/static/app.css", "/api/segments/x-1/thumbnail"):
        r = locked.get(url)
        assert r.status_code == 401 and "token" in r.json()["detail"], url
    page = locked.get("/search")
    assert page.status_code == 401 and page.headers["content-type"].startswith("text/html")
    assert locked.get("/api/info", headers={"X-Token": "wrong-token"}).status_code == 401
    assert locked.get("/api/info", headers={"X-Token": "é".encode("latin-1")}).status_code == 401  # not a 500
    assert locked.get("/api/info", headers={"X-Token": TOKEN}).status_code == 200
    assert locked.get("/api/info", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert all(isinstance(a, bytes) and b == TOKEN.encode() for a, b in compared)  # constant time, on bytes

    assert locked.get("/search?text=a&token=wrong-token", follow_redirects=False).status_code == 401
    r = locked.get(f"/search?text=a&k=3&token={TOKEN}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/search?text=a&k=3"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert locked.get("/search?text=a&k=3").status_code == 200  # the client keeps the cookie
    assert locked.get("/api/info").status_code == 200
    assert locked.get("/openapi.json").json()["info"]["title"] == "vadindex"
    locked.cookies.clear()
    locked.cookies.set(web_security.COOKIE, "wrong-token")
    assert locked.get("/api/info").status_code == 401
    locked.cookies.clear()


def test_loopback_without_token_checks_the_host(index: Path) -> None:
    with TestClient(create_app(index, device="cpu"), base_url="http://127.0.0.1:8000") as c:
        for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "localhost"):
            assert c.get("/api/info", headers={"Host": host}).status_code == 200, host
        for host in ("evil.example:8000", "192.168.1.10:8000", "127.0.0.1.evil.example"):
            r = c.get("/api/info", headers={"Host": host})
            assert r.status_code == 400 and "Host" in r.json()["detail"], host


def test_ids_not_paths_traversal_and_foreign_ids_get_404(client: TestClient, tmp_path: Path, encoder) -> None:  # type: ignore[no-untyped-def]
    write_video(tmp_path / "v" / "other.mp4", seconds=2.0, size=(64, 48), seed=9)
    build_index([tmp_path / "v"], tmp_path / "other", encoder=encoder, progress=False)
    with TestClient(create_app(tmp_path / "other"), base_url="http://127.0.0.1") as other:
        foreign = other.get("/api/query", params={"text": "a", "k": 1}).json()[0]
    attempts = [
        "/api/videos/../../etc/passwd/stream", "/api/videos/..%2F..%2Fetc%2Fpasswd/stream",
        "/api/videos/%2e%2e%2f%2e%2e%2fetc%2fpasswd/stream", "/api/videos/%2Fetc%2Fpasswd/stream",
        "/api/videos//etc/passwd/stream", "/api/segments/..%2Fmanifest.json/thumbnail",
        "/api/segments/%2e%2e/thumbnail", "/api/segments/%2Fetc%2Fpasswd-1/thumbnail",
        "/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2Fapp.py", "/static/%2e%2e%2f%2e%2e%2fconfig.py",
        f"/api/videos/{foreign['video_id']}/stream", f"/api/videos/{foreign['video_id']}",
        f"/api/segments/{foreign['segment_id']}/thumbnail", f"/api/segments/{foreign['segment_id']}",
        "/api/segments/abc-99999/thumbnail", "/api/segments/" + "a" * 500 + "-1", "/segments/..%2F..%2Fetc",
        f"/videos/{foreign['video_id']}",
    ]  # fmt: skip
    for url in attempts:
        r = client.get(url)
        assert r.status_code == 404, (url, r.status_code, r.text[:200])
        assert "root:" not in r.text and "Traceback" not in r.text
    assert client.get("/api/query", params={"like": foreign["segment_id"]}).status_code == 404


def test_limits_are_clear_4xx(client: TestClient) -> None:
    cases = {
        "/api/query?text=a&k=0": "k", f"/api/query?text=a&k={C.SERVE_MAX_K + 1}": "k",
        "/api/query?text=a&k=ten": "k", "/api/query?text=" + "x" * (C.SERVE_MAX_TEXT + 1): "text",
        "/api/query?k=3": "text", "/api/query?text=%20%20": "text",
        "/api/query?text=a&video=" + "x" * (C.SERVE_MAX_TEXT + 1): "video",
        "/api/detect": "prompts", "/api/detect?prompts=a&rule=bogus": "rule",
        "/api/detect?prompts=a&segment_threshold=2": "segment-threshold",
        "/api/detect?prompts=a&segment_threshold=nan": "segment-threshold",
        "/api/detect?prompts=a&bogus=1": "bogus", "/api/detect?prompts=a&top_k=1.5": "top_k",
        "/api/detect?prompts=a&rule=topk&top_k=50": "top-k", "/api/review?prompts=a&videos=0": "videos",
        "/api/detect?prompts=" + "x" * (C.SERVE_MAX_PROMPTS_TEXT + 1): "prompts",
        "/api/detect?prompts=a;b&normal_prompts=a": "both anomaly and normal",
    }  # fmt: skip
    for url, word in cases.items():
        r = client.get(url)
        assert r.status_code == 400, (url, r.status_code, r.text[:200])
        detail = r.json()["detail"]
        assert isinstance(detail, str) and word in detail and "\n" not in detail, (url, detail)


def test_uploads_are_bounded_and_bomb_safe(client: TestClient) -> None:
    def post(data: bytes, name: str = "q.png", kind: str = "image/png") -> Any:
        return client.post("/api/query", files={"image": (name, data, kind)})

    assert post(_png_claiming(20_000, 20_000)).status_code == 413  # 400 MP claimed in 100 bytes
    assert post(_png_claiming(6_000, 5_000)).status_code == 413  # over our cap, under Pillow's
    r = post(b"\0" * (C.SERVE_MAX_UPLOAD_BYTES + 1024))
    assert r.status_code == 413 and "MB" in r.json()["detail"]
    assert post(b"GIF89a" + b"\0" * 100, "a.gif", "image/gif").status_code == 400
    assert post(b"not an image").status_code == 400
    assert post(b"").status_code == 400
    assert post(_png(64, 64)[:60]).status_code == 400  # truncated
    # A chunked body (no Content-Length) is counted while it arrives.
    chunks = (b"x" * 65536 for _ in range(200))
    r = client.post("/api/query", content=chunks, headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413
    assert client.post("/api/query", files={"image": ("q.png", _png(64, 64), "image/png")}).status_code == 200


def test_never_a_500_with_a_traceback(client: TestClient) -> None:
    rng = np.random.default_rng(0)
    junk = ["", "-1", "1e309", "nan", "%00", "../x", "a" * 300, "\u202e", "<script>", "0x10", "[]", "{}"]
    paths = ["/api/query", "/api/detect", "/api/review", "/api/info", "/search", "/review", "/index"]
    names = ["text", "k", "video", "like", "prompts", "normal_prompts", "rule", "segment_threshold",
             "calibrate", "knn_k", "smooth", "video_ratio", "videos", "segments", "image", "view"]  # fmt: skip
    for _ in range(120):
        path = paths[rng.integers(len(paths))]
        params = {names[i]: junk[rng.integers(len(junk))] for i in rng.choice(len(names), 3, replace=False)}
        r = client.get(path, params=params)
        assert r.status_code < 500, (path, params, r.status_code, r.text[:300])
        assert "Traceback" not in r.text
    for path in ("/api/segments/x/frames/abc", "/api/videos/x/stream", "/nope", "/api"):
        r = client.get(path)
        assert 400 <= r.status_code < 500 and "Traceback" not in r.text
    assert client.post("/api/info").status_code == 405
    assert client.delete("/api/videos/x/stream").status_code == 405


def test_serve_options() -> None:
    assert (
        is_loopback("127.0.0.1")
        and is_loopback("::1")
        and is_loopback("localhost")
        and is_loopback("127.8.0.1")
    )
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.0.2") and not is_loopback("example.org")
    from vadindex.errors import InputError

    for bad in (
        {"token": "short"},
        {"token": "has space in it"},
        {"token": "semi;colon-token"},
        {"port": 70000},
    ):
        with pytest.raises(InputError):
            ServeOptions(**bad)
    code, _, err = run("serve", "--index", "x", "--token", "short")
    assert code == 2 and "--token" in err and err.count("\n") == 1


def test_missing_web_extra_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a)
    )
    code, _, err = run("serve", "--index", "x")
    assert code == 1 and "pip install 'vadindex[web]'" in err and "uvicorn" in err and err.count("\n") == 1


# -- a growing index, a moving video, the model --------------------------------------------------------


def test_new_commits_are_served_without_restart_or_the_writer_lock(tmp_path: Path, encoder) -> None:  # type: ignore[no-untyped-def]
    write_video(tmp_path / "v1" / "first.mp4", seconds=2.0, size=(64, 48), seed=4)
    write_video(tmp_path / "v2" / "second.mp4", seconds=3.0, size=(64, 48), seed=5)
    ix = tmp_path / "ix"
    build_index([tmp_path / "v1"], ix, encoder=encoder, progress=False)
    with TestClient(create_app(ix), base_url="http://127.0.0.1") as c:
        assert c.get("/api/info").json()["n_videos"] == 1
        before = c.get("/api/review", params={"prompts": PROMPTS}).json()
        # The server holds no lock: a build appends while it runs, and the next request sees it.
        build_index([tmp_path / "v2"], ix, encoder=encoder, progress=False)
        info = c.get("/api/info").json()
        assert info["n_videos"] == 2 and info["generation"] > before["generation"]
        rows = c.get("/api/query", params={"text": "a", "k": 10, "video": "second.mp4"}).json()
        assert len(rows) == 3 and c.get(f"/api/segments/{rows[0]['segment_id']}/thumbnail").status_code == 200
        after = c.get("/api/review", params={"prompts": PROMPTS}).json()
        assert after["segments"] == before["segments"] + 3 and after["videos"] == 2


def test_moved_videos_placeholder_and_video_root(tmp_path: Path, encoder) -> None:  # type: ignore[no-untyped-def]
    write_video(tmp_path / "old" / "cam.mp4", seconds=2.0, size=(64, 48), seed=6)
    build_index([tmp_path / "old"], tmp_path / "ix", encoder=encoder, progress=False)
    (tmp_path / "old").rename(tmp_path / "new")
    with TestClient(create_app(tmp_path / "ix"), base_url="http://127.0.0.1") as c:
        row = c.get("/api/query", params={"text": "a", "k": 1}).json()[0]
        thumb = c.get(f"/api/segments/{row['segment_id']}/thumbnail")
        assert thumb.status_code == 200 and thumb.headers["x-thumbnail"] == "placeholder"
        assert thumb.headers["cache-control"] == "no-store"
        r = c.get(f"/api/videos/{row['video_id']}/stream")
        assert r.status_code == 404 and str(tmp_path) not in r.text  # paths stay in the server's log
    moved = create_app(tmp_path / "ix", video_root=f"{tmp_path / 'old'}={tmp_path / 'new'}")
    with TestClient(moved, base_url="http://127.0.0.1") as c:
        assert c.get(f"/api/segments/{row['segment_id']}/thumbnail").headers["x-thumbnail"] == "video"
        assert (
            c.get(f"/api/videos/{row['video_id']}/stream", headers={"Range": "bytes=0-9"}).status_code == 206
        )


def test_model_loads_once_on_first_need(index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from vadindex.search import encoders

    loads = []
    real = encoders.load_text_encoder
    monkeypatch.setattr(encoders, "load_text_encoder", lambda *a, **k: loads.append(1) or real(*a, **k))
    app = create_app(index)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        c.get("/api/info")
        c.get("/search")
        c.get("/review")
        assert not app.state.index.model_loaded and not loads
        with ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(lambda i: c.get("/api/query", params={"text": f"query {i}", "k": 2}), range(16))
            )
        assert all(a.status_code == 200 for a in answers)
        assert loads == [1] and app.state.index.model_loaded
