"""Failover: a one-way fault towards the speaker, timed on the wire (benchmark 1).

    cd /work/main && .venv/bin/python -m bench.failover [--quick] [--trials N]
        [--timers 300,50,10] [--hold-trials N]

Two default labs side by side, one per speaker: rtr1 is the router, gobgpd (AS 64512,
passive, no BFD) plus FRR bfdd at the same address as the fixed BFD peer; spk runs
the speaker (AS 64513) announcing 198.19.0.10/32: ours (``speaker run``, config as
in tests/interop/test_speaker.py) or FRR bgpd+bfdd (``neighbor X bfd profile``).
Trials alternate ours, FRR, ours, ...; a random 0..T wait before each fault
randomises its phase in the BFD cycle.

At T0 (``fault.t_wall``, right after ``nft add rule`` returned) BFD towards spk is
dropped (nft input hook in spk, as anchor M2). dumpcap on rtr1/to-spk sees:
spk's BFD Down, spk's NOTIFICATION; gobgpd's RIB is polled (a ``gobgp global rib``
call every few ms; the midpoint of the first call that no longer shows the route
counts, the call's duration is its resolution). Per trial:

* T0 -> BFD Down, T0 -> NOTIFICATION, T0 -> route gone from gobgpd;
* BFD Down -> NOTIFICATION on the wire (what the speaker adds after detecting);
* NOTIFICATION - (last rtr1 BFD packet + 3T): the speaker's lateness beyond the
  ideal detection time, detection slop included (target: p99 <= 5 ms);
* last rtr1 BFD packet -> NOTIFICATION: fault to NOTIFICATION as the speaker sees the
  fault, without the phase of T0 in the router's transmit cycle (which dominates the
  spread of T0 -> NOTIFICATION and is the same for both speakers).

Baseline without BFD (what users have today): hold time 9 s (keepalive 3 s), no BFD
anywhere; the fault drops everything from rtr1 to spk (BGP included), so only the
speaker's hold timer can notice: NOTIFICATION 4/0 after 6-9 s. It is slow, so only
``--hold-trials`` (3; quick 0) trials per speaker.

After each fault: undo, wait until the route is back in gobgpd and BFD is Up at the
fast rate again. The other lab's trial runs while one lab recovers (BGP
re-establishment, BFD slow start); that is small but not zero background work.
Writes ``bench/results/<date>-failover[-quick].{json,md}``. No thresholds asserted.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    ecdf_plot,
    fmt3,
    new_data,
    quiet_note,
    summary,
    write_results,
)
from bench.setups import Peer, frr_bfd_profile, frr_neighbor_lines, speaker_toml, start_router
from lab import Lab, LabError, default_lab, faults, wait_until
from lab.capture import BFD_FIELDS, BGP_FIELDS, Capture
from lab.frr import FRR, bgpd_config
from lab.ours import OurSpeaker

NAME = "failover"
VIP = "198.19.0.10/32"
MULT = 3
FIELDS = tuple(dict.fromkeys(BFD_FIELDS + BGP_FIELDS))


def ours_config(lab: Lab, ms: int | None, hold_s: int) -> str:
    spk = lab["spk"]
    return speaker_toml(router_id=str(spk.addr4("rtr1")), state_file=lab.dir / "speaker-state.json",
                        peers=[Peer.between(spk, lab["rtr1"])], bfd_ms=ms, mult=MULT,
                        hold_time=hold_s)  # fmt: skip


class Side:
    """One lab: router (gobgpd + FRR bfdd) and one speaker in spk."""

    def __init__(self, impl: str, lab: Lab, ms: int | None, hold_s: int) -> None:
        self.impl, self.lab, self.ms, self.hold_s = impl, lab, ms, hold_s
        self.rtr, self.spk = lab["rtr1"], lab["spk"]
        self.r_addr, self.s_addr = str(self.rtr.addr4("spk")), str(self.spk.addr4("rtr1"))
        self.speaker: OurSpeaker | None = None
        self.frr: FRR | None = None
        self.rtr_bfd: FRR | None = None

    def start(self) -> None:
        self.router, self.rtr_bfd = start_router(self.rtr, self.spk, bfd_ms=self.ms, mult=MULT,
                                                 hold_time=self.hold_s)  # fmt: skip
        if self.impl == "ours":
            self.speaker = OurSpeaker(self.spk, ours_config(self.lab, self.ms, self.hold_s)).start()
        else:
            neigh = frr_neighbor_lines(self.r_addr, bfd=self.ms is not None, hold_time=self.hold_s)
            bfdd = frr_bfd_profile(self.ms, MULT) if self.ms is not None else None
            self.frr = FRR(self.spk, bfdd=bfdd,
                           bgpd=bgpd_config(64513, self.s_addr, neigh, networks4=[VIP]),
                           name="speaker").start()  # fmt: skip
        self.wait_ready(timeout=90.0)
        self.cap = Capture(self.rtr, "to-spk", "udp port 3784 or tcp port 179",
                           name=f"failover-{self.ms}").start()  # fmt: skip

    def ready(self) -> bool:
        if VIP not in self.router.rib():
            return False
        if self.rtr_bfd is None:
            return True
        p = self.rtr_bfd.bfd_peer(self.s_addr)
        return bool(
            p and p["status"] == "up" and p["remote-receive-interval"] == self.ms
            and p["transmit-interval"] == self.ms and p["remote-transmit-interval"] == self.ms
        )  # fmt: skip

    def wait_ready(self, timeout: float) -> float:
        t = time.monotonic()
        wait_until(self.ready, timeout=timeout, interval=0.1,
                   what=f"{self.impl}: route in gobgpd, BFD at {self.ms} ms")  # fmt: skip
        return time.monotonic() - t

    def fault(self) -> faults.Fault:
        if self.ms is None:  # no BFD: cut everything from the router (the hold timer notices)
            return faults.drop(self.spk, f"ip saddr {self.r_addr}", direction="in")
        return faults.drop_bfd(self.spk, direction="in")

    def wait_gone(self, timeout: float) -> dict[str, float]:
        """Poll gobgpd's RIB; the call that first misses the route, as wall times."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = time.time()
            rib = self.router.rib()
            after = time.time()
            if VIP not in rib:
                return {"gone_wall": (before + after) / 2, "poll_s": after - before}
            time.sleep(0.002)
        raise LabError(f"{self.impl}: route still in gobgpd after {timeout} s")

    def teardown_ms(self, seen: int) -> float | None:
        """Ours: the speaker's own BFD Down -> teardown figure (log), if logged."""
        if self.speaker is None:
            return None
        hits = self.speaker.find("BGP torn down")[seen:]
        return hits[0].get("teardown_ms") if hits else None

    def torn_down_seen(self) -> int:
        return len(self.speaker.find("BGP torn down")) if self.speaker else 0


