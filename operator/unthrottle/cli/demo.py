"""``unthrottle demo``: the whole job on an embedded default, on this machine.

By default: a local control plane (etcd, kube-apiserver, kube-controller-manager, see
``scripts/kube-sandbox.sh``) with the CRDs and the operator's RBAC; a Deployment for each
of the simulator's scenarios from the seeds (quota-bound, micro-bursting, GIL threads,
over-provisioned, healthy, memory growth, OOM-killed, workers above cores); their cAdvisor
and kube-state-metrics series, simulated for the pods the controller-manager created,
backfilled into a real Prometheus on loopback; the operator, running as its own
ServiceAccount; and a ThrottlePolicy in AutoPatch mode, with one namespace (``shop``)
labelled for patching. It prints ``kubectl get tp,trec -A`` after the first pass; then,
while a pass patched something, it closes the loop: the patched Deployments roll out, the
window is simulated anew with their new pods running the applied resources for its last
part (time compressed: :mod:`unthrottle.sandbox.timeline`), and the next pass is printed,
up to a pass that patches nothing. Then what to try next; everything stays up until
Ctrl-C (``--exit`` stops after printing).

``--prometheus-only`` skips the control plane and the operator: the report on the
simulated series, as ``unthrottle report`` prints it for a real cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unthrottle.cli import report
from unthrottle.sandbox.kube import ASSETS, KubeSandbox, KubeSandboxError, wait_for
from unthrottle.sandbox.prometheus import HarnessError, PrometheusServer, backfill, free_port
from unthrottle.sandbox.timeline import DemoWorkload, settled_ms, template_text, write_window
from unthrottle.sim.openmetrics import write_openmetrics
from unthrottle.sim.scenarios import Scenario, all_scenarios, deployment_manifest

__all__ = ["register", "run"]

EXIT_SANDBOX = 4
MAX_PASSES = 3  # the first, and the passes that follow the patches until one patches nothing
POLL_SECONDS = 5  # how often a running demo looks for changed pod templates
REFRESH_SECONDS = 600  # and slides the simulated window up to now
STEP_MS = 30_000
MS_PER_HOUR = 3_600_000
PATCHED_NAMESPACE = "shop"
POLICY: dict[str, Any] = {
    "apiVersion": "unthrottle.dev/v1alpha1",
    "kind": "ThrottlePolicy",
    "metadata": {"name": "demo"},
    "spec": {
        "mode": "AutoPatch",
        "tier": "production",
        "window": "6h",
        "namespaceSelector": {"matchLabels": {"unthrottle.dev/demo": "true"}},
        "webConcurrency": {"enabled": True},
    },
}


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "demo",
        help="a local control plane, Prometheus with throttled workloads, and the operator",
        description=(
            "The whole job on this machine: a local control plane, a real Prometheus with "
            "simulated throttled workloads, and the operator; or, with --prometheus-only, "
            "the report on the simulated series."
        ),
    )
    parser.add_argument(
        "--prometheus-only",
        action="store_true",
        help="no control plane or operator: the report on the simulated series",
    )
    parser.add_argument(
        "--hours", type=int, default=6, help="hours of simulated history (default 6)"
    )
    parser.add_argument("--workdir", type=Path, help="where to keep state (default: a temp dir)")
    parser.add_argument("--exit", action="store_true", help="stop after printing")
    parser.add_argument("--output", "-o", choices=["table", "json", "yaml"], default="table")
    parser.set_defaults(run=run)


def _say(message: str) -> None:
    print(f"unthrottle demo: {message}", file=sys.stderr, flush=True)


def _series(scenarios: list[Scenario], workdir: Path, hours: int) -> tuple[Path, int]:
    end_ms = int(time.time() * 1000) // STEP_MS * STEP_MS
    path = workdir / "scenarios.om"
    _say(f"simulating {len(scenarios)} workloads over {hours}h into {path}")
    with path.open("w", encoding="utf-8") as handle:
        write_openmetrics(handle, scenarios, end_ms - hours * MS_PER_HOUR, end_ms, step_ms=STEP_MS)
    return path, end_ms


def _wait_until_interrupted(*processes: subprocess.Popen[bytes] | None) -> None:
    try:
        while all(p is None or p.poll() is None for p in processes):
            time.sleep(1)
    except KeyboardInterrupt:
        pass


def _with_real_pods(kube: KubeSandbox, s: Scenario) -> Scenario:
    """The scenario with the names of the pods the controller-manager created for it."""

    def pods() -> list[tuple[str, str]] | None:
        listed = kube.kubectl_json(
            "get", "pods", "-n", s.namespace, "-l", f"app={s.deployment}", "-o", "json"
        )["items"]
        names = sorted(
            (p["metadata"]["ownerReferences"][0]["name"], p["metadata"]["name"]) for p in listed
        )
        return names if len(names) == s.replicas else None

    return s.with_changes(pods=tuple(wait_for(pods, timeout=120, what=f"pods of {s.deployment}")))


@contextmanager
def _operator(
    kube: KubeSandbox, prometheus_url: str, workdir: Path
) -> Iterator[subprocess.Popen[bytes]]:
    log = (workdir / "operator.log").open("wb")
    command = [
        sys.executable, "-m", "unthrottle.cli", "run",
        "--kubeconfig", str(kube.operator_kubeconfig),
        "--prometheus-url", prometheus_url,
        "--health-port", str(free_port()), "--metrics-port", str(free_port()),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def unthrottle_command() -> str:
    """How to run this very ``unthrottle`` from a shell (it may not be on ``PATH``)."""
    beside = Path(sys.executable).with_name("unthrottle")
    return str(beside) if beside.is_file() else f"{sys.executable} -m unthrottle.cli"


def patched_first(trecs: list[dict[str, Any]]) -> tuple[str, str]:
    """(namespace, name) of a Deployment the pass patched, else of the first trec."""
    ordered = sorted(
        trecs,
        key=lambda t: (
            ((t.get("status") or {}).get("summary") or {}).get("action") != "Patched",
            t["metadata"]["namespace"],
            t["metadata"]["name"],
        ),
    )
    first = ordered[0]["metadata"] if ordered else {"namespace": "shop", "name": "checkout"}
    return first["namespace"], first["name"]


def try_next(deployment: tuple[str, str], *, kubectl: str, report: str, log: Path) -> str:
    """What to try while the demo runs: each command exactly as it works in a shell."""
    namespace, name = deployment
    another_pass = shlex.quote(json.dumps({"spec": {"interval": "11m"}}))
    return (
        "Try next (everything keeps running until Ctrl-C):\n"
        f"  {kubectl} describe trec -n {namespace} {name}\n"
        f"  {kubectl} get deploy -n {namespace} {name} -o yaml\n"
        f"  {kubectl} get events -n {namespace}\n"
        f"  {kubectl} annotate deploy -n {namespace} {name} unthrottle.dev/rollback=true\n"
        f"  {kubectl} patch tp demo --type merge -p {another_pass}   # a pass now\n"
        f"  {report}\n"
        f"  the operator's log: {log}\n"
    )


def _rolled_out(kube: KubeSandbox, namespace: str, name: str) -> list[tuple[str, str]]:
    """Wait for the Deployment's new template to run in every replica; its (rs, pod) pairs."""

    def done() -> list[tuple[str, str]] | None:
        kube.mark_pods_ready(namespace)  # no kubelet: the new pods are declared Running
        d = kube.kubectl_json("get", "deploy", "-n", namespace, name, "-o", "json")
        status, replicas = d.get("status") or {}, d["spec"].get("replicas", 1)
        if status.get("observedGeneration") != d["metadata"]["generation"] or any(
            status.get(key) != replicas
            for key in ("replicas", "updatedReplicas", "availableReplicas")
        ):
            return None
        pods = kube.kubectl_json("get", "pods", "-n", namespace, "-l", f"app={name}", "-o", "json")
        running = sorted(
            (p["metadata"]["ownerReferences"][0]["name"], p["metadata"]["name"])
            for p in pods["items"]
            if not p["metadata"].get("deletionTimestamp")
        )
        return running if len(running) == replicas else None

    return wait_for(done, timeout=120, what=f"the rollout of {namespace}/{name}")


