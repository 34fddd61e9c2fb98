"""Wire constants of BGP-4 and its extensions, as ``IntEnum`` classes.

Every number that appears on the wire lives here, with the RFC that defines it.
Unknown values received from a peer are kept as plain ``int`` (an ``IntEnum``
member compares equal to its value, so callers may compare either way).
"""

from __future__ import annotations

import enum
from typing import TypeVar

#: RFC 4271 §4.1: the 16-octet marker, all ones.
MARKER = b"\xff" * 16
#: RFC 4271 §4.1: length of the fixed message header.
HEADER_LEN = 19
#: RFC 4271 §4.1: maximum message size without RFC 8654.
MAX_MESSAGE_SIZE = 4096
#: RFC 8654 §4: maximum message size once the Extended Message capability is negotiated.
MAX_EXTENDED_MESSAGE_SIZE = 65535
#: RFC 4271 §4.2: the only supported protocol version.
BGP_VERSION = 4
#: RFC 6793 §9: the 2-octet placeholder for a 4-octet AS number.
AS_TRANS = 23456
#: RFC 4271 §10: suggested hold time of the OpenSent state ("4 minutes").
OPEN_SENT_HOLD_TIME = 240.0
#: RFC 4271 §4.4 / §10: minimum non-zero hold time in seconds.
MIN_HOLD_TIME = 3


class MessageType(enum.IntEnum):
    """RFC 4271 §4.1 message types (plus RFC 2918 ROUTE-REFRESH)."""

    OPEN = 1
    UPDATE = 2
    NOTIFICATION = 3
    KEEPALIVE = 4
    ROUTE_REFRESH = 5


class NotifCode(enum.IntEnum):
    """RFC 4271 §4.5 NOTIFICATION error codes (6 from RFC 4486, 7 from RFC 7313)."""

    MESSAGE_HEADER_ERROR = 1
    OPEN_MESSAGE_ERROR = 2
    UPDATE_MESSAGE_ERROR = 3
    HOLD_TIMER_EXPIRED = 4
    FSM_ERROR = 5
    CEASE = 6
    ROUTE_REFRESH_MESSAGE_ERROR = 7


class HeaderSubcode(enum.IntEnum):
    """RFC 4271 §6.1 Message Header Error subcodes."""

    UNSPECIFIC = 0
    CONNECTION_NOT_SYNCHRONIZED = 1
    BAD_MESSAGE_LENGTH = 2
    BAD_MESSAGE_TYPE = 3


class OpenSubcode(enum.IntEnum):
    """RFC 4271 §6.2 OPEN Message Error subcodes (7 from RFC 5492)."""

    UNSPECIFIC = 0
    UNSUPPORTED_VERSION_NUMBER = 1
    BAD_PEER_AS = 2
    BAD_BGP_IDENTIFIER = 3
    UNSUPPORTED_OPTIONAL_PARAMETER = 4
    UNACCEPTABLE_HOLD_TIME = 6
    UNSUPPORTED_CAPABILITY = 7


class UpdateSubcode(enum.IntEnum):
    """RFC 4271 §6.3 UPDATE Message Error subcodes."""

    UNSPECIFIC = 0
    MALFORMED_ATTRIBUTE_LIST = 1
    UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE = 2
    MISSING_WELL_KNOWN_ATTRIBUTE = 3
    ATTRIBUTE_FLAGS_ERROR = 4
    ATTRIBUTE_LENGTH_ERROR = 5
    INVALID_ORIGIN_ATTRIBUTE = 6
    INVALID_NEXT_HOP_ATTRIBUTE = 8
    OPTIONAL_ATTRIBUTE_ERROR = 9
    INVALID_NETWORK_FIELD = 10
    MALFORMED_AS_PATH = 11


class FsmSubcode(enum.IntEnum):
    """RFC 6608 Finite State Machine Error subcodes."""

    UNSPECIFIED = 0
    UNEXPECTED_MESSAGE_IN_OPEN_SENT = 1
    UNEXPECTED_MESSAGE_IN_OPEN_CONFIRM = 2
    UNEXPECTED_MESSAGE_IN_ESTABLISHED = 3


class CeaseSubcode(enum.IntEnum):
    """RFC 4486 §4 Cease subcodes (9 from RFC 8538, 10 from RFC 9384)."""

    UNSPECIFIC = 0
    MAXIMUM_PREFIXES_REACHED = 1
    ADMINISTRATIVE_SHUTDOWN = 2
    PEER_DECONFIGURED = 3
    ADMINISTRATIVE_RESET = 4
    CONNECTION_REJECTED = 5
    OTHER_CONFIGURATION_CHANGE = 6
    CONNECTION_COLLISION_RESOLUTION = 7
    OUT_OF_RESOURCES = 8
    HARD_RESET = 9
    BFD_DOWN = 10


