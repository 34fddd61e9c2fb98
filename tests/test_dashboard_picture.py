"""bench.dashboard_picture without the lab: reading /metrics, the compact record, what
Prometheus would compute, and drawing the picture from a recorded sample (round 1 of
the committed docs/img/failover-dashboard.json, every other scrape)."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest

from bench.dashboard_picture import (
    decode,
    derive,
    encode,
    histogram_quantile,
    main,
    parse_metrics,
    rate,
    render,
)

SAMPLE = Path(__file__).parent / "data" / "dashboard-sample.json"

EXPOSITION = """\
# HELP metallb_bgp_session_up BGP session state
# TYPE metallb_bgp_session_up gauge
metallb_bgp_session_up{peer="198.18.1.1"} 1.0
# TYPE metallb_bgp_opens_sent untyped
metallb_bgp_opens_sent{peer="198.18.1.1"} 3.0
speaker_event_loop_lag_seconds_bucket{le="0.0005"} 10.0
speaker_event_loop_lag_seconds_bucket{le="+Inf"} 12.0
speaker_event_loop_lag_seconds_sum 0.0123
speaker_event_loop_lag_seconds_count 12.0
speaker_event_loop_lag_seconds_created 1.7e9
"""


def sample() -> dict[str, object]:
    data: dict[str, object] = json.loads(SAMPLE.read_text())
    return data


def test_parse_metrics_keeps_only_the_series_the_picture_draws() -> None:
    assert parse_metrics(EXPOSITION) == {
        'metallb_bgp_session_up{peer="198.18.1.1"}': 1.0,
        'speaker_event_loop_lag_seconds_bucket{le="0.0005"}': 10.0,
        'speaker_event_loop_lag_seconds_bucket{le="+Inf"}': 12.0,
        "speaker_event_loop_lag_seconds_sum": 0.0123,
        "speaker_event_loop_lag_seconds_count": 12.0,
    }


def test_the_record_keeps_changes_only_and_decodes_back() -> None:
    scrapes = [{"a": 1.0}, {"a": 1.0, "b": 0.5}, {"a": 2.0, "b": 0.5}]
    record = encode([10.0, 10.15, 10.3], scrapes, {"rounds": []})
    assert record["series"] == {"a": [[0, 1], [2, 2]], "b": [[1, 0.5]]}
    values = decode(record)
    assert values["a"] == [1.0, 1.0, 2.0]
    assert math.isnan(values["b"][0]) and values["b"][1:] == [0.5, 0.5]


def test_histogram_quantile_interpolates_as_prometheus() -> None:
    buckets = {0.1: 1.0, 0.5: 3.0, math.inf: 4.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.3)  # 0.1 + 0.4 * 1/2
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.99, buckets) == 0.5  # in +Inf: the highest finite bound
    assert histogram_quantile(0.5, {0.1: 0.0, math.inf: 0.0}) is None


def test_rate_is_the_increase_over_the_window_per_second() -> None:
    out = rate([0.0, 0.5, 1.0, 1.5], [0.0, 10.0, 20.0, 20.0], window=1.0)
    assert math.isnan(out[0])
    assert out[1:] == pytest.approx([20.0, 20.0, 10.0])


def test_derive_reads_one_failover_from_the_sample() -> None:
    d = derive(sample())
    peer = "198.18.1.1"
    up = d["bgp_up"][peer]
    assert up[0] == 1.0 and 0.0 in up and up[-1] == 1.0  # down, then back
    assert d["bfd_flaps"][peer][0] == 0.0 and d["bfd_flaps"][peer][-1] == 1.0
    assert d["bgp_flaps"][peer][-1] == 1.0
    det = d["detection"]
    assert det["n"] == 1.0 and sum(det["count"]) == 1.0
    (hit,) = [le for le, n in zip(det["le"], det["count"], strict=True) if n]
    assert 0.001 < det["mean"] <= hit == 0.0025  # 2.3 ms, in the (1, 2.5] ms bucket
    assert d["reannounce"]["n"] == 1.0 and 5.0 < d["reannounce"]["mean"] < 10.0
    assert d["lag"]["slow_steps"] is not None and d["lag"]["slow_steps"] > 0
    # During the cut spk still sends (slowly, Down at 1 s) but receives nothing.
    (r,) = d["rounds"]
    during = [i for i, t in enumerate(d["t"]) if r["cut"] + 1.2 <= t <= r["restored"] - 0.2]
    assert during
    assert all(d["bfd_rx_rate"][peer][i] == 0.0 for i in during)
    assert all(d["bfd_rx_rate"][peer][i] > 15 for i in range(2, 4))  # 50 ms: ~20/s


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_render_draws_the_sample(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = render(sample(), tmp_path / "img" / "picture.png")
    assert _png_size(out) == (1300, 1050)
    assert out.stat().st_size > 50_000  # six panels, not a blank canvas


def test_render_only_from_the_command_line(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "p.png"
    assert main(["--render-only", "--json", str(SAMPLE), "--png", str(png)]) == 0
    assert _png_size(png) == (1300, 1050)
