"""What the kernel says about this host's addresses and interfaces.

Asked when a peer starts (not when the config is derived): the answer can change
while the speaker runs, and a peer whose question has no answer yet must cost only
that peer (it logs why and retries).
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct

from speaker.addresses import IPAddress

__all__ = ["IPAddress", "interface_exists", "interface_of", "local_address_for"]

SIOCGIFADDR = 0x8915


def local_address_for(peer: IPAddress) -> IPAddress:
    """The address the kernel would send from towards ``peer`` (no packet is sent).

    Raises:
        OSError: no route to ``peer`` (ENETUNREACH).
    """
    family = socket.AF_INET if peer.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
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
