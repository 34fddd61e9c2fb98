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

A drained service (RFC 8326, ``speaker drain SERVICE``: :mod:`speaker.drain`) gives
its prefixes with ``graceful_shutdown`` set; a prefix that several announced services
give is drained when any of them is (the operator asked for that service's traffic to
move). A drain of a whole peer or node is not the table's: each BGP session applies
it to every route it sends (:meth:`speaker.bgp.rib.AdjRibOut.set_drained`).

No I/O and no clock. :func:`routes_for_peer` computes the routes of one peer from
scratch (the reference); :class:`RouteTable` holds them for every peer and keeps
them up to date by difference, so a health change costs the routes of that service
and not the table (docs/architecture.md, Latency budget).
"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
from collections.abc import Collection, Iterator, Mapping
from collections.abc import Set as AbstractSet

from protocols.bgp import LargeCommunity, RouteKey, key_is_v6, key_of, key_prefix
from protocols.bgp.nlri import KEY_V6_BIT
from speaker.addresses import address_key, network_key
from speaker.bgp.config import RouteAttributes
from speaker.config.model import Advertisement, Config, IPAddress, IPNetwork, Peer, Pool
from speaker.slices import Steps

__all__ = ["RouteTable", "Routes", "announced_prefixes", "routes_for_peer"]

#: Each prefix with the attributes the BGP sessions send it with.
Routes = dict[IPNetwork, RouteAttributes]


def _attributes(ad: Advertisement, internal: bool) -> RouteAttributes:
    return RouteAttributes(
        communities=[c.value for c in ad.communities if isinstance(c.value, int)],
        large_communities=[c.value for c in ad.communities if isinstance(c.value, LargeCommunity)],
        local_pref=ad.local_pref if internal else None,
    )


def _prefix(address: IPAddress, length: int) -> IPNetwork:
    # From the integer: ip_network((address, length), strict=False) goes through text.
    if address.version == 4:
        shift = 32 - length
        return ipaddress.IPv4Network((int(address) >> shift << shift, length))
    shift = 128 - length
    return ipaddress.IPv6Network((int(address) >> shift << shift, length))


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
    return {prefix: routes[prefix] for prefix in sorted(routes, key=network_key)}


# ---- the same, kept up to date ------------------------------------------------------------

#: Units of work (one service route, one announce_all prefix) between two yields of
#: :meth:`RouteTable.build` (about 2 µs each: well inside a 0.5 ms slice).
SLICE = 128


def _all_keys(pool: Pool, ad: Advertisement) -> Iterator[RouteKey]:
    """:func:`_all_prefixes` as route keys."""
    for r in pool.addresses:
        length = ad.length_for(r.version)
        shift = (32 if r.version == 4 else 128) - length
        for block in range(int(r.first) >> shift, (int(r.last) >> shift) + 1):
            yield key_of(r.version, block << shift, length)


