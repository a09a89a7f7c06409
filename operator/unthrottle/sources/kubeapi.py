"""A small JSON client for the Kubernetes API, authenticated by the official client's config.

The official ``kubernetes`` package loads kubeconfigs and in-cluster credentials well (token
files, client certificates, exec plugins); its generated API classes change shape between
releases and choose patch content types for you. unthrottle needs exact control over a few
verbs (a strategic-merge patch of a Deployment, a merge patch of a status subresource), so
this module keeps the package's configuration and speaks plain JSON over ``requests``:
``get``, ``post``, ``put``, ``patch`` with an explicit content type, ``delete``. Errors become
:class:`KubernetesError` with the verb, the path and the API server's message.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from unthrottle.sources.tls import unverified

if TYPE_CHECKING:
    from kubernetes import client

__all__ = [
    "MERGE_PATCH",
    "STRATEGIC_MERGE_PATCH",
    "KubeApi",
    "KubernetesError",
]

STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"
IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
USER_AGENT = "unthrottle"


class KubernetesError(Exception):
    """A request the API server refused or could not answer."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _official_client() -> tuple[Any, Any]:
    """The official client's ``client`` and ``config`` modules, imported when a kubeconfig
    is first loaded: a command that reads only Prometheus does not pay for them (0.2 s)."""
    from kubernetes import client, config  # noqa: PLC0415

    return client, config


class KubeApi:
    """JSON requests to one API server with one identity; thread-safe for reads and writes."""

    def __init__(self, configuration: client.Configuration, timeout: float = 30.0) -> None:
        self._config = configuration
        self._timeout = timeout
        self._session = requests.Session()
        self._session.headers["User-Agent"] = USER_AGENT
        # Passed with every request: a session-level ``verify`` loses to REQUESTS_CA_BUNDLE
        # in the environment, which would trust the system CAs instead of the cluster's.
        self._verify: str | bool = configuration.ssl_ca_cert or bool(configuration.verify_ssl)
        self._cert: tuple[str, str] | None = None
        if configuration.cert_file and configuration.key_file:
            self._cert = (configuration.cert_file, configuration.key_file)
        self.host = configuration.host.rstrip("/")
        if self._verify is False:
            unverified(self.host)

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, context: str | None = None) -> KubeApi:
        """From a kubeconfig file (its ``context``, default the current one), else
        in-cluster credentials, else ~/.kube/config."""
        client, config = _official_client()
        configuration = client.Configuration()
        if path and not any(Path(p).expanduser().is_file() for p in path.split(os.pathsep)):
            # The client says "Invalid kube-config file. No configuration found." for this.
            raise KubernetesError(f"kubeconfig {path} does not exist (give --kubeconfig PATH)")
        try:
            if path or context:
                config.load_kube_config(
                    config_file=path, context=context, client_configuration=configuration
                )
            else:
                try:
                    config.load_incluster_config(client_configuration=configuration)
                except config.ConfigException:
                    default = Path(config.KUBE_CONFIG_DEFAULT_LOCATION).expanduser()
                    if not default.is_file():
                        raise KubernetesError(
                            f"not in a cluster, and kubeconfig {default} does not exist "
                            "(give --kubeconfig PATH)"
                        ) from None
                    config.load_kube_config(client_configuration=configuration)
        except (config.ConfigException, OSError, ValueError) as exc:
            raise KubernetesError(f"cannot load a kubeconfig ({path or 'default'}): {exc}") from exc
        if getattr(configuration, "ca_cert_data", None) and not configuration.ssl_ca_cert:
            # Newer clients keep inline CA data in memory; requests wants a file.
            with tempfile.NamedTemporaryFile("w", suffix=".crt", delete=False) as handle:
                handle.write(configuration.ca_cert_data)
            configuration.ssl_ca_cert = handle.name
        return cls(configuration)

    @staticmethod
    def context_namespace(path: str | None = None, context: str | None = None) -> str:
        """The namespace a kubeconfig context names (kubectl's default for ``-n``)."""
        _, config = _official_client()
        try:
            contexts, current = config.list_kube_config_contexts(config_file=path)
        except (config.ConfigException, OSError, ValueError) as exc:
            raise KubernetesError(f"cannot load a kubeconfig ({path or 'default'}): {exc}") from exc
        chosen = current
        if context:
            chosen = next((c for c in contexts if c.get("name") == context), None)
        if chosen is None:
            raise KubernetesError(f"context {context!r} is not in the kubeconfig")
        return str((chosen.get("context") or {}).get("namespace") or "default")

    def close(self) -> None:
        self._session.close()

    def credentials(self) -> dict[str, Any]:
        """Server, CA, client certificate and token, for another client (kopf's login)."""
        headers = self._headers()
        token = headers.get("Authorization", "").removeprefix("Bearer ").strip() or None
        return {
            "server": self.host,
            "ca_path": self._verify if isinstance(self._verify, str) else None,
            "insecure": self._verify is False,
            "certificate_path": self._cert[0] if self._cert else None,
            "private_key_path": self._cert[1] if self._cert else None,
            "token": token,
        }

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        # The client's own auth settings (a token, or one an exec plugin refreshes): the
        # identifier differs between client releases, the header does not.
        for setting in self._config.auth_settings().values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[str(setting["key"]).title()] = str(setting["value"])
        if "Authorization" not in headers and IN_CLUSTER_TOKEN.exists():
            # bound ServiceAccount tokens rotate: read the file each time
            headers["Authorization"] = "Bearer " + IN_CLUSTER_TOKEN.read_text().strip()
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        headers = self._headers()
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body)
        try:
            response = self._session.request(
                method,
                self.host + path,
                params=params,
                data=data,
                headers=headers,
                timeout=self._timeout,
                verify=self._verify,
                cert=self._cert,
            )
        except requests.RequestException as exc:
            raise KubernetesError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            try:
                message = response.json().get("message") or response.text
            except ValueError:
                message = response.text[:200]
            raise KubernetesError(
                f"{method} {path}: {response.status_code} {message}", response.status_code
            )
        return response.json() if response.content else None

    def get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body=body)

    def put(self, path: str, body: Any) -> Any:
        """Replace an object; its ``metadata.resourceVersion`` makes it a compare-and-swap
        (409 Conflict when someone else wrote it since)."""
        return self.request("PUT", path, body=body)

    def patch(self, path: str, body: Any, content_type: str = MERGE_PATCH) -> Any:
        return self.request("PATCH", path, body=body, content_type=content_type)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)
