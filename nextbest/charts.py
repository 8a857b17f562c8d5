"""Chart geometry for the dashboard's inline SVG: pure functions from numbers to coordinates.

The templates draw (nextbest/templates/_charts.html); this module only measures, so a chart is
testable without a browser and the page needs no charting script and no CDN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec

__all__ = ["Bar", "BarChart", "LineChart", "Series", "Tick", "bar_chart", "line_chart", "nice_max"]


class Tick(msgspec.Struct, frozen=True, kw_only=True):
    position: float  # x or y in the SVG's user units
    label: str


class Series(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    css: str  # a class the stylesheet colours
    points: str  # "x,y x,y ..." for <polyline points>
    dots: list[tuple[float, float, str]]  # (x, y, the value as a label)


class LineChart(msgspec.Struct, frozen=True, kw_only=True):
    width: int
    height: int
    left: int
    top: int
    bottom: float  # y of the x axis
    right: float  # x where the plot ends
    series: list[Series]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    empty: bool


class Bar(msgspec.Struct, frozen=True, kw_only=True):
    label: str
    value_label: str
    y: float
    width: float
    fraction: float  # the value over the largest, 0..1


class BarChart(msgspec.Struct, frozen=True, kw_only=True):
    width: int
    height: int
    label_width: int
    bar_height: int
    plot_width: int
    bars: list[Bar]
    empty: bool


def nice_max(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above ``value`` (1 for 0)."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        candidate = step * 10.0**exponent
        if candidate >= value - 1e-12:
            return candidate
    return 10.0 ** (exponent + 1)  # pragma: no cover - the loop always returns


def _number(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}".rstrip("0")


def line_chart(
    x_labels: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[float]]],
    *,
    width: int = 640,
    height: int = 220,
    max_x_labels: int = 8,
) -> LineChart:
    """Lines over shared x labels (days). ``series``: (name, css class, one value per label)."""
    left, top, right_pad, bottom_pad = 44, 12, 12, 28
    plot_w = width - left - right_pad
    plot_h = height - top - bottom_pad
    bottom = top + plot_h
    count = len(x_labels)
    peak = max((v for _, _, values in series for v in values), default=0.0)
    ceiling = nice_max(peak)

    def x_at(i: int) -> float:
        return round(left + (plot_w * i / (count - 1) if count > 1 else plot_w / 2), 1)

    def y_at(v: float) -> float:
        return round(bottom - plot_h * (v / ceiling), 1)

    drawn = []
    for name, css, values in series:
        dots = [(x_at(i), y_at(v), _number(v)) for i, v in enumerate(values)]
        drawn.append(
            Series(
                name=name,
                css=css,
                points=" ".join(f"{x},{y}" for x, y, _ in dots),
                dots=dots,
            )
        )
    y_ticks = [
        Tick(position=y_at(ceiling * k / 4), label=_number(ceiling * k / 4)) for k in range(5)
    ]
    stride = max(1, math.ceil(count / max_x_labels))
    x_ticks = [Tick(position=x_at(i), label=x_labels[i]) for i in range(0, count, stride)]
    return LineChart(
        width=width,
        height=height,
        left=left,
        top=top,
        bottom=bottom,
        right=left + plot_w,
        series=drawn,
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        empty=count == 0 or peak <= 0,
    )


def bar_chart(
    rows: Sequence[tuple[str, float, str]],
    *,
    width: int = 640,
    label_width: int = 210,
    bar_height: int = 22,
    gap: int = 6,
    value_width: int = 90,
) -> BarChart:
    """Horizontal bars, one per (label, value, value as shown), in the order given."""
    plot_width = width - label_width - value_width
    peak = max((value for _, value, _ in rows), default=0.0)
    bars = []
    for i, (label, value, shown) in enumerate(rows):
        fraction = value / peak if peak > 0 else 0.0
        bars.append(
            Bar(
                label=label,
                value_label=shown,
                y=i * (bar_height + gap),
                width=round(plot_width * fraction, 1),
                fraction=round(fraction, 4),
            )
        )
    height = max(bar_height, len(rows) * (bar_height + gap) - gap)
    return BarChart(
        width=width,
        height=height,
        label_width=label_width,
        bar_height=bar_height,
        plot_width=plot_width,
        bars=bars,
        empty=not rows,
    )
