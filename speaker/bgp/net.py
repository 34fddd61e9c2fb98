"""TCP sockets for BGP: MD5 signatures, TTL / GTSM, connect and listen, next hops.

- TCP MD5 (RFC 2385): ``setsockopt(IPPROTO_TCP, TCP_MD5SIG, struct tcp_md5sig)`` for
  the peer's address, on the active socket before ``connect`` and on the shared
  listening socket (:mod:`speaker.bgp.listener`) while the peer's session runs. A
  kernel without it answers ENOPROTOOPT (or ENOENT):
  :class:`BgpSocketError` names the peer.
- TTL: ``IP_TTL`` / ``IPV6_UNICAST_HOPS`` from :attr:`BgpPeerConfig.send_ttl`; GTSM
  (RFC 5082) adds ``IP_MINTTL`` / ``IPV6_MINHOPCOUNT``.
- Next hops: our end of the connection (``getsockname``); for IPv6 also the
  link-local address of the interface holding it (``/proc/net/if_inet6``); in a VRF,
  only the VRF's interfaces are candidates (the same address may be in two VRFs).
- VRF: a peer with ``vrf`` gets ``SO_BINDTODEVICE`` to the VRF device on its active
  socket before anything else (:func:`bind_to_vrf`; the shared listener binds its
  VRF sockets the same way), so the kernel routes the connection with the VRF's table.
  A missing VRF is ENODEV: :class:`BgpSocketError` names the peer and the VRF.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import socket
import struct
from pathlib import Path

import attrs
import trio

from speaker import netlookup
from speaker.bgp.config import BgpPeerConfig, IPAddress

__all__ = [
    "BgpSocketError",
    "NextHops",
    "apply_ttl",
    "bind_to_vrf",
    "clear_md5",
    "md5sig",
    "next_hops",
    "open_connection",
]

# Linux values the socket module may not export.
TCP_MD5SIG = 14
IP_TTL = 2
IP_MINTTL = 21
IPV6_UNICAST_HOPS = 16
IPV6_MINHOPCOUNT = 73
SIOCGIFADDR = 0x8915
TCP_MD5SIG_MAXKEYLEN = 80
_SOCKADDR_STORAGE = 128
IF_INET6 = Path("/proc/net/if_inet6")


class BgpSocketError(OSError):
    """A socket option the peer's configuration needs could not be set."""


def _sockaddr(address: IPAddress) -> bytes:
    """``struct sockaddr_storage`` holding ``address`` (port 0), native-endian family."""
    if address.version == 4:
        raw = struct.pack("=H", socket.AF_INET) + b"\x00\x00" + address.packed
    else:
        raw = struct.pack("=H", socket.AF_INET6) + b"\x00\x00" + bytes(4) + address.packed
        raw += bytes(4)
    return raw.ljust(_SOCKADDR_STORAGE, b"\x00")


def md5sig(address: IPAddress, key: bytes) -> bytes:
    """``struct tcp_md5sig`` {sockaddr_storage addr; u8 flags; u8 prefixlen; u16 keylen;
    u32 ifindex; u8 key[80]} for one peer address."""
    if len(key) > TCP_MD5SIG_MAXKEYLEN:
        raise ValueError("TCP MD5 key longer than 80 octets")
    return (
        _sockaddr(address)
        + struct.pack("=BBHI", 0, 0, len(key), 0)
        + key.ljust(TCP_MD5SIG_MAXKEYLEN, b"\x00")
    )


def set_md5(sock: trio.socket.SocketType, config: BgpPeerConfig) -> None:
    if config.password is None:
        return
    try:
        sock.setsockopt(
            socket.IPPROTO_TCP, TCP_MD5SIG, md5sig(config.peer_address, config.password.encode())
        )
    except OSError as exc:
        if exc.errno in (errno.ENOPROTOOPT, errno.ENOENT):
            raise BgpSocketError(
                exc.errno,
                f"peer {config.name} ({config.peer_address}): TCP MD5 password configured "
                "but the kernel has no TCP MD5 support (CONFIG_TCP_MD5SIG)",
            ) from None
        raise BgpSocketError(
            exc.errno, f"peer {config.name}: setting TCP MD5 failed: {exc.strerror}"
        ) from None


