"""The package map in docs/architecture.md, checked on the source: which way imports go, no import circle,
and one module that renders chat templates. Imports inside functions count as much as top-level ones."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "tunewright"

# package -> the packages it may import (besides itself and the top-level `tunewright` module)
ALLOWED = {
    "core": set(),
    "runtimes": {"core"},
    "engine": {"core"},
    "curate": {"core"},
    "train": {"core"},
    "evaluate": {"core", "engine", "runtimes"},
    "export": {"core", "engine", "runtimes"},
    "serve": {"core", "engine", "runtimes"},
    "release": {"core"},
    "monitor": {"core"},
    "demo": {"core", "train"},
    "__main__": {"cli"},
    "cli": {
        "core",
        "runtimes",
        "engine",
        "curate",
        "train",
        "evaluate",
        "export",
        "serve",
        "release",
        "monitor",
        "demo",
    },
}


def modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        found[".".join(parts).removesuffix(".__init__")] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            module = (f"{base}.{node.module}" if node.module else base) if node.level else node.module or ""
            out |= {f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names}
    return {m for m in out if m in known and m != name}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_module_imports_itself_back(graph):
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert cycles == []


def test_imports_go_down_the_package_map(graph):
    wrong = sorted(
        f"{a} imports {b}"
        for a, targets in graph.items()
        for b in targets
        if package(a) and package(b) and package(b) != package(a) and package(b) not in ALLOWED[package(a)]
    )
    assert wrong == []
    assert {package(m) for m in graph if package(m)} <= set(ALLOWED)  # a new package gets a line in the map


def test_only_the_chat_module_renders_chat_templates():
    callers = sorted(
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute) and node.attr == "apply_chat_template" and isinstance(node.ctx, ast.Load)
    )
    assert sorted(set(callers)) == ["core/chat.py"]
