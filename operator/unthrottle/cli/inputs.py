"""Reading the files people write for the command line: one-line errors, never a dump.

A YAML error is one line with its line and column; the rest of the checking (unknown
fields, values) belongs to the command that knows what the document is.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["load_document"]


def load_document(text: str, what: str) -> Any:
    """``text`` parsed as YAML (a superset of JSON); :class:`ValueError` naming ``what``."""
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValueError(f"{what} is not JSON or YAML{where}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{what} is not JSON or YAML: {type(exc).__name__}") from None
