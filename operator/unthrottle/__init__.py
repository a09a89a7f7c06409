"""unthrottle: right-size CPU requests, limits and burst from CFS throttling.

Layers, each importing only those below it (enforced by import-linter):
``model`` → ``engine`` / ``sim`` → ``sources`` → ``reconcile`` → ``handlers`` / ``cli``.
"""

__version__ = "0.1.0"
