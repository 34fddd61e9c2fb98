"""Our Echo packet format."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.bfd import BfdDecodeError, DiscardReason, EchoPacket

from .strategies import U32

echoes = st.builds(
    EchoPacket,
    discriminator=U32,
    sequence=U32,
    timestamp_us=st.integers(-(2**63), 2**63 - 1),
    tag=st.binary(min_size=8, max_size=8),
)


def test_golden() -> None:
    echo = EchoPacket(discriminator=0x0A0B0C0D, sequence=7, timestamp_us=1_500_000)
    expected = b"SPKE" + bytes.fromhex("0a0b0c0d00000007000000000016e360") + bytes(8)
    assert echo.encode() == expected
    assert EchoPacket.decode(expected) == echo


@given(echoes)
def test_round_trip(echo: EchoPacket) -> None:
    assert EchoPacket.decode(echo.encode()) == echo


@given(st.binary(max_size=40))
def test_decode_raises_only_decode_error(data: bytes) -> None:
    try:
        EchoPacket.decode(data)
    except BfdDecodeError as exc:
        assert exc.discard_reason is DiscardReason.ECHO_MALFORMED


@given(echoes, st.binary(min_size=16, max_size=16), st.integers(0, 19 * 8 - 1))
def test_tag(echo: EchoPacket, secret: bytes, bit: int) -> None:
    sealed = echo.sealed(secret)
    assert sealed.tag_valid(secret)
    wire = bytearray(sealed.encode())
    wire[4 + bit // 8] ^= 0x80 >> (bit % 8)  # any bit after the magic, before the tag
    assert not EchoPacket.decode(bytes(wire)).tag_valid(secret)


def test_bad_magic() -> None:
    with pytest.raises(BfdDecodeError):
        EchoPacket.decode(b"XXXX" + bytes(24))
