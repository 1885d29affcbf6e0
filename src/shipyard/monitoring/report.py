"""The monitoring report: one self-contained HTML page drawn from the results table.

:func:`write_report` turns the rows ``shipyard monitor`` keeps (one per window, arm,
statistic and column; the shared results table) into a page that opens with no network: the
CSS, the SVG charts (drawn by :mod:`shipyard.monitoring.svg`) and a few lines of script
(sortable tables) are all inline, and nothing is fetched. Every string that comes from data or
``meta`` (column names, notes, messages, the project's name) is escaped with
:func:`html.escape`, so a column named ``<script>`` is shown, never run.

What the page holds, each part omitted with a one-line note when it has no rows:

- a header (project, model versions, time range, window, when it was made) and the alerts
  from ``meta["alerts"]``, sorted by severity (alert, then warn), then by window;
- **feature drift**: a small-multiples grid, one line chart per feature of PSI per window
  (one line per arm, markers coloured by the row's level, the PSI warn and alert floors
  dashed), worst feature first, and the last window's statistics with their bounds and
  p-values;
- **predictions**: mean prediction and PSI per window per prediction column, the last
  window's prediction-drift statistics, and agreement of each challenger arm with the
  champion;
- **system**: latency p50/p95/p99 per arm and error rate per window;
- **segment metrics**: the realized metric per segment with its interval band and the
  estimated (CBPE) metric dashed beside it, and the calibration back-test of the last window
  (observed against predicted per bin, with the diagonal);
- **live data quality**: null rates and range violations per column and window as coloured
  tables, and volume per window as bars;
- skew and any other section: the last window's rows as a table.

Dates on the axes are written by window size: ``May 2013`` for windows of 28 days or more,
``May 01`` for days, ``05-01 13:00`` for hours, ``13:05`` below.

``meta`` keys (all optional): ``project``, ``model_versions`` (a list, or one version),
``since`` and ``until`` (else the results' first and last window), ``window`` (as given to
``monitor``), ``alerts`` (dicts with ``level``, ``window_start``, ``arm``, ``section``,
``column``, ``statistic``, ``value``, ``message``), ``thresholds`` (``psi_warn``,
``psi_alert``; DriftPolicy's 0.1 and 0.2 by default) and ``generated_at``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from shipyard.errors import UsageError
from shipyard.files import atomic_path
from shipyard.monitoring.drift import DriftPolicy
from shipyard.monitoring.svg import WIDTH, Rule, Series, bar_chart, line_chart

__all__ = ["COLUMNS", "render", "write_report"]

#: the shared results table's columns, in order
COLUMNS = (
    "window_start",
    "window_end",
    "model_version",
    "arm",
    "section",
    "column",
    "statistic",
    "value",
    "lower",
    "upper",
    "pvalue",
    "level",
    "note",
)
SEVERITY = {"alert": 0, "warn": 1, "empty": 2, "ok": 3}
LEVEL_COLORS = {"ok": "#2e7d32", "warn": "#e0a000", "alert": "#c62828", "empty": "#9e9e9e"}
LEVEL_TINTS = {"ok": "#f3f8f3", "warn": "#fff3cd", "alert": "#fbd9d9", "empty": "#eeeeee"}
ARM_COLORS = {"champion": "#1f4e79", "canary": "#7b1fa2", "shadow": "#00838f"}
OTHER_COLORS = ("#5d4037", "#546e7a", "#ad1457", "#33691e")
LATENCY = {"latency_p50": "#1f4e79", "latency_p95": "#e08000", "latency_p99": "#c62828"}
KNOWN = {
    "feature_drift",
    "prediction_drift",
    "agreement",
    "system",
    "performance",
    "estimated_performance",
    "calibration",
    "quality",
    "volume",
}
DAY = 86_400.0


def write_report(path: Path | str, results: pd.DataFrame, meta: Mapping[str, Any]) -> Path:
    """Write the monitoring report of ``results`` (the shared results table) to ``path``,
    atomically; return the path. See the module docstring for ``meta``."""
    page = render(results, meta)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def render(results: pd.DataFrame, meta: Mapping[str, Any]) -> str:
    """The report's HTML text."""
    frame = _frame(results)
    page = _Page(frame, meta)
    parts = [
        page.section("alerts", "Alerts", _alerts(meta.get("alerts") or []), ""),
        page.section("drift", "Feature drift", page.drift(), "No feature drift rows."),
        page.section("predictions", "Predictions", page.predictions(), "No prediction rows."),
        page.section("system", "Latency and errors", page.system(), "No system rows."),
        page.section("segments", "Segment metrics", page.segments(), "No labeled windows yet."),
        page.section("quality", "Live data quality", page.quality(), "No data quality rows."),
        page.section("skew", "Training/serving skew", page.table_of("skew"), "No skew rows."),
        page.section("other", "Other results", page.others(), ""),
    ]
    return _document(page, [p for p in parts if p is not None])


