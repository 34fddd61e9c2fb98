"""BGP announcement throughput: how fast gobgpd (the router, rtr1) holds N routes from
the speaker in spk: ours (``python -m speaker.bgp``) vs FRR bgpd, BIRD 2, gobgpd and
ExaBGP 5 as the speaker (issue, benchmark 3).

    cd /work/main && .venv/bin/python -m bench.bgp_throughput [--quick]
        [--speakers ours,frr,bird,gobgpd,exabgp] [--counts 10000,100000,1000000]
        [--runs 3] [--runs-1m 1] [--family ipv6|ipv4] [--limit 1800]
        [--exabgp-limit 600] [--exabgp-max-count 100000]

Per count, per run and per speaker (alternating: ours, frr, bird, gobgpd, exabgp, then
the next run), a fresh default lab: gobgpd in rtr1 (passive, hold 90) receives; the
speaker in spk announces ``count`` host routes over eBGP (AS 64513 to 64512).

The clock, the same for every speaker, is kept on the receiver's side by a thread
started before the speaker: it starts when gobgpd logs "Peer Up" for the speaker (the
FSM reaching Established as gobgpd sees it; its log file is tailed every 2 ms, so the
speaker's own start-up, e.g. FRR reading 1M ``network`` lines, is never on the clock)
and stops when ``gobgp global rib summary`` shows all routes (polled every 20 ms:
polling overhead included, for everyone alike). Also recorded: the time to 99 % of the
routes, the longest pause in the RIB's growth, the UPDATEs gobgpd received, session
flaps, and the speaker's peak RSS (VmHWM of its process when the routes are all in).

How each speaker holds its routes before the session comes up:

* ours: ``--announce-range 2001:2:0:ff::/64:N`` (the routes are generated in-process);
* FRR 8.4 bgpd: N ``network`` statements (``no bgp network import-check``); RSS of bgpd;
* BIRD 2: ``protocol static`` with N ``route P blackhole;`` in the family's channel and
  ``protocol bgp`` exporting all of it (``start delay time 1``);
* gobgpd ("A", in spk): it has no static routes and cannot be loaded fast by its CLI
  (one gRPC call per ``gobgp global rib add``; ``gobgp mrt inject`` is broken in 3.10),
  so a loader feeds it over iBGP first: our speaker in rtr2 (AS 64513, the same AS, so
  the AS_PATH gobgpd in rtr1 sees is ``64513`` as from every other speaker) announces
  the N routes to A over the spk-rtr2 link. A's neighbor towards rtr1 is configured
  ``admin-down``; once A's RIB holds all N, ``gobgp neighbor <rtr1> enable`` lets A
  connect, and A advertises its RIB (iBGP-learned routes go to an eBGP peer with
  next-hop self). Measured from there exactly like the others; the loader session stays
  up and idle. Peak RSS is A's (it holds the routes in its Adj-RIB-In and Loc-RIB, as
  any gobgpd that learned them would). A's first connection after ``enable`` comes some
  8-9 s later here (gobgpd's connect loop; off the clock, it only lengthens the run);
* ExaBGP 5 (``exabgp server``, from the virtualenv; see lab/exabgp.py): N
  ``route P next-hop self;`` lines in the neighbor's ``static`` section. ExaBGP is run
  up to ``--exabgp-max-count`` routes (100k: 1M is skipped with the reason in the
  report) and each run is cut at ``--exabgp-limit`` seconds after Established, recorded
  as a timeout with the count reached by then. Every other speaker is cut at ``--limit``.

A speaker whose daemon is missing (bird, exabgp, FRR) is skipped with the reason
printed and written in the report; a run that fails is recorded as failed.

Prefixes come from the benchmarking ranges only: IPv6 /128s from 2001:2:0:ff::/64
(default) or IPv4 /32s from 198.19.0.0/16 (at most 65,536).

Report: a table per count (p50 over the runs: Established -> all routes, time to 99 %,
routes/s, peak RSS, time and RSS ratios to ours) and the issue's targets stated as
met or missed: 100k routes from us no slower than from a gobgpd speaker and at least
10x faster than from ExaBGP; 1M routes with our peak RSS under 400 MB (10^6 bytes).
Writes ``bench/results/<date>-bgp-throughput[-quick].{json,md}`` (``--quick``: 10,000
routes, 1 run, every speaker).
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import re
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from bench.common import new_data, quiet_note, write_results
from lab import LabError, default_lab, wait_until
from lab.bird import Bird, bgp_protocol, static_protocol
from lab.exabgp import ExaBGP, exabgp_path, neighbor_block
from lab.frr import FRR, bgpd_config
from lab.gobgp import GoBGP, neighbor_toml
from lab.netns import Lab
from lab.ours_bgp import OurBgp, vm_hwm_kb
from lab.proc import Process
from lab.requirements import missing

ROUTER_AS, SPEAKER_AS = 64512, 64513
RANGES = {"ipv6": "2001:2:0:ff::/64", "ipv4": "198.19.0.0/16"}
SPEAKERS = ("ours", "frr", "bird", "gobgpd", "exabgp")
FULL_COUNTS = (10_000, 100_000, 1_000_000)
POLL_S = 0.02  # RIB polling interval
MB = 1_000_000
BIRD_STALL = (
    " Seen while developing this benchmark: BIRD sends all but a last batch of routes (a "
    "multiple of 256) at once and that batch about 3 s later, in most runs but not all; "
    "a birdc command during the run ends the wait at once, which fits BIRD 2.0's main "
    "loop sleeping in poll() for up to 3 s with a transmit event pending. It is BIRD's "
    "own behaviour and stays on the clock; the 99 % column shows where its bulk ends."
)


# ---- lab plumbing -----------------------------------------------------------------------


def prefixes(family: str, count: int) -> list[str]:
    net = ipaddress.ip_network(RANGES[family])
    if count > net.num_addresses:
        raise SystemExit(f"{RANGES[family]} holds fewer than {count} host routes")
    first = int(net.network_address)
    bits = net.max_prefixlen
    make = ipaddress.IPv6Address if family == "ipv6" else ipaddress.IPv4Address
    return [f"{make(first + i)}/{bits}" for i in range(count)]


def addresses(lab: Lab, family: str, a: str = "spk", b: str = "rtr1") -> tuple[str, str]:
    """Addresses of ``a`` and ``b`` on their link."""
    ha, hb = lab[a], lab[b]
    if family == "ipv6":
        return str(ha.addr6(b)), str(hb.addr6(a))
    return str(ha.addr4(b)), str(hb.addr4(a))


def rib_count(router: GoBGP, family: str) -> int:
    out = router.cli("global", "rib", "summary", "-a", family, check_json=False)
    match = re.search(r"Destination:\s*(\d+)", out)
    return int(match.group(1)) if match else 0


def setup_timeout(count: int) -> float:
    """Bound on a speaker's own start (config parse, loading): generous, scaled."""
    return 60.0 + count / 1000


