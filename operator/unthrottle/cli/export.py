"""``unthrottle export``: what AutoPatch would apply, as files for a pull request.

The plan is the operator's: :func:`unthrottle.cli.report.report_plan` (the pass in
Recommend mode) gives every container's recommendation, and
:func:`unthrottle.reconcile.patch.decide` the patch of each workload under the same
guardrails as AutoPatch (whole data, no HPA on CPU, the nodes' CPU, step limits,
``patch.minChange``), except those about rollouts now: a pending rollout, the cooldown
and the rollout slots (the change lands when the pull request merges, and Git's review
is its gate). The namespace's ``auto-patch`` label and the policy's mode do not apply.

Each patch is a strategic-merge patch of the fields unthrottle owns and nothing else:
the target containers' ``resources``, the WEB_CONCURRENCY env entry and the burst
annotation of the pod template. The operator's bookkeeping annotations are left out: a
``last-patched`` time would make every export a new diff and the cooldown it feeds is
the review; ``previous-resources`` is what ``git revert`` restores; the recommendation
annotation is status, not desired state.

``--out DIR`` writes one file per workload and lists them in ``DIR/kustomization.yaml``
(``patchesStrategicMerge``, or ``patches`` when the file already uses that), keeping
what is there: files of earlier exports stay (they are the desired state now running),
a workload's new patch is merged into its file container by container, and a file
whose content does not change is not written. ``-o json`` prints the new patches as a
list for tools. The summary of what changed goes to standard output (standard error
with ``-o json``). Exit codes: those of ``report``, and 2 for a directory it cannot use.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from unthrottle.cli.reading import EXIT_USAGE, Reading, add_reading_arguments, read
from unthrottle.cli.report import report_plan
from unthrottle.model.names import BURST_ANNOTATION
from unthrottle.model.workload import WorkloadRef
from unthrottle.reconcile.patch import DeploymentDecision, PatchContext, decide
from unthrottle.reconcile.plan import PassPlan, WorkloadPlan
from unthrottle.reconcile.scope import policy_for
from unthrottle.reconcile.snapshot import Instant
from unthrottle.reconcile.status import change, cpu_text, memory_text

__all__ = [
    "Change",
    "ExportedPatch",
    "export_decisions",
    "exported",
    "register",
    "run",
    "write_directory",
]

API_VERSION = "apps/v1"  # of every workload kind unthrottle patches
KUSTOMIZATION = "kustomization.yaml"
HEADER = (
    "# Written by `unthrottle export`: the fields unthrottle owns (resources, WEB_CONCURRENCY,\n"
    "# the burst annotation). A later export merges into this file.\n"
)


@dataclass(frozen=True)
class Change:
    container: str  # "" for the pod template's burst
    field: str
    before: str
    after: str


@dataclass(frozen=True)
class ExportedPatch:
    """One workload's patch, as the file holds it, and what it changes."""

    ref: WorkloadRef
    body: dict[str, Any]
    changes: tuple[Change, ...]

    @property
    def file_name(self) -> str:
        return f"{self.ref.kind.value.lower()}_{self.ref.namespace}_{self.ref.name}.yaml"


def export_decisions(
    plan: PassPlan,
    reading: Reading,
    now: Instant,
) -> list[tuple[WorkloadPlan, DeploymentDecision]]:
    """Each workload of ``plan`` decided on as AutoPatch would, without the rollout state."""
    decided = []
    for workload in plan.workloads:
        deployment = workload.deployment
        context = PatchContext(
            auto_patch=True,
            now_ms=now.ms,
            now_text=now.text,
            data_partial=bool(reading.fetched.warnings),
            hpa_on_cpu=deployment.ref in reading.cpu_autoscaled,
            node_cpu=reading.node_cpu,
            rollout_guardrails=False,
        )
        results = {c.name: c.result for c in workload.outcome.decision.containers}
        applied = policy_for(deployment, reading.policy)
        decided.append((workload, decide(deployment, results, applied, context)))
    return decided


