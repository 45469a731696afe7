"""The web package's shape: views never build SQL, no import cycles, modules under ~400 lines."""
from __future__ import annotations

import ast
import re
from pathlib import Path

WEB = Path(__file__).resolve().parents[2] / "web"
SQL = re.compile(r"\bselect\(|\.scalars?\(|\.execute\(|(?<!cookie_)session\.get\(|\.query\(")
MAX_LINES = 400


def _modules(root: Path) -> dict[str, Path]:
    """Return module name → file for every Python file under `root` (a package named after the folder)."""
    found = {}
    for path in root.rglob("*.py"):
        parts = (root.name, *path.relative_to(root).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Return the modules of the package that `name` imports (anywhere in the file, functions included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    wanted: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            wanted.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                wanted.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {w for w in wanted if w in modules and w != name}


def cycles(root: Path) -> list[list[str]]:
    """Return the groups of modules under `root` that import each other (Tarjan's strongly connected parts)."""
    modules = _modules(root)
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return groups


def sql_in_views(root: Path) -> list[str]:
    """Return file:line of every query built under `root`."""
    return [f"{path.relative_to(root)}:{n}" for path in sorted(root.rglob("*.py"))
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if SQL.search(line)]


def long_modules(root: Path) -> list[str]:
    """Return the modules under `root` past MAX_LINES lines."""
    return [str(path.relative_to(root)) for path in sorted(root.rglob("*.py"))
            if len(path.read_text(encoding="utf-8").splitlines()) > MAX_LINES]


def test_views_never_build_sql() -> None:
    assert sql_in_views(WEB) == []


def test_web_has_no_import_cycles() -> None:
    assert cycles(WEB) == []


def test_web_modules_stay_under_400_lines() -> None:
    assert long_modules(WEB) == []


INLINE_HANDLER = re.compile(r"<[a-zA-Z][^>]*\son[a-z]+\s*=", re.S)


def test_templates_carry_no_inline_event_handlers() -> None:
    """The CSP (script-src 'self') blocks onclick= and its kind: such a button does nothing in the browser.
    Behaviour goes through data-* attributes the bundle handles (data-jz-print, data-jz-confirm, …)."""
    offending = [str(path.relative_to(WEB)) for path in sorted(WEB.rglob("*.html"))
                 if INLINE_HANDLER.search(path.read_text(encoding="utf-8"))]
    assert offending == []
