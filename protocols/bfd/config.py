"""Per-session configuration (the "profile") of a BFD session."""

from __future__ import annotations

import attrs

from .auth import AuthConfig
from .constants import MAX_U32

__all__ = ["SessionConfig"]


@attrs.frozen(kw_only=True)
class SessionConfig:
    """What the operator asks of one session. Intervals are microseconds.

    * ``desired_min_tx_us`` / ``required_min_rx_us``: the configured
      bfd.DesiredMinTxInterval and bfd.RequiredMinRxInterval (RFC 5880 §6.8.1). While
      the session is not Up the advertised Desired Min TX is at least 1 s (§6.8.3).
      ``required_min_rx_us`` 0 asks the peer not to send periodic packets.
    * ``detect_mult``: bfd.DetectMult, 1-255.
    * ``echo_mode``: run the Echo function (§6.4) when Up and the peer advertises a
      nonzero Required Min Echo RX. ``echo_interval_us`` is both our echo transmit
      interval and the Required Min Echo RX we advertise (0 is advertised when
      ``echo_mode`` is off). Not allowed with ``multihop`` (RFC 5883 §3: no echo over
      multiple hops).
    * ``passive``: the Passive role (§6.1): send nothing until the peer is heard from.
    * ``multihop``: RFC 5883 session; only forbids echo here (TTL and port handling
      belong to the runtime).
    * ``auth``: bfd.AuthType and keys, or ``None`` for no authentication.
    """

    desired_min_tx_us: int = 300_000
    required_min_rx_us: int = 300_000
    detect_mult: int = 3
    echo_mode: bool = False
    echo_interval_us: int = 50_000
    passive: bool = False
    multihop: bool = False
    auth: AuthConfig | None = None

    def __attrs_post_init__(self) -> None:
        if not 1 <= self.desired_min_tx_us <= MAX_U32:
            raise ValueError("desired_min_tx_us must be in [1, 2**32-1] (0 is reserved)")
        if not 0 <= self.required_min_rx_us <= MAX_U32:
            raise ValueError("required_min_rx_us must be in [0, 2**32-1]")
        if not 1 <= self.detect_mult <= 255:
            raise ValueError("detect_mult must be in [1, 255]")
        if not 1 <= self.echo_interval_us <= MAX_U32:
            raise ValueError("echo_interval_us must be in [1, 2**32-1]")
        if self.echo_mode and self.multihop:
            raise ValueError("the Echo function is single-hop only (RFC 5883)")

    @property
    def advertised_echo_rx_us(self) -> int:
        """Required Min Echo RX Interval we put in Control packets."""
        return self.echo_interval_us if self.echo_mode else 0