def one_trial(side: Side, n: int) -> dict[str, Any]:
    ms = side.ms
    phase = random.uniform(0, (ms / 1000) if ms else 3.0)
    time.sleep(phase)
    seen = side.torn_down_seen()
    fault = side.fault()
    rec: dict[str, Any] = {"impl": side.impl, "timers_ms": ms, "hold_s": side.hold_s,
                           "trial": n, "phase_s": phase, "t0_wall": fault.t_wall,
                           "t0_before_wall": fault.at.before_wall}  # fmt: skip
    try:
        rec.update(side.wait_gone(timeout=side.hold_s + 5.0 if ms is None else 5.0))
    except LabError as exc:
        rec["error"] = str(exc)
    rec["undo_wall"] = fault.undo().t_wall
    rec["speaker_teardown_ms"] = side.teardown_ms(seen)
    return rec


def analyse(side: Side, trials: list[dict[str, Any]]) -> None:
    side.cap.stop()
    pkts = side.cap.packets(FIELDS)
    rtr_bfd = [p for p in pkts if p.get("ip.src") == side.r_addr and p.get("bfd.sta") is not None]
    spk = [p for p in pkts if p.get("ip.src") == side.s_addr]
    for tr in trials:
        if "error" in tr:
            continue
        lo, hi, t0 = tr["t0_before_wall"], tr["undo_wall"], tr["t0_wall"]
        down = next((p for p in spk if lo < p["time"] < hi and p.get("bfd.sta") == 1), None)
        notif = next((p for p in spk if lo < p["time"] < hi and _has_type(p, 3)), None)
        if "gone_wall" in tr:
            tr["t0_to_gone_ms"] = (tr["gone_wall"] - t0) * 1000
        if notif is None:
            # Without BFD the speaker's NOTIFICATION (hold timer expired) can stay stuck
            # behind TCP retransmissions (its ACKs are dropped too); gobgpd's own hold
            # timer then removes the route. The route leaving gobgpd still counts.
            tr["wire_error"] = "no NOTIFICATION from spk on the wire"
            continue
        tr["notification_code"] = f"{_first(notif.get('bgp.notify.major_error'))}/" + str(
            _first(notif.get("bgp.notify.minor_error_cease"))
            if _first(notif.get("bgp.notify.major_error")) == 6
            else _first(notif.get("bgp.notify.minor_error"))
        )
        tr["t0_to_notification_ms"] = (notif["time"] - t0) * 1000
        if "gone_wall" in tr:
            tr["notification_to_gone_ms"] = (tr["gone_wall"] - notif["time"]) * 1000
        if side.ms is not None and down is not None:
            tr["t0_to_bfd_down_ms"] = (down["time"] - t0) * 1000
            tr["bfd_down_to_notification_ms"] = (notif["time"] - down["time"]) * 1000
            # The last rtr1 packet spk received: sent before the rule went in. One on the
            # wire while the rule was being installed ([before, after]) may or may not have
            # been dropped: take it only if it fits the Down (detection >= 3T after it).
            last = [p["time"] for p in rtr_bfd if p["time"] < t0]
            detect = MULT * side.ms / 1000
            while len(last) > 1 and last[-1] >= lo and down["time"] - last[-1] < detect - 0.001:
                last.pop()
            if last:
                tr["last_rtr_bfd_wall"] = last[-1]
                tr["detect_ms"] = (down["time"] - last[-1]) * 1000
                tr["notification_beyond_detect_ms"] = (notif["time"] - last[-1] - detect) * 1000