def _frame(results: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in COLUMNS if c not in results.columns]
    if missing:
        raise UsageError(
            f"the monitoring results lack the column(s) {', '.join(missing)}; the report "
            "reads the shared results table (window_start … note) that `shipyard monitor` keeps."
        )
    frame = results.loc[:, list(COLUMNS)].copy()
    for name in ("window_start", "window_end"):
        frame[name] = pd.to_datetime(frame[name], utc=True)
    for name in ("value", "lower", "upper", "pvalue"):
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    for name in ("arm", "section", "column", "statistic", "level", "note"):
        frame[name] = frame[name].fillna("").astype(str)
    return frame.sort_values(["window_start", "arm", "section", "column", "statistic"])


# --- formatting ---------------------------------------------------------------------------


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def number(value: Any) -> str:
    """A value for a table: four significant digits, thousands separated, ``–`` when
    missing.

    >>> number(0.123456), number(12345.6), number(float("nan")), number(3e-07)
    ('0.1235', '12,346', '–', '3e-07')
    """
    if not _finite(value):
        return "–"
    if abs(value) >= 10_000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _pvalue(value: Any) -> str:
    return f"p={value:.2g}" if _finite(value) else ""


def _percent(value: Any) -> str:
    if not _finite(value):
        return "–"
    return f"{value:.0%}" if value in (0.0, 1.0) else f"{value:.2%}"


def _time_format(seconds: float) -> tuple[Callable[[pd.Timestamp], str], str]:
    """Axis label format for windows of ``seconds`` (and its strftime pattern)."""
    if seconds >= 28 * DAY:
        pattern = "%b %Y"
    elif seconds >= DAY:
        pattern = "%b %d"
    elif seconds >= 3_600:
        pattern = "%m-%d %H:%M"
    else:
        pattern = "%H:%M"
    return (lambda t: t.strftime(pattern)), pattern


def _seconds(t: pd.Timestamp) -> float:
    return float(t.timestamp())


def _version(value: Any) -> str:
    return "" if value is None or pd.isna(value) else f"v{int(value)}"


def _worst(levels: Iterable[str]) -> str:
    return min(levels, key=lambda lv: SEVERITY.get(lv, 4), default="ok")


def _badge(level: str) -> str:
    return f'<span class="lv lv-{escape(level)}">{escape(level)}</span>'


