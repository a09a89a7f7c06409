"""One pass for one ThrottlePolicy: fetch, decide, write.

The order is what makes it safe: nothing is written to a Deployment until the policy
validates, Prometheus answered, and every required series was there; a Deployment is
patched only through :func:`unthrottle.reconcile.patch.decide`. Every outcome, including
each reason for not acting, ends in the policy's status and the ThrottleRecommendations.

Overlapping policies: a Deployment selected by several policies is governed by the oldest
(creation time, then name); the others leave it alone and list it in ``status.overlaps``,
and its ThrottleRecommendation names the governing policy.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from unthrottle.engine.recommend import recommend
from unthrottle.model.names import (
    AUTO_PATCH_LABEL,
    LAST_PATCHED_ANNOTATION,
    RECOMMENDATION_ANNOTATION,
    ROLLBACK_ANNOTATION,
)
from unthrottle.model.policy import Mode, ThrottlePolicySpec
from unthrottle.model.recommendation import NoRecommendation, RecommendationResult
from unthrottle.model.stats import ContainerStats
from unthrottle.model.status import Condition, ThrottlePolicyStatus
from unthrottle.model.workload import DeploymentInfo
from unthrottle.reconcile.patch import (
    PatchContext,
    decide,
    rollback_patch,
)
from unthrottle.reconcile.schedule import parse_timestamp_ms
from unthrottle.reconcile.scope import (
    OperatorScope,
    Rival,
    is_ignored,
    join,
    namespaces_in_scope,
    policy_for,
    precedence,
    split_governed,
)
from unthrottle.reconcile.status import (
    WorkloadOutcome,
    as_merge_patch,
    condition,
    policy_status,
    recommendation_annotation,
    trec_status,
)
from unthrottle.sources.kubeapi import KubernetesError
from unthrottle.sources.kubernetes import KubernetesSource
from unthrottle.sources.prometheus import PrometheusConfig, PrometheusError, PrometheusSource

__all__ = [
    "Instant",
    "OperatorSettings",
    "PassResult",
    "reconcile_policy",
]

MAX_OVERLAPS_LISTED = 20
logger = logging.getLogger("unthrottle.reconcile")


@dataclass(frozen=True)
class Instant:
    """The time of a pass, given by the caller (reconcile reads no clock of its own)."""

    ms: int
    text: str

    @classmethod
    def at(cls, moment: datetime) -> Instant:
        moment = moment.astimezone(UTC).replace(microsecond=0)
        return cls(int(moment.timestamp() * 1000), moment.strftime("%Y-%m-%dT%H:%M:%SZ"))


@dataclass(frozen=True)
class OperatorSettings:
    """How the operator was started (``unthrottle run``)."""

    prometheus_url: str | None = None
    operator_namespace: str = "unthrottle-system"
    namespaces: tuple[str, ...] | None = None  # None: every namespace (-A)


@dataclass
class PassResult:
    """What one pass did, for logs and the operator's metrics."""

    policy: str
    ok: bool
    workloads: int = 0
    throttled: int = 0
    patched: int = 0
    skipped: int = 0
    prometheus_error: bool = False
    seconds: float = 0.0
    message: str = ""
    events: list[tuple[str, str]] = field(default_factory=list)


def _validation_message(error: ValidationError) -> str:
    # Paths from the object's root, as the API server names fields: "spec.cpu: ...", and
    # "spec: ..." for a rule across fields (not ": ...").
    return "; ".join(
        ".".join(["spec", *(str(p) for p in e["loc"])])
        + ": "
        + str(e["msg"]).removeprefix("Value error, ")
        for e in error.errors(include_url=False)
    )


