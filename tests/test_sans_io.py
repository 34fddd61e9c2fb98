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