class Clock(threading.Thread):
    """The receiver's clock: waits for gobgpd's "Peer Up" log line for ``neighbor``
    (tailing its log file), then polls its RIB until ``count`` routes or ``limit``
    seconds. Started before the speaker, so the speaker's start-up is never on it."""

    def __init__(
        self, router: GoBGP, neighbor: str, *, family: str, count: int, limit: float, wait: float
    ) -> None:
        super().__init__(daemon=True)
        assert router.proc is not None
        self.router, self.family, self.count, self.limit, self.wait = (
            router, family, count, limit, wait
        )  # fmt: skip
        self.log_path: Path = router.proc.log_path
        self.offset = self.log_path.stat().st_size
        self.peer_up = re.compile(r'msg="Peer Up" Key="?' + re.escape(neighbor) + r'"?[\s]')
        self.cancel = threading.Event()
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._measure()
        except BaseException as exc:  # handed to the main thread
            self.error = exc

    def _wait_established(self) -> float:
        deadline = time.monotonic() + self.wait
        with self.log_path.open("rb") as log:
            log.seek(self.offset)
            text = ""
            while True:
                chunk = log.read()
                if chunk:
                    text += chunk.decode(errors="replace")
                    if self.peer_up.search(text):
                        return time.monotonic()
                    text = text[-500:]
                if self.cancel.is_set():
                    raise LabError("clock cancelled before Established")
                if time.monotonic() > deadline:
                    raise LabError(f"gobgpd: speaker not Established within {self.wait:.0f} s")
                time.sleep(0.002)

    def _measure(self) -> dict[str, Any]:
        established = self._wait_established()
        to_99: float | None = None
        need_99 = math.ceil(0.99 * self.count)
        # Longest time the RIB did not grow once routes were arriving (a speaker pausing).
        last, last_change, stall = 0, 0.0, 0.0
        while True:
            try:
                reached = rib_count(self.router, self.family)
            except LabError:  # the CLI timed out: gobgpd busy taking a big table in
                reached = last
            elapsed = time.monotonic() - established
            if reached != last:
                if last:
                    stall = max(stall, elapsed - last_change)
                last, last_change = reached, elapsed
            if to_99 is None and reached >= need_99:
                to_99 = elapsed
            common = {"to_99pct_s": to_99, "reached": reached, "max_stall_s": stall}
            if reached >= self.count:
                return {"seconds": elapsed, "timed_out": False, **common}
            if elapsed >= self.limit or self.cancel.is_set():
                return {"seconds": None, "timed_out": True, "limit_s": self.limit, **common}
            time.sleep(POLL_S)


