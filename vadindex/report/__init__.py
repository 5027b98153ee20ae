"""Pictures of what an index found: segment thumbnails, figures and self-contained HTML pages.

``thumbnails`` gives any segment's picture (stored in the index, cached, or decoded from its video,
else a placeholder), ``figures`` draws the plots (matplotlib, Agg), ``page`` renders the autoescaped
templates, ``report`` turns a detection into a report, ``hits`` a search into a page of results, and
``tuning`` a grid search into its heat maps; ``options`` declares every report option once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vadindex._lazy import exports

if TYPE_CHECKING:
    from vadindex.report.hits import write_hits_page
    from vadindex.report.options import ReportOptions
    from vadindex.report.report import ReportSummary, report_index, write_report
    from vadindex.report.thumbnails import Thumbnail, ThumbnailStore, placeholder_jpeg
    from vadindex.report.tuning import write_tune_page

__all__ = [
    "ReportOptions", "ReportSummary", "Thumbnail", "ThumbnailStore", "placeholder_jpeg", "report_index",
    "write_hits_page", "write_report", "write_tune_page",
]  # fmt: skip
__getattr__ = exports(
    __name__,
    {
        "ReportOptions": "options",
        "ReportSummary": "report",
        "report_index": "report",
        "write_report": "report",
        "Thumbnail": "thumbnails",
        "ThumbnailStore": "thumbnails",
        "placeholder_jpeg": "thumbnails",
        "write_hits_page": "hits",
        "write_tune_page": "tuning",
    },
)
