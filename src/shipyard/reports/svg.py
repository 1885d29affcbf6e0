"""Small static SVG charts for self-contained HTML pages: line, bar and labelled-bar charts.

shipyard draws its report plots itself instead of embedding a plotting library: a chart is
a few kilobytes of SVG drawn from aggregates (never one mark per data row), so a page stays
small and opens offline.

No plotting library and no script: each function returns one ``<svg>`` element as text,
with axes, ticks, tick labels, a legend and a native tooltip (``<title>``) on every marker
and bar. Every piece of text that reaches the markup goes through :func:`html.escape`, so a
column named ``<script>`` is drawn as text.

- :func:`line_chart`: one or more :class:`Series` (a line with markers; an optional band
  from ``lower`` to ``upper``; one marker colour per point), horizontal reference lines
  (:class:`Rule`, dashed) and an optional ``y = x`` diagonal. A non-finite value breaks the
  line instead of being drawn.
- :func:`reliability_chart`: a calibration diagram: observed against predicted on the unit
  square, with the ``y = x`` diagonal.
- :func:`bar_chart`: grouped bars, one group per category, one bar per series.
- :func:`hbar_chart`: one labelled horizontal bar per item (a ranking: importance, the worst
  perturbations), its value written beside it; negative values extend left of zero.

>>> svg = line_chart([Series("psi", [0, 1, 2], [0.01, 0.3, float("nan")])],
...                  rules=[Rule(0.2, "alert", "#c62828")], x_format=str)
>>> svg.count("<circle"), svg.count('stroke-dasharray="5 3"')
(2, 1)
>>> nice_ticks(0.0, 0.93)
[0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

__all__ = [
    "Rule",
    "Series",
    "bar_chart",
    "hbar_chart",
    "line_chart",
    "nice_ticks",
    "reliability_chart",
    "short_number",
]

WIDTH, HEIGHT = 340, 190
# margins around the plot area, in px (the right one holds a rule's label: "overall")
LEFT, RIGHT, TOP, BOTTOM = 46, 42, 24, 30
FONT = 'font-family="system-ui, sans-serif" font-size="10"'
AXIS, GRID, INK = "#555", "#e4e4e4", "#222"


@dataclass(frozen=True)
class Series:
    """One line: points ``(x[i], y[i])``, an optional band, per-point marker colours and
    tooltips (plain text)."""

    name: str
    x: Sequence[float]
    y: Sequence[float]
    lower: Sequence[float] | None = None
    upper: Sequence[float] | None = None
    color: str = "#1f4e79"
    marker_colors: Sequence[str] | None = None
    tips: Sequence[str] | None = None
    dashed: bool = False


@dataclass(frozen=True)
class Rule:
    """A horizontal reference line at ``y`` (a threshold), dashed and labelled."""

    y: float
    label: str
    color: str = "#888"


def short_number(value: float) -> str:
    """A tick label: at most three significant digits, no trailing zeros.

    >>> short_number(0.30000000000000004), short_number(12500.0), short_number(2e-05)
    ('0.3', '12.5k', '2e-05')
    >>> short_number(3_000_000.0), short_number(-250.0)
    ('3M', '-250')
    """
    if value == 0:
        return "0"
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round ticks (1, 2 or 5 times a power of ten apart) covering
    ``[low, high]``."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high <= low:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step + 1e-9) * step
    ticks = []
    value = first
    while value < high + step * 0.999:
        ticks.append(round(value, 12) + 0.0)
        value += step
    return ticks


def _finite(values: Sequence[float] | None) -> list[float]:
    return [float(v) for v in values or () if v is not None and math.isfinite(v)]


def _ok(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


class _Frame:
    """The mapping from data to pixels of one chart, and its axes."""

    def __init__(
        self,
        x_range: tuple[float, float],
        y_ticks: list[float],
        width: int,
        height: int,
    ) -> None:
        self.x0, self.x1 = x_range
        if self.x1 <= self.x0:
            self.x0, self.x1 = self.x0 - 1.0, self.x1 + 1.0
        self.y_ticks = y_ticks
        self.y0, self.y1 = y_ticks[0], y_ticks[-1]
        self.width, self.height = width, height
        self.plot_w = width - LEFT - RIGHT
        self.plot_h = height - TOP - BOTTOM

    def px(self, x: float) -> float:
        return LEFT + (x - self.x0) / (self.x1 - self.x0) * self.plot_w

    def py(self, y: float) -> float:
        y = min(max(y, self.y0), self.y1)
        return TOP + self.plot_h - (y - self.y0) / (self.y1 - self.y0) * self.plot_h

    def axes(
        self, x_ticks: Sequence[tuple[float, str]], y_label: str, y_format: Callable[[float], str]
    ) -> list[str]:
        out = []
        bottom = TOP + self.plot_h
        for tick in self.y_ticks:
            y = self.py(tick)
            out.append(
                f'<line x1="{LEFT}" x2="{LEFT + self.plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
                f'stroke="{GRID}"/>'
                f'<text x="{LEFT - 4}" y="{y + 3:.1f}" text-anchor="end" fill="{AXIS}">'
                f"{escape(y_format(tick))}</text>"
            )
        for x, label in x_ticks:
            px = self.px(x)
            out.append(
                f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{bottom}" y2="{bottom + 4}" '
                f'stroke="{AXIS}"/>'
                f'<text x="{px:.1f}" y="{bottom + 15}" text-anchor="middle" fill="{AXIS}">'
                f"{escape(label)}</text>"
            )
        out.append(
            f'<path d="M{LEFT},{TOP} V{bottom} H{LEFT + self.plot_w}" fill="none" stroke="{AXIS}"/>'
        )
        if y_label:
            out.append(
                f'<text x="10" y="{TOP + self.plot_h / 2:.1f}" fill="{AXIS}" '
                f'text-anchor="middle" transform="rotate(-90 10 {TOP + self.plot_h / 2:.1f})">'
                f"{escape(y_label)}</text>"
            )
        return out


def _svg(width: int, height: int, label: str, parts: list[str]) -> str:
    return (
        f'<svg class="chart" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}" {FONT}>' + "".join(parts) + "</svg>"
    )


def _legend(entries: Sequence[tuple[str, str, bool]], width: int) -> list[str]:
    """Legend entries (name, colour, dashed) in the top margin, right-aligned."""
    out, x = [], float(width - RIGHT)
    for name, color, dashed in reversed(entries):
        text_w = 6.0 * len(name) + 4
        x -= text_w
        out.append(f'<text x="{x:.1f}" y="12" fill="{INK}">{escape(name)}</text>')
        x -= 16
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        out.append(
            f'<line x1="{x:.1f}" x2="{x + 13:.1f}" y1="9" y2="9" stroke="{color}" '
            f'stroke-width="2"{dash}/>'
        )
        x -= 8
    return out


def _runs(points: list[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    """Consecutive runs of finite points (a non-finite value breaks the line)."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in points:
        if y is not None and _ok(y):
            runs[-1].append((x, y))
        elif runs[-1]:
            runs.append([])
    return [r for r in runs if r]


