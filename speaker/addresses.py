"""IP address and network types, named once for the whole runtime.

``protocols/`` keeps its own spelling (``protocols.bgp.Prefix`` is the same union
as :data:`IPNetwork`): it imports nothing from ``speaker``.
"""

from __future__ import annotations

import ipaddress

__all__ = ["IPAddress", "IPNetwork", "network_key"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def network_key(net: IPNetwork) -> tuple[int, int, int]:
    """The order routes are kept and sent in: IPv4 first, then by address, then
    shorter prefixes first (ipaddress cannot compare an IPv4 and an IPv6 network)."""
    return (net.version, int(net.network_address), net.prefixlen)
