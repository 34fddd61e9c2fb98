"""Authentication of Control packets (RFC 5880 §6.7).

:func:`sign` fills in the authentication section of an outgoing packet, :func:`verify`
checks a received one against an :class:`AuthConfig`, and :func:`sequence_in_window`
applies the replay window of the keyed types.

Digests (§6.7.3, §6.7.4): the digest field is filled with the key, zero-padded to the
field size (16 bytes for MD5, 20 for SHA1), the hash is computed over the whole packet
(Length bytes) and the result replaces the key in the field.
"""

from __future__ import annotations

import hashlib
import hmac
import types
from collections.abc import Callable, Mapping

import attrs

from .constants import DIGEST_LENGTH, MAX_U32, METICULOUS, AuthType
from .errors import DiscardReason
from .packet import ControlPacket, DigestAuth, SimplePasswordAuth

__all__ = ["AuthConfig", "compute_digest", "sequence_in_window", "sign", "verify"]

_HASHES: dict[AuthType, Callable[[bytes], bytes]] = {
    AuthType.KEYED_MD5: lambda data: hashlib.md5(data, usedforsecurity=False).digest(),
    AuthType.METICULOUS_KEYED_MD5: lambda data: hashlib.md5(data, usedforsecurity=False).digest(),
    AuthType.KEYED_SHA1: lambda data: hashlib.sha1(data, usedforsecurity=False).digest(),
    AuthType.METICULOUS_KEYED_SHA1: lambda data: hashlib.sha1(data, usedforsecurity=False).digest(),
}

#: Longest secret each type can carry (the password field or the digest field).
_MAX_SECRET: dict[AuthType, int] = {AuthType.SIMPLE_PASSWORD: 16, **DIGEST_LENGTH}


def _frozen_keys(keys: Mapping[int, bytes]) -> Mapping[int, bytes]:
    return types.MappingProxyType(dict(keys))


@attrs.frozen(kw_only=True)
class AuthConfig:
    """Authentication of one session: bfd.AuthType plus its keys (RFC 5880 §6.7).

    ``keys`` maps Auth Key ID to secret; every listed key is accepted on receipt (so a
    key can be rolled over), and ``send_key_id`` selects the one used to transmit.
    Secrets are 1-16 bytes (password, MD5) or 1-20 bytes (SHA1).
    """

    type: AuthType = attrs.field(converter=AuthType)
    keys: Mapping[int, bytes] = attrs.field(converter=_frozen_keys)
    send_key_id: int

    def __attrs_post_init__(self) -> None:
        if self.type not in _MAX_SECRET:
            raise ValueError(f"{self.type!r} is not a usable authentication type")
        if not self.keys:
            raise ValueError("at least one key is needed")
        limit = _MAX_SECRET[self.type]
        for key_id, secret in self.keys.items():
            if not 0 <= key_id <= 255:
                raise ValueError(f"key id {key_id} is not in [0, 255]")
            if not 1 <= len(secret) <= limit:
                raise ValueError(f"key {key_id}: {self.type.name} secrets are 1-{limit} bytes")
        if self.send_key_id not in self.keys:
            raise ValueError(f"send_key_id {self.send_key_id} is not among the keys")

    @property
    def meticulous(self) -> bool:
        return self.type in METICULOUS


def compute_digest(packet: ControlPacket, secret: bytes) -> bytes:
    """Digest of ``packet`` (which must carry a :class:`DigestAuth`) under ``secret``."""
    auth = packet.auth
    if not isinstance(auth, DigestAuth):
        raise TypeError("compute_digest needs a packet with a keyed digest section")
    size = DIGEST_LENGTH[auth.auth_type]
    # The key, zero-padded to the field size, stands in for the digest (§6.7.3).
    keyed = attrs.evolve(packet, auth=attrs.evolve(auth, digest=secret.ljust(size, b"\0")))
    return _HASHES[auth.auth_type](keyed.encode())


def sign(packet: ControlPacket, config: AuthConfig, sequence: int = 0) -> ControlPacket:
    """Return ``packet`` with an authentication section made with the send key.

    ``sequence`` is bfd.XmitAuthSeq (ignored for Simple Password).
    """
    secret = config.keys[config.send_key_id]
    if config.type is AuthType.SIMPLE_PASSWORD:
        return attrs.evolve(
            packet, auth=SimplePasswordAuth(key_id=config.send_key_id, password=secret)
        )
    placeholder = DigestAuth(
        auth_type=config.type,
        key_id=config.send_key_id,
        sequence=sequence & MAX_U32,
        digest=bytes(DIGEST_LENGTH[config.type]),
    )
    unsigned = attrs.evolve(packet, auth=placeholder)
    digest = compute_digest(unsigned, secret)
    return attrs.evolve(unsigned, auth=attrs.evolve(placeholder, digest=digest))


def verify(packet: ControlPacket, config: AuthConfig | None) -> DiscardReason | None:
    """Check the authentication of a received packet (RFC 5880 §6.8.6, §6.7.2-§6.7.4).

    Returns ``None`` when it passes. The sequence window of the keyed types is checked
    separately by the session (it needs bfd.RcvAuthSeq) with :func:`sequence_in_window`.
    """
    auth = packet.auth
    if config is None:
        return None if auth is None else DiscardReason.AUTH_UNEXPECTED
    if auth is None:
        return DiscardReason.AUTH_MISSING
    if auth.auth_type != config.type:
        return DiscardReason.AUTH_TYPE_MISMATCH
    secret = config.keys.get(auth.key_id)
    if secret is None:
        return DiscardReason.AUTH_KEY_UNKNOWN
    if isinstance(auth, SimplePasswordAuth):
        # §6.7.2: Auth Len must match the configured password before comparing.
        if len(auth.password) != len(secret):
            return DiscardReason.AUTH_BAD_LENGTH
        if not hmac.compare_digest(auth.password, secret):
            return DiscardReason.AUTH_BAD_PASSWORD
        return None
    if not hmac.compare_digest(compute_digest(packet, secret), auth.digest):
        return DiscardReason.AUTH_BAD_DIGEST
    return None


def sequence_in_window(sequence: int, last: int, detect_mult: int, *, meticulous: bool) -> bool:
    """Replay window of §6.7.3/§6.7.4, in circular 32-bit space.

    Keyed: ``last <= sequence <= last + 3*detect_mult``; meticulous: the lower bound is
    exclusive (every packet must advance). ``detect_mult`` is the Detect Mult of the
    received packet: it bounds how many packets the peer sends per Detection Time.
    """
    ahead = (sequence - last) & MAX_U32
    low = 1 if meticulous else 0
    return low <= ahead <= 3 * detect_mult