@attrs.frozen
class Started:
    """A speaker that is up: its process (whose VmHWM is its peak RSS), extra figures."""

    proc: Process
    extra: Callable[[], dict[str, Any]] = dict


# ---- the speakers ------------------------------------------------------------------------
# Each starts its speaker in ``lab`` towards gobgpd in rtr1 (r_addr), announcing ``count``
# routes from s_addr, and returns once it is up (the clock runs on its own).


def start_ours(lab: Lab, family: str, count: int, s_addr: str, r_addr: str) -> Started:
    ours = OurBgp(lab["spk"], peer=r_addr, peer_as=ROUTER_AS, local_as=SPEAKER_AS,
                  router_id=str(lab["spk"].lo4), name="bench",
                  announce_range=f"{RANGES[family]}:{count}").start(timeout=60)  # fmt: skip

    def extra() -> dict[str, Any]:
        stats = ours.stats()
        return {"updates_out": stats["updates_out"], "state": stats["state"]}

    assert ours.proc is not None
    return Started(ours.proc, extra)


def start_frr(lab: Lab, family: str, count: int, s_addr: str, r_addr: str) -> Started:
    spk = lab["spk"]
    nets = prefixes(family, count)
    config = bgpd_config(
        SPEAKER_AS,
        str(spk.lo4),
        [f"neighbor {r_addr} remote-as {ROUTER_AS}"],
        networks4=nets if family == "ipv4" else (),
        networks6=nets if family == "ipv6" else (),
    )
    frr = FRR(spk, bfdd=None, bgpd=config).start(timeout=setup_timeout(count))
    return Started(frr.procs["bgpd"])


def start_bird(lab: Lab, family: str, count: int, s_addr: str, r_addr: str) -> Started:
    spk = lab["spk"]
    config = static_protocol(
        prefixes(family, count), family=family, name="bench_static"
    ) + bgp_protocol(
        local=s_addr, local_as=SPEAKER_AS, neighbor=r_addr, peer_as=ROUTER_AS,
        family=family, name="bench_bgp",
    )  # fmt: skip
    bird = Bird(spk, router_id=str(spk.lo4), config=config).start(timeout=setup_timeout(count))
    assert bird.proc is not None
    return Started(bird.proc)


