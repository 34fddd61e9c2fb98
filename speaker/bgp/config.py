"""Configuration of one BGP peer and of the routes we announce to it.

:class:`BgpPeerConfig` is frozen and validated on construction; it turns into the
core's :class:`~protocols.bgp.SessionConfig` with :meth:`BgpPeerConfig.session_config`.
:class:`RouteAttributes` is what the owner says about one announced prefix; the
session adds what depends on the session (NEXT_HOP, AS_PATH, LOCAL_PREF on iBGP).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from protocols.bgp import (
    IPV4_UNICAST,
    IPV4_UNICAST_IPV6_NEXT_HOP,
    IPV6_UNICAST,
    BfdStrictModeCapability,
    LargeCommunity,
    Origin,
    Prefix,
    RouteKey,
    SessionConfig,
    graceful_restart_capability,
    key_is_v6,
    parse_community,
    parse_large_community,
)
from speaker.addresses import IPAddress

if TYPE_CHECKING:
    from speaker.bgp.listener import BgpListener

__all__ = [
    "BgpConfigError",
    "BgpPeerConfig",
    "IPAddress",
    "RouteAttributes",
    "family_of",
    "parse_announce",
    "parse_route_entry",
    "prefix_range",
]

Family = tuple[int, int]


class BgpConfigError(ValueError):
    """A configuration value is invalid (raised on construction or parsing)."""


def _sorted_ints(values: Iterable[int]) -> tuple[int, ...]:
    return tuple(sorted(set(values)))


def _sorted_large(values: Iterable[LargeCommunity]) -> tuple[LargeCommunity, ...]:
    return tuple(sorted(set(values)))


def family_of(prefix: Prefix | RouteKey) -> Family:
    """The family of a network or a route key (:data:`protocols.bgp.RouteKey`)."""
    if isinstance(prefix, int):
        return IPV6_UNICAST if key_is_v6(prefix) else IPV4_UNICAST
    return IPV4_UNICAST if prefix.version == 4 else IPV6_UNICAST


def _ip(value: object) -> IPAddress:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    return ipaddress.ip_address(str(value))


def _opt_ip(value: object) -> IPAddress | None:
    return None if value is None else _ip(value)


def _v4(value: object) -> ipaddress.IPv4Address:
    return value if isinstance(value, ipaddress.IPv4Address) else ipaddress.IPv4Address(value)


def _opt_v4(value: object) -> ipaddress.IPv4Address | None:
    return None if value is None else _v4(value)


def _opt_v6(value: object) -> ipaddress.IPv6Address | None:
    if value is None or isinstance(value, ipaddress.IPv6Address):
        return value
    return ipaddress.IPv6Address(value)


@attrs.frozen(kw_only=True, cache_hash=True)
class RouteAttributes:
    """What the owner sets for an announced prefix (RFC 4271 §5, RFC 1997, RFC 8092).

    ``local_pref`` is only sent on iBGP (RFC 4271 §5.1.5; 100 when None there).
    Communities are kept sorted and without duplicates so equal sets compare equal
    (the Adj-RIB-Out groups prefixes by identical attributes). ``graceful_shutdown``:
    the route is drained (RFC 8326): sent with GRACEFUL_SHUTDOWN (65535:0) added and,
    on iBGP, LOCAL_PREF 0 (:func:`speaker.bgp.rib.path_attributes`).
    """

    origin: Origin = Origin.IGP
    med: int | None = None
    local_pref: int | None = None
    communities: tuple[int, ...] = attrs.field(default=(), converter=_sorted_ints)
    large_communities: tuple[LargeCommunity, ...] = attrs.field(default=(), converter=_sorted_large)
    graceful_shutdown: bool = False

    def __attrs_post_init__(self) -> None:
        for name in ("med", "local_pref"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 0xFFFFFFFF:
                raise BgpConfigError(f"{name} out of range: {value}")

    def merge(self, other: RouteAttributes) -> RouteAttributes:
        """Two advertisements giving one prefix: the union of their communities, the
        first ``local_pref`` that is set (validation rejects conflicting ones); origin
        and MED are this one's; drained if either is."""
        if other == self:
            return self
        return attrs.evolve(
            self,
            communities=self.communities + other.communities,
            large_communities=self.large_communities + other.large_communities,
            local_pref=self.local_pref if self.local_pref is not None else other.local_pref,
            graceful_shutdown=self.graceful_shutdown or other.graceful_shutdown,
        )

    def drained(self) -> RouteAttributes:
        """These attributes with ``graceful_shutdown`` set (RFC 8326)."""
        return self if self.graceful_shutdown else attrs.evolve(self, graceful_shutdown=True)


