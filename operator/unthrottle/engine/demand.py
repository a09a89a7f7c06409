"""The demand model: CPU demand per CFS period, estimated through the throttling censor.

A throttled container's usage is capped at its quota, so usage percentiles only repeat the
limit it already has. This module models the *demand* D of one CFS period (the CPU time the
container's threads would have used in that period had there been no quota, in millicores
of the period: 300m means 30 ms of CPU time in a 100 ms period) with a two-parameter
survival function

    P(D > x) = min(1, A·exp(-x/β))

an exponential tail of scale β whose level A says where it starts (A ≤ 1: a fraction A of
periods is busy at all; A > 1: every period needs at least β·ln A). The counters then fix
the parameters:

* a period is throttled when D exceeds the quota L, so the throttled-period ratio is
  r = P(D > L) = A·exp(-L/β). The kernel counts only *active* periods (those with
  runnable work), so D is the demand of an active period and the mean usage of an active
  period is the wall-clock mean divided by the active fraction f;
* β is the one value for which the model's mean usage E[min(D, L)] equals the observed
  mean usage u; that function of β is monotone, so a bisection finds it. When the
  counters cannot tell (every period throttled, usage pinned at the limit) β is capped
  at L;
* ``container_cpu_cfs_throttled_seconds_total`` (absent in a default kube-prometheus-stack
  install) bounds β from above: each runqueue with runnable work stalls until the period
  ends, so throttled time per throttled period is (w − L) for w runnable threads, the
  most CPU the turned-away work could have used. β ≤ s / (f·r) tightens the fit.

From the fitted model follow the projected throttle ratio at any new limit L′ and burst
allowance b: P(D > L′ + b_eff), and the limit that meets a target τ. Worked numbers are in
docs/recommendations.md. Everything here is pure arithmetic on integers and floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from unthrottle.model.recommendation import DemandModel
from unthrottle.model.stats import CpuStats

__all__ = [
    "FIT_THROTTLED_PERIODS",
    "FIT_THROTTLED_PERIODS_CAPPED",
    "FIT_THROTTLED_SECONDS",
    "FIT_UNTHROTTLED",
    "FIT_UNTHROTTLED_FLOOR",
    "MIN_THROTTLE_RATIO",
    "SATURATED_THROTTLE_RATIO",
    "DemandEstimate",
    "effective_burst",
    "estimate_demand",
    "limit_for_target",
    "mean_demand",
    "mean_usage_at",
    "projected_throttle_ratio",
    "survival",
]

# Below this throttled-period ratio the counters are noise (one throttled period in ten
# thousand); the container is treated as unthrottled.
MIN_THROTTLE_RATIO = 1e-4
# At or above this throttled ratio the unthrottled periods are too few to fit β from the
# mean usage: β = (L − u) / (ln(1/r) − (1 − r)) and the denominator falls like (1 − r)²/2,
# so 0.4% more usage at r = 0.9 would shrink β fivefold. The counters are treated as
# saturated, and β takes its cap.
SATURATED_THROTTLE_RATIO = 0.9
# Bounds of the bisection for β, relative to the quota, when only periods are known.
_SCALE_FLOOR_OF_LIMIT = 1e-3
_SCALE_CAP_OF_LIMIT = 1.0
_BISECTION_STEPS = 100

FIT_UNTHROTTLED = "unthrottled: exponential with the mean usage"
FIT_UNTHROTTLED_FLOOR = "unthrottled: fitted to usage below the detection floor at the quota"
FIT_THROTTLED_SECONDS = "throttled periods: scale bounded by throttled seconds"
FIT_THROTTLED_PERIODS = "throttled periods: scale fitted to mean usage at the quota"
FIT_THROTTLED_PERIODS_CAPPED = "throttled periods: scale capped at the quota"


@dataclass(frozen=True)
class DemandEstimate:
    """The fitted model and the demand statistics derived from it (millicores, wall clock)."""

    model: DemandModel
    usage_mean: float  # mean usage over the window (at least f·r·L, see estimate_demand)
    unmet_mean: float  # f·E[(D − L)⁺]: demand the quota turned away, per period of the window
    signals: tuple[str, ...]

    @property
    def mean(self) -> float:
        return self.usage_mean + self.unmet_mean

    def percentile(self, usage_percentile: int) -> float:
        """Demand at a usage percentile: the usage seen plus the mean unmet demand."""
        return usage_percentile + self.unmet_mean


def survival(model: DemandModel, x: float) -> float:
    """P(D > x) for a demand of ``x`` millicores."""
    return min(1.0, math.exp(min(0.0, model.log_level - x / model.scale)))


def mean_demand(model: DemandModel) -> float:
    """E[D] = ∫ P(D > x) dx: A·β when A ≤ 1, else β·(ln A + 1)."""
    if model.log_level <= 0.0:
        return math.exp(model.log_level) * model.scale
    return model.scale * (model.log_level + 1.0)


def mean_usage_at(model: DemandModel, limit: float) -> float:
    """E[min(D, L)] = ∫₀ᴸ P(D > x) dx: what the container uses on average under quota L."""
    return _mean_usage(model.log_level, model.scale, limit)


def _mean_usage(log_level: float, beta: float, limit: float) -> float:
    # mean_usage_at of the model (ln A, β); plain floats, as the fit's bisection calls it
    # some fifty times per container.
    if log_level <= 0.0:
        return math.exp(log_level) * beta * (1.0 - math.exp(-limit / beta))
    start = beta * log_level  # below this every period needs more than x
    if limit <= start:
        return limit
    return start + beta * (1.0 - math.exp(-(limit - start) / beta))


def _usage_for_scale(scale: float, ratio: float, limit: float) -> float:
    """Mean usage at quota L of the model with scale β through the point P(D > L) = r."""
    return _mean_usage(math.log(ratio) + limit / scale, scale, limit)


def _fit_scale_to_usage(usage: float, ratio: float, limit: float) -> tuple[float, bool]:
    """β such that the model through P(D > L) = r has mean usage ``usage`` under quota L.

    The model's mean usage falls monotonically from L (β → 0: a steady load just above the
    quota) to r·L (β → ∞: rare huge bursts), so bisection on log β converges. Returns β and
    whether it hit the cap.
    """
    low = max(limit * _SCALE_FLOOR_OF_LIMIT, 1e-6)
    high = limit * _SCALE_CAP_OF_LIMIT
    if usage >= _usage_for_scale(low, ratio, limit):
        return low, False
    if usage <= _usage_for_scale(high, ratio, limit):
        return high, True
    log_low, log_high = math.log(low), math.log(high)
    for _ in range(_BISECTION_STEPS):
        middle = (log_low + log_high) / 2.0
        if _usage_for_scale(math.exp(middle), ratio, limit) > usage:
            log_low = middle  # too much usage: the tail must be heavier
        else:
            log_high = middle
    return math.exp((log_low + log_high) / 2.0), False


def estimate_demand(cpu: CpuStats, limit: int | None) -> DemandEstimate:
    """Fit the demand model to one container's counters under its current quota ``limit``."""
    active = cpu.active_period_ratio or 1.0
    usage = float(max(cpu.usage_cores.mean_or_median, 1))
    ratio = cpu.throttled_period_ratio
    if limit is None or ratio < MIN_THROTTLE_RATIO:
        # Nothing censored the usage: assume an exponential demand per active period with
        # the observed mean (coefficient of variation 1, a bursty, memoryless load) ...
        model = DemandModel(log_level=0.0, scale=usage / active, fit=FIT_UNTHROTTLED)
        if limit is None or survival(model, float(limit)) <= MIN_THROTTLE_RATIO:
            return DemandEstimate(model, usage, 0.0, ("usage",))
        # ... unless that contradicts the counters: it would throttle at the quota, which
        # did not happen. Then fit through the detection floor there; nothing was turned
        # away, so no unmet demand is added.
        scale, _ = _fit_scale_to_usage(
            min(max(usage / active, 1.0), float(limit) * 0.999), MIN_THROTTLE_RATIO, float(limit)
        )
        log_level = math.log(MIN_THROTTLE_RATIO) + float(limit) / scale
        floored = DemandModel(log_level=log_level, scale=scale, fit=FIT_UNTHROTTLED_FLOOR)
        return DemandEstimate(floored, usage, 0.0, ("usage", "throttled-periods"))
    quota = float(limit)
    # Every throttled period used its whole quota, so the mean usage of an active period
    # is at least r·L; counters that say less come from kernels that strand quota on
    # idle CPUs.
    usage_active = min(max(usage / active, ratio * quota * 1.001), quota * 0.999)
    if ratio >= SATURATED_THROTTLE_RATIO:
        scale, capped = quota * _SCALE_CAP_OF_LIMIT, True
    else:
        scale, capped = _fit_scale_to_usage(usage_active, ratio, quota)
    fit = FIT_THROTTLED_PERIODS_CAPPED if capped else FIT_THROTTLED_PERIODS
    signals: tuple[str, ...] = ("usage", "throttled-periods")
    stalled = cpu.throttled_seconds_per_second
    if stalled is not None:
        signals += ("throttled-seconds",)
        # Throttled time per throttled period: the CPU the stalled threads could have used.
        bound = max(stalled / (active * ratio), 1.0)
        if bound < scale:
            scale, fit = bound, FIT_THROTTLED_SECONDS
    model = DemandModel(log_level=math.log(ratio) + quota / scale, scale=scale, fit=fit)
    return DemandEstimate(model, usage_active * active, active * ratio * scale, signals)


def effective_burst(model: DemandModel, limit: float, burst: float, demand_mean: float) -> float:
    """The burst credit (millicores of one period) likely to be there when a burst comes.

    Credit refills by L − E[D] per period and bursts that need it come every 1/P(D > L)
    periods, so at most (L − E[D])·(1/P(D > L) − 1) has built up, and never more than the
    allowance b itself.
    """
    if burst <= 0:
        return 0.0
    tail = survival(model, limit)
    if tail <= 0.0:
        return burst
    refill = max(0.0, limit - demand_mean) * (1.0 / tail - 1.0)
    return min(burst, refill)


def projected_throttle_ratio(
    model: DemandModel, limit: int | None, burst: float = 0.0, demand_mean: float = 0.0
) -> float:
    """P(D > L + b_eff): the throttled-period ratio the model expects at limit L, burst b."""
    if limit is None:
        return 0.0
    extra = effective_burst(model, float(limit), burst, demand_mean)
    return survival(model, float(limit) + extra)


def limit_for_target(model: DemandModel, target: float) -> float:
    """The quota L at which P(D > L) = τ without burst: L = β·(ln A − ln τ)."""
    return max(0.0, model.scale * (model.log_level - math.log(target)))
