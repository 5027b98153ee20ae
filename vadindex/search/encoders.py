"""The encoder behind a search: the index's own model, for text (its ONNX text tower when it can)
and image queries."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vadindex.config import DEFAULT_PRECISION, DEFAULT_TEXT_ENCODER, TEXT_ENCODERS
from vadindex.errors import InputError, ModelError
from vadindex.index.reader import IndexSnapshot
from vadindex.models.identity import Encoder, TextEncoder
from vadindex.models.onnx_text import open_text_encoder

if TYPE_CHECKING:
    from vadindex.models.openclip import OpenClipEncoder

log = logging.getLogger("vadindex")


def load_text_encoder(
    snap: IndexSnapshot,
    text_encoder: str = DEFAULT_TEXT_ENCODER,
    device: str = "auto",
    pretrained: str | None = None,
) -> TextEncoder:
    """The encoder for an index's texts (queries, prompts): its text tower in ONNX when it can be.

    With ``auto``, a text tower exported for the index's weights on this machine runs in ONNX
    Runtime, without torch (a cold query then takes well under a second instead of several);
    otherwise the whole model loads with torch and its text tower is exported for next time.
    Models whose text tower cannot be exported stay on torch (said once with ``-v``). Weights
    given with ``pretrained`` are loaded with torch (and checked against the index's) first.

    Args:
        snap: the index.
        text_encoder: ``auto``, ``onnx`` (export first if needed; refuse a tower that cannot run
            in ONNX) or ``torch``.
        device, pretrained: how to load the model when text is encoded with torch (ONNX runs on
            the CPU, from the index's own weights).

    Returns:
        An encoder with ``encode_texts``, ``identity``, ``dim`` and ``logit_scale``.

    Raises:
        InputError: an unknown ``text_encoder``.
        ModelError: ``onnx`` for a text tower that cannot be exported, or the model cannot load.
    """
    if text_encoder not in TEXT_ENCODERS:
        raise InputError(f"--text-encoder must be one of {', '.join(TEXT_ENCODERS)}, got {text_encoder!r}")
    if text_encoder != "torch" and pretrained is None:
        onnx = open_text_encoder(snap.manifest.identity)
        if onnx is not None:
            check_encoder(snap, onnx)
            log.debug("encoding text with the ONNX text tower in %s", onnx.folder)
            return onnx
    encoder = load_index_encoder(snap, device, pretrained)
    if text_encoder == "torch":
        return encoder
    folder = encoder.export_text_onnx(required=text_encoder == "onnx")
    if text_encoder == "onnx":
        onnx = open_text_encoder(snap.manifest.identity)
        if onnx is None:
            raise ModelError(f"{snap.path}: the text tower exported to {folder} cannot be opened")
        check_encoder(snap, onnx)
        return onnx
    return encoder


def load_index_encoder(
    snap: IndexSnapshot,
    device: str = "auto",
    pretrained: str | None = None,
    precision: str = DEFAULT_PRECISION,
) -> OpenClipEncoder:
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


def check_encoder(snap: IndexSnapshot, encoder: TextEncoder) -> None:
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