DEFAULT_ATTRIBUTES = RouteAttributes()

#: Failed attempts retried ``connect_retry`` apart before the backoff doubles: a
#: router that refuses us for a few seconds after a reset (gobgpd: about 5 s after our
#: Cease) is retried every second, not after 2, 4, 8 s; five SYNs cost it nothing.
CONNECT_RETRY_STEADY = 5


@attrs.frozen(kw_only=True)
class BgpPeerConfig:
    """One BGP neighbour (times in seconds).

    - ``source_address``: bind the active connection to it (and accept the peer's
      connections only on that address).
    - ``connect_time``: how long one TCP connect may take (the kernel retransmits the
      SYN meanwhile); ``connect_retry``: the base of the core's exponential backoff
      between attempts after a failure (doubling, jittered 0.75-1, up to
      ``connect_retry_max``).
    - ``password``: TCP MD5 signature (RFC 2385) key; never shown in repr or logs.
    - ``ebgp_multihop``: TTL to send with (default 1 for eBGP, 64 for iBGP); with
      ``gtsm`` (RFC 5082) we send TTL 255 and require at least 255 - hops + 1 with
      hops = ``ebgp_multihop`` or 1.
    - ``passive``: never connect, only accept from ``peer_address``; ``listen``:
      accept the peer's connections too (through ``listener``, the speaker's shared
      :class:`~speaker.bgp.listener.BgpListener`; a session without one listens on its
      own only when ``passive``).
    - ``families``: advertised AFI/SAFIs; empty = the peer address's family plus
      those of ``initial_families`` (see :meth:`with_families_for`).
    - ``next_hop4`` / ``next_hop6``: override the next hop derived from the session's
      local address.
    - ``bfd_strict``: advertise BGP BFD strict mode (capability 74; the peer runner
      holds the session until BFD is Up).
    - ``interface``: the link the session runs over. With ``unnumbered`` the peer is
      the router on that link, its IPv6 link-local address learned there
      (:mod:`speaker.bgp.unnumbered`); until then ``peer_address`` is the
      placeholder ``fe80::%IFNAME``. Unnumbered sessions offer the extended next hop
      capability (RFC 8950) and both IPv4 and IPv6 unicast by default.
    - ``extended_next_hop``: offer RFC 8950 for IPv4 unicast (IPv4 routes then go
      out with our IPv6 next hops when the peer offers it too).
    - ``graceful_restart``: advertise Graceful Restart (RFC 4724, capability 64) with
      ``graceful_restart_time`` (whole seconds, 0..4095), N (RFC 8538) and F on every
      family (forwarding preserved: the service keeps serving while we restart).
    - ``vrf``: the Linux VRF device the peer is in: our connection and the listener
      that takes the peer's are bound to it (``SO_BINDTODEVICE``), so the kernel uses
      the VRF's routes; None is the default VRF.
    """

    name: str
    peer_address: IPAddress = attrs.field(converter=_ip)
    #: None: learned from the peer's OPEN (``dynamic_asn``).
    peer_asn: int | None
    local_asn: int
    router_id: ipaddress.IPv4Address = attrs.field(converter=_v4)
    peer_port: int = 179
    listen_port: int = 179
    source_address: IPAddress | None = attrs.field(default=None, converter=_opt_ip)
    hold_time: int = 90
    keepalive_time: float | None = None
    connect_time: float = 10.0
    connect_retry: float = 1.0
    connect_retry_max: float = 60.0
    password: str | None = attrs.field(default=None, repr=False)
    ebgp_multihop: int | None = None
    gtsm: bool = False
    passive: bool = False
    listen: bool = True
    families: tuple[Family, ...] = ()
    hostname: str | None = None
    #: RFC 8654, off unless asked for: a peer's 65,535-octet UPDATE (FRR sends its full
    #: table in those, about 3,850 IPv6 prefixes each) is decoded in one loop step of
    #: 10-30 ms; 4,096-octet messages keep that step near 1.5 ms (docs/architecture.md,
    #: Latency budget). We send batches of 256 prefixes, which never need more.
    extended_message: bool = False
    keep_adj_rib_in: bool = False
    next_hop4: ipaddress.IPv4Address | None = attrs.field(default=None, converter=_opt_v4)
    next_hop6: ipaddress.IPv6Address | None = attrs.field(default=None, converter=_opt_v6)
    cease_timeout: float = 1.0
    bfd_strict: bool = False
    #: "internal" / "external": with ``peer_asn`` None, the peer's AS must be / must
    #: not be ``local_asn`` (MetalLB's dynamicASN; FRR's remote-as internal/external).
    dynamic_asn: str | None = None
    interface: str | None = None
    unnumbered: bool = False
    extended_next_hop: bool = False
    graceful_restart: bool = False
    graceful_restart_time: int = 120
    vrf: str | None = None
    #: The shared listener handing this peer's incoming connections over (runtime
    #: wiring, not configuration: ignored by equality).
    listener: BgpListener | None = attrs.field(default=None, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if (self.peer_asn is not None and not 0 < self.peer_asn <= 0xFFFFFFFF) or not (
            0 < self.local_asn <= 0xFFFFFFFF
        ):
            raise BgpConfigError(f"{self.name}: AS numbers must be 1..4294967295")
        if self.dynamic_asn not in (None, "internal", "external"):
            raise BgpConfigError(f"{self.name}: dynamic_asn must be internal or external")
        if self.peer_asn is None and self.dynamic_asn is None:
            raise BgpConfigError(f"{self.name}: no peer AS (set peer_asn or dynamic_asn)")
        if self.hold_time != 0 and not 3 <= self.hold_time <= 0xFFFF:
            raise BgpConfigError(f"{self.name}: hold time must be 0 or 3..65535")
        if self.ebgp_multihop is not None and not 1 <= self.ebgp_multihop <= 255:
            raise BgpConfigError(f"{self.name}: multihop TTL must be 1..255")
        if self.password is not None and len(self.password.encode()) > 80:
            raise BgpConfigError(f"{self.name}: TCP MD5 password longer than 80 octets")
        if (
            self.source_address is not None
            and self.source_address.version != self.peer_address.version
        ):
            raise BgpConfigError(f"{self.name}: source and peer address families differ")
        if self.connect_time <= 0 or self.connect_retry <= 0:
            raise BgpConfigError(f"{self.name}: connect times must be positive")
        if self.connect_retry_max < self.connect_retry:
            raise BgpConfigError(f"{self.name}: connect_retry_max is below connect_retry")
        if self.cease_timeout <= 0:
            raise BgpConfigError(f"{self.name}: cease_timeout must be positive")
        if self.unnumbered and (self.interface is None or self.peer_address.version != 6):
            raise BgpConfigError(f"{self.name}: an unnumbered peer needs its interface")
        if not 0 <= self.graceful_restart_time <= 0xFFF:
            raise BgpConfigError(f"{self.name}: graceful restart time must be 0..4095 s")

    @property
    def internal(self) -> bool:
        return self.peer_asn == self.local_asn or self.dynamic_asn == "internal"

    @property
    def hops(self) -> int:
        """Hops to the peer for GTSM: ``ebgp_multihop`` or 1."""
        return self.ebgp_multihop or 1

    @property
    def send_ttl(self) -> int:
        """TTL / hop limit of our packets (RFC 4271 §5.1.3 single hop eBGP, RFC 5082)."""
        if self.gtsm:
            return 255
        if self.ebgp_multihop is not None:
            return self.ebgp_multihop
        return 64 if self.internal else 1

    @property
    def min_ttl(self) -> int | None:
        """Minimum TTL we accept (GTSM) or None."""
        return 255 - self.hops + 1 if self.gtsm else None

    def with_families_for(self, prefixes: Iterable[Prefix | RouteKey]) -> BgpPeerConfig:
        """This config with ``families`` derived (if not set) from the peer address and
        ``prefixes``."""
        if self.families:
            return self
        if self.unnumbered:
            return attrs.evolve(self, families=(IPV4_UNICAST, IPV6_UNICAST))
        fams: set[Family] = {IPV4_UNICAST if self.peer_address.version == 4 else IPV6_UNICAST}
        fams.update(family_of(p) for p in prefixes)
        ordered = tuple(f for f in (IPV4_UNICAST, IPV6_UNICAST) if f in fams)
        return attrs.evolve(self, families=ordered)

    def session_config(self, *, restarting: bool = False) -> SessionConfig:
        """The core's configuration. A copy with renames on purpose: ``protocols/``
        imports nothing from ``speaker`` (sans-IO, a test checks), so its
        :class:`~protocols.bgp.SessionConfig` has its own fields and names (RFC 4271's
        ConnectRetryTime); what only the runtime uses (addresses, sockets, TTLs,
        passwords) stays here. ``restarting`` sets the Graceful Restart capability's R
        bit (RFC 4724 §3: we came back from a restart within the restart time)."""
        families = self.families or (
            (IPV4_UNICAST, IPV6_UNICAST)
            if self.unnumbered
            else (IPV4_UNICAST,)
            if self.peer_address.version == 4
            else (IPV6_UNICAST,)
        )
        graceful_restart = None
        if self.graceful_restart:
            graceful_restart = graceful_restart_capability(
                restart_time=self.graceful_restart_time,
                families=families,
                restarting=restarting,
                forwarding_preserved=True,
                notification=True,
            )
        return SessionConfig(
            local_asn=self.local_asn,
            peer_asn=self.peer_asn,
            dynamic_asn=self.dynamic_asn,
            router_id=self.router_id,
            hold_time=self.hold_time,
            keepalive_time=self.keepalive_time,
            connect_retry_time=self.connect_retry,
            connect_retry_max=self.connect_retry_max,
            connect_time=self.connect_time,
            connect_retry_steady=CONNECT_RETRY_STEADY,
            passive=self.passive,
            families=families,
            extended_message=self.extended_message,
            extended_next_hop=(
                (IPV4_UNICAST_IPV6_NEXT_HOP,) if self.extended_next_hop or self.unnumbered else ()
            ),
            hostname=self.hostname,
            software_version="speaker",
            extra_capabilities=(BfdStrictModeCapability(),) if self.bfd_strict else (),
            graceful_restart=graceful_restart,
        )


# ---- text forms -------------------------------------------------------------------


def _prefix(text: str) -> Prefix:
    try:
        return ipaddress.ip_network(text.strip())
    except ValueError as exc:
        raise BgpConfigError(f"bad prefix {text!r}: {exc}") from None


def _int(key: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise BgpConfigError(f"bad {key}: {text!r}") from None


_ORIGINS = {
    "igp": Origin.IGP,
    "egp": Origin.EGP,
    "incomplete": Origin.INCOMPLETE,
    "?": Origin.INCOMPLETE,
}


def _attributes(fields: Mapping[str, Any]) -> RouteAttributes:
    communities: list[int] = []
    large: list[LargeCommunity] = []
    kw: dict[str, Any] = {}
    try:
        for key, value in fields.items():
            k = key.replace("_", "-")
            values = value if isinstance(value, list) else [value]
            if k in ("community", "communities"):
                communities += [parse_community(str(v)) for v in values]
            elif k in ("large", "large-community", "large-communities"):
                large += [parse_large_community(str(v)) for v in values]
            elif k == "med":
                kw["med"] = _int(k, str(value))
            elif k == "local-pref":
                kw["local_pref"] = _int(k, str(value))
            elif k == "origin":
                if str(value).lower() not in _ORIGINS:
                    raise BgpConfigError(f"bad origin {value!r}")
                kw["origin"] = _ORIGINS[str(value).lower()]
            elif k != "prefix":
                raise BgpConfigError(f"unknown route attribute {key!r}")
    except ValueError as exc:  # LocalProtocolError from the community parsers
        raise BgpConfigError(str(exc)) from None
    return RouteAttributes(communities=communities, large_communities=large, **kw)


def parse_announce(text: str) -> tuple[Prefix, RouteAttributes]:
    """``"198.19.0.1/32,community=65000:1,community=no-export,med=10,local-pref=200,
    large=1:2:3,origin=igp"`` -> (prefix, attributes)."""
    head, *rest = text.split(",")
    fields: dict[str, list[str]] = {}
    for item in rest:
        key, sep, value = item.partition("=")
        if not sep:
            raise BgpConfigError(f"bad route attribute {item!r} in {text!r}")
        fields.setdefault(key.strip(), []).append(value.strip())
    flat: dict[str, Any] = {k: (v if len(v) > 1 else v[0]) for k, v in fields.items()}
    return _prefix(head), _attributes(flat)


def parse_route_entry(entry: object) -> tuple[Prefix, RouteAttributes]:
    """One element of a routes file: an ``--announce`` string or an object with
    ``prefix`` and optional ``communities``, ``large_communities``, ``med``,
    ``local_pref``, ``origin``."""
    if isinstance(entry, str):
        return parse_announce(entry)
    if isinstance(entry, dict) and "prefix" in entry:
        return _prefix(str(entry["prefix"])), _attributes(entry)
    raise BgpConfigError(f"bad route entry {entry!r}")


def prefix_range(spec: str) -> list[Prefix]:
    """``"198.19.0.0/16:100000"``: the first N host routes (/32 or /128) of a network."""
    net_text, sep, count_text = spec.rpartition(":")
    if not sep or "/" not in net_text:
        raise BgpConfigError(f"bad range {spec!r} (want NETWORK/LEN:COUNT)")
    net = _prefix(net_text)
    count = _int("count", count_text)
    if count > net.num_addresses:
        raise BgpConfigError(f"{net} holds fewer than {count} addresses")
    first = int(net.network_address)
    if net.version == 4:
        return [ipaddress.IPv4Network((first + i, 32)) for i in range(count)]
    return [ipaddress.IPv6Network((first + i, 128)) for i in range(count)]
