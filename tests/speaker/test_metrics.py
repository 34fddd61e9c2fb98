"""/metrics: every listed name exactly, the ``peer`` label, monotonic counters and
histograms, and the tiny HTTP server."""

from __future__ import annotations

import functools
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from speaker.metrics import METALLB_NAMES, SpeakerCollector, serve_metrics
from speaker.peer import FailoverRecord
from tests.speaker.test_control import (  # bfd_not_held: autouse, as there
    bfd_not_held,  # noqa: F401
    is_healthy,
    running_speaker,
    wait_for,
)

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
    "metallb_bfd_session_state_changes_total", "metallb_bfd_control_packets_sent_total",
    "metallb_bfd_control_packets_received_total", "speaker_bfd_flaps_total",
    "speaker_config_loaded", "speaker_config_stale", "metallb_k8s_client_config_loaded_bool",
    "metallb_k8s_client_config_stale_bool", "speaker_config_reloads_total",
    "speaker_service_healthy", "speaker_service_announced",
)  # fmt: skip
HISTOGRAMS = ("speaker_bfd_detection_to_teardown_seconds",
              "speaker_bgp_teardown_to_reannounce_seconds")  # fmt: skip
PEER_SERIES = [n for n in LISTED if n.startswith("metallb_b")] + ["speaker_bfd_flaps_total"]


