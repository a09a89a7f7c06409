"""Scenarios and pod runs written as the series a kube-prometheus-stack Prometheus holds.

This module owns the test data files: OpenMetrics text that ``promtool tsdb
create-blocks-from openmetrics FILE DIR`` backfills into a TSDB, for

- *scenarios* (:func:`iter_openmetrics`, :func:`write_openmetrics`,
  :func:`render_openmetrics`): each scenario's ``replicas`` pods, all with the scenario's
  resources over the whole range, named as the scenario's ``kind``'s controller names
  them (a Deployment's ``<deployment>-<rs hash>-<pod hash>`` of ReplicaSet
  ``<deployment>-<rs hash>``, a StatefulSet's ``<name>-<ordinal>``, a DaemonSet's
  ``<name>-<pod hash>``; names and uids are hashes of the scenario, so fixed), or the
  real names it carries in ``pods``. Counters start at the value the
  container accumulated before the window (its age times the first step's rate), so
  consumers must use ``rate``/``increase``.
- *pod runs* (:class:`PodRun`, :func:`write_pod_runs`): pods of several configurations,
  each with its own resources, ReplicaSet and life, counters from 0 at its start.

Which series, labels and values a pod has is :mod:`.series`' business, how its numbers
are simulated :mod:`.pods`'.

Streaming: the CPU simulation runs once per pod in the per-scrape-step mode
(:func:`unthrottle.sim.cfs.simulate_steps`) and only compact integer arrays are kept
(about 48 bytes per pod and step, against ~3 KB of text); the text is generated family
by family and yielded one series at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TextIO

from unthrottle.model.workload import WorkloadKind
from unthrottle.sim.pods import Pod, PodIdentity, simulate_pod
from unthrottle.sim.scenarios import Scenario, pod_seed
from unthrottle.sim.series import (
    Context,
    Shape,
    check_format,
    check_periods,
    iter_series,
    render,
    timestamp,
)

__all__ = [
    "DEFAULT_SAMPLE_PERIODS",
    "PodIdentity",
    "PodRun",
    "Shape",
    "iter_openmetrics",
    "iter_pod_runs",
    "iter_scenario_series",
    "pod_identities",
    "render_openmetrics",
    "replicaset_name",
    "write_openmetrics",
    "write_pod_runs",
]

# Kubernetes' SafeEncodeString alphabet (no vowels, no look-alike digits), used for the
# pod-template-hash and the generated pod name suffix.
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_NODES = 16

# Periods simulated per scrape step by default: 60 of a 30 s step's 300 (of a 60 s step's
# 600). Throttle ratios over an hour stay within a few percent of the exact simulation
# (the GIL scenario, whose busy spells are rare events, varies most); pass None for exact.
DEFAULT_SAMPLE_PERIODS = 60


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("\x00".join(str(p) for p in parts).encode()).digest()


def _encode(digest: bytes, length: int) -> str:
    return "".join(_ALPHABET[b % len(_ALPHABET)] for b in digest[:length])


def replicaset_name(scenario: Scenario) -> str:
    """``<deployment>-<pod-template-hash>``: the Deployment's current ReplicaSet."""
    rs_hash = _encode(_digest("rs", scenario.namespace, scenario.deployment), 10)
    return f"{scenario.deployment}-{rs_hash}"


def _generated_name(scenario: Scenario, index: int, digest: bytes) -> tuple[str, str]:
    """(owner, pod) of the pod ``index`` as the kind's controller would name it."""
    if scenario.kind is WorkloadKind.STATEFULSET:
        return scenario.deployment, f"{scenario.deployment}-{index}"
    owner = (
        replicaset_name(scenario)
        if scenario.kind is WorkloadKind.DEPLOYMENT
        else scenario.deployment
    )
    return owner, f"{owner}-{_encode(digest, 5)}"


