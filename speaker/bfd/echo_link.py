"""Raw-link transport for BFD Echo over IPv4 (RFC 5880 §6.4, RFC 5881 §4).

An Echo packet is a UDP datagram to port 3785 that the *neighbour's forwarding plane*
loops back to us: it is addressed to our own IP address but put on the wire with the
neighbour's MAC address as the Ethernet destination. The neighbour routes it like any
transit packet and, since the destination is us, sends it straight back over the same
link. The neighbour runs no BFD code for this, but it MUST have IP forwarding enabled
(a Linux peer with ``net.ipv4.ip_forward=0`` silently drops the packets, which is exactly
the "echo path lost" signal).

The kernel's IP stack can do neither half:

* sent through a normal UDP socket, a datagram to our own address never leaves the
  host (it is routed over ``lo``);
* on return, a packet whose source is a local address is dropped as a martian before
  any socket could see it (unless ``accept_local`` is set, which we do not want).

So both directions use one ``AF_PACKET``/``SOCK_RAW`` socket bound to the interface: we
build the whole Ethernet + IPv4 + UDP frame and parse what comes back (both pure, in
:mod:`speaker.bfd.echo_frame`). Packet sockets see frames *before* IP input, so the
martian drop does not hide the returned echo from us. A classic BPF filter
(:func:`~speaker.bfd.echo_frame.echo_filter`) keeps the process from waking for
unrelated traffic on the link.

The packet socket works below IP, so a link enslaved to a VRF needs nothing more
than its name; the UDP sockets beside it (the source port, the ARP trigger) are bound
to the interface, which puts them in its VRF.

The neighbour's MAC comes from the kernel's neighbour table (``/proc/net/arp``);
:func:`wait_peer_mac` makes the kernel resolve it by sending one harmless datagram to
the peer's discard port. Payload bytes are opaque here: the sans-IO core
(``protocols.bfd.echo``) encodes and authenticates them.

IPv4 only; IPv6 echo is out of scope (and the session configuration forbids it).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import random
import socket
from collections import Counter
from collections.abc import Iterator
from ipaddress import IPv4Address
from types import TracebackType

import trio

from speaker.bfd.bpf import BpfInsn
from speaker.bfd.bpf import attach_filter as _attach_filter
from speaker.bfd.echo_frame import (
    ETH_P_IP,
    PACKET_HOST,
    EchoFrame,
    build_frame,
    echo_filter,
    parse_frame,
    reflected,
)

__all__ = [
    "EchoLink",
    "EchoLinkError",
    "EchoReflector",
    "kernel_forwards",
    "open_packet_socket",
    "resolve_mac",
    "wait_peer_mac",
]

DISCARD_PORT = 9  # RFC 863: the cheapest thing to aim a resolution trigger at

ARPHRD_ETHER = 1
ATF_COM = 0x02  # /proc/net/arp flag: the entry holds a resolved hardware address

# Linux socket options Python's socket module does not export.
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23  # Linux >= 4.20
SO_BINDTODEVICE = 25

# RFC 5881 §4 asks control packets for a source port in 49152..65535; echoes use the
# same range so middleboxes treat them alike.
_SPORT_RANGE = (49152, 65535)

# Echoes are tiny; a larger frame is truncated by recv and then fails parse_frame's
# length checks, which is the right outcome for something that is not our echo.
_RECV_SIZE = 4096


class EchoLinkError(Exception):
    """The echo transport cannot be set up or used (no ARP entry, bad interface...)."""


async def _receive_host_frame(sock: trio.socket.SocketType, ifname: str) -> bytes:
    """The next frame received for this host on a packet socket.

    A link going down is reported once on packet sockets (ENETDOWN): frames then
    simply stop coming, which the session's detection timer handles, so it is
    skipped. The filters pass PACKET_HOST frames only; the address check guards a
    kernel that ignored them. Raises :class:`EchoLinkError` if the socket fails."""
    while True:
        try:
            data, address = await sock.recvfrom(_RECV_SIZE)
        except OSError as exc:
            if exc.errno == errno.ENETDOWN:
                continue
            raise EchoLinkError(f"echo receive on {ifname} failed: {exc}") from exc
        # address is (ifname, proto, pkttype, hatype, addr)
        if address[2] == PACKET_HOST:
            return data


def open_packet_socket(ifname: str, program: list[BpfInsn]) -> tuple[socket.socket, bytes]:
    """A non-blocking ``AF_PACKET`` socket on ``ifname`` (IPv4 frames) carrying
    ``program``; returns it and the interface's MAC address."""
    # Protocol 0 receives nothing until bind(): attaching the filter first means no
    # unfiltered frame can be queued in between (the socket(..., htons(ETH_P_IP))
    # form would start capturing every IPv4 frame on every interface at once).
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except OSError as exc:
        raise EchoLinkError(f"cannot open a packet socket (need CAP_NET_RAW): {exc}") from exc
    try:
        _attach_filter(sock, program)
        # Bound to ETH_P_IP the kernel already skips transmitted frames (it copies
        # those to ETH_P_ALL taps only) and the filter's pkttype test would drop
        # them; this option states the intent and stays right if the binding ever
        # changes. ENOPROTOOPT before Linux 4.20 is fine for the same reasons.
        with contextlib.suppress(OSError):
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        sock.bind((ifname, ETH_P_IP))
        # The bound device's own address: right even when /sys belongs to another
        # network namespace than the one this process uses.
        _name, _proto, _pkttype, hatype, mac = sock.getsockname()
        if hatype != ARPHRD_ETHER or len(mac) != 6:
            raise EchoLinkError(f"{ifname} is not an Ethernet interface")
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise EchoLinkError(f"cannot set up echo socket on {ifname}: {exc}") from exc
    except BaseException:
        sock.close()
        raise
    return sock, bytes(mac)


