"""bench.drain_stop's summary and report from recorded trials (no lab)."""

from __future__ import annotations

from bench.drain_stop import report, summarise


def test_report_of_recorded_trials() -> None:
    trials = [
        {"variant": "ours-drain", "trial": 0, "lost": 0, "gap_ms": 9.0, "exit_ms": 2080.0,
         "first_other_ms": 66.0},
        {"variant": "ours", "trial": 0, "lost": 3, "gap_ms": 12.0, "exit_ms": 110.0,
         "first_other_ms": 80.0},
        {"variant": "frr-gshut", "trial": 0, "error": "no probe data: x"},
    ]  # fmt: skip
    cells = summarise(trials)
    assert [c["variant"] for c in cells] == ["ours-drain", "ours", "frr-gshut"]
    assert cells[0]["margin_ms"]["p50"] == 2014.0 and cells[1]["lost"]["max"] == 3
    assert cells[2]["failed"] == 1
    data = {"date": "2026-12-02", "quick": False, "notes": [], "summary": cells,
            "parameters": {"drain_time_s": 2.0, "extra_routes": 0}}  # fmt: skip
    text = report(data)
    assert "| ours-drain | 1 (0) | 0 / 0 / 0 |" in text and "| frr-gshut | 1 (1) |" in text
