"""Sockets for BFD over UDP (RFC 5881 single-hop, RFC 5883 multihop).

Receiving: one socket per (family, port), bound to the wildcard address, asking the
kernel for the received TTL / hop limit and the packet's destination address as
ancillary data, so the runtime can apply GTSM (RFC 5881 §5: single-hop packets must
arrive with TTL 255; RFC 5883 §5: multihop with at least the configured minimum) and
demultiplex by (peer, local address).

Sending: one socket per session, bound to the session's local address and a source
port of its own in 49152-65535 (RFC 5881 §4), with TTL / hop limit 255.

VRF: a session in a Linux VRF has its own receive sockets, bound to the VRF device
(``SO_BINDTODEVICE``: with the default ``udp_l3mdev_accept = 0`` a socket of the
default VRF never sees what arrives in a VRF), and a send socket bound to its
interface (single-hop) or to the VRF device (multihop), so the kernel routes its
packets with the VRF's table.

GTSM in the kernel: the single-hop socket carries a classic BPF filter
(:func:`gtsm_filter`) that drops any packet whose TTL / hop limit is not 255 before
it is queued, so a flood of such packets (anyone more than one hop away can send
them) costs neither buffer space nor wake-ups and cannot crowd out the peers'
packets. ``IP_MINTTL`` / ``IPV6_MINHOPCOUNT`` would be simpler, but Linux applies
them to TCP only (measured on 6.18: set on a UDP socket, TTL-1 datagrams still
arrive). The receive buffer is sized for the sessions on the socket
(:func:`receive_buffer_bytes`), and the kernel's count of datagrams it dropped on
the socket (filter or full buffer) rides on each datagram (``SO_RXQ_OVFL``).

Receiving in batches: :func:`receive_batch` reads every datagram queued on the
socket (up to a limit) with non-blocking ``recvmsg`` calls on a plain socket after
one wait for readability, so packets that arrived together cost one wake-up of the
loop, not one each. Each carries the kernel's arrival time (``SO_TIMESTAMPNS``,
:func:`enable_timestamps`): detection counts from when the packet reached the host,
not from when the loop got to it.
"""

from __future__ import annotations

import errno
import ipaddress
import math
import random
import socket
import struct
from collections.abc import Iterable
from typing import cast

import attrs
import trio

from protocols.bfd import CONTROL_PORT, MULTIHOP_CONTROL_PORT
from speaker.addresses import IPAddress
from speaker.bfd.bpf import ACCEPT_ALL, JEQ_K, LD_B_ABS, RET_K, SKF_NET_OFF, BpfInsn, stmt
from speaker.bfd.bpf import attach_filter as _attach_filter

__all__ = [
    "Datagram",
    "IPAddress",
    "InterfaceIndex",
    "attach_gtsm_filter",
    "enable_timestamps",
    "gtsm_filter",
    "open_receiver",
    "open_sender",
    "receive",
    "receive_batch",
    "receive_buffer_bytes",
    "set_receive_buffer",
]


# Linux values the socket module does not export.
IP_PKTINFO = 8
IP_RECVTTL = 12
IP_TTL = 2
IPV6_RECVPKTINFO = 49
IPV6_PKTINFO = 50
IPV6_RECVHOPLIMIT = 51
IPV6_HOPLIMIT = 52
IPV6_UNICAST_HOPS = 16
SO_RCVBUFFORCE = 33
SO_RXQ_OVFL = 40
SO_TIMESTAMPNS = 35  # SO_TIMESTAMPNS_OLD: a struct timespec of CLOCK_REALTIME

# Where the TTL / hop limit sits in the IPv4 / IPv6 header.
_TTL_OFFSET = {socket.AF_INET: 8, socket.AF_INET6: 7}

#: Receive buffer: room for this long of every session's packets at their fastest
#: rate, each costing this much buffer (truesize: 832 bytes for a BFD packet on veth,
#: about 2 KiB on NIC drivers that receive into 2 KiB buffers), within these bounds.
RECEIVE_BUFFER_SECONDS = 0.5
PACKET_TRUESIZE = 2048
MAX_RECEIVE_BUFFER = 64 << 20

SOURCE_PORTS = range(49152, 65536)
_ANCILLARY_SPACE = 256


@attrs.frozen
class Datagram:
    data: bytes
    source: IPAddress
    source_port: int
    destination: IPAddress | None
    ttl: int | None
    ifindex: int | None
    #: Datagrams the kernel had dropped on this socket so far (GTSM filter, full
    #: buffer) when it queued this one; None before the first drop.
    kernel_drops: int | None = None
    #: When the kernel received it (CLOCK_REALTIME seconds, ``SO_TIMESTAMPNS``);
    #: None without timestamps.
    stamp: float | None = None


