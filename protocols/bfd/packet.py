"""BFD Control packet codec (RFC 5880 §4.1-§4.4).

:class:`ControlPacket` is a frozen value; ``encode()`` produces the wire bytes and
``ControlPacket.decode()`` parses them, raising only :class:`BfdDecodeError`.

Decisions:

* ``decode`` rejects a Version other than 1 (``discard_reason=BAD_VERSION``): the
  rest of the header is only defined for version 1, so nothing else can be trusted.
* ``decode`` performs the length checks of §6.8.6 (Length below 24/26, Length above
  the datagram) and, stricter than §6.8.6, requires Length to be exactly 24 plus the
  Auth Len of the authentication section (``BAD_LENGTH`` otherwise). Bytes after
  Length are ignored.
* The semantic checks (Detect Mult 0, M bit, discriminators, authentication) belong
  to the session (``Session.receive_packet``), so ``decode`` accepts such packets.
* The decoded value keeps every bit of the first Length bytes, including the
  Reserved byte of keyed sections, so ``decode(data).encode() == data[:Length]`` and
  digests can be verified on ``packet.encode()``.
* Intervals stay in microseconds, as on the wire.
"""

from __future__ import annotations

import struct
from typing import Any

import attrs

from .constants import DIGEST_LENGTH, MAX_U32, VERSION, AuthType, Diag, State
from .errors import BfdDecodeError, DiscardReason

__all__ = [
    "AuthSection",
    "ControlPacket",
    "DigestAuth",
    "SimplePasswordAuth",
]

_HEADER = struct.Struct("!BBBBIIIII")
HEADER_LENGTH = _HEADER.size  # 24
_DIGEST_HEADER = struct.Struct("!BBBBI")  # type, len, key id, reserved, sequence

_P, _F, _C, _A, _D, _M = 0x20, 0x10, 0x08, 0x04, 0x02, 0x01


