"""The core's connect attempts: bounded by connect_time, connect_now, incoming in Idle."""

from __future__ import annotations

import random

import pytest

from protocols.bgp import (
    CeaseSubcode,
    Connection,
    KeepaliveMessage,
    LocalProtocolError,
    NotificationMessage,
    ShouldClose,
    ShouldConnect,
    State,
    StateChanged,
)
from tests.helpers.bgp_core import config, of, peer_open


def test_an_attempt_lasts_connect_time_not_the_backoff() -> None:
    """A silent peer gets all of connect_time (the kernel retransmits the SYN): the
    retry timer no longer abandons each attempt after the 1 s backoff."""
    conn = Connection(config(connect_retry_time=1.0, connect_time=10.0))
    assert of(conn.start(0.0), ShouldConnect)
    assert conn.get_timer() == 10.0
    events = conn.handle_timer(10.0)
    (close,) = of(events, ShouldClose)
    assert close.reason == "connect attempt timed out after 10 s"
    assert of(events, ShouldConnect) and conn.state is State.CONNECT
    assert conn.consecutive_failures == 1


def test_refused_attempts_back_off_from_connect_retry() -> None:
    conn = Connection(
        config(connect_retry_time=1.0, connect_retry_max=60.0, connect_time=10.0),
        rng=random.Random(3),
    )
    now = 0.0
    conn.start(now)
    delays = []
    for _ in range(8):
        conn.connection_failed(now)
        deadline = conn.get_timer()
        assert deadline is not None
        delays.append(deadline - now)
        now = deadline
        conn.handle_timer(now)
    bounds = [1, 2, 4, 8, 16, 32, 60, 60]
    assert all(0.75 * b <= d <= b for d, b in zip(delays, bounds, strict=True)), delays


def test_connect_now_resets_the_backoff_and_starts_at_once() -> None:
    conn = Connection(config(connect_retry_time=1.0, connect_time=10.0), rng=random.Random(1))
    now = 0.0
    conn.start(now)
    for _ in range(5):  # five refusals: the next wait is up to 16 s
        conn.connection_failed(now)
        now = conn.get_timer() or now
        conn.handle_timer(now)
    conn.connection_failed(now)
    assert conn.state is State.IDLE
    waiting = conn.get_timer()
    assert waiting is not None and waiting - now > 8
    events = conn.connect_now(now)
    assert of(events, ShouldConnect) and conn.state is State.CONNECT
    assert conn.consecutive_failures == 0
    conn.connection_failed(now)
    again = conn.get_timer()
    assert again is not None and again - now <= 1.0  # back to connect_retry
    # During an attempt: a fresh one replaces it.
    conn.handle_timer(again)
    events = conn.connect_now(again + 0.5)
    assert of(events, ShouldClose) and of(events, ShouldConnect)
    assert conn.get_timer() == again + 0.5 + 10.0


def test_connect_now_does_nothing_when_passive_stopped_or_connected() -> None:
    passive = Connection(config(passive=True))
    passive.start(0.0)
    assert passive.connect_now(1.0) == [] and passive.state is State.ACTIVE
    stopped = Connection(config())
    assert stopped.connect_now(1.0) == [] and stopped.state is State.IDLE
    open_sent = Connection(config())
    open_sent.start(0.0)
    open_sent.connection_made(0.0)
    assert open_sent.connect_now(1.0) == [] and open_sent.state is State.OPEN_SENT


def test_incoming_connection_ends_the_restart_wait_but_not_damping() -> None:
    conn = Connection(config(connect_retry_time=1.0, connect_time=10.0))
    conn.start(0.0)
    assert not Connection(config()).accepts_incoming  # never started
    conn.connection_failed(0.0)
    assert conn.state is State.IDLE and conn.accepts_incoming
    events = conn.connection_made(0.5)  # the router connected to us meanwhile
    assert [(e.old, e.new) for e in of(events, StateChanged)] == [
        (State.IDLE, State.ACTIVE),
        (State.ACTIVE, State.OPEN_SENT),
    ]
    assert conn.data_to_send()  # our OPEN
    # Two resets in quick succession: the peer is damped, its connections refused.
    now = 1.0
    for _ in range(2):
        conn.receive_data(peer_open() + KeepaliveMessage().encode(), now)
        assert conn.state is State.ESTABLISHED
        now += 1.0
        conn.receive_data(b"", now)
        if conn.accepts_incoming:
            conn.connection_made(now)
    assert conn.state is State.IDLE and not conn.accepts_incoming
    with pytest.raises(LocalProtocolError):
        conn.connection_made(now)


def test_an_administrative_cease_from_the_peer_is_not_damped() -> None:
    """The router's operator resets the session again and again (FRR `neighbor X
    shutdown` / `no neighbor shutdown`): each restart waits only connect_retry, and
    the router's next connection is accepted in the meantime."""
    conn = Connection(config(connect_retry_time=1.0, damp_base=2.0), rng=random.Random(4))
    now = 0.0
    conn.start(now)
    conn.connection_made(now)
    for _ in range(4):
        conn.receive_data(peer_open() + KeepaliveMessage().encode(), now)
        assert conn.state is State.ESTABLISHED
        now += 1.0
        cease = NotificationMessage.cease(CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, "maintenance")
        conn.receive_data(cease.encode(), now)
        wait = conn.get_timer()
        assert wait is not None and wait - now <= 1.0
        assert conn.accepts_incoming
        conn.connection_made(now)
    # A hold timer expiry, by contrast, is an oscillation: damped from the second on.
    conn.receive_data(peer_open() + KeepaliveMessage().encode(), now)
    conn.receive_data(b"", now + 1)
    assert conn.accepts_incoming  # the first reset is isolated


def test_steady_retries_come_before_the_doubling() -> None:
    conn = Connection(
        config(connect_retry_time=1.0, connect_retry_max=60.0, connect_retry_steady=3)
    )
    now = 0.0
    conn.start(now)
    delays = []
    for _ in range(6):
        conn.connection_failed(now)
        deadline = conn.get_timer()
        assert deadline is not None
        delays.append(deadline - now)
        now = deadline
        conn.handle_timer(now)
    assert delays == [1.0, 1.0, 1.0, 1.0, 2.0, 4.0]  # no rng: no jitter
