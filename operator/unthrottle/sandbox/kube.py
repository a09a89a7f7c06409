"""A real Kubernetes API for the demo and the e2e tests: the loopback sandbox, or a cluster.

Two modes, same interface:

- **Sandbox** (default): ``scripts/kube-sandbox.sh up DIR`` starts etcd, kube-apiserver and
  kube-controller-manager (Kubernetes 1.20, built once from Debian's sources and cached) on
  free loopback ports. There is no kubelet or scheduler: Deployments get their ReplicaSets
  and Pods, which stay Pending. :meth:`KubeSandbox.stop` runs ``down``; a watchdog started
  by the script also stops the sandbox if this Python process dies first.
- **Attached**: with ``UNTHROTTLE_E2E_KUBECONFIG`` set (kind, k3d, a real cluster), nothing
  is started or stopped; that kubeconfig is the admin one. ``kubectl`` is
  ``UNTHROTTLE_E2E_KUBECTL``, else the one on ``PATH``, else the sandbox's cached build.

The operator's identity. In the sandbox, ``kubeconfig-operator`` authenticates as the
ServiceAccount ``system:serviceaccount:unthrottle-system:unthrottle`` (with the groups
Kubernetes gives it) through a static token, so RBAC applies to the operator process
exactly as in a cluster. Attached, ``UNTHROTTLE_E2E_OPERATOR_KUBECONFIG`` is used if set;
otherwise :attr:`KubeSandbox.operator_kubeconfig` creates that ServiceAccount and a token
for it (``kubectl create token``, Kubernetes >= 1.24).

Facts the e2e tests build on (sandbox, Kubernetes 1.20):

- Custom resources are defaulted and validated by the API server (structural schemas);
  a rejected object's error names the field, e.g. ``spec.tier: Unsupported value``.
- The garbage collector notices a newly installed CRD's kind only at its next discovery
  resync (every 30 s): a custom resource owned by a Deployment is deleted with it, up to
  about 30 s later when the CRD is younger than that.
- Each ``up`` starts from an empty etcd.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from unthrottle.sources.kubeapi import MERGE_PATCH, KubeApi

__all__ = ["ASSETS", "SCRIPT", "KubeSandbox", "KubeSandboxError", "wait_for"]

_POD_READY_CONDITIONS = ("PodScheduled", "Initialized", "ContainersReady", "Ready")

# Shipped with the package (an installed wheel has no checkout to reach into): the sandbox
# script and what the demo installs, byte-identical copies of scripts/kube-sandbox.sh,
# scripts/lib.sh, crds/ and manifests/{namespace,rbac}.yaml (a unit test keeps them so).
ASSETS = Path(__file__).resolve().parent / "assets"
SCRIPT = ASSETS / "kube-sandbox.sh"
OPERATOR_NAMESPACE = "unthrottle-system"
OPERATOR_SERVICE_ACCOUNT = "unthrottle"
# The first `up` may build Kubernetes (about 6.5 minutes on 2 cores); later ones take ~5 s.
START_TIMEOUT_S = 900.0

T = TypeVar("T")


class KubeSandboxError(RuntimeError):
    """The harness could not provide a Kubernetes API; the message says why."""


def wait_for(
    probe: Callable[[], T | None], *, timeout: float = 60.0, interval: float = 0.5, what: str
) -> T:
    """Call ``probe`` until it returns something other than None or False; return that.

    KubeSandboxError naming ``what`` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() >= deadline:
            raise KubeSandboxError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def _read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


