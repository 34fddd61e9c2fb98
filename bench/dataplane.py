"""What users feel: a client's probes to an ECMP VIP while the node carrying them fails
(benchmark 0; anchor figures, section DP, measured the same way with FRR).

    cd /work/main && .venv/bin/python -m bench.dataplane [--quick] [--trials N]
        [--cells hard-50,hard-300,hard-none,term-50,term-none]

Lab: ``cli`` - ``rtr`` - ``n1`` / ``n2``. rtr runs FRR zebra + bgpd + bfdd (AS 64512,
``maximum-paths 2``, eBGP with BFD to both nodes, L4 ECMP hash); n1 and n2 (AS 64513)
both announce the VIP 198.19.0.10/32, have it on their loopback and run a UDP
responder (``lab.dataplane``). On the nodes runs either ours (``speaker run``) or
FRR bgpd + bfdd: two such labs side by side, trials alternating ours, FRR, ...

Each trial: the client sends a UDP probe every 1 ms from a random source port (so the
hash picks either node across trials), the benchmark learns which node answers,
waits a random phase, then fails that node at T0:

* ``hard``: nft drops everything leaving the node (T0), then everything arriving;
  the router's BFD (or hold timer) must notice; the node's speaker cannot help;
* ``term``: SIGTERM to the node's speaker (ours) or to its FRR daemons, the node
  itself keeps answering: a planned stop; zero lost probes is the aim.
* ``restart`` (cells ``restart-gr``, ``restart-nogr``): only n1 runs a speaker, so it
  is the ONLY node announcing the VIP; its speaker is restarted (stopped and started
  again at once, as ``systemctl restart`` does) while the node keeps answering. The
  router has ``bgp graceful-restart`` and ``neighbor X bfd
  check-control-plane-failure``. Ours: the restart path (SIGUSR2), with
  ``graceful_restart = true`` (``-gr``) or without it (``-nogr``: the loss users have
  today). FRR on the node: SIGTERM to its daemons, then started again, with ``bgp
  graceful-restart`` + ``bgp graceful-restart preserve-fw-state`` (``-gr``) or
  without (``-nogr``). Zero lost probes is the aim. A stop-with-drain cell (RFC 8326,
  ``[speaker] drain_time``, branch ``drain``) fits the same shape: a ``kind`` in
  :meth:`Topology.fail` that stops the speaker, then the responder 20 ms after it
  exits (see ``STOP_WITH_DRAIN`` below).

Timers: ``-50``/``-300`` = BFD 50/50/3 or 300/300/3 on every session, hold 90 s;
``-none`` = no BFD, hold 9 s / keepalive 3 s (the baseline users have today).

Per trial: the client's longest gap between two answers, probes lost after T0, and
T0 -> the router's kernel route losing the failed next hop (``ip route`` polled every
20 ms; the BFD-off cells every 50 ms); restart cells: how long the router had no route
to the VIP (polled every 20 ms from T0 until the restarted speaker's route is no longer
stale at the router) and the time to that refresh. Then the fault is undone (or the
speaker restarted) and both next hops must be back before the next trial.
Writes ``bench/results/<date>-dataplane[-quick].{json,md}``. No thresholds asserted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import ecdf_plot, fmt3, new_data, quiet_note, summary, write_results
from bench.setups import SPEAKER_AS, Peer, frr_bfd_profile, frr_neighbor_lines, speaker_toml
from lab import Lab, LabError, faults, wait_until
from lab.dataplane import analyse
from lab.frr import FRR, bgpd_config
from lab.ours import OurSpeaker, our_env
from lab.proc import Process

NAME = "dataplane"
VIP = "198.19.0.10"
PORT = 9000
NODES = ("n1", "n2")


def ours_config(
    lab: Lab, node: str, ms: int | None, hold: int, *, graceful_restart: bool = False
) -> str:
    host = lab[node]
    text = speaker_toml(router_id=str(host.addr4("rtr")), state_file=lab.dir / f"{node}-state.json",
                        peers=[Peer.between(host, lab["rtr"])], bfd_ms=ms, hold_time=hold,
                        services=[("web", VIP)])  # fmt: skip
    if graceful_restart:  # in the [[peers]] block, after its connect_time
        text = text.replace('connect_time = "1s"', 'connect_time = "1s"\ngraceful_restart = true')
    return text


#: The FRR lines of a restart cell's router: graceful restart (helper) and the C bit
#: check (the routes of a neighbour whose BFD shares fate with its control plane, C = 0,
#: are kept when its BFD goes down during a graceful restart).
ROUTER_GR = " bgp graceful-restart"


class Topology:
    """One lab: client, FRR router, two nodes running ``impl`` as the speaker (restart
    cells: only n1; ``restart_gr`` says whether the node's speaker has graceful
    restart)."""

    def __init__(
        self, impl: str, ms: int | None, hold: int, restart_gr: bool | None = None
    ) -> None:
        self.impl, self.ms, self.hold = impl, ms, hold
        self.restart_gr = restart_gr
        self.nodes = NODES if restart_gr is None else NODES[:1]
        self.lab = Lab.create(
            hosts=["cli", "rtr", *NODES],
            links=[("cli", "rtr"), ("rtr", "n1"), ("rtr", "n2")],
            routers=["rtr"],
        )
        self.restarts = 0
        self.speakers: dict[str, OurSpeaker | FRR] = {}
        self.responders: dict[str, Process] = {}

    def close(self) -> None:
        self.lab.close()

    def start(self) -> None:
        lab = self.lab
        cli, rtr = lab["cli"], lab["rtr"]
        cli.run("ip", "route", "add", "198.19.0.0/24", "via", str(rtr.addr4("cli")))
        rtr.sysctl("net.ipv4.fib_multipath_hash_policy", "1")  # L4 hash: ports matter
        for node in NODES:
            host = lab[node]
            host.run("ip", "addr", "add", f"{VIP}/32", "dev", "lo")
            host.run("ip", "route", "add", "198.18.1.0/24", "via", str(rtr.addr4(node)))
        neigh = []
        for node in self.nodes:
            addr = str(lab[node].addr4("rtr"))
            neigh += frr_neighbor_lines(addr, bfd=self.ms is not None, hold_time=self.hold,
                                        remote_as=SPEAKER_AS)  # fmt: skip
            if self.restart_gr is not None and self.ms is not None:
                neigh.append(f"neighbor {addr} bfd check-control-plane-failure")
        extra = " address-family ipv4 unicast\n  maximum-paths 2\n exit-address-family"
        if self.restart_gr is not None:
            extra += "\n" + ROUTER_GR
        self.router = FRR(
            rtr, bfdd=frr_bfd_profile(self.ms) if self.ms is not None else None,
            bgpd=bgpd_config(64512, str(rtr.addr4("cli")), neigh, extra=extra), name="router",
        ).start()  # fmt: skip
        for node in self.nodes:
            self.start_speaker(node)
            self.ensure_responder(node)
        self.wait_ready(timeout=120.0)

    def start_speaker(self, node: str) -> None:
        host, rtr = self.lab[node], self.lab["rtr"]
        name = f"spk{self.restarts}"
        self.restarts += 1
        gr = bool(self.restart_gr)
        if self.impl == "ours":
            config = ours_config(self.lab, node, self.ms, self.hold, graceful_restart=gr)
            self.speakers[node] = OurSpeaker(host, config, name=name).start()
        else:
            r_addr = str(rtr.addr4(node))
            neigh = frr_neighbor_lines(r_addr, bfd=self.ms is not None, hold_time=self.hold)
            extra = " bgp graceful-restart\n bgp graceful-restart preserve-fw-state" if gr else ""
            self.speakers[node] = FRR(
                host, bfdd=frr_bfd_profile(self.ms) if self.ms is not None else None,
                bgpd=bgpd_config(64513, str(host.addr4("rtr")), neigh, networks4=[f"{VIP}/32"],
                                 extra=extra),
                name=name,
            ).start()  # fmt: skip

    def ensure_responder(self, node: str) -> None:
        proc = self.responders.get(node)
        if proc is not None and proc.alive():
            return
        argv = [sys.executable, "-m", "lab.dataplane", "respond", "--port", str(PORT),
                "--name", node]  # fmt: skip
        proc = self.lab[node].popen(f"responder{self.restarts}", argv, env=our_env())
        self.restarts += 1
        wait_until(lambda: "ready" in proc.log_tail(5), timeout=10, what=f"responder in {node}")
        self.responders[node] = proc

    def nexthops(self) -> int:
        out = self.lab["rtr"].run("ip", "route", "show", f"{VIP}/32").stdout
        return out.count("nexthop via") if "nexthop" in out else (1 if "via" in out else 0)

    def bfd_fast(self) -> bool:
        if self.ms is None:
            return True
        peers = self.router.bfd_peers()
        fast = [p for p in peers if p.get("status") == "up"
                and p.get("transmit-interval") == self.ms
                and p.get("remote-transmit-interval") == self.ms]  # fmt: skip
        return len(fast) == len(self.nodes)

    def wait_ready(self, timeout: float) -> None:
        for node in self.nodes:
            self.ensure_responder(node)
        n = len(self.nodes)
        wait_until(lambda: self.nexthops() == n and self.bfd_fast() and not self.stale(),
                   timeout=timeout, interval=0.1,
                   what=f"{self.impl}: {n} next hop(s), BFD fast")  # fmt: skip

    def stale(self) -> bool:
        """Whether the router holds the VIP's route as stale (graceful restart)."""
        detail = self.router.vty("bgpd").json(f"show bgp ipv4 unicast {VIP}/32 json")
        return any(p.get("stale") for p in detail.get("paths") or [])

    def start_probe(self, tag: str) -> tuple[Process, str, Any]:
        out = self.lab.dir / f"probe-{tag}.json"
        sport = random.randint(20000, 60000)
        argv = [sys.executable, "-m", "lab.dataplane", "probe", "--target", VIP, "--port",
                str(PORT), "--sport", str(sport), "--out", str(out)]  # fmt: skip
        proc = self.lab["cli"].popen(f"probe-{tag}", argv, env=our_env())

        def first() -> str | None:
            proc.check_alive("prober")
            for line in proc.log_tail(5).splitlines():
                if '"first"' in line:
                    return str(json.loads(line)["node"])
            return None

        node = wait_until(first, timeout=10, interval=0.01, what="first answer to the prober")
        return proc, node, out

    def fail(self, kind: str, node: str) -> tuple[float, float, Any]:
        """Fail ``node``; (T0 wall, T0 monotonic, undo)."""
        host = self.lab[node]
        if kind == "hard":
            out = faults.drop(host, "meta nfproto ipv4", direction="out")
            inp = faults.drop(host, "meta nfproto ipv4", direction="in")

            def undo() -> None:
                inp.undo()
                out.undo()

            return out.t_wall, out.t_mono, undo
        speaker = self.speakers[node]
        t_wall, t_mono = time.time(), time.monotonic()
        # STOP_WITH_DRAIN (hook, branch drain): a kind "drain" would SIGTERM ours with
        # [speaker] drain_time set (FRR: its graceful-shutdown), wait for the exit, then
        # stop self.responders[node] 20 ms later, and undo by starting both again.
        if kind == "restart":
            sig = signal.SIGUSR2 if isinstance(speaker, OurSpeaker) else signal.SIGTERM
            signalled = (
                [speaker.proc] if isinstance(speaker, OurSpeaker) else speaker.procs.values()
            )
            for q in list(signalled):
                assert q is not None
                os.kill(q.pid, sig)
            for q in list(signalled):
                assert q is not None
                q.stop(timeout=5.0)
            self.start_speaker(node)  # at once, as systemctl restart does
            return t_wall, t_mono, lambda: None
        if isinstance(speaker, OurSpeaker):
            assert speaker.proc is not None
            os.kill(speaker.pid, signal.SIGTERM)
            procs: list[Process] = [speaker.proc]
        else:
            procs = list(speaker.procs.values())
            for p in procs:
                os.kill(p.pid, signal.SIGTERM)
        for p in procs:
            p.stop(timeout=5.0)
        return t_wall, t_mono, lambda: self.start_speaker(node)