class _Pass:
    """The state of one pass; methods are its steps."""

    def __init__(
        self,
        policy: Mapping[str, Any],
        kube: KubernetesSource,
        settings: OperatorSettings,
        now: Instant,
        prometheus: Callable[[PrometheusConfig], PrometheusSource],
    ) -> None:
        self.body = policy
        self.name: str = policy["metadata"]["name"]
        self.generation: int = policy["metadata"].get("generation") or 0
        self.kube = kube
        self.settings = settings
        self.now = now
        self.prometheus = prometheus
        previous = (policy.get("status") or {}) or None
        self.previous: ThrottlePolicyStatus | None = None
        if previous:
            try:
                self.previous = ThrottlePolicyStatus.model_validate(previous)
            except ValidationError:
                self.previous = None
        self.result = PassResult(self.name, ok=False)
        self._bounds = OperatorScope(
            settings.operator_namespace,
            None if settings.namespaces is None else frozenset(settings.namespaces),
        )

    # -- writing the policy's status --------------------------------------------------

    def _condition(self, kind: str, ok: bool, reason: str, message: str) -> Condition:
        return condition(
            kind, ok, reason, message, now_text=self.now.text, generation=self.generation
        )

    def _write_status(self, status: ThrottlePolicyStatus) -> None:
        body = as_merge_patch(status.model_dump(mode="json", by_alias=True))
        self.kube.patch_policy_status(self.name, body)

    def fail(self, reason: str, message: str, *, prometheus: bool | None = None) -> PassResult:
        """No writes to workloads; the policy's status says why."""
        conditions = [self._condition("Ready", False, reason, message)]
        if prometheus is not None:
            conditions.append(
                self._condition(
                    "PrometheusReachable",
                    prometheus,
                    "Answered" if prometheus else reason,
                    "" if prometheus else message,
                )
            )
        status = policy_status(
            [],
            conditions,
            self.previous,
            generation=self.generation,
            now_text=self.now.text,
            target=0.0,
            message=message,
        )
        self._write_status(status)
        self.result.message = message
        self.result.prometheus_error = prometheus is False
        logger.warning("policy %s: %s: %s", self.name, reason, message)
        return self.result

    # -- the pass -----------------------------------------------------------------------

    def run(self) -> PassResult:
        try:
            spec = ThrottlePolicySpec.model_validate(self.body.get("spec") or {})
        except ValidationError as exc:
            return self.fail("InvalidPolicy", _validation_message(exc))
        url = spec.prometheus.url or self.settings.prometheus_url
        if not url:
            return self.fail(
                "NoPrometheus",
                "no Prometheus URL: set spec.prometheus.url or UNTHROTTLE_PROMETHEUS_URL",
                prometheus=False,
            )
        try:
            config = self._prometheus_config(spec, url)
        except KubernetesError as exc:
            return self.fail("PrometheusCredentials", str(exc), prometheus=False)
        except ValueError as exc:
            return self.fail("InvalidPrometheusConfig", str(exc), prometheus=False)
        labels = self.kube.namespace_labels()
        namespaces = namespaces_in_scope(spec, labels, self._bounds)
        candidates = [
            d
            for d in self.kube.deployments(namespaces, "", spec.web_concurrency.env_name)
            if spec.selector.matches(d.labels)
        ]
        deployments, overlaps = self._governed(spec, candidates, labels)
        scoped_namespaces = sorted({d.ref.namespace for d in deployments})
        try:
            with self.prometheus(config) as source:
                fetched = source.fetch(
                    spec.window,
                    namespaces=scoped_namespaces,
                    end=self.now.ms / 1000,
                    replicaset_owners=self.kube.replicaset_owners(scoped_namespaces),
                )
        except PrometheusError as exc:
            return self.fail("PrometheusUnavailable", str(exc), prometheus=False)
        if fetched.missing_series and deployments:
            missing = ", ".join(sorted(fetched.missing_series))
            return self.fail(
                "MissingSeries",
                f"required series missing in {config.display_url}: {missing}",
                prometheus=True,
            )
        # Like every other write to a Deployment, only once Prometheus answered in full.
        deployments = self._rollbacks(spec, deployments)
        outcomes = self._decide_and_write(spec, deployments, labels, fetched.partial, fetched)
        self._delete_stale({(o.ref.namespace, o.ref.name) for o in outcomes})
        conditions = [
            self._condition("Ready", True, "Reconciled", f"{len(outcomes)} workloads"),
            self._condition("PrometheusReachable", True, "Answered", ""),
        ]
        status = policy_status(
            outcomes,
            conditions,
            self.previous,
            generation=self.generation,
            now_text=self.now.text,
            target=spec.throttle_target,
            overlaps=overlaps,
            message="Prometheus warned the data may be partial; nothing was patched"
            if fetched.partial
            else "",
        )
        self._write_status(status)
        counts = status.counts
        self.result.ok = True
        self.result.workloads = counts.workloads
        self.result.throttled = counts.throttled
        self.result.patched = counts.patched
        self.result.skipped = counts.skipped
        return self.result

    def _prometheus_config(self, spec: ThrottlePolicySpec, url: str) -> PrometheusConfig:
        p = spec.prometheus
        token = username = password = None
        ca_bundle = None
        if p.bearer_token_secret_ref is not None:
            ref = p.bearer_token_secret_ref
            token = self.kube.secret_value(ref.namespace, ref.name, ref.key)
        if p.basic_auth_username_secret_ref is not None and p.basic_auth_password_secret_ref:
            u, pw = p.basic_auth_username_secret_ref, p.basic_auth_password_secret_ref
            username = self.kube.secret_value(u.namespace, u.name, u.key)
            password = self.kube.secret_value(pw.namespace, pw.name, pw.key)
        if p.ca_bundle_secret_ref is not None:
            ref = p.ca_bundle_secret_ref
            ca_bundle = _write_ca(self.kube.secret_value(ref.namespace, ref.name, ref.key))
        return PrometheusConfig(
            url=url,
            bearer_token=token,
            username=username,
            password=password,
            ca_bundle=ca_bundle,
            insecure_skip_verify=p.insecure_skip_verify,
            timeout_seconds=p.timeout / 1000,
            extra_matchers=p.match_labels,
            cfs_period_us=spec.cpu.cfs_period * 1000,
        )

    def _governed(
        self,
        spec: ThrottlePolicySpec,
        candidates: list[DeploymentInfo],
        labels: Mapping[str, Mapping[str, str]],
    ) -> tuple[list[DeploymentInfo], list[str]]:
        """The candidates this policy governs, and the overlaps to state in its status."""
        others: list[Rival] = []
        for other in self.kube.policies():
            if other["metadata"]["name"] == self.name:
                continue
            try:
                rival = ThrottlePolicySpec.model_validate(other.get("spec") or {})
            except ValidationError:
                continue  # an invalid policy governs nothing
            others.append(Rival(precedence(other), rival))
        governed, overlaps = split_governed(
            precedence(self.body), others, candidates, labels, self._bounds
        )
        return governed, overlaps[:MAX_OVERLAPS_LISTED]

    def _decide_and_write(
        self,
        spec: ThrottlePolicySpec,
        deployments: list[DeploymentInfo],
        labels: Mapping[str, Mapping[str, str]],
        partial: bool,
        fetched: Any,
    ) -> list[WorkloadOutcome]:
        auto = {
            ns
            for ns in {d.ref.namespace for d in deployments}
            if spec.mode is Mode.AUTO_PATCH
            and labels.get(ns, {}).get(AUTO_PATCH_LABEL) == "enabled"
        }
        hpa = self.kube.cpu_autoscaled(sorted(auto)) if auto else set()
        in_progress = sum(
            1
            for d in deployments
            if d.ref.namespace in auto
            and d.rollout_in_progress
            and LAST_PATCHED_ANNOTATION in d.annotations
        )
        slots = spec.patch.max_concurrent_rollouts - in_progress
        previous = {
            (t["metadata"]["namespace"], t["metadata"]["name"]): t.get("status") or {}
            for t in self.kube.recommendations(
                sorted({d.ref.namespace for d in deployments}), self.name
            )
        }
        by_deployment: dict[str, list[tuple[str, RecommendationResult, ContainerStats | None]]] = {}
        info = {str(d.ref): d for d in deployments}
        for item in join(deployments, fetched.workloads):
            applied = policy_for(item.deployment, spec)
            stats = None if isinstance(item.stats, NoRecommendation) else item.stats
            result = (
                item.stats
                if isinstance(item.stats, NoRecommendation)
                else recommend(item.stats, applied)
            )
            by_deployment.setdefault(str(item.ref), []).append((item.container.name, result, stats))
        outcomes = []
        for key, rows in sorted(by_deployment.items()):
            deployment = info[key]
            applied = policy_for(deployment, spec)
            context = PatchContext(
                auto_patch=deployment.ref.namespace in auto,
                now_ms=self.now.ms,
                now_text=self.now.text,
                data_partial=partial,
                hpa_on_cpu=(deployment.ref.namespace, deployment.ref.name) in hpa,
                last_patched_ms=parse_timestamp_ms(
                    deployment.annotations.get(LAST_PATCHED_ANNOTATION)
                ),
                rollout_slots=slots,
            )
            decision = decide(deployment, {n: r for n, r, _ in rows}, applied, context)
            outcome = WorkloadOutcome(
                ref=deployment.ref,
                tier=applied.tier,
                containers=deployment.containers,
                stats={n: s for n, _, s in rows if s is not None},
                decision=decision,
            )
            annotation = recommendation_annotation(outcome, self.name)
            if decision.patch is not None:
                body = decision.patch
                body["metadata"]["annotations"][RECOMMENDATION_ANNOTATION] = annotation
                self.kube.patch_deployment(deployment.ref, body)
                slots -= 1
                self._event(deployment, "Patched", _patched_message(outcome))
            elif deployment.annotations.get(RECOMMENDATION_ANNOTATION) != annotation:
                self.kube.annotate_deployment(
                    deployment.ref, {RECOMMENDATION_ANNOTATION: annotation}
                )
            status = trec_status(outcome, self.name, self.now.text)
            old = previous.get((deployment.ref.namespace, deployment.ref.name), {})
            old_summary = old.get("summary") or {}
            if (
                context.auto_patch
                and decision.skip_reason
                and (
                    old_summary.get("action") != "Skipped" or _first_code(old) != decision.skip_code
                )
            ):
                self._event(deployment, "Skipped", decision.skip_reason)
            self.kube.upsert_recommendation(
                deployment,
                self.name,
                {
                    "targetRef": {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": deployment.ref.name,
                    },
                    "policy": self.name,
                },
                as_merge_patch(status.model_dump(mode="json", by_alias=True)),
            )
            outcomes.append(outcome)
        return outcomes

    def _rollbacks(
        self, spec: ThrottlePolicySpec, deployments: list[DeploymentInfo]
    ) -> list[DeploymentInfo]:
        """Roll back those annotated ``unthrottle.dev/rollback: "true"``; the Deployments as
        they are afterwards, so this pass recommends from, and its trec shows, the restored
        resources rather than the ones just undone."""
        rolled = {
            str(d.ref)
            for d in deployments
            if not is_ignored(d) and d.annotations.get(ROLLBACK_ANNOTATION, "").lower() == "true"
        }
        if not rolled:
            return deployments
        for deployment in deployments:
            if str(deployment.ref) in rolled:
                self._rollback(deployment)
        namespaces = sorted({d.ref.namespace for d in deployments if str(d.ref) in rolled})
        fresh = {
            str(d.ref): d
            for d in self.kube.deployments(namespaces, "", spec.web_concurrency.env_name)
        }
        return [fresh.get(str(d.ref), d) if str(d.ref) in rolled else d for d in deployments]

    def _rollback(self, deployment: DeploymentInfo) -> None:
        body = rollback_patch(deployment, self.now.text)
        if body is None:
            self.kube.annotate_deployment(deployment.ref, {ROLLBACK_ANNOTATION: None})
            self._event(
                deployment,
                "RollbackImpossible",
                "no unthrottle.dev/previous-resources to restore",
                warning=True,
            )
            return
        self.kube.patch_deployment(deployment.ref, body)
        self._event(
            deployment, "RolledBack", "restored the resources recorded before the last patch"
        )

    def _delete_stale(self, keep: set[tuple[str, str]]) -> None:
        """ThrottleRecommendations this policy wrote for Deployments it no longer governs
        (deleted ones go with their Deployment; these left the scope, opted out, or went
        to an older policy), in any namespace."""
        for trec in self.kube.recommendations(None, self.name):
            key = (trec["metadata"]["namespace"], trec["metadata"]["name"])
            if key not in keep:
                self.kube.delete_recommendation(*key)

    def _event(
        self, deployment: DeploymentInfo, reason: str, message: str, *, warning: bool = False
    ) -> None:
        involved = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "namespace": deployment.ref.namespace,
            "name": deployment.ref.name,
            "uid": deployment.uid,
        }
        try:
            self.kube.event(involved, reason, message, warning=warning, now_text=self.now.text)
        except KubernetesError as exc:  # an event is worth less than the pass
            logger.warning("event %s on %s not posted: %s", reason, deployment.ref, exc)
        self.result.events.append((str(deployment.ref), reason))


