"""``unthrottle report -o html``: the report as one self-contained HTML page.

Pure: report rows in, a string out. Everything is inline (CSS and SVG drawn here), so the
file opens anywhere with no network: no scripts, no fonts, no images to fetch.

Per container: the current and recommended resources; the observed CPU usage
distribution (p50/p95/p99/max) beside the demand estimated through the throttling censor
(mean and p99); the projected throttle ratio as a function of the limit, which is the
demand model's survival P(D > L) (with the recommended burst, a second curve), with the
target, the current limit at the observed ratio and the recommended limit at its
projection; memory (RSS and working set) against the current and recommended limits; and
the engine's explanation. docs/observability.md shows a screenshot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape
from typing import TYPE_CHECKING

from unthrottle.cli.charts import AXIS, GRID, HEIGHT, LEFT, TOP, Axes, line_path, svg
from unthrottle.engine.burst import burst_cores
from unthrottle.engine.demand import projected_throttle_ratio, survival
from unthrottle.model.quantity import describe_bytes, format_millicores
from unthrottle.model.recommendation import (
    DemandModel,
    Evidence,
    NoRecommendation,
    Recommendation,
)
from unthrottle.model.stats import ContainerStats

if TYPE_CHECKING:  # the report module imports this one
    from unthrottle.cli.report import ReportRow

__all__ = ["render_html_report"]

DEFAULT_PERIOD_US = 100_000
# The curve's ratio axis is logarithmic down to one throttled period in ten thousand (the
# engine's detection floor); lower ratios are drawn on the floor.
RATIO_FLOOR = 1e-4
CURVE_POINTS = 160
STRIP_LEFT = 104  # room for the bar names

COLORS = {
    "usage": "#4a6fa5",
    "demand": "#d35400",
    "current": "#c0392b",
    "recommended": "#1e8449",
    "target": "#7d3c98",
    "grid": GRID,
    "axis": AXIS,
}

STYLE = f"""
body {{ font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #1f2328; margin: 24px auto; max-width: 1180px; padding: 0 16px; }}
h1 {{ font-size: 22px; margin: 0 0 4px; }} h2 {{ font-size: 17px; margin: 0; }}
.meta {{ color: #59636e; margin-bottom: 16px; }}
table {{ border-collapse: collapse; }} th, td {{ padding: 3px 10px; text-align: left; }}
table.summary th {{ background: #f3f4f6; }} table.summary td, table.summary th
  {{ border-bottom: 1px solid #e3e6ea; font-variant-numeric: tabular-nums; }}
section.container {{ border: 1px solid #d8dde3; border-radius: 8px; margin: 22px 0;
  padding: 14px 18px; }}
.head {{ display: flex; gap: 12px; align-items: baseline; flex-wrap: wrap; }}
.badge {{ background: #eef1f5; border-radius: 10px; padding: 1px 9px; font-size: 12px; }}
.badge.bad {{ background: #fbe4e1; color: #8c2a1e; }} .badge.good {{ background: #e1f3e6; }}
.grid {{ display: grid; grid-template-columns: 1fr 1fr; gap: 10px 26px; margin-top: 10px; }}
.numbers td:first-child {{ color: #59636e; }} .numbers td {{ font-variant-numeric: tabular-nums; }}
.now {{ color: {COLORS["current"]}; }} .rec {{ color: {COLORS["recommended"]}; font-weight: 600; }}
figure {{ margin: 0; }} figcaption {{ color: #59636e; font-size: 12.5px; }}
svg text {{ font: 11px system-ui, sans-serif; fill: {COLORS["axis"]}; }}
.explanation {{ background: #f7f8fa; border-radius: 6px; padding: 8px 12px; margin-top: 10px; }}
.reason {{ color: #8c2a1e; }}
"""


def _cpu(millicores: float | None) -> str:
    return "-" if millicores is None else format_millicores(round(millicores))


def _ratio(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1%}" if value >= 0.001 or value == 0 else "<0.1%"


def _memory(n_bytes: int | None) -> str:
    return "-" if n_bytes is None else describe_bytes(n_bytes)


def _vline(axes: Axes, x: float, css: str, color: str, text: str, *, row: int = 0) -> str:
    px = axes.x(x)
    return (
        f'<line class="{css}" x1="{px:.1f}" y1="{TOP}" x2="{px:.1f}" y2="{TOP + axes.height}" '
        f'stroke="{color}" stroke-width="1.6"/><text x="{px + 4:.1f}" y="{TOP + 12 + 13 * row}" '
        f'style="fill:{color}">{escape(text)}</text>'
    )


def _curve_path(axes: Axes, ratio_at: Callable[[float], float]) -> str:
    limits = [axes.x_max * i / CURVE_POINTS for i in range(CURVE_POINTS + 1)]
    return line_path(axes, ((limit, ratio_at(limit)) for limit in limits))


def _throttle_curve(row: ReportRow, evidence: Evidence, target: float) -> str:
    """The projected throttle ratio against the CPU limit, on a log scale."""
    model = evidence.demand_model
    if model is None:
        return '<p class="reason">No demand model: nothing to project.</p>'
    result, current = row.result, row.container
    recommended = result if isinstance(result, Recommendation) else None
    marks: list[float | None] = [current.cpu_limit, evidence.demand_p99, evidence.cpu_usage_p99]
    if recommended is not None and recommended.cpu_limit is not None:
        marks.append(recommended.cpu_limit)
    x_max = max(max(m for m in marks if m is not None) * 1.35, 100.0)
    axes = Axes(x_max, log_y=True, log_floor=RATIO_FLOOR)
    body = [*axes.x_ticks(_cpu), *_ratio_ticks(axes), axes.frame()]
    body.append(
        f'<path class="projection" d="{_curve_path(axes, lambda x: survival(model, x))}" '
        f'fill="none" stroke="{COLORS["demand"]}" stroke-width="2"/>'
    )
    if recommended is not None and recommended.cpu_burst_us:
        body.append(_burst_curve(axes, row, model, recommended.cpu_burst_us, evidence.demand_mean))
    body.append(_target_line(axes, target))
    if current.cpu_limit is not None:
        body.append(_vline(axes, current.cpu_limit, "current-limit", COLORS["current"], "now"))
        body.append(_dot(axes, current.cpu_limit, evidence.throttle_ratio, COLORS["current"]))
    if recommended is not None and recommended.cpu_limit is not None:
        body.append(
            _vline(axes, recommended.cpu_limit, "recommended-limit", COLORS["recommended"],
                   "recommended", row=1)
        )  # fmt: skip
        body.append(
            _dot(axes, recommended.cpu_limit, recommended.projected_throttle_ratio,
                 COLORS["recommended"])
        )  # fmt: skip
    body.append(
        f'<text x="{LEFT + axes.width / 2}" y="{HEIGHT - 6}" text-anchor="middle">CPU limit</text>'
    )
    return svg(
        "throttle-curve", body, "projected throttle ratio against the CPU limit",
        target=f"{target}",
    )  # fmt: skip


def _ratio_ticks(axes: Axes) -> list[str]:
    """The logarithmic ratio axis: a grid line and a label per power of ten."""
    body: list[str] = []
    for exponent in range(-4, 1):
        value = 10.0**exponent
        py = axes.y(value)
        body.append(
            f'<line x1="{LEFT}" y1="{py:.1f}" x2="{LEFT + axes.width}" y2="{py:.1f}" '
            f'stroke="{COLORS["grid"]}"/><text x="{LEFT - 6}" y="{py + 4:.1f}" '
            f'text-anchor="end">{_ratio(value).replace(".0%", "%")}</text>'
        )
    return body


def _burst_curve(
    axes: Axes, row: ReportRow, model: DemandModel, burst_us: int, demand_mean: float
) -> str:
    """The projected throttle ratio with the recommended burst, against the limit."""
    period = (row.stats.cpu.cfs_period_us if row.stats else None) or DEFAULT_PERIOD_US
    extra = burst_cores(burst_us, period)

    def with_burst(limit: float) -> float:
        return projected_throttle_ratio(model, round(limit), extra, demand_mean)

    return (
        f'<path class="projection-burst" d="{_curve_path(axes, with_burst)}" fill="none" '
        f'stroke="{COLORS["demand"]}" stroke-width="1.4" stroke-dasharray="2 3"/>'
    )


def _target_line(axes: Axes, target: float) -> str:
    ty = axes.y(target)
    return (
        f'<line class="target" x1="{LEFT}" y1="{ty:.1f}" x2="{LEFT + axes.width}" '
        f'y2="{ty:.1f}" stroke="{COLORS["target"]}" stroke-dasharray="6 4" stroke-width="1.4"/>'
        f'<text x="{LEFT + axes.width - 4}" y="{ty - 5:.1f}" text-anchor="end" '
        f'style="fill:{COLORS["target"]}">target {_ratio(target)}</text>'
    )


def _dot(axes: Axes, x: float, ratio: float, color: str) -> str:
    return (
        f'<circle cx="{axes.x(x):.1f}" cy="{axes.y(ratio):.1f}" r="4.5" fill="{color}" '
        'stroke="#fff" stroke-width="1.5"/>'
    )


def _strip(
    kind: str,
    label: str,
    x_max: float,
    *,
    bars: Sequence[tuple[str, float | None, str]],
    lines: Sequence[tuple[str, float | None, str, str]],
    tick_label: Callable[[float], str],
) -> str:
    """Horizontal bars (name, value, color) against vertical limit lines."""
    axes = Axes(max(x_max, 1.0), log_y=False, left=STRIP_LEFT)
    body = axes.x_ticks(tick_label)
    body.append(axes.frame())
    shown = [(n, v, c) for n, v, c in bars if v is not None]
    band = axes.height / max(len(shown), 1)
    for i, (name, value, color) in enumerate(shown):
        y = TOP + band * i + band * 0.22
        width = axes.x(value) - axes.left
        body.append(
            f'<rect class="bar" data-name="{escape(name)}" x="{axes.left}" y="{y:.1f}" '
            f'width="{width:.1f}" height="{band * 0.56:.1f}" fill="{color}" rx="2"/>'
            f'<text x="{axes.left - 6}" y="{y + band * 0.28 + 4:.1f}" text-anchor="end">'
            f'{escape(name)}</text><text x="{axes.left + width + 5:.1f}" '
            f'y="{y + band * 0.28 + 4:.1f}">{escape(tick_label(value))}</text>'
        )
    row = 0
    for css, at, color, text in lines:
        if at is not None:
            body.append(_vline(axes, at, css, color, text, row=row))
            row += 1
    return svg(kind, body, label)


def _usage_strip(row: ReportRow, evidence: Evidence) -> str:
    usage = row.stats.cpu.usage_cores if row.stats else None
    result = row.result
    recommended = result.cpu_limit if isinstance(result, Recommendation) else None
    bars = [
        ("usage p50", None if usage is None else usage.p50, COLORS["usage"]),
        ("usage p95", None if usage is None else usage.p95, COLORS["usage"]),
        ("usage p99", None if usage is None else usage.p99, COLORS["usage"]),
        ("usage max", None if usage is None else usage.max, COLORS["usage"]),
        ("demand mean", evidence.demand_mean, COLORS["demand"]),
        ("demand p99", evidence.demand_p99, COLORS["demand"]),
    ]
    values = [v for _, v, _ in bars if v is not None]
    values += [v for v in (row.container.cpu_limit, recommended) if v is not None]
    lines = [
        ("current-limit", row.container.cpu_limit, COLORS["current"], "limit now"),
        ("recommended-limit", recommended, COLORS["recommended"], "recommended"),
    ]
    return _strip(
        "usage", "CPU usage and demand", max(values) * 1.2, bars=bars, lines=lines, tick_label=_cpu
    )


def _memory_strip(row: ReportRow) -> str | None:
    memory = row.stats.memory if row.stats else None
    if memory is None:
        return None
    result = row.result
    recommended = result.memory_limit if isinstance(result, Recommendation) else None
    wss = memory.working_set_bytes.max if memory.working_set_bytes else None
    bars = [
        ("RSS p99", memory.rss_bytes.p99, COLORS["usage"]),
        ("RSS max", memory.rss_bytes.max, COLORS["usage"]),
        ("working set max", wss, "#7f8c9a"),
    ]
    values = [v for _, v, _ in bars if v is not None]
    values += [v for v in (row.container.memory_limit, recommended) if v is not None]
    lines = [
        ("current-limit", row.container.memory_limit, COLORS["current"], "limit now"),
        ("recommended-limit", recommended, COLORS["recommended"], "recommended"),
    ]
    return _strip(
        "memory", "memory against its limit", max(values) * 1.2, bars=bars, lines=lines,
        tick_label=lambda v: describe_bytes(round(v)),
    )  # fmt: skip


def _numbers(row: ReportRow) -> str:
    c, r = row.container, row.result
    rec = r if isinstance(r, Recommendation) else None
    observed = row.stats.cpu.throttled_period_ratio if row.stats else None
    lines = [
        ("throttled periods", _ratio(observed), None if rec is None else
         _ratio(rec.projected_throttle_ratio)),
        ("CPU request", _cpu(c.cpu_request), None if rec is None else _cpu(rec.cpu_request)),
        ("CPU limit", _cpu(c.cpu_limit), None if rec is None else _cpu(rec.cpu_limit)),
        ("CFS burst", "-" if not c.cpu_burst_us else f"{c.cpu_burst_us // 1000}ms",
         None if rec is None else (f"{rec.cpu_burst_us // 1000}ms" if rec.cpu_burst_us else "-")),
        ("memory limit", _memory(c.memory_limit), None if rec is None else
         _memory(rec.memory_limit)),
        ("workers", "-" if c.web_concurrency is None else str(c.web_concurrency),
         None if rec is None or rec.web_concurrency is None else str(rec.web_concurrency)),
    ]  # fmt: skip
    cells = "".join(
        f'<tr data-field="{escape(name)}"><td>{escape(name)}</td><td class="now">{escape(now)}'
        f'</td><td class="rec">{escape(after if after is not None else now)}</td></tr>'
        for name, now, after in lines
    )
    return (
        '<table class="numbers"><tr><th></th><th class="now">now</th>'
        f'<th class="rec">recommended</th></tr>{cells}</table>'
    )


def _distribution(stats: ContainerStats | None, evidence: Evidence) -> str:
    usage = stats.cpu.usage_cores if stats else None
    cells = []
    if usage is not None:
        cells += [("usage p50", usage.p50), ("usage p95", usage.p95), ("usage p99", usage.p99)]
        cells.append(("usage max", usage.max))
    cells += [("demand mean", evidence.demand_mean), ("demand p99", evidence.demand_p99)]
    rows = "".join(
        f'<tr data-stat="{escape(n)}"><td>{escape(n)}</td><td>{_cpu(v)}</td></tr>' for n, v in cells
    )
    fit = evidence.demand_model.fit if evidence.demand_model else "no model"
    return (
        f'<table class="numbers distribution">{rows}<tr><td>samples</td>'
        f"<td>{evidence.samples}</td></tr></table>"
        f'<p class="fit"><small>demand model: {escape(fit)}</small></p>'
    )


def _badges(row: ReportRow) -> str:
    bad = {"quota-bound", "micro-bursting", "worker-oversubscription", "oom-killed",
           "memory-growth", "capped"}  # fmt: skip
    badges = []
    for d in row.result.diagnosis:
        css = "bad" if d.value in bad else "good" if d.value == "healthy" else ""
        badges.append(f'<span class="badge {css}">{escape(d.value)}</span>')
    if isinstance(row.result, NoRecommendation):
        badges.append(f'<span class="badge bad">{escape(row.result.reason.value)}</span>')
    return "".join(badges)


def _section(index: int, row: ReportRow, target: float) -> str:
    result, evidence = row.result, row.result.evidence
    explanation = result.message if isinstance(result, NoRecommendation) else result.explanation
    head = (
        f'<div class="head"><h2>{escape(str(row.ref))} <small>· {escape(row.container.name)}'
        f'</small></h2><span class="badge">{escape(row.tier.value)}</span>{_badges(row)}</div>'
    )
    charts = ""
    if evidence is not None:
        memory = _memory_strip(row)
        charts = (
            '<div class="grid">'
            f"<div>{_numbers(row)}</div><div>{_distribution(row.stats, evidence)}</div>"
            f"<figure>{_throttle_curve(row, evidence, target)}<figcaption>Projected "
            "throttled-period ratio at each CPU limit: P(demand &gt; limit) from the demand "
            "model (dotted: with the recommended burst). Dots: the ratio observed now and "
            "the one projected at the recommendation.</figcaption></figure>"
            f"<figure>{_usage_strip(row, evidence)}<figcaption>Observed usage is capped at "
            "the limit; the demand behind it is what the quota turned away added back."
            "</figcaption></figure>"
        )
        if memory is not None:
            charts += f"<figure>{memory}<figcaption>Memory against its limit.</figcaption></figure>"
        charts += "</div>"
    else:
        charts = _numbers(row)
    return (
        f'<section class="container" id="c{index}" data-workload="{escape(str(row.ref))}" '
        f'data-container="{escape(row.container.name)}">{head}{charts}'
        f'<p class="explanation">{escape(explanation)}</p></section>'
    )


def _summary(rows: Sequence[ReportRow]) -> str:
    header = "".join(
        f"<th>{h}</th>"
        for h in ("workload", "container", "throttled", "CPU request", "CPU limit", "memory",
                  "diagnosis")
    )  # fmt: skip
    lines = []
    for index, row in enumerate(rows):
        c, r = row.container, row.result
        observed = _ratio(row.stats.cpu.throttled_period_ratio) if row.stats else "-"
        if isinstance(r, Recommendation):
            cells = [
                f"{observed} → {_ratio(r.projected_throttle_ratio)}",
                f"{_cpu(c.cpu_request)} → {_cpu(r.cpu_request)}",
                f"{_cpu(c.cpu_limit)} → {_cpu(r.cpu_limit)}",
                f"{_memory(c.memory_limit)} → {_memory(r.memory_limit)}",
                ", ".join(d.value for d in r.diagnosis),
            ]
        else:
            cells = [observed, _cpu(c.cpu_request), _cpu(c.cpu_limit), _memory(c.memory_limit),
                     r.reason.value]  # fmt: skip
        tds = "".join(f"<td>{escape(cell)}</td>" for cell in cells)
        lines.append(
            f'<tr><td><a href="#c{index}">{escape(str(row.ref))}</a></td>'
            f"<td>{escape(c.name)}</td>{tds}</tr>"
        )
    return f'<table class="summary"><tr>{header}</tr>{"".join(lines)}</table>'


def render_html_report(
    rows: Sequence[ReportRow], *, target: float, source: str = "", window: str = ""
) -> str:
    """The whole page: a summary table, then one section per container."""
    meta = f"{len(rows)} containers"
    if source:
        meta += f" · Prometheus {source}"
    if window:
        meta += f" · window {window}"
    meta += f" · throttle target {_ratio(target)}"
    sections = "".join(_section(i, row, target) for i, row in enumerate(rows))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>unthrottle report</title><style>{STYLE}</style></head><body>"
        f'<h1>unthrottle report</h1><p class="meta">{escape(meta)}</p>'
        f"{_summary(rows)}{sections}</body></html>\n"
    )
