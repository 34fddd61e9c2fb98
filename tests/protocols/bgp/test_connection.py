"""Connection / FSM tests: two Connections wired back to back with explicit times."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.bgp import (
    AFI,
    IPV4_UNICAST,
    IPV6_UNICAST,
    SAFI,
    AsPath,
    CeaseSubcode,
    CodecContext,
    Connection,
    EndOfRib,
    Established,
    FourOctetAsCapability,
    Initiator,
    KeepaliveMessage,
    LocalProtocolError,
    NextHop,
    NotificationMessage,
    NotificationReceived,
    NotificationSent,
    OpenReceived,
    Origin,
    OriginAttribute,
    Prefix,
    RouteRefreshReceived,
    SessionConfig,
    ShouldClose,
    ShouldConnect,
    State,
    UpdateMessage,
    UpdateReceived,
    decode_message,
    pack_announcements,
    resolve_collision,
)
from protocols.bgp.fsm import TRANSITIONS, FsmEvent
from tests.helpers.bgp_core import A_ID, B_ID, ConnectionPair, config, config_b, of, peer_open


def test_establish_and_negotiate() -> None:
    pair = ConnectionPair(config(hold_time=90), config_b(hold_time=30, hostname="peer-b"))
    pair.establish(0.0)
    (est,) = of(pair.a_events, Established)
    neg = est.negotiated
    assert neg.hold_time == 30
    assert neg.keepalive_time == 10
    assert neg.peer_asn == 65002
    assert neg.peer_router_id == B_ID
    assert neg.asn4 and neg.route_refresh and neg.extended_message
    assert neg.families == {IPV4_UNICAST}
    assert neg.peer_hostname == "peer-b"
    assert not neg.internal
    assert of(pair.b_events, OpenReceived)
    assert pair.a.codec_context == CodecContext(asn4=True, extended_message=True)


def test_keepalives_every_third_of_hold_and_hold_expiry() -> None:
    pair = ConnectionPair(config(hold_time=30), config_b(hold_time=30))
    pair.establish(100.0)
    keepalive = KeepaliveMessage().encode()
    # A sends a KEEPALIVE at 110, 120, 130 and nothing in between.  B's keepalives
    # reach A, A's never reach B.
    for k in range(1, 4):
        t = 100.0 + 10.0 * k
        assert pair.a.get_timer() == pytest.approx(t)
        assert pair.a.handle_timer(t - 0.001) == []
        assert pair.a.data_to_send() == b""
        pair.a.handle_timer(t)
        assert pair.a.data_to_send() == keepalive
        if k < 3:
            pair.b.handle_timer(t)
            pair.a.receive_data(pair.b.data_to_send(), t)
    # B hears nothing: its hold timer expires exactly 30 s after the last message.
    pair.b.data_to_send()
    assert not of(pair.b.handle_timer(129.999), NotificationSent)
    events = pair.b.handle_timer(130.0)
    (sent,) = of(events, NotificationSent)
    assert (sent.code, sent.subcode) == (4, 0)
    assert of(events, ShouldClose)
    assert pair.b.state is State.IDLE
    assert decode_message(pair.b.data_to_send()) == NotificationMessage(code=4, subcode=0)


def test_received_keepalive_restarts_hold_timer() -> None:
    pair = ConnectionPair(config(hold_time=9), config_b(hold_time=9))
    pair.establish(0.0)
    for t in (3.0, 6.0, 9.0, 12.0):
        pair.a.handle_timer(t)
        pair.b.handle_timer(t)
        pair.pump(t)
    assert pair.a.state is State.ESTABLISHED and pair.b.state is State.ESTABLISHED


def test_hold_time_zero_disables_timers() -> None:
    pair = ConnectionPair(config(hold_time=0), config_b())
    pair.establish(0.0)
    assert pair.a.get_timer() is None
    assert pair.b.get_timer() is None


def test_updates_roundtrip_through_pair() -> None:
    pair = ConnectionPair(
        config(families=(IPV4_UNICAST, IPV6_UNICAST)),
        config_b(families=(IPV4_UNICAST, IPV6_UNICAST)),
    )
    pair.establish(0.0)
    attrs = (
        OriginAttribute(value=Origin.IGP),
        AsPath.sequence(65001),
        NextHop(address=IPv4Address("192.0.2.1")),
    )
    prefixes: list[Prefix] = [IPv4Network("10.1.0.0/16"), IPv6Network("2001:db8::/32")]
    msgs = pack_announcements(
        attrs, prefixes, pair.a.codec_context, ipv6_next_hop=IPv6Address("2001:db8::1")
    )
    for m in msgs:
        pair.a.send_update(m, now=1.0)
    pair.a.send_end_of_rib(AFI.IPV4, SAFI.UNICAST)
    pair.a.send_end_of_rib(AFI.IPV6, SAFI.UNICAST)
    pair.pump(1.0)
    received = of(pair.b_events, UpdateReceived)
    assert [r.update for r in received] == msgs
    got = [p for r in received for p in r.announced]
    assert got == prefixes
    assert of(pair.b_events, EndOfRib) == [
        EndOfRib(afi=AFI.IPV4, safi=SAFI.UNICAST),
        EndOfRib(afi=AFI.IPV6, safi=SAFI.UNICAST),
    ]
    # Sending an UPDATE restarted A's keepalive timer.
    assert pair.a.get_timer() == pytest.approx(1.0 + 30.0)


def test_route_refresh() -> None:
    pair = ConnectionPair(
        config(enhanced_route_refresh=True), config_b(enhanced_route_refresh=True)
    )
    pair.establish(0.0)
    pair.a.send_route_refresh(AFI.IPV4, SAFI.UNICAST)
    pair.a.send_route_refresh(AFI.IPV4, SAFI.UNICAST, subtype=1)
    pair.pump(0.5)
    assert of(pair.b_events, RouteRefreshReceived) == [
        RouteRefreshReceived(afi=1, safi=1, subtype=0),
        RouteRefreshReceived(afi=1, safi=1, subtype=1),
    ]


def test_send_update_requires_established() -> None:
    conn = Connection(config())
    with pytest.raises(LocalProtocolError):
        conn.send_update(UpdateMessage())
    conn.start(0.0)
    conn.connection_made(0.0)
    with pytest.raises(LocalProtocolError):
        conn.send_update(UpdateMessage())


def test_stop_sends_cease_with_shutdown_message() -> None:
    pair = ConnectionPair()
    pair.establish(0.0)
    events = pair.a.stop(5.0, CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, "upgrade to v2")
    assert of(events, ShouldClose)
    assert pair.a.state is State.IDLE
    assert pair.a.get_timer() is None  # no automatic restart after a manual stop
    pair.pump(5.0)
    (notif,) = of(pair.b_events, NotificationReceived)
    assert notif == NotificationReceived(
        code=6, subcode=2, data=b"\x0dupgrade to v2", shutdown_message="upgrade to v2"
    )
    assert pair.b.state is State.IDLE
    assert pair.b.get_timer() is not None  # B restarts automatically (after backoff)


def _open_sent(cfg: SessionConfig | None = None) -> Connection:
    conn = Connection(cfg or config())
    conn.start(0.0)
    conn.connection_made(0.0)
    conn.data_to_send()
    assert conn.state is State.OPEN_SENT
    return conn


@pytest.mark.parametrize(
    ("wire", "subcode", "data"),
    [
        (peer_open()[:19] + b"\x03" + peer_open()[20:], 1, b"\x00\x04"),
        (peer_open(my_as=65003, capabilities=()), 2, b""),
        (peer_open(capabilities=(FourOctetAsCapability(asn=65009),)), 2, b""),
        (peer_open(bgp_identifier=IPv4Address("0.0.0.0")), 3, b""),
        (peer_open(hold_time=2), 6, b""),
        (peer_open(hold_time=1), 6, b""),
    ],
    ids=["version", "peer-as", "as4-mismatch", "bgp-id", "hold-2", "hold-1"],
)
def test_open_errors(wire: bytes, subcode: int, data: bytes) -> None:
    conn = _open_sent()
    events = conn.receive_data(wire, 1.0)
    (sent,) = of(events, NotificationSent)
    assert (sent.code, sent.subcode, sent.data) == (2, subcode, data)
    assert of(events, ShouldClose)
    assert decode_message(conn.data_to_send()) == NotificationMessage(
        code=2, subcode=subcode, data=data
    )
    assert conn.state is State.IDLE
    # Sticky: further data for the dead TCP connection is ignored.
    assert conn.receive_data(KeepaliveMessage().encode(), 1.1) == []
    assert conn.data_to_send() == b""


def test_unsupported_optional_parameter() -> None:
    wire = bytearray(peer_open(capabilities=()))
    # Replace the empty optional parameters with one parameter of type 1 (auth).
    wire = wire[:28] + bytes.fromhex("03 01 01 00")
    wire[16:18] = len(wire).to_bytes(2, "big")
    conn = _open_sent()
    (sent,) = of(conn.receive_data(bytes(wire), 1.0), NotificationSent)
    assert (sent.code, sent.subcode) == (2, 4)


def test_any_peer_as_and_internal_same_router_id() -> None:
    conn = _open_sent(config(peer_asn=None))
    events = conn.receive_data(peer_open(my_as=64999, capabilities=()), 1.0)
    assert conn.state is State.OPEN_CONFIRM
    assert of(events, OpenReceived)
    assert conn.negotiated is not None and not conn.negotiated.asn4
    assert conn.codec_context.asn4 is False
    conn2 = _open_sent(config(peer_asn=65001))
    events = conn2.receive_data(peer_open(my_as=65001, bgp_identifier=A_ID, capabilities=()), 1.0)
    (sent,) = of(events, NotificationSent)
    assert (sent.code, sent.subcode) == (2, 3)


@pytest.mark.parametrize(
    ("mode", "peer_as", "accepted"),
    [
        ("external", 64999, True),
        ("external", 65001, False),  # our AS: refused, Bad Peer AS
        ("internal", 65001, True),
        ("internal", 64999, False),
    ],
)
def test_dynamic_peer_as_internal_or_external(mode: str, peer_as: int, accepted: bool) -> None:
    # MetalLB's dynamicASN (FRR's remote-as internal / external): the AS the OPEN
    # brings is taken, provided it is ours (internal) or not ours (external).
    conn = _open_sent(config(peer_asn=None, dynamic_asn=mode))
    events = conn.receive_data(peer_open(my_as=peer_as, capabilities=()), 1.0)
    if accepted:
        assert conn.state is State.OPEN_CONFIRM
        assert conn.negotiated is not None and conn.negotiated.peer_asn == peer_as
        assert conn.negotiated.internal is (mode == "internal")
    else:
        (sent,) = of(events, NotificationSent)
        assert (sent.code, sent.subcode) == (2, 2)
        assert conn.state is State.IDLE


def test_fsm_error_keepalive_in_open_sent() -> None:
    conn = _open_sent()
    (sent,) = of(conn.receive_data(KeepaliveMessage().encode(), 1.0), NotificationSent)
    assert (sent.code, sent.subcode) == (5, 1)


def test_open_in_established_is_fsm_error() -> None:
    pair = ConnectionPair()
    pair.establish(0.0)
    (sent,) = of(pair.a.receive_data(peer_open(), 1.0), NotificationSent)
    assert (sent.code, sent.subcode) == (5, 3)


def test_header_error_sends_notification() -> None:
    pair = ConnectionPair()
    pair.establish(0.0)
    events = pair.a.receive_data(b"\x00" * 19, 1.0)
    (sent,) = of(events, NotificationSent)
    assert (sent.code, sent.subcode) == (1, 1)
    assert pair.a.state is State.IDLE


def test_malformed_update_resets_session() -> None:
    pair = ConnectionPair()
    pair.establish(0.0)
    bad = bytes.fromhex("ff" * 16 + "001b 02 0000 0004 40630100")
    (sent,) = of(pair.a.receive_data(bad, 1.0), NotificationSent)
    assert (sent.code, sent.subcode) == (3, 2)


def test_open_sent_hold_timer_is_large() -> None:
    conn = _open_sent(config(open_hold_time=240.0))
    assert conn.get_timer() == 240.0
    (sent,) = of(conn.handle_timer(240.0), NotificationSent)
    assert (sent.code, sent.subcode) == (4, 0)


def test_eof_and_two_octet_peer_as4_path() -> None:
    conn = _open_sent(config(local_asn=4200000001, peer_asn=65002))
    conn.receive_data(peer_open(capabilities=()), 1.0)
    conn.receive_data(KeepaliveMessage().encode(), 1.0)
    assert conn.state is State.ESTABLISHED
    conn.data_to_send()
    conn.send_update(
        UpdateMessage(
            attributes=(
                OriginAttribute(value=Origin.IGP),
                AsPath.sequence(4200000001),
                NextHop(address=A_ID),
            ),
            nlri=(IPv4Network("10.0.0.0/24"),),
        )
    )
    wire = conn.data_to_send()
    assert bytes.fromhex("400204020 15ba0".replace(" ", "")) in wire  # AS_TRANS in AS_PATH
    assert bytes.fromhex("c0110602 01fa56ea01") in wire  # AS4_PATH
    events = conn.receive_data(b"", 2.0)
    assert of(events, ShouldClose) and conn.state is State.IDLE


# ---------------------------------------------------------------- backoff / damping


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.5, 10.0), st.floats(10.0, 200.0))
def test_connect_retry_backoff_bounds(seed: int, base: float, cap: float) -> None:
    conn = Connection(
        config(connect_retry_time=base, connect_retry_max=cap), rng=random.Random(seed)
    )
    now = 0.0
    assert of(conn.start(now), ShouldConnect)
    for n in range(10):
        now += 0.25
        conn.connection_failed(now)
        assert conn.state is State.IDLE
        deadline = conn.get_timer()
        assert deadline is not None
        bound = min(cap, base * 2**n)
        assert 0.75 * bound - 1e-9 <= deadline - now <= bound + 1e-9
        now = deadline
        assert of(conn.handle_timer(now), ShouldConnect)
        assert conn.state is State.CONNECT


def test_connect_attempt_timeout_retries() -> None:
    conn = Connection(config(connect_retry_time=4.0))
    conn.start(0.0)
    assert conn.get_timer() == 4.0
    events = conn.handle_timer(4.0)
    assert of(events, ShouldClose)
    assert of(events, ShouldConnect)
    assert conn.state is State.CONNECT
    assert conn.get_timer() == 4.0 + 4.0  # second attempt: base x 2^0 (first failure)


def test_backoff_resets_after_established() -> None:
    pair = ConnectionPair()
    pair.a.start(0.0)
    pair.a.connection_failed(0.0)
    pair.a.handle_timer(10.0)
    assert pair.a.consecutive_failures == 1
    pair.b.start(10.0)
    pair.a.connection_made(10.0)
    pair.b.connection_made(10.0)
    pair.pump(10.0)
    assert pair.a.state is State.ESTABLISHED
    assert pair.a.consecutive_failures == 0


def test_damping_grows_on_flaps_and_decays_after_stability() -> None:
    cfg = config(damp_base=2.0, damp_max=60.0, damp_stable_time=100.0)
    conn = Connection(cfg)
    now = 0.0
    conn.start(now)
    delays = []
    for _ in range(6):
        conn.connection_made(now)
        conn.receive_data(peer_open() + KeepaliveMessage().encode(), now)
        assert conn.state is State.ESTABLISHED
        now += 1.0
        conn.receive_data(b"", now)  # flap after 1 s
        timer = conn.get_timer()
        assert timer is not None
        delays.append(timer - now)
        now = timer
        conn.handle_timer(now)
    assert delays == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0]
    # A long stable session resets the damping.
    conn.connection_made(now)
    conn.receive_data(peer_open() + KeepaliveMessage().encode(), now)
    for _ in range(40):  # keep the session alive past damp_stable_time
        now += 3.0
        conn.handle_timer(now)
        conn.receive_data(KeepaliveMessage().encode(), now)
    conn.receive_data(b"", now)
    assert conn.get_timer() == pytest.approx(now + 2.0)


# ---------------------------------------------------------------- collisions / table


@pytest.mark.parametrize(
    ("local", "peer", "out_state", "in_state", "expected"),
    [
        ("10.0.0.1", "10.0.0.2", State.OPEN_CONFIRM, State.OPEN_CONFIRM, Initiator.LOCAL),
        ("10.0.0.2", "10.0.0.1", State.OPEN_CONFIRM, State.OPEN_CONFIRM, Initiator.REMOTE),
        ("10.0.0.1", "10.0.0.2", State.OPEN_SENT, State.OPEN_CONFIRM, Initiator.LOCAL),
        ("10.0.0.1", "10.0.0.2", State.ESTABLISHED, State.OPEN_CONFIRM, Initiator.REMOTE),
        ("10.0.0.2", "10.0.0.1", State.OPEN_SENT, State.ESTABLISHED, Initiator.LOCAL),
        ("10.0.0.1", "10.0.0.2", State.CONNECT, State.OPEN_CONFIRM, None),
        ("10.0.0.1", "10.0.0.2", State.OPEN_SENT, State.OPEN_SENT, None),
        # Identifiers compare as unsigned 32-bit integers.
        ("128.0.0.1", "9.255.255.255", State.OPEN_CONFIRM, State.OPEN_CONFIRM, Initiator.REMOTE),
    ],
)
def test_resolve_collision(
    local: str, peer: str, out_state: State, in_state: State, expected: Initiator | None
) -> None:
    result = resolve_collision(
        local_id=IPv4Address(local),
        peer_id=IPv4Address(peer),
        outgoing_state=out_state,
        incoming_state=in_state,
    )
    assert result is expected


def test_collision_dump_sends_cease_7() -> None:
    pair = ConnectionPair()
    pair.establish(0.0)
    events = pair.a.collision_dump(1.0)
    (sent,) = of(events, NotificationSent)
    assert (sent.code, sent.subcode) == (6, 7)
    assert pair.a.get_timer() is None


def test_transition_table_is_total_over_states() -> None:
    assert set(TRANSITIONS) == set(State)
    for state, row in TRANSITIONS.items():
        for event, target in row.items():
            assert isinstance(event, FsmEvent) and isinstance(target, State), (state, event)
    assert TRANSITIONS[State.OPEN_CONFIRM][FsmEvent.KEEPALIVE_MSG] is State.ESTABLISHED
