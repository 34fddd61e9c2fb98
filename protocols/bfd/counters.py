"""Counters a session keeps, exported as a frozen snapshot."""

from __future__ import annotations

import attrs

from .errors import DiscardReason

__all__ = ["SessionCounters"]


@attrs.frozen(kw_only=True)
class SessionCounters:
    """Snapshot of a session's counters.

    ``control_rx`` counts accepted Control packets, ``discards`` every rejected
    datagram (Control or Echo) by reason; ``up_transitions`` counts entries into Up and
    ``down_transitions`` exits from Up.
    """

    control_rx: int
    control_tx: int
    echo_rx: int
    echo_tx: int
    discards: dict[DiscardReason, int]
    up_transitions: int
    down_transitions: int
