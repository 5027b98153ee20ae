"""``vadindex`` commands: parse options, call the public API, print results."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

import click

from vadindex import __version__
from vadindex import config as C

EXIT_ERROR = 1
EXIT_USAGE = 2
#: ``vadindex build`` finished, but some videos could not be indexed (listed in failures.csv).
EXIT_PARTIAL = 3

log = logging.getLogger("vadindex")


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else logging.DEBUG if verbose else logging.WARNING
    logger = logging.getLogger("vadindex")
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def _friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Report :class:`VadindexError` and ``OSError`` as one line on stderr, without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from vadindex.errors import InputError, VadindexError

        try:
            return fn(*args, **kwargs)
        except VadindexError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(EXIT_USAGE if isinstance(exc, InputError) else EXIT_ERROR)
        except OSError as exc:  # an output path that cannot be written, a full disk, a permission
            log.debug("traceback", exc_info=True)
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"Error: {where}{exc.strerror or exc}", err=True)
            sys.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            click.echo("Interrupted; committed work is kept.", err=True)
            sys.exit(130)

    return wrapper


def _format_option(choices: tuple[str, ...] = ("table", "csv", "json")) -> Callable[..., Any]:
    return click.option(
        "--format", "fmt", type=click.Choice(choices), default=choices[0], show_default=True,
        help="Output format; json and csv are for scripts.",
    )  # fmt: skip


def _print_table(frame: Any, fmt: str, floats: str = "{:.4f}") -> None:
    if fmt == "json":
        click.echo(json.dumps(json.loads(frame.to_json(orient="records", double_precision=6)), indent=2))
    elif fmt == "csv":
        click.echo(frame.to_csv(index=False), nl=False)
    elif frame.empty:
        click.echo("(no results)")
    else:
        click.echo(frame.to_string(index=False, float_format=floats.format))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="vadindex")
@click.option("-v", "--verbose", count=True, help="More log output.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
def cli(verbose: int, quiet: bool) -> None:
    """Find and flag events in video with CLIP: index once, then search and detect instantly.

    \b
      vadindex build videos/ --index indexes/cams          # decode + encode once
      vadindex query "a person climbing a fence" --index indexes/cams
      vadindex detect --index indexes/cams --prompts "people fighting; a fire"
    """
    _setup_logging(verbose, quiet)


@cli.command()
@click.argument("sources", nargs=-1, type=click.Path(path_type=str))
@click.option(
    "--index",
    "-i",
    "index",
    required=True,
    type=click.Path(path_type=str),
    help="Index folder (created if missing).",
)
@click.option(
    "--manifest",
    type=click.Path(path_type=str),
    help="CSV with a path column and optional label (normal/anomaly or 0/1) and class columns.",
)
@click.option(
    "--model",
    default=None,
    help=f"open_clip architecture or a built-in model (vadindex-tiny, vadindex-test). [default: the index's, else {C.DEFAULT_MODEL}]",
)
@click.option(
    "--pretrained",
    default=None,
    help="open_clip pretrained tag, a local checkpoint file, 'builtin' or 'random' (tests only). [default: the model's usual tag]",
)
@click.option("--device", default=C.DEFAULT_DEVICE, show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option(
    "--batch-size",
    default=C.DEFAULT_BATCH_SIZE,
    show_default=True,
    type=int,
    help="Frames per encoder batch.",
)
@click.option(
    "--fps",
    default=None,
    type=float,
    help=f"Frames sampled per second. [default: {C.DEFAULT_FPS:g}, or the index's]",
)
@click.option(
    "--segment-seconds",
    default=None,
    type=float,
    help=f"Segment length in seconds. [default: {C.DEFAULT_SEGMENT_SECONDS:g}, or the index's]",
)
@click.option(
    "--commit-every",
    default=C.DEFAULT_COMMIT_EVERY,
    show_default=True,
    type=int,
    help="Videos per commit; a crash loses at most these.",
)
@click.option(
    "--video-timeout",
    default=None,
    type=float,
    help="Abandon a video (reported as failed) that takes longer than this many seconds in all. [default: no limit]",
)
@click.option(
    "--stall-timeout",
    default=C.DEFAULT_STALL_TIMEOUT,
    show_default=True,
    type=float,
    help="Abandon a video whose decoder produces nothing for this many seconds.",
)
@click.option("--progress/--no-progress", default=None, help="Progress bar. [default: on a terminal]")
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "int8", "fp16"]),
    default=C.DEFAULT_PRECISION,
    show_default=True,
    help="Encoder arithmetic. auto: fp16 on CUDA; on a CPU, int8 (about 2x faster) once 32 frames of its first batches match fp32 to a cosine of 0.998, else fp32. fp32; int8 (CPU, unchecked); fp16 (CUDA).",
)
@click.option(
    "--index-type",
    type=click.Choice(["auto", "flat", "ivf", "hnsw"]),
    default=None,
    help="FAISS index: flat (exact), ivf or hnsw (approximate, for large indexes), auto (flat below 200,000 segments, then ivf). [default: the index's, else auto]",
)
@click.option(
    "--backend",
    type=click.Choice(["torch", "onnxruntime"]),
    default=C.DEFAULT_BACKEND,
    show_default=True,
    help="Image-tower runtime; onnxruntime (CPU, fp32, same embeddings, ~1.2x faster than torch fp32) needs `pip install onnxruntime onnx`.",
)
@_format_option(("text", "json"))
@_friendly_errors
def build(sources: tuple[str, ...], index: str, manifest: str | None, model: str | None, pretrained: str | None,
          device: str, batch_size: int, fps: float | None, segment_seconds: float | None, commit_every: int,
          video_timeout: float | None, stall_timeout: float, progress: bool | None, precision: str,
          index_type: str | None, backend: str, fmt: str) -> None:  # fmt: skip
    """Index videos: decode, sample, encode with CLIP and store every segment.

    SOURCES are video files and folders (searched recursively). Videos already in the index are
    skipped, so running build again with more sources encodes only the new ones. A video that
    cannot be read is reported and skipped; the build goes on, lists it in INDEX/failures.csv and
    exits with status 3. Work is committed every --commit-every videos: after a crash or kill,
    running the same command again finishes the build. Only one build may write an index at a
    time; a second one is refused at once (status 1).

    \b
    Examples:
      vadindex build cams/ --index indexes/cams
      vadindex build --manifest ucf_test.csv --index indexes/ucf --model ViT-L-14 --pretrained openai
      vadindex build ../shared/data/videos --index /tmp/x --model ViT-B-32 --pretrained random
    """
    from vadindex.ingest import build_index

    if not sources and not manifest:
        raise click.UsageError("give video files or folders, or --manifest CSV")
    show = sys.stderr.isatty() if progress is None else progress
    summary = build_index(
        list(sources), index, manifest=manifest, model=model, pretrained=pretrained, device=device,
        batch_size=batch_size, fps=fps, segment_seconds=segment_seconds, commit_every=commit_every,
        video_timeout=video_timeout, stall_timeout=stall_timeout, progress=show, precision=precision,
        index_type=index_type, backend=backend,
    )  # fmt: skip
    if fmt == "json":
        click.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        s = summary
        click.echo(
            f"Indexed {s.videos_added} videos ({s.segments_added} segments, {s.frames_encoded} frames) in "
            f"{s.seconds:.1f} s, {s.frames_per_second:.1f} frames/s; {s.videos_skipped} already indexed, "
            f"{len(s.failures)} failed. Index {s.index}: {s.total_videos} videos, {s.total_segments} segments "
            f"[{s.model}, {s.precision or '?'}]."
        )
        for path, reason in s.failures:
            click.echo(f"  failed: {path}: {reason}", err=True)
    if summary.failures:
        sys.exit(EXIT_PARTIAL)


@cli.command()
@click.argument("text", required=False)
@click.option("--index", "-i", "index", required=True, type=click.Path(path_type=str), help="Index folder.")
@click.option(
    "-k", "k", default=C.DEFAULT_TOP_K_RESULTS, show_default=True, type=int, help="Number of results."
)
@click.option(
    "--video", default=None, help="Only videos whose name or path matches this glob, e.g. 'fight/*'."
)
@click.option(
    "--image", type=click.Path(path_type=str), default=None, help="Query by example image instead of text."
)
@click.option(
    "--device", default=C.DEFAULT_DEVICE, show_default=True, help="Device for the text/image encoder."
)
@click.option("--pretrained", default=None, help="The index's checkpoint file, if it moved.")
@click.option(
    "--exact", is_flag=True, help="Scan every segment even when the index is approximate (ivf, hnsw)."
)
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "int8", "fp16"]),
    default=C.DEFAULT_PRECISION,
    show_default=True,
    help="Image-encoder arithmetic for --image (text is always encoded in full precision).",
)
@_format_option()
@_friendly_errors
def query(text: str | None, index: str, k: int, video: str | None, image: str | None, device: str,
          pretrained: str | None, exact: bool, precision: str, fmt: str) -> None:  # fmt: skip
    """Search segments by text (or by an example image), best first.

    \b
    Examples:
      vadindex query "a person lying on the ground" --index indexes/cams
      vadindex query "a red car" --index indexes/cams -k 20 --video 'lot-*' --format json
      vadindex query --image suspect.jpg --index indexes/cams
    """
    from vadindex.errors import InputError
    from vadindex.search import encode_query_image, load_index_encoder, search_vector
    from vadindex.store import open_index

    if (text is None) == (image is None):
        raise InputError("give a query TEXT or --image PATH (one of them)")
    if text is not None and not text.strip():
        raise InputError("empty query text")
    if k < 1:
        raise InputError(f"-k must be at least 1, got {k}")
    snap = open_index(index)
    encoder = load_index_encoder(snap, device, pretrained, precision)
    vector = encoder.encode_texts([text])[0] if text is not None else encode_query_image(encoder, image)  # type: ignore[arg-type]
    results = search_vector(snap, vector, k, video, exact=exact)
    _print_table(results.drop(columns=["video_id"]) if fmt == "table" else results, fmt)


_PROMPTS_HELP = "Anomaly prompts: a built-in set (ucf-crime, xd-violence, general), a .yaml set, ';'-separated text or a file with one per line."


_normal_prompts_option = click.option(
    "--normal-prompts", default=None,
    help="Normal prompts, same forms (replace a set's normal classes). [default: the set's, or a built-in list of everyday scenes]",
)  # fmt: skip


def _explicit(ctx: click.Context, name: str) -> bool:
    from click.core import ParameterSource

    return ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP, None)


@cli.command(name="detect")
@click.option("--index", "-i", "index", required=True, type=click.Path(path_type=str), help="Index folder.")
@click.option("--prompts", "-p", default=None, help=_PROMPTS_HELP + " Required unless --config sets it.")
@_normal_prompts_option
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=str),
    default=None,
    help="YAML settings (as `vadindex tune` writes); options given here override it.",
)
@click.option(
    "--rule",
    type=click.Choice(C.RULES),
    default=C.DEFAULT_RULE,
    show_default=True,
    help="Segment rule (see --help text).",
)
@click.option(
    "--segment-threshold",
    default=C.DEFAULT_SEGMENT_THRESHOLD,
    show_default=True,
    type=float,
    help="Threshold on the segment score.",
)
@click.option(
    "--top-k",
    default=C.DEFAULT_PROMPT_TOP_K,
    show_default=True,
    type=int,
    help="Classes that vote in the topk rule.",
)
@click.option(
    "--calibrate",
    type=click.Choice(C.CALIBRATIONS),
    default=C.DEFAULT_CALIBRATE,
    show_default=True,
    help="Calibrate each class against its similarities over the whole index.",
)
@click.option(
    "--smooth",
    default=C.DEFAULT_SMOOTH,
    show_default=True,
    type=int,
    help="Average each score with this many neighbouring segments each side (same video).",
)
@click.option(
    "--knn-k",
    default=C.DEFAULT_KNN_K,
    show_default=True,
    type=int,
    help="Blend each score with its K nearest segments in the index (0: off).",
)
@click.option(
    "--knn-alpha",
    default=C.DEFAULT_KNN_ALPHA,
    show_default=True,
    type=float,
    help="Weight of the neighbours' mean score.",
)
@click.option(
    "--frame-votes",
    default=C.DEFAULT_FRAME_VOTES,
    show_default=True,
    type=int,
    help="frame-vote rule: frames of a segment that must pass the threshold.",
)
@click.option(
    "--video-agg",
    type=click.Choice(C.VIDEO_AGGS),
    default=C.DEFAULT_VIDEO_AGG,
    show_default=True,
    help="Video score: ratio of anomalous segments, max segment score, or mean of the top segment scores.",
)
@click.option(
    "--video-ratio",
    default=C.DEFAULT_VIDEO_RATIO,
    show_default=True,
    type=float,
    help="ratio: a video is anomalous when at least this fraction of its segments is.",
)
@click.option(
    "--video-threshold",
    default=None,
    type=float,
    help="max/topk-mean: threshold on the video score. [default: --segment-threshold]",
)
@click.option(
    "--video-top-k",
    default=C.DEFAULT_VIDEO_TOP_K,
    show_default=True,
    type=int,
    help="topk-mean: segments averaged.",
)
@click.option(
    "--annotations",
    type=click.Path(path_type=str),
    default=None,
    help="UCF-Crime or XD-Violence temporal annotation file: adds frame-level AUC/AP, segment-level and per-class metrics.",
)
@click.option(
    "--annotation-format",
    type=click.Choice(["auto", "ucf-crime", "xd-violence"]),
    default="auto",
    show_default=True,
    help="Format of --annotations.",
)
@click.option(
    "--cache/--no-cache",
    "use_cache",
    default=True,
    show_default=True,
    help="Reuse text embeddings and similarities cached in the index folder.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=str),
    default=None,
    help="Write segments.csv, videos.csv and detect.json here.",
)
@click.option("--device", default=C.DEFAULT_DEVICE, show_default=True, help="Device for the text encoder.")
@click.option("--pretrained", default=None, help="The index's checkpoint file, if it moved.")
@click.option(
    "--segments",
    "json_segments",
    type=click.Choice(["all", "anomalous", "none"]),
    default="all",
    show_default=True,
    help="Segments listed by --format json (videos and metrics are always there).",
)
@_format_option(("table", "json"))
@click.pass_context
@_friendly_errors
def detect_cmd(ctx: click.Context, index: str, prompts: str | None, normal_prompts: str | None, config_file: str | None,
               rule: str, segment_threshold: float, top_k: int, calibrate: str, smooth: int, knn_k: int,
               knn_alpha: float, frame_votes: int, video_agg: str, video_ratio: float, video_threshold: float | None,
               video_top_k: int, annotations: str | None, annotation_format: str, use_cache: bool, out: str | None,
               device: str, pretrained: str | None, json_segments: str, fmt: str) -> None:  # fmt: skip
    """Flag anomalous segments and videos by comparing them with text prompts.

    Segment score a = sum over anomaly classes of softmax(logit_scale * cosine) over all classes;
    with --calibrate, a = the highest calibrated anomaly-class similarity (z-score or percentile
    over the index). Rules: threshold (a >= --segment-threshold); topk (anomaly classes are a
    majority of the --top-k classes most similar to the segment); balanced (threshold, and the best
    anomaly class beats the best normal class); frame-vote (at least --frame-votes of the segment's
    frames pass the threshold). --knn-k and --smooth then blend scores with similar segments and
    with neighbouring segments. Text embeddings and similarities are cached in the index, so
    re-running with other rules or thresholds loads no model.

    \b
    Examples:
      vadindex detect --index indexes/cams --prompts "people fighting; a building on fire"
      vadindex detect --index indexes/ucf --prompts ucf-crime --calibrate zscore --segment-threshold 2
      vadindex detect --index indexes/ucf -p ucf-crime --annotations Temporal_Anomaly_Annotation.txt
      vadindex detect --index indexes/ucf --config tuned.yaml --format json
    """
    from vadindex.detect import detect, load_detect_config, write_outputs

    options: dict[str, Any] = dict(
        prompts=prompts, normal_prompts=normal_prompts, rule=rule, segment_threshold=segment_threshold,
        top_k=top_k, calibrate=calibrate, smooth=smooth, knn_k=knn_k, knn_alpha=knn_alpha,
        frame_votes=frame_votes, video_agg=video_agg, video_ratio=video_ratio, video_threshold=video_threshold,
        video_top_k=video_top_k, annotations=annotations,
    )  # fmt: skip
    if config_file:
        for key, value in load_detect_config(config_file).items():
            if not _explicit(ctx, key):
                options[key] = value
    if not options["prompts"]:
        raise click.UsageError("give --prompts (or a --config file that sets prompts)")
    result = detect(
        index, options.pop("prompts"), **options, annotation_format=annotation_format, device=device,
        pretrained=pretrained, use_cache=use_cache,
    )  # fmt: skip
    if out:
        written = write_outputs(result, out)
        log.info("wrote %s", ", ".join(str(p) for p in written))
    if fmt == "json":
        result.write_json(sys.stdout, segments=json_segments)
        return
    videos = result.videos.drop(columns=["video_id"])
    _print_table(videos, "table", "{:.3f}")
    n_anom = int(result.videos["anomalous"].sum())
    click.echo(f"\n{n_anom} of {len(videos)} videos anomalous; {result.n_anomalous_segments} of "
               f"{result.n_segments} segments.")  # fmt: skip
    if result.metrics:
        m = result.metrics
        (tn, fp), (fn, tp) = m["confusion_matrix"]
        click.echo(f"Video-level: precision {m['precision']:.3f}  recall {m['recall']:.3f}  F1 {m['f1']:.3f}  "
                   f"[tn {tn} fp {fp} fn {fn} tp {tp}]")  # fmt: skip
        if "frame_auc" in m:
            fmt_v = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
            click.echo(f"Frame-level: AUC {fmt_v(m['frame_auc'])}  AP {fmt_v(m['frame_ap'])}  over {m['frames']} "
                       f"frames of {m['annotated_videos']} annotated videos"
                       + (f"; {m['annotations_missing']} annotated videos not in the index" if m["annotations_missing"] else ""))  # fmt: skip
    if out:
        click.echo(f"Wrote {out}/segments.csv, videos.csv, detect.json")


@cli.command(name="tune")
@click.option(
    "--index",
    "-i",
    "index",
    required=True,
    type=click.Path(path_type=str),
    help="Index folder (labelled, or with --annotations).",
)
@click.option("--prompts", "-p", required=True, help=_PROMPTS_HELP)
@_normal_prompts_option
@click.option(
    "--annotations",
    type=click.Path(path_type=str),
    default=None,
    help="Temporal annotation file: frame-level AUC, and labels for unlabelled videos.",
)
@click.option(
    "--annotation-format",
    type=click.Choice(["auto", "ucf-crime", "xd-violence"]),
    default="auto",
    show_default=True,
    help="Format of --annotations.",
)
@click.option(
    "--metric",
    type=click.Choice(["f1", "auc"]),
    default="f1",
    show_default=True,
    help="Maximise video F1, or AUC (frame-level with --annotations, else video-level).",
)
@click.option(
    "--folds",
    default=C.DEFAULT_TUNE_FOLDS,
    show_default=True,
    type=int,
    help="Cross-validation folds, split by video.",
)
@click.option(
    "--grid",
    type=click.Path(path_type=str),
    default=None,
    help="YAML file replacing entries of the search grid (rule, calibrate, smooth, knn_k, video_ratio...).",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the fold shuffle.")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=str),
    help="Write the best settings here (YAML for `detect --config`).",
)
@click.option(
    "--device",
    default=C.DEFAULT_DEVICE,
    show_default=True,
    help="Device for the text encoder (prompts not cached yet).",
)
@click.option("--pretrained", default=None, help="The index's checkpoint file, if it moved.")
@_format_option(("text", "json"))
@_friendly_errors
def tune_cmd(index: str, prompts: str, normal_prompts: str | None, annotations: str | None, annotation_format: str,
             metric: str, folds: int, grid: str | None, seed: int, out: str, device: str, pretrained: str | None,
             fmt: str) -> None:  # fmt: skip
    """Grid-search rules, thresholds and aggregation; report the held-out score of k-fold CV by video.

    For each fold the best settings on the training videos are scored on the held-out videos; the
    settings written to --out are the best on all labelled videos. Similarities come from the
    index's cache, so nothing is re-encoded.

    \b
    Examples:
      vadindex tune --index indexes/ucf -p ucf-crime --annotations ann.txt --metric auc --out tuned.yaml
      vadindex detect --index indexes/ucf --config tuned.yaml
    """
    from pathlib import Path

    from vadindex.store import write_text_atomic
    from vadindex.tune import settings_yaml, tune

    result = tune(
        index, prompts, normal_prompts=normal_prompts, annotations=annotations, annotation_format=annotation_format,
        metric=metric, folds=folds, grid=grid, seed=seed, device=device, pretrained=pretrained,
    )  # fmt: skip
    target = Path(out).expanduser()
    if target.parent != Path(""):
        target.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(target, settings_yaml(result, prompts, normal_prompts, annotations))
    if fmt == "json":
        click.echo(json.dumps({"best": result.best, **result.to_dict()}, indent=2, default=str))
        return
    vals = ", ".join("n/a" if v is None or v != v else f"{v:.3f}" for v in result.held_out)
    click.echo(f"Held-out {metric}: {result.held_out_mean:.4f} (folds: {vals}); in-sample {result.in_sample:.4f} "
               f"over {result.candidates} candidates.")  # fmt: skip
    click.echo("Best: " + "  ".join(f"{k}={v}" for k, v in result.best.items() if v is not None))
    click.echo(f"Wrote {target}; use it with: vadindex detect --index {index} --config {target}")


@cli.command(name="manifest")
@click.argument("root", type=click.Path(path_type=str))
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=str),
    help="Manifest CSV to write (path,label,class).",
)
@click.option(
    "--layout",
    type=click.Choice(["auto", "ucf-crime", "xd-violence"]),
    default="auto",
    show_default=True,
    help="Naming convention of the dataset.",
)
@click.option(
    "--only",
    type=click.Path(path_type=str),
    default=None,
    help="Keep only videos named at the start of this file's lines (an annotation file, Anomaly_Test.txt).",
)
@_friendly_errors
def manifest_cmd(root: str, out: str, layout: str, only: str | None) -> None:
    """Make a manifest (path,label,class) from UCF-Crime class folders or XD-Violence file names.

    \b
    Examples:
      vadindex manifest UCF_Crimes/Videos --out ucf.csv --only Temporal_Anomaly_Annotation.txt
      vadindex manifest XD-Violence/test --out xd.csv
      vadindex build --manifest ucf.csv --index indexes/ucf
    """
    from collections import Counter
    from pathlib import Path

    from vadindex.datasets import build_manifest, manifest_csv
    from vadindex.store import write_text_atomic

    target = Path(out).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    rows = build_manifest(root, layout, only, relative_to=target.parent)
    write_text_atomic(target, manifest_csv(rows))
    counts = Counter(r.label or "unknown" for r in rows)
    click.echo(
        f"Wrote {target}: {len(rows)} videos ({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))})."
    )


@cli.command()
@click.argument("index", type=click.Path(path_type=str))
@_format_option(("text", "json"))
@_friendly_errors
def info(index: str, fmt: str) -> None:
    """Show an index's manifest and counts.

    \b
    Example:
      vadindex info indexes/cams --format json
    """
    from dataclasses import asdict

    from vadindex.store import open_index

    snap = open_index(index)
    m = snap.manifest
    failures = _count_failures(snap.path)
    if fmt == "json":
        data = asdict(m)
        data["parts"] = len(m.parts)
        data["files"] = len(m.files)
        data["failures_last_build"] = failures
        data["faiss_covered"] = m.faiss_covered
        data["precision"] = sorted({x for p in m.parts for x in p.precision.split(",") if x})
        click.echo(json.dumps(data, indent=2))
        return
    size = sum(int(r.get("bytes", 0)) for r in m.files.values())
    click.echo(f"index      {snap.path}")
    click.echo(f"format     {m.format_version} (generation {m.generation}, vadindex {m.vadindex_version})")
    click.echo(f"model      {m.identity.describe()}  dim {m.dim}  logit_scale {m.logit_scale:.2f}")
    click.echo(f"sampling   {m.sampling['fps']:g} fps, {m.sampling['segment_seconds']:g} s segments")
    click.echo(
        f"contents   {m.n_videos} videos, {m.n_segments} segments, {m.n_frames} frames in {len(m.parts)} parts"
    )
    if m.faiss_file:
        from vadindex.ann import describe

        click.echo(f"search     --index-type {m.index_type}: {describe(snap.faiss_index())}")
        if m.faiss_covered < m.n_segments:
            click.echo(f"           FAISS file covers {m.faiss_covered} of {m.n_segments} segments; the rest are "
                       "searched exactly until the build ends")  # fmt: skip
    precisions = sorted({x for p in m.parts for x in p.precision.split(",") if x})
    if precisions:
        click.echo(f"precision  image encoder {', '.join(precisions)}")
    if m.files:
        click.echo(f"files      {len(m.files)}, {size / 1e6:.1f} MB, SHA-256 recorded (`vadindex check`)")
    if failures:
        click.echo(f"failures   {failures} videos the last build could not index ({snap.path}/failures.csv)")
    click.echo(f"created    {m.created}")
    click.echo(f"updated    {m.updated}")


def _count_failures(index: Any) -> int:
    """Rows of the index's failures.csv (0 when absent or unreadable)."""
    from pathlib import Path

    try:
        with open(Path(index) / "failures.csv", encoding="utf-8") as fh:
            return max(sum(1 for _ in fh) - 1, 0)
    except OSError:
        return 0


