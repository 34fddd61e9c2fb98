"""protocols/ stays sans-IO: no module there imports I/O, clocks, randomness or logging."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

FORBIDDEN = {
    "trio", "asyncio", "socket", "select", "selectors", "ssl", "time", "random", "logging",
    "os", "subprocess", "threading", "multiprocessing", "signal", "datetime", "secrets",
    "speaker",
}  # fmt: skip
ROOT = Path(__file__).resolve().parents[1] / "protocols"
MODULES = sorted(ROOT.rglob("*.py"))


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            roots.add("__import__")
    return roots


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_protocol_module_is_sans_io(path: Path) -> None:
    bad = imported_roots(path) & (FORBIDDEN | {"__import__"})
    assert not bad, f"{path.relative_to(ROOT.parent)} imports {sorted(bad)}"


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import trio\nfrom time import monotonic\nimport random as r\n")
    assert imported_roots(bad) >= {"trio", "time", "random"}


def test_there_are_modules_to_check() -> None:
    assert len(MODULES) >= 3


# ---- the BGP core's import graph ---------------------------------------------------------

BGP = ROOT / "bgp"


def bgp_imports(path: Path) -> set[str]:
    """The protocols.bgp modules ``path`` imports (anywhere in it, TYPE_CHECKING and
    function bodies too), by file stem."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                out.add(node.module.split(".")[0])
            elif node.level == 1:
                out |= {alias.name for alias in node.names}
            elif node.level == 0 and (node.module or "").startswith("protocols.bgp."):
                out.add((node.module or "").split(".")[2])
        elif isinstance(node, ast.Import):
            out |= {
                alias.name.split(".")[2]
                for alias in node.names
                if alias.name.startswith("protocols.bgp.")
            }
    return out


def test_bgp_errors_is_a_leaf() -> None:
    """As h11's errors: raising an error never imports the codec (messages builds the
    NOTIFICATION from the error, not the error from messages)."""
    assert bgp_imports(BGP / "errors.py") == set()


def test_bgp_core_modules_import_no_cycle() -> None:
    graph = {p.stem: bgp_imports(p) for p in BGP.glob("*.py") if p.stem != "__init__"}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, "import cycle: " + " -> ".join((*path, module))
        if module in done:
            return
        for imported in sorted(graph.get(module, ())):
            visit(imported, (*path, module))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())


def test_the_graph_check_sees_a_cycle(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from .b import x\n")
    assert bgp_imports(tmp_path / "a.py") == {"b"}
    (tmp_path / "c.py").write_text("def f():\n    from protocols.bgp.messages import M\n")
    assert bgp_imports(tmp_path / "c.py") == {"messages"}
