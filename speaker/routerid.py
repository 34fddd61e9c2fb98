"""The BGP router ID: which one, and why, by a rule an operator can predict.

In order, the first that gives an address:

1. ``[speaker] router_id``;
2. the first IPv4 ``source_address`` among the peers that apply to this node, in file
   order;
3. this host's IPv4 addresses, as FRR's zebra chooses (``zebra/router-id.c``): the
   highest address on a loopback interface (a name starting ``lo`` or ``dummy``), else
   the highest address on any other interface; never 0/8, 127/8, 169.254/16, class D/E,
   nor an address inside one of the configuration's pools (a service address moves
   between nodes, a router ID must not);
4. only when the host has no such IPv4 address at all: the CRC-32 of ``node_name``
   (MetalLB's fallback), so the ID is still stable across restarts.

The host's addresses are read once per process (by netlink, ``RTM_GETADDR``) and kept:
a reload never changes a router ID taken from them (a new ID would reset every
session); a restart, like ``speaker check``, reads them again.
"""

from __future__ import annotations

import fcntl
import functools
import ipaddress
import os
import socket
import struct
import zlib
from collections.abc import Callable, Iterable, Sequence

import attrs

from speaker.config import Config

__all__ = ["RouterIdChoice", "choose_router_id", "host_ipv4_addresses", "pick_host_address"]

#: (interface name, address) pairs of this host.
HostAddresses = Sequence[tuple[str, ipaddress.IPv4Address]]

_NEVER = tuple(
    ipaddress.IPv4Network(n) for n in ("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/3")
)


@attrs.frozen
class RouterIdChoice:
    """The router ID, which rule chose it (``configured``, ``source_address``,
    ``host`` or ``node_name``), and why, in words for ``check`` and ``show``."""

    address: ipaddress.IPv4Address
    rule: str
    reason: str

    def __str__(self) -> str:
        return f"{self.address} ({self.reason})"


def _loopback_like(name: str) -> bool:
    return name.startswith(("lo", "dummy"))


def pick_host_address(
    addresses: Iterable[tuple[str, ipaddress.IPv4Address]],
    excluded: Callable[[ipaddress.IPv4Address], bool] = lambda _: False,
) -> tuple[str, ipaddress.IPv4Address] | None:
    """FRR's rule over ``(interface, address)`` pairs: the highest usable address on a
    loopback interface, else the highest usable one anywhere; None when none is."""
    usable = [
        (name, a)
        for name, a in addresses
        if not any(a in net for net in _NEVER) and not a.is_unspecified and not excluded(a)
    ]
    loopbacks = [pair for pair in usable if _loopback_like(pair[0])]
    for group in (loopbacks, usable):
        if group:
            return max(group, key=lambda pair: (pair[1], pair[0]))
    return None


def choose_router_id(
    config: Config, host: Callable[[], HostAddresses] | None = None
) -> RouterIdChoice:
    """The router ID of ``config`` on this node (``host``: the host's addresses, by
    default :func:`host_ipv4_addresses`, read once per process)."""
    if config.speaker.router_id is not None:
        return RouterIdChoice(config.speaker.router_id, "configured", "router_id in [speaker]")
    if config.router_id is not None:
        for peer in config.peers:
            if peer.source_address == config.router_id and peer.applies_to(config.speaker.labels):
                return RouterIdChoice(
                    config.router_id,
                    "source_address",
                    f'source_address of peer "{peer.name}", the first IPv4 one of this node',
                )
        return RouterIdChoice(config.router_id, "source_address", "an IPv4 source_address")
    pools = [p for p in config.pools if 4 in p.versions]
    picked = pick_host_address(
        (host or host_ipv4_addresses)(), lambda a: any(a in pool for pool in pools)
    )
    if picked is not None:
        name, address = picked
        where = (
            f"on a loopback interface, {name}"
            if _loopback_like(name)
            else f"of this host, on {name} (none on a loopback interface)"
        )
        return RouterIdChoice(
            address,
            "host",
            f"no router_id, no IPv4 source_address: the highest IPv4 address {where},"
            " as FRR chooses",
        )
    node = config.speaker.node_name
    crc = zlib.crc32(node.encode()) or 1
    return RouterIdChoice(
        ipaddress.IPv4Address(crc),
        "node_name",
        f"no router_id, no IPv4 source_address, no usable IPv4 address on this host:"
        f" CRC-32 of node_name {node!r}",
    )


