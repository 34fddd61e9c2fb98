"""RFC 8326 graceful shutdown (drain) seen at FRR, and the speaker as the helper of a
router that restarts gracefully (RFC 4724).

Two nodes (n1, n2) announce the same VIP to one FRR router (rtr) with ECMP over two
paths. ``speaker drain`` on n1 makes its path carry GRACEFUL_SHUTDOWN (65535:0): over
eBGP FRR itself lowers a received GSHUT route's LOCAL_PREF to 0 (bgp_route.c, RFC
8326 §4); over iBGP the speaker sends LOCAL_PREF 0. Either way n1's path is no longer
best nor multipath, and the FIB forwards to n2 only, while n1's route stays (traffic
moves before anything is withdrawn); ``undrain`` restores ECMP. ``drain_time`` holds
the Cease of a SIGTERM for that long with the drained route in place. The drain
survives a reload and a restart of the process.

Route prefixes come from 198.19.0.0/24 only.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from typing import Any

import pytest

from lab import Lab, wait_until
from lab.frr import FRR, bgpd_config
from lab.ours import REPO, OurSpeaker

pytestmark = pytest.mark.lab

VIP = "198.19.0.10/32"
NODES = ("n1", "n2")
ROUTER = "rtr"
ROUTER_AS = 64512


def node_config(lab: Lab, node: str, *, asn: int, extra: str = "", services: str = "") -> str:
    host, rtr = lab[node], lab[ROUTER]
    return f"""
[speaker]
router_id = "{host.addr4(ROUTER)}"
my_asn = {asn}
state_file = "{lab.dir / f"{node}-state.json"}"
{extra}

[control]
socket = "{lab.dir / f"{node}.sock"}"

[metrics]
enabled = false

[[peers]]
name = "rtr"
peer_address = "{rtr.addr4(node)}"
peer_asn = {ROUTER_AS}
source_address = "{host.addr4(ROUTER)}"
hold_time = "9s"
connect_retry = "1s"

[[pools]]
name = "vips"
addresses = ["198.19.0.0/24"]

[[advertisements]]
name = "to-router"
communities = ["65000:100"]

[[services]]
name = "web"
address = "198.19.0.10"
{services}
"""


def router(lab: Lab, *, asn: int, graceful_restart: bool = False) -> FRR:
    rtr = lab[ROUTER]
    neighbors = []
    for node in NODES:
        addr = str(lab[node].addr4(ROUTER))
        neighbors += [
            f"neighbor {addr} remote-as {asn}",
            f"neighbor {addr} timers 3 9",
            f"neighbor {addr} timers connect 1",
        ]
    paths = "maximum-paths ibgp 2" if asn == ROUTER_AS else "maximum-paths 2"
    extra = f" address-family ipv4 unicast\n  {paths}\n exit-address-family"
    config = bgpd_config(ROUTER_AS, str(rtr.lo4), neighbors, extra=extra)
    if graceful_restart:
        config = config.replace(" no bgp ebgp-requires-policy", " no bgp ebgp-requires-policy\n"
                                " bgp graceful-restart")  # fmt: skip
    return FRR(rtr, bfdd=None, bgpd=config).start()


def ctl(lab: Lab, node: str, *args: str) -> Any:
    """``speaker ARGS --json`` against ``node``'s speaker."""
    cp = lab[node].run(
        "env", f"PYTHONPATH={REPO}", sys.executable, "-m", "speaker.cli", *args,
        "-s", str(lab.dir / f"{node}.sock"), "--json",
    )  # fmt: skip
    return json.loads(cp.stdout)


def paths(frr: FRR, lab: Lab) -> dict[str, dict[str, Any]]:
    """FRR's paths for the VIP by node: community, LOCAL_PREF, best, multipath."""
    data = frr.vtysh_json("bgpd", f"show bgp ipv4 unicast {VIP} json") or {}
    by_address = {str(lab[n].addr4(ROUTER)): n for n in NODES}
    out = {}
    for path in data.get("paths", []):
        node = by_address.get(path.get("peer", {}).get("peerId", ""))
        if node is None:
            continue
        out[node] = {
            "community": path.get("community", {}).get("string", ""),
            "localPref": path.get("locPrf", path.get("localpref")),
            "best": bool(path.get("bestpath", {}).get("overall")),
            "multipath": bool(path.get("multipath")),
        }
    return out


def fib_nexthops(frr: FRR) -> set[str]:
    data = frr.vtysh_json("zebra", f"show ip route {VIP} json") or {}
    hops = set()
    for route in data.get(VIP, []):
        if route.get("selected"):
            hops |= {h["ip"] for h in route.get("nexthops", []) if h.get("active")}
    return hops


def drained(p: dict[str, Any]) -> bool:
    return "graceful-shutdown" in p["community"]


def start_nodes(lab: Lab, asn: int, extra: dict[str, str] | None = None) -> dict[str, OurSpeaker]:
    extra = extra or {}
    return {
        n: OurSpeaker(lab[n], node_config(lab, n, asn=asn, extra=extra.get(n, "")), name=n).start()
        for n in NODES
    }


