"""Charts drawn on the server: one neutral description, rendered as SVG (and PNG) for the monthly bulletin.

The dashboard's browser charts (ECharts, web/static/src/dashboard.js) are built from the same
`Chart.as_dict()`, so a chart in the bulletin and on the screen show the same figures. The SVG is
written here by hand (no plotting library): axes with round ticks, line and bar series, an optional
dashed target line, a legend; Chinese labels use the Noto Sans CJK SC font. PNG is the SVG rasterised
by cairosvg when it is installed (`ChartUnavailable` otherwise).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape  # quote=True: safe in SVG text and in attribute values
from typing import Any

from engine.errors import EngineError

FONT = "'Noto Sans CJK SC','Noto Sans SC','Source Han Sans SC','PingFang SC','Microsoft YaHei',sans-serif"
PALETTE = ("#b4232a", "#1f6feb", "#1a7f37", "#bf8700", "#8250df", "#0a7ea4", "#e16f24", "#57606a")
KINDS = ("line", "bar")


class ChartUnavailable(EngineError):
    """The PNG renderer (cairosvg and the cairo library) is not installed."""

    code = "chart_unavailable"
    http_status = 501


@dataclass(frozen=True)
class Series:
    """One line or set of bars; None is a gap (no figure for that category)."""

    name: str
    values: tuple[float | None, ...]
    kind: str = "line"  # line | bar
    dashed: bool = False
    color: str | None = None
    stack: str | None = None  # bars with the same stack are drawn on top of each other


@dataclass(frozen=True)
class Chart:
    """A chart over categories (months, industries, stages) with series and an optional target line."""

    title: str
    categories: tuple[str, ...]
    series: tuple[Series, ...]
    unit: str = ""
    target: float | None = None
    target_label: str = ""
    subtitle: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form the browser's ECharts code reads (data-chart attribute or .json endpoint)."""
        return {"title": self.title, "subtitle": self.subtitle, "unit": self.unit,
                "categories": list(self.categories), "target": self.target, "target_label": self.target_label,
                "series": [{"name": s.name, "values": list(s.values), "kind": s.kind, "dashed": s.dashed,
                            "color": s.color or PALETTE[i % len(PALETTE)], "stack": s.stack}
                           for i, s in enumerate(self.series)]}


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Return round tick values (steps of 1, 2 or 5 × 10^k) covering [low, high], zero included."""
    low, high = min(low, 0.0), max(high, 0.0)
    if high - low < 1e-9:
        high = low + 1.0
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks, value = [], start
    while value < high + step * 0.999:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _fmt(value: float) -> str:
    if abs(value - round(value)) < 1e-9:
        return f"{round(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _text(x: float, y: float, content: str, *, size: int = 12, anchor: str = "middle", fill: str = "#1f2328",
          weight: str = "normal", rotate: float | None = None) -> str:
    transform = f' transform="rotate({rotate:.0f} {x:.1f} {y:.1f})"' if rotate else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{fill}" '
            f'font-weight="{weight}"{transform}>{escape(content)}</text>')


def render_svg(chart: Chart, *, width: int = 720, height: int = 360) -> str:
    """Draw the chart as a standalone SVG document (UTF-8 text)."""
    for s in chart.series:
        if s.kind not in KINDS:
            raise ValueError(f"unknown series kind {s.kind!r}")
    n = max(len(chart.categories), 1)
    rotate = n > 8 or (any(len(c) > 5 for c in chart.categories) and n > 4)
    subtitle = " · ".join(x for x in (chart.subtitle, f"单位：{chart.unit}" if chart.unit else "") if x)
    left, right, top = 64, 20, 58 + (14 if subtitle else 0)
    bottom = 80 if rotate else 40
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for s in chart.series for v in s.values if v is not None]
    stacks: dict[tuple[str, int], float] = {}
    for s in chart.series:
        if s.kind == "bar" and s.stack:
            for i, v in enumerate(s.values):
                stacks[(s.stack, i)] = stacks.get((s.stack, i), 0.0) + (v or 0.0)
    values += list(stacks.values())
    if chart.target is not None:
        values.append(chart.target)
    ticks = nice_ticks(min(values, default=0.0), max(values, default=1.0))
    y_min, y_max = ticks[0], ticks[-1]

    def y_of(value: float) -> float:
        return top + plot_h - (value - y_min) / (y_max - y_min) * plot_h

    slot = plot_w / n

    def x_of(index: int) -> float:
        return left + slot * (index + 0.5)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="{escape(FONT)}" role="img" '
             f'aria-label="{escape(chart.title)}">',
             f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
             _text(left, 22, chart.title, size=15, anchor="start", weight="bold")]
    if subtitle:  # the unit rides on the subtitle line, clear of the legend
        parts.append(_text(left, 38, subtitle, size=11, anchor="start", fill="#656d76"))
    # legend
    lx = left
    ly = top - 16
    for i, s in enumerate(chart.series):
        color = s.color or PALETTE[i % len(PALETTE)]
        if s.kind == "bar":
            parts.append(f'<rect x="{lx:.1f}" y="{ly - 8:.1f}" width="12" height="9" fill="{color}"/>')
        else:
            dash = ' stroke-dasharray="4 3"' if s.dashed else ""
            parts.append(f'<line x1="{lx:.1f}" y1="{ly - 4:.1f}" x2="{lx + 14:.1f}" y2="{ly - 4:.1f}" '
                         f'stroke="{color}" stroke-width="2"{dash}/>')
        parts.append(_text(lx + 18, ly, s.name, size=11, anchor="start"))
        lx += 30 + 12 * len(s.name)
    # axes and grid
    for tick in ticks:
        y = y_of(tick)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#d0d7de" '
                     f'stroke-width="{1 if tick == 0 else 0.5}"/>')
        parts.append(_text(left - 6, y + 4, _fmt(tick), size=11, anchor="end", fill="#656d76"))
    for i, category in enumerate(chart.categories):
        x = x_of(i)
        if rotate:
            parts.append(_text(x, top + plot_h + 14, category, size=11, anchor="end", fill="#424a53", rotate=-35))
        else:
            parts.append(_text(x, top + plot_h + 18, category, size=11, fill="#424a53"))
    # bars: one slot per category, split among the bar groups (a stack is one group)
    groups: list[str] = []
    for i, s in enumerate(chart.series):
        if s.kind == "bar":
            key = s.stack or f"#{i}"
            if key not in groups:
                groups.append(key)
    bar_w = slot * 0.7 / max(len(groups), 1)
    base: dict[tuple[str, int], float] = {}
    for i, s in enumerate(chart.series):
        if s.kind != "bar":
            continue
        color = s.color or PALETTE[i % len(PALETTE)]
        group = s.stack or f"#{i}"
        offset = groups.index(group)
        for j, v in enumerate(s.values):
            if v is None:
                continue
            start = base.get((group, j), 0.0)
            y0, y1 = y_of(start), y_of(start + v)
            x = x_of(j) - slot * 0.35 + offset * bar_w
            parts.append(f'<rect x="{x:.1f}" y="{min(y0, y1):.1f}" width="{max(bar_w - 2, 1):.1f}" '
                         f'height="{abs(y0 - y1):.1f}" fill="{color}"><title>{escape(s.name)} '
                         f'{escape(chart.categories[j] if j < len(chart.categories) else "")}: {_fmt(v)}</title></rect>')
            if s.stack:
                base[(group, j)] = start + v
    # lines over the bars
    for i, s in enumerate(chart.series):
        if s.kind != "line":
            continue
        color = s.color or PALETTE[i % len(PALETTE)]
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        run: list[str] = []
        for j, v in enumerate(s.values):
            if v is None:
                if len(run) > 1:
                    parts.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{color}" '
                                 f'stroke-width="2"{dash}/>')
                run = []
                continue
            run.append(f"{x_of(j):.1f},{y_of(v):.1f}")
            parts.append(f'<circle cx="{x_of(j):.1f}" cy="{y_of(v):.1f}" r="3" fill="{color}"><title>'
                         f'{escape(s.name)} {escape(chart.categories[j] if j < len(chart.categories) else "")}: '
                         f'{_fmt(v)}</title></circle>')
        if len(run) > 1:
            parts.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
    if chart.target is not None:
        y = y_of(chart.target)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#cf222e" '
                     f'stroke-width="1.5" stroke-dasharray="8 4"/>')
        label = chart.target_label or _fmt(chart.target)
        parts.append(_text(left + plot_w - 2, y - 5, label, size=11, anchor="end", fill="#cf222e"))
    parts.append("</svg>")
    return "\n".join(parts)


def render_png(chart: Chart, *, width: int = 720, height: int = 360, scale: float = 2.0) -> bytes:
    """Rasterise the chart's SVG to PNG (twice the size by default, for print).

    Raises: ChartUnavailable
    """
    try:
        import cairosvg  # type: ignore[import-untyped, unused-ignore]
    except (ImportError, OSError) as exc:  # OSError: the cairo C library is missing
        raise ChartUnavailable(f"PNG 图表需要 cairosvg (charts as PNG need cairosvg): {exc}") from None
    png: bytes = cairosvg.svg2png(bytestring=render_svg(chart, width=width, height=height).encode("utf-8"),
                                  scale=scale)
    return png


__all__ = ["Chart", "ChartUnavailable", "Series", "nice_ticks", "render_png", "render_svg"]