def one_trial(topo: Topology, kind: str, n: int) -> dict[str, Any]:
    topo.wait_ready(timeout=120.0)
    tag = f"{kind}-{topo.ms}-{n}"
    proc, carrier, out = topo.start_probe(tag)
    time.sleep(0.3 + random.uniform(0, (topo.ms or 3000) / 1000))
    if kind == "restart":
        return restart_trial(topo, n, proc, carrier, out)
    t0_wall, t0_mono, undo = topo.fail(kind, carrier)
    rec: dict[str, Any] = {"impl": topo.impl, "kind": kind, "timers_ms": topo.ms,
                           "hold_s": topo.hold, "trial": n, "carrier": carrier,
                           "t0_wall": t0_wall}  # fmt: skip
    interval = 0.02 if topo.ms is not None else 0.05
    deadline = t0_mono + (topo.hold + 5 if topo.ms is None else 10)
    while time.monotonic() < deadline:
        before = time.monotonic()
        hops = topo.nexthops()
        if hops < 2:
            rec["route_change_ms"] = ((before + time.monotonic()) / 2 - t0_mono) * 1000
            break
        time.sleep(interval)
    else:
        rec["error"] = "the router kept both next hops"
    time.sleep(0.5)  # answers from the other node, and the measurement's settle window
    proc.stop()
    try:
        data = json.loads(out.read_text())
        rec.update(analyse(data, t0_wall))
    except (OSError, ValueError) as exc:
        rec["error"] = f"no probe data: {exc}"
    undo()
    return rec


