"""Detection decisions against a plain numpy computation of the same rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vadindex.detect import detect, write_outputs
from vadindex.detect.prompts import DEFAULT_NORMAL_PROMPTS
from vadindex.errors import InputError
from vadindex.index.reader import open_index

PROMPTS = "people fighting; a person punching another person"


def _reference(snap, encoder, prompts, normal, rule, tau, k, rho):  # type: ignore[no-untyped-def]
    """The rules written out with loops over plain numpy."""
    texts = prompts + normal
    t = encoder.encode_texts(texts)
    v = snap.vectors()
    lam = snap.manifest.logit_scale
    n_a = len(prompts)
    seg_dec, seg_score = [], []
    for i in range(len(v)):
        s = np.array([float(v[i] @ t[p]) for p in range(len(texts))])
        e = np.exp(lam * s - (lam * s).max())
        a = e[:n_a].sum() / e.sum()
        if rule == "threshold":
            d = a >= tau
        elif rule == "topk":
            top = sorted(range(len(texts)), key=lambda p: -s[p])[:k]
            d = sum(p < n_a for p in top) > k / 2
        else:
            d = a >= tau and s[:n_a].max() > s[n_a:].max()
        seg_dec.append(bool(d))
        seg_score.append(a)
    vids = {}
    for vid, d in zip(snap.segments["video_id"], seg_dec, strict=True):
        vids.setdefault(vid, []).append(d)
    return np.array(seg_dec), np.array(seg_score), {v: np.mean(ds) >= rho for v, ds in vids.items()}


@pytest.mark.parametrize(
    ("rule", "tau", "k", "rho"),
    [("threshold", 0.2, 3, 0.1), ("topk", 0.5, 3, 0.3), ("balanced", 0.1, 3, 0.5)],
)
def test_decisions_match_reference(
    built_index: Path, encoder, rule: str, tau: float, k: int, rho: float
) -> None:  # type: ignore[no-untyped-def]
    snap = open_index(built_index)
    res = detect(snap, PROMPTS, rule=rule, segment_threshold=tau, top_k=k, video_ratio=rho, encoder=encoder)
    seg_dec, seg_score, vid_dec = _reference(
        snap,
        encoder,
        [p.strip() for p in PROMPTS.split(";")],
        list(DEFAULT_NORMAL_PROMPTS),
        rule,
        tau,
        k,
        rho,
    )
    assert np.allclose(res.segments["score"], seg_score, atol=1e-3)
    # Compare decisions away from the threshold, where float16 storage cannot flip them.
    clear = np.abs(seg_score - tau) > 1e-3 if rule != "topk" else np.ones(len(seg_dec), bool)
    assert (res.segments["anomalous"].to_numpy()[clear] == seg_dec[clear]).all()
    got = dict(zip(res.videos["video_id"], res.videos["anomalous"], strict=True))
    assert got == vid_dec
    assert len(res.videos) == snap.manifest.n_videos


def test_metrics_when_labelled(tmp_path: Path, small_clips: Path, encoder) -> None:  # type: ignore[no-untyped-def]
    from vadindex.ingest import build_index

    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,label,class\n"
        f"{small_clips}/fight/fi001.mp4,anomaly,Fighting\n{small_clips}/fight/fi010.mp4,1,Fighting\n"
        f"{small_clips}/nofight/nofi001.mp4,normal,Normal\n{small_clips}/nofight/nofi020.mp4,0,Normal\n"
    )
    build_index([], tmp_path / "ix", manifest=manifest, encoder=encoder, progress=False)
    res = detect(tmp_path / "ix", PROMPTS, segment_threshold=0.3, encoder=encoder)
    m = res.metrics
    assert m is not None
    y = res.videos["label"].astype(int).to_numpy()
    p = res.videos["anomalous"].to_numpy()
    from sklearn.metrics import confusion_matrix, f1_score, precision_score, recall_score

    assert m["confusion_matrix"] == confusion_matrix(y, p, labels=[0, 1]).tolist()
    assert m["f1"] == pytest.approx(f1_score(y, p, zero_division=0))
    assert m["precision"] == pytest.approx(precision_score(y, p, zero_division=0))
    assert m["recall"] == pytest.approx(recall_score(y, p, zero_division=0))
    out = write_outputs(res, tmp_path / "out")
    assert [f.name for f in out] == ["segments.csv", "videos.csv", "detect.json"]
    assert "label" in (tmp_path / "out" / "videos.csv").read_text().splitlines()[0]


def test_detect_does_not_decode_videos(built_index: Path, encoder, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import vadindex.ingest.decode as decode

    def boom(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("detect decoded a video")

    monkeypatch.setattr(decode, "open_video", boom)
    calls = []
    real = encoder.encode_images
    monkeypatch.setattr(encoder, "encode_images", lambda x: calls.append(1) or real(x))
    detect(built_index, PROMPTS, encoder=encoder)
    assert calls == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompts": " ; ;"}, "no prompts"),
        ({"prompts": "x", "rule": "vote"}, "unknown rule"),
        ({"prompts": "x", "segment_threshold": 1.5}, "segment-threshold"),
        ({"prompts": "x", "video_ratio": 0}, "video-ratio"),
        ({"prompts": "x", "rule": "topk", "top_k": 0}, "top-k"),
    ],
)
def test_bad_detect_arguments(built_index: Path, encoder, kwargs: dict, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=message):
        detect(built_index, encoder=encoder, **kwargs)
