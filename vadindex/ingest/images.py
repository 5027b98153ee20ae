"""Small still images of frames: JPEG encoding (Pillow), shared by builds and reports."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

#: JPEG quality of thumbnails: 80 keeps edges and faces readable at 160-256 px for a few KB.
JPEG_QUALITY = 80


def encode_jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """An ``(h, w, 3)`` uint8 RGB image as baseline JPEG bytes (4:2:0, optimised Huffman tables)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB").save(
        buffer, "JPEG", quality=quality, optimize=True
    )
    return buffer.getvalue()
