"""Wire constants of BFD (RFC 5880 §4, RFC 5881 §4, RFC 5883 §2).

Enumerations hold the code points of the Control packet fields; plain integers hold
the fixed numbers (ports, the protocol version, the slow-start floor).
"""

from __future__ import annotations

import enum

#: The only protocol version this implementation speaks (RFC 5880 §4.1).
VERSION = 1

#: UDP destination ports (RFC 5881 §4 single hop, RFC 5883 §2 multihop).
CONTROL_PORT = 3784
ECHO_PORT = 3785
MULTIHOP_CONTROL_PORT = 4784

#: Floor for bfd.DesiredMinTxInterval while the session is not Up (RFC 5880 §6.8.3),
#: and for bfd.RequiredMinRxInterval while the Echo function is active.
SLOW_INTERVAL_US = 1_000_000

MAX_U32 = 0xFFFF_FFFF


class State(enum.IntEnum):
    """Session state, the 2-bit Sta field (RFC 5880 §4.1)."""

    ADMIN_DOWN = 0
    DOWN = 1
    INIT = 2
    UP = 3


class Diag(enum.IntEnum):
    """Diagnostic codes, the 5-bit Diag field (RFC 5880 §4.1). Codes 9-31 are reserved."""

    NO_DIAGNOSTIC = 0
    CONTROL_DETECTION_TIME_EXPIRED = 1
    ECHO_FUNCTION_FAILED = 2
    NEIGHBOR_SIGNALED_SESSION_DOWN = 3
    FORWARDING_PLANE_RESET = 4
    PATH_DOWN = 5
    CONCATENATED_PATH_DOWN = 6
    ADMINISTRATIVELY_DOWN = 7
    REVERSE_CONCATENATED_PATH_DOWN = 8


class AuthType(enum.IntEnum):
    """Authentication types of the Auth Type field (RFC 5880 §4.2)."""

    RESERVED = 0
    SIMPLE_PASSWORD = 1
    KEYED_MD5 = 2
    METICULOUS_KEYED_MD5 = 3
    KEYED_SHA1 = 4
    METICULOUS_KEYED_SHA1 = 5


#: Digest length in bytes of the keyed types (RFC 5880 §4.3, §4.4).
DIGEST_LENGTH: dict[AuthType, int] = {
    AuthType.KEYED_MD5: 16,
    AuthType.METICULOUS_KEYED_MD5: 16,
    AuthType.KEYED_SHA1: 20,
    AuthType.METICULOUS_KEYED_SHA1: 20,
}

#: Keyed types whose sequence number advances on every packet (RFC 5880 §6.7.3, §6.7.4).
METICULOUS: frozenset[AuthType] = frozenset(
    {AuthType.METICULOUS_KEYED_MD5, AuthType.METICULOUS_KEYED_SHA1}
)
