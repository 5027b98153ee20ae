"""``vadindex serve``: the search and review pages and the JSON API of one index."""

from __future__ import annotations

from typing import Any

import click

from vadindex._cli.common import (
    annotations_options,
    device_option,
    friendly_errors,
    given,
    index_option,
    options_from,
)
from vadindex.errors import VadindexError
from vadindex.report.options import ReportOptions
from vadindex.web.options import ServeOptions, limit_threads, missing_web_packages


@click.command(name="serve")
@index_option()
@options_from(ServeOptions)
@options_from(ReportOptions, exclude=("max_videos", "thumbnails"))
@annotations_options("UCF-Crime or XD-Violence temporal annotation file: annotated spans on the review page's "
                     "timelines, frame-level metrics.")  # fmt: skip
@device_option("the text/image encoder (loaded by the first query that needs it)")
@click.option(
    "--access-log", is_flag=True, help="Log every request (off by default: queries are in the URLs)."
)
@friendly_errors
def serve_cmd(index: str, annotations: str | None, annotation_format: str, device: str, access_log: bool,
              **options: Any) -> None:  # fmt: skip
    """Serve search and review pages and a JSON API for an index, until Ctrl-C.

    Prints the URL to open. On loopback (the default) no token is needed; on any other --host every
    request needs one (given with --token, or generated and printed in the URL). Pages load nothing
    from elsewhere; a build that appends to the index meanwhile is picked up at its next commit.

    \b
    Examples:
      vadindex serve --index demo-out/index
      curl '127.0.0.1:8000/api/query?text=a%20fire&k=5'
      vadindex serve --index indexes/cams --host 0.0.0.0 --port 8080 --video-root /mnt/old=/mnt/new
    """
    missing = missing_web_packages()
    if missing:
        raise VadindexError(f"vadindex serve needs {', '.join(missing)}: pip install 'vadindex[web]'")
    limit_threads()  # before numpy, FAISS or PyTorch load
    from vadindex.web.server import serve

    serve_options = ServeOptions(**given(ServeOptions, options))
    report = ReportOptions(**given(ReportOptions, options))

    def announce(url: str) -> None:
        click.echo(f"Serving {index} at {url}  (Ctrl-C stops)", err=False)

    serve(index, serve_options, announce=announce, access_log=access_log, video_root=report.video_root,
          thumbnail_size=report.thumbnail_size, annotations=annotations, annotation_format=annotation_format,
          device=device)  # fmt: skip
