"""BGP announcement throughput: how fast gobgpd (the router, rtr1) holds N routes from
the speaker in spk: ours (``python -m speaker.bgp``) vs FRR bgpd.

    cd /work/main && .venv/bin/python -m bench.bgp_throughput [--quick] [--runs 3]
        [--count 100000] [--family ipv6|ipv4]

Per run and per speaker, a fresh default lab: gobgpd in rtr1 (passive, hold 90) and
the speaker in spk announcing ``--count`` host routes. The clock starts when gobgpd
reports the session Established (polling ``gobgp neighbor``) and stops when
``gobgp global rib summary`` shows all routes (polling every 20 ms), so both speakers
are measured the same way, polling overhead included.

Prefixes come from the benchmarking ranges only: IPv6 /128s from 2001:2:ff::/64
(default, 100k) or IPv4 /32s from 198.19.0.0/16 (at most 65,536).

Why FRR and not a gobgpd speaker: loading 100k routes into gobgpd takes minutes
through ``gobgp global rib add`` (one gRPC call each), gobgpd has no static routes
in its config, and ``gobgp mrt inject`` is broken in 3.10; FRR bgpd loads 100k
``network`` statements in about 2 s (``no bgp network import-check``).

Reports p50 over the runs, the ratio ours/FRR, and the peak RSS (VmHWM) of our
process and of FRR's bgpd. Writes ``bench/results/<date>-bgp-throughput[-quick].{json,md}``
(``--quick``: 10,000 routes, 1 run).
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import statistics
import time
from typing import Any

from bench.common import new_data, quiet_note, write_results
from lab import default_lab, wait_until
from lab.frr import FRR, bgpd_config
from lab.gobgp import GoBGP, neighbor_toml
from lab.netns import Lab
from lab.ours_bgp import OurBgp, vm_hwm_kb

ROUTER_AS, SPEAKER_AS = 64512, 64513
RANGES = {"ipv6": "2001:2:ff::/64", "ipv4": "198.19.0.0/16"}


def prefixes(family: str, count: int) -> list[str]:
    net = ipaddress.ip_network(RANGES[family])
    if count > net.num_addresses:
        raise SystemExit(f"{RANGES[family]} holds fewer than {count} host routes")
    first = int(net.network_address)
    bits = net.max_prefixlen
    make = ipaddress.IPv6Address if family == "ipv6" else ipaddress.IPv4Address
    return [f"{make(first + i)}/{bits}" for i in range(count)]


def addresses(lab: Lab, family: str) -> tuple[str, str]:
    spk, rtr = lab["spk"], lab["rtr1"]
    if family == "ipv6":
        return str(spk.addr6("rtr1")), str(rtr.addr6("spk"))
    return str(spk.addr4("rtr1")), str(rtr.addr4("spk"))


def rib_count(router: GoBGP, family: str) -> int:
    out = router.cli("global", "rib", "summary", "-a", family, check_json=False)
    match = re.search(r"Destination:\s*(\d+)", out)
    return int(match.group(1)) if match else 0


def measure(router: GoBGP, neighbor: str, family: str, count: int) -> float:
    """Seconds from Established (as gobgpd sees it) to gobgpd holding ``count`` routes."""
    wait_until(lambda: router.session_state(neighbor) == "established", timeout=120,
               interval=0.01, what="gobgpd: speaker established")  # fmt: skip
    started = time.monotonic()
    wait_until(lambda: rib_count(router, family) >= count, timeout=600, interval=0.02,
               what=f"gobgpd: {count} routes")  # fmt: skip
    return time.monotonic() - started


def run_ours(family: str, count: int) -> dict[str, Any]:
    with default_lab() as lab:
        s_addr, r_addr = addresses(lab, family)
        router = GoBGP(lab["rtr1"], asn=ROUTER_AS, router_id=str(lab["rtr1"].lo4),
                       neighbors=neighbor_toml(s_addr, SPEAKER_AS)).start()  # fmt: skip
        ours = OurBgp(lab["spk"], peer=r_addr, peer_as=ROUTER_AS, local_as=SPEAKER_AS,
                      router_id=str(lab["spk"].lo4), name="bench",
                      announce_range=f"{RANGES[family]}:{count}").start(timeout=60)  # fmt: skip
        seconds = measure(router, s_addr, family, count)
        stats = ours.stats()
        return {
            "seconds": seconds,
            "peak_rss_kb": ours.peak_rss_kb(),
            "updates_out": stats["updates_out"],
            "state": stats["state"],
        }


def run_frr(family: str, count: int) -> dict[str, Any]:
    with default_lab() as lab:
        s_addr, r_addr = addresses(lab, family)
        spk = lab["spk"]
        router = GoBGP(lab["rtr1"], asn=ROUTER_AS, router_id=str(lab["rtr1"].lo4),
                       neighbors=neighbor_toml(s_addr, SPEAKER_AS)).start()  # fmt: skip
        nets = prefixes(family, count)
        config = bgpd_config(
            SPEAKER_AS,
            str(spk.lo4),
            [f"neighbor {r_addr} remote-as {ROUTER_AS}"],
            networks4=nets if family == "ipv4" else (),
            networks6=nets if family == "ipv6" else (),
        )
        frr = FRR(spk, bfdd=None, bgpd=config).start(timeout=300)
        seconds = measure(router, s_addr, family, count)
        return {"seconds": seconds, "peak_rss_kb": vm_hwm_kb(frr.pid("bgpd"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bgp_throughput", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10,000 routes, 1 run")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--count", type=int)
    parser.add_argument("--family", choices=sorted(RANGES), default="ipv6")
    args = parser.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 3)
    args.count = args.count or (10_000 if args.quick else 100_000)
    data = new_data("bgp-throughput", args.quick, dict(vars(args)))
    data["quiet"] = quiet_note()
    results: dict[str, list[dict[str, Any]]] = {"ours": [], "frr": []}
    for run in range(args.runs):
        for name, fn in (("ours", run_ours), ("frr", run_frr)):
            result = fn(args.family, args.count)
            results[name].append(result)
            print(f"run {run + 1} {name}: {result['seconds']:.2f} s, "
                  f"peak RSS {result['peak_rss_kb'] / 1024:.1f} MiB", flush=True)  # fmt: skip

    def p50(name: str, key: str) -> float:
        return float(statistics.median(r[key] for r in results[name]))

    ours_s, frr_s = p50("ours", "seconds"), p50("frr", "seconds")
    lines = [
        f"# BGP announcement throughput ({data['date']}{', quick' if args.quick else ''})",
        "",
        f"gobgpd 3.10 (rtr1) receiving {args.count:,} {args.family} host "
        f"routes, p50 of {args.runs} runs",
        "",
        "| speaker in spk | Established -> all routes (s) | routes/s | peak RSS (MiB) |",
        "|---|---:|---:|---:|",
        f"| ours (speaker.bgp) | {ours_s:.2f} | {args.count / ours_s:,.0f} "
        f"| {p50('ours', 'peak_rss_kb') / 1024:.1f} |",
        f"| FRR 8.4 bgpd | {frr_s:.2f} | {args.count / frr_s:,.0f} "
        f"| {p50('frr', 'peak_rss_kb') / 1024:.1f} |",
        "",
        f"ratio ours / FRR (time): {ours_s / frr_s:.2f}",
    ]
    lines += [
        "",
        "Not yet compared here (issue, benchmark 3): gobgpd, BIRD and ExaBGP as the speaker, "
        "and 1M routes; anchor M3 has their figures at 10k/100k IPv4 on this machine type.",
    ]
    text = "\n".join(lines)
    print("\n" + text)
    data["results"] = results
    write_results("bgp-throughput", args.quick, data, text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
