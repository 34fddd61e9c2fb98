"""Connections of a BgpSession: the shared listener, collisions, connect_now, and a
silent (wrong TCP MD5) peer reported at connect_time. Loopback TCP, MockClock."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable
from ipaddress import IPv4Address

import pytest
import trio
import trio.testing

from protocols.bgp import (
    CeaseSubcode,
    Connection,
    Established,
    Event,
    NotificationMessage,
    NotificationReceived,
    State,
)
from speaker.bgp import BgpSession, RouteAttributes, net
from speaker.bgp.listener import HOLD_FOR, BgpListener
from speaker.bgp.net import TCP_MD5SIG, md5sig
from tests.helpers.bgp_peer import Peer, host_routes, our_config, peer_core, send_all

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


async def started_listener(nursery: trio.Nursery, *, wildcard: bool = False) -> BgpListener:
    """A listener on a free port (0), 127.0.0.1 or the wildcard."""
    listener = BgpListener(port=0, addresses=[] if wildcard else [IPv4Address(LOOPBACK)])
    await nursery.start(listener.run)
    return listener


def listening_port(listener: BgpListener) -> int:
    return int(listener.sockets[(4, None)].getsockname()[1])


class Router:
    """The router's side of one TCP connection, driven by hand: its own core."""

    def __init__(self, sock: trio.socket.SocketType, core: Connection) -> None:
        self.sock, self.core = sock, core
        self.events: list[Event] = []

    async def open(self) -> None:
        now = trio.current_time()
        self.core.start(now)
        self.core.connection_made(now)
        await send_all(self.sock, self.core.data_to_send())

    async def run_until(self, done: Callable[[], bool], timeout: float = 30) -> None:
        with trio.fail_after(timeout):
            while not done():
                data = await self.sock.recv(65536)
                self.events += self.core.receive_data(data, trio.current_time())
                out = self.core.data_to_send()
                if out:
                    await send_all(self.sock, out)
                if not data:
                    return

    def got(self, cls: type) -> list[Event]:
        return [e for e in self.events if isinstance(e, cls)]


async def connect_to(port: int, source: str = LOOPBACK) -> trio.socket.SocketType:
    sock = trio.socket.socket()
    await sock.bind((source, 0))
    await sock.connect((LOOPBACK, port))
    return sock


