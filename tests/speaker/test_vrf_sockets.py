"""VRF plumbing without a VRF: sockets bound to a device, peers keyed by (VRF, address).

The kernel of the development machines has no VRF driver (CONFIG_NET_VRF unset:
``ip link add red type vrf`` fails there), so these tests give the runtime ``lo`` as
the "VRF" device: what they check is ours, not the kernel's VRF routing (which
tests/interop/test_vrf.py does where the driver exists): the device each socket is
bound to (read back with ``getsockopt(SO_BINDTODEVICE)``), a listener socket per
(family, VRF), the same peer address kept apart in two VRFs, BFD demultiplexed by
VRF, and a missing VRF device costing one clear error, not the listener.
"""

from __future__ import annotations

import errno
import ipaddress
import random
import socket
import struct

import pytest
import trio
import trio.testing

from protocols.bfd import ControlPacket, State
from protocols.bgp import Established
from speaker import netlookup
from speaker.bfd import net as bfd_net
from speaker.bfd.net import Datagram
from speaker.bfd.profile import BfdProfile
from speaker.bfd.runtime import BfdEndpoint, SessionKey
from speaker.bgp import BgpSession, net
from speaker.bgp.listener import BgpListener
from tests.helpers.bgp_peer import host_routes, our_config, peer_core
from tests.speaker.test_bgp_connect import Router, connect_to, free_port

LOOPBACK = ipaddress.IPv4Address("127.0.0.1")
STAND_IN = "lo"  # the device the tests use as "the VRF"


def bound_device(sock: trio.socket.SocketType | socket.socket) -> str:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, 16)
    return bytes(raw).split(b"\x00", 1)[0].decode()


# ---- BGP ---------------------------------------------------------------------------------


