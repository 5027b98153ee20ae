"""Cross-validated tuning: folds split by video without leakage, held-out scores, config round trip."""

from __future__ import annotations

import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from vadindex.detect.grid import DEFAULT_GRID, TuneData, fold_splits, search
from vadindex.errors import InputError

SMALL_GRID = {**DEFAULT_GRID, "rule": ["threshold", "balanced", "topk"], "knn_k": [0], "smooth": [0, 1],
              "n_thresholds": [8], "video_ratio": [0.1, 0.5]}  # fmt: skip


def _synthetic(seed: int = 0, n_videos: int = 24) -> TuneData:
    """Videos of 3-8 segments; anomalous videos have some segments close to the anomaly classes."""
    rng = np.random.default_rng(seed)
    labels = np.array([i % 2 for i in range(n_videos)], dtype=np.int8)
    labels[-2:] = -1  # unlabelled videos take no part in the folds
    sizes = rng.integers(3, 9, n_videos)
    codes = np.repeat(np.arange(n_videos), sizes)
    position = np.concatenate([np.arange(k) for k in sizes])
    sims = rng.normal(0.2, 0.02, (len(codes), 4))
    hot = (labels[codes] == 1) & (rng.random(len(codes)) < 0.5)
    sims[hot, :2] += rng.normal(0.03, 0.02, (hot.sum(), 2))
    return TuneData(sims=sims.astype(np.float32), is_anomaly=np.array([True, True, False, False]),
                    logit_scale=100.0, video_codes=codes, position=position,
                    video_ids=np.array([f"v{i:02d}" for i in range(n_videos)]), labels=labels)  # fmt: skip


@pytest.mark.parametrize(
    ("labels", "folds"), [([0, 1] * 10 + [-1, -1], 5), ([0] * 9 + [1] * 2, 3), ([1, 0, 1], 5)]
)
def test_folds_split_by_video_without_leakage(labels: list[int], folds: int) -> None:
    y = np.array(labels, dtype=np.int8)
    splits = fold_splits(y, folds, seed=3)
    labelled = set(np.flatnonzero(y >= 0))
    seen: list[int] = []
    for train, test in splits:
        assert not set(train) & set(test)
        assert set(train) | set(test) == labelled
        seen += list(test)
    assert sorted(seen) == sorted(labelled)  # every labelled video is tested exactly once
    if min(np.bincount(y[y >= 0])) >= folds:  # stratified: both labels in every test fold
        assert all(len(set(y[test])) == 2 for _, test in splits)


def test_too_few_labelled_videos() -> None:
    with pytest.raises(InputError, match="two labelled videos"):
        fold_splits(np.array([1, -1, -1], dtype=np.int8), 5)