class InterfaceIndex:
    """Tells whether a datagram's arrival ifindex is that of a named interface.

    Single-hop BFD is about one link (RFC 5881 §3): a packet from the right source
    address arriving on another interface is not from the neighbour (with rp_filter
    off, any host on any link of ours can send it). The index is read once and read
    again on a mismatch, at most every ``recheck`` seconds (an interface deleted and
    created again gets a new index; a flood of packets from elsewhere costs no
    system call per packet).

    ``vrf``: the session's VRF device, whose index is accepted too: the socket is
    bound to that VRF already, and for some packets (IPv6 on some kernels) the
    kernel reports the VRF device rather than the slave the packet came in on.
    """

    def __init__(self, name: str, *, recheck: float = 1.0, vrf: str | None = None) -> None:
        self.name = name
        self.vrf = vrf
        self.recheck = recheck
        self.index: int | None = None
        self.vrf_index: int | None = None
        self._checked_at = -math.inf

    def matches(self, ifindex: int | None, now: float) -> bool:
        if ifindex is None:
            return True  # no IP_PKTINFO (our sockets always ask for it): cannot tell
        if ifindex in (self.index, self.vrf_index):
            return True
        if now - self._checked_at < self.recheck:
            return False
        self._checked_at = now
        self.index = self._index(self.name)
        self.vrf_index = self._index(self.vrf) if self.vrf else None
        return ifindex in (self.index, self.vrf_index)

    @staticmethod
    def _index(name: str) -> int | None:
        try:
            return socket.if_nametoindex(name)
        except OSError:
            return None  # gone for now; a later check finds it again


def control_port(multihop: bool) -> int:
    return MULTIHOP_CONTROL_PORT if multihop else CONTROL_PORT


async def open_receiver(
    family: socket.AddressFamily, port: int, *, vrf: str | None = None
) -> trio.socket.SocketType:
    """A bound (not yet read) receive socket for one family and port (in ``vrf``: bound
    to that VRF device)."""
    sock = trio.socket.socket(family, socket.SOCK_DGRAM)
    try:
        if vrf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, vrf.encode())
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
        if family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            address: tuple[str, int] = ("0.0.0.0", port)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
            address = ("::", port)
        await sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def open_sender(
    local: IPAddress,
    *,
    interface: str | None = None,
    taken: set[int] | None = None,
    rng: random.Random | None = None,
    port: int | None = None,
) -> tuple[socket.socket, int]:
    """A non-blocking socket bound to ``local`` and a free source port; returns it and
    the port.

    A plain socket, not a Trio one: a BFD packet is sent with a direct ``sendto`` in
    the session's step (a UDP send of 24-80 bytes does not block in practice), which
    saves a pass of the scheduler per packet; only EAGAIN falls back to waiting.
    ``taken`` lists ports this process already uses (they are skipped; the chosen one
    is added). ``interface`` binds the socket to a device (single-hop sessions: the
    link the session is about; in a VRF, the VRF device when there is no interface),
    so packets leave there. ``port``: that source port and no other (a session that
    moves to another interface keeps its port, RFC 5881 §4).
    """
    family = socket.AF_INET if local.version == 4 else socket.AF_INET6
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, IP_TTL, 255)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_UNICAST_HOPS, 255)
        if interface:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        taken = taken if taken is not None else set()
        if port is not None:
            sock.bind((str(local), port))
            taken.add(port)
            return sock, port
        start = (rng or random.Random()).randrange(len(SOURCE_PORTS))
        for i in range(len(SOURCE_PORTS)):
            candidate = SOURCE_PORTS[(start + i) % len(SOURCE_PORTS)]
            if candidate in taken:
                continue
            try:
                sock.bind((str(local), candidate))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    continue
                raise
            taken.add(candidate)
            return sock, candidate
        raise OSError(errno.EADDRINUSE, f"no free BFD source port on {local}")
    except BaseException:
        sock.close()
        raise


async def receive(sock: trio.socket.SocketType) -> Datagram:
    """The next datagram with its TTL and destination address (from ancillary data)."""
    data, ancdata, _flags, addr = await sock.recvmsg(1500, _ANCILLARY_SPACE)
    return _datagram(data, ancdata, addr)


def receive_batch(sock: socket.socket, limit: int) -> list[Datagram]:
    """Every datagram queued on a non-blocking socket, ``limit`` at most, without
    waiting (empty when none is). Errors other than EAGAIN (ICMP errors queued on the
    socket) are raised only when nothing was read before them."""
    out: list[Datagram] = []
    recvmsg = sock.recvmsg
    while len(out) < limit:
        try:
            data, ancdata, _flags, addr = recvmsg(1500, _ANCILLARY_SPACE)
        except BlockingIOError:
            break
        except OSError:
            if out:
                break
            raise
        out.append(_datagram(data, ancdata, addr))
    return out


