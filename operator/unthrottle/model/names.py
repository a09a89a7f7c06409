"""The ``unthrottle.dev/*`` names users and tools rely on: labels, annotations, the API group.

One home for every name of the contract in docs/policy-reference.md and docs/operating.md, so a
rename is one edit and the docs can point at one file.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "AGENT_NAMESPACE",
    "AUTO_PATCH_LABEL",
    "BURST_ANNOTATION",
    "BURST_APPLIED_ANNOTATION",
    "BURST_REASON_ANNOTATION",
    "GROUP",
    "IGNORE_ANNOTATION",
    "LAST_PATCHED_ANNOTATION",
    "POLICY_LABEL",
    "PREVIOUS_RESOURCES_ANNOTATION",
    "RECOMMENDATION_ANNOTATION",
    "ROLLBACK_ANNOTATION",
    "SYSTEM_NAMESPACES",
    "TIER_LABEL",
    "VERSION",
]

GROUP: Final = "unthrottle.dev"
VERSION: Final = "v1alpha1"

# Namespace label: AutoPatch acts only in namespaces labelled "enabled".
AUTO_PATCH_LABEL: Final = "unthrottle.dev/auto-patch"
# Deployment label: overrides the policy's tier.
TIER_LABEL: Final = "unthrottle.dev/tier"
# ThrottleRecommendation label: the policy that wrote it.
POLICY_LABEL: Final = "unthrottle.dev/policy"

# Deployment annotations.
IGNORE_ANNOTATION: Final = "unthrottle.dev/ignore"  # "true": opted out
RECOMMENDATION_ANNOTATION: Final = "unthrottle.dev/recommendation"  # JSON, all containers
PREVIOUS_RESOURCES_ANNOTATION: Final = "unthrottle.dev/previous-resources"  # for rollback
LAST_PATCHED_ANNOTATION: Final = "unthrottle.dev/last-patched"  # RFC 3339, starts cooldown
ROLLBACK_ANNOTATION: Final = "unthrottle.dev/rollback"  # "true": restore previous-resources

# Pod-template annotation: the CFS burst (µs) for a node agent to apply.
BURST_ANNOTATION: Final = "unthrottle.dev/cpu-burst-us"
# Pod annotations the node agent (``unthrottle agent``) writes, one or the other: the
# burst (µs) the kernel holds once every running container with a CPU limit has its own
# (min(requested, the container's quota); the largest is shown), or why not ("Reason: ...").
BURST_APPLIED_ANNOTATION: Final = "unthrottle.dev/cpu-burst-applied"
BURST_REASON_ANNOTATION: Final = "unthrottle.dev/cpu-burst-reason"

# Never in scope by default (docs/policy-reference.md): the control plane's own namespaces,
# and the burst agent's (manifests/agent/): a node component is not the users' workload.
AGENT_NAMESPACE: Final = "unthrottle-agent"
SYSTEM_NAMESPACES: Final = frozenset(
    {"kube-system", "kube-public", "kube-node-lease", AGENT_NAMESPACE}
)