def ecmp(frr: FRR, lab: Lab) -> bool:
    p = paths(frr, lab)
    return (
        set(p) == set(NODES)
        and all(v["multipath"] and not drained(v) for v in p.values())
        and len(fib_nexthops(frr)) == 2
    )


def only_n2(frr: FRR, lab: Lab) -> bool:
    """n1's path is there, drained and not used; n2's carries the traffic."""
    p = paths(frr, lab)
    return (
        set(p) == set(NODES)
        and drained(p["n1"])
        and p["n1"]["localPref"] == 0
        and not p["n1"]["best"]
        and not p["n1"]["multipath"]
        and p["n2"]["best"]
        and not drained(p["n2"])
        and fib_nexthops(frr) == {str(lab["n2"].addr4(ROUTER))}
    )


def lab_of_two_nodes() -> Lab:
    return Lab.create(hosts=[ROUTER, *NODES], links=[(ROUTER, n) for n in NODES],
                      routers=[ROUTER])  # fmt: skip


@pytest.mark.parametrize("kind", ["ebgp", "ibgp"])
def test_drain_moves_the_traffic_to_the_other_node_and_undrain_restores_ecmp(  # type: ignore[no-untyped-def]
    lab_require, kind: str
) -> None:
    lab_require("frr")
    asn = 64513 if kind == "ebgp" else ROUTER_AS
    with lab_of_two_nodes() as lab:
        frr = router(lab, asn=asn)
        speakers = start_nodes(lab, asn)
        wait_until(lambda: ecmp(frr, lab), timeout=30, what="ECMP over n1 and n2")

        data = ctl(lab, "n1", "drain")
        assert data["drain"]["node"] is True
        wait_until(lambda: only_n2(frr, lab), timeout=10, what="n1 drained at FRR")
        p = paths(frr, lab)
        print(f"{kind}: drained: {p}")
        assert "65000:100" in p["n1"]["community"]  # the others are kept
        assert ctl(lab, "n1", "show", "bgp", "neighbor", "rtr")["draining"] is True
        routes = ctl(lab, "n1", "show", "routes")
        assert routes["peers"][0]["draining"] is True
        assert all(r["gracefulShutdown"] for r in routes["peers"][0]["announced"])
        assert ctl(lab, "n1", "show", "status")["drain"]["node"] is True

        ctl(lab, "n1", "undrain")
        wait_until(lambda: ecmp(frr, lab), timeout=10, what="ECMP again after undrain")

        # One service (the same VIP): the same at the router.
        ctl(lab, "n1", "drain", "web")
        wait_until(lambda: only_n2(frr, lab), timeout=10, what="service web drained")
        ctl(lab, "n1", "undrain", "web")
        wait_until(lambda: ecmp(frr, lab), timeout=10, what="web undrained")
        # Never withdrawn meanwhile: one session each, no flap.
        for node in NODES:
            neighbor = frr.bgp_neighbor(str(lab[node].addr4(ROUTER)))
            assert neighbor.get("connectionsDropped", 0) == 0, neighbor
        for speaker in speakers.values():
            assert speaker.stop() == 0


def test_drain_time_keeps_the_drained_route_before_the_cease(lab_require) -> None:  # type: ignore[no-untyped-def]
    lab_require("frr")
    drain_time = 3.0
    with lab_of_two_nodes() as lab:
        frr = router(lab, asn=64513)
        speakers = start_nodes(lab, 64513, extra={"n1": f'drain_time = "{drain_time:g}s"'})
        wait_until(lambda: ecmp(frr, lab), timeout=30, what="ECMP over n1 and n2")
        vty = frr.vty("bgpd")
        n1 = str(lab["n1"].addr4(ROUTER))

        def n1_path() -> dict[str, Any] | None:
            data = json.loads(vty.command(f"show bgp ipv4 unicast {VIP} json") or "{}")
            for path in data.get("paths", []):
                if path.get("peer", {}).get("peerId") == n1:
                    return path  # type: ignore[no-any-return]
            return None

        assert speakers["n1"].proc is not None
        sent = time.monotonic()
        speakers["n1"].proc.send_signal(signal.SIGTERM)
        gshut_at = gone_at = None
        while time.monotonic() - sent < drain_time + 5:
            path = n1_path()
            now = time.monotonic()
            if path is None:
                gone_at = now
                break
            if gshut_at is None and "graceful-shutdown" in path.get("community", {}).get(
                "string", ""
            ):
                gshut_at = now
                # zebra's FIB follows bgpd's best path a few ms later
                wait_until(lambda: only_n2(frr, lab), timeout=1.0, what="n1 drained, n2 used")
            time.sleep(0.005)
        vty.close()
        assert gshut_at is not None and gone_at is not None, (gshut_at, gone_at)
        held = gone_at - gshut_at
        print(f"SIGTERM -> GSHUT at FRR {1000 * (gshut_at - sent):.0f} ms; drained route"
              f" held {held:.2f} s before the Cease (drain_time {drain_time:g} s)")  # fmt: skip
        assert gshut_at - sent < 1.0
        assert drain_time - 0.05 <= held <= drain_time + 1.5
        assert speakers["n1"].stop(timeout=10) == 0
        assert speakers["n1"].find("drain done")
        # n2 still carries the VIP; n1's stop drain was not written (the next start
        # announces normally).
        assert set(paths(frr, lab)) == {"n2"}
        assert not (lab.dir / "n1-state.drain.json").exists()
        speakers["n2"].stop()