def _has_type(p: dict[str, Any], t: int) -> bool:
    v = p.get("bgp.type")
    return v == t or (isinstance(v, list) and t in v)


def _first(v: Any) -> Any:
    return v[0] if isinstance(v, list) else v


def series(setting: int | None, trials: int, hold_s: int, notes: list[str]) -> list[dict[str, Any]]:
    label = f"{setting}/{setting}/{MULT}" if setting else f"no BFD, hold {hold_s} s"
    print(f"== {label}: {trials} trials per speaker", flush=True)
    out: list[dict[str, Any]] = []
    with default_lab() as lab_ours, default_lab() as lab_frr:
        sides = [Side("ours", lab_ours, setting, hold_s), Side("frr", lab_frr, setting, hold_s)]
        for s in sides:
            s.start()
        quiet = quiet_note()
        per_side: dict[str, list[dict[str, Any]]] = {s.impl: [] for s in sides}
        for n in range(trials):
            for s in sides:
                try:
                    s.wait_ready(timeout=120.0)
                except LabError as exc:
                    notes.append(f"{label} {s.impl}: did not recover: {exc}")
                    print(f"  {s.impl}: did not recover, series stopped", flush=True)
                    break
                rec = one_trial(s, n)
                rec["quiet"] = quiet
                per_side[s.impl].append(rec)
                if "error" in rec:
                    print(f"  {s.impl} trial {n}: {rec['error']}", flush=True)
            else:
                print(f"  {label}: trial {n + 1}/{trials} done", flush=True)
                continue
            break
        for s in sides:
            s.wait_ready(timeout=120.0)
            analyse(s, per_side[s.impl])
            out += per_side[s.impl]
    return out


KEYS = ("last_rx_to_notification_ms", "t0_to_bfd_down_ms", "t0_to_notification_ms",
        "bfd_down_to_notification_ms", "notification_beyond_detect_ms", "t0_to_gone_ms",
        "notification_to_gone_ms")  # fmt: skip


