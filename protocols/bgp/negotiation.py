"""Local session configuration, the OPEN we send, and OPEN validation/negotiation.

RFC 4271 §6.2 (OPEN errors), RFC 6793 §4 (AS numbers), RFC 5492 (capabilities).
"""

from __future__ import annotations

from ipaddress import IPv4Address

import attrs

from .capabilities import (
    Capability,
    EnhancedRouteRefreshCapability,
    ExtendedMessageCapability,
    ExtendedNextHopCapability,
    ExtendedNextHopEntry,
    FourOctetAsCapability,
    FqdnCapability,
    GracefulRestartCapability,
    MultiprotocolCapability,
    RouteRefreshCapability,
    SoftwareVersionCapability,
)
from .constants import (
    AS_TRANS,
    IPV4_UNICAST,
    MIN_HOLD_TIME,
    OPEN_SENT_HOLD_TIME,
    NotifCode,
    OpenSubcode,
)
from .errors import LocalProtocolError, RemoteProtocolError
from .events import NegotiatedSession
from .messages import OpenMessage


@attrs.frozen(kw_only=True)
class SessionConfig:
    """Everything a :class:`~protocols.bgp.connection.Connection` needs to know locally.

    Times are seconds.  ``peer_asn`` None accepts any peer AS, or with ``dynamic_asn``
    "internal" only ours, "external" any but ours.  ``connect_retry_time``
    is the base of the exponential backoff (doubling per consecutive failure up to
    ``connect_retry_max``, jittered 0.75-1.0); ``damp_*`` drive peer-oscillation
    damping (see :class:`~protocols.bgp.backoff.Damper`).  ``connect_time``: how long
    one TCP connection attempt may last in Connect (the ConnectRetryTimer while
    connecting; None: the backoff delay, RFC 4271's single timer).  After the first
    failure, ``connect_retry_steady`` more consecutive failures also wait
    ``connect_retry_time``; the doubling starts after them.
    """

    local_asn: int
    peer_asn: int | None
    router_id: IPv4Address
    dynamic_asn: str | None = None
    hold_time: int = 90
    keepalive_time: float | None = None
    connect_retry_time: float = 5.0
    connect_retry_max: float = 120.0
    connect_time: float | None = None
    connect_retry_steady: int = 0
    open_hold_time: float = OPEN_SENT_HOLD_TIME
    passive: bool = False
    families: tuple[tuple[int, int], ...] = (IPV4_UNICAST,)
    route_refresh: bool = True
    enhanced_route_refresh: bool = False
    extended_message: bool = True
    extended_next_hop: tuple[ExtendedNextHopEntry, ...] = ()
    graceful_restart: GracefulRestartCapability | None = None
    hostname: str | None = None
    domain: str = ""
    software_version: str | None = None
    extra_capabilities: tuple[Capability, ...] = ()
    damp_base: float = 1.0
    damp_max: float = 300.0
    damp_stable_time: float = 120.0

    def __attrs_post_init__(self) -> None:
        if self.hold_time != 0 and not MIN_HOLD_TIME <= self.hold_time <= 0xFFFF:
            raise LocalProtocolError("hold_time must be 0 or 3..65535 seconds")
        if int(self.router_id) == 0:
            raise LocalProtocolError("router_id must not be 0.0.0.0")
        if not 0 < self.local_asn <= 0xFFFFFFFF:
            raise LocalProtocolError("local_asn out of range")
        if self.connect_retry_time <= 0:
            raise LocalProtocolError("connect_retry_time must be positive")
        if self.connect_time is not None and self.connect_time <= 0:
            raise LocalProtocolError("connect_time must be positive")

    def capabilities(self) -> tuple[Capability, ...]:
        """The capabilities advertised in our OPEN."""
        caps: list[Capability] = [
            MultiprotocolCapability(afi=afi, safi=safi) for afi, safi in self.families
        ]
        if self.route_refresh:
            caps.append(RouteRefreshCapability())
        if self.enhanced_route_refresh:
            caps.append(EnhancedRouteRefreshCapability())
        if self.extended_next_hop:
            caps.append(ExtendedNextHopCapability(entries=self.extended_next_hop))
        if self.extended_message:
            caps.append(ExtendedMessageCapability())
        if self.graceful_restart is not None:
            caps.append(self.graceful_restart)
        caps.append(FourOctetAsCapability(asn=self.local_asn))
        if self.hostname is not None:
            caps.append(FqdnCapability(hostname=self.hostname, domain=self.domain))
        if self.software_version is not None:
            caps.append(SoftwareVersionCapability(version=self.software_version))
        caps.extend(self.extra_capabilities)
        return tuple(caps)

    def open_message(self) -> OpenMessage:
        return OpenMessage.build(
            asn=self.local_asn,
            hold_time=self.hold_time,
            bgp_identifier=self.router_id,
            capabilities=self.capabilities(),
        )


def _open_error(subcode: int, reason: str, data: bytes = b"") -> RemoteProtocolError:
    return RemoteProtocolError(NotifCode.OPEN_MESSAGE_ERROR, subcode, data=data, reason=reason)


