"""Operating the speaker in the lab: `speaker show ...` agrees with FRR's and gobgp's
views of the same sessions, and /metrics follows a scripted BFD down/up."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from lab import Lab, faults, wait_until
from lab.ours import REPO, OurSpeaker
from tests.helpers import Require
from tests.helpers.interop import SERVICES, gobgp_and_bfdd, speaker_config
from tests.helpers.metrics import LISTED, samples

pytestmark = pytest.mark.lab

VIP, VIP2 = "198.19.0.10/32", "198.19.0.11/32"
METRICS_PORT = 17472


def cli(lab: Lab, socket: str, *args: str, check: bool = True) -> Any:
    """`speaker ARGS -s SOCKET --json` run inside spk; the parsed JSON."""
    cp = lab["spk"].run("env", f"PYTHONPATH={REPO}", sys.executable, "-m", "speaker.cli",
                        *args, "-s", socket, check=check)  # fmt: skip
    return json.loads(cp.stdout) if check else cp


def scrape(lab: Lab) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    code = (
        "import urllib.request;"
        f"print(urllib.request.urlopen('http://127.0.0.1:{METRICS_PORT}/metrics',"
        " timeout=5).read().decode())"
    )
    text = lab["spk"].run(sys.executable, "-c", code).stdout
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for found in samples(text).values() for s in found}  # fmt: skip


def metric(values: dict[Any, float], name: str, **labels: str) -> float:
    return values[(name, tuple(sorted(labels.items())))]


def test_show_and_metrics_agree_with_the_routers_through_a_failover(
    lab: Lab, lab_require: Require
) -> None:
    lab_require("frr", "gobgp")
    gobgp, bfd = gobgp_and_bfdd(lab, "rtr1")
    rtr_addr, spk_addr = str(lab["rtr1"].addr4("spk")), str(lab["spk"].addr4("rtr1"))
    socket = str(lab.dir / "speaker.sock")
    extra = (
        SERVICES
        + f"""
[control]
socket = "{socket}"

