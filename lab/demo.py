"""The lab demo: a BFD-guarded BGP failover, timed on the wire.

rtr1 is the router: gobgpd (BGP, AS 64512) plus FRR bfdd at the same address. spk
announces 198.19.0.10/32 over eBGP with BFD 50/50/3. The demo cuts BFD one way
(packets towards spk are dropped), and prints the timeline: BFD Down on the wire,
the NOTIFICATION, the route leaving gobgpd's RIB; then it restores BFD and waits for
the route to come back.

With ``--frr`` FRR bgpd+bfdd plays the speaker instead, for comparison.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from lab import default_lab, faults, wait_until
from lab.capture import BFD_FIELDS, BGP_FIELDS, Capture
from lab.frr import FRR, bfd_peer_block, bfdd_config, bgpd_config
from lab.gobgp import GoBGP, neighbor_toml
from lab.ours import OurSpeaker
from lab.requirements import missing

VIP = "198.19.0.10/32"


def watch_rib_until_gone(router: GoBGP, prefix: str, deadline: float) -> float | None:
    """Poll gobgpd every ~10 ms; wall-clock time the prefix was first seen missing."""
    while time.monotonic() < deadline:
        if prefix not in router.rib():
            return time.time()
        time.sleep(0.01)
    return None


def first_after(
    pkts: list[dict[str, Any]], t0: float, src: str, field: str, value: int
) -> float | None:
    hits = [p["time"] for p in pkts if p["time"] >= t0 and p.get("ip.src") == src
            and p.get(field) == value]  # fmt: skip
    return min(hits) if hits else None


def since(t0: float, t: float | None) -> str:
    return f"t+{(t - t0) * 1000:7.1f} ms" if t is not None else "not seen within 10 s"


def wait_bfd_fast(frr: FRR, peer: str, interval_ms: int) -> None:
    """Up, and past slow start: both ends run the configured interval."""

    def ok() -> bool:
        p = frr.bfd_peer(peer)
        return (
            p is not None
            and p["status"] == "up"
            and p["remote-receive-interval"] == interval_ms
            and p["transmit-interval"] == interval_ms
        )

    wait_until(ok, timeout=30, what=f"BFD to {peer} up at {interval_ms} ms")


SPEAKER_CONFIG = """
[speaker]
my_asn = 64513
hold_down = "1s"
state_file = "{state}"

[[bfd_profiles]]
name = "demo"
transmit_interval = {ms}
receive_interval = {ms}
detect_multiplier = 3

[[peers]]
name = "rtr1"
peer_address = "{r_addr}"
peer_asn = 64512
source_address = "{s_addr}"
interface = "to-rtr1"
bfd_profile = "demo"

[[pools]]
name = "vips"
addresses = ["198.19.0.0/24"]

[[advertisements]]
name = "to-rtr1"
communities = ["65000:100"]

[[services]]
name = "web"
address = "198.19.0.10"
"""


def run(rounds: int, interval_ms: int, frr: bool = False) -> int:
    reason = missing("frr", "gobgp", "capture")
    if reason:
        print(f"demo: {reason}", file=sys.stderr)
        return 1
    with default_lab() as lab:
        rtr, spk = lab["rtr1"], lab["spk"]
        r_addr, s_addr = str(rtr.addr4("spk")), str(spk.addr4("rtr1"))
        print(f"lab up: router rtr1 {r_addr} (gobgpd + FRR bfdd), speaker spk {s_addr}")
        router = GoBGP(
            rtr, asn=64512, router_id=r_addr, neighbors=neighbor_toml(s_addr, 64513)
        ).start()
        rtr_bfd = FRR(rtr, bfdd=bfdd_config([
            bfd_peer_block(s_addr, local=r_addr, interface="to-spk",
                           tx=interval_ms, rx=interval_ms),
        ])).start()  # fmt: skip
        if frr:
            FRR(
                spk,
                bfdd=f"bfd\n profile demo\n  transmit-interval {interval_ms}\n"
                f"  receive-interval {interval_ms}\n !\n!\n",
                bgpd=bgpd_config(
                    64513, s_addr,
                    [f"neighbor {r_addr} remote-as 64512", f"neighbor {r_addr} bfd",
                     f"neighbor {r_addr} bfd profile demo", f"neighbor {r_addr} timers connect 1"],
                    networks4=[VIP],
                ),
            ).start()  # fmt: skip
            print("speaker: FRR bgpd + bfdd (for comparison)")
        else:
            config = SPEAKER_CONFIG.format(
                r_addr=r_addr, s_addr=s_addr, ms=interval_ms, state=lab.dir / "state.json"
            )
            OurSpeaker(spk, config).start()
            print(f"speaker: ours, config {lab.dir / 'spk-speaker.toml'}")
        router.wait_rib(lambda r: VIP in r, timeout=60, what=VIP)
        wait_bfd_fast(rtr_bfd, s_addr, interval_ms)
        print(f"{VIP} is in gobgpd's RIB; BFD {interval_ms}/{interval_ms}/3 is Up")
        for n in range(1, rounds + 1):
            time.sleep(1.0)
            cap = Capture(rtr, "to-spk", "udp port 3784 or tcp port 179", name=f"demo{n}").start()
            fault = faults.drop_bfd(spk, direction="in")
            gone = watch_rib_until_gone(router, VIP, time.monotonic() + 10)
            # Our BFD Down follows the Cease by 50 ms (speaker.peer.CEASE_FIRST): it
            # may come after the route is gone, so the capture runs on a little.
            time.sleep(0.3)
            cap.stop()
            pkts = cap.packets(BFD_FIELDS + BGP_FIELDS)
            t0 = fault.t_wall
            bfd_down = first_after(pkts, t0, s_addr, "bfd.sta", 1)
            notification = first_after(pkts, t0, s_addr, "bgp.type", 3)
            print(f"\nround {n}: BFD towards spk cut at t (wall {t0:.3f})")
            print(f"  spk BFD Down on the wire     {since(t0, bfd_down)}")
            print(f"  NOTIFICATION from spk        {since(t0, notification)}")
            print(f"  route gone from gobgpd       {since(t0, gone)}")
            fault.undo()
            back = time.monotonic()
            router.wait_rib(lambda r: VIP in r, timeout=60, what=f"{VIP} back")
            wait_bfd_fast(rtr_bfd, s_addr, interval_ms)
            print(f"  BFD restored; route back after {time.monotonic() - back:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.demo", description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--interval-ms", type=int, default=50)
    parser.add_argument("--frr", action="store_true", help="FRR plays the speaker")
    args = parser.parse_args(argv)
    return run(args.rounds, args.interval_ms, args.frr)


if __name__ == "__main__":
    sys.exit(main())