def restart_trial(topo: Topology, n: int, proc: Process, carrier: str, out: Path) -> dict[str, Any]:
    """The node's speaker restarts (:meth:`Topology.fail` returns once the new one is
    running); meanwhile a thread polls the router's route every 20 ms. Then until the
    route is no longer stale (the new session's End-of-RIB), 30 s at most."""
    samples: list[tuple[float, bool]] = []  # (when, the route was absent)
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            before = time.monotonic()
            samples.append((before, topo.nexthops() == 0))
            done.wait(0.02)

    # A trial is about the restart: the session must be up, with its route, right
    # before T0 (under load the router's BFD may have flapped it during the phase).
    addr = str(topo.lab[carrier].addr4("rtr"))
    state = topo.router.vty("bgpd").json(f"show bgp neighbors {addr} json")
    was_up = state.get(addr, {}).get("bgpState") == "Established" and topo.nexthops() == 1
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    t0_wall, t0_mono, _ = topo.fail("restart", carrier)
    rec: dict[str, Any] = {"impl": topo.impl, "kind": "restart", "timers_ms": topo.ms,
                           "hold_s": topo.hold, "trial": n, "carrier": carrier,
                           "t0_wall": t0_wall, "graceful_restart": topo.restart_gr,
                           "running_again_ms": (time.monotonic() - t0_mono) * 1000}  # fmt: skip
    if not was_up:
        rec["error"] = "the session or its route was already down at T0 (not the restart)"
    try:
        wait_until(lambda: topo.nexthops() == 1 and not topo.stale(), timeout=30, interval=0.05,
                   what="the route back and not stale")  # fmt: skip
        rec["refreshed_ms"] = (time.monotonic() - t0_mono) * 1000
    except LabError as exc:
        rec["error"] = str(exc)
    time.sleep(0.5)
    done.set()
    poller.join()
    # Each absent sample counts until the next sample (the poll is every 20 ms plus
    # the `ip route` call: an estimate, bounded by the sampling).
    rec["route_absent_ms"] = 1000 * sum(b[0] - a[0] for a, b in itertools.pairwise(samples) if a[1])
    proc.stop()
    try:
        data = json.loads(out.read_text())
        rec.update(analyse(data, t0_wall))
    except (OSError, ValueError) as exc:
        rec["error"] = f"no probe data: {exc}"
    return rec


