"""Every option of a report or results page, declared once in :class:`ReportOptions`.

``vadindex report``, ``vadindex detect --out`` (which writes ``report.html``), ``vadindex query --html``
and :func:`vadindex.report.write_report` read them from here. The module imports no numpy, so the
CLI can declare its flags from it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass

from vadindex import config as C
from vadindex.errors import InputError
from vadindex.ingest.sources import VideoRoots
from vadindex.options import Options, option


@dataclass(frozen=True)
class ReportOptions(Options):
    """What a report shows and where it finds the videos for thumbnails."""

    max_videos: int = option(
        C.DEFAULT_REPORT_MAX_VIDEOS,
        "Video sections in a report: misclassified videos first, then the best-scoring ones; the rest "
        "are listed in one table.",
    )
    thumbnails: bool = option(
        True,
        "Show thumbnails of each video's best segments: stored in the index (build --thumbnails), "
        "cached in INDEX/cache/thumbs, or decoded from the video. [default: on]",
    )
    thumbnail_size: int = option(
        C.DEFAULT_THUMBNAIL_SIZE, "Longest side, in pixels, of thumbnails decoded from the videos."
    )
    video_root: str | None = option(None, C.VIDEO_ROOT_HELP, metavar="OLD=NEW")

    def __post_init__(self) -> None:
        if self.max_videos < 0:
            raise InputError(f"--max-videos must be 0 or more, got {self.max_videos}")
        if not 16 <= self.thumbnail_size <= 4096:
            raise InputError(
                f"--thumbnail-size must be between 16 and 4096 pixels, got {self.thumbnail_size}"
            )
        VideoRoots.parse(self.video_root)

    @property
    def roots(self) -> VideoRoots:
        """``video_root`` parsed."""
        return VideoRoots.parse(self.video_root)
