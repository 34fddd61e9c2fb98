"""Session unit tests against a hand-driven peer (RFC 5880 §6.8)."""

from __future__ import annotations

import itertools
import random

import attrs
import pytest

from protocols.bfd import (
    ECHO_HOLDOFF_INITIAL_S,
    ECHO_STABLE_S,
    SLOW_INTERVAL_US,
    AuthConfig,
    AuthType,
    ControlPacket,
    Diag,
    DigestAuth,
    DiscardReason,
    EchoPacket,
    Session,
    SessionConfig,
    State,
    TimersChanged,
    compute_digest,
    sign,
)
from tests.helpers.bfd_core import FAST, LOCAL, PEER, events, feed, make, peer, sent


def up_session(config: SessionConfig = FAST, **peer_fields: object) -> Session:
    """A session brought Up at t=0.01 whose slow-start Poll has completed at t=0.02."""
    s = make(config)
    assert feed(s, peer(State.INIT, **peer_fields), 0.01) is None
    assert s.state is State.UP
    assert feed(s, peer(State.UP, final=True, **peer_fields), 0.02) is None
    assert not s.poll_active
    sent(s)
    events(s)
    return s


# ---------------------------------------------------------------- start-up


def test_first_packet_is_slow_down_packet() -> None:
    s = make()
    [first] = sent(s)
    assert first.state is State.DOWN
    assert first.your_discriminator == 0
    assert first.my_discriminator == LOCAL
    assert first.desired_min_tx_us == SLOW_INTERVAL_US  # §6.8.3 slow start
    assert first.required_min_rx_us == 50_000
    assert not first.poll and not first.final and not first.demand
    timer = s.get_timer()
    assert timer is not None and 0.75 <= timer <= 1.0


def test_random_discriminator_is_nonzero() -> None:
    class Rng:
        def __init__(self) -> None:
            self.draws = [0, 0, 7]

        def random(self) -> float:
            return 0.5

        def getrandbits(self, k: int, /) -> int:
            return self.draws.pop(0) if self.draws else 1

    assert Session(FAST, rng=Rng(), now=0.0).local_discriminator == 7
    with pytest.raises(ValueError):
        Session(FAST, rng=random.Random(), now=0.0, local_discriminator=0)


def test_passive_is_silent_until_heard() -> None:
    s = make(attrs.evolve(FAST, passive=True))
    assert sent(s) == []
    assert s.get_timer() is None
    assert feed(s, peer(State.DOWN), 5.0) is None
    [reply] = sent(s)
    assert reply.state is State.INIT
    assert reply.your_discriminator == PEER


def test_three_way_handshake() -> None:
    s = make()
    sent(s)
    assert feed(s, peer(State.DOWN), 0.1) is None
    assert s.state is State.INIT
    [init] = sent(s)  # contents changed: sent at once (§6.8.7)
    assert (init.state, init.your_discriminator) == (State.INIT, PEER)
    assert feed(s, peer(State.UP), 0.2) is None
    assert s.state is State.UP
    [up] = sent(s)  # 75 % of the 50 ms interval in force once Up has passed
    # Up: leave slow start through a Poll Sequence.
    assert up.poll and up.desired_min_tx_us == 50_000
    changes = events(s)
    assert [(e.old, e.new) for e in changes] == [(State.DOWN, State.INIT), (State.INIT, State.UP)]
    assert changes[-1].diag is Diag.NO_DIAGNOSTIC
    assert s.counters.up_transitions == 1


def test_down_ignores_peer_up() -> None:
    s = make()
    assert feed(s, peer(State.UP), 0.1) is None
    assert s.state is State.DOWN


