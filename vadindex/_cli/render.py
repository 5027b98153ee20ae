"""How results look on a terminal: tables, summaries and reports (commands only choose which)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import click


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON."""
    click.echo(json.dumps(data, indent=2, default=str))


def table(frame: Any, fmt: str, floats: str = "{:.4f}") -> None:
    """A pandas table as ``table`` (aligned text), ``csv`` or ``json`` (an array of row objects)."""
    if fmt == "json":
        click.echo(json.dumps(json.loads(frame.to_json(orient="records", double_precision=6)), indent=2))
    elif fmt == "csv":
        click.echo(frame.to_csv(index=False), nl=False)
    elif frame.empty:
        click.echo("(no results)")
    else:
        click.echo(frame.to_string(index=False, float_format=floats.format))


def columns(data: dict[str, Any], fmt: str, floats: str = "{:.4f}") -> None:
    """Named numpy columns (as :class:`~vadindex.search.vectors.SearchHits` holds them) as ``table``,
    ``csv`` or ``json``, like :func:`table` prints a DataFrame, without importing pandas."""
    names = list(data)
    rows = list(zip(*(data[c].tolist() for c in names), strict=True)) if names else []
    if fmt == "json":
        records = [
            {c: round(v, 6) if isinstance(v, float) else v for c, v in zip(names, r, strict=True)}
            for r in rows
        ]
        click.echo(json.dumps(records, indent=2))
    elif fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        writer.writerows(rows)
        click.echo(out.getvalue(), nl=False)
    elif not rows:
        click.echo("(no results)")
    else:
        cells = [[floats.format(v) if isinstance(v, float) else str(v) for v in r] for r in rows]
        widths = [max(len(c), *(len(r[j]) for r in cells)) for j, c in enumerate(names)]
        text = [isinstance(v, str) for v in rows[0]]  # text left-aligned, numbers right-aligned

        def line(values: list[str]) -> str:
            return "  ".join(
                v.ljust(w) if left else v.rjust(w) for v, w, left in zip(values, widths, text, strict=True)
            ).rstrip()

        click.echo("\n".join([line(names), *(line(r) for r in cells)]))


def build_summary(s: Any) -> None:
    """One line for a :class:`~vadindex.ingest.build.BuildSummary`, then its failures on stderr."""
    click.echo(
        f"Indexed {s.videos_added} videos ({s.segments_added} segments, {_frames(s)}) in "
        f"{s.seconds:.1f} s, {s.frames_per_second:.1f} frames/s; {s.videos_skipped} already indexed, "
        f"{len(s.failures)} failed. Index {s.index}: {s.total_videos} videos, {s.total_segments} segments "
        f"[{s.model}, {s.precision or '?'}]."
    )
    for path, reason in s.failures:
        click.echo(f"  failed: {path}: {reason}", err=True)


def _frames(s: Any) -> str:
    """Frames of a build summary: ``N frames``, or how many the change gate let the encoder skip."""
    if not s.frames_reused:
        return f"{s.frames_sampled} frames"
    share = s.frames_encoded / max(s.frames_sampled, 1)
    return f"{s.frames_sampled} frames: {s.frames_encoded} encoded ({share:.0%}), {s.frames_reused} reused"


def detection(result: Any) -> None:
    """The video table of a :class:`~vadindex.detect.result.DetectResult`, counts and metrics."""
    videos = result.videos.drop(columns=["video_id"])
    table(videos, "table", "{:.3f}")
    n_anom = int(result.videos["anomalous"].sum())
    click.echo(f"\n{n_anom} of {len(videos)} videos anomalous; {result.n_anomalous_segments} of "
               f"{result.n_segments} segments.")  # fmt: skip
    if not result.metrics:
        return
    m = result.metrics
    (tn, fp), (fn, tp) = m["confusion_matrix"]
    click.echo(f"Video-level: precision {m['precision']:.3f}  recall {m['recall']:.3f}  F1 {m['f1']:.3f}  "
               f"[tn {tn} fp {fp} fn {fn} tp {tp}]")  # fmt: skip
    if m.get("excluded_segments"):
        click.echo(f"Metrics leave out the {m['excluded_segments']} reviewer-labelled segments "
                   f"(video metrics: the {m['excluded_videos']} videos holding them).")  # fmt: skip
    if "frame_auc" in m:
        missing = m["annotations_missing"]
        click.echo(f"Frame-level: AUC {_maybe(m['frame_auc'])}  AP {_maybe(m['frame_ap'])}  over {m['frames']} "
                   f"frames of {m['annotated_videos']} annotated videos"
                   + (f"; {missing} annotated videos not in the index" if missing else ""))  # fmt: skip


