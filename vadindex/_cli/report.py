"""``vadindex report``."""

from __future__ import annotations

from typing import Any

import click

from vadindex._cli import render
from vadindex._cli.common import (
    detect_options,
    device_option,
    format_option,
    friendly_errors,
    given,
    index_option,
    moved_weights_option,
    options_from,
)
from vadindex.detect.options import CONFIG_INPUTS, DetectOptions
from vadindex.report.options import ReportOptions


@click.command(name="report")
@index_option()
@detect_options
@options_from(ReportOptions)
@click.option("--out", "out", required=True, type=click.Path(path_type=str),
              help="The HTML file to write (one self-contained file).")  # fmt: skip
@click.option("--cache/--no-cache", "use_cache", default=True, show_default=True,
              help="Reuse text embeddings and similarities cached in the index folder.")  # fmt: skip
@device_option("the text encoder")
@moved_weights_option
@format_option(("text", "json"))
@friendly_errors
def report_cmd(index: str, config_file: str | None, annotation_format: str, out: str, use_cache: bool, device: str,
               pretrained: str | None, fmt: str, **options: Any) -> None:  # fmt: skip
    """Write a detection's report: one HTML file that opens anywhere, offline.

    It holds the settings and the command line that reproduces it; with labels, metric cards, the
    confusion matrix, video-level ROC and precision-recall curves (frame level too with
    --annotations), the false-alarm rate on normal videos and a per-class table; a histogram of
    segment scores; then one section per video (misclassified ones first, then by score) with
    its score over time, the flagged segments, the annotated spans and thumbnails of its three
    best segments. A video that moved or was deleted shows a placeholder and a note
    (--video-root OLD=NEW finds moved footage; build --thumbnails keeps pictures in the index).

    \b
    Examples:
      vadindex report --index indexes/cams --prompts "people fighting; a fire" --out report.html
      vadindex report --index d/index --prompts ucf-crime --annotations d/scenes/annotations.txt --out r.html
      vadindex report --index indexes/ucf --config tuned.yaml --video-root /old/ucf=/data/ucf --out r.html
    """
    from vadindex.detect.options import resolve_settings
    from vadindex.report.report import report_index

    report_opts = ReportOptions(**given(ReportOptions, options))
    inputs = {k: options.pop(k) for k in CONFIG_INPUTS}
    opts, inputs = resolve_settings(config_file, {**given(DetectOptions, options), **inputs})
    if not inputs["prompts"]:
        raise click.UsageError("give --prompts (or a --config file that sets prompts)")
    summary = report_index(
        index, inputs["prompts"], out, normal_prompts=inputs["normal_prompts"], options=opts,
        annotations=inputs["annotations"], annotation_format=annotation_format, report_options=report_opts,
        device=device, pretrained=pretrained, use_cache=use_cache, config=config_file,
    )  # fmt: skip
    if fmt == "json":
        render.echo_json(summary.to_dict())
    else:
        render.report_summary(summary)
