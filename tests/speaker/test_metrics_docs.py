"""docs/grafana-dashboard.json and docs/prometheus-alerts.yaml parse, and use only
series that /metrics exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.helpers.metrics import HISTOGRAMS, LISTED

DOCS = Path(__file__).resolve().parents[2] / "docs"
NAME = re.compile(r"\b((?:metallb|speaker)_[a-z0-9_]+)")
EXPOSED = set(LISTED) | {
    "speaker_bfd_rejected_packets_total", "speaker_bfd_unmatched_packets_total",
    "speaker_bgp_session_flaps_total", "speaker_peer_restarts_total",
    "speaker_event_loop_longest_step_seconds", "speaker_event_loop_slow_steps_total",
    "speaker_services",
} | {h + s for h in (*HISTOGRAMS, "speaker_event_loop_lag_seconds")
     for s in ("_bucket", "_sum", "_count")}  # fmt: skip


def exprs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for v in node.values() for e in exprs(v)]
    if isinstance(node, list):
        return [e for v in node for e in exprs(v)]
    return []


def test_grafana_dashboard_is_valid_and_uses_exposed_series() -> None:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 30
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["targets"] and set(panel["gridPos"]) == {"x", "y", "w", "h"}
    used = {name for e in exprs(panels) for name in NAME.findall(e)}
    assert used <= EXPOSED, used - EXPOSED
    for wanted in ("metallb_bgp_session_up", "metallb_bfd_session_up",
                   "speaker_bfd_flaps_total", "metallb_bgp_announced_prefixes_total",
                   "speaker_config_stale",
                   "speaker_bfd_detection_to_teardown_seconds_bucket"):  # fmt: skip
        assert wanted in used, wanted
    assert any("histogram_quantile" in e for e in exprs(panels))


def test_prometheus_alerts_parse_and_cover_the_issue() -> None:
    rules = yaml.safe_load((DOCS / "prometheus-alerts.yaml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    for rule in alerts.values():
        assert set(rule) >= {"alert", "expr", "labels", "annotations"}
        # Every rule reads our series, or Prometheus's own "up" of the speaker's job.
        assert NAME.findall(rule["expr"]) or 'up{job="speaker"}' in rule["expr"]
        assert set(NAME.findall(rule["expr"])) <= EXPOSED
    assert alerts["SpeakerBGPSessionDown"]["for"] == "30s"
    assert alerts["SpeakerBFDSessionDown"]["for"] == "30s"
    assert "metallb_bgp_session_up == 0" in alerts["SpeakerBGPSessionDown"]["expr"]
    assert "metallb_bfd_session_up == 0" in alerts["SpeakerBFDSessionDown"]["expr"]
    flapping = alerts["SpeakerBFDFlapping"]["expr"]
    assert "[10m]" in flapping and "> 3" in flapping
    assert "speaker_config_stale" in alerts["SpeakerConfigStale"]["expr"]
    # A speaker that stopped being scraped, or no speaker scraped at all.
    assert alerts["SpeakerScrapeFailing"]["expr"] == 'up{job="speaker"} == 0'
    assert alerts["SpeakerMetricsAbsent"]["expr"] == 'absent(up{job="speaker"})'