# ---------------------------------------------------------------------------------------
# Neighbour resolution


def resolve_mac(ifname: str, ip: IPv4Address, *, arp_table: str = "/proc/net/arp") -> bytes | None:
    """The resolved MAC of ``ip`` on ``ifname`` from the kernel's ARP table, or None.

    Only complete entries (flag ATF_COM) count; incomplete or failed ones show up with
    a zero address. STALE entries are complete and still the best answer we have.
    """
    try:
        with open(arp_table, encoding="ascii") as table:
            lines = table.read().splitlines()[1:]  # first line is the column header
    except OSError:
        return None
    wanted = str(ip)
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or fields[0] != wanted or fields[5] != ifname:
            continue
        try:
            flags = int(fields[2], 16)
            mac = bytes.fromhex(fields[3].replace(":", ""))
        except ValueError:
            continue
        if flags & ATF_COM and len(mac) == 6 and any(mac):
            return mac
    return None


def _trigger_resolution(ifname: str, peer_ip: IPv4Address, local_ip: IPv4Address) -> None:
    """Make the kernel ARP for ``peer_ip`` by sending it one empty datagram.

    The discard port is the least intrusive target: the peer drops it or answers with
    an ICMP port unreachable that nobody reads. Bound to the interface and our address
    so the request leaves where the echoes will, with the right sender address.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        # Only a hint: it needs CAP_NET_RAW, which the packet socket needs anyway.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, ifname.encode())
        try:
            sock.bind((str(local_ip), 0))
        except OSError as exc:
            raise EchoLinkError(f"cannot use {local_ip} on {ifname}: {exc}") from exc
        sock.sendto(b"", (str(peer_ip), DISCARD_PORT))


async def wait_peer_mac(
    ifname: str, peer_ip: IPv4Address, local_ip: IPv4Address, timeout: float = 3.0
) -> bytes:
    """The peer's MAC on ``ifname``, triggering ARP if the kernel does not know it yet.

    Polls the table every 20 ms and re-triggers every second (a FAILED entry needs new
    traffic to be retried). Raises :class:`EchoLinkError` after ``timeout`` seconds.
    """
    last_error: OSError | None = None
    next_trigger = trio.current_time()
    with trio.move_on_after(timeout):
        while True:
            mac = resolve_mac(ifname, peer_ip)
            if mac is not None:
                return mac
            if trio.current_time() >= next_trigger:
                try:
                    _trigger_resolution(ifname, peer_ip, local_ip)
                except OSError as exc:  # e.g. no route yet; keep polling, report later
                    last_error = exc
                next_trigger = trio.current_time() + 1.0
            await trio.sleep(0.02)
    raise EchoLinkError(f"no ARP entry for {peer_ip} on {ifname}") from last_error


# ---------------------------------------------------------------------------------------
# The link


def _reserve_port(
    local_ip: IPv4Address, wanted: int | None, ifname: str | None = None
) -> socket.socket:
    """A UDP socket holding our echo source port, so no two links pick the same one.

    Nothing is ever received on it (echoes come back to port 3785, and the IP stack
    drops them as martians anyway); holding the port only keeps the choice unique per
    namespace and address, which also lets the filter demultiplex links by port.
    Bound to ``ifname`` first: an interface enslaved to a VRF has its addresses in the
    VRF's table, where an unbound socket cannot bind them (EADDRNOTAVAIL).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if ifname is not None:
            with contextlib.suppress(OSError):  # only a hint outside a VRF
                sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, ifname.encode())
        if wanted is not None:
            sock.bind((str(local_ip), wanted))
            return sock
        lo, hi = _SPORT_RANGE
        for _ in range(64):
            try:
                sock.bind((str(local_ip), random.randint(lo, hi)))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                continue
            return sock
        raise EchoLinkError(f"no free UDP source port in {lo}..{hi} on {local_ip}")
    except OSError as exc:
        sock.close()
        raise EchoLinkError(f"cannot reserve a UDP source port on {local_ip}: {exc}") from exc
    except BaseException:
        sock.close()
        raise