def _documented_videos(data: TuneData, settings: dict) -> tuple[np.ndarray, np.ndarray]:
    """Video scores ``s_v`` and decisions of ``settings``, from the documented formulas alone (the
    README's Usage of ``detect``, and the module docstrings it points to), in loops over plain
    Python floats: no function of the package."""
    S = data.sims.astype(np.float64)
    n, n_classes = S.shape
    A = [bool(f) for f in data.is_anomaly]
    cal, rule, lam = settings["calibrate"], settings["rule"], data.logit_scale
    assert settings["knn_k"] == 0 and rule in ("threshold", "balanced", "topk")  # the grids used here
    if cal == "none":
        V = S
    elif cal == "zscore":  # Z[i,c] = (S[i,c] − mean_j S[j,c]) / std_j S[j,c]
        V = (S - S.mean(axis=0)) / S.std(axis=0)
    else:
        raise AssertionError(f"no reference for calibration {cal}")
    a, margin = [], []
    for i in range(n):
        row = [float(v) for v in V[i]]
        if cal == "none":  # a_i = Σ_{c∈A} softmax_c(λ·S[i,:])
            e = [math.exp(lam * v - lam * max(row)) for v in row]
            a.append(sum(x for x, an in zip(e, A, strict=True) if an) / sum(e))
        else:  # a_i = max_{c∈A} Z[i,c]
            a.append(max(v for v, an in zip(row, A, strict=True) if an))
        if rule == "topk":  # the k most similar classes vote; share above one half
            k = min(settings["top_k"], n_classes)
            top = sorted(range(n_classes), key=lambda c: -row[c])[:k]
            margin.append(sum(A[c] for c in top) / k - 0.5)
        else:  # balanced: max_A − max_N
            margin.append(max(v for v, an in zip(row, A, strict=True) if an)
                          - max(v for v, an in zip(row, A, strict=True) if not an))  # fmt: skip
    h = settings["smooth"]
    if h:  # the mean over the same video's segments at most h positions away (score and margin)
        near = [[j for j in range(n) if data.video_codes[j] == data.video_codes[i]
                 and abs(int(data.position[j]) - int(data.position[i])) <= h] for i in range(n)]  # fmt: skip
        a = [sum(a[j] for j in js) / len(js) for js in near]
        margin = [sum(margin[j] for j in js) / len(js) for js in near]
    tau = settings["segment_threshold"]
    if rule == "topk":
        anomalous = [m > 0 for m in margin]
    elif rule == "balanced":
        anomalous = [x >= tau and m > 0 for x, m in zip(a, margin, strict=True)]
    else:
        anomalous = [x >= tau for x in a]
    agg = settings["video_agg"]
    t_v = tau if settings["video_threshold"] is None else settings["video_threshold"]
    scores, decisions = [], []
    for v in range(len(data.video_ids)):
        mine = [i for i in range(n) if data.video_codes[i] == v]
        if agg == "ratio":  # share of anomalous segments ≥ ρ
            s_v = sum(anomalous[i] for i in mine) / len(mine)
            decisions.append(s_v >= settings["video_ratio"])
        else:  # max, or the mean of the k best segment scores, against the video threshold
            best = sorted((a[i] for i in mine), reverse=True)
            s_v = (
                best[0]
                if agg == "max"
                else sum(best[: settings["video_top_k"]]) / len(best[: settings["video_top_k"]])
            )
            decisions.append(s_v >= t_v)
        scores.append(s_v)
    return np.array(scores), np.array(decisions)


#: The reference above has no ties to break: continuous similarities, no percentile ranks.
REFERENCE_GRID = {**SMALL_GRID, "calibrate": ["none", "zscore"]}


