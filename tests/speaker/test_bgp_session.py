"""BgpSession against an in-process peer made of the same sans-IO core, over loopback TCP."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator
from ipaddress import IPv4Address, IPv4Network

import attrs
import pytest
import trio
import trio.testing

from protocols.bgp import (
    IPV4_UNICAST,
    IPV4_UNICAST_IPV6_NEXT_HOP,
    IPV6_UNICAST,
    AsPath,
    CeaseSubcode,
    Communities,
    EndOfRib,
    Established,
    LocalPref,
    MpReachNlri,
    NextHop,
    NotificationReceived,
    Origin,
    OriginAttribute,
    PathAttribute,
    Prefix,
    State,
    pack_announcements,
)
from speaker.bgp import BgpSession, RouteAttributes, net
from speaker.bgp.net import md5sig
from speaker.bgp.session import BATCH_PREFIXES
from tests.helpers.bgp_peer import (
    LOCAL_ASN,
    PEER_ASN,
    Peer,
    host_routes,
    our_config,
    peer_core,
    send_all,
    wait_for,
)


@pytest.fixture
async def pair(nursery: trio.Nursery) -> AsyncIterator[tuple[Peer, BgpSession]]:
    peer = Peer(peer_core())
    port = await nursery.start(peer.serve)
    session = BgpSession(our_config(port), routes=host_routes(10_000))
    await nursery.start(session.run)
    yield peer, session


async def test_full_dump_packs_many_prefixes_per_update_then_end_of_rib(
    autojump_clock: trio.testing.MockClock, pair: tuple[Peer, BgpSession]
) -> None:
    peer, session = pair
    await session.wait_synchronised()
    await wait_for(lambda: peer.of(EndOfRib))
    assert session.state is State.ESTABLISHED
    rib = peer.announced()
    assert len(rib) == 10_000
    updates = [u for _, u in peer.updates]
    # One UPDATE per driver batch (BATCH_PREFIXES /32s, the loop budget), each fitting
    # 4096 octets.
    assert len(updates) <= -(-10_000 // BATCH_PREFIXES) + 1
    assert max(peer.sizes) <= 4096
    update = updates[0]
    assert update.get(OriginAttribute) == OriginAttribute(value=Origin.IGP)
    assert update.get(AsPath) == AsPath.sequence(LOCAL_ASN)
    assert update.get(NextHop) == NextHop(address=IPv4Address("127.0.0.1"))
    assert update.get(LocalPref) is None  # eBGP
    stats = session.statistics()
    assert stats.updates_out == len(updates)
    assert stats.prefixes_announced == 10_000
    assert stats.end_of_rib_sent == ("ipv4-unicast",)
    assert stats.messages_out["update"] == len(updates) + 1  # + End-of-RIB
    assert stats.messages_out["open"] == 1
    assert stats.messages_in["open"] == 1


async def test_changing_one_community_sends_one_announcement(
    autojump_clock: trio.testing.MockClock, pair: tuple[Peer, BgpSession]
) -> None:
    peer, session = pair
    await wait_for(lambda: peer.of(EndOfRib))
    seen = len(peer.updates)
    routes = host_routes(10_000)
    target = IPv4Network("198.19.0.77/32")
    routes[target] = RouteAttributes(communities=[65000 << 16 | 1])
    session.set_routes(dict(routes))  # taken over: the test keeps its own copy
    await wait_for(lambda: len(peer.updates) > seen)
    await trio.sleep(1)
    new = [u for _, u in peer.updates[seen:]]
    assert len(new) == 1
    (update,) = new
    assert update.nlri == (target,)
    assert update.withdrawn_prefixes == ()
    assert update.get(Communities) == Communities(values=(65000 << 16 | 1,))
    # Removing five prefixes: one UPDATE with exactly those withdrawals.
    seen = len(peer.updates)
    gone = sorted(routes)[:5]
    for prefix in gone:
        del routes[prefix]
    session.set_routes(dict(routes))
    await wait_for(lambda: len(peer.updates) > seen)
    await trio.sleep(1)
    (update,) = [u for _, u in peer.updates[seen:]]
    assert list(update.withdrawn) == gone and update.nlri == ()
    assert len(peer.announced()) == 9_995


async def test_ibgp_sends_local_pref_and_empty_as_path(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    peer = Peer(peer_core(local_asn=LOCAL_ASN))
    port = await nursery.start(peer.serve)
    routes: dict[Prefix, RouteAttributes] = {
        IPv4Network("198.19.1.0/24"): RouteAttributes(med=5, local_pref=200)
    }
    session = BgpSession(our_config(port, peer_asn=LOCAL_ASN), routes=routes)
    await nursery.start(session.run)
    await wait_for(lambda: peer.of(EndOfRib))
    (update,) = [u for _, u in peer.updates]
    assert update.get(LocalPref) == LocalPref(value=200)
    assert update.get(AsPath) == AsPath()
    session.cancel()


async def test_hold_timer_expiry_when_the_peer_hangs(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    peer = Peer(peer_core(hold_time=9))
    port = await nursery.start(peer.serve)
    session = BgpSession(our_config(port, hold_time=9))
    await nursery.start(session.run)
    await session.wait_established()
    established = trio.current_time()
    peer.frozen = True
    await session.wait_state(State.IDLE)
    assert 9 <= trio.current_time() - established <= 9.5
    stats = session.statistics()
    assert stats.last_error_sent is not None
    assert (stats.last_error_sent.code, stats.last_error_sent.subcode) == (4, 0)
    assert stats.flaps == 1
    session.cancel()


async def test_cancel_sends_cease_bfd_down_then_closes(
    autojump_clock: trio.testing.MockClock, pair: tuple[Peer, BgpSession]
) -> None:
    peer, session = pair
    await session.wait_established()
    session.cancel(CeaseSubcode.BFD_DOWN)
    await session.wait_stopped()
    await wait_for(peer.closed.is_set)
    (notification,) = peer.of(NotificationReceived)
    assert (notification.code, notification.subcode) == (6, 10)
    stats = session.statistics()
    assert stats.cancelled_at is not None and stats.notification_written_at is not None
    assert stats.notification_written_at >= stats.cancelled_at
    assert stats.closed_at is not None
    assert session.state is State.IDLE


async def test_owner_scope_cancel_sends_the_registered_subcode(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    peer = Peer(peer_core())
    port = await nursery.start(peer.serve)
    session = BgpSession(our_config(port), routes=host_routes(10))
    owner = trio.CancelScope()

    async def run_guarded() -> None:
        with owner, session.cease_on_cancel(owner, CeaseSubcode.BFD_DOWN):
            await session.run()

    nursery.start_soon(run_guarded)
    await session.wait_synchronised()
    owner.cancel()
    await wait_for(peer.closed.is_set)
    (notification,) = peer.of(NotificationReceived)
    assert (notification.code, notification.subcode) == (6, 10)


async def test_cease_now_writes_the_notification_in_the_same_step(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """The BFD fast path: the Cease is on the socket before anything yields."""
    peer = Peer(peer_core())
    port = await nursery.start(peer.serve)
    session = BgpSession(our_config(port), routes=host_routes(10))
    owner = trio.CancelScope()

    async def run_guarded() -> None:
        with owner, session.cease_on_cancel(owner, CeaseSubcode.BFD_DOWN):
            await session.run()

    nursery.start_soon(run_guarded)
    await session.wait_synchronised()
    before = trio.current_time()
    assert session.cease_now(CeaseSubcode.BFD_DOWN) is True
    assert session.notification_written_at == before  # no time passed, no checkpoint
    assert session.cease_now(CeaseSubcode.BFD_DOWN) is False  # once only
    owner.cancel()
    await wait_for(peer.closed.is_set)
    (notification,) = peer.of(NotificationReceived)
    assert (notification.code, notification.subcode) == (6, 10)
    await session.wait_stopped()
    assert session.statistics().closed_at is not None


async def test_administrative_shutdown_carries_the_message(
    autojump_clock: trio.testing.MockClock, pair: tuple[Peer, BgpSession]
) -> None:
    peer, session = pair
    await session.wait_established()
    session.cancel(CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, "maintenance")
    await wait_for(peer.closed.is_set)
    (notification,) = peer.of(NotificationReceived)
    assert notification.subcode == 2 and notification.shutdown_message == "maintenance"


async def test_reconnects_with_backoff_after_the_peer_goes_away(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    peer = Peer(peer_core())
    port = await nursery.start(peer.serve)
    session = BgpSession(our_config(port), routes=host_routes(100))
    await nursery.start(session.run)
    await session.wait_synchronised()
    peer.closed.set()  # the peer closes the connection without a word
    await session.wait_state(State.IDLE, State.ACTIVE, State.CONNECT)
    # Nobody listens on the port any more: connection refused, again and again.
    await trio.sleep(20)
    stats = session.statistics()
    assert stats.flaps == 1
    assert 2 <= stats.connect_failures <= 12, stats
    assert stats.adj_rib_out_advertised == 0


async def test_passive_session_accepts_only_from_its_peer(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    session = BgpSession(
        our_config(179, passive=True, listen_port=port, source_address="127.0.0.1"),
        routes=host_routes(3),
    )
    await nursery.start(session.run)
    assert session.state is State.ACTIVE
    sock = trio.socket.socket()
    await sock.connect(("127.0.0.1", port))
    core = peer_core(passive=False)
    now = trio.current_time()
    core.start(now)
    core.connection_made(now)
    await send_all(sock, core.data_to_send())
    established = False
    with trio.fail_after(10):
        while not established:
            data = await sock.recv(65536)
            events = core.receive_data(data, trio.current_time())
            await send_all(sock, core.data_to_send())
            established = any(isinstance(e, Established) for e in events)
    await session.wait_established()
    session.cancel()
    sock.close()


async def test_flooding_peer_does_not_starve_our_keepalives(nursery: trio.Nursery) -> None:
    """Real time: the peer sends 300k prefixes as fast as it can with hold time 3 s;
    our KEEPALIVEs (every 1 s) keep coming and neither side's hold timer expires."""
    peer = Peer(peer_core(hold_time=3))
    port = await nursery.start(peer.serve)
    session = BgpSession(our_config(port, hold_time=3))
    await nursery.start(session.run)
    await session.wait_established()
    attributes: list[PathAttribute] = [
        OriginAttribute(value=Origin.IGP),
        AsPath.sequence(PEER_ASN),
        NextHop(address=IPv4Address("127.0.0.1")),
    ]
    base = int(IPv4Address("198.19.0.0"))
    ctx = peer.core.codec_context

    def build() -> bytes:  # seconds of CPU: not on the loop, where hold timers run
        return b"".join(
            u.encode(ctx)
            for start in range(0, 300_000, 50_000)
            for u in pack_announcements(
                attributes,
                [IPv4Network((base + i, 32)) for i in range(start, start + 50_000)],
                ctx,
            )
        )

    blob = await trio.to_thread.run_sync(build)
    started = trio.current_time()
    for i in range(0, len(blob), 1 << 20):
        peer.send(blob[i : i + (1 << 20)])
    with trio.fail_after(60):
        while session.statistics().prefixes_received.get("ipv4-unicast", 0) < 300_000:
            await trio.sleep(0.05)
    took = trio.current_time() - started
    assert session.state is State.ESTABLISHED
    assert peer.core.state is State.ESTABLISHED
    during = [t for t in peer.keepalives_in if t >= started]
    gaps = [b - a for a, b in zip([started, *during], during, strict=False)]
    assert not gaps or max(gaps) < 2.0, (gaps, took)
    assert session.statistics().last_error_sent is None
    assert session.statistics().adj_rib_in == {}  # nothing kept
    session.cancel()


