"""TLS without verification: said once per host, not once per request.

This module owns what a client built to skip certificate verification (a kubeconfig with
``insecure-skip-tls-verify``, ``--insecure-skip-verify`` for Prometheus) tells the user:
one warning on the ``unthrottle`` logger naming the host, the first time a client for it
is built. urllib3 would otherwise print an ``InsecureRequestWarning`` for every request
(hundreds in one report); those are silenced in the process once such a client exists,
since the choice was explicit and has been said.
"""

from __future__ import annotations

import logging
import threading
import warnings

from urllib3.exceptions import InsecureRequestWarning

__all__ = ["unverified"]

_log = logging.getLogger("unthrottle")
_lock = threading.Lock()
_said: set[str] = set()


def unverified(host: str) -> None:
    """Record that requests to ``host`` will not verify its certificate (warn once)."""
    warnings.filterwarnings("ignore", category=InsecureRequestWarning)
    with _lock:
        if host in _said:
            return
        _said.add(host)
    _log.warning("TLS certificates of %s are not verified (as configured)", host)
