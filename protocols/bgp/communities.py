"""Communities (RFC 1997) and Large Communities (RFC 8092): values and text forms.

Text forms: ``"65000:100"`` or a well-known name such as ``"no-export"`` for
standard communities; ``"4200000000:1:2"`` for large communities.  Text parsing
errors raise :class:`LocalProtocolError` (they come from local configuration).
"""

from __future__ import annotations

import enum

import attrs

from .errors import LocalProtocolError


class WellKnownCommunity(enum.IntEnum):
    """IANA well-known communities (RFC 1997, RFC 3765, RFC 7611, RFC 7999, RFC 8326, RFC 9494)."""

    GRACEFUL_SHUTDOWN = 0xFFFF0000  # RFC 8326
    ACCEPT_OWN = 0xFFFF0001  # RFC 7611
    LLGR_STALE = 0xFFFF0006  # RFC 9494
    NO_LLGR = 0xFFFF0007  # RFC 9494
    BLACKHOLE = 0xFFFF029A  # RFC 7999
    NO_EXPORT = 0xFFFFFF01  # RFC 1997
    NO_ADVERTISE = 0xFFFFFF02  # RFC 1997
    NO_EXPORT_SUBCONFED = 0xFFFFFF03  # RFC 1997
    NOPEER = 0xFFFFFF04  # RFC 3765


#: Text names, as used by FRR / GoBGP configuration.
COMMUNITY_NAMES: dict[int, str] = {
    WellKnownCommunity.GRACEFUL_SHUTDOWN: "graceful-shutdown",
    WellKnownCommunity.ACCEPT_OWN: "accept-own",
    WellKnownCommunity.LLGR_STALE: "llgr-stale",
    WellKnownCommunity.NO_LLGR: "no-llgr",
    WellKnownCommunity.BLACKHOLE: "blackhole",
    WellKnownCommunity.NO_EXPORT: "no-export",
    WellKnownCommunity.NO_ADVERTISE: "no-advertise",
    WellKnownCommunity.NO_EXPORT_SUBCONFED: "no-export-subconfed",
    WellKnownCommunity.NOPEER: "no-peer",
}
_BY_NAME: dict[str, int] = {name: value for value, name in COMMUNITY_NAMES.items()}
_BY_NAME.update({"nopeer": WellKnownCommunity.NOPEER, "local-as": 0xFFFFFF03})


def _u(text: str, bits: int, what: str) -> int:
    if not text.isdigit():
        raise LocalProtocolError(f"bad {what}: {text!r}")
    value = int(text)
    if value >= 1 << bits:
        raise LocalProtocolError(f"{what} out of range: {text!r}")
    return value


def parse_community(text: str) -> int:
    """``"65000:100"`` or a well-known name (``"no-advertise"``) -> 32-bit value."""
    key = text.strip().lower().replace("_", "-")
    if key in _BY_NAME:
        return _BY_NAME[key]
    high, sep, low = key.partition(":")
    if not sep:
        raise LocalProtocolError(f"bad community: {text!r}")
    return (_u(high, 16, "community") << 16) | _u(low, 16, "community")


def format_community(value: int) -> str:
    """32-bit community -> well-known name or ``"high:low"``."""
    return COMMUNITY_NAMES.get(value) or f"{value >> 16}:{value & 0xFFFF}"


@attrs.frozen(kw_only=True, order=True)
class LargeCommunity:
    """RFC 8092 §3: Global Administrator, Local Data Part 1, Local Data Part 2 (u32 each)."""

    global_admin: int
    local1: int
    local2: int

    @classmethod
    def parse(cls, text: str) -> LargeCommunity:
        """``"1:2:3"`` -> LargeCommunity."""
        parts = text.strip().split(":")
        if len(parts) != 3:
            raise LocalProtocolError(f"bad large community: {text!r}")
        a, b, c = (_u(p, 32, "large community") for p in parts)
        return cls(global_admin=a, local1=b, local2=c)

    def __str__(self) -> str:
        return f"{self.global_admin}:{self.local1}:{self.local2}"


def parse_large_community(text: str) -> LargeCommunity:
    """Alias of :meth:`LargeCommunity.parse`."""
    return LargeCommunity.parse(text)


def format_large_community(value: LargeCommunity) -> str:
    """``LargeCommunity`` -> ``"a:b:c"``."""
    return str(value)
