"""bench.routes_product's configuration: host routes as announce_all pools within the
per-pool cap and the benchmarking ranges, accepted by the speaker's own validation."""

from __future__ import annotations

import ipaddress

import pytest

from bench.routes_product import POOL_CAP, pools
from speaker.config import loads_config
from speaker.config.validate import ANNOUNCE_ALL_LIMIT


def sizes(ranges: list[str]) -> list[int]:
    out = []
    for text in ranges:
        first, last = (ipaddress.ip_address(a) for a in text.strip('[]"').split("-"))
        out.append(int(last) - int(first) + 1)
    return out


@pytest.mark.parametrize(("family", "count", "n"), [("ipv4", 100000, 3), ("ipv6", 1000000, 16),
                                                     ("ipv4", 10000, 1)])  # fmt: skip
def test_pools_hold_exactly_the_routes_within_the_cap(family: str, count: int, n: int) -> None:
    got = pools(family, count)
    assert len(got) == n and sum(sizes(got)) == count
    assert max(sizes(got)) <= POOL_CAP == ANNOUNCE_ALL_LIMIT
    bench = ipaddress.ip_network("198.18.0.0/15" if family == "ipv4" else "2001:2::/48")
    for text in got:
        for a in text.strip('[]"').split("-"):
            assert ipaddress.ip_address(a) in bench


def test_the_speaker_accepts_the_pools() -> None:
    body = "".join(
        f'[[pools]]\nname = "p{i}"\naddresses = {a}\nannounce_all = true\n'
        for i, a in enumerate(pools("ipv4", 100000))
    )
    config = loads_config(
        '[speaker]\nmy_asn = 64513\nnode_name = "n"\n[[peers]]\nname = "r"\n'
        'peer_address = "198.18.1.1"\npeer_asn = 64512\n'
        + body
        + '[[advertisements]]\nname = "all"\n'
    )
    assert sum(p.size for p in config.pools) == 100000
