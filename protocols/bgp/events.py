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
from .graceful_restart import GracefulRestartNegotiation, hard_reset_cause
from .messages import NotificationMessage, OpenMessage
from .update import DecodedUpdate


@attrs.frozen(kw_only=True)
class NegotiatedSession:
    """What the OPEN exchange settled (RFC 4271 §4.2, RFC 5492 and friends).

    ``hold_time`` is in whole seconds (0 = no hold/keepalive timers);
    ``keepalive_time`` in seconds (hold_time / 3 unless configured lower).
    ``families`` holds (AFI, SAFI) pairs both sides advertised (IPv4 unicast
    implied for a speaker without MP capabilities, RFC 4760 §8).
    ``graceful_restart`` is the peer's Graceful Restart capability when we sent one
    too; :attr:`graceful_restart_negotiation` has the whole picture (RFC 4724, 8538).
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

    def ipv6_next_hop_for(self, afi: int, safi: int) -> bool:
        """RFC 8950 §4: NLRI of (``afi``, ``safi``) may be sent with an IPv6 next hop on
        this session: the family was negotiated and both sides listed the tuple
        <afi, safi, 2> in their Extended Next Hop Encoding capability."""
        return (afi, safi) in self.families and (afi, safi, 2) in self.extended_next_hop

    @property
    def codec_context(self) -> CodecContext:
        return CodecContext(asn4=self.asn4, extended_message=self.extended_message)

    @property
    def graceful_restart_negotiation(self) -> GracefulRestartNegotiation:
        """Graceful restart as the OPEN exchange settled it: whether both sides
        advertised it, the peer's Restart Time and flags, the families concerned."""
        return GracefulRestartNegotiation.from_capabilities(
            self.local_capabilities, self.peer_capabilities, self.families
        )


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
    """A NOTIFICATION from the peer, as on the wire. For a Hard Reset (RFC 8538, Cease
    subcode 9) :attr:`hard_reset_cause` is the NOTIFICATION it stands for, and
    ``shutdown_message`` is the RFC 9003 text of that inner Cease, if any."""

    code: int
    subcode: int
    data: bytes
    shutdown_message: str | None = None

    @property
    def message(self) -> NotificationMessage:
        return NotificationMessage(code=self.code, subcode=self.subcode, data=self.data)

    @property
    def hard_reset_cause(self) -> NotificationMessage | None:
        """The encapsulated NOTIFICATION of a Hard Reset (RFC 8538 §3), else None."""
        return hard_reset_cause(self.message)


@attrs.frozen(kw_only=True)
class NotificationSent:
    """A NOTIFICATION we sent, as on the wire (a Hard Reset when RFC 8538 asked for
    one: :attr:`hard_reset_cause` is then what it stands for)."""

    code: int
    subcode: int
    data: bytes
    reason: str = ""

    @property
    def message(self) -> NotificationMessage:
        return NotificationMessage(code=self.code, subcode=self.subcode, data=self.data)

    @property
    def hard_reset_cause(self) -> NotificationMessage | None:
        return hard_reset_cause(self.message)


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
