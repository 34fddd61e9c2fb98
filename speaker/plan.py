"""From a loaded :class:`Config` to what the runtime needs.

The config says what the operator wants; this module derives what the runtime
needs: per peer a BGP config and (with a BFD profile) a BFD session key with our
local address and interface, the route function (announcements as a function of
health), and the health checks.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Collection, Mapping

import attrs

from protocols.bgp import RouteKey
from protocols.bgp.constants import IPV4_UNICAST, IPV6_UNICAST
from speaker.allocate import assign_addresses_steps
from speaker.announce import RouteTable
from speaker.bgp.config import BgpPeerConfig, RouteAttributes
from speaker.bgp.rib import LayeredRoutes
from speaker.config import Config, IPAddress, Peer
from speaker.health import HealthSpec
from speaker.netlookup import interface_of, local_address_for
from speaker.peer import BfdTarget, PeerPlan
from speaker.routerid import RouterIdChoice, choose_router_id
from speaker.slices import Steps, run_at_once, run_in_slices

__all__ = [
    "Derived", "RouteFunction", "bgp_config", "derive", "derive_in_slices", "derive_router_id",
    "health_specs", "interface_of", "local_address_for", "plans_for",
]  # fmt: skip

log = logging.getLogger("speaker")


def derive_router_id(config: Config) -> ipaddress.IPv4Address:
    """The router ID by :func:`speaker.routerid.choose_router_id`'s rule: ``router_id``,
    else the first IPv4 source address, else the host's highest (loopback) IPv4 address
    as FRR picks it, else a CRC-32 of the node name."""
    return choose_router_id(config).address


def _families(config: Config, peer: Peer, addresses: Mapping[str, IPAddress]) -> tuple[int, ...]:
    del addresses
    versions = {4, 6} if peer.unnumbered else {peer.peer_address.version}
    if peer.disable_mp:  # only the session's own family (MetalLB's disableMP)
        return (peer.peer_address.version,)
    for ad in config.advertisements:
        if not ad.selects_peer(peer.name):
            continue
        pools = config.pools if not ad.pools else [config.pool(n) for n in ad.pools]
        for pool in pools:
            versions.update(r.first.version for r in pool.addresses)
    return tuple(v for v in (4, 6) if v in versions)


def plans_for(config: Config, addresses: Mapping[str, IPAddress]) -> list[PeerPlan]:
    router_id = derive_router_id(config)
    plans = []
    for peer in config.peers:
        if not peer.applies_to(config.speaker.labels):
            log.info("peer %s: not for this node (node_selectors)", peer.name)
            continue
        families = tuple(
            IPV4_UNICAST if v == 4 else IPV6_UNICAST for v in _families(config, peer, addresses)
        )
        bgp = bgp_config(peer, router_id=router_id, families=families,
                         hostname=config.speaker.node_name)  # fmt: skip
        # Our BFD address and interface are looked up when the peer starts (in its own
        # task: a peer with no route yet must not stop the others).
        target = None
        if peer.bfd_profile is not None:
            target = BfdTarget(
                peer=peer.peer_address, source=peer.source_address,
                interface=peer.interface, multihop=peer.multihop, vrf=peer.vrf,
            )  # fmt: skip
        plans.append(
            PeerPlan(
                name=peer.name, bgp=bgp, bfd_target=target, bfd_profile=peer.bfd_profile,
                bfd_strict=peer.bfd_strict,
            )
        )  # fmt: skip
    return plans


def bgp_config(
    peer: Peer,
    *,
    router_id: ipaddress.IPv4Address,
    families: tuple[tuple[int, int], ...],
    hostname: str,
) -> BgpPeerConfig:
    """The one place a configured peer becomes the BGP session's configuration.

    Not a copy by name, on purpose: :mod:`speaker.bgp` is usable without the
    configuration (``python -m speaker.bgp``), so it speaks BGP's words, not the file's:
    ``my_asn`` is the session's ``local_asn``, durations are seconds (the hold time
    whole ones, RFC 4271 §4.2), ``ebgp_multihop = true`` is TTL 255, ``bfd_strict``
    is only advertised with a BFD profile, ``peer_asn = "internal"`` expects
    ``my_asn`` and "external" any other AS, and a peer's ``router_id`` replaces the
    speaker's.
    """
    return BgpPeerConfig(
        name=peer.name,
        peer_address=peer.peer_address,
        peer_asn=peer.expected_asn,
        dynamic_asn=peer.dynamic_asn,
        local_asn=peer.my_asn,
        router_id=peer.router_id or router_id,
        peer_port=peer.peer_port,
        source_address=peer.source_address,
        hold_time=int(peer.hold_time.total_seconds()),
        keepalive_time=peer.keepalive_time.total_seconds(),
        connect_time=peer.connect_time.total_seconds(),
        connect_retry=peer.connect_retry.total_seconds(),
        connect_retry_max=peer.connect_retry_max.total_seconds(),
        password=peer.password,
        ebgp_multihop=peer.multihop_ttl,
        passive=peer.passive,
        listen=peer.listen,
        families=families,
        hostname=hostname,
        bfd_strict=peer.bfd_strict and peer.bfd_profile is not None,
        interface=peer.interface,
        unnumbered=peer.unnumbered,
        graceful_restart=peer.graceful_restart,
        graceful_restart_time=int(peer.graceful_restart_time.total_seconds()),
        vrf=peer.vrf,
    )


class RouteFunction:
    """The routes of every peer of this node for one config, as the BGP sessions take
    them, kept up to date by difference (:class:`speaker.announce.RouteTable`)."""

    def __init__(self, table: RouteTable) -> None:
        self.table = table

    @classmethod
    def build(
        cls,
        config: Config,
        addresses: Mapping[str, IPAddress],
        *,
        healthy: Collection[str] = frozenset(),
        withdrawn: Collection[str] = frozenset(),
    ) -> Steps[RouteFunction]:
        """In slices (:mod:`speaker.slices`), with ``healthy``/``withdrawn`` applied."""
        table = yield from RouteTable.build(config, addresses, healthy=healthy, withdrawn=withdrawn)
        return cls(table)

    def snapshot(self, peer: str) -> LayeredRoutes:
        """``peer``'s routes now, for a session to take over: costs the changes since
        the table was built, not the table. Raises KeyError: not a peer of this node."""
        base, changes = self.table.layers(peer)
        return LayeredRoutes(base, changes)

    def set_announced(
        self, healthy: Collection[str], withdrawn: Collection[str] = frozenset()
    ) -> dict[str, dict[RouteKey, RouteAttributes | None]]:
        """Announce what ``healthy`` (overrides applied) and ``withdrawn`` give now;
        per peer the routes that changed, by route key (None: withdraw)."""
        return self.table.set_announced(healthy, withdrawn)

    def set_service(
        self, service: str, announced: bool
    ) -> dict[str, dict[RouteKey, RouteAttributes | None]]:
        """One service announced or not now: costs that service's routes."""
        return self.table.set_service(service, announced)

    def set_drained(
        self, service: str, drained: bool
    ) -> dict[str, dict[RouteKey, RouteAttributes | None]]:
        """One service drained (RFC 8326) or not now: costs that service's routes."""
        return self.table.set_drained(service, drained)


