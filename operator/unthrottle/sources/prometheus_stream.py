"""Incremental decoding of a Prometheus API answer: one result element at a time.

This module owns reading a large JSON answer (a range query's matrix: 10,000 series of
2,016 points is about 600 MB of text) without holding it: the bytes arrive in chunks,
each element of ``data.result`` is decoded as soon as it is complete and handed to the
caller, and only the current element and one chunk are in memory. Everything else of the
answer (``status``, ``data.resultType``, ``data.stats``, ``warnings``, or an error body)
is decoded at the end into :attr:`ResultStream.envelope`, with ``data.result`` empty.

It relies on one property of the API's JSON, checked by the tests with Prometheus 2.42:
``data.result`` is an array of objects (the text ``"result":[`` cannot occur elsewhere,
since a quote inside a JSON string is escaped). Key order does not matter. Pure: bytes
in, Python values out.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any, Final

__all__ = ["ResultStream"]

_RESULT: Final = re.compile(r'"result"\s*:\s*\[')
_SPACE: Final = frozenset(" \t\r\n,")
_DECODER: Final = json.JSONDecoder()
# One element of a matrix is ~60 KB at 2,016 points; more text than this without a
# complete element is not a Prometheus answer (and would otherwise be held whole).
_MAX_ELEMENT_CHARS: Final = 64 * 1024 * 1024


class ResultStream:
    """The elements of ``data.result`` of an answer given as byte chunks, one at a time.

    Iterate :meth:`elements` to the end; then :attr:`envelope` is the rest of the answer
    (``ValueError`` if the text is not JSON).
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._buf = ""
        self._pos = 0
        self._done = False
        self.envelope: dict[str, Any] = {}

    def _more(self) -> bool:
        """Append the next non-empty piece of text (dropping what was consumed)."""
        while not self._done:
            chunk = next(self._chunks, None)
            if chunk is None:
                self._done = True
                text = self._utf8.decode(b"", final=True)
            else:
                text = self._utf8.decode(chunk)
            if text:
                self._buf = self._buf[self._pos :] + text
                self._pos = 0
                return True
        return False

    def _rest(self) -> str:
        parts = [self._buf[self._pos :]]
        self._buf, self._pos = "", 0  # taken: the next piece must not repeat it
        while self._more():
            parts.append(self._buf)
            self._buf, self._pos = "", 0
        return "".join(parts)

    def _finish(self, text: str) -> None:
        envelope = json.loads(text)
        if not isinstance(envelope, dict):
            raise ValueError("the answer is not a JSON object")
        self.envelope = envelope

    def elements(self) -> Iterator[Any]:
        """Each element of ``data.result``, decoded, in order."""
        match = _RESULT.search(self._buf)
        while match is None:
            if not self._more():
                self._finish(self._buf)  # no result array: an error or an empty answer
                return
            match = _RESULT.search(self._buf)
        prefix = self._buf[: match.end()]
        self._pos = match.end()
        while True:
            buf, pos = self._buf, self._pos
            while pos < len(buf) and buf[pos] in _SPACE:
                pos += 1
            self._pos = pos
            if pos == len(buf):
                if not self._more():
                    raise ValueError("the answer ends inside its result array")
                continue
            if buf[pos] == "]":
                self._pos = pos + 1
                self._finish(prefix + "]" + self._rest())
                return
            if (
                not self._done
                and len(buf) - pos <= _MAX_ELEMENT_CHARS
                and buf.find("]}", pos) == -1
            ):
                # Every element of an answer (a series, a sample) ends with "]}": without
                # one there is no complete element yet, and a failed decode costs as much
                # as a good one. Read on first.
                self._more()
                continue
            try:
                element, end = _DECODER.raw_decode(buf, pos)
            except json.JSONDecodeError:
                # Incomplete, or malformed: only the end of the text tells them apart.
                if len(buf) - pos > _MAX_ELEMENT_CHARS or not self._more():
                    raise ValueError("the answer ends inside a result element") from None
                continue
            self._pos = end
            yield element
