"""``vadindex demo``."""

from __future__ import annotations

import click

from vadindex._cli import render
from vadindex._cli.common import device_option, format_option, friendly_errors, progress_option, show_progress


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
@device_option()
@progress_option
@format_option(("text", "json"))
@friendly_errors
def demo(out: str, seed: int | None, n_normal: int, n_anomaly: int, device: str, progress: bool | None,
         fmt: str) -> None:  # fmt: skip
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
    from vadindex.demo.run import run_demo

    result = run_demo(out, seed=seed, n_normal=n_normal, n_anomaly=n_anomaly, device=device,
                      progress=show_progress(progress))  # fmt: skip
    if fmt == "json":
        render.echo_json(result.to_dict())
    else:
        render.demo(result)
