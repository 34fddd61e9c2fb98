"""What a route costs held: the route table and a session's Adj-RIB-Out after the full
dump, keyed by route key (issue 17: an ``ipaddress`` network alone is 436 bytes)."""

from __future__ import annotations

import gc
import tracemalloc

from protocols.bgp import IPV4_UNICAST, IPV6_UNICAST
from speaker.bgp.rib import AdjRibOut
from speaker.config import loads_config
from speaker.plan import RouteFunction
from speaker.slices import run_at_once

CONFIG = """
[speaker]
my_asn = 64513
node_name = "n"
[[peers]]
name = "p"
peer_address = "198.18.1.1"
peer_asn = 64512
[[pools]]
name = "v4"
addresses = ["198.19.0.0/18"]
announce_all = true
[[pools]]
name = "v6"
addresses = ["2001:2:0:ff::/114"]
announce_all = true
[[advertisements]]
name = "all"
"""
ROUTES = 16384 + 16384


def test_a_route_held_by_the_table_and_a_synchronised_session_costs_under_250_bytes() -> None:
    config = loads_config(CONFIG)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        routes = run_at_once(RouteFunction.build(config, {}))
        rib = AdjRibOut(routes.snapshot("p"))
        rib.session_up([IPV4_UNICAST, IPV6_UNICAST])
        sent = 0
        while rib.pending:
            sent += rib.take(256).size
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert sent == len(rib.advertised) == len(rib.desired) == ROUTES
    per_route = held / ROUTES
    # Keys (32 or 44 bytes) in two tables (the desired base and what was sent): about
    # 150 bytes; with an ipaddress network per route it was over 700.
    print(f"{per_route:.0f} bytes a route")
    assert per_route < 250, per_route
