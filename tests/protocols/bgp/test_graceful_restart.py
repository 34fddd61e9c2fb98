"""Graceful restart (RFC 4724), its Notification extension and Hard Reset (RFC 8538):
the capability codec, malformed capabilities, negotiation, End-of-RIB, Hard Reset."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Sequence
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.bgp import (
    AFI,
    HARD_RESET_CEASE_SUBCODES,
    IPV4_UNICAST,
    IPV6_UNICAST,
    SAFI,
    BgpError,
    CapabilityCode,
    CeaseSubcode,
    CodecContext,
    EndOfRib,
    Established,
    FourOctetAsCapability,
    GracefulRestartCapability,
    GracefulRestartFamily,
    GracefulRestartNegotiation,
    LocalProtocolError,
    MalformedCapability,
    MultiprotocolCapability,
    NotifCode,
    NotificationMessage,
    NotificationReceived,
    NotificationSent,
    OpenMessage,
    RemoteProtocolError,
    SessionConfig,
    ShouldClose,
    State,
    UnknownCapability,
    decode_capabilities,
    decode_message,
    decode_message_ex,
    encode_capability,
    graceful_restart_capability,
    hard_reset,
    hard_reset_cause,
    is_hard_reset,
    needs_hard_reset,
    negotiate,
    outgoing_notification,
)
from protocols.bgp.capabilities import Capability
from protocols.bgp.update import DecodedUpdate
from tests.helpers.bgp_core import ConnectionPair, config, config_b, of

GR_CODE = CapabilityCode.GRACEFUL_RESTART


def gr_tlv(value: bytes) -> bytes:
    return bytes((GR_CODE, len(value))) + value


# ------------------------------------------------------------------ capability codec


def test_capability_wire_and_flags() -> None:
    cap = GracefulRestartCapability(
        restart_state=False,
        notification=True,
        restart_time=4095,
        families=(
            GracefulRestartFamily(afi=1, safi=1, forwarding_preserved=False),
            GracefulRestartFamily(afi=2, safi=1, forwarding_preserved=True),
        ),
    )
    assert encode_capability(cap) == bytes.fromhex("40 0a 4fff 0001 01 00 0002 01 80")
    assert decode_capabilities(encode_capability(cap)) == (cap,)
    # R only, time 0, no family (a receiving-only speaker, RFC 4724 §3).
    r_only = GracefulRestartCapability(restart_state=True, restart_time=0)
    assert encode_capability(r_only) == bytes.fromhex("40 02 8000")


def test_reserved_bits_are_ignored_on_receipt() -> None:
    # Flags 0x3 (both reserved bits) + time 90; family flags 0x7f (all reserved).
    (cap,) = decode_capabilities(gr_tlv(bytes.fromhex("305a 0001 01 7f")))
    assert cap == GracefulRestartCapability(
        restart_state=False,
        notification=False,
        restart_time=90,
        families=(GracefulRestartFamily(afi=1, safi=1, forwarding_preserved=False),),
    )
    assert encode_capability(cap) == gr_tlv(bytes.fromhex("005a 0001 01 00"))


def test_restart_time_is_twelve_bits() -> None:
    with pytest.raises(LocalProtocolError):
        GracefulRestartCapability(restart_time=4096).encode_value()
    with pytest.raises(LocalProtocolError):
        graceful_restart_capability(restart_time=-1, families=())
    with pytest.raises(LocalProtocolError):
        graceful_restart_capability(restart_time=4096, families=())


def test_builder() -> None:
    cap = graceful_restart_capability(
        restart_time=120,
        families=[IPV4_UNICAST, IPV6_UNICAST, IPV4_UNICAST],
        restarting=True,
        forwarding_preserved=True,
    )
    assert cap.restart_state and cap.notification and cap.restart_time == 120
    assert [(f.afi, f.safi, f.forwarding_preserved) for f in cap.families] == [
        (1, 1, True),
        (2, 1, True),
    ]
    fresh = graceful_restart_capability(restart_time=120, families=[IPV4_UNICAST])
    assert not fresh.restart_state and not fresh.families[0].forwarding_preserved


@given(
    st.integers(0, 0xFFFF),
    st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFF), st.integers(0, 0xFF))),
)
def test_capability_bytes_roundtrip(head: int, fams: list[tuple[int, int, int]]) -> None:
    """Any well-formed value decodes; re-encoding clears only the reserved bits."""
    value = struct.pack("!H", head) + b"".join(struct.pack("!HBB", *f) for f in fams)
    if len(value) > 255:
        return
    (cap,) = decode_capabilities(gr_tlv(value))
    assert isinstance(cap, GracefulRestartCapability)
    assert cap.restart_time == head & 0xFFF
    assert cap.restart_state == bool(head & 0x8000)
    assert cap.notification == bool(head & 0x4000)
    expected = struct.pack("!H", head & 0xCFFF) + b"".join(
        struct.pack("!HBB", a, s, f & 0x80) for a, s, f in fams
    )
    assert cap.encode_value() == expected


@given(
    st.builds(
        GracefulRestartCapability,
        restart_state=st.booleans(),
        notification=st.booleans(),
        restart_time=st.integers(0, 4095),
        families=st.lists(
            st.builds(
                GracefulRestartFamily,
                afi=st.integers(0, 0xFFFF),
                safi=st.integers(0, 0xFF),
                forwarding_preserved=st.booleans(),
            ),
            max_size=60,
        ).map(tuple),
    )
)
def test_capability_value_roundtrip(cap: GracefulRestartCapability) -> None:
    assert GracefulRestartCapability.decode_value(cap.encode_value()) == cap


# ------------------------------------------------------------------ malformed capability


@pytest.mark.parametrize("value", ["", "00", "0078 00", "0078 0001 01", "0078 0001 0100 00"])
def test_malformed_capability_is_ignored_and_noted(value: str) -> None:
    raw = bytes.fromhex(value)
    with pytest.raises(RemoteProtocolError):
        GracefulRestartCapability.decode_value(raw)  # the value decoder itself is strict
    as4 = encode_capability(FourOctetAsCapability(asn=65002))
    caps = decode_capabilities(gr_tlv(raw) + as4)
    assert caps[1] == FourOctetAsCapability(asn=65002)  # the rest still decodes
    bad = caps[0]
    assert isinstance(bad, MalformedCapability)
    assert not isinstance(bad, GracefulRestartCapability)
    assert (bad.code, bad.value) == (GR_CODE, raw)
    assert f"length {len(raw)}" in bad.reason
    assert decode_capabilities(encode_capability(bad)) == (bad,)  # kept verbatim


def test_other_malformed_capabilities_still_fail_the_open() -> None:
    with pytest.raises(RemoteProtocolError):
        decode_capabilities(bytes.fromhex("41 03 000001"))


@given(st.binary(max_size=255))
def test_any_gr_value_never_raises(value: bytes) -> None:
    (cap,) = decode_capabilities(gr_tlv(value))
    assert isinstance(cap, GracefulRestartCapability | MalformedCapability)
    with contextlib.suppress(RemoteProtocolError):
        GracefulRestartCapability.decode_value(value)


@given(st.binary(max_size=120))
def test_capability_lists_with_gr_raise_only_codec_errors(tail: bytes) -> None:
    with contextlib.suppress(BgpError):
        decode_capabilities(gr_tlv(tail[:3]) + tail)


def _open_with(*caps: Capability) -> OpenMessage:
    return OpenMessage(
        my_as=65002,
        hold_time=90,
        bgp_identifier=IPv4Address("192.0.2.2"),
        capabilities=(FourOctetAsCapability(asn=65002), *caps),
    )


def test_open_with_malformed_gr_is_accepted_without_gr() -> None:
    wire = _open_with(UnknownCapability(code=GR_CODE, value=b"\x00")).encode()
    peer = decode_message(wire)
    assert isinstance(peer, OpenMessage)
    ours = config(graceful_restart=graceful_restart_capability(restart_time=120, families=()))
    neg = negotiate(ours, peer)
    assert neg.graceful_restart is None
    assert not neg.graceful_restart_negotiation.negotiated
    assert any(isinstance(c, MalformedCapability) for c in neg.peer_capabilities)


def test_session_with_malformed_gr_from_peer_comes_up() -> None:
    gr = graceful_restart_capability(restart_time=120, families=[IPV4_UNICAST])
    pair = ConnectionPair(
        config(graceful_restart=gr),
        config_b(extra_capabilities=(UnknownCapability(code=GR_CODE, value=b"\x00\x78\x00"),)),
    )
    pair.establish()
    (est,) = of(pair.a_events, Established)
    assert not est.negotiated.graceful_restart_negotiation.negotiated
    assert not of(pair.a_events, NotificationSent)


# ------------------------------------------------------------------ negotiation


def _gr(
    time: int = 120,
    *,
    n: bool = True,
    r: bool = False,
    fams: Sequence[tuple[int, int]] | None = None,
) -> GracefulRestartCapability:
    families = fams if fams is not None else [IPV4_UNICAST, IPV6_UNICAST]
    return graceful_restart_capability(
        restart_time=time,
        families=families,
        restarting=r,
        notification=n,
    )


def _negotiation(
    local: GracefulRestartCapability | None, peer: GracefulRestartCapability | None
) -> GracefulRestartNegotiation:
    both = (MultiprotocolCapability(afi=1, safi=1), MultiprotocolCapability(afi=2, safi=1))
    ours = config(
        families=(IPV4_UNICAST, IPV6_UNICAST),
        graceful_restart=local,
    )
    theirs = _open_with(*both, *([peer] if peer is not None else []))
    return negotiate(ours, theirs).graceful_restart_negotiation


def test_negotiated_when_both_advertise() -> None:
    peer = GracefulRestartCapability(
        restart_state=True,
        notification=True,
        restart_time=300,
        families=(
            GracefulRestartFamily(afi=1, safi=1, forwarding_preserved=True),
            GracefulRestartFamily(afi=2, safi=1, forwarding_preserved=False),
            GracefulRestartFamily(afi=1, safi=2, forwarding_preserved=True),  # not negotiated
        ),
    )
    g = _negotiation(_gr(120, fams=[IPV4_UNICAST]), peer)
    assert g.negotiated and g.notification
    assert g.peer_restart_time == 300
    assert g.peer_restarted and g.peer_notification
    assert g.peer_families == {IPV4_UNICAST, IPV6_UNICAST}
    assert g.peer_forwarding_preserved == {IPV4_UNICAST}
    assert g.retained_families == {IPV4_UNICAST}  # what we listed


def test_not_negotiated_when_one_side_is_silent() -> None:
    only_peer = _negotiation(None, _gr(90))
    assert not only_peer.negotiated and not only_peer.notification
    assert only_peer.peer_restart_time == 90  # still visible, for show output
    assert only_peer.retained_families == frozenset()
    only_us = _negotiation(_gr(), None)
    assert not only_us.negotiated and only_us.peer_restart_time is None
    assert not only_us.peer_restarted and only_us.peer_families == frozenset()
    assert only_us.retained_after(None) == frozenset()


def test_n_bit_needs_both_sides() -> None:
    assert not _negotiation(_gr(n=True), _gr(n=False)).notification
    assert not _negotiation(_gr(n=False), _gr(n=True)).notification
    g = _negotiation(_gr(n=False), _gr(n=True))
    assert g.negotiated and g.peer_notification


def test_first_of_repeated_capabilities_counts() -> None:
    g = _negotiation(_gr(), _gr(10))
    ours = config(families=(IPV4_UNICAST,), graceful_restart=_gr())
    twice = _open_with(_gr(10), _gr(20))
    assert negotiate(ours, twice).graceful_restart_negotiation.peer_restart_time == 10
    assert g.peer_restart_time == 10


def test_retained_after_each_way_of_ending() -> None:
    with_n = _negotiation(_gr(n=True), _gr(n=True))
    without_n = _negotiation(_gr(n=False), _gr(n=True))
    both = {IPV4_UNICAST, IPV6_UNICAST}
    admin_reset = NotificationMessage.cease(CeaseSubcode.ADMINISTRATIVE_RESET)
    shutdown = NotificationMessage.cease(CeaseSubcode.ADMINISTRATIVE_SHUTDOWN)
    hold = NotificationMessage(code=NotifCode.HOLD_TIMER_EXPIRED)
    # A TCP close without NOTIFICATION keeps graceful restart (RFC 4724 §4).
    assert with_n.retained_after(None) == both
    assert without_n.retained_after(None) == both
    # Any NOTIFICATION ends it without N; with N only a Hard Reset does (RFC 8538 §4).
    assert without_n.retained_after(admin_reset) == frozenset()
    assert with_n.retained_after(admin_reset) == both
    assert with_n.retained_after(hold) == both
    assert with_n.retained_after(hard_reset(shutdown)) == frozenset()


def test_negotiation_via_connections() -> None:
    pair = ConnectionPair(
        config(graceful_restart=_gr(120, fams=[IPV4_UNICAST])),
        config_b(graceful_restart=_gr(240, fams=[IPV4_UNICAST], r=True)),
    )
    pair.establish()
    (est,) = of(pair.a_events, Established)
    g = est.negotiated.graceful_restart_negotiation
    assert g.negotiated and g.notification and g.peer_restart_time == 240 and g.peer_restarted
    assert est.negotiated.graceful_restart is not None  # the older field, unchanged
    (est_b,) = of(pair.b_events, Established)
    assert est_b.negotiated.graceful_restart_negotiation.peer_restart_time == 120


# ------------------------------------------------------------------ End-of-RIB


def test_end_of_rib_with_extended_length_mp_unreach() -> None:
    ctx = CodecContext()
    # MP_UNREACH_NLRI flagged Extended Length (0x90), 2-octet length 3: still End-of-RIB.
    wire = bytes.fromhex("ff" * 16 + "001e 02 0000 0007 900f 0003 0002 01")
    decoded = decode_message_ex(wire, ctx)
    assert isinstance(decoded, DecodedUpdate) and not decoded.notes
    assert decoded.update.end_of_rib == (AFI.IPV6, SAFI.UNICAST)


def test_empty_mp_unreach_with_other_attributes_is_not_end_of_rib() -> None:
    ctx = CodecContext()
    # ORIGIN IGP + empty MP_UNREACH (IPv6 unicast): not the RFC 4724 §2 marker.
    wire = bytes.fromhex("ff" * 16 + "0021 02 0000 000a 400101 00 800f03 0002 01")
    decoded = decode_message_ex(wire, ctx)
    assert isinstance(decoded, DecodedUpdate)
    assert decoded.update.end_of_rib is None


def test_end_of_rib_events_over_a_gr_session() -> None:
    gr = _gr(fams=[IPV4_UNICAST, IPV6_UNICAST])
    fams = (IPV4_UNICAST, IPV6_UNICAST)
    pair = ConnectionPair(
        config(graceful_restart=gr, families=fams), config_b(graceful_restart=gr, families=fams)
    )
    pair.establish()
    pair.a.send_end_of_rib(AFI.IPV6, SAFI.UNICAST)
    pair.a.send_end_of_rib(AFI.IPV4, SAFI.UNICAST)
    pair.pump(1.0)
    assert of(pair.b_events, EndOfRib) == [
        EndOfRib(afi=AFI.IPV6, safi=SAFI.UNICAST),
        EndOfRib(afi=AFI.IPV4, safi=SAFI.UNICAST),
    ]


# ------------------------------------------------------------------ Hard Reset


def test_hard_reset_wire() -> None:
    inner = NotificationMessage.cease(CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, "bye")
    hr = hard_reset(inner)
    assert hr.encode() == bytes.fromhex("ff" * 16 + "001b 03 06 09 06 02 03 627965")
    assert is_hard_reset(hr) and not is_hard_reset(inner)
    back = decode_message(hr.encode())
    assert isinstance(back, NotificationMessage)
    cause = hard_reset_cause(back)
    assert cause == inner and cause is not None
    assert cause.shutdown_message == "bye"
    assert back.shutdown_message is None  # the outer Cease 9 carries no RFC 9003 text


def test_hard_reset_edge_cases() -> None:
    with pytest.raises(LocalProtocolError):
        hard_reset(hard_reset(NotificationMessage.cease(CeaseSubcode.PEER_DECONFIGURED)))
    with pytest.raises(LocalProtocolError):
        hard_reset(NotificationMessage(code=256, subcode=0))
    assert hard_reset_cause(NotificationMessage(code=6, subcode=9, data=b"\x06")) is None
    assert hard_reset_cause(NotificationMessage(code=6, subcode=9)) is None
    assert hard_reset_cause(NotificationMessage(code=6, subcode=2, data=b"\x06\x02")) is None
    unknown = hard_reset_cause(NotificationMessage(code=6, subcode=9, data=b"\xc8\x07xy"))
    assert unknown == NotificationMessage(code=200, subcode=7, data=b"xy")


@given(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=100))
def test_hard_reset_roundtrip(code: int, subcode: int, data: bytes) -> None:
    inner = NotificationMessage(code=code, subcode=subcode, data=data)
    if is_hard_reset(inner):
        return
    back = decode_message(hard_reset(inner).encode())
    assert isinstance(back, NotificationMessage)
    assert hard_reset_cause(back) == inner


def test_rfc8538_hard_reset_table() -> None:
    def cease(sub: int) -> NotificationMessage:
        return NotificationMessage(code=NotifCode.CEASE, subcode=sub)

    hard = {sub for sub in range(256) if needs_hard_reset(cease(sub))}
    assert hard == {1, 2, 3, 9, 10} == HARD_RESET_CEASE_SUBCODES
    assert needs_hard_reset(cease(CeaseSubcode.ADMINISTRATIVE_RESET), hard_admin_reset=True)
    for code in (1, 2, 3, 4, 5, 7):
        assert not needs_hard_reset(NotificationMessage(code=code, subcode=1))


def test_outgoing_notification_wraps_only_with_n() -> None:
    shutdown = NotificationMessage.cease(CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, "maintenance")
    collision = NotificationMessage.cease(CeaseSubcode.CONNECTION_COLLISION_RESOLUTION)
    with_n = _negotiation(_gr(n=True), _gr(n=True))
    without_n = _negotiation(_gr(n=False), _gr(n=False))
    assert outgoing_notification(shutdown, with_n) == hard_reset(shutdown)
    assert outgoing_notification(collision, with_n) == collision
    assert outgoing_notification(shutdown, without_n) == shutdown
    assert outgoing_notification(shutdown, None) == shutdown
    already = hard_reset(shutdown)
    assert outgoing_notification(already, with_n) == already


def _gr_pair(*, n: bool) -> ConnectionPair:
    pair = ConnectionPair(
        config(graceful_restart=_gr(fams=[IPV4_UNICAST], n=n)),
        config_b(graceful_restart=_gr(fams=[IPV4_UNICAST], n=n)),
    )
    pair.establish()
    return pair


def test_stop_sends_hard_reset_when_n_is_negotiated() -> None:
    pair = _gr_pair(n=True)
    events = pair.a.stop(1.0, CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, "maintenance")
    (sent,) = of(events, NotificationSent)
    assert (sent.code, sent.subcode) == (NotifCode.CEASE, CeaseSubcode.HARD_RESET)
    assert sent.hard_reset_cause == NotificationMessage.cease(2, "maintenance")
    pair.pump(1.0)
    (got,) = of(pair.b_events, NotificationReceived)
    assert (got.code, got.subcode) == (6, 9)
    assert got.shutdown_message == "maintenance"
    cause = got.hard_reset_cause
    assert cause is not None and (cause.code, cause.subcode) == (6, 2)


def test_stop_sends_plain_cease_without_n() -> None:
    pair = _gr_pair(n=False)
    (sent,) = of(pair.a.stop(1.0, CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, "bye"), NotificationSent)
    assert isinstance(sent, NotificationSent)
    assert (sent.code, sent.subcode) == (6, 2) and sent.hard_reset_cause is None


def test_bfd_down_is_a_hard_reset_with_n() -> None:
    pair = _gr_pair(n=True)
    (sent,) = of(pair.a.stop(1.0, CeaseSubcode.BFD_DOWN), NotificationSent)
    assert isinstance(sent, NotificationSent)
    assert sent.subcode == CeaseSubcode.HARD_RESET
    assert sent.hard_reset_cause == NotificationMessage.cease(CeaseSubcode.BFD_DOWN)


def test_stop_for_restart_with_n_sends_a_soft_cease() -> None:
    pair = _gr_pair(n=True)
    neg = pair.a.negotiated
    assert neg is not None
    before = neg.graceful_restart_negotiation
    events = pair.a.stop_for_restart(1.0, "restarting")
    (sent,) = of(events, NotificationSent)
    assert (sent.code, sent.subcode) == (6, CeaseSubcode.ADMINISTRATIVE_RESET)
    assert before.retained_after(sent.message) == {IPV4_UNICAST}
    assert of(events, ShouldClose) and pair.a.state is State.IDLE
    pair.pump(1.0)
    (got,) = of(pair.b_events, NotificationReceived)
    assert got.shutdown_message == "restarting" and got.hard_reset_cause is None


def test_stop_for_restart_without_n_sends_no_notification() -> None:
    pair = _gr_pair(n=False)
    events = pair.a.stop_for_restart(1.0, "restarting")
    assert not of(events, NotificationSent)
    assert of(events, ShouldClose) and pair.a.state is State.IDLE
    assert pair.a.data_to_send() == b""


def test_stop_for_restart_without_gr_is_a_cease() -> None:
    pair = ConnectionPair()
    pair.establish()
    (sent,) = of(pair.a.stop_for_restart(1.0), NotificationSent)
    assert isinstance(sent, NotificationSent)
    assert (sent.code, sent.subcode) == (6, CeaseSubcode.ADMINISTRATIVE_RESET)


def test_stop_for_restart_when_idle() -> None:
    pair = ConnectionPair()
    assert pair.a.stop_for_restart(0.0) == []
    assert pair.a.state is State.IDLE


def test_session_config_accepts_gr() -> None:
    cfg = SessionConfig(
        local_asn=65001,
        peer_asn=65002,
        router_id=IPv4Address("192.0.2.1"),
        graceful_restart=graceful_restart_capability(restart_time=120, families=[IPV4_UNICAST]),
    )
    assert any(isinstance(c, GracefulRestartCapability) for c in cfg.capabilities())