# ---------------------------------------------------------------- reception checks


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (peer(State.DOWN, detect_mult=0), DiscardReason.ZERO_DETECT_MULT),
        (peer(State.DOWN, multipoint=True), DiscardReason.MULTIPOINT),
        (peer(State.DOWN, my_discriminator=0), DiscardReason.ZERO_MY_DISCRIMINATOR),
        (peer(State.DOWN, your_discriminator=5), DiscardReason.YOUR_DISCRIMINATOR_MISMATCH),
        (peer(State.INIT, your_discriminator=0), DiscardReason.ZERO_YOUR_DISCRIMINATOR),
        (peer(State.UP, your_discriminator=0), DiscardReason.ZERO_YOUR_DISCRIMINATOR),
        (peer(State.DOWN, poll=True, final=True), DiscardReason.POLL_AND_FINAL),
        (
            sign(
                peer(State.DOWN),
                AuthConfig(type=AuthType.KEYED_MD5, keys={1: b"k"}, send_key_id=1),
                1,
            ),
            DiscardReason.AUTH_UNEXPECTED,
        ),
    ],
)
def test_reception_discards(packet: ControlPacket, reason: DiscardReason) -> None:
    s = make()
    sent(s)
    assert feed(s, packet, 0.1) is reason
    assert s.state is State.DOWN
    assert s.remote_discriminator == 0
    assert s.counters.discards == {reason: 1}
    assert s.counters.control_rx == 0
    assert sent(s) == []


def test_decode_errors_are_counted() -> None:
    s = make()
    assert s.receive_packet(b"\x40" + bytes(23), 0.1) is DiscardReason.BAD_VERSION
    assert s.receive_packet(b"junk", 0.1) is DiscardReason.BAD_LENGTH
    assert s.counters.discards == {DiscardReason.BAD_VERSION: 1, DiscardReason.BAD_LENGTH: 1}


def test_auth_missing() -> None:
    config = attrs.evolve(
        FAST, auth=AuthConfig(type=AuthType.KEYED_SHA1, keys={1: b"k"}, send_key_id=1)
    )
    s = make(config)
    assert feed(s, peer(State.DOWN), 0.1) is DiscardReason.AUTH_MISSING


def test_reserved_diag_from_peer() -> None:
    s = make()
    assert feed(s, peer(State.DOWN, diag=20), 0.1) is None
    assert s.remote_diag == 20


# ---------------------------------------------------------------- poll / final


def test_poll_answered_with_final_at_once() -> None:
    s = up_session()
    assert feed(s, peer(State.UP, poll=True), 0.5) is None
    [reply] = sent(s)
    assert reply.final and not reply.poll


def test_final_and_poll_never_together() -> None:
    s = make()
    assert feed(s, peer(State.INIT), 0.1) is None  # Up, our own Poll starts
    assert s.poll_active
    sent(s)
    assert feed(s, peer(State.UP, poll=True), 0.2) is None
    [reply] = sent(s)
    assert reply.final and not reply.poll
    assert s.poll_active  # the peer's packet had no F
    s.handle_timer(s.get_timer() or 0.0)
    [periodic] = sent(s)
    assert periodic.poll and not periodic.final


def test_slower_tx_waits_for_final() -> None:
    s = up_session()
    assert s.tx_interval_us == 50_000
    s.set_profile(attrs.evolve(FAST, desired_min_tx_us=200_000), 1.0)
    [p] = sent(s)
    assert p.poll and p.desired_min_tx_us == 200_000
    assert s.tx_interval_us == 50_000  # §6.8.3: not before the Final
    assert feed(s, peer(State.UP, final=True), 1.01) is None
    assert s.tx_interval_us == 200_000
    assert not s.poll_active


def test_shorter_detection_waits_for_final() -> None:
    config = attrs.evolve(FAST, required_min_rx_us=300_000)
    s = up_session(config, desired_min_tx_us=10_000)
    assert s.detection_time_us == 3 * 300_000
    s.set_profile(FAST, 1.0)
    assert s.required_min_rx_us == 50_000
    assert feed(s, peer(State.UP, desired_min_tx_us=10_000), 1.01) is None
    assert s.detection_time_us == 3 * 300_000  # old value until the Final
    assert feed(s, peer(State.UP, final=True, desired_min_tx_us=10_000), 1.02) is None
    assert s.detection_time_us == 3 * 50_000


