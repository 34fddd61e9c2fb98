"""The BFD runtime in virtual time: two endpoints on loopback, MockClock autojump.

Timer behaviour is exact here (slow start, detection, renegotiation); wall-clock
behaviour against real peers is in tests/interop/test_bfd_*.py.
"""

from __future__ import annotations

import ipaddress
import random
import socket

import attrs
import pytest
import trio
import trio.testing

from protocols.bfd import ControlPacket, Diag, State, StateChanged
from speaker.bfd.net import Datagram
from speaker.bfd.profile import BfdProfile
from speaker.bfd.runtime import BfdEndpoint, BfdSession, SessionKey

A, B = ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv4Address("127.0.0.2")
PORT_A, PORT_B = 23784, 33784


async def endpoints(
    nursery: trio.Nursery, seed: int = 1, *, lazy: bool = False
) -> tuple[BfdEndpoint, BfdEndpoint]:
    """A's endpoint and B's, running, each sending to the other's ports; ``lazy``:
    A reads its sockets at timer passes when its sessions allow it."""
    ep_a = BfdEndpoint(rng=random.Random(seed), ports=(PORT_A, PORT_A + 1000),
                       peer_ports=(PORT_B, PORT_B + 1000), precise_timers=False,
                       lazy_receive=lazy)  # fmt: skip
    ep_b = BfdEndpoint(rng=random.Random(seed + 1), ports=(PORT_B, PORT_B + 1000),
                       peer_ports=(PORT_A, PORT_A + 1000), precise_timers=False)  # fmt: skip
    await nursery.start(ep_a.run)
    await nursery.start(ep_b.run)
    return ep_a, ep_b


async def pair(
    nursery: trio.Nursery, profile_a: BfdProfile, profile_b: BfdProfile
) -> tuple[BfdEndpoint, BfdSession, BfdEndpoint, BfdSession]:
    ep_a, ep_b = await endpoints(nursery)
    sa = await ep_a.add_session(SessionKey(peer=B, local=A), profile_a)
    sb = await ep_b.add_session(SessionKey(peer=A, local=B), profile_b)
    return ep_a, sa, ep_b, sb


FAST = BfdProfile(name="fast", transmit_interval=50, receive_interval=50, detect_multiplier=3)


