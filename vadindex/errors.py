"""Errors that the CLI reports as one line, without a traceback."""

from __future__ import annotations


class VadindexError(Exception):
    """Base class: a problem with the user's input or environment, not a bug."""


class InputError(VadindexError):
    """A bad argument, path, manifest or prompt."""


class VideoError(VadindexError):
    """A video that cannot be decoded or segmented; the build reports it and goes on."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class StoreError(VadindexError):
    """A missing, locked, corrupt or incompatible index."""


class ModelError(VadindexError):
    """A model or its weights cannot be loaded."""


class ClusterError(VadindexError):
    """A Ray cluster that cannot run a build: unreachable, too small, or its workers keep failing."""
