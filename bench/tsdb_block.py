"""A Prometheus TSDB block written directly: weeks of a large fleet without OpenMetrics text.

``promtool tsdb create-blocks-from openmetrics`` needs the whole window as text (about
5.7 KB per pod and scrape) and writes 2-hour blocks: a week of 10,000 Deployments would be
hundreds of GB of text and days of backfill. This module writes one block of the same
series straight from the simulator's values (:func:`unthrottle.sim.openmetrics.
iter_scenario_series`), in the block format of ``prometheus/tsdb/docs/format`` (index
format 2, chunks format 1, XOR chunks of 120 samples as Prometheus' head cuts them):

- a *base window* (e.g. two hours) is simulated once and repeated ``tiles`` times: a
  counter keeps counting (each tile adds the base window's increase plus one step's, so
  the rate across a tile boundary is the window's mean), a gauge repeats;
- chunk encoding and CRC32-Castagnoli run in C (``tsdb_xor.c``, built here with the
  machine's compiler); the index (symbols, series, label indices, postings, their offset
  tables) is written here.

``--check`` writes the scenarios' two hours both ways (this writer with one tile, and
promtool from the same text) and compares what Prometheus answers over each.

    .venv/bin/python bench/tsdb_block.py --check
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import secrets
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from unthrottle.sandbox.prometheus import PrometheusServer, backfill
from unthrottle.sim.openmetrics import iter_scenario_series, write_openmetrics
from unthrottle.sim.scenarios import all_scenarios

BENCH = Path(__file__).resolve().parent
SEGMENT_BYTES = 512 * 1024 * 1024  # Prometheus' default chunk segment size
SAMPLES_PER_CHUNK = 120  # as Prometheus' head cuts chunks
INDEX_MAGIC = 0xBAAAD700
CHUNKS_MAGIC = 0x85BD40DD
TOMBSTONES = bytes.fromhex("0130ba300100000000")  # magic, version 1, no tombstones

Labels = tuple[tuple[str, str], ...]  # sorted by name, __name__ included


# -- the C part -----------------------------------------------------------------------


def _library() -> ctypes.CDLL:
    """``tsdb_xor.c`` compiled (once per source version) and loaded."""
    source = BENCH / "tsdb_xor.c"
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "unthrottle-bench"
    cache.mkdir(parents=True, exist_ok=True)
    built = cache / f"tsdb_xor-{int(source.stat().st_mtime_ns)}-{source.stat().st_size}.so"
    if not built.exists():
        partial = built.with_suffix(".tmp")
        subprocess.run(
            ["cc", "-O2", "-shared", "-fPIC", "-o", str(partial), str(source)], check=True
        )
        partial.rename(built)
    lib = ctypes.CDLL(str(built))
    lib.crc32c.restype = ctypes.c_uint32
    lib.crc32c.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    lib.encode_series.restype = ctypes.c_size_t
    lib.encode_series.argtypes = [
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_double,
        ctypes.c_int,
        ctypes.c_int64,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_int64),
        ctypes.POINTER(ctypes.c_int64),
    ]
    lib.encode_chunk_metas.restype = ctypes.c_size_t
    lib.encode_chunk_metas.argtypes = [
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_uint64,
        ctypes.c_void_p,
    ]
    return lib


# -- encodings ------------------------------------------------------------------------


def uvarint(x: int) -> bytes:
    out = bytearray()
    while x >= 0x80:
        out.append((x & 0x7F) | 0x80)
        x >>= 7
    out.append(x)
    return bytes(out)


def _string(text: str) -> bytes:
    data = text.encode()
    return uvarint(len(data)) + data


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ulid(ms: int) -> str:
    """A ULID (48-bit time, 80 random bits, Crockford base 32), as Prometheus names blocks."""
    value = (ms << 80) | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def parse_series(text: str) -> Labels:
    """``name{k="v",...}`` as sorted label pairs with ``__name__``; an empty value is no
    label (as Prometheus stores it: ``container=""`` is the pod-level cgroup's)."""
    brace = text.index("{")
    pairs = [
        (k, re.sub(r"\\[\\\"n]", lambda m: _UNESCAPE[m.group(0)], v))
        for k, v in _PAIR.findall(text, brace)
        if v
    ]
    return tuple(sorted([("__name__", text[:brace]), *pairs]))


# -- the writer -----------------------------------------------------------------------


@dataclass
class _Series:
    labels: Labels
    chunk_metas: bytes  # the series entry's chunk part (encode_chunk_metas)


@dataclass
class BlockWriter:
    """One block in ``directory/<ulid>``: :meth:`add` each series, then :meth:`finish`."""

    directory: Path
    samples_per_chunk: int = SAMPLES_PER_CHUNK
    ulid: str = ""
    _lib: ctypes.CDLL = field(init=False, repr=False)
    _series: list[_Series] = field(default_factory=list, init=False, repr=False)
    _segment: BinaryIO | None = field(default=None, init=False, repr=False)
    _segment_index: int = field(default=0, init=False)
    _segment_size: int = field(default=0, init=False)
    _buffers: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    mint: int = field(default=2**63 - 1, init=False)
    maxt: int = field(default=-(2**63), init=False)
    samples: int = field(default=0, init=False)
    chunks: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._lib = _library()
        self.ulid = self.ulid or new_ulid(int(time.time() * 1000))
        self.block = self.directory / self.ulid
        (self.block / "chunks").mkdir(parents=True)

    def _buffer(self, name: str, size: int) -> Any:
        """A reused C buffer of at least ``size`` bytes."""
        buffer = self._buffers.get(name)
        if buffer is None or len(buffer) < size:
            buffer = self._buffers[name] = (ctypes.c_char * size)()
        return buffer

    def _open_segment(self, need: int) -> BinaryIO:
        if self._segment is None or self._segment_size + need > SEGMENT_BYTES:
            if self._segment is not None:
                self._segment.close()
            self._segment_index += 1
            path = self.block / "chunks" / f"{self._segment_index:06d}"
            self._segment = path.open("wb")
            self._segment.write(struct.pack(">IB3x", CHUNKS_MAGIC, 1))
            self._segment_size = 8
        return self._segment

    def add(
        self,
        labels: Labels,
        t0_ms: int,
        step_ms: int,
        base: array[float],
        present: bytes,
        *,
        tiles: int = 1,
        delta: float = 0.0,
        fill_later: bool = True,
    ) -> None:
        """One series: ``base`` (with ``present``) at ``t0_ms + j * step_ms``, repeated
        ``tiles`` times, tile ``k`` adding ``k * delta`` (``tsdb_xor.c``)."""
        n = len(base)
        samples = n * tiles
        n_chunks_max = -(-samples // self.samples_per_chunk) + 1
        scratch = self._buffer("scratch", self.samples_per_chunk * 20 + 16)
        out = self._buffer("out", samples * 20 + n_chunks_max * 40)
        metas = (ctypes.c_int64 * (3 * n_chunks_max))()
        n_chunks, n_samples = ctypes.c_int64(), ctypes.c_int64()
        base_address, _ = base.buffer_info()
        size = self._lib.encode_series(
            t0_ms,
            step_ms,
            base_address,
            present,
            n,
            tiles,
            delta,
            int(fill_later),
            self.samples_per_chunk,
            scratch,
            out,
            metas,
            ctypes.byref(n_chunks),
            ctypes.byref(n_samples),
        )
        if n_chunks.value == 0:
            return
        segment = self._open_segment(size)
        base_ref = (self._segment_index - 1) << 32 | self._segment_size
        segment.write(memoryview(out)[:size])
        self._segment_size += size
        encoded = self._buffer("metas", n_chunks.value * 40 + 16)
        length = self._lib.encode_chunk_metas(metas, n_chunks.value, base_ref, encoded)
        self._series.append(_Series(labels, bytes(memoryview(encoded)[:length])))
        self.mint = min(self.mint, metas[0])
        self.maxt = max(self.maxt, metas[3 * (n_chunks.value - 1) + 1])
        self.samples += n_samples.value
        self.chunks += n_chunks.value

    def finish(self) -> dict[str, Any]:
        """Write the index, ``meta.json`` and ``tombstones``; the block's meta."""
        if self._segment is not None:
            self._segment.close()
        if not self._series:
            raise ValueError("a block needs at least one series")
        _IndexWriter(self._lib, self._series).write(self.block / "index")
        (self.block / "tombstones").write_bytes(TOMBSTONES)
        meta = {
            "ulid": self.ulid,
            "minTime": self.mint,
            "maxTime": self.maxt + 1,  # exclusive
            "stats": {
                "numSamples": self.samples,
                "numSeries": len(self._series),
                "numChunks": self.chunks,
            },
            "compaction": {"level": 1, "sources": [self.ulid]},
            "version": 1,
        }
        (self.block / "meta.json").write_text(json.dumps(meta, indent="\t"))
        return meta


class _IndexWriter:
    """Index format 2: symbols, series (16-byte aligned, id = offset / 16), label
    indices, postings (4-byte aligned), the label and postings offset tables, the TOC."""

    def __init__(self, lib: ctypes.CDLL, series: list[_Series]) -> None:
        self._lib = lib
        self._series = sorted(series, key=lambda s: s.labels)
        self._out: BinaryIO | None = None
        self._pos = 0

    def _write(self, data: bytes) -> None:
        assert self._out is not None
        self._out.write(data)
        self._pos += len(data)

    def _align(self, boundary: int) -> None:
        if self._pos % boundary:
            self._write(b"\0" * (boundary - self._pos % boundary))

    def _crc(self, data: bytes) -> bytes:
        return struct.pack(">I", self._lib.crc32c(data, len(data)))

    def _section(self, body: bytes) -> None:
        """``len <4b> | body | CRC32(body)``."""
        self._write(struct.pack(">I", len(body)) + body + self._crc(body))

    def write(self, path: Path) -> None:
        symbols = sorted({text for s in self._series for pair in s.labels for text in pair})
        ref = {text: i for i, text in enumerate(symbols)}
        with path.open("wb") as self._out:
            self._write(struct.pack(">IB", INDEX_MAGIC, 2))
            toc_symbols = self._pos
            self._section(struct.pack(">I", len(symbols)) + b"".join(map(_string, symbols)))

            toc_series = self._pos
            postings: dict[tuple[str, str], list[int]] = {}
            every: list[int] = []
            for s in self._series:
                self._align(16)
                series_id = self._pos // 16
                every.append(series_id)
                parts = [uvarint(len(s.labels))]
                for name, value in s.labels:
                    parts.append(uvarint(ref[name]) + uvarint(ref[value]))
                    postings.setdefault((name, value), []).append(series_id)
                body = b"".join(parts) + s.chunk_metas
                self._write(uvarint(len(body)) + body + self._crc(body))

            values_of: dict[str, list[str]] = {}
            for name, value in sorted(postings):
                values_of.setdefault(name, []).append(value)
            toc_label_indices = self._pos
            label_offsets: list[tuple[str, int]] = []
            for name, values in values_of.items():
                self._align(4)
                label_offsets.append((name, self._pos))
                refs = struct.pack(f">{len(values)}I", *(ref[v] for v in values))
                self._section(struct.pack(">II", 1, len(values)) + refs)

            toc_postings = self._pos
            posting_offsets: list[tuple[str, str, int]] = []
            for key, ids in [(("", ""), every), *sorted(postings.items())]:
                self._align(4)
                posting_offsets.append((*key, self._pos))
                self._section(struct.pack(f">I{len(ids)}I", len(ids), *ids))

            toc_label_table = self._pos
            entries = [uvarint(1) + _string(n) + uvarint(o) for n, o in label_offsets]
            self._section(struct.pack(">I", len(entries)) + b"".join(entries))
            toc_postings_table = self._pos
            entries = [
                uvarint(2) + _string(n) + _string(v) + uvarint(o) for n, v, o in posting_offsets
            ]
            self._section(struct.pack(">I", len(entries)) + b"".join(entries))

            toc = struct.pack(
                ">6Q",
                toc_symbols,
                toc_series,
                toc_label_indices,
                toc_label_table,
                toc_postings,
                toc_postings_table,
            )
            self._write(toc + self._crc(toc))


# -- the simulator's series -----------------------------------------------------------


def counter_delta(values: Iterable[float], integral: bool) -> float:
    """What a counter gains over a base window repeated: its increase over the window
    plus one mean step's (rounded for a counter of whole numbers). Worked: 0, 10, 20
    gains 30 a tile, so the next tile starts at 30, one step on from 20."""
    seen = [v for v in values]
    if len(seen) < 2:
        return 0.0
    increase = seen[-1] - seen[0]
    delta = increase + increase / (len(seen) - 1)
    return float(round(delta)) if integral else delta


def write_fleet_block(
    directory: Path,
    series: Iterator[tuple[str, tuple[str, int, list[str]]]],
    start_ms: int,
    step_ms: int,
    tiles: int,
) -> dict[str, Any]:
    """The simulator's series (:func:`unthrottle.sim.openmetrics.iter_scenario_series`
    over the base window from ``start_ms``) as one block, the window repeated ``tiles``
    times."""
    writer = BlockWriter(directory)
    for kind, (text, offset, values) in series:
        base = array("d", (float(v) if v else 0.0 for v in values))
        present = bytes(1 if v else 0 for v in values)
        delta = 0.0
        if kind == "counter" and tiles > 1:
            shown = [v for v in values if v]
            delta = counter_delta(map(float, shown), integral="." not in "".join(shown))
        writer.add(
            parse_series(text),
            start_ms + offset * step_ms,
            step_ms,
            base,
            present,
            tiles=tiles,
            delta=delta,
        )
    return writer.finish()


# -- the check ------------------------------------------------------------------------


def _query(url: str, promql: str, at: float) -> list[dict[str, Any]]:
    form = urllib.parse.urlencode({"query": promql, "time": f"{at:.3f}"}).encode()
    try:
        with urllib.request.urlopen(f"{url}/api/v1/query", form, timeout=120) as answer:
            result: list[dict[str, Any]] = json.load(answer)["data"]["result"]
    except urllib.error.HTTPError as error:
        raise SystemExit(f"{promql}: {error.read().decode()[:300]}") from None
    return result


def _raw_samples(url: str, promql: str, at: float) -> dict[Labels, list[list[Any]]]:
    """Every stored sample of a range selector, by series."""
    return {tuple(sorted(r["metric"].items())): r["values"] for r in _query(url, promql, at)}


def check(workdir: Path) -> int:
    """The scenarios' two hours through this writer and through promtool: Prometheus
    must answer the same over both (every sample of every series)."""

    end_ms, step_ms = 1_767_225_600_000, 15_000
    start_ms = end_ms - 2 * 3_600_000
    text = workdir / "scenarios.om"
    with text.open("w") as handle:
        write_openmetrics(handle, all_scenarios(), start_ms, end_ms, step_ms=step_ms)
    ours, theirs = PrometheusServer(workdir / "ours"), PrometheusServer(workdir / "promtool")
    for server in (ours, theirs):
        server.workdir.mkdir()
        server.data_dir.mkdir()
    backfill(text, theirs.data_dir)
    series = iter_scenario_series(all_scenarios(), start_ms, end_ms, step_ms=step_ms)
    meta = write_fleet_block(ours.data_dir, series, start_ms, step_ms, tiles=1)
    print(f"wrote {meta['stats']}", file=sys.stderr)
    answers = []
    for server in (ours, theirs):
        server.start()
        try:
            answers.append(_raw_samples(server.url, '{__name__=~".+"}[3h]', end_ms / 1000))
        finally:
            server.stop()
    if answers[0] != answers[1]:
        only = set(answers[0]) ^ set(answers[1])
        differ = [k for k in set(answers[0]) & set(answers[1]) if answers[0][k] != answers[1][k]]
        print(f"differ: {len(only)} series in one only, {len(differ)} with other values")
        for key in sorted(only)[:5]:
            print(f"  only {'ours' if key in answers[0] else 'promtool'}: {dict(key)}")
        return 1
    print(f"same as promtool: {len(answers[0])} series, every sample")
    return _check_tiles(workdir, answers[1], start_ms, end_ms, step_ms)


def _check_tiles(
    workdir: Path, once: dict[Labels, list[list[Any]]], start_ms: int, end_ms: int, step_ms: int
) -> int:
    """Four tiles of the same two hours: each series has four times the samples, the
    first tile's are the window's, no counter resets, and Prometheus' label values and
    series lookups (the postings offset table, the series entries) answer."""
    tiles, window_ms = 4, end_ms - start_ms
    server = PrometheusServer(workdir / "tiled")
    server.workdir.mkdir()
    server.data_dir.mkdir()
    series = iter_scenario_series(all_scenarios(), start_ms, end_ms, step_ms=step_ms)
    write_fleet_block(server.data_dir, series, start_ms, step_ms, tiles=tiles)
    end_s = (start_ms + tiles * window_ms) / 1000
    failures: list[str] = []
    server.start()
    try:
        tiled = _raw_samples(server.url, '{__name__=~".+"}[9h]', end_s)
        names = {dict(k)["__name__"] for k in tiled}
        counters = sorted(n for n in names if n.endswith("_total"))
        resets = sum(
            float(_query(server.url, f"sum(resets({name}[9h]))", end_s)[0]["value"][1])
            for name in counters
        )
        with urllib.request.urlopen(f"{server.url}/api/v1/label/namespace/values") as answer:
            namespaces = json.load(answer)["data"]
    finally:
        server.stop()
    if set(tiled) != set(once):
        failures.append(f"{len(set(tiled) ^ set(once))} series differ")
    for key, samples in once.items():
        if key in tiled and len(tiled[key]) != tiles * len(samples):
            failures.append(f"{dict(key)}: {len(tiled[key])} samples, not {tiles}×{len(samples)}")
        elif key in tiled and tiled[key][: len(samples)] != samples:
            failures.append(f"{dict(key)}: the first tile differs")
    if resets:
        failures.append(f"{resets} counter resets across the tiles")
    if failures:
        print("\n".join(failures[:10]))
        return 1
    print(f"tiled ×{tiles}: {len(tiled)} series, no reset of {counters}; namespaces {namespaces}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with promtool")
    parser.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args(argv)
    if not args.check:
        parser.error("nothing to do: the writer is used by report_scale.py; try --check")
    with tempfile.TemporaryDirectory(prefix="tsdb-block-", dir=args.tmp) as tmp:
        return check(Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