class EchoLink:
    """Send BFD Echo payloads through one neighbour and receive them back.

    Usage::

        async with EchoLink("to-rtr1", "198.18.1.2", "198.18.1.1") as link:
            await link.send(payload)
            returned = await link.receive()

    Frames go out with our MAC as source, the peer's as destination, IPv4 source and
    destination ``local_ip`` (``source_ip`` overrides the source, see below), TTL 255,
    UDP from a fixed port chosen at open (49152..65535) to 3785.

    ``source_ip``: RFC 5881 §4 says the echo source SHOULD NOT be in the link's subnet,
    because a router forwarding a packet back out of its arrival interface to an
    on-link source sends ICMP Redirects. Passing an address of ours from outside the
    subnet (a loopback address the peer routes back to us) avoids them; the default is
    ``local_ip``, which works everywhere but draws redirects from routers that send them.

    ``next_hop_ip``: whose MAC the frames go to, when the route to the peer goes
    through a gateway on the link (a peer at a loopback address, reached ``via`` the
    router's link address): the kernel resolves the gateway, never the peer, there.
    The default is the peer itself (directly connected).

    One task may send while another receives. The peer's MAC is re-read from the ARP
    table every ``mac_refresh_interval`` seconds while sending, or on
    :meth:`refresh_mac`.
    """

    def __init__(
        self,
        ifname: str,
        local_ip: IPv4Address | str,
        peer_ip: IPv4Address | str,
        *,
        source_ip: IPv4Address | str | None = None,
        udp_sport: int | None = None,
        mac_refresh_interval: float = 5.0,
        next_hop_ip: IPv4Address | str | None = None,
    ) -> None:
        self.ifname = ifname
        self.local_ip = IPv4Address(local_ip)
        self.peer_ip = IPv4Address(peer_ip)
        self.next_hop_ip = self.peer_ip if next_hop_ip is None else IPv4Address(next_hop_ip)
        self.source_ip = self.local_ip if source_ip is None else IPv4Address(source_ip)
        self._wanted_sport = udp_sport
        self.mac_refresh_interval = mac_refresh_interval
        self.udp_sport = 0
        self.ifindex = 0
        self.local_mac = b""
        self.peer_mac = b""
        self._sock: trio.socket.SocketType | None = None
        self._port_holder: socket.socket | None = None
        self._ident: Iterator[int] = itertools.count(random.randrange(0x10000))
        self._next_refresh = 0.0

    # -- lifecycle ----------------------------------------------------------------------

    async def open(self, *, arp_timeout: float = 3.0) -> None:
        """Reserve the source port, resolve the peer's MAC, open the packet socket."""
        if self._sock is not None:
            raise EchoLinkError(f"echo link on {self.ifname} is already open")
        try:
            self.ifindex = socket.if_nametoindex(self.ifname)
        except OSError as exc:
            raise EchoLinkError(f"no interface {self.ifname}: {exc}") from exc
        holder = _reserve_port(self.local_ip, self._wanted_sport, self.ifname)
        try:
            self.peer_mac = await wait_peer_mac(
                self.ifname, self.next_hop_ip, self.local_ip, arp_timeout
            )
            raw = self._open_packet_socket(holder.getsockname()[1])
        except BaseException:
            holder.close()
            raise
        self._port_holder = holder
        self.udp_sport = holder.getsockname()[1]
        self._sock = trio.socket.from_stdlib_socket(raw)
        self._next_refresh = trio.current_time() + self.mac_refresh_interval

    def _open_packet_socket(self, sport: int) -> socket.socket:
        sock, self.local_mac = open_packet_socket(
            self.ifname, echo_filter(self.source_ip, self.local_ip, sport)
        )
        return sock

    def close(self) -> None:
        """Release the packet socket and the source port. Idempotent."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._port_holder is not None:
            self._port_holder.close()
            self._port_holder = None

    async def __aenter__(self) -> EchoLink:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _require_open(self) -> trio.socket.SocketType:
        if self._sock is None:
            raise EchoLinkError(f"echo link on {self.ifname} is not open")
        return self._sock

    # -- neighbour ----------------------------------------------------------------------

    def refresh_mac(self) -> bytes:
        """Re-read the peer's MAC from the ARP table; returns the MAC now in use.

        A changed entry (peer replaced, VRRP-style failover) is picked up. A missing
        one keeps the last known MAC, since it is still the best guess, and asks the
        kernel to resolve again so a later refresh finds it.
        """
        self._require_open()
        self._next_refresh = trio.current_time() + self.mac_refresh_interval
        mac = resolve_mac(self.ifname, self.next_hop_ip)
        if mac is not None:
            self.peer_mac = mac
        else:
            # Best effort: if this fails too, the next refresh tries again.
            with contextlib.suppress(OSError, EchoLinkError):
                _trigger_resolution(self.ifname, self.next_hop_ip, self.local_ip)
        return self.peer_mac

    # -- data ---------------------------------------------------------------------------

    async def send(self, payload: bytes) -> None:
        """Send one echo carrying ``payload`` towards the peer's forwarding plane."""
        sock = self._require_open()
        if trio.current_time() >= self._next_refresh:
            self.refresh_mac()
        frame = build_frame(
            self.local_mac,
            self.peer_mac,
            self.source_ip,
            self.local_ip,
            self.udp_sport,
            payload,
            ident=next(self._ident) & 0xFFFF,
        )
        try:
            await sock.send(frame)
        except OSError as exc:
            raise EchoLinkError(f"echo send on {self.ifname} failed: {exc}") from exc

    async def receive_frame(self) -> EchoFrame:
        """The next returned echo of this link, with its IP/UDP fields (TTL included)."""
        sock = self._require_open()
        while True:
            frame = parse_frame(await _receive_host_frame(sock, self.ifname))
            if (
                frame is None
                or frame.ip_src != self.source_ip
                or frame.ip_dst != self.local_ip
                or frame.udp_sport != self.udp_sport
            ):
                continue
            return frame

    async def receive(self) -> bytes:
        """The payload of the next echo of ours that came back; skips anything else."""
        return (await self.receive_frame()).payload