@dataclass
class _Loop:
    """The demo's simulated cluster, kept in step with what the Deployments run.

    Whenever a Deployment's pod template changes (an operator patch, a rollback, an edit),
    :meth:`close` rolls it out and serves the window as it ran it: Prometheus restarts on
    the same port over the window simulated anew, ending now.
    """

    kube: KubeSandbox
    workloads: list[DemoWorkload]
    prometheus: PrometheusServer
    stack: ExitStack
    workdir: Path
    window_ms: int
    refreshed_at: float = field(default_factory=time.monotonic)

    def changed(self) -> list[tuple[str, str]]:
        """The Deployments whose template is not the one their pods were simulated with."""
        live = _templates(self.kube, {w.seed.namespace for w in self.workloads})
        return sorted(
            ref
            for w in self.workloads
            if (ref := (w.seed.namespace, w.seed.deployment)) in live and live[ref] != w.template
        )

    def close(self, refs: list[tuple[str, str]]) -> None:
        for workload in self.workloads:
            ref = (workload.seed.namespace, workload.seed.deployment)
            if ref in refs:
                pods = _rolled_out(self.kube, *ref)
                manifest = self.kube.kubectl_json(
                    "get", "deploy", "-n", ref[0], ref[1], "-o", "json"
                )
                workload.roll_out(manifest, pods)
        run = self.workdir / f"window-{time.time_ns()}"
        run.mkdir(parents=True)
        end_ms = int(time.time() * 1000) // STEP_MS * STEP_MS
        files = write_window(
            run, self.workloads, end_ms=end_ms, window_ms=self.window_ms, step_ms=STEP_MS
        )
        port = self.prometheus.port
        self.prometheus.stop()
        restarted = PrometheusServer(run / "prometheus")
        for path in files:
            backfill(path, restarted.data_dir)
        restarted.start(port=port)
        self.stack.callback(restarted.stop)
        served = self.prometheus.workdir.parent
        if served.name.startswith("window-"):
            shutil.rmtree(served, ignore_errors=True)  # only the newest window is served
        self.prometheus = restarted
        self.refreshed_at = time.monotonic()

    def keep_flowing(self, operator: subprocess.Popen[bytes]) -> None:
        """Until Ctrl-C: follow template changes, and slide the window to now now and then."""
        try:
            while operator.poll() is None:
                time.sleep(POLL_SECONDS)
                changed = self.changed()
                if changed or time.monotonic() - self.refreshed_at > REFRESH_SECONDS:
                    self.close(changed)
                    what = ", ".join(f"{ns}/{n}" for ns, n in changed) or "nothing changed"
                    _say(f"{what} rolled out; the window simulated anew up to now")
        except KeyboardInterrupt:
            pass


