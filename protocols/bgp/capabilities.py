"""BGP capabilities (RFC 5492) and the OPEN optional parameters that carry them.

Each capability is a frozen value object with ``encode_value()`` and a
``decode_value(data)`` classmethod; :data:`CAPABILITY_CLASSES` maps capability
codes to classes.  Codes not in that table decode to :class:`UnknownCapability`
so they can be logged and ignored (RFC 5492 §3: unknown capabilities are ignored).

A malformed capability value is an OPEN Message Error, except for the codes of
:data:`IGNORED_WHEN_MALFORMED` (Graceful Restart): those decode to
:class:`MalformedCapability` and are otherwise ignored, as if not sent.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import ClassVar

import attrs

from .constants import (
    AFI,
    SAFI,
    CapabilityCode,
    NotifCode,
    OpenSubcode,
    OptionalParameterType,
    to_enum,
)
from .errors import LocalProtocolError, RemoteProtocolError


def _malformed(code: int, reason: str) -> RemoteProtocolError:
    return RemoteProtocolError(
        NotifCode.OPEN_MESSAGE_ERROR,
        OpenSubcode.UNSPECIFIC,
        reason=f"malformed capability {code}: {reason}",
    )


def _encode_str(text: str, what: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 255:
        raise LocalProtocolError(f"{what} longer than 255 octets")
    return bytes((len(raw),)) + raw


def _decode_str(data: bytes, pos: int, code: int) -> tuple[str, int]:
    if pos >= len(data):
        raise _malformed(code, "missing string length")
    n = data[pos]
    if pos + 1 + n > len(data):
        raise _malformed(code, "string overruns capability")
    return data[pos + 1 : pos + 1 + n].decode("utf-8", errors="replace"), pos + 1 + n


@attrs.frozen(kw_only=True)
class MultiprotocolCapability:
    """RFC 4760 §8: AFI (2 octets), reserved (1), SAFI (1)."""

    CODE: ClassVar[int] = CapabilityCode.MULTIPROTOCOL
    afi: int
    safi: int

    def encode_value(self) -> bytes:
        return struct.pack("!HBB", self.afi, 0, self.safi)

    @classmethod
    def decode_value(cls, data: bytes) -> MultiprotocolCapability:
        if len(data) != 4:
            raise _malformed(cls.CODE, "length must be 4")
        afi, _, safi = struct.unpack("!HBB", data)
        return cls(afi=to_enum(AFI, afi), safi=to_enum(SAFI, safi))


@attrs.frozen(kw_only=True)
class RouteRefreshCapability:
    """RFC 2918 §3 (code 2), or the pre-standard Cisco code 128 when ``legacy``."""

    legacy: bool = False

    @property
    def CODE(self) -> int:
        return CapabilityCode.ROUTE_REFRESH_CISCO if self.legacy else CapabilityCode.ROUTE_REFRESH

    def encode_value(self) -> bytes:
        return b""

    @classmethod
    def decode_value(cls, data: bytes) -> RouteRefreshCapability:
        return cls(legacy=False)


def _decode_cisco_route_refresh(data: bytes) -> RouteRefreshCapability:
    return RouteRefreshCapability(legacy=True)


@attrs.frozen(kw_only=True)
class ExtendedNextHopEntry:
    """One RFC 8950 §4 tuple: NLRI AFI, NLRI SAFI, Next Hop AFI."""

    afi: int
    safi: int
    next_hop_afi: int


@attrs.frozen(kw_only=True)
class ExtendedNextHopCapability:
    """RFC 8950 §4: a list of 6-octet <NLRI AFI, NLRI SAFI, Nexthop AFI> tuples."""

    CODE: ClassVar[int] = CapabilityCode.EXTENDED_NEXT_HOP
    entries: tuple[ExtendedNextHopEntry, ...] = ()

    def encode_value(self) -> bytes:
        return b"".join(struct.pack("!HHH", e.afi, e.safi, e.next_hop_afi) for e in self.entries)

    @classmethod
    def decode_value(cls, data: bytes) -> ExtendedNextHopCapability:
        if len(data) % 6:
            raise _malformed(cls.CODE, "length not a multiple of 6")
        return cls(
            entries=tuple(
                ExtendedNextHopEntry(afi=a, safi=s, next_hop_afi=n)
                for a, s, n in struct.iter_unpack("!HHH", data)
            )
        )


#: RFC 8950 §4: IPv4 unicast NLRI with an IPv6 next hop (the tuple unnumbered BGP
#: sessions use: FRR ``neighbor IFNAME interface`` sends it).
IPV4_UNICAST_IPV6_NEXT_HOP = ExtendedNextHopEntry(afi=1, safi=1, next_hop_afi=2)


@attrs.frozen(kw_only=True)
class ExtendedMessageCapability:
    """RFC 8654 §3: empty value."""

    CODE: ClassVar[int] = CapabilityCode.EXTENDED_MESSAGE

    def encode_value(self) -> bytes:
        return b""

    @classmethod
    def decode_value(cls, data: bytes) -> ExtendedMessageCapability:
        return cls()


@attrs.frozen(kw_only=True)
class GracefulRestartFamily:
    """RFC 4724 §3 per-AFI/SAFI entry; ``forwarding_preserved`` is the F bit."""

    afi: int
    safi: int
    forwarding_preserved: bool = False


@attrs.frozen(kw_only=True)
class GracefulRestartCapability:
    """RFC 4724 §3: Restart Flags (4 bits) + Restart Time (12 bits, seconds), AFI list.

    ``restart_state`` is the R bit, ``notification`` the N bit of RFC 8538. The two
    reserved flag bits and the 7 reserved bits of each family's flags are sent as 0
    and ignored on receipt. A value that is not 2 + 4k octets does not decode; in an
    OPEN it is ignored (:data:`IGNORED_WHEN_MALFORMED`). Helpers and negotiation:
    :mod:`.graceful_restart`.
    """

    CODE: ClassVar[int] = CapabilityCode.GRACEFUL_RESTART
    restart_state: bool = False
    notification: bool = False
    restart_time: int = 120
    families: tuple[GracefulRestartFamily, ...] = ()

    def encode_value(self) -> bytes:
        if not 0 <= self.restart_time <= 0xFFF:
            raise LocalProtocolError("graceful restart time must fit in 12 bits")
        flags = (0x8 if self.restart_state else 0) | (0x4 if self.notification else 0)
        head = struct.pack("!H", (flags << 12) | self.restart_time)
        return head + b"".join(
            struct.pack("!HBB", f.afi, f.safi, 0x80 if f.forwarding_preserved else 0)
            for f in self.families
        )

    @classmethod
    def decode_value(cls, data: bytes) -> GracefulRestartCapability:
        if len(data) < 2 or (len(data) - 2) % 4:
            raise _malformed(cls.CODE, f"length {len(data)} is not 2 + 4k octets")
        (word,) = struct.unpack_from("!H", data)
        flags = word >> 12
        fams = tuple(
            GracefulRestartFamily(afi=a, safi=s, forwarding_preserved=bool(f & 0x80))
            for a, s, f in struct.iter_unpack("!HBB", data[2:])
        )
        return cls(
            restart_state=bool(flags & 0x8),
            notification=bool(flags & 0x4),
            restart_time=word & 0xFFF,
            families=fams,
        )


@attrs.frozen(kw_only=True)
class FourOctetAsCapability:
    """RFC 6793 §3: the speaker's 4-octet AS number."""

    CODE: ClassVar[int] = CapabilityCode.FOUR_OCTET_AS
    asn: int

    def encode_value(self) -> bytes:
        return struct.pack("!I", self.asn)

    @classmethod
    def decode_value(cls, data: bytes) -> FourOctetAsCapability:
        if len(data) != 4:
            raise _malformed(cls.CODE, "length must be 4")
        return cls(asn=struct.unpack("!I", data)[0])


