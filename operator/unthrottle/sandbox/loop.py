"""A closed loop for AutoPatch: many passes of the real plan against a real Prometheus whose
series come from the CFS simulator running each pod under the configuration last applied.

Each pass at simulated time ``now`` (days compressed: passes are ``step`` apart, whatever
the wall clock says):

1. the pods' series over the window, simulated for the resources *each pod* runs with
   (:class:`~unthrottle.sim.openmetrics.PodRun`), are backfilled into a fresh Prometheus;
2. the operator's own fetch (:class:`~unthrottle.sources.prometheus.PrometheusSource`)
   and plan (:func:`~unthrottle.reconcile.plan.plan_pass`) run on them;
3. a patch is applied to the Deployment (a strategic merge of the owned fields) and, as a
   Deployment controller would, its pods are replaced at ``now`` by pods of a new
   ReplicaSet with the new resources; an annotation-only write changes the annotations.

The rollout is immediate (the new pods are there at ``now``); everything else is the
operator's code as shipped. The e2e tests drive the same rules against a real API server.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unthrottle.engine.workers import current_workers
from unthrottle.model.stats import ContainerStats
from unthrottle.reconcile.plan import PassPlan, plan_pass
from unthrottle.reconcile.read import prometheus_config
from unthrottle.reconcile.scope import OperatorScope
from unthrottle.reconcile.snapshot import (
    ClusterSnapshot,
    Instant,
    MetricsSnapshot,
    PolicyObject,
    parse_policy,
)
from unthrottle.sandbox.prometheus import PrometheusServer
from unthrottle.sim.openmetrics import PodRun, write_pod_runs
from unthrottle.sim.scenarios import Scenario, all_scenarios, deployment_manifest
from unthrottle.sources.kubernetes import container_resources, deployment_info
from unthrottle.sources.prometheus import PrometheusSource

__all__ = [
    "LoopWorkload",
    "PassRecord",
    "loop_policy",
    "merge_patch_into",
    "run_loop",
    "run_pass",
    "seed_workloads",
    "start_workload",
]

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class PassRecord:
    """What one pass did to one workload, and what it saw of the current configuration."""

    at_ms: int
    patched: bool
    action: str
    cpu_request: int | None  # the Deployment's, after the pass
    cpu_limit: int | None
    workers: int | None
    throttle_ratio: float | None  # of the configuration the pass judged (None: no stats)


@dataclass
class LoopWorkload:
    """One Deployment of the loop: its manifest as the operator left it, and its pods."""

    scenario: Scenario
    manifest: dict[str, Any]
    runs: list[PodRun] = field(default_factory=list)
    records: list[PassRecord] = field(default_factory=list)

    @property
    def ref(self) -> str:
        metadata = self.manifest["metadata"]
        return f"{metadata['namespace']}/{metadata['name']}"


def _template_hash(manifest: Mapping[str, Any]) -> str:
    text = json.dumps(manifest["spec"]["template"], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _container(manifest: Mapping[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = manifest["spec"]["template"]["spec"]["containers"]
    return containers[0]


def configured_scenario(base: Scenario, manifest: Mapping[str, Any]) -> Scenario:
    """The scenario with the resources and worker count the manifest gives its pods."""
    # The operator's own reading of a container (and of where its workers come from).
    c = container_resources(_container(manifest), "WEB_CONCURRENCY")
    workers = current_workers(c)
    return base.with_changes(
        cpu_request_m=c.cpu_request if c.cpu_request is not None else c.cpu_limit or 0,
        cpu_limit_m=c.cpu_limit,
        memory_request_bytes=c.memory_request or base.memory_request_bytes,
        memory_limit_bytes=c.memory_limit,
        web_concurrency=base.web_concurrency if workers is None else workers,
    )


def _new_pods(workload: LoopWorkload, start_ms: int) -> None:
    """The pods a Deployment controller creates for the manifest's template now."""
    metadata = workload.manifest["metadata"]
    replicaset = f"{metadata['name']}-{_template_hash(workload.manifest)}"
    scenario = configured_scenario(workload.scenario, workload.manifest)
    for index in range(workload.scenario.replicas):
        pod = f"{replicaset}-{start_ms // 1000 % 100000:05d}{index}"
        workload.runs.append(PodRun(scenario, replicaset, pod, start_ms, 2**62))


