"""Communities text forms, shutdown communication, capabilities details, sans-IO rule."""

from __future__ import annotations

import ast
import pathlib

import pytest

from protocols.bgp import (
    GracefulRestartCapability,
    GracefulRestartFamily,
    LargeCommunity,
    LocalProtocolError,
    NotificationMessage,
    RemoteProtocolError,
    SessionConfig,
    WellKnownCommunity,
    decode_capabilities,
    decode_shutdown_message,
    encode_capability,
    encode_shutdown_message,
    format_community,
    parse_community,
    parse_large_community,
)

PROTOCOLS_BGP = pathlib.Path(__file__).parents[3] / "protocols" / "bgp"
FORBIDDEN = {
    "trio",
    "socket",
    "asyncio",
    "logging",
    "time",
    "random",
    "os",
    "subprocess",
    "threading",
    "selectors",
}


def test_no_io_imports() -> None:
    files = sorted(PROTOCOLS_BGP.glob("*.py"))
    assert files
    for path in files:
        text = path.read_text()
        assert "from __future__ import annotations" in text, path
        for node in ast.walk(ast.parse(text)):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("65000:100", 0xFDE80064),
        ("no-export", 0xFFFFFF01),
        ("no-advertise", 0xFFFFFF02),
        ("no-export-subconfed", 0xFFFFFF03),
        ("no-peer", 0xFFFFFF04),
        ("graceful-shutdown", 0xFFFF0000),
        ("blackhole", 0xFFFF029A),
        ("NO_ADVERTISE", 0xFFFFFF02),
        ("0:0", 0),
    ],
)
def test_community_text(text: str, value: int) -> None:
    assert parse_community(text) == value
    assert parse_community(format_community(value)) == value


def test_community_names() -> None:
    assert format_community(WellKnownCommunity.NO_EXPORT) == "no-export"
    assert format_community(0xFDE80064) == "65000:100"


@pytest.mark.parametrize("bad", ["65536:1", "1:65536", "abc", "1:2:3", "-1:2", ""])
def test_bad_community_text(bad: str) -> None:
    with pytest.raises(LocalProtocolError):
        parse_community(bad)


def test_large_community_text() -> None:
    lc = parse_large_community("4200000000:1:2")
    assert lc == LargeCommunity(global_admin=4200000000, local1=1, local2=2)
    assert str(lc) == "4200000000:1:2"
    for bad in ("1:2", "1:2:4294967296", "a:b:c"):
        with pytest.raises(LocalProtocolError):
            parse_large_community(bad)


def test_shutdown_communication() -> None:
    assert encode_shutdown_message("") == b"\x00"
    long = "é" * 200  # 400 octets: truncated at a character boundary
    enc = encode_shutdown_message(long)
    assert enc[0] == 254 and decode_shutdown_message(enc) == "é" * 127
    assert decode_shutdown_message(b"\x05abc") is None  # overrun
    assert decode_shutdown_message(b"\x02\xff\xfe") is None  # not UTF-8
    assert decode_shutdown_message(b"") is None
    reset = NotificationMessage.cease(4, "bye")
    assert reset.shutdown_message == "bye"
    assert NotificationMessage(code=6, subcode=3, data=b"\x03bye").shutdown_message is None
    with pytest.raises(LocalProtocolError):
        NotificationMessage.cease(7, "not allowed")


def test_graceful_restart_capability_wire() -> None:
    cap = GracefulRestartCapability(
        restart_state=True,
        notification=True,
        restart_time=120,
        families=(GracefulRestartFamily(afi=1, safi=1, forwarding_preserved=True),),
    )
    wire = encode_capability(cap)
    assert wire == bytes.fromhex("40 06 c078 0001 01 80".replace(" ", ""))
    assert decode_capabilities(wire) == (cap,)


def test_malformed_capability() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_capabilities(bytes.fromhex("41 03 000001"))
    assert (info.value.code, info.value.subcode) == (2, 0)


def test_config_validation() -> None:
    from ipaddress import IPv4Address

    with pytest.raises(LocalProtocolError):
        SessionConfig(local_asn=1, peer_asn=2, router_id=IPv4Address("1.1.1.1"), hold_time=2)
    with pytest.raises(LocalProtocolError):
        SessionConfig(local_asn=1, peer_asn=2, router_id=IPv4Address("0.0.0.0"))
