"""kopf wiring: a few lines per handler, each calling :func:`unthrottle.reconcile.run`.

Importing this package registers the handlers with kopf (``unthrottle run`` does).
"""

from unthrottle.handlers import policy

__all__ = ["policy"]
