"""Formatters for command output: JSON, YAML and plain-text tables. One of each.

HTML (``unthrottle report -o html``) has its own module, :mod:`unthrottle.cli.html_report`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Protocol

import yaml

__all__ = ["OutputFormat", "TextSink", "render", "render_table", "write_document"]


class OutputFormat(StrEnum):
    JSON = "json"
    YAML = "yaml"
    TABLE = "table"
    HTML = "html"  # unthrottle report only


def render_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], max_width: int | None = None
) -> str:
    """Columns padded to their widest cell, two spaces apart, like ``kubectl get``.

    With ``max_width``, the first column (names) is shortened with "…" to fit.
    """
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    excess = 0 if max_width is None else sum(widths) + 2 * (len(widths) - 1) - max_width
    if excess > 0:
        first = max(len(headers[0]), widths[0] - excess)
        for row in cells:
            if len(row[0]) > first:
                row[0] = row[0][: first - 1] + "…"
        widths[0] = max(len(row[0]) for row in cells)
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def render(data: Mapping[str, object], fmt: OutputFormat, table: str) -> str:
    """``data`` as JSON or YAML (:func:`write_document`), or the ready-made ``table`` text."""
    if fmt is OutputFormat.TABLE or fmt is OutputFormat.HTML:
        return table
    text = io.StringIO()
    write_document(data, fmt, text)
    return text.getvalue()


class TextSink(Protocol):
    """Where text is written: a file, standard output, or anything with ``write``."""

    def write(self, text: str, /) -> object: ...


def write_document(data: Mapping[str, object], fmt: OutputFormat, stream: TextSink) -> None:
    """``data`` as JSON or YAML onto ``stream`` as it is encoded, never the whole text at
    once (a report of 10,000 workloads is tens of MB of it)."""
    if fmt is OutputFormat.JSON:
        json.dump(data, stream, indent=2, ensure_ascii=False)
        stream.write("\n")
    elif fmt is OutputFormat.YAML:
        yaml.safe_dump(dict(data), stream, sort_keys=False, allow_unicode=True)
    else:
        raise ValueError(f"{fmt} is not a document format")
