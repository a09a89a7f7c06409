"""The burst node agent (``unthrottle agent``): the ``unthrottle.dev/cpu-burst-us`` pod
annotation turned into the kernel's CFS burst, on the node the agent runs on.

- :mod:`.layout`: where the kubelet puts pod and container cgroups, and the burst
  arithmetic (pure: plain data in, values out);
- :mod:`.pods`: a Pod as the API server returns it → what the agent must do for it (pure);
- :mod:`.cgroupfs`: the kernel's files (cgroup v1 and v2), ``/proc/<pid>/cgroup``;
- :mod:`.cycle`: one pass over the node's pods: resolve, assert, report;
- :mod:`.server`: the agent's ``/metrics``, ``/healthz`` and ``/readyz``.

docs/burst-agent.md says what it needs, what it does and how it fails.
"""