def _draw_series(frame: _Frame, s: Series) -> list[str]:
    out = []
    if s.lower is not None and s.upper is not None:
        pairs = [
            (x, (lo, hi))
            for x, lo, hi in zip(s.x, s.lower, s.upper, strict=True)
            if _ok(lo) and _ok(hi)
        ]
        if len(pairs) == 1:  # one window: its interval as an error bar
            x, (lo, hi) = pairs[0]
            out.append(
                f'<line x1="{frame.px(x):.1f}" x2="{frame.px(x):.1f}" y1="{frame.py(lo):.1f}" '
                f'y2="{frame.py(hi):.1f}" stroke="{s.color}" stroke-width="6" '
                'stroke-opacity="0.2"/>'
            )
        elif pairs:
            top = " ".join(f"{frame.px(x):.1f},{frame.py(hi):.1f}" for x, (_, hi) in pairs)
            low = " ".join(
                f"{frame.px(x):.1f},{frame.py(lo):.1f}" for x, (lo, _) in reversed(pairs)
            )
            out.append(
                f'<polygon points="{top} {low}" fill="{s.color}" fill-opacity="0.15" '
                'stroke="none"/>'
            )
    dash = ' stroke-dasharray="5 3"' if s.dashed else ""
    for run in _runs(list(zip(s.x, s.y, strict=True))):
        path = " ".join(f"{frame.px(x):.1f},{frame.py(y):.1f}" for x, y in run)
        out.append(
            f'<polyline points="{path}" fill="none" stroke="{s.color}" stroke-width="1.6"{dash}/>'
        )
    radius = 3.2 if len(s.y) <= 20 else 2.4
    for i, (x, y) in enumerate(zip(s.x, s.y, strict=True)):
        if not _ok(y):
            continue
        fill = s.marker_colors[i] if s.marker_colors is not None else s.color
        tip = f"<title>{escape(s.tips[i])}</title>" if s.tips is not None else ""
        out.append(
            f'<circle cx="{frame.px(x):.1f}" cy="{frame.py(y):.1f}" r="{radius}" fill="{fill}" '
            f'stroke="{s.color}" stroke-width="1">{tip}</circle>'
        )
    return out


