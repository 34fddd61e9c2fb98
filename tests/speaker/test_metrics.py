"""/metrics: every listed name exactly, the ``peer`` label, monotonic counters and
histograms, and the tiny HTTP server."""

from __future__ import annotations

import functools
import ipaddress
import re
import types
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trio

from speaker.metrics import (
    METALLB_NAMES,
    Family,
    SpeakerCollector,
    bfd_label,
    bgp_label,
    serve_metrics,
)
from speaker.peer import FailoverRecord
from tests.helpers.metrics import (
    HISTOGRAMS,
    LISTED,
    fetch,
    samples,
    value,
)
from tests.helpers.running import is_healthy, running_speaker, wait_until

pytestmark = pytest.mark.usefixtures("bfd_not_held")  # tests/speaker/conftest.py


#: Series labelled as MetalLB's FRR mode labels them (peer, vrf).
METALLB_PEER_SERIES = [n for n in LISTED if (n.startswith("metallb_b") and not n.endswith("_total"))
                       or n in ("metallb_bgp_updates_total",
                                "metallb_bgp_announced_prefixes_total")]  # fmt: skip
#: Ours, labelled peer = the address.
OUR_PEER_SERIES = ["metallb_bfd_session_state_changes_total",
                   "metallb_bfd_control_packets_sent_total",
                   "metallb_bfd_control_packets_received_total", "speaker_bfd_flaps_total",
                   "speaker_bgp_session_flaps_total", "speaker_peer_restarts_total"]  # fmt: skip

#: Every family MetalLB's FRR mode exposes: (name, type, help), from metallb/metallb
#: (commit 7938d3f89) frr-tools/metrics/collector/bgp.go and bfd.go, with the names of
#: internal/bgp/metrics/metrics.go. Every one carries the labels peer and vrf: peer is
#: "ip:port" on BGP series (fmt.Sprintf("%s:%d", n.IP, n.Port)), FRR's BFD peer
#: address on BFD series. Go's client exposes a counter under its name as given (no
#: "_total" appended).
METALLB_FRR_MODE = (
    ("metallb_bgp_session_up", "gauge", "BGP session state (1 is up, 0 is down)"),
    ("metallb_bgp_announced_prefixes_total", "gauge",
     "Number of prefixes currently being advertised on the BGP session"),
    ("metallb_bgp_opens_sent", "counter", "Number of BGP open messages sent"),
    ("metallb_bgp_opens_received", "counter", "Number of BGP open messages received"),
    ("metallb_bgp_notifications_sent", "counter", "Number of BGP notification messages sent"),
    ("metallb_bgp_updates_total", "counter", "Number of BGP UPDATE messages sent"),
    ("metallb_bgp_updates_total_received", "counter", "Number of BGP UPDATE messages received"),
    ("metallb_bgp_keepalives_sent", "counter", "Number of BGP keepalive messages sent"),
    ("metallb_bgp_keepalives_received", "counter", "Number of BGP keepalive messages received"),
    ("metallb_bgp_route_refresh_sent", "counter", "Number of BGP route refresh messages sent"),
    ("metallb_bgp_total_sent", "counter", "Number of total BGP messages sent"),
    ("metallb_bgp_total_received", "counter", "Number of total BGP messages received"),
    ("metallb_bfd_session_up", "gauge", "BFD session state (1 is up, 0 is down)"),
    ("metallb_bfd_control_packet_input", "counter", "Number of received BFD control packets"),
    ("metallb_bfd_control_packet_output", "counter", "Number of sent BFD control packets"),
    ("metallb_bfd_echo_packet_input", "counter", "Number of received BFD echo packets"),
    ("metallb_bfd_echo_packet_output", "counter", "Number of sent BFD echo packets"),
    ("metallb_bfd_session_up_events", "counter", "Number of BFD session up events"),
    ("metallb_bfd_session_down_events", "counter", "Number of BFD session down events"),
    ("metallb_bfd_zebra_notifications", "counter", "Number of BFD zebra notifications"),
)  # fmt: skip
#: MetalLB's allocator gauges (internal/allocator/stats.go), label pool.
METALLB_ALLOCATOR = (
    ("metallb_allocator_addresses_in_use_total", "gauge",
     "Number of IP addresses in use, per pool"),
    ("metallb_allocator_addresses_total", "gauge", "Number of usable IP addresses, per pool"),
)  # fmt: skip