def pod_identities(scenario: Scenario) -> list[PodIdentity]:
    """The scenario's pods, ``replicas`` of them, deterministic from its names (or the
    real names it carries in ``pods``). The owner (``replicaset``) of a StatefulSet's or
    DaemonSet's pod is the workload itself, as in ``kube_pod_owner``."""
    out = []
    for index in range(scenario.replicas):
        digest = _digest("pod", scenario.namespace, scenario.deployment, index)
        h = digest.hex()
        node_index = digest[10] % _NODES
        replicaset, pod = (
            scenario.pods[index] if scenario.pods else _generated_name(scenario, index, digest)
        )
        out.append(
            PodIdentity(
                namespace=scenario.namespace,
                deployment=scenario.deployment,
                replicaset=replicaset,
                pod=pod,
                uid=f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}",
                node=f"worker-{node_index:02d}",
                instance=f"10.0.1.{10 + node_index}:10250",
            )
        )
    return out


def _simulate_scenarios(
    scenarios: Scenario | Iterable[Scenario],
    start_ms: int,
    end_ms: int,
    *,
    step_ms: int,
    shape: Shape,
    extra_labels: Mapping[str, str] | None,
    sample_periods: int | None,
) -> tuple[Context, list[Pod]]:
    if end_ms <= start_ms:
        raise ValueError("end_ms must be after start_ms")
    extra = check_format(shape, step_ms, extra_labels)
    items = [scenarios] if isinstance(scenarios, Scenario) else list(scenarios)
    for s in items:
        check_periods(s, step_ms)
    n_steps = -(-(end_ms - start_ms) // step_ms)
    ctx = Context(
        timestamps=[timestamp(start_ms + j * step_ms) for j in range(n_steps)],
        extra=extra,
        step_ms=step_ms,
    )
    pods: list[Pod] = []
    for s in items:
        for index, ident in enumerate(pod_identities(s)):
            pod = simulate_pod(
                s,
                ident,
                seed=pod_seed(s.seed, index),
                n_steps=n_steps,
                step_ms=step_ms,
                sample_periods=sample_periods,
                age_ms=s.container_age_ms,
            )
            pod.rs_steps = n_steps if index == 0 else 0
            pods.append(pod)
    return ctx, pods


def iter_openmetrics(
    scenarios: Scenario | Iterable[Scenario],
    start_ms: int,
    end_ms: int,
    *,
    step_ms: int = 30_000,
    shape: Shape = "default",
    extra_labels: Mapping[str, str] | None = None,
    sample_periods: int | None = DEFAULT_SAMPLE_PERIODS,
) -> Iterator[str]:
    """OpenMetrics text for the scenarios' pods over ``[start_ms, end_ms)``, in chunks.

    Samples are at ``start_ms, start_ms + step_ms, ...`` (epoch milliseconds; the step
    must be a whole number of CFS periods). Each chunk is whole lines: a family's
    header or one series' samples; the last is ``# EOF``. ``extra_labels`` (e.g.
    ``{"cluster": "prod"}``) are added to every series. ``sample_periods`` trades accuracy
    for speed (see :func:`unthrottle.sim.cfs.simulate_steps` and
    ``DEFAULT_SAMPLE_PERIODS``); None simulates every period. All pods are simulated
    first (into compact arrays), then the text is generated.
    """
    ctx, pods = _simulate_scenarios(
        scenarios,
        start_ms,
        end_ms,
        step_ms=step_ms,
        shape=shape,
        extra_labels=extra_labels,
        sample_periods=sample_periods,
    )
    yield from render(ctx, pods, shape)


def iter_scenario_series(
    scenarios: Scenario | Iterable[Scenario],
    start_ms: int,
    end_ms: int,
    *,
    step_ms: int = 30_000,
    shape: Shape = "default",
    extra_labels: Mapping[str, str] | None = None,
    sample_periods: int | None = DEFAULT_SAMPLE_PERIODS,
) -> Iterator[tuple[str, tuple[str, int, list[str]]]]:
    """The series :func:`iter_openmetrics` writes, as values for a writer of another
    format: ``(family type, (sample name + labels, first step, per-step values))``, an
    empty value skipping its step (:func:`unthrottle.sim.series.iter_series`)."""
    ctx, pods = _simulate_scenarios(
        scenarios,
        start_ms,
        end_ms,
        step_ms=step_ms,
        shape=shape,
        extra_labels=extra_labels,
        sample_periods=sample_periods,
    )
    yield from iter_series(ctx, pods, shape)


@dataclass(frozen=True, slots=True)
class PodRun:
    """One pod's life: ``scenario``'s workload in pod ``pod`` of ReplicaSet ``replicaset``.

    The pod runs over ``[start_ms, end_ms)`` (epoch ms) with the container resources of
    ``scenario`` (``cpu_request_m``, ``cpu_limit_m``, ``memory_request_bytes``,
    ``memory_limit_bytes``, ``web_concurrency``): give each run its own copy, e.g.
    ``scenario("quota-bound").with_changes(cpu_limit_m=2000, cpu_request_m=1000)``. The
    namespace, Deployment, container and workload are the scenario's; its ``replicas``,
    ``pods``, ``container_age_ms`` and ``oom_kills`` are not used (a run is one pod,
    starting fresh). With ``web_concurrency`` set, the workload runs that many workers of
    ``threads`` threads: the width of a steady, Poisson or bursty demand is
    ``web_concurrency x threads`` (a GIL-threads demand keeps its own) and the RSS model
    has ``web_concurrency`` workers.
    """

    scenario: Scenario
    replicaset: str
    pod: str
    start_ms: int
    end_ms: int

    def __post_init__(self) -> None:
        if self.end_ms <= self.start_ms:
            raise ValueError(f"{self.pod}: end_ms must be after start_ms")
        if not self.pod.startswith(self.replicaset + "-"):
            raise ValueError(f"{self.pod}: not a pod name of ReplicaSet {self.replicaset}")

    @property
    def seed(self) -> int:
        """The run's randomness: fixed by the scenario's seed, namespace and pod name."""
        digest = _digest("run", self.scenario.seed, self.scenario.namespace, self.pod)
        return int.from_bytes(digest[:8], "big")

    def identity(self) -> PodIdentity:
        digest = _digest("run-pod", self.scenario.namespace, self.pod)
        h = digest.hex()
        node_index = digest[10] % _NODES
        return PodIdentity(
            namespace=self.scenario.namespace,
            deployment=self.scenario.deployment,
            replicaset=self.replicaset,
            pod=self.pod,
            uid=f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}",
            node=f"worker-{node_index:02d}",
            instance=f"10.0.1.{10 + node_index}:10250",
        )

    def workload(self) -> Scenario:
        """The scenario as this pod runs it (workers applied, no history before it)."""
        s = self.scenario
        changes: dict[str, object] = {"oom_kills": 0}
        if s.web_concurrency is not None:
            width = s.web_concurrency * s.threads
            for name in ("threads", "parallelism"):
                if name in getattr(type(s.demand), "__dataclass_fields__", {}):
                    changes["demand"] = replace(s.demand, **{name: width})  # type: ignore[type-var]
            changes["memory"] = replace(s.memory, workers=s.web_concurrency)
        return s.with_changes(**changes)