def _between(low: int, high: int) -> Any:
    def check(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
        if not low <= value <= high:
            raise ValueError(f"{attribute.name} must be in [{low}, {high}], got {value}")

    return check


def _diag_from_wire(code: int) -> int:
    """A :class:`Diag` member for known codes, the plain int for reserved 9-31."""
    try:
        return Diag(code)
    except ValueError:
        return code


@attrs.frozen(kw_only=True)
class SimplePasswordAuth:
    """Simple Password section (RFC 5880 §4.2.2): Auth Len = 3 + password length."""

    key_id: int = attrs.field(validator=_between(0, 255))
    password: bytes = attrs.field()

    @password.validator
    def _check_password(self, attribute: attrs.Attribute[bytes], value: bytes) -> None:
        if not 1 <= len(value) <= 16:
            raise ValueError("a simple password is 1 to 16 bytes")

    @property
    def auth_type(self) -> AuthType:
        return AuthType.SIMPLE_PASSWORD

    @property
    def auth_len(self) -> int:
        return 3 + len(self.password)

    def encode(self) -> bytes:
        return bytes((AuthType.SIMPLE_PASSWORD, self.auth_len, self.key_id)) + self.password


@attrs.frozen(kw_only=True)
class DigestAuth:
    """Keyed MD5 / SHA1 section, plain or meticulous (RFC 5880 §4.3, §4.4).

    ``digest`` is 16 bytes for the MD5 types and 20 for the SHA1 types. ``reserved``
    is sent as zero and kept on receipt only so a re-encoding is byte-exact.
    """

    auth_type: AuthType = attrs.field()
    key_id: int = attrs.field(validator=_between(0, 255))
    sequence: int = attrs.field(validator=_between(0, MAX_U32))
    digest: bytes = attrs.field()
    reserved: int = attrs.field(default=0, validator=_between(0, 255))

    @auth_type.validator
    def _check_type(self, attribute: attrs.Attribute[AuthType], value: AuthType) -> None:
        if value not in DIGEST_LENGTH:
            raise ValueError(f"{value!r} is not a keyed digest type")

    @digest.validator
    def _check_digest(self, attribute: attrs.Attribute[bytes], value: bytes) -> None:
        if len(value) != DIGEST_LENGTH.get(self.auth_type, -1):
            raise ValueError(f"{self.auth_type.name} digest has the wrong length")

    @property
    def auth_len(self) -> int:
        return 8 + DIGEST_LENGTH[self.auth_type]

    def encode(self) -> bytes:
        head = _DIGEST_HEADER.pack(
            self.auth_type, self.auth_len, self.key_id, self.reserved, self.sequence
        )
        return head + self.digest


AuthSection = SimplePasswordAuth | DigestAuth


@attrs.frozen(kw_only=True)
class ControlPacket:
    """A BFD Control packet (RFC 5880 §4.1). The A bit is ``auth is not None``.

    ``diag`` is a :class:`Diag` member, or a plain int for a reserved code received
    from a peer. Intervals are microseconds.
    """

    state: State
    diag: int = attrs.field(default=Diag.NO_DIAGNOSTIC, validator=_between(0, 31))
    poll: bool = False
    final: bool = False
    control_plane_independent: bool = False
    demand: bool = False
    multipoint: bool = False
    detect_mult: int = attrs.field(validator=_between(0, 255))
    my_discriminator: int = attrs.field(validator=_between(0, MAX_U32))
    your_discriminator: int = attrs.field(default=0, validator=_between(0, MAX_U32))
    desired_min_tx_us: int = attrs.field(validator=_between(0, MAX_U32))
    required_min_rx_us: int = attrs.field(validator=_between(0, MAX_U32))
    required_min_echo_rx_us: int = attrs.field(default=0, validator=_between(0, MAX_U32))
    auth: AuthSection | None = None

    @property
    def length(self) -> int:
        """Value of the Length field: header plus authentication section."""
        return HEADER_LENGTH + (self.auth.auth_len if self.auth is not None else 0)

    def encode(self) -> bytes:
        flags = (
            (self.state << 6)
            | (_P if self.poll else 0)
            | (_F if self.final else 0)
            | (_C if self.control_plane_independent else 0)
            | (_A if self.auth is not None else 0)
            | (_D if self.demand else 0)
            | (_M if self.multipoint else 0)
        )
        header = _HEADER.pack(
            (VERSION << 5) | self.diag,
            flags,
            self.detect_mult,
            self.length,
            self.my_discriminator,
            self.your_discriminator,
            self.desired_min_tx_us,
            self.required_min_rx_us,
            self.required_min_echo_rx_us,
        )
        return header if self.auth is None else header + self.auth.encode()

    @classmethod
    def decode(cls, data: bytes) -> ControlPacket:
        """Parse a Control packet; raises :class:`BfdDecodeError` on malformed input."""
        if len(data) < HEADER_LENGTH:
            raise BfdDecodeError(
                f"datagram of {len(data)} bytes is shorter than a BFD header",
                discard_reason=DiscardReason.BAD_LENGTH,
            )
        (vers_diag, flags, mult, length, my, your, tx, rx, echo) = _HEADER.unpack_from(data)
        version = vers_diag >> 5
        if version != VERSION:
            raise BfdDecodeError(
                f"version {version} is not 1", discard_reason=DiscardReason.BAD_VERSION
            )
        has_auth = bool(flags & _A)
        minimum = HEADER_LENGTH + 2 if has_auth else HEADER_LENGTH
        if length < minimum:
            raise BfdDecodeError(
                f"Length {length} is below the minimum {minimum}",
                discard_reason=DiscardReason.BAD_LENGTH,
            )
        if length > len(data):
            raise BfdDecodeError(
                f"Length {length} exceeds the {len(data)}-byte datagram",
                discard_reason=DiscardReason.BAD_LENGTH,
            )
        auth: AuthSection | None = None
        if has_auth:
            auth = _decode_auth(data[HEADER_LENGTH:length])
        elif length != HEADER_LENGTH:
            raise BfdDecodeError(
                f"Length {length} without an authentication section",
                discard_reason=DiscardReason.BAD_LENGTH,
            )
        return cls(
            state=State(flags >> 6),
            diag=_diag_from_wire(vers_diag & 0x1F),
            poll=bool(flags & _P),
            final=bool(flags & _F),
            control_plane_independent=bool(flags & _C),
            demand=bool(flags & _D),
            multipoint=bool(flags & _M),
            detect_mult=mult,
            my_discriminator=my,
            your_discriminator=your,
            desired_min_tx_us=tx,
            required_min_rx_us=rx,
            required_min_echo_rx_us=echo,
            auth=auth,
        )


def _decode_auth(section: bytes) -> AuthSection:
    """Parse the authentication section; ``section`` spans exactly to Length."""
    code, auth_len = section[0], section[1]
    if auth_len != len(section):
        raise BfdDecodeError(
            f"Auth Len {auth_len} disagrees with Length (section is {len(section)} bytes)",
            discard_reason=DiscardReason.BAD_LENGTH,
        )
    try:
        auth_type = AuthType(code)
    except ValueError:
        raise BfdDecodeError(
            f"unknown Auth Type {code}", discard_reason=DiscardReason.AUTH_TYPE_MISMATCH
        ) from None
    if auth_type is AuthType.SIMPLE_PASSWORD:
        if not 4 <= auth_len <= 19:
            raise BfdDecodeError(
                f"simple password Auth Len {auth_len} outside 4-19",
                discard_reason=DiscardReason.AUTH_BAD_LENGTH,
            )
        return SimplePasswordAuth(key_id=section[2], password=section[3:])
    if auth_type is AuthType.RESERVED:
        raise BfdDecodeError(
            "Auth Type 0 is reserved", discard_reason=DiscardReason.AUTH_TYPE_MISMATCH
        )
    expected = 8 + DIGEST_LENGTH[auth_type]
    if auth_len != expected:
        raise BfdDecodeError(
            f"{auth_type.name} Auth Len {auth_len} is not {expected}",
            discard_reason=DiscardReason.AUTH_BAD_LENGTH,
        )
    _, _, key_id, reserved, sequence = _DIGEST_HEADER.unpack_from(section)
    return DigestAuth(
        auth_type=auth_type,
        key_id=key_id,
        sequence=sequence,
        digest=section[_DIGEST_HEADER.size :],
        reserved=reserved,
    )
