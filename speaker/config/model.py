"""The configuration objects: frozen attrs classes, one per TOML table.

Two layers.  The classes named like the TOML tables (:class:`SpeakerSettings`,
:class:`PeerSpec`, :class:`Pool`, :class:`Advertisement`, :class:`Service`, and
:class:`~speaker.bfd.profile.BfdProfile` reused as is) are what cattrs structures
from the file; their attrs validators check one value at a time.  :class:`Peer` and
:class:`Config` are the *effective* configuration the runtime uses: references
resolved, defaults filled in (``my_asn``, hold/keepalive, password from its file).
They are built by :mod:`speaker.config.validate` only after every rule has passed.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from protocols.bgp import LargeCommunity, parse_community
from protocols.bgp.errors import LocalProtocolError
from speaker.addresses import IPAddress, IPNetwork, is_unnumbered_address
from speaker.bfd.profile import BfdProfile
from speaker.config.durations import format_duration
from speaker.config.selectors import LabelSelector, frozen_map, selects

__all__ = [
    "ALLOCATION_MODES",
    "DEFAULT_STATE_FILE",
    "AddressRange",
    "Advertisement",
    "Community",
    "Config",
    "ConfigIssue",
    "ControlSettings",
    "HealthCheck",
    "IPAddress",
    "IPNetwork",
    "MetricsSettings",
    "Peer",
    "PeerSpec",
    "Pool",
    "Service",
    "SpeakerSettings",
]

DEFAULT_STATE_FILE = Path("/var/lib/speaker/state.json")
DEFAULT_CONTROL_SOCKET = Path("/run/speaker/speaker.sock")
DEFAULT_METRICS_ADDRESS = "127.0.0.1:7472"
MAX_ASN = 0xFFFFFFFF


@attrs.frozen
class ConfigIssue:
    """One problem (or warning) found in a configuration, at a TOML ``path``
    (``peers[1].bfd_profile``); ``str()`` is ``"path: message"``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


# ---- single-value validators (messages read well after "path: ") ---------------------