def line_chart(
    series: Sequence[Series],
    *,
    x_format: Callable[[float], str],
    rules: Sequence[Rule] = (),
    x_ticks: Sequence[float] | None = None,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    y_label: str = "",
    y_format: Callable[[float], str] = short_number,
    diagonal: bool = False,
    label: str = "line chart",
    width: int = WIDTH,
    height: int = HEIGHT,
    legend: bool = True,
) -> str:
    """An SVG line chart of ``series`` with dashed ``rules`` (a legend of the series when
    there are several, unless ``legend`` is False).

    ``x_ticks`` are the x values to label (``x_format`` writes them; by default round
    ticks over the data); the y axis covers the data, its bands and the rules (or
    ``y_range``) with round ticks. ``diagonal`` draws ``y = x`` (a calibration plot)."""
    xs = [x for s in series for x in _finite(s.x)]
    x_lo, x_hi = x_range or ((min(xs), max(xs)) if xs else (0.0, 1.0))
    if y_range is not None:
        y_lo, y_hi = y_range
    else:
        ys = [v for s in series for v in _finite(s.y) + _finite(s.lower) + _finite(s.upper)]
        ys += [r.y for r in rules if _ok(r.y)]
        y_lo, y_hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
    frame = _Frame((x_lo, x_hi), nice_ticks(y_lo, y_hi), width, height)
    if x_ticks is None:
        x_ticks = [t for t in nice_ticks(frame.x0, frame.x1) if frame.x0 <= t <= frame.x1]
    parts = frame.axes([(t, x_format(t)) for t in x_ticks], y_label, y_format)
    if diagonal:
        lo, hi = max(frame.x0, frame.y0), min(frame.x1, frame.y1)
        parts.append(
            f'<line x1="{frame.px(lo):.1f}" y1="{frame.py(lo):.1f}" x2="{frame.px(hi):.1f}" '
            f'y2="{frame.py(hi):.1f}" stroke="#999" stroke-dasharray="2 3"/>'
        )
    for rule in rules:
        if not (_ok(rule.y) and frame.y0 <= rule.y <= frame.y1):
            continue
        y = frame.py(rule.y)
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + frame.plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{rule.color}" stroke-dasharray="5 3"/>'
            f'<text x="{LEFT + frame.plot_w + 3}" y="{y + 3:.1f}" fill="{rule.color}">'
            f"{escape(rule.label)}</text>"
        )
    for s in series:
        parts += _draw_series(frame, s)
    if legend and (len(series) > 1 or (series and series[0].name and rules)):
        parts += _legend([(s.name, s.color, s.dashed) for s in series], width)
    return _svg(width, height, label, parts)


def reliability_chart(series: Sequence[Series], label: str = "calibration diagram") -> str:
    """Observed (y) against mean predicted (x) per bin, both from 0 to 1, and the diagonal
    a calibrated model follows."""
    return line_chart(
        series,
        x_format=lambda x: f"{x:.1f}",
        x_range=(0.0, 1.0),
        y_range=(0.0, 1.0),
        diagonal=True,
        y_label="observed",
        label=label,
    )