@attrs.frozen(kw_only=True)
class AddPathEntry:
    """RFC 7911 §4 entry; ``send_receive``: 1 receive, 2 send, 3 both."""

    afi: int
    safi: int
    send_receive: int


@attrs.frozen(kw_only=True)
class AddPathCapability:
    """RFC 7911 §4 (parsed and re-encoded, never negotiated by this implementation)."""

    CODE: ClassVar[int] = CapabilityCode.ADD_PATH
    entries: tuple[AddPathEntry, ...] = ()

    def encode_value(self) -> bytes:
        return b"".join(struct.pack("!HBB", e.afi, e.safi, e.send_receive) for e in self.entries)

    @classmethod
    def decode_value(cls, data: bytes) -> AddPathCapability:
        if len(data) % 4:
            raise _malformed(cls.CODE, "length not a multiple of 4")
        return cls(
            entries=tuple(
                AddPathEntry(afi=a, safi=s, send_receive=sr)
                for a, s, sr in struct.iter_unpack("!HBB", data)
            )
        )


@attrs.frozen(kw_only=True)
class EnhancedRouteRefreshCapability:
    """RFC 7313 §3.1: empty value."""

    CODE: ClassVar[int] = CapabilityCode.ENHANCED_ROUTE_REFRESH

    def encode_value(self) -> bytes:
        return b""

    @classmethod
    def decode_value(cls, data: bytes) -> EnhancedRouteRefreshCapability:
        return cls()


