"""``vadindex build``."""

from __future__ import annotations

import sys

import click

from vadindex._cli import render
from vadindex._cli.common import (
    EXIT_PARTIAL,
    format_option,
    friendly_errors,
    given,
    options_from,
    progress_option,
    show_progress,
)
from vadindex.ingest.options import BuildOptions


@click.command()
@click.argument("sources", nargs=-1, type=click.Path(path_type=str))
@click.option("--index", "-i", "index", required=True, type=click.Path(path_type=str),
              help="Index folder (created if missing).")  # fmt: skip
@click.option(
    "--manifest", type=click.Path(path_type=str),
    help="CSV with a path column and optional label (normal/anomaly or 0/1) and class columns.",
)  # fmt: skip
@options_from(BuildOptions)
@progress_option
@format_option(("text", "json"))
@friendly_errors
def build(sources: tuple[str, ...], index: str, manifest: str | None, progress: bool | None, fmt: str,
          **options: object) -> None:  # fmt: skip
    """Index videos: decode, sample, encode with CLIP and store every segment.

    SOURCES are video files and folders (searched recursively), or URIs (s3://bucket/prefix/). Videos already in the index are
    skipped, so running build again with more sources encodes only the new ones. A video that
    cannot be read is reported and skipped; the build goes on, lists it in INDEX/failures.csv and
    exits with status 3. Work is committed every --commit-every videos: after a crash or kill,
    running the same command again finishes the build. Only one build may write an index at a
    time; a second one is refused at once (status 1).

    \b
    Examples:
      vadindex build cams/ --index indexes/cams
      vadindex build night-recordings/ --index indexes/night --gate auto   # encode only what changed
      vadindex build --manifest ucf_test.csv --index indexes/ucf --model ViT-L-14 --pretrained openai
      vadindex build ../shared/data/videos --index /tmp/x --model ViT-B-32 --pretrained random
      vadindex build s3://footage/cams/ --index ix --engine ray --ray-address head:6379 --gpus-per-worker 1

    With --engine ray, Ray workers (on this machine, or a cluster's nodes) decode and encode whole
    videos and this process commits what they send back; sources must be readable by every node
    (a shared file system, or s3://, gs://, hdfs:// URIs). Needs `pip install 'vadindex[ray]'`.
    """
    from vadindex.ingest.build import build_index

    if not sources and not manifest:
        raise click.UsageError("give video files or folders, or --manifest CSV")
    summary = build_index(
        list(sources), index, manifest=manifest, options=BuildOptions(**given(BuildOptions, options)),
        progress=show_progress(progress),
    )  # fmt: skip
    if fmt == "json":
        render.echo_json(summary.to_dict())
    else:
        render.build_summary(summary)
    if summary.failures:
        sys.exit(EXIT_PARTIAL)
