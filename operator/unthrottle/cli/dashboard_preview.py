"""A preview of the Grafana dashboard: its panels drawn from its own queries' results.

Pure: the dashboard JSON, the chosen variable values and each target's range-query result
(Prometheus' ``matrix``) in, one self-contained HTML page out (inline CSS and SVG, no
scripts). Panels come in the dashboard's grid order and width; a timeseries panel is a line
chart of its series, named by the target's ``legendFormat``, with the annotation times as
dashed lines; a stat panel lists its series' names and last values, as ``textMode: name``
shows them. The page says it was rendered by unthrottle, not by Grafana.
:func:`grafana_expr` substitutes the variables into a query as Grafana does.
docs/observability.md shows a screenshot.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from unthrottle.cli.charts import BOTTOM, TOP, Axes, line_path, nice_step, svg

__all__ = ["CAPTION", "grafana_expr", "render_dashboard_preview"]

CAPTION = "Panels rendered by unthrottle from the dashboard's queries, not by Grafana."
# Grafana's grid is 24 columns wide and counts height in rows of 30 px.
COLUMN_PX, ROW_PX = 50, 30
# Grafana's classic palette, in its order.
PALETTE = ("#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9",
           "#705da0", "#508642", "#cca300")  # fmt: skip
TIME_STEPS = (300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
STYLE = """
body { font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #1f2328; background: #f4f5f7; margin: 16px auto; width: 1200px; }
h1 { font-size: 19px; margin: 0 0 6px; }
.variables span { background: #fff; border: 1px solid #d8dde3; border-radius: 4px;
  padding: 2px 8px; margin-right: 8px; } .variables b { color: #59636e; font-weight: 500; }
.caption { color: #8c2a1e; margin: 8px 0 12px; }
.grid { display: grid; grid-template-columns: repeat(24, 1fr); gap: 8px; }
.panel { background: #fff; border: 1px solid #d8dde3; border-radius: 4px; padding: 6px 8px; }
.panel h2 { font-size: 13.5px; margin: 0 0 4px; }
.legend { font-size: 12px; } .legend span { margin-right: 12px; white-space: nowrap; }
.legend i { display: inline-block; width: 14px; height: 3px; margin: 0 5px 3px 0; }
.stat { display: inline-block; color: #fff; border-radius: 3px; padding: 10px 16px;
  margin: 4px; font-size: 18px; font-weight: 600; }
svg text { font: 11px system-ui, sans-serif; fill: #5d6670; }
"""

Matrix = Sequence[Mapping[str, Any]]
Line = tuple[str, list[tuple[float, float]]]  # a legend and its (t, value) points


def grafana_expr(expr: str, variables: Mapping[str, str], rate_interval: str = "5m") -> str:
    """``expr`` with ``$__rate_interval`` and ``$name``/``${name}`` replaced as Grafana does."""
    expr = expr.replace("$__rate_interval", rate_interval)
    return re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m[1], m[0]), expr)


def _legend(legend_format: str, metric: Mapping[str, str]) -> str:
    if not legend_format:
        return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items())) + "}"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m[1], ""), legend_format).strip()


def _unit_format(unit: str, y_max: float) -> Any:
    if unit == "percentunit":
        digits = 0 if y_max >= 0.05 else 1 if y_max >= 0.005 else 2
        return lambda v: f"{v:.{digits}%}"
    return lambda v: f"{v:.3g}"


def _clock(seconds: float) -> str:
    return time.strftime("%H:%M", time.gmtime(seconds))


def _lines(panel: Mapping[str, Any], results: Mapping[str, Matrix]) -> list[Line]:
    """(legend, [(t, value), ...]) per series of every target, NaN samples left out."""
    lines = []
    for target in panel.get("targets", []):
        for series in results.get(target["refId"], []):
            points = [(float(t), float(v)) for t, v in series["values"]]
            points = [(t, v) for t, v in points if math.isfinite(v)]
            lines.append((_legend(target.get("legendFormat", ""), series["metric"]), points))
    return lines


def _timeseries(
    panel: Mapping[str, Any], results: Mapping[str, Matrix], span: tuple[float, float],
    annotations: Sequence[float],
) -> str:  # fmt: skip
    grid = panel["gridPos"]
    size = (grid["w"] * COLUMN_PX - 26, grid["h"] * ROW_PX - 44)
    lines = _lines(panel, results)
    peak = max((v for _, points in lines for _, v in points), default=0.0)
    # The axis ends at the first round value at or above the peak, as Grafana's does.
    y_max = math.ceil(peak / nice_step(peak, 4) - 1e-9) * nice_step(peak, 4) if peak > 0 else 1.0
    axes = Axes(span[1], log_y=False, x_min=span[0], y_max=y_max, size=size)
    step = next((s for s in TIME_STEPS if (span[1] - span[0]) / s <= 7), TIME_STEPS[-1])
    body = axes.x_ticks(_clock, step)
    body += axes.y_ticks(_unit_format(panel["fieldConfig"]["defaults"].get("unit", ""), y_max))
    body.append(axes.frame())
    for at in annotations:
        px = axes.x(at)
        body.append(
            f'<line class="annotation" x1="{px:.1f}" y1="{TOP}" x2="{px:.1f}" '
            f'y2="{size[1] - BOTTOM}" stroke="#1e8449" stroke-dasharray="4 3"/>'
        )
    legend = []
    for i, (name, points) in enumerate(lines):
        color = PALETTE[i % len(PALETTE)]
        body.append(
            f'<path class="series" data-legend="{escape(name)}" d="{line_path(axes, points)}" '
            f'fill="none" stroke="{color}" stroke-width="1.6"/>'
        )
        legend.append(f'<span><i style="background:{color}"></i>{escape(name)}</span>')
    chart = svg("timeseries", body, panel["title"], size=size, series=str(len(lines)))
    return f'{chart}<div class="legend">{"".join(legend)}</div>'


def _stat(panel: Mapping[str, Any], results: Mapping[str, Matrix]) -> str:
    """Each series' name on its colour, for the series with a last non-null value."""
    tiles = []
    for i, (name, points) in enumerate(_lines(panel, results)):
        if points:
            color = PALETTE[i % len(PALETTE)]
            tiles.append(
                f'<span class="stat" data-legend="{escape(name)}" '
                f'data-value="{points[-1][1]:g}" style="background:{color}">{escape(name)}</span>'
            )
    return "".join(tiles) or "<p>No data</p>"


def render_dashboard_preview(
    dashboard: Mapping[str, Any],
    variables: Mapping[str, str],
    results: Mapping[str, Mapping[str, Matrix]],
    span: tuple[float, float],
    *,
    annotations: Sequence[float] = (),
) -> str:
    """The page: title, variables, caption, then the panels in grid order.

    ``results`` maps a panel's title to its targets' results by ``refId``; ``span`` is the
    queried range in Unix seconds; ``annotations`` are annotation times in Unix seconds.
    """
    panels = sorted(dashboard["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))
    rows = {y: i + 1 for i, y in enumerate(sorted({p["gridPos"]["y"] for p in panels}))}
    parts = []
    for panel in panels:
        grid, kind = panel["gridPos"], panel["type"]
        answers = results.get(panel["title"], {})
        if kind == "timeseries":
            inner = _timeseries(panel, answers, span, annotations)
        elif kind == "stat":
            inner = _stat(panel, answers)
        else:
            inner = f"<p>{escape(kind)} panel: not drawn here</p>"
        parts.append(
            f'<section class="panel" data-type="{escape(kind)}" '
            f'data-title="{escape(panel["title"])}" style="grid-column: {grid["x"] + 1} / span '
            f'{grid["w"]}; grid-row: {rows[grid["y"]]}"><h2>{escape(panel["title"])}</h2>'
            f"{inner}</section>"
        )
    all_values = {v["name"]: v.get("allValue") for v in dashboard["templating"]["list"]}
    chosen = "".join(
        f"<span><b>{escape(name)}</b> {'All' if value == all_values.get(name) else escape(value)}"
        "</span>"
        for name, value in variables.items()
    )
    window = f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(span[0]))} to {_clock(span[1])} UTC"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(dashboard['title'])} (preview)</title><style>{STYLE}</style></head>"
        f"<body><h1>{escape(dashboard['title'])}</h1>"
        f'<p class="variables">{chosen}<span><b>time</b> {escape(window)}</span></p>'
        f'<p class="caption">{escape(CAPTION)}</p><div class="grid">{"".join(parts)}</div>'
        "</body></html>\n"
    )