@attrs.frozen(kw_only=True)
class LlgrFamily:
    """RFC 9494 §3 entry: AFI, SAFI, flags (F bit 0x80), 24-bit long-lived stale time."""

    afi: int
    safi: int
    flags: int
    stale_time: int


@attrs.frozen(kw_only=True)
class LongLivedGracefulRestartCapability:
    """RFC 9494 §3 (parsed only; this implementation does not act on it)."""

    CODE: ClassVar[int] = CapabilityCode.LONG_LIVED_GRACEFUL_RESTART
    families: tuple[LlgrFamily, ...] = ()

    def encode_value(self) -> bytes:
        return b"".join(
            struct.pack("!HBB", f.afi, f.safi, f.flags) + f.stale_time.to_bytes(3, "big")
            for f in self.families
        )

    @classmethod
    def decode_value(cls, data: bytes) -> LongLivedGracefulRestartCapability:
        if len(data) % 7:
            raise _malformed(cls.CODE, "length not a multiple of 7")
        fams = []
        for pos in range(0, len(data), 7):
            afi, safi, flags = struct.unpack_from("!HBB", data, pos)
            stale = int.from_bytes(data[pos + 4 : pos + 7], "big")
            fams.append(LlgrFamily(afi=afi, safi=safi, flags=flags, stale_time=stale))
        return cls(families=tuple(fams))


@attrs.frozen(kw_only=True)
class FqdnCapability:
    """draft-walton-bgp-hostname-capability: hostname and domain, each length + UTF-8."""

    CODE: ClassVar[int] = CapabilityCode.FQDN
    hostname: str
    domain: str = ""

    def encode_value(self) -> bytes:
        return _encode_str(self.hostname, "hostname") + _encode_str(self.domain, "domain")

    @classmethod
    def decode_value(cls, data: bytes) -> FqdnCapability:
        hostname, pos = _decode_str(data, 0, cls.CODE)
        # Some implementations omit the domain entirely; accept that.
        domain = ""
        if pos < len(data):
            domain, pos = _decode_str(data, pos, cls.CODE)
        return cls(hostname=hostname, domain=domain)


@attrs.frozen(kw_only=True)
class SoftwareVersionCapability:
    """draft-abraitis-bgp-version-capability: length + UTF-8 version string."""

    CODE: ClassVar[int] = CapabilityCode.SOFTWARE_VERSION
    version: str

    def encode_value(self) -> bytes:
        return _encode_str(self.version, "software version")

    @classmethod
    def decode_value(cls, data: bytes) -> SoftwareVersionCapability:
        if not data:
            return cls(version="")
        version, _ = _decode_str(data, 0, cls.CODE)
        return cls(version=version)


