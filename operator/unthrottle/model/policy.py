"""The ThrottlePolicy spec as a pydantic model: the mirror of ``crds/throttlepolicy.yaml``.

Field names, defaults and bounds here and in the CRD's OpenAPI schema must agree; a unit
test walks both and fails on any difference. The CRD rejects what it can express on
Kubernetes 1.20 (types, enums, minimum/maximum, patterns); the cross-field rules it cannot
express without CEL (``minRequest <= maxRequest``, a window of at least 5 minutes) are
checked here and reported in the policy's status by the operator.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from pydantic import Field, model_validator

from unthrottle.model.fields import ApiModel, Bytes, DurationMs, Millicores
from unthrottle.model.quantity import parse_bytes, parse_duration_ms, parse_millicores
from unthrottle.model.workload import ALL_KINDS, WorkloadKind

__all__ = [
    "BurstAgent",
    "BurstPolicy",
    "CpuPolicy",
    "HistoryPolicy",
    "LabelSelector",
    "LabelSelectorRequirement",
    "LimitPolicy",
    "MemoryPolicy",
    "Mode",
    "PatchPolicy",
    "PrometheusPolicy",
    "SecretKeyRef",
    "ThrottlePolicySpec",
    "Tier",
    "WebConcurrencyPolicy",
]

MIN_WINDOW_MS = 5 * 60_000
MIN_INTERVAL_MS = 60_000
MIB = 2**20


class Tier(StrEnum):
    """Availability tier: picks the demand percentile, the headroom and the limit ratio."""

    CRITICAL = "critical"
    PRODUCTION = "production"
    DEV = "dev"


class Mode(StrEnum):
    """Recommend only annotates and reports; AutoPatch also patches enabled namespaces."""

    RECOMMEND = "Recommend"
    AUTO_PATCH = "AutoPatch"


class LimitPolicy(StrEnum):
    """How the CPU limit follows the request."""

    RATIO = "Ratio"  # limit = the tier's multiple of the request
    GUARANTEED = "Guaranteed"  # limit = request (Guaranteed QoS when memory matches too)
    UNSET = "Unset"  # no CPU limit at all


class LabelSelectorRequirement(ApiModel):
    key: str = Field(min_length=1)
    operator: str = Field(pattern=r"^(In|NotIn|Exists|DoesNotExist)$")
    values: list[str] = Field(default_factory=list)


class LabelSelector(ApiModel):
    """A Kubernetes label selector; empty selects everything."""

    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)

    def is_empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether an object with ``labels`` is selected (Kubernetes semantics)."""
        if any(labels.get(key) != value for key, value in self.match_labels.items()):
            return False
        for requirement in self.match_expressions:
            present = requirement.key in labels
            value = labels.get(requirement.key)
            if requirement.operator == "In" and value not in requirement.values:
                return False
            if requirement.operator == "NotIn" and present and value in requirement.values:
                return False
            if requirement.operator == "Exists" and not present:
                return False
            if requirement.operator == "DoesNotExist" and present:
                return False
        return True

    def to_query(self) -> str:
        """The selector as the API server's ``labelSelector`` query (``a=b,c in (d,e)``)."""
        terms = [f"{key}={value}" for key, value in sorted(self.match_labels.items())]
        for requirement in self.match_expressions:
            values = ",".join(requirement.values)
            terms.append(
                {
                    "In": f"{requirement.key} in ({values})",
                    "NotIn": f"{requirement.key} notin ({values})",
                    "Exists": requirement.key,
                    "DoesNotExist": f"!{requirement.key}",
                }[requirement.operator]
            )
        return ",".join(terms)


class CpuPolicy(ApiModel):
    limit_policy: LimitPolicy = LimitPolicy.RATIO
    min_request: Millicores = Field(default=parse_millicores("10m"), ge=1)
    max_request: Millicores | None = Field(default=None, ge=1)
    min_limit: Millicores | None = Field(default=None, ge=1)
    max_limit: Millicores | None = Field(default=None, ge=1)
    cfs_period: DurationMs = Field(default=parse_duration_ms("100ms"), ge=1, le=1000)

    @model_validator(mode="after")
    def _bounds_ordered(self) -> Self:
        if self.max_request is not None and self.max_request < self.min_request:
            raise ValueError("cpu.maxRequest must not be below cpu.minRequest")
        if (
            self.min_limit is not None
            and self.max_limit is not None
            and self.max_limit < self.min_limit
        ):
            raise ValueError("cpu.maxLimit must not be below cpu.minLimit")
        return self


