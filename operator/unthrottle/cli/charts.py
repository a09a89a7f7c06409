"""Inline SVG chart primitives shared by the HTML pages the CLI writes.

Pure: numbers in, SVG markup out. Axes map a linear x (a quantity, or a time in seconds)
and a linear or logarithmic y into SVG coordinates; the helpers draw ticks, the frame, a
polyline and the ``<svg>`` element. The report (:mod:`unthrottle.cli.html_report`) and the
dashboard preview (:mod:`unthrottle.cli.dashboard_preview`) draw with them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from html import escape

__all__ = [
    "AXIS",
    "BOTTOM",
    "GRID",
    "HEIGHT",
    "LEFT",
    "RIGHT",
    "TOP",
    "WIDTH",
    "Axes",
    "line_path",
    "nice_step",
    "svg",
]

WIDTH, HEIGHT = 560, 230
LEFT, RIGHT, TOP, BOTTOM = 58, 18, 14, 40
GRID, AXIS = "#e3e6ea", "#5d6670"


def nice_step(span: float, ticks: int = 5) -> float:
    """A round tick step (1, 2, 2.5 or 5 times a power of ten) giving about ``ticks`` ticks."""
    raw = span / ticks
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * magnitude >= raw)


class Axes:
    """A linear x over [x_min, x_max] and a y over [0, y_max] (or log down to log_floor)."""

    def __init__(
        self,
        x_max: float,
        log_y: bool,
        left: int = LEFT,
        *,
        x_min: float = 0.0,
        y_max: float = 1.0,
        log_floor: float = 1e-4,
        size: tuple[int, int] = (WIDTH, HEIGHT),
    ) -> None:
        self.x_min, self.x_max, self.log_y, self.left = x_min, x_max, log_y, left
        self.y_max, self.log_floor, self.size = y_max, log_floor, size
        self.width, self.height = size[0] - left - RIGHT, size[1] - TOP - BOTTOM

    def x(self, value: float) -> float:
        span = self.x_max - self.x_min
        clamped = min(max(value, self.x_min), self.x_max)
        return self.left + self.width * (clamped - self.x_min) / span

    def y(self, value: float) -> float:
        if self.log_y:
            low = math.log10(self.log_floor)
            share = (math.log10(max(value, self.log_floor)) - low) / -low
        else:
            share = value / self.y_max
        return TOP + self.height * (1.0 - min(max(share, 0.0), 1.0))

    def x_ticks(self, label: Callable[[float], str], step: float | None = None) -> list[str]:
        step = step or nice_step(self.x_max - self.x_min)
        parts, tick = [], math.ceil(self.x_min / step - 1e-9) * step
        while tick <= self.x_max + 1e-9:
            px = self.x(tick)
            parts.append(
                f'<line x1="{px:.1f}" y1="{TOP}" x2="{px:.1f}" y2="{TOP + self.height}" '
                f'stroke="{GRID}"/><text x="{px:.1f}" y="{TOP + self.height + 14}" '
                f'text-anchor="middle">{escape(label(tick))}</text>'
            )
            tick += step
        return parts

    def y_ticks(self, label: Callable[[float], str]) -> list[str]:
        """Horizontal grid lines at round values of a linear y, labelled on the left."""
        step, parts, tick = nice_step(self.y_max, 4), [], 0.0
        while tick <= self.y_max + 1e-9:
            py = self.y(tick)
            parts.append(
                f'<line x1="{self.left}" y1="{py:.1f}" x2="{self.left + self.width}" '
                f'y2="{py:.1f}" stroke="{GRID}"/><text x="{self.left - 6}" y="{py + 4:.1f}" '
                f'text-anchor="end">{escape(label(tick))}</text>'
            )
            tick += step
        return parts

    def frame(self) -> str:
        return (
            f'<rect x="{self.left}" y="{TOP}" width="{self.width}" height="{self.height}" '
            f'fill="none" stroke="{AXIS}" stroke-width="0.8"/>'
        )


def line_path(axes: Axes, points: Iterable[tuple[float, float]]) -> str:
    """An SVG path ``d`` through (x, y) data points, in order."""
    return "M" + " L".join(f"{axes.x(x):.1f},{axes.y(y):.1f}" for x, y in points)


def svg(
    kind: str, body: Sequence[str], label: str, *, size: tuple[int, int] = (WIDTH, HEIGHT),
    **data: str,
) -> str:  # fmt: skip
    attributes = "".join(f' data-{k.replace("_", "-")}="{escape(v)}"' for k, v in data.items())
    width, height = size
    return (
        f'<svg class="{kind}" role="img" aria-label="{escape(label)}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}"{attributes}>' + "".join(body) + "</svg>"
    )
