"""BFD sockets on loopback: the kernel's GTSM filter, receive buffer sizing, the
kernel's drop count, arrival interfaces."""

from __future__ import annotations

import ipaddress
import os
import socket
import time

import pytest
import trio

from speaker.bfd import net

TTL_OPTION = {
    socket.AF_INET: (socket.IPPROTO_IP, socket.IP_TTL),
    socket.AF_INET6: (socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS),
}


def test_ip_minttl_is_not_honoured_for_udp() -> None:
    """Why the filter exists: Linux applies IP_MINTTL to TCP only. If this starts to
    fail, the kernel drops low-TTL UDP itself and the filter is a belt and braces."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with receiver, sender:
        receiver.bind(("127.0.0.1", 0))
        receiver.setsockopt(socket.IPPROTO_IP, 21, 255)  # IP_MINTTL
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
        sender.sendto(b"ttl-1", receiver.getsockname())
        receiver.settimeout(1)
        assert receiver.recv(16) == b"ttl-1"


@pytest.mark.parametrize(
    ("family", "address"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
)
async def test_gtsm_filter_drops_in_the_kernel_and_the_drops_are_counted(
    family: socket.AddressFamily, address: str
) -> None:
    receiver = await net.open_receiver(family, 0)
    sender = socket.socket(family, socket.SOCK_DGRAM)
    with receiver, sender:
        net.attach_gtsm_filter(receiver)
        port = receiver.getsockname()[1]
        for ttl in (1, 64, 254, 255):
            sender.setsockopt(*TTL_OPTION[family], ttl)
            sender.sendto(f"ttl-{ttl}".encode(), (address, port))
        with trio.fail_after(1):
            datagram = await net.receive(receiver)
        assert datagram.data == b"ttl-255" and datagram.ttl == 255
        assert datagram.kernel_drops == 3
        assert datagram.ifindex == socket.if_nametoindex("lo")
        with trio.move_on_after(0.2) as nothing_else:
            await net.receive(receiver)
        assert nothing_else.cancelled_caught


def test_gtsm_filter_loads_the_ttl_from_the_network_header() -> None:
    v4, v6 = net.gtsm_filter(socket.AF_INET), net.gtsm_filter(socket.AF_INET6)
    assert v4[0].k == (-0x100000 + 8) & 0xFFFFFFFF  # SKF_NET_OFF + IPv4 TTL
    assert v6[0].k == (-0x100000 + 7) & 0xFFFFFFFF  # SKF_NET_OFF + hop limit
    assert v4[1:] == v6[1:]


def test_receive_buffer_is_sized_for_the_sessions() -> None:
    assert net.receive_buffer_bytes([]) == 0
    # 1000 sessions asking for a packet every 50 ms: ~26,700 packets/s, half a second.
    size = net.receive_buffer_bytes([50] * 1000)
    assert size == pytest.approx(1000 / 0.0375 * 0.5 * 2048, rel=1e-6)
    assert net.receive_buffer_bytes([10] * 100_000) == net.MAX_RECEIVE_BUFFER


async def test_set_receive_buffer_grows_but_never_shrinks() -> None:
    sock = await net.open_receiver(socket.AF_INET, 0)
    with sock:
        default = net.set_receive_buffer(sock, 0)
        assert default > 0
        grown = net.set_receive_buffer(sock, 8 << 20)
        if os.geteuid() == 0:
            assert grown >= 8 << 20  # SO_RCVBUFFORCE goes past net.core.rmem_max
        else:
            assert grown >= default
        assert net.set_receive_buffer(sock, 1024) == grown


def test_interface_index_rechecks_at_most_every_second() -> None:
    lo = socket.if_nametoindex("lo")
    arrival = net.InterfaceIndex("lo")
    assert arrival.matches(lo, 0.0)
    assert arrival.matches(None, 0.0)  # no arrival information: cannot tell
    missing = net.InterfaceIndex("no-such-if0")
    assert not missing.matches(lo, 0.0) and missing.index is None
    # Renamed into existence: found again, but only once the recheck interval passed.
    missing.name = "lo"
    assert not missing.matches(lo, 0.5)
    assert missing.matches(lo, 1.0)


def test_in_a_vrf_the_vrf_devices_index_is_accepted_too() -> None:
    """The socket is bound to the VRF already; some kernels report the VRF device
    rather than the slave (IPv6). ``lo`` stands in for the VRF device here."""
    lo = socket.if_nametoindex("lo")
    arrival = net.InterfaceIndex("no-such-if0", vrf="lo")
    assert arrival.matches(lo, 0.0)
    assert not arrival.matches(lo + 1000, 5.0)
    assert not net.InterfaceIndex("no-such-if0").matches(lo, 0.0)


async def test_receive_batch_reads_all_queued_with_kernel_arrival_stamps() -> None:
    receiver = await net.open_receiver(socket.AF_INET, 0)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with receiver, sender:
        net.enable_timestamps(receiver)
        reader = socket.fromfd(receiver.fileno(), receiver.family, receiver.type)
        with reader:
            reader.setblocking(False)
            assert net.receive_batch(reader, 8) == []  # nothing queued: no wait
            port = receiver.getsockname()[1]
            sent_at = time.time()
            for i in range(5):
                sender.sendto(bytes([i]), ("127.0.0.1", port))
            await trio.lowlevel.wait_readable(reader)
            batch = net.receive_batch(reader, 3)  # the limit holds...
            batch += net.receive_batch(reader, 8)  # ...and the rest follows
    assert [d.data for d in batch] == [bytes([i]) for i in range(5)]
    for d in batch:
        assert d.stamp is not None and sent_at - 0.01 <= d.stamp <= time.time()
        assert d.destination == ipaddress.IPv4Address("127.0.0.1")
        assert d.source is batch[0].source  # one address object per peer address
