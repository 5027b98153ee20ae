"""``vadindex tune``: gather an index's cached similarities and labels, run the cross-validated grid
search of :mod:`vadindex.detect.grid`, and write the best settings as a ``detect --config`` file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from vadindex.config import DEFAULT_DEVICE, DEFAULT_TEXT_ENCODER, DEFAULT_TUNE_FOLDS
from vadindex.detect.grid import DEFAULT_GRID, TuneData, TuneResult, load_grid, search
from vadindex.detect.prompts import ClassPromptSet, load_prompt_set
from vadindex.detect.similarity import compute_class_similarities, load_neighbours, open_snapshot
from vadindex.evaluate.annotations import build_ground_truth, load_annotations
from vadindex.files import write_output
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
) -> TuneData:
    """Gather the cached similarities, neighbours, labels and annotations of an index for :func:`search`.

    ``device``, ``pretrained`` and ``text_encoder`` matter only for prompts not yet cached (see
    :func:`vadindex.detect.detect`).
    """
    frames = "frame-vote" in grid["rule"]
    sims, frame_sims = compute_class_similarities(
        snap, spec, frames=frames, use_cache=use_cache, device=device, pretrained=pretrained,
        text_encoder=text_encoder,
    )  # fmt: skip
    segs = snap.segments
    videos = snap.videos
    ids = videos["video_id"].astype(str).to_numpy()
    codes = pd.Series(np.arange(len(ids)), index=ids).reindex(segs["video_id"].astype(str)).to_numpy()
    labels = pd.to_numeric(videos["label"], errors="coerce").fillna(-1).to_numpy().astype(np.int8)
    truth = None
    if annotations is not None:
        truth = build_ground_truth(segs, videos, annotations)
        labels = np.where(labels >= 0, labels, truth.video_label).astype(np.int8)
    k_max = max(int(k) for k in grid["knn_k"])
    neighbours = load_neighbours(snap, k_max, use_cache) if k_max > 0 else None
    return TuneData(
        sims=sims, is_anomaly=np.array(spec.is_anomaly), logit_scale=snap.manifest.logit_scale,
        video_codes=codes.astype(np.int64), position=segs["segment"].to_numpy(), video_ids=ids, labels=labels,
        frame_sims=frame_sims, frame_row=segs["frame_row"].to_numpy(), n_frames=segs["n_frames"].to_numpy(),
        neighbours=neighbours, truth=truth,
    )  # fmt: skip


def tune(
    index: str | os.PathLike[str] | Any,
    prompts: Any,
    *,
    normal_prompts: Any = None,
    annotations: str | os.PathLike[str] | None = None,
    annotation_format: str = "auto",
    metric: str = "f1",
    folds: int = DEFAULT_TUNE_FOLDS,
    grid: str | os.PathLike[str] | dict[str, list[Any]] | None = None,
    seed: int = 0,
    device: str = DEFAULT_DEVICE,
    pretrained: str | None = None,
    text_encoder: str = DEFAULT_TEXT_ENCODER,
) -> TuneResult:
    """Tune the detection settings of an index by cross-validated grid search.

    Args:
        index: index folder or snapshot (its labels, or ``annotations``, are the ground truth).
        prompts, normal_prompts: as for :func:`vadindex.detect.detect`.
        annotations: temporal annotation file (frame-level AUC; labels for unlabelled videos).
        annotation_format: ``auto``, ``ucf-crime`` or ``xd-violence``.
        metric: ``f1`` (video level) or ``auc`` (frame level with annotations, else video level).
        folds: cross-validation folds, split by video.
        grid: a grid YAML file or dict replacing entries of :data:`DEFAULT_GRID`.
        seed: seed of the fold shuffle.
        device: device of the text encoder, for prompts not in the index's cache.
        pretrained: the index's checkpoint file, if it moved.
        text_encoder: ``auto``, ``onnx`` or ``torch``, for prompts not in the index's cache.

    Returns:
        A :class:`TuneResult`; ``result.best`` holds ``detect`` keyword arguments.
    """
    snap = index if isinstance(index, IndexSnapshot) else open_snapshot(index)
    spec = load_prompt_set(prompts, normal_prompts)
    full_grid = {k: list(v) for k, v in DEFAULT_GRID.items()}
    if isinstance(grid, dict):
        full_grid.update({k.replace("-", "_"): list(v) for k, v in grid.items()})
    elif grid is not None:
        full_grid = load_grid(grid)
    anns = None
    if annotations is not None:
        anns = load_annotations(annotations, annotation_format)
    data = prepare(
        snap, spec, full_grid, anns, device=device, pretrained=pretrained, text_encoder=text_encoder
    )
    result = search(data, full_grid, metric, folds, seed)
    result.extra.update({"index": str(snap.path), "model": snap.manifest.identity.describe(),
                         "generation": snap.manifest.generation, "folds_requested": folds, "seed": seed})  # fmt: skip
    return result


def settings_yaml(
    result: TuneResult, prompts: Any, normal_prompts: Any = None, annotations: Any = None
) -> str:
    """The best settings as a ``vadindex detect --config`` file, with the tuning report in ``tuning``."""
    best = dict(result.best)
    body: dict[str, Any] = {}
    if isinstance(prompts, ClassPromptSet):
        body["prompts"] = prompts.to_dict()
    elif prompts is not None:
        body["prompts"] = _portable(prompts)
    if normal_prompts is not None:
        body["normal_prompts"] = _portable(normal_prompts)
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
) -> Path:
    """Write :func:`settings_yaml` to ``out`` atomically (creating its folder); returns its path."""
    return write_output(out, settings_yaml(result, prompts, normal_prompts, annotations))


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
