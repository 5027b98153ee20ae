"""The offline demo: generated surveillance scenes with ground truth (``synth``, the scene
generator) indexed with the built-in ``vadindex-tiny`` model, searched and evaluated (``run``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vadindex._lazy import exports

if TYPE_CHECKING:
    from vadindex.demo.run import DemoResult, run_demo

__all__ = ["DemoResult", "run_demo"]
__getattr__ = exports(__name__, {"DemoResult": "run", "run_demo": "run"})
