"""Import structure: no cycles between facediag's modules, no import from a wing to a higher one; light commands
import only what they need."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO

PACKAGE = REPO / "facediag"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(tree: ast.AST, package: str) -> set[str]:
    """Every name an import statement anywhere in ``tree`` (a function's body too) may load, relative ones resolved
    against ``package``."""
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
            targets |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return targets


def import_graph() -> dict[str, set[str]]:
    """module -> facediag modules it imports (at any depth in the file: a lazy import is still a dependency)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = imported_names(ast.parse(path.read_text(), str(path)), package)
        # a module depends on the modules it names; ``from facediag.x import y`` also names facediag.x.y when it is one
        graph[name] = {t for t in targets if t in modules and t != name and not name.startswith(t + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_sees_a_known_edge():
    graph = import_graph()
    assert "facediag.models.weights" in graph["facediag.models.registry"]


def test_no_import_cycles_between_modules():
    assert cycles(import_graph()) == []


#: the wings from the bottom up (docs/architecture.md): a module imports only its own wing and the ones before it
WINGS = ("core", "preprocess", "models", "data", "classifiers", "scoring", "strategies", "apply", "evaluation",
         "audit", "training", "simulate", "app")


def is_entry_point(module: str) -> bool:
    """``python -m facediag.<tool>`` (a ``__main__``) and the package-top command shims: above every wing,
    imported by no module."""
    parts = module.split(".")
    return parts[-1] == "__main__" or (len(parts) == 2 and (PACKAGE / f"{parts[1]}.py").is_file())


def wing_of(module: str) -> str:
    wing = module.split(".")[1]
    assert wing in WINGS, f"{module}: wing {wing!r} is not in WINGS; add it in its place"
    return wing


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """``a -> b`` for every import (lazy ones too) from a module to a higher wing, or of an entry point."""
    found = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if is_entry_point(target) and target != "facediag":
                found.append(f"{module} -> {target} (an entry point)")
            elif module != "facediag" and not is_entry_point(module) and target != "facediag" \
                    and WINGS.index(wing_of(target)) > WINGS.index(wing_of(module)):
                found.append(f"{module} -> {target}")
    return found


def test_no_module_imports_a_higher_wing_even_inside_a_function():
    assert upward_imports(import_graph()) == []


def test_an_import_inside_a_function_up_the_wings_is_found():
    graph = {"facediag.core.config": {"facediag.models.config_groups"}, "facediag.models.config_groups": set(),
             "facediag.preprocess.__main__": {"facediag.training.config"}, "facediag.training.config": set()}
    assert upward_imports(graph) == ["facediag.core.config -> facediag.models.config_groups"]
    lazy = "def f():\n    from facediag.apply.saliency import region_mask\n"
    assert "facediag.apply.saliency" in imported_names(ast.parse(lazy), "facediag.preprocess")


@pytest.mark.slow
def test_listing_models_and_applying_a_dtl2_run_import_neither_lightning_nor_sklearn(tiny_dtl2_run):
    # one new interpreter, what each step imported printed after it: `python -m facediag.models --no-macs`, then a
    # DTL2 run applied to one photo (its SVM as arrays: no scikit-learn, no skops; tests/test_linear_svm.py)
    photo = str(np.load(tiny_dtl2_run / "features" / "test.npz")["paths"][0])
    code = (
        "import sys, contextlib, io\n"
        "heavy = lambda: sorted(m for m in ('pytorch_lightning', 'lightning_fabric', 'hydra', 'sklearn', 'skops',"
        " 'albumentations') if m in sys.modules)\n"
        "from facediag.models.__main__ import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--no-macs'])\n"
        "print('listing', heavy())\n"
        "from facediag.apply.trained_run import TrainedRun\n"
        f"scored = TrainedRun({str(tiny_dtl2_run)!r}).score([{photo!r}])\n"
        "print('applying', heavy(), scored.paths)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-2] == "listing []", f"python -m facediag.models imported {lines[-2]}"
    assert lines[-1] == f"applying [] {[photo]}", f"applying a DTL2 run imported {lines[-1]}"