def headers(text: str) -> dict[str, tuple[str, str]]:
    """Per family name: (type, help) from its TYPE and HELP lines."""
    helps = dict(line[7:].split(" ", 1) for line in text.splitlines() if line.startswith("# HELP "))
    types = dict(line[7:].split(" ", 1) for line in text.splitlines() if line.startswith("# TYPE "))
    assert set(helps) == set(types)
    return {name: (types[name], helps[name]) for name in types}


async def scrape(speaker: Any, collector: SpeakerCollector | None = None) -> str:
    return (await (collector or SpeakerCollector(speaker)).scrape()).decode()


async def test_every_listed_name_is_exposed_exactly_with_the_peer_label(tmp_path: Path) -> None:
    async with running_speaker(tmp_path) as spk:
        await wait_until(functools.partial(is_healthy, spk, "web"))

        async def bfd_up() -> bool:
            return value(await scrape(spk.speaker), "metallb_bfd_session_up", peer="127.0.0.1") == 1

        await wait_until(bfd_up)
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
    assert "# TYPE metallb_bgp_opens_sent counter" in lines
    assert "untyped" not in text
    # MetalLB's peer label: ip:port on BGP series, the address on BFD ones; vrf; ours:
    # the address. r2 has no BFD.
    port = spk.speaker.peers["r1"].plan.bgp.peer_port
    for name in METALLB_PEER_SERIES:
        labels = {tuple(sorted(s.labels.items())) for s in found[name]}
        if "bfd" in name:
            expected = {(("peer", "127.0.0.1"), ("vrf", "default"))}
        else:
            expected = {(("peer", f"127.0.0.{i}:{port}"), ("vrf", "default")) for i in (1, 3)}
        assert labels == expected, name
    for name in OUR_PEER_SERIES:
        peers = {s.labels["peer"] for s in found[name]}
        addresses = {"127.0.0.1"} if "bfd" in name else {"127.0.0.1", "127.0.0.3"}
        assert peers == addresses, name
    bgp, bfd = {"peer": f"127.0.0.1:{port}", "vrf": "default"}, {"peer": "127.0.0.1"}
    assert value(text, "metallb_bfd_session_up", **bfd) == 1
    assert value(text, "metallb_bfd_session_up_events", **bfd) == 1
    assert value(text, "metallb_bfd_zebra_notifications", **bfd) == 1
    assert value(text, "metallb_bfd_control_packet_input", **bfd) > 0
    assert value(text, "metallb_bgp_session_up", **bgp) == 0
    assert value(text, "metallb_allocator_addresses_total", pool="vips") == 256
    assert value(text, "metallb_allocator_addresses_total", pool="all") == 4
    assert value(text, "metallb_allocator_addresses_in_use_total", pool="vips") == 3
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
        bgp = {"peer": f"127.0.0.1:{runner.plan.bgp.peer_port}"}
        assert value(text, "metallb_bgp_opens_sent", **bgp) == 3
        assert value(text, "metallb_bgp_updates_total", **bgp) == 5
        assert value(text, "metallb_bgp_total_sent", **bgp) == 15
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
        assert not [s for s in samples(text)["metallb_bgp_session_up"]
                    if s.labels["peer"] == bgp["peer"]]  # fmt: skip
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