class MemoryPolicy(ApiModel):
    enabled: bool = True
    headroom: float = Field(default=0.40, ge=0.0, le=4.0)
    min_limit: Bytes = Field(default=parse_bytes("32Mi"), ge=MIB)
    max_limit: Bytes | None = Field(default=None, ge=MIB)

    @model_validator(mode="after")
    def _bounds_ordered(self) -> Self:
        if self.max_limit is not None and self.max_limit < self.min_limit:
            raise ValueError("memory.maxLimit must not be below memory.minLimit")
        return self


class BurstAgent(StrEnum):
    """Whether a node agent applies the burst annotation (docs/burst-agent.md).

    Kubernetes has no burst field: only ``unthrottle agent`` on the node turns the
    annotation into ``cpu.cfs_burst_us`` / ``cpu.max.burst``. A burst the kernel never gets
    must not lower the limit or the projection.
    """

    DETECT = "Detect"  # burst counts for a container whose pods report an applied burst
    INSTALLED = "Installed"  # the user states the agent runs on every node


class BurstPolicy(ApiModel):
    enabled: bool = True
    agent: BurstAgent = BurstAgent.DETECT


class WebConcurrencyPolicy(ApiModel):
    enabled: bool = False
    env_name: str = Field(default="WEB_CONCURRENCY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    containers: list[str] = Field(default_factory=list)


class PatchPolicy(ApiModel):
    min_change: float = Field(default=0.10, ge=0.0, le=1.0)
    max_step_up: float = Field(default=2.0, ge=1.0, le=10.0)
    max_step_down: float = Field(default=0.25, gt=0.0, le=1.0)
    cooldown: DurationMs = Field(default=parse_duration_ms("24h"), ge=0)
    max_concurrent_rollouts: int = Field(default=1, ge=1, le=100)


class HistoryPolicy(ApiModel):
    min_samples: int = Field(default=10, ge=1)
    min_coverage: float = Field(default=0.5, ge=0.0, le=1.0)


class SecretKeyRef(ApiModel):
    namespace: str = Field(min_length=1)
    name: str = Field(min_length=1)
    key: str = Field(min_length=1)


class PrometheusPolicy(ApiModel):
    url: str | None = Field(default=None, pattern=r"^https?://")
    match_labels: dict[str, str] = Field(default_factory=dict)
    bearer_token_secret_ref: SecretKeyRef | None = None
    basic_auth_username_secret_ref: SecretKeyRef | None = None
    basic_auth_password_secret_ref: SecretKeyRef | None = None
    ca_bundle_secret_ref: SecretKeyRef | None = None
    insecure_skip_verify: bool = False
    timeout: DurationMs = Field(default=parse_duration_ms("30s"), ge=1000)
    concurrency: int = Field(default=4, ge=1, le=32)
    compress_answers: bool = False  # gzip: less to transfer, far more CPU for Prometheus

    @model_validator(mode="after")
    def _one_auth(self) -> Self:
        basic = (self.basic_auth_username_secret_ref, self.basic_auth_password_secret_ref)
        if (basic[0] is None) != (basic[1] is None):
            raise ValueError("prometheus basic auth needs both a username and a password secret")
        if self.bearer_token_secret_ref is not None and basic[0] is not None:
            raise ValueError("prometheus: set a bearer token or basic auth, not both")
        return self


class ThrottlePolicySpec(ApiModel):
    namespace_selector: LabelSelector = Field(default_factory=LabelSelector)
    selector: LabelSelector = Field(default_factory=LabelSelector)
    kinds: tuple[WorkloadKind, ...] = Field(default=ALL_KINDS, min_length=1)
    tier: Tier = Tier.PRODUCTION
    mode: Mode = Mode.RECOMMEND
    window: DurationMs = Field(default=parse_duration_ms("7d"))
    interval: DurationMs = Field(default=parse_duration_ms("10m"))
    throttle_target: float = Field(default=0.05, ge=0.001, le=0.5)
    cpu: CpuPolicy = Field(default_factory=CpuPolicy)
    memory: MemoryPolicy = Field(default_factory=MemoryPolicy)
    burst: BurstPolicy = Field(default_factory=BurstPolicy)
    web_concurrency: WebConcurrencyPolicy = Field(default_factory=WebConcurrencyPolicy)
    patch: PatchPolicy = Field(default_factory=PatchPolicy)
    history: HistoryPolicy = Field(default_factory=HistoryPolicy)
    prometheus: PrometheusPolicy = Field(default_factory=PrometheusPolicy)

    @model_validator(mode="after")
    def _durations(self) -> Self:
        if self.window < MIN_WINDOW_MS:
            raise ValueError("window must be at least 5m")
        if self.interval < MIN_INTERVAL_MS:
            raise ValueError("interval must be at least 1m")
        return self
