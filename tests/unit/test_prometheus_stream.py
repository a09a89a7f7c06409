"""ResultStream: an answer's elements and envelope, however its bytes are cut into chunks."""

from __future__ import annotations

import itertools
import json

import pytest

from unthrottle.sources.prometheus_stream import ResultStream

# A range answer as Prometheus 2.42 sends it with stats=all: the envelope goes on after
# the result array, so its end arrives in chunks of its own.
ANSWER = {
    "status": "success",
    "data": {
        "resultType": "matrix",
        "result": [
            {"metric": {"pod": "a-1", "container": "app"}, "values": [[1, "0.5"], [31, "0.25"]]},
            {"metric": {"pod": "b-ü", "container": "app"}, "values": [[1, "1e-3"]]},
        ],
        "stats": {
            "timings": {"evalTotalTime": 0.21, "execTotalTime": 0.22},
            "samples": {"totalQueryableSamples": 48000, "peakSamples": 96200},
        },
    },
    "warnings": ["a warning"],
}


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def _read(chunks: list[bytes]) -> tuple[list[object], dict[str, object]]:
    stream = ResultStream(chunks)
    elements = list(stream.elements())
    return elements, stream.envelope


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 10_000])
def test_every_chunk_size_gives_the_answer(size: int) -> None:
    data = json.dumps(ANSWER).encode()
    elements, envelope = _read([data[i : i + size] for i in range(0, len(data), size)])
    assert elements == ANSWER["data"]["result"]  # type: ignore[index]
    expected = json.loads(data)
    expected["data"]["result"] = []
    assert envelope == expected


def test_a_cut_anywhere_in_the_envelope_after_the_results_gives_the_answer() -> None:
    data = json.dumps(ANSWER, separators=(",", ":")).encode()
    after = data.index(b"]}],") + 3  # the end of the result array
    for first in range(after, len(data)):
        for second in (first + 1, first + 5):
            cuts = [c for c in (first, second) if c < len(data)]
            elements, envelope = _read(_chunks(data, cuts))
            assert len(elements) == 2, (first, second)
            assert envelope["data"]["stats"] == ANSWER["data"]["stats"]  # type: ignore[index]
            assert envelope["warnings"] == ["a warning"], (first, second)


def test_an_answer_cut_inside_the_results_is_an_error() -> None:
    data = json.dumps(ANSWER).encode()
    with pytest.raises(ValueError, match="ends inside"):
        _read([data[: data.index(b"0.25")]])


@pytest.mark.parametrize("size", [1, 5, 19, 10_000])
def test_a_label_value_that_looks_like_an_element_end_is_read_whole(size: int) -> None:
    # Label values are any text: "]}" inside one must not be taken for an element's end.
    answer = json.loads(json.dumps(ANSWER))
    answer["data"]["result"][0]["metric"]["pod"] = 'a]}, {"x": [1]}'
    data = json.dumps(answer).encode()
    elements, _ = _read([data[i : i + size] for i in range(0, len(data), size)])
    assert elements == answer["data"]["result"]
