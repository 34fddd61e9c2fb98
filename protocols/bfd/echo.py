"""Our BFD Echo packet format (RFC 5880 §4 and §6.4 leave the contents local).

An Echo packet is looped back by the peer's forwarding plane, so only we ever parse
it. Layout (28 bytes, network order)::

    magic "SPKE" (4) | my discriminator (4) | sequence (4) | timestamp (8, signed, us)
    | tag (8)

The discriminator lets the runtime demultiplex returned echoes to a session
(§6.8.8). ``timestamp_us`` is the sender's ``now`` in microseconds, used to reject
stale echoes and to measure the round trip. ``tag`` is a truncated HMAC-SHA256 over
the first 20 bytes under a per-session secret that never leaves this host: §5 says
echo packets SHOULD carry some authentication since they may be spoofed.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

import attrs

from .constants import MAX_U32
from .errors import BfdDecodeError, DiscardReason

__all__ = ["ECHO_MAGIC", "EchoPacket"]

ECHO_MAGIC = b"SPKE"
_ECHO = struct.Struct("!4sIIq8s")
ECHO_LENGTH = _ECHO.size  # 28
_TAG_LENGTH = 8
_SIGNED_PART = ECHO_LENGTH - _TAG_LENGTH


@attrs.frozen(kw_only=True)
class EchoPacket:
    """One Echo packet; see the module docstring for the layout."""

    discriminator: int
    sequence: int
    timestamp_us: int
    tag: bytes = bytes(_TAG_LENGTH)

    def __attrs_post_init__(self) -> None:
        if not (0 <= self.discriminator <= MAX_U32 and 0 <= self.sequence <= MAX_U32):
            raise ValueError("discriminator and sequence are unsigned 32-bit")
        if not -(2**63) <= self.timestamp_us < 2**63:
            raise ValueError("timestamp_us is a signed 64-bit value")
        if len(self.tag) != _TAG_LENGTH:
            raise ValueError("tag is 8 bytes")

    def encode(self) -> bytes:
        return _ECHO.pack(
            ECHO_MAGIC, self.discriminator, self.sequence, self.timestamp_us, self.tag
        )

    @classmethod
    def decode(cls, data: bytes) -> EchoPacket:
        """Parse an echo; raises :class:`BfdDecodeError` (``ECHO_MALFORMED``)."""
        if len(data) != ECHO_LENGTH:
            raise BfdDecodeError(
                f"echo of {len(data)} bytes, expected {ECHO_LENGTH}",
                discard_reason=DiscardReason.ECHO_MALFORMED,
            )
        magic, discriminator, sequence, timestamp_us, tag = _ECHO.unpack(data)
        if magic != ECHO_MAGIC:
            raise BfdDecodeError("echo magic mismatch", discard_reason=DiscardReason.ECHO_MALFORMED)
        return cls(
            discriminator=discriminator, sequence=sequence, timestamp_us=timestamp_us, tag=tag
        )

    def _tag_for(self, secret: bytes) -> bytes:
        signed = self.encode()[:_SIGNED_PART]
        return hmac.new(secret, signed, hashlib.sha256).digest()[:_TAG_LENGTH]

    def sealed(self, secret: bytes) -> EchoPacket:
        """This packet with its tag computed under ``secret``."""
        return attrs.evolve(self, tag=self._tag_for(secret))

    def tag_valid(self, secret: bytes) -> bool:
        return hmac.compare_digest(self.tag, self._tag_for(secret))
