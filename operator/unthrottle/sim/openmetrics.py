"""Scenarios rendered as the series a kube-prometheus-stack Prometheus would hold.

This module owns the shape of the test data: which cAdvisor and kube-state-metrics series
exist for a Deployment's pods, with which labels and values, written as OpenMetrics text
that ``promtool tsdb create-blocks-from openmetrics FILE DIR`` backfills into a TSDB.

Format (what promtool's OpenMetrics parser accepts, and what the spec requires):
each family is one contiguous block introduced by ``# HELP`` and ``# TYPE``; a counter's
TYPE line names the family without ``_total`` and its samples carry the suffix
(``# TYPE container_cpu_usage_seconds counter`` /
``container_cpu_usage_seconds_total{...} 12.5 1700000000``); each sample has a timestamp in
seconds; each series' samples are contiguous and in time order; the text ends with
``# EOF``.

Series, per pod ``<deployment>-<rs hash>-<pod hash>`` of ReplicaSet
``<deployment>-<rs hash>`` (names and uids are hashes of the scenario, so fixed):

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
  ``kube_replicaset_owner``, ``kube_pod_container_resource_requests`` and ``_limits``
  (``resource="cpu", unit="core"`` and ``resource="memory", unit="byte"``),
  ``kube_pod_container_status_restarts_total`` and, once a container has been
  OOM-killed, ``kube_pod_container_status_last_terminated_reason{reason="OOMKilled"}``.

Counters start at the value the container accumulated before the window (its age times
the first step's rate), so consumers must use ``rate``/``increase``. A restart after an
OOM kill does not reset them (a real kubelet would start a new series with a new ``id``
label, which this writer does not emit).

Streaming: the CPU simulation runs once per pod in the per-scrape-step mode
(:func:`unthrottle.sim.cfs.simulate_steps`) and only compact integer arrays are kept
(about 48 bytes per pod and step, against ~3 KB of text); the text is generated family
by family and yielded one series at a time.
"""

from __future__ import annotations

import hashlib
import random
import re
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, TextIO

from unthrottle.sim.cfs import simulate_steps
from unthrottle.sim.scenarios import Scenario, pod_seed

__all__ = [
    "DEFAULT_SAMPLE_PERIODS",
    "PodIdentity",
    "Shape",
    "iter_openmetrics",
    "pod_identities",
    "render_openmetrics",
    "replicaset_name",
    "write_openmetrics",
]

Shape = Literal["default", "full"]

US_PER_SECOND = 1_000_000
# Kubernetes' SafeEncodeString alphabet (no vowels, no look-alike digits), used for the
# pod-template-hash and the generated pod name suffix.
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_PAUSE_IMAGE = "registry.k8s.io/pause:3.9"
# The pause container does nothing: ~20 µs of CPU per second, a few hundred KiB.
_PAUSE_USAGE_US_PER_S = 20
_PAUSE_RSS = 389_120
_PAUSE_WSS = 753_664
_NODES = 16
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


@dataclass(frozen=True, slots=True)
class PodIdentity:
    """Names and placement of one replica, as Kubernetes would have generated them."""

    namespace: str
    deployment: str
    replicaset: str
    pod: str
    uid: str
    node: str
    instance: str


