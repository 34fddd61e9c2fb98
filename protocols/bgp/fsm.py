"""The BGP finite state machine (RFC 4271 §8) as a static transition table.

The table only says which state an event leads to; the side effects (sending
OPEN/KEEPALIVE/NOTIFICATION, timers) live in :class:`~protocols.bgp.connection.Connection`.
Deliberate simplifications, documented here once:

* Every failure (TCP failure, error, NOTIFICATION, hold timer) leads to Idle; the
  automatic restart then comes from the IdleHoldTimer (event 13, with backoff or
  damping) instead of the RFC's Active-state detours.
* DelayOpen (events 12, 20) and the optional collision-detect-in-Established
  behaviours are not implemented.
"""

from __future__ import annotations

import enum
from ipaddress import IPv4Address

from .errors import LocalProtocolError


class State(enum.Enum):
    """RFC 4271 §8.2.2 session states."""

    IDLE = "Idle"
    CONNECT = "Connect"
    ACTIVE = "Active"
    OPEN_SENT = "OpenSent"
    OPEN_CONFIRM = "OpenConfirm"
    ESTABLISHED = "Established"


class FsmEvent(enum.IntEnum):
    """RFC 4271 §8.1 events; the value is the RFC event number."""

    MANUAL_START = 1
    MANUAL_STOP = 2
    AUTOMATIC_START = 3
    MANUAL_START_PASSIVE = 4  # ManualStart_with_PassiveTcpEstablishment
    AUTOMATIC_START_PASSIVE = 5  # AutomaticStart_with_PassiveTcpEstablishment
    AUTOMATIC_STOP = 8
    CONNECT_RETRY_TIMER_EXPIRES = 9
    HOLD_TIMER_EXPIRES = 10
    KEEPALIVE_TIMER_EXPIRES = 11
    IDLE_HOLD_TIMER_EXPIRES = 13
    TCP_CR_ACKED = 16  # our outgoing connection completed
    TCP_CONNECTION_CONFIRMED = 17  # an incoming connection was accepted
    TCP_CONNECTION_FAILS = 18
    BGP_OPEN = 19
    BGP_HEADER_ERR = 21
    BGP_OPEN_MSG_ERR = 22
    OPEN_COLLISION_DUMP = 23
    NOTIF_MSG_VER_ERR = 24
    NOTIF_MSG = 25
    KEEPALIVE_MSG = 26
    UPDATE_MSG = 27  # also used for ROUTE-REFRESH (RFC 2918 adds no FSM event)
    UPDATE_MSG_ERR = 28


_S = State
_E = FsmEvent

#: Events that take any connected state down to Idle (RFC 4271 §8.2.2).
_DOWN_EVENTS = (
    _E.MANUAL_STOP,
    _E.AUTOMATIC_STOP,
    _E.HOLD_TIMER_EXPIRES,
    _E.TCP_CONNECTION_FAILS,
    _E.BGP_HEADER_ERR,
    _E.BGP_OPEN_MSG_ERR,
    _E.OPEN_COLLISION_DUMP,
    _E.NOTIF_MSG_VER_ERR,
    _E.NOTIF_MSG,
    _E.UPDATE_MSG_ERR,
)

