"""What the kernel says about this host's addresses, interfaces, routes and VRFs.

Asked when a peer starts (not when the config is derived): the answer can change
while the speaker runs, and a peer whose question has no answer yet must cost only
that peer (it logs why and retries).

Routes and links are asked over rtnetlink, one request and one answer each
(``ip route get`` / ``ip link show dev``): the kernel answers within the ``sendto``,
so a lookup costs tens of microseconds and never waits. A VRF (a Linux ``vrf``
device) is named by the device: a lookup "in VRF red" is made with the VRF's ifindex
as output interface, as ``ip route get ... vrf red`` does, and the kernel then uses
the VRF's table; a socket bound to the VRF device (``SO_BINDTODEVICE``) does the same
for everything it sends.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import itertools
import os
import socket
import struct

import attrs

from speaker.addresses import IPAddress

__all__ = [
    "IPAddress",
    "LinkInfo",
    "NetlinkError",
    "RouteInfo",
    "interface_exists",
    "interface_of",
    "link_info",
    "links",
    "local_address_for",
    "route_to",
    "vrf_index",
    "vrf_members",
    "vrf_problem",
]

SIOCGIFADDR = 0x8915

# rtnetlink (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h)
NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
RTM_NEWLINK = 16
RTM_GETLINK = 18
RTM_NEWROUTE = 24
RTM_GETROUTE = 26
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PREFSRC = 7
RTA_TABLE = 15
IFLA_IFNAME = 3
IFLA_MASTER = 10
IFLA_LINKINFO = 18
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
IFLA_VRF_TABLE = 1
_NLMSG = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=BBBBBBBBI")
_IFINFOMSG = struct.Struct("=BxHiII")
_RTA = struct.Struct("=HH")
_RECEIVE = 65536
_seq = itertools.count(1)


class NetlinkError(OSError):
    """The kernel answered a request with an error (errno and its text)."""


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attr(kind: int, value: bytes) -> bytes:
    raw = _RTA.pack(_RTA.size + len(value), kind) + value
    return raw.ljust(_align(len(raw)), b"\x00")


def parse_attrs(data: bytes) -> dict[int, bytes]:
    """Netlink attributes (type -> payload; the last of a repeated type wins)."""
    out: dict[int, bytes] = {}
    offset = 0
    while offset + _RTA.size <= len(data):
        length, kind = _RTA.unpack_from(data, offset)
        if length < _RTA.size or offset + length > len(data):
            break
        out[kind & 0x3FFF] = data[offset + _RTA.size : offset + length]  # no NLA_F_* bits
        offset += _align(length)
    return out


def _messages(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, seq, payload) of each netlink message in one datagram."""
    out = []
    offset = 0
    while offset + _NLMSG.size <= len(data):
        length, kind, _flags, seq, _pid = _NLMSG.unpack_from(data, offset)
        if length < _NLMSG.size:
            break
        out.append((kind, seq, data[offset + _NLMSG.size : offset + length]))
        offset += _align(length)
    return out


def _error(payload: bytes) -> NetlinkError | None:
    code = -struct.unpack_from("=i", payload)[0]
    return NetlinkError(code, os.strerror(code)) if code else None


def _request(kind: int, body: bytes) -> tuple[int, bytes]:
    """One rtnetlink request; returns the answer's message type and payload.

    Raises:
        NetlinkError: the kernel refused it (its errno: ENETUNREACH, ENODEV...).
    """
    seq = next(_seq) & 0xFFFFFFFF
    message = _NLMSG.pack(_NLMSG.size + len(body), kind, NLM_F_REQUEST, seq, 0) + body
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as sock:
        sock.settimeout(1.0)  # the answer is queued within sendto; this is a safety net
        sock.sendto(message, (0, 0))
        while True:
            for reply, reply_seq, payload in _messages(sock.recv(_RECEIVE)):
                if reply_seq != seq:
                    continue
                if reply == NLMSG_ERROR:
                    error = _error(payload)
                    if error is None:
                        continue  # an acknowledgement
                    raise error
                if reply == NLMSG_DONE:
                    raise NetlinkError(errno.ENOENT, "no answer")
                return reply, payload


def _dump(kind: int, body: bytes) -> list[tuple[int, bytes]]:
    """Every message of an rtnetlink dump (``ip link show``)."""
    seq = next(_seq) & 0xFFFFFFFF
    flags = NLM_F_REQUEST | NLM_F_DUMP
    message = _NLMSG.pack(_NLMSG.size + len(body), kind, flags, seq, 0) + body
    out: list[tuple[int, bytes]] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as sock:
        sock.settimeout(1.0)
        sock.sendto(message, (0, 0))
        while True:
            for reply, reply_seq, payload in _messages(sock.recv(_RECEIVE)):
                if reply_seq != seq:
                    continue
                if reply == NLMSG_DONE:
                    return out
                if reply == NLMSG_ERROR:
                    error = _error(payload)
                    if error is not None:
                        raise error
                    continue
                out.append((reply, payload))


@attrs.frozen
class LinkInfo:
    """One network device: its index, name, kind (``"vrf"``, ``"veth"``, None for a
    device without IFLA_INFO_KIND such as a physical NIC), its master's index (the
    VRF or bridge it is enslaved to) and, for a VRF, its routing table."""

    index: int
    name: str
    kind: str | None = None
    master: int | None = None
    table: int | None = None


