"""Local stand-ins for a cluster's parts, started on loopback: for the demo and the tests.

``prometheus``: Debian's Prometheus backfilled with simulated series. Nothing here is used
by the operator itself.
"""