def test_the_drain_survives_a_reload_and_a_restart(lab_require) -> None:  # type: ignore[no-untyped-def]
    lab_require("frr")
    with lab_of_two_nodes() as lab:
        frr = router(lab, asn=64513)
        speakers = start_nodes(lab, 64513)
        wait_until(lambda: ecmp(frr, lab), timeout=30, what="ECMP over n1 and n2")
        ctl(lab, "n1", "drain", "web")
        wait_until(lambda: only_n2(frr, lab), timeout=10, what="web drained")

        api = '\n[[services]]\nname = "api"\naddress = "198.19.0.11"\n'
        record = speakers["n1"].reload(node_config(lab, "n1", asn=64513, services=api))
        assert record["msg"].startswith("reload applied"), record
        wait_until(lambda: "198.19.0.11/32" in frr.bgp_routes(), timeout=10, what="api")
        time.sleep(1.0)
        assert only_n2(frr, lab), paths(frr, lab)

        # A restart of the process: drained from its first announcement on.
        assert speakers["n1"].stop() == 0
        wait_until(lambda: set(paths(frr, lab)) == {"n2"}, timeout=10, what="n1 gone")
        seen: list[dict[str, Any]] = []
        speakers["n1"] = OurSpeaker(lab["n1"], speakers["n1"].config_path.read_text(),
                                    name="n1-again").start()  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            p = paths(frr, lab).get("n1")
            if p is not None:
                seen.append(p)
                if len(seen) > 20:
                    break
            time.sleep(0.01)
        assert seen and all(drained(p) for p in seen), seen[:3]
        assert only_n2(frr, lab), paths(frr, lab)
        assert ctl(lab, "n1", "show", "status")["drain"]["services"] == ["web"]
        ctl(lab, "n1", "undrain", "web")
        wait_until(lambda: ecmp(frr, lab), timeout=10, what="ECMP after undrain")
        for speaker in speakers.values():
            assert speaker.stop() == 0


# ---- helper mode: the router restarts gracefully (RFC 4724 §4.2) -------------------------


def test_a_router_restarting_gracefully_gets_our_routes_and_end_of_rib_promptly(  # type: ignore[no-untyped-def]
    lab_require,
) -> None:
    """FRR (passive, ``bgp graceful-restart``: it advertises a Restart Time of 120 s)
    loses its bgpd (SIGKILL: no NOTIFICATION, the TCP connection just goes) for 20 s.
    We keep nothing from it, but must not leave our routes out once it is back: the
    session reconnects every connect_retry meanwhile (no exponential backoff, which
    left the routes out 8.3 s after bgpd came back) and sends every route and
    End-of-RIB at once."""
    lab_require("frr")
    down_for = 20.0
    with lab_of_two_nodes() as lab:
        rtr, n1 = lab[ROUTER], str(lab["n1"].addr4(ROUTER))
        lines = [f"neighbor {n1} remote-as 64513", f"neighbor {n1} timers 3 9",
                 f"neighbor {n1} passive"]  # fmt: skip
        config = bgpd_config(ROUTER_AS, str(rtr.lo4), lines).replace(
            " no bgp ebgp-requires-policy", " no bgp ebgp-requires-policy\n bgp graceful-restart"
        )
        frr = FRR(rtr, bfdd=None, bgpd=config).start()
        speaker = OurSpeaker(lab["n1"], node_config(lab, "n1", asn=64513), name="n1").start()
        wait_until(lambda: VIP in frr.bgp_routes(), timeout=30, what="the VIP at FRR")
        caps = ctl(lab, "n1", "show", "bgp", "neighbor", "rtr")["capabilities"]["received"]
        assert "graceful-restart" in caps, caps

        old = frr.procs["bgpd"]
        old.stop(sig=signal.SIGKILL)
        time.sleep(down_for)
        frr.procs["bgpd"] = rtr.popen("frr-bgpd-restarted", old.argv)
        wait_until(lambda: frr._ready("bgpd"), timeout=15, what="bgpd again")
        back = time.monotonic()
        wait_until(lambda: VIP in frr.bgp_routes(), timeout=60, interval=0.02,
                   what="the VIP at the restarted FRR")  # fmt: skip
        took = time.monotonic() - back
        print(f"bgpd down {down_for:g} s: our route at FRR {took:.2f} s after it was back")
        assert took < 2.5, took
        assert speaker.find("advertised graceful restart")
        eor = speaker.find("End-of-RIB sent for ipv4-unicast")
        assert len(eor) == 2, eor  # the first session's, and the new one's
        neighbor = ctl(lab, "n1", "show", "bgp", "neighbor", "rtr")
        assert neighbor["state"] == "Established"
        assert neighbor["endOfRibSent"] == ["ipv4-unicast"] * 2  # over the session's life
        assert speaker.stop() == 0
