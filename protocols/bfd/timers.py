"""Timer arithmetic of RFC 5880 §6.8.2-§6.8.4 and §6.8.7, as pure functions.

Intervals are integer microseconds (as on the wire); deadlines are float seconds on the
caller's monotonic clock.
"""

from __future__ import annotations

from typing import Protocol

__all__ = [
    "Rng",
    "detection_time_us",
    "jitter_bounds",
    "jittered_interval_us",
    "transmit_interval_us",
    "us_to_s",
]


class Rng(Protocol):
    """The part of :class:`random.Random` a session uses (injected, never global)."""

    def random(self) -> float: ...

    def getrandbits(self, k: int, /) -> int: ...


def us_to_s(us: float) -> float:
    return us / 1_000_000


def transmit_interval_us(desired_min_tx_us: int, remote_min_rx_us: int) -> int:
    """§6.8.7: the larger of bfd.DesiredMinTxInterval and bfd.RemoteMinRxInterval."""
    return max(desired_min_tx_us, remote_min_rx_us)


def detection_time_us(
    remote_detect_mult: int, required_min_rx_us: int, remote_desired_min_tx_us: int
) -> int:
    """§6.8.4, asynchronous mode: the remote Detect Mult times the agreed remote rate,
    i.e. the greater of bfd.RequiredMinRxInterval and the remote Desired Min TX."""
    return remote_detect_mult * max(required_min_rx_us, remote_desired_min_tx_us)


def jitter_bounds(detect_mult: int) -> tuple[float, float]:
    """§6.8.7: intervals are 75-100% of nominal, or 75-90% when bfd.DetectMult is 1."""
    return (0.75, 0.9) if detect_mult == 1 else (0.75, 1.0)


def jittered_interval_us(interval_us: int, detect_mult: int, rng: Rng) -> float:
    """One jittered transmit interval, in [low, high) times ``interval_us``."""
    low, high = jitter_bounds(detect_mult)
    return interval_us * (low + (high - low) * rng.random())
