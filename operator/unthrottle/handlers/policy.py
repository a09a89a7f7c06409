"""The ThrottlePolicy handlers: create, update and resume run a pass at once; a timer runs
one whenever the policy is due (:func:`unthrottle.reconcile.schedule.is_due`).

Only ThrottlePolicies are handled, so kopf keeps its bookkeeping (progress, diff base)
in annotations of the policies themselves and never writes to users' Deployments. The
clients and settings arrive in ``memo`` (:class:`OperatorMemo`), built once by
``unthrottle run``; passes run in a thread, since the clients are synchronous.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf

from unthrottle.handlers.metrics import forget_policy, record_pass
from unthrottle.model.names import GROUP, VERSION
from unthrottle.model.quantity import QuantityError, parse_duration_ms
from unthrottle.reconcile.run import Instant, OperatorSettings, reconcile_policy
from unthrottle.reconcile.schedule import is_due
from unthrottle.sources.kubeapi import KubernetesError
from unthrottle.sources.kubernetes import KubernetesSource

__all__ = ["OperatorMemo", "configure"]

RESOURCE = (GROUP, VERSION, "throttlepolicies")
TICK_SECONDS = 30.0
logger = logging.getLogger("unthrottle.handlers")


@dataclass
class OperatorMemo:
    """What every handler needs, built once at start-up."""

    kube: KubernetesSource
    settings: OperatorSettings
    # One pass at a time, across all policies: passes share the clients and the rollout
    # budget of a namespace can be counted by two overlapping policies otherwise.
    lock: asyncio.Lock | None = None


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """kopf's own state stays on our objects, under our prefix; no peering."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/kopf-finalizer"
    settings.posting.level = logging.WARNING
    settings.peering.standalone = True


@kopf.on.login()
def login(memo: Any, **_: Any) -> kopf.ConnectionInfo:
    """kopf connects with the same identity and credentials as unthrottle's own client."""
    assert isinstance(memo, OperatorMemo)
    return kopf.ConnectionInfo(**memo.kube.api.credentials())


def _interval_seconds(policy: dict[str, Any]) -> float | None:
    try:
        return parse_duration_ms(str((policy.get("spec") or {}).get("interval") or "10m")) / 1000
    except QuantityError:
        return None  # the pass reports the invalid spec


async def _pass(body: kopf.Body, memo: Any) -> None:
    assert isinstance(memo, OperatorMemo)
    if memo.lock is None:
        memo.lock = asyncio.Lock()
    policy = dict(body)
    now = Instant.at(datetime.now(UTC))
    try:
        async with memo.lock:
            result = await asyncio.to_thread(
                reconcile_policy, policy, memo.kube, memo.settings, now
            )
    except KubernetesError as exc:
        record_pass(body["metadata"]["name"], None)
        kopf.warn(body, reason="ReconcileFailed", message=str(exc))
        raise kopf.TemporaryError(str(exc), delay=60) from exc
    record_pass(result.policy, result, interval_seconds=_interval_seconds(policy))
    if not result.ok:
        kopf.warn(body, reason="NotReconciled", message=result.message)


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE, field="spec")
async def reconcile_now(body: kopf.Body, memo: Any, **_: Any) -> None:
    await _pass(body, memo)


@kopf.timer(*RESOURCE, interval=TICK_SECONDS, initial_delay=TICK_SECONDS)
async def reconcile_when_due(body: kopf.Body, memo: Any, **_: Any) -> None:
    if is_due(body, int(datetime.now(UTC).timestamp() * 1000)):
        await _pass(body, memo)


@kopf.on.delete(*RESOURCE, optional=True)
async def forget(body: kopf.Body, **_: Any) -> None:
    """A deleted policy's per-container series go with it."""
    forget_policy(body["metadata"]["name"])
