"""Kubernetes quantities and Prometheus durations: the one place they are parsed and formatted.

Inside unthrottle every CPU amount is an integer number of millicores and every memory
amount an integer number of bytes; every duration is an integer number of milliseconds.
Text such as ``"250m"``, ``"1.5"``, ``"512Mi"`` or ``"7d"`` exists only at the edges (the
CRDs, the CLI, the Kubernetes API) and is converted here. Conversions that cannot be exact
round *up*, explicitly: a request of ``0.0001`` cores becomes ``1m`` rather than nothing,
because an operator that rounds a limit down throttles the workload it meant to help.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_CEILING, Decimal, InvalidOperation

__all__ = [
    "QuantityError",
    "ceil_div",
    "describe_bytes",
    "describe_millicores",
    "format_bytes",
    "format_cores",
    "format_duration",
    "format_millicores",
    "parse_bytes",
    "parse_cores",
    "parse_duration_ms",
    "parse_millicores",
    "round_up",
]

MILLICORES_PER_CORE = 1000
# Kubernetes holds a quantity in an int64 (millicores for CPU, bytes for memory); larger
# values are input errors here too, not integers too large for the engine's floats.
_MAX_QUANTITY = Decimal(2**63 - 1)

_DECIMAL_SUFFIXES: dict[str, Decimal] = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_BINARY_SUFFIXES: dict[str, int] = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
# The Kubernetes quantity grammar: a signed decimal number, then a binary suffix, a
# decimal suffix, or a decimal exponent (e.g. ``1e3``).
_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:\d+\.?\d*|\.\d+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$"
)
_DURATION_UNITS_MS: dict[str, int] = {
    "ms": 1,
    "s": 1000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 7 * 86_400_000,
    "y": 365 * 86_400_000,
}
# Prometheus durations: one or more number+unit pairs, largest unit first (``1h30m``).
_DURATION = re.compile(r"^(?:\d+(?:ms|s|m|h|d|w|y))+$")
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")


class QuantityError(ValueError):
    """A quantity or duration that does not parse, said with the text that was given."""


def ceil_div(numerator: int, denominator: int) -> int:
    """Integer division rounding up (for non-negative numerator and positive denominator)."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    return -(-numerator // denominator)


def round_up(value: int, granularity: int) -> int:
    """``value`` rounded up to a multiple of ``granularity`` (``round_up(251, 10) == 260``)."""
    return ceil_div(value, granularity) * granularity


def _parse_decimal(text: str | int | float) -> Decimal:
    """A quantity as an exact Decimal in base units (cores or bytes)."""
    if isinstance(text, bool):
        raise QuantityError(f"not a quantity: {text!r}")
    if isinstance(text, int):
        return Decimal(text)
    if isinstance(text, float):
        if not math.isfinite(text):
            raise QuantityError(f"not a finite quantity: {text!r}")
        return Decimal(repr(text))
    match = _QUANTITY.match(text.strip())
    if match is None:
        raise QuantityError(f"not a Kubernetes quantity: {text!r}")
    try:
        number = Decimal(match.group("number"))
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only numbers
        raise QuantityError(f"not a Kubernetes quantity: {text!r}") from exc
    suffix = match.group("suffix") or ""
    if suffix in _BINARY_SUFFIXES:
        return number * _BINARY_SUFFIXES[suffix]
    if suffix in _DECIMAL_SUFFIXES:
        return number * _DECIMAL_SUFFIXES[suffix]
    try:
        return number * (Decimal(10) ** int(suffix[1:]))
    except (ArithmeticError, ValueError) as exc:  # decimal.Overflow, a 5000-digit exponent
        raise QuantityError(f"quantity out of range: {text!r}") from exc


def _non_negative(value: Decimal, text: object) -> Decimal:
    """``value`` if it is a quantity Kubernetes can hold: not negative, within int64."""
    if value < 0:
        raise QuantityError(f"quantity must not be negative: {text!r}")
    if value > _MAX_QUANTITY:
        raise QuantityError(f"quantity too large: {text!r}")
    return value


