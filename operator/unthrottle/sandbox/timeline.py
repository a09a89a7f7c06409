"""The demo's simulated time: the pods the controller-manager made, each with its own resources.

A demo cannot wait hours for a patched configuration to have history of its own
(``history.minCoverage`` of the window), so after a patch it compresses time: the window
is simulated anew, ending now, with the patched Deployment's new pods running for its last
``settled`` part under the resources the operator applied, and the pods they replaced
before that under the old ones. A Deployment nobody patched keeps its pods for the whole
window, simulated exactly as before (OOM kills and container ages included).

:class:`DemoWorkload` is one Deployment's configurations, oldest first;
:func:`write_window` writes the OpenMetrics files for one window of all of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unthrottle.sandbox.loop import configured_scenario
from unthrottle.sim.openmetrics import PodRun, write_openmetrics, write_pod_runs
from unthrottle.sim.scenarios import Scenario

__all__ = ["DemoWorkload", "settled_ms", "template_text", "write_window"]

# The share of the window the newest configuration is given after a patch: above the
# default history.minCoverage (0.5), so the pass after a patch judges it on its own data.
SETTLED_SHARE = 0.6


def template_text(manifest: Mapping[str, Any]) -> str:
    """A Deployment's pod template as compact JSON: what its pods run, to compare."""
    return json.dumps(manifest["spec"]["template"], sort_keys=True, separators=(",", ":"))


def settled_ms(window_ms: int, step_ms: int) -> int:
    """How long, in the compressed time, a patched configuration has run (whole steps)."""
    return int(window_ms * SETTLED_SHARE) // step_ms * step_ms


@dataclass
class DemoWorkload:
    """One Deployment of the demo: its seed scenario and the configurations its pods ran."""

    seed: Scenario  # as the owner wrote it, with the first pods' names
    template: str = ""  # the pod template the newest configuration's pods run (template_text)
    configurations: list[Scenario] = field(default_factory=list)  # oldest first

    def __post_init__(self) -> None:
        if not self.configurations:
            self.configurations.append(self.seed)

    @property
    def patched(self) -> bool:
        return len(self.configurations) > 1

    def roll_out(self, manifest: Mapping[str, Any], pods: Sequence[tuple[str, str]]) -> None:
        """The Deployment now runs ``manifest``'s template in ``pods`` ((replicaset, pod))."""
        self.configurations.append(
            configured_scenario(self.seed, manifest).with_changes(pods=tuple(pods))
        )
        self.template = template_text(manifest)


def _runs(workload: DemoWorkload, start_ms: int, split_ms: int, end_ms: int) -> list[PodRun]:
    # The newest configuration ran since the split; the one it replaced before that.
    *_, before, now = workload.configurations
    return [
        PodRun(config, replicaset, pod, start, end)
        for config, start, end in ((before, start_ms, split_ms), (now, split_ms, end_ms))
        for replicaset, pod in config.pods
    ]


def write_window(
    workdir: Path,
    workloads: Iterable[DemoWorkload],
    *,
    end_ms: int,
    window_ms: int,
    step_ms: int,
) -> list[Path]:
    """The OpenMetrics files of the window ending at ``end_ms``, to backfill together."""
    workloads = list(workloads)
    start_ms = end_ms - window_ms
    still = [w.seed for w in workloads if not w.patched]
    files = []
    if still:
        path = workdir / "unpatched.om"
        with path.open("w", encoding="utf-8") as handle:
            write_openmetrics(handle, still, start_ms, end_ms, step_ms=step_ms)
        files.append(path)
    split_ms = end_ms - settled_ms(window_ms, step_ms)
    runs = [r for w in workloads if w.patched for r in _runs(w, start_ms, split_ms, end_ms)]
    if runs:
        path = workdir / "patched.om"
        with path.open("w", encoding="utf-8") as handle:
            write_pod_runs(handle, runs, step_ms)
        files.append(path)
    return files