def _first_code(trec_status: Mapping[str, Any]) -> str:
    containers = trec_status.get("containers") or []
    return str(containers[0].get("reason", "")).partition(":")[0] if containers else ""


def _patched_message(outcome: WorkloadOutcome) -> str:
    parts = []
    for decision in outcome.decision.containers:
        applied = decision.applied
        if applied is None:
            continue
        limit = "none" if applied.cpu_limit is None else f"{applied.cpu_limit}m"
        parts.append(f"{decision.name}: cpu {applied.cpu_request}m/{limit}")
    return "patched " + "; ".join(parts)


def _write_ca(pem: str) -> str:
    """The CA bundle as a file for ``requests``: one file per content, written once."""
    path = (
        Path(tempfile.gettempdir())
        / f"unthrottle-ca-{hashlib.sha256(pem.encode()).hexdigest()[:16]}.crt"
    )
    if not path.exists():
        path.write_text(pem, encoding="utf-8")
    return str(path)


def reconcile_policy(
    policy: Mapping[str, Any],
    kube: KubernetesSource,
    settings: OperatorSettings,
    now: Instant,
    prometheus: Callable[[PrometheusConfig], PrometheusSource] = PrometheusSource,
) -> PassResult:
    """One pass of one ThrottlePolicy (the object as the API server returns it)."""
    started = time.monotonic()
    result = _Pass(policy, kube, settings, now, prometheus).run()
    result.seconds = time.monotonic() - started
    logger.info(
        "policy %s: %s workloads, %s throttled, %s patched, %s skipped in %.1fs%s",
        result.policy,
        result.workloads,
        result.throttled,
        result.patched,
        result.skipped,
        result.seconds,
        f" ({result.message})" if result.message else "",
    )
    return result