async def test_our_connection_is_bound_to_the_vrf_device(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    with socket.socket() as server:
        server.bind((str(LOOPBACK), 0))
        server.listen()
        port = server.getsockname()[1]
        for vrf, device in ((STAND_IN, STAND_IN), (None, "")):
            sock = await net.open_connection(our_config(port, vrf=vrf))
            try:
                assert bound_device(sock) == device
            finally:
                sock.close()


async def test_a_missing_vrf_device_names_the_peer_and_the_vrf() -> None:
    with pytest.raises(net.BgpSocketError) as info:
        await net.open_connection(our_config(free_port(), vrf="nosuchvrf0"))
    assert info.value.strerror == "peer t: cannot bind to VRF 'nosuchvrf0': no such VRF device"


async def test_the_same_address_in_two_vrfs_is_two_peers_each_with_its_listener(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """Two sessions for 127.0.0.1, one in the default VRF and one in "lo": each gets
    the connections that arrive on its own VRF's listening socket."""
    listener = BgpListener(port=0, addresses=[LOOPBACK])
    await nursery.start(listener.run)
    unreachable = free_port()  # our own connects are refused: only theirs can come in
    plain = BgpSession(our_config(unreachable, name="plain"), routes=host_routes(1))
    in_vrf = BgpSession(our_config(unreachable, name="in-vrf", vrf=STAND_IN), routes=host_routes(2))
    plain.config = our_config(unreachable, name="plain", listener=listener)
    in_vrf.config = our_config(unreachable, name="in-vrf", vrf=STAND_IN, listener=listener)
    await nursery.start(plain.run)
    await nursery.start(in_vrf.run)
    assert set(listener.sessions) == {(None, LOOPBACK), (STAND_IN, LOOPBACK)}
    assert set(listener.sockets) == {(4, None), (4, STAND_IN)}
    assert bound_device(listener.sockets[(4, STAND_IN)]) == STAND_IN
    assert bound_device(listener.sockets[(4, None)]) == ""

    for key, session, other in (((4, STAND_IN), in_vrf, plain), ((4, None), plain, in_vrf)):
        port = listener.sockets[key].getsockname()[1]
        router = Router(await connect_to(port), peer_core(passive=False))
        await router.open()
        await router.run_until(lambda r=router: bool(r.got(Established)))  # type: ignore[misc]
        await session.wait_established()
        assert session.statistics().remote_address == "127.0.0.1"
        assert other.statistics().state != "Established"  # the other VRF's peer: not it
        router.sock.close()
        await trio.sleep(1)
    for session in (plain, in_vrf):
        session.cancel()
        await session.wait_stopped()
    assert listener.sessions == {}


async def test_a_vrf_that_does_not_exist_costs_its_listener_socket_only(
    autojump_clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = BgpListener(port=0, addresses=[LOOPBACK], retry=5.0)
    await nursery.start(listener.run)
    session = BgpSession(
        our_config(free_port(), vrf="nosuchvrf0", listener=listener, passive=True),
        routes=host_routes(1),
    )
    plain = BgpSession(our_config(free_port(), listener=listener), routes=host_routes(1))
    await nursery.start(session.run)
    await nursery.start(plain.run)
    assert listener.errors == {
        (4, "nosuchvrf0"): "cannot listen on 127.0.0.1:0 in VRF nosuchvrf0: no such VRF device"
    }
    assert (4, None) in listener.sockets  # the default VRF's socket is unaffected
    await trio.sleep(12)  # retried, still missing: no crash, one ERROR line
    assert [r.message for r in caplog.records if r.levelname == "ERROR"] == [
        "bgp: cannot listen on 127.0.0.1:0 in VRF nosuchvrf0: no such VRF device; connecting"
        " out only, retrying every 5 s"
    ]
    for s in (session, plain):
        s.cancel()
        await s.wait_stopped()


# ---- BFD ---------------------------------------------------------------------------------

FAST = BfdProfile(name="fast", transmit_interval=50, receive_interval=50, detect_multiplier=3)
A, B = ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv4Address("127.0.0.2")
PORT_A, PORT_B = 24784, 34784


async def test_bfd_in_a_vrf_binds_its_sockets_and_is_demultiplexed_by_vrf(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """Multihop sessions in the "lo" VRF come Up through receive sockets bound to the
    VRF device; a packet for them from the default VRF's sockets is not theirs."""
    ep_a = BfdEndpoint(rng=random.Random(11), ports=(PORT_A, PORT_A + 1000),
                       peer_ports=(PORT_B, PORT_B + 1000), precise_timers=False)  # fmt: skip
    ep_b = BfdEndpoint(rng=random.Random(12), ports=(PORT_B, PORT_B + 1000),
                       peer_ports=(PORT_A, PORT_A + 1000), precise_timers=False)  # fmt: skip
    await nursery.start(ep_a.run)
    await nursery.start(ep_b.run)
    key_a = SessionKey(peer=B, local=A, multihop=True, vrf=STAND_IN)
    sa = await ep_a.add_session(key_a, FAST)
    sb = await ep_b.add_session(SessionKey(peer=A, local=B, multihop=True, vrf=STAND_IN), FAST)
    with trio.fail_after(5):
        await sa.wait_state(State.UP)
        await sb.wait_state(State.UP)
    receiver = ep_a._receivers[(socket.AF_INET, PORT_A + 1000, STAND_IN)]
    assert bound_device(receiver) == STAND_IN
    assert sa._sender is not None and bound_device(sa._sender) == STAND_IN
    assert "vrf lo" in str(sa.key)

    # The peer's packet, as if it had come in on the default VRF's socket: no session.
    packet = ControlPacket(
        state=State.DOWN, detect_mult=3, my_discriminator=sa.core.remote_discriminator,
        your_discriminator=sa.core.local_discriminator, desired_min_tx_us=50_000,
        required_min_rx_us=50_000,
    )  # fmt: skip
    datagram = Datagram(packet.encode(), B, 49152, A, 255, None)
    before = ep_a.discards["no-session"]
    ep_a.dispatch(datagram, True, trio.current_time())
    assert ep_a.discards["no-session"] == before + 1 and sa.state is State.UP
    # Without Your Discriminator, found by (VRF, addresses) only in its VRF.
    assert ep_a._find(datagram, True, None) is None
    assert ep_a._find(datagram, True, STAND_IN) is sa
    # On its VRF's socket it is the session's.
    ep_a.dispatch(datagram, True, trio.current_time(), vrf=STAND_IN)
    assert sa.state is State.DOWN


async def test_a_bfd_session_in_a_missing_vrf_fails_before_it_starts(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    endpoint = BfdEndpoint(rng=random.Random(13), ports=(PORT_A + 7, PORT_A + 1007),
                           precise_timers=False)  # fmt: skip
    await nursery.start(endpoint.run)
    with pytest.raises(OSError) as info:
        await endpoint.add_session(SessionKey(peer=B, local=A, vrf="nosuchvrf0"), FAST)
    assert (info.value.errno, info.value.strerror) == (errno.ENODEV, "no VRF device 'nosuchvrf0'")
    assert endpoint.sessions == {}


def test_the_send_device_of_a_session() -> None:
    assert SessionKey(peer=B, local=A, interface="eth1", vrf="red").send_device == "eth1"
    assert SessionKey(peer=B, local=A, vrf="red").send_device == "red"
    assert SessionKey(peer=B, local=A, multihop=True, interface="x", vrf="red").send_device == "red"
    assert SessionKey(peer=B, local=A, interface="eth1").send_device == "eth1"
    assert SessionKey(peer=B, local=A, multihop=True).send_device is None


def test_a_sender_can_take_its_port_again_on_another_device() -> None:
    """What move_to relies on: the same address and port, bound to two devices."""
    first, port = bfd_net.open_sender(A, interface="lo")
    try:
        with pytest.raises(OSError):  # an unbound one conflicts
            bfd_net.open_sender(A, port=port)
    finally:
        first.close()
    again, same = bfd_net.open_sender(A, interface="lo", port=port)
    again.close()
    assert same == port


# ---- rtnetlink ---------------------------------------------------------------------------


def _rta(kind: int, value: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(value), kind) + value
    return raw.ljust((len(raw) + 3) & ~3, b"\x00")


def test_a_vrf_link_message_is_parsed() -> None:
    """An RTM_NEWLINK for ``red`` (kind vrf, table 10) and one for its slave."""
    info = _rta(netlookup.IFLA_INFO_KIND, b"vrf\x00") + _rta(
        netlookup.IFLA_INFO_DATA, _rta(netlookup.IFLA_VRF_TABLE, struct.pack("=I", 10))
    )
    vrf = struct.pack("=BxHiII", 0, 1, 7, 0, 0) + _rta(netlookup.IFLA_IFNAME, b"red\x00")
    vrf += _rta(netlookup.IFLA_LINKINFO, info)
    assert netlookup.parse_link(vrf) == netlookup.LinkInfo(7, "red", "vrf", None, 10)
    slave = struct.pack("=BxHiII", 0, 1, 3, 0, 0) + _rta(netlookup.IFLA_IFNAME, b"to-rtr1\x00")
    slave += _rta(netlookup.IFLA_MASTER, struct.pack("=I", 7))
    assert netlookup.parse_link(slave) == netlookup.LinkInfo(3, "to-rtr1", None, 7, None)


def test_a_route_message_is_parsed() -> None:
    body = struct.pack("=BBBBBBBBI", socket.AF_INET, 32, 0, 0, 10, 0, 0, 1, 0)
    body += _rta(netlookup.RTA_OIF, struct.pack("=I", 3))
    body += _rta(netlookup.RTA_PREFSRC, bytes([198, 18, 1, 2]))
    body += _rta(netlookup.RTA_GATEWAY, bytes([198, 18, 1, 1]))
    body += _rta(netlookup.RTA_TABLE, struct.pack("=I", 10))
    route = netlookup.parse_route(body)
    assert route == netlookup.RouteInfo(
        oif=3, interface=None, source=ipaddress.IPv4Address("198.18.1.2"),
        gateway=ipaddress.IPv4Address("198.18.1.1"), table=10,
    )  # fmt: skip


def test_the_real_kernel_answers() -> None:
    route = netlookup.route_to(LOOPBACK)
    assert route.interface == "lo" and route.source == LOOPBACK
    assert netlookup.route_to(ipaddress.IPv6Address("::1")).interface == "lo"
    with pytest.raises(OSError):
        netlookup.route_to(LOOPBACK, vrf="nosuchvrf0")
    assert netlookup.link_info("lo") == netlookup.LinkInfo(1, "lo")
    assert netlookup.link_info("nosuchvrf0") is None
    assert any(link.name == "lo" for link in netlookup.links())
    assert netlookup.vrf_problem("lo") == "device 'lo' is not a VRF (its kind is none)"
    assert netlookup.vrf_problem(
        "nosuchvrf0",
    ) == ("no VRF device 'nosuchvrf0' on this host (ip link add nosuchvrf0 type vrf table N)")
    assert netlookup.vrf_members("nosuchvrf0") == frozenset()
    assert netlookup.local_address_for(LOOPBACK, vrf=STAND_IN) == LOOPBACK


# ---- echo towards a peer behind a gateway ------------------------------------------------


async def test_echo_frames_go_to_the_gateway_of_the_route(monkeypatch: pytest.MonkeyPatch) -> None:
    """A peer at a loopback address reached ``via`` the router's link address: the
    kernel resolves the gateway, never the peer, so the echo link must use the
    gateway's MAC (found in the lab: "no ARP entry for 198.18.0.2 on to-rtr1b")."""
    from speaker.bfd import echo_link, runtime

    gateway, peer = ipaddress.IPv4Address("198.18.3.1"), ipaddress.IPv4Address("198.18.0.2")
    local = ipaddress.IPv4Address("198.18.0.1")
    route = netlookup.RouteInfo(oif=5, interface="to-rtr1b", source=local, gateway=gateway,
                                table=254)  # fmt: skip
    monkeypatch.setattr(runtime, "route_to", lambda address, vrf=None: route)
    key = SessionKey(peer=peer, local=local, interface="to-rtr1b")
    assert runtime._echo_next_hop(key) == gateway
    # Another interface than the route's (configured by hand): the peer is on that link.
    assert runtime._echo_next_hop(SessionKey(peer=peer, local=local, interface="eth9")) is None
    on_link = netlookup.RouteInfo(oif=5, interface="to-rtr1b", source=local, gateway=None,
                                  table=254)  # fmt: skip
    monkeypatch.setattr(runtime, "route_to", lambda address, vrf=None: on_link)
    assert runtime._echo_next_hop(key) is None

    asked: list[ipaddress.IPv4Address] = []
    monkeypatch.setattr(echo_link, "resolve_mac", lambda ifname, ip: asked.append(ip))
    monkeypatch.setattr(echo_link, "_trigger_resolution", lambda *args: None)
    link = echo_link.EchoLink("to-rtr1b", local, peer, next_hop_ip=gateway)
    link._sock = object()  # type: ignore[assignment]  # refresh_mac only checks it is open
    link.refresh_mac()
    assert asked == [gateway] and link.peer_ip == peer
    assert echo_link.EchoLink("to-rtr1b", local, peer).next_hop_ip == peer


# ---- configuration to plan ---------------------------------------------------------------


def test_the_vrf_reaches_bgp_and_bfd_and_a_change_restarts_the_peer() -> None:
    from speaker.app import identity
    from speaker.config import loads_config
    from speaker.plan import plans_for

    text = """
[speaker]
my_asn = 64513
router_id = "198.18.0.1"

[[bfd_profiles]]
name = "fast"

[[peers]]
name = "tor"
peer_address = "198.18.1.1"
peer_asn = 64512
bfd_profile = "fast"
"""
    plain = plans_for(loads_config(text), {})[0]
    red = plans_for(loads_config(text + 'vrf = "red"\n'), {})[0]
    assert plain.bgp.vrf is None and red.bgp.vrf == "red"
    assert red.bfd_target is not None and red.bfd_target.vrf == "red"
    assert identity(plain) != identity(red)


async def test_a_vrf_created_again_gets_a_new_listening_socket(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socket bound to a deleted VRF never hears the VRF created again (a new
    ifindex): the peer's next registration (it restarts, see speaker/peer.py) finds
    the index changed and the socket is opened again."""
    listener = BgpListener(port=0, addresses=[LOOPBACK])
    await nursery.start(listener.run)
    config = our_config(free_port(), name="in-vrf", vrf=STAND_IN, listener=listener, passive=True)
    first = BgpSession(config, routes=host_routes(1))
    await nursery.start(first.run)
    old = listener.sockets[(4, STAND_IN)]
    first.cancel()
    await first.wait_stopped()
    index = netlookup.vrf_index(STAND_IN)
    assert index is not None
    monkeypatch.setattr(netlookup, "vrf_index", lambda name: index + 1000)  # "created again"
    second = BgpSession(config, routes=host_routes(1))
    await nursery.start(second.run)
    new = listener.sockets[(4, STAND_IN)]
    assert new is not old and old.fileno() == -1  # the old one closed
    assert bound_device(new) == STAND_IN
    router = Router(await connect_to(new.getsockname()[1]), peer_core(passive=False))
    await router.open()
    await router.run_until(lambda: bool(router.got(Established)))
    await second.wait_established()
    router.sock.close()
    second.cancel()
    await second.wait_stopped()


async def test_bfd_receive_sockets_of_a_vrf_created_again_are_opened_again(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    ep_a = BfdEndpoint(rng=random.Random(21), ports=(PORT_A + 3, PORT_A + 1003),
                       peer_ports=(PORT_B + 3, PORT_B + 1003), precise_timers=False)  # fmt: skip
    ep_b = BfdEndpoint(rng=random.Random(22), ports=(PORT_B + 3, PORT_B + 1003),
                       peer_ports=(PORT_A + 3, PORT_A + 1003), precise_timers=False)  # fmt: skip
    await nursery.start(ep_a.run)
    await nursery.start(ep_b.run)
    key = SessionKey(peer=B, local=A, multihop=True, vrf=STAND_IN)
    await ep_b.add_session(SessionKey(peer=A, local=B, multihop=True, vrf=STAND_IN), FAST)
    first = await ep_a.add_session(key, FAST)
    receiver = (socket.AF_INET, PORT_A + 1003, STAND_IN)
    old = ep_a._receivers[receiver]
    await trio.sleep(0.1)  # its receive loop has started
    old_reader = ep_a._readers[receiver][0]  # the plain socket the loop drains
    await ep_a.remove_session(first)
    real = socket.if_nametoindex
    monkeypatch.setattr(
        socket, "if_nametoindex", lambda name: real(name) + (1000 if name == STAND_IN else 0)
    )
    again = await ep_a.add_session(key, FAST)
    assert ep_a._receivers[receiver] is not old and old.fileno() == -1
    with trio.fail_after(5):
        await again.wait_state(State.UP)  # packets reach it through the new socket
    # The old loop's reader is closed, and a detection reads only the new one.
    assert old_reader.fileno() == -1
    assert ep_a._readers[receiver][0] is not old_reader and len(ep_a._readers) == 1
