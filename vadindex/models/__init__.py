"""CLIP models: the torch-free identity and :class:`Encoder` / :class:`TextEncoder` protocols
(``identity``), weights, precision, the torch-free tokenizer and ONNX text tower, ONNX exports and
the open_clip encoder.

Importing this package imports no torch; :func:`load_encoder` does, when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vadindex._lazy import exports
from vadindex.models.identity import BUILTIN, RANDOM, Encoder, ModelIdentity, TextEncoder

if TYPE_CHECKING:
    from vadindex.models.openclip import load_encoder

__all__ = ["BUILTIN", "RANDOM", "Encoder", "ModelIdentity", "TextEncoder", "load_encoder"]
__getattr__ = exports(__name__, {"load_encoder": "openclip"})