def test_change_during_poll_waits_then_runs() -> None:
    s = up_session()
    s.set_profile(attrs.evolve(FAST, desired_min_tx_us=100_000), 1.0)
    s.set_profile(attrs.evolve(FAST, desired_min_tx_us=150_000), 1.1)
    assert s.desired_min_tx_us == 100_000  # second change pending
    sent(s)
    assert feed(s, peer(State.UP, final=True), 1.2) is None
    assert s.desired_min_tx_us == 150_000
    assert s.poll_active
    [p] = sent(s)
    assert p.poll and p.desired_min_tx_us == 150_000
    assert s.tx_interval_us == 100_000
    assert feed(s, peer(State.UP, final=True), 1.3) is None
    assert not s.poll_active and s.tx_interval_us == 150_000


def test_lower_remote_rx_honoured_at_once() -> None:
    s = up_session(required_min_rx_us=1_000_000)  # last packet sent at 0.01
    assert s.tx_interval_us == 1_000_000
    assert feed(s, peer(State.UP, required_min_rx_us=1_000_000), 0.1) is None
    timer = s.get_timer()
    assert timer is not None and timer > 0.2
    # §6.8.3: a lower interval applies at once, counted from the last transmission.
    assert feed(s, peer(State.UP, required_min_rx_us=50_000), 0.2) is None
    assert s.tx_interval_us == 50_000
    assert s.get_timer() == pytest.approx(0.2)


# ---------------------------------------------------------------- transmit rules


def test_no_periodic_when_remote_rx_zero() -> None:
    s = up_session(required_min_rx_us=0)
    detection = s.get_timer()
    # Only the detection deadline remains.
    assert detection == pytest.approx(0.02 + 3 * 0.05)


def run_timers(s: Session, until: float) -> list[tuple[float, ControlPacket]]:
    """Run every timer due up to ``until``; the packets sent, with their times."""
    out = []
    while (timer := s.get_timer()) is not None and timer <= until:
        s.handle_timer(timer)
        out += [(timer, p) for p in sent(s)]
    return out


def test_changes_driven_by_the_peer_are_spaced() -> None:
    """§6.8.7: however fast the peer's packets flip our state (here Up/Down every
    millisecond, as stale or duplicated packets can), packets stay spaced by the
    transmit interval (50 ms while Up, 1 s while not): one periodic plus at most one
    out of schedule per 75 % of it, carrying the latest state. Answering each change
    at once is how two systems keep each other flapping at wire speed."""
    s = up_session()
    packets: list[tuple[float, ControlPacket]] = []
    for i in range(1000):
        now = 0.1 + i * 0.001
        packets += run_timers(s, now)
        feed(s, peer(State.DOWN if i % 2 == 0 else State.INIT), now)
        packets += [(now, p) for p in sent(s)]
    assert len(events(s)) == 1000  # every packet did change the state
    times = [t for t, p in packets if not p.final and t >= 0.1]
    assert len(times) <= 2 * 1.0 / 0.0375
    for a, _, b in zip(times, times[1:], times[2:], strict=False):
        assert b - a >= 0.75 * 0.05 - 1e-9


def test_a_held_change_goes_out_when_the_spacing_ends() -> None:
    """Without periodic packets (the peer's Required Min RX is 0), a change held back
    by the spacing still goes out, at the end of the spacing interval."""
    s = up_session(required_min_rx_us=0)
    assert feed(s, peer(State.DOWN, required_min_rx_us=0), 0.1) is None
    [down] = sent(s)
    assert down.state is State.DOWN
    for i in range(7):  # Init at 0.2; the peer keeps talking so detection waits
        assert feed(s, peer(State.DOWN, required_min_rx_us=0), 0.2 + i * 0.1) is None
        assert sent(s) == []
    assert s.state is State.INIT
    assert s.get_timer() == pytest.approx(0.1 + 0.75)
    s.handle_timer(0.85)
    [init] = sent(s)
    assert init.state is State.INIT
    assert s.get_timer() == pytest.approx(0.8 + 3 * 0.05)  # detection only again


def test_finals_and_local_commands_are_not_spaced() -> None:
    s = up_session()
    for i in range(20):  # §6.8.7: a Final for every Poll, "without respect to ...
        assert feed(s, peer(State.UP, poll=True), 0.1 + i * 0.001) is None
        [final] = sent(s)  # ... any other transmission limitations"
        assert final.final
    assert feed(s, peer(State.DOWN), 0.2) is None
    [down] = sent(s)
    assert down.state is State.DOWN
    s.admin_down(0.201)  # an operator's command is not a ping-pong: at once
    [admin] = sent(s)
    assert admin.state is State.ADMIN_DOWN


