"""BGP messages other than UPDATE, and the generic framing decoder.

RFC 4271 §4.2 OPEN, §4.4 KEEPALIVE, §4.5 NOTIFICATION; RFC 2918 / RFC 7313
ROUTE-REFRESH; RFC 9003 shutdown communication.  :func:`decode_message` decodes
one complete message; :class:`MessageReader` splits a TCP byte stream.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

import attrs

from .capabilities import (
    Capability,
    FourOctetAsCapability,
    decode_optional_parameters,
    encode_optional_parameters,
)
from .constants import (
    AFI,
    AS_TRANS,
    BGP_VERSION,
    HEADER_LEN,
    SAFI,
    CeaseSubcode,
    HeaderSubcode,
    MessageType,
    NotifCode,
    OpenSubcode,
    RouteRefreshSubcode,
    RouteRefreshSubtype,
    to_enum,
)
from .context import DEFAULT_CONTEXT, CodecContext
from .errors import LocalProtocolError, RemoteProtocolError
from .header import decode_header, encode_message
from .update import DecodedUpdate, UpdateMessage, decode_update

#: RFC 9003 §2: maximum length of a shutdown communication in octets.
MAX_SHUTDOWN_MESSAGE = 255
_SHUTDOWN_SUBCODES = (CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, CeaseSubcode.ADMINISTRATIVE_RESET)


@attrs.frozen(kw_only=True)
class OpenMessage:
    """RFC 4271 §4.2 OPEN.

    ``my_as`` is the 2-octet wire field (AS_TRANS for 4-octet ASes, RFC 6793);
    use :attr:`asn` for the speaker's real AS.  ``hold_time`` is in seconds.
    ``extended_parameters`` forces the RFC 9072 encoding (used automatically when
    the parameters exceed 255 octets).
    """

    my_as: int
    hold_time: int
    bgp_identifier: IPv4Address
    capabilities: tuple[Capability, ...] = ()
    version: int = BGP_VERSION
    extended_parameters: bool = False

    @classmethod
    def build(
        cls,
        *,
        asn: int,
        hold_time: int,
        bgp_identifier: IPv4Address,
        capabilities: tuple[Capability, ...] = (),
    ) -> OpenMessage:
        """OPEN for ``asn``: sets My AS (AS_TRANS if needed) and adds the AS4 capability."""
        caps = capabilities
        if not any(isinstance(c, FourOctetAsCapability) for c in caps):
            caps = (*caps, FourOctetAsCapability(asn=asn))
        return cls(
            my_as=asn if asn <= 0xFFFF else AS_TRANS,
            hold_time=hold_time,
            bgp_identifier=bgp_identifier,
            capabilities=caps,
        )

    @property
    def asn(self) -> int:
        """The sender's AS: the 4-octet AS capability if present, else My AS."""
        for cap in self.capabilities:
            if isinstance(cap, FourOctetAsCapability):
                return cap.asn
        return self.my_as

    def encode(self, ctx: CodecContext = DEFAULT_CONTEXT) -> bytes:
        body = struct.pack(
            "!BHH4s", self.version, self.my_as, self.hold_time, self.bgp_identifier.packed
        )
        body += encode_optional_parameters(self.capabilities, extended=self.extended_parameters)
        return encode_message(MessageType.OPEN, body, ctx)

    @classmethod
    def decode_body(cls, body: bytes) -> OpenMessage:
        """Decode an OPEN body; version != 4 -> 2/1 with data = 4 (RFC 4271 §6.2)."""
        if len(body) < 10:
            raise RemoteProtocolError(
                NotifCode.OPEN_MESSAGE_ERROR, OpenSubcode.UNSPECIFIC, reason="OPEN too short"
            )
        version, my_as, hold_time, ident = struct.unpack_from("!BHH4s", body)
        if version != BGP_VERSION:
            raise RemoteProtocolError(
                NotifCode.OPEN_MESSAGE_ERROR,
                OpenSubcode.UNSUPPORTED_VERSION_NUMBER,
                data=struct.pack("!H", BGP_VERSION),
                reason=f"unsupported BGP version {version}",
            )
        caps, extended = decode_optional_parameters(body[9:])
        return cls(
            my_as=my_as,
            hold_time=hold_time,
            bgp_identifier=IPv4Address(ident),
            capabilities=caps,
            version=version,
            extended_parameters=extended,
        )


@attrs.frozen(kw_only=True)
class KeepaliveMessage:
    """RFC 4271 §4.4 KEEPALIVE: header only."""

    def encode(self, ctx: CodecContext = DEFAULT_CONTEXT) -> bytes:
        return encode_message(MessageType.KEEPALIVE, b"", ctx)


