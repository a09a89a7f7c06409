"""A deterministic simulator of CFS bandwidth control and of the series it leaves behind.

This package owns the *ground truth* that the engine's estimates and the integration tests
are checked against. It has these parts:

- :mod:`unthrottle.sim.cfs`: the kernel model. One cgroup with a quota per period and an
  optional burst allowance; an exact event-level run for worked examples and a fast
  per-period (or per-scrape-step) simulation for long windows.
- :mod:`unthrottle.sim.workload`: demand generators (CPU demand per CFS period, RSS).
- :mod:`unthrottle.sim.scenarios`: named workloads from the seeds (quota-bound,
  micro-burst, GIL threads, ...) with their Kubernetes resources.
- :mod:`unthrottle.sim.openmetrics`: renders scenarios, and pod runs of several
  configurations, as the cAdvisor and kube-state-metrics series a kube-prometheus-stack
  Prometheus would hold, in the OpenMetrics text that ``promtool tsdb
  create-blocks-from openmetrics`` backfills (one pod's series: :mod:`.series`; its
  simulated numbers: :mod:`.pods`).

Like the engine it is pure: no clock (timestamps are arguments), no I/O beyond a file object
handed in, and randomness only from ``random.Random(seed)``, so equal arguments give equal
output. CPU is integer microseconds of CPU time (or millicores), memory integer bytes.
"""