@attrs.frozen(kw_only=True)
class BfdStrictModeCapability:
    """draft-ietf-idr-bgp-bfd-strict-mode: empty value. The sender holds the session
    until BFD is Up; when both sides advertise it, both do."""

    CODE: ClassVar[int] = CapabilityCode.BFD_STRICT_MODE

    def encode_value(self) -> bytes:
        return b""

    @classmethod
    def decode_value(cls, data: bytes) -> BfdStrictModeCapability:
        return cls()


@attrs.frozen(kw_only=True)
class UnknownCapability:
    """A capability this implementation does not interpret, kept verbatim."""

    code: int
    value: bytes = b""

    @property
    def CODE(self) -> int:
        return self.code

    def encode_value(self) -> bytes:
        return self.value


@attrs.frozen(kw_only=True)
class MalformedCapability(UnknownCapability):
    """A capability of a known code whose value did not decode, kept verbatim.

    Only codes in :data:`IGNORED_WHEN_MALFORMED` decode to this; negotiation ignores
    it (it is no instance of the capability's own class), and ``reason`` says what
    was wrong, for the log.
    """

    reason: str = ""


Capability = (
    MultiprotocolCapability
    | RouteRefreshCapability
    | ExtendedNextHopCapability
    | ExtendedMessageCapability
    | GracefulRestartCapability
    | FourOctetAsCapability
    | AddPathCapability
    | EnhancedRouteRefreshCapability
    | LongLivedGracefulRestartCapability
    | FqdnCapability
    | SoftwareVersionCapability
    | BfdStrictModeCapability
    | UnknownCapability
)

#: Capability code -> decoder.  Explicit and static: no import-time registration.
CAPABILITY_DECODERS: dict[int, Callable[[bytes], Capability]] = {
    CapabilityCode.MULTIPROTOCOL: MultiprotocolCapability.decode_value,
    CapabilityCode.ROUTE_REFRESH: RouteRefreshCapability.decode_value,
    CapabilityCode.ROUTE_REFRESH_CISCO: _decode_cisco_route_refresh,
    CapabilityCode.EXTENDED_NEXT_HOP: ExtendedNextHopCapability.decode_value,
    CapabilityCode.EXTENDED_MESSAGE: ExtendedMessageCapability.decode_value,
    CapabilityCode.GRACEFUL_RESTART: GracefulRestartCapability.decode_value,
    CapabilityCode.FOUR_OCTET_AS: FourOctetAsCapability.decode_value,
    CapabilityCode.ADD_PATH: AddPathCapability.decode_value,
    CapabilityCode.ENHANCED_ROUTE_REFRESH: EnhancedRouteRefreshCapability.decode_value,
    CapabilityCode.LONG_LIVED_GRACEFUL_RESTART: LongLivedGracefulRestartCapability.decode_value,
    CapabilityCode.FQDN: FqdnCapability.decode_value,
    CapabilityCode.SOFTWARE_VERSION: SoftwareVersionCapability.decode_value,
    CapabilityCode.BFD_STRICT_MODE: BfdStrictModeCapability.decode_value,
}


#: Codes whose malformed value is ignored instead of resetting the session with an
#: OPEN Message Error. Graceful Restart: neither RFC 4724 nor RFC 5492 prescribes an
#: error for a malformed value, and in the spirit of RFC 7606 (an error costs as
#: little as possible) the peer is treated as not advertising graceful restart, the
#: conservative reading for both roles: we keep nothing of theirs as stale, and a
#: stop or restart of ours takes the path of a peer without graceful restart.
IGNORED_WHEN_MALFORMED: frozenset[int] = frozenset({CapabilityCode.GRACEFUL_RESTART})


def encode_capability(cap: Capability) -> bytes:
    """Encode one capability TLV: code (1), length (1), value (RFC 5492 §4)."""
    value = cap.encode_value()
    if len(value) > 255:
        raise LocalProtocolError(f"capability {cap.CODE} value longer than 255 octets")
    return bytes((cap.CODE, len(value))) + value