# ---- this host's IPv4 addresses -------------------------------------------------------------


def host_ipv4_addresses() -> list[tuple[str, ipaddress.IPv4Address]]:
    """Every IPv4 address of this host with its interface's name, read on the first
    call of the process and kept (see the module's docstring). Empty when the kernel
    cannot be asked."""
    return list(_host_addresses_once())


@functools.cache
def _host_addresses_once() -> tuple[tuple[str, ipaddress.IPv4Address], ...]:
    try:
        return tuple(read_ipv4_addresses())
    except OSError:
        return tuple(_primary_addresses())


NLMSG_ERROR, NLMSG_DONE, RTM_NEWADDR, RTM_GETADDR = 2, 3, 20, 22
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFA_ADDRESS, IFA_LOCAL = 1, 2
_NLMSGHDR = struct.Struct("=IHHII")
_IFADDRMSG = struct.Struct("=BBBBI")


def read_ipv4_addresses() -> list[tuple[str, ipaddress.IPv4Address]]:
    """Every IPv4 address of this host (secondaries too), by one netlink dump.

    Raises:
        OSError: netlink unavailable, or the kernel answered with an error.
    """
    out: list[tuple[str, ipaddress.IPv4Address]] = []
    names: dict[int, str] = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.settimeout(2.0)
        sock.bind((0, 0))
        body = _IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)
        header = _NLMSGHDR.pack(
            _NLMSGHDR.size + len(body), RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 1, 0
        )
        sock.send(header + body)
        while True:
            data = sock.recv(65536)
            pos = 0
            while pos + _NLMSGHDR.size <= len(data):
                length, kind, _, _, _ = _NLMSGHDR.unpack_from(data, pos)
                if length < _NLMSGHDR.size:
                    raise OSError("netlink: malformed message")
                if kind == NLMSG_DONE:
                    return out
                if kind == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", data, pos + _NLMSGHDR.size)
                    if code:
                        raise OSError(-code, os.strerror(-code))
                elif kind == RTM_NEWADDR:
                    found = _address_of(data[pos + _NLMSGHDR.size : pos + length], names)
                    if found is not None:
                        out.append(found)
                pos += (length + 3) & ~3


def _address_of(message: bytes, names: dict[int, str]) -> tuple[str, ipaddress.IPv4Address] | None:
    family, _, _, _, index = _IFADDRMSG.unpack_from(message)
    if family != socket.AF_INET:
        return None
    fields: dict[int, bytes] = {}
    pos = _IFADDRMSG.size
    while pos + 4 <= len(message):
        length, kind = struct.unpack_from("=HH", message, pos)
        if length < 4:
            break
        fields[kind] = message[pos + 4 : pos + length]
        pos += (length + 3) & ~3
    raw = fields.get(IFA_LOCAL) or fields.get(IFA_ADDRESS)
    if raw is None or len(raw) != 4:
        return None
    if index not in names:
        try:
            names[index] = socket.if_indextoname(index)
        except OSError:
            names[index] = f"if{index}"
    return names[index], ipaddress.IPv4Address(raw)


SIOCGIFADDR = 0x8915


def _primary_addresses() -> list[tuple[str, ipaddress.IPv4Address]]:
    """Without netlink: each interface's primary IPv4 address (``SIOCGIFADDR``)."""
    out = []
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _, name in socket.if_nameindex():
                try:
                    raw = fcntl.ioctl(
                        sock.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode())
                    )
                except OSError:
                    continue
                out.append((name, ipaddress.IPv4Address(raw[20:24])))
    except OSError:
        return []
    return out
