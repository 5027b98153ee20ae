"""``vadindex watch`` and ``vadindex alerts``."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from vadindex._cli import render
from vadindex._cli.common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    config_option,
    format_option,
    friendly_errors,
    given,
    index_option,
    normal_prompts_option,
    options_from,
    prompts_option,
)
from vadindex.detect.options import DetectOptions
from vadindex.ingest.options import BuildOptions
from vadindex.live.options import WatchOptions

#: Build options that mean nothing to a stream (it is never "done", and commits are timed).
NOT_FOR_STREAMS = ("commit_every", "video_timeout", "stall_timeout")
#: Detect options a live rule cannot use: video aggregation (a stream is not a video with an end)
#: and kNN blending (refused by watch); a --config file may still carry them.
NOT_LIVE = ("knn_k", "knn_alpha", "video_agg", "video_ratio", "video_threshold", "video_top_k")
#: Exit status after SIGTERM (128 + 15), as shells report it.
EXIT_TERMINATED = 143


@click.command(name="watch")
@click.argument("sources", nargs=-1)
@index_option("Index folder (created if missing, with --model and the sampling options).")
@click.option("--cameras", type=click.Path(path_type=str), default=None,
              help="YAML file naming cameras and their URLs (see the README).")  # fmt: skip
@click.option("--name", "names", multiple=True,
              help="Camera name of each SOURCE, in order. [default: from the URL]")  # fmt: skip
@click.option(
    "--follow", is_flag=True, help="SOURCE files are still being written: follow them as they grow."
)
@click.option("-o", "--ffmpeg-option", "ffmpeg_options", multiple=True, metavar="KEY=VALUE",
              help="FFmpeg option for every source (repeatable), e.g. -o fflags=nobuffer.")  # fmt: skip
@prompts_option()
@normal_prompts_option
@config_option
@options_from(DetectOptions, exclude=NOT_LIVE)
@options_from(BuildOptions, exclude=NOT_FOR_STREAMS)
@options_from(WatchOptions)
@click.option("--alerts", "alerts_path", type=click.Path(path_type=str), default=None,
              help="Alert log (JSON lines). [default: INDEX/alerts.jsonl]")  # fmt: skip
@click.option("--webhook", default=None, metavar="URL", help="POST every alert record to this http(s) URL.")
@click.option("--summary", "summary_fmt", type=click.Choice(("text", "json")), default="text", show_default=True,
              help="Format of the summary printed on stderr when the watch stops.")  # fmt: skip
@friendly_errors
def watch_cmd(sources: tuple[str, ...], index: str, cameras: str | None, names: tuple[str, ...], follow: bool,
              ffmpeg_options: tuple[str, ...], config_file: str | None, alerts_path: str | None,
              webhook: str | None, summary_fmt: str, **options: Any) -> None:  # fmt: skip
    """Follow live streams: index every segment, detect with the prompts, and raise alerts.

    SOURCES are rtsp://, rtmp://, http(s):// (MPEG-TS or HLS .m3u8), udp:// and srt:// URLs (where
    this FFmpeg build has the protocol), V4L2 devices (/dev/video0), or with --follow files still
    being written. Each stream gets a decoding thread; segments of all streams are encoded in
    batches by one encoder and appended to the index, committed every --commit-seconds (a kill -9
    loses at most that much), while query and detect keep working on the index. Only one watch
    or build may write an index at a time.

    Consecutive flagged segments of a camera form one event, which raises one alert: a JSON line
    on stdout and in INDEX/alerts.jsonl ({"type": "alert", ...} when raised, {"type": "end", ...}
    when the event is over), a thumbnail under INDEX/alerts/, and a POST to --webhook. Status lines
    (connections, losses, reconnects, dropped segments) go to stderr. Ctrl-C commits and exits 130.

    \b
    Examples:
      vadindex watch rtsp://10.0.0.5/stream1 --name gate --index indexes/cams -p "a person climbing a fence"
      vadindex watch --cameras cameras.yaml --index indexes/cams -p ucf-crime --webhook http://127.0.0.1:9000/hook
      vadindex watch udp://127.0.0.1:5000 --index indexes/demo --model vadindex-tiny -p "a building on fire"
      vadindex watch /rec/cam3.ts --follow --index indexes/cams --config tuned.yaml
      vadindex alerts --index indexes/cams
    """
    from vadindex.detect.options import CONFIG_INPUTS, resolve_settings
    from vadindex.live.sources import parse_option_pairs, resolve_sources
    from vadindex.live.watch import watch

    inputs = {k: options.pop(k) for k in CONFIG_INPUTS if k in options}
    detect_given = given(DetectOptions, options)
    build = BuildOptions(**given(BuildOptions, options))
    wopts = WatchOptions(**given(WatchOptions, options))
    dopts, inputs = resolve_settings(config_file, {**detect_given, **inputs})
    if not inputs["prompts"]:
        raise click.UsageError("give --prompts (or a --config file that sets prompts)")
    srcs = resolve_sources(
        sources, names=names, cameras=cameras, follow=follow, options=parse_option_pairs(ffmpeg_options),
        rtsp_transport=wopts.rtsp_transport,
    )  # fmt: skip

    def alert(record: dict[str, Any]) -> None:
        click.echo(json.dumps(record, separators=(",", ":")))
        sys.stdout.flush()

    def status(line: str) -> None:
        click.echo(f"watch: {line}", err=True)

    summary = watch(
        srcs, index, inputs["prompts"], normal_prompts=inputs["normal_prompts"], detect=dopts, build=build,
        options=wopts, alerts=alerts_path, webhook=webhook, on_alert=alert, on_status=status,
    )  # fmt: skip
    if summary_fmt == "json":
        click.echo(json.dumps(summary.to_dict()), err=True)
    else:
        render.watch_summary(summary)
    if summary.stopped == "interrupted":
        sys.exit(EXIT_INTERRUPTED)
    if summary.stopped == "terminated":
        sys.exit(EXIT_TERMINATED)
    if summary.stopped == "sources failed":
        sys.exit(EXIT_ERROR)


@click.command(name="alerts")
@index_option("The watched index folder.")
@click.option("--alerts", "alerts_path", type=click.Path(path_type=str), default=None,
              help="Alert log, if watch was given --alerts. [default: INDEX/alerts.jsonl]")  # fmt: skip
@click.option("--camera", default=None, help="Only this camera.")
@click.option("--class", "cls", default=None, help="Only alerts whose best class is this.")
@click.option("--last", type=int, default=None, help="Only the most recent N alerts.")
@format_option()
@friendly_errors
def alerts_cmd(index: str, alerts_path: str | None, camera: str | None, cls: str | None, last: int | None,
               fmt: str) -> None:  # fmt: skip
    """List the alerts a watch raised: one row per alert, with its event's final end and peak.

    \b
    Examples:
      vadindex alerts --index indexes/cams
      vadindex alerts --index indexes/cams --camera gate --last 5 --format json
    """
    from vadindex.live.alerts import read_alerts

    table = read_alerts(index, alerts=alerts_path, camera=camera, cls=cls, last=last)
    if fmt == "table":
        table = table[
            ["alert_id", "camera", "best_class", "peak_score", "start", "end", "n_segments", "ongoing"]
        ]
    elif fmt == "csv":
        table = table.drop(columns=["segments", "videos", "classes"])
    render.table(table, fmt)