def start_workload(
    scenario: Scenario, start_ms: int, *, labels: Mapping[str, str] | None = None
) -> LoopWorkload:
    """A Deployment as its owner wrote it, with pods running since ``start_ms``."""
    manifest = deployment_manifest(scenario, labels=labels)
    manifest["metadata"].update({"uid": f"uid-{scenario.deployment}", "generation": 1})
    manifest["status"] = {
        "observedGeneration": 1,
        "replicas": scenario.replicas,
        "updatedReplicas": scenario.replicas,
        "availableReplicas": scenario.replicas,
    }
    workload = LoopWorkload(scenario, manifest)
    _new_pods(workload, start_ms)
    return workload


def _merge_list(items: list[dict[str, Any]], patches: Iterable[dict[str, Any]]) -> None:
    by_name = {item["name"]: item for item in items}
    for entry in patches:
        if entry.get("$patch") == "delete":
            items[:] = [i for i in items if i["name"] != entry["name"]]
            continue
        target = by_name.get(entry["name"])
        if target is None:
            items.append({k: v for k, v in entry.items() if v is not None})
            continue
        for key, value in entry.items():
            if value is None:
                target.pop(key, None)
            elif key == "resources":
                for section, values in value.items():
                    merged = target.setdefault("resources", {}).setdefault(section, {})
                    for name, quantity in values.items():
                        if quantity is None:
                            merged.pop(name, None)
                        else:
                            merged[name] = quantity
            elif key == "env":
                _merge_list(target.setdefault("env", []), value)
            else:
                target[key] = value


def _merge_annotations(into: dict[str, Any], annotations: Mapping[str, Any]) -> None:
    current = into.setdefault("annotations", {})
    for key, value in annotations.items():
        if value is None:
            current.pop(key, None)
        else:
            current[key] = value