def parse_link(payload: bytes) -> LinkInfo:
    """An RTM_NEWLINK message's payload (ifinfomsg + attributes)."""
    _family, _type, index, _flags, _change = _IFINFOMSG.unpack_from(payload)
    found = parse_attrs(payload[_IFINFOMSG.size :])
    name = found.get(IFLA_IFNAME, b"").split(b"\x00", 1)[0].decode(errors="replace")
    master = struct.unpack("=I", found[IFLA_MASTER][:4])[0] if IFLA_MASTER in found else None
    kind = table = None
    if IFLA_LINKINFO in found:
        info = parse_attrs(found[IFLA_LINKINFO])
        if IFLA_INFO_KIND in info:
            kind = info[IFLA_INFO_KIND].split(b"\x00", 1)[0].decode(errors="replace")
        if kind == "vrf" and IFLA_INFO_DATA in info:
            data = parse_attrs(info[IFLA_INFO_DATA])
            if IFLA_VRF_TABLE in data:
                table = struct.unpack("=I", data[IFLA_VRF_TABLE][:4])[0]
    return LinkInfo(index=index, name=name, kind=kind, master=master or None, table=table)


def link_info(name: str) -> LinkInfo | None:
    """The device called ``name`` (``ip -d link show dev NAME``), None if there is none."""
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _attr(IFLA_IFNAME, name.encode() + b"\0")
    try:
        kind, payload = _request(RTM_GETLINK, body)
    except NetlinkError as exc:
        if exc.errno in (errno.ENODEV, errno.ENOENT, errno.EINVAL):
            return None
        raise
    return parse_link(payload) if kind == RTM_NEWLINK else None


def links() -> list[LinkInfo]:
    """Every device of this namespace (``ip -d link show``)."""
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    return [parse_link(payload) for kind, payload in _dump(RTM_GETLINK, body)
            if kind == RTM_NEWLINK]  # fmt: skip


def vrf_members(vrf: str) -> frozenset[int]:
    """The ifindexes of the devices enslaved to VRF ``vrf`` (empty if there is none)."""
    devices = links()
    master = next((d.index for d in devices if d.name == vrf and d.kind == "vrf"), None)
    return frozenset(d.index for d in devices if master is not None and d.master == master)


def vrf_index(name: str) -> int | None:
    """The ifindex of device ``name``, None if there is none."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


def vrf_problem(name: str) -> str | None:
    """Why ``name`` cannot be used as a VRF here (None: it is a VRF device)."""
    try:
        link = link_info(name)
    except OSError as exc:
        return f"cannot look up VRF {name!r}: {exc.strerror or exc}"
    if link is None:
        return f"no VRF device {name!r} on this host (ip link add {name} type vrf table N)"
    if link.kind != "vrf":
        return f"device {name!r} is not a VRF (its kind is {link.kind or 'none'})"
    return None


@attrs.frozen
class RouteInfo:
    """The kernel's answer to ``ip route get PEER [vrf V]``."""

    oif: int | None
    interface: str | None
    source: IPAddress | None
    gateway: IPAddress | None
    table: int | None


def parse_route(payload: bytes) -> RouteInfo:
    """An RTM_NEWROUTE message's payload (rtmsg + attributes); the interface name is
    left None (:func:`route_to` fills it in)."""
    family, _dst, _src, _tos, table, _proto, _scope, _type, _flags = _RTMSG.unpack_from(payload)
    found = parse_attrs(payload[_RTMSG.size :])
    size = 4 if family == socket.AF_INET else 16

    def address(kind: int) -> IPAddress | None:
        raw = found.get(kind)
        return ipaddress.ip_address(raw[:size]) if raw and len(raw) >= size else None

    oif = struct.unpack("=I", found[RTA_OIF][:4])[0] if RTA_OIF in found else None
    if RTA_TABLE in found:
        table = struct.unpack("=I", found[RTA_TABLE][:4])[0]
    return RouteInfo(oif=oif, interface=None, source=address(RTA_PREFSRC),
                     gateway=address(RTA_GATEWAY), table=table)  # fmt: skip


def route_to(peer: IPAddress, *, vrf: str | None = None) -> RouteInfo:
    """The route the kernel would use towards ``peer`` (in ``vrf``'s table if given):
    its output interface, preferred source and gateway. No packet is sent.

    Raises:
        OSError: no route (ENETUNREACH), no such VRF (ENODEV).
    """
    family = socket.AF_INET if peer.version == 4 else socket.AF_INET6
    body = _RTMSG.pack(family, peer.max_prefixlen, 0, 0, 0, 0, 0, 0, 0) + _attr(
        RTA_DST, peer.packed
    )
    if vrf is not None:
        body += _attr(RTA_OIF, struct.pack("=I", socket.if_nametoindex(vrf)))
    kind, payload = _request(RTM_GETROUTE, body)
    if kind != RTM_NEWROUTE:
        raise NetlinkError(errno.EPROTO, f"unexpected rtnetlink answer {kind}")
    route = parse_route(payload)
    name = None
    if route.oif:
        try:
            name = socket.if_indextoname(route.oif)
        except OSError:
            name = None
    return attrs.evolve(route, interface=name)


def _bind_to_vrf(sock: socket.socket, vrf: str | None) -> None:
    if vrf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, vrf.encode())


def local_address_for(peer: IPAddress, *, vrf: str | None = None) -> IPAddress:
    """The address the kernel would send from towards ``peer`` (no packet is sent), in
    ``vrf`` if given (a socket bound to the VRF device: the VRF's routes).

    Raises:
        OSError: no route to ``peer`` (ENETUNREACH); no such VRF (ENODEV).
    """
    family = socket.AF_INET if peer.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        _bind_to_vrf(sock, vrf)
        sock.connect((str(peer), 9))
        return ipaddress.ip_address(sock.getsockname()[0].split("%")[0])


def interface_of(address: IPAddress) -> str | None:
    """The interface holding an IPv4 address (for single-hop BFD and echo)."""
    if address.version != 4:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            try:
                raw = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()))
            except OSError:
                continue
            if ipaddress.IPv4Address(raw[20:24]) == address:
                return name
    return None


def interface_exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True
