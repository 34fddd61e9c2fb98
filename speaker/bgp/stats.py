"""What a BGP session reports: its statistics snapshot, NOTIFICATION records, RFC 7606
notes (counted by action, logged rate-limited) and the names of address families.

Counters and timestamps live on the session (speaker/bgp/session.py) and its links
(messages by type, speaker/bgp/link.py); :func:`snapshot` reads them into a
:class:`BgpStatistics` for ``show``, the metrics and a peer's totals across sessions.
"""

from __future__ import annotations

import enum
import logging
import math
from collections import Counter
from typing import TYPE_CHECKING

import attrs
import trio

from protocols.bgp import (
    CeaseSubcode,
    ErrorAction,
    FsmSubcode,
    HeaderSubcode,
    NotifCode,
    OpenSubcode,
    UpdateReceived,
    UpdateSubcode,
)
from protocols.bgp.constants import IPV4_UNICAST, IPV6_UNICAST
from speaker.bgp import net
from speaker.log import fields

if TYPE_CHECKING:
    from speaker.bgp.session import BgpSession

__all__ = [
    "NOTE_LOG_INTERVAL",
    "BgpStatistics",
    "ErrorRecord",
    "NoteLog",
    "family_name",
    "notification_name",
    "snapshot",
]

log = logging.getLogger("speaker.bgp")

#: RFC 7606 notes of one peer: the first is logged at once, then one summary line
#: per this many seconds at most (counts per action are in the statistics).
NOTE_LOG_INTERVAL = 10.0

_FAMILY_NAMES: dict[tuple[int, int], str] = {
    IPV4_UNICAST: "ipv4-unicast",
    IPV6_UNICAST: "ipv6-unicast",
}


def family_name(family: tuple[int, int]) -> str:
    return _FAMILY_NAMES.get(family, f"{family[0]}/{family[1]}")


_SUBCODES: dict[int, type[enum.IntEnum]] = {
    NotifCode.MESSAGE_HEADER_ERROR: HeaderSubcode,
    NotifCode.OPEN_MESSAGE_ERROR: OpenSubcode,
    NotifCode.UPDATE_MESSAGE_ERROR: UpdateSubcode,
    NotifCode.FSM_ERROR: FsmSubcode,
    NotifCode.CEASE: CeaseSubcode,
}


def _kebab(name: str) -> str:
    return name.lower().replace("_", "-")


def notification_name(code: int, subcode: int) -> str:
    """A NOTIFICATION's code and subcode by name, as log lines carry it in their
    ``error`` field: ``cease/bfd-down``, ``hold-timer-expired``, ``6/99`` if unknown."""
    try:
        what = _kebab(NotifCode(code).name)
    except ValueError:
        return f"{code}/{subcode}"
    names = _SUBCODES.get(code)
    if names is None:
        return what if subcode == 0 else f"{what}/{subcode}"
    try:
        return f"{what}/{_kebab(names(subcode).name)}"
    except ValueError:
        return f"{what}/{subcode}"


@attrs.frozen(kw_only=True)
class ErrorRecord:
    """A NOTIFICATION sent or received: code, subcode, RFC 9003 text or reason."""

    code: int
    subcode: int
    text: str
    at: float


@attrs.frozen(kw_only=True)
class BgpStatistics:
    """A snapshot of one session (times are ``trio.current_time()`` seconds)."""

    name: str
    peer: str
    state: str
    established_at: float | None
    uptime: float | None
    flaps: int
    local_address: str | None
    remote_address: str | None
    next_hops: dict[str, str | None]
    hold_time: int | None
    keepalive_time: float | None
    families: tuple[str, ...]
    messages_in: dict[str, int]
    messages_out: dict[str, int]
    updates_in: int
    updates_out: int
    prefixes_announced: int
    prefixes_withdrawn: int
    prefixes_received: dict[str, int]
    prefixes_withdrawn_received: dict[str, int]
    treated_as_withdraw: int
    adj_rib_in: dict[str, int]
    adj_rib_out_desired: int
    adj_rib_out_advertised: int
    adj_rib_out_pending: int
    end_of_rib_sent: tuple[str, ...]
    end_of_rib_received: tuple[str, ...]
    last_error_sent: ErrorRecord | None
    last_error_received: ErrorRecord | None
    connect_attempts: int
    connect_failures: int
    last_connect_error: str | None = None
    collisions: int = 0
    cancelled_at: float | None
    notification_written_at: float | None
    closed_at: float | None
    #: RFC 7606 actions applied to this peer's UPDATEs, by action name
    #: (``attribute-discard``, ``treat-as-withdraw``), suppressed notes included.
    rfc7606_notes: dict[str, int] = attrs.field(factory=dict)


