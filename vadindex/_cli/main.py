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
    """Report :class:`VadindexError` as one line on stderr, without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from vadindex.errors import InputError, VadindexError

        try:
            return fn(*args, **kwargs)
        except VadindexError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(EXIT_USAGE if isinstance(exc, InputError) else EXIT_ERROR)
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
@click.option("--index", "-i", "index", required=True, type=click.Path(path_type=str), help="Index folder (created if missing).")
@click.option("--manifest", type=click.Path(path_type=str), help="CSV with a path column and optional label (normal/anomaly or 0/1) and class columns.")
@click.option("--model", default=None, help=f"open_clip architecture or a built-in model (vadindex-tiny, vadindex-test). [default: the index's, else {C.DEFAULT_MODEL}]")
@click.option("--pretrained", default=None, help="open_clip pretrained tag, a local checkpoint file, 'builtin' or 'random' (tests only). [default: the model's usual tag]")
@click.option("--device", default=C.DEFAULT_DEVICE, show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--batch-size", default=C.DEFAULT_BATCH_SIZE, show_default=True, type=int, help="Frames per encoder batch.")
@click.option("--fps", default=None, type=float, help=f"Frames sampled per second. [default: {C.DEFAULT_FPS:g}, or the index's]")
@click.option("--segment-seconds", default=None, type=float, help=f"Segment length in seconds. [default: {C.DEFAULT_SEGMENT_SECONDS:g}, or the index's]")
@click.option("--commit-every", default=C.DEFAULT_COMMIT_EVERY, show_default=True, type=int, help="Videos per commit; a crash loses at most these.")
@click.option("--progress/--no-progress", default=None, help="Progress bar. [default: on a terminal]")
@_format_option(("text", "json"))
@_friendly_errors
def build(sources: tuple[str, ...], index: str, manifest: str | None, model: str | None, pretrained: str | None,
          device: str, batch_size: int, fps: float | None, segment_seconds: float | None, commit_every: int,
          progress: bool | None, fmt: str) -> None:  # fmt: skip
    """Index videos: decode, sample, encode with CLIP and store every segment.

    SOURCES are video files and folders (searched recursively). Videos already in the index are
    skipped, so running build again with more sources encodes only the new ones. A video that
    cannot be read is reported and skipped; the build goes on and exits with status 3.

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
        progress=show,
    )  # fmt: skip
    if fmt == "json":
        click.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        s = summary
        click.echo(
            f"Indexed {s.videos_added} videos ({s.segments_added} segments, {s.frames_encoded} frames) in "
            f"{s.seconds:.1f} s, {s.frames_per_second:.1f} frames/s; {s.videos_skipped} already indexed, "
            f"{len(s.failures)} failed. Index {s.index}: {s.total_videos} videos, {s.total_segments} segments "
            f"[{s.model}]."
        )
        for path, reason in s.failures:
            click.echo(f"  failed: {path}: {reason}", err=True)
    if summary.failures:
        sys.exit(EXIT_PARTIAL)


@cli.command()
@click.argument("text", required=False)
@click.option("--index", "-i", "index", required=True, type=click.Path(path_type=str), help="Index folder.")
@click.option("-k", "k", default=C.DEFAULT_TOP_K_RESULTS, show_default=True, type=int, help="Number of results.")
@click.option("--video", default=None, help="Only videos whose name or path matches this glob, e.g. 'fight/*'.")
@click.option("--image", type=click.Path(path_type=str), default=None, help="Query by example image instead of text.")
@click.option("--device", default=C.DEFAULT_DEVICE, show_default=True, help="Device for the text/image encoder.")
@click.option("--pretrained", default=None, help="The index's checkpoint file, if it moved.")
@_format_option()
@_friendly_errors
def query(text: str | None, index: str, k: int, video: str | None, image: str | None, device: str,
          pretrained: str | None, fmt: str) -> None:  # fmt: skip
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
    encoder = load_index_encoder(snap, device, pretrained)
    vector = encoder.encode_texts([text])[0] if text is not None else encode_query_image(encoder, image)  # type: ignore[arg-type]
    results = search_vector(snap, vector, k, video)
    _print_table(results.drop(columns=["video_id"]) if fmt == "table" else results, fmt)


