"""The shape of the house: every module imports on its own, imports only go down the floors (no circle,
hidden inside a function or not), the library never imports Streamlit, and no product module outgrows a
screenful of screens."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from .conftest import REPO

PACKAGE = REPO / "mcqa_core"
# Floors from the bottom; a module may import its own folder or any lower floor, never a higher one.
FLOORS = {
    "mcqa_core.errors": 0,
    "mcqa_core.hub": 1,
    "mcqa_core.setting_fields": 1,
    "mcqa_core.settings_file": 1,
    "mcqa_core.command_line": 2,
    "mcqa_core.data": 2,
    "mcqa_core.models": 3,
    "mcqa_core.evaluation": 4,
    "mcqa_core.training": 5,
    "mcqa_core.shipping": 5,
    "mcqa_core.service": 6,
    "mcqa_core.cli": 6,  # the app's service starts training runs
}
PRODUCT_FILES = [
    REPO / "app.py",
    REPO / "train_adapter.py",
    *sorted((REPO / "pages").glob("*.py")),
    *sorted((REPO / "app_ui").glob("*.py")),
    *sorted(PACKAGE.rglob("*.py")),
]
MAX_LINES = 300


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = sorted(module_name(p) for p in PACKAGE.rglob("*.py"))


def imports_of(path: Path) -> set[str]:
    """Every mcqa_core module a file imports, at the top or inside a function."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("mcqa_core"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("mcqa_core"):
                continue
            for alias in node.names:  # `from ..models import inference` imports a module
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    return found - {name}


def floor(module: str) -> int:
    for prefix in sorted(FLOORS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return FLOORS[prefix]
    raise AssertionError(f"{module} sits on no floor; add its folder to FLOORS")


def folder(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_imports_only_go_down_and_make_no_circle():
    graph = {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}
    upward = [
        f"{a} -> {b}"
        for a, targets in graph.items()
        for b in targets
        if floor(b) > floor(a) or floor(b) == floor(a) and folder(b) != folder(a)
    ]
    assert not upward, upward

    def visit(node, path):  # depth-first search for a cycle
        if node in path:
            return path[path.index(node) :] + [node]
        for nxt in graph.get(node, ()):
            cycle = visit(nxt, path + [node])
            if cycle:
                return cycle
        return None

    for start in graph:
        assert visit(start, []) is None, f"import circle: {' -> '.join(visit(start, []))}"


def test_every_module_imports_on_its_own():
    """Each module in turn, with every other mcqa_core module forgotten first: no module works only because
    another one happened to be imported before it."""
    code = (
        "import importlib, sys\n"
        f"for name in {MODULES!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'mcqa_core' or m.startswith('mcqa_core.')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
        "print('imported', len(" + repr(MODULES) + "))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"imported {len(MODULES)}" in r.stdout


def test_the_library_never_imports_streamlit():
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not any(n.split(".")[0] == "streamlit" for n in names), path


def test_no_product_module_outgrows_its_job():
    long = {str(p.relative_to(REPO)): n for p in PRODUCT_FILES if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these by job: {long}"


def test_no_two_product_modules_share_a_file_name():
    """One job, one name: `evaluate.py` in four folders made every search and traceback ambiguous."""
    seen: dict[str, list[str]] = {}
    for p in PRODUCT_FILES:
        if p.name != "__init__.py":
            seen.setdefault(p.name, []).append(str(p.relative_to(REPO)))
    shared = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert not shared, f"give each a name that says its job: {shared}"