def test_remote_demand_stops_periodic_but_polls_answered() -> None:
    s = up_session(demand=True)
    assert s.remote_demand_mode
    timer = s.get_timer()
    assert timer == pytest.approx(0.02 + 0.15)  # detection only, no transmit deadline
    assert feed(s, peer(State.UP, demand=True, poll=True), 0.1) is None
    [reply] = sent(s)
    assert reply.final and not reply.demand


def test_detection_expiry() -> None:
    s = up_session()
    deadline = 0.02 + 3 * 0.05
    assert s.detection_time_us == 150_000
    s.handle_timer(deadline - 1e-6)
    assert s.state is State.UP
    sent(s)
    s.handle_timer(deadline)
    assert s.state is State.DOWN
    assert s.local_diag is Diag.CONTROL_DETECTION_TIME_EXPIRED
    assert s.remote_discriminator == 0  # §6.8.1
    assert s.detection_time_us is None
    [change] = events(s)
    assert change.path_failure and not change.remote_admin_down
    [down] = sent(s)
    assert (down.state, down.your_discriminator, down.desired_min_tx_us) == (
        State.DOWN,
        0,
        SLOW_INTERVAL_US,
    )
    assert s.counters.down_transitions == 1


def test_init_times_out_too() -> None:
    s = make()
    assert feed(s, peer(State.DOWN), 0.1) is None
    assert s.state is State.INIT
    s.handle_timer(0.1 + 3 * 0.05 - 1e-6)
    assert s.state is State.INIT
    s.handle_timer(0.1 + 3 * 0.05)
    assert s.state is State.DOWN
    assert s.local_diag is Diag.CONTROL_DETECTION_TIME_EXPIRED


# ---------------------------------------------------------------- admin


def test_peer_admin_down_is_not_a_failure() -> None:
    s = up_session()
    assert feed(s, peer(State.ADMIN_DOWN, diag=Diag.ADMINISTRATIVELY_DOWN), 0.5) is None
    [change] = events(s)
    assert change.new is State.DOWN
    assert change.diag is Diag.NEIGHBOR_SIGNALED_SESSION_DOWN
    assert change.remote_admin_down and not change.path_failure


def test_peer_down_is_a_failure() -> None:
    s = up_session()
    assert feed(s, peer(State.DOWN, your_discriminator=LOCAL), 0.5) is None
    [change] = events(s)
    assert change.diag is Diag.NEIGHBOR_SIGNALED_SESSION_DOWN
    assert change.path_failure


def test_local_admin_down_and_up() -> None:
    s = up_session()
    s.admin_down(1.0)
    assert s.state is State.ADMIN_DOWN
    [p] = sent(s)
    assert (p.state, p.diag) == (State.ADMIN_DOWN, Diag.ADMINISTRATIVELY_DOWN)
    [change] = events(s)
    assert not change.path_failure
    assert feed(s, peer(State.UP), 1.1) is DiscardReason.LOCAL_ADMIN_DOWN
    assert s.state is State.ADMIN_DOWN
    s.handle_timer(5.0)  # detection time passes: stays AdminDown
    assert s.state is State.ADMIN_DOWN
    s.admin_up(6.0)
    assert s.state is State.DOWN


def test_declare_down() -> None:
    s = up_session()
    s.declare_down(1.0, Diag.FORWARDING_PLANE_RESET)
    assert s.state is State.DOWN
    assert s.local_diag is Diag.FORWARDING_PLANE_RESET
    [change] = events(s)
    assert change.path_failure


def test_set_profile_cannot_change_auth_type() -> None:
    s = make()
    md5 = AuthConfig(type=AuthType.KEYED_MD5, keys={1: b"k"}, send_key_id=1)
    with pytest.raises(ValueError):
        s.set_profile(attrs.evolve(FAST, auth=md5), 1.0)