async def test_keep_adj_rib_in_and_ipv6_next_hops(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    peer = Peer(peer_core(), family=socket.AF_INET6)
    port = await nursery.start(peer.serve)
    routes: dict[Prefix, RouteAttributes] = {
        ipaddress.IPv6Network("2001:2:0:ff::/64"): RouteAttributes()
    }
    session = BgpSession(
        our_config(port, peer_address="::1", keep_adj_rib_in=True, next_hop6="2001:2::1"),
        routes=routes,
    )
    await nursery.start(session.run)
    await wait_for(lambda: peer.of(EndOfRib))
    (update,) = [u for _, u in peer.updates]
    reach = update.mp_reach
    assert isinstance(reach, MpReachNlri)
    assert reach.next_hop == ipaddress.IPv6Address("2001:2::1")
    assert reach.nlri == (ipaddress.IPv6Network("2001:2:0:ff::/64"),)
    ctx = peer.core.codec_context
    v6 = pack_announcements(
        [OriginAttribute(value=Origin.IGP), AsPath.sequence(PEER_ASN)],
        [ipaddress.IPv6Network("2001:2:0:ff:1::/80")],
        ctx,
        ipv6_next_hop=ipaddress.IPv6Address("2001:2::2"),
    )
    peer.send(b"".join(u.encode(ctx) for u in v6))
    await wait_for(lambda: session.rib_in.routes)
    route = session.rib_in.routes[ipaddress.IPv6Network("2001:2:0:ff:1::/80")]
    assert route.next_hop == "2001:2::2"
    assert session.statistics().adj_rib_in == {"ipv6-unicast": 1}
    session.cancel()


async def test_rfc8950_session_sends_ipv4_routes_from_keys_in_mp_reach_and_mp_unreach(
    autojump_clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Extended next hop negotiated, no IPv4 next hop (as on an unnumbered link: ::1's
    # interface, lo, has 127.0.0.1, so the next hops are fixed here): the route keys of
    # IPv4 routes go out in MP_REACH_NLRI (AFI 1) with our IPv6 next hop, and are
    # withdrawn in MP_UNREACH_NLRI (AFI 1).
    hops = net.NextHops(ipv4=None, ipv6=ipaddress.IPv6Address("2001:2::1"), ipv6_link_local=None)
    monkeypatch.setattr(net, "next_hops", lambda local, config: hops)
    peer = Peer(peer_core(extended_next_hop=(IPV4_UNICAST_IPV6_NEXT_HOP,)), family=socket.AF_INET6)
    port = await nursery.start(peer.serve)
    route = ipaddress.IPv4Network("198.19.0.7/32")
    routes: dict[Prefix, RouteAttributes] = {route: RouteAttributes()}
    session = BgpSession(
        our_config(port, peer_address="::1", extended_next_hop=True, next_hop6="2001:2::1"),
        routes=routes,
    )
    await nursery.start(session.run)
    await wait_for(lambda: peer.of(EndOfRib))
    assert session.ipv4_over_ipv6
    (update,) = [u for _, u in peer.updates if not u.end_of_rib]
    reach = update.mp_reach
    assert isinstance(reach, MpReachNlri) and reach.afi == 1
    assert reach.next_hop == ipaddress.IPv6Address("2001:2::1")
    assert reach.nlri == (route,) and update.nlri == () and update.get(NextHop) is None
    session.withdraw(route)
    await wait_for(
        lambda: len([u for _, u in peer.updates if u.mp_unreach and not u.end_of_rib]) == 1
    )
    (gone,) = [u for _, u in peer.updates if u.mp_unreach and not u.end_of_rib]
    unreach = gone.mp_unreach
    assert unreach is not None and unreach.afi == 1 and unreach.withdrawn == (route,)
    assert gone.withdrawn == ()
    session.cancel()


async def test_md5_right_key_establishes_wrong_key_never(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    peer = Peer(peer_core())
    peer.password = "s3cret"
    port = await nursery.start(peer.serve)
    session = BgpSession(our_config(port, password="s3cret"))
    assert "s3cret" not in repr(session.config)
    await nursery.start(session.run)
    with trio.fail_after(10):
        await session.wait_established()
    session.cancel()

    other = Peer(peer_core())
    other.password = "s3cret"
    port = await nursery.start(other.serve)
    wrong = BgpSession(our_config(port, password="wrong", connect_time=0.5, connect_retry=0.5))
    await nursery.start(wrong.run)
    await trio.sleep(2.0)
    assert wrong.state is not State.ESTABLISHED
    assert wrong.statistics().connect_failures >= 1
    wrong.cancel()
    other.closed.set()


def test_peer_config_validation() -> None:
    with pytest.raises(ValueError):
        our_config(179, hold_time=2)
    with pytest.raises(ValueError):
        our_config(179, source_address="::1")
    cfg = our_config(179)
    assert cfg.send_ttl == 1 and cfg.min_ttl is None
    assert attrs.evolve(cfg, ebgp_multihop=3).send_ttl == 3
    assert attrs.evolve(cfg, gtsm=True, ebgp_multihop=2).min_ttl == 254
    assert attrs.evolve(cfg, peer_asn=LOCAL_ASN).send_ttl == 64
    assert cfg.with_families_for([ipaddress.ip_network("2001:2:0:ff::/64")]).families == (
        IPV4_UNICAST,
        IPV6_UNICAST,
    )


def test_md5_on_a_kernel_without_it_names_the_peer() -> None:
    import errno

    from speaker.bgp import BgpSocketError
    from speaker.bgp.net import set_md5

    class NoMd5:
        def setsockopt(self, *args: object) -> None:
            raise OSError(errno.ENOPROTOOPT, "Protocol not available")

    cfg = our_config(179, name="rtr1", password="x")
    with pytest.raises(BgpSocketError, match=r"peer rtr1 \(127.0.0.1\).*no TCP MD5 support"):
        set_md5(NoMd5(), cfg)  # type: ignore[arg-type]  # a socket without TCP MD5
    assert len(md5sig(ipaddress.ip_address("2001:2::1"), b"k")) == 216