class RouteRefreshSubcode(enum.IntEnum):
    """RFC 7313 §5 ROUTE-REFRESH Message Error subcodes."""

    RESERVED = 0
    INVALID_MESSAGE_LENGTH = 1


class RouteRefreshSubtype(enum.IntEnum):
    """RFC 7313 §3.2 ROUTE-REFRESH message subtypes (the RFC 2918 "Reserved" octet)."""

    NORMAL = 0
    BORR = 1
    EORR = 2


class OptionalParameterType(enum.IntEnum):
    """RFC 4271 §4.2 optional parameter types (RFC 5492 capabilities, RFC 9072 marker)."""

    CAPABILITIES = 2
    EXTENDED_LENGTH = 255


class CapabilityCode(enum.IntEnum):
    """IANA capability codes (RFC 5492 §4)."""

    MULTIPROTOCOL = 1  # RFC 4760
    ROUTE_REFRESH = 2  # RFC 2918
    EXTENDED_NEXT_HOP = 5  # RFC 8950
    EXTENDED_MESSAGE = 6  # RFC 8654
    GRACEFUL_RESTART = 64  # RFC 4724
    FOUR_OCTET_AS = 65  # RFC 6793
    ADD_PATH = 69  # RFC 7911
    ENHANCED_ROUTE_REFRESH = 70  # RFC 7313
    LONG_LIVED_GRACEFUL_RESTART = 71  # RFC 9494
    FQDN = 73  # draft-walton-bgp-hostname-capability
    BFD_STRICT_MODE = 74  # draft-ietf-idr-bgp-bfd-strict-mode
    SOFTWARE_VERSION = 75  # draft-abraitis-bgp-version-capability
    ROUTE_REFRESH_CISCO = 128  # pre-standard route refresh


class AFI(enum.IntEnum):
    """IANA Address Family Identifiers used here."""

    IPV4 = 1
    IPV6 = 2


class SAFI(enum.IntEnum):
    """IANA Subsequent Address Family Identifiers used here."""

    UNICAST = 1
    MULTICAST = 2


class AttrType(enum.IntEnum):
    """IANA path attribute type codes."""

    ORIGIN = 1  # RFC 4271 §5.1.1
    AS_PATH = 2  # RFC 4271 §5.1.2
    NEXT_HOP = 3  # RFC 4271 §5.1.3
    MULTI_EXIT_DISC = 4  # RFC 4271 §5.1.4
    LOCAL_PREF = 5  # RFC 4271 §5.1.5
    ATOMIC_AGGREGATE = 6  # RFC 4271 §5.1.6
    AGGREGATOR = 7  # RFC 4271 §5.1.7
    COMMUNITIES = 8  # RFC 1997
    ORIGINATOR_ID = 9  # RFC 4456
    CLUSTER_LIST = 10  # RFC 4456
    MP_REACH_NLRI = 14  # RFC 4760
    MP_UNREACH_NLRI = 15  # RFC 4760
    AS4_PATH = 17  # RFC 6793
    AS4_AGGREGATOR = 18  # RFC 6793
    LARGE_COMMUNITIES = 32  # RFC 8092


class AttrFlag(enum.IntFlag):
    """RFC 4271 §4.3 attribute flag bits."""

    OPTIONAL = 0x80
    TRANSITIVE = 0x40
    PARTIAL = 0x20
    EXTENDED_LENGTH = 0x10


class Origin(enum.IntEnum):
    """RFC 4271 §5.1.1 ORIGIN values."""

    IGP = 0
    EGP = 1
    INCOMPLETE = 2


class AsPathSegmentType(enum.IntEnum):
    """RFC 4271 §4.3 AS_PATH segment types (3 and 4 from RFC 5065)."""

    AS_SET = 1
    AS_SEQUENCE = 2
    AS_CONFED_SEQUENCE = 3
    AS_CONFED_SET = 4


#: The two families this implementation understands end to end.
IPV4_UNICAST: tuple[AFI, SAFI] = (AFI.IPV4, SAFI.UNICAST)
IPV6_UNICAST: tuple[AFI, SAFI] = (AFI.IPV6, SAFI.UNICAST)


_E = TypeVar("_E", bound=enum.IntEnum)


def to_enum(cls: type[_E], value: int) -> _E | int:
    """Return ``cls(value)`` when ``value`` is a known member, else the plain int."""
    try:
        return cls(value)
    except ValueError:
        return value