def _templates(kube: KubeSandbox, namespaces: set[str]) -> dict[tuple[str, str], str]:
    """Each Deployment's pod template, as compact JSON, by (namespace, name)."""
    items = kube.kubectl_json("get", "deploy", "-A", "-o", "json")["items"]
    return {
        (d["metadata"]["namespace"], d["metadata"]["name"]): template_text(d)
        for d in items
        if d["metadata"]["namespace"] in namespaces
    }


def _another_pass(kube: KubeSandbox, number: int) -> None:
    """Ask for a pass now (a spec change) and wait until its status is written."""
    body = json.dumps({"spec": {"interval": f"{10 + number}m"}})
    kube.kubectl("patch", "tp", "demo", "--type", "merge", "-p", body)
    generation = kube.kubectl_json("get", "tp", "demo", "-o", "json")["metadata"]["generation"]

    def reconciled() -> bool:
        status = kube.kubectl_json("get", "tp", "demo", "-o", "json").get("status") or {}
        ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
        return bool(ready) and ready[0].get("observedGeneration") == generation

    wait_for(reconciled, timeout=120, what=f"the operator's pass {number}")


def _seed_cluster(kube: KubeSandbox, scenarios: list[Scenario]) -> list[DemoWorkload]:
    """The CRDs, the operator's RBAC, the namespaces and a Deployment per scenario, their
    pods running; each workload with the names of its real pods and its pod template."""
    kube.apply(ASSETS / "crds")
    kube.wait_crds_established(
        "throttlepolicies.unthrottle.dev", "throttlerecommendations.unthrottle.dev"
    )
    kube.apply(ASSETS / "namespace.yaml")
    kube.apply(ASSETS / "rbac.yaml")
    for namespace in sorted({s.namespace for s in scenarios}):
        kube.kubectl("create", "namespace", namespace, check=False)
        kube.kubectl("label", "namespace", namespace, "unthrottle.dev/demo=true", "--overwrite")
    kube.kubectl(
        "label", "namespace", PATCHED_NAMESPACE, "unthrottle.dev/auto-patch=enabled",
        "--overwrite",
    )  # fmt: skip
    kube.apply_manifest(
        {"apiVersion": "v1", "kind": "List", "items": [deployment_manifest(s) for s in scenarios]}
    )
    scenarios = [_with_real_pods(kube, s) for s in scenarios]
    for namespace in sorted({s.namespace for s in scenarios}):
        kube.mark_pods_ready(namespace)  # no kubelet here: pods are declared Running
    templates = _templates(kube, {s.namespace for s in scenarios})
    return [DemoWorkload(s, template=templates[(s.namespace, s.deployment)]) for s in scenarios]


