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

import difflib
from collections.abc import Iterable
from typing import Annotated, Any, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, ValidationError
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo

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
    "unknown_fields",
    "unknown_keys",
    "validation_message",
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

    def model_post_init(self, context: Any, /) -> None:
        # Every pydantic instance carries the set of the fields it was given: 200 to 700
        # bytes, most of the weight of a small value, and a report holds ~30 such values
        # per workload. A frozen value never changes its set (a copy gets a copy of it),
        # so instances given the same fields share one.
        given = self.__pydantic_fields_set__
        object.__setattr__(
            self, "__pydantic_fields_set__", _SHARED_FIELD_SETS.setdefault(frozenset(given), given)
        )


_SHARED_FIELD_SETS: dict[frozenset[str], set[str]] = {}


def quantities_as_text(document: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """A copy of ``document`` where the numbers under ``keys`` are Kubernetes text.

    For input written by people: ``{"cpuRequest": 1}`` means one core, as in a manifest.
    """
    return {
        key: str(value) if key in keys and isinstance(value, int | float) else value
        for key, value in document.items()
    }


def _models_in(annotation: Any) -> tuple[type[BaseModel], ...]:
    """The pydantic models an annotation can hold (``X``, ``X | None``, ``list[X]``, ...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return (annotation,)
    return tuple(m for arg in get_args(annotation) for m in _models_in(arg))


def unknown_keys(document: dict[Any, Any], known: Iterable[str], path: str = "") -> list[str]:
    """The paths of the keys of ``document`` not in ``known``, each with
    ``(did you mean ...?)`` when a known name is spelt alike."""
    names = list(known)
    found = []
    for key in document:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            where = f"{path}.{key}" if path else str(key)
            found.append(where + (f" (did you mean {close[0]}?)" if close else ""))
    return found


def unknown_fields(model: type[BaseModel], document: Any, path: str = "") -> list[str]:
    """The paths of the keys in ``document`` that ``model`` has no field for, nested too.

    Models ignore unknown fields (the API server prunes them from custom resources before
    the operator reads them); a file a person wrote is checked with this first, so that a
    typo (``throttleTarge``) is an error, not a setting silently left at its default.
    """
    if not isinstance(document, dict):
        return []
    fields: dict[str, FieldInfo] = {}
    for name, info in model.model_fields.items():
        fields[name] = info
        fields[info.alias or name] = info
    aliases = [info.alias or name for name, info in model.model_fields.items()]
    found = unknown_keys({k: v for k, v in document.items() if k not in fields}, aliases, path)
    for key, value in document.items():
        known = fields.get(key)
        if known is None:
            continue
        where = f"{path}.{key}" if path else key
        items = list(enumerate(value)) if isinstance(value, list | tuple) else [(None, value)]
        for nested in _models_in(known.annotation):
            for index, item in items:
                at = where if index is None else f"{where}[{index}]"
                found += unknown_fields(nested, item, at)
    return found


def validation_message(error: ValidationError, prefix: str = "") -> str:
    """Every violation on one line, each with its path from ``prefix`` as the API server
    writes it (``spec.selector.matchExpressions[0].key: ...``), never pydantic's dump."""
    lines = []
    for item in error.errors(include_url=False):
        path = prefix
        for part in item["loc"]:
            if str(part).startswith("function-"):
                continue  # pydantic's name for a validator, not a field
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        message = str(item["msg"]).removeprefix("Value error, ")
        lines.append(f"{path.lstrip('.')}: {message}" if path else message)
    return "; ".join(lines)
