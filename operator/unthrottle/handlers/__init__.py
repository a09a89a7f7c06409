"""kopf wiring: a few lines per handler, each calling reconcile. Filled in by the operator issue."""