def _cluster_demo(args: argparse.Namespace, workdir: Path) -> int:
    with ExitStack() as stack:
        kube = KubeSandbox(workdir / "kube")
        if kube.is_built():
            _say("starting the local control plane")
        else:
            _say("building the local control plane, once (about 7 minutes on 2 cores)")
        kube.start()
        stack.callback(kube.stop, keep=args.workdir is not None)
        workloads = _seed_cluster(kube, all_scenarios())
        scenarios = [w.seed for w in workloads]
        series, _ = _series(scenarios, workdir, args.hours)
        _say("backfilling and starting Prometheus on loopback")
        prometheus = PrometheusServer.with_data(workdir / "prometheus", [series])
        stack.callback(prometheus.stop)
        _say(f"Prometheus is up at {prometheus.url}; starting the operator")
        operator = stack.enter_context(_operator(kube, prometheus.url, workdir))
        policy = {**POLICY, "spec": {**POLICY["spec"], "window": f"{args.hours}h"}}
        kube.apply_manifest(policy)

        def reconciled() -> bool:
            status = kube.kubectl_json("get", "tp", "demo", "-o", "json").get("status") or {}
            return bool(status.get("lastRunTime"))

        wait_for(reconciled, timeout=120, what="the operator's first pass")
        print(kube.kubectl("get", "tp,trec", "-A").stdout, flush=True)
        loop = _Loop(
            kube, workloads, prometheus, stack, workdir=workdir, window_ms=args.hours * MS_PER_HOUR
        )
        ever_patched: list[tuple[str, str]] = []
        for number in range(2, MAX_PASSES + 1):
            patched = loop.changed()
            if not patched:
                break
            ever_patched += patched
            loop.close(patched)
            _say(
                f"pass {number}: {', '.join(f'{ns}/{n}' for ns, n in patched)} rolled out; "
                f"time compressed: the new pods ran the last "
                f"{settled_ms(loop.window_ms, STEP_MS) // 60_000}m of the window"
            )
            _another_pass(kube, number)
            print(kube.kubectl("get", "tp,trec", "-A").stdout, flush=True)
        if args.exit:
            return 0
        trecs = kube.kubectl_json("get", "trec", "-A", "-o", "json")["items"]
        print(
            try_next(
                ever_patched[0] if ever_patched else patched_first(trecs),
                kubectl=f"{kube.kubectl_path} --kubeconfig {kube.kubeconfig}",
                report=f"{unthrottle_command()} report --prometheus-url {prometheus.url} "
                f"--window {args.hours}h --kubeconfig {kube.kubeconfig}",
                log=workdir / "operator.log",
            ),
            flush=True,
        )
        loop.keep_flowing(operator)
    return 0


def _prometheus_demo(args: argparse.Namespace, workdir: Path) -> int:
    series, end_ms = _series(all_scenarios(), workdir, args.hours)
    _say("backfilling and starting Prometheus on loopback")
    server = PrometheusServer.with_data(workdir / "prometheus", [series])
    try:
        _say(f"Prometheus is up at {server.url}")
        # The report's own argument parser, so the demo runs exactly what a user would.
        parser = argparse.ArgumentParser(prog="unthrottle")
        report.register(parser.add_subparsers())
        report_args = parser.parse_args(
            [
                *("report", "--prometheus-url", server.url, "--window", f"{args.hours}h"),
                *("--at", str((end_ms - 1) / 1000), "--output", args.output),
            ]
        )
        code = report.run(report_args)
        if code != 0:
            return code
        page = workdir / "report.html"
        code = report.run(
            parser.parse_args(
                [
                    *("report", "--prometheus-url", server.url, "--window", f"{args.hours}h"),
                    *("--at", str((end_ms - 1) / 1000), "-o", "html", "--output-file", str(page)),
                ]
            ),
            progress=lambda _: None,
        )
        _say(f"the report with charts, one page: {page}")
        if code != 0 or args.exit:
            return code
        print(
            "\nTry next (Prometheus keeps running until Ctrl-C):\n"
            f"  unthrottle report --prometheus-url {server.url} --window {args.hours}h -o json\n"
            f"  unthrottle report --prometheus-url {server.url} --window {args.hours}h "
            "--tier critical\n"
            "  unthrottle recommend --input FILE   (one container, what-if; see docs/cli.md)\n",
            flush=True,
        )
        _wait_until_interrupted(server.process)
        return 0
    finally:
        server.stop()


def run(args: argparse.Namespace) -> int:
    if args.hours < 1:
        _say("--hours must be at least 1")
        return report.EXIT_USAGE
    # SIGTERM unwinds like Ctrl-C: every part is stopped and the temporary directory goes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="unthrottle-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        if args.prometheus_only:
            return _prometheus_demo(args, workdir)
        return _cluster_demo(args, workdir)
    except (HarnessError, KubeSandboxError) as exc:
        _say(str(exc))
        return EXIT_SANDBOX
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