@cli.command(name="check")
@click.argument("index", type=click.Path(path_type=str))
@click.option("--quick", is_flag=True, help="Compare file sizes only; skip hashing every file.")
@_format_option(("text", "json"))
@_friendly_errors
def check_cmd(index: str, quick: bool, fmt: str) -> None:
    """Verify an index: exit 0 when it is intact, 1 when something is wrong (each problem listed).

    Checks that the manifest adds up; every file it names is present, loads (no pickle) and has
    the size and SHA-256 recorded at commit; the FAISS index, segment table, vectors and manifest
    hold the same rows and vectors; frame rows and the video table agree with the segments.

    \b
    Examples:
      vadindex check indexes/cams
      vadindex check indexes/cams --quick --format json
    """
    from vadindex.verify import check_index

    report = check_index(index, checksums=not quick)
    if fmt == "json":
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        c = report.counts
        if report.ok:
            how = "sizes" if quick else "SHA-256"
            click.echo(f"OK {report.index}: generation {c.get('generation')}, {c.get('videos')} videos, "
                       f"{c.get('segments')} segments, {c.get('frames')} frames; files checked by {how}.")  # fmt: skip
        else:
            click.echo(f"DAMAGED {report.index}: {len(report.problems)} problems", err=True)
        for problem in report.problems:
            click.echo(f"  problem: {problem}", err=True)
        for note in report.notes:
            click.echo(f"  note: {note}", err=True)
    if not report.ok:
        sys.exit(EXIT_ERROR)