def _maybe(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def tuning(result: Any, metric: str, target: Any, index: str) -> None:
    """The held-out score of ``vadindex tune`` and the settings it wrote."""
    vals = ", ".join("n/a" if v is None or v != v else f"{v:.3f}" for v in result.held_out)
    click.echo(f"Held-out {metric}: {result.held_out_mean:.4f} (folds: {vals}); in-sample {result.in_sample:.4f} "
               f"over {result.candidates} candidates.")  # fmt: skip
    click.echo("Best: " + "  ".join(f"{k}={v}" for k, v in result.best.items() if v is not None))
    click.echo(f"Wrote {target}; use it with: vadindex detect --index {index} --config {target}")


def index_info(info: dict[str, Any]) -> None:
    """``vadindex info`` as aligned lines."""
    sampling = info["sampling"]
    click.echo(f"index      {info['path']}")
    click.echo(
        f"format     {info['format_version']} (generation {info['generation']}, vadindex {info['vadindex_version']})"
    )
    click.echo(
        f"model      {info['model']} ({info['pretrained']})  dim {info['dim']}  logit_scale {info['logit_scale']:.2f}"
    )
    click.echo(f"sampling   {sampling['fps']:g} fps, {sampling['segment_seconds']:g} s segments")
    click.echo(f"contents   {info['n_videos']} videos, {info['n_segments']} segments, {info['n_frames']} frames "
               f"in {info['parts']} parts")  # fmt: skip
    if "search" in info:
        click.echo(f"search     --index-type {info['index_type']}: {info['search']}")
        if info["faiss_covered"] < info["n_segments"]:
            click.echo(f"           FAISS file covers {info['faiss_covered']} of {info['n_segments']} segments; the "
                       "rest are searched exactly until the build ends")  # fmt: skip
    if info["precision"]:
        click.echo(f"precision  image encoder {', '.join(info['precision'])}")
    if info.get("engines"):
        built = ", ".join(f"{name} {n} part{'s' * (n != 1)}" for name, n in info["engines"].items())
        click.echo(f"engines    {built} (build --engine)")
    if info["frames_reused"]:
        share = info["frames_encoded"] / max(info["n_frames"], 1)
        click.echo(f"gate       {info['frames_encoded']} frames encoded ({share:.0%}), {info['frames_reused']} reused "
                   f"by the change gate ({'; '.join(info['gate'])})")  # fmt: skip
    elif info["gate"]:
        click.echo(f"gate       {'; '.join(info['gate'])}: every frame encoded")
    if info.get("thumbnails"):
        click.echo(
            f"thumbnails {info['thumbnails']} of {info['n_segments']} segments stored (build --thumbnails)"
        )
    if info["files"]:
        click.echo(
            f"files      {info['files']}, {info['bytes'] / 1e6:.1f} MB, SHA-256 recorded (`vadindex check`)"
        )
    cams = info.get("cameras") or {}
    if cams.get("named"):
        shown = ", ".join(f"{name} ({count})" for name, count in list(cams["named"].items())[:5])
        more = f" and {len(cams['named']) - 5} more" if len(cams["named"]) > 5 else ""
        click.echo(f"cameras    {len(cams['named'])} named (videos): {shown}{more}; "
                   f"{cams['own']} videos on a camera of their own")  # fmt: skip
    labels = info.get("labels") or {}
    if labels.get("count"):
        click.echo(f"labels     {labels['count']} reviewed segments ({labels['anomaly']} anomaly, "
                   f"{labels['normal']} normal), version {labels['version']}, updated {labels['updated']}")  # fmt: skip
        for lab in labels["labels"][:10]:
            cls = f" ({lab['class']})" if lab["class"] else ""
            click.echo(
                f"           {lab['video']}@{lab['start']:g}  {lab['label']}{cls}  [{lab['video_id']}:{lab['segment']}]"
            )
        if labels["count"] > 10:
            click.echo(f"           ... {labels['count'] - 10} more (--format json lists all)")
    if info["failures_last_build"]:
        click.echo(f"failures   {info['failures_last_build']} videos the last build could not index "
                   f"({info['path']}/failures.csv)")  # fmt: skip
    click.echo(f"created    {info['created']}")
    click.echo(f"updated    {info['updated']}")


def label_added(label: Any, labels: Any) -> None:
    """What ``vadindex label`` stored."""
    cls = f" ({label.cls})" if label.cls else ""
    click.echo(f"Labelled {label.video} {label.start:g}-{label.end:g} s [{label.ref}] {label.label}{cls}; "
               f"{len(labels.labels)} labels in the index (version {labels.version}).")  # fmt: skip


def check_report(report: Any, quick: bool) -> None:
    """``vadindex check``: OK or DAMAGED, then each problem and note on stderr."""
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


def demo(result: Any) -> None:
    """What ``vadindex demo`` generated, found and measured."""
    m = result.metrics
    click.echo(f"Generated {m['videos']} videos (seed {m['seed']}) -> {result.out / 'scenes'}")
    click.echo(f"Indexed {m['segments']} segments with vadindex-tiny -> {result.out / 'index'}\n")
    for q in result.queries:
        top = q["top"][0] if q["top"] else None
        best = f"{top['video']} {top['start']:.0f}-{top['end']:.0f}s" if top else "-"
        click.echo(f"  query {q['query']!r:42} P@5 {q['precision_at_5']:.2f}   top: {best}")
    click.echo("")
    click.echo(f"Video-level    F1 {m['video_f1']:.3f}  (precision {m['video_precision']:.3f}, "
               f"recall {m['video_recall']:.3f})")  # fmt: skip
    click.echo(f"Segment-level  F1 {m['segment_f1']:.3f}  (precision {m['segment_precision']:.3f}, "
               f"recall {m['segment_recall']:.3f})")  # fmt: skip
    click.echo(f"Search         precision@5 {m['precision_at_5']:.3f}")
    click.echo(f"\nDetections: {result.out / 'detect'}/videos.csv, segments.csv  "
               f"(took {sum(result.timings.values()):.0f} s)")  # fmt: skip
    click.echo(f"Report:     {result.out / 'detect' / 'report.html'}  (open it in a browser; works offline)")


def report_summary(s: Any) -> None:
    """One line for a :class:`~vadindex.report.report.ReportSummary`, then its notes on stderr."""
    thumbs = ", ".join(f"{n} {k}" for k, n in sorted(s.thumbnails.items())) or "none"
    left = f", {s.left_out} videos listed without a section" if s.left_out else ""
    click.echo(f"Wrote {s.path} ({s.bytes / 1e6:.1f} MB): {s.sections} video sections{left}, {s.plots} plots, "
               f"thumbnails: {thumbs}; {s.seconds:.1f} s.")  # fmt: skip
    for note in s.notes:
        click.echo(f"  note: {note}", err=True)


def watch_summary(s: Any) -> None:
    """What a :class:`~vadindex.live.watch.WatchSummary` did, on stderr (stdout carries the alerts)."""
    click.echo(
        f"watch stopped ({s.stopped}) after {s.seconds:.0f} s: {s.segments_indexed} segments indexed, "
        f"{s.frames_encoded} frames encoded{f' ({s.frames_reused} reused)' if s.frames_reused else ''}, "
        f"{s.alerts} alerts. Index {s.index}: {s.total_segments} segments, "
        f"generation {s.generation} [{s.model}, {s.precision or '?'}].",
        err=True,
    )
    for name, st in s.streams.items():
        click.echo(
            f"  {name}: {st['state']}, {st['segments_indexed']} segments, {st['connects']} connections, "
            f"{st['dropped_segments']} segments dropped, {st['bad_packets']} bad packets"
            + (f"; last error: {st['last_error']}" if st["last_error"] else ""),
            err=True,
        )
    if s.webhook is not None:
        w = s.webhook
        click.echo(f"  webhook: {w['sent']} sent, {w['failed']} failed, {w['dropped']} dropped", err=True)


def live_alert(record: dict[str, Any]) -> None:
    """One alert record as a line a person reads."""
    if record["type"] == "alert":
        click.echo(
            f"ALERT {record['best_class']} on {record['camera']} at {record['start'][11:23]} "
            f"(peak {record['peak_score']:.2f}, {record['latency_s']:.2f} s after its first flagged segment "
            f"ended); thumbnail {record['thumbnail']}"
        )
    else:
        click.echo(
            f"  event {record['alert_id']} ended at {record['end'][11:23]}: {record['n_segments']} segments"
        )


def live_demo(result: Any) -> None:
    """The outcome of ``vadindex demo --live``."""
    if result.detected:
        click.echo(
            f"The {result.event_class} event streamed to {result.url} raised its alert "
            f"{result.latency_s:.2f} s after its first flagged segment ended. Index: {result.index}; "
            f"alerts: vadindex alerts --index {result.index}"
        )
    else:
        click.echo(
            f"No {result.event_class} alert came from {result.url} ({result.frames_sent} frames sent); "
            "see the status lines above",
            err=True,
        )
