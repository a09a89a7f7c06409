"""Documents written as they are encoded (cli/output.py): the same text as rendered whole."""

from __future__ import annotations

import io

import pytest

from unthrottle.cli.output import OutputFormat, render, write_document

DOCUMENT = {"workloads": [{"name": "checkout", "cpu": "250m→500m", "ratio": 0.6}], "n": 1}


@pytest.mark.parametrize("fmt", [OutputFormat.JSON, OutputFormat.YAML])
def test_a_written_document_is_the_rendered_text(fmt: OutputFormat) -> None:
    stream = io.StringIO()
    write_document(DOCUMENT, fmt, stream)
    assert stream.getvalue() == render(DOCUMENT, fmt, "")
    assert "250m→500m" in stream.getvalue()  # not escaped


def test_a_table_is_not_a_document() -> None:
    with pytest.raises(ValueError, match="not a document format"):
        write_document(DOCUMENT, OutputFormat.TABLE, io.StringIO())