@cli.command(name="detect")
@click.option("--index", "-i", "index", required=True, type=click.Path(path_type=str), help="Index folder.")
@click.option("--prompts", "-p", required=True, help="Anomaly prompts: ';'-separated text or a file with one per line.")
@click.option("--normal-prompts", default=None, help="Normal prompts, same forms. [default: a built-in set of everyday scenes]")
@click.option("--rule", type=click.Choice(["threshold", "topk", "balanced"]), default=C.DEFAULT_RULE, show_default=True, help="Segment rule (see --help text).")
@click.option("--segment-threshold", default=C.DEFAULT_SEGMENT_THRESHOLD, show_default=True, type=float, help="Threshold on the segment score (softmax mass on anomaly prompts).")
@click.option("--top-k", default=C.DEFAULT_PROMPT_TOP_K, show_default=True, type=int, help="Prompts that vote in the topk rule.")
@click.option("--video-ratio", default=C.DEFAULT_VIDEO_RATIO, show_default=True, type=float, help="A video is anomalous when at least this fraction of its segments is.")
@click.option("--out", "out", type=click.Path(path_type=str), default=None, help="Write segments.csv, videos.csv and detect.json here.")
@click.option("--device", default=C.DEFAULT_DEVICE, show_default=True, help="Device for the text encoder.")
@click.option("--pretrained", default=None, help="The index's checkpoint file, if it moved.")
@_format_option(("table", "json"))
@_friendly_errors
def detect_cmd(index: str, prompts: str, normal_prompts: str | None, rule: str, segment_threshold: float,
               top_k: int, video_ratio: float, out: str | None, device: str, pretrained: str | None,
               fmt: str) -> None:  # fmt: skip
    """Flag anomalous segments and videos by comparing them with text prompts.

    Segment score a = sum over anomaly prompts of softmax(logit_scale * cosine) over all prompts.
    Rules: threshold (a >= --segment-threshold); topk (anomaly prompts are a majority of the
    --top-k prompts most similar to the segment); balanced (threshold, and the best anomaly prompt
    beats the best normal prompt). A video is anomalous when the fraction of its anomalous
    segments is at least --video-ratio. With labels in the index, precision, recall, F1 and the
    confusion matrix are reported.

    \b
    Examples:
      vadindex detect --index indexes/cams --prompts "people fighting; a building on fire"
      vadindex detect --index indexes/ucf --prompts prompts.txt --rule balanced --out results/
      vadindex detect --index indexes/cams -p "a car crash" --format json
    """
    from vadindex.detect import detect, write_outputs

    result = detect(
        index, prompts, normal_prompts=normal_prompts, rule=rule, segment_threshold=segment_threshold,
        top_k=top_k, video_ratio=video_ratio, device=device, pretrained=pretrained,
    )  # fmt: skip
    if out:
        written = write_outputs(result, out)
        log.info("wrote %s", ", ".join(str(p) for p in written))
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    videos = result.videos.drop(columns=["video_id"])
    _print_table(videos, "table", "{:.3f}")
    n_anom = int(result.videos["anomalous"].sum())
    click.echo(f"\n{n_anom} of {len(videos)} videos anomalous; {int(result.segments['anomalous'].sum())} of "
               f"{len(result.segments)} segments.")  # fmt: skip
    if result.metrics:
        m = result.metrics
        (tn, fp), (fn, tp) = m["confusion_matrix"]
        click.echo(f"Video-level: precision {m['precision']:.3f}  recall {m['recall']:.3f}  F1 {m['f1']:.3f}  "
                   f"[tn {tn} fp {fp} fn {fn} tp {tp}]")  # fmt: skip
    if out:
        click.echo(f"Wrote {out}/segments.csv, videos.csv, detect.json")


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
    if fmt == "json":
        data = asdict(m)
        data["parts"] = len(m.parts)
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"index      {snap.path}")
    click.echo(f"format     {m.format_version} (generation {m.generation}, vadindex {m.vadindex_version})")
    click.echo(f"model      {m.identity.describe()}  dim {m.dim}  logit_scale {m.logit_scale:.2f}")
    click.echo(f"sampling   {m.sampling['fps']:g} fps, {m.sampling['segment_seconds']:g} s segments")
    click.echo(f"contents   {m.n_videos} videos, {m.n_segments} segments, {m.n_frames} frames in {len(m.parts)} parts")
    click.echo(f"updated    {m.updated}")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="vadindex")


if __name__ == "__main__":
    main()
