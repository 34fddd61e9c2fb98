"""IP address and network types, named once for the whole runtime.

``protocols/`` keeps its own spelling (``protocols.bgp.Prefix`` is the same union
as :data:`IPNetwork`): it imports nothing from ``speaker``.
"""

from __future__ import annotations

import ipaddress

from protocols.bgp.nlri import RouteKey, key_of

__all__ = [
    "IPAddress", "IPNetwork", "address_key", "is_unnumbered_address", "network_key",
    "unnumbered_address",
]  # fmt: skip

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def network_key(net: IPNetwork) -> tuple[int, int, int]:
    """The order routes are kept and sent in: IPv4 first, then by address, then
    shorter prefixes first (ipaddress cannot compare an IPv4 and an IPv6 network)."""
    return (net.version, int(net.network_address), net.prefixlen)


def unnumbered_address(interface: str) -> ipaddress.IPv6Address:
    """``fe80::%IFNAME``: an unnumbered peer's address (the router on that interface)
    until its link-local address is learnt there (speaker/bgp/unnumbered.py)."""
    return ipaddress.IPv6Address(f"fe80::%{interface}")


def is_unnumbered_address(address: IPAddress) -> bool:
    """Whether ``address`` is an :func:`unnumbered_address`."""
    return (
        isinstance(address, ipaddress.IPv6Address)
        and address.scope_id is not None
        and int(address) == 0xFE80 << 112
    )


def address_key(address: IPAddress, length: int) -> RouteKey:
    """The route key (:data:`protocols.bgp.RouteKey`) of the ``length`` prefix holding
    ``address``, without building the network."""
    shift = (32 if address.version == 4 else 128) - length
    return key_of(address.version, int(address) >> shift << shift, length)
