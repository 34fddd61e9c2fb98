"""Golden vectors: hand-built hex of real messages, per RFC layout."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest

from protocols.bgp import (
    AFI,
    SAFI,
    AsPath,
    CeaseSubcode,
    CodecContext,
    ExtendedMessageCapability,
    ExtendedNextHopCapability,
    ExtendedNextHopEntry,
    FourOctetAsCapability,
    FqdnCapability,
    KeepaliveMessage,
    MpReachNlri,
    MultiprotocolCapability,
    NextHop,
    NotificationMessage,
    OpenMessage,
    Origin,
    OriginAttribute,
    RouteRefreshCapability,
    RouteRefreshMessage,
    UpdateMessage,
    decode_message,
)

M = "ff" * 16
ASN4 = CodecContext(asn4=True)
ASN2 = CodecContext(asn4=False)


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


KEEPALIVE = h(M + "0013 04")
OPEN = h(
    M + "0031 01"
    "04 fde9 005a c0000201 14"
    "02 06 01 04 0001 00 01"  # MP IPv4 unicast
    "02 02 02 00"  # route refresh
    "02 06 41 04 0000fde9"  # 4-octet AS 65001
)
UPDATE_V4 = h(
    M + "0031 02"
    "0000"  # withdrawn routes length
    "0014"  # total path attribute length (20)
    "40 01 01 00"  # ORIGIN IGP
    "40 02 06 02 01 0000fde9"  # AS_PATH AS_SEQUENCE [65001], 4-octet
    "40 03 04 c0000201"  # NEXT_HOP 192.0.2.1
    "08 0a"  # 10.0.0.0/8
    "18 c63364"  # 198.51.100.0/24
)
UPDATE_V4_AS2 = h(
    M + "002f 02 0000 0012"
    "40 01 01 00"
    "40 02 04 02 01 fde9"  # 2-octet AS_PATH
    "40 03 04 c0000201"
    "08 0a 18 c63364"
)
UPDATE_V6 = h(
    M + "003d 02 0000 0026"
    "80 0e 1c"  # MP_REACH_NLRI, optional, 28 octets
    "0002 01 10 20010db8000000000000000000000001 00"  # AFI 2 SAFI 1, NH 2001:db8::1
    "30 20010db80001"  # 2001:db8:1::/48
    "40 01 01 00"  # ORIGIN IGP
    "40 02 00"  # empty AS_PATH
)
NOTIFICATION_SHUTDOWN = h(M + "0021 03 06 02 0b" + b"maintenance".hex())
ROUTE_REFRESH = h(M + "0017 05 0001 00 01")


def test_keepalive() -> None:
    assert KeepaliveMessage().encode() == KEEPALIVE
    assert decode_message(KEEPALIVE) == KeepaliveMessage()


def test_open() -> None:
    msg = OpenMessage(
        my_as=65001,
        hold_time=90,
        bgp_identifier=IPv4Address("192.0.2.1"),
        capabilities=(
            MultiprotocolCapability(afi=AFI.IPV4, safi=SAFI.UNICAST),
            RouteRefreshCapability(),
            FourOctetAsCapability(asn=65001),
        ),
    )
    assert msg.encode() == OPEN
    assert decode_message(OPEN) == msg
    assert msg.asn == 65001


def test_open_build_uses_as_trans_for_4_octet_as() -> None:
    msg = OpenMessage.build(asn=4200000000, hold_time=90, bgp_identifier=IPv4Address("1.1.1.1"))
    assert msg.my_as == 23456
    assert msg.asn == 4200000000


def _v4_update() -> UpdateMessage:
    return UpdateMessage(
        attributes=(
            OriginAttribute(value=Origin.IGP),
            AsPath.sequence(65001),
            NextHop(address=IPv4Address("192.0.2.1")),
        ),
        nlri=(IPv4Network("10.0.0.0/8"), IPv4Network("198.51.100.0/24")),
    )


def test_update_ipv4() -> None:
    assert _v4_update().encode(ASN4) == UPDATE_V4
    assert decode_message(UPDATE_V4, ASN4) == _v4_update()
    assert _v4_update().encode(ASN2) == UPDATE_V4_AS2
    assert decode_message(UPDATE_V4_AS2, ASN2) == _v4_update()


def test_update_mp_reach_ipv6() -> None:
    msg = UpdateMessage(
        attributes=(
            MpReachNlri(
                afi=AFI.IPV6,
                safi=SAFI.UNICAST,
                next_hop=IPv6Address("2001:db8::1"),
                nlri=(IPv6Network("2001:db8:1::/48"),),
            ),
            OriginAttribute(value=Origin.IGP),
            AsPath(),
        )
    )
    assert msg.encode(ASN4) == UPDATE_V6
    decoded = decode_message(UPDATE_V6, ASN4)
    assert decoded == msg
    assert isinstance(decoded, UpdateMessage)
    assert decoded.announced == (IPv6Network("2001:db8:1::/48"),)


def test_notification_cease_shutdown_message() -> None:
    msg = NotificationMessage.cease(CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, "maintenance")
    assert msg.encode() == NOTIFICATION_SHUTDOWN
    decoded = decode_message(NOTIFICATION_SHUTDOWN)
    assert decoded == msg
    assert isinstance(decoded, NotificationMessage)
    assert decoded.shutdown_message == "maintenance"


def test_route_refresh() -> None:
    msg = RouteRefreshMessage(afi=AFI.IPV4, safi=SAFI.UNICAST)
    assert msg.encode() == ROUTE_REFRESH
    assert decode_message(ROUTE_REFRESH) == msg


# A GoBGP-style OPEN: MP IPv4, route refresh + Cisco route refresh in one parameter,
# extended next hop (IPv4 unicast over IPv6), extended message, AS4, FQDN "gobgp".
GOBGP_OPEN = h(
    M + "004c 01 04 fde8 005a 0a000002 2f"
    "02 06 01 04 0001 0001"
    "02 04 02 00 80 00"
    "02 08 05 06 0001 0001 0002"
    "02 02 06 00"
    "02 06 41 04 0000fde8"
    "02 09 49 07 05 676f626770 00"
)


def test_gobgp_open_parses() -> None:
    msg = decode_message(GOBGP_OPEN)
    assert isinstance(msg, OpenMessage)
    assert msg.asn == 65000
    assert msg.hold_time == 90
    assert msg.bgp_identifier == IPv4Address("10.0.0.2")
    assert msg.capabilities == (
        MultiprotocolCapability(afi=AFI.IPV4, safi=SAFI.UNICAST),
        RouteRefreshCapability(),
        RouteRefreshCapability(legacy=True),
        ExtendedNextHopCapability(entries=(ExtendedNextHopEntry(afi=1, safi=1, next_hop_afi=2),)),
        ExtendedMessageCapability(),
        FourOctetAsCapability(asn=65000),
        FqdnCapability(hostname="gobgp", domain=""),
    )


def test_rfc9072_extended_optional_parameters() -> None:
    msg = OpenMessage(
        my_as=65001,
        hold_time=90,
        bgp_identifier=IPv4Address("192.0.2.1"),
        capabilities=(FourOctetAsCapability(asn=65001),),
        extended_parameters=True,
    )
    wire = msg.encode()
    # Non-Ext OP Len 255, Non-Ext OP Type 255, 2-octet Extended Opt. Parm. Length.
    assert wire[28:32] == h("ff ff 0009")
    assert wire[32:] == h("02 0006 41 04 0000fde9")
    assert decode_message(wire) == msg


@pytest.mark.parametrize(
    ("wire", "code", "subcode", "data"),
    [
        (h("00" * 16 + "0013 04"), 1, 1, b""),
        (h(M + "0012 04"), 1, 2, h("0012")),
        (h(M + "0014 04 00"), 1, 2, h("0014")),  # KEEPALIVE must be 19
        (h(M + "0013 09"), 1, 3, h("09")),
        (h(M + "0017 05 0001 00"), 1, 2, h("0017")),
    ],
)
def test_header_errors(wire: bytes, code: int, subcode: int, data: bytes) -> None:
    from protocols.bgp import RemoteProtocolError

    with pytest.raises(RemoteProtocolError) as info:
        decode_message(wire)
    assert (info.value.code, info.value.subcode) == (code, subcode)
    if data:
        assert info.value.data == data


def test_extended_message_length_limit() -> None:
    big = h(M) + (5000).to_bytes(2, "big") + b"\x02" + b"\x00\x00\x00\x00" + b"\x00" * 4977
    from protocols.bgp import RemoteProtocolError

    with pytest.raises(RemoteProtocolError) as info:
        decode_message(big)
    assert (info.value.code, info.value.subcode) == (1, 2)
    msg = decode_message(
        big[:19] + b"\x00\x00\x00\x00" + bytes(4977), CodecContext(extended_message=True)
    )
    assert isinstance(msg, UpdateMessage)