def test_timers_changed_events() -> None:
    s = make()
    feed(s, peer(State.INIT), 0.1)
    timers = []
    while (event := s.next_event()) is not None:
        if isinstance(event, TimersChanged):
            timers.append(event)
    assert timers[-1].tx_interval_us == 50_000


# ---------------------------------------------------------------- authentication


def _auth(auth_type: AuthType) -> AuthConfig:
    return AuthConfig(type=auth_type, keys={3: b"key-three"}, send_key_id=3)


def test_meticulous_replay_rejected() -> None:
    auth = _auth(AuthType.METICULOUS_KEYED_SHA1)
    s = make(attrs.evolve(FAST, auth=auth))
    first = sign(peer(State.DOWN), auth, 100).encode()
    assert s.receive_packet(first, 0.1) is None
    assert s.receive_packet(first, 0.2) is DiscardReason.AUTH_SEQUENCE_OUT_OF_WINDOW
    assert s.receive_packet(sign(peer(State.DOWN), auth, 101).encode(), 0.3) is None
    far = sign(peer(State.DOWN), auth, 101 + 3 * 3 + 1).encode()
    assert s.receive_packet(far, 0.4) is DiscardReason.AUTH_SEQUENCE_OUT_OF_WINDOW
    # A Detection Time without valid packets forgets the sequence (§6.8.1).
    s.handle_timer(10.0)
    assert s.receive_packet(far, 10.1) is None


def test_keyed_accepts_repeat_but_not_old() -> None:
    auth = _auth(AuthType.KEYED_MD5)
    s = make(attrs.evolve(FAST, auth=auth))
    packet = sign(peer(State.DOWN), auth, 100).encode()
    assert s.receive_packet(packet, 0.1) is None
    assert s.receive_packet(packet, 0.2) is None  # window includes bfd.RcvAuthSeq
    old = sign(peer(State.DOWN), auth, 99).encode()
    assert s.receive_packet(old, 0.3) is DiscardReason.AUTH_SEQUENCE_OUT_OF_WINDOW


def test_receive_decoded_keeps_reserved_byte_for_digest() -> None:
    # A peer that sets the Reserved byte (it should not): the digest covers what was
    # sent, and the decoded value re-encodes byte for byte, so it still verifies.
    auth = _auth(AuthType.KEYED_SHA1)
    s = make(attrs.evolve(FAST, auth=auth))
    signed = sign(peer(State.DOWN), auth, 42)
    assert isinstance(signed.auth, DigestAuth)
    odd_auth = attrs.evolve(signed.auth, reserved=0xAA)
    odd = attrs.evolve(signed, auth=odd_auth)
    odd = attrs.evolve(odd, auth=attrs.evolve(odd_auth, digest=compute_digest(odd, b"key-three")))
    packet = ControlPacket.decode(odd.encode())
    assert s.receive_decoded(packet, 0.1) is None
    assert s.state is State.INIT


def _sequences(s: Session) -> list[int]:
    out = []
    for packet in sent(s):
        assert isinstance(packet.auth, DigestAuth)
        out.append(packet.auth.sequence)
    return out


def test_transmit_sequence_numbers() -> None:
    for auth_type, step in ((AuthType.METICULOUS_KEYED_MD5, 1), (AuthType.KEYED_MD5, 0)):
        s = make(attrs.evolve(FAST, auth=_auth(auth_type)))
        seqs = _sequences(s)
        for _ in range(3):
            s.handle_timer(s.get_timer() or 0.0)
            seqs += _sequences(s)
        assert [(b - a) % 2**32 for a, b in itertools.pairwise(seqs)] == [step] * 3
    # Keyed: advances when the contents change.
    s = make(attrs.evolve(FAST, auth=_auth(AuthType.KEYED_SHA1)))
    [before] = _sequences(s)
    feed(s, sign(peer(State.DOWN), _auth(AuthType.KEYED_SHA1), 1), 0.1)
    [after] = _sequences(s)
    assert after == (before + 1) % 2**32


# ---------------------------------------------------------------- echo


ECHO = attrs.evolve(FAST, echo_mode=True, echo_interval_us=20_000)


