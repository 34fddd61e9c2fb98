"""BFD profiles: MetalLB's BFDProfile, field for field, plus authentication.

Intervals are milliseconds, as operators write them; :meth:`BfdProfile.session_config`
turns a profile into the sans-IO core's microsecond :class:`SessionConfig`.
Ranges and defaults follow MetalLB/OKD (transmit/receive/echo 10-60000 ms, detect
multiplier 2-255, minimum TTL 1-254).
"""

from __future__ import annotations

from typing import Any

import attrs

from protocols.bfd import AuthConfig, AuthType, SessionConfig

__all__ = ["AUTH_TYPE_NAMES", "BfdAuth", "BfdProfile"]

#: Config spelling of each authentication type.
AUTH_TYPE_NAMES: dict[str, AuthType] = {
    "simple": AuthType.SIMPLE_PASSWORD,
    "keyed-md5": AuthType.KEYED_MD5,
    "meticulous-keyed-md5": AuthType.METICULOUS_KEYED_MD5,
    "keyed-sha1": AuthType.KEYED_SHA1,
    "meticulous-keyed-sha1": AuthType.METICULOUS_KEYED_SHA1,
}


def _in_range(low: int, high: int, unit: str = "") -> Any:
    suffix = f" {unit}" if unit else ""

    def check(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"must be an integer, not {value!r}")
        if value < low:
            raise ValueError(f"{value} is below the minimum of {low}{suffix}")
        if value > high:
            raise ValueError(f"{value} is above the maximum of {high}{suffix}")

    return check


@attrs.frozen(kw_only=True)
class BfdAuth:
    """RFC 5880 §6.7 authentication: one type, keys by Key ID, the one used to send.

    ``keys`` maps Key ID (0-255) to the secret (1-16 bytes; up to 20 for SHA1).
    Secrets never appear in ``repr`` (so neither in logs nor in ``show`` output).
    """

    type: str = attrs.field(validator=attrs.validators.in_(AUTH_TYPE_NAMES))
    keys: dict[int, str] = attrs.field(repr=False)
    send_key_id: int = attrs.field(validator=_in_range(0, 255))

    def to_core(self) -> AuthConfig:
        return AuthConfig(
            type=AUTH_TYPE_NAMES[self.type],
            keys={kid: secret.encode() for kid, secret in self.keys.items()},
            send_key_id=self.send_key_id,
        )

    def __attrs_post_init__(self) -> None:
        self.to_core()  # the core's checks (secret lengths, send key present), once


@attrs.frozen(kw_only=True)
class BfdProfile:
    """How a BFD session runs; one profile serves any number of peers."""

    name: str = "default"
    receive_interval: int = attrs.field(default=300, validator=_in_range(10, 60000, "ms"))
    transmit_interval: int = attrs.field(default=300, validator=_in_range(10, 60000, "ms"))
    detect_multiplier: int = attrs.field(default=3, validator=_in_range(2, 255))
    echo_mode: bool = False
    echo_interval: int = attrs.field(default=50, validator=_in_range(10, 60000, "ms"))
    passive_mode: bool = False
    minimum_ttl: int = attrs.field(default=254, validator=_in_range(1, 254))
    auth: BfdAuth | None = None

    def session_config(self, *, multihop: bool) -> SessionConfig:
        return SessionConfig(
            desired_min_tx_us=self.transmit_interval * 1000,
            required_min_rx_us=self.receive_interval * 1000,
            detect_mult=self.detect_multiplier,
            echo_mode=self.echo_mode and not multihop,
            echo_interval_us=self.echo_interval * 1000,
            passive=self.passive_mode,
            multihop=multihop,
            auth=self.auth.to_core() if self.auth is not None else None,
        )

    def detection_time_ms(self) -> int:
        """Our side's detection time when the peer sends as fast as we ask."""
        return self.detect_multiplier * self.receive_interval