CELLS = {"hard-50": ("hard", 50, 90), "hard-300": ("hard", 300, 90),
         "hard-none": ("hard", None, 9), "term-50": ("term", 50, 90),
         "term-none": ("term", None, 9), "restart-gr": ("restart", 50, 90),
         "restart-nogr": ("restart", 50, 90)}  # fmt: skip


def run_cell(cell: str, trials: int, notes: list[str]) -> list[dict[str, Any]]:
    kind, ms, hold = CELLS[cell]
    print(f"== {cell}: {trials} trials per speaker", flush=True)
    gr = None if kind != "restart" else cell == "restart-gr"
    topos = [Topology("ours", ms, hold, gr), Topology("frr", ms, hold, gr)]
    out: list[dict[str, Any]] = []
    try:
        for t in topos:
            t.start()
        for n in range(trials):
            quiet = quiet_note()
            for t in topos:
                try:
                    rec = one_trial(t, kind, n)
                except LabError as exc:
                    rec = {"impl": t.impl, "kind": kind, "timers_ms": ms, "hold_s": hold,
                           "trial": n, "error": str(exc)}  # fmt: skip
                    notes.append(f"{cell} {t.impl} trial {n}: {exc}")
                rec["cell"], rec["quiet"] = cell, quiet
                out.append(rec)
                route = (f"route absent {rec.get('route_absent_ms', float('nan')):.0f} ms, "
                         f"refreshed {rec.get('refreshed_ms', float('nan')):.0f} ms"
                         if kind == "restart" else
                         f"route {rec.get('route_change_ms', float('nan')):.0f} ms")  # fmt: skip
                print(f"  {cell} {t.impl} #{n}: carrier {rec.get('carrier')}, gap "
                      f"{rec.get('gap_ms', float('nan')):.1f} ms, lost {rec.get('lost')}, "
                      f"{route}"
                      f"{' ERROR ' + rec['error'] if 'error' in rec else ''}",
                      flush=True)  # fmt: skip
    finally:
        for t in topos:
            t.close()
    return out


