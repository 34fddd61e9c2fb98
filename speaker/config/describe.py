"""What a value read from a file is, for error messages: ``"an integer (5)"``.

One describer for the two readers of files: the configuration loader names values in
TOML's words (``"an array"``, ``"a table"``), ``import-metallb`` in YAML's
(``"a list"``, ``"a mapping"``), each a :class:`Words`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime, time

import attrs

__all__ = ["TOML", "YAML", "Words", "describe", "show"]


def show(value: object) -> str:
    """A value compactly and on one line (JSON, escapes and all), for a message."""
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except ValueError:  # pragma: no cover - circular YAML anchors
        return repr(value)


@attrs.frozen(kw_only=True)
class Words:
    """The names of a file format's kinds of value."""

    float: str
    array: str
    table: str
    #: How a string is quoted in the message.
    quote: Callable[[str], str]
    #: Dates and times are a kind of their own (TOML); else named by their type.
    dates: bool


TOML = Words(
    float="a float", array="an array", table="a table", quote=lambda s: f'"{s}"', dates=True
)
YAML = Words(float="a number", array="a list", table="a mapping", quote=show, dates=False)


def describe(value: object, words: Words = TOML, *, secret: bool = False) -> str:
    """``"a string ("x")"``, ``"an integer (5)"``: what the file holds, in its words;
    with ``secret``, only the kind (``"an integer"``): a secret's value never appears
    in a message, whatever its type."""

    def shown(kind: str, text: str) -> str:
        return kind if secret else f"{kind} ({text})"

    if isinstance(value, bool):
        return shown("a boolean", str(value).lower())
    if isinstance(value, int):
        return shown("an integer", str(value))
    if isinstance(value, float):
        return shown(words.float, str(value))
    if isinstance(value, str):
        return "a string" if secret else f"a string ({words.quote(value)})"
    if isinstance(value, list):
        return words.array
    if isinstance(value, dict):
        return words.table
    if words.dates and isinstance(value, datetime | date | time):
        return shown("a date/time", str(value))
    return type(value).__name__
