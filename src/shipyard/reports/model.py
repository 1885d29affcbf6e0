"""The model report: one self-contained HTML page about one bundle, drawn from what it stores.

:func:`write_model_report` reads a verified bundle (:mod:`shipyard.bundle`) and writes the
page a person reads before promoting it. Everything comes from the bundle's documents —
``spec.json``, ``evaluation.json`` (metrics, ladder, slices, calibration, importance),
``readiness.json``, ``robustness.json``, ``reference.json`` (the test reliability bins) and,
when a run computed them, ``diagnostics.json`` (learning curve, sanity check, champion) and
``error_analysis.json`` (error slices, with ``worst_predictions.csv`` beside it) — plus what
the caller passes: the data check's report and a few test rows to explain through the
bundle's own :meth:`~shipyard.bundle.Bundle.explain`. A document that is absent gives its
section one line, "not computed for this run".

The page holds, in order: spec and objective; data checks; the ladder; constraints;
readiness with its evidence; slices with their intervals; the calibration diagram;
robustness, invariance and directional results; the learning curve and its diagnosis; error
slices with examples; global importance; explained predictions. The first seven are drawn
here, the last five (how the model behaves, and why) in :mod:`shipyard.reports.behaviour`;
both read :class:`~shipyard.reports.documents.Documents`. Its charts are static SVG
(:mod:`shipyard.reports.svg`, drawn from aggregates only) and the CSS and script are inline,
so the file opens with no network and stays small (tens of kilobytes on flights). Every
string from data is escaped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from shipyard.bundle import Bundle, load_bundle
from shipyard.files import atomic_path
from shipyard.reports import behaviour
from shipyard.reports.documents import (
    CHOSEN,
    NOT_COMPUTED,
    OTHER,
    Documents,
    bounds,
    fact_list,
    note,
    pass_badge,
    table_row,
    value_text,
)
from shipyard.reports.markup import badge, document, figure, finite, number, table
from shipyard.reports.svg import WIDTH, Rule, Series, hbar_chart, line_chart, reliability_chart

__all__ = ["EXPLAINED_ROWS", "NOT_COMPUTED", "render_model_report", "write_model_report"]

EXPLAINED_ROWS = 3  # test rows the report explains
CHARTED = 20  # slice values drawn per column (the largest; the table lists all)


def write_model_report(
    path: Path | str,
    bundle: Path | str | Bundle,
    *,
    version: int | None = None,
    check: Mapping[str, Any] | None = None,
    rows: pd.DataFrame | None = None,
    rows_note: str = "",
) -> Path:
    """Write the model report of ``bundle`` to ``path`` atomically; return the path.

    ``check`` is the data check's report (``CheckReport.to_dict()``); ``rows`` a few test
    rows (the features, and the target when known) to explain, or None with ``rows_note``
    saying why there are none."""
    page = render_model_report(bundle, version=version, check=check, rows=rows, rows_note=rows_note)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def render_model_report(
    bundle: Path | str | Bundle,
    *,
    version: int | None = None,
    check: Mapping[str, Any] | None = None,
    rows: pd.DataFrame | None = None,
    rows_note: str = "",
    generated_at: datetime | None = None,
) -> str:
    """The model report's HTML text (see :func:`write_model_report`)."""
    loaded = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    page = Documents(loaded, version, check, rows, rows_note)
    sections = [
        ("spec", "Spec and objective", spec(page)),
        ("data", "Data checks", data(page)),
        ("ladder", "The ladder", ladder(page)),
        ("constraints", "Constraints", constraints(page)),
        ("readiness", "Readiness", readiness(page)),
        ("slices", "Slices", slices(page)),
        ("calibration", "Calibration", calibration(page)),
        ("robustness", "Robustness, invariance and directions", behaviour.robustness(page)),
        ("learning", "Learning curve", behaviour.learning(page)),
        ("errors", "Error slices", behaviour.errors(page)),
        ("importance", "Global importance", behaviour.importance(page)),
        ("explained", "Explained predictions", behaviour.explained(page)),
    ]
    return document(
        f"Model report · {page.title}",
        page.header(generated_at or datetime.now(UTC)),
        sections,
        "Made by shipyard from the bundle's stored evaluation; every number is computed, "
        "charts are drawn from aggregates.",
    )