#: (state, event) -> next state.  Pairs not listed are ignored in that state.
TRANSITIONS: dict[State, dict[FsmEvent, State]] = {
    _S.IDLE: {
        _E.MANUAL_START: _S.CONNECT,
        _E.AUTOMATIC_START: _S.CONNECT,
        _E.MANUAL_START_PASSIVE: _S.ACTIVE,
        _E.AUTOMATIC_START_PASSIVE: _S.ACTIVE,
        _E.MANUAL_STOP: _S.IDLE,
    },
    _S.CONNECT: {
        _E.MANUAL_STOP: _S.IDLE,
        _E.AUTOMATIC_STOP: _S.IDLE,
        _E.CONNECT_RETRY_TIMER_EXPIRES: _S.CONNECT,
        _E.TCP_CR_ACKED: _S.OPEN_SENT,
        _E.TCP_CONNECTION_CONFIRMED: _S.OPEN_SENT,
        _E.TCP_CONNECTION_FAILS: _S.IDLE,
    },
    _S.ACTIVE: {
        _E.MANUAL_STOP: _S.IDLE,
        _E.AUTOMATIC_STOP: _S.IDLE,
        _E.CONNECT_RETRY_TIMER_EXPIRES: _S.CONNECT,
        _E.TCP_CR_ACKED: _S.OPEN_SENT,
        _E.TCP_CONNECTION_CONFIRMED: _S.OPEN_SENT,
        _E.TCP_CONNECTION_FAILS: _S.IDLE,
    },
    _S.OPEN_SENT: {
        **dict.fromkeys(_DOWN_EVENTS, _S.IDLE),
        _E.BGP_OPEN: _S.OPEN_CONFIRM,
        _E.KEEPALIVE_MSG: _S.IDLE,  # FSM error (RFC 6608 subcode 1)
        _E.UPDATE_MSG: _S.IDLE,  # FSM error
    },
    _S.OPEN_CONFIRM: {
        **dict.fromkeys(_DOWN_EVENTS, _S.IDLE),
        _E.KEEPALIVE_TIMER_EXPIRES: _S.OPEN_CONFIRM,
        _E.KEEPALIVE_MSG: _S.ESTABLISHED,
        _E.BGP_OPEN: _S.IDLE,  # FSM error (subcode 2); collisions use separate connections
        _E.UPDATE_MSG: _S.IDLE,  # FSM error
    },
    _S.ESTABLISHED: {
        **dict.fromkeys(_DOWN_EVENTS, _S.IDLE),
        _E.KEEPALIVE_TIMER_EXPIRES: _S.ESTABLISHED,
        _E.KEEPALIVE_MSG: _S.ESTABLISHED,
        _E.UPDATE_MSG: _S.ESTABLISHED,
        _E.BGP_OPEN: _S.IDLE,  # FSM error (subcode 3)
    },
}


def next_state(state: State, event: FsmEvent) -> State:
    """The state ``event`` leads to from ``state`` (unchanged when not in the table)."""
    return TRANSITIONS[state].get(event, state)


def is_fsm_error(state: State, event: FsmEvent) -> bool:
    """True when a received message event is unexpected in ``state`` (RFC 6608)."""
    return (state, event) in {
        (_S.OPEN_SENT, _E.KEEPALIVE_MSG),
        (_S.OPEN_SENT, _E.UPDATE_MSG),
        (_S.OPEN_CONFIRM, _E.BGP_OPEN),
        (_S.OPEN_CONFIRM, _E.UPDATE_MSG),
        (_S.ESTABLISHED, _E.BGP_OPEN),
    }


class Initiator(enum.Enum):
    """Which side opened a TCP connection."""

    LOCAL = "local"  # outgoing connection
    REMOTE = "remote"  # incoming connection


def resolve_collision(
    *,
    local_id: IPv4Address,
    peer_id: IPv4Address,
    outgoing_state: State,
    incoming_state: State,
) -> Initiator | None:
    """RFC 4271 §6.8 connection collision: which connection to close with Cease/7.

    Returns :attr:`Initiator.LOCAL` to close the outgoing connection,
    :attr:`Initiator.REMOTE` to close the incoming one, or None when there is no
    collision to resolve yet (one side has not exchanged OPENs).  An Established
    connection always wins.  Otherwise, with both connections in OpenSent or
    OpenConfirm and at least one in OpenConfirm (the peer's identifier known), the
    connection initiated by the speaker with the higher BGP Identifier survives:
    if local < peer the locally initiated (outgoing) one is closed.
    """
    if local_id == peer_id:
        raise LocalProtocolError("collision resolution needs distinct BGP identifiers")
    if outgoing_state is _S.ESTABLISHED and incoming_state is _S.ESTABLISHED:
        return Initiator.REMOTE
    if outgoing_state is _S.ESTABLISHED:
        return Initiator.REMOTE
    if incoming_state is _S.ESTABLISHED:
        return Initiator.LOCAL
    opening = (_S.OPEN_SENT, _S.OPEN_CONFIRM)
    if outgoing_state not in opening or incoming_state not in opening:
        return None
    if _S.OPEN_CONFIRM not in (outgoing_state, incoming_state):
        return None
    return Initiator.LOCAL if int(local_id) < int(peer_id) else Initiator.REMOTE
