"""``vadindex detect`` and ``vadindex tune``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from vadindex import config as C
from vadindex._cli import render
from vadindex._cli.common import (
    annotations_options,
    detect_options,
    device_option,
    examples_options,
    format_option,
    friendly_errors,
    given,
    index_option,
    log,
    moved_weights_option,
    normal_prompts_option,
    options_from,
    prompts_option,
    text_encoder_option,
)
from vadindex.detect.options import CONFIG_INPUTS, DetectOptions
from vadindex.report.options import ReportOptions


@click.command(name="detect")
@index_option()
@detect_options
@click.option("--cache/--no-cache", "use_cache", default=True, show_default=True,
              help="Reuse text embeddings and similarities cached in the index folder.")  # fmt: skip
@click.option("--out", "out", type=click.Path(path_type=str), default=None,
              help="Write segments.csv, videos.csv, detect.json and report.html (see `vadindex report`) here.")  # fmt: skip
@options_from(ReportOptions)
@device_option("the text encoder")
@moved_weights_option
@text_encoder_option
@click.option(
    "--segments", "json_segments", type=click.Choice(C.SEGMENT_LISTINGS), default="all", show_default=True,
    help="Segments listed by --format json (videos and metrics are always there).",
)  # fmt: skip
@format_option(("table", "json"))
@friendly_errors
def detect_cmd(index: str, config_file: str | None, annotation_format: str, use_cache: bool, out: str | None,
               device: str, pretrained: str | None, text_encoder: str, json_segments: str, fmt: str,
               **options: Any) -> None:  # fmt: skip
    """Flag anomalous segments and videos by comparing them with text prompts.

    Segment score a = sum over anomaly classes of softmax(logit_scale * cosine) over all classes;
    with --calibrate, a = the highest calibrated anomaly-class similarity (z-score or percentile
    over the index). Rules: threshold (a >= --segment-threshold); topk (anomaly classes are a
    majority of the --top-k classes most similar to the segment); balanced (threshold, and the best
    anomaly class beats the best normal class); frame-vote (at least --frame-votes of the segment's
    frames pass the threshold). --novelty K mixes in how unlike the K nearest segments of its own
    camera a segment is (--novelty-weight 0: text only, 1: novelty only). --knn-k and --smooth then
    blend scores with similar segments and with neighbouring segments. Classes may also be taught
    by example (--anomaly-examples, --normal-examples, or reviewer labels with --use-labels). Text
    embeddings, similarities and neighbours are cached in the index, so re-running with other rules
    or thresholds loads no model.

    \b
    Examples:
      vadindex detect --index indexes/cams --prompts "people fighting; a building on fire"
      vadindex detect --index indexes/ucf --prompts ucf-crime --calibrate zscore --segment-threshold 2
      vadindex detect --index indexes/cams -p ucf-crime --novelty 10 --novelty-weight 0.5
      vadindex detect --index indexes/cams -p ucf-crime --anomaly-examples "cam1/a.mp4@31;fight.jpg"
      vadindex detect --index indexes/cams -p ucf-crime --use-labels
      vadindex detect --index indexes/ucf -p ucf-crime --annotations Temporal_Anomaly_Annotation.txt
      vadindex detect --index indexes/ucf --config tuned.yaml --format json
    """
    from vadindex.detect.options import resolve_settings
    from vadindex.detect.pipeline import detect
    from vadindex.detect.result import write_outputs

    report_opts = ReportOptions(**given(ReportOptions, options))
    inputs = {k: options.pop(k) for k in CONFIG_INPUTS}
    opts, inputs = resolve_settings(config_file, {**given(DetectOptions, options), **inputs})
    if not inputs["prompts"]:
        raise click.UsageError("give --prompts (or a --config file that sets prompts)")
    result = detect(
        index, inputs["prompts"], normal_prompts=inputs["normal_prompts"], options=opts,
        annotations=inputs["annotations"], annotation_format=annotation_format, device=device,
        pretrained=pretrained, use_cache=use_cache, text_encoder=text_encoder,
        anomaly_examples=inputs["anomaly_examples"], normal_examples=inputs["normal_examples"],
    )  # fmt: skip
    if out:
        from vadindex.report.report import command_line, write_report

        written = write_outputs(result, out)
        command = command_line(
            "detect", index, inputs["prompts"], inputs["normal_prompts"], opts, inputs["annotations"],
            annotation_format, config_file, extra=["--out", out],
        )  # fmt: skip
        report = write_report(result, Path(out) / "report.html", options=report_opts, command=command)
        log.info("wrote %s and %s", ", ".join(str(p) for p in written), report.path)
    if fmt == "json":
        result.write_json(sys.stdout, segments=json_segments)
        return
    render.detection(result)
    if out:
        click.echo(f"Wrote {out}/segments.csv, videos.csv, detect.json, report.html")


@click.command(name="tune")
@index_option("Index folder (labelled, or with --annotations).")
@prompts_option(required=True)
@normal_prompts_option
@examples_options
@click.option("--use-labels", is_flag=True,
              help="Learn from the index's reviewer labels (as detect --use-labels); their segments are not scored.")  # fmt: skip
@annotations_options("Temporal annotation file: frame-level AUC, and labels for unlabelled videos.")
@click.option(
    "--metric", type=click.Choice(C.TUNE_METRICS), default="f1", show_default=True,
    help="Maximise video F1, or AUC (frame-level with --annotations, else video-level).",
)  # fmt: skip
@click.option("--folds", default=C.DEFAULT_TUNE_FOLDS, show_default=True, type=int,
              help="Cross-validation folds, split by video.")  # fmt: skip
@click.option(
    "--grid", type=click.Path(path_type=str), default=None,
    help="YAML file replacing entries of the search grid (rule, calibrate, smooth, knn_k, video_ratio...).",
)  # fmt: skip
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the fold shuffle.")
@click.option("--out", "out", required=True, type=click.Path(path_type=str),
              help="Write the best settings here (YAML for `detect --config`), and the heat maps beside it "
                   "(best.yaml -> best.html).")  # fmt: skip
@device_option("the text encoder (prompts not cached yet)")
@moved_weights_option
@text_encoder_option
@format_option(("text", "json"))
@friendly_errors
def tune_cmd(index: str, prompts: str, normal_prompts: str | None, anomaly_examples: str | None,
             normal_examples: str | None, use_labels: bool, annotations: str | None, annotation_format: str,
             metric: str, folds: int, grid: str | None, seed: int, out: str, device: str, pretrained: str | None,
             text_encoder: str, fmt: str) -> None:  # fmt: skip
    """Grid-search rules, thresholds, aggregation, novelty and example weight; report the held-out
    score of k-fold CV by video.

    For each fold the best settings on the training videos are scored on the held-out videos; the
    settings written to --out are the best on all labelled videos. Similarities come from the
    index's cache, so nothing is re-encoded.

    \b
    Examples:
      vadindex tune --index indexes/ucf -p ucf-crime --annotations ann.txt --metric auc --out tuned.yaml
      vadindex detect --index indexes/ucf --config tuned.yaml
    """
    from vadindex.detect.tune import tune, write_settings

    result = tune(
        index, prompts, normal_prompts=normal_prompts, annotations=annotations, annotation_format=annotation_format,
        metric=metric, folds=folds, grid=grid, seed=seed, device=device, pretrained=pretrained,
        text_encoder=text_encoder, anomaly_examples=anomaly_examples, normal_examples=normal_examples,
        use_labels=use_labels,
    )  # fmt: skip
    from vadindex.report.tuning import write_tune_page

    examples = {"anomaly_examples": anomaly_examples, "normal_examples": normal_examples}
    target = write_settings(result, out, prompts, normal_prompts, annotations, examples)
    page_path = (
        target.with_suffix(".html") if target.suffix.lower() != ".html" else target.with_suffix(".page.html")
    )
    page = write_tune_page(result, page_path, str(target))
    if fmt == "json":
        render.echo_json({"best": result.best, **result.to_dict(), "page": str(page)})
        return
    render.tuning(result, metric, target, index)
    click.echo(f"Wrote {page}: F1 over segment threshold x video ratio, per fold.")