[metrics]
address = "127.0.0.1:{METRICS_PORT}"
"""
    )
    speaker = OurSpeaker(lab["spk"], speaker_config(lab, ["rtr1"], extra=extra)).start()
    gobgp.wait_rib(lambda r: VIP in r and VIP2 in r, timeout=20, what="routes")
    bfd.wait_bfd_status(spk_addr, "up")
    wait_until(lambda: (bfd.bfd_peer(spk_addr) or {}).get("remote-receive-interval") == 50,
               timeout=5, what="fast BFD")  # fmt: skip

    # -- show bfd peers vs FRR's show bfd peers (the same session from both ends) --
    ours = cli(lab, socket, "show", "bfd", "peers", "--json")
    theirs = bfd.bfd_peer(spk_addr)
    assert theirs is not None and len(ours) == 1
    mine = ours[0]
    assert mine["peer"] == rtr_addr and mine["local"] == spk_addr and mine["name"] == "rtr1"
    assert mine["status"] == theirs["status"] == "up"
    assert mine["id"] == theirs["remote-id"] and mine["remote-id"] == theirs["id"]
    for local_key, remote_key in (
        ("receive-interval", "remote-receive-interval"),
        ("transmit-interval", "remote-transmit-interval"),
        ("detect-multiplier", "remote-detect-multiplier"),
    ):
        assert mine[local_key] == theirs[remote_key], local_key
        assert mine[remote_key] == theirs[local_key], remote_key
    counters = cli(lab, socket, "show", "bfd", "peers", "counters", "--json")[0]
    frr_counters = bfd.bfd_counters()[0]
    assert counters["session-up"] == frr_counters["session-up"] == 1
    # Packets we sent reached FRR (within a few in flight between the two reads).
    assert abs(counters["control-packet-output"] - frr_counters["control-packet-input"]) < 20

    # -- show bgp summary vs gobgp's neighbor view --
    summary = cli(lab, socket, "show", "bgp", "summary", "--json")
    row = summary["peers"][0]
    neighbor = gobgp.neighbor(spk_addr)
    received = neighbor["state"]["messages"]["received"]
    assert row["neighbor"] == rtr_addr and row["state"] == "Established"
    assert row["remoteAs"] == 64512 and row["localAs"] == 64513 and row["bfdStatus"] == "up"
    assert row["pfxSnt"] == 2 == neighbor["afi_safis"][0]["state"]["accepted"]
    detail = cli(lab, socket, "show", "bgp", "neighbor", "rtr1", "--json")
    assert detail["messages"]["sent"]["update"] == received["update"]
    assert detail["messages"]["sent"]["open"] == received["open"] == 1
    assert detail["holdTime"] == neighbor["timers"]["state"]["negotiated_hold_time"] == 9
    assert "route-refresh" in detail["capabilities"]["received"]
    routes = cli(lab, socket, "show", "routes", "--json")
    reasons = {s["service"]: s["reason"] for s in routes["peers"][0]["services"]}
    assert reasons == {"web": "announced", "api": "announced"}

    # -- /metrics before --
    before = scrape(lab)
    for name in LISTED:
        assert any(key[0] == name for key in before), name
    # MetalLB FRR mode's labels (ip:port on BGP series, vrf); ours: the address.
    bgp = {"peer": f"{rtr_addr}:179", "vrf": "default"}
    bfd_labels, ours = {"peer": rtr_addr, "vrf": "default"}, {"peer": rtr_addr}
    assert metric(before, "metallb_bgp_session_up", **bgp) == 1
    assert metric(before, "metallb_bfd_session_up", **bfd_labels) == 1
    assert metric(before, "metallb_bgp_announced_prefixes_total", **bgp) == 2
    assert metric(before, "metallb_bgp_opens_sent", **bgp) == 1
    assert metric(before, "speaker_service_announced", service="web") == 1
    downs = metric(before, "metallb_bfd_session_down_events", **bfd_labels)
    detections = metric(before, "speaker_bfd_detection_to_teardown_seconds_count", **ours)

    # -- BFD cut: down --
    fault = faults.drop_bfd(lab["spk"], direction="in")
    gobgp.wait_rib(lambda r: VIP not in r, timeout=5, what="withdrawal")
    speaker.wait_log("BGP torn down")
    down = scrape(lab)
    assert metric(down, "metallb_bfd_session_up", **bfd_labels) == 0
    assert metric(down, "metallb_bgp_session_up", **bgp) == 0
    assert metric(down, "metallb_bfd_session_down_events", **bfd_labels) == downs + 1
    assert metric(down, "speaker_bfd_flaps_total", **ours) == downs + 1
    assert metric(down, "speaker_bfd_detection_to_teardown_seconds_count", **ours) == (
        detections + 1
    )
    assert metric(down, "speaker_bfd_detection_to_teardown_seconds_sum", **ours) < 0.005
    assert metric(down, "metallb_bgp_notifications_sent", **bgp) >= 1
    assert metric(down, "speaker_service_announced", service="web") == 0
    assert metric(down, "metallb_bfd_control_packet_output", **bfd_labels) >= metric(
        before, "metallb_bfd_control_packet_output", **bfd_labels
    )
    detail = cli(lab, socket, "show", "bgp", "neighbor", "rtr1", "--json")
    assert detail["lastErrorSent"]["name"] == "Cease/Bfd Down"
    assert len(detail["failovers"]) == 1 and detail["failovers"][0]["notificationMs"] < 5
    routes = cli(lab, socket, "show", "routes", "--json")
    assert {s["reason"] for s in routes["peers"][0]["services"]} == {"bfd-down"}

    # -- restored: up again, counters carried on --
    fault.undo()
    gobgp.wait_rib(lambda r: VIP in r and VIP2 in r, timeout=30, what="routes back")

    def recovered() -> dict[Any, float] | None:
        values = scrape(lab)
        done = metric(values, "speaker_bgp_teardown_to_reannounce_seconds_count", **ours)
        return values if done >= 1 and metric(values, "metallb_bgp_session_up", **bgp) else None

    after = wait_until(recovered, timeout=10, what="re-announce recorded")
    assert metric(after, "metallb_bfd_session_up", **bfd_labels) == 1
    assert (
        metric(after, "metallb_bfd_session_up_events", **bfd_labels)
        == metric(before, "metallb_bfd_session_up_events", **bfd_labels) + 1
    )
    assert metric(after, "metallb_bgp_opens_sent", **bgp) >= 2  # a retry may add one
    assert metric(after, "metallb_bgp_updates_total", **bgp) > metric(
        before, "metallb_bgp_updates_total", **bgp
    )
    assert metric(after, "metallb_bgp_total_sent", **bgp) > metric(
        down, "metallb_bgp_total_sent", **bgp
    )
    assert metric(after, "metallb_bgp_announced_prefixes_total", **bgp) == 2
    summary = cli(lab, socket, "show", "bgp", "summary", "--json")
    assert summary["peers"][0]["connectionsDropped"] == 1

    assert speaker.terminate() == 0
    assert not (lab.dir / "speaker.sock").exists()
    failed = cli(lab, socket, "show", "bgp", "summary", check=False)
    assert failed.returncode == 1 and "is the speaker running?" in failed.stderr