def _fold_f1(data: TuneData, settings: dict, videos: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    _, pred = _documented_videos(data, settings)
    return float(f1_score(data.labels[videos] == 1, pred[videos], zero_division=0))


def test_held_out_scores_are_test_fold_scores() -> None:
    data = _synthetic()
    result = search(data, REFERENCE_GRID, "f1", folds=4, seed=0)
    assert len(result.folds) == 4
    ids = {v: i for i, v in enumerate(data.video_ids)}
    for fold, value in zip(result.folds, result.held_out, strict=True):
        test = np.array([ids[v] for v in fold["test_videos"]])
        train = np.array([ids[v] for v in fold["train_videos"]])
        assert not set(test) & set(train)
        assert value == pytest.approx(_fold_f1(data, fold["settings"], test))
        assert fold["train_f1"] == pytest.approx(_fold_f1(data, fold["settings"], train))
    assert result.in_sample == pytest.approx(_fold_f1(data, result.best, np.flatnonzero(data.labels >= 0)))


def test_selection_never_sees_test_labels() -> None:
    data = _synthetic(1)
    splits = fold_splits(data.labels, 3, seed=0)
    base = search(data, SMALL_GRID, "f1", splits=splits)
    changed = []
    for k, (_, test) in enumerate(splits):
        flipped = data.labels.copy()
        flipped[test] = 1 - flipped[test]  # scramble only this fold's test labels
        other = search(replace(data, labels=flipped), SMALL_GRID, "f1", splits=splits)
        assert other.folds[k]["settings"] == base.folds[k]["settings"]
        assert other.folds[k]["train_f1"] == base.folds[k]["train_f1"]
        changed.append(other.held_out[k] != base.held_out[k])
    assert any(changed)  # the test labels do count, but only in the held-out score


def test_auc_metric_without_annotations_uses_video_auc() -> None:
    from sklearn.metrics import roc_auc_score

    data = _synthetic(2)
    result = search(data, REFERENCE_GRID, "auc", folds=3)
    assert result.metric == "auc"
    ids = {v: i for i, v in enumerate(data.video_ids)}
    for fold, value in zip(result.folds, result.held_out, strict=True):
        test = np.array([ids[v] for v in fold["test_videos"]])
        scores, _ = _documented_videos(data, fold["settings"])
        # The held-out value is scikit-learn's video ROC-AUC of the fold's settings on its test videos.
        assert value == pytest.approx(roc_auc_score(data.labels[test] == 1, scores[test]))
        assert fold["test_f1"] == pytest.approx(_fold_f1(data, fold["settings"], test))


def test_tune_command_writes_a_config_that_detect_reads(built_index: Path, encoder, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    import yaml

    import vadindex.models.openclip as enc
    from vadindex._cli.main import cli
    from vadindex.detect import detect

    index = tmp_path / "ix"
    shutil.copytree(built_index, index)
    ann = tmp_path / "ann.txt"
    ann.write_text("fi001.mp4 Fighting 5 30 -1 -1\nfi010.mp4 Fighting 0 20 -1 -1\n"
                   "nofi001.mp4 Normal -1 -1 -1 -1\nnofi020.mp4 Normal -1 -1 -1 -1\n")  # fmt: skip
    detect(index, "ucf-crime", encoder=encoder)  # warms the text cache
    monkeypatch.setattr(enc, "load_encoder", lambda *a, **k: pytest.fail("tuning loaded a model"))
    grid = tmp_path / "grid.yaml"
    grid.write_text("knn_k: [0, 2]\nn_thresholds: [6]\n")
    out = tmp_path / "tuned.yaml"
    runner = CliRunner()
    res = runner.invoke(cli, ["tune", "--index", str(index), "-p", "ucf-crime", "--annotations", str(ann),
                              "--folds", "2", "--grid", str(grid), "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "Held-out f1" in res.output
    config = yaml.safe_load(out.read_text())
    assert config["prompts"] == "ucf-crime" and config["tuning"]["metric"] == "f1"
    assert len(config["tuning"]["folds"]) == 2
    res = runner.invoke(cli, ["detect", "--index", str(index), "--config", str(out), "--format", "json"])
    assert res.exit_code == 0, res.output
    import json

    got = json.loads(res.output)
    for key in ("rule", "segment_threshold", "calibrate", "smooth", "knn_k", "video_agg"):
        assert got["settings"][key] == config[key]
    assert got["metrics"]["f1"] == pytest.approx(config["tuning"]["in_sample"])
    # An option given on the command line overrides the file.
    res = runner.invoke(cli, ["detect", "--index", str(index), "--config", str(out), "--smooth", "3",
                              "--format", "json"])  # fmt: skip
    assert json.loads(res.output)["settings"]["smooth"] == 3


def test_bad_config_and_grid(tmp_path: Path) -> None:
    from vadindex.detect import load_detect_config
    from vadindex.detect.grid import load_grid

    bad = tmp_path / "c.yaml"
    bad.write_text("rule: threshold\nthreshold: 0.3\n")
    with pytest.raises(InputError, match="unknown option 'threshold'"):
        load_detect_config(bad)
    bad.write_text("smooth: 1.5\n")
    with pytest.raises(InputError, match="whole number"):
        load_detect_config(bad)
    bad.write_text("video_agg: max\nvideo_threshold: high\n")
    with pytest.raises(InputError, match="video_threshold must be a float"):
        load_detect_config(bad)
    bad.write_text("video_threshold: 0.3\n")
    assert load_detect_config(bad) == {"video_threshold": 0.3}
    bad.write_text("rule: [nope]\n")
    with pytest.raises(InputError, match="unknown rule"):
        load_grid(bad)
