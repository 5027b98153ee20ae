"""What a model is and what an encoder does: the torch-free contract between models and the index."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import metadata
from typing import Protocol, runtime_checkable

import numpy as np

#: ``--pretrained`` value that builds the model with seeded random weights (tests, benchmarks).
RANDOM = "random"
#: ``--pretrained`` value for a built-in model's shipped weights.
BUILTIN = "builtin"


@dataclass(frozen=True)
class ModelIdentity:
    """What a model is, as stored in an index manifest; indexes refuse queries from another model."""

    model: str
    pretrained: str
    checkpoint_sha256: str | None = None

    def same_as(self, other: ModelIdentity) -> bool:
        """True when both name the same architecture and the same weights."""
        if self.model != other.model:
            return False
        if self.checkpoint_sha256 or other.checkpoint_sha256:
            return self.checkpoint_sha256 == other.checkpoint_sha256
        return self.pretrained == other.pretrained

    def describe(self) -> str:
        """Human-readable name, e.g. ``ViT-B-32 (laion2b_s34b_b79k)``."""
        return f"{self.model} ({self.pretrained})"

    def weights_key(self) -> str:
        """A short hash that names these exact weights, for files derived from them (exported towers,
        remembered checks): the architecture and the checkpoint hash or tag; for ``random`` weights
        also the torch and open_clip versions, whose initialisers drew them. Needs neither installed
        package imported."""
        parts: tuple[str | None, ...] = (self.model, self.pretrained, self.checkpoint_sha256)
        if self.pretrained == RANDOM:
            parts += tuple(_version(p) for p in ("torch", "open_clip_torch"))
        return hashlib.sha256(repr(parts).encode("utf-8")).hexdigest()[:16]


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@runtime_checkable
class TextEncoder(Protocol):
    """Anything that maps texts into a model's L2-normalised embedding space: what searches and
    detections need (an ONNX text tower without torch, or a whole :class:`Encoder`)."""

    identity: ModelIdentity
    dim: int
    logit_scale: float

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Embed texts; returns ``(n, dim)`` float32 unit vectors."""
        ...


@runtime_checkable
class Encoder(TextEncoder, Protocol):
    """Anything that maps frames and texts into one L2-normalised embedding space."""

    image_size: int

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        """Embed ``(n, S, S, 3)`` uint8 RGB frames; returns ``(n, dim)`` float32 unit vectors."""
        ...


def encodes_images(encoder: object) -> bool:
    """True when ``encoder`` has ``encode_images`` (a whole model, not a text tower alone).

    Looked up on the type: ``isinstance(encoder, Encoder)`` reads every attribute, and a lazy
    encoder's ``image_size`` would load the model it stands for.
    """
    return callable(getattr(type(encoder), "encode_images", None))
