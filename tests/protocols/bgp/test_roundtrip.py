"""Hypothesis round trips and decoder robustness (only the codec's own errors escape)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.bgp import (
    BgpError,
    CodecContext,
    KeepaliveMessage,
    MessageReader,
    NotificationMessage,
    OpenMessage,
    RouteRefreshMessage,
    UpdateMessage,
    decode_capabilities,
    decode_message,
    decode_update,
    encode_capability,
)
from protocols.bgp.attributes import ATTRIBUTE_DECODERS
from protocols.bgp.capabilities import Capability, decode_optional_parameters
from protocols.bgp.nlri import decode_prefixes
from protocols.bgp.update import canonical_attributes

from . import strategies as bs

EXT = CodecContext(asn4=True, extended_message=True)
EXT2 = CodecContext(asn4=False, extended_message=True)
MARKER = b"\xff" * 16


@given(bs.capabilities)
def test_capability_roundtrip(cap: Capability) -> None:
    wire = encode_capability(cap)
    assert decode_capabilities(wire) == (cap,)


@given(bs.open_messages)
def test_open_roundtrip(msg: OpenMessage) -> None:
    decoded = decode_message(msg.encode())
    assert isinstance(decoded, OpenMessage)
    # Long parameter lists switch to RFC 9072 encoding on their own.
    assert decoded == attrs.evolve(msg, extended_parameters=decoded.extended_parameters)
    assert decoded.extended_parameters >= msg.extended_parameters


def _norm(msg: UpdateMessage) -> UpdateMessage:
    return attrs.evolve(msg, attributes=canonical_attributes(msg.attributes))


@settings(max_examples=150)
@given(bs.update_messages(asn4=True))
def test_update_roundtrip_asn4(msg: UpdateMessage) -> None:
    assert decode_message(msg.encode(EXT), EXT) == _norm(msg)


@settings(max_examples=150)
@given(bs.update_messages(asn4=False))
def test_update_roundtrip_two_octet_peer(msg: UpdateMessage) -> None:
    """Towards a 2-octet speaker: AS_TRANS + AS4_PATH/AS4_AGGREGATOR, merged back on receive."""
    assert decode_message(msg.encode(EXT2), EXT2) == _norm(msg)


@given(st.one_of(bs.notifications, bs.route_refreshes.filter(lambda m: True), bs.keepalives))
def test_other_messages_roundtrip(
    msg: NotificationMessage | RouteRefreshMessage | KeepaliveMessage,
) -> None:
    assert decode_message(msg.encode()) == msg


@given(
    st.lists(st.one_of(bs.notifications, bs.keepalives, bs.open_messages), max_size=5),
    st.integers(1, 64),
)
def test_reader_splits_stream(
    msgs: list[NotificationMessage | KeepaliveMessage | OpenMessage], chunk: int
) -> None:
    stream = b"".join(m.encode() for m in msgs)
    reader = MessageReader()
    out = []
    for i in range(0, len(stream), chunk):
        reader.feed(stream[i : i + chunk])
        while (m := reader.next_message(CodecContext())) is not None:
            out.append(m)
    assert [
        m if not isinstance(m, OpenMessage) else attrs.evolve(m, extended_parameters=False)
        for m in out
    ] == [
        m if not isinstance(m, OpenMessage) else attrs.evolve(m, extended_parameters=False)
        for m in msgs
    ]


# ---------------------------------------------------------------- robustness


def _only_codec_errors(fn: Callable[..., object], *args: object) -> None:
    with contextlib.suppress(BgpError):
        fn(*args)


@given(st.binary(max_size=120))
def test_decode_message_random_bytes(data: bytes) -> None:
    _only_codec_errors(decode_message, data)


@settings(max_examples=300)
@given(st.integers(1, 5), st.binary(max_size=200), st.booleans())
def test_decode_message_random_bodies(msg_type: int, body: bytes, asn4: bool) -> None:
    wire = MARKER + (19 + len(body)).to_bytes(2, "big") + bytes((msg_type,)) + body
    _only_codec_errors(decode_message, wire, CodecContext(asn4=asn4))


@settings(max_examples=300)
@given(st.binary(max_size=200), st.booleans())
def test_decode_update_random(body: bytes, asn4: bool) -> None:
    _only_codec_errors(decode_update, body, CodecContext(asn4=asn4))


@given(st.sampled_from(sorted(ATTRIBUTE_DECODERS)), st.binary(max_size=60), st.booleans())
def test_attribute_decoders_random(type_code: int, value: bytes, asn4: bool) -> None:
    _only_codec_errors(ATTRIBUTE_DECODERS[type_code], value, CodecContext(asn4=asn4))


@given(st.binary(max_size=80))
def test_capability_and_parameter_decoders_random(data: bytes) -> None:
    _only_codec_errors(decode_capabilities, data)
    _only_codec_errors(decode_optional_parameters, data)


@given(st.binary(max_size=60), st.sampled_from([1, 2]))
def test_prefix_decoder_random(data: bytes, afi: int) -> None:
    _only_codec_errors(decode_prefixes, data, afi)
