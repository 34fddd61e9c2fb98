"""BFD (RFC 5880, 5881, 5883): control packet codec and session state machine.

Sans-IO: :class:`Session` takes datagrams and the current time, and returns datagrams,
events and its next deadline. Modules:

* :mod:`.constants` - State, Diag, AuthType, ports;
* :mod:`.packet` - Control packet codec (§4.1-§4.4);
* :mod:`.auth` - AuthConfig, signing and verification (§6.7);
* :mod:`.echo` - our Echo packet format (§6.4);
* :mod:`.timers` - timer arithmetic and the injected ``Rng`` protocol;
* :mod:`.fsm` - the state table (§6.8.6);
* :mod:`.poll` - Poll Sequence bookkeeping for timer changes (§6.5, §6.8.3);
* :mod:`.config`, :mod:`.events`, :mod:`.counters`, :mod:`.session` - the session.
"""

from __future__ import annotations

from .auth import AuthConfig, compute_digest, sequence_in_window, sign, verify
from .config import SessionConfig
from .constants import (
    CONTROL_PORT,
    ECHO_PORT,
    MULTIHOP_CONTROL_PORT,
    SLOW_INTERVAL_US,
    VERSION,
    AuthType,
    Diag,
    State,
)
from .echo import EchoPacket
from .errors import BfdDecodeError, DiscardReason
from .events import Event, StateChanged, TimersChanged
from .packet import AuthSection, ControlPacket, DigestAuth, SimplePasswordAuth
from .session import (
    ECHO_HOLDOFF_INITIAL_S,
    ECHO_HOLDOFF_MAX_S,
    ECHO_STABLE_S,
    Session,
    SessionCounters,
)
from .timers import Rng

__all__ = [
    "CONTROL_PORT",
    "ECHO_HOLDOFF_INITIAL_S",
    "ECHO_HOLDOFF_MAX_S",
    "ECHO_PORT",
    "ECHO_STABLE_S",
    "MULTIHOP_CONTROL_PORT",
    "SLOW_INTERVAL_US",
    "VERSION",
    "AuthConfig",
    "AuthSection",
    "AuthType",
    "BfdDecodeError",
    "ControlPacket",
    "Diag",
    "DigestAuth",
    "DiscardReason",
    "EchoPacket",
    "Event",
    "Rng",
    "Session",
    "SessionConfig",
    "SessionCounters",
    "SimplePasswordAuth",
    "State",
    "StateChanged",
    "TimersChanged",
    "compute_digest",
    "sequence_in_window",
    "sign",
    "verify",
]
