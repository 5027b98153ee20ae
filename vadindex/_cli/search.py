"""``vadindex query``."""

from __future__ import annotations

from typing import Any

import click

from vadindex import config as C
from vadindex._cli import render
from vadindex._cli.common import (
    device_option,
    format_option,
    friendly_errors,
    given,
    index_option,
    log,
    moved_weights_option,
    options_from,
    text_encoder_option,
)
from vadindex.report.options import ReportOptions


@click.command()
@click.argument("text", required=False)
@index_option()
@click.option(
    "-k", "k", default=C.DEFAULT_TOP_K_RESULTS, show_default=True, type=int, help="Number of results."
)
@click.option(
    "--video", default=None, help="Only videos whose name or path matches this glob, e.g. 'fight/*'."
)
@click.option("--image", type=click.Path(path_type=str), default=None,
              help="Query by example image instead of text.")  # fmt: skip
@device_option("the text/image encoder")
@moved_weights_option
@text_encoder_option
@click.option(
    "--exact", is_flag=True, help="Scan every segment even when the index is approximate (ivf, hnsw)."
)
@click.option(
    "--precision", type=click.Choice(C.PRECISIONS), default=C.DEFAULT_PRECISION, show_default=True,
    help="Image-encoder arithmetic for --image (text is always encoded in full precision).",
)  # fmt: skip
@click.option("--html", "html", type=click.Path(path_type=str), default=None,
              help="Also write the hits as a self-contained page of thumbnail cards (video, start-end, score).")  # fmt: skip
@options_from(ReportOptions, exclude=("max_videos", "thumbnails"))
@click.option(
    "--unusual", is_flag=True,
    help="Rank by novelty (how unlike the K nearest segments of its own camera a segment is): over the "
    f"index, or among the query's best k x {C.UNUSUAL_POOL_FACTOR} hits.",
)  # fmt: skip
@click.option("--novelty", "novelty", default=C.DEFAULT_UNUSUAL_K, show_default=True, type=int, metavar="K",
              help="--unusual: neighbours the novelty averages over.")  # fmt: skip
@click.option("--novelty-gap", default=C.DEFAULT_NOVELTY_GAP, show_default=True, type=float,
              help="--unusual: same-video segments this close in seconds are not neighbours.")  # fmt: skip
@format_option()
@friendly_errors
def query(text: str | None, index: str, k: int, video: str | None, image: str | None, device: str,
          pretrained: str | None, text_encoder: str, exact: bool, precision: str, html: str | None,
          unusual: bool, novelty: int, novelty_gap: float, fmt: str, **options: Any) -> None:  # fmt: skip
    """Search segments by text (or by an example image), best first; or the most unusual ones.

    A text query runs the model's text tower in ONNX Runtime, without torch, once it has been
    exported on this machine (by the build, or the first query); a query already asked is answered
    from the index's cache. An image query loads the whole model with torch.

    \b
    Examples:
      vadindex query "a person lying on the ground" --index indexes/cams
      vadindex query "a red car" --index indexes/cams -k 20 --video 'lot-*' --format json
      vadindex query --image suspect.jpg --index indexes/cams
      vadindex query "a fire" --index indexes/cams --html hits.html
      vadindex query --unusual --index indexes/cams --video 'cam3/*'
      vadindex query "a person at a door" --unusual --index indexes/cams
    """
    if unusual:
        from vadindex.detect.unusual import query_unusual

        results = query_unusual(index, text, image=image, k=k, video=video, novelty=novelty, novelty_gap=novelty_gap,
                                device=device, pretrained=pretrained, precision=precision, exact=exact,
                                text_encoder=text_encoder)  # fmt: skip
        render.table(results.drop(columns=["video_id"]) if fmt == "table" else results, fmt)
        return
    from vadindex.search.query import query_hits

    hits = query_hits(index, text, image=image, k=k, video=video, device=device, pretrained=pretrained,
                      precision=precision, exact=exact, text_encoder=text_encoder)  # fmt: skip
    if html:
        from vadindex.report.hits import write_hits_page

        page_options = ReportOptions(**given(ReportOptions, options))
        page = write_hits_page(index, hits.to_frame(), html, query=text, image=image, options=page_options)
        log.info("wrote %s", page)
    shown = {c: v for c, v in hits.columns.items() if fmt != "table" or c != "video_id"}
    render.columns(shown, fmt)
