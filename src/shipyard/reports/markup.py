"""HTML pieces every report shares: number formats, badges, tables, figures, the page.

Each function returns a fragment of markup; every piece of text from data goes through
:func:`html.escape` here, so a report composes fragments without escaping twice or
forgetting to. :func:`document` wraps sections into one self-contained page: the shipped
CSS and script (``resources/report.css``, ``resources/report.js``) are inlined, and nothing
is fetched when it opens.

>>> number(0.123456), percent(0.0123), percent(1.0)
('0.1235', '1.23%', '100%')
>>> table(["a"], ["<tr><td>1</td></tr>"]).count("<th>")
1
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from shipyard.reports.svg import WIDTH

__all__ = [
    "RESOURCES",
    "badge",
    "document",
    "figure",
    "finite",
    "inline",
    "number",
    "percent",
    "table",
]

RESOURCES = Path(__file__).resolve().parents[1] / "resources"


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def number(value: Any) -> str:
    """A value for a table: four significant digits, thousands separated, ``–`` when
    missing.

    >>> number(0.123456), number(12345.6), number(float("nan")), number(3e-07)
    ('0.1235', '12,346', '–', '3e-07')
    """
    if not finite(value):
        return "–"
    if abs(value) >= 10_000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def percent(value: Any) -> str:
    if not finite(value):
        return "–"
    return f"{value:.0%}" if value in (0.0, 1.0) else f"{value:.2%}"


def badge(level: str, text: str | None = None) -> str:
    """A coloured label: ``level`` (ok, warn, alert, empty) picks the colour; ``text`` is
    what it says (the level itself by default)."""
    return f'<span class="lv lv-{escape(level)}">{escape(text or level)}</span>'


def table(head: list[str], rows: list[str], cls: str = "sortable") -> str:
    ths = "".join(f"<th>{escape(h)}</th>" for h in head)
    return (
        f'<div class="scroll"><table class="{cls}"><thead><tr>{ths}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def figure(svg: str, caption: str, width: int = WIDTH) -> str:
    """A chart and its caption (escaped here), as wide as the chart."""
    return (
        f'<figure style="width:{width}px">{svg}<figcaption>{escape(caption)}</figcaption></figure>'
    )


def inline(name: str) -> str:
    """A shipped CSS or JS file's text, to inline into the page."""
    return (RESOURCES / name).read_text(encoding="utf-8")


def document(title: str, header: str, sections: Sequence[tuple[str, str, str]], footer: str) -> str:
    """The whole page: ``title`` (plain text), the ``header`` markup, a navigation bar and
    one ``<section>`` per (anchor, title, markup), then the ``footer`` markup and the
    chart count the script fills in. CSS and script are inline."""
    nav = "".join(f'<a href="#{a}">{escape(t)}</a>' for a, t, _ in sections)
    body = "".join(
        f'<section id="{a}"><h2>{escape(t)}</h2>{inner}</section>' for a, t, inner in sections
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{inline('report.css')}</style></head><body>"
        f"{header}<nav>{nav}</nav><main>{body}</main>"
        f'<footer>{footer} <span id="chart-count"></span></footer>'
        f"<script>{inline('report.js')}</script></body></html>"
    )