def spec(page: Documents) -> str:
    s = page.spec_doc
    project, objective = s.get("project", {}), s.get("objective", {})
    features, split = s.get("features", {}), s.get("split", {})
    direction = "higher" if page.higher() else "lower"
    facts = {
        "task": project.get("task"),
        "target": page.target,
        "positive class": project.get("positive", "–"),
        "optimizing metric": f"{page.metric} ({direction} is better)",
        "min_improvement": objective.get("min_improvement"),
        "data": project.get("data", "–"),
        "data snapshot": str(page.manifest.get("snapshot_id", "–"))[:12],
        "spec hash": str(page.manifest.get("spec_hash", "–"))[:12],
        "split": f"{split.get('strategy', '–')} (seed {split.get('seed', '–')})",
        "features": len(page.bundle.features),
        "slices": value_text(features.get("slices", [])),
        "sensitive": value_text(features.get("sensitive", [])),
        "baseline rule": s.get("baseline", {}).get("rule") or "–",
        "expectations": len(s.get("expectations", []) or []),
        "chosen model": page.manifest.get("family"),
        "fallback": page.manifest.get("fallback") or "–",
    }
    limits = [
        table_row([f"<code>{escape(k)}</code>", escape(value_text(v))])
        for k, v in (s.get("constraints") or {}).items()
    ]
    parts = [fact_list({k: value_text(v) for k, v in facts.items()})]
    if split:
        shares = {k: split[k] for k in ("train", "dev", "eyeball", "test") if k in split}
        parts.append(note("split shares: " + ", ".join(f"{k} {v:g}" for k, v in shares.items())))
    parts.append("<h3>Constraints declared</h3>")
    parts.append(table(["constraint", "limit"], limits) if limits else note("none declared"))
    return "".join(parts)


def data(page: Documents) -> str:
    c = page.check
    if not c:
        return note(f"the data check's report: {NOT_COMPUTED}")
    counts = c.get("counts", {})
    facts = {
        "data": c.get("data"),
        "rows": f"{int(c.get('rows', 0)):,}",
        "columns": c.get("columns"),
        "snapshot": str(c.get("snapshot_id", ""))[:12],
        "errors": counts.get("error", 0),
        "warnings": counts.get("warning", 0),
        "info": counts.get("info", 0),
        "flagged columns": value_text(c.get("flagged_columns", [])),
    }
    level = {"error": "alert", "warning": "warn", "info": "empty"}
    body = [
        table_row(
            [
                badge(level.get(f["severity"], "empty"), f["severity"]),
                f"<code>{escape(f['code'])}</code>",
                escape(", ".join(f.get("columns", [])) or "(table)"),
                escape(f["message"]) + f"<small>{escape(f.get('action', ''))}</small>",
            ]
        )
        for f in c.get("findings", [])
    ]
    out = [fact_list({k: value_text(v) for k, v in facts.items()})]
    out.append(
        table(["severity", "code", "columns", "finding and what to do"], body, "wrap")
        if body
        else note("the check found nothing")
    )
    parts = (c.get("splits") or {}).get("parts") or {}
    if parts:
        cells = [
            table_row([escape(k), f"{int(v.get('rows', 0)) if isinstance(v, dict) else int(v):,}"])
            for k, v in parts.items()
        ]
        strategy = c["splits"].get("strategy", "")
        out.append(
            f"<h3>Split plan ({escape(str(strategy))})</h3>" + table(["part", "rows"], cells)
        )
    return "".join(out)


