"""The architecture holds by structure: imports flow one way, the core is pure, heavy libraries load late."""

from __future__ import annotations

import ast
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vadindex"
#: The pure scoring core: numpy/pandas and the package's light modules, no files, models or CLI.
PURE = ("vadindex.detect.scoring", "vadindex.detect.aggregate", "vadindex.evaluate.metrics")
PURE_ALLOWED = {"numpy", "pandas", "dataclasses", "typing", "vadindex.config", "vadindex.errors",
                "vadindex.detect.options", "__future__"}  # fmt: skip


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        out[name] = ast.parse(path.read_text(encoding="utf-8"))
    return out


def _top_level_imports(tree: ast.Module) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of the imports a module runs when it is imported (not inside functions,
    nor under ``if TYPE_CHECKING``)."""
    found = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names]
    return found


def test_imports_flow_one_way() -> None:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, tree in modules.items():
        edges = set()
        for module, names in _top_level_imports(tree):
            if not module.startswith("vadindex"):
                continue
            for target in [module] + [f"{module}.{n}" for n in names]:
                # A package's own submodules are imported lazily by its __init__; not an edge back.
                if target in modules and target != name and not target.startswith(name + "."):
                    edges.add(target)
        graph[name] = edges
    cycles = []

    def visit(node: str, path: list[str], state: dict[str, int]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt], state)
        state[node] = 2

    state: dict[str, int] = {}
    for name in graph:
        if name not in state:
            visit(name, [name], state)
    assert not cycles, cycles


def test_no_private_names_cross_modules() -> None:
    modules = _modules()
    offenders = []
    for name, tree in modules.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vadindex"):
                offenders += [
                    f"{name}: {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                    and f"{node.module}.{a.name}" not in modules  # the package's own helper modules
                ]  # fmt: skip
    assert not offenders, offenders


@pytest.mark.parametrize("module", PURE)
def test_the_scoring_core_is_pure(module: str) -> None:
    tree = _modules()[module]
    imported = {m for m, _ in _top_level_imports(tree)}
    assert imported <= PURE_ALLOWED, imported - PURE_ALLOWED
    functions = [f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)]
    assert not [n for f in functions for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))]


def test_help_imports_no_numpy_torch_or_faiss() -> None:
    code = (
        "import sys; from vadindex._cli.main import cli; "
        "print(sorted(m for m in ('numpy', 'pandas', 'torch', 'faiss', 'open_clip', 'av') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_old_module_paths_still_import_with_a_warning() -> None:
    code = "import warnings; warnings.simplefilter('error'); import vadindex.scoring"
    failed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert failed.returncode != 0 and "vadindex.scoring is now vadindex.detect.scoring" in failed.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import vadindex.aggregate as old_aggregate
        import vadindex.metrics as old_metrics

        from vadindex.detect import aggregate
        from vadindex.evaluate import metrics

    assert old_aggregate is aggregate and old_metrics is metrics
    assert callable(old_metrics.roc_auc)
