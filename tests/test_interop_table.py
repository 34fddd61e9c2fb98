"""bench.interop_table: the matrix's JSON merges per cell, renders in matrix order,
and lands between the markers of docs/interop.md."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.interop_table import BEGIN, END, load, recovery_p50, render, save, write_doc


def cell(status: str, recovery: float | None, **kw: Any) -> dict[str, Any]:
    return {"status": status, "recovery_s": recovery, "router": "R", "failures": [], **kw}


def test_recovery_p50_counts_a_cell_that_never_recovered_as_infinite() -> None:
    assert recovery_p50({}) is None
    assert recovery_p50({"a": cell("pass", 1.0), "b": cell("pass", 2.0)}) == 1.5
    p50 = recovery_p50({"a": cell("pass", 1.0), "b": cell("fail", None), "c": cell("fail", None)})
    assert p50 is not None and math.isinf(p50)


def test_save_merges_cells_and_render_follows_the_matrix_order(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    save({"gobgp-singlehop": cell("fail", 5.2, failures=["slow | really"])}, path)
    frr = cell("pass", 1.4, withdraw_ms=320.0, withdraw_budget_ms=400, established_s=1.0)
    save({"frr-active-singlehop": frr}, path)
    data = load(path)
    assert set(data["cells"]) == {"gobgp-singlehop", "frr-active-singlehop"}
    table = render(data)
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert rows[0].startswith("| `frr-active-singlehop` | R | pass | 1.0 | 320 / 400 | 1.40 |")
    assert "**FAIL**" in rows[1] and "slow \\| really" in rows[1]
    assert "1 of 2 cells pass" in table


def test_write_doc_replaces_only_the_table(tmp_path: Path) -> None:
    doc = tmp_path / "interop.md"
    doc.write_text(f"# head\n\n{BEGIN}\nold table\n{END}\n\ntail\n")
    write_doc("| new |\n", doc)
    assert doc.read_text() == f"# head\n\n{BEGIN}\n| new |\n{END}\n\ntail\n"
