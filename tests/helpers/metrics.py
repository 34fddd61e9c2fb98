"""Reading the Prometheus text format as exposed, and the metric names the docs promise."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from typing import NamedTuple

#: The names the issue lists, exactly as they must appear in the exposition.
LISTED = (
    "metallb_bgp_session_up", "metallb_bgp_updates_total",
    "metallb_bgp_announced_prefixes_total", "metallb_bgp_opens_sent",
    "metallb_bgp_opens_received", "metallb_bgp_notifications_sent",
    "metallb_bgp_updates_total_received", "metallb_bgp_keepalives_sent",
    "metallb_bgp_keepalives_received", "metallb_bgp_route_refresh_sent",
    "metallb_bgp_total_sent", "metallb_bgp_total_received", "metallb_bfd_session_up",
    "metallb_bfd_control_packet_input", "metallb_bfd_control_packet_output",
    "metallb_bfd_echo_packet_input", "metallb_bfd_echo_packet_output",
    "metallb_bfd_session_up_events", "metallb_bfd_session_down_events",
    "metallb_bfd_zebra_notifications",
    "metallb_bfd_session_state_changes_total", "metallb_bfd_control_packets_sent_total",
    "metallb_bfd_control_packets_received_total", "speaker_bfd_flaps_total",
    "metallb_allocator_addresses_in_use_total", "metallb_allocator_addresses_total",
    "speaker_config_loaded", "speaker_config_stale", "metallb_k8s_client_config_loaded_bool",
    "metallb_k8s_client_config_stale_bool", "speaker_config_reloads_total",
    "speaker_service_healthy", "speaker_service_announced",
)  # fmt: skip


HISTOGRAMS = ("speaker_bfd_detection_to_teardown_seconds",
              "speaker_bgp_teardown_to_reannounce_seconds")  # fmt: skip


class Sample(NamedTuple):
    name: str
    labels: dict[str, str]
    value: float


_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], value)


def samples(text: str) -> dict[str, list[Sample]]:
    """The samples by name exactly as exposed (prometheus_client's parser would
    rename a counter's samples to ``..._total``)."""
    out: dict[str, list[Sample]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.fullmatch(line)
        assert match, line
        name, labels, number = match.groups()
        pairs = {k: _unescape(v) for k, v in _LABEL.findall(labels or "")}
        out.setdefault(name, []).append(Sample(name, pairs, float(number)))
    return out


def value(text: str, name: str, **labels: str) -> float:
    """The value of the first sample ``name`` with ``labels`` (KeyError if none)."""
    for sample in samples(text)[name]:
        if all(sample.labels.get(k) == v for k, v in labels.items()):
            return float(sample.value)
    raise KeyError((name, labels))


def fetch(url: str, method: str = "GET") -> tuple[int, dict[str, str], str]:
    """(status, headers, body) of one HTTP request, error statuses included."""
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()