def apply_ttl(sock: trio.socket.SocketType, config: BgpPeerConfig) -> None:
    """Outgoing TTL / hop limit, and the GTSM minimum for what we receive."""
    try:
        if config.peer_address.version == 4:
            sock.setsockopt(socket.IPPROTO_IP, IP_TTL, config.send_ttl)
            if config.min_ttl is not None:
                sock.setsockopt(socket.IPPROTO_IP, IP_MINTTL, config.min_ttl)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_UNICAST_HOPS, config.send_ttl)
            if config.min_ttl is not None:
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MINHOPCOUNT, config.min_ttl)
    except OSError as exc:
        raise BgpSocketError(
            exc.errno, f"peer {config.name}: setting TTL/GTSM failed: {exc.strerror}"
        ) from None


def bind_to_device(sock: trio.socket.SocketType | socket.socket, device: str) -> None:
    """``SO_BINDTODEVICE``: the socket sends and receives through ``device`` only (a VRF
    device: the VRF's routes and interfaces)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())


def bind_to_vrf(sock: trio.socket.SocketType, config: BgpPeerConfig) -> None:
    """Put the peer's socket in its VRF (nothing for the default VRF)."""
    if config.vrf is None:
        return
    try:
        bind_to_device(sock, config.vrf)
    except OSError as exc:
        why = "no such VRF device" if exc.errno == errno.ENODEV else exc.strerror
        raise BgpSocketError(
            exc.errno, f"peer {config.name}: cannot bind to VRF {config.vrf!r}: {why}"
        ) from None


def _family(config: BgpPeerConfig) -> socket.AddressFamily:
    return socket.AF_INET if config.peer_address.version == 4 else socket.AF_INET6


async def open_connection(config: BgpPeerConfig) -> trio.socket.SocketType:
    """Connect to the peer (MD5, TTL, source address set first). No timeout here: the
    caller bounds it. Raises OSError on failure, :class:`BgpSocketError` for options."""
    sock = trio.socket.socket(_family(config), socket.SOCK_STREAM)
    try:
        bind_to_vrf(sock, config)
        set_md5(sock, config)
        apply_ttl(sock, config)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if config.source_address is not None:
            await sock.bind((str(config.source_address), 0))
        await sock.connect((str(config.peer_address), config.peer_port))
    except BaseException:
        sock.close()
        raise
    return sock


@attrs.frozen(kw_only=True)
class NextHops:
    """What we put in NEXT_HOP / MP_REACH_NLRI on this session (None: cannot send)."""

    ipv4: ipaddress.IPv4Address | None
    ipv6: ipaddress.IPv6Address | None
    ipv6_link_local: ipaddress.IPv6Address | None


def _if_inet6() -> list[tuple[ipaddress.IPv6Address, int, int, str]]:
    """(address, ifindex, scope, name) for every IPv6 address of this namespace."""
    out = []
    try:
        text = IF_INET6.read_text()
    except OSError:
        return []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 6:
            continue
        out.append((ipaddress.IPv6Address(bytes.fromhex(parts[0])), int(parts[1], 16),
                    int(parts[3], 16), parts[5]))  # fmt: skip
    return out


