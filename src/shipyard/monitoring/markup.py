"""HTML pieces of the monitoring report: time formats, statistic cells, the alerts table.

The pieces every report shares (number formats, badges, tables, figures) are in
:mod:`shipyard.reports.markup`. Each function returns a fragment of markup; every piece of
text from data goes through :func:`html.escape` here, so :mod:`shipyard.monitoring.report`
composes fragments without escaping twice or forgetting to.

>>> pvalue_text(3.2e-08), midpoint("bin[0.7,0.8)")
('p=3.2e-08', 0.75)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from html import escape
from typing import Any

import pandas as pd

from shipyard.reports.markup import badge, finite, number, table

__all__ = [
    "DAY",
    "SEVERITY",
    "alerts_table",
    "cell",
    "midpoint",
    "pvalue_text",
    "seconds",
    "stamp",
    "time_format",
    "version_label",
    "worst",
]

SEVERITY = {"alert": 0, "warn": 1, "empty": 2, "ok": 3}
DAY = 86_400.0


def pvalue_text(value: Any) -> str:
    return f"p={value:.2g}" if finite(value) else ""


def time_format(seconds: float) -> tuple[Callable[[pd.Timestamp], str], str]:
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


def seconds(t: pd.Timestamp) -> float:
    return float(t.timestamp())


def version_label(value: Any) -> str:
    return "" if value is None or pd.isna(value) else f"v{int(value)}"


def worst(levels: Iterable[str]) -> str:
    return min(levels, key=lambda lv: SEVERITY.get(lv, 4), default="ok")


def cell(r: pd.Series) -> str:
    """One statistic in a table: its value, bounds and p-value, tinted by its level."""
    extra = ""
    if finite(r["lower"]) or finite(r["upper"]):
        extra += f"<small>[{number(r['lower'])}, {number(r['upper'])}]</small>"
    if finite(r["pvalue"]):
        extra += f"<small>{pvalue_text(r['pvalue'])}</small>"
    return (
        f'<span class="cell lv-bg-{escape(r["level"])}" title="{escape(r["note"])}" '
        f'data-sort="{r["value"]}">{number(r["value"])}{extra}</span>'
    )


def alerts_table(alerts: list[Mapping[str, Any]], warnings: list[Any]) -> str:
    """The alerts table, sorted by severity, then window; then the run's warnings."""
    notes = "".join(f"<li>{escape(str(w))}</li>" for w in warnings)
    notes = f'<h3>Warnings of this run</h3><ul class="note">{notes}</ul>' if notes else ""
    if not alerts:
        return '<p class="note">No alert fired in this range.</p>' + notes

    def key(a: Mapping[str, Any]) -> tuple[Any, ...]:
        start = pd.to_datetime(a.get("window_start"), utc=True)
        return (SEVERITY.get(str(a.get("level")), 4), start, str(a.get("arm", "")))

    rows = []
    for a in sorted(alerts, key=key):
        start = pd.to_datetime(a.get("window_start"), utc=True)
        when = "" if pd.isna(start) else start.strftime("%Y-%m-%d %H:%M")
        cells = [
            badge(str(a.get("level", ""))),
            escape(when),
            *(escape(str(a.get(k, ""))) for k in ("arm", "section", "column", "statistic")),
            escape(number(a.get("value"))),
            escape(str(a.get("message") or a.get("note") or "")),
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    counts = {lv: sum(1 for a in alerts if a.get("level") == lv) for lv in ("alert", "warn")}
    summary = f'<p class="note">{counts["alert"]} alert(s), {counts["warn"]} warning(s).</p>'
    head = ["level", "window", "arm", "section", "column", "statistic", "value", "message"]
    return summary + table(head, rows) + notes


def midpoint(column: str) -> float:
    """The middle of a bin named like ``bin[0.7,0.8)``."""
    inner = column[column.find("[") + 1 : column.rfind(")") if ")" in column else None]
    try:
        lo, hi = (float(v) for v in inner.strip("[]()").split(","))
    except ValueError:
        return float("nan")
    return (lo + hi) / 2


def stamp(value: Any, fallback: pd.Timestamp | None) -> str:
    stamp = pd.to_datetime(value, utc=True) if value is not None else fallback
    if stamp is None or pd.isna(stamp):
        return "–"
    return pd.Timestamp(stamp).strftime("%Y-%m-%d %H:%M UTC")
