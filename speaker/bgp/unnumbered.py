"""Unnumbered BGP: the router on an interface, found by its IPv6 link-local address.

A peer configured with ``interface = "IFNAME"`` and no ``peer_address`` is the router
at the other end of that link (MetalLB's BGPPeer ``interface``; FRR's ``neighbor
IFNAME interface``). Nothing in the configuration says its address; both ends learn
it from IPv6 Router Advertisements (RFC 4861 §4.2), as FRR does: bgpd has zebra send
RAs on every interface with an interface neighbour and takes the neighbour's
link-local address from the RAs it receives there (zebra ``rtadv_process_advert``;
bgpd ``bgp_peer_conf_if_to_su_update_v6``: the first source heard).

:class:`RouterWatch` does both halves for one interface, on a raw ICMPv6 socket bound
to it (SO_BINDTODEVICE, hop limit 255, only type 134 let through by ICMP6_FILTER):

- it sends a Router Solicitation when it starts (the router answers with an RA at
  once), and our own RA every :data:`RA_INTERVAL` (the first :data:`FAST_RAS` a
  second apart), with Router Lifetime 0: we are no default router for anyone
  (§6.2.1), but FRR learns our link-local address from it, without which it refuses
  our connection and never connects to us;
- it takes the router's address from the RAs it receives (hop limit 255, a
  link-local source that is not ours): :class:`RouterChoice` decides which one, and
  when a new address replaces it.

The session is then an ordinary IPv6 one to ``fe80::x%IFNAME`` (the scope names the
interface: connect, the listener's lookup and our source address all follow it),
single-hop BFD (RFC 5881) runs between the two link-local addresses on that
interface, and IPv4 routes go out with our IPv6 next hops (RFC 8950). While no
address is learnt the peer's ``peer_address`` is the placeholder ``fe80::%IFNAME``
(:func:`placeholder`), which is also what ``show`` and the metrics' ``peer`` label
print (a label that does not change with the router's address).

The sans-IO parts (:func:`router_advertisement`, :func:`router_solicitation`,
:func:`parse_router_advertisement`, :class:`RouterChoice`) are tested on their own.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import math
import socket
import struct
from pathlib import Path
from typing import cast

import trio

from speaker.addresses import is_unnumbered_address, unnumbered_address
from speaker.bgp import net
from speaker.log import fields

__all__ = [
    "FAST_RAS",
    "RA_INTERVAL",
    "RouterChoice",
    "RouterWatch",
    "is_placeholder",
    "parse_router_advertisement",
    "placeholder",
    "router_advertisement",
    "router_solicitation",
    "scoped",
]

log = logging.getLogger("speaker.bgp")

ROUTER_SOLICITATION = 133
ROUTER_ADVERTISEMENT = 134
ICMP6_FILTER = 1  # IPPROTO_ICMPV6 level, Linux
IPV6_RECVHOPLIMIT = 51
IPV6_HOPLIMIT = 52
ALL_NODES = "ff02::1"
ALL_ROUTERS = "ff02::2"
#: Our RAs: one every this many seconds (FRR's own interval on an interface with a
#: BGP interface neighbour is 10 s) ...
RA_INTERVAL = 10.0
#: ... after this many a second apart when the watch starts or the router changes.
FAST_RAS = 3
#: A socket that cannot be opened (no such interface yet) is tried again this often.
RETRY = 2.0
_ANCILLARY_SPACE = 64


#: ``fe80::%IFNAME``: an unnumbered peer's address until the router's is learnt.
placeholder = unnumbered_address
is_placeholder = is_unnumbered_address


def scoped(address: ipaddress.IPv6Address, interface: str) -> ipaddress.IPv6Address:
    """``address%interface`` (the form the kernel gives for a link-local peer)."""
    return ipaddress.IPv6Address(f"{ipaddress.IPv6Address(address.packed)}%{interface}")


# ---- the messages (RFC 4861 §4.1, §4.2, §4.6.1) ----------------------------------------


def _mac_option(mac: bytes | None) -> bytes:
    """Source Link-Layer Address option (type 1) for an Ethernet address."""
    if mac is None or len(mac) != 6:
        return b""
    return struct.pack("!BB", 1, 1) + mac


def router_advertisement(*, lifetime: int = 0, mac: bytes | None = None) -> bytes:
    """An RA with every field unspecified (0) but ``lifetime`` (0: not a default
    router), and our link-layer address when known. The checksum is left 0: the
    kernel computes it on a raw ICMPv6 socket (RFC 3542 §3.1)."""
    if not 0 <= lifetime <= 0xFFFF:
        raise ValueError("router lifetime out of range")
    # type, code, checksum, cur hop limit, flags, router lifetime, reachable, retrans
    head = struct.pack("!BBHBBHII", ROUTER_ADVERTISEMENT, 0, 0, 0, 0, lifetime, 0, 0)
    return head + _mac_option(mac)


def router_solicitation(*, mac: bytes | None = None) -> bytes:
    return struct.pack("!BBHI", ROUTER_SOLICITATION, 0, 0, 0) + _mac_option(mac)


def parse_router_advertisement(data: bytes) -> int | None:
    """The Router Lifetime of a well-formed RA (type 134, code 0, at least 16 octets,
    options of non-zero length within the message), else None."""
    if len(data) < 16:
        return None
    kind, code, _checksum, _hops, _flags, lifetime = struct.unpack_from("!BBHBBH", data)
    if kind != ROUTER_ADVERTISEMENT or code != 0:
        return None
    pos = 16
    while pos < len(data):  # §6.1.2: an option of length 0 invalidates the message
        if pos + 2 > len(data) or data[pos + 1] == 0:
            return None
        pos += 8 * data[pos + 1]
    if pos != len(data):
        return None
    return int(lifetime)


# ---- which router -------------------------------------------------------------------


class RouterChoice:
    """Which link-local source is the router, from the RAs heard (sans-IO).

    The first source heard is the router. Another source replaces it only once the
    current one has missed its RAs: silent for more than ``1.5 x`` its own interval
    as measured between its last two RAs (``default_interval`` before there are two).
    So two routers taking turns on a shared link do not make the session flap, and a
    router whose address changed (a new interface, a new MAC) is followed after its
    old address's next RA would have been due.
    """

    def __init__(self, *, default_interval: float = RA_INTERVAL) -> None:
        self.default_interval = default_interval
        self.router: ipaddress.IPv6Address | None = None
        self.changes = 0
        self._heard_at = -math.inf
        self._interval = default_interval

    def heard(self, source: ipaddress.IPv6Address, now: float) -> bool:
        """An RA from ``source`` at ``now``; True when the router changed (or was
        first learnt)."""
        source = ipaddress.IPv6Address(source.packed)
        if source == self.router:
            if self._heard_at > -math.inf:
                self._interval = max(0.05, now - self._heard_at)
            self._heard_at = now
            return False
        if self.router is not None and now - self._heard_at <= 1.5 * self._interval:
            return False
        self.router = source
        self._heard_at = now
        self._interval = self.default_interval
        self.changes += 1
        return True


# ---- the runtime -----------------------------------------------------------------------


def _icmp6_filter(*allowed: int) -> bytes:
    """``struct icmp6_filter``: a set bit blocks that type (Linux)."""
    words = [0xFFFFFFFF] * 8
    for kind in allowed:
        words[kind >> 5] &= ~(1 << (kind & 31))
    return struct.pack("=8I", *words)


def _mac_of(interface: str) -> bytes | None:
    try:
        text = Path(f"/sys/class/net/{interface}/address").read_text().strip()
        return bytes.fromhex(text.replace(":", ""))
    except (OSError, ValueError):
        return None


class RouterWatch:
    """Learn the router's link-local address on ``interface``, and send our RAs there.

    Run :meth:`run` in a nursery for as long as the peer is configured; it never
    raises for the host's sake (a missing interface or a refused socket: one log line,
    :attr:`last_error`, a retry every :data:`RETRY` s). :meth:`wait_router` returns
    the router's address once known, :meth:`wait_change` when it changes.
    """

    def __init__(
        self,
        interface: str,
        *,
        name: str,
        interval: float = RA_INTERVAL,
        fast: int = FAST_RAS,
    ) -> None:
        self.interface = interface
        self.name = name
        self.interval = interval
        self.fast = fast
        self.choice = RouterChoice()
        self.last_error: str | None = None
        self.sent = 0
        self.received = 0
        self.rejected = 0
        self._changed = trio.Event()
        self._fast_left = fast
        self._wake = trio.Event()

    @property
    def router(self) -> ipaddress.IPv6Address | None:
        return self.choice.router

    async def wait_router(self) -> ipaddress.IPv6Address:
        while self.choice.router is None:
            await self._changed.wait()
        return self.choice.router

    async def wait_change(self, current: ipaddress.IPv6Address) -> ipaddress.IPv6Address:
        """Until the router's address is no longer ``current``; the new one."""
        while self.choice.router is None or self.choice.router == current:
            await self._changed.wait()
        return self.choice.router

    def _fields(self) -> dict[str, object]:
        return fields(peer=self.name, protocol="bgp", interface=self.interface)

    async def run(self) -> None:
        logged: str | None = None
        while True:
            try:
                sock = self._open()
            except OSError as exc:
                error = f"cannot listen for Router Advertisements on {self.interface}: " + (
                    exc.strerror or str(exc)
                )
                if exc.errno == errno.ENODEV:
                    error = f"interface {self.interface!r} does not exist"
                self.last_error = error
                if error != logged:
                    log.warning("bgp %s: %s; retrying every %g s", self.name, error, RETRY,
                                extra=self._fields())  # fmt: skip
                    logged = error
                await trio.sleep(RETRY)
                continue
            self.last_error = logged = None
            with sock:
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._advertise, sock)
                        await self._receive(sock)
                except OSError as exc:  # the interface went away under us
                    self.last_error = f"Router Advertisements on {self.interface}: {exc}"
                    log.warning("bgp %s: %s; reopening", self.name, self.last_error,
                                extra=self._fields())  # fmt: skip
            await trio.sleep(RETRY)

    def _open(self) -> trio.socket.SocketType:
        ifindex = socket.if_nametoindex(self.interface)
        sock = trio.socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.interface.encode())
            sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER,
                            _icmp6_filter(ROUTER_ADVERTISEMENT))  # fmt: skip
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
        except BaseException:
            sock.close()
            raise
        return sock

    async def _send(self, sock: trio.socket.SocketType, data: bytes, group: str) -> None:
        ifindex = socket.if_nametoindex(self.interface)
        try:
            await sock.sendto(data, (group, 0, 0, ifindex))
        except OSError as exc:  # no link-local address yet (DAD), link down: next time
            log.debug("bgp %s: sending on %s: %s", self.name, self.interface, exc,
                      extra=self._fields())  # fmt: skip
            return
        self.sent += 1

    async def _advertise(self, sock: trio.socket.SocketType) -> None:
        mac = _mac_of(self.interface)
        await self._send(sock, router_solicitation(mac=mac), ALL_ROUTERS)
        while True:
            await self._send(sock, router_advertisement(mac=mac), ALL_NODES)
            delay = 1.0 if self._fast_left > 0 else self.interval
            self._fast_left -= 1
            with trio.move_on_after(delay):
                await self._wake.wait()
            self._wake = trio.Event()

    async def _receive(self, sock: trio.socket.SocketType) -> None:
        while True:
            data, ancdata, _flags, address = await sock.recvmsg(1500, _ANCILLARY_SPACE)
            hops = None
            for level, kind, value in ancdata:
                if level == socket.IPPROTO_IPV6 and kind == IPV6_HOPLIMIT and len(value) >= 4:
                    hops = struct.unpack("=i", value[:4])[0]
            host = cast("tuple[str, int, int, int]", address)[0]
            source = ipaddress.IPv6Address(host.split("%", 1)[0])
            if (
                (hops is not None and hops != 255)
                or not source.is_link_local
                or parse_router_advertisement(data) is None
                or source == net.link_local_of(self.interface)
            ):
                self.rejected += 1
                continue
            self.received += 1
            if self.choice.heard(source, trio.current_time()):
                log.info("bgp %s: router on %s is %s (from its Router Advertisement)",
                         self.name, self.interface, source, extra=self._fields())  # fmt: skip
                self._changed.set()
                self._changed = trio.Event()
                self._fast_left = self.fast  # let the (new) router learn us quickly
                self._wake.set()
