"""What a model is and what an encoder does: the torch-free contract between models and the index."""

from __future__ import annotations

from dataclasses import dataclass
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


@runtime_checkable
class Encoder(Protocol):
    """Anything that maps frames and texts into one L2-normalised embedding space."""

    identity: ModelIdentity
    dim: int
    image_size: int
    logit_scale: float

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        """Embed ``(n, S, S, 3)`` uint8 RGB frames; returns ``(n, dim)`` float32 unit vectors."""
        ...

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Embed texts; returns ``(n, dim)`` float32 unit vectors."""
        ...