def start_gobgpd(lab: Lab, family: str, count: int, s_addr: str, r_addr: str) -> Started:
    """gobgpd A in spk, loaded over iBGP by our speaker in rtr2, then enabled to rtr1."""
    spk, loader_host = lab["spk"], lab["rtr2"]
    a_addr, l_addr = addresses(lab, family, "spk", "rtr2")
    to_router = neighbor_toml(r_addr, ROUTER_AS, passive=False, local_address=s_addr)
    # Configured but administratively down until A holds every route.
    to_router = to_router.replace(
        f"    peer-as = {ROUTER_AS}\n", f"    peer-as = {ROUTER_AS}\n    admin-down = true\n"
    )
    assert "admin-down = true" in to_router
    a = GoBGP(spk, asn=SPEAKER_AS, router_id=str(spk.lo4),
              neighbors=neighbor_toml(l_addr, SPEAKER_AS) + to_router).start()  # fmt: skip
    loading = time.monotonic()
    OurBgp(loader_host, peer=a_addr, peer_as=SPEAKER_AS, local_as=SPEAKER_AS,
           router_id=str(loader_host.lo4), name="loader",
           announce_range=f"{RANGES[family]}:{count}").start(timeout=60)  # fmt: skip
    wait_until(lambda: rib_count(a, family) >= count, timeout=setup_timeout(count),
               interval=0.1, what=f"gobgpd A in spk: {count} routes from the loader")  # fmt: skip
    load_s = time.monotonic() - loading
    if a.session_state(r_addr) not in ("idle", "unknown"):
        raise LabError(f"gobgpd A: neighbor {r_addr} not admin-down before enable")
    a.cli("neighbor", r_addr, "enable", check_json=False)
    assert a.proc is not None
    return Started(a.proc, lambda: {"load_s": load_s})


def start_exabgp(lab: Lab, family: str, count: int, s_addr: str, r_addr: str) -> Started:
    spk = lab["spk"]
    config = neighbor_block(
        r_addr, local_address=s_addr, local_as=SPEAKER_AS, peer_as=ROUTER_AS,
        router_id=str(spk.lo4), routes=prefixes(family, count), family=family,
    )  # fmt: skip
    exa = ExaBGP(spk, config=config).start(timeout=setup_timeout(count))
    assert exa.proc is not None
    return Started(exa.proc)


STARTERS: dict[str, Callable[[Lab, str, int, str, str], Started]] = {
    "ours": start_ours,
    "frr": start_frr,
    "bird": start_bird,
    "gobgpd": start_gobgpd,
    "exabgp": start_exabgp,
}


def run_speaker(name: str, family: str, count: int, limit: float) -> dict[str, Any]:
    """One measurement in a fresh default lab."""
    quiet, wall = quiet_note(), time.monotonic()
    with default_lab() as lab:
        s_addr, r_addr = addresses(lab, family)
        router = GoBGP(lab["rtr1"], asn=ROUTER_AS, router_id=str(lab["rtr1"].lo4),
                       neighbors=neighbor_toml(s_addr, SPEAKER_AS)).start()  # fmt: skip
        clock = Clock(
            router, s_addr, family=family, count=count, limit=limit, wait=setup_timeout(count) + 120
        )
        clock.start()
        try:
            started = STARTERS[name](lab, family, count, s_addr, r_addr)
            deadline = time.monotonic() + setup_timeout(count) + 120 + limit + 60
            while clock.is_alive() and time.monotonic() < deadline:
                started.proc.check_alive(f"{name} in spk")  # a dead speaker ends the run
                clock.join(0.5)
        finally:
            clock.cancel.set()
            clock.join(30)
        if clock.error is not None:
            raise clock.error
        if clock.result is None:
            raise LabError("the receiver's clock did not finish")
        result = dict(clock.result)
        try:
            result["peak_rss_kb"] = vm_hwm_kb(started.proc.pid)
        except (OSError, LookupError):
            result["peak_rss_kb"] = None  # the speaker exited after the last route
        state = router.neighbor(s_addr)["state"]
        result["updates_received"] = state.get("messages", {}).get("received", {}).get("update")
        result["flops"] = state.get("flops", 0)
        result["session"] = router.session_state(s_addr)
        result.update(started.extra())
        result["quiet"] = quiet
    result["wall_s"] = time.monotonic() - wall  # the whole run: lab, daemons, teardown
    return result


