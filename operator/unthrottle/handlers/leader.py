"""Leader election for ``unthrottle run``: the ``coordination.k8s.io`` Lease, taken before
kopf starts and renewed while it runs.

:class:`LeaderElector` reads and writes the Lease (every write a compare-and-swap on its
resourceVersion, so two instances never both win); whose turn it is comes from
:mod:`unthrottle.model.lease`. While an instance waits as a standby, :func:`standby_health`
answers ``/healthz`` on the liveness port, so the liveness probe does not kill it; kopf
serves that endpoint once the instance leads.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import Gauge

from unthrottle.model.lease import (
    LeaseRecord,
    LeaseTimings,
    Observation,
    Turn,
    decide,
    lease_spec,
    observe,
    parse_lease,
    still_leading,
)
from unthrottle.sources.kubeapi import KubeApi, KubernetesError

__all__ = ["LEADING", "LeaderElector", "standby_health"]

logger = logging.getLogger("unthrottle.leader")
LEADING = Gauge("unthrottle_leader", "1 while this operator instance holds the Lease and runs")
NOT_FOUND, CONFLICT = 404, 409


def _now_text() -> str:
    # MicroTime, as the API server writes renewTime and acquireTime
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """One instance's side of the Lease ``namespace/name``, as ``identity``."""

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        name: str,
        identity: str,
        *,
        timings: LeaseTimings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api, self.identity, self.timings = api, identity, timings
        self._collection = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self._path = f"{self._collection}/{name}"
        self._namespace, self._name = namespace, name
        self._clock = clock
        self._observation: Observation | None = None
        self._last_renewed_ms: int | None = None

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    @property
    def holder(self) -> str | None:
        """The holder as last read (None: none, or not read yet)."""
        return None if self._observation is None else self._observation.record.holder

    def _read(self, now_ms: int) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self.api.get(self._path)
        except KubernetesError as exc:
            if exc.status != NOT_FOUND:
                raise
            self._observation = None
            return None
        self._observation = observe(self._observation, parse_lease(obj), now_ms)
        return obj

    def try_once(self) -> bool:
        """One turn: read the Lease and take or renew it if it is this instance's turn.
        True when this instance holds it afterwards; an API error is logged, and is a no."""
        now_ms = self._now_ms()  # before the request: renewals count from the earlier time
        try:
            obj = self._read(now_ms)
            turn = decide(self._observation, self.identity, now_ms)
            if turn is Turn.WAIT:
                return False
            record = None if self._observation is None else self._observation.record
            spec = lease_spec(record, self.identity, self.timings, _now_text())
            self._write(obj, spec)
        except KubernetesError as exc:
            if exc.status == CONFLICT:
                logger.debug("lease %s: written by another instance first", self._name)
            else:
                logger.warning("lease %s/%s: %s", self._namespace, self._name, exc)
            return False
        if turn is not Turn.RENEW:
            logger.info("lease %s/%s taken by %s", self._namespace, self._name, self.identity)
        self._last_renewed_ms = now_ms
        return True

    def _write(self, obj: dict[str, Any] | None, spec: dict[str, Any]) -> None:
        if obj is None:
            metadata = {"name": self._name, "namespace": self._namespace}
            lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata}
            written = self.api.post(self._collection, {**lease, "spec": spec})
        else:
            # The whole object as read, resourceVersion included: a compare-and-swap.
            written = self.api.put(self._path, {**obj, "spec": spec})
        self._observation = observe(self._observation, parse_lease(written), self._now_ms())

    def acquire(self, stop: threading.Event) -> bool:
        """Wait as a standby until this instance holds the Lease (False: ``stop`` was set)."""
        waiting_for: str | None = None
        while not stop.is_set():
            if self.try_once():
                return True
            if self.holder != waiting_for:
                waiting_for = self.holder
                logger.info("standby: lease %s held by %s", self._name, waiting_for)
            stop.wait(self._jittered())
        return False

    def _jittered(self) -> float:
        # Waiting instances spread their tries over up to a fifth of the retry period more.
        return self.timings.retry_period * (1 + 0.2 * random.random())

    def keep_leading(self, stop: threading.Event, on_lost: Callable[[str], None]) -> None:
        """Renew every retry period until ``stop``; ``on_lost(why)`` once the Lease is
        lost (another holder is seen, or no renewal succeeded for the renew deadline)."""
        while not stop.wait(self.timings.retry_period):
            renewed = self.try_once()
            holder = self.holder
            if not renewed and holder not in (None, self.identity):
                on_lost(f"lease {self._name} is now held by {holder}")
                return
            last = self._last_renewed_ms or 0
            if not still_leading(last, self._now_ms(), self.timings):
                on_lost(
                    f"lease {self._name} not renewed for {self.timings.renew_deadline:g}s "
                    "(the renew deadline)"
                )
                return

    def release(self) -> None:
        """Give the Lease up if this instance still holds it, so a standby takes it at once."""
        try:
            obj = self._read(self._now_ms())
            record: LeaseRecord | None = None if obj is None else parse_lease(obj)
            if obj is None or record is None or record.holder != self.identity:
                return
            self.api.put(
                self._path, {**obj, "spec": lease_spec(record, None, self.timings, _now_text())}
            )
        except KubernetesError as exc:
            logger.warning("lease %s not released (it expires on its own): %s", self._name, exc)
            return
        logger.info("lease %s released", self._name)


class _StandbyHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ok = self.path.split("?")[0] == "/healthz"
        body = b'{"standby": true}\n' if ok else b"not found\n"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "application/json" if ok else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:  # probes every few seconds: not worth a line
        pass


@contextlib.contextmanager
def standby_health(address: str, port: int) -> Iterator[None]:
    """``/healthz`` answers 200 on ``address:port`` while the block runs (the port is free
    again after it, for kopf's own liveness endpoint)."""
    server = ThreadingHTTPServer((address, port), _StandbyHandler)
    thread = threading.Thread(target=server.serve_forever, name="standby-healthz", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
