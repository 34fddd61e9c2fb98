"""Start and reload (benchmark 6): process start -> route in gobgpd's RIB, and a reload
that adds 1,000 services -> their UPDATEs on the wire and in gobgpd's RIB.

    cd /work/main && .venv/bin/python -m bench.start_reload [--quick] [--trials N]
        [--services 1000]

One default lab per speaker (ours, FRR bgpd), kept for all trials: rtr1 runs gobgpd
(passive, AS 64512) and, for the BFD variant, FRR bfdd; dumpcap on rtr1/to-spk.

Start (trials alternate ours, FRR): T0 = just before the speaker's process is
started (FRR: before zebra, then bfdd and bgpd, as a service start would); end = the
first UPDATE from spk on the wire, and the first ``gobgp global rib`` poll that shows
198.19.0.10/32. Without BFD, and with BFD 300/300/3 (ours then waits for BFD Up plus
its 1 s ``hold_down`` before opening BGP: by design, so routes never flap on a link
that is not up; FRR bgpd does not wait for BFD). The speaker is stopped (SIGTERM)
and the route must be gone before the next trial.

Reload: the running speaker announces 1 service; at T0 the config gains ``--services``
more (ours: a new config file and SIGHUP; FRR: ``network`` statements through one
``vtysh`` call). T0 -> first and last UPDATE from spk on the wire, and -> gobgpd's
RIB holding all of them (``gobgp global rib summary``, polled every 20 ms). Then the
services are removed again and the next trial starts.
Writes ``bench/results/<date>-start-reload[-quick].{json,md}``.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import sys
import time
from typing import Any

from bench.common import fmt3, new_data, quiet_note, summary, write_results
from bench.setups import Peer, frr_bfd_profile, frr_neighbor_lines, speaker_toml, start_router
from lab import Lab, default_lab, wait_until
from lab.capture import Capture
from lab.frr import FRR, bgpd_config
from lab.gobgp import GoBGP
from lab.ours import OurSpeaker

NAME = "start-reload"
VIP = "198.19.0.10/32"
MS = 300


def service_addresses(n: int) -> list[str]:
    base = int(ipaddress.IPv4Address("198.19.1.0"))
    return [str(ipaddress.IPv4Address(base + i)) for i in range(n)]


def ours_config(lab: Lab, bfd: bool, extra_services: int = 0) -> str:
    spk = lab["spk"]
    services = [("web", "198.19.0.10")]
    services += [(f"s{i}", a) for i, a in enumerate(service_addresses(extra_services))]
    return speaker_toml(router_id=str(spk.addr4("rtr1")), state_file=lab.dir / "speaker-state.json",
                        peers=[Peer.between(spk, lab["rtr1"])], bfd_ms=MS if bfd else None,
                        pool="198.19.0.0/16", services=services)  # fmt: skip


def rib_count(router: GoBGP) -> int:
    out = router.cli("global", "rib", "summary", "-a", "ipv4", check_json=False)
    m = re.search(r"Destination:\s*(\d+)", out)
    return int(m.group(1)) if m else 0


class Side:
    def __init__(self, impl: str, bfd: bool) -> None:
        self.impl, self.bfd = impl, bfd
        self.lab = default_lab()
        self.rtr, self.spk = self.lab["rtr1"], self.lab["spk"]
        self.r_addr, self.s_addr = str(self.rtr.addr4("spk")), str(self.spk.addr4("rtr1"))
        self.n = 0
        self.router, _ = start_router(self.rtr, self.spk, bfd_ms=MS if bfd else None)
        self.cap = Capture(self.rtr, "to-spk", "tcp port 179", name="startreload").start()
        self.speaker: OurSpeaker | FRR | None = None

    def frr_config(self) -> tuple[str | None, str]:
        neigh = frr_neighbor_lines(self.r_addr, bfd=self.bfd)
        bfdd = frr_bfd_profile(MS) if self.bfd else None
        return bfdd, bgpd_config(64513, self.s_addr, neigh, networks4=[VIP])

    def start_speaker(self) -> float:
        """Start the speaker; its T0 (wall clock)."""
        self.n += 1
        t0 = time.time()
        if self.impl == "ours":
            self.speaker = OurSpeaker(self.spk, ours_config(self.lab, self.bfd),
                                      name=f"speaker{self.n}").start(timeout=30)  # fmt: skip
        else:
            bfdd, bgpd = self.frr_config()
            self.speaker = FRR(self.spk, bfdd=bfdd, bgpd=bgpd, name=f"frr{self.n}").start()
        return t0

    def stop_speaker(self) -> None:
        if isinstance(self.speaker, OurSpeaker):
            self.speaker.terminate()
        elif self.speaker is not None:
            self.speaker.stop()
        wait_until(lambda: VIP not in self.router.rib(), timeout=30, what="route gone")
        # gobgpd refuses connections for a few seconds after a session went down (Idle,
        # "Closed an accepted connection"): the next start must not pay for that.
        wait_until(lambda: self.router.session_state(self.s_addr) == "active", timeout=30,
                   interval=0.1, what="gobgpd accepting again")  # fmt: skip

    def wait_route(self, timeout: float = 60.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            b = time.time()
            if VIP in self.router.rib():
                return (b + time.time()) / 2
            time.sleep(0.005)
        raise TimeoutError("route never reached gobgpd")

    def add_services(self, n: int) -> float:
        addrs = service_addresses(n)
        if isinstance(self.speaker, OurSpeaker):
            assert self.speaker.proc is not None
            self.speaker.config_path.write_text(ours_config(self.lab, self.bfd, n))
            t0 = time.time()
            self.speaker.proc.send_signal(1)  # SIGHUP
            return t0
        assert isinstance(self.speaker, FRR)
        t0 = time.time()
        self.speaker.configure("bgpd", "router bgp 64513", "address-family ipv4 unicast",
                               *[f"network {a}/32" for a in addrs])  # fmt: skip
        return t0

    def remove_services(self, n: int) -> None:
        if isinstance(self.speaker, OurSpeaker):
            self.speaker.reload(ours_config(self.lab, self.bfd, 0))
        else:
            assert isinstance(self.speaker, FRR)
            self.speaker.configure(
                "bgpd",
                "router bgp 64513",
                "address-family ipv4 unicast",
                *[f"no network {a}/32" for a in service_addresses(n)],
            )
        wait_until(lambda: rib_count(self.router) == 1, timeout=60, interval=0.1,
                   what="extra services withdrawn")  # fmt: skip

    def close(self) -> None:
        self.lab.close()


def updates_after(side: Side, t0: float, t1: float) -> list[float]:
    pkts = side.cap.packets(("ip.src", "bgp.type"))
    out = []
    for p in pkts:
        types = p.get("bgp.type")
        types = types if isinstance(types, list) else [types]
        if p.get("ip.src") == side.s_addr and 2 in types and t0 <= p["time"] <= t1:
            out.append(p["time"])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.start_reload", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="1 start without BFD, 1 reload")
    ap.add_argument("--trials", type=int, help="per speaker and variant (10; quick 1)")
    ap.add_argument("--services", type=int, default=1000)
    args = ap.parse_args(argv)
    trials = args.trials or (1 if args.quick else 10)
    reload_trials = 1 if args.quick else trials
    variants = [False] if args.quick else [False, True]
    data = new_data(
        NAME,
        args.quick,
        {
            "trials": trials,
            "reload_trials": reload_trials,
            "services": args.services,
            "bfd_variants": variants,
        },
    )
    start = time.monotonic()
    starts: list[dict[str, Any]] = []
    reloads: list[dict[str, Any]] = []
    for bfd in variants:
        sides = [Side("ours", bfd), Side("frr", bfd)]
        try:
            data.setdefault("quiet", []).append(quiet_note())
            for n in range(trials):
                for s in sides:
                    t0 = s.start_speaker()
                    gone = s.wait_route()
                    starts.append({"impl": s.impl, "bfd": bfd, "trial": n, "t0_wall": t0,
                                   "rib_wall": gone, "t0_to_rib_s": gone - t0})  # fmt: skip
                    if bfd or n < trials - 1:
                        s.stop_speaker()
                print(f"  start bfd={bfd}: trial {n + 1}/{trials}", flush=True)
            if not bfd:  # the speakers are running: reloads
                for n in range(reload_trials):
                    for s in sides:
                        before = rib_count(s.router)
                        t0 = s.add_services(args.services)
                        target = before + args.services
                        wait_until(
                            lambda s=s, target=target: rib_count(s.router) >= target,  # type: ignore[misc]  # defaults bind this turn's values
                            timeout=120,
                            interval=0.02,
                            what="services in gobgpd",
                        )
                        t_rib = time.time()
                        reloads.append({"impl": s.impl, "trial": n, "t0_wall": t0,
                                        "rib_wall": t_rib, "t0_to_rib_s": t_rib - t0})  # fmt: skip
                        s.remove_services(args.services)
                    print(f"  reload: trial {n + 1}/{reload_trials}", flush=True)
            for s in sides:
                s.cap.stop()
                for rec in starts:
                    if rec["impl"] == s.impl and rec["bfd"] == bfd:
                        ups = updates_after(s, rec["t0_wall"], rec["rib_wall"] + 1)
                        rec["t0_to_first_update_s"] = ups[0] - rec["t0_wall"] if ups else None
                if not bfd:
                    for rec in reloads:
                        if rec["impl"] == s.impl:
                            ups = updates_after(s, rec["t0_wall"], rec["rib_wall"])
                            rec["updates"] = len(ups)
                            if ups:
                                rec["t0_to_first_update_s"] = ups[0] - rec["t0_wall"]
                                rec["t0_to_last_update_s"] = ups[-1] - rec["t0_wall"]
        finally:
            for s in sides:
                s.close()
    data["starts"], data["reloads"] = starts, reloads
    data["runtime_s"] = time.monotonic() - start

    def cell(rows: list[dict[str, Any]], key: str) -> dict[str, float | None]:
        return summary([r[key] * 1000 for r in rows if r.get(key) is not None])

    lines = [
        f"# Start and reload ({data['date']}{', quick' if args.quick else ''})",
        "",
        "Start: T0 = the speaker's process started (FRR: zebra, bfdd, bgpd in turn); "
        "first UPDATE from spk on the wire (capture on rtr1) and the first gobgpd RIB poll "
        "showing the route. ms, p50 / p99 / max.",
        "",
        "| speaker | BFD | trials | T0→first UPDATE on the wire | T0→route in gobgpd |",
        "|---|---|---|---|---|",
    ]
    summ: dict[str, Any] = {"start": [], "reload": []}
    for bfd in variants:
        for impl in ("ours", "frr"):
            rows = [r for r in starts if r["impl"] == impl and r["bfd"] == bfd]
            c: dict[str, Any] = {"impl": impl, "bfd": bfd, "n": len(rows),
                 "first_update_ms": cell(rows, "t0_to_first_update_s"),
                 "rib_ms": cell(rows, "t0_to_rib_s")}  # fmt: skip
            summ["start"].append(c)
            lines.append(f"| {impl} | {f'{MS}/{MS}/3' if bfd else 'off'} | {len(rows)} | "
                         f"{fmt3(c['first_update_ms'], 0)} | {fmt3(c['rib_ms'], 0)} |")  # fmt: skip
    lines += [
        "",
        f"Reload adding {args.services:,} services (ours: new config + SIGHUP; FRR: `network` "
        "lines through one vtysh call). ms from T0, p50 / p99 / max.",
        "",
        "| speaker | trials | frames with UPDATEs (GSO: several per frame) | T0→first UPDATE | "
        "T0→last UPDATE | "
        "T0→all in gobgpd |",
        "|---|---|---|---|---|---|",
    ]
    for impl in ("ours", "frr"):
        rows = [r for r in reloads if r["impl"] == impl]
        rc: dict[str, Any] = {"impl": impl, "n": len(rows),
              "updates": summary([r.get("updates", 0) for r in rows]),
              "first_ms": cell(rows, "t0_to_first_update_s"),
              "last_ms": cell(rows, "t0_to_last_update_s"),
              "rib_ms": cell(rows, "t0_to_rib_s")}  # fmt: skip
        summ["reload"].append(rc)
        lines.append(f"| {impl} | {len(rows)} | {fmt3(rc['updates'], 0)} | "
                     f"{fmt3(rc['first_ms'], 0)} | {fmt3(rc['last_ms'], 0)} | "
                     f"{fmt3(rc['rib_ms'], 0)} |")  # fmt: skip
    lines += ["", "No target is set for these figures; they are reported for tracking."]
    data["summary"] = summ
    md = "\n".join(lines) + "\n"
    print(md)
    write_results(NAME, args.quick, data, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
