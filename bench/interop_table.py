"""The interop matrix's figures: kept by tests/interop/test_matrix.py, rendered here.

``python -m bench.interop_table`` prints the Markdown table of the last run of every
cell (``bench/results/interop-matrix.json``); ``--write`` puts it into
``docs/interop.md`` between the ``<!-- matrix:begin -->`` and ``<!-- matrix:end -->``
lines.

The JSON maps each cell id (``frr-active-singlehop``...) to its last run: status,
the checks that failed, established time, fault-to-withdrawal time at the router
(ms) and its budget, recovery time (s), the soak length, the environment
(:func:`bench.common.environment`). A run of a few cells (``pytest -k frr``) updates
only those cells.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.common import REPO, RESULTS, env_line, environment

RESULTS_FILE = RESULTS / "interop-matrix.json"
DOC = REPO / "docs" / "interop.md"
BEGIN, END = "<!-- matrix:begin -->", "<!-- matrix:end -->"


def load(path: Path = RESULTS_FILE) -> dict[str, Any]:
    if not path.exists():
        return {"cells": {}}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def save(cells: Mapping[str, Mapping[str, Any]], path: Path = RESULTS_FILE) -> Path:
    """Merge this run's cells into the results file (other cells keep their last run)."""
    data = load(path)
    env = environment()
    for cell_id, record in cells.items():
        data["cells"][cell_id] = {**record, "environment": env}
    data["updated"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")
    return path


def _num(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def recovery_p50(cells: Mapping[str, Mapping[str, Any]]) -> float | None:
    """Median recovery over the cells (a cell that never recovered, or never got as
    far as the cut, counts as infinitely slow)."""
    values = [c.get("recovery_s") for c in cells.values()]
    return statistics.median(float("inf") if v is None else v for v in values) if values else None


def render(data: Mapping[str, Any]) -> str:
    cells: Mapping[str, Mapping[str, Any]] = data.get("cells", {})
    order = list(cells)
    try:
        from lab.matrix import CELLS

        known = [c.id for c in CELLS]
        order = [i for i in known if i in cells] + [i for i in cells if i not in known]
    except ImportError:  # pragma: no cover - lab is in the same tree
        pass
    lines = [
        "| Cell | Router | Result | Established (s) | Cut → route gone (ms) / budget "
        "| Cut lifted → route back (s) | Failed checks |",
        "| --- | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for cell_id in order:
        c = cells[cell_id]
        withdraw = _num(c.get("withdraw_ms"), ".0f")
        if c.get("withdraw_budget_ms") is not None:
            withdraw += f" / {c['withdraw_budget_ms']:.0f}"
        failures = "; ".join(c.get("failures", [])).replace("|", "\\|") or "—"
        result = "pass" if c.get("status") == "pass" else "**FAIL**"
        lines.append(
            f"| `{cell_id}` | {c.get('router', '?')} | {result} "
            f"| {_num(c.get('established_s'), '.1f')} | {withdraw} "
            f"| {_num(c.get('recovery_s'), '.2f')} | {failures} |"
        )
    p50 = recovery_p50(cells)
    passed = sum(1 for c in cells.values() if c.get("status") == "pass")
    envs = [c["environment"] for c in cells.values() if c.get("environment")]
    soaks = sorted({float(c["soak_s"]) for c in cells.values() if c.get("soak_s") is not None})
    lines += [
        "",
        f"{passed} of {len(cells)} cells pass. Recovery p50 over the cells (one that never "
        f"recovered counts as infinite): {_num(p50, '.2f')} s (target ≤ 1.5 s). Soak: "
        f"{', '.join(f'{s:g} s' for s in soaks) or 'n/a'}. Last update: "
        f"{data.get('updated', '?')}.",
    ]
    if envs:
        lines += ["", f"Environment of the last run: {env_line(envs[-1])}."]
    return "\n".join(lines) + "\n"


def write_doc(table: str, doc: Path = DOC) -> None:
    text = doc.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{BEGIN}\n{table}{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help=f"update {DOC.relative_to(REPO)}")
    parser.add_argument("--results", type=Path, default=RESULTS_FILE)
    args = parser.parse_args()
    table = render(load(args.results))
    if args.write:
        write_doc(table)
        print(f"wrote the table into {DOC}")
    else:
        print(table, end="")


if __name__ == "__main__":
    main()