class _Static:
    """The announce_all pools of one peer's advertisements: which advertisements give
    a route key, by arithmetic on the pools' ranges of blocks (no table of their up to
    65,536 prefixes each). Per (family, prefix length) the ranges sorted by their first
    block, with the highest last block so far, so a lookup is a bisection and a walk
    back over the ranges that can still hold the block."""

    __slots__ = ("_ranges", "_sorted")

    def __init__(self) -> None:
        self._ranges: dict[tuple[bool, int], list[tuple[int, int, int]]] = {}
        self._sorted: dict[tuple[bool, int], tuple[list[int], list[int], list[int]]] = {}

    def __bool__(self) -> bool:
        return bool(self._ranges)

    def add(self, index: int, pool: Pool, ad: Advertisement) -> None:
        """Advertisement ``index`` announces every ``ad``-length prefix of ``pool``."""
        for r in pool.addresses:
            length = ad.length_for(r.version)
            shift = (32 if r.version == 4 else 128) - length
            low, high = int(r.first) >> shift, int(r.last) >> shift
            self._ranges.setdefault((r.version == 6, length), []).append((low, high, index))
        self._sorted.clear()

    def _index(self, kind: tuple[bool, int]) -> tuple[list[int], list[int], list[int]] | None:
        found = self._sorted.get(kind)
        if found is None:
            ranges = self._ranges.get(kind)
            if ranges is None:
                return None
            ranges = self._ranges[kind] = sorted(ranges)
            highest = list(itertools.accumulate((h for _, h, _ in ranges), max))
            found = self._sorted[kind] = ([lo for lo, _, _ in ranges], highest,
                                          [i for _, _, i in ranges])  # fmt: skip
        return found

    def advertisements(self, route: RouteKey) -> list[int]:
        """The indices of the advertisements whose announce_all pools give ``route``."""
        plen = route & 0xFF
        v6 = key_is_v6(route)
        index = self._index((v6, plen))
        if index is None:
            return []
        lows, highest, ads = index
        ranges = self._ranges[(v6, plen)]
        block = ((route & ~KEY_V6_BIT) >> 8) >> ((128 if v6 else 32) - plen)
        out = []
        j = bisect.bisect_right(lows, block) - 1
        while j >= 0 and highest[j] >= block:
            if ranges[j][1] >= block:
                out.append(ads[j])
            j -= 1
        return out


class _PeerTable:
    """One peer's routes, by route key: ``base`` as built (never changed after:
    sessions take it over), ``overlay`` the changes since (None: withdrawn), and per
    route the advertisements that announce it now (announce_all ones in ``static``,
    by arithmetic)."""

    def __init__(self, peer: Peer) -> None:
        self.name = peer.name
        self.internal = peer.internal
        self.base: dict[RouteKey, RouteAttributes] = {}
        self.overlay: dict[RouteKey, RouteAttributes | None] = {}
        self.static = _Static()
        #: advertisement index -> route -> announced services giving it (one table
        #: per advertisement, not one per route: a 65,536-route table stays small)
        self.sources: dict[int, dict[RouteKey, int]] = {}
        #: route -> announced *drained* services giving it (any: the route is drained)
        self.drains: dict[RouteKey, int] = {}

    def get(self, route: RouteKey) -> RouteAttributes | None:
        if route in self.overlay:
            return self.overlay[route]
        return self.base.get(route)

    def count(self, index: int, route: RouteKey, step: int) -> None:
        """One announced service more (``step`` 1) or less (-1) gives ``route``."""
        counts = self.sources.get(index)
        if counts is None:
            counts = self.sources[index] = {}
        n = counts.get(route, 0) + step
        if n > 0:
            counts[route] = n
        else:
            counts.pop(route, None)

    def drain(self, route: RouteKey, step: int) -> None:
        """One announced drained service more (1) or less (-1) gives ``route``."""
        n = self.drains.get(route, 0) + step
        if n > 0:
            self.drains[route] = n
        else:
            self.drains.pop(route, None)

    def advertisements(self, route: RouteKey) -> tuple[int, ...]:
        """The indices of the advertisements announcing ``route`` now, in file order."""
        found = [i for i, counts in self.sources.items() if route in counts]
        if self.static:
            found += self.static.advertisements(route)
        return tuple(sorted(set(found))) if len(found) > 1 else tuple(found)


