"""The suite report picks a benchmark's newest full result by when the run started."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import bench.__main__ as suite


def _result(d: Path, name: str, at: float | None, mtime: float) -> Path:
    md = d / f"{name}.md"
    md.write_text("# r\n")
    env = {} if at is None else {"quiet_at_start": {"at": at}}
    md.with_suffix(".json").write_text(json.dumps({"environment": env}))
    os.utime(md, (mtime, mtime))
    return md


def test_newest_full_orders_by_start_time_within_a_date(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(suite, "RESULTS", tmp_path)
    later = _result(tmp_path, "2026-12-03-scale-product-b", at=2000.0, mtime=100.0)
    _result(tmp_path, "2026-12-03-scale-product-a", at=1000.0, mtime=900.0)
    _result(tmp_path, "2026-12-02-scale-product", at=5000.0, mtime=5000.0)
    _result(tmp_path, "2026-12-03-scale-product-quick", at=9000.0, mtime=9000.0)
    assert suite.newest_full("scale-product") == later


def test_newest_full_falls_back_to_mtime_without_a_start_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(suite, "RESULTS", tmp_path)
    _result(tmp_path, "2026-12-03-footprint-a", at=None, mtime=100.0)
    newer = _result(tmp_path, "2026-12-03-footprint-b", at=None, mtime=200.0)
    assert suite.newest_full("footprint") == newer