def parse_millicores(text: str | int | float) -> int:
    """CPU quantity → integer millicores, rounded up (``"0.25"`` → 250, ``"1"`` → 1000)."""
    millicores = _non_negative(_parse_decimal(text) * MILLICORES_PER_CORE, text)
    return int(millicores.to_integral_value(rounding=ROUND_CEILING))


def parse_cores(value: float) -> int:
    """A CPU amount in cores as Prometheus reports it (a float) → millicores, rounded up."""
    return parse_millicores(value)


def parse_bytes(text: str | int | float) -> int:
    """Memory quantity → integer bytes, rounded up (``"512Mi"`` → 536870912, ``"1G"`` → 10**9)."""
    amount = _non_negative(_parse_decimal(text), text)
    return int(amount.to_integral_value(rounding=ROUND_CEILING))


def format_millicores(millicores: int) -> str:
    """Canonical CPU text: whole cores without a suffix (``"2"``), else millicores (``"250m"``)."""
    if millicores < 0:
        raise QuantityError(f"negative CPU amount: {millicores}")
    if millicores % MILLICORES_PER_CORE == 0:
        return str(millicores // MILLICORES_PER_CORE)
    return f"{millicores}m"


def format_cores(millicores: int) -> float:
    """Millicores as a float number of cores, for JSON evidence and PromQL comparisons."""
    return millicores / MILLICORES_PER_CORE


def format_bytes(n_bytes: int) -> str:
    """Canonical memory text: the largest binary suffix that divides exactly (``"512Mi"``)."""
    if n_bytes < 0:
        raise QuantityError(f"negative memory amount: {n_bytes}")
    if n_bytes == 0:
        return "0"
    for suffix, factor in reversed(_BINARY_SUFFIXES.items()):
        if n_bytes % factor == 0:
            return f"{n_bytes // factor}{suffix}"
    return str(n_bytes)


def describe_millicores(millicores: int) -> str:
    """CPU for people: ``"250m"``, ``"1 core"``, ``"2 cores"`` (``"1"`` alone reads oddly)."""
    if millicores % MILLICORES_PER_CORE:
        return f"{millicores}m"
    cores = millicores // MILLICORES_PER_CORE
    return f"{cores} core" if cores == 1 else f"{cores} cores"


def describe_bytes(n_bytes: int) -> str:
    """Memory for people, to one decimal in the largest fitting binary unit (``"305.2Mi"``).

    Not a quantity to write back: use :func:`format_bytes` for that.
    """
    for suffix, factor in reversed(_BINARY_SUFFIXES.items()):
        if n_bytes >= factor:
            return f"{n_bytes / factor:.1f}".removesuffix(".0") + suffix
    return f"{n_bytes}B"


def parse_duration_ms(text: str) -> int:
    """A Prometheus duration (``"5m"``, ``"7d"``, ``"1h30m"``, ``"100ms"``) → milliseconds."""
    cleaned = text.strip()
    if not cleaned or _DURATION.match(cleaned) is None:
        raise QuantityError(f"not a duration (use e.g. 100ms, 30s, 5m, 1h30m, 7d): {text!r}")
    # Zero is a duration ("0s": no cooldown); fields that need more say so in their bounds.
    return sum(int(n) * _DURATION_UNITS_MS[unit] for n, unit in _DURATION_PART.findall(cleaned))


def format_duration(milliseconds: int) -> str:
    """Milliseconds → an exact Prometheus duration in days and smaller (604800000 → ``"7d"``)."""
    if milliseconds < 0:
        raise QuantityError(f"duration must not be negative: {milliseconds}")
    if milliseconds == 0:
        return "0s"
    parts: list[str] = []
    remaining = milliseconds
    for unit, factor in sorted(_DURATION_UNITS_MS.items(), key=lambda item: -item[1]):
        if unit in ("y", "w"):
            continue  # print days, as people write windows ("7d", not "1w")
        count, remaining = divmod(remaining, factor)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
