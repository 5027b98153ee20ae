"""The encoder behind a search: the index's own model, loaded for text and image queries."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from vadindex.config import DEFAULT_PRECISION
from vadindex.errors import InputError, ModelError
from vadindex.index.reader import IndexSnapshot
from vadindex.models.identity import Encoder


def load_index_encoder(
    snap: IndexSnapshot,
    device: str = "auto",
    pretrained: str | None = None,
    precision: str = DEFAULT_PRECISION,
) -> Encoder:
    """Load the encoder an index was built with, and refuse any other.

    ``precision`` changes only how images are encoded (``--image`` queries); text is always encoded
    in full precision on CPU, so the same index answers text queries identically whatever the
    precision it was built with. ``auto`` here is plain fp32 on a CPU (fp16 on CUDA): a query
    encodes one image, too few for ``auto``'s int8 check to pay off.
    """
    from vadindex.models.openclip import load_encoder, resolve_device
    from vadindex.models.precision import resolve_precision

    m = snap.manifest
    source = pretrained or m.pretrained_path or m.pretrained
    if source.startswith("file:"):
        raise ModelError(
            f"{snap.path}: built from checkpoint {source[5:]} which is no longer at its recorded path; "
            "pass it with --pretrained PATH"
        )
    if m.pretrained_path and not pretrained and not Path(m.pretrained_path).is_file():
        raise ModelError(
            f"{snap.path}: checkpoint {m.pretrained_path} is gone; pass the same weights with --pretrained PATH"
        )
    device = resolve_device(device)
    encoder = load_encoder(m.model, source, device, resolve_precision(precision, device))
    check_encoder(snap, encoder)
    return encoder


def check_encoder(snap: IndexSnapshot, encoder: Encoder) -> None:
    """Refuse an encoder that is not the one the index was built with."""
    m = snap.manifest
    if not encoder.identity.same_as(m.identity) or encoder.dim != m.dim:
        raise ModelError(
            f"{snap.path}: index was built with {m.identity.describe()}, not {encoder.identity.describe()}; "
            "query it with the same model"
        )


def encode_query_image(encoder: Encoder, image: str | os.PathLike[str]) -> np.ndarray:
    """Embed an example image, resized and centre-cropped like the indexed frames."""
    from PIL import Image, UnidentifiedImageError  # here: text-only paths never pay for Pillow

    path = Path(image).expanduser()
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except FileNotFoundError:
        raise InputError(f"{path}: no such image") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path}: not a readable image ({exc})") from None
    return encode_rgb_image(encoder, rgb)


def encode_rgb_image(encoder: Encoder, rgb: Any) -> np.ndarray:
    """Embed an RGB ``PIL.Image`` (an upload, say), resized and centre-cropped like the indexed frames."""
    from PIL import Image

    size = encoder.image_size
    scale = size / min(rgb.size)
    w, h = max(size, round(rgb.width * scale)), max(size, round(rgb.height * scale))
    rgb = rgb.resize((w, h), Image.Resampling.BICUBIC)
    left, top = (w - size) // 2, (h - size) // 2
    pixels = np.asarray(rgb.crop((left, top, left + size, top + size)))[None]
    return encoder.encode_images(pixels)[0]