@attrs.frozen(kw_only=True)
class NotificationMessage:
    """RFC 4271 §4.5 NOTIFICATION: error code, subcode and data."""

    code: int
    subcode: int = 0
    data: bytes = b""

    @classmethod
    def cease(cls, subcode: int, message: str | None = None) -> NotificationMessage:
        """A Cease; for Administrative Shutdown/Reset ``message`` is the RFC 9003 text."""
        data = b""
        if message is not None:
            if subcode not in _SHUTDOWN_SUBCODES:
                raise LocalProtocolError("a shutdown message needs Cease subcode 2 or 4")
            data = encode_shutdown_message(message)
        return cls(code=NotifCode.CEASE, subcode=subcode, data=data)

    @classmethod
    def from_error(cls, error: RemoteProtocolError) -> NotificationMessage:
        """The NOTIFICATION to send to the peer for ``error`` (RFC 4271 §6)."""
        return cls(code=error.code, subcode=error.subcode, data=error.data)

    @property
    def shutdown_message(self) -> str | None:
        """RFC 9003 text carried by a Cease 2/4, or None if absent or malformed."""
        if self.code != NotifCode.CEASE or self.subcode not in _SHUTDOWN_SUBCODES:
            return None
        return decode_shutdown_message(self.data)

    def encode(self, ctx: CodecContext = DEFAULT_CONTEXT) -> bytes:
        return encode_message(
            MessageType.NOTIFICATION, bytes((self.code, self.subcode)) + self.data, ctx
        )

    @classmethod
    def decode_body(cls, body: bytes) -> NotificationMessage:
        code = to_enum(NotifCode, body[0])
        return cls(code=code, subcode=body[1], data=body[2:])


def encode_shutdown_message(message: str) -> bytes:
    """RFC 9003 §2: length octet + UTF-8, truncated at a character boundary to 255 octets."""
    raw = message.encode("utf-8")
    if len(raw) > MAX_SHUTDOWN_MESSAGE:
        raw = raw[:MAX_SHUTDOWN_MESSAGE].decode("utf-8", errors="ignore").encode("utf-8")
    return bytes((len(raw),)) + raw


def decode_shutdown_message(data: bytes) -> str | None:
    """RFC 9003 §2 decode; None when absent, overrunning or not valid UTF-8 (§5)."""
    if not data:
        return None
    length = data[0]
    if length + 1 > len(data):
        return None
    try:
        return data[1 : 1 + length].decode("utf-8")
    except UnicodeDecodeError:
        return None


@attrs.frozen(kw_only=True)
class RouteRefreshMessage:
    """RFC 2918 §3 ROUTE-REFRESH; ``subtype`` is the RFC 7313 §3.2 BoRR/EoRR field."""

    afi: int
    safi: int
    subtype: int = RouteRefreshSubtype.NORMAL

    def encode(self, ctx: CodecContext = DEFAULT_CONTEXT) -> bytes:
        return encode_message(
            MessageType.ROUTE_REFRESH, struct.pack("!HBB", self.afi, self.subtype, self.safi), ctx
        )

    @classmethod
    def decode_body(cls, body: bytes, full: bytes) -> RouteRefreshMessage:
        if len(body) != 4:
            # RFC 7313 §5: data is the complete message.
            raise RemoteProtocolError(
                NotifCode.ROUTE_REFRESH_MESSAGE_ERROR,
                RouteRefreshSubcode.INVALID_MESSAGE_LENGTH,
                data=full,
                reason="ROUTE-REFRESH length != 23",
            )
        afi, subtype, safi = struct.unpack("!HBB", body)
        return cls(
            afi=to_enum(AFI, afi),
            safi=to_enum(SAFI, safi),
            subtype=to_enum(RouteRefreshSubtype, subtype),
        )


Message = OpenMessage | UpdateMessage | NotificationMessage | KeepaliveMessage | RouteRefreshMessage


def decode_message_ex(data: bytes, ctx: CodecContext) -> Message | DecodedUpdate:
    """Decode exactly one complete message; UPDATEs come back as :class:`DecodedUpdate`."""
    if len(data) < HEADER_LEN:
        raise RemoteProtocolError(
            NotifCode.MESSAGE_HEADER_ERROR,
            HeaderSubcode.BAD_MESSAGE_LENGTH,
            data=data[16:18],
            reason="truncated message",
        )
    msg_type, length = decode_header(data, ctx)
    if length != len(data):
        raise RemoteProtocolError(
            NotifCode.MESSAGE_HEADER_ERROR,
            HeaderSubcode.BAD_MESSAGE_LENGTH,
            data=data[16:18],
            reason="length field does not match the data",
        )
    body = data[HEADER_LEN:]
    if msg_type == MessageType.OPEN:
        return OpenMessage.decode_body(body)
    if msg_type == MessageType.UPDATE:
        return decode_update(body, ctx)
    if msg_type == MessageType.NOTIFICATION:
        return NotificationMessage.decode_body(body)
    if msg_type == MessageType.KEEPALIVE:
        return KeepaliveMessage()
    return RouteRefreshMessage.decode_body(body, data)


def decode_message(data: bytes, ctx: CodecContext = DEFAULT_CONTEXT) -> Message:
    """Decode exactly one complete message (UPDATE: RFC 7606 notes are dropped)."""
    msg = decode_message_ex(data, ctx)
    return msg.update if isinstance(msg, DecodedUpdate) else msg


class MessageReader:
    """Accumulates TCP bytes and yields complete messages (RFC 4271 §4.1 framing).

    Header errors are raised as soon as 19 octets are available, so an oversize
    length is reported without waiting for its body.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_raw(self, ctx: CodecContext) -> bytes | None:
        """The next complete raw message, or None if more data is needed."""
        if len(self._buf) < HEADER_LEN:
            return None
        _, length = decode_header(bytes(self._buf[:HEADER_LEN]), ctx)
        if len(self._buf) < length:
            return None
        raw = bytes(self._buf[:length])
        del self._buf[:length]
        return raw

    def next_message(self, ctx: CodecContext) -> Message | DecodedUpdate | None:
        """The next decoded message (UPDATE as :class:`DecodedUpdate`), or None."""
        raw = self.next_raw(ctx)
        return None if raw is None else decode_message_ex(raw, ctx)