def ladder(page: Documents) -> str:
    rungs = page.evaluation.get("ladder") or []
    if not rungs:
        return note(f"the ladder: {NOT_COMPUTED}")
    metric, chosen = page.metric, page.evaluation.get("chosen")
    key = f"dev_{metric}"
    body = []
    for r in rungs:
        mark = " ← chosen" if r["rung"] == chosen else ""
        delta = r.get("delta")
        body.append(
            table_row(
                [
                    escape(r["rung"] + mark),
                    number(r.get(key)),
                    "–" if delta is None else f"{delta:+.4f}",
                    number(r.get("fit_s")) + (" (over budget)" if r.get("budget_hit") else ""),
                    number(r.get("p99_ms")),
                    number(r.get("size_mb")),
                    value_text(r.get("rounds")),
                ]
            )
        )
    head = ["rung", f"dev {metric}", "improvement", "fit s", "p99 ms", "size MB", "rounds"]
    svg = hbar_chart(
        [r["rung"] for r in rungs],
        [r.get(key) for r in rungs],
        colors=[CHOSEN if r["rung"] == chosen else OTHER for r in rungs],
        value_format=lambda v: f"{v:.4f}",
        label=f"dev {metric} per rung",
        width=420,
    )
    interval = page.evaluation.get("dev_interval") or {}
    dev, test = page.evaluation.get("dev", {}), page.evaluation.get("test", {})
    names = sorted(set(dev) | set(test))
    scores = [table_row([escape(m), number(dev.get(m)), number(test.get(m))]) for m in names]
    return (
        note(
            f"Each rung is fitted on train and scored on blackbox dev ({metric}, "
            f"{'higher' if page.higher() else 'lower'} is better); the simplest rung within "
            "min_improvement of the best is chosen. Chosen: "
            f"{chosen}, dev 95% interval {bounds(interval.get('ci_low'), interval.get('ci_high'))}."
        )
        + table(head, body)
        + f'<div class="grid">{figure(svg, f"dev {metric} per rung", 420)}</div>'
        + f"<h3>The chosen model ({escape(str(chosen))}), every metric</h3>"
        + table(["metric", "dev", "test (scored once)"], scores)
    )


def constraints(page: Documents) -> str:
    items = page.readiness_items()
    found = items.get("constraints_met", {}).get("evidence") or {}
    if not found:
        return note(f"the constraints: {NOT_COMPUTED}")
    body = [
        table_row(
            [
                f"<code>{escape(name)}</code>",
                value_text(c.get("limit")),
                value_text(c.get("value")),
                pass_badge(c["passed"])
                if c.get("limit") is not None
                else escape(c.get("note", "")),
            ]
        )
        for name, c in found.items()
    ]
    return table(["constraint", "limit", "value", "result"], body)


def readiness(page: Documents) -> str:
    doc = page.document("readiness.json")
    if doc is None:
        return note(f"the readiness checklist: {NOT_COMPUTED}")
    failed = [i for i in doc["items"] if not i["passed"]]
    verdict = (
        "ready: every item passes"
        if doc["passed"]
        else f"not ready: {len(failed)} of {len(doc['items'])} item(s) fail"
    )
    body = [
        table_row(
            [
                str(i["number"]),
                pass_badge(i["passed"]),
                f"<code>{escape(i['name'])}</code>",
                escape(i["summary"])
                + (
                    "<details><summary>evidence</summary><pre>"
                    + escape(json.dumps(i["evidence"], indent=1, sort_keys=True, default=str))
                    + "</pre></details>"
                    if i.get("evidence")
                    else ""
                ),
            ]
        )
        for i in doc["items"]
    ]
    return note(verdict) + table(["#", "result", "item", "summary and evidence"], body, "wrap")


