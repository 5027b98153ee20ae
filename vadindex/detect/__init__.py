"""Detection: prompts -> class similarities (cached) -> scoring rules -> video decisions -> metrics.

``prompts`` reads prompt sets, ``similarity`` compares them with every segment through the index's
cache, ``scoring`` and ``aggregate`` are the pure rules, ``options`` declares every option once,
``detect`` ties them together into a ``result``, and ``tune`` searches the options.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vadindex._lazy import exports

if TYPE_CHECKING:
    from vadindex.detect.options import DetectOptions, load_detect_config
    from vadindex.detect.pipeline import decide, detect
    from vadindex.detect.result import DetectResult, write_outputs

__all__ = ["DetectOptions", "DetectResult", "decide", "detect", "load_detect_config", "write_outputs"]
__getattr__ = exports(
    __name__,
    {
        "DetectOptions": "options",
        "load_detect_config": "options",
        "DetectResult": "result",
        "write_outputs": "result",
        "decide": "pipeline",
        "detect": "pipeline",
    },
)