async def test_up_with_slow_start_then_negotiated_intervals(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    _, sa, _, sb = await pair(nursery, FAST, FAST)
    t0 = trio.current_time()
    # Slow start: packets every ~1 s (jittered 75-100%) until Up.
    assert sa.core.desired_min_tx_us == 1_000_000
    with trio.fail_after(3):
        await sa.wait_state(State.UP)
        await sb.wait_state(State.UP)
    assert trio.current_time() - t0 <= 2.0
    await trio.sleep(2)  # poll sequences to the configured 50 ms finish
    st = sa.statistics()
    assert st.tx_interval_us == 50_000 and st.detection_time_us == 150_000
    assert st.remote_desired_min_tx_us == 50_000


async def test_silence_is_detected_at_exactly_the_detection_time(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    _, sa, ep_b, sb = await pair(nursery, FAST, FAST)
    await sa.wait_state(State.UP)
    await trio.sleep(2)
    changes = sa.subscribe()
    failed = trio.CancelScope()
    seen: list[StateChanged] = []

    def on_change(change: StateChanged) -> None:
        seen.append(change)
        failed.cancel()

    sa._on_change = on_change
    # B goes silent without AdminDown: its task ends, nothing more is sent.
    sb._scope.cancel()
    silent_since = trio.current_time()
    last_rx = silent_since  # upper bound; the last packet left at most one interval before
    with failed:
        await trio.sleep(10)
    assert failed.cancelled_caught, "on_change was not called"
    assert seen and seen[0].path_failure
    detected = trio.current_time()
    change = changes.receive_nowait()
    assert change.new is State.DOWN and change.diag is Diag.CONTROL_DETECTION_TIME_EXPIRED
    assert change.path_failure
    # Down within (detection time, detection time + one tx interval] of going silent.
    assert 0.150 - 0.050 <= detected - last_rx <= 0.150 + 1e-3
    del ep_b


async def test_admin_down_is_not_a_failure(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    _, sa, ep_b, sb = await pair(nursery, FAST, FAST)
    await sa.wait_state(State.UP)
    changes = sa.subscribe()
    seen: list[StateChanged] = []
    sa._on_change = seen.append
    await ep_b.remove_session(sb)
    await sa.wait_state(State.DOWN)
    assert [c.path_failure for c in seen] == [False]
    change = changes.receive_nowait()
    assert change.remote_admin_down and not change.path_failure
    assert change.diag is Diag.NEIGHBOR_SIGNALED_SESSION_DOWN


async def test_profile_change_renegotiates_without_leaving_up(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    slow = BfdProfile(name="slow", transmit_interval=300, receive_interval=300)
    _, sa, _, sb = await pair(nursery, slow, slow)
    await sa.wait_state(State.UP)
    await trio.sleep(3)
    changes = sa.subscribe()
    sa.set_profile(FAST)
    sb.set_profile(FAST)
    await trio.sleep(2)
    with pytest.raises(trio.WouldBlock):
        changes.receive_nowait()  # no state change at all
    assert sa.statistics().tx_interval_us == 50_000
    assert sa.statistics().detection_time_us == 150_000


async def test_many_sessions_demultiplex_by_discriminator(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    ep_a, ep_b = await endpoints(nursery, seed=3)
    sessions = []
    for i in range(1, 21):
        a, b = ipaddress.IPv4Address(f"127.0.1.{i}"), ipaddress.IPv4Address(f"127.0.2.{i}")
        sessions.append(await ep_a.add_session(SessionKey(peer=b, local=a), FAST))
        sessions.append(await ep_b.add_session(SessionKey(peer=a, local=b), FAST))
    with trio.fail_after(5):
        for s in sessions:
            await s.wait_state(State.UP)
    # Packets that arrived before their session existed were counted as no-session;
    # once all are up, every packet finds its session.
    before = (ep_a.discards.copy(), ep_b.discards.copy())
    await trio.sleep(3)
    assert all(s.state is State.UP for s in sessions)
    assert (ep_a.discards, ep_b.discards) == before
    assert all(not s.statistics().discards for s in sessions)
    assert len({s.core.local_discriminator for s in sessions}) == 40


async def test_steady_state_costs_one_wake_up_per_packet_pair(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    # Idle CPU and scale are wake-ups: one timer serves every session, a received
    # packet is answered in its own wake-up (coalesced periodic packet), and a
    # steady-state packet never wakes the session's own task.
    ep_a, sa, ep_b, sb = await pair(nursery, FAST, FAST)
    await sa.wait_state(State.UP)
    await trio.sleep(2)
    kicks = 0
    kick = sa._alarm.kick

    def counting_kick() -> None:
        nonlocal kicks
        kicks += 1
        kick()

    sa._alarm.kick = counting_kick  # type: ignore[method-assign]  # counts the wake-ups
    before = [ep.counts.copy() for ep in (ep_a, ep_b)]
    sent = sa.core.counters.control_tx + sb.core.counters.control_tx
    await trio.sleep(5)
    sent = sa.core.counters.control_tx + sb.core.counters.control_tx - sent
    assert sent >= 2 * 5 / 0.050 * 0.9  # packets did flow both ways
    wakes = sum(
        ep.counts[k] - b[k]
        for ep, b in zip((ep_a, ep_b), before, strict=True)
        for k in ("timer-wakes", "receive-wakes")
    )
    # Without coalescing each packet costs its sender a timer wake-up and its
    # receiver a receive wake-up: 2 per packet. One side answering the other: 1.5.
    assert wakes / sent < 1.6, (wakes, sent)
    assert kicks == 0
    assert sa.state is State.UP and sb.state is State.UP


SLOW = BfdProfile(name="slow", transmit_interval=300, receive_interval=300, detect_multiplier=3)


async def lazy_pairs(
    nursery: trio.Nursery, n: int, profile: BfdProfile = SLOW
) -> tuple[BfdEndpoint, list[BfdSession], BfdEndpoint, list[BfdSession]]:
    """``n`` sessions between a lazily reading A and an eagerly reading B, all Up."""
    ep_a, ep_b = await endpoints(nursery, seed=5, lazy=True)
    ours, theirs = [], []
    for i in range(1, n + 1):
        a, b = ipaddress.IPv4Address(f"127.0.3.{i}"), ipaddress.IPv4Address(f"127.0.4.{i}")
        ours.append(await ep_a.add_session(SessionKey(peer=b, local=a), profile))
        theirs.append(await ep_b.add_session(SessionKey(peer=a, local=b), profile))
    with trio.fail_after(10):
        for s in ours + theirs:
            await s.wait_state(State.UP)
    await trio.sleep(5)  # slow start over, the intervals negotiated
    return ep_a, ours, ep_b, theirs


async def test_slow_timers_read_at_timer_passes_and_send_together(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """Idle at 300/300/3: no wake-up per received packet; the timer's passes read the
    sockets, and the sessions whose jitter window is open send in the same pass, so
    two sessions cost about one wake-up per transmission round, not one per packet.
    Each session's intervals stay within 75-100 % of 300 ms (RFC 5880 §6.8.7)."""
    ep_a, ours, _ep_b, theirs = await lazy_pairs(nursery, 2)
    assert ep_a.reading_lazily
    before = ep_a.counts.copy()
    sent = [s.core.counters.control_tx for s in ours]
    received = [s.core.counters.control_rx for s in ours]
    await trio.sleep(30)
    wakes = {k: ep_a.counts[k] - before[k] for k in ("timer-wakes", "receive-wakes")}
    assert wakes["receive-wakes"] == 0, wakes
    for s, tx, rx in zip(ours, sent, received, strict=True):
        assert 30 / 0.300 - 2 <= s.core.counters.control_tx - tx <= 30 / 0.225 + 2
        assert s.core.counters.control_rx - rx >= 30 / 0.300 - 2  # all read, late
    # Two sessions drawn apart would need ~2 x 30 / 0.26 = 230 wake-ups.
    assert wakes["timer-wakes"] <= 30 / 0.225 * 1.2, wakes
    assert all(s.state is State.UP for s in ours + theirs)


async def test_sessions_starting_together_share_one_receive_socket(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """Two sessions started at once used to open a receive socket each (both found
    none): the kernel then delivered each datagram to either socket, and a lazy pass,
    which reads the endpoint's one, left the other's packets unread: false Downs."""
    ep_a, ep_b = await endpoints(nursery, seed=7, lazy=True)
    ours: list[BfdSession] = []

    async def start(i: int) -> None:
        a, b = ipaddress.IPv4Address(f"127.0.7.{i}"), ipaddress.IPv4Address(f"127.0.8.{i}")
        ours.append(await ep_a.add_session(SessionKey(peer=b, local=a), SLOW))
        await ep_b.add_session(SessionKey(peer=a, local=b), SLOW)

    async with trio.open_nursery() as both:
        for i in (1, 2):
            both.start_soon(start, i)
    with trio.fail_after(10):
        for s in ours:
            await s.wait_state(State.UP)
    await trio.sleep(20)
    assert ep_a.reading_lazily
    assert all(s.state is State.UP and s.statistics().down_events == 0 for s in ours)


async def test_lazy_reading_sees_the_peers_admin_down_within_one_interval(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    ep_a, ours, ep_b, theirs = await lazy_pairs(nursery, 1)
    (sa,), (sb,) = ours, theirs
    t0 = trio.current_time()
    await ep_b.remove_session(sb)
    await sa.wait_state(State.DOWN)
    assert trio.current_time() - t0 <= 0.300 + 1e-3
    assert not ep_a.reading_lazily  # Down: packets are read on arrival again


async def test_lazy_reading_detects_silence_within_one_interval_of_the_detection_time(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """Under the virtual clock there are no kernel stamps, so a packet counts from the
    pass that read it: detection comes at most one interval late here. With stamps
    (the real runtime) it counts from the arrival (tests/interop, bench)."""
    _ep_a, ours, _ep_b, theirs = await lazy_pairs(nursery, 1)
    (sa,), (sb,) = ours, theirs
    sb._scope.cancel()  # B goes silent
    silent_since = trio.current_time()
    await sa.wait_state(State.DOWN)
    assert 0.900 - 0.300 <= trio.current_time() - silent_since <= 0.900 + 0.300 + 1e-3
    assert sa.statistics().local_diag is Diag.CONTROL_DETECTION_TIME_EXPIRED


async def test_one_fast_session_makes_the_endpoint_read_on_arrival(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    ep_a, _ours, ep_b, _theirs = await lazy_pairs(nursery, 1)
    assert ep_a.reading_lazily
    a, b = ipaddress.IPv4Address("127.0.5.1"), ipaddress.IPv4Address("127.0.6.1")
    fast_a = await ep_a.add_session(SessionKey(peer=b, local=a), FAST)
    await ep_b.add_session(SessionKey(peer=a, local=b), FAST)
    await fast_a.wait_state(State.UP)
    await trio.sleep(3)
    assert not ep_a.reading_lazily
    before = ep_a.counts["receive-wakes"]
    await trio.sleep(1)
    assert ep_a.counts["receive-wakes"] - before >= 10


async def test_one_receive_wake_up_reads_every_queued_datagram(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    ep_a, sa, _ep_b, _sb = await pair(nursery, FAST, FAST)
    await sa.wait_state(State.UP)
    await trio.sleep(1)
    before = ep_a.counts.copy()
    junk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with junk:
        junk.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)  # past the GTSM filter
        for _ in range(10):  # no session: counted, and all read in one wake-up
            junk.sendto(b"\x20" + bytes(23), ("127.0.0.1", PORT_A))
        await trio.sleep(0.0001)
    assert ep_a.counts["datagrams"] - before["datagrams"] >= 10
    assert ep_a.counts["receive-wakes"] - before["receive-wakes"] <= 2


async def test_single_hop_packet_from_another_interface_is_dropped(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """RFC 5881 §3: a single-hop session is about one link. A packet with the peer's
    source address that arrived on another interface (rp_filter off: any host on
    any link can send one) is counted and dropped, not allowed to down the session."""
    ep_a, ep_b = await endpoints(nursery, seed=5)
    sa = await ep_a.add_session(SessionKey(peer=B, local=A, interface="lo"), FAST)
    await ep_b.add_session(SessionKey(peer=A, local=B, interface="lo"), FAST)
    with trio.fail_after(3):
        await sa.wait_state(State.UP)  # real arrivals on lo match its index
    spoofed = ControlPacket(
        state=State.DOWN, detect_mult=3, my_discriminator=sa.core.remote_discriminator,
        your_discriminator=sa.core.local_discriminator, desired_min_tx_us=50_000,
        required_min_rx_us=50_000,
    )  # fmt: skip
    lo = socket.if_nametoindex("lo")
    other = Datagram(spoofed.encode(), B, 49152, A, 255, lo + 1000)
    ep_a.dispatch(other, False, trio.current_time())
    await trio.sleep(1)
    assert sa.state is State.UP
    assert sa.statistics().discards["wrong-interface"] == 1
    # The same packet on the session's own link is the peer's and is obeyed.
    ep_a.dispatch(attrs.evolve(other, ifindex=lo), False, trio.current_time())
    assert sa.state is State.DOWN


async def test_echo_promise_withdrawn_when_echoes_cannot_be_looped(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """lo is no Ethernet link: the peer's echoes cannot be looped there (and lo does
    not forward), so after the first packet from the peer we advertise a Required
    Min Echo RX of 0 rather than promise what we cannot keep."""
    echo = BfdProfile(name="echo", transmit_interval=50, receive_interval=50,
                      echo_mode=True, echo_interval=50)  # fmt: skip
    ep_a, ep_b = await endpoints(nursery, seed=7)
    sa = await ep_a.add_session(SessionKey(peer=B, local=A, interface="lo"), echo)
    sb = await ep_b.add_session(SessionKey(peer=A, local=B, interface="lo"), FAST)
    assert sa.core.advertised_echo_rx_us == 50_000
    with trio.fail_after(3):
        await sa.wait_state(State.UP)
    await trio.sleep(1)
    assert sa.statistics().echo_rx_us == 0
    assert sa.statistics().discards["echo-loop-unavailable"] == 1
    assert sb.statistics().remote_echo_rx_us == 0  # what the peer now hears


async def test_hold_control_delays_and_drops_nothing(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    # After a BFD teardown the peer's guard holds our Down so the router reads the
    # Cease first (docs/bfd.md): the Down must still go out, once the hold ends.
    _, sa, _, sb = await pair(nursery, FAST, FAST)
    await sa.wait_state(State.UP)
    await sb.wait_state(State.UP)
    await trio.sleep(2)
    changes = sb.subscribe()
    held_at = trio.current_time()
    sa.hold_control(0.05)
    sa.admin_down()  # queued in the core now, sent 50 ms later
    with trio.fail_after(1):
        change = await changes.receive()
    assert change.new is State.DOWN and change.remote_admin_down
    assert 0.05 - 1e-9 <= change.at - held_at <= 0.051
    # The hold was once: the next change goes out at once.
    enabled_at = trio.current_time()
    sa.admin_up()
    with trio.fail_after(1):
        change = await changes.receive()
    assert change.new is State.INIT and change.at - enabled_at < 0.001


async def test_started_admin_down_peer_never_sees_down(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    ep_a, ep_b = await endpoints(nursery)
    sb = await ep_b.add_session(SessionKey(peer=A, local=B), FAST)
    sa: BfdSession = await nursery.start(
        lambda task_status: ep_a.run_session(
            SessionKey(peer=B, local=A), FAST, admin_down=True, task_status=task_status
        )
    )
    await trio.sleep(3)
    assert sa.state is State.ADMIN_DOWN and sb.state is State.DOWN
    assert sb.core.remote_state is State.ADMIN_DOWN  # the first packet B saw said so
    sa.admin_up()
    with trio.fail_after(3):
        await sa.wait_state(State.UP)