def summarise(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cells = []
    for t in trials:  # the fault as the DUT saw it: its last BFD packet received
        if t.get("notification_beyond_detect_ms") is not None and t["timers_ms"]:
            t["last_rx_to_notification_ms"] = (
                t["notification_beyond_detect_ms"] + MULT * t["timers_ms"]
            )
    settings = list(dict.fromkeys(t["timers_ms"] for t in trials))
    for ms in settings:
        for impl in ("ours", "frr"):
            ts = [t for t in trials if t["timers_ms"] == ms and t["impl"] == impl]
            if not ts:
                continue
            ok = [t for t in ts if "t0_to_notification_ms" in t or "t0_to_gone_ms" in t]
            cell: dict[str, Any] = {"timers_ms": ms, "impl": impl, "trials": len(ts),
                                    "missed": len(ts) - len(ok),
                                    "codes": sorted({t.get("notification_code", "none seen")
                                                     for t in ok}),
                                    "poll_ms": summary([t["poll_s"] * 1000 for t in ok
                                                        if "poll_s" in t])}  # fmt: skip
            for k in KEYS:
                cell[k] = summary([t[k] for t in ok if k in t])
            cells.append(cell)
    return cells


def report(data: dict[str, Any]) -> str:
    cells = data["summary"]
    lines = [
        f"# Failover benchmark ({data['date']}{', quick' if data['quick'] else ''})",
        "",
        "Router rtr1: gobgpd (BGP) + FRR bfdd (BFD) at one address; the speaker in spk "
        "announces 198.19.0.10/32. At T0 BFD towards spk is dropped (nft input hook in spk). "
        "Times from the capture on rtr1/to-spk; 'gone' = first `gobgp global rib` poll "
        "without the route (midpoint of the call; poll resolution below). "
        "Values in ms, p50 / p99 / max (nearest rank; with < 100 trials p99 = max). "
        "'beyond detect' = NOTIFICATION - (last rtr1 BFD packet + 3T): what the speaker adds "
        "to the ideal detection time, detection slop included (target <= 5 ms at p99).",
        "",
        "| timers | speaker | trials (missed) | T0→BFD Down | T0→NOTIFICATION | "
        "last BFD received→NOTIFICATION | BFD Down→NOTIFICATION | beyond detect | "
        "T0→gone from gobgpd | NOTIFICATION→gone | code |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        timers = f"{c['timers_ms']}/{c['timers_ms']}/3" if c["timers_ms"] else "none, hold 9 s"
        lines.append(
            f"| {timers} | {c['impl']} | {c['trials']} ({c['missed']}) | "
            f"{fmt3(c['t0_to_bfd_down_ms'])} | {fmt3(c['t0_to_notification_ms'])} | "
            f"{fmt3(c.get('last_rx_to_notification_ms'), 2)} | "
            f"{fmt3(c['bfd_down_to_notification_ms'], 2)} | "
            f"{fmt3(c['notification_beyond_detect_ms'], 2)} | {fmt3(c['t0_to_gone_ms'])} | "
            f"{fmt3(c['notification_to_gone_ms'])} | {', '.join(c['codes'])} |"
        )
    if any(c["timers_ms"] is None for c in cells):
        lines += ["", "No-BFD row: the fault drops everything from rtr1 (BGP too), so the "
                  "speaker's hold-timer NOTIFICATION (4/0) stays queued behind TCP "
                  "retransmissions of unacknowledged KEEPALIVEs and never reaches the wire; "
                  "the route leaves gobgpd when gobgpd's own 9 s hold timer expires (it stops "
                  "seeing new KEEPALIVEs). Only T0→gone is meaningful there, and it is what "
                  "users get today without BFD."]  # fmt: skip
    polls = [c["poll_ms"]["p50"] for c in cells if c["poll_ms"]["p50"] is not None]
    if polls:
        lines += ["", f"gobgpd poll resolution (duration of one `gobgp global rib` call, p50): "
                      f"{min(polls):.0f}-{max(polls):.0f} ms."]  # fmt: skip
    lines += ["", "Targets (ours): beyond detect p99 <= 5 ms; T0→NOTIFICATION no slower than "
              "FRR at p50 and p99.", ""]  # fmt: skip
    by = {(c["timers_ms"], c["impl"]): c for c in cells}
    for ms in dict.fromkeys(c["timers_ms"] for c in cells):
        o, f = by.get((ms, "ours")), by.get((ms, "frr"))
        if not o or not f or ms is None:
            continue
        b = o["notification_beyond_detect_ms"]["p99"]
        on, fn = o["t0_to_notification_ms"], f["t0_to_notification_ms"]
        if b is None or on["p50"] is None or fn["p50"] is None:
            continue
        lines.append(
            f"- {ms}/{ms}/3: beyond detect p99 {b:.2f} ms → "
            f"{'met' if b <= 5 else 'MISSED'}; T0→NOTIFICATION p50 {on['p50']:.1f} vs FRR "
            f"{fn['p50']:.1f} ms, p99 {on['p99']:.1f} vs {fn['p99']:.1f} ms → "
            f"{'met' if on['p50'] <= fn['p50'] and on['p99'] <= fn['p99'] else 'MISSED'} "
            "(T0→NOTIFICATION is dominated by where T0 falls in the router's BFD cycle)"
        )
        lo, lf = o["last_rx_to_notification_ms"], f["last_rx_to_notification_ms"]
        if lo["p50"] is not None and lf["p50"] is not None:
            same = lo["p50"] <= lf["p50"] and lo["p99"] <= lf["p99"]
            lines.append(
                f"  - measured from the last BFD packet the speaker received (the fault as "
                f"the speaker sees it, no phase noise): p50 {lo['p50']:.2f} vs FRR "
                f"{lf['p50']:.2f} ms, p99 {lo['p99']:.2f} vs {lf['p99']:.2f} ms → "
                f"{'no slower than FRR' if same else 'SLOWER than FRR'}"
            )
    lines += ["", data.get("plot", "")]
    if data["notes"]:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in data["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="3 trials at 50/50/3, no hold baseline")
    ap.add_argument("--trials", type=int, help="trials per speaker and setting (30; quick 3)")
    ap.add_argument("--timers", help="BFD settings, ms (300,50,10; quick 50)")
    ap.add_argument(
        "--hold-trials", type=int, help="no-BFD hold-9s trials per speaker (3; quick 0)"
    )
    ap.add_argument("--report-from", help="re-summarise a result JSON (no lab run)")
    args = ap.parse_args(argv)
    if args.report_from:
        data = json.loads(Path(args.report_from).read_text())
        for tr in data["trials"]:
            if "gone_wall" in tr:
                tr["t0_to_gone_ms"] = (tr["gone_wall"] - tr["t0_wall"]) * 1000
        data["summary"] = summarise(data["trials"])
        md = report(data)
        print(md)
        src = Path(args.report_from)
        write_results(NAME, data["quick"], data, md, base=src.with_name(src.stem))
        return 0
    trials = args.trials or (3 if args.quick else 30)
    timers = [int(x) for x in (args.timers or ("50" if args.quick else "300,50,10")).split(",")]
    hold_trials = args.hold_trials if args.hold_trials is not None else (0 if args.quick else 3)
    data = new_data(NAME, args.quick, {"trials": trials, "timers": timers,
                                       "hold_trials": hold_trials, "multiplier": MULT})  # fmt: skip
    start = time.monotonic()
    data["trials"] = []
    for ms in timers:
        data["trials"] += series(ms, trials, 90, data["notes"])
    if hold_trials:
        data["trials"] += series(None, hold_trials, 9, data["notes"])
    data["runtime_s"] = time.monotonic() - start
    data["summary"] = summarise(data["trials"])

    curves = {
        f"{c['impl']} {c['timers_ms']} ms": [
            t["notification_beyond_detect_ms"] for t in data["trials"]
            if (t["timers_ms"], t["impl"]) == (c["timers_ms"], c["impl"])
            and "notification_beyond_detect_ms" in t
        ]
        for c in data["summary"] if c["timers_ms"] is not None
    }  # fmt: skip
    data["plot"] = ecdf_plot(NAME, args.quick, "beyond-detect", curves,
                             "NOTIFICATION - (last rtr BFD + 3T), ms")  # fmt: skip
    md = report(data)
    print(md)
    write_results(NAME, args.quick, data, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
