"""One pod's series as a kube-prometheus-stack Prometheus would hold them, as OpenMetrics.

This module owns the shape of the test data: which cAdvisor and kube-state-metrics series
exist for a pod (simulated by :mod:`.pods`), with which labels and values
(:func:`render` writes the families), and the text format. The public writers
(scenarios, pod runs) are in :mod:`.openmetrics`.

Format (what promtool's OpenMetrics parser accepts, and what the spec requires):
each family is one contiguous block introduced by ``# HELP`` and ``# TYPE``; a counter's
TYPE line names the family without ``_total`` and its samples carry the suffix
(``# TYPE container_cpu_usage_seconds counter`` /
``container_cpu_usage_seconds_total{...} 12.5 1700000000``); each sample has a timestamp in
seconds; each series' samples are contiguous and in time order; the text ends with
``# EOF``.

Series, per pod:

- cAdvisor (``job="kubelet"``, ``metrics_path="/metrics/cadvisor"``, ``instance`` the
  node's kubelet): ``container_cpu_usage_seconds_total``,
  ``container_cpu_cfs_periods_total``, ``container_cpu_cfs_throttled_periods_total``,
  ``container_memory_rss``, ``container_memory_working_set_bytes``; with
  ``shape="full"`` also ``container_cpu_cfs_throttled_seconds_total``,
  ``container_spec_cpu_quota`` and ``container_spec_cpu_period``, which the
  kube-prometheus-stack chart's default relabelling drops (``shape="default"``).
  As a real kubelet does, each pod also has the pause container (``container="POD"``,
  no quota, near-zero usage) and the pod-level cgroup (``container=""``: usage and memory
  are the sums over the containers; it has the pod's quota, the sum of the limits, and
  here the application container's CFS counters). Consumers must filter both out.
  cAdvisor exports the CFS series only for a cgroup with a quota, so a container without
  a CPU limit has none.
- kube-state-metrics (``job="kube-state-metrics"``): ``kube_pod_owner``,
  ``kube_replicaset_owner`` (once per ReplicaSet), ``kube_pod_container_resource_requests``
  and ``_limits`` (``resource="cpu", unit="core"`` and ``resource="memory",
  unit="byte"``), ``kube_pod_container_status_restarts_total`` and, once a container has
  been OOM-killed, ``kube_pod_container_status_last_terminated_reason{reason="OOMKilled"}``.

A restart after an OOM kill does not reset the counters (a real kubelet would start a new
series with a new ``id`` label, which this writer does not emit).
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Literal

from unthrottle.model.workload import WorkloadKind
from unthrottle.sim.pods import Pod
from unthrottle.sim.scenarios import Scenario

__all__ = [
    "Context",
    "Shape",
    "check_format",
    "check_periods",
    "iter_series",
    "render",
    "timestamp",
]

Shape = Literal["default", "full"]

US_PER_SECOND = 1_000_000
_PAUSE_IMAGE = "registry.k8s.io/pause:3.9"
# The pause container does nothing: ~20 µs of CPU per second, a few hundred KiB.
_PAUSE_USAGE_US_PER_S = 20
_PAUSE_RSS = 389_120
_PAUSE_WSS = 753_664
_KSM_INSTANCE = "10.244.0.17:8080"
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Labels this writer sets itself; an extra label may not duplicate one.
_OWN_LABELS = frozenset(
    {
        "__name__",
        "container",
        "endpoint",
        "image",
        "instance",
        "job",
        "metrics_path",
        "namespace",
        "node",
        "owner_is_controller",
        "owner_kind",
        "owner_name",
        "pod",
        "reason",
        "replicaset",
        "resource",
        "service",
        "uid",
        "unit",
    }
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _seconds(us: int) -> str:
    # Exact decimal seconds from integer microseconds (no float rounding in counters).
    return f"{us // US_PER_SECOND}.{us % US_PER_SECOND:06d}"


def _cores(millicores: int) -> str:
    text = f"{millicores // 1000}.{millicores % 1000:03d}".rstrip("0")
    return text.rstrip(".")


def timestamp(ms: int) -> str:
    return str(ms // 1000) if ms % 1000 == 0 else f"{ms // 1000}.{ms % 1000:03d}"


# A family: (name in TYPE, type, help, shapes it appears in, emitter). An emitter yields
# (sample name + labels, per-step value strings) for one pod; ``None`` values skip steps.
_Series = tuple[str, list[str]]
_Placed = tuple[str, int, list[str]]  # a series and the grid step of its first value
_Emitter = Callable[["Context", Pod], Iterator[_Series]]


_Extra = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class Context:
    timestamps: list[str]
    extra: _Extra
    step_ms: int

    def cadvisor(self, pod: Pod, container: str) -> str:
        ident = pod.ident
        pairs: list[tuple[str, str]] = [("container", container), ("endpoint", "https-metrics")]
        if container == "POD":
            pairs.append(("image", _PAUSE_IMAGE))
        elif container:
            pairs.append(("image", pod.scenario.image))
        pairs += [
            ("instance", ident.instance),
            ("job", "kubelet"),
            ("metrics_path", "/metrics/cadvisor"),
            ("namespace", ident.namespace),
            ("node", ident.node),
            ("pod", ident.pod),
            ("service", "kube-prometheus-stack-kubelet"),
        ]
        return _labels([*pairs, *self.extra])

    def ksm(self, pairs: list[tuple[str, str]]) -> str:
        base = [("instance", _KSM_INSTANCE), ("job", "kube-state-metrics")]
        return _labels([*base, *pairs, *self.extra])

    def pod_pairs(self, pod: Pod) -> list[tuple[str, str]]:
        ident = pod.ident
        return [("namespace", ident.namespace), ("pod", ident.pod), ("uid", ident.uid)]


def _pause_usage(ctx: Context, pod: Pod, j: int) -> int:
    return _PAUSE_USAGE_US_PER_S * ctx.step_ms // 1000 * (pod.pause_base_steps + j)


def _emit_usage(ctx: Context, pod: Pod) -> Iterator[_Series]:
    name = "container_cpu_usage_seconds_total"
    app = pod.usage_us
    pause = [_pause_usage(ctx, pod, j) for j in range(len(app))]
    yield name + ctx.cadvisor(pod, pod.scenario.container), [_seconds(v) for v in app]
    yield name + ctx.cadvisor(pod, "POD"), [_seconds(v) for v in pause]
    yield name + ctx.cadvisor(pod, ""), [_seconds(a + b) for a, b in zip(app, pause, strict=True)]


def _cfs_emitter(name: str, attr: str, seconds: bool) -> _Emitter:
    def emit(ctx: Context, pod: Pod) -> Iterator[_Series]:
        values: array[int] | None = getattr(pod, attr)
        if values is None:
            return
        text = [_seconds(v) for v in values] if seconds else [str(v) for v in values]
        # The pod-level cgroup carries the pod's quota (the sum of the limits, here the one
        # application container's): its counters are the container's.
        yield name + ctx.cadvisor(pod, pod.scenario.container), text
        yield name + ctx.cadvisor(pod, ""), text

    return emit


def _emit_rss(ctx: Context, pod: Pod) -> Iterator[_Series]:
    name = "container_memory_rss"
    yield name + ctx.cadvisor(pod, pod.scenario.container), [str(v) for v in pod.rss]
    yield name + ctx.cadvisor(pod, "POD"), [str(_PAUSE_RSS)] * len(pod.rss)
    yield name + ctx.cadvisor(pod, ""), [str(v + _PAUSE_RSS) for v in pod.rss]


def _working_set(rss: int) -> int:
    # Working set = RSS + active page cache (+ kernel memory): ~1/8 above RSS here.
    return rss + rss // 8


def _emit_wss(ctx: Context, pod: Pod) -> Iterator[_Series]:
    name = "container_memory_working_set_bytes"
    wss = [_working_set(v) for v in pod.rss]
    yield name + ctx.cadvisor(pod, pod.scenario.container), [str(v) for v in wss]
    yield name + ctx.cadvisor(pod, "POD"), [str(_PAUSE_WSS)] * len(wss)
    yield name + ctx.cadvisor(pod, ""), [str(v + _PAUSE_WSS) for v in wss]


def _emit_spec_quota(ctx: Context, pod: Pod) -> Iterator[_Series]:
    quota = pod.scenario.quota_us
    if quota is None:
        return
    n = len(pod.usage_us)
    for container in (pod.scenario.container, ""):
        yield "container_spec_cpu_quota" + ctx.cadvisor(pod, container), [str(quota)] * n


def _emit_spec_period(ctx: Context, pod: Pod) -> Iterator[_Series]:
    n = len(pod.usage_us)
    period = str(pod.scenario.period_us)
    for container in (pod.scenario.container, "POD", ""):
        yield "container_spec_cpu_period" + ctx.cadvisor(pod, container), [period] * n


def _emit_pod_owner(ctx: Context, pod: Pod) -> Iterator[_Series]:
    # A Deployment's pod is owned by its ReplicaSet; a StatefulSet's or DaemonSet's by the
    # workload itself (its name stands where the ReplicaSet's would).
    kind = pod.scenario.kind
    labels = ctx.ksm(
        [
            *ctx.pod_pairs(pod),
            ("owner_is_controller", "true"),
            ("owner_kind", "ReplicaSet" if kind is WorkloadKind.DEPLOYMENT else kind.value),
            ("owner_name", pod.ident.replicaset),
        ]
    )
    yield "kube_pod_owner" + labels, ["1"] * len(pod.usage_us)


def _emit_replicaset_owner(ctx: Context, pod: Pod) -> Iterator[_Series]:
    # One series per ReplicaSet: emitted with its first pod only, over its pods' lives.
    if not pod.rs_steps or pod.scenario.kind is not WorkloadKind.DEPLOYMENT:
        return
    labels = ctx.ksm(
        [
            ("namespace", pod.ident.namespace),
            ("owner_is_controller", "true"),
            ("owner_kind", "Deployment"),
            ("owner_name", pod.ident.deployment),
            ("replicaset", pod.ident.replicaset),
        ]
    )
    yield "kube_replicaset_owner" + labels, ["1"] * pod.rs_steps


def _resource_emitter(name: str, limits: bool) -> _Emitter:
    def emit(ctx: Context, pod: Pod) -> Iterator[_Series]:
        s = pod.scenario
        cpu = s.cpu_limit_m if limits else s.cpu_request_m
        memory = s.memory_limit_bytes if limits else s.memory_request_bytes
        n = len(pod.usage_us)
        base = [
            ("container", s.container),
            ("namespace", pod.ident.namespace),
            ("node", pod.ident.node),
            ("pod", pod.ident.pod),
        ]
        if cpu is not None:
            pairs = [*base, ("resource", "cpu"), ("uid", pod.ident.uid), ("unit", "core")]
            yield name + ctx.ksm(pairs), [_cores(cpu)] * n
        if memory is not None:
            pairs = [*base, ("resource", "memory"), ("uid", pod.ident.uid), ("unit", "byte")]
            yield name + ctx.ksm(pairs), [str(memory)] * n

    return emit


def _container_pairs(pod: Pod) -> list[tuple[str, str]]:
    ident = pod.ident
    return [
        ("container", pod.scenario.container),
        ("namespace", ident.namespace),
        ("pod", ident.pod),
        ("uid", ident.uid),
    ]


def _emit_restarts(ctx: Context, pod: Pod) -> Iterator[_Series]:
    labels = ctx.ksm(_container_pairs(pod))
    yield "kube_pod_container_status_restarts_total" + labels, [str(v) for v in pod.restarts]


def _emit_last_terminated(ctx: Context, pod: Pod) -> Iterator[_Series]:
    # kube-state-metrics has this series only once the container has terminated; the
    # first value is at the first step after the first OOM kill.
    if pod.restarts[-1] <= 0:
        return
    labels = ctx.ksm([*_container_pairs(pod), ("reason", "OOMKilled")])
    yield (
        "kube_pod_container_status_last_terminated_reason" + labels,
        ["1" if v > 0 else "" for v in pod.restarts],
    )


_FULL_ONLY: frozenset[Shape] = frozenset({"full"})
_ALL_SHAPES: frozenset[Shape] = frozenset({"default", "full"})

_FAMILIES: tuple[tuple[str, str, str, frozenset[Shape], _Emitter], ...] = (
    (
        "container_cpu_usage_seconds",
        "counter",
        "Cumulative cpu time consumed in seconds.",
        _ALL_SHAPES,
        _emit_usage,
    ),
    (
        "container_cpu_cfs_periods",
        "counter",
        "Number of elapsed enforcement period intervals.",
        _ALL_SHAPES,
        _cfs_emitter("container_cpu_cfs_periods_total", "periods", seconds=False),
    ),
    (
        "container_cpu_cfs_throttled_periods",
        "counter",
        "Number of throttled period intervals.",
        _ALL_SHAPES,
        _cfs_emitter("container_cpu_cfs_throttled_periods_total", "throttled", seconds=False),
    ),
    (
        "container_cpu_cfs_throttled_seconds",
        "counter",
        "Total time duration the container has been throttled.",
        _FULL_ONLY,
        _cfs_emitter("container_cpu_cfs_throttled_seconds_total", "throttled_us", seconds=True),
    ),
    ("container_memory_rss", "gauge", "Size of RSS in bytes.", _ALL_SHAPES, _emit_rss),
    (
        "container_memory_working_set_bytes",
        "gauge",
        "Current working set in bytes.",
        _ALL_SHAPES,
        _emit_wss,
    ),
    (
        "container_spec_cpu_quota",
        "gauge",
        "CPU quota of the container.",
        _FULL_ONLY,
        _emit_spec_quota,
    ),
    (
        "container_spec_cpu_period",
        "gauge",
        "CPU period of the container.",
        _FULL_ONLY,
        _emit_spec_period,
    ),
    (
        "kube_pod_owner",
        "gauge",
        "Information about the Pod's owner.",
        _ALL_SHAPES,
        _emit_pod_owner,
    ),
    (
        "kube_replicaset_owner",
        "gauge",
        "Information about the ReplicaSet's owner.",
        _ALL_SHAPES,
        _emit_replicaset_owner,
    ),
    (
        "kube_pod_container_resource_requests",
        "gauge",
        "The number of requested request resource by a container.",
        _ALL_SHAPES,
        _resource_emitter("kube_pod_container_resource_requests", limits=False),
    ),
    (
        "kube_pod_container_resource_limits",
        "gauge",
        "The number of requested limit resource by a container.",
        _ALL_SHAPES,
        _resource_emitter("kube_pod_container_resource_limits", limits=True),
    ),
    (
        "kube_pod_container_status_restarts",
        "counter",
        "The number of container restarts per container.",
        _ALL_SHAPES,
        _emit_restarts,
    ),
    (
        "kube_pod_container_status_last_terminated_reason",
        "gauge",
        "Describes the last reason the container was in terminated state.",
        _ALL_SHAPES,
        _emit_last_terminated,
    ),
)


def check_format(shape: Shape, step_ms: int, extra_labels: Mapping[str, str] | None) -> _Extra:
    if step_ms <= 0:
        raise ValueError("step_ms must be positive")
    if shape not in ("default", "full"):
        raise ValueError(f"unknown shape {shape!r}")
    extra = tuple(sorted((extra_labels or {}).items()))
    for key, _ in extra:
        if not _LABEL_NAME.fullmatch(key) or key in _OWN_LABELS:
            raise ValueError(f"invalid or reserved extra label name {key!r}")
    return extra


def check_periods(s: Scenario, step_ms: int) -> None:
    if (step_ms * 1000) % s.period_us:
        raise ValueError(f"{s.name}: step {step_ms} ms is not a whole number of periods")


def _family_series(ctx: Context, pods: list[Pod], emit: _Emitter) -> Iterator[_Placed]:
    for pod in pods:
        for series, values in emit(ctx, pod):
            yield series, pod.offset, values


def iter_series(ctx: Context, pods: list[Pod], shape: Shape) -> Iterator[tuple[str, _Placed]]:
    """Every series :func:`render` writes, in its order, as values rather than text:
    ``(family type, (sample name + labels, first step, per-step values))``; an empty
    value skips its step."""
    for _, kind, _, shapes, emit in _FAMILIES:
        if shape in shapes:
            for placed in _family_series(ctx, pods, emit):
                yield kind, placed


def render(ctx: Context, pods: list[Pod], shape: Shape) -> Iterator[str]:
    """The families in order, each pod's series in turn, then ``# EOF``."""
    timestamps = ctx.timestamps
    for family, kind, help_text, shapes, emit in _FAMILIES:
        if shape not in shapes:
            continue
        yield f"# HELP {family} {help_text}\n# TYPE {family} {kind}\n"
        for series, offset, values in _family_series(ctx, pods, emit):
            prefix = series + " "
            # A pod's values start at its offset and are never longer than the rest of
            # the grid: zip stops with them.
            lines = zip(values, islice(timestamps, offset, None), strict=False)
            yield "".join([f"{prefix}{v} {ts}\n" for v, ts in lines if v])
    yield "# EOF\n"
