"""A planned stop of the node whose service goes away with it (issue 14, RFC 8326):
probes lost with ``[speaker] drain_time``, without it, and with FRR on the nodes.

    .venv/bin/python -m bench.drain_stop [--trials N] [--drain-time S] [--quick]

Lab and probes as :mod:`bench.dataplane`: ``cli`` - ``rtr`` (FRR zebra + bgpd + bfdd,
``maximum-paths 2``, L4 hash, eBGP with BFD 50/50/3 to both nodes) - ``n1`` / ``n2``
announcing 198.19.0.10/32, a UDP probe every 1 ms. FRR as the router lowers the
LOCAL_PREF of a received eBGP route carrying GRACEFUL_SHUTDOWN to 0 by itself.

Each trial stops the node carrying the flow at T0, as a node shutdown does: the
speaker stops, and 20 ms after it exited the node's UDP responder is killed (the
service goes away with the node). Variants, each in its own lab, trials alternating:

* ``ours-drain``: our speaker with ``drain_time = D``: SIGTERM at T0;
* ``ours``: our speaker without ``drain_time`` (what users had): SIGTERM at T0;
* ``frr-gshut``: FRR bgpd + bfdd on the nodes, configured as well as FRR allows: it
  has no drain on SIGTERM, so at T0 the operator's stop procedure configures ``bgp
  graceful-shutdown`` (FRR then sends its routes again with 65535:0), waits D, and
  sends SIGTERM.

Per trial: probes lost after T0, the longest gap, T0 -> the speaker's exit, T0 -> the
first answer from the other node. Writes ``bench/results/<date>-drain-stop[-quick]
.{json,md}``. No thresholds asserted.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import signal
import sys
import time
from typing import Any

from bench.common import fmt3, new_data, quiet_note, summary, write_results
from bench.dataplane import VIP, Topology, ours_config
from bench.setups import frr_bfd_profile, frr_neighbor_lines
from lab import LabError
from lab.dataplane import analyse
from lab.frr import FRR, bgpd_config
from lab.ours import OurSpeaker

NAME = "drain-stop"
#: The service stops this long after the speaker exited.
SERVICE_AFTER = 0.02
VARIANTS = ("ours-drain", "ours", "frr-gshut")


class StopTopology(Topology):
    """:class:`bench.dataplane.Topology` (BFD 50/50/3) whose stop drains or not."""

    def __init__(self, variant: str, drain_time: float, extra_routes: int = 0) -> None:
        super().__init__("frr" if variant.startswith("frr") else "ours", 50, 90)
        self.variant = variant
        self.drain_time = drain_time if variant != "ours" else 0.0
        #: More routes beside the VIP (a power of two, from 198.19.64.0/18): the
        #: router's work after a Cease grows with them.
        self.extra = extra_routes

    def _bulk(self) -> str:
        return f"198.19.64.0/{32 - self.extra.bit_length() + 1}"

    def start_speaker(self, node: str) -> None:
        name = f"spk{self.restarts}"
        if self.impl != "ours":
            if not self.extra:
                super().start_speaker(node)
                return
            self.restarts += 1
            host, rtr = self.lab[node], self.lab["rtr"]
            neigh = frr_neighbor_lines(str(rtr.addr4(node)), bfd=True, hold_time=self.hold)
            bulk = [str(n) for n in ipaddress.ip_network(self._bulk()).subnets(new_prefix=32)]
            self.speakers[node] = FRR(
                host, bfdd=frr_bfd_profile(50),
                bgpd=bgpd_config(64513, str(host.addr4("rtr")), neigh,
                                 networks4=[f"{VIP}/32", *bulk]),
                name=name,
            ).start(timeout=120)  # fmt: skip
            return
        self.restarts += 1
        config = ours_config(self.lab, node, self.ms, self.hold)
        if self.drain_time:
            config = config.replace(
                "[speaker]\n", f'[speaker]\ndrain_time = "{self.drain_time:g}s"\n', 1
            )
        if self.extra:
            config += (f'\n[[pools]]\nname = "bulk"\naddresses = ["{self._bulk()}"]\n'
                       "announce_all = true\n")  # fmt: skip
        self.speakers[node] = OurSpeaker(self.lab[node], config, name=name).start(timeout=60)

    def stop_node(self, node: str) -> tuple[float, float, float]:
        """Stop ``node`` as a shutdown does; (T0 wall, T0 monotonic, speaker exited
        monotonic). The responder goes SERVICE_AFTER after the speaker exited."""
        speaker = self.speakers[node]
        t_wall, t_mono = time.time(), time.monotonic()
        if isinstance(speaker, OurSpeaker):
            assert speaker.proc is not None
            os.kill(speaker.pid, signal.SIGTERM)
            speaker.proc.stop(timeout=2 * self.drain_time + 10)
        else:
            assert isinstance(speaker, FRR)
            if self.drain_time:
                speaker.configure("bgpd", "router bgp 64513", "bgp graceful-shutdown")
                time.sleep(self.drain_time)
            for p in speaker.procs.values():
                os.kill(p.pid, signal.SIGTERM)
            for p in speaker.procs.values():
                p.stop(timeout=5.0)
        exited = time.monotonic()
        time.sleep(SERVICE_AFTER)
        self.responders[node].stop(timeout=1.0, sig=signal.SIGKILL)
        return t_wall, t_mono, exited


def one_trial(topo: StopTopology, n: int) -> dict[str, Any]:
    topo.wait_ready(timeout=120.0)
    proc, carrier, out = topo.start_probe(f"{topo.variant}-{n}")
    time.sleep(0.3 + random.uniform(0, 0.5))
    t0_wall, t0_mono, exited = topo.stop_node(carrier)
    rec: dict[str, Any] = {"variant": topo.variant, "trial": n, "carrier": carrier,
                           "drain_time_s": topo.drain_time, "t0_wall": t0_wall,
                           "exit_ms": (exited - t0_mono) * 1000}  # fmt: skip
    time.sleep(0.5)
    proc.stop()
    try:
        rec.update(analyse(json.loads(out.read_text()), t0_wall))
    except (OSError, ValueError) as exc:
        rec["error"] = f"no probe data: {exc}"
    topo.start_speaker(carrier)
    return rec


def report(data: dict[str, Any]) -> str:
    d = data["parameters"]["drain_time_s"]
    lines = [
        f"# Planned stop, the service going away ({data['date']}"
        f"{', quick' if data['quick'] else ''})",
        "",
        "cli → rtr (FRR, maximum-paths 2, eBGP, BFD 50/50/3) → n1 / n2 announcing "
        f"198.19.0.10/32 (and {data['parameters'].get('extra_routes', 0)} more routes);"
        " a UDP probe every 1 ms. At T0 the node carrying the flow is "
        f"stopped; its service stops {SERVICE_AFTER * 1000:.0f} ms after its speaker exited. "
        f'ours-drain: `drain_time = "{d:g}s"`, SIGTERM at T0; ours: no drain_time, SIGTERM '
        f"at T0; frr-gshut: FRR on the nodes, `bgp graceful-shutdown` at T0, {d:g} s, then "
        "SIGTERM. lost = probes after T0 never answered; gap = longest time between two "
        "answers; exit = T0 → the speaker exited; moved = T0 → first answer from the other "
        "node; margin = exit - moved (how long the traffic had left before the service "
        f"could go, plus its {SERVICE_AFTER * 1000:.0f} ms). p50 / p99 / max (nearest rank).",
        "",
        "| variant | trials (failed) | lost probes | longest gap (ms) | exit (ms) | moved (ms) "
        "| margin (ms) | margin, min (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in data["summary"]:
        lines.append(
            f"| {c['variant']} | {c['trials']} ({c['failed']}) | {fmt3(c['lost'], 0)} | "
            f"{fmt3(c['gap_ms'])} | {fmt3(c['exit_ms'], 0)} | {fmt3(c['first_other_ms'], 0)} | "
            f"{fmt3(c['margin_ms'], 0)} | "
            f"{'-' if c['margin_ms']['min'] is None else round(c['margin_ms']['min'])} |"
        )
    if data["notes"]:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in data["notes"]]
    return "\n".join(lines) + "\n"


def summarise(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for variant in VARIANTS:
        ts = [t for t in trials if t["variant"] == variant]
        ok = [t for t in ts if "error" not in t]
        if not ts:
            continue
        out.append({
            "variant": variant, "trials": len(ts), "failed": len(ts) - len(ok),
            "lost": summary([t["lost"] for t in ok]),
            "gap_ms": summary([t["gap_ms"] for t in ok if t.get("gap_ms") is not None]),
            "exit_ms": summary([t["exit_ms"] for t in ok]),
            "first_other_ms": summary([t["first_other_ms"] for t in ok
                                       if t.get("first_other_ms") is not None]),
            "margin_ms": summary([t["exit_ms"] - t["first_other_ms"] for t in ok
                                  if t.get("first_other_ms") is not None]),
        })  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.drain_stop", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="2 trials per variant")
    ap.add_argument("--trials", type=int, help="per variant (5; quick 2)")
    ap.add_argument("--drain-time", type=float, default=2.0, help="seconds (2)")
    ap.add_argument(
        "--extra-routes",
        type=int,
        default=0,
        help="more routes announced beside the VIP (a power of two up to 16384)",
    )
    args = ap.parse_args(argv)
    trials = args.trials or (2 if args.quick else 5)
    data = new_data(NAME, args.quick, {"trials": trials, "drain_time_s": args.drain_time,
                                       "service_after_s": SERVICE_AFTER,
                                       "extra_routes": args.extra_routes})  # fmt: skip
    data["trials"] = []
    topos = [StopTopology(v, args.drain_time, args.extra_routes) for v in VARIANTS]
    start = time.monotonic()
    try:
        for t in topos:
            t.start()
        for n in range(trials):
            quiet = quiet_note()
            for t in topos:
                try:
                    rec = one_trial(t, n)
                except LabError as exc:
                    rec = {"variant": t.variant, "trial": n, "error": str(exc)}
                    data["notes"].append(f"{t.variant} trial {n}: {exc}")
                rec["quiet"] = quiet
                data["trials"].append(rec)
                print(f"  {t.variant} #{n}: carrier {rec.get('carrier')}, lost {rec.get('lost')},"
                      f" gap {rec.get('gap_ms') or float('nan'):.1f} ms, exit"
                      f" {rec.get('exit_ms', float('nan')):.0f} ms"
                      f"{' ERROR ' + rec['error'] if 'error' in rec else ''}",
                      flush=True)  # fmt: skip
    finally:
        for t in topos:
            t.close()
    data["runtime_s"] = time.monotonic() - start
    data["summary"] = summarise(data["trials"])
    md = report(data)
    print(md)
    write_results(NAME, args.quick, data, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
