"""Safe PromQL building: label matchers whose values cannot change the query around them.

This module owns how untrusted text (namespace and pod names, label values from a policy's
extra matchers) becomes PromQL. Every value goes through :func:`quote` (a PromQL string
literal) and, for regular-expression matchers, :func:`regex_escape` first (RE2 syntax, the
flavour Prometheus, Thanos, Mimir and VictoriaMetrics share). Label *names* are not
escapable in PromQL, so they are validated instead. Nothing here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Matcher",
    "equality_matchers",
    "join_or",
    "label_name",
    "quote",
    "regex_escape",
    "selector",
    "tag",
]

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
# RE2 metacharacters. A backslash before any other ASCII punctuation is also a literal in
# RE2, but escaping only these keeps the regex readable in Prometheus' query log.
_REGEX_SPECIAL = frozenset("\\.+*?()|[]{}^$")
_STRING_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}

Op = Literal["=", "!=", "=~", "!~"]


def label_name(name: str) -> str:
    """``name`` if it is a valid Prometheus label name, else ``ValueError``."""
    if not _LABEL_NAME.match(name) or name.startswith("__"):
        raise ValueError(f"not a usable label name: {name!r}")
    return name


def quote(value: str) -> str:
    """``value`` as a double-quoted PromQL string literal that means exactly ``value``.

    Backslash, double quote and line breaks get Go escapes; any other control character
    a ``\\u`` escape, because PromQL rejects raw control characters inside a string.
    """
    out = ['"']
    for char in value:
        if char in _STRING_ESCAPES:
            out.append(_STRING_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        elif 0xD800 <= ord(char) <= 0xDFFF:
            raise ValueError(f"lone surrogate in label value: {value!r}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def regex_escape(value: str) -> str:
    """``value`` as an RE2 pattern that matches exactly ``value`` (and nothing else)."""
    return "".join("\\" + c if c in _REGEX_SPECIAL else c for c in value)


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label matcher; the value is raw text (``Matcher("namespace", "=", 'a"b')``)."""

    name: str
    op: Op
    value: str

    def __post_init__(self) -> None:
        label_name(self.name)

    def render(self) -> str:
        return f"{self.name}{self.op}{quote(self.value)}"

    @classmethod
    def equal(cls, name: str, value: str) -> Matcher:
        return cls(name, "=", value)

    @classmethod
    def any_of(cls, name: str, values: Iterable[str]) -> Matcher:
        """``name=~"a|b"`` for the literal values (each regex-escaped); at least one value."""
        items = sorted(set(values))
        if not items:
            raise ValueError(f"no values for {name}")
        return cls(name, "=~", "|".join(regex_escape(v) for v in items))


def equality_matchers(labels: Mapping[str, str]) -> tuple[Matcher, ...]:
    """``{"cluster": "prod"}`` → ``(cluster="prod",)``, sorted by name for stable queries."""
    return tuple(Matcher.equal(k, v) for k, v in sorted(labels.items()))


def selector(metric: str, matchers: Iterable[Matcher]) -> str:
    """``metric{m1, m2}``: a metric name (validated) and its label matchers."""
    if not _METRIC_NAME.match(metric):
        raise ValueError(f"not a metric name: {metric!r}")
    return metric + "{" + ", ".join(m.render() for m in matchers) + "}"


def tag(expr: str, label: str, value: str) -> str:
    """``expr`` with a constant label added (``label_replace`` on an always-matching regex).

    Tagging lets several statistics travel in one query joined with ``or``: the results
    differ in that label, so ``or`` keeps every side (checked against Prometheus 2.42).
    """
    return f'label_replace({expr}, {quote(label_name(label))}, {quote(value)}, "", "")'


def join_or(exprs: Iterable[str]) -> str:
    """Tagged expressions joined with ``or`` (each parenthesised)."""
    parts = [f"({e})" for e in exprs]
    if not parts:
        raise ValueError("nothing to join")
    return "\nor\n".join(parts)
