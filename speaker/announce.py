"""What we announce to each peer: a pure function of the configuration and of health.

For each advertisement that selects the peer, and each pool the advertisement
selects, the pool's announced addresses are:

- every address of the pool when the pool has ``announce_all``;
- otherwise the address of each service in the pool that is healthy (in ``healthy``,
  or without a health check), fixed in the config or assigned by
  :mod:`speaker.allocate`.

Each address is announced as the prefix of the advertisement's aggregation length
(``aggregation_length`` for IPv4, ``aggregation_length_v6`` for IPv6) that contains
it.  Prefixes are deduplicated; when two advertisements give the same prefix, their
communities are merged (validation has already rejected conflicting local_pref).
``local_pref`` is only set for iBGP peers (RFC 4271 §5.1.5), as MetalLB does.

No I/O and no clock: the runtime calls :func:`routes_for_peer` again whenever health
or the configuration changes and diffs the result against what it has sent.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterator, Mapping

import attrs

from protocols.bgp import LargeCommunity
from speaker.config.model import Advertisement, Config, IPAddress, IPNetwork, Pool

__all__ = ["RouteAttributes", "Routes", "announced_prefixes", "routes_for_peer"]


@attrs.frozen(kw_only=True)
class RouteAttributes:
    """What the configuration says about one announced prefix.

    The field names match :class:`speaker.bgp.config.RouteAttributes`, which the
    session layer takes (``RouteAttributes(communities=..., large_communities=...,
    local_pref=...)`` converts).
    """

    communities: frozenset[int] = frozenset()
    large_communities: frozenset[LargeCommunity] = frozenset()
    local_pref: int | None = None

    def merge(self, other: RouteAttributes) -> RouteAttributes:
        """Union of communities; the first local_pref that is set."""
        if other == self:
            return self
        return RouteAttributes(
            communities=self.communities | other.communities,
            large_communities=self.large_communities | other.large_communities,
            local_pref=self.local_pref if self.local_pref is not None else other.local_pref,
        )


Routes = dict[IPNetwork, RouteAttributes]


def _attributes(ad: Advertisement, internal: bool) -> RouteAttributes:
    return RouteAttributes(
        communities=frozenset(c.value for c in ad.communities if isinstance(c.value, int)),
        large_communities=frozenset(
            c.value for c in ad.communities if isinstance(c.value, LargeCommunity)
        ),
        local_pref=ad.local_pref if internal else None,
    )


def _prefix(address: IPAddress, length: int) -> IPNetwork:
    return ipaddress.ip_network((address, length), strict=False)


def _all_prefixes(pool: Pool, ad: Advertisement) -> Iterator[IPNetwork]:
    """Every aggregation-length prefix holding an address of ``pool``."""
    for r in pool.addresses:
        length = ad.length_for(r.version)
        bits = 32 if r.version == 4 else 128
        shift = bits - length
        make = ipaddress.IPv4Network if r.version == 4 else ipaddress.IPv6Network
        for block in range(int(r.first) >> shift, (int(r.last) >> shift) + 1):
            yield make((block << shift, length))


def announced_prefixes(
    config: Config,
    pool: Pool,
    ad: Advertisement,
    healthy: Collection[str],
    addresses: Mapping[str, IPAddress],
    *,
    withdrawn: Collection[str] = frozenset(),
) -> Iterator[IPNetwork]:
    """The prefixes ``ad`` announces for ``pool`` (may repeat; callers deduplicate)."""
    if pool.announce_all:
        yield from _all_prefixes(pool, ad)
        return
    for service in config.services_in(pool.name):
        if service.name in withdrawn:
            continue
        if service.health is not None and service.name not in healthy:
            continue
        address = service.address or addresses.get(service.name)
        if address is None or address not in pool:
            continue
        yield _prefix(address, ad.length_for(address.version))


def _sort_key(net: IPNetwork) -> tuple[int, int, int]:
    return (net.version, int(net.network_address), net.prefixlen)


def routes_for_peer(
    config: Config,
    peer_name: str,
    healthy: Collection[str] = frozenset(),
    addresses: Mapping[str, IPAddress] | None = None,
    withdrawn: Collection[str] = frozenset(),
) -> Routes:
    """The routes to announce to peer ``peer_name``, sorted by (family, prefix).

    ``healthy`` holds the names of the services whose health check currently passes
    (services without a check are always announced); ``addresses`` maps the services
    that take their address from a pool to the address :func:`speaker.allocate.allocate`
    gave them.  ``withdrawn`` are services the operator withdrew: never announced,
    whatever their health.  Pass sets for ``healthy`` and ``withdrawn`` when there
    are many.

    Raises:
        KeyError: no peer is named ``peer_name``.
    """
    peer = config.peer(peer_name)
    assigned = addresses or {}
    routes: Routes = {}
    for ad in config.advertisements:
        if not ad.selects_peer(peer.name):
            continue
        attributes = _attributes(ad, peer.internal)
        pools = config.pools if not ad.pools else [config.pool(name) for name in ad.pools]
        for pool in pools:
            for prefix in announced_prefixes(
                config, pool, ad, healthy, assigned, withdrawn=withdrawn
            ):
                known = routes.get(prefix)
                routes[prefix] = attributes if known is None else known.merge(attributes)
    return {prefix: routes[prefix] for prefix in sorted(routes, key=_sort_key)}
