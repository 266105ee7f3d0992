"""The package's layout rules (README "Layout"): imports flow one way, the command line lives in irl_core/cli."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "irl_core"


def _modules() -> dict[str, Path]:
    mods = {}
    for p in PACKAGE.rglob("*.py"):
        name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = p
    return mods


def _imports(path: Path, mods: dict[str, Path]) -> set[str]:
    """irl_core modules imported anywhere in ``path`` (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in mods}
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative enough for this size)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_lazy_imports_included():
    mods = _modules()
    graph = {m: {t for t in _imports(p, mods) if t != m and not m.startswith(t + ".")} for m, p in mods.items()}
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_argparse_only_in_the_cli_package():
    outside = [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py")
               if "cli" not in p.relative_to(PACKAGE).parts[:1] and ("import argparse" in p.read_text() or "ArgumentParser" in p.read_text())]
    assert outside == []


def test_paths_and_app_state_stay_light():
    """The sidebar's modules import neither torch nor streamlit at import time (a page can draw before torch loads)."""
    for name in ("paths", "app_state"):
        tree = ast.parse((PACKAGE / f"{name}.py").read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
        names += [n.module for n in top if isinstance(n, ast.ImportFrom) and n.module]
        assert not any(m.split(".")[0] in ("torch", "streamlit") for m in names), (name, names)
        assert all(m in ("__future__", "functools", "json", "os", "dataclasses", "pathlib", "irl_core.paths")
                   for m in names), (name, names)


def test_readme_layout_names_every_module():
    readme = (ROOT / "README.md").read_text()
    tree = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    files = [p for p in [*PACKAGE.rglob("*.py"), *(ROOT / "app_pages").rglob("*.py")] if p.name != "__init__.py"
             or p.parent.name == "cli"]
    missing = [str(p.relative_to(ROOT)) for p in files if str(p.relative_to(ROOT)) not in tree]
    assert missing == []


def test_every_menu_page_file_exists():
    from irl_core import app_state
    assert [p.file for p in (*app_state._PAGES, *app_state._ANT_PAGES) if not (ROOT / p.file).is_file()] == []


def test_long_modules_say_why_and_functions_stay_short():
    """Modules over ~400 lines state at their top why they are one module; no function runs past ~80 lines."""
    files = [*PACKAGE.rglob("*.py"), *(ROOT / "app_pages").rglob("*.py"), ROOT / "app.py"]
    unexplained, long_functions = [], []
    for p in files:
        text = p.read_text()
        tree = ast.parse(text)
        doc = ast.get_docstring(tree) or ""
        if len(text.splitlines()) > 420 and not ("One module" in doc or "One page" in doc):
            unexplained.append(str(p.relative_to(ROOT)))
        long_functions += [f"{p.relative_to(ROOT)}:{n.name}" for n in ast.walk(tree)
                           if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno >= 90]
    assert unexplained == [] and long_functions == []