def _grid(run: PodRun, step_ms: int) -> range:
    """The scrape times of the run: multiples of the step within its life."""
    first = -(-run.start_ms // step_ms) * step_ms
    return range(first, run.end_ms, step_ms)


def iter_pod_runs(
    runs: Iterable[PodRun],
    step_ms: int = 30_000,
    *,
    shape: Shape = "default",
    extra_labels: Mapping[str, str] | None = None,
    sample_periods: int | None = DEFAULT_SAMPLE_PERIODS,
) -> Iterator[str]:
    """OpenMetrics text of pod runs (see :func:`write_pod_runs`), in chunks."""
    extra = check_format(shape, step_ms, extra_labels)
    items = list(runs)
    seen: set[tuple[str, str]] = set()
    for run in items:
        check_periods(run.scenario, step_ms)
        if (run.scenario.namespace, run.pod) in seen:
            raise ValueError(f"pod {run.scenario.namespace}/{run.pod} runs twice")
        seen.add((run.scenario.namespace, run.pod))
    grids = [(run, _grid(run, step_ms)) for run in items]
    grids = [(run, grid) for run, grid in grids if grid]  # shorter than a step: no sample
    origin = min((grid.start for _, grid in grids), default=0)
    end = max((grid.stop for _, grid in grids), default=0)
    ctx = Context(
        timestamps=[timestamp(t) for t in range(origin, end, step_ms)],
        extra=extra,
        step_ms=step_ms,
    )
    pods = [_simulate_run(run, grid, origin, step_ms, sample_periods) for run, grid in grids]
    # kube_replicaset_owner: with the ReplicaSet's first pod, to its last pod's end.
    heads: dict[tuple[str, str], tuple[Pod, int]] = {}
    for pod in pods:
        key = (pod.ident.namespace, pod.ident.replicaset)
        stop = pod.offset + len(pod.usage_us)
        head, head_stop = heads.get(key, (pod, stop))
        heads[key] = (pod if pod.offset < head.offset else head, max(stop, head_stop))
    for head, stop in heads.values():
        head.rs_steps = stop - head.offset
    yield from render(ctx, pods, shape)


def _simulate_run(
    run: PodRun, grid: range, origin: int, step_ms: int, sample_periods: int | None
) -> Pod:
    pod = simulate_pod(
        run.workload(),
        run.identity(),
        seed=run.seed,
        n_steps=len(grid),
        step_ms=step_ms,
        sample_periods=sample_periods,
        age_ms=None,
    )
    pod.offset = (grid.start - origin) // step_ms
    return pod


def write_pod_runs(
    handle: TextIO,
    runs: Iterable[PodRun],
    step_ms: int = 30_000,
    *,
    shape: Shape = "default",
    extra_labels: Mapping[str, str] | None = None,
    sample_periods: int | None = DEFAULT_SAMPLE_PERIODS,
) -> None:
    """Write the series of pod runs to ``handle``: a whole OpenMetrics file for promtool.

    Each run is one pod with its own resources, ReplicaSet and life (:class:`PodRun`),
    the CFS simulator running the scenario's workload under *that pod's* quota. Samples
    are at the multiples of ``step_ms`` (epoch ms) in ``[start_ms, end_ms)``; a run
    shorter than that has none. Cumulative counters are 0 at a pod's first sample and
    its container is new there (memory from age 0, no restarts), so a pod's series
    depend only on its run and its seed (:attr:`PodRun.seed`: the scenario's seed and
    the pod's name), whatever else is in the file: writing the runs of a history again
    from scratch, a pod's end extended, gives the same series with more samples at the
    end. kube-state-metrics series are per pod (owner, requests, limits, restarts) over
    its life, and ``kube_replicaset_owner`` once per ReplicaSet from its first pod's
    first sample to its last pod's last. Pod names must be unique per namespace.

    Cost, measured on this machine (2 shared cores): about 8 ms of CPU per pod-hour at a
    30 s step with the default ``sample_periods`` (60 of each step's 300 periods), and
    0.65 MB of text: 30 pods x 6 h (the named scenarios in turn) took 1.3-1.4 s and
    wrote 116 MB. The simulation is not the bottleneck of a pass; ``promtool``'s backfill
    of that text is.
    """
    write = handle.write
    for chunk in iter_pod_runs(
        runs, step_ms, shape=shape, extra_labels=extra_labels, sample_periods=sample_periods
    ):
        write(chunk)


def write_openmetrics(
    fp: TextIO,
    scenarios: Scenario | Iterable[Scenario],
    start_ms: int,
    end_ms: int,
    *,
    step_ms: int = 30_000,
    shape: Shape = "default",
    extra_labels: Mapping[str, str] | None = None,
    sample_periods: int | None = DEFAULT_SAMPLE_PERIODS,
) -> None:
    """Write :func:`iter_openmetrics` to ``fp`` as it is generated."""
    write = fp.write
    for chunk in iter_openmetrics(
        scenarios,
        start_ms,
        end_ms,
        step_ms=step_ms,
        shape=shape,
        extra_labels=extra_labels,
        sample_periods=sample_periods,
    ):
        write(chunk)


def render_openmetrics(
    scenarios: Scenario | Iterable[Scenario],
    start_ms: int,
    end_ms: int,
    *,
    step_ms: int = 30_000,
    shape: Shape = "default",
    extra_labels: Mapping[str, str] | None = None,
    sample_periods: int | None = DEFAULT_SAMPLE_PERIODS,
) -> str:
    """:func:`iter_openmetrics` as one string (for small windows and tests)."""
    return "".join(
        iter_openmetrics(
            scenarios,
            start_ms,
            end_ms,
            step_ms=step_ms,
            shape=shape,
            extra_labels=extra_labels,
            sample_periods=sample_periods,
        )
    )