def _changes(workload: WorkloadPlan, decision: DeploymentDecision) -> tuple[Change, ...]:
    assert decision.patch is not None
    deployment = workload.deployment
    entries = {c["name"]: c for c in decision.patch["spec"]["template"]["spec"]["containers"]}
    changes = []
    for container in decision.containers:
        after, before = container.applied, deployment.container(container.name)
        if after is None or before is None:
            continue
        fields = [
            ("cpu request", cpu_text(before.cpu_request), cpu_text(after.cpu_request)),
            ("cpu limit", cpu_text(before.cpu_limit), cpu_text(after.cpu_limit)),
            (
                "memory request",
                memory_text(before.memory_request),
                memory_text(after.memory_request),
            ),
            ("memory limit", memory_text(before.memory_limit), memory_text(after.memory_limit)),
        ]
        if "env" in entries.get(container.name, {}):
            was = "-" if before.web_concurrency is None else str(before.web_concurrency)
            fields.append(("workers", was, str(after.web_concurrency)))
        changes += [Change(container.name, f, b, a) for f, b, a in fields if b != a]
    template = decision.patch["spec"]["template"].get("metadata")
    if template is not None:
        before_burst = deployment.template_annotations.get(BURST_ANNOTATION)
        after_burst = template["annotations"][BURST_ANNOTATION]
        if _burst_text(before_burst) != _burst_text(after_burst):
            changes.append(Change("", "burst", _burst_text(before_burst), _burst_text(after_burst)))
    return tuple(changes)


def _burst_text(value: str | None) -> str:
    return "-" if value in (None, "0") else f"{int(str(value)) // 1000}ms"


def exported(
    decided: Iterable[tuple[WorkloadPlan, DeploymentDecision]],
) -> tuple[list[ExportedPatch], list[tuple[WorkloadRef, str]]]:
    """The patches to export, and the workloads left as they are with the reason why."""
    patches, unchanged = [], []
    for workload, decision in decided:
        ref = workload.deployment.ref
        if decision.patch is None:
            unchanged.append((ref, decision.skip_reason))
            continue
        body = {
            "apiVersion": API_VERSION,
            "kind": ref.kind.value,
            "metadata": {"name": ref.name, "namespace": ref.namespace},
            # Only the spec: the operator's bookkeeping annotations stay out of Git.
            "spec": decision.patch["spec"],
        }
        patches.append(ExportedPatch(ref, body, _changes(workload, decision)))
    return patches, unchanged


def change_text(changes: Iterable[Change]) -> str:
    """``app: cpu request 300m→600m, cpu limit 300m→1; burst -→20ms``."""
    by_container: dict[str, list[str]] = {}
    for c in changes:
        by_container.setdefault(c.container, []).append(f"{c.field} {change(c.before, c.after)}")
    parts = [f"{name}: {', '.join(items)}" for name, items in by_container.items() if name]
    if "" in by_container:
        parts.append(", ".join(by_container[""]))
    return "; ".join(parts) or "the owned fields' form only (e.g. WEB_CONCURRENCY from a literal)"


# --- the directory --------------------------------------------------------------------