class RouteTable:
    """:func:`routes_for_peer` for every peer of this node, kept up to date by
    difference: a change of which services are announced costs the routes of the
    services that changed, not the table.

    Routes are kept by route key (:data:`protocols.bgp.RouteKey`: one int a prefix,
    32-44 bytes, where an ``ipaddress`` network is 436-456), which is what the
    sessions' Adj-RIB-Out take over. Built once per config with :meth:`build` (a
    generator of slices, see :mod:`speaker.slices`); the merged attributes of each
    set of advertisements and peer kind are made once and shared by every route they
    give, so a route's attributes are one reference and changing them is a lookup.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self._peers: dict[str, _PeerTable] = {}
        #: service -> (peer, advertisement index, route) it gives while announced
        self._contributions: dict[str, list[tuple[_PeerTable, int, RouteKey]]] = {}
        self._unchecked: frozenset[str] = frozenset()  # services without a health check
        self._announced: set[str] = set()  # changed in place: a copy costs every service
        #: services the operator drained (RFC 8326), announced or not
        self._drained: set[str] = set()
        self._merged: dict[tuple[bool, tuple[int, ...], bool], RouteAttributes] = {}

    @classmethod
    def build(
        cls,
        config: Config,
        addresses: Mapping[str, IPAddress],
        *,
        healthy: Collection[str] = frozenset(),
        withdrawn: Collection[str] = frozenset(),
        drained: Collection[str] = frozenset(),
    ) -> Steps[RouteTable]:
        """The table for ``config`` with the services ``healthy``/``withdrawn`` give
        (as :func:`routes_for_peer`) announced, those in ``drained`` drained, in
        slices."""
        table = cls(config)
        table._drained = set(drained)
        # The sets a step at a time (set algebra on 65,536 names is a long step).
        healthy = healthy if isinstance(healthy, AbstractSet) else frozenset(healthy)
        withdrawn = withdrawn if isinstance(withdrawn, AbstractSet) else frozenset(withdrawn)
        unchecked: set[str] = set()
        announced: set[str] = set()
        for n, service in enumerate(config.services, 1):
            name = service.name
            if service.health is None:
                unchecked.add(name)
            if name not in withdrawn and (service.health is None or name in healthy):
                announced.add(name)
            if n % (4 * SLICE) == 0:
                yield None
        table._unchecked = frozenset(unchecked)
        table._announced = announced
        yield None
        work = 0
        for peer in config.local_peers:
            pt = table._peers[peer.name] = _PeerTable(peer)
            statics: list[tuple[Pool, Advertisement]] = []
            for index, ad in enumerate(config.advertisements):
                if not ad.selects_peer(peer.name):
                    continue
                pools = config.pools if not ad.pools else [config.pool(n) for n in ad.pools]
                for pool in pools:
                    if pool.announce_all:
                        pt.static.add(index, pool, ad)
                        statics.append((pool, ad))
                        continue
                    for service in config.services_in(pool.name):
                        address = service.address or addresses.get(service.name)
                        if address is None or address not in pool:
                            continue
                        route = address_key(address, ad.length_for(address.version))
                        table._contributions.setdefault(service.name, []).append((pt, index, route))
                        if service.name in announced:
                            pt.count(index, route, 1)
                            if service.name in table._drained:
                                pt.drain(route, 1)
                        work += 1
                        if work % SLICE == 0:
                            yield None
            # In the order found (pools ascending, services in file order): a sort of
            # the whole table would be one long step.
            static_keys = (k for pool, ad in statics for k in _all_keys(pool, ad))
            for route in itertools.chain(static_keys, *pt.sources.values()):
                if route in pt.base:
                    continue  # given by another advertisement too
                ads = pt.advertisements(route)
                if ads:
                    pt.base[route] = table._attributes(pt, ads, route in pt.drains)
                work += 1
                if work % SLICE == 0:
                    yield None
        return table

    # ---- queries ------------------------------------------------------------------

    @property
    def peers(self) -> tuple[str, ...]:
        return tuple(self._peers)

    def layers(
        self, peer: str
    ) -> tuple[Mapping[RouteKey, RouteAttributes], dict[RouteKey, RouteAttributes | None]]:
        """``peer``'s routes as (base, a copy of the changes since), by route key: the
        base never changes, so a session may hold it; the copy costs the changes only.

        Raises:
            KeyError: no such peer on this node.
        """
        pt = self._peers[peer]
        return pt.base, dict(pt.overlay)

    def routes(self, peer: str) -> dict[IPNetwork, RouteAttributes]:
        """``peer``'s routes now, as one mapping of networks (walks the table: for
        tests, ``show``)."""
        pt = self._peers[peer]
        out = {key_prefix(p): a for p, a in pt.base.items() if p not in pt.overlay}
        out.update((key_prefix(p), a) for p, a in pt.overlay.items() if a is not None)
        return out

    # ---- changes ------------------------------------------------------------------

    def set_announced(
        self, healthy: Collection[str], withdrawn: Collection[str] = frozenset()
    ) -> dict[str, dict[RouteKey, RouteAttributes | None]]:
        """Announce what ``healthy``/``withdrawn`` give now; returns per peer the
        changed routes by route key (None: withdraw). Costs the routes of the
        services whose state changed."""
        announced = set(self._effective(healthy, withdrawn))
        added, removed = announced - self._announced, self._announced - announced
        self._announced = announced
        return self._apply((removed, -1), (added, 1))

    def _apply(
        self, *moves: tuple[Collection[str], int]
    ) -> dict[str, dict[RouteKey, RouteAttributes | None]]:
        """Count each service of ``moves`` in (+1) or out (-1); the changed routes."""
        touched: dict[_PeerTable, dict[RouteKey, None]] = {}
        for services, step in moves:
            for service in services:
                drained = service in self._drained
                for pt, index, route in self._contributions.get(service, ()):
                    pt.count(index, route, step)
                    if drained:
                        pt.drain(route, step)
                    touched.setdefault(pt, {})[route] = None
        return self._changes(touched)

    def _changes(
        self, touched: dict[_PeerTable, dict[RouteKey, None]]
    ) -> dict[str, dict[RouteKey, RouteAttributes | None]]:
        """The ``touched`` routes' attributes now; those that changed, per peer."""
        out: dict[str, dict[RouteKey, RouteAttributes | None]] = {}
        for pt, routes in touched.items():
            changes: dict[RouteKey, RouteAttributes | None] = {}
            for route in routes:
                ads = pt.advertisements(route)
                new = self._attributes(pt, ads, route in pt.drains) if ads else None
                if new == pt.get(route):
                    continue
                changes[route] = new
                if new == pt.base.get(route):
                    pt.overlay.pop(route, None)
                else:
                    pt.overlay[route] = new
            if changes:
                out[pt.name] = changes
        return out

    def set_service(
        self, service: str, announced: bool
    ) -> dict[str, dict[RouteKey, RouteAttributes | None]]:
        """Announce ``service`` or not (its health or override changed): as
        :meth:`set_announced`, without the cost of comparing the sets of services."""
        if (service in self._announced) == announced:
            return {}
        if announced:
            self._announced.add(service)
        else:
            self._announced.discard(service)
        return self._apply(((service,), 1 if announced else -1))

    def set_drained(
        self, service: str, drained: bool
    ) -> dict[str, dict[RouteKey, RouteAttributes | None]]:
        """Drain ``service`` (RFC 8326) or end its drain: its routes, while it is
        announced, get ``graceful_shutdown`` set (or lose it). Costs that service's
        routes; per peer the routes that changed (by route key)."""
        if (service in self._drained) == drained:
            return {}
        if drained:
            self._drained.add(service)
        else:
            self._drained.discard(service)
        if service not in self._announced:
            return {}
        touched: dict[_PeerTable, dict[RouteKey, None]] = {}
        for pt, _, route in self._contributions.get(service, ()):
            pt.drain(route, 1 if drained else -1)
            touched.setdefault(pt, {})[route] = None
        return self._changes(touched)

    @property
    def drained(self) -> frozenset[str]:
        """The services drained in this table."""
        return frozenset(self._drained)

    def _effective(self, healthy: Collection[str], withdrawn: Collection[str]) -> frozenset[str]:
        return (self._unchecked | frozenset(healthy)) - frozenset(withdrawn)

    def _attributes(
        self, pt: _PeerTable, ads: tuple[int, ...], drained: bool = False
    ) -> RouteAttributes:
        key = (pt.internal, ads, drained)
        merged = self._merged.get(key)
        if merged is None:
            for index in ads:
                one = _attributes(self.config.advertisements[index], pt.internal)
                merged = one if merged is None else merged.merge(one)
            assert merged is not None
            if drained:
                merged = merged.drained()
            self._merged[key] = merged
        return merged