def _table(head: list[str], rows: list[str], cls: str = "sortable") -> str:
    ths = "".join(f"<th>{escape(h)}</th>" for h in head)
    return (
        f'<div class="scroll"><table class="{cls}"><thead><tr>{ths}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _figure(svg: str, caption: str, width: int = WIDTH) -> str:
    """A chart and its caption (escaped here), as wide as the chart."""
    return (
        f'<figure style="width:{width}px">{svg}<figcaption>{escape(caption)}</figcaption></figure>'
    )


def _cell(r: pd.Series) -> str:
    """One statistic in a table: its value, bounds and p-value, tinted by its level."""
    extra = ""
    if _finite(r["lower"]) or _finite(r["upper"]):
        extra += f"<small>[{number(r['lower'])}, {number(r['upper'])}]</small>"
    if _finite(r["pvalue"]):
        extra += f"<small>{_pvalue(r['pvalue'])}</small>"
    return (
        f'<span class="cell lv-bg-{escape(r["level"])}" title="{escape(r["note"])}" '
        f'data-sort="{r["value"]}">{number(r["value"])}{extra}</span>'
    )


def _alerts(alerts: list[Mapping[str, Any]]) -> str:
    if not alerts:
        return '<p class="note">No alert fired in this range.</p>'

    def key(a: Mapping[str, Any]) -> tuple[Any, ...]:
        start = pd.to_datetime(a.get("window_start"), utc=True)
        return (SEVERITY.get(str(a.get("level")), 4), start, str(a.get("arm", "")))

    rows = []
    for a in sorted(alerts, key=key):
        start = pd.to_datetime(a.get("window_start"), utc=True)
        when = "" if pd.isna(start) else start.strftime("%Y-%m-%d %H:%M")
        cells = [
            _badge(str(a.get("level", ""))),
            escape(when),
            *(escape(str(a.get(k, ""))) for k in ("arm", "section", "column", "statistic")),
            escape(number(a.get("value"))),
            escape(str(a.get("message", ""))),
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    counts = {lv: sum(1 for a in alerts if a.get("level") == lv) for lv in ("alert", "warn")}
    summary = f'<p class="note">{counts["alert"]} alert(s), {counts["warn"]} warning(s).</p>'
    head = ["level", "window", "arm", "section", "column", "statistic", "value", "message"]
    return summary + _table(head, rows)


class _Page:
    """The results, the shared time axis and the helpers that draw one section each."""

    def __init__(self, frame: pd.DataFrame, meta: Mapping[str, Any]) -> None:
        self.frame = frame
        self.meta = meta
        spans = (frame["window_end"] - frame["window_start"]).dt.total_seconds()
        self.window_seconds = float(spans.median()) if len(frame) else DAY
        self.when, self.pattern = _time_format(self.window_seconds)
        starts = sorted(frame["window_start"].unique()) if len(frame) else []
        self.starts = [pd.Timestamp(s) for s in starts]
        self.x_range = (
            (_seconds(self.starts[0]), _seconds(self.starts[-1])) if self.starts else (0.0, 1.0)
        )
        label_w = 6 * len(self.when(self.starts[0])) + 16 if self.starts else 60
        every = max(1, math.ceil(len(self.starts) / max(2, 280 // label_w)))
        self.x_ticks = [_seconds(s) for s in self.starts[::every]]
        thresholds = meta.get("thresholds") or {}
        default = DriftPolicy().psi
        self.psi_rules = [
            Rule(float(thresholds.get("psi_warn", default[0])), "warn", LEVEL_COLORS["warn"]),
            Rule(float(thresholds.get("psi_alert", default[1])), "alert", LEVEL_COLORS["alert"]),
        ]
        self.arm_order = {
            arm: i for i, arm in enumerate(["champion", *sorted(set(frame["arm"]) - {"champion"})])
        }

    # --- building blocks ------------------------------------------------------------------

    def rows(self, *sections: str) -> pd.DataFrame:
        return self.frame[self.frame["section"].isin(sections)]

    def section(
        self, anchor: str, title: str, body: str | None, empty: str
    ) -> tuple[str, str, str] | None:
        """(anchor, title, HTML) of a section; its one-line note when it has no rows
        (``body`` is None), or None when it has neither."""
        if body is None and not empty:
            return None
        return anchor, title, body if body is not None else f'<p class="note">{escape(empty)}</p>'

    def arm_color(self, arm: str) -> str:
        return ARM_COLORS.get(arm) or OTHER_COLORS[self.arm_order.get(arm, 0) % len(OTHER_COLORS)]

    def tip(self, row: Any) -> str:
        start, end = self.when(row.window_start), self.when(row.window_end)
        bounds = (
            f" [{number(row.lower)}, {number(row.upper)}]"
            if _finite(row.lower) or _finite(row.upper)
            else ""
        )
        lines = [
            f"{row.arm} {_version(row.model_version)} · {start} – {end}".strip(),
            f"{row.column or 'model'} {row.statistic} = {number(row.value)}{bounds} "
            f"{_pvalue(row.pvalue)} · {row.level}",
        ]
        return "\n".join(lines + ([row.note] if row.note else []))

    def series(self, rows: pd.DataFrame, name: str, color: str, *, dashed: bool = False) -> Series:
        ordered = list(rows.sort_values("window_start").itertuples(index=False))
        return Series(
            name=name,
            x=[_seconds(r.window_start) for r in ordered],
            y=[r.value for r in ordered],
            lower=[r.lower for r in ordered],
            upper=[r.upper for r in ordered],
            color=color,
            marker_colors=[
                color if r.level == "ok" else LEVEL_COLORS.get(r.level, color) for r in ordered
            ],
            tips=[self.tip(r) for r in ordered],
            dashed=dashed,
        )

    def by_arm(self, rows: pd.DataFrame) -> list[Series]:
        arms = sorted(set(rows["arm"]), key=lambda a: self.arm_order.get(a, 99))
        return [self.series(rows[rows["arm"] == a], a, self.arm_color(a)) for a in arms]

    def chart(self, caption: str, series: list[Series], **options: Any) -> str:
        svg = line_chart(
            series,
            x_format=lambda x: self.when(pd.Timestamp(x, unit="s", tz="UTC")),
            x_ticks=self.x_ticks,
            x_range=self.x_range,
            label=caption,
            **options,
        )
        return _figure(svg, caption)

    def grid(self, figures: list[str]) -> str:
        return f'<div class="grid">{"".join(figures)}</div>' if figures else ""

    def charts_per_statistic(self, rows: pd.DataFrame, skip: Iterable[str] = ()) -> list[str]:
        """One chart per (column, statistic), a line per arm."""
        out = []
        rows = rows[~rows["statistic"].isin(list(skip))]
        for (column, statistic), group in rows.groupby(["column", "statistic"], sort=True):
            caption = f"{column} · {statistic}" if column else str(statistic)
            rules = self.psi_rules if statistic == "psi" else []
            out.append(self.chart(caption, self.by_arm(group), rules=rules))
        return out

    def latest(self, rows: pd.DataFrame, by: tuple[str, ...] = ("arm",)) -> pd.DataFrame:
        """The rows of the last window of each ``by`` group (each arm, by default)."""
        last = rows.groupby(list(by))["window_start"].transform("max")
        return rows[rows["window_start"] == last]

    def latest_table(self, rows: pd.DataFrame, by: tuple[str, ...] = ("arm",)) -> str:
        """The last window (of each ``by`` group) as a table: a row per arm, window and
        column, worst first; a cell per statistic (value, bounds, p-value, tinted by level;
        the note as a tooltip)."""
        rows = self.latest(rows, by)
        statistics = list(dict.fromkeys(rows["statistic"]))
        keyed = rows.groupby(["arm", "window_start", "column"], sort=False)

        def rank(key: tuple[Any, ...]) -> tuple[Any, ...]:
            worst = _worst(keyed.get_group(key)["level"])
            return self.arm_order.get(key[0], 99), -_seconds(key[1]), SEVERITY.get(worst, 4), key[2]

        body = []
        for key in sorted(keyed.groups, key=rank):
            group = keyed.get_group(key).drop_duplicates("statistic").set_index("statistic")
            arm, start, column = key
            cells = [
                _badge(_worst(group["level"])),
                escape(f"{arm} {_version(group['model_version'].iloc[0])}".strip()),
                escape(self.when(start)),
                f"<code>{escape(column)}</code>" if column else "(model)",
            ]
            for statistic in statistics:
                cells.append(_cell(group.loc[statistic]) if statistic in group.index else "")
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        return _table(["level", "arm", "window", "column", *statistics], body)

    def heatmap(self, rows: pd.DataFrame, statistic: str) -> str:
        """A column × window table of one rate, each cell tinted by its level."""
        rows = rows[rows["statistic"] == statistic]
        starts = sorted(rows["window_start"].unique())
        several = rows["arm"].nunique() > 1
        head = [
            "column",
            *(["arm"] if several else []),
            *(self.when(pd.Timestamp(s)) for s in starts),
        ]
        body = []
        for (column, arm), group in rows.groupby(["column", "arm"], sort=True):
            by_start = {r.window_start: r for r in group.itertuples(index=False)}
            cells = [f"<td><code>{escape(str(column))}</code></td>"]
            if several:
                cells.append(f"<td>{escape(str(arm))}</td>")
            for start in starts:
                r = by_start.get(pd.Timestamp(start))
                if r is None:
                    cells.append("<td></td>")
                    continue
                cells.append(
                    f'<td class="lv-bg-{escape(r.level)}" title="{escape(self.tip(r))}">'
                    f"{_percent(r.value)}</td>"
                )
            body.append("<tr>" + "".join(cells) + "</tr>")
        return f"<h3>{escape(statistic)} per window</h3>" + _table(head, body, "heat")

    # --- sections -------------------------------------------------------------------------

    def drift(self) -> str | None:
        rows = self.rows("feature_drift")
        if rows.empty:
            return None
        psi = rows[rows["statistic"] == "psi"]
        rank = {
            c: (SEVERITY.get(_worst(g["level"]), 4), -float(g["value"].max()), c)
            for c, g in psi.groupby("column")
        }
        figures = [
            self.chart(str(column), self.by_arm(psi[psi["column"] == column]), rules=self.psi_rules)
            for column in sorted(rank, key=lambda c: rank[c])
        ]
        return (
            '<p class="note">PSI per window against the reference (the train split), one line '
            "per arm; markers coloured by level; dashed: the warn and alert floors. A level "
            "needs both a significant test and an effect over its floor.</p>"
            + self.grid(figures)
            + "<h3>Last window</h3>"
            + self.latest_table(rows)
        )

    def predictions(self) -> str | None:
        rows = self.rows("prediction_drift")
        agreement = self.rows("agreement")
        if rows.empty and agreement.empty:
            return None
        out = []
        if not rows.empty:
            keep = rows[rows["statistic"].isin(["mean_prediction", "psi"])]
            out.append("<h3>Prediction distribution</h3>")
            out.append(self.grid(self.charts_per_statistic(keep)))
            out.append(self.latest_table(rows))
        if not agreement.empty:
            out.append("<h3>Agreement with the champion</h3>")
            out.append(self.grid(self.charts_per_statistic(agreement)))
            out.append(self.latest_table(agreement))
        return "".join(out)

    def system(self) -> str | None:
        rows = self.rows("system")
        if rows.empty:
            return None
        figures = []
        latency = rows[rows["statistic"].isin(list(LATENCY))]
        for arm, group in sorted(
            latency.groupby("arm"), key=lambda g: self.arm_order.get(g[0], 99)
        ):
            series = [
                self.series(group[group["statistic"] == s], s.removeprefix("latency_"), color)
                for s, color in LATENCY.items()
                if (group["statistic"] == s).any()
            ]
            figures.append(self.chart(f"{arm} · latency", series, y_label="ms"))
        figures += self.charts_per_statistic(rows, skip=LATENCY)
        return self.grid(figures) + self.latest_table(rows)

    def segments(self) -> str | None:
        realized = self.rows("performance")
        estimated = self.rows("estimated_performance")
        calibration = self.rows("calibration")
        if realized.empty and estimated.empty and calibration.empty:
            return None
        figures = []
        both = pd.concat([realized, estimated])
        for (arm, column, statistic), group in both.groupby(["arm", "column", "statistic"]):
            series = []
            for section, name, dashed in (
                ("performance", "realized", False),
                ("estimated_performance", "estimated", True),
            ):
                part = group[group["section"] == section]
                if not part.empty:
                    color = self.arm_color(str(arm)) if not dashed else "#e08000"
                    series.append(self.series(part, name, color, dashed=dashed))
            caption = f"{column or 'overall'} · {statistic} · {arm}"
            figures.append(self.chart(caption, series))
        out = [self.grid(figures)]
        if not both.empty:
            kind = both["section"].map({"performance": "realized"}).fillna("estimated")
            labeled = both.assign(statistic=both["statistic"] + " (" + kind + ")")
            out.append("<h3>Last window</h3>" + self.latest_table(labeled, by=("arm", "section")))
        if not calibration.empty:
            out.append("<h3>Calibration back-test</h3>" + self.calibration(calibration))
        return "".join(out)

    def calibration(self, rows: pd.DataFrame) -> str:
        """The last window's bins per arm (observed against predicted, the diagonal), and
        every other calibration statistic (the ECE) per window."""
        bins = rows[rows["column"].str.startswith("bin")]
        figures = []
        for arm, group in self.latest(bins).groupby("arm"):
            points = []
            for column, b in group.groupby("column"):
                observed = b[b["statistic"].str.startswith("observed")]
                predicted = b[b["statistic"].str.startswith("predicted")]
                if observed.empty:
                    continue
                o = observed.iloc[0]
                x = float(predicted.iloc[0]["value"]) if not predicted.empty else _midpoint(column)
                points.append((x, o))
            points.sort(key=lambda p: p[0])
            series = Series(
                name=str(arm),
                x=[p[0] for p in points],
                y=[p[1]["value"] for p in points],
                lower=[p[1]["lower"] for p in points],
                upper=[p[1]["upper"] for p in points],
                color=self.arm_color(str(arm)),
                marker_colors=[LEVEL_COLORS.get(p[1]["level"], "#999") for p in points],
                tips=[
                    f"{p[1]['column']}: predicted {number(p[0])}, observed {number(p[1]['value'])} "
                    f"[{number(p[1]['lower'])}, {number(p[1]['upper'])}]"
                    for p in points
                ],
            )
            start = self.when(group["window_start"].iloc[0])
            svg = line_chart(
                [series],
                x_format=lambda x: f"{x:.1f}",
                x_range=(0.0, 1.0),
                y_range=(0.0, 1.0),
                diagonal=True,
                y_label="observed",
                label=f"calibration {arm}",
            )
            figures.append(_figure(svg, f"{arm} · {start} · predicted (x) against observed (y)"))
        figures += self.charts_per_statistic(rows[~rows["column"].str.startswith("bin")])
        return self.grid(figures)

    def quality(self) -> str | None:
        quality = self.rows("quality")
        volume = self.rows("volume")
        if quality.empty and volume.empty:
            return None
        out = []
        for statistic in dict.fromkeys(quality["statistic"]):
            out.append(self.heatmap(quality, str(statistic)))
        if not volume.empty:
            out.append("<h3>Volume</h3>" + self.grid(self.volume(volume)))
        return "".join(out)

    def volume(self, rows: pd.DataFrame) -> list[str]:
        """Rows per window as bars (one per arm), then any other volume statistic."""
        counts = rows[rows["statistic"] == "rows"]
        figures = self.charts_per_statistic(rows, skip=["rows"])
        if counts.empty:
            return figures
        starts = sorted(counts["window_start"].unique())
        bars = []
        for arm in sorted(set(counts["arm"]), key=lambda a: self.arm_order.get(a, 99)):
            by_start = {r.window_start: r for r in counts[counts["arm"] == arm].itertuples()}
            found = [by_start.get(pd.Timestamp(s)) for s in starts]
            bars.append(
                Series(
                    arm,
                    [],
                    [float("nan") if r is None else r.value for r in found],
                    color=self.arm_color(arm),
                    tips=["" if r is None else self.tip(r) for r in found],
                )
            )
        categories = [self.when(pd.Timestamp(s)) for s in starts]
        svg = bar_chart(categories, bars, y_label="rows", label="volume per window", width=560)
        return [_figure(svg, "rows per window", width=560), *figures]

    def table_of(self, section: str) -> str | None:
        rows = self.rows(section)
        return None if rows.empty else "<h3>Last window</h3>" + self.latest_table(rows)

    def others(self) -> str | None:
        rows = self.frame[~self.frame["section"].isin(KNOWN | {"skew"})]
        return None if rows.empty else self.latest_table(rows)


def _midpoint(column: str) -> float:
    """The middle of a bin named like ``bin[0.7,0.8)``."""
    inner = column[column.find("[") + 1 : column.rfind(")") if ")" in column else None]
    try:
        lo, hi = (float(v) for v in inner.strip("[]()").split(","))
    except ValueError:
        return float("nan")
    return (lo + hi) / 2


RESOURCES = Path(__file__).resolve().parents[1] / "resources"


def _inline(name: str) -> str:
    """A shipped CSS or JS file's text, to inline into the page."""
    return (RESOURCES / name).read_text(encoding="utf-8")


def _stamp(value: Any, fallback: pd.Timestamp | None) -> str:
    stamp = pd.to_datetime(value, utc=True) if value is not None else fallback
    if stamp is None or pd.isna(stamp):
        return "–"
    return pd.Timestamp(stamp).strftime("%Y-%m-%d %H:%M UTC")


def _header(page: _Page) -> str:
    meta, frame = page.meta, page.frame
    versions = meta.get("model_versions", meta.get("model_version"))
    if versions is None:
        versions = sorted(int(v) for v in frame["model_version"].dropna().unique())
    if isinstance(versions, list | tuple | set):
        versions = ", ".join(f"v{v}" for v in versions) or "–"
    since = _stamp(meta.get("since"), frame["window_start"].min() if len(frame) else None)
    until = _stamp(meta.get("until"), frame["window_end"].max() if len(frame) else None)
    generated = meta.get("generated_at") or datetime.now(UTC)
    arms = ", ".join(sorted(set(frame["arm"]), key=lambda a: page.arm_order.get(a, 99))) or "–"
    facts = {
        "model versions": str(versions),
        "arms": arms,
        "from": since,
        "to": until,
        "window": str(meta.get("window", "–")),
        "windows": str(len(page.starts)),
        "generated": _stamp(generated, None),
    }
    items = "".join(
        f"<div><dt>{escape(k)}</dt><dd>{escape(v)}</dd></div>" for k, v in facts.items()
    )
    title = str(meta.get("project") or "shipyard project")
    return f"<header><h1>Monitoring · {escape(title)}</h1><dl>{items}</dl></header>"


def _document(page: _Page, sections: list[tuple[str, str, str]]) -> str:
    nav = "".join(f'<a href="#{a}">{escape(t)}</a>' for a, t, _ in sections)
    body = "".join(
        f'<section id="{a}"><h2>{escape(t)}</h2>{inner}</section>' for a, t, inner in sections
    )
    title = escape(f"Monitoring · {page.meta.get('project') or 'shipyard project'}")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{_inline('report.css')}</style></head><body>"
        f"{_header(page)}<nav>{nav}</nav><main>{body}</main>"
        "<footer>Made by shipyard monitor from the workspace's results table; every number is "
        "computed from logged traffic and the bundle's reference statistics. "
        '<span id="chart-count"></span></footer>'
        f"<script>{_inline('report.js')}</script></body></html>"
    )