def pod_identities(scenario: Scenario) -> list[PodIdentity]:
    """The scenario's pods, ``replicas`` of them, deterministic from its names (or the
    real names it carries in ``pods``)."""
    rs = replicaset_name(scenario)
    out = []
    for index in range(scenario.replicas):
        digest = _digest("pod", scenario.namespace, scenario.deployment, index)
        h = digest.hex()
        node_index = digest[10] % _NODES
        replicaset, pod = (
            scenario.pods[index] if scenario.pods else (rs, f"{rs}-{_encode(digest, 5)}")
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


def _timestamp(ms: int) -> str:
    return str(ms // 1000) if ms % 1000 == 0 else f"{ms // 1000}.{ms % 1000:03d}"


@dataclass(slots=True)
class _Pod:
    """One replica's numbers per scrape step; cumulative for counters."""

    scenario: Scenario
    ident: PodIdentity
    index: int
    usage_us: array[int]
    periods: array[int] | None
    throttled: array[int] | None
    throttled_us: array[int] | None
    rss: array[int]
    restarts: array[int]


def _simulate_pod(
    scenario: Scenario,
    ident: PodIdentity,
    *,
    pod_index: int,
    n_steps: int,
    step_ms: int,
    sample_periods: int | None,
) -> _Pod:
    step_us = step_ms * 1000
    group = scenario.cfs_group()
    seed = pod_seed(scenario.seed, pod_index)
    source = scenario.demand.periods(random.Random(seed), scenario.period_us)
    steps = simulate_steps(
        source, group, step_us // scenario.period_us, n_steps, sample_periods=sample_periods
    )
    has_quota = group.quota_us is not None
    usage = array("q")
    periods = array("q")
    throttled = array("q")
    throttled_us = array("q")
    # Counters start where a container of this age would be: its age in steps times the
    # first step's increments.
    age_steps = scenario.container_age_ms // step_ms
    u = p = t = tu = 0
    for j, step in enumerate(steps):
        if j == 0:
            u, p = step.usage_us * age_steps, step.nr_periods * age_steps
            t, tu = step.nr_throttled * age_steps, step.throttled_time_us * age_steps
        u += step.usage_us
        p += step.nr_periods
        t += step.nr_throttled
        tu += step.throttled_time_us
        usage.append(u)
        if has_quota:
            periods.append(p)
            throttled.append(t)
            throttled_us.append(tu)
    # Memory draws from its own stream so that it does not shift the CPU demand.
    memory_rng = random.Random(seed ^ 0x5EED_0F_3E30)
    rss = array("q")
    restarts = array("q")
    samples = scenario.memory.samples(
        memory_rng, scenario.container_age_ms, step_ms, scenario.memory_limit_bytes
    )
    for _ in range(n_steps):
        value, kills = next(samples)
        rss.append(value)
        restarts.append(scenario.oom_kills + kills)
    return _Pod(
        scenario,
        ident,
        pod_index,
        usage,
        periods if has_quota else None,
        throttled if has_quota else None,
        throttled_us if has_quota else None,
        rss,
        restarts,
    )


# A family: (name in TYPE, type, help, shapes it appears in, emitter). An emitter yields
# (sample name + labels, per-step value strings) for one pod; ``None`` values skip steps.
_Series = tuple[str, list[str]]
_Emitter = Callable[["_Context", _Pod], Iterator[_Series]]


@dataclass(slots=True)
class _Context:
    timestamps: list[str]
    extra: tuple[tuple[str, str], ...]
    step_ms: int

    def cadvisor(self, pod: _Pod, container: str) -> str:
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

    def pod_pairs(self, pod: _Pod) -> list[tuple[str, str]]:
        ident = pod.ident
        return [("namespace", ident.namespace), ("pod", ident.pod), ("uid", ident.uid)]


def _pause_usage(ctx: _Context, pod: _Pod, j: int) -> int:
    age_steps = pod.scenario.container_age_ms // ctx.step_ms
    return _PAUSE_USAGE_US_PER_S * ctx.step_ms // 1000 * (age_steps + j + 1)


def _emit_usage(ctx: _Context, pod: _Pod) -> Iterator[_Series]:
    name = "container_cpu_usage_seconds_total"
    app = pod.usage_us
    pause = [_pause_usage(ctx, pod, j) for j in range(len(app))]
    yield name + ctx.cadvisor(pod, pod.scenario.container), [_seconds(v) for v in app]
    yield name + ctx.cadvisor(pod, "POD"), [_seconds(v) for v in pause]
    yield name + ctx.cadvisor(pod, ""), [_seconds(a + b) for a, b in zip(app, pause, strict=True)]


def _cfs_emitter(name: str, attr: str, seconds: bool) -> _Emitter:
    def emit(ctx: _Context, pod: _Pod) -> Iterator[_Series]:
        values: array[int] | None = getattr(pod, attr)
        if values is None:
            return
        text = [_seconds(v) for v in values] if seconds else [str(v) for v in values]
        # The pod-level cgroup carries the pod's quota (the sum of the limits, here the one
        # application container's): its counters are the container's.
        yield name + ctx.cadvisor(pod, pod.scenario.container), text
        yield name + ctx.cadvisor(pod, ""), text

    return emit


def _emit_rss(ctx: _Context, pod: _Pod) -> Iterator[_Series]:
    name = "container_memory_rss"
    yield name + ctx.cadvisor(pod, pod.scenario.container), [str(v) for v in pod.rss]
    yield name + ctx.cadvisor(pod, "POD"), [str(_PAUSE_RSS)] * len(pod.rss)
    yield name + ctx.cadvisor(pod, ""), [str(v + _PAUSE_RSS) for v in pod.rss]


def _working_set(rss: int) -> int:
    # Working set = RSS + active page cache (+ kernel memory): ~1/8 above RSS here.
    return rss + rss // 8


def _emit_wss(ctx: _Context, pod: _Pod) -> Iterator[_Series]:
    name = "container_memory_working_set_bytes"
    wss = [_working_set(v) for v in pod.rss]
    yield name + ctx.cadvisor(pod, pod.scenario.container), [str(v) for v in wss]
    yield name + ctx.cadvisor(pod, "POD"), [str(_PAUSE_WSS)] * len(wss)
    yield name + ctx.cadvisor(pod, ""), [str(v + _PAUSE_WSS) for v in wss]


def _emit_spec_quota(ctx: _Context, pod: _Pod) -> Iterator[_Series]:
    quota = pod.scenario.quota_us
    if quota is None:
        return
    n = len(pod.usage_us)
    for container in (pod.scenario.container, ""):
        yield "container_spec_cpu_quota" + ctx.cadvisor(pod, container), [str(quota)] * n


def _emit_spec_period(ctx: _Context, pod: _Pod) -> Iterator[_Series]:
    n = len(pod.usage_us)
    period = str(pod.scenario.period_us)
    for container in (pod.scenario.container, "POD", ""):
        yield "container_spec_cpu_period" + ctx.cadvisor(pod, container), [period] * n


def _emit_pod_owner(ctx: _Context, pod: _Pod) -> Iterator[_Series]:
    labels = ctx.ksm(
        [
            *ctx.pod_pairs(pod),
            ("owner_is_controller", "true"),
            ("owner_kind", "ReplicaSet"),
            ("owner_name", pod.ident.replicaset),
        ]
    )
    yield "kube_pod_owner" + labels, ["1"] * len(pod.usage_us)


def _emit_replicaset_owner(ctx: _Context, pod: _Pod) -> Iterator[_Series]:
    # One series per ReplicaSet: emitted with the Deployment's first pod only.
    if pod.index != 0:
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
    yield "kube_replicaset_owner" + labels, ["1"] * len(pod.usage_us)


def _resource_emitter(name: str, limits: bool) -> _Emitter:
    def emit(ctx: _Context, pod: _Pod) -> Iterator[_Series]:
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


def _container_pairs(pod: _Pod) -> list[tuple[str, str]]:
    ident = pod.ident
    return [
        ("container", pod.scenario.container),
        ("namespace", ident.namespace),
        ("pod", ident.pod),
        ("uid", ident.uid),
    ]


def _emit_restarts(ctx: _Context, pod: _Pod) -> Iterator[_Series]:
    labels = ctx.ksm(_container_pairs(pod))
    yield "kube_pod_container_status_restarts_total" + labels, [str(v) for v in pod.restarts]


def _emit_last_terminated(ctx: _Context, pod: _Pod) -> Iterator[_Series]:
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
    if end_ms <= start_ms:
        raise ValueError("end_ms must be after start_ms")
    if step_ms <= 0:
        raise ValueError("step_ms must be positive")
    if shape not in ("default", "full"):
        raise ValueError(f"unknown shape {shape!r}")
    items = [scenarios] if isinstance(scenarios, Scenario) else list(scenarios)
    for s in items:
        if (step_ms * 1000) % s.period_us:
            raise ValueError(f"{s.name}: step {step_ms} ms is not a whole number of periods")
    n_steps = -(-(end_ms - start_ms) // step_ms)
    extra = tuple(sorted((extra_labels or {}).items()))
    for key, _ in extra:
        if not _LABEL_NAME.fullmatch(key) or key in _OWN_LABELS:
            raise ValueError(f"invalid or reserved extra label name {key!r}")
    ctx = _Context(
        timestamps=[_timestamp(start_ms + j * step_ms) for j in range(n_steps)],
        extra=extra,
        step_ms=step_ms,
    )
    pods = [
        _simulate_pod(
            s,
            ident,
            pod_index=index,
            n_steps=n_steps,
            step_ms=step_ms,
            sample_periods=sample_periods,
        )
        for s in items
        for index, ident in enumerate(pod_identities(s))
    ]
    timestamps = ctx.timestamps
    for family, kind, help_text, shapes, emit in _FAMILIES:
        if shape not in shapes:
            continue
        yield f"# HELP {family} {help_text}\n# TYPE {family} {kind}\n"
        for pod in pods:
            for series, values in emit(ctx, pod):
                prefix = series + " "
                yield "".join(
                    [f"{prefix}{v} {ts}\n" for v, ts in zip(values, timestamps, strict=True) if v]
                )
    yield "# EOF\n"


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
