"""``unthrottle export`` as data: the decisions, the patches' content and the directory."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from importlib import import_module
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.unit.test_plan import fetch_result, stats
from tests.unit.test_plan import manifest as plan_manifest

from unthrottle.cli.explain import Target, explain_text, parse_target
from unthrottle.cli.export import (
    KUSTOMIZATION,
    export_decisions,
    exported,
    write_directory,
)
from unthrottle.cli.reading import Reading
from unthrottle.cli.report import report_plan
from unthrottle.model.names import LAST_PATCHED_ANNOTATION
from unthrottle.model.policy import ThrottlePolicySpec
from unthrottle.model.workload import WorkloadKind, WorkloadStats
from unthrottle.reconcile.snapshot import Instant
from unthrottle.sources.kubernetes import deployment_info
from unthrottle.sources.prometheus import PrometheusConfig

ROOT = Path(__file__).resolve().parents[2]
NOW = Instant.from_ms(1_767_225_600_000)
HOUR_MS = 3_600_000


def manifest(name: str, *, rolling: bool = False, last_patched: str | None = None) -> Any:
    """test_plan's Deployment, maybe mid-rollout (its pod runs the old template) or
    patched by AutoPatch at ``last_patched``."""
    annotations = {LAST_PATCHED_ANNOTATION: last_patched} if last_patched else {}
    found = plan_manifest("shop", name, annotations=annotations)
    if rolling:
        found["status"]["updatedReplicas"] = 0
    return found


def reading(
    manifests: list[Any],
    throttled: float = 0.6,
    kind: WorkloadKind = WorkloadKind.DEPLOYMENT,
    **spec: Any,
) -> Reading:
    deployments = [deployment_info(m, "WEB_CONCURRENCY", kind) for m in manifests]
    fetched = fetch_result(
        tuple(WorkloadStats(ref=d.ref, containers=(stats(throttled),), pods=1) for d in deployments)
    )
    policy = ThrottlePolicySpec.model_validate(spec)
    config = PrometheusConfig(url="http://prometheus:9090")
    return Reading(policy, config, fetched, ["shop"], deployments)


def export_of(r: Reading) -> tuple[list[Any], list[Any]]:
    plan = report_plan(r.fetched, r.policy, r.deployments, now=NOW)
    return exported(export_decisions(plan, r, NOW))


def test_rollout_state_does_not_hold_an_export_back_but_step_limits_and_min_change_do() -> None:
    rolling = manifest("rolling", rolling=True)
    cooling = manifest("cooling", last_patched=NOW.text)  # AutoPatch: 24h of cooldown
    patches, unchanged = export_of(reading([rolling, cooling]))
    assert [str(p.ref) for p in patches] == ["shop/cooling", "shop/rolling"]
    assert unchanged == []
    (container,) = patches[0].body["spec"]["template"]["spec"]["containers"]
    # maxStepUp 2: 300m at most doubles in one patch, whatever the engine recommends.
    assert container["resources"]["limits"]["cpu"] == "600m"
    # Steps of at most 5% each way: every change is under patch.minChange (10%).
    small = {"maxStepUp": 1.05, "maxStepDown": 0.95}
    healthy = export_of(reading([manifest("calm")], throttled=0.0, patch=small))
    assert healthy[0] == []
    assert healthy[1][0][1].startswith("below-min-change:")


def test_a_patch_holds_only_the_owned_fields_and_names_its_target() -> None:
    (patch,), _ = export_of(reading([manifest("a")]))
    body = patch.body
    assert body["apiVersion"] == "apps/v1" and body["kind"] == "Deployment"
    assert body["metadata"] == {"name": "a", "namespace": "shop"}  # no bookkeeping annotations
    assert set(body["spec"]) == {"template"}
    assert set(body["spec"]["template"]["spec"]["containers"][0]) == {"name", "resources"}
    fields = {(c.container, c.field): (c.before, c.after) for c in patch.changes}
    assert fields[("app", "cpu limit")] == ("300m", "600m")
    assert patch.file_name == "deployment_shop_a.yaml"


@pytest.mark.parametrize("kind", [WorkloadKind.STATEFULSET, WorkloadKind.DAEMONSET])
def test_a_statefulsets_or_daemonsets_patch_and_explanation_name_its_kind(
    kind: WorkloadKind,
) -> None:
    r = reading([manifest("db")], kind=kind)
    plan = report_plan(r.fetched, r.policy, r.deployments, now=NOW)
    ((workload, decision),) = export_decisions(plan, r, NOW)
    (patch,), _ = exported([(workload, decision)])
    assert (patch.body["apiVersion"], patch.body["kind"]) == ("apps/v1", kind.value)
    assert patch.body["metadata"] == {"name": "db", "namespace": "shop"}
    assert set(patch.body["spec"]) == {"template"}
    assert patch.file_name == f"{kind.value.lower()}_shop_db.yaml"
    text = explain_text(workload.outcome, "export line", r.policy.throttle_target, HOUR_MS)
    assert text.startswith(f"{kind.value} shop/db  (tier "), text


def test_partial_data_exports_nothing() -> None:
    r = reading([manifest("a")])
    partial = Reading(
        r.policy,
        r.config,
        replace(r.fetched, warnings=("shard down",)),
        r.namespaces,
        r.deployments,
    )
    patches, unchanged = export_of(partial)
    assert patches == [] and unchanged[0][1].startswith("partial-data:")


def test_the_directory_keeps_earlier_patches_merges_containers_and_rewrites_nothing_unchanged(
    tmp_path: Path,
) -> None:
    (patch,), _ = export_of(reading([manifest("a")]))
    assert write_directory(tmp_path, [patch], ["../base"]) == [patch.file_name, KUSTOMIZATION]
    kustomization = yaml.safe_load((tmp_path / KUSTOMIZATION).read_text())
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["resources"] == ["../base"]
    assert kustomization["patchesStrategicMerge"] == [patch.file_name]
    assert write_directory(tmp_path, [patch]) == []  # the same content: nothing written
    # A sidecar patched by an earlier export stays when a new patch names only "app".
    path = tmp_path / patch.file_name
    earlier = yaml.safe_load(path.read_text())
    sidecar = {"name": "sidecar", "resources": {"requests": {"cpu": "50m"}}}
    earlier["spec"]["template"]["spec"]["containers"].append(sidecar)
    path.write_text(yaml.safe_dump(earlier))
    assert write_directory(tmp_path, [patch]) == [patch.file_name]
    names = [
        c["name"]
        for c in yaml.safe_load(path.read_text())["spec"]["template"]["spec"]["containers"]
    ]
    assert names == ["app", "sidecar"]


def test_a_kustomization_in_the_newer_form_keeps_its_form_and_other_entries(
    tmp_path: Path,
) -> None:
    (tmp_path / KUSTOMIZATION).write_text(
        yaml.safe_dump({"resources": ["app.yaml"], "patches": [{"path": "mine.yaml"}]})
    )
    (patch,), _ = export_of(reading([manifest("a")]))
    write_directory(tmp_path, [patch])
    kustomization = yaml.safe_load((tmp_path / KUSTOMIZATION).read_text())
    assert kustomization["patches"] == [{"path": "mine.yaml"}, {"path": patch.file_name}]
    assert "patchesStrategicMerge" not in kustomization
    assert kustomization["resources"] == ["app.yaml"]


def test_the_kubectl_plugin_entry_point_is_installed_and_resolves() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, name = scripts["kubectl-unthrottle"].partition(":")
    assert callable(getattr(import_module(module), name))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("shop/checkout", Target("shop", None, "checkout")),
        ("checkout", Target("", None, "checkout")),
        # The kind, as export's summary prints it, or as kubectl users write it.
        ("shop/statefulset/db", Target("shop", WorkloadKind.STATEFULSET, "db")),
        ("shop/StatefulSet/db", Target("shop", WorkloadKind.STATEFULSET, "db")),
        ("shop/sts/db", Target("shop", WorkloadKind.STATEFULSET, "db")),
        ("kube-system/ds/agent", Target("kube-system", WorkloadKind.DAEMONSET, "agent")),
        ("shop/deployments/web", Target("shop", WorkloadKind.DEPLOYMENT, "web")),
        ("shop/deploy/web", Target("shop", WorkloadKind.DEPLOYMENT, "web")),
    ],
)
def test_explain_targets(text: str, expected: Target) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("shop/cronjob/db", "'cronjob' in 'shop/cronjob/db' is not a workload kind"),
        ("shop/", "give NS/NAME, NS/KIND/NAME"),
        ("/db", "give NS/NAME"),
        ("a/b/c/d", "give NS/NAME"),
        ("", "give NS/NAME"),
    ],
)
def test_explain_targets_refused_with_one_line(text: str, says: str) -> None:
    error = parse_target(text)
    assert isinstance(error, str) and says in error and "\n" not in error
