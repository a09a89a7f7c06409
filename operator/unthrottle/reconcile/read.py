"""Reading a pass's snapshot: the cluster through the Kubernetes source, the metrics
through the Prometheus source, and the one builder of a policy's Prometheus configuration.

Every read a pass makes is here, so what a pass costs the API server and Prometheus can be
seen in one place: namespaces (one list), workloads (one list per namespace in scope and
kind in the policy's ``kinds``: Deployments, StatefulSets, DaemonSets),
ThrottlePolicies (one list, for precedence), nodes (one list, for the largest), HPAs (per
AutoPatch namespace), this policy's ThrottleRecommendations (one list), ReplicaSets (per
namespace, to map pods), pods and their ReplicaSets again (per namespace holding a
workload with the burst annotation: the burst the node agent reports applied), and the
Prometheus fetch (a fixed number of queries for the whole scope). Nothing here decides.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from pydantic import ValidationError

from unthrottle.model.policy import ThrottlePolicySpec
from unthrottle.reconcile.plan import auto_patch_namespaces, governed, policy_namespaces
from unthrottle.reconcile.scope import OperatorScope, Rival, precedence
from unthrottle.reconcile.snapshot import (
    ClusterSnapshot,
    Instant,
    MetricsSnapshot,
    PassFailure,
    PolicyObject,
)
from unthrottle.sources.kubeapi import KubernetesError
from unthrottle.sources.kubernetes import KubernetesSource
from unthrottle.sources.prometheus import (
    FetchResult,
    PrometheusConfig,
    PrometheusError,
    PrometheusSource,
)

__all__ = [
    "PrometheusFactory",
    "operator_prometheus_config",
    "prometheus_config",
    "read_cluster",
    "read_metrics",
]

PrometheusFactory = Callable[[PrometheusConfig], PrometheusSource]


def prometheus_config(
    spec: ThrottlePolicySpec,
    url: str,
    *,
    bearer_token: str | None = None,
    username: str | None = None,
    password: str | None = None,
    ca_bundle: str | None = None,
    insecure_skip_verify: bool | None = None,
    timeout_seconds: float | None = None,
    extra_matchers: Mapping[str, str] | None = None,
    concurrency: int | None = None,
    compress_answers: bool | None = None,
) -> PrometheusConfig:
    """How to read Prometheus for a policy: its matchers, CFS period, TLS and timeout, with
    the credentials and overrides of the caller (the operator's Secrets, the CLI's flags)."""
    p = spec.prometheus
    return PrometheusConfig(
        url=url,
        bearer_token=bearer_token,
        username=username,
        password=password,
        ca_bundle=ca_bundle,
        insecure_skip_verify=p.insecure_skip_verify
        if insecure_skip_verify is None
        else insecure_skip_verify,
        timeout_seconds=p.timeout / 1000 if timeout_seconds is None else timeout_seconds,
        extra_matchers={**p.match_labels, **(extra_matchers or {})},
        cfs_period_us=spec.cpu.cfs_period * 1000,
        concurrency=p.concurrency if concurrency is None else concurrency,
        compress_answers=p.compress_answers if compress_answers is None else compress_answers,
    )


def _write_ca(pem: str) -> str:
    """The CA bundle as a file for ``requests``: one file per content, written once."""
    digest = hashlib.sha256(pem.encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"unthrottle-ca-{digest}.crt"
    if not path.exists():
        path.write_text(pem, encoding="utf-8")
    return str(path)


def operator_prometheus_config(
    spec: ThrottlePolicySpec, kube: KubernetesSource, default_url: str | None
) -> PrometheusConfig | PassFailure:
    """The operator's configuration for a policy: its URL, and credentials from Secrets."""
    url = spec.prometheus.url or default_url
    if not url:
        return PassFailure(
            "NoPrometheus",
            "no Prometheus URL: set spec.prometheus.url or UNTHROTTLE_PROMETHEUS_URL",
            prometheus=False,
        )
    p = spec.prometheus
    token = username = password = ca_bundle = None
    try:
        if p.bearer_token_secret_ref is not None:
            ref = p.bearer_token_secret_ref
            token = kube.secret_value(ref.namespace, ref.name, ref.key)
        if p.basic_auth_username_secret_ref is not None and p.basic_auth_password_secret_ref:
            u, pw = p.basic_auth_username_secret_ref, p.basic_auth_password_secret_ref
            username = kube.secret_value(u.namespace, u.name, u.key)
            password = kube.secret_value(pw.namespace, pw.name, pw.key)
        if p.ca_bundle_secret_ref is not None:
            ref = p.ca_bundle_secret_ref
            ca_bundle = _write_ca(kube.secret_value(ref.namespace, ref.name, ref.key))
        return prometheus_config(
            spec,
            url,
            bearer_token=token,
            username=username,
            password=password,
            ca_bundle=ca_bundle,
        )
    except KubernetesError as exc:
        return PassFailure("PrometheusCredentials", str(exc), prometheus=False)
    except ValueError as exc:
        return PassFailure("InvalidPrometheusConfig", str(exc), prometheus=False)