def in_range(low: int, high: int, unit: str = "") -> Any:
    """attrs validator: an integer in [low, high]."""
    suffix = f" {unit}" if unit else ""

    def check(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
        if value < low:
            raise ValueError(f"{value} is below the minimum of {low}{suffix}")
        if value > high:
            raise ValueError(f"{value} is above the maximum of {high}{suffix}")

    return check


def optional_in_range(low: int, high: int, unit: str = "") -> Any:
    inner = in_range(low, high, unit)

    def check(instance: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
        if value is not None:
            inner(instance, attribute, value)

    return check


def duration_range(low: timedelta, high: timedelta) -> Any:
    """attrs validator: a duration in [low, high]."""

    def check(instance: object, attribute: attrs.Attribute[timedelta], value: timedelta) -> None:
        if value < low:
            raise ValueError(
                f"{format_duration(value)} is below the minimum of {format_duration(low)}"
            )
        if value > high:
            raise ValueError(
                f"{format_duration(value)} is above the maximum of {format_duration(high)}"
            )

    return check


def not_empty(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: a non-empty string (or collection)."""
    if not value or (isinstance(value, str) and not value.strip()):
        raise ValueError("must not be empty")


def _ipv4(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, ipaddress.IPv4Address):
        raise ValueError(f"{value} is not an IPv4 address (a router ID is a 32-bit IPv4 address)")


def _multihop(instance: object, attribute: Any, value: bool | int) -> None:
    if not isinstance(value, bool) and not 1 <= value <= 255:
        raise ValueError(f"{value} is not a TTL (use true, false or 1-255)")


#: ``peer_asn`` as a word: the AS the peer's OPEN brings is taken, provided it is
#: ours ("internal", iBGP) or not ours ("external", eBGP) (MetalLB's dynamicASN).
DYNAMIC_ASN = ("internal", "external")


def _peer_asn(instance: object, attribute: attrs.Attribute[Any], value: int | str) -> None:
    if isinstance(value, str):
        if value.strip().isdigit():
            raise ValueError(f'"{value}" is a string: write the AS number without quotes')
        if value not in DYNAMIC_ASN:
            raise ValueError(f'"{value}" is not an AS number, "internal" or "external"')
        return
    in_range(1, MAX_ASN)(instance, attribute, value)


def _vrf_name(instance: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    """A Linux device name (the VRF device): 1-15 bytes, no "/", no whitespace."""
    if value is None:
        return
    if not value or len(value.encode()) > 15 or "/" in value or any(c.isspace() for c in value):
        raise ValueError(f'"{value}" is not a device name (1-15 characters, no "/" or spaces)')


def _hold_time(instance: object, attribute: attrs.Attribute[Any], value: timedelta | None) -> None:
    if value is None or not value:
        return
    if value < timedelta(seconds=3):
        raise ValueError(f"{format_duration(value)} is below the minimum of 3s (use 0 or >= 3s)")
    if value % timedelta(seconds=1):
        raise ValueError(f"{format_duration(value)} is not a whole number of seconds")
    if value > timedelta(seconds=65535):
        raise ValueError(f"{format_duration(value)} is above the maximum of 65535s")


#: RFC 4724 §3: the Restart Time is 12 bits of seconds.
MAX_GRACEFUL_RESTART_TIME = timedelta(seconds=4095)


def _restart_time(instance: object, attribute: attrs.Attribute[Any], value: timedelta) -> None:
    if value < timedelta(0) or value > MAX_GRACEFUL_RESTART_TIME:
        raise ValueError(
            f"{format_duration(value)} is outside 0s..4095s (RFC 4724: 12 bits of seconds)"
        )
    if value % timedelta(seconds=1):
        raise ValueError(f"{format_duration(value)} is not a whole number of seconds")


# ---- values with a text form ------------------------------------------------------------


@attrs.frozen
class AddressRange:
    """One entry of a pool's ``addresses``: a CIDR (``"192.0.2.0/28"``) or an inclusive
    range (``"192.0.2.10-192.0.2.20"``)."""

    first: IPAddress
    last: IPAddress
    text: str = attrs.field(eq=False)

    @classmethod
    def parse(cls, text: str) -> AddressRange:
        body = text.strip()
        if "-" in body:
            left, _, right = body.partition("-")
            try:
                first = ipaddress.ip_address(left.strip())
                last = ipaddress.ip_address(right.strip())
            except ValueError:
                raise ValueError(
                    f'"{text}" is not a range (write "first-last", e.g. "192.0.2.10-192.0.2.20")'
                ) from None
            if first.version != last.version:
                raise ValueError(f'"{text}" mixes IPv4 and IPv6')
            if int(last) < int(first):
                raise ValueError(f'"{text}" ends before it starts')
            return cls(first, last, body)
        if "/" not in body:
            raise ValueError(
                f'"{text}" is neither a CIDR nor a range (for a single address write "{body}/32"'
                ' or "/128")'
            )
        try:
            net = ipaddress.ip_network(body)
        except ValueError:
            try:
                loose = ipaddress.ip_network(body, strict=False)
            except ValueError:
                raise ValueError(f'"{text}" is not a CIDR') from None
            raise ValueError(f'"{text}" has host bits set (did you mean "{loose}"?)') from None
        return cls(net.network_address, net.broadcast_address, body)

    @property
    def version(self) -> int:
        return self.first.version

    @property
    def size(self) -> int:
        return int(self.last) - int(self.first) + 1

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        return address.version == self.version and int(self.first) <= int(address) <= int(self.last)

    def overlaps(self, other: AddressRange) -> bool:
        return (
            self.version == other.version
            and int(self.first) <= int(other.last)
            and int(other.first) <= int(self.last)
        )

    def networks(self) -> list[IPNetwork]:
        """The fewest CIDRs covering exactly this range."""
        return list(ipaddress.summarize_address_range(self.first, self.last))

    def __str__(self) -> str:
        return self.text


@attrs.frozen
class Community:
    """One entry of an advertisement's ``communities``: ``"65000:100"``, a well-known
    name (``"no-advertise"``), or ``"large:1:2:3"`` (RFC 8092)."""

    value: int | LargeCommunity
    text: str = attrs.field(eq=False)

    @classmethod
    def parse(cls, text: str) -> Community:
        body = text.strip()
        try:
            if body.lower().startswith("large:"):
                return cls(LargeCommunity.parse(body[len("large:") :]), body)
            if body.count(":") == 2:
                return cls(LargeCommunity.parse(body), body)
            return cls(parse_community(body), body)
        except LocalProtocolError:
            raise ValueError(
                f'"{text}" is not a community (write "65000:100" with 16-bit halves, a'
                ' well-known name such as "no-export", or "large:1:2:3" with 32-bit parts)'
            ) from None

    def __str__(self) -> str:
        return self.text


ALLOCATION_MODES = ("config", "node-local")


def _allocation_mode(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in ALLOCATION_MODES:
        raise ValueError(
            f'"{value}" is not an allocation mode (use "config": addresses written into this'
            ' file by speaker allocate, or "node-local")'
        )


# ---- the TOML tables ----------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class SpeakerSettings:
    """``[speaker]``: this node."""

    router_id: ipaddress.IPv4Address | None = attrs.field(default=None, validator=_ipv4)
    my_asn: int | None = attrs.field(default=None, validator=optional_in_range(1, MAX_ASN))
    node_name: str = attrs.field(factory=socket.gethostname, validator=not_empty)
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=frozen_map)
    #: RFC 5882 §3.2 dampening after a BFD failure. 0.5 s: a path that came back is
    #: re-used in about a second (BFD back at the slow rate, then this), while a link
    #: flapping faster than twice a second never carries routes.
    hold_down: timedelta = attrs.field(
        default=timedelta(milliseconds=500),
        validator=duration_range(timedelta(0), timedelta(minutes=10)),
    )
    state_file: Path = DEFAULT_STATE_FILE
    #: RFC 8326 graceful shutdown on a planned stop (SIGTERM): every route is announced
    #: again with GRACEFUL_SHUTDOWN (and LOCAL_PREF 0 on iBGP), and the Cease waits this
    #: long after they are sent. 0: no drain (the Cease at once).
    drain_time: timedelta = attrs.field(
        default=timedelta(0), validator=duration_range(timedelta(0), timedelta(minutes=10))
    )
    #: SCHED_FIFO priority of the event loop's thread (0: the normal policy), so that
    #: BFD runs on time on a node whose other work keeps every CPU busy
    #: (speaker.realtime; worker threads never run at it).
    realtime_priority: int = attrs.field(default=0, validator=in_range(0, 99))
    #: Where pool services get their address: ``"config"``, written into the file by
    #: ``speaker allocate`` (the same on every node), or ``"node-local"``, each node
    #: alone with its state file (unsafe with more than one node).
    allocation: str = attrs.field(default="config", validator=_allocation_mode)


def _file_mode(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not value or any(c not in "01234567" for c in value) or int(value, 8) > 0o777:
        raise ValueError(f'"{value}" is not a file mode (octal digits, e.g. "0600")')
    if int(value, 8) & 0o600 != 0o600:
        raise ValueError(f'"{value}" must let the owner read and write the socket (e.g. "0600")')


def _listen_address(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    host, _ = split_host_port(value)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f'"{value}" is not "address:port" with an IP address (e.g. "127.0.0.1:7472",'
            ' "[::1]:7472")'
        ) from None


@attrs.frozen(kw_only=True)
class ControlSettings:
    """``[control]``: the local control socket of ``speaker show``, ``reload``..."""

    socket: Path = DEFAULT_CONTROL_SOCKET
    mode: str = attrs.field(default="0600", validator=_file_mode)

    @property
    def mode_bits(self) -> int:
        return int(self.mode, 8)


@attrs.frozen(kw_only=True)
class MetricsSettings:
    """``[metrics]``: the Prometheus endpoint (``http://ADDRESS/metrics``)."""

    enabled: bool = True
    address: str = attrs.field(default=DEFAULT_METRICS_ADDRESS, validator=_listen_address)
    #: Per-service series (``speaker_service_*{service}``) while the config has at
    #: most this many services; above it only the ``speaker_services`` counts (a
    #: scrape of 65,536 services would be 6 MB every time).
    service_series_limit: int = attrs.field(default=1000, validator=attrs.validators.ge(0))

    @property
    def host_port(self) -> tuple[str, int]:
        return split_host_port(self.address)


#: ``[[peers]]`` with neither ``peer_address`` nor ``interface`` (load and validation).
NO_PEER_ADDRESS = (
    "required key is missing (or set interface, without peer_address, for an unnumbered"
    " peer: the router on that interface, its IPv6 link-local address learnt there)"
)


@attrs.frozen(kw_only=True)
class PeerSpec:
    """``[[peers]]`` as written; :class:`Peer` is the effective form."""

    name: str = attrs.field(validator=not_empty)
    #: None only for an unnumbered peer (``interface`` set): validation checks it.
    peer_address: IPAddress | None = None
    #: An AS number, or "internal" / "external" (:data:`DYNAMIC_ASN`).
    peer_asn: int | str = attrs.field(validator=_peer_asn)
    my_asn: int | None = attrs.field(default=None, validator=optional_in_range(1, MAX_ASN))
    peer_port: int = attrs.field(default=179, validator=in_range(1, 65535))
    source_address: IPAddress | None = None
    interface: str | None = None
    #: The Linux VRF device the peer is reached in (sessions, BFD, route lookups).
    vrf: str | None = attrs.field(default=None, validator=_vrf_name)
    bfd_profile: str | None = None
    bfd_strict: bool = False
    hold_time: timedelta | None = attrs.field(default=None, validator=_hold_time)
    keepalive_time: timedelta | None = None
    connect_time: timedelta = attrs.field(
        default=timedelta(seconds=10),
        validator=duration_range(timedelta(milliseconds=1), timedelta(seconds=65535)),
    )
    password: str | None = attrs.field(default=None, repr=False)
    password_file: Path | None = None
    ebgp_multihop: bool | int = attrs.field(default=False, validator=_multihop)
    passive: bool = False
    listen: bool = True
    connect_retry: timedelta = attrs.field(
        default=timedelta(seconds=1),
        validator=duration_range(timedelta(milliseconds=10), timedelta(seconds=65535)),
    )
    connect_retry_max: timedelta = attrs.field(
        default=timedelta(seconds=60),
        validator=duration_range(timedelta(milliseconds=10), timedelta(seconds=65535)),
    )
    node_selectors: tuple[LabelSelector, ...] = ()
    #: This session's BGP identifier, instead of the speaker's (MetalLB's routerID).
    router_id: ipaddress.IPv4Address | None = attrs.field(default=None, validator=_ipv4)
    #: Only the family of ``peer_address`` on this session (MetalLB's disableMP).
    disable_mp: bool = False
    #: RFC 4724 graceful restart (with RFC 8538): the OPEN carries the capability, and
    #: the restart path (``speaker restart``, SIGUSR2) leaves our routes at the router.
    graceful_restart: bool = False
    graceful_restart_time: timedelta = attrs.field(
        default=timedelta(seconds=120), validator=_restart_time
    )


@attrs.frozen(kw_only=True)
class Pool:
    """``[[pools]]``: addresses that services take their address from."""

    name: str = attrs.field(validator=not_empty)
    addresses: tuple[AddressRange, ...] = attrs.field(validator=not_empty)
    auto_assign: bool = True
    announce_all: bool = False

    def __contains__(self, address: object) -> bool:
        return any(address in r for r in self.addresses)

    @property
    def size(self) -> int:
        return sum(r.size for r in self.addresses)

    @property
    def versions(self) -> frozenset[int]:
        return frozenset(r.version for r in self.addresses)

    def networks(self) -> list[IPNetwork]:
        return [net for r in self.addresses for net in r.networks()]

    def iter_addresses(self) -> Iterator[IPAddress]:
        """Every address, lowest first."""
        for r in sorted(self.addresses, key=lambda r: (r.version, r.first)):
            start, stop = int(r.first), int(r.last)
            make = ipaddress.IPv4Address if r.version == 4 else ipaddress.IPv6Address
            for value in range(start, stop + 1):
                yield make(value)


@attrs.frozen(kw_only=True)
class Advertisement:
    """``[[advertisements]]``: which pools go to which peers, and how."""

    name: str = attrs.field(validator=not_empty)
    pools: tuple[str, ...] = ()
    aggregation_length: int = attrs.field(default=32, validator=in_range(1, 32))
    aggregation_length_v6: int = attrs.field(default=128, validator=in_range(1, 128))
    local_pref: int | None = attrs.field(default=None, validator=optional_in_range(0, MAX_ASN))
    communities: tuple[Community, ...] = ()
    peers: tuple[str, ...] = ()

    def length_for(self, version: int) -> int:
        return self.aggregation_length if version == 4 else self.aggregation_length_v6

    def selects_pool(self, pool: str) -> bool:
        return not self.pools or pool in self.pools

    def selects_peer(self, peer: str) -> bool:
        return not self.peers or peer in self.peers


def _tcp_target(instance: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None:
        split_host_port(value)


def split_host_port(text: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[2001:db8::1]:port"`` -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f'"{text}" is not "host:port" (e.g. "127.0.0.1:8080", "[::1]:80")')
    return host, int(port)


def _http_url(instance: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is None:
        return
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f'"{value}" is not an http:// or https:// URL')


@attrs.frozen(kw_only=True)
class HealthCheck:
    """``health`` of a service: exactly one of ``tcp``, ``http`` or ``exec``.

    A service becomes healthy after ``rise`` consecutive successes and unhealthy after
    ``fall`` consecutive failures; each probe must finish within ``timeout``.
    """

    tcp: str | None = attrs.field(default=None, validator=_tcp_target)
    http: str | None = attrs.field(default=None, validator=_http_url)
    expected_status: int = attrs.field(default=200, validator=in_range(100, 599))
    exec: tuple[str, ...] | None = None
    interval: timedelta = attrs.field(
        default=timedelta(seconds=5),
        validator=duration_range(timedelta(milliseconds=10), timedelta(hours=1)),
    )
    timeout: timedelta = attrs.field(
        default=timedelta(seconds=2),
        validator=duration_range(timedelta(milliseconds=1), timedelta(hours=1)),
    )
    rise: int = attrs.field(default=2, validator=in_range(1, 100))
    fall: int = attrs.field(default=3, validator=in_range(1, 100))

    def __attrs_post_init__(self) -> None:
        kinds = [k for k in ("tcp", "http", "exec") if getattr(self, k) is not None]
        if len(kinds) != 1:
            got = " and ".join(kinds) if kinds else "none"
            raise ValueError(f"set exactly one of tcp, http or exec (got {got})")
        if self.exec is not None and not self.exec:
            raise ValueError('exec needs a command (a non-empty array, e.g. ["/bin/true"])')

    @property
    def kind(self) -> str:
        """``"tcp"``, ``"http"`` or ``"exec"``."""
        return "tcp" if self.tcp is not None else "http" if self.http is not None else "exec"


@attrs.frozen(kw_only=True)
class Service:
    """``[[services]]``: one service address, with a fixed ``address`` or one taken from
    ``pool`` (see :mod:`speaker.allocate`), announced while ``health`` passes (always
    when there is no health check).

    In the effective :class:`Config`, ``pool`` is always set: to the pool containing a
    fixed ``address`` when the file named none.
    """

    name: str = attrs.field(validator=not_empty)
    address: IPAddress | None = None
    pool: str | None = None
    health: HealthCheck | None = None


# ---- the effective configuration -------------------------------------------------------


@attrs.frozen(kw_only=True)
class Peer:
    """One BGP neighbour, effective: ``my_asn``, hold/keepalive, the BFD profile and
    the password are resolved.  The password never appears in ``repr``."""

    name: str
    peer_address: IPAddress
    #: As written: an AS number, "internal" or "external" (:attr:`expected_asn`).
    peer_asn: int | str
    my_asn: int
    peer_port: int = 179
    source_address: IPAddress | None = None
    interface: str | None = None
    vrf: str | None = None
    bfd_profile: BfdProfile | None = None
    #: BGP waits for BFD Up (and the hold-down) before every session, the first too.
    bfd_strict: bool = False
    hold_time: timedelta = timedelta(seconds=90)
    keepalive_time: timedelta = timedelta(seconds=30)
    connect_time: timedelta = timedelta(seconds=10)
    password: str | None = attrs.field(default=None, repr=False)
    password_file: Path | None = None
    ebgp_multihop: bool | int = False
    passive: bool = False
    listen: bool = True
    connect_retry: timedelta = timedelta(seconds=1)
    connect_retry_max: timedelta = timedelta(seconds=60)
    node_selectors: tuple[LabelSelector, ...] = ()
    router_id: ipaddress.IPv4Address | None = None
    disable_mp: bool = False
    graceful_restart: bool = False
    graceful_restart_time: timedelta = timedelta(seconds=120)

    @classmethod
    def resolved(
        cls,
        spec: PeerSpec,
        *,
        my_asn: int,
        bfd_profile: BfdProfile | None,
        hold_time: timedelta,
        keepalive_time: timedelta,
        password: str | None,
        password_file: Path | None,
    ) -> Peer:
        """``spec`` with what validation resolved: a Peer has a PeerSpec's fields (a
        test checks), so the others are taken from it by name."""
        return cls(
            **{
                **attrs.asdict(spec, recurse=False),
                "my_asn": my_asn,
                "bfd_profile": bfd_profile,
                "hold_time": hold_time,
                "keepalive_time": keepalive_time,
                "password": password,
                "password_file": password_file,
            }
        )

    @property
    def internal(self) -> bool:
        """iBGP: LOCAL_PREF is only sent to these (RFC 4271 §5.1.5)."""
        return self.peer_asn in (self.my_asn, "internal")

    @property
    def expected_asn(self) -> int | None:
        """The AS the peer's OPEN must bring: ``my_asn`` for "internal"; None for
        "external" (any AS but ``my_asn``, learned from the OPEN)."""
        if self.peer_asn == "internal":
            return self.my_asn
        if isinstance(self.peer_asn, str):
            return None
        return self.peer_asn

    @property
    def dynamic_asn(self) -> str | None:
        """ "internal" or "external" when the AS is taken from the peer's OPEN."""
        return self.peer_asn if isinstance(self.peer_asn, str) else None

    @property
    def unnumbered(self) -> bool:
        """No ``peer_address``, an ``interface``: the router on that link, its IPv6
        link-local address learnt there; ``peer_address`` is ``fe80::%IFNAME``."""
        return is_unnumbered_address(self.peer_address)

    @property
    def multihop_ttl(self) -> int | None:
        """TTL to send with when ``ebgp_multihop`` is set (``true`` means 255)."""
        if self.ebgp_multihop is True:
            return 255
        if self.ebgp_multihop is False:
            return None
        return int(self.ebgp_multihop)

    @property
    def multihop(self) -> bool:
        """The peer is not directly connected (BFD runs multihop, RFC 5883; no echo)."""
        ttl = self.multihop_ttl
        return ttl is not None and ttl > 1

    def applies_to(self, labels: Mapping[str, str]) -> bool:
        """Whether this node (with ``labels``) peers with it (``node_selectors``)."""
        return selects(self.node_selectors, labels)


def _index(items: tuple[Any, ...]) -> Mapping[str, Any]:
    return frozen_map({item.name: item for item in items})


@attrs.frozen(kw_only=True)
class Config:
    """The whole effective configuration; built by :func:`speaker.config.load_config`.

    ``router_id`` is ``[speaker] router_id`` or else the first IPv4 ``source_address``
    among the peers that apply to this node (file order, so stable); ``None`` means the
    runtime derives it from the host's addresses (:mod:`speaker.routerid`).
    """

    speaker: SpeakerSettings = attrs.field(factory=SpeakerSettings)
    router_id: ipaddress.IPv4Address | None = None
    bfd_profiles: tuple[BfdProfile, ...] = ()
    peers: tuple[Peer, ...] = ()
    pools: tuple[Pool, ...] = ()
    advertisements: tuple[Advertisement, ...] = ()
    services: tuple[Service, ...] = ()
    control: ControlSettings = attrs.field(factory=ControlSettings)
    metrics: MetricsSettings = attrs.field(factory=MetricsSettings)
    warnings: tuple[ConfigIssue, ...] = attrs.field(default=(), eq=False)
    source: Path | None = attrs.field(default=None, eq=False)

    _peers_by_name: Mapping[str, Peer] = attrs.field(init=False, repr=False, eq=False)
    _profiles_by_name: Mapping[str, BfdProfile] = attrs.field(init=False, repr=False, eq=False)
    _pools_by_name: Mapping[str, Pool] = attrs.field(init=False, repr=False, eq=False)
    _services_by_name: Mapping[str, Service] = attrs.field(init=False, repr=False, eq=False)
    _services_by_pool: Mapping[str, tuple[Service, ...]] = attrs.field(
        init=False, repr=False, eq=False
    )

    def __attrs_post_init__(self) -> None:
        by_pool: dict[str, list[Service]] = {}
        for service in self.services:
            if service.pool is not None:
                by_pool.setdefault(service.pool, []).append(service)
        set_ = object.__setattr__
        set_(self, "_peers_by_name", _index(self.peers))
        set_(self, "_profiles_by_name", _index(self.bfd_profiles))
        set_(self, "_pools_by_name", _index(self.pools))
        set_(self, "_services_by_name", _index(self.services))
        set_(self, "_services_by_pool", frozen_map({k: tuple(v) for k, v in by_pool.items()}))

    def peer(self, name: str) -> Peer:
        """Raises KeyError."""
        return self._peers_by_name[name]

    def profile(self, name: str) -> BfdProfile:
        """Raises KeyError."""
        return self._profiles_by_name[name]

    def pool(self, name: str) -> Pool:
        """Raises KeyError."""
        return self._pools_by_name[name]

    def service(self, name: str) -> Service:
        """Raises KeyError."""
        return self._services_by_name[name]

    def services_in(self, pool: str) -> tuple[Service, ...]:
        """The services taking or holding an address in ``pool``, in file order."""
        return self._services_by_pool.get(pool, ())

    def pool_of(self, address: IPAddress) -> Pool | None:
        return next((p for p in self.pools if address in p), None)

    @property
    def node_name(self) -> str:
        return self.speaker.node_name

    @property
    def local_peers(self) -> tuple[Peer, ...]:
        """The peers whose ``node_selectors`` select this node (``[speaker] labels``)."""
        return tuple(p for p in self.peers if p.applies_to(self.speaker.labels))
