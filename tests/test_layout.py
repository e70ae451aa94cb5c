"""The project's structural rules: import direction and structured concurrency."""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Container
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


# -- the structural checks of the layout -----------------------------------------------

PACKAGES = ("actors", "runtime", "store")
LONG = 300  # lines; a longer module says why at its top
# "longer than most because ...", "long because ...", "(hence its length)"
WHY_LONG = re.compile(
    r"\blonger than\b[^.]*\bbecause\b|\blong because\b|\bhence (?:its|the) length\b",
    re.IGNORECASE,
)


def _sources() -> list[Path]:
    return [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]


def _package_dirs() -> dict[str, str]:
    """``{"shepherd.actors": "actors", ...}`` from pyproject's package-dir."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return dict(setuptools["package-dir"])


def _module_name(path: Path) -> str:
    """The installed name of a source file: ``actors/router/actor.py`` ->
    ``shepherd.actors.router.actor``; ``runtime/_namespace/__init__.py`` -> ``shepherd``."""
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    best = max(
        (item for item in _package_dirs().items() if parts[: len(Path(item[1]).parts)]
         == Path(item[1]).parts),
        key=lambda item: len(Path(item[1]).parts),
    )  # fmt: skip
    rest = parts[len(Path(best[1]).parts) :]
    return ".".join((best[0], *rest))


def _module_level_imports(
    tree: ast.Module, here: str, is_package: bool, modules: Container[str]
) -> set[str]:
    """What a module imports at module level: statements of its body and of the ``if``
    (``if TYPE_CHECKING:`` too: a circle for the type checker is still a circle),
    ``try``, ``with`` and class bodies in it; not of functions. ``from a import b``
    counts as ``a.b`` when that is one of ``modules``, else ``a``; ``import a.b`` as
    ``a.b`` (its parents are imported too, but a parent already being imported is no
    circle)."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = here.split(".") if is_package else here.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                for alias in node.names:  # a submodule, or a name of ``base``
                    sub = f"{base}.{alias.name}"
                    found.add(sub if sub in modules else base)
            elif isinstance(node, ast.If):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)
            elif isinstance(node, (ast.With, ast.ClassDef)):
                visit(node.body)

    visit(tree.body)
    return found


def _import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in _sources()}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        imported = _module_level_imports(tree, name, path.name == "__init__.py", files)
        graph[name] = {m for m in imported if m in files and m != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_cycles_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph_has_no_circles() -> None:
    graph = _import_graph()
    assert "shepherd.runtime.app" in graph and "shepherd" in graph  # the names resolve
    assert _cycles(graph) == []


def test_sqlite_is_imported_only_by_the_sqlite_engine() -> None:
    engine = ROOT / "store" / "sqlite"
    bad = []
    for path in _sources():
        if engine in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in ("sqlite3", "aiosqlite"):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert bad == []


def test_no_mixin_classes() -> None:
    bad = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Mixin"):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} class {node.name}")
    assert bad == []


def test_long_modules_say_why_at_the_top() -> None:
    bad = []
    for path in _sources():
        text = path.read_text()
        lines = text.count("\n")
        if lines <= LONG:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if not WHY_LONG.search(doc):
            bad.append(f"{path.relative_to(ROOT)}: {lines} lines, no reason in its docstring")
    assert bad == []


def test_why_long_wants_a_reason() -> None:
    assert WHY_LONG.search("It is longer than most because it is the tree as data.")
    assert WHY_LONG.search("Every shape is declared here (hence its length).")
    assert not WHY_LONG.search("The file is long.")
    assert not WHY_LONG.search("It no longer retries. Because of that, ...")


def test_every_package_folder_is_listed_in_pyproject() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    on_disk = set()
    missing_init = []
    for package in PACKAGES:
        for folder in sorted({p.parent for p in (ROOT / package).rglob("*.py")}):
            if "__pycache__" in folder.parts:
                continue
            if not (folder / "__init__.py").exists():
                missing_init.append(str(folder.relative_to(ROOT)))
                continue
            on_disk.add(_module_name(folder / "__init__.py"))
    assert missing_init == [], "folders of modules without __init__.py are not installed"
    assert sorted(on_disk - listed) == [], "add these to [tool.setuptools] packages"
    assert sorted(listed - on_disk) == [], "listed in pyproject, but no such folder"
