"""Events returned by :class:`~protocols.bgp.connection.Connection` methods.

All times are monotonic seconds (floats) as passed in by the caller.
"""

from __future__ import annotations

from ipaddress import IPv4Address

import attrs

from .capabilities import Capability, GracefulRestartCapability
from .constants import AFI, SAFI
from .context import CodecContext
from .fsm import State
from .messages import OpenMessage
from .update import DecodedUpdate


@attrs.frozen(kw_only=True)
class NegotiatedSession:
    """What the OPEN exchange settled (RFC 4271 §4.2, RFC 5492 and friends).

    ``hold_time`` is in whole seconds (0 = no hold/keepalive timers);
    ``keepalive_time`` in seconds (hold_time / 3 unless configured lower).
    ``families`` holds (AFI, SAFI) pairs both sides advertised (IPv4 unicast
    implied for a speaker without MP capabilities, RFC 4760 §8).
    """

    local_asn: int
    peer_asn: int
    peer_router_id: IPv4Address
    hold_time: int
    keepalive_time: float
    asn4: bool
    families: frozenset[tuple[int, int]]
    route_refresh: bool
    enhanced_route_refresh: bool
    extended_message: bool
    extended_next_hop: frozenset[tuple[int, int, int]]
    graceful_restart: GracefulRestartCapability | None
    peer_capabilities: tuple[Capability, ...]
    local_capabilities: tuple[Capability, ...]
    peer_hostname: str | None = None
    peer_domain: str | None = None
    peer_software_version: str | None = None

    @property
    def internal(self) -> bool:
        """iBGP session (same AS on both sides)."""
        return self.local_asn == self.peer_asn

    @property
    def codec_context(self) -> CodecContext:
        return CodecContext(asn4=self.asn4, extended_message=self.extended_message)


@attrs.frozen(kw_only=True)
class StateChanged:
    old: State
    new: State
    reason: str


@attrs.frozen(kw_only=True)
class ShouldConnect:
    """Open an outgoing TCP connection to the peer (abort any attempt in progress)."""


@attrs.frozen(kw_only=True)
class ShouldClose:
    """Flush ``data_to_send()`` then close the TCP connection (or abort the attempt)."""

    reason: str


@attrs.frozen(kw_only=True)
class OpenReceived:
    """The peer's OPEN was accepted; check other connections for a collision (RFC 4271 §6.8)."""

    open: OpenMessage


@attrs.frozen(kw_only=True)
class Established:
    negotiated: NegotiatedSession


@attrs.frozen(kw_only=True)
class UpdateReceived(DecodedUpdate):
    """An UPDATE; when ``treat_as_withdraw`` is set its NLRI must be handled as withdrawn
    (the decoded message and its RFC 7606 notes, as an event)."""


@attrs.frozen(kw_only=True)
class EndOfRib:
    """An End-of-RIB marker (RFC 4724 §2) for ``(afi, safi)``."""

    afi: int = AFI.IPV4
    safi: int = SAFI.UNICAST


@attrs.frozen(kw_only=True)
class RouteRefreshReceived:
    """ROUTE-REFRESH (RFC 2918); ``subtype`` 0 normal, 1 BoRR, 2 EoRR (RFC 7313)."""

    afi: int
    safi: int
    subtype: int


@attrs.frozen(kw_only=True)
class NotificationReceived:
    code: int
    subcode: int
    data: bytes
    shutdown_message: str | None = None


@attrs.frozen(kw_only=True)
class NotificationSent:
    code: int
    subcode: int
    data: bytes
    reason: str = ""


Event = (
    StateChanged
    | ShouldConnect
    | ShouldClose
    | OpenReceived
    | Established
    | UpdateReceived
    | EndOfRib
    | RouteRefreshReceived
    | NotificationReceived
    | NotificationSent
)