def _ipv4_interface(
    address: ipaddress.IPv4Address, among: frozenset[int] | None = None
) -> int | None:
    """The ifindex of the interface whose primary IPv4 address is ``address`` (one of
    ``among`` if given)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for index, name in socket.if_nameindex():
            if among is not None and index not in among:
                continue
            try:
                raw = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()))
            except OSError:
                continue
            if ipaddress.IPv4Address(raw[20:24]) == address:
                return index
    return None


def _ipv4_of_interface(ifindex: int) -> ipaddress.IPv4Address | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            name = socket.if_indextoname(ifindex)
            raw = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()))
        except OSError:
            return None
    return ipaddress.IPv4Address(raw[20:24])


#: /proc/net/if_inet6 flags: an address not to use yet / any more, and a static one.
_IFA_TENTATIVE, _IFA_DEPRECATED, _IFA_PERMANENT = 0x40, 0x20, 0x80


def interface_addresses(interface: str) -> list[tuple[ipaddress.IPv6Address, int]]:
    """(address, scope) of the usable IPv6 addresses of ``interface`` (scope 0x20:
    link-local, 0: global), static ones first (a SLAAC address learnt from the
    router's RA comes after the configured one); empty when it does not exist.
    Tentative (DAD) and deprecated addresses are left out."""
    try:
        text = IF_INET6.read_text()
    except OSError:
        return []
    found: list[tuple[bool, ipaddress.IPv6Address, int]] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 6 or parts[5] != interface:
            continue
        flags = int(parts[4], 16)
        if flags & (_IFA_TENTATIVE | _IFA_DEPRECATED):
            continue
        address = ipaddress.IPv6Address(bytes.fromhex(parts[0]))
        found.append((not flags & _IFA_PERMANENT, address, int(parts[3], 16)))
    found.sort(key=lambda item: item[0])  # stable: the kernel's order otherwise
    return [(address, scope) for _, address, scope in found]


def link_local_of(interface: str) -> ipaddress.IPv6Address | None:
    """The (first) IPv6 link-local address of ``interface``, without scope."""
    return next((a for a, scope in interface_addresses(interface) if scope == 0x20), None)


def unnumbered_next_hops(config: BgpPeerConfig) -> NextHops:
    """An unnumbered session's next hops (RFC 8950, RFC 2545 §3): the first global
    IPv6 address of its interface, if any, and the interface's link-local address;
    IPv4 only from ``next_hop4`` (IPv4 routes otherwise go with the IPv6 next hops).
    Without a global address the link-local one is the only next hop."""
    addrs = interface_addresses(config.interface or "")
    global_ = next((a for a, scope in addrs if scope == 0), None)
    link_local = next((a for a, scope in addrs if scope == 0x20), None)
    if config.next_hop6 is not None:
        global_ = config.next_hop6
    if global_ is None:
        return NextHops(ipv4=config.next_hop4, ipv6=link_local, ipv6_link_local=None)
    return NextHops(ipv4=config.next_hop4, ipv6=global_, ipv6_link_local=link_local)


def next_hops(local: IPAddress, config: BgpPeerConfig) -> NextHops:
    """Next hops for a session whose local end is ``local``: that address, the other
    family's address of the same interface (when there is one) and, for IPv6, the
    link-local address of that interface (RFC 2545 §3). Unnumbered sessions:
    :func:`unnumbered_next_hops`."""
    if config.unnumbered:
        return unnumbered_next_hops(config)
    addrs = _if_inet6()
    among: frozenset[int] | None = None
    if config.vrf is not None:
        try:
            among = netlookup.vrf_members(config.vrf)
        except OSError:
            among = frozenset()
        addrs = [entry for entry in addrs if entry[1] in among]
    if local.version == 6:
        ifindex = next((i for a, i, _, _ in addrs if a == local), None)
    else:
        ifindex = _ipv4_interface(local, among)
    ipv4: ipaddress.IPv4Address | None = local if local.version == 4 else None
    ipv6: ipaddress.IPv6Address | None = local if local.version == 6 else None
    link_local = None
    if ifindex is not None:
        if ipv4 is None:
            ipv4 = _ipv4_of_interface(ifindex)
        if ipv6 is None:
            ipv6 = next(
                (a for a, i, scope, _ in addrs if i == ifindex and scope == 0),
                None,
            )
        link_local = next((a for a, i, scope, _ in addrs if i == ifindex and scope == 0x20), None)
    return NextHops(
        ipv4=config.next_hop4 or ipv4,
        ipv6=config.next_hop6 or ipv6,
        ipv6_link_local=None if config.next_hop6 else link_local,
    )


def local_address(sock: trio.socket.SocketType) -> IPAddress:
    return ipaddress.ip_address(sock.getsockname()[0])


def remote_address(sock: trio.socket.SocketType) -> IPAddress:
    return ipaddress.ip_address(sock.getpeername()[0])


def clear_md5(sock: trio.socket.SocketType, address: IPAddress) -> None:
    """Delete the TCP MD5 key of ``address`` (a zero-length key) from ``sock``."""
    with contextlib.suppress(OSError):  # no key there (ENOENT) or no MD5 at all
        sock.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG, md5sig(address, b""))
