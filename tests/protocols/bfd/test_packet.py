"""Control packet codec (RFC 5880 §4.1-§4.4): golden vectors and round trips."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.bfd import (
    AuthConfig,
    AuthType,
    BfdDecodeError,
    ControlPacket,
    Diag,
    DigestAuth,
    DiscardReason,
    SimplePasswordAuth,
    State,
    sign,
)

from .strategies import control_packets

BASE = ControlPacket(
    state=State.UP,
    detect_mult=3,
    my_discriminator=0x11223344,
    your_discriminator=0x55667788,
    desired_min_tx_us=300_000,
    required_min_rx_us=300_000,
    required_min_echo_rx_us=50_000,
)
# Vers 1 / Diag 0 | Up, no flags | mult 3 | Length 24 | discriminators | 300 ms, 300 ms, 50 ms
BASE_HEX = "20c003181122334455667788000493e0000493e00000c350"


def test_golden_no_auth() -> None:
    assert BASE.encode().hex() == BASE_HEX
    assert ControlPacket.decode(bytes.fromhex(BASE_HEX)) == BASE


def test_golden_flags_and_diag() -> None:
    packet = ControlPacket(
        state=State.DOWN,
        diag=Diag.CONTROL_DETECTION_TIME_EXPIRED,
        poll=True,
        demand=True,
        control_plane_independent=True,
        detect_mult=1,
        my_discriminator=1,
        desired_min_tx_us=1_000_000,
        required_min_rx_us=0,
    )
    # 0x21 = version 1, diag 1; 0x6a = Down(01) P(1) F(0) C(1) A(0) D(1) M(0)
    expected = "216a01180000000100000000000f42400000000000000000"
    assert packet.encode().hex() == expected
    assert ControlPacket.decode(bytes.fromhex(expected)) == packet


def test_golden_simple_password() -> None:
    config = AuthConfig(type=AuthType.SIMPLE_PASSWORD, keys={7: b"secret"}, send_key_id=7)
    signed = sign(BASE, config)
    # A bit (0xc4), Length 33; Auth Type 1, Auth Len 9, Key ID 7, "secret"
    expected = "20c40321" + BASE_HEX[8:] + "010907" + b"secret".hex()
    assert signed.encode().hex() == expected
    decoded = ControlPacket.decode(bytes.fromhex(expected))
    assert decoded == signed
    assert decoded.auth == SimplePasswordAuth(key_id=7, password=b"secret")


@pytest.mark.parametrize(
    ("auth_type", "hash_name", "digest_hex"),
    [
        (AuthType.KEYED_MD5, "md5", "a61ffc32a475871d10889e51c27317c4"),
        (AuthType.KEYED_SHA1, "sha1", "bde88cf9d23b2c70f191dfcc01bc642cf7c6923b"),
    ],
)
def test_golden_keyed(auth_type: AuthType, hash_name: str, digest_hex: str) -> None:
    key = b"md5key" if hash_name == "md5" else b"sha1key"
    size = 16 if hash_name == "md5" else 20
    config = AuthConfig(type=auth_type, keys={7: key}, send_key_id=7)
    signed = sign(BASE, config, 0x01020304)
    # Build the §6.7.3/§6.7.4 digest input by hand: A bit, Length 24+8+size, the
    # section with the zero-padded key in the digest field.
    length = 24 + 8 + size
    head = bytes.fromhex(f"20c403{length:02x}" + BASE_HEX[8:])
    section = bytes([auth_type, 8 + size, 7, 0]) + bytes.fromhex("01020304")
    digest = hashlib.new(hash_name, head + section + key.ljust(size, b"\0")).digest()
    assert digest.hex() == digest_hex
    assert signed.encode() == head + section + digest
    decoded = ControlPacket.decode(head + section + digest)
    assert decoded == signed
    assert decoded.auth == DigestAuth(
        auth_type=auth_type, key_id=7, sequence=0x01020304, digest=digest
    )


@given(control_packets())
def test_round_trip(packet: ControlPacket) -> None:
    data = packet.encode()
    assert len(data) == packet.length
    assert ControlPacket.decode(data) == packet


@given(control_packets(), st.binary(max_size=8))
def test_trailing_bytes_beyond_length_ignored(packet: ControlPacket, junk: bytes) -> None:
    assert ControlPacket.decode(packet.encode() + junk) == packet


@given(st.binary(max_size=80))
def test_decode_raises_only_decode_error(data: bytes) -> None:
    try:
        ControlPacket.decode(data)
    except BfdDecodeError as exc:
        assert isinstance(exc.discard_reason, DiscardReason)


@given(control_packets(), st.data())
def test_truncated_packet_rejected(packet: ControlPacket, data: st.DataObject) -> None:
    encoded = packet.encode()
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(BfdDecodeError):
        ControlPacket.decode(encoded[:cut])


def _raw(byte0: int = 0x20, flags: int = 0xC0, length: int = 24, extra: bytes = b"") -> bytes:
    return bytes([byte0, flags, 3, length]) + bytes(20) + extra


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x20\xc0", DiscardReason.BAD_LENGTH),
        (_raw(byte0=0x40), DiscardReason.BAD_VERSION),  # version 2
        (_raw(byte0=0x00), DiscardReason.BAD_VERSION),
        (_raw(length=23), DiscardReason.BAD_LENGTH),
        (_raw(length=25), DiscardReason.BAD_LENGTH),  # beyond the datagram
        (_raw(length=25, extra=b"\0"), DiscardReason.BAD_LENGTH),  # no A bit, Length 25
        (_raw(flags=0xC4, length=25, extra=b"\x01"), DiscardReason.BAD_LENGTH),  # A, < 26
        (_raw(flags=0xC4, length=28, extra=b"\x01\x05abc"), DiscardReason.BAD_LENGTH),
        (_raw(flags=0xC4, length=27, extra=b"\x01\x03\x01"), DiscardReason.AUTH_BAD_LENGTH),
        (_raw(flags=0xC4, length=28, extra=b"\x09\x04\x01a"), DiscardReason.AUTH_TYPE_MISMATCH),
        (_raw(flags=0xC4, length=28, extra=b"\x00\x04\x01a"), DiscardReason.AUTH_TYPE_MISMATCH),
        (
            _raw(flags=0xC4, length=44, extra=b"\x02\x14" + bytes(18)),
            DiscardReason.AUTH_BAD_LENGTH,
        ),
    ],
)
def test_malformed(data: bytes, reason: DiscardReason) -> None:
    with pytest.raises(BfdDecodeError) as info:
        ControlPacket.decode(data)
    assert info.value.discard_reason is reason


def test_reserved_diag_kept_as_int() -> None:
    data = bytes([0x20 | 17]) + bytes.fromhex(BASE_HEX)[1:]
    packet = ControlPacket.decode(data)
    assert packet.diag == 17
    assert not isinstance(packet.diag, Diag)
    assert packet.encode() == data


@pytest.mark.parametrize(
    "kwargs",
    [
        {"detect_mult": 256},
        {"my_discriminator": -1},
        {"your_discriminator": 2**32},
        {"diag": 32},
    ],
)
def test_out_of_range_fields_rejected(kwargs: dict[str, int]) -> None:
    fields: dict[str, Any] = {
        "state": State.UP,
        "detect_mult": 3,
        "my_discriminator": 1,
        "desired_min_tx_us": 1,
        "required_min_rx_us": 1,
    }
    fields.update(kwargs)
    with pytest.raises(ValueError):
        ControlPacket(**fields)


def test_auth_section_validation() -> None:
    with pytest.raises(ValueError):
        SimplePasswordAuth(key_id=1, password=b"")
    with pytest.raises(ValueError):
        SimplePasswordAuth(key_id=1, password=bytes(17))
    with pytest.raises(ValueError):
        DigestAuth(auth_type=AuthType.KEYED_SHA1, key_id=1, sequence=0, digest=bytes(16))
    with pytest.raises(ValueError):
        DigestAuth(auth_type=AuthType.SIMPLE_PASSWORD, key_id=1, sequence=0, digest=bytes(16))