def peer_asn_of(peer: OpenMessage) -> int:
    """The peer's AS per RFC 6793 §4.1, checking My AS against the AS4 capability."""
    as4 = [c for c in peer.capabilities if isinstance(c, FourOctetAsCapability)]
    if not as4:
        if peer.my_as == AS_TRANS:
            raise _open_error(OpenSubcode.BAD_PEER_AS, "My AS is AS_TRANS without AS4 capability")
        return peer.my_as
    asn = as4[0].asn
    if asn in (0, AS_TRANS):
        raise _open_error(OpenSubcode.BAD_PEER_AS, f"invalid 4-octet AS {asn}")
    if peer.my_as not in (AS_TRANS, asn):
        raise _open_error(
            OpenSubcode.BAD_PEER_AS, f"My AS {peer.my_as} inconsistent with AS4 capability {asn}"
        )
    return asn


def negotiate(config: SessionConfig, peer: OpenMessage) -> NegotiatedSession:
    """Validate the peer's OPEN (RFC 4271 §6.2) and compute the session parameters.

    Raises :class:`RemoteProtocolError` with OPEN Message Error subcode 2 (Bad Peer
    AS), 3 (Bad BGP Identifier) or 6 (Unacceptable Hold Time).
    """
    peer_asn = peer_asn_of(peer)
    if config.peer_asn is not None and peer_asn != config.peer_asn:
        raise _open_error(
            OpenSubcode.BAD_PEER_AS, f"peer AS {peer_asn} != expected {config.peer_asn}"
        )
    if config.dynamic_asn == "internal" and peer_asn != config.local_asn:
        raise _open_error(OpenSubcode.BAD_PEER_AS, f"peer AS {peer_asn} is not ours: internal")
    if config.dynamic_asn == "external" and peer_asn == config.local_asn:
        raise _open_error(OpenSubcode.BAD_PEER_AS, f"peer AS {peer_asn} is ours: external")
    if 0 < peer.hold_time < MIN_HOLD_TIME:
        raise _open_error(
            OpenSubcode.UNACCEPTABLE_HOLD_TIME, f"hold time {peer.hold_time} below 3 seconds"
        )
    if int(peer.bgp_identifier) == 0:
        raise _open_error(OpenSubcode.BAD_BGP_IDENTIFIER, "BGP identifier 0.0.0.0")
    internal = peer_asn == config.local_asn
    if internal and peer.bgp_identifier == config.router_id:
        # RFC 6286 §2.2: identifiers must differ within an AS.
        raise _open_error(OpenSubcode.BAD_BGP_IDENTIFIER, "BGP identifier equals ours")
    hold = min(config.hold_time, peer.hold_time)
    keepalive = hold / 3
    if config.keepalive_time is not None and hold:
        keepalive = min(keepalive, config.keepalive_time)
    local_caps = config.capabilities()
    peer_caps = peer.capabilities
    peer_mp = {(c.afi, c.safi) for c in peer_caps if isinstance(c, MultiprotocolCapability)}
    if not peer_mp:
        peer_mp = {IPV4_UNICAST}  # RFC 4760 §8: no MP capability -> IPv4 unicast only
    local_mp = set(config.families)
    local_enh = {
        (e.afi, e.safi, e.next_hop_afi)
        for c in local_caps
        if isinstance(c, ExtendedNextHopCapability)
        for e in c.entries
    }
    peer_enh = {
        (e.afi, e.safi, e.next_hop_afi)
        for c in peer_caps
        if isinstance(c, ExtendedNextHopCapability)
        for e in c.entries
    }
    fqdn = next((c for c in peer_caps if isinstance(c, FqdnCapability)), None)
    version = next((c for c in peer_caps if isinstance(c, SoftwareVersionCapability)), None)
    peer_gr = next((c for c in peer_caps if isinstance(c, GracefulRestartCapability)), None)

    def both(cls: type) -> bool:
        return any(isinstance(c, cls) for c in local_caps) and any(
            isinstance(c, cls) for c in peer_caps
        )

    return NegotiatedSession(
        local_asn=config.local_asn,
        peer_asn=peer_asn,
        peer_router_id=peer.bgp_identifier,
        hold_time=hold,
        keepalive_time=keepalive,
        asn4=any(isinstance(c, FourOctetAsCapability) for c in peer_caps),
        families=frozenset(local_mp & peer_mp),
        route_refresh=both(RouteRefreshCapability),
        enhanced_route_refresh=both(EnhancedRouteRefreshCapability),
        extended_message=both(ExtendedMessageCapability),
        extended_next_hop=frozenset(local_enh & peer_enh),
        graceful_restart=peer_gr if config.graceful_restart is not None else None,
        peer_capabilities=peer_caps,
        local_capabilities=local_caps,
        peer_hostname=fqdn.hostname if fqdn else None,
        peer_domain=fqdn.domain if fqdn else None,
        peer_software_version=version.version if version else None,
    )
