"""FRR and the speaker on the same lab session, compared key by key: rtr1 runs FRR
8.4 bgpd + bfdd (``neighbor X bfd``, as operators configure it), spk runs the
speaker. For ``show bfd peers json``, ``show bfd peer X json``, ``show bgp summary
json``, ``show bgp neighbors X json`` and ``... advertised-routes json``: every key
FRR writes is in ours, every difference (a key FRR lacks, a value of another JSON
type: ``null`` for what we do not measure) is listed in docs/operations.md, and the
values that must mirror (ids, timers, AS numbers, router IDs, message and prefix
counts) agree. Then ``clear bgp X soft out``, a BFD failure (Up/Down: the time since
the drop, as FRR shows it) and ``clear bgp X``, seen from both ends."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lab import Lab, faults, wait_until
from lab.ours import REPO, OurSpeaker
from tests.helpers import Require
from tests.helpers.interop import frr_coupled_speaker_config, frr_router

pytestmark = pytest.mark.lab

VIP = "198.19.0.10/32"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
SECTION = "### Deliberate differences from FRR 8.4"


def documented() -> set[str]:
    """The keys docs/operations.md lists as deliberate differences (in backquotes)."""
    text = DOCS.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start)
    return set(re.findall(r"`([^`\s]+)`", text[start : end if end > 0 else None]))


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def compare(what: str, theirs: dict[str, Any], ours: dict[str, Any], *, deep: tuple[str, ...] = (),
            found: dict[str, set[str]]) -> None:  # fmt: skip
    """FRR's keys are a subset of ours; our extra keys and the keys whose JSON types
    differ are collected in ``found`` (by command) for the docs check."""
    missing = set(theirs) - set(ours)
    assert not missing, f"{what}: FRR's keys missing from ours: {sorted(missing)}"
    diff = found.setdefault(what, set())
    diff.update(set(ours) - set(theirs))
    for key, value in theirs.items():
        if key in deep and isinstance(value, dict):
            compare(what, value, ours[key], deep=deep, found=found)
        elif kind(value) != kind(ours[key]):
            diff.add(key)


def test_show_matches_frr_key_by_key_through_soft_out_failover_and_clear(
    lab: Lab, lab_require: Require
) -> None:
    lab_require("frr")
    spk, rtr = lab["spk"], lab["rtr1"]
    s_addr, r_addr = str(spk.addr4("rtr1")), str(rtr.addr4("spk"))
    frr = frr_router(lab, passive=False)
    socket = str(lab.dir / "speaker.sock")
    config = frr_coupled_speaker_config(lab, strict=False) + f'\n[control]\nsocket = "{socket}"\n'
    speaker = OurSpeaker(spk, config).start()

    def ours(*words: str, check: bool = True) -> Any:
        cp = spk.run("env", f"PYTHONPATH={REPO}", sys.executable, "-m", "speaker.cli", "show",
                     *words, "json", "-s", socket, check=check)  # fmt: skip
        return json.loads(cp.stdout)

    def clear(*words: str) -> str:
        cp = spk.run("env", f"PYTHONPATH={REPO}", sys.executable, "-m", "speaker.cli",
                     "clear", *words, "-s", socket)  # fmt: skip
        return str(cp.stdout)

    frr.wait_bgp_state(s_addr, timeout=30)
    wait_until(lambda: VIP in frr.bgp_routes(), timeout=10, what="our route at FRR")
    frr.wait_bfd_status(s_addr, "up", timeout=10)
    wait_until(lambda: (ours("bfd", "peers")[0].get("remote-transmit-interval") == 50
                        and ours("bfd", "peers")[0]["status"] == "up"),
               timeout=10, what="our BFD up and fast")  # fmt: skip
    time.sleep(1.5)  # past FRR's re-created BFD session and the first keepalives
    found: dict[str, set[str]] = {}

    # -- show bfd peers json / show bfd peer X json / brief --
    (mine,) = ours("bfd", "peers")
    theirs = frr.vtysh_json("bfdd", f"show bfd peer {s_addr} json")
    compare("show bfd peers json", theirs, mine, found=found)
    assert mine["id"] == theirs["remote-id"] and mine["remote-id"] == theirs["id"]
    assert mine["peer"] == theirs["local"] == r_addr and mine["local"] == theirs["peer"]
    for key in ("receive-interval", "transmit-interval", "detect-multiplier"):
        assert mine[key] == theirs[f"remote-{key}"], key
        assert mine[f"remote-{key}"] == theirs[key], key
    assert mine["status"] == theirs["status"] == "up"
    assert (mine["rtt-min"], mine["rtt-max"]) == (theirs["rtt-min"], theirs["rtt-max"]) == (0, 0)
    one = ours("bfd", "peer", "rtr1")
    compare("show bfd peer X json", theirs, one, found=found)
    assert one["id"] == mine["id"] and ours("bfd", "peer", r_addr)["id"] == mine["id"]
    assert ours("bfd", "peers", "brief")[0]["id"] == mine["id"]

    # -- show bgp summary json --
    summary = ours("bgp", "summary")
    frr_summary = frr.vtysh_json("bgpd", "show bgp summary json")
    # A family is listed for the peers that carry it (FRR: activated for it): FRR has
    # both activated, ours carries IPv4 only (no IPv6 service).
    assert "ipv4Unicast" in frr_summary and "ipv4Unicast" in summary
    for family in set(frr_summary) & set(summary):
        compare("show bgp summary json", frr_summary[family], summary[family], found=found)
        (their_peer,) = frr_summary[family]["peers"].values()
        our_peer = summary[family]["peers"][r_addr]
        compare("show bgp summary json", their_peer, our_peer, found=found)
        assert our_peer["state"] == their_peer["state"] == "Established"
        assert our_peer["remoteAs"] == their_peer["localAs"] == 64512
        assert our_peer["localAs"] == their_peer["remoteAs"] == 64513
        assert abs(our_peer["msgSent"] - their_peer["msgRcvd"]) <= 2  # keepalives in flight
        assert abs(our_peer["msgRcvd"] - their_peer["msgSent"]) <= 2
        assert our_peer["connectionsEstablished"] == their_peer["connectionsEstablished"] == 1
    v4 = summary["ipv4Unicast"]
    assert v4["peers"][r_addr]["pfxSnt"] == 1
    assert frr_summary["ipv4Unicast"]["peers"][s_addr]["pfxRcd"] == 1
    assert v4["routerId"] == str(spk.addr4("rtr1")) and v4["as"] == 64513

    # -- show bgp neighbors X json --
    (neighbor,) = ours("bgp", "neighbors", "rtr1").values()
    (their_neighbor,) = frr.vtysh_json("bgpd", f"show bgp neighbors {s_addr} json").values()
    compare("show bgp neighbors X json", their_neighbor, neighbor, found=found,
            deep=("messageStats", "peerBfdInfo", "gracefulRestartInfo", "timers",
                  "neighborCapabilities", "hostName"))  # fmt: skip
    assert neighbor["remoteRouterId"] == their_neighbor["localRouterId"]
    assert neighbor["localRouterId"] == their_neighbor["remoteRouterId"]
    assert neighbor["bgpTimerHoldTimeMsecs"] == their_neighbor["bgpTimerHoldTimeMsecs"] == 9000
    assert neighbor["bgpState"] == their_neighbor["bgpState"] == "Established"
    sent, rcvd = neighbor["messageStats"], their_neighbor["messageStats"]
    assert sent["opensSent"] == rcvd["opensRecv"] == 1
    assert sent["updatesSent"] == rcvd["updatesRecv"]
    assert sent["updatesRecv"] == rcvd["updatesSent"]
    assert neighbor["peerBfdInfo"]["status"] == their_neighbor["peerBfdInfo"]["status"] == "Up"
    assert neighbor["hostname"] == "rtr1"  # FRR's hostname capability
    assert neighbor["neighborCapabilities"]["hostName"]["rcvHostName"] == "rtr1"
    assert (
        their_neighbor["neighborCapabilities"]["hostName"]["rcvHostName"]
        == (neighbor["neighborCapabilities"]["hostName"]["advHostName"])
    )
    assert neighbor["hostForeign"] == their_neighbor["hostLocal"] == r_addr

    # -- advertised-routes --
    adv = ours("bgp", "ipv4", "unicast", "neighbors", "rtr1", "advertised-routes")
    frr_adv = frr.vtysh_json("bgpd", f"show bgp ipv4 unicast neighbors {s_addr}"
                                     " advertised-routes json")  # fmt: skip
    compare("advertised-routes json", frr_adv, adv, found=found)
    assert list(adv["advertisedRoutes"]) == [VIP] and adv["totalPrefixCounter"] == 1
    compare("advertised-routes json", frr_adv["advertisedRoutes"][VIP],
            adv["advertisedRoutes"][VIP], found=found)  # fmt: skip

    # -- every difference is documented --
    listed = documented()
    for what, keys in found.items():
        undocumented = keys - listed
        assert not undocumented, f"{what}: not in docs/operations.md ({SECTION}): {undocumented}"

    # -- clear bgp X soft out: the Adj-RIB-Out goes again, the session stays --
    updates = their_neighbor["messageStats"]["updatesRecv"]
    assert "Adj-RIB-Out sent again (ipv4-unicast)" in clear("bgp", "rtr1", "soft", "out")
    wait_until(lambda: frr.bgp_neighbor(s_addr)["messageStats"]["updatesRecv"] > updates,
               timeout=10, what="FRR receives our routes again")  # fmt: skip
    assert frr.bgp_neighbor(s_addr)["connectionsDropped"] == 0

    # -- BFD failure: Up/Down is the time since the drop, then the state --
    fault = faults.drop_bfd(spk, direction="in")
    speaker.wait_log("BGP torn down")
    time.sleep(3.2)
    row = ours("bgp", "summary")["ipv4Unicast"]["peers"][r_addr]
    their_row = frr.vtysh_json("bgpd", "show bgp summary json")["ipv4Unicast"]["peers"][s_addr]
    assert row["state"] != "Established" and their_row["state"] != "Established"
    assert re.fullmatch(r"00:00:0[3-5]", row["peerUptime"]), row["peerUptime"]
    assert abs(row["peerUptimeMsec"] - their_row["peerUptimeMsec"]) <= 1500
    assert row["connectionsDropped"] == their_row["connectionsDropped"] == 1
    text = spk.run("env", f"PYTHONPATH={REPO}", sys.executable, "-m", "speaker.cli", "show",
                   "bgp", "summary", "-s", socket).stdout  # fmt: skip
    line = next(x for x in text.splitlines() if x.startswith(r_addr))
    assert re.fullmatch(r"00:00:0[3-6]", line.split()[8]), line  # a second later, maybe
    assert line.split()[9] == row["state"] and line.split()[-1] == "rtr1", line
    fault.undo()
    frr.wait_bgp_state(s_addr, timeout=30)

    # -- clear bgp X: one reset, seen by FRR as our NOTIFICATION --
    assert clear("bgp", "rtr1") == "bgp rtr1: session reset\n"
    wait_until(lambda: frr.bgp_neighbor(s_addr)["connectionsDropped"] == 2, timeout=10,
               what="FRR sees the reset")  # fmt: skip
    assert "Notification received" in frr.bgp_neighbor(s_addr)["lastResetDueTo"]
    frr.wait_bgp_state(s_addr, timeout=30)
    wait_until(lambda: ours("bgp", "summary")["ipv4Unicast"]["peers"][r_addr]["state"]
               == "Established", timeout=10, what="ours Established again")  # fmt: skip
    assert speaker.terminate() == 0