def _rivals(kube: KubernetesSource, name: str) -> tuple[Rival, ...]:
    rivals = []
    for other in kube.policies():
        if other["metadata"]["name"] == name:
            continue
        try:
            spec = ThrottlePolicySpec.model_validate(other.get("spec") or {})
        except ValidationError:
            continue  # an invalid policy governs nothing
        rivals.append(Rival(precedence(other), spec))
    return tuple(rivals)


def read_cluster(
    policy: PolicyObject, kube: KubernetesSource, bounds: OperatorScope
) -> ClusterSnapshot:
    """The cluster as the policy sees it (everything but the metrics)."""
    spec = policy.spec
    labels = kube.namespace_labels()
    base = ClusterSnapshot(bounds=bounds, namespace_labels=labels)
    namespaces = policy_namespaces(policy, base)
    selected = [
        d
        for d in kube.workloads(namespaces, "", spec.web_concurrency.env_name, spec.kinds)
        if spec.selector.matches(d.labels)
    ]
    candidates = tuple(kube.with_applied_bursts(selected))
    snapshot = ClusterSnapshot(
        bounds=bounds,
        namespace_labels=labels,
        deployments=candidates,
        rivals=_rivals(kube, policy.name),
    )
    mine, _ = governed(policy, snapshot)
    auto = auto_patch_namespaces(spec, mine, labels)
    recommendations = {
        (t["metadata"]["namespace"], t["metadata"]["name"]): t.get("status") or {}
        for t in kube.recommendations(None, policy.name)
    }
    return ClusterSnapshot(
        bounds=bounds,
        namespace_labels=labels,
        deployments=candidates,
        rivals=snapshot.rivals,
        cpu_autoscaled=frozenset(kube.cpu_autoscaled(sorted(auto))) if auto else frozenset(),
        node_cpu=kube.node_cpu(),
        recommendations=recommendations,
    )


def read_metrics(
    policy: PolicyObject,
    snapshot: ClusterSnapshot,
    config: PrometheusConfig,
    now: Instant,
    *,
    kube: KubernetesSource | None,
    prometheus: PrometheusFactory = PrometheusSource,
    all_namespaces: bool = False,
) -> tuple[MetricsSnapshot, FetchResult] | PassFailure:
    """Prometheus' statistics for the Deployments the policy governs (one fetch), and the
    fetch's own account (queries, resolution) for the report.

    ``all_namespaces``: the report without the API server reads every namespace.
    """
    if all_namespaces:
        namespaces: list[str] | None = None
    else:
        mine, _ = governed(policy, snapshot)
        namespaces = sorted({d.ref.namespace for d in mine})
    try:
        with prometheus(config) as source:
            fetched = source.fetch(
                policy.spec.window,
                namespaces=namespaces,
                end=now.ms / 1000,
                replicaset_owners={} if kube is None else kube.replicaset_owners(namespaces),
            )
    except PrometheusError as exc:
        return PassFailure("PrometheusUnavailable", str(exc), prometheus=False)
    metrics = MetricsSnapshot(
        workloads=tuple(fetched.workloads),
        source=config.display_url,
        missing_series=fetched.missing_series,
        warnings=tuple(fetched.warnings),
        answered=fetched.queries > 0,
        unusable_series=fetched.unusable_series,
    )
    return metrics, fetched