def test_echo_runs_and_relaxes_control_rx() -> None:
    # Echo starts on going Up at 0.01; the Poll that left slow start also raised our
    # Required Min RX to 1 s (§6.8.3 SHOULD) and was answered at 0.02.
    s = up_session(ECHO, required_min_echo_rx_us=30_000)
    assert s.echo_active
    assert s.echo_tx_interval_us == 30_000  # the peer's floor wins
    assert s.required_min_rx_us == SLOW_INTERVAL_US
    assert s.get_timer() == pytest.approx(0.01)
    s.handle_timer(0.021)
    [echo] = s.echo_datagrams_to_send()
    assert EchoPacket.decode(echo).discriminator == LOCAL
    assert s.receive_echo(echo, 0.022) is None
    assert s.echo_rtt == pytest.approx(0.001)
    assert s.counters.echo_tx == 1 and s.counters.echo_rx == 1
    assert feed(s, peer(State.UP, poll=True, required_min_echo_rx_us=30_000), 0.023) is None
    [control] = sent(s)
    assert control.required_min_echo_rx_us == 20_000
    assert control.required_min_rx_us == SLOW_INTERVAL_US


def test_echo_round_trips_keep_the_last_eight_as_frrs_rtt() -> None:
    s = up_session(ECHO, required_min_echo_rx_us=30_000)
    assert s.echo_rtts_us == ()
    now = 0.021
    for i in range(10):
        s.handle_timer(now)
        [echo] = s.echo_datagrams_to_send()
        assert s.receive_echo(echo, now + (i + 1) / 10_000) is None  # 100, 200... us
        now += 0.03
    assert s.echo_rtts_us == tuple(range(300, 1100, 100))  # the last 8 of 10


def test_echo_off_restores_control_rx() -> None:
    s = up_session(ECHO, required_min_echo_rx_us=30_000)
    assert feed(s, peer(State.UP), 0.03) is None  # peer stops looping echoes
    assert not s.echo_active
    assert s.required_min_rx_us == 50_000
    assert s.poll_active
    # Lower RequiredMinRx: the Detection Time keeps the old value until the Final.
    assert s.detection_time_us == 3 * SLOW_INTERVAL_US


def drive_echo(s: Session, until: float, *, returned: bool) -> float:
    """Run ``s`` until ``until`` or it leaves Up, the peer's control packets flowing
    (every 20 ms at least, echo RX 20 ms, answering Polls) and our echoes coming back
    at once when ``returned``."""
    now = 0.0
    while s.state is State.UP and now < until:
        now = min(s.get_timer() or until, until, now + 0.02)
        s.handle_timer(now)
        final = any(p.poll for p in sent(s))
        for echo in s.echo_datagrams_to_send():
            if returned:
                assert s.receive_echo(echo, now) is None
        if s.state is State.UP:
            feed(s, peer(State.UP, required_min_echo_rx_us=20_000, final=final), now)
    return now


def test_echo_failure_goes_down_with_diag_2() -> None:
    s = up_session(ECHO, required_min_echo_rx_us=20_000)
    drive_echo(s, 0.5, returned=True)
    assert s.state is State.UP and s.counters.echo_rx > 10
    now = drive_echo(s, 1.0, returned=False)  # the echo path breaks at 0.5
    assert s.state is State.DOWN
    assert s.local_diag is Diag.ECHO_FUNCTION_FAILED
    assert 0.5 + 2 * 0.02 <= now <= 0.5 + 3 * 0.02 + 1e-9
    assert not s.echo_active
    assert s.echo_datagrams_to_send() == []
    assert s.echo_failures == 1
    assert s.echo_held_until == pytest.approx(now + ECHO_HOLDOFF_INITIAL_S)


