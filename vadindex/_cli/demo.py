"""``vadindex demo``."""

from __future__ import annotations

import sys

import click

from vadindex._cli import render
from vadindex._cli.common import (
    EXIT_ERROR,
    device_option,
    format_option,
    friendly_errors,
    progress_option,
    show_progress,
)


@click.command()
@click.option("--out", "out", default="demo-out", show_default=True, type=click.Path(path_type=str),
              help="Output folder: scenes/, index/, detect/ (with report.html).")  # fmt: skip
@click.option(
    "--seed", default=None, type=int, help="Scene-set seed. [default: a fixed seed never used in training]"
)
@click.option(
    "--normal", "n_normal", default=10, show_default=True, type=int, help="Normal videos to generate."
)
@click.option("--anomalous", "n_anomaly", default=10, show_default=True, type=int,
              help="Anomalous videos to generate.")  # fmt: skip
@click.option("--live", is_flag=True,
              help="Stream a generated scene with an event over loopback UDP and watch it until its alert comes.")  # fmt: skip
@click.option("--port", type=int, default=None, help="--live: UDP port on 127.0.0.1. [default: a free one]")
@device_option()
@progress_option
@format_option(("text", "json"))
@friendly_errors
def demo(out: str, seed: int | None, n_normal: int, n_anomaly: int, live: bool, port: int | None, device: str,
         progress: bool | None, fmt: str) -> None:  # fmt: skip
    """Run the whole job offline on generated scenes with the built-in vadindex-tiny model.

    Renders surveillance-like scenes (street, car park, corridor) with ground truth, indexes them,
    runs open-set queries and a detection with prompts never seen in training, and evaluates
    against the ground truth. vadindex-tiny is a demonstration model for these synthetic scenes,
    not a substitute for a pretrained CLIP on real footage.

    With --live, a held-out scene with a car on fire is sent as an MPEG-TS stream to udp://127.0.0.1 in
    real time and `vadindex watch` follows it into OUT/live/index; the demo shows the alert as it
    arrives and exits 0 once it came (1 if it never did). --format json prints the alerts and the
    alert latency.

    \b
    Examples:
      vadindex demo
      vadindex demo --out /tmp/demo --seed 11 --format json
      vadindex demo --live
      vadindex demo --live --format json
    """
    if live:
        _live(out, port, device, fmt)
        return
    from vadindex.demo.run import run_demo

    result = run_demo(out, seed=seed, n_normal=n_normal, n_anomaly=n_anomaly, device=device,
                      progress=show_progress(progress))  # fmt: skip
    if fmt == "json":
        render.echo_json(result.to_dict())
    else:
        render.demo(result)


def _live(out: str, port: int | None, device: str, fmt: str) -> None:
    from vadindex.demo.live import run_live_demo

    text = fmt == "text"
    result = run_live_demo(
        out, port=port, device=device,
        on_alert=render.live_alert if text else None,
        on_status=(lambda line: click.echo(f"watch: {line}", err=True)) if text else None,
    )  # fmt: skip
    if fmt == "json":
        render.echo_json(result.to_dict())
    else:
        render.live_demo(result)
    if not result.detected:
        sys.exit(EXIT_ERROR)
