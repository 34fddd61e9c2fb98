"""From a loaded :class:`Config` to what the runtime needs.

The config says what the operator wants; this module derives what the runtime
needs: per peer a BGP config and (with a BFD profile) a BFD session key with our
local address and interface, the route function (announcements as a function of
health), and the health checks.
"""

from __future__ import annotations

import ipaddress
import logging
import zlib
from collections.abc import Mapping

import attrs

from protocols.bgp import Prefix
from protocols.bgp.constants import IPV4_UNICAST, IPV6_UNICAST
from speaker.allocate import assign_addresses
from speaker.announce import RouteAttributes as WantedAttributes
from speaker.announce import routes_for_peer
from speaker.bgp.config import BgpPeerConfig, RouteAttributes
from speaker.config import Config, IPAddress, Peer
from speaker.health import HealthSpec
from speaker.netlookup import interface_of, local_address_for
from speaker.peer import BfdTarget, PeerPlan, Routes

__all__ = [
    "Derived", "RouteFunction", "derive", "derive_router_id", "health_specs",
    "interface_of", "local_address_for", "plans_for",
]  # fmt: skip

log = logging.getLogger("speaker")


def derive_router_id(config: Config) -> ipaddress.IPv4Address:
    """``router_id`` from the config, else the first IPv4 source address (as the
    config resolved it), else a stable hash of the node name (MetalLB does the same)."""
    if config.router_id is not None:
        return config.router_id
    for peer in config.peers:
        if isinstance(peer.source_address, ipaddress.IPv4Address):
            return peer.source_address
    return ipaddress.IPv4Address(zlib.crc32(config.speaker.node_name.encode()) or 1)


def _families(config: Config, peer: Peer, addresses: Mapping[str, IPAddress]) -> tuple[int, ...]:
    del addresses
    versions = {peer.peer_address.version}
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
        bgp = BgpPeerConfig(
            name=peer.name,
            peer_address=peer.peer_address,
            peer_asn=peer.peer_asn,
            local_asn=peer.my_asn,
            router_id=router_id,
            peer_port=peer.peer_port,
            source_address=peer.source_address,
            hold_time=int(peer.hold_time.total_seconds()),
            keepalive_time=peer.keepalive_time.total_seconds(),
            connect_time=peer.connect_time.total_seconds(),
            password=peer.password,
            ebgp_multihop=peer.multihop_ttl,
            passive=peer.passive,
            families=families,
            hostname=config.speaker.node_name,
            bfd_strict=peer.bfd_strict and peer.bfd_profile is not None,
        )
        # Our BFD address and interface are looked up when the peer starts (in its own
        # task: a peer with no route yet must not stop the others).
        target = None
        if peer.bfd_profile is not None:
            target = BfdTarget(
                peer=peer.peer_address, source=peer.source_address,
                interface=peer.interface, multihop=peer.multihop,
            )  # fmt: skip
        plans.append(
            PeerPlan(
                name=peer.name, bgp=bgp, bfd_target=target, bfd_profile=peer.bfd_profile,
                bfd_strict=peer.bfd_strict,
            )
        )  # fmt: skip
    return plans


class RouteFunction:
    """``routes(peer, healthy)`` for one config: announcements converted to the BGP
    session's attributes (each distinct attribute set converted once)."""

    def __init__(self, config: Config, addresses: Mapping[str, IPAddress]) -> None:
        self.config = config
        self.addresses = dict(addresses)
        self._converted: dict[WantedAttributes, RouteAttributes] = {}

    def __call__(
        self, peer: str, healthy: frozenset[str], withdrawn: frozenset[str] = frozenset()
    ) -> Routes:
        """``healthy``: services to announce (overrides applied); ``withdrawn``: never."""
        out: dict[Prefix, RouteAttributes] = {}
        wanted_routes = routes_for_peer(self.config, peer, healthy, self.addresses, withdrawn)
        for prefix, wanted in wanted_routes.items():
            attributes = self._converted.get(wanted)
            if attributes is None:
                attributes = self._converted[wanted] = RouteAttributes(
                    communities=tuple(wanted.communities),
                    large_communities=tuple(wanted.large_communities),
                    local_pref=wanted.local_pref,
                )
            out[prefix] = attributes
        return out


def health_specs(config: Config) -> dict[str, HealthSpec]:
    return {
        service.name: HealthSpec(
            tcp=service.health.tcp,
            http=service.health.http,
            exec=service.health.exec,
            expected_status=service.health.expected_status,
            interval=service.health.interval.total_seconds(),
            timeout=service.health.timeout.total_seconds(),
            rise=service.health.rise,
            fall=service.health.fall,
        )
        for service in config.services
        if service.health is not None
    }


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


def derive(config: Config) -> Derived:
    """Allocate service addresses (reading and updating the state file), then derive.

    Raises:
        AllocationError, StateFileError, OSError: from :mod:`speaker.allocate`.
    """
    addresses = assign_addresses(config)
    return Derived(
        config=config,
        addresses=addresses,
        plans=tuple(plans_for(config, addresses)),
        routes=RouteFunction(config, addresses),
        health=health_specs(config),
        services=tuple(s.name for s in config.services),
        hold_down=config.speaker.hold_down.total_seconds(),
    )
