"""The monitoring report: one self-contained HTML page drawn from the results table.

:func:`write_report` turns the rows ``shipyard monitor`` keeps (one per window, arm,
statistic and column; the shared results table) into a page that opens with no network: the
CSS, the SVG charts (drawn by :mod:`shipyard.reports.svg`) and a few lines of script
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
  estimated (CBPE) metric dashed beside it; for each ``[features] slices`` or ``sensitive``
  column, the last window's metric per value side by side with its interval (the marker
  coloured by the slice's verdict, the window's overall value dashed); and the calibration
  back-test of the last window (observed against predicted per bin, with the diagonal);
- **live data quality**: null rates and range violations per column and window as coloured
  tables, and volume per window as bars;
- skew and any other section: the last window's rows as a table.

Dates on the axes are written by window size: ``May 2013`` for windows of 28 days or more,
``May 01`` for days, ``05-01 13:00`` for hours, ``13:05`` below.

``meta`` keys (all optional): ``project``, ``model_versions`` (or ``versions``: a list, or
one version; else the results' versions), ``since`` and ``until`` (else the results' first
and last window), ``window`` (as given to ``monitor``), ``alerts`` (dicts with ``level``,
``window_start``, ``arm``, ``section``, ``column``, ``statistic``, ``value`` and ``message``
or ``note``; without the key, the results' rows at level warn or alert), ``warnings`` (the
run's counted warnings, listed under the alerts), ``rows_read``, ``thresholds``
(``psi_warn``, ``psi_alert``; DriftPolicy's 0.1 and 0.2 by default) and ``generated_at``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from shipyard.errors import UsageError
from shipyard.evaluation.metrics import METRICS
from shipyard.files import atomic_path
from shipyard.monitoring.drift import DriftPolicy
from shipyard.monitoring.markup import (
    DAY,
    SEVERITY,
    alerts_table,
    cell,
    midpoint,
    pvalue_text,
    seconds,
    stamp,
    time_format,
    version_label,
    worst,
)
from shipyard.monitoring.results import COLUMNS
from shipyard.reports.markup import badge, document, figure, finite, number, percent, table
from shipyard.reports.svg import Rule, Series, bar_chart, line_chart, reliability_chart

__all__ = ["COLUMNS", "render", "write_report"]

LEVEL_COLORS = {"ok": "#2e7d32", "warn": "#e0a000", "alert": "#c62828", "empty": "#9e9e9e"}
ARM_COLORS = {
    "champion": "#1f4e79",
    "canary": "#7b1fa2",
    "shadow": "#00838f",
    "holdout": "#6d4c41",
}
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
COUNTS = {"rows", "labeled_share"}  # performance rows that are counts, not metrics


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
        page.section(
            "alerts", "Alerts", alerts_table(page.alerts(), meta.get("warnings") or []), ""
        ),
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


def _verdicts(rows: pd.DataFrame, statistic: str) -> pd.DataFrame:
    """The ``statistic`` rows, each carrying its column's verdict in that window and arm
    (the worst level among the column's statistics) and that verdict's note: the monitor
    may put a drift verdict on the row of the effect that decided it, not on every row."""
    worst = rows.assign(rank=rows["level"].map(SEVERITY).fillna(4)).sort_values("rank")
    verdict = worst.drop_duplicates(["arm", "window_start", "column"])[
        ["arm", "window_start", "column", "level", "note"]
    ]
    picked = rows[rows["statistic"] == statistic].drop(columns=["level", "note"])
    return picked.merge(verdict, on=["arm", "window_start", "column"], how="left")[list(COLUMNS)]


class _Page:
    """The results, the shared time axis and the helpers that draw one section each."""

    def __init__(self, frame: pd.DataFrame, meta: Mapping[str, Any]) -> None:
        self.frame = frame
        self.meta = meta
        spans = (frame["window_end"] - frame["window_start"]).dt.total_seconds()
        self.window_seconds = float(spans.median()) if len(frame) else DAY
        self.when, self.pattern = time_format(self.window_seconds)
        starts = sorted(frame["window_start"].unique()) if len(frame) else []
        self.starts = [pd.Timestamp(s) for s in starts]
        self.x_range = (
            (seconds(self.starts[0]), seconds(self.starts[-1])) if self.starts else (0.0, 1.0)
        )
        label_w = 6 * len(self.when(self.starts[0])) + 16 if self.starts else 60
        every = max(1, math.ceil(len(self.starts) / max(2, 280 // label_w)))
        self.x_ticks = [seconds(s) for s in self.starts[::every]]
        thresholds = meta.get("thresholds") or {}
        default = DriftPolicy().psi
        self.psi_rules = [
            Rule(float(thresholds.get("psi_warn", default[0])), "warn", LEVEL_COLORS["warn"]),
            Rule(float(thresholds.get("psi_alert", default[1])), "alert", LEVEL_COLORS["alert"]),
        ]
        self.arm_order = {
            arm: i for i, arm in enumerate(["champion", *sorted(set(frame["arm"]) - {"champion"})])
        }

    def alerts(self) -> list[Mapping[str, Any]]:
        """``meta["alerts"]``, or else the results' rows at level warn or alert."""
        given = self.meta.get("alerts")
        if given is not None:
            return list(given)
        fired = self.frame[self.frame["level"].isin(["alert", "warn"])]
        return [dict(r) for r in fired.to_dict("records")]

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
            if finite(row.lower) or finite(row.upper)
            else ""
        )
        lines = [
            f"{row.arm} {version_label(row.model_version)} · {start} – {end}".strip(),
            f"{row.column or 'model'} {row.statistic} = {number(row.value)}{bounds} "
            f"{pvalue_text(row.pvalue)} · {row.level}",
        ]
        return "\n".join(lines + ([row.note] if row.note else []))

    def series(self, rows: pd.DataFrame, name: str, color: str, *, dashed: bool = False) -> Series:
        ordered = list(rows.sort_values("window_start").itertuples(index=False))
        return Series(
            name=name,
            x=[seconds(r.window_start) for r in ordered],
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
        return figure(svg, caption)

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
            level = worst(keyed.get_group(key)["level"])
            return self.arm_order.get(key[0], 99), -seconds(key[1]), SEVERITY.get(level, 4), key[2]

        body = []
        for key in sorted(keyed.groups, key=rank):
            group = keyed.get_group(key).drop_duplicates("statistic").set_index("statistic")
            arm, start, column = key
            cells = [
                badge(worst(group["level"])),
                escape(f"{arm} {version_label(group['model_version'].iloc[0])}".strip()),
                escape(self.when(start)),
                f"<code>{escape(column)}</code>" if column else "(model)",
            ]
            for statistic in statistics:
                cells.append(cell(group.loc[statistic]) if statistic in group.index else "")
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        return table(["level", "arm", "window", "column", *statistics], body)

    def heatmap(self, rows: pd.DataFrame, statistic: str) -> str:
        """A column × window table of one statistic (rates as percentages), each cell
        tinted by its level."""
        rows = rows[rows["statistic"] == statistic]
        show = percent if statistic.endswith(("_rate", "_share")) else number
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
                    f"{show(r.value)}</td>"
                )
            body.append("<tr>" + "".join(cells) + "</tr>")
        return f"<h3>{escape(statistic)} per window</h3>" + table(head, body, "heat")

    # --- sections -------------------------------------------------------------------------

    def drift(self) -> str | None:
        rows = self.rows("feature_drift")
        if rows.empty:
            return None
        psi = _verdicts(rows, "psi")
        rank = {
            c: (SEVERITY.get(worst(g["level"]), 4), -float(g["value"].max()), c)
            for c, g in psi.groupby("column")
        }
        figures = [
            self.chart(str(column), self.by_arm(psi[psi["column"] == column]), rules=self.psi_rules)
            for column in sorted(rank, key=lambda c: rank[c])
        ]
        return (
            '<p class="note">PSI per window against the reference (the train split), one line '
            "per arm; each marker coloured by the column's verdict in that window (from any of "
            "its statistics); dashed: the PSI warn and alert floors. A verdict needs both a "
            "significant test and an effect over its floor.</p>"
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
        both = pd.concat([realized, estimated])
        metrics = set(realized["statistic"]) - COUNTS or set(estimated["statistic"]) & set(METRICS)
        figures = self.slice_charts(realized)
        charted = both[both["statistic"].isin(list(metrics))]
        # per slice value, the metric over time (its drop is in the table)
        charted = charted[(charted["column"] == "") | charted["statistic"].isin(list(METRICS))]
        for (arm, column, statistic), group in charted.groupby(["arm", "column", "statistic"]):
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
        share = realized[(realized["statistic"] == "labeled_share") & (realized["column"] == "")]
        if not share.empty:
            figures.append(self.chart("labeled share of predictions", self.by_arm(share)))
        out = [self.grid(figures)]
        if not both.empty:
            kind = both["section"].map({"performance": "realized"}).fillna("estimated")
            labeled = both.assign(statistic=both["statistic"] + " (" + kind + ")")
            out.append("<h3>Last window</h3>" + self.latest_table(labeled, by=("arm", "section")))
        if not calibration.empty:
            out.append("<h3>Calibration back-test</h3>" + self.calibration(calibration))
        return "".join(out)

    def slice_charts(self, realized: pd.DataFrame) -> list[str]:
        """Per arm, slice column and metric, the last window's value of each slice value
        side by side with its interval; markers coloured by the slice's worst level in that
        window (a drop alert shows here); the window's overall value dashed."""
        latest = self.latest(realized)
        sliced = latest[latest["column"].str.contains("=", regex=False)]
        sliced = sliced.assign(slice=sliced["column"].str.partition("=")[0])
        figures = []
        keys = ["arm", "slice", "statistic"]
        metric_rows = sliced[sliced["statistic"].isin(list(METRICS))]
        for (arm, name, statistic), group in metric_rows.groupby(keys, sort=True):
            if not group["value"].notna().any():
                continue  # no labels yet
            color = self.arm_color(str(arm))
            values = list(group.sort_values("column").itertuples(index=False))
            labels = [r.column.partition("=")[2] for r in values]
            series = []
            for i, r in enumerate(values):
                level = worst(sliced[(sliced["arm"] == arm) & (sliced["column"] == r.column)].level)
                series.append(
                    Series(
                        name=labels[i],
                        x=[float(i)],
                        y=[r.value],
                        lower=[r.lower],
                        upper=[r.upper],
                        color=color,
                        marker_colors=[color if level == "ok" else LEVEL_COLORS.get(level, color)],
                        tips=[self.tip(r)],
                    )
                )
            overall = latest[
                (latest["arm"] == arm)
                & (latest["column"] == "")
                & (latest["statistic"] == statistic)
            ]
            rules = [
                Rule(float(v), "overall", "#888") for v in overall["value"].head(1) if finite(v)
            ]
            ticks = [float(i) for i in range(len(labels))]
            svg = line_chart(
                series,
                x_format=dict(zip(ticks, labels, strict=True)).__getitem__,  # ticks only
                x_ticks=ticks,
                x_range=(-0.5, len(labels) - 0.5),
                rules=rules,
                label=f"{name} {statistic} per value",
                legend=False,
            )
            start = self.when(values[0].window_start)
            figures.append(figure(svg, f"{name} · {statistic} per value · {arm} · {start}"))
        return figures

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
                x = float(predicted.iloc[0]["value"]) if not predicted.empty else midpoint(column)
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
            svg = reliability_chart([series], f"calibration {arm}")
            figures.append(figure(svg, f"{arm} · {start} · predicted (x) against observed (y)"))
        figures += self.charts_per_statistic(rows[~rows["column"].str.startswith("bin")])
        return self.grid(figures)

    def quality(self) -> str | None:
        quality = self.rows("quality")
        volume = self.rows("volume")
        if quality.empty and volume.empty:
            return None
        per_column = quality[quality["column"] != ""]
        out = [self.heatmap(per_column, str(s)) for s in dict.fromkeys(per_column["statistic"])]
        out.append(self.grid(self.charts_per_statistic(quality[quality["column"] == ""])))
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
        return [figure(svg, "rows per window", width=560), *figures]

    def table_of(self, section: str) -> str | None:
        rows = self.rows(section)
        return None if rows.empty else "<h3>Last window</h3>" + self.latest_table(rows)

    def others(self) -> str | None:
        rows = self.frame[~self.frame["section"].isin(KNOWN | {"skew"})]
        return None if rows.empty else self.latest_table(rows)


def _header(page: _Page) -> str:
    meta, frame = page.meta, page.frame
    versions = next(
        (meta[k] for k in ("model_versions", "versions", "model_version") if k in meta), None
    )
    if versions is None:
        versions = sorted(int(v) for v in frame["model_version"].dropna().unique())
    if isinstance(versions, list | tuple | set):
        versions = ", ".join(f"v{v}" for v in versions) or "–"
    since = stamp(meta.get("since"), frame["window_start"].min() if len(frame) else None)
    until = stamp(meta.get("until"), frame["window_end"].max() if len(frame) else None)
    generated = meta.get("generated_at") or datetime.now(UTC)
    arms = ", ".join(sorted(set(frame["arm"]), key=lambda a: page.arm_order.get(a, 99))) or "–"
    facts = {
        "model versions": str(versions),
        "arms": arms,
        "from": since,
        "to": until,
        "window": str(meta.get("window", "–")),
        "windows": str(len(page.starts)),
        **({"rows read": f"{int(meta['rows_read']):,}"} if "rows_read" in meta else {}),
        "generated": stamp(generated, None),
    }
    items = "".join(
        f"<div><dt>{escape(k)}</dt><dd>{escape(v)}</dd></div>" for k, v in facts.items()
    )
    title = str(meta.get("project") or "shipyard project")
    return f"<header><h1>Monitoring · {escape(title)}</h1><dl>{items}</dl></header>"


def _document(page: _Page, sections: list[tuple[str, str, str]]) -> str:
    return document(
        f"Monitoring · {page.meta.get('project') or 'shipyard project'}",
        _header(page),
        sections,
        "Made by shipyard monitor from the workspace's results table; every number is "
        "computed from logged traffic and the bundle's reference statistics.",
    )