def samples(text: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def value(text: str, name: str, **labels: str) -> float:
    for sample in samples(text)[name]:
        if all(sample.labels.get(k) == v for k, v in labels.items()):
            return float(sample.value)
    raise KeyError((name, labels))


async def scrape(speaker: Any, collector: SpeakerCollector | None = None) -> str:
    return (await (collector or SpeakerCollector(speaker)).scrape()).decode()


async def test_every_listed_name_is_exposed_exactly_with_the_peer_label(tmp_path: Path) -> None:
    async with running_speaker(tmp_path) as spk:
        await wait_for(functools.partial(is_healthy, spk, "web"))

        async def bfd_up() -> bool:
            return value(await scrape(spk.speaker), "metallb_bfd_session_up", peer="127.0.0.1") == 1

        await wait_for(bfd_up)
        text = await scrape(spk.speaker)
    found = samples(text)
    for name in LISTED:
        assert name in found, name
    assert set(METALLB_NAMES) <= set(found)
    for name in HISTOGRAMS:
        for suffix in ("_bucket", "_count", "_sum"):
            assert name + suffix in found, name + suffix
    # The exact exposed text: no "_total" appended where MetalLB has none.
    lines = text.splitlines()
    for name in LISTED:
        assert any(line.startswith(name + "{") or line.startswith(name + " ")
                   for line in lines), name  # fmt: skip
    assert "metallb_bgp_opens_sent_total" not in text
    assert "metallb_bgp_announced_prefixes_total_total" not in text
    assert "# TYPE metallb_bgp_updates_total counter" in lines
    assert "# TYPE metallb_bgp_opens_sent untyped" in lines
    # Label peer = the peer's address, on every per-peer series; r2 has no BFD.
    for name in PEER_SERIES:
        peers = {s.labels["peer"] for s in found[name]}
        expected = {"127.0.0.1"} if "bfd" in name else {"127.0.0.1", "127.0.0.3"}
        assert peers == expected, name
    assert value(text, "metallb_bfd_session_up", peer="127.0.0.1") == 1
    assert value(text, "metallb_bfd_session_up_events", peer="127.0.0.1") == 1
    assert value(text, "metallb_bfd_control_packet_input", peer="127.0.0.1") > 0
    assert value(text, "metallb_bgp_session_up", peer="127.0.0.1") == 0
    assert value(text, "speaker_config_loaded") == 1 and value(text, "speaker_config_stale") == 0
    assert value(text, "speaker_config_reloads_total", result="applied") == 0
    assert value(text, "speaker_service_healthy", service="web") == 1
    assert value(text, "speaker_service_healthy", service="api") == 0
    assert value(text, "speaker_service_announced", service="web") == 0  # not established


async def test_counters_stay_monotonic_across_sessions_and_runner_replacement(
    tmp_path: Path,
) -> None:
    async with running_speaker(tmp_path) as spk:
        speaker = spk.speaker
        runner = speaker.peers["r1"]
        collector = SpeakerCollector(speaker)
        # A finished BGP session's counters (retired) count, as do BFD's.
        runner.retired.update({"out:open": 3, "in:open": 2, "out:update": 5, "flaps": 2,
                               "out:keepalive": 7, "in:notification": 1})  # fmt: skip
        runner.bfd_retired.update({"down_events": 4, "up_events": 4, "control_tx": 100})
        runner.failovers.append(FailoverRecord(detected_at=1.0, cancelled_at=1.0,
                                               notification_at=1.0004, closed_at=1.0006,
                                               diag="CONTROL_DETECTION_TIME_EXPIRED"))  # fmt: skip
        runner.reannounce_delays.append(4.2)
        text = await scrape(speaker, collector)
        peer = {"peer": "127.0.0.1"}
        assert value(text, "metallb_bgp_opens_sent", **peer) == 3
        assert value(text, "metallb_bgp_updates_total", **peer) == 5
        assert value(text, "metallb_bgp_total_sent", **peer) == 15
        assert value(text, "metallb_bfd_session_down_events", **peer) == 4
        assert value(text, "speaker_bfd_flaps_total", **peer) == 4
        assert value(text, "metallb_bfd_control_packets_sent_total", **peer) >= 100
        name = "speaker_bfd_detection_to_teardown_seconds"
        assert value(text, name + "_count", **peer) == 1
        assert value(text, name + "_sum", **peer) == pytest.approx(0.0004)
        assert value(text, name + "_bucket", le="0.0005", **peer) == 1
        assert value(text, name + "_bucket", le="0.00025", **peer) == 0
        assert value(text, "speaker_bgp_teardown_to_reannounce_seconds_bucket", le="5.0",
                     **peer) == 1  # fmt: skip
        # A reload that replaces the runner: its histogram observations are kept, and a
        # record it made after the last scrape is still counted.
        runner.failovers.append(FailoverRecord(detected_at=2.0, cancelled_at=None,
                                               notification_at=None, closed_at=2.003,
                                               diag="CONTROL_DETECTION_TIME_EXPIRED"))  # fmt: skip
        del speaker.peers["r1"]
        text = await scrape(speaker, collector)
        assert value(text, name + "_count", **peer) == 2
        assert value(text, name + "_bucket", le="0.005", **peer) == 2
        assert not [s for s in samples(text)["metallb_bgp_session_up"] if s.labels == peer]
        speaker.peers["r1"] = runner  # for the orderly shutdown
        text = await scrape(speaker, collector)
        assert value(text, name + "_count", **peer) == 2  # folded once only


async def test_reload_results_and_stale_config_are_counted(tmp_path: Path) -> None:
    async with running_speaker(tmp_path) as spk:
        good = spk.config.read_text()
        spk.config.write_text(good + "\n[[nonsense]]\n")
        await spk.ask("reload")
        text = await scrape(spk.speaker)
        assert value(text, "speaker_config_stale") == 1
        assert value(text, "metallb_k8s_client_config_stale_bool") == 1
        assert value(text, "speaker_config_reloads_total", result="rejected") == 1
        spk.config.write_text(good)
        await spk.ask("reload")
        text = await scrape(spk.speaker)
        assert value(text, "speaker_config_stale") == 0
        assert value(text, "speaker_config_reloads_total", result="applied") == 1
        assert value(text, "metallb_k8s_client_config_loaded_bool") == 1


def fetch(url: str, method: str = "GET") -> tuple[int, dict[str, str], str]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


async def test_http_endpoint_serves_metrics_and_nothing_else(tmp_path: Path) -> None:
    async with running_speaker(tmp_path) as spk, trio.open_nursery() as nursery:
        listeners = await nursery.start(serve_metrics, spk.speaker, "127.0.0.1", 0)
        port = listeners[0].socket.getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        status, headers, body = await trio.to_thread.run_sync(fetch, base + "/metrics")
        assert status == 200
        assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert "metallb_bgp_session_up" in samples(body)
        status, _, body = await trio.to_thread.run_sync(fetch, base + "/metrics?x=1", "HEAD")
        assert status == 200 and body == ""
        assert (await trio.to_thread.run_sync(fetch, base + "/nope"))[0] == 404
        assert (await trio.to_thread.run_sync(fetch, base + "/metrics", "POST"))[0] == 405
        assert (await trio.to_thread.run_sync(fetch, base + "/"))[0] == 200
        # Two scrapes at once are served one after the other in the Trio loop.
        results: Counter[int] = Counter()

        async def one() -> None:
            results[(await trio.to_thread.run_sync(fetch, base + "/metrics"))[0]] += 1

        async with trio.open_nursery() as scrapes:
            for _ in range(4):
                scrapes.start_soon(one)
        assert results == Counter({200: 4})
        nursery.cancel_scope.cancel()
