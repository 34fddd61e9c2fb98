"""RFC 7606 error handling: each corruption yields the prescribed action and subcode."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from protocols.bgp import (
    AsPath,
    AsPathSegment,
    CodecContext,
    ErrorAction,
    NotificationMessage,
    RemoteProtocolError,
    UnknownAttribute,
    decode_update,
)

ASN4 = CodecContext(asn4=True)
ASN2 = CodecContext(asn4=False)

ORIGIN = "40 01 01 00"
AS_PATH = "40 02 06 02 01 0000fde9"
NEXT_HOP = "40 03 04 c0000201"
GOOD = ORIGIN + AS_PATH + NEXT_HOP
NLRI = "08 0a"
MP_REACH_V6 = "80 0e 1c 0002 01 10 20010db8000000000000000000000001 00 30 20010db80001"


def body(attrs: str, nlri: str = NLRI, withdrawn: str = "") -> bytes:
    a = bytes.fromhex(attrs.replace(" ", ""))
    w = bytes.fromhex(withdrawn.replace(" ", ""))
    n = bytes.fromhex(nlri.replace(" ", ""))
    return len(w).to_bytes(2, "big") + w + len(a).to_bytes(2, "big") + a + n


TAW = ErrorAction.TREAT_AS_WITHDRAW
DISCARD = ErrorAction.ATTRIBUTE_DISCARD

# (id, attributes hex, context, expected action, attribute type, RFC 4271 subcode)
NON_FATAL = [
    ("origin-length", "40 01 02 0000" + AS_PATH + NEXT_HOP, ASN4, TAW, 1, 5),
    ("origin-value", "40 01 01 03" + AS_PATH + NEXT_HOP, ASN4, TAW, 1, 6),
    ("origin-flags", "c0 01 01 00" + AS_PATH + NEXT_HOP, ASN4, TAW, 1, 4),
    ("as-path-segment-type", ORIGIN + "40 02 06 07 01 0000fde9" + NEXT_HOP, ASN4, TAW, 2, 11),
    ("as-path-overrun", ORIGIN + "40 02 06 02 02 0000fde9" + NEXT_HOP, ASN4, TAW, 2, 11),
    ("as-path-empty-segment", ORIGIN + "40 02 02 02 00" + NEXT_HOP, ASN4, TAW, 2, 11),
    ("as-path-2-octet-odd", ORIGIN + "40 02 03 02 01 fd" + NEXT_HOP, ASN2, TAW, 2, 11),
    ("next-hop-length", ORIGIN + AS_PATH + "40 03 05 c000020100", ASN4, TAW, 3, 5),
    ("next-hop-zero", ORIGIN + AS_PATH + "40 03 04 00000000", ASN4, TAW, 3, 8),
    ("next-hop-multicast", ORIGIN + AS_PATH + "40 03 04 e0000001", ASN4, TAW, 3, 8),
    ("med-length", GOOD + "80 04 03 000001", ASN4, TAW, 4, 5),
    ("local-pref-length", GOOD + "40 05 02 0064", ASN4, TAW, 5, 5),
    ("atomic-aggregate-length", GOOD + "40 06 01 00", ASN4, DISCARD, 6, 5),
    ("aggregator-length", GOOD + "c0 07 07 0000fde9 c00002", ASN4, DISCARD, 7, 5),
    ("aggregator-length-2", GOOD + "c0 07 08 0000fde9 c0000201", ASN2, DISCARD, 7, 5),
    ("communities-length", GOOD + "c0 08 05 0000000001", ASN4, TAW, 8, 5),
    ("communities-empty", GOOD + "c0 08 00", ASN4, TAW, 8, 5),
    ("originator-id-length", GOOD + "80 09 03 010203", ASN4, TAW, 9, 5),
    ("cluster-list-length", GOOD + "80 0a 05 0102030405", ASN4, TAW, 10, 5),
    ("large-communities-length", GOOD + "c0 20 0b" + "00" * 11, ASN4, TAW, 32, 5),
    ("duplicate-med", GOOD + "80 04 04 00000001 80 04 04 00000002", ASN4, DISCARD, 4, 1),
    ("missing-origin", AS_PATH + NEXT_HOP, ASN4, TAW, 1, 3),
    ("missing-as-path", ORIGIN + NEXT_HOP, ASN4, TAW, 2, 3),
    ("missing-next-hop", ORIGIN + AS_PATH, ASN4, TAW, 3, 3),
    ("attribute-overrun", GOOD + "80 04 09 00000001", ASN4, TAW, 4, 5),
    ("short-trailer", GOOD + "80 04", ASN4, TAW, None, 1),
    ("as4-path-from-new", GOOD + "c0 11 06 02 01 0000fde9", ASN4, DISCARD, 17, 9),
    ("as4-path-malformed", GOOD + "c0 11 06 02 02 0000fde9", ASN2, DISCARD, 17, 11),
    ("as4-aggregator-length", GOOD + "c0 12 07 00000001 c00002", ASN2, DISCARD, 18, 5),
]


@pytest.mark.parametrize(
    ("attrs", "ctx", "action", "attr_type", "subcode"),
    [c[1:] for c in NON_FATAL],
    ids=[c[0] for c in NON_FATAL],
)
def test_non_fatal(
    attrs: str, ctx: CodecContext, action: ErrorAction, attr_type: int | None, subcode: int
) -> None:
    if ctx is ASN2:
        attrs = attrs.replace(AS_PATH, "40 02 04 02 01 fde9")
    decoded = decode_update(body(attrs), ctx)
    matching = [n for n in decoded.notes if n.attr_type == attr_type]
    assert matching, decoded.notes
    assert (matching[0].action, matching[0].subcode) == (action, subcode)
    assert decoded.treat_as_withdraw == (action == TAW)
    if decoded.treat_as_withdraw:
        assert decoded.announced == ()
        assert IPv4Network("10.0.0.0/8") in decoded.withdrawn
    else:
        assert decoded.announced == (IPv4Network("10.0.0.0/8"),)
    # The malformed/duplicate attribute never survives.
    if action == DISCARD and attr_type == 4:
        values = [getattr(a, "value", None) for a in decoded.update.attributes if a.TYPE == 4]
        assert values == [1]


# (id, attributes hex, nlri hex, withdrawn hex, subcode)
FATAL = [
    ("unrecognized-well-known", GOOD + "40 63 01 00", NLRI, "", 2),
    ("duplicate-mp-reach", MP_REACH_V6 + MP_REACH_V6 + ORIGIN + AS_PATH, "", "", 1),
    (
        "mp-reach-next-hop-length",
        "80 0e 0a 0002 01 05 0000000000 00 00" + ORIGIN + AS_PATH,
        "",
        "",
        9,
    ),
    (
        "mp-reach-prefix-length",
        "80 0e 18 0002 01 10" + "00" * 16 + "00 81 0000" + ORIGIN,
        "",
        "",
        10,
    ),
    ("mp-reach-flags", "40 0e 05 0002 01 00 00" + ORIGIN, "", "", 4),
    ("mp-unreach-short", "80 0f 02 0002", "", "", 9),
    ("mp-reach-overrun", ORIGIN + "80 0e 30 0002 01 00 00", "", "", 5),
    ("nlri-prefix-too-long", GOOD, "21 0a000000 00", "", 10),
    ("nlri-overrun", GOOD, "18 0a00", "", 10),
    ("withdrawn-prefix-too-long", "", "", "21 0a00000000", 10),
]


@pytest.mark.parametrize(
    ("attrs", "nlri", "withdrawn", "subcode"), [c[1:] for c in FATAL], ids=[c[0] for c in FATAL]
)
def test_session_reset(attrs: str, nlri: str, withdrawn: str, subcode: int) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_update(body(attrs, nlri, withdrawn), ASN4)
    assert (info.value.code, info.value.subcode) == (3, subcode)
    notification = NotificationMessage.from_error(info.value)
    assert (notification.code, notification.subcode) == (3, subcode)


def test_unrecognized_well_known_data_is_the_attribute() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_update(body(GOOD + "40 63 01 00"), ASN4)
    assert info.value.data == bytes.fromhex("40630100")


@pytest.mark.parametrize(
    ("raw", "subcode"),
    [
        (b"\x00\x05\x00\x00", 1),  # withdrawn length overruns
        (b"\x00\x00\x00\x09\x40\x01\x01\x00", 1),  # attribute length overruns
        (b"\x00", 1),
    ],
)
def test_length_fields(raw: bytes, subcode: int) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_update(raw, ASN4)
    assert (info.value.code, info.value.subcode) == (3, subcode)


def test_strongest_action_wins() -> None:
    attrs = GOOD + "40 06 01 00" + "c0 08 05 0000000001"  # discard + treat-as-withdraw
    decoded = decode_update(body(attrs), ASN4)
    assert {n.action for n in decoded.notes} == {DISCARD, TAW}
    assert decoded.treat_as_withdraw


def test_unknown_optional_attributes() -> None:
    attrs = GOOD + "c0 63 02 abcd" + "80 64 01 ff"
    decoded = decode_update(body(attrs), ASN4)
    assert decoded.notes == ()
    unknown = [a for a in decoded.update.attributes if isinstance(a, UnknownAttribute)]
    # Transitive kept with Partial set; non-transitive dropped (RFC 4271 §5).
    assert unknown == [UnknownAttribute(type_code=0x63, flags=0xE0, value=b"\xab\xcd")]


def test_withdraw_only_update_needs_no_attributes() -> None:
    decoded = decode_update(body("", "", "08 0a"), ASN4)
    assert decoded.notes == ()
    assert decoded.withdrawn == (IPv4Network("10.0.0.0/8"),)


def test_as4_path_merge_after_old_speaker_prepend() -> None:
    """RFC 6793 §4.2.3: an OLD speaker prepended 65010 to AS_PATH only."""
    # AS_PATH: [65010, 23456, 100]; AS4_PATH: [70000, 100]
    attrs = ORIGIN + "40 02 08 02 03 fdf2 5ba0 0064" + NEXT_HOP + "c0 11 0a 02 02 00011170 00000064"
    decoded = decode_update(body(attrs), ASN2)
    assert decoded.notes == ()
    assert decoded.update.get(AsPath) == AsPath(
        segments=(AsPathSegment(type=2, asns=(65010, 70000, 100)),)
    )


def test_as4_path_ignored_when_aggregator_not_as_trans() -> None:
    attrs = (
        GOOD.replace(AS_PATH, "40 02 04 02 01 5ba0")
        + "c0 07 06 fde9 01020304"
        + "c0 11 06 02 01 00011170"
        + "c0 12 08 00011170 01020304"
    )
    decoded = decode_update(body(attrs), ASN2)
    assert {n.attr_type for n in decoded.notes} == {17, 18}
    assert decoded.update.get(AsPath) == AsPath.sequence(23456)


def test_next_hop_ignored_without_ipv4_nlri() -> None:
    # MP-only update with a bogus NEXT_HOP: no action (RFC 4760 §3).
    attrs = MP_REACH_V6 + ORIGIN + AS_PATH + "40 03 04 00000000"
    decoded = decode_update(body(attrs, ""), ASN4)
    assert decoded.notes == ()
    assert decoded.announced
    assert IPv4Address("0.0.0.0")
