"""Annotated field types shared by every pydantic model of unthrottle.

On input, text is a Kubernetes quantity and a Python ``int`` is already the internal unit
(millicores, bytes, milliseconds). A bare *number* for a CPU quantity is ambiguous (in a
manifest ``cpu: 1`` means one core, inside unthrottle 1 means 1m), so the edges turn such
numbers into text before validating (:func:`quantities_as_text`), and the CRDs declare CPU
quantities as strings.

Each type accepts the text a user writes (``"250m"``, ``"512Mi"``, ``"7d"``, or a float
number of cores from Prometheus), stores the integer the rest of the code computes with
(millicores, bytes, milliseconds), and serialises back to the canonical text in JSON
mode. The conversions themselves live in :mod:`unthrottle.model.quantity`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer
from pydantic.alias_generators import to_camel

from unthrottle.model.quantity import (
    format_bytes,
    format_cores,
    format_duration,
    format_millicores,
    parse_bytes,
    parse_duration_ms,
    parse_millicores,
)

__all__ = [
    "ApiModel",
    "Bytes",
    "CoresAsMillicores",
    "DurationMs",
    "FrozenApiModel",
    "Millicores",
    "MillicoresAsCores",
    "quantities_as_text",
]


def _millicores(value: Any) -> Any:
    return (
        value if isinstance(value, int) and not isinstance(value, bool) else parse_millicores(value)
    )


def _bytes(value: Any) -> Any:
    return value if isinstance(value, int) and not isinstance(value, bool) else parse_bytes(value)


def _duration(value: Any) -> Any:
    return (
        value
        if isinstance(value, int) and not isinstance(value, bool)
        else parse_duration_ms(value)
    )


def _cores(value: Any) -> Any:
    # Prometheus answers in cores (floats); 0.25 cores is 250 millicores, rounded up.
    if isinstance(value, bool):
        raise ValueError("expected a number of cores")
    if isinstance(value, int | float):
        return parse_millicores(float(value))
    return value


Millicores = Annotated[
    int,
    BeforeValidator(_millicores),
    PlainSerializer(format_millicores, return_type=str, when_used="json"),
]
"""A CPU quantity: written ``"250m"`` or ``"1.5"``, held as integer millicores."""

Bytes = Annotated[
    int,
    BeforeValidator(_bytes),
    PlainSerializer(format_bytes, return_type=str, when_used="json"),
]
"""A memory quantity: written ``"512Mi"``, held as integer bytes."""

DurationMs = Annotated[
    int,
    BeforeValidator(_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
"""A Prometheus duration: written ``"5m"`` or ``"7d"``, held as integer milliseconds."""

CoresAsMillicores = Annotated[
    int,
    BeforeValidator(_cores),
    PlainSerializer(format_cores, return_type=float, when_used="json"),
]
"""A CPU rate measured in cores (``0.35``), held as integer millicores (350), rounded up."""

MillicoresAsCores = Annotated[
    int,
    PlainSerializer(format_cores, return_type=float, when_used="json"),
]
"""A CPU rate the engine computed, held as integer millicores, shown in cores (``0.35``).

Unlike :data:`CoresAsMillicores` it takes no cores on input: it is for output values.
"""


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields ignored (CRDs prune them)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        validate_default=True,
    )


class FrozenApiModel(ApiModel):
    """An immutable value of the API (statistics, recommendations)."""

    model_config = ConfigDict(frozen=True)


def quantities_as_text(document: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """A copy of ``document`` where the numbers under ``keys`` are Kubernetes text.

    For input written by people: ``{"cpuRequest": 1}`` means one core, as in a manifest.
    """
    return {
        key: str(value) if key in keys and isinstance(value, int | float) else value
        for key, value in document.items()
    }
