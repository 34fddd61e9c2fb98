"""Durations as operators write them: ``"90s"``, ``"1m30s"``, ``"500ms"``, ``"1.5s"``.

The grammar is Go's ``time.ParseDuration`` (what MetalLB's ``metav1.Duration`` accepts)
without the sign: one or more decimal numbers, each followed by a unit among ``h``,
``m``, ``s``, ``ms``, ``us`` (or ``µs``) and ``ns``.  A bare ``"0"`` is zero.  Values are
:class:`datetime.timedelta`, exact to the microsecond; anything finer is an error
rather than a silent rounding.
"""

from __future__ import annotations

import re
from datetime import timedelta
from fractions import Fraction

__all__ = ["format_duration", "parse_duration"]

#: Microseconds per unit.
_UNITS: dict[str, Fraction] = {
    "h": Fraction(3_600_000_000),
    "m": Fraction(60_000_000),
    "s": Fraction(1_000_000),
    "ms": Fraction(1_000),
    "us": Fraction(1),
    "µs": Fraction(1),
    "μs": Fraction(1),  # U+03BC, as Go also accepts
    "ns": Fraction(1, 1_000),
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|μs|ns)")


def parse_duration(text: str) -> timedelta:
    """``"1m30s"`` -> ``timedelta(seconds=90)``.

    Raises:
        ValueError: with a message fit to show after the key's path.
    """
    body = text.strip()
    if body == "0":
        return timedelta(0)
    if not body:
        raise ValueError('empty duration (write e.g. "90s", "1m30s" or "500ms")')
    if body.startswith("-"):
        raise ValueError(f'"{text}" is negative')
    pos = 0
    total = Fraction(0)
    while pos < len(body):
        match = _PART.match(body, pos)
        if match is None:
            if body[pos:].replace(".", "").isdigit():
                raise ValueError(f'"{text}" needs a unit (e.g. "{body}s" or "{body}ms")')
            raise ValueError(
                f'"{text}" is not a duration (write e.g. "90s", "1m30s" or "500ms";'
                " units: h, m, s, ms, us, ns)"
            )
        number, unit = match.groups()
        total += Fraction(number) * _UNITS[unit]
        pos = match.end()
    if total.denominator != 1:
        raise ValueError(f'"{text}" is finer than a microsecond')
    return timedelta(microseconds=int(total))


def format_duration(value: timedelta) -> str:
    """The canonical text of a duration: ``"1m30s"``, ``"500ms"``, ``"1.5s"``, ``"0s"``.

    ``parse_duration(format_duration(d)) == d`` for every non-negative ``d``.
    """
    micros = value // timedelta(microseconds=1)
    if micros < 0:
        raise ValueError(f"negative duration {value}")
    if micros == 0:
        return "0s"
    if micros < 1_000_000:
        return f"{micros // 1000}ms" if micros % 1000 == 0 else f"{micros}us"
    hours, rest = divmod(micros, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    seconds, fraction = divmod(rest, 1_000_000)
    out = ""
    if hours:
        out += f"{hours}h"
    if minutes:
        out += f"{minutes}m"
    if seconds or fraction:
        out += f"{seconds}.{fraction:06d}".rstrip("0").rstrip(".") + "s"
    return out