def decode_capabilities(data: bytes) -> tuple[Capability, ...]:
    """Decode the value of a Capabilities optional parameter (a list of TLVs)."""
    caps: list[Capability] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise _malformed(-1, "truncated capability header")
        code, length = data[pos], data[pos + 1]
        value = data[pos + 2 : pos + 2 + length]
        if len(value) != length:
            raise _malformed(code, "capability overruns optional parameter")
        caps.append(_decode_one(code, value))
        pos += 2 + length
    return tuple(caps)


def _decode_one(code: int, value: bytes) -> Capability:
    decoder = CAPABILITY_DECODERS.get(code)
    if decoder is None:
        return UnknownCapability(code=code, value=value)
    if code not in IGNORED_WHEN_MALFORMED:
        return decoder(value)
    try:
        return decoder(value)
    except RemoteProtocolError as exc:
        return MalformedCapability(code=code, value=value, reason=exc.reason)


def encode_optional_parameters(caps: Iterable[Capability], *, extended: bool = False) -> bytes:
    """Encode capabilities as OPEN optional parameters, one capability per parameter.

    Returns the Optional Parameters Length field(s) followed by the parameters.  The
    RFC 9072 extended encoding (``0xFF 0xFF`` + 2-octet length, 2-octet parameter
    lengths) is used when ``extended`` is true or when the parameters would not fit
    in 255 octets.
    """
    values = [encode_capability(c) for c in caps]
    short = b"".join(bytes((OptionalParameterType.CAPABILITIES, len(v))) + v for v in values)
    if not extended and len(short) <= 255:
        return bytes((len(short),)) + short
    body = b"".join(
        struct.pack("!BH", OptionalParameterType.CAPABILITIES, len(v)) + v for v in values
    )
    if len(body) > 0xFFFF:
        raise LocalProtocolError("optional parameters too long")
    return struct.pack("!BBH", 255, OptionalParameterType.EXTENDED_LENGTH, len(body)) + body


def decode_optional_parameters(data: bytes) -> tuple[tuple[Capability, ...], bool]:
    """Decode the optional parameters part of an OPEN (starting at the length octet).

    Returns ``(capabilities, extended)`` where ``extended`` tells whether RFC 9072
    encoding was used.  Parameters other than Capabilities are rejected with OPEN
    Message Error / Unsupported Optional Parameter (RFC 4271 §6.2).  A length
    mismatch is OPEN Message Error / unspecific.
    """
    if not data:
        raise _bad_len("missing optional parameters length")
    opt_len = data[0]
    extended = False
    if len(data) >= 2 and opt_len == 255 and data[1] == OptionalParameterType.EXTENDED_LENGTH:
        # RFC 9072 §2
        if len(data) < 4:
            raise _bad_len("truncated extended optional parameters length")
        extended = True
        (opt_len,) = struct.unpack_from("!H", data, 2)
        body = data[4:]
        hdr = 3
    else:
        body = data[1:]
        hdr = 2
    if len(body) != opt_len:
        raise _bad_len("optional parameters length does not match message length")
    caps: list[Capability] = []
    pos = 0
    while pos < len(body):
        if pos + hdr > len(body):
            raise _bad_len("truncated optional parameter")
        ptype = body[pos]
        plen = struct.unpack_from("!H", body, pos + 1)[0] if extended else body[pos + 1]
        value = body[pos + hdr : pos + hdr + plen]
        if len(value) != plen:
            raise _bad_len("optional parameter overruns")
        if ptype != OptionalParameterType.CAPABILITIES:
            raise RemoteProtocolError(
                NotifCode.OPEN_MESSAGE_ERROR,
                OpenSubcode.UNSUPPORTED_OPTIONAL_PARAMETER,
                reason=f"optional parameter type {ptype}",
            )
        caps.extend(decode_capabilities(value))
        pos += hdr + plen
    return tuple(caps), extended


def _bad_len(reason: str) -> RemoteProtocolError:
    return RemoteProtocolError(NotifCode.OPEN_MESSAGE_ERROR, OpenSubcode.UNSPECIFIC, reason=reason)