def summarise(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cells = []
    for cell in dict.fromkeys(t["cell"] for t in trials):
        for impl in ("ours", "frr"):
            ts = [t for t in trials if t["cell"] == cell and t["impl"] == impl]
            ok = [t for t in ts if "error" not in t and t.get("gap_ms") is not None]
            if not ts:
                continue
            cells.append({
                "cell": cell, "impl": impl, "trials": len(ts), "failed": len(ts) - len(ok),
                "gap_ms": summary([t["gap_ms"] for t in ok]),
                "lost": summary([t["lost"] for t in ok]),
                "route_change_ms": summary([t["route_change_ms"] for t in ok
                                            if "route_change_ms" in t]),
                "first_other_ms": summary([t["first_other_ms"] for t in ok
                                           if t.get("first_other_ms") is not None]),
                "carriers": {n: sum(1 for t in ok if t["carrier"] == n) for n in NODES},
                "route_absent_ms": summary([t["route_absent_ms"] for t in ok
                                            if "route_absent_ms" in t]),
                "refreshed_ms": summary([t["refreshed_ms"] for t in ok if "refreshed_ms" in t]),
            })  # fmt: skip
    return cells


def describe(cell: str) -> str:
    kind, ms, hold = CELLS[cell]
    if kind == "restart":
        gr = "with" if cell == "restart-gr" else "without"
        return f"restart of the only node's speaker, {gr} graceful restart, BFD {ms}/{ms}/3"
    what = "hard (node silent)" if kind == "hard" else "SIGTERM (planned)"
    return f"{what}, " + (f"BFD {ms}/{ms}/3, hold {hold} s" if ms else f"no BFD, hold {hold} s")


def report(data: dict[str, Any]) -> str:
    lines = [
        f"# Data-plane failover ({data['date']}{', quick' if data['quick'] else ''})",
        "",
        "cli → rtr (FRR zebra+bgpd+bfdd, maximum-paths 2, L4 hash) → n1 / n2 announcing "
        "198.19.0.10/32; a UDP probe every 1 ms; the node carrying the flow fails at T0. "
        "gap = longest time between two answers (ms); lost = probes after T0 never answered; "
        "route = T0 → the router's kernel route loses the failed next hop (`ip route` polled "
        "every 20/50 ms, so a coarse upper bound); first answer = T0 → the first probe answered "
        "by the other node (the data plane moved). "
        "p50 / p99 / max (nearest rank).",
        "",
        "| fault | speaker on the nodes | trials (failed) | longest gap (ms) | lost probes | "
        "route change (ms) | first answer from the other node (ms) | failed node n1/n2 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in data["summary"]:
        lines.append(
            f"| {describe(c['cell'])} | {c['impl']} | {c['trials']} ({c['failed']}) | "
            f"{fmt3(c['gap_ms'])} | {fmt3(c['lost'], 0)} | {fmt3(c['route_change_ms'], 0)} | "
            f"{fmt3(c.get('first_other_ms'), 0)} | "
            f"{c['carriers']['n1']}/{c['carriers']['n2']} |"
        )
    restarts = [c for c in data["summary"] if c["cell"].startswith("restart")]
    if restarts:
        lines += [
            "",
            "Restart cells: the router (FRR, `bgp graceful-restart`, `neighbor X bfd "
            "check-control-plane-failure`) has one next hop, n1; its speaker restarts at "
            "T0 (ours: SIGUSR2, the restart path; FRR: SIGTERM to its daemons) and is "
            "started again at once. route absent = how long the router had no route "
            "to the VIP (`ip route` every 20 ms or slower); refreshed = T0 → the route "
            "back and no longer stale (the new session's End-of-RIB).",
            "",
            "| cell | speaker on the node | trials (failed) | lost probes | longest gap "
            "(ms) | route absent (ms) | refreshed (ms) |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in restarts:
            lines.append(
                f"| {describe(c['cell'])} | {c['impl']} | {c['trials']} ({c['failed']})"
                f" | {fmt3(c['lost'], 0)} | {fmt3(c['gap_ms'])} | "
                f"{fmt3(c['route_absent_ms'], 0)} | {fmt3(c['refreshed_ms'], 0)} |"
            )
        lines.append("")  # fmt: skip
    by = {(c["cell"], c["impl"]): c for c in data["summary"]}
    lines += ["", "Targets (ours): hard failure: longest gap no longer than with FRR on the "
              "nodes; SIGTERM: no more lost probes than FRR (aim: zero).", ""]  # fmt: skip
    for cell in dict.fromkeys(c["cell"] for c in data["summary"]):
        o, f = by.get((cell, "ours")), by.get((cell, "frr"))
        if not o or not f or o["gap_ms"]["p50"] is None or f["gap_ms"]["p50"] is None:
            continue
        if cell.startswith("restart"):
            gr_zero = cell == "restart-gr" and o["lost"]["max"] == 0
            lines.append(f"- {describe(cell)}: lost max {o['lost']['max']:.0f} (ours) vs "
                         f"{f['lost']['max']:.0f} (FRR)"
                         f"{' → target 0 met' if gr_zero else ''}")  # fmt: skip
            continue
        if cell.startswith("hard"):
            ok = (
                o["gap_ms"]["p50"] <= f["gap_ms"]["p50"]
                and o["gap_ms"]["max"] <= f["gap_ms"]["max"]
            )
            lines.append(f"- {describe(cell)}: gap p50 {o['gap_ms']['p50']:.0f} vs FRR "
                         f"{f['gap_ms']['p50']:.0f} ms, max {o['gap_ms']['max']:.0f} vs "
                         f"{f['gap_ms']['max']:.0f} ms → {'met' if ok else 'MISSED'}")  # fmt: skip
        else:
            ok = o["lost"]["max"] <= f["lost"]["max"]
            lines.append(f"- {describe(cell)}: lost max {o['lost']['max']:.0f} vs FRR "
                         f"{f['lost']['max']:.0f} (p50 {o['lost']['p50']:.0f} vs "
                         f"{f['lost']['p50']:.0f}) → {'met' if ok else 'MISSED'}"
                         f"{'' if o['lost']['max'] == 0 else ' (zero not reached)'}")  # fmt: skip
    lines += ["", data.get("plot", "")]
    if data["notes"]:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in data["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.dataplane", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="2 trials, hard-50 and term-50 only")
    ap.add_argument("--trials", type=int, help="per speaker and cell (10; quick 2)")
    ap.add_argument(
        "--cells", help=f"comma-separated, from {','.join(CELLS)} (restart-*: only when named)"
    )
    ap.add_argument("--report-from", help="re-summarise a result JSON (no lab run)")
    args = ap.parse_args(argv)
    if args.report_from:
        data = json.loads(Path(args.report_from).read_text())
        data["summary"] = summarise(data["trials"])
        md = report(data)
        print(md)
        src = Path(args.report_from)
        write_results(NAME, data["quick"], data, md, base=src.with_name(src.stem))
        return 0
    trials = args.trials or (2 if args.quick else 10)
    cells = (args.cells or ("hard-50,term-50" if args.quick else ",".join(CELLS))).split(",")
    data = new_data(NAME, args.quick, {"trials": trials, "cells": cells, "probe_interval_ms": 1})
    start = time.monotonic()
    data["trials"] = []
    for cell in cells:
        data["trials"] += run_cell(cell, trials, data["notes"])
    data["runtime_s"] = time.monotonic() - start
    data["summary"] = summarise(data["trials"])

    series = {
        f"{c['impl']} {c['cell']}": [
            t["gap_ms"] for t in data["trials"]
            if t.get("cell") == c["cell"] and t["impl"] == c["impl"] and t.get("gap_ms") is not None
        ]
        for c in data["summary"] if c["cell"].startswith("hard") and c["cell"] != "hard-none"
    }  # fmt: skip
    data["plot"] = (
        ecdf_plot(NAME, args.quick, "gap", series, "client's longest gap, ms (hard failure)")
        if any(series.values())
        else ""
    )
    md = report(data)
    print(md)
    write_results(NAME, args.quick, data, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
