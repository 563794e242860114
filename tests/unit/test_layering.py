"""Imports go one way (STYLE.md rule 1) and the library never imports Streamlit."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "synthor_core"
# rank of each module or package (DESIGN §5): a module imports only modules of a lower rank (errors and defaults are
# the base); inside a package, files may import each other
RANK = {
    "errors": 0,
    "defaults": 0,
    "toml_files": 1,
    "schema": 1,
    "geography": 1,
    "expressions": 2,
    "units": 3,
    "codebook": 3.5,
    "targets": 4,
    "readers": 5,
    "aggregate": 6,
    "metrics": 6,
    "calibrate": 7,
    "priors": 8,
    "synthesis": 9,
    "evaluate": 10,
    "plots": 10,
    "export": 11,
    "store": 12,
    "runner": 13,
    "cli": 14,
    "__main__": 15,
    "__init__": 15,
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.add(node.module or "")
            else:
                base = path.parent if node.level == 1 else path.parent.parent
                pkg = base.relative_to(ROOT.parent).as_posix().replace("/", ".")
                found.add(f"{pkg}.{node.module}" if node.module else pkg)
    return found


def _module_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return rel.parts[0]


def test_no_streamlit_in_the_library():
    for path in ROOT.rglob("*.py"):
        assert not any(i.split(".")[0] == "streamlit" for i in _imports(path)), path


def test_imports_go_one_way():
    for path in ROOT.rglob("*.py"):
        own = _module_of(path)
        for name in _imports(path):
            if not name.startswith("synthor_core."):
                continue
            target = name.split(".")[1]
            if target == own:
                continue
            assert target in RANK, f"{path.name} imports unknown module {name}"
            assert RANK[target] < RANK[own], f"{path.relative_to(ROOT)} imports {name}, which sits to its right"


APP = ROOT.parent
PAGES = sorted((APP / "app_pages").glob("*.py"))


def test_the_app_sits_above_the_library_and_its_pages_apart():
    """The app is the last layer (STYLE rule 1): ``app_session`` and the pages import the library, never the other
    way; a page imports ``app_session`` and the library, never another page nor ``app.py``; ``app.py`` imports
    ``app_session`` and no page (it names them to ``st.navigation``)."""
    assert PAGES, "no page found in app_pages/"
    for path in ROOT.rglob("*.py"):
        assert not any(i.split(".")[0] in ("app_session", "app_pages", "app") for i in _imports(path)), path
    for path in [APP / "app_session.py", APP / "app.py", *PAGES]:
        for name in _imports(path):
            root = name.split(".")[0]
            assert root not in ("app_pages", "app"), f"{path.name} imports {name}"
            if path.name == "app_session.py":
                assert root != "app_session", path.name
    for path in PAGES:
        imported = _imports(path)
        assert "app_session" in imported, f"{path.name} does not take its session from app_session"
        assert not any(i.startswith("synthor_core.") and i.split(".")[1] in ("cli", "__main__") for i in imported), (
            f"{path.name} drives the command line instead of the library"
        )
