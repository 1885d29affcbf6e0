"""Self-contained HTML reports: the model report and what every report page shares.

``svg`` draws the static charts (line, grouped-bar and labelled-bar charts, a few kilobytes
each, from aggregates), ``markup`` the shared fragments (number formats, badges, tables,
figures) and the page itself (CSS and script inlined, nothing fetched), and ``model`` the
model report ``train`` writes into each bundle and ``shipyard report`` draws on demand.
The monitoring report (:mod:`shipyard.monitoring.report`) is drawn with the same pieces.
"""

from shipyard.reports.model import render_model_report, write_model_report
from shipyard.reports.svg import Rule, Series, bar_chart, hbar_chart, line_chart

__all__ = [
    "Rule",
    "Series",
    "bar_chart",
    "hbar_chart",
    "line_chart",
    "render_model_report",
    "write_model_report",
]