def snapshot(session: BgpSession) -> BgpStatistics:
    """A snapshot of ``session`` (``show``, metrics, the peer's retired counters)."""
    now = trio.current_time()
    neg, link = session.negotiated, session.link
    received = {family_name(f): n for f, n in session.rib_in.announced.items()}
    withdrawn = {family_name(f): n for f, n in session.rib_in.withdrawn.items()}
    return BgpStatistics(
        name=session.name,
        peer=str(session.config.peer_address),
        state=session.core.state.value,
        established_at=session.established_at,
        uptime=None if session.established_at is None else now - session.established_at,
        flaps=session.flaps,
        local_address=str(link.local) if link else None,
        next_hops=_next_hops_record(session.next_hops),
        remote_address=str(link.remote) if link else None,
        hold_time=neg.hold_time if neg else None,
        keepalive_time=neg.keepalive_time if neg else None,
        families=tuple(family_name(f) for f in sorted(neg.families)) if neg else (),
        messages_in=dict(session.received.counts),
        messages_out=dict(session.sent.counts),
        updates_in=session.updates_in,
        updates_out=session.updates_out,
        prefixes_announced=session.prefixes_announced,
        prefixes_withdrawn=session.prefixes_withdrawn,
        prefixes_received=received,
        prefixes_withdrawn_received=withdrawn,
        treated_as_withdraw=session.rib_in.treated_as_withdraw,
        rfc7606_notes=session.notes.totals(),
        adj_rib_in={family_name(f): n for f, n in session.rib_in.counts().items()},
        adj_rib_out_desired=len(session.rib_out.desired),
        adj_rib_out_advertised=len(session.rib_out.advertised),
        adj_rib_out_pending=session.rib_out.pending,
        end_of_rib_sent=tuple(family_name(f) for f in session.end_of_rib_sent),
        end_of_rib_received=tuple(family_name(f) for f in sorted(session.rib_in.end_of_rib)),
        last_error_sent=session.last_error_sent,
        last_error_received=session.last_error_received,
        connect_attempts=session.connect_attempts,
        connect_failures=session.connect_failures,
        last_connect_error=session.last_connect_error,
        collisions=session.collisions,
        cancelled_at=session.cancelled_at,
        notification_written_at=session.notification_written_at,
        closed_at=session.closed_at,
    )


def _action_name(action: ErrorAction) -> str:
    return action.name.lower().replace("_", "-")


class NoteLog:
    """RFC 7606 notes of one peer: counted by action, logged rate-limited (a hostile
    peer can send thousands a second: one log line each would block the loop)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.counts: Counter[ErrorAction] = Counter()
        self._unlogged: Counter[ErrorAction] = Counter()
        self._updates = 0
        self._next_at = -math.inf

    def totals(self) -> dict[str, int]:
        return {_action_name(a): n for a, n in sorted(self.counts.items())}

    def add(self, event: UpdateReceived, now: float) -> None:
        counts = event.note_counts
        self.counts.update(counts)
        self._unlogged.update(counts)
        self._updates += 1
        if now < self._next_at:
            return
        first = event.notes[0] if event.notes else None
        what = ", ".join(f"{_action_name(a)} {n}" for a, n in sorted(self._unlogged.items()))
        latest = f"attribute {first.attr_type}: {first.reason}" if first else "suppressed"
        log.warning("bgp %s: RFC 7606: %s in %d UPDATE(s); latest %s (next summary in %g s "
                    "at most)", self.name, what, self._updates, latest, NOTE_LOG_INTERVAL,
                    extra=fields(peer=self.name, protocol="bgp", rfc7606=what))  # fmt: skip
        self._unlogged.clear()
        self._updates = 0
        self._next_at = now + NOTE_LOG_INTERVAL


def _next_hops_record(hops: net.NextHops | None) -> dict[str, str | None]:
    if hops is None:
        return {}
    return {
        "ipv4": str(hops.ipv4) if hops.ipv4 else None,
        "ipv6": str(hops.ipv6) if hops.ipv6 else None,
        "ipv6_link_local": str(hops.ipv6_link_local) if hops.ipv6_link_local else None,
    }
