"""BGP runtime: the Trio side of the sans-IO core in ``protocols.bgp``.

:class:`BgpSession` runs one peer (connect/accept, MD5, TTL/GTSM, timers, Adj-RIB-Out
and Adj-RIB-In); :class:`BgpPeerConfig` configures it; :class:`RouteAttributes`
describes an announced route. ``python -m speaker.bgp`` runs one session standalone.
"""

from __future__ import annotations

from protocols.bgp import CeaseSubcode
from speaker.bgp.config import (
    BgpConfigError,
    BgpPeerConfig,
    RouteAttributes,
    parse_announce,
    parse_route_entry,
    prefix_range,
)
from speaker.bgp.net import BgpSocketError, NextHops
from speaker.bgp.rib import AdjRibIn, AdjRibOut
from speaker.bgp.session import BgpSession, BgpStatistics, ErrorRecord, SessionReport

__all__ = [
    "AdjRibIn",
    "AdjRibOut",
    "BgpConfigError",
    "BgpPeerConfig",
    "BgpSession",
    "BgpSocketError",
    "BgpStatistics",
    "CeaseSubcode",
    "ErrorRecord",
    "NextHops",
    "RouteAttributes",
    "SessionReport",
    "parse_announce",
    "parse_route_entry",
    "prefix_range",
]