def bar_chart(
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    y_label: str = "",
    y_format: Callable[[float], str] = short_number,
    label: str = "bar chart",
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """Grouped bars: for each category ``i``, one bar of height ``s.y[i]`` per series
    (``s.x`` is ignored; a non-finite value draws no bar). The y axis starts at zero."""
    values = [v for s in series for v in _finite(s.y)]
    top = max(values) if values else 1.0
    frame = _Frame(
        (0.0, float(max(len(categories), 1))), nice_ticks(0.0, top or 1.0), width, height
    )
    every = max(1, math.ceil(len(categories) / 6))  # at most ~6 labelled categories
    ticks = [(i + 0.5, c) for i, c in enumerate(categories) if i % every == 0]
    parts = frame.axes(ticks, y_label, y_format)
    slot = frame.plot_w / max(len(categories), 1)
    bar = slot * 0.8 / max(len(series), 1)
    for j, s in enumerate(series):
        for i, value in enumerate(s.y):
            if not _ok(value):
                continue
            x = LEFT + i * slot + slot * 0.1 + j * bar
            y = frame.py(value)
            tip = f"<title>{escape(s.tips[i])}</title>" if s.tips is not None else ""
            fill = s.marker_colors[i] if s.marker_colors is not None else s.color
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(bar - 1, 1):.1f}" '
                f'height="{TOP + frame.plot_h - y:.1f}" fill="{fill}">{tip}</rect>'
            )
    if len(series) > 1:
        parts += _legend([(s.name, s.color, False) for s in series], width)
    return _svg(width, height, label, parts)


def hbar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    colors: Sequence[str] | None = None,
    tips: Sequence[str] | None = None,
    value_format: Callable[[float], str] = short_number,
    label: str = "bar chart",
    width: int = 560,
    bar_height: int = 16,
) -> str:
    """One horizontal bar per label, in the order given, the value written at its end; a
    non-finite value draws no bar (its value reads ``–``).

    >>> svg = hbar_chart(["a", "<b>"], [2.0, -1.0])
    >>> svg.count("<rect"), "&lt;b&gt;" in svg
    (2, True)
    """
    label_w = min(220, 12 + 6 * max((len(t) for t in labels), default=1))
    plot_w = width - label_w - 56
    height = TOP // 2 + bar_height * len(labels) + 8
    shown = _finite(values)
    low, high = min([0.0, *shown]), max([0.0, *shown])
    span = (high - low) or 1.0
    zero = label_w + (0.0 - low) / span * plot_w
    parts = [
        f'<line x1="{zero:.1f}" x2="{zero:.1f}" y1="{TOP // 2 - 2}" y2="{height - 6}" '
        f'stroke="{AXIS}"/>'
    ]
    for i, (name, value) in enumerate(zip(labels, values, strict=True)):
        y = TOP // 2 + i * bar_height
        text = name if len(name) <= 34 else name[:33] + "…"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + bar_height * 0.7:.1f}" text-anchor="end" '
            f'fill="{INK}">{escape(text)}</text>'
        )
        if not _ok(value):
            parts.append(
                f'<text x="{zero + 4:.1f}" y="{y + bar_height * 0.7:.1f}" fill="{AXIS}">–</text>'
            )
            continue
        end = label_w + (value - low) / span * plot_w
        x, w = min(zero, end), max(abs(end - zero), 1.0)
        fill = colors[i] if colors is not None else "#1f4e79"
        tip = f"<title>{escape(tips[i])}</title>" if tips is not None else ""
        parts.append(
            f'<rect x="{x:.1f}" y="{y + 2}" width="{w:.1f}" height="{bar_height - 4}" '
            f'fill="{fill}">{tip}</rect>'
            f'<text x="{max(zero, end) + 4:.1f}" y="{y + bar_height * 0.7:.1f}" '
            f'fill="{AXIS}">{escape(value_format(value))}</text>'
        )
    return _svg(width, height, label, parts)
