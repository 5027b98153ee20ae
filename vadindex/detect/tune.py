"""``vadindex tune``: gather an index's cached similarities and labels, run the cross-validated grid
search of :mod:`vadindex.detect.grid`, and write the best settings as a ``detect --config`` file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from vadindex.config import DEFAULT_DEVICE, DEFAULT_EXAMPLE_WEIGHT, DEFAULT_TEXT_ENCODER, DEFAULT_TUNE_FOLDS
from vadindex.detect.grid import DEFAULT_GRID, TuneData, TuneResult, load_grid, search
from vadindex.detect.pipeline import ExampleList, with_examples, with_labels
from vadindex.detect.prompts import ClassPromptSet, load_prompt_set
from vadindex.detect.similarity import class_similarity_parts, load_neighbours, load_novelty, open_snapshot
from vadindex.errors import InputError
from vadindex.evaluate.annotations import build_ground_truth, load_annotations
from vadindex.evaluate.detection import without_segments
from vadindex.files import write_output
from vadindex.index.labels import label_rows
from vadindex.index.reader import IndexSnapshot


def prepare(
    snap: Any,
    spec: Any,
    grid: dict[str, list[Any]],
    annotations: list[Any] | None = None,
    use_cache: bool = True,
    device: str = DEFAULT_DEVICE,
    pretrained: str | None = None,
    text_encoder: str = DEFAULT_TEXT_ENCODER,
    use_labels: bool = False,
) -> TuneData:
    """Gather the cached similarities, neighbours, novelty, labels and annotations of an index for
    :func:`search`.

    ``device``, ``pretrained`` and ``text_encoder`` matter only for prompts not yet cached (see
    :func:`vadindex.detect.detect`). With ``use_labels`` the index's reviewer labels join ``spec``
    as examples, and the labelled segments (and the videos holding them) take no part in the metrics.
    """
    labelled = None
    if use_labels:
        spec, labels = with_labels(
            snap, spec, lambda plain: class_similarity_parts(
                snap, plain, use_cache=use_cache, device=device, pretrained=pretrained,
                text_encoder=text_encoder).mixed(DEFAULT_EXAMPLE_WEIGHT)[0],
        )  # fmt: skip
        rows = label_rows(snap, labels)
        labelled = np.zeros(snap.manifest.n_segments, dtype=bool)
        labelled[rows[rows >= 0]] = True
    frames = "frame-vote" in grid["rule"]
    parts = class_similarity_parts(snap, spec, frames=frames, use_cache=use_cache, device=device,
                                   pretrained=pretrained, text_encoder=text_encoder)  # fmt: skip
    sims, frame_sims = parts.mixed(DEFAULT_EXAMPLE_WEIGHT)
    segs = snap.segments
    videos = snap.videos
    ids = videos["video_id"].astype(str).to_numpy()
    codes = pd.Series(np.arange(len(ids)), index=ids).reindex(segs["video_id"].astype(str)).to_numpy()
    labels = pd.to_numeric(videos["label"], errors="coerce").fillna(-1).to_numpy().astype(np.int8)
    truth = None
    if annotations is not None:
        truth = build_ground_truth(segs, videos, annotations)
        labels = np.where(labels >= 0, labels, truth.video_label).astype(np.int8)
    if labelled is not None and labelled.any():
        held = np.unique(codes[labelled].astype(np.int64))
        labels = labels.copy()
        labels[held] = -1  # a video holding a labelled segment is judged by its own label: not scored
        if truth is not None:
            truth = without_segments(truth, labelled)
    k_max = max(int(k) for k in grid["knn_k"])
    neighbours = load_neighbours(snap, k_max, use_cache) if k_max > 0 else None
    novelty_k = max(int(k) for k in grid["novelty"])
    novelty = None
    if novelty_k > 0:
        novelty = {float(g): load_novelty(snap, novelty_k, float(g), use_cache) for g in grid["novelty_gap"]}
    return TuneData(
        sims=sims, is_anomaly=np.array(spec.is_anomaly), logit_scale=snap.manifest.logit_scale,
        video_codes=codes.astype(np.int64), position=segs["segment"].to_numpy(), video_ids=ids, labels=labels,
        frame_sims=frame_sims, frame_row=segs["frame_row"].to_numpy(), n_frames=segs["n_frames"].to_numpy(),
        neighbours=neighbours, truth=truth, parts=parts if parts.examples is not None else None,
        novelty=novelty, cameras=snap.segment_cameras(),
    )  # fmt: skip


def tune(
    index: str | os.PathLike[str] | Any | list[Any],
    prompts: Any,
    *,
    normal_prompts: Any = None,
    annotations: str | os.PathLike[str] | list[Any] | None = None,
    annotation_format: str = "auto",
    metric: str = "f1",
    folds: int = DEFAULT_TUNE_FOLDS,
    grid: str | os.PathLike[str] | dict[str, list[Any]] | None = None,
    seed: int = 0,
    device: str = DEFAULT_DEVICE,
    pretrained: str | None = None,
    text_encoder: str = DEFAULT_TEXT_ENCODER,
    anomaly_examples: ExampleList = None,
    normal_examples: ExampleList = None,
    use_labels: bool = False,
) -> TuneResult:
    """Tune the detection settings of an index (or of several together) by cross-validated grid search.

    Args:
        index: index folder or snapshot (its labels, or ``annotations``, are the ground truth), or a
            list of them: each is scored on its own and their videos are pooled.
        prompts, normal_prompts: as for :func:`vadindex.detect.detect`.
        annotations: temporal annotation file (frame-level AUC; labels for unlabelled videos); with
            several indexes, one file per index.
        annotation_format: ``auto``, ``ucf-crime`` or ``xd-violence``.
        metric: ``f1`` (video level) or ``auc`` (frame level with annotations, else video level).
        folds: cross-validation folds, split by video.
        grid: a grid YAML file or dict replacing entries of :data:`DEFAULT_GRID`.
        seed: seed of the fold shuffle.
        device: device of the text encoder, for prompts not in the index's cache.
        pretrained: the index's checkpoint file, if it moved.
        text_encoder: ``auto``, ``onnx`` or ``torch``, for prompts not in the index's cache.
        anomaly_examples, normal_examples: example classes, as for :func:`vadindex.detect.detect`.
        use_labels: turn each index's reviewer labels into examples; their segments (and videos)
            take no part in the metrics.

    Returns:
        A :class:`TuneResult`; ``result.best`` holds ``detect`` keyword arguments.
    """
    indexes = index if isinstance(index, list) else [index]
    snaps = [i if isinstance(i, IndexSnapshot) else open_snapshot(i) for i in indexes]
    spec = with_examples(load_prompt_set(prompts, normal_prompts), anomaly_examples, normal_examples)
    full_grid = {k: list(v) for k, v in DEFAULT_GRID.items()}
    if isinstance(grid, dict):
        full_grid.update({k.replace("-", "_"): list(v) for k, v in grid.items()})
    elif grid is not None:
        full_grid = load_grid(grid)
    files = annotations if isinstance(annotations, list) else [annotations] * len(snaps)
    if len(files) != len(snaps):
        raise InputError(f"give one annotation file per index ({len(snaps)}), got {len(files)}")
    datas = []
    for snap, file in zip(snaps, files, strict=True):
        anns = load_annotations(file, annotation_format) if file is not None else None
        datas.append(
            prepare(
                snap,
                spec,
                full_grid,
                anns,
                device=device,
                pretrained=pretrained,
                text_encoder=text_encoder,
                use_labels=use_labels,
            )
        )
    result = search(datas if len(datas) > 1 else datas[0], full_grid, metric, folds, seed)
    if use_labels:
        result.best["use_labels"] = True
    result.extra.update({"index": [str(s.path) for s in snaps] if len(snaps) > 1 else str(snaps[0].path),
                         "model": snaps[0].manifest.identity.describe(),
                         "generation": snaps[0].manifest.generation, "folds_requested": folds, "seed": seed})  # fmt: skip
    return result


def settings_yaml(
    result: TuneResult,
    prompts: Any,
    normal_prompts: Any = None,
    annotations: Any = None,
    examples: dict[str, Any] | None = None,
) -> str:
    """The best settings as a ``vadindex detect --config`` file, with the tuning report in ``tuning``.

    Args:
        examples: ``anomaly_examples`` / ``normal_examples`` the tuning used (image paths are
            written absolute).
    """
    best = dict(result.best)
    body: dict[str, Any] = {}
    if isinstance(prompts, ClassPromptSet):
        body["prompts"] = prompts.to_dict()
    elif prompts is not None:
        body["prompts"] = _portable(prompts)
    if normal_prompts is not None:
        body["normal_prompts"] = _portable(normal_prompts)
    for key, value in (examples or {}).items():
        if value:
            items = value.split(";") if isinstance(value, str) else list(value)
            body[key] = [str(Path(e).expanduser().resolve()) if Path(e).expanduser().is_file() else e.strip()
                         for e in items if e.strip()]  # fmt: skip
    body.update(best)
    if body.get("video_threshold") is None:
        body.pop("video_threshold", None)
    if annotations is not None:
        body["annotations"] = str(Path(annotations).expanduser().resolve())
    report = result.to_dict()
    report["folds"] = [{k: v for k, v in f.items() if not k.endswith("_videos")} | {
        "test_videos": len(f["test_videos"])} for f in report["folds"]]  # fmt: skip
    body["tuning"] = report
    header = (
        f"# Written by `vadindex tune`: best settings by {result.metric}, held-out "
        f"{result.held_out_mean:.4f} over {len(result.folds)} folds split by video.\n"
        "# Use with: vadindex detect --index INDEX --config THIS_FILE (explicit options override).\n"
    )
    return header + yaml.safe_dump(_plain(body), sort_keys=False)


def write_settings(
    result: TuneResult,
    out: str | os.PathLike[str],
    prompts: Any,
    normal_prompts: Any = None,
    annotations: Any = None,
    examples: dict[str, Any] | None = None,
) -> Path:
    """Write :func:`settings_yaml` to ``out`` atomically (creating its folder); returns its path."""
    return write_output(out, settings_yaml(result, prompts, normal_prompts, annotations, examples))


def _portable(prompts: Any) -> Any:
    """Prompts as a config value: a file as an absolute path (the config may be used elsewhere)."""
    if not isinstance(prompts, str):
        return list(prompts)
    path = Path(prompts).expanduser()
    if "\n" not in prompts and ";" not in prompts and path.is_file():
        return str(path.resolve())
    return prompts


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
