"""vadindex: zero-shot video anomaly detection and search with CLIP over a FAISS segment index."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["VideoIndex", "__version__"]


def __getattr__(name: str) -> object:
    # Lazy, so `import vadindex` (and `vadindex --help`) does not pull in torch or faiss.
    if name == "VideoIndex":
        from vadindex.api import VideoIndex

        return VideoIndex
    raise AttributeError(name)