class KubeSandbox:
    """A Kubernetes API for the tests: started here (sandbox) or given (attached).

    ``workdir`` holds the sandbox's state (etcd data, PKI, kubeconfigs, ``logs/``); a
    temporary directory when omitted, removed by :meth:`stop` unless ``keep=True``.
    """

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        kubeconfig: Path | None = None,
        operator_kubeconfig: Path | None = None,
        kubectl: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.attached = kubeconfig is not None
        self._given_workdir = workdir is not None
        self.workdir = workdir
        self._kubeconfig = kubeconfig
        self._operator_kubeconfig = operator_kubeconfig
        self._kubectl = kubectl
        self._env = dict(env or {})
        self._info: dict[str, str] = {}
        self.running = False

    @classmethod
    def from_env(cls, workdir: Path | None = None) -> Self:
        """Attached to ``UNTHROTTLE_E2E_KUBECONFIG`` when set, else a sandbox in ``workdir``."""
        given = os.environ.get("UNTHROTTLE_E2E_KUBECONFIG")
        if not given:
            return cls(workdir)
        kubeconfig = Path(given).expanduser()
        if not kubeconfig.is_file():
            raise KubeSandboxError(f"UNTHROTTLE_E2E_KUBECONFIG={given}: no such file")
        operator = os.environ.get("UNTHROTTLE_E2E_OPERATOR_KUBECONFIG")
        return cls(
            workdir,
            kubeconfig=kubeconfig,
            operator_kubeconfig=Path(operator).expanduser() if operator else None,
            kubectl=os.environ.get("UNTHROTTLE_E2E_KUBECTL"),
        )

    # ------------------------------------------------------------------ lifecycle

    def is_built(self) -> bool:
        """Whether :meth:`start` finds the control plane built (else it builds it first)."""
        if self.attached:
            return True
        done = subprocess.run(
            ["bash", str(SCRIPT), "built"],
            env={**os.environ, **self._env},
            capture_output=True,
            timeout=60,
            check=False,
        )
        return done.returncode == 0

    def start(self) -> Self:
        """Start the sandbox (build it first if needed); attached: check the cluster answers."""
        if self.running:
            return self
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="unthrottle-kube-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.attached:
            self.running = True
            self.kubectl("version", timeout=30)
            return self
        env = {**os.environ, **self._env, "SANDBOX_WATCH_PID": str(os.getpid())}
        try:
            done = subprocess.run(
                ["bash", str(SCRIPT), "up", str(self.workdir)],
                env=env,
                capture_output=True,
                text=True,
                timeout=START_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            self._down()
            raw: str | bytes | None = exc.stderr
            err = raw.decode(errors="replace") if isinstance(raw, bytes) else raw or ""
            raise KubeSandboxError(
                f"{SCRIPT.name} up did not finish in {START_TIMEOUT_S:g}s\n{err}"
            ) from exc
        if done.returncode != 0:
            raise KubeSandboxError(
                f"{SCRIPT.name} up {self.workdir} failed (exit {done.returncode}):\n"
                f"{done.stderr.strip()}"
            )
        self._info = _read_env_file(self.workdir / "sandbox.env")
        self.running = True
        return self

    def stop(self, *, keep: bool = False) -> None:
        """Stop the sandbox (attached: nothing). Removes a temporary workdir unless ``keep``."""
        if not self.attached and self.workdir is not None:
            self._down()
        self.running = False
        if not keep and not self._given_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _down(self) -> None:
        subprocess.run(
            ["bash", str(SCRIPT), "down", str(self.workdir)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ paths

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (``system:masters`` in the sandbox)."""
        if self._kubeconfig is not None:
            return self._kubeconfig
        self._require_running()
        return Path(self._info["KUBECONFIG"])

    @property
    def operator_kubeconfig(self) -> Path:
        """A kubeconfig for the operator's ServiceAccount identity (RBAC applies)."""
        if self._operator_kubeconfig is None:
            self._require_running()
            if self.attached:
                self._operator_kubeconfig = self._create_service_account_kubeconfig()
            else:
                self._operator_kubeconfig = Path(self._info["KUBECONFIG_OPERATOR"])
        return self._operator_kubeconfig

    @property
    def operator_user(self) -> str:
        """The user name the operator kubeconfig authenticates as."""
        return self._info.get(
            "OPERATOR_USER",
            f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SERVICE_ACCOUNT}",
        )

    @property
    def server(self) -> str:
        """The API server's URL."""
        if "API_SERVER" in self._info:
            return self._info["API_SERVER"]
        config = self.kubectl_json("config", "view", "--minify", "--raw", "-o", "json")
        server: str = config["clusters"][0]["cluster"]["server"]
        return server

    @property
    def kubectl_path(self) -> str:
        """The kubectl this harness runs."""
        if self._kubectl is None:
            if "KUBECTL" in self._info:
                self._kubectl = self._info["KUBECTL"]
            else:
                cache = Path(
                    os.environ.get("SANDBOX_CACHE", "~/.cache/unthrottle-kube-sandbox")
                ).expanduser()
                cached = cache / "bin" / "kubectl"
                found = shutil.which("kubectl") or (str(cached) if cached.exists() else None)
                if found is None:
                    raise KubeSandboxError(
                        "no kubectl: set UNTHROTTLE_E2E_KUBECTL, put kubectl on PATH, or run "
                        f"{SCRIPT} build"
                    )
                self._kubectl = found
        return self._kubectl

    def env(self, *, operator: bool = False) -> dict[str, str]:
        """``os.environ`` with ``KUBECONFIG`` set, for a process that talks to this API."""
        path = self.operator_kubeconfig if operator else self.kubeconfig
        return {**os.environ, "KUBECONFIG": str(path)}

    def logs(self, lines: int = 40) -> str:
        """The last lines of each component's log (sandbox), for failure messages."""
        if self.attached or self.workdir is None:
            return ""
        parts = []
        for log in sorted((self.workdir / "logs").glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log}\n" + "\n".join(tail))
        return "\n".join(parts)

    # ------------------------------------------------------------------ kubectl

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        stdin: str | None = None,
        kubeconfig: Path | None = None,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this API (admin unless ``kubeconfig``); output captured.

        With ``check`` a non-zero exit is a KubeSandboxError carrying kubectl's stderr.
        """
        self._require_running()
        cmd = [
            self.kubectl_path,
            "--kubeconfig",
            str(kubeconfig or self.kubeconfig),
            *args,
        ]
        done = subprocess.run(
            cmd, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            raise KubeSandboxError(
                f"kubectl {' '.join(args)} failed (exit {done.returncode}): "
                f"{done.stderr.strip() or done.stdout.strip()}"
            )
        return done

    def kubectl_json(self, *args: str, kubeconfig: Path | None = None) -> Any:
        """kubectl's stdout parsed as JSON (add ``-o json`` yourself where kubectl needs it)."""
        return json.loads(self.kubectl(*args, kubeconfig=kubeconfig).stdout)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The object as a dict, or None when it does not exist."""
        ns = ["-n", namespace] if namespace else []
        done = self.kubectl("get", kind, name, *ns, "-o", "json", "--ignore-not-found")
        return json.loads(done.stdout) if done.stdout.strip() else None

    def apply(self, path: Path | str, *, namespace: str | None = None) -> str:
        """``kubectl apply -f PATH`` (a file or a directory, not recursive); its output."""
        ns = ["-n", namespace] if namespace else []
        return self.kubectl("apply", "-f", str(path), *ns).stdout

    def apply_manifest(self, manifest: str | Mapping[str, Any]) -> str:
        """Apply YAML text, or one object as a dict, through stdin."""
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        return self.kubectl("apply", "-f", "-", stdin=text).stdout

    def wait_crds_established(self, *names: str, timeout: float = 60.0) -> None:
        """Block until each named CRD (``plural.group``) serves its resources."""
        for name in names:
            self.kubectl(
                "wait",
                "--for=condition=Established",
                f"customresourcedefinition/{name}",
                f"--timeout={int(timeout)}s",
                timeout=timeout + 30,
            )

    def mark_pods_ready(self, namespace: str) -> list[str]:
        """Set every Pending pod of ``namespace`` Running and Ready; the names marked.

        The sandbox has no kubelet, so pods stay Pending and a Deployment's rollout never
        completes. As the admin, this writes what a kubelet would through the pods/status
        subresource (kubectl 1.20 has no ``--subresource``), so the ReplicaSet counts the
        pods available and the Deployment finishes its rollout.
        """
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        pods = self.kubectl_json("get", "pods", "-n", namespace, "-o", "json")["items"]
        marked = []
        api = KubeApi.from_kubeconfig(str(self.kubeconfig))
        try:
            for pod in pods:
                if (pod.get("status") or {}).get("phase") != "Pending":
                    continue
                if pod["metadata"].get("deletionTimestamp"):
                    continue
                name = pod["metadata"]["name"]
                status = {
                    "phase": "Running",
                    "startTime": now,
                    "conditions": [
                        {"type": kind, "status": "True", "lastTransitionTime": now}
                        for kind in _POD_READY_CONDITIONS
                    ],
                    "containerStatuses": [
                        {
                            "name": c["name"],
                            "image": c.get("image", ""),
                            "imageID": "",
                            "ready": True,
                            "started": True,
                            "restartCount": 0,
                            "state": {"running": {"startedAt": now}},
                        }
                        for c in pod["spec"]["containers"]
                    ],
                }
                api.patch(
                    f"/api/v1/namespaces/{namespace}/pods/{name}/status",
                    {"status": status},
                    MERGE_PATCH,
                )
                marked.append(name)
        finally:
            api.close()
        return marked

    # ------------------------------------------------------------------ internals

    def _require_running(self) -> None:
        if not self.running:
            raise KubeSandboxError("the Kubernetes API is not started (call start())")

    def _create_service_account_kubeconfig(self) -> Path:
        """Attached mode: the operator's ServiceAccount, a token for it, a kubeconfig."""
        self.apply_manifest(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NAMESPACE}}
        )
        self.apply_manifest(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": OPERATOR_SERVICE_ACCOUNT, "namespace": OPERATOR_NAMESPACE},
            }
        )
        return self.service_account_kubeconfig(
            OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT, "operator"
        )

    def _service_account_token(self, namespace: str, name: str) -> str:
        done = self.kubectl("create", "token", name, "-n", namespace, "--duration=24h", check=False)
        if done.returncode == 0:
            return done.stdout.strip()

        # Kubernetes < 1.24 (the sandbox's 1.20) has no `create token`: the token
        # controller puts one in a Secret named by the ServiceAccount.
        def secret_token() -> str | None:
            account = self.get("serviceaccount", name, namespace) or {}
            for ref in account.get("secrets") or []:
                secret = self.get("secret", ref["name"], namespace) or {}
                token = (secret.get("data") or {}).get("token")
                if token:
                    return base64.b64decode(token).decode()
            return None

        try:
            return wait_for(secret_token, timeout=30, what=f"a token for {namespace}/{name}")
        except KubeSandboxError as exc:
            raise KubeSandboxError(
                f"cannot make a token for ServiceAccount {namespace}/{name} (`kubectl create "
                f"token`: {done.stderr.strip()}; no token Secret either: {exc}); set "
                "UNTHROTTLE_E2E_OPERATOR_KUBECONFIG for the operator's"
            ) from exc

    def service_account_kubeconfig(self, namespace: str, name: str, label: str) -> Path:
        """A kubeconfig authenticating as an existing ServiceAccount (RBAC applies), in
        ``workdir/kubeconfig-<label>``."""
        assert self.workdir is not None
        token = self._service_account_token(namespace, name)
        config = self.kubectl_json("config", "view", "--minify", "--raw", "-o", "json")
        cluster = config["clusters"][0]
        user = f"system:serviceaccount:{namespace}:{name}"
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [cluster],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": label, "context": {"cluster": cluster["name"], "user": user}}],
            "current-context": label,
        }
        path = self.workdir / f"kubeconfig-{label}"
        path.write_text(json.dumps(kubeconfig, indent=2))
        path.chmod(0o600)
        return path