def enable_timestamps(sock: socket.socket | trio.socket.SocketType) -> None:
    """Ask the kernel for each datagram's arrival time (``SO_TIMESTAMPNS``)."""
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)


#: Address objects by their text or packed bytes: a session's peer sends every
#: packet from the same address, and ``ip_address`` costs more than the rest of the
#: decoding. Cleared when it grows past the limit (a scan from many sources).
_ADDRESSES: dict[str | bytes, IPAddress] = {}
_ADDRESS_CACHE_LIMIT = 65536


def _address(key: str | bytes) -> IPAddress:
    found = _ADDRESSES.get(key)
    if found is None:
        if len(_ADDRESSES) >= _ADDRESS_CACHE_LIMIT:
            _ADDRESSES.clear()
        if isinstance(key, bytes):
            found = ipaddress.ip_address(key)
        else:
            found = ipaddress.ip_address(key.split("%", 1)[0])
        _ADDRESSES[key] = found
    return found


_SOL_SOCKET, _IPPROTO_IP, _IPPROTO_IPV6 = socket.SOL_SOCKET, socket.IPPROTO_IP, socket.IPPROTO_IPV6
_INT = struct.Struct("=i")
_UINT = struct.Struct("=I")
_TIMESPEC = struct.Struct("=qq")


def _datagram(data: bytes, ancdata: list[tuple[int, int, bytes]], addr: object) -> Datagram:
    ttl: int | None = None
    destination: IPAddress | None = None
    ifindex: int | None = None
    drops: int | None = None
    stamp: float | None = None
    for level, kind, value in ancdata:
        if level == _IPPROTO_IP:
            if kind == IP_PKTINFO and len(value) >= 12:
                ifindex = _INT.unpack_from(value)[0]
                destination = _address(value[8:12])
            elif kind == IP_TTL and len(value) >= 4:
                ttl = _INT.unpack_from(value)[0]
        elif level == _SOL_SOCKET:
            if kind == SO_TIMESTAMPNS and len(value) >= 16:
                seconds, nanoseconds = _TIMESPEC.unpack_from(value)
                stamp = seconds + nanoseconds * 1e-9
            elif kind == SO_RXQ_OVFL and len(value) >= 4:
                drops = _UINT.unpack_from(value)[0]
        elif level == _IPPROTO_IPV6:
            if kind == IPV6_HOPLIMIT and len(value) >= 4:
                ttl = _INT.unpack_from(value)[0]
            elif kind == IPV6_PKTINFO and len(value) >= 20:
                destination = _address(value[:16])
                ifindex = _UINT.unpack_from(value, 16)[0]
    host, port = cast("tuple[str, int]", addr)[:2]
    return Datagram(data, _address(host), port, destination, ttl, ifindex, drops, stamp)


def gtsm_filter(family: socket.AddressFamily) -> list[BpfInsn]:
    """Classic BPF for a UDP socket of ``family``: TTL / hop limit 255 or drop.

    On a UDP socket the filter sees the datagram from its UDP header on; the IP
    header is reached through SKF_NET_OFF (the IPv6 fixed header even when extension
    headers follow).
    """
    return [
        stmt(LD_B_ABS, SKF_NET_OFF + _TTL_OFFSET[family]),
        BpfInsn(JEQ_K, 0, 1, 255),
        stmt(RET_K, ACCEPT_ALL),
        stmt(RET_K, 0),
    ]


def attach_gtsm_filter(sock: trio.socket.SocketType) -> None:
    """Attach :func:`gtsm_filter` to a single-hop receive socket."""
    _attach_filter(sock, gtsm_filter(socket.AddressFamily(sock.family)))


def receive_buffer_bytes(receive_intervals_ms: Iterable[int]) -> int:
    """Buffer space for the sessions on one socket, given the receive interval each
    asks its peer for: a peer sends at most once per 75 % of it (§6.8.7 jitter), and
    the buffer holds :data:`RECEIVE_BUFFER_SECONDS` of that for all of them."""
    rate = sum(1000 / (0.75 * interval) for interval in receive_intervals_ms)
    return min(MAX_RECEIVE_BUFFER, round(rate * RECEIVE_BUFFER_SECONDS * PACKET_TRUESIZE))


def set_receive_buffer(sock: trio.socket.SocketType, nbytes: int) -> int:
    """Make the socket's receive buffer at least ``nbytes`` (never smaller than it
    is); returns the size in effect. Beyond net.core.rmem_max this needs
    CAP_NET_ADMIN (SO_RCVBUFFORCE); without it the kernel caps the request."""
    current = int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    if nbytes > current:
        # The kernel doubles what it is given (its bookkeeping overhead) and counts
        # packets' truesize against the doubled value.
        half = (nbytes + 1) // 2
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, half)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, half)
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