def slices(page: Documents) -> str:
    found = page.evaluation.get("slices") or {}
    entries = found.get("slices") or []
    if not entries:
        return note("no [features] slices declared: no slice to judge")
    metric, overall = found.get("metric", page.metric), found.get("overall")
    figures, body = [], []
    for column in dict.fromkeys(e["column"] for e in entries):
        everything = [e for e in entries if e["column"] == column]
        # a chart of the CHARTED largest values (the table lists every one)
        largest = sorted(everything, key=lambda e: -e["rows"])[:CHARTED]
        group = [e for e in everything if any(e is x for x in largest)]
        labels = [str(e["value"]) for e in group]
        width = min(900, max(WIDTH, 44 * len(labels) + 80))
        series = [
            Series(
                name=labels[i],
                x=[float(i)],
                y=[e.get(metric)],
                lower=[e.get("ci_low")],
                upper=[e.get("ci_high")],
                color=OTHER if e.get("tiny") else CHOSEN,
                tips=[
                    f"{column} = {labels[i]}: {metric} {number(e.get(metric))} "
                    f"{bounds(e.get('ci_low'), e.get('ci_high'))}, {e['rows']:,} rows"
                    + (" (tiny)" if e.get("tiny") else "")
                ],
            )
            for i, e in enumerate(group)
        ]
        ticks = [float(i) for i in range(len(labels))]
        svg = line_chart(
            series,
            x_format=dict(zip(ticks, labels, strict=True)).__getitem__,
            x_ticks=ticks,
            x_range=(-0.5, len(labels) - 0.5),
            rules=[Rule(overall, "overall", "#888")]
            if isinstance(overall, int | float) and finite(overall)
            else [],
            label=f"{column} {metric} per value",
            legend=False,
            width=width,
        )
        shown = "" if len(group) == len(everything) else f", the {len(group)} largest"
        caption = f"{column} · test {metric} per value, 95% interval{shown}"
        figures.append(figure(svg, caption, width))
        for e in everything:
            gap = (
                (overall - e[metric]) * (1 if page.higher() else -1)
                if finite(overall) and finite(e.get(metric))
                else None
            )
            body.append(
                table_row(
                    [
                        f"<code>{escape(column)}</code>",
                        escape(str(e["value"])),
                        f"{e['rows']:,}",
                        number(e.get(metric)),
                        bounds(e.get("ci_low"), e.get("ci_high")),
                        number(gap),
                        "tiny" if e.get("tiny") else "",
                    ]
                )
            )
    worst = found.get("worst_slice") or {}
    where = f" ({worst.get('column')} = {worst.get('value')})" if worst else ""
    head = ["column", "value", "rows", metric, "95% interval", "gap to overall", ""]
    out = [
        note(
            f"Test {metric} per slice value with its 95% bootstrap interval; overall "
            f"{number(overall)}, worst gap {number(found.get('worst_gap'))}{where}."
        ),
        f'<div class="grid">{"".join(figures)}</div>',
        table(head, body),
    ]
    for column, g in (found.get("sensitive") or {}).items():
        keys = list(g.get("gaps", {}))
        rows = [
            table_row(
                [escape(str(x["value"])), f"{x['rows']:,}", *(number(x.get(k)) for k in keys)]
            )
            for x in g.get("groups", [])
        ]
        rows.append(table_row(["gap (max − min)", "", *(number(g["gaps"][k]) for k in keys)]))
        out.append(f"<h3>Sensitive: <code>{escape(column)}</code></h3>")
        out.append(table(["group", "rows", *keys], rows))
    return "".join(out)


def calibration(page: Documents) -> str:
    cal = page.evaluation.get("calibration") or {}
    facts = {
        k: cal[k]
        for k in (
            "ece_before",
            "ece_dev_after",
            "ece_test",
            "max_ece",
            "kept",
            "mean_error_test",
        )
        if k in cal
    }
    reference = page.document("reference.json") or {}
    bins = [b for b in reference.get("calibration") or [] if b.get("count")]
    out = (
        [fact_list({k.replace("_", " "): value_text(v) for k, v in facts.items()})] if facts else []
    )
    if not bins:
        reason = (
            "a regression model: calibration in the large is its mean error on test above"
            if page.manifest.get("task") == "regression"
            else f"the reliability diagram: {NOT_COMPUTED}"
        )
        return "".join(out) + note(reason)
    series = Series(
        name="test",
        x=[b["predicted"] for b in bins],
        y=[b["observed"] for b in bins],
        color=CHOSEN,
        tips=[
            f"[{b['lo']:.1f}, {b['hi']:.1f}): predicted {number(b['predicted'])}, observed "
            f"{number(b['observed'])}, {b['count']:,} rows"
            for b in bins
        ],
    )
    svg = reliability_chart([series])
    body = [
        table_row(
            [
                f"[{b['lo']:.1f}, {b['hi']:.1f})",
                f"{b['count']:,}",
                number(b["predicted"]),
                number(b["observed"]),
            ]
        )
        for b in bins
    ]
    out.append(
        f'<div class="grid">{figure(svg, "test: mean predicted (x) against observed (y)")}'
        f"{table(['bin', 'rows', 'predicted', 'observed'], body)}</div>"
    )
    return "".join(out)
