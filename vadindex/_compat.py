"""Module paths from before the stage folders (0.1) keep importing, with a ``DeprecationWarning``.

The README of 0.1 named ``vadindex.scoring``, ``vadindex.aggregate``, ``vadindex.metrics`` and
``vadindex.encoder.load_encoder``; each old name is an alias of the module that replaced it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType

MOVED = {
    "vadindex.scoring": "vadindex.detect.scoring",
    "vadindex.aggregate": "vadindex.detect.aggregate",
    "vadindex.metrics": "vadindex.evaluate.metrics",
    "vadindex.encoder": "vadindex.models.openclip",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(
        self, name: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(f"{spec.name} is now {MOVED[spec.name]}", DeprecationWarning, stacklevel=2)
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        pass  # already executed under its new name


def install() -> None:
    """Let the old names import (once per process)."""
    if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
        sys.meta_path.append(_MovedModules())