async def test_metallb_frr_mode_families_have_metallb_names_types_help_and_labels(
    tmp_path: Path,
) -> None:
    """Every family of MetalLB's FRR mode (METALLB_FRR_MODE, from its source), with
    its type, help text and label set; BGP ``peer`` = ``ip:port``, BFD ``peer`` = the
    address, ``vrf`` = ``default``; and the allocator's gauges with label ``pool``."""
    async with running_speaker(tmp_path) as spk:
        text = await scrape(spk.speaker)
        port = spk.speaker.peers["r1"].plan.bgp.peer_port
    found, declared = samples(text), headers(text)
    for name, kind, doc in METALLB_FRR_MODE:
        assert declared.get(name) == (kind, doc), name
        assert found[name], name
        for sample in found[name]:
            assert set(sample.labels) == {"peer", "vrf"}, name
            assert sample.labels["vrf"] == "default"
            if name.startswith("metallb_bgp_"):
                assert sample.labels["peer"] in {f"127.0.0.1:{port}", f"127.0.0.3:{port}"}
            else:
                assert sample.labels["peer"] == "127.0.0.1"
    for name, kind, doc in METALLB_ALLOCATOR:
        assert declared.get(name) == (kind, doc), name
        assert {tuple(s.labels) for s in found[name]} == {("pool",)}
        assert {s.labels["pool"] for s in found[name]} == {"vips", "all"}
    # Nothing untyped, and no other family claims a MetalLB FRR-mode name.
    assert all(kind != "untyped" for kind, _ in declared.values())
    assert {n for n, _, _ in METALLB_FRR_MODE} <= set(METALLB_NAMES)
    # Every family exposed is documented, with its type.
    docs = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    for name, (kind, _) in declared.items():
        assert re.search(rf"^\| `{name}` \| {kind} \|", docs, re.M), name


def test_an_ipv6_bgp_peer_label_is_go_s_ip_colon_port() -> None:
    """fmt.Sprintf("%s:%d", ip, port) in MetalLB's bgp.go: no brackets."""
    plan = types.SimpleNamespace(
        bgp=types.SimpleNamespace(peer_address=ipaddress.ip_address("2001:2::1"), peer_port=179),
        bfd_target=None,
    )
    runner = types.SimpleNamespace(plan=plan)
    assert bgp_label(runner) == "2001:2::1:179"  # type: ignore[arg-type]  # a stand-in runner
    assert bfd_label(runner) == "2001:2::1"  # type: ignore[arg-type]  # a stand-in runner


def test_label_values_and_help_are_escaped() -> None:
    family = Family("x", "a \\ b\nc", "gauge", ["service"])
    family.add(['we"b\\\n'], 1.0)
    assert family.header() == "# HELP x a \\\\ b\\nc\n# TYPE x gauge\n"
    assert family.lines == ['x{service="we\\"b\\\\\\n"} 1.0\n']
    assert samples("".join(family.lines))["x"][0].labels == {"service": 'we"b\\\n'}


async def test_the_collector_does_not_keep_a_replaced_config_alive(tmp_path: Path) -> None:
    """Its caches refer to the config weakly: holding the old one, the scrape after a
    reload would free a whole replaced config in one step (27 ms at 65,536 services)
    after the reload's own sliced free had left it to them."""
    import gc
    import weakref

    async with running_speaker(tmp_path) as spk:
        collector = SpeakerCollector(spk.speaker)
        await scrape(spk.speaker, collector)  # builds the per-config caches
        old = weakref.ref(spk.speaker.derived)
        spk.config.write_text(spk.config.read_text() + "\n# touched\n")
        await spk.ask("reload")
        for _ in range(100):  # the speaker frees the old config in the background
            await trio.sleep(0.05)
            gc.collect()
            if old() is None:
                break
        # ... with no scrape since: the collector's caches did not hold it.
        assert old() is None
        await scrape(spk.speaker, collector)


async def test_a_peer_in_a_vrf_has_its_vrf_in_the_vrf_label(tmp_path: Path) -> None:
    """MetalLB's ``vrf`` label: the VRF device's name. ``lo`` is no VRF, so that peer
    does not start (one line, retried): its series are there, at 0."""
    extra = (
        '\n[[peers]]\nname = "red-tor"\npeer_address = "127.0.0.9"\npeer_asn = 64512\nvrf = "lo"\n'
    )
    async with running_speaker(tmp_path, extra) as spk:
        text = await scrape(spk.speaker)
    assert value(text, "metallb_bgp_session_up", peer="127.0.0.9:179", vrf="lo") == 0
