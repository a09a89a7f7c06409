"""Adapters to the outside world: Prometheus (the statistics) and the Kubernetes API (the
workloads, and every write the operator makes)."""
