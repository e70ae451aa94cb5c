"""The project's structural rules: import direction and structured concurrency."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ALLOWED = {"store": set(), "actors": {"store"}, "runtime": {"actors", "store"}}
OURS = {"store", "actors", "runtime", "bench", "tests"}


def _ours(module: str) -> str:
    """``shepherd.actors.x`` -> ``actors``; ``bench.x`` -> ``bench``."""
    parts = module.split(".")
    if parts[0] == "shepherd" and len(parts) > 1:
        return parts[1]
    return parts[0]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(_ours(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(_ours(node.module))
            if node.module == "shepherd":
                found.update(alias.name for alias in node.names)
    return found & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_runtime_actors_store(package: str) -> None:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        wrong = _imports(path) - ALLOWED[package] - {package}
        if wrong:
            bad.append(f"{path.relative_to(ROOT)} imports {sorted(wrong)}")
    assert bad == []


def test_no_unstructured_tasks() -> None:
    bad = []
    for package in ALLOWED:
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text()
            for word in ("create_task(", "ensure_future(", "add_done_callback("):
                if word in text:
                    bad.append(f"{path.relative_to(ROOT)}: {word}")
    assert bad == []