# ---- availability -------------------------------------------------------------------------


def exabgp_version() -> str:
    exe = exabgp_path()
    if exe is None:
        return "not installed"
    try:
        out = subprocess.run(
            [exe, "version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    match = re.search(r"ExaBGP\s*:\s*(\S+)", out.stdout)
    return match.group(1) if match else "?"


def unavailable(name: str) -> str | None:
    """Why a speaker cannot run here (None: it can)."""
    if name == "frr":
        return missing("frr")
    if name == "bird":
        return missing("bird")
    if name == "exabgp" and exabgp_path() is None:
        return "exabgp not installed (pip install 'exabgp>=5' into the virtualenv: .[bench])"
    return None


def labels(env: dict[str, Any], exa: str) -> dict[str, str]:
    def version(key: str) -> str:
        match = re.search(r"version\s+(\S+)", str(env.get(key, "")))
        return match.group(1) if match else "?"

    return {
        "ours": "ours (speaker.bgp)",
        "frr": f"FRR {version('frr')} bgpd",
        "bird": f"BIRD {version('bird')}",
        "gobgpd": f"gobgpd {version('gobgpd')} (loaded over iBGP)",
        "exabgp": "ExaBGP" if exa in ("not installed", "?") else f"ExaBGP {exa}",
    }


# ---- report ---------------------------------------------------------------------------------


def p50(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def summarise(samples: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [s for s in samples if not s.get("error") and not s.get("timed_out")]
    timeouts = [s for s in samples if s.get("timed_out")]
    errors = [s for s in samples if s.get("error")]
    rss = [s["peak_rss_kb"] for s in samples if s.get("peak_rss_kb")]
    out: dict[str, Any] = {
        "runs": len(samples), "ok": len(ok), "timeouts": len(timeouts), "errors": len(errors),
        "seconds": p50([s["seconds"] for s in ok]) if not timeouts else None,
        "to_99": p50([s["to_99pct_s"] for s in ok if s.get("to_99pct_s") is not None]),
        "rss_kb": p50(rss),
        "updates": p50([s["updates_received"] for s in ok if s.get("updates_received")]),
    }  # fmt: skip
    if timeouts:
        out["reached"] = max(s["reached"] for s in timeouts)
        out["limit"] = max(s["limit_s"] for s in timeouts)
    return out


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "n/a" if value is None else format(value, spec)


def count_table(
    count: int,
    sums: dict[str, dict[str, Any]],
    skipped: dict[str, str],
    names: dict[str, str],
    order: list[str],
) -> list[str]:
    ours = sums.get("ours", {})
    lines = [
        "| speaker in spk | runs | Established -> all routes (s) | 99 % of routes (s) "
        "| routes/s | UPDATEs | peak RSS (MiB) | time / ours | RSS / ours |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in order:
        if name in skipped:
            lines.append(f"| {names[name]} | 0 | skipped | | | | | | |")
            continue
        s = sums.get(name)
        if s is None:
            continue
        rss = s["rss_kb"]
        rss_cell = fmt(rss / 1024 if rss else None, ".1f")
        rss_ratio = fmt(rss / ours["rss_kb"] if rss and ours.get("rss_kb") else None)
        runs = str(s["runs"])
        if s["timeouts"]:
            limit, reached = s["limit"], s["reached"]
            ratio = f"> {limit / ours['seconds']:.1f}" if ours.get("seconds") else "n/a"
            lines.append(
                f"| {names[name]} | {runs} | > {limit:g} (timeout: {s['timeouts']} run(s); "
                f"{reached:,} of {count:,} routes by then) | {fmt(s['to_99'])} "
                f"| {reached / limit:,.0f} (partial) | | {rss_cell} | {ratio} | {rss_ratio} |"
            )
            continue
        if s["seconds"] is None:
            lines.append(f"| {names[name]} | {runs} | failed ({s['errors']} of {s['runs']}) "
                         f"| | | | {rss_cell} | | |")  # fmt: skip
            continue
        failed = f" ({s['errors']} failed)" if s["errors"] else ""
        ratio = fmt(s["seconds"] / ours["seconds"] if ours.get("seconds") else None)
        lines.append(
            f"| {names[name]} | {runs}{failed} | {s['seconds']:.2f} | {fmt(s['to_99'])} "
            f"| {count / s['seconds']:,.0f} | {fmt(s['updates'], ',.0f')} | {rss_cell} "
            f"| {ratio} | {rss_ratio} |"
        )
    return lines


def targets(all_sums: dict[int, dict[str, dict[str, Any]]], names: dict[str, str]) -> list[str]:
    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**MISSED**"

    lines = ["Targets (issue, benchmark 3):", ""]
    at100 = all_sums.get(100_000)
    ours100 = (at100 or {}).get("ours", {}).get("seconds")
    # 1. 100k from us no slower than from a gobgpd speaker.
    what = "100k routes from us no slower than from a gobgpd speaker"
    g = (at100 or {}).get("gobgpd", {})
    if at100 is None:
        lines.append(f"- {what}: not measured (100,000 not in --counts)")
    elif ours100 is None or (g.get("seconds") is None and not g.get("timeouts")):
        lines.append(f"- {what}: not measured (ours or gobgpd has no result at 100k)")
    elif g.get("timeouts"):
        lines.append(f"- {what}: {verdict(True)} (ours {ours100:.2f} s; gobgpd timed out "
                     f"after {g['limit']:.0f} s)")  # fmt: skip
    else:
        lines.append(
            f"- {what}: {verdict(ours100 <= g['seconds'])} (ours {ours100:.2f} s, "
            f"{names['gobgpd']} {g['seconds']:.2f} s: ours/gobgpd {ours100 / g['seconds']:.2f})"
        )
    # 2. At least 10x faster than from ExaBGP.
    what = "100k routes at least 10x faster from us than from ExaBGP"
    e = (at100 or {}).get("exabgp", {})
    if at100 is None:
        lines.append(f"- {what}: not measured (100,000 not in --counts)")
    elif ours100 is None or (e.get("seconds") is None and not e.get("timeouts")):
        lines.append(f"- {what}: not measured (ours or ExaBGP has no result at 100k)")
    elif e.get("timeouts"):
        bound = e["limit"] / ours100
        lines.append(
            f"- {what}: {verdict(True) if bound >= 10 else 'undecided'} (ExaBGP timed out "
            f"after {e['limit']:.0f} s with {e['reached']:,} routes: ratio > {bound:.1f})"
        )
    else:
        r = e["seconds"] / ours100
        lines.append(f"- {what}: {verdict(r >= 10)} (ExaBGP {e['seconds']:.2f} s / ours "
                     f"{ours100:.2f} s = {r:.1f}x)")  # fmt: skip
    # 3. 1M with our peak RSS under 400 MB.
    what = "1M routes with our peak RSS under 400 MB"
    o = (all_sums.get(1_000_000) or {}).get("ours", {})
    if 1_000_000 not in all_sums:
        lines.append(f"- {what}: not measured (1,000,000 not in --counts)")
    elif not o.get("rss_kb") or o.get("seconds") is None:
        lines.append(f"- {what}: not measured (no complete 1M run of ours)")
    else:
        mb = o["rss_kb"] * 1024 / MB
        lines.append(f"- {what}: {verdict(mb < 400)} (peak RSS {o['rss_kb'] / 1024:.1f} MiB "
                     f"= {mb:.0f} MB; all routes in {o['seconds']:.2f} s)")  # fmt: skip
    return lines


def runs_at(args: argparse.Namespace, count: int) -> int:
    return int(args.runs_1m if count >= 1_000_000 else args.runs)


def render(
    data: dict[str, Any],
    args: argparse.Namespace,
    *,
    counts: list[int],
    speakers: list[str],
    results: dict[int, dict[str, list[dict[str, Any]]]],
    skipped: dict[int, dict[str, str]],
    unavailable: dict[str, str],
    names: dict[str, str],
) -> str:
    """The Markdown report."""
    lines = [
        f"# BGP announcement throughput ({data['date']}{', quick' if args.quick else ''})",
        "",
        f"gobgpd (rtr1) receiving {args.family} host routes from the speaker in spk; "
        "seconds from Established (gobgpd's \"Peer Up\") to gobgpd's RIB holding all "
        f"routes (polled every {POLL_S * 1000:.0f} ms), p50 over the runs; peak RSS is "
        "the speaker's VmHWM. gobgpd as the speaker is first loaded over iBGP by our "
        "speaker, then enabled towards rtr1 (see the module docstring).",
    ]
    all_sums = {c: {n: summarise(v) for n, v in results[c].items() if v} for c in counts}
    notes: list[str] = []
    for count in counts:
        order = [s for s in speakers if s in results[count] or s in skipped[count]]
        lines += ["", f"## {count:,} routes ({runs_at(args, count)} run(s))", ""]
        lines += count_table(count, all_sums[count], skipped[count], names, order)
        for name, why in skipped[count].items():
            seen = [(c, all_sums[c][name]["rss_kb"]) for c in all_sums
                    if all_sums[c].get(name, {}).get("rss_kb")]  # fmt: skip
            measured = ""
            if seen and name not in unavailable:
                c, rss = max(seen)
                measured = f"; measured here: peak RSS {rss / 1024:,.0f} MiB at {c:,} routes"
            lines.append(f"\n{names[name]} skipped: {why}{measured}.")
        for name, samples in results[count].items():
            for sample in samples:
                if sample.get("error"):
                    first = sample["error"].splitlines()[0]
                    notes.append(f"{count:,} {names[name]}: a run failed: {first}")
                elif sample.get("flops"):
                    notes.append(f"{count:,} {names[name]}: the session flapped during a run")
        loads = [s["load_s"] for s in results[count].get("gobgpd", []) if "load_s" in s]
        if loads:
            lines.append(f"\ngobgpd A took {p50(loads):.1f} s (p50) to be loaded by our speaker "
                         "before its session to rtr1 was enabled (not on the clock).")  # fmt: skip
    for name in speakers:
        samples = [s for c in counts for s in results[c].get(name, []) if "max_stall_s" in s]
        stalled = [s["max_stall_s"] for s in samples if s["max_stall_s"] >= 1.0]
        if stalled:
            notes.append(
                f"{names[name]}: in {len(stalled)} of {len(samples)} runs gobgpd's RIB stopped "
                f"growing for {min(stalled):.1f}-{max(stalled):.1f} s at a stretch."
                + (BIRD_STALL if name == "bird" else "")
            )
    lines += ["", *targets(all_sums, names)]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines)


# ---- main -----------------------------------------------------------------------------------


def parse_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bgp_throughput",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="10,000 routes, 1 run")
    parser.add_argument("--speakers", help=f"comma list (default all: {','.join(SPEAKERS)})")
    parser.add_argument("--counts", help="comma list (default 10000,100000,1000000)")
    parser.add_argument("--runs", type=int, help="runs per count (default 3; quick 1)")
    parser.add_argument("--runs-1m", type=int, default=1, help="runs at 1,000,000 (default 1)")
    parser.add_argument("--family", choices=sorted(RANGES), default="ipv6")
    parser.add_argument(
        "--limit", type=float, default=1800.0, help="seconds from Established before a run is cut"
    )
    parser.add_argument("--exabgp-limit", type=float, default=600.0, help="the same for ExaBGP")
    parser.add_argument(
        "--exabgp-max-count", type=int, default=100_000, help="larger counts skip ExaBGP"
    )
    args = parser.parse_args(argv)
    speakers = parse_list(args.speakers) if args.speakers else list(SPEAKERS)
    bad = [s for s in speakers if s not in SPEAKERS]
    if bad:
        parser.error(f"unknown speaker(s) {bad}; choose from {','.join(SPEAKERS)}")
    if args.counts:
        counts = [int(c.replace("_", "")) for c in parse_list(args.counts)]
    else:
        counts = [10_000] if args.quick else list(FULL_COUNTS)
    args.runs = args.runs or (1 if args.quick else 3)
    capacity = ipaddress.ip_network(RANGES[args.family]).num_addresses
    if max(counts) > capacity:
        parser.error(f"--family {args.family} allows at most {capacity:,} routes "
                     f"({RANGES[args.family]})")  # fmt: skip
    reason = missing("gobgp")
    if reason is not None:
        raise SystemExit(f"the receiver needs gobgpd: {reason}")

    params = dict(vars(args), speakers=speakers, counts=counts)
    data = new_data("bgp-throughput", args.quick, params)
    data["quiet"] = quiet_note()
    exa = exabgp_version()
    data["versions"] = {"exabgp": exa}
    names = labels(data["environment"], exa)

    unavailable_now = {s: r for s in speakers if (r := unavailable(s)) is not None}
    for name, why in unavailable_now.items():
        print(f"skipping {name}: {why}", flush=True)
    skipped: dict[int, dict[str, str]] = {}
    for count in counts:
        skipped[count] = dict(unavailable_now)
        if (
            "exabgp" in speakers
            and "exabgp" not in skipped[count]
            and count > args.exabgp_max_count
        ):
            skipped[count]["exabgp"] = (
                f"not run above --exabgp-max-count={args.exabgp_max_count:,} routes "
                "(ExaBGP builds a Python object per configured route and sends one UPDATE "
                "per route; see its RSS at the smaller counts)"
            )
            print(f"skipping exabgp at {count:,}: {skipped[count]['exabgp']}", flush=True)

    results: dict[int, dict[str, list[dict[str, Any]]]] = {}
    for count in counts:
        runs = runs_at(args, count)
        active = [s for s in speakers if s not in skipped[count]]
        results[count] = {s: [] for s in active}
        for run in range(runs):
            for name in active:
                limit = args.exabgp_limit if name == "exabgp" else args.limit
                try:
                    result = run_speaker(name, args.family, count, limit)
                except LabError as exc:
                    result = {"error": str(exc), "quiet": quiet_note()}
                    print(f"run {run + 1}/{runs} {count:,} {name}: FAILED: {exc}", flush=True)
                    results[count][name].append(result)
                    continue
                results[count][name].append(result)
                rss = result["peak_rss_kb"]
                rss_s = f"{rss / 1024:.1f} MiB" if rss else "n/a"
                if result["timed_out"]:
                    took = f"TIMEOUT after {limit:g} s with {result['reached']:,} routes"
                else:
                    took = f"{result['seconds']:.2f} s (99 %: {fmt(result['to_99pct_s'])} s)"
                print(f"run {run + 1}/{runs} {count:,} {name}: {took}, peak RSS {rss_s}, "
                      f"{result['updates_received']} UPDATEs; run took {result['wall_s']:.1f} s",
                      flush=True)  # fmt: skip

    text = render(
        data, args, counts=counts, speakers=speakers, results=results, skipped=skipped,
        unavailable=unavailable_now, names=names,
    )  # fmt: skip
    print("\n" + text)
    data["skipped"] = {str(c): v for c, v in skipped.items()}
    data["results"] = {str(c): v for c, v in results.items()}
    data["labels"] = names
    write_results("bgp-throughput", args.quick, data, text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