@cli.command()
@click.option(
    "--out",
    "out",
    default="demo-out",
    show_default=True,
    type=click.Path(path_type=str),
    help="Output folder: scenes/, index/, detect/.",
)
@click.option(
    "--seed", default=None, type=int, help="Scene-set seed. [default: a fixed seed never used in training]"
)
@click.option(
    "--normal", "n_normal", default=10, show_default=True, type=int, help="Normal videos to generate."
)
@click.option(
    "--anomalous", "n_anomaly", default=10, show_default=True, type=int, help="Anomalous videos to generate."
)
@click.option("--device", default=C.DEFAULT_DEVICE, show_default=True, help="Encoder device.")
@click.option("--progress/--no-progress", default=None, help="Progress bar. [default: on a terminal]")
@_format_option(("text", "json"))
@_friendly_errors
def demo(
    out: str, seed: int | None, n_normal: int, n_anomaly: int, device: str, progress: bool | None, fmt: str
) -> None:
    """Run the whole job offline on generated scenes with the built-in vadindex-tiny model.

    Renders surveillance-like scenes (street, car park, corridor) with ground truth, indexes them,
    runs open-set queries and a detection with prompts never seen in training, and evaluates
    against the ground truth. vadindex-tiny is a demonstration model for these synthetic scenes,
    not a substitute for a pretrained CLIP on real footage.

    \b
    Examples:
      vadindex demo
      vadindex demo --out /tmp/demo --seed 11 --format json
    """
    from vadindex.demo import run_demo

    show = sys.stderr.isatty() if progress is None else progress
    result = run_demo(out, seed=seed, n_normal=n_normal, n_anomaly=n_anomaly, device=device, progress=show)
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    m = result.metrics
    click.echo(f"Generated {m['videos']} videos (seed {m['seed']}) -> {result.out / 'scenes'}")
    click.echo(f"Indexed {m['segments']} segments with vadindex-tiny -> {result.out / 'index'}\n")
    for q in result.queries:
        top = q["top"][0] if q["top"] else None
        best = f"{top['video']} {top['start']:.0f}-{top['end']:.0f}s" if top else "-"
        click.echo(f"  query {q['query']!r:42} P@5 {q['precision_at_5']:.2f}   top: {best}")
    click.echo("")
    click.echo(
        f"Video-level    F1 {m['video_f1']:.3f}  (precision {m['video_precision']:.3f}, recall {m['video_recall']:.3f})"
    )
    click.echo(
        f"Segment-level  F1 {m['segment_f1']:.3f}  (precision {m['segment_precision']:.3f}, recall {m['segment_recall']:.3f})"
    )
    click.echo(f"Search         precision@5 {m['precision_at_5']:.3f}")
    click.echo(f"\nDetections: {result.out / 'detect'}/videos.csv, segments.csv  "
               f"(took {sum(result.timings.values()):.0f} s)")  # fmt: skip


def main() -> None:
    """Console-script entry point.

    The interpreter's own shutdown (tearing down every module and freeing its memory) takes 0.5-1.4 s
    on a small CPU after a command that loaded PyTorch, and about 0.1 s after one that did not,
    which is a tenth of a rescoring run; so once the exit handlers have run and the output is
    flushed, the process exits at once. Everything the commands write is closed by then (index files
    are written atomically and synced).
    """
    try:
        cli(prog_name="vadindex")
        code = 0
    except SystemExit as exc:
        code = _exit_status(exc.code)
    _fast_exit(code)


def _exit_status(code: object) -> int:
    """The process status ``sys.exit(code)`` would give (a message goes to stderr, status 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    click.echo(str(code), err=True)
    return 1


def _fast_exit(code: int) -> None:
    """Run the exit handlers, flush stdout and stderr, and end the process without finalisation."""
    import atexit
    import contextlib
    import os

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe (`| head`) has nothing left to say
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
