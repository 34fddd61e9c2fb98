from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from speaker.config.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("1m30s", timedelta(seconds=90)),
        ("500ms", timedelta(milliseconds=500)),
        ("1.5s", timedelta(milliseconds=1500)),
        (".5s", timedelta(milliseconds=500)),
        ("2h", timedelta(hours=2)),
        ("1h2m3s4ms5us", timedelta(hours=1, minutes=2, seconds=3, milliseconds=4, microseconds=5)),
        ("250µs", timedelta(microseconds=250)),
        ("3000ns", timedelta(microseconds=3)),
        ("0", timedelta(0)),
        ("0s", timedelta(0)),
        (" 10s ", timedelta(seconds=10)),
    ],
)
def test_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("90", '"90" needs a unit (e.g. "90s" or "90ms")'),
        ("1.5", '"1.5" needs a unit (e.g. "1.5s" or "1.5ms")'),
        ("", 'empty duration (write e.g. "90s", "1m30s" or "500ms")'),
        ("-1s", '"-1s" is negative'),
        ("1ns", '"1ns" is finer than a microsecond'),
        (
            "1d",
            '"1d" is not a duration (write e.g. "90s", "1m30s" or "500ms";'
            " units: h, m, s, ms, us, ns)",
        ),
        (
            "s",
            '"s" is not a duration (write e.g. "90s", "1m30s" or "500ms";'
            " units: h, m, s, ms, us, ns)",
        ),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(milliseconds=500), "500ms"),
        (timedelta(microseconds=7), "7us"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(seconds=1, milliseconds=500), "1.5s"),
        (timedelta(hours=3), "3h"),
        (timedelta(hours=1, seconds=1), "1h1s"),
    ],
)
def test_format(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400)))
def test_round_trip(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value


@given(
    st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from(["h", "m", "s", "ms", "us"])),
        min_size=1,
        max_size=5,
    )
)
def test_sum_of_parts(parts: list[tuple[int, str]]) -> None:
    micros = {"h": 3_600_000_000, "m": 60_000_000, "s": 1_000_000, "ms": 1000, "us": 1}
    text = "".join(f"{n}{unit}" for n, unit in parts)
    expected = sum(n * micros[unit] for n, unit in parts)
    assert parse_duration(text) == timedelta(microseconds=expected)
