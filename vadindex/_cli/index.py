"""``vadindex info``, ``vadindex check`` and ``vadindex manifest``: an index, and what goes into one."""

from __future__ import annotations

import sys
from collections import Counter

import click

from vadindex import config as C
from vadindex._cli import render
from vadindex._cli.common import EXIT_ERROR, format_option, friendly_errors, index_argument_or_option


@click.command()
@index_argument_or_option
@format_option(("text", "json"))
@friendly_errors
def info(index: str, fmt: str) -> None:
    """Show an index's manifest and counts.

    \b
    Examples:
      vadindex info --index indexes/cams
      vadindex info --index indexes/cams --format json
    """
    from vadindex.index.info import index_info

    data = index_info(index)
    if fmt == "json":
        render.echo_json(data)
    else:
        render.index_info(data)


@click.command(name="check")
@index_argument_or_option
@click.option("--quick", is_flag=True, help="Compare file sizes only; skip hashing every file.")
@format_option(("text", "json"))
@friendly_errors
def check_cmd(index: str, quick: bool, fmt: str) -> None:
    """Verify an index: exit 0 when it is intact, 1 when something is wrong (each problem listed).

    Checks that the manifest adds up; every file it names is present, loads (no pickle) and has
    the size and SHA-256 recorded at commit; the FAISS index, segment table, vectors and manifest
    hold the same rows and vectors; frame rows and the video table agree with the segments.

    \b
    Examples:
      vadindex check --index indexes/cams
      vadindex check --index indexes/cams --quick --format json
    """
    from vadindex.index.check import check_index

    report = check_index(index, checksums=not quick)
    if fmt == "json":
        render.echo_json(report.to_dict())
    else:
        render.check_report(report, quick)
    if not report.ok:
        sys.exit(EXIT_ERROR)


@click.command(name="manifest")
@click.argument("root", type=click.Path(path_type=str))
@click.option("--out", "out", required=True, type=click.Path(path_type=str),
              help="Manifest CSV to write (path,label,class).")  # fmt: skip
@click.option("--layout", type=click.Choice(C.DATASET_LAYOUTS), default="auto", show_default=True,
              help="Naming convention of the dataset.")  # fmt: skip
@click.option(
    "--only", type=click.Path(path_type=str), default=None,
    help="Keep only videos named at the start of this file's lines (an annotation file, Anomaly_Test.txt).",
)  # fmt: skip
@friendly_errors
def manifest_cmd(root: str, out: str, layout: str, only: str | None) -> None:
    """Make a manifest (path,label,class) from UCF-Crime class folders or XD-Violence file names.

    \b
    Examples:
      vadindex manifest UCF_Crimes/Videos --out ucf.csv --only Temporal_Anomaly_Annotation.txt
      vadindex manifest XD-Violence/test --out xd.csv
      vadindex build --manifest ucf.csv --index indexes/ucf
    """
    from vadindex.evaluate.datasets import write_manifest

    rows = write_manifest(root, out, layout, only)
    counts = Counter(r.label or "unknown" for r in rows)
    click.echo(
        f"Wrote {out}: {len(rows)} videos ({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))})."
    )
