"""Kubernetes quantities and Prometheus durations: parsing, canonical text, round trips.

Expected values are worked by hand from the Kubernetes quantity grammar
(``<signedNumber><suffix>``, the suffix being *one* of a binary SI suffix, a decimal SI
suffix or a decimal exponent) and the rule of ``model/quantity.py`` that inexact
conversions round *up*.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unthrottle.model.quantity import (
    QuantityError,
    ceil_div,
    describe_bytes,
    format_bytes,
    format_duration,
    format_millicores,
    parse_bytes,
    parse_duration_ms,
    parse_millicores,
    round_up,
)

KI, MI, GI = 2**10, 2**20, 2**30
INT64_MAX = 2**63 - 1

# --------------------------------------------------------------------------- CPU


@pytest.mark.parametrize(
    ("text", "millicores"),
    [
        ("250m", 250),
        ("0.25", 250),  # 0.25 core × 1000
        ("1", 1000),
        ("1.5", 1500),
        ("2", 2000),
        (".5", 500),  # the grammar allows a number without an integer part
        ("5.", 5000),  # ... and a trailing point
        ("+1", 1000),  # a signed number with an explicit plus
        ("0", 0),
        ("0m", 0),
        ("100u", 1),  # 100 µcores = 0.1m, rounded up to 1m, never down to 0
        ("1n", 1),  # 1e-9 core = 1e-6 m → 1m
        ("1500000n", 2),  # 1.5m → 2m
        ("1001u", 2),  # 1.001m → 2m
        ("1000u", 1),  # exactly 1m: no rounding
        ("2e3", 2_000_000),  # decimal exponent: 2000 cores
        ("1E3", 1_000_000),  # capital E followed by digits is an exponent, not exa
        ("1e-3", 1),  # 1e-3 core = 1m
        ("1k", 1_000_000),  # 1000 cores
        ("1Ki", 1_024_000),  # binary suffixes work for CPU too: 1024 cores
        (" 250m ", 250),  # surrounding blanks are stripped
    ],
)
def test_parse_millicores(text: str, millicores: int) -> None:
    assert parse_millicores(text) == millicores


@pytest.mark.parametrize(
    ("value", "millicores"),
    [
        (0.25, 250),
        (1, 1000),  # a Python int is a number of cores here, as in a manifest
        (2, 2000),
        (0.0001, 1),  # 0.1m rounded up
        (0.35, 350),  # repr(0.35) == "0.35": exact
        (0.0, 0),
    ],
)
def test_parse_millicores_numbers(value: float, millicores: int) -> None:
    assert parse_millicores(value) == millicores


@pytest.mark.parametrize(
    "bad",
    [
        "abc",
        "-1",  # negative
        "-250m",
        "",
        " ",
        "1.2.3",
        "2e3m",  # an exponent and a suffix: the grammar allows one suffix only
        "250 m",  # no blank between number and suffix
        "m",
        "Mi",
        "1e",  # an exponent needs digits
        "1mi",  # suffixes are case-sensitive
        "1KiB",
        "0x10",
        "1,5",
        "nan",
        "inf",
        "Infinity",
    ],
)
def test_parse_millicores_rejects(bad: str) -> None:
    with pytest.raises(QuantityError):
        parse_millicores(bad)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -0.5, True, False])
def test_parse_millicores_rejects_numbers(bad: float) -> None:
    with pytest.raises(QuantityError):
        parse_millicores(bad)


@pytest.mark.parametrize(
    "huge",
    [
        "1e999999999",  # beyond Decimal's exponent range: must not escape as decimal.Overflow
        "1e5000",  # a 5000-digit integer: no engine float can hold it
        "9223372036854775807",  # 2**63 - 1 cores is 2**63 - 1 thousand millicores
        1e300,
    ],
)
def test_parse_millicores_rejects_out_of_range(huge: str | float) -> None:
    # Kubernetes holds quantities in 64 bits; anything larger is an input error (a
    # QuantityError, hence a ValueError pydantic reports with the field), not a crash.
    with pytest.raises(QuantityError):
        parse_millicores(huge)


def test_parse_millicores_largest_accepted() -> None:
    # 9223372036854775m is (2**63 - 1) // 1000 millicores... written in millicores it is
    # exactly that integer, well inside int64.
    assert parse_millicores("9223372036854775m") == 9_223_372_036_854_775


@pytest.mark.parametrize(
    ("millicores", "text"),
    [
        (250, "250m"),
        (2000, "2"),  # whole cores have no suffix
        (1000, "1"),
        (1500, "1500m"),  # not "1.5": canonical text is integral
        (1, "1m"),
        (0, "0"),
        (10_000, "10"),
        (1001, "1001m"),
    ],
)
def test_format_millicores(millicores: int, text: str) -> None:
    assert format_millicores(millicores) == text


def test_format_millicores_rejects_negative() -> None:
    with pytest.raises(QuantityError):
        format_millicores(-1)


# --------------------------------------------------------------------------- memory


@pytest.mark.parametrize(
    ("text", "n_bytes"),
    [
        ("1Ki", 1024),
        ("512Mi", 536_870_912),  # 512 × 1048576
        ("1G", 10**9),
        ("1.5Gi", 1_610_612_736),  # 1.5 × 1073741824
        ("1M", 1_000_000),
        ("1k", 1000),
        ("128974848", 128_974_848),  # plain bytes
        ("129e6", 129_000_000),
        ("123Mi", 128_974_848),  # 123 × 1048576, the Kubernetes docs' example
        ("0.5Ki", 512),
        ("1m", 1),  # a thousandth of a byte rounds up to one byte
        ("0.1", 1),
        ("1.0000001", 2),  # never rounded down
        ("1Ti", 2**40),
        ("1Ei", 2**60),
        ("0", 0),
    ],
)
def test_parse_bytes(text: str, n_bytes: int) -> None:
    assert parse_bytes(text) == n_bytes


@pytest.mark.parametrize(
    ("value", "n_bytes"),
    [(300_000_000, 300_000_000), (0, 0), (1.5, 2), (320000000.0, 320_000_000)],
)
def test_parse_bytes_numbers(value: float, n_bytes: int) -> None:
    assert parse_bytes(value) == n_bytes


@pytest.mark.parametrize(
    "bad",
    ["abc", "-1", "-1Mi", "", "1.2.3", "1MB", "1 Gi", "Gi", "1gi", "8Ei", "1e19", "1e999999999"],
)
def test_parse_bytes_rejects(bad: str) -> None:
    # 8Ei = 2**63 and 1e19 are past int64, the largest quantity Kubernetes holds.
    with pytest.raises(QuantityError):
        parse_bytes(bad)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0, -1])
def test_parse_bytes_rejects_numbers(bad: float) -> None:
    with pytest.raises(QuantityError):
        parse_bytes(bad)


@pytest.mark.parametrize(
    ("n_bytes", "text"),
    [
        (536_870_912, "512Mi"),
        (1000, "1000"),  # not a multiple of 1024: plain bytes
        (1536 * MI, "1536Mi"),  # 1.5Gi is not integral, so the next suffix down
        (GI, "1Gi"),
        (2 * GI, "2Gi"),
        (KI, "1Ki"),
        (1536, "1536"),  # 1.5Ki: plain bytes
        (3 * KI, "3Ki"),
        (10**9, "1000000000"),  # 10**9 = 2**9 × 5**9: not a multiple of 1Ki
        (0, "0"),
        (2**60, "1Ei"),
        (448_790_528, "428Mi"),  # 428 × 1048576
    ],
)
def test_format_bytes(n_bytes: int, text: str) -> None:
    assert format_bytes(n_bytes) == text


def test_format_bytes_rejects_negative() -> None:
    with pytest.raises(QuantityError):
        format_bytes(-1)


@pytest.mark.parametrize(
    ("n_bytes", "text"),
    [
        (320_000_000, "305.2Mi"),  # 320e6 / 1048576 = 305.18
        (512 * MI, "512Mi"),  # "512.0" loses its ".0"
        (1536 * MI, "1.5Gi"),
        (KI, "1Ki"),
        (1023, "1023B"),
        (0, "0B"),
        (1536, "1.5Ki"),
        (int(2.25 * GI), "2.2Gi"),  # 2.25 rounds half to even at one decimal: 2.2
    ],
)
def test_describe_bytes(n_bytes: int, text: str) -> None:
    assert describe_bytes(n_bytes) == text


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "milliseconds"),
    [
        ("5m", 300_000),  # 5 × 60000
        ("1h30m", 5_400_000),  # 3600000 + 1800000
        ("100ms", 100),
        ("7d", 604_800_000),  # 7 × 86400000
        ("30s", 30_000),
        ("1w", 604_800_000),
        ("1y", 31_536_000_000),  # 365 days
        ("1d12h", 129_600_000),  # 86400000 + 43200000
        ("1m1ms", 60_001),  # "ms" is not "m" followed by "s"
        ("24h", 86_400_000),
        (" 10m ", 600_000),
        ("0s", 0),  # zero is a duration: "cooldown: 0s" means no cooldown
        ("0ms", 0),
    ],
)
def test_parse_duration_ms(text: str, milliseconds: int) -> None:
    assert parse_duration_ms(text) == milliseconds


@pytest.mark.parametrize(
    "bad",
    ["7 days", "", " ", "5", "5M", "1.5h", "-5m", "1h 30m", "m", "5min", "7D", "0"],
)
def test_parse_duration_rejects(bad: str) -> None:
    with pytest.raises(QuantityError):
        parse_duration_ms(bad)


@pytest.mark.parametrize(
    ("milliseconds", "text"),
    [
        (604_800_000, "7d"),  # days, not "1w"
        (5_400_000, "1h30m"),
        (100, "100ms"),
        (300_000, "5m"),
        (90_061_001, "1d1h1m1s1ms"),  # 86400000 + 3600000 + 60000 + 1000 + 1
        (31_536_000_000, "365d"),
        (1, "1ms"),
        (0, "0s"),
    ],
)
def test_format_duration(milliseconds: int, text: str) -> None:
    assert format_duration(milliseconds) == text


@pytest.mark.parametrize("text", ["7d", "1h30m", "100ms", "5m", "30s", "1d1h1m1s1ms", "10m", "0s"])
def test_duration_round_trip(text: str) -> None:
    assert format_duration(parse_duration_ms(text)) == text


@pytest.mark.parametrize("bad", [-1, -86_400_000])
def test_format_duration_rejects(bad: int) -> None:
    with pytest.raises(QuantityError):
        format_duration(bad)


# --------------------------------------------------------------------------- integer helpers


@pytest.mark.parametrize(
    ("value", "granularity", "expected"),
    [(251, 10, 260), (260, 10, 260), (0, 10, 0), (1, 10, 10), (1, 1000, 1000), (1001, 1000, 2000)],
)
def test_round_up(value: int, granularity: int, expected: int) -> None:
    assert round_up(value, granularity) == expected


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [(7, 2, 4), (6, 3, 2), (0, 5, 0), (1, 1000, 1), (2500, 1000, 3), (3000, 1000, 3)],
)
def test_ceil_div(numerator: int, denominator: int, expected: int) -> None:
    assert ceil_div(numerator, denominator) == expected


@pytest.mark.parametrize("denominator", [0, -1])
def test_ceil_div_rejects_non_positive_denominator(denominator: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        ceil_div(1, denominator)


# --------------------------------------------------------------------------- round trips

MILLICORES = st.integers(min_value=0, max_value=10**9)
BYTE_COUNTS = st.integers(min_value=0, max_value=2**62)
CPU_TEXT = st.builds(
    lambda number, suffix: f"{number}{suffix}",
    st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "m", "u", "n", "k", "e2", "e-2"]),
)
MEMORY_TEXT = st.builds(
    lambda number, suffix: f"{number}{suffix}",
    st.decimals(min_value=0, max_value=10**4, places=2, allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "Ki", "Mi", "Gi", "k", "M", "G", "e3"]),
)


@settings(max_examples=200, deadline=None)
@given(MILLICORES)
def test_millicores_round_trip(millicores: int) -> None:
    assert parse_millicores(format_millicores(millicores)) == millicores


@settings(max_examples=200, deadline=None)
@given(BYTE_COUNTS)
def test_bytes_round_trip(n_bytes: int) -> None:
    assert parse_bytes(format_bytes(n_bytes)) == n_bytes


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=10 * 365 * 86_400_000))
def test_duration_ms_round_trip(milliseconds: int) -> None:
    assert parse_duration_ms(format_duration(milliseconds)) == milliseconds


@settings(max_examples=200, deadline=None)
@given(CPU_TEXT)
def test_cpu_text_canonical_is_stable(text: str) -> None:
    canonical = format_millicores(parse_millicores(text))
    assert format_millicores(parse_millicores(canonical)) == canonical


@settings(max_examples=200, deadline=None)
@given(MEMORY_TEXT)
def test_memory_text_canonical_is_stable(text: str) -> None:
    canonical = format_bytes(parse_bytes(text))
    assert format_bytes(parse_bytes(canonical)) == canonical


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=10**7), st.sampled_from(["", "m"]))
def test_parse_millicores_rounds_up_by_less_than_one(number: int, suffix: str) -> None:
    # "N.5m" is N and a half millicores, and "N.0005" cores is N × 1000 and a half: both
    # must round up to the next whole millicore, never down.
    if suffix == "m":
        assert parse_millicores(f"{number}.5m") == number + 1
    else:
        assert parse_millicores(f"{number}.0005") == number * 1000 + 1
