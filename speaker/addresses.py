"""IP address and network types, named once for the whole runtime.

``protocols/`` keeps its own spelling (``protocols.bgp.Prefix`` is the same union
as :data:`IPNetwork`): it imports nothing from ``speaker``.
"""

from __future__ import annotations

import ipaddress

__all__ = ["IPAddress", "IPNetwork"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