def merge_patch_into(manifest: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest after a strategic-merge patch of the fields the operator owns."""
    out = copy.deepcopy(manifest)
    _merge_annotations(out["metadata"], (patch.get("metadata") or {}).get("annotations") or {})
    template = (patch.get("spec") or {}).get("template") or {}
    if template.get("metadata"):
        _merge_annotations(
            out["spec"]["template"].setdefault("metadata", {}),
            template["metadata"].get("annotations") or {},
        )
    _merge_list(
        out["spec"]["template"]["spec"]["containers"],
        (template.get("spec") or {}).get("containers") or [],
    )
    out["metadata"]["generation"] += 1
    out["status"]["observedGeneration"] = out["metadata"]["generation"]
    return out


def _clipped(runs: Iterable[PodRun], start_ms: int, end_ms: int) -> list[PodRun]:
    out = []
    for run in runs:
        start, end = max(run.start_ms, start_ms), min(run.end_ms, end_ms)
        if end > start:
            out.append(PodRun(run.scenario, run.replicaset, run.pod, start, end))
    return out


def _record(workload: LoopWorkload, plan: PassPlan, stats: ContainerStats | None, now: int) -> None:
    scenario = configured_scenario(workload.scenario, workload.manifest)
    mine = next((w for w in plan.workloads if str(w.deployment.ref) == workload.ref), None)
    workload.records.append(
        PassRecord(
            at_ms=now,
            patched=mine is not None and mine.patch is not None,
            action="" if mine is None else mine.trec_status_patch["summary"]["action"],
            cpu_request=scenario.cpu_request_m,
            cpu_limit=scenario.cpu_limit_m,
            workers=scenario.web_concurrency,
            throttle_ratio=None if stats is None else stats.cpu.throttled_period_ratio,
        )
    )


def run_pass(
    workloads: list[LoopWorkload],
    policy: PolicyObject,
    now_ms: int,
    workdir: Path,
    *,
    step_ms: int = 60_000,
) -> PassPlan:
    """One pass at ``now_ms``: simulate, backfill, fetch, plan, apply (see the module)."""
    window = policy.spec.window
    workdir.mkdir(parents=True, exist_ok=True)
    series = workdir / "series.om"
    runs = [r for w in workloads for r in _clipped(w.runs, now_ms - window - step_ms, now_ms)]
    with series.open("w", encoding="utf-8") as handle:
        write_pod_runs(handle, runs, step_ms)
    server = PrometheusServer.with_data(workdir / "prometheus", [series])
    try:
        config = prometheus_config(policy.spec, server.url)
        with PrometheusSource(config) as source:
            fetched = source.fetch(window, namespaces=None, end=now_ms / 1000)
    finally:
        server.stop()
        server.remove()
    series.unlink()
    infos = tuple(deployment_info(w.manifest, "WEB_CONCURRENCY") for w in workloads)
    labels = {
        ns: {"unthrottle.dev/auto-patch": "enabled"} for ns in {i.ref.namespace for i in infos}
    }
    snapshot = ClusterSnapshot(
        bounds=OperatorScope("unthrottle-system"),
        namespace_labels=labels,
        deployments=infos,
        metrics=MetricsSnapshot(workloads=tuple(fetched.workloads), source=config.display_url),
    )
    plan = plan_pass(policy, snapshot, Instant.from_ms(now_ms))
    by_ref = {str(w.ref): w for w in fetched.workloads}
    for workload in workloads:
        mine = next((p for p in plan.workloads if str(p.deployment.ref) == workload.ref), None)
        if mine is not None and mine.patch is not None:
            workload.manifest = merge_patch_into(workload.manifest, mine.patch)
            workload.runs = [
                PodRun(r.scenario, r.replicaset, r.pod, r.start_ms, min(r.end_ms, now_ms))
                for r in workload.runs
            ]
            _new_pods(workload, now_ms)
        elif mine is not None and mine.annotations is not None:
            _merge_annotations(workload.manifest["metadata"], mine.annotations)
        seen = by_ref.get(workload.ref)
        stats = seen.containers[0] if seen is not None and seen.containers else None
        _record(workload, plan, stats, now_ms)
    return plan


def loop_policy(*, window: str = "2h", cooldown: str = "2h", target: float = 0.05) -> PolicyObject:
    """The AutoPatch policy of the loop: every namespace patched, no rollout cap."""
    parsed = parse_policy(
        {
            "metadata": {"name": "loop", "generation": 1},
            "spec": {
                "mode": "AutoPatch",
                "window": window,
                "throttleTarget": target,
                "webConcurrency": {"enabled": True},
                "patch": {"cooldown": cooldown, "maxConcurrentRollouts": 100},
                "history": {"minSamples": 10, "minCoverage": 0.5},
            },
        }
    )
    assert isinstance(parsed, PolicyObject)
    return parsed


def seed_workloads(tiers: Iterable[str], start_ms: int) -> list[LoopWorkload]:
    """Every seed scenario once per tier (own namespace, tier label), one replica each."""
    return [
        start_workload(
            s.with_changes(namespace=f"{s.namespace}-{tier}", replicas=1),
            start_ms,
            labels={"unthrottle.dev/tier": tier},
        )
        for tier in tiers
        for s in all_scenarios()
    ]


def run_loop(
    workloads: list[LoopWorkload],
    policy: PolicyObject,
    *,
    start_ms: int,
    passes: int,
    step_ms: int,
    workdir: Path,
) -> list[PassPlan]:
    """``passes`` passes, ``step_ms`` of simulated time apart, from ``start_ms``: their plans."""
    return [
        run_pass(workloads, policy, start_ms + k * step_ms, workdir / f"pass-{k}")
        for k in range(passes)
    ]
