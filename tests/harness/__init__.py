"""Test harnesses that start real parts (Prometheus, the Kubernetes API) on loopback."""
