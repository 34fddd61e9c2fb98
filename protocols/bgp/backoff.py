"""Connect-retry backoff with jitter and peer-oscillation damping (RFC 4271 §8.1.1, §10).

Randomness is injected: anything with a ``random() -> float`` method in [0, 1)
(``random.Random`` qualifies) satisfies :class:`Rng`.
"""

from __future__ import annotations

from typing import Protocol

import attrs

#: RFC 4271 §10: jitter multiplies timers by a factor in [0.75, 1.0].
JITTER_LOW = 0.75


class Rng(Protocol):
    """Source of uniform floats in [0, 1)."""

    def random(self) -> float: ...


def jitter(rng: Rng | None) -> float:
    """A factor in [0.75, 1.0]; exactly 1.0 when no rng is given."""
    if rng is None:
        return 1.0
    return JITTER_LOW + (1.0 - JITTER_LOW) * rng.random()


def backoff_delay(attempt: int, base: float, cap: float, rng: Rng | None) -> float:
    """Delay before retry number ``attempt`` (0-based): jitter x min(cap, base x 2^attempt)."""
    exp = min(attempt, 62)  # avoid huge floats; the cap wins long before
    return jitter(rng) * min(cap, base * float(2**exp))


@attrs.define
class Damper:
    """DampPeerOscillations (RFC 4271 §8.1.1): growing IdleHoldTime after flaps.

    Each reset of an Established session is a flap.  The k-th consecutive flap
    yields an idle hold time of jitter x min(max_delay, base x 2^(k-1)).  A session
    that stayed Established for at least ``stable_time`` seconds resets the count
    (the decay), so an isolated reset costs only ``base``.
    """

    base: float = 1.0
    max_delay: float = 300.0
    stable_time: float = 120.0
    flaps: int = 0

    def on_reset(self, established_for: float, rng: Rng | None) -> float:
        """Record a reset after ``established_for`` seconds up; return the idle hold time."""
        if established_for >= self.stable_time:
            self.flaps = 0
        self.flaps += 1
        return backoff_delay(self.flaps - 1, self.base, self.max_delay, rng)
