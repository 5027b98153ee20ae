"""``vadindex label``: a reviewer's verdict on one segment, stored in the index."""

from __future__ import annotations

import click

from vadindex import config as C
from vadindex._cli import render
from vadindex._cli.common import format_option, friendly_errors, index_option


@click.command(name="label")
@index_option()
@click.argument("segment")
@click.argument("label", type=click.Choice(C.LABEL_KINDS))
@click.option("--class", "cls", default=None, metavar="NAME",
              help="The class seen (an anomaly class of the prompt set joins it as an example).")  # fmt: skip
@format_option(("text", "json"))
@friendly_errors
def label_cmd(index: str, segment: str, label: str, cls: str | None, fmt: str) -> None:
    """Label one segment normal or anomaly; `detect --use-labels` learns from the labels.

    SEGMENT is VIDEO@SECONDS (the segment on screen then; VIDEO is the name as indexed, its path,
    file name or content id) or VIDEO_ID:SEGMENT as query and detect print them. A segment labelled
    again keeps the newest label. Labels live in INDEX/labels.json, written atomically and
    versioned; `vadindex info` lists them. With --use-labels, detect turns them into example
    classes and reports metrics without the labelled segments.

    \b
    Examples:
      vadindex label --index indexes/cams cam3/2024-05-01.mp4@125.5 anomaly --class Fighting
      vadindex label --index indexes/cams 9f3c0a1b2c3d4e5f6a7b:42 normal
      vadindex detect --index indexes/cams -p ucf-crime --use-labels
    """
    from vadindex.index.labels import add_label

    new, labels = add_label(index, segment, label, cls)
    if fmt == "json":
        render.echo_json({"label": new.to_dict(), "version": labels.version, "count": len(labels.labels)})
    else:
        render.label_added(new, labels)
