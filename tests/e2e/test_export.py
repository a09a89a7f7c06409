"""``unthrottle export`` and ``kubectl unthrottle`` on a real API server and Prometheus.

Two namespaces hold the same workloads, two of the simulator's scenarios as each kind
(Deployment, StatefulSet, DaemonSet), and one Prometheus the same series for both. For
each kind in turn, in one namespace the operator's pass runs in AutoPatch (the real
:func:`~unthrottle.reconcile.run.reconcile_policy`, writing through the API server); for
the other ``unthrottle export`` writes its patches next to the base the workloads were
applied from, and ``kubectl apply -k`` applies them. The two namespaces must then hold
the same owned fields, field by field, and a second export changes nothing. The
DaemonSets run on two Node objects (:func:`test_kinds.nodes`), deleted at the end.

The kubectl plugin is run by the real kubectl binary, which finds ``kubectl-unthrottle``
on PATH, with a kubeconfig of two contexts (one per namespace).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.e2e.test_kinds import NODES, Workload, nodes, resource, settle

from unthrottle.cli import main
from unthrottle.model.names import AUTO_PATCH_LABEL, BURST_ANNOTATION
from unthrottle.model.workload import WorkloadKind, WorkloadRef
from unthrottle.reconcile.run import OperatorSettings, reconcile_policy
from unthrottle.reconcile.snapshot import Instant
from unthrottle.sandbox.kube import KubeSandbox
from unthrottle.sandbox.prometheus import PrometheusFactory, PrometheusServer
from unthrottle.sim.openmetrics import iter_openmetrics
from unthrottle.sim.scenarios import Scenario, deployment_manifest, scenario
from unthrottle.sources.kubernetes import KubernetesSource

pytestmark = pytest.mark.e2e

OPERATOR = Path(__file__).resolve().parents[2] / "operator"
HOUR_MS = 3_600_000
END_MS = 1_767_225_600_000
AT = str((END_MS - 1) / 1000)
GIT, AUTO, VIEW = "exp-git", "exp-auto", "exp-view"  # VIEW: read only, never patched
SCENARIOS = ("quota-bound", "micro-burst")
KINDS = tuple(WorkloadKind)
# A prefix per kind: a ThrottleRecommendation is named by its workload, so no two kinds
# share a name; other modules' reports, which count the scenarios' own names across the
# whole cluster, do not count these either.
PREFIX = {WorkloadKind.DEPLOYMENT: "x", WorkloadKind.STATEFULSET: "s", WorkloadKind.DAEMONSET: "d"}
CASE_LABEL = "e2e.unthrottle.dev/export"
SPEC: dict[str, Any] = {
    "mode": "AutoPatch",
    "window": "1h",
    "webConcurrency": {"enabled": True},
    "patch": {"cooldown": "0s", "maxConcurrentRollouts": 10, "maxStepUp": 10},
}


def staged(name: str, namespace: str, kind: WorkloadKind) -> Scenario:
    """A scenario in ``namespace`` as a ``kind`` (a DaemonSet's pod on each node)."""
    s = scenario(name)
    replicas = len(NODES) if kind is WorkloadKind.DAEMONSET else 1
    name = f"{PREFIX[kind]}-{s.deployment}"
    return s.with_changes(namespace=namespace, replicas=replicas, kind=kind, deployment=name)


def manifests(namespace: str, kind: WorkloadKind) -> list[dict[str, Any]]:
    return [deployment_manifest(staged(n, namespace, kind)) for n in SCENARIOS]


@pytest.fixture(scope="module")
def prometheus(prometheus_factory: PrometheusFactory) -> PrometheusServer:
    scenarios = [staged(n, ns, k) for ns in (GIT, AUTO, VIEW) for k in KINDS for n in SCENARIOS]
    chunks = iter_openmetrics(scenarios, END_MS - 2 * HOUR_MS, END_MS)
    return prometheus_factory("export", {"export.om": chunks})


@pytest.fixture(scope="module")
def stage(kube: KubeSandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A repository of one base per kind, applied to GIT with ``kubectl apply -k``; AUTO
    applied and rolled out."""
    repo = tmp_path_factory.mktemp("repo")
    with nodes(kube):
        for namespace in (GIT, AUTO, VIEW):
            kube.kubectl("create", "namespace", namespace, check=False)
            kube.kubectl(
                "label", "namespace", namespace, f"{CASE_LABEL}={namespace}", "--overwrite"
            )
        kube.kubectl("label", "namespace", AUTO, f"{AUTO_PATCH_LABEL}=enabled", "--overwrite")
        for kind in KINDS:
            base = repo / resource(kind) / "base"
            base.mkdir(parents=True)
            (base / "workloads.yaml").write_text(yaml.safe_dump_all(manifests(GIT, kind)))
            (base / "kustomization.yaml").write_text("resources:\n- workloads.yaml\n")
            kube.kubectl("apply", "-k", str(base))
            items = manifests(AUTO, kind) + manifests(VIEW, kind)
            kube.apply_manifest({"apiVersion": "v1", "kind": "List", "items": items})
        for kind in KINDS:
            for s in (staged(n, AUTO, kind) for n in SCENARIOS):
                settle(kube, AUTO, Workload(kind, s.deployment, s.replicas, {}))
        yield repo


def owned(kube: KubeSandbox, namespace: str, kind: WorkloadKind) -> dict[str, Any]:
    """The fields unthrottle owns, per workload of ``kind``, as the API server holds them."""
    found = {}
    items = kube.kubectl_json("get", resource(kind), "-n", namespace, "-o", "json")["items"]
    for w in items:
        template = w["spec"]["template"]
        found[w["metadata"]["name"]] = {
            "burst": (template["metadata"].get("annotations") or {}).get(BURST_ANNOTATION),
            "containers": {
                c["name"]: {
                    "resources": c.get("resources"),
                    "env": [e for e in c.get("env") or [] if e["name"] == "WEB_CONCURRENCY"],
                }
                for c in template["spec"]["containers"]
            },
        }
    return found


def export(
    capsys: pytest.CaptureFixture[str],
    prometheus: PrometheusServer,
    kube: KubeSandbox,
    policy: Path,
    *extra: str,
) -> tuple[int, str, str]:
    code = main(
        [
            "export",
            *("--prometheus-url", prometheus.url, "--at", AT, "--policy", str(policy)),
            *("--kubeconfig", str(kube.kubeconfig), "-n", GIT),
            *extra,
        ]
    )
    out, err = capsys.readouterr()
    return code, out, err


def autopatch(kube: KubeSandbox, prometheus: PrometheusServer, kind: WorkloadKind) -> int:
    """One AutoPatch pass over AUTO's workloads of ``kind``; how many it patched."""
    name = f"export-auto-{resource(kind)}"
    spec = {**SPEC, "kinds": [kind.value], "namespaceSelector": {"matchLabels": {CASE_LABEL: AUTO}}}
    body = {
        "apiVersion": "unthrottle.dev/v1alpha1",
        "kind": "ThrottlePolicy",
        "metadata": {"name": name},
        "spec": spec,
    }
    kube.apply_manifest(body)
    found = kube.get("throttlepolicy", name)
    assert found is not None
    source = KubernetesSource.from_kubeconfig(str(kube.kubeconfig))
    try:
        result = reconcile_policy(
            found,
            source,
            OperatorSettings(prometheus_url=prometheus.url),
            Instant.from_ms(END_MS - 1),
        )
    finally:
        source.close()
    assert result.ok, result
    return result.patched


@pytest.mark.parametrize("kind", KINDS, ids=resource)
def test_applied_export_equals_what_autopatch_writes_and_a_second_export_is_empty(
    kind: WorkloadKind,
    kube: KubeSandbox,
    stage: Path,
    prometheus: PrometheusServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = owned(kube, GIT, kind)
    checkout, indexer = (staged(n, GIT, kind).deployment for n in SCENARIOS)
    policy = stage / resource(kind) / "policy.yaml"
    policy.write_text(yaml.safe_dump({"spec": {**SPEC, "kinds": [kind.value]}}))
    overlay = stage / resource(kind) / "overlay"
    code, out, err = export(capsys, prometheus, kube, policy, "--out", str(overlay))
    assert code == 0, err
    ref = WorkloadRef(namespace=GIT, kind=kind, name=checkout)
    assert f"{ref}: app: cpu request 300m→" in out, out
    assert "2 to change, 0 unchanged" in out, out
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    files = sorted(kustomization["patchesStrategicMerge"])
    assert files == [f"{resource(kind)}_{GIT}_{n}.yaml" for n in (checkout, indexer)]
    for name in files:
        patch = yaml.safe_load((overlay / name).read_text())
        assert (patch["apiVersion"], patch["kind"]) == ("apps/v1", kind.value)
        assert set(patch["metadata"]) == {"name", "namespace"}  # no bookkeeping annotations
        assert set(patch["spec"]) == {"template"}
        assert set(patch["spec"]["template"]["spec"]["containers"][0]) <= {
            "name",
            "resources",
            "env",
        }
    # Nothing was written to the cluster by the export.
    assert owned(kube, GIT, kind) == before
    # The overlay is the base and the patches: what a GitOps controller applies. (The
    # sandbox's kubectl embeds kustomize 2, where a directory is a base, not a resource.)
    kustomization["bases"] = ["../base"]
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    kube.kubectl("apply", "-k", str(overlay))

    assert autopatch(kube, prometheus, kind) == len(SCENARIOS)
    exported, patched = owned(kube, GIT, kind), owned(kube, AUTO, kind)
    assert exported != before  # the export changed something ...
    assert exported == patched  # ... exactly what AutoPatch changed, field by field

    mtimes = {p.name: p.stat().st_mtime_ns for p in overlay.iterdir()}
    code, out, err = export(capsys, prometheus, kube, policy, "--out", str(overlay), "-o", "json")
    assert code == 0, err
    assert json.loads(out) == []
    assert "0 to change, 2 unchanged; no file changed" in err, err
    assert {p.name: p.stat().st_mtime_ns for p in overlay.iterdir()} == mtimes


# --------------------------------------------------------------------------- the plugin


@pytest.fixture(scope="module")
def plugin_env(kube: KubeSandbox, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """PATH with ``kubectl-unthrottle`` and kubectl, KUBECONFIG with a context per namespace
    (the current one in VIEW)."""
    home = tmp_path_factory.mktemp("plugin")
    bin_dir = home / "bin"
    bin_dir.mkdir()
    entry = bin_dir / "kubectl-unthrottle"
    entry.write_text(
        f"#!{sys.executable}\nimport sys\nfrom unthrottle.cli import kubectl_main\n"
        "sys.exit(kubectl_main())\n"
    )
    entry.chmod(0o755)
    config = home / "kubeconfig"
    config.write_text(kube.kubeconfig.read_text())
    view = kube.kubectl_json("config", "view", "-o", "json", kubeconfig=config)
    cluster, user = view["clusters"][0]["name"], view["users"][0]["name"]
    for namespace in (VIEW, AUTO):
        kube.kubectl(
            *("config", "set-context", namespace, f"--cluster={cluster}", f"--user={user}"),
            f"--namespace={namespace}",
            kubeconfig=config,
        )
    kube.kubectl("config", "use-context", VIEW, kubeconfig=config)
    kubectl_dir = str(Path(kube.kubectl_path).parent)
    return {
        **os.environ,
        "PATH": os.pathsep.join([str(bin_dir), kubectl_dir, os.environ.get("PATH", "")]),
        "PYTHONPATH": str(OPERATOR),
        "KUBECONFIG": str(config),
    }


def kubectl_unthrottle(
    kube: KubeSandbox, env: dict[str, str], prometheus: PrometheusServer, *args: str
) -> subprocess.CompletedProcess[str]:
    flags = ("--prometheus-url", prometheus.url, "--at", AT, "--window", "1h")
    return subprocess.run(
        [kube.kubectl_path, "unthrottle", *args, *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def namespaces_of(done: subprocess.CompletedProcess[str]) -> set[str]:
    assert done.returncode == 0, done.stderr
    return {w["namespace"] for w in json.loads(done.stdout)["workloads"]}


def test_kubectl_plugin_report_follows_the_context_and_namespace_flags(
    kube: KubeSandbox, stage: Path, prometheus: PrometheusServer, plugin_env: dict[str, str]
) -> None:
    run = kubectl_unthrottle
    assert namespaces_of(run(kube, plugin_env, prometheus, "report", "-o", "json")) == {VIEW}
    assert namespaces_of(run(kube, plugin_env, prometheus, "report", "-o", "json", "-n", AUTO)) == {
        AUTO
    }
    by_context = run(kube, plugin_env, prometheus, "report", "-o", "json", "--context", AUTO)
    assert namespaces_of(by_context) == {AUTO}
    every = namespaces_of(run(kube, plugin_env, prometheus, "report", "-o", "json", "-A"))
    assert {GIT, AUTO, VIEW} <= every
    selected = run(
        kube, plugin_env, prometheus, "report", "-o", "json", "-A", "--namespace-selector",
        f"{CASE_LABEL}={AUTO}", "-l", "app=x-checkout",
    )  # fmt: skip
    assert [(w["namespace"], w["name"]) for w in json.loads(selected.stdout)["workloads"]] == [
        (AUTO, "x-checkout")
    ]


def test_kubectl_plugin_explain_and_export(
    kube: KubeSandbox, stage: Path, prometheus: PrometheusServer, plugin_env: dict[str, str]
) -> None:
    done = kubectl_unthrottle(kube, plugin_env, prometheus, "explain", f"{VIEW}/x-indexer")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.startswith(f"Deployment {VIEW}/x-indexer"), text
    for words in ("container worker", "now ", "throttled    in ", "CPU use", "why ", "export"):
        assert words in text, (words, text)
    # A StatefulSet's, named by its kind (asked for with it, as export's summary prints it).
    statefulset = staged("micro-burst", VIEW, WorkloadKind.STATEFULSET).deployment
    done = kubectl_unthrottle(
        kube, plugin_env, prometheus, "explain", f"{VIEW}/statefulset/{statefulset}"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"StatefulSet {VIEW}/{statefulset}  (tier "), done.stdout
    for words in ("container worker", "why ", "export / AutoPatch would change worker: "):
        assert words in done.stdout, (words, done.stdout)
    # NAME alone: the context's namespace.
    done = kubectl_unthrottle(kube, plugin_env, prometheus, "explain", "x-checkout")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Deployment {VIEW}/x-checkout"), done.stdout
    missing = kubectl_unthrottle(kube, plugin_env, prometheus, "explain", f"{GIT}/nope")
    assert missing.returncode == 4
    assert "no workload nope" in missing.stderr
    # The Deployment's name with another kind: not that workload.
    other = kubectl_unthrottle(kube, plugin_env, prometheus, "explain", f"{VIEW}/ds/x-checkout")
    assert other.returncode == 4
    assert "no DaemonSet x-checkout" in other.stderr
    exported = kubectl_unthrottle(kube, plugin_env, prometheus, "export", "-o", "json")
    assert exported.returncode == 0, exported.stderr
    assert isinstance(json.loads(exported.stdout), list)
    assert "to change" in exported.stderr