def _load(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not YAML ({exc.__class__.__name__})") from None


def _merged(old: Any, new: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """``new`` over the patch an earlier export wrote: containers by name, annotations by key."""
    if old is None:
        old = {k: new[k] for k in ("apiVersion", "kind", "metadata")}
    same = isinstance(old, dict) and all(
        old.get(k) == new[k] for k in ("apiVersion", "kind", "metadata")
    )
    if not same:
        raise ValueError(f"{path}: not the patch of {new['kind']} {new['metadata']['name']}")
    template = old.get("spec", {}).get("template", {})
    containers = {c["name"]: c for c in template.get("spec", {}).get("containers", [])}
    new_template = new["spec"]["template"]
    containers.update({c["name"]: c for c in new_template["spec"]["containers"]})
    merged: dict[str, Any] = {"spec": {"containers": sorted(containers.values(), key=_name)}}
    annotations = {
        **(template.get("metadata") or {}).get("annotations", {}),
        **(new_template.get("metadata") or {}).get("annotations", {}),
    }
    if annotations:
        merged = {"metadata": {"annotations": annotations}, **merged}
    return {**new, "spec": {"template": merged}}


def _name(container: Mapping[str, Any]) -> str:
    return str(container["name"])


def _write_if_changed(path: Path, text: str) -> bool:
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True


def _kustomization(existing: Any, files: Iterable[str], resources: Iterable[str]) -> dict[str, Any]:
    document: dict[str, Any] = (
        dict(existing)
        if existing is not None
        else {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
    )
    if document.get("kind", "Kustomization") != "Kustomization":
        raise ValueError(f"{KUSTOMIZATION}: kind {document.get('kind')}, not Kustomization")
    listed = list(document.get("resources") or [])
    listed += [r for r in resources if r not in listed]
    if listed:
        document["resources"] = listed
    # Newer kustomizations list patches as ``patches: [{path: ...}]``; keep to their form.
    key = (
        "patches"
        if "patches" in document and "patchesStrategicMerge" not in document
        else ("patchesStrategicMerge")
    )
    entries = list(document.get(key) or [])
    present = {e.get("path") if isinstance(e, dict) else e for e in entries}
    for name in files:
        if name not in present:
            entries.append({"path": name} if key == "patches" else name)
    if entries:
        document[key] = entries
    return document


def write_directory(
    out: Path, patches: Iterable[ExportedPatch], resources: Iterable[str] = ()
) -> list[str]:
    """Write the patches into ``out`` and list them in its kustomization; the files changed."""
    out.mkdir(parents=True, exist_ok=True)
    written, names = [], []
    for patch in patches:
        path = out / patch.file_name
        body = _merged(_load(path) if path.exists() else None, patch.body, path)
        if _write_if_changed(path, HEADER + yaml.safe_dump(body, sort_keys=False)):
            written.append(patch.file_name)
        names.append(patch.file_name)
    manifest = out / KUSTOMIZATION
    existing = _load(manifest) if manifest.exists() else None
    text = yaml.safe_dump(_kustomization(existing, names, resources), sort_keys=False)
    if _write_if_changed(manifest, text):
        written.append(KUSTOMIZATION)
    return written


# --- the command ----------------------------------------------------------------------


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "export",
        help="write what AutoPatch would apply as kustomize patches for a pull request",
        description=(
            "Plan as the operator does (the same recommendations, step limits and "
            "patch.minChange; no rollout-state guardrails) and write one strategic-merge "
            "patch per workload of only the owned fields, listed in a kustomization.yaml."
        ),
    )
    add_reading_arguments(parser, cluster=True)
    parser.add_argument("--out", metavar="DIR", help="write the patches and kustomization here")
    parser.add_argument(
        "--resource",
        action="append",
        default=[],
        metavar="PATH",
        help="a base the kustomization lists in resources (relative to DIR; repeatable)",
    )
    parser.add_argument(
        "--output",
        "-o",
        choices=["table", "json"],
        default="table",
        help="table: the summary (default); json: the patches as a list on stdout",
    )
    parser.set_defaults(run=run)


def _document(patches: Iterable[ExportedPatch]) -> list[dict[str, Any]]:
    return [
        {
            "namespace": p.ref.namespace,
            "kind": p.ref.kind.value,
            "name": p.ref.name,
            "file": p.file_name,
            "changes": [
                {
                    "container": c.container or None,
                    "field": c.field,
                    "from": c.before,
                    "to": c.after,
                }
                for c in p.changes
            ],
            "patch": p.body,
        }
        for p in patches
    ]


def run(args: argparse.Namespace) -> int:
    reading = read(args, "export")
    if isinstance(reading, int):
        return reading
    now = Instant.from_ms(int(reading.fetched.end * 1000))
    plan = report_plan(
        reading.fetched,
        reading.policy,
        reading.deployments,
        now=now,
        node_cpu=reading.node_cpu,
    )
    patches, unchanged = exported(export_decisions(plan, reading, now))
    summary = sys.stderr if args.output == "json" else sys.stdout
    for patch in patches:
        print(f"{patch.ref}: {change_text(patch.changes)}", file=summary)
    for ref, reason in unchanged:
        print(f"{ref}: no change ({reason})", file=summary)
    line = f"{len(patches)} to change, {len(unchanged)} unchanged"
    if args.out:
        try:
            written = write_directory(Path(args.out), patches, args.resource)
        except (OSError, ValueError) as exc:
            print(f"unthrottle export: {exc}", file=sys.stderr)
            return EXIT_USAGE
        line += f"; {len(written)} files written in {args.out}" if written else "; no file changed"
    print(line, file=summary)
    if args.output == "json":
        sys.stdout.write(json.dumps(_document(patches), indent=2) + "\n")
    return 0
