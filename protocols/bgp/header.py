"""The fixed BGP message header (RFC 4271 §4.1) and its error checks (§6.1)."""

from __future__ import annotations

import struct

from .constants import (
    HEADER_LEN,
    MARKER,
    MAX_MESSAGE_SIZE,
    HeaderSubcode,
    MessageType,
    NotifCode,
)
from .context import CodecContext
from .errors import LocalProtocolError, RemoteProtocolError

#: RFC 4271 §6.1 (and RFC 2918 §3): (minimum, maximum or None) length per message type.
_LENGTH_BOUNDS: dict[int, tuple[int, int | None]] = {
    MessageType.OPEN: (29, MAX_MESSAGE_SIZE),  # RFC 8654 §4: OPEN never extended
    MessageType.UPDATE: (23, None),
    MessageType.NOTIFICATION: (21, None),
    MessageType.KEEPALIVE: (19, 19),
    MessageType.ROUTE_REFRESH: (23, None),  # exact length checked by the decoder (RFC 7313)
}


def encode_message(msg_type: int, body: bytes, ctx: CodecContext) -> bytes:
    """Prefix ``body`` with marker, length and type; refuse oversize messages."""
    length = HEADER_LEN + len(body)
    limit = MAX_MESSAGE_SIZE if msg_type in (1, 4) else ctx.max_message_size
    if length > limit:
        raise LocalProtocolError(f"message of {length} octets exceeds the limit of {limit}")
    return MARKER + struct.pack("!HB", length, msg_type) + body


def decode_header(data: bytes, ctx: CodecContext) -> tuple[int, int]:
    """Validate the first 19 octets of ``data``; return ``(type, length)``.

    Errors (RFC 4271 §6.1): marker not all ones -> 1/1; length out of range for the
    type -> 1/2 with the Length field as data; unknown type -> 1/3 with the Type
    field as data.
    """
    if len(data) < HEADER_LEN:
        raise LocalProtocolError("need 19 octets to decode a header")
    if data[:16] != MARKER:
        raise RemoteProtocolError(
            NotifCode.MESSAGE_HEADER_ERROR,
            HeaderSubcode.CONNECTION_NOT_SYNCHRONIZED,
            reason="marker is not all ones",
        )
    length, msg_type = struct.unpack_from("!HB", data, 16)
    if length < HEADER_LEN or length > ctx.max_message_size:
        raise _bad_length(data)
    bounds = _LENGTH_BOUNDS.get(msg_type)
    if bounds is None:
        raise RemoteProtocolError(
            NotifCode.MESSAGE_HEADER_ERROR,
            HeaderSubcode.BAD_MESSAGE_TYPE,
            data=bytes((msg_type,)),
            reason=f"unknown message type {msg_type}",
        )
    low, high = bounds
    if length < low or (high is not None and length > high):
        raise _bad_length(data)
    return msg_type, length


def _bad_length(data: bytes) -> RemoteProtocolError:
    return RemoteProtocolError(
        NotifCode.MESSAGE_HEADER_ERROR,
        HeaderSubcode.BAD_MESSAGE_LENGTH,
        data=data[16:18],
        reason=f"bad message length {int.from_bytes(data[16:18], 'big')}",
    )
