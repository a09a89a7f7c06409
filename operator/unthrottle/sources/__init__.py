"""Adapters to the outside world (Prometheus, the Kubernetes API). Filled in by later issues."""
