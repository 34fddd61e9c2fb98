"""The session state machine of RFC 5880 §6.2 / §6.8.6 as a table.

Inputs are the State field of an accepted packet plus the two local failure
detections (§6.8.4 detection timer, §6.8.5 echo). Administrative control (§6.8.16) is
not an input here: it applies in every state and is handled by the session.
"""

from __future__ import annotations

import enum

import attrs

from .constants import Diag, State

__all__ = ["TRANSITIONS", "Input", "Transition", "received", "transition"]


class Input(enum.Enum):
    RECV_ADMIN_DOWN = "recv AdminDown"
    RECV_DOWN = "recv Down"
    RECV_INIT = "recv Init"
    RECV_UP = "recv Up"
    DETECTION_TIMEOUT = "detection time expired"
    ECHO_FAILURE = "echo function failed"


_RECEIVED: dict[State, Input] = {
    State.ADMIN_DOWN: Input.RECV_ADMIN_DOWN,
    State.DOWN: Input.RECV_DOWN,
    State.INIT: Input.RECV_INIT,
    State.UP: Input.RECV_UP,
}


def received(remote_state: State) -> Input:
    return _RECEIVED[remote_state]


@attrs.frozen
class Transition:
    """Go to ``new_state``; set bfd.LocalDiag to ``diag`` unless it is ``None``."""

    new_state: State
    diag: Diag | None
    reason: str
    remote_admin_down: bool = False


_PEER_ADMIN_DOWN = Transition(
    State.DOWN, Diag.NEIGHBOR_SIGNALED_SESSION_DOWN, "peer is AdminDown", remote_admin_down=True
)
_DETECTION = Transition(
    State.DOWN, Diag.CONTROL_DETECTION_TIME_EXPIRED, "control detection time expired"
)

#: (local state, input) -> transition; pairs not listed leave the state unchanged.
#: A local AdminDown never appears: such packets are discarded before this table.
TRANSITIONS: dict[tuple[State, Input], Transition] = {
    (State.DOWN, Input.RECV_DOWN): Transition(State.INIT, None, "peer is Down"),
    (State.DOWN, Input.RECV_INIT): Transition(State.UP, Diag.NO_DIAGNOSTIC, "peer is Init"),
    (State.INIT, Input.RECV_ADMIN_DOWN): _PEER_ADMIN_DOWN,
    (State.INIT, Input.RECV_INIT): Transition(State.UP, Diag.NO_DIAGNOSTIC, "peer is Init"),
    (State.INIT, Input.RECV_UP): Transition(State.UP, Diag.NO_DIAGNOSTIC, "peer is Up"),
    (State.INIT, Input.DETECTION_TIMEOUT): _DETECTION,
    (State.UP, Input.RECV_ADMIN_DOWN): _PEER_ADMIN_DOWN,
    (State.UP, Input.RECV_DOWN): Transition(
        State.DOWN, Diag.NEIGHBOR_SIGNALED_SESSION_DOWN, "peer signalled Down"
    ),
    (State.UP, Input.DETECTION_TIMEOUT): _DETECTION,
    (State.UP, Input.ECHO_FAILURE): Transition(
        State.DOWN, Diag.ECHO_FUNCTION_FAILED, "echo function failed"
    ),
}


def transition(state: State, event: Input) -> Transition | None:
    return TRANSITIONS.get((state, event))
