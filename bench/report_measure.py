"""One ``unthrottle report``, measured from inside its own process: JSON on stdout.

Run by :mod:`report_scale` as a child process, under the code it measures (the working
tree, or a commit extracted by :func:`at_commit.snapshot` first on ``PYTHONPATH``), so it
imports only what the report itself needs. It does what ``unthrottle report -o json``
does (build info, fetch, engine, JSON rendering) with ``PrometheusConfig(collect_stats=
True)``: wall time of the whole report and of each part, the HTTP queries sent, the
samples Prometheus touched (``stats=all``) per query, and the process' RSS.

    python bench/report_measure.py --url URL --window 2h --at EPOCH [--timeout S]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unthrottle.cli import output
from unthrottle.cli.output import OutputFormat, render
from unthrottle.cli.report import build_report, report_document
from unthrottle.model.policy import ThrottlePolicySpec
from unthrottle.sources.prometheus import PrometheusConfig, PrometheusSource


def _status_kib(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status (``VmHWM``, ``VmRSS``), None if unreadable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class _CountingSink:
    """Where the report's JSON goes, as ``unthrottle report`` writes it: counted, not kept."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, text: str) -> int:
        self.bytes += len(text.encode())
        return len(text)


def measure(url: str, window: str, at: float, timeout: float) -> dict[str, Any]:
    """Run the report as ``unthrottle report -o json`` does; timings, queries, samples."""
    rss_after_import = _status_kib("VmRSS")
    started = time.perf_counter()
    policy = ThrottlePolicySpec.model_validate({"window": window})
    config = PrometheusConfig(url=url, timeout_seconds=timeout, retries=0, collect_stats=True)
    with PrometheusSource(config) as source:
        version = source.build_info().get("version", "?")
        fetch_started = time.perf_counter()
        fetched = source.fetch(policy.window, end=at)
        fetch_s = time.perf_counter() - fetch_started
        http_requests = source.queries_made
    engine_started = time.perf_counter()
    rows = build_report(fetched, policy)
    engine_s = time.perf_counter() - engine_started
    render_started = time.perf_counter()
    sink = _CountingSink()
    document = report_document(rows, fetched, url)
    # As the command writes it: streamed, or as one text by a code from before that.
    streamed = getattr(output, "write_document", None)
    if streamed is None:
        sink.write(render(document, OutputFormat.JSON, ""))
    else:
        streamed(document, OutputFormat.JSON, sink)
    render_s = time.perf_counter() - render_started
    total_s = time.perf_counter() - started
    stats = fetched.query_stats
    return {
        "prometheus_version": version,
        "total_seconds": total_s,
        "fetch_seconds": fetch_s,
        "engine_seconds": engine_s,
        "render_seconds": render_s,
        "queries": fetched.queries,
        "http_requests": http_requests,
        "chunks": fetched.chunks,
        "workloads": len(fetched.workloads),
        "containers": len(rows),
        "missing_series": sorted(fetched.missing_series),
        "output_bytes": sink.bytes,
        "total_queryable_samples": sum(s.total_queryable_samples or 0 for s in stats),
        "peak_samples_max": max((s.peak_samples or 0 for s in stats), default=0),
        "per_query": [
            {
                "name": s.name,
                "seconds": round(s.seconds, 4),
                "series": s.series,
                "totalQueryableSamples": s.total_queryable_samples,
                "peakSamples": s.peak_samples,
            }
            for s in stats
        ],
        "rss_after_import_kib": rss_after_import,
        "vmhwm_kib": _status_kib("VmHWM"),
        "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", required=True)
    parser.add_argument("--window", required=True)
    parser.add_argument("--at", type=float, required=True)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.url, args.window, args.at, args.timeout)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