async def test_a_router_that_connects_to_us_reaches_established(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """Not passive: we connect (refused, nobody listens there) and accept as well."""
    listener = await started_listener(nursery)
    session = BgpSession(our_config(free_port(), listener=listener), routes=host_routes(3))
    await nursery.start(session.run)
    assert listener.sessions == {(None, ipaddress.ip_address(LOOPBACK)): session}
    port = listening_port(listener)
    router = Router(await connect_to(port), peer_core(passive=False))
    await router.open()
    await router.run_until(lambda: bool(router.got(Established)))
    await session.wait_established()
    assert session.statistics().remote_address == LOOPBACK
    session.cancel()
    await session.wait_stopped()
    assert listener.sessions == {}
    router.sock.close()


async def test_unknown_source_is_refused_with_a_log_line(
    autojump_clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = await started_listener(nursery, wildcard=True)
    session = BgpSession(our_config(free_port(), listener=listener))
    await nursery.start(session.run)
    port = listening_port(listener)  # the wildcard: 127.0.0.2 reaches it too
    sock = await connect_to(port, source="127.0.0.2")
    with trio.fail_after(5):
        assert await sock.recv(100) == b""  # closed at once
    sock.close()
    assert listener.refused == 1 and listener.accepted == 0
    assert "refused a connection from 127.0.0.2: not a configured peer" in caplog.text
    session.cancel()


async def test_port_taken_is_one_error_line_and_connecting_goes_on(
    autojump_clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    with socket.socket() as other_daemon:
        other_daemon.bind((LOOPBACK, 0))
        other_daemon.listen(1)
        taken = other_daemon.getsockname()[1]
        listener = BgpListener(port=taken, addresses=[IPv4Address(LOOPBACK)], retry=5.0)
        await nursery.start(listener.run)
        peer = Peer(peer_core())
        peer_port = await nursery.start(peer.serve)
        session = BgpSession(our_config(peer_port, listener=listener))
        await nursery.start(session.run)
        await session.wait_established()  # outbound works
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "cannot listen on 127.0.0.1:" in errors[0].getMessage()
        assert "Address already in use" in listener.errors[(4, None)]
    await trio.sleep(6)  # the other daemon went away: the retry binds
    assert (4, None) in listener.sockets and not listener.errors
    session.cancel()


async def test_tcp_md5_on_the_listener(nursery: trio.Nursery) -> None:
    """Real clock: a wrong key's SYNs are dropped by our kernel, the right key gets in."""
    listener = await started_listener(nursery)
    session = BgpSession(our_config(free_port(), listener=listener, password="s3cret"))
    await nursery.start(session.run)
    port = listening_port(listener)

    async def signed(key: str) -> trio.socket.SocketType:
        sock = trio.socket.socket()
        sock.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG, md5sig(IPv4Address(LOOPBACK), key.encode()))
        await sock.connect((LOOPBACK, port))
        return sock

    with trio.move_on_after(1.5) as dropped:
        await signed("wrong")
    assert dropped.cancelled_caught
    router = Router(await signed("s3cret"), peer_core(passive=False))
    await router.open()
    await router.run_until(lambda: bool(router.got(Established)), timeout=10)
    session.cancel()
    await session.wait_stopped()
    router.sock.close()


@pytest.mark.parametrize(("our_id", "survivor"), [("198.18.0.1", "theirs"), ("198.18.0.9", "ours")])
async def test_connection_collision_keeps_the_higher_identifiers_connection(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, our_id: str, survivor: str
) -> None:
    """RFC 4271 §6.8: both sides connect; the router (198.18.0.2) delays its OPEN on
    our connection until its own is up. The connection opened by the higher BGP
    Identifier survives; the other gets Cease 6/7."""
    listener = await started_listener(nursery)
    theirs_listening = trio.socket.socket()
    await theirs_listening.bind((LOOPBACK, 0))
    theirs_listening.listen(1)
    session = BgpSession(
        our_config(theirs_listening.getsockname()[1], listener=listener, router_id=our_id)
    )
    await nursery.start(session.run)
    ours_sock, _ = await theirs_listening.accept()  # our connection, at the router
    await session.wait_state(State.OPEN_SENT)
    on_ours = Router(ours_sock, peer_core())
    on_theirs = Router(await connect_to(listening_port(listener)), peer_core(passive=False))
    await on_theirs.open()
    await on_ours.open()  # now the router answers on ours too

    def established(r: Router) -> Callable[[], bool]:
        return lambda: bool(r.got(Established) or r.got(NotificationReceived))

    async with trio.open_nursery() as both:
        both.start_soon(on_theirs.run_until, established(on_theirs))
        both.start_soon(on_ours.run_until, established(on_ours))
    winner, loser = (on_theirs, on_ours) if survivor == "theirs" else (on_ours, on_theirs)
    assert winner.got(Established), winner.events
    (cease,) = loser.got(NotificationReceived)
    assert isinstance(cease, NotificationReceived)
    assert (cease.code, cease.subcode) == (6, CeaseSubcode.CONNECTION_COLLISION_RESOLUTION)
    await session.wait_established()
    stats = session.statistics()
    assert stats.collisions == 1
    assert stats.flaps == 0  # the loser never was Established
    # the session keeps running on the winner: KEEPALIVEs flow on it
    keepalives = winner.core.negotiated
    assert keepalives is not None
    await trio.sleep(60)
    assert session.state is State.ESTABLISHED
    session.cancel()
    theirs_listening.close()


async def test_connect_now_resets_the_backoff(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """Refused again and again, the waits grow; connect_now() tries at once."""
    session = BgpSession(our_config(free_port(), connect_retry=1.0, connect_retry_max=60.0))
    await nursery.start(session.run)
    await trio.sleep(40)
    attempts = session.statistics().connect_attempts
    # six waits of about 1 s, then 2 + 4 + 8 + 16 ... (jittered) within 40 s
    assert 9 <= attempts <= 12, attempts
    assert session.connect_now() is True
    await trio.sleep(0)
    assert session.statistics().connect_attempts == attempts + 1
    await trio.sleep(1.01)  # the backoff starts over at connect_retry
    assert session.statistics().connect_attempts == attempts + 2
    session.cancel()
    await session.wait_stopped()
    assert session.connect_now() is False


async def test_silent_peer_is_reported_at_connect_time(
    autojump_clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A wrong TCP MD5 key: the peer's kernel drops our SYNs. With connect_retry 1 s
    the attempt used to be abandoned every second and never counted; now the first
    attempt runs its connect_time (3 s) and is reported as a failure that names MD5."""
    peer = Peer(peer_core())
    peer.password = "s3cret"
    port = await nursery.start(peer.serve)
    session = BgpSession(our_config(port, password="wrong", connect_time=3.0, connect_retry=1.0))
    await nursery.start(session.run)
    await trio.sleep(2.9)
    assert session.statistics().connect_failures == 0
    await trio.sleep(0.2)
    stats = session.statistics()
    assert stats.connect_failures == 1 and stats.connect_attempts == 2
    assert stats.last_connect_error is not None
    assert "timed out after 3 s" in stats.last_connect_error
    assert "TCP MD5 password set" in stats.last_connect_error
    (line,) = [r.getMessage() for r in caplog.records if "connect to" in r.getMessage()]
    assert line.startswith("bgp t: connect to 127.0.0.1 port")
    session.cancel()
    peer.closed.set()


async def test_ipv6_routes_go_out_when_the_interface_gets_its_address_back(
    autojump_clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An IPv4 session established while the interface had no global IPv6 address
    (a link flap with keep_addr_on_down=0 removed it): once the address is back, the
    IPv6 routes go out with it as next hop, without a new session."""
    peer = Peer(peer_core())
    port = await nursery.start(peer.serve)
    routes = {
        ipaddress.ip_network("198.19.0.1/32"): RouteAttributes(),
        ipaddress.ip_network("2001:2:0:ff::1/128"): RouteAttributes(),
    }
    session = BgpSession(our_config(port), routes=routes)
    await nursery.start(session.run)
    await session.wait_established()
    await trio.sleep(2)
    assert set(peer.announced()) == {ipaddress.ip_network("198.19.0.1/32")}  # lo: no v6
    back = net.NextHops(
        ipv4=IPv4Address(LOOPBACK), ipv6=ipaddress.IPv6Address("2001:2::5"), ipv6_link_local=None
    )
    monkeypatch.setattr(net, "next_hops", lambda local, config: back)
    await trio.sleep(1.5)
    assert set(peer.announced()) == set(routes)
    v6 = peer.announced()[ipaddress.ip_network("2001:2:0:ff::1/128")]
    assert v6.mp_reach is not None and v6.mp_reach.next_hop == back.ipv6
    assert session.statistics().next_hops["ipv6"] == "2001:2::5"
    assert session.statistics().flaps == 0
    session.cancel()


async def test_the_peer_closing_ours_first_hands_the_session_to_its_connection(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """The router resolved the collision before us: Cease 6/7 on our connection while
    its own, already accepted, has not brought its OPEN yet. That one takes over."""
    listener = await started_listener(nursery)
    theirs_listening = trio.socket.socket()
    await theirs_listening.bind((LOOPBACK, 0))
    theirs_listening.listen(1)
    session = BgpSession(our_config(theirs_listening.getsockname()[1], listener=listener))
    await nursery.start(session.run)
    ours_sock, _ = await theirs_listening.accept()
    await session.wait_state(State.OPEN_SENT)
    theirs = Router(await connect_to(listening_port(listener)), peer_core(passive=False))
    await trio.sleep(0.1)  # accepted: the candidate sent our OPEN on it
    assert session.statistics().collisions == 1
    cease = NotificationMessage.cease(CeaseSubcode.CONNECTION_COLLISION_RESOLUTION)
    await send_all(ours_sock, cease.encode())
    ours_sock.close()
    await trio.sleep(0.5)  # (the state passes Idle only within one step: not waitable)
    assert session.state is State.OPEN_SENT  # on the peer's connection now
    await theirs.open()
    await theirs.run_until(lambda: bool(theirs.got(Established)))
    await session.wait_established()
    assert session.statistics().remote_address == LOOPBACK
    session.cancel()
    theirs_listening.close()


async def test_a_connection_between_two_sessions_is_held_for_the_next(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """The router connects while its peer has no session (between two, e.g. waiting
    for BFD): the connection is kept for the next session rather than closed at once
    (BIRD takes an accepted-then-closed connection for an error and waits 60 s)."""
    listener = await started_listener(nursery)
    first = BgpSession(our_config(free_port(), listener=listener))
    await nursery.start(first.run)
    first.cancel()
    await first.wait_stopped()
    router = Router(await connect_to(listening_port(listener)), peer_core(passive=False))
    await router.open()
    await trio.sleep(3)
    assert listener.refused == 0
    second = BgpSession(our_config(free_port(), listener=listener))
    await nursery.start(second.run)
    await router.run_until(lambda: bool(router.got(Established)))
    await second.wait_established()
    second.cancel()
    await second.wait_stopped()
    # Nobody comes for the next one: closed after HOLD_FOR.
    late = await connect_to(listening_port(listener))
    await trio.sleep(HOLD_FOR - 0.5)
    with trio.move_on_after(0.1):
        await late.recv(1)
        pytest.fail("closed too early")
    with trio.fail_after(1):
        assert await late.recv(1) == b""
    late.close()
    router.sock.close()


async def test_the_peers_newer_connection_replaces_one_still_waiting_for_its_open(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """The router connects, never sends its OPEN on that connection (it gave it up, as
    FRR does with TCP MD5 now and then, or it rebooted), and connects again: the newer
    connection is not refused; it brings its OPEN first, so it stays and the earlier
    one gets Cease 6/7."""
    listener = await started_listener(nursery)
    session = BgpSession(our_config(free_port(), listener=listener), routes=host_routes(2))
    await nursery.start(session.run)
    earlier = Router(await connect_to(listening_port(listener)), peer_core(passive=False))
    await session.wait_state(State.OPEN_SENT)  # on the earlier connection
    newer = Router(await connect_to(listening_port(listener)), peer_core(passive=False))
    await newer.open()
    await newer.run_until(lambda: bool(newer.got(Established)))
    await session.wait_established()
    stats = session.statistics()
    assert stats.collisions == 1 and stats.flaps == 0
    earlier.core.start(trio.current_time())
    earlier.core.connection_made(trio.current_time())
    await earlier.run_until(lambda: bool(earlier.got(NotificationReceived)))
    (cease,) = earlier.got(NotificationReceived)
    assert isinstance(cease, NotificationReceived)
    assert (cease.code, cease.subcode) == (6, CeaseSubcode.CONNECTION_COLLISION_RESOLUTION)
    await trio.sleep(30)
    assert session.state is State.ESTABLISHED
    session.cancel()
    newer.sock.close()
    earlier.sock.close()


async def test_a_second_connection_once_the_peers_first_brought_its_open_is_refused(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """The earlier connection brought its OPEN: it is alive, so a second one is
    refused (RFC 4271 §6.8 has nothing to resolve between two of the peer's)."""
    listener = await started_listener(nursery)
    session = BgpSession(our_config(free_port(), listener=listener), routes=host_routes(2))
    await nursery.start(session.run)
    first = Router(await connect_to(listening_port(listener)), peer_core(passive=False))
    await first.open()
    await first.run_until(lambda: bool(first.got(Established)))
    await session.wait_established()
    second = await connect_to(listening_port(listener))
    with trio.fail_after(5):
        assert await second.recv(100) == b""  # closed at once
    assert session.statistics().collisions == 0
    session.cancel()
    first.sock.close()
    second.close()
