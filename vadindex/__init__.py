"""vadindex: zero-shot video anomaly detection and search with CLIP over a FAISS segment index.

The package follows the data flow: ``ingest`` (sources, decoding, segments, encoding, the build),
``models`` (CLIP encoders), ``index`` (the index on disk), ``search`` (queries), ``detect``
(prompts, scoring rules, decisions, tuning), ``evaluate`` (metrics and benchmark ground truth)
and ``demo``; ``api.VideoIndex`` ties them together and ``_cli`` is the ``vadindex`` command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vadindex import _compat
from vadindex._lazy import exports

if TYPE_CHECKING:
    from vadindex.api import VideoIndex

__version__ = "0.1.0"

__all__ = ["VideoIndex", "__version__"]
# Lazy, so `import vadindex` (and `vadindex --help`) does not pull in torch or faiss.
__getattr__ = exports(__name__, {"VideoIndex": "api"})
_compat.install()
