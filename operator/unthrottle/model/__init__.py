"""Value types: policies, statistics, recommendations, Kubernetes quantities. Pure, no I/O."""
