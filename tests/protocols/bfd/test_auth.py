"""Authentication (RFC 5880 §6.7): sign/verify, tampering, sequence windows."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from protocols.bfd import (
    AuthConfig,
    AuthType,
    BfdDecodeError,
    ControlPacket,
    DigestAuth,
    DiscardReason,
    State,
    sequence_in_window,
    sign,
    verify,
)

from .strategies import ALL_AUTH_TYPES, DIGEST_TYPES, U32, auth_configs, control_packets

UNAUTHENTICATED = control_packets(auth=st.none())


@given(UNAUTHENTICATED, auth_configs(), U32)
def test_sign_then_verify(packet: ControlPacket, config: AuthConfig, seq: int) -> None:
    signed = sign(packet, config, seq)
    assert signed.auth is not None
    assert signed.auth.auth_type is config.type
    assert verify(signed, config) is None
    # And after a trip over the wire.
    assert verify(ControlPacket.decode(signed.encode()), config) is None


@given(UNAUTHENTICATED, auth_configs(), U32)
def test_receiver_accepts_any_configured_key(
    packet: ControlPacket, config: AuthConfig, seq: int
) -> None:
    for key_id in config.keys:
        sender = attrs.evolve(config, send_key_id=key_id)
        assert verify(sign(packet, sender, seq), config) is None


@given(UNAUTHENTICATED, st.sampled_from(DIGEST_TYPES), st.data())
def test_any_bit_flip_rejected(
    packet: ControlPacket, auth_type: AuthType, data: st.DataObject
) -> None:
    config = data.draw(auth_configs(auth_type))
    wire = bytearray(sign(packet, config, data.draw(U32)).encode())
    bit = data.draw(st.integers(0, len(wire) * 8 - 1))
    wire[bit // 8] ^= 0x80 >> (bit % 8)
    try:
        tampered = ControlPacket.decode(bytes(wire))
    except BfdDecodeError:
        return
    assert verify(tampered, config) is not None


@given(UNAUTHENTICATED, st.data())
def test_simple_password_section_flip_rejected(packet: ControlPacket, data: st.DataObject) -> None:
    # Simple Password does not protect the header, only the password itself.
    config = data.draw(auth_configs(AuthType.SIMPLE_PASSWORD))
    # Two key IDs with one password: a flip of the key ID between them is no tampering.
    assume(len(set(config.keys.values())) == len(config.keys))
    wire = bytearray(sign(packet, config).encode())
    bit = data.draw(st.integers(24 * 8, len(wire) * 8 - 1))
    wire[bit // 8] ^= 0x80 >> (bit % 8)
    try:
        tampered = ControlPacket.decode(bytes(wire))
    except BfdDecodeError:
        return
    assert verify(tampered, config) is not None


def _config(auth_type: AuthType, keys: dict[int, bytes], send: int) -> AuthConfig:
    return AuthConfig(type=auth_type, keys=keys, send_key_id=send)


@given(UNAUTHENTICATED, st.sampled_from(ALL_AUTH_TYPES))
def test_verify_reasons(packet: ControlPacket, auth_type: AuthType) -> None:
    ours = _config(auth_type, {1: b"alpha"}, 1)
    assert verify(packet, ours) is DiscardReason.AUTH_MISSING
    assert verify(sign(packet, ours), None) is DiscardReason.AUTH_UNEXPECTED
    assert verify(packet, None) is None
    unknown = sign(packet, _config(auth_type, {2: b"alpha"}, 2))
    assert verify(unknown, ours) is DiscardReason.AUTH_KEY_UNKNOWN
    wrong = sign(packet, _config(auth_type, {1: b"bravo"}, 1))
    expected = (
        DiscardReason.AUTH_BAD_PASSWORD
        if auth_type is AuthType.SIMPLE_PASSWORD
        else DiscardReason.AUTH_BAD_DIGEST
    )
    assert verify(wrong, ours) is expected
    other_type = next(t for t in ALL_AUTH_TYPES if t is not auth_type)
    mismatched = sign(packet, _config(other_type, {1: b"alpha"}, 1))
    assert verify(mismatched, ours) is DiscardReason.AUTH_TYPE_MISMATCH


def test_simple_password_length_checked_first() -> None:
    packet = sign(
        ControlPacket(
            state=State.DOWN,
            detect_mult=3,
            my_discriminator=1,
            desired_min_tx_us=1,
            required_min_rx_us=1,
        ),
        _config(AuthType.SIMPLE_PASSWORD, {1: b"alphabet"}, 1),
    )
    assert (
        verify(packet, _config(AuthType.SIMPLE_PASSWORD, {1: b"alpha"}, 1))
        is DiscardReason.AUTH_BAD_LENGTH
    )


def test_md5_reserved_byte_covered_by_digest() -> None:
    config = _config(AuthType.KEYED_MD5, {1: b"k"}, 1)
    packet = sign(
        ControlPacket(
            state=State.UP,
            detect_mult=3,
            my_discriminator=1,
            desired_min_tx_us=1,
            required_min_rx_us=1,
        ),
        config,
        5,
    )
    assert isinstance(packet.auth, DigestAuth)
    touched = attrs.evolve(packet, auth=attrs.evolve(packet.auth, reserved=1))
    assert verify(touched, config) is DiscardReason.AUTH_BAD_DIGEST


@pytest.mark.parametrize(
    ("seq", "last", "mult", "meticulous", "ok"),
    [
        (10, 10, 3, False, True),  # keyed: the same number again is fine
        (10, 10, 3, True, False),  # meticulous: it must advance
        (11, 10, 3, True, True),
        (19, 10, 3, True, True),  # last + 3*mult, inclusive
        (20, 10, 3, True, False),
        (19, 10, 3, False, True),
        (20, 10, 3, False, False),
        (9, 10, 3, False, False),  # behind
        (3, 2**32 - 3, 2, True, True),  # wraps around: last + 6 == 3
        (4, 2**32 - 3, 2, True, False),
    ],
)
def test_sequence_window(seq: int, last: int, mult: int, meticulous: bool, ok: bool) -> None:
    assert sequence_in_window(seq, last, mult, meticulous=meticulous) is ok


@pytest.mark.parametrize(
    "kwargs",
    [
        {"type": AuthType.RESERVED, "keys": {1: b"x"}, "send_key_id": 1},
        {"type": AuthType.KEYED_MD5, "keys": {}, "send_key_id": 1},
        {"type": AuthType.KEYED_MD5, "keys": {1: b"x"}, "send_key_id": 2},
        {"type": AuthType.KEYED_MD5, "keys": {1: bytes(17)}, "send_key_id": 1},
        {"type": AuthType.KEYED_SHA1, "keys": {1: bytes(21)}, "send_key_id": 1},
        {"type": AuthType.SIMPLE_PASSWORD, "keys": {1: b""}, "send_key_id": 1},
        {"type": AuthType.KEYED_SHA1, "keys": {256: b"x"}, "send_key_id": 256},
    ],
)
def test_auth_config_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        AuthConfig(**kwargs)


def test_auth_config_keys_are_frozen() -> None:
    keys = {1: b"x"}
    config = AuthConfig(type=AuthType.KEYED_SHA1, keys=keys, send_key_id=1)
    keys[2] = b"y"
    assert 2 not in config.keys
    with pytest.raises(TypeError):
        config.keys[3] = b"z"  # type: ignore[index]  # the point: keys is read-only