# ---------------------------------------------------------------------------------------
# Looping the peer's echoes


def kernel_forwards(ifname: str, *, root: str = "/proc/sys/net/ipv4/conf") -> bool:
    """Whether the kernel forwards IPv4 arriving on ``ifname`` (it then loops the
    peer's echoes itself, unless a firewall drops forwarded packets)."""
    try:
        with open(f"{root}/{ifname}/forwarding", encoding="ascii") as flag:
            return flag.read().strip() == "1"
    except OSError:
        return False


class EchoReflector:
    """Loops a peer's Echo packets back to it, for a node that does not forward.

    A peer running the Echo function sends echoes addressed to itself through our
    MAC and expects our forwarding plane to return them (RFC 5880 §6.4); a host with
    ``net.ipv4.ip_forward=0`` drops them, breaking the promise a nonzero Required Min
    Echo RX Interval makes. This does the forwarding plane's part for that one kind
    of packet: a packet socket whose filter passes only UDP to port 3785 with IP
    source and destination the peer's address, each frame sent back as
    :func:`reflected` makes it. While the kernel forwards (checked at most every
    ``recheck`` seconds) frames are left to it, so the peer never gets two copies.

    ``rate`` (frames a second) with a burst of ``burst`` bounds what a peer can make
    us send: an echo flood costs its sender, not the node; what it costs is counted
    in ``counters`` as ``echo-loop-rate-limited``.
    """

    def __init__(
        self,
        ifname: str,
        peer_ip: IPv4Address | str,
        *,
        rate: float,
        burst: int = 8,
        recheck: float = 1.0,
        counters: Counter[str] | None = None,
    ) -> None:
        self.counters: Counter[str] = Counter() if counters is None else counters
        self.looped = self.left_to_kernel = 0
        self.ifname = ifname
        self.peer_ip = IPv4Address(peer_ip)
        self.rate = rate
        self.burst = burst
        self.recheck = recheck
        self.local_mac = b""
        self._sock: trio.socket.SocketType | None = None
        self._raw: socket.socket | None = None
        self._tokens = float(burst)
        self._refilled_at = 0.0
        self._forwarding = False
        self._checked_at = -1e18

    def open(self) -> None:
        raw, self.local_mac = open_packet_socket(
            self.ifname, echo_filter(self.peer_ip, self.peer_ip)
        )
        self._raw = raw
        self._sock = trio.socket.from_stdlib_socket(raw)
        self._refilled_at = trio.current_time()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = self._raw = None

    def _admit(self, now: float) -> bool:
        self._tokens = min(self.burst, self._tokens + (now - self._refilled_at) * self.rate)
        self._refilled_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def _kernel_forwards(self, now: float) -> bool:
        if now - self._checked_at >= self.recheck:
            self._checked_at = now
            self._forwarding = kernel_forwards(self.ifname)
        return self._forwarding

    async def run(self) -> None:
        """Reflect until cancelled; raises :class:`EchoLinkError` if the socket fails."""
        sock, raw = self._sock, self._raw
        if sock is None or raw is None:
            raise EchoLinkError(f"echo reflector on {self.ifname} is not open")
        while True:
            frame = await _receive_host_frame(sock, self.ifname)
            now = trio.current_time()
            if self._kernel_forwards(now):
                self.left_to_kernel += 1
                continue
            reply = reflected(frame, self.local_mac)
            if reply is None:
                continue
            if not self._admit(now):
                self.counters["echo-loop-rate-limited"] += 1
                continue
            try:
                raw.send(reply)  # a 60-byte frame, direct: no scheduler pass
            except BlockingIOError:
                self.counters["echo-loop-rate-limited"] += 1
                continue
            except OSError as exc:
                raise EchoLinkError(f"echo send on {self.ifname} failed: {exc}") from exc
            self.looped += 1
