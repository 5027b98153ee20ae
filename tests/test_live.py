"""The parts of ``vadindex watch`` without a stream: sources, segments, queues, live scoring, alerts."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from stream_servers import Blackhole, WebhookReceiver

from vadindex.config import SamplingSettings
from vadindex.detect.options import DetectOptions
from vadindex.detect.prompts import load_prompt_set
from vadindex.detect.scoring import Calibration, apply_rule, calibrate_similarities, smooth_scores
from vadindex.errors import InputError
from vadindex.live.alerts import AlertLog, AlertTracker, FlaggedSegment, Webhook, read_alerts
from vadindex.live.options import WatchOptions
from vadindex.live.reader import SegmentQueues, check_supported
from vadindex.live.scorer import History, LiveScorer
from vadindex.live.segmenter import LiveSegment, Sample, Segmenter
from vadindex.live.sources import StreamSource, load_cameras, parse_source, redact, resolve_sources

# -- sources ---------------------------------------------------------------------------------------


def test_each_kind_of_source_gets_its_live_options(tmp_path: Path) -> None:
    udp = parse_source("udp://127.0.0.1:5000")
    assert udp.kind == "udp" and udp.name == "udp-127.0.0.1-5000"
    assert udp.options["overrun_nonfatal"] == "1"  # an overrun drops data instead of ending the stream
    rtsp = parse_source("rtsp://user:secret@10.0.0.5:554/stream1", "gate", rtsp_transport="udp")
    assert rtsp.options["rtsp_transport"] == "udp" and rtsp.name == "gate"
    assert "secret" not in rtsp.display_url and "10.0.0.5" in rtsp.display_url
    assert parse_source("http://h/live/index.m3u8").options == {"live_start_index": "-1"}
    assert parse_source("/dev/video0").format == "v4l2"
    grown = tmp_path / "rec.ts"
    grown.write_bytes(b"x")
    follow = parse_source(str(grown), follow=True, options={"probesize": 32})
    assert follow.options == {"follow": "1", "seekable": "0", "probesize": "32"} and follow.name == "rec"
    assert redact("udp://127.0.0.1:5000") == "udp://127.0.0.1:5000"


def test_bad_sources_are_one_line_errors(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x")
    with pytest.raises(InputError, match="use `vadindex build`|vadindex build"):
        parse_source(str(clip))
    with pytest.raises(InputError, match="unsupported scheme gopher"):
        parse_source("gopher://x")
    with pytest.raises(InputError, match="--follow applies to files"):
        parse_source("udp://127.0.0.1:1", follow=True)
    with pytest.raises(InputError, match="camera name"):
        parse_source("udp://127.0.0.1:1", "bad name/")
    with pytest.raises(InputError, match="two sources are named 'a'"):
        resolve_sources(["udp://127.0.0.1:1", "udp://127.0.0.1:2"], names=["a", "a"])
    with pytest.raises(InputError, match="no sources"):
        resolve_sources([])
    # srt:// is refused before any model loads when this FFmpeg build lacks it (PyAV's usually does).
    import av

    try:
        av.open("srt://127.0.0.1:1", timeout=(0.05, 0.05))
        has_srt = True
    except av.error.ProtocolNotFoundError:
        has_srt = False
    except Exception:  # noqa: BLE001 - the protocol exists; nothing listens
        has_srt = True
    if not has_srt:
        with pytest.raises(InputError, match="no srt:// protocol; relay"):
            check_supported([parse_source("srt://127.0.0.1:9000", "cam")])


def test_cameras_yaml(tmp_path: Path) -> None:
    cams = tmp_path / "cameras.yaml"
    cams.write_text(
        "cameras:\n"
        "  gate: rtsp://10.0.0.5/stream1\n"
        "  yard:\n    url: rtsp://10.0.0.7/live\n    options: {rtsp_transport: udp}\n"
        "  lobby:\n    url: udp://0.0.0.0:5000\n"
    )
    sources = resolve_sources(
        ["udp://127.0.0.1:6000"], names=["door"], cameras=cams, options={"probesize": "5000"}
    )
    assert [s.name for s in sources] == ["door", "gate", "yard", "lobby"]
    assert sources[2].options["rtsp_transport"] == "udp" and sources[1].options["rtsp_transport"] == "tcp"
    assert all(s.options["probesize"] == "5000" for s in sources)
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras:\n  gate: {uri: rtsp://x}\n")
    with pytest.raises(InputError, match="camera 'gate': needs a url"):
        load_cameras(bad)
    bad.write_text("cameras: [\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_cameras(bad)


def test_watch_options_are_validated() -> None:
    with pytest.raises(InputError, match="--commit-seconds"):
        WatchOptions(commit_seconds=0)
    with pytest.raises(InputError, match="--cooldown"):
        WatchOptions(cooldown=-1)
    with pytest.raises(InputError, match="--rtsp-transport"):
        WatchOptions(rtsp_transport="http")


# -- segments and queues ---------------------------------------------------------------------------


def _samples(times: list[float], wall0: float = 1000.0) -> list[Sample]:
    return [Sample(t, wall0 + t, i, np.full((4, 4, 3), i, np.uint8)) for i, t in enumerate(times)]


def test_segments_complete_on_the_stream_timeline() -> None:
    out: list[LiveSegment] = []
    seg = Segmenter("cam", SamplingSettings(fps=4, segment_seconds=1.0), out.append)
    seg.start_timeline(1)
    times = [10.0 + 0.25 * j for j in range(10)]  # 10.0 .. 12.25
    for s in _samples(times):
        seg.add(s)
    assert [(x.index, x.start, x.end, x.n_frames) for x in out] == [(0, 10.0, 11.0, 4), (1, 11.0, 12.0, 4)]
    assert out[0].wall_start == pytest.approx(1010.0) and out[1].wall_end == pytest.approx(1012.0)
    assert out[0].start_frame == 0 and out[0].end_frame == 4  # the next segment's first frame
    seg.flush()  # 12.0 .. 12.5: half a segment, kept (as a build keeps a video's tail)
    assert len(out) == 3 and out[-1].end == pytest.approx(12.5) and out[-1].timeline == 1
    seg.start_timeline(2)
    for s in _samples([0.0, 0.25]):  # a camera whose clock reset: a new timeline from its own origin
        seg.add(s)
    seg.flush()  # 0 .. 0.5: kept
    assert (out[-1].timeline, out[-1].start, out[-1].end, out[-1].n_frames) == (2, 0.0, 0.5, 2)
    seg.start_timeline(3)
    seg.add(_samples([5.0])[0])
    seg.flush()  # 5.0 .. 5.25: a quarter of a segment, dropped
    assert len(out) == 4


def test_the_middle_sample_carries_the_whole_frame() -> None:
    out: list[LiveSegment] = []
    seg = Segmenter("cam", SamplingSettings(), out.append)
    seg.start_timeline(1)
    marks = []
    for s in _samples([0.0, 0.25, 0.5, 0.75, 1.0]):
        wants = seg.wants_display(s.t)
        marks.append(wants)
        seg.add(Sample(s.t, s.wall, s.frame, s.pixels, np.zeros((2, 2, 3), np.uint8) if wants else None))
    assert marks == [False, False, True, False, False]
    assert out[0].display is not None and out[0].thumbnail().shape == (2, 2, 3)


def _segment(camera: str, k: int, n: int = 4, wall: float = 1000.0, timeline: int = 1) -> LiveSegment:
    return LiveSegment(camera, timeline, k, float(k), k + 1.0, wall + k, wall + k + 1.0, 10 * k, 10 * k + 10,
                       np.zeros((n, 4, 4, 3), np.uint8), np.arange(n) / 4 + k, None)  # fmt: skip


def test_queues_drop_the_oldest_and_serve_streams_in_turn() -> None:
    q = SegmentQueues(["a", "b"], max_segments=3)
    for k in range(5):
        q.put(_segment("a", k))
    q.put(_segment("b", 0))
    assert q.dropped == {"a": 2, "b": 0} and q.dropped_frames["a"] == 8 and q.pending() == 4
    got = q.take(max_frames=8, timeout=0)
    assert [(s.camera, s.index) for s in got] == [("a", 2), ("b", 0)]  # round-robin, oldest kept first
    assert [s.index for s in q.take(100, 0)] == [3, 4]
    t = time.monotonic()
    assert q.take(8, timeout=0.2) == [] and time.monotonic() - t >= 0.15


def test_segments_that_waited_longer_than_max_lag_are_dropped() -> None:
    import dataclasses

    now = time.time()
    q = SegmentQueues(["a", "f"], max_segments=10, max_age=1.0, keep=("f",))
    for cam in ("a", "f"):
        q.put(dataclasses.replace(_segment(cam, 0), completed=now - 5.0))  # waited 5 s already
        q.put(dataclasses.replace(_segment(cam, 1), completed=now))
    got = q.take(max_frames=100, timeout=0)
    assert sorted((s.camera, s.index) for s in got) == [("a", 1), ("f", 0), ("f", 1)]
    assert q.dropped == {"a": 1, "f": 0}  # a followed file is never dropped from


def test_a_followed_file_waits_instead_of_dropping() -> None:
    q = SegmentQueues(["f"], max_segments=1)
    q.put(_segment("f", 0))
    stop = threading.Event()
    done = threading.Event()

    def put() -> None:
        q.put(_segment("f", 1), wait=stop)
        done.set()

    threading.Thread(target=put, daemon=True).start()
    assert not done.wait(0.3)  # full: the follower waits
    assert [s.index for s in q.take(4, 0)] == [0]
    assert done.wait(2) and q.dropped["f"] == 0


# -- live scoring is the detect rule ---------------------------------------------------------------


def _unit(rng: np.random.Generator, n: int, dim: int = 16) -> np.ndarray:
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_calibration_fitted_elsewhere_matches_detect() -> None:
    rng = np.random.default_rng(0)
    sims = rng.normal(size=(200, 5))
    for method in ("zscore", "percentile"):
        assert np.allclose(Calibration.fit(sims, method).apply(sims), calibrate_similarities(sims, method))
    history = History("zscore", sims[:150].astype(np.float32))
    history.add(sims[150:].astype(np.float32))
    cal = history.calibration()
    exact = Calibration.fit(sims.astype(np.float32), "zscore")
    assert np.allclose(cal.mean, exact.mean) and np.allclose(cal.std, exact.std, rtol=1e-6)


@pytest.mark.parametrize(
    "options",
    [
        DetectOptions(),
        DetectOptions(rule="balanced", segment_threshold=0.3),
        DetectOptions(rule="topk", top_k=3),
        DetectOptions(rule="frame-vote", frame_votes=2, segment_threshold=0.4),
        DetectOptions(calibrate="zscore", segment_threshold=1.0),
        DetectOptions(calibrate="percentile", segment_threshold=0.9, rule="balanced"),
    ],
)
def test_live_decisions_equal_detect_on_the_same_segments(options: DetectOptions) -> None:
    rng = np.random.default_rng(1)
    spec = load_prompt_set(["fire", "a fight", "a crash"], ["walking", "a street", "parked cars"])
    texts = _unit(rng, len(spec.texts))
    history = _unit(rng, 300)
    history_frames = np.repeat(history, 2, axis=0)  # two frames per stored segment
    new = _unit(rng, 40)
    new_frames = _unit(rng, 160)  # four frames per new segment
    scorer = LiveScorer(spec, texts, 50.0, options)
    hist_sims = scorer.class_sims(history)
    if options.calibrate != "none":
        hist_frames = scorer.class_sims(history_frames) if options.rule == "frame-vote" else None
        scorer = LiveScorer(spec, texts, 50.0, options, History(options.calibrate, hist_sims, hist_frames), 1)
    scored = scorer.score(new, new_frames, np.full(40, 4))
    decisions = [scorer.decide("cam", 1, i, s)[0] for i, s in enumerate(scored)]
    # detect's own pipeline on the same (float16-stored) vectors, calibrated against the history
    stored = lambda v: np.asarray(v, np.float16).astype(np.float32)  # noqa: E731
    sims = scorer.class_sims(new)
    kwargs = {}
    if options.calibrate != "none":
        kwargs["calibration"] = Calibration.fit(hist_sims, options.calibrate)
        if options.rule == "frame-vote":
            kwargs["frame_calibration"] = Calibration.fit(
                scorer.class_sims(history_frames), options.calibrate
            )
    ref = apply_rule(
        sims, np.array(spec.is_anomaly), 50.0, options, frame_sims=scorer.class_sims(stored(new_frames)),
        frame_row=np.arange(40) * 4, n_frames=np.full(40, 4), **kwargs,
    )  # fmt: skip
    assert [d.anomalous for d in decisions] == list(ref.anomalous)
    assert np.allclose([d.score for d in decisions], ref.score)
    assert 0 < ref.anomalous.sum() < 40 or options.rule == "topk"


def test_live_smoothing_waits_for_its_window_and_equals_detect() -> None:
    rng = np.random.default_rng(2)
    spec = load_prompt_set(["fire"], ["a street", "walking"])
    options = DetectOptions(smooth=2, segment_threshold=0.4)
    scorer = LiveScorer(spec, _unit(rng, len(spec.texts)), 20.0, options)
    vectors = _unit(rng, 12)
    scored = scorer.score(vectors, vectors, np.ones(12, int))
    decided = []
    for i, s in enumerate(scored):
        got = scorer.decide("cam", 1, i, s)
        assert [d.item for d in got] == ([i - 2] if i >= 2 else [])  # h = 2 segments of latency
        decided += got
    decided += scorer.flush("cam")
    expected = smooth_scores(np.array([s.score for s in scored]), np.zeros(12, int), np.arange(12), 2)
    assert [d.item for d in decided] == list(range(12))
    assert np.allclose([d.score for d in decided], expected)


def test_calibrated_rules_wait_for_a_history_and_knn_is_refused() -> None:
    rng = np.random.default_rng(3)
    spec = load_prompt_set(["fire"], ["a street", "walking"])
    texts = _unit(rng, len(spec.texts))
    options = DetectOptions(calibrate="zscore", segment_threshold=-100.0)  # everything passes once ready
    scorer = LiveScorer(spec, texts, 20.0, options, History("zscore", np.zeros((0, 3), np.float32)), 10)
    first = scorer.score(_unit(rng, 6), _unit(rng, 6), np.ones(6, int))
    assert not any(scorer.decide("cam", 1, i, s)[0].anomalous for i, s in enumerate(first))
    later = scorer.score(_unit(rng, 6), _unit(rng, 6), np.ones(6, int))
    assert scorer.ready and all(scorer.decide("cam", 1, i, s)[0].anomalous for i, s in enumerate(later))
    with pytest.raises(InputError, match="--knn-k"):
        LiveScorer(spec, texts, 20.0, DetectOptions(knn_k=5))
    for options, flag in ((DetectOptions(novelty=5, novelty_weight=0.5), "--novelty"),
                          (DetectOptions(use_labels=True), "--use-labels"),
                          (DetectOptions(calibrate="zscore", segment_threshold=1.0, calibrate_by="camera"),
                           "--calibrate-by camera")):  # fmt: skip
        with pytest.raises(InputError, match=flag):
            LiveScorer(spec, texts, 20.0, options)


# -- events and alerts -----------------------------------------------------------------------------


def _flag(
    k: int, anomalous: bool, score: float = 0.9, cls: str = "Fire", camera: str = "cam"
) -> FlaggedSegment:
    return FlaggedSegment(_segment(camera, k), f"live-{camera}-1", f"{camera}/t", k, score if anomalous else 0.1,
                          anomalous, cls, "udp://127.0.0.1:1")  # fmt: skip


def test_consecutive_flagged_segments_make_one_alert(tmp_path: Path) -> None:
    records: list[dict] = []
    log = AlertLog(tmp_path / "alerts.jsonl", records.append)
    tracker = AlertTracker(log, cooldown=0.0)
    for k, flagged in enumerate([False, True, True, False, True, False]):
        tracker.add(_flag(k, flagged, score=0.5 + 0.1 * k))
    assert [r["type"] for r in records] == ["alert", "end", "alert", "end"]
    first_end = records[1]
    assert first_end["segments"] == ["live-cam-1:1", "live-cam-1:2"]
    assert first_end["peak_score"] == pytest.approx(0.7)
    assert first_end["start_ts"] == pytest.approx(1001.0) and first_end["end_ts"] == pytest.approx(1003.0)
    assert Path(first_end["thumbnail"]).is_file()
    assert [json.loads(line)["type"] for line in (tmp_path / "alerts.jsonl").read_text().splitlines()] == [
        "alert", "end", "alert", "end"
    ]  # fmt: skip


def test_cooldown_merges_repeats_and_alerts_are_queryable(tmp_path: Path) -> None:
    records: list[dict] = []
    tracker = AlertTracker(AlertLog(tmp_path / "alerts.jsonl", records.append), cooldown=3.0)
    pattern = [True, False, True, False, False, False, False, True]  # a 1 s gap merges, a 4 s gap does not
    for k, flagged in enumerate(pattern):
        tracker.add(_flag(k, flagged))
    tracker.add(_flag(0, True, camera="other"))
    tracker.close_all()
    alerts = [r for r in records if r["type"] == "alert"]
    assert [(a["camera"], a["stream_start"]) for a in alerts] == [("cam", 0.0), ("cam", 7.0), ("other", 0.0)]
    table = read_alerts(tmp_path)
    assert len(table) == 3 and table.loc[0, "n_segments"] == 2 and not table["ongoing"].any()
    assert list(read_alerts(tmp_path, camera="other")["camera"]) == ["other"]
    assert len(read_alerts(tmp_path, last=1)) == 1
    (tmp_path / "alerts.jsonl").open("a").write('{"type": "alert", "alert_id": "cut')  # a crash mid-line
    assert len(read_alerts(tmp_path)) == 3


def test_a_stalled_stream_ends_its_event(tmp_path: Path) -> None:
    records: list[dict] = []
    tracker = AlertTracker(AlertLog(tmp_path / "a.jsonl", records.append), 5.0)
    tracker.add(_flag(0, True))
    tracker.tick(1001.0 + 5.0)
    assert [r["type"] for r in records] == ["alert"]
    tracker.tick(1001.0 + 8.0)
    assert [r["type"] for r in records] == ["alert", "end"]


def test_webhook_posts_json_and_a_dead_one_never_blocks() -> None:
    receiver = WebhookReceiver()
    lines: list[str] = []
    try:
        hook = Webhook(receiver.url, timeout=2.0, retries=1, status=lines.append)
        hook.send({"type": "alert", "alert_id": "a1"})
        hook.close(5.0)
        assert receiver.received == [{"type": "alert", "alert_id": "a1"}] and hook.sent == 1
    finally:
        receiver.stop()
    hole = Blackhole()
    try:
        hook = Webhook(hole.url, timeout=0.5, retries=1, status=lines.append)
        t = time.perf_counter()
        for i in range(400):  # more than the queue holds: the oldest waiting ones are dropped
            hook.send({"type": "alert", "alert_id": f"x{i}"})
        assert time.perf_counter() - t < 0.5  # sending never waits for the receiver
        assert hook.dropped > 0
        hook.close(0.1)
    finally:
        hole.stop()
    with pytest.raises(InputError, match="http"):
        Webhook("ftp://x", 1.0, 0, lines.append)


def test_sources_can_be_given_as_objects() -> None:
    src = StreamSource("cam", "udp://127.0.0.1:1", "udp")
    assert src.describe() == "cam (udp://127.0.0.1:1)"