def test_echo_is_held_off_after_a_failure_and_longer_each_time() -> None:
    """After an echo failure the session comes back Up on control packets, and echo
    stays off for the hold-off (1 s, then 2 s, 4 s...): not the ~7 flaps a second
    of restarting echo on every Up into a path that drops it."""
    s = up_session(ECHO, required_min_echo_rx_us=20_000)
    drive_echo(s, 0.5, returned=True)
    failed_at = drive_echo(s, 1.0, returned=False)
    assert s.state is State.DOWN
    assert feed(s, peer(State.INIT, required_min_echo_rx_us=20_000), failed_at + 0.01) is None
    assert s.state is State.UP
    assert not s.echo_active  # held off: no echo on this Up
    drive_echo(s, failed_at + 0.9, returned=False)
    assert s.state is State.UP and not s.echo_active
    assert s.required_min_rx_us == 50_000  # control does the detecting meanwhile
    # The hold-off ends: echo starts again; it works once, then fails again.
    drive_echo(s, failed_at + 1.2, returned=True)
    assert s.echo_active
    second = drive_echo(s, failed_at + 2.0, returned=False)
    assert s.state is State.DOWN and s.echo_failures == 2
    assert s.echo_held_until == pytest.approx(second + 2 * ECHO_HOLDOFF_INITIAL_S)


def test_echo_that_never_came_back_is_no_path_failure() -> None:
    """A peer that advertises echo RX but does not loop echoes (a node that does not
    forward): the Echo function stops with a growing hold-off; the session stays Up
    on control packets."""
    s = up_session(ECHO, required_min_echo_rx_us=20_000)
    now = drive_echo(s, 30.0, returned=False)
    assert now == 30.0 and s.state is State.UP
    assert s.counters.down_transitions == 0
    # Failures after 0.07 s, then at ~1, ~3, ~7, ~15 s of echo hold-offs (1, 2, 4, 8,
    # 16 s): five tries in 30 s instead of hundreds.
    assert s.echo_failures == 5
    assert s.counters.echo_tx <= 5 * 4  # DetectMult intervals each, and the first


def test_echo_hold_off_resets_after_echo_ran_stable() -> None:
    s = up_session(ECHO, required_min_echo_rx_us=20_000)
    drive_echo(s, 0.5, returned=True)
    t = drive_echo(s, 1.0, returned=False)
    feed(s, peer(State.INIT, required_min_echo_rx_us=20_000), t + 0.01)
    drive_echo(s, t + 1.1 + ECHO_STABLE_S + 0.1, returned=True)  # 10 s of good echo
    t = drive_echo(s, t + 20.0, returned=False)
    assert s.echo_failures == 2
    assert s.echo_held_until == pytest.approx(t + ECHO_HOLDOFF_INITIAL_S)


def test_echo_not_sent_without_peer_echo_rx() -> None:
    s = up_session(ECHO)
    assert not s.echo_active
    for _ in range(5):
        s.handle_timer(s.get_timer() or 0.0)
    assert s.echo_datagrams_to_send() == []


def test_echo_discards() -> None:
    s = up_session(ECHO, required_min_echo_rx_us=20_000)
    s.handle_timer(0.02)
    [echo] = s.echo_datagrams_to_send()
    decoded = EchoPacket.decode(echo)
    other = attrs.evolve(decoded, discriminator=5).encode()
    assert s.receive_echo(other, 0.03) is DiscardReason.ECHO_WRONG_DISCRIMINATOR
    forged = attrs.evolve(decoded, sequence=decoded.sequence + 1).encode()
    assert s.receive_echo(forged, 0.03) is DiscardReason.ECHO_BAD_TAG
    assert s.receive_echo(echo, 0.5) is DiscardReason.ECHO_STALE
    assert s.receive_echo(b"nonsense", 0.03) is DiscardReason.ECHO_MALFORMED
    s.admin_down(0.04)
    assert s.receive_echo(echo, 0.041) is DiscardReason.ECHO_NOT_ACTIVE


def test_echo_rejected_for_multihop() -> None:
    with pytest.raises(ValueError):
        SessionConfig(echo_mode=True, multihop=True)


def test_no_echo_promise_while_echoes_cannot_be_looped() -> None:
    s = up_session(ECHO)
    assert s.advertised_echo_rx_us == 20_000
    s.set_echo_loop(False, 0.1)
    [packet] = sent(s)  # a local command: at once
    assert packet.required_min_echo_rx_us == 0
    s.set_echo_loop(True, 0.2)
    [packet] = sent(s)
    assert packet.required_min_echo_rx_us == 20_000