def health_specs(config: Config) -> dict[str, HealthSpec]:
    return run_at_once(health_specs_steps(config))


def health_specs_steps(config: Config) -> Steps[dict[str, HealthSpec]]:
    """:func:`health_specs` in slices (10,000 services take about 50 ms)."""
    out: dict[str, HealthSpec] = {}
    for n, service in enumerate(config.services, 1):
        if n % 256 == 0:
            yield None
        if service.health is None:
            continue
        out[service.name] = HealthSpec(
            tcp=service.health.tcp,
            http=service.health.http,
            exec=service.health.exec,
            expected_status=service.health.expected_status,
            interval=service.health.interval.total_seconds(),
            timeout=service.health.timeout.total_seconds(),
            rise=service.health.rise,
            fall=service.health.fall,
        )
    return out


@attrs.frozen
class Derived:
    """Everything the runtime takes from one config."""

    config: Config
    addresses: Mapping[str, IPAddress]
    plans: tuple[PeerPlan, ...]
    routes: RouteFunction
    health: Mapping[str, HealthSpec]
    services: tuple[str, ...]
    hold_down: float
    #: The router ID every session uses, and why (``show config``).
    router_id: RouterIdChoice | None = None


def derive(
    config: Config,
    *,
    healthy: Collection[str] = frozenset(),
    withdrawn: Collection[str] = frozenset(),
) -> Derived:
    """Allocate service addresses (reading and updating the state file), then derive.
    ``healthy``/``withdrawn``: what the route table starts from (a reload passes the
    running speaker's, so its sessions get only the difference).

    Outside the Trio loop (start, ``check``); on the loop use :func:`derive_in_slices`.

    Raises:
        AllocationError, StateFileError, OSError: from :mod:`speaker.allocate`.
    """
    return run_at_once(derive_steps(config, healthy=healthy, withdrawn=withdrawn))


async def derive_in_slices(
    config: Config,
    *,
    healthy: Collection[str] = frozenset(),
    withdrawn: Collection[str] = frozenset(),
) -> Derived:
    """:func:`derive` on the Trio loop: the route table is built in slices of at
    most about 0.5 ms (a reload of 65,536 routes does not stop BFD)."""
    return await run_in_slices(derive_steps(config, healthy=healthy, withdrawn=withdrawn))


def derive_steps(
    config: Config,
    *,
    healthy: Collection[str] = frozenset(),
    withdrawn: Collection[str] = frozenset(),
) -> Steps[Derived]:
    addresses = yield from assign_addresses_steps(config)
    routes = yield from RouteFunction.build(config, addresses, healthy=healthy, withdrawn=withdrawn)
    health = yield from health_specs_steps(config)
    yield None
    return Derived(
        config=config,
        addresses=addresses,
        plans=tuple(plans_for(config, addresses)),
        routes=routes,
        health=health,
        services=tuple(s.name for s in config.services),
        hold_down=config.speaker.hold_down.total_seconds(),
        router_id=choose_router_id(config),
    )
