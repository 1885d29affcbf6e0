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
slices with examples; global importance; explained predictions. Its charts are static SVG
(:mod:`shipyard.reports.svg`, drawn from aggregates only) and the CSS and script are inline,
so the file opens with no network and stays small (tens of kilobytes on flights). Every
string from data is escaped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipyard.bundle import Bundle, load_bundle
from shipyard.evaluation.metrics import HIGHER_IS_BETTER
from shipyard.files import atomic_path
from shipyard.models import Rule as RuleModel
from shipyard.reports.markup import badge, document, figure, finite, number, percent, table
from shipyard.reports.svg import WIDTH, Rule, Series, hbar_chart, line_chart

__all__ = ["EXPLAINED_ROWS", "NOT_COMPUTED", "render_model_report", "write_model_report"]

NOT_COMPUTED = "not computed for this run"
EXPLAINED_ROWS = 3  # test rows the report explains
WORST_ROWS = 5  # rows of worst_predictions.csv shown
RANKED = 15  # bars in a ranking (importance, perturbations, error slices)
CHARTED = 20  # slice values drawn per column (the largest; the table lists all)
CHOSEN, OTHER, BAD = "#1f4e79", "#90a4ae", "#c62828"


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
    page = _Page(loaded, version, check, rows, rows_note)
    sections = [
        ("spec", "Spec and objective", page.spec()),
        ("data", "Data checks", page.data()),
        ("ladder", "The ladder", page.ladder()),
        ("constraints", "Constraints", page.constraints()),
        ("readiness", "Readiness", page.readiness()),
        ("slices", "Slices", page.slices()),
        ("calibration", "Calibration", page.calibration()),
        ("robustness", "Robustness, invariance and directions", page.robustness()),
        ("learning", "Learning curve", page.learning()),
        ("errors", "Error slices", page.errors()),
        ("importance", "Global importance", page.importance()),
        ("explained", "Explained predictions", page.explained()),
    ]
    return document(
        f"Model report · {page.title}",
        page.header(generated_at or datetime.now(UTC)),
        sections,
        "Made by shipyard from the bundle's stored evaluation; every number is computed, "
        "charts are drawn from aggregates.",
    )


def _note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def _row(cells: Sequence[str]) -> str:
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _facts(facts: Mapping[str, Any]) -> str:
    items = "".join(
        f"<div><dt>{escape(k)}</dt><dd>{escape(str(v))}</dd></div>" for k, v in facts.items()
    )
    return f'<dl class="facts">{items}</dl>'


def _value(value: Any) -> str:
    """A cell from a document: numbers formatted, lists joined, the rest as text."""
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value).lower()
    if isinstance(value, int | float):
        return number(value)
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "–"
    return str(value)


def _pass(passed: Any) -> str:
    return badge("ok", "pass") if passed else badge("alert", "fail")


def _interval(lower: Any, upper: Any) -> str:
    return f"[{number(lower)}, {number(upper)}]" if finite(lower) or finite(upper) else ""


class _Page:
    """The bundle's documents and the helpers that draw one section each."""

    def __init__(
        self,
        bundle: Bundle,
        version: int | None,
        check: Mapping[str, Any] | None,
        rows: pd.DataFrame | None,
        rows_note: str,
    ) -> None:
        self.bundle = bundle
        self.version = version
        self.check = check
        self.rows = rows
        self.rows_note = rows_note
        self.manifest = bundle.manifest
        self.spec_doc: dict[str, Any] = self.document("spec.json") or {}
        self.evaluation: dict[str, Any] = self.document("evaluation.json") or {}
        self.metric = str(self.evaluation.get("metric", ""))
        project = self.spec_doc.get("project", {})
        self.target = str(project.get("target") or "model")
        name = str(project.get("name") or "shipyard project")
        self.title = f"{name} v{version}" if version is not None else name

    def document(self, name: str) -> Any:
        """A JSON document of the bundle, or None when this run did not write it."""
        path = self.bundle.path / name
        return json.loads(path.read_text()) if path.is_file() else None

    def higher(self) -> bool:
        return HIGHER_IS_BETTER.get(self.metric, True)

    def header(self, generated: datetime) -> str:
        test = self.evaluation.get("test", {})
        readiness = self.document("readiness.json")
        verdict = "–" if readiness is None else ("ready" if readiness["passed"] else "not ready")
        facts = {
            "version": f"v{self.version}" if self.version is not None else "not registered",
            "run": self.manifest.get("run_id") or "untracked",
            "model": str(self.manifest.get("family")),
            "task": str(self.manifest.get("task")),
            f"test {self.metric}": number(test.get(self.metric)),
            "readiness": verdict,
            "trained": str(self.manifest.get("created", "–"))[:19].replace("T", " "),
            "generated": generated.strftime("%Y-%m-%d %H:%M UTC"),
        }
        items = "".join(
            f"<div><dt>{escape(k)}</dt><dd>{escape(v)}</dd></div>" for k, v in facts.items()
        )
        return f"<header><h1>Model report · {escape(self.title)}</h1><dl>{items}</dl></header>"

    # --- sections -------------------------------------------------------------------------

    def spec(self) -> str:
        s = self.spec_doc
        project, objective = s.get("project", {}), s.get("objective", {})
        features, split = s.get("features", {}), s.get("split", {})
        direction = "higher" if self.higher() else "lower"
        facts = {
            "task": project.get("task"),
            "target": self.target,
            "positive class": project.get("positive", "–"),
            "optimizing metric": f"{self.metric} ({direction} is better)",
            "min_improvement": objective.get("min_improvement"),
            "data": project.get("data", "–"),
            "data snapshot": str(self.manifest.get("snapshot_id", "–"))[:12],
            "spec hash": str(self.manifest.get("spec_hash", "–"))[:12],
            "split": f"{split.get('strategy', '–')} (seed {split.get('seed', '–')})",
            "features": len(self.bundle.features),
            "slices": _value(features.get("slices", [])),
            "sensitive": _value(features.get("sensitive", [])),
            "baseline rule": s.get("baseline", {}).get("rule") or "–",
            "expectations": len(s.get("expectations", []) or []),
            "chosen model": self.manifest.get("family"),
            "fallback": self.manifest.get("fallback") or "–",
        }
        limits = [
            _row([f"<code>{escape(k)}</code>", escape(_value(v))])
            for k, v in (s.get("constraints") or {}).items()
        ]
        parts = [_facts({k: _value(v) for k, v in facts.items()})]
        if split:
            shares = {k: split[k] for k in ("train", "dev", "eyeball", "test") if k in split}
            parts.append(
                _note("split shares: " + ", ".join(f"{k} {v:g}" for k, v in shares.items()))
            )
        parts.append("<h3>Constraints declared</h3>")
        parts.append(table(["constraint", "limit"], limits) if limits else _note("none declared"))
        return "".join(parts)

    def data(self) -> str:
        c = self.check
        if not c:
            return _note(f"the data check's report: {NOT_COMPUTED}")
        counts = c.get("counts", {})
        facts = {
            "data": c.get("data"),
            "rows": f"{int(c.get('rows', 0)):,}",
            "columns": c.get("columns"),
            "snapshot": str(c.get("snapshot_id", ""))[:12],
            "errors": counts.get("error", 0),
            "warnings": counts.get("warning", 0),
            "info": counts.get("info", 0),
            "flagged columns": _value(c.get("flagged_columns", [])),
        }
        level = {"error": "alert", "warning": "warn", "info": "empty"}
        body = [
            _row(
                [
                    badge(level.get(f["severity"], "empty"), f["severity"]),
                    f"<code>{escape(f['code'])}</code>",
                    escape(", ".join(f.get("columns", [])) or "(table)"),
                    escape(f["message"]) + f"<small>{escape(f.get('action', ''))}</small>",
                ]
            )
            for f in c.get("findings", [])
        ]
        out = [_facts({k: _value(v) for k, v in facts.items()})]
        out.append(
            table(["severity", "code", "columns", "finding and what to do"], body, "wrap")
            if body
            else _note("the check found nothing")
        )
        parts = (c.get("splits") or {}).get("parts") or {}
        if parts:
            cells = [
                _row([escape(k), f"{int(v.get('rows', 0)) if isinstance(v, dict) else int(v):,}"])
                for k, v in parts.items()
            ]
            strategy = c["splits"].get("strategy", "")
            out.append(
                f"<h3>Split plan ({escape(str(strategy))})</h3>" + table(["part", "rows"], cells)
            )
        return "".join(out)

    def ladder(self) -> str:
        rungs = self.evaluation.get("ladder") or []
        if not rungs:
            return _note(f"the ladder: {NOT_COMPUTED}")
        metric, chosen = self.metric, self.evaluation.get("chosen")
        key = f"dev_{metric}"
        body = []
        for r in rungs:
            mark = " ← chosen" if r["rung"] == chosen else ""
            delta = r.get("delta")
            body.append(
                _row(
                    [
                        escape(r["rung"] + mark),
                        number(r.get(key)),
                        "–" if delta is None else f"{delta:+.4f}",
                        number(r.get("fit_s")) + (" (over budget)" if r.get("budget_hit") else ""),
                        number(r.get("p99_ms")),
                        number(r.get("size_mb")),
                        _value(r.get("rounds")),
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
        interval = self.evaluation.get("dev_interval") or {}
        dev, test = self.evaluation.get("dev", {}), self.evaluation.get("test", {})
        names = sorted(set(dev) | set(test))
        scores = [_row([escape(m), number(dev.get(m)), number(test.get(m))]) for m in names]
        return (
            _note(
                f"Each rung is fitted on train and scored on blackbox dev ({metric}, "
                f"{'higher' if self.higher() else 'lower'} is better); the simplest rung within "
                "min_improvement of the best is chosen. Chosen: "
                f"{chosen}, dev 95% interval {_interval(interval.get('ci_low'), interval.get('ci_high'))}."
            )
            + table(head, body)
            + f'<div class="grid">{figure(svg, f"dev {metric} per rung", 420)}</div>'
            + f"<h3>The chosen model ({escape(str(chosen))}), every metric</h3>"
            + table(["metric", "dev", "test (scored once)"], scores)
        )

    def constraints(self) -> str:
        items = self.readiness_items()
        found = items.get("constraints_met", {}).get("evidence") or {}
        if not found:
            return _note(f"the constraints: {NOT_COMPUTED}")
        body = [
            _row(
                [
                    f"<code>{escape(name)}</code>",
                    _value(c.get("limit")),
                    _value(c.get("value")),
                    _pass(c["passed"]) if c.get("limit") is not None else escape(c.get("note", "")),
                ]
            )
            for name, c in found.items()
        ]
        return table(["constraint", "limit", "value", "result"], body)

    def readiness_items(self) -> dict[str, dict[str, Any]]:
        doc = self.document("readiness.json") or {}
        return {i["name"]: i for i in doc.get("items", [])}

    def readiness(self) -> str:
        doc = self.document("readiness.json")
        if doc is None:
            return _note(f"the readiness checklist: {NOT_COMPUTED}")
        failed = [i for i in doc["items"] if not i["passed"]]
        verdict = (
            "ready: every item passes"
            if doc["passed"]
            else f"not ready: {len(failed)} of {len(doc['items'])} item(s) fail"
        )
        body = [
            _row(
                [
                    str(i["number"]),
                    _pass(i["passed"]),
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
        return _note(verdict) + table(["#", "result", "item", "summary and evidence"], body, "wrap")

    def slices(self) -> str:
        found = self.evaluation.get("slices") or {}
        entries = found.get("slices") or []
        if not entries:
            return _note("no [features] slices declared: no slice to judge")
        metric, overall = found.get("metric", self.metric), found.get("overall")
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
                        f"{_interval(e.get('ci_low'), e.get('ci_high'))}, {e['rows']:,} rows"
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
                    (overall - e[metric]) * (1 if self.higher() else -1)
                    if finite(overall) and finite(e.get(metric))
                    else None
                )
                body.append(
                    _row(
                        [
                            f"<code>{escape(column)}</code>",
                            escape(str(e["value"])),
                            f"{e['rows']:,}",
                            number(e.get(metric)),
                            _interval(e.get("ci_low"), e.get("ci_high")),
                            number(gap),
                            "tiny" if e.get("tiny") else "",
                        ]
                    )
                )
        worst = found.get("worst_slice") or {}
        where = f" ({worst.get('column')} = {worst.get('value')})" if worst else ""
        head = ["column", "value", "rows", metric, "95% interval", "gap to overall", ""]
        out = [
            _note(
                f"Test {metric} per slice value with its 95% bootstrap interval; overall "
                f"{number(overall)}, worst gap {number(found.get('worst_gap'))}{where}."
            ),
            f'<div class="grid">{"".join(figures)}</div>',
            table(head, body),
        ]
        for column, g in (found.get("sensitive") or {}).items():
            keys = list(g.get("gaps", {}))
            rows = [
                _row([escape(str(x["value"])), f"{x['rows']:,}", *(number(x.get(k)) for k in keys)])
                for x in g.get("groups", [])
            ]
            rows.append(_row(["gap (max − min)", "", *(number(g["gaps"][k]) for k in keys)]))
            out.append(f"<h3>Sensitive: <code>{escape(column)}</code></h3>")
            out.append(table(["group", "rows", *keys], rows))
        return "".join(out)

    def calibration(self) -> str:
        cal = self.evaluation.get("calibration") or {}
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
        reference = self.document("reference.json") or {}
        bins = [b for b in reference.get("calibration") or [] if b.get("count")]
        out = [_facts({k.replace("_", " "): _value(v) for k, v in facts.items()})] if facts else []
        if not bins:
            reason = (
                "a regression model: calibration in the large is its mean error on test above"
                if self.manifest.get("task") == "regression"
                else f"the reliability diagram: {NOT_COMPUTED}"
            )
            return "".join(out) + _note(reason)
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
        svg = line_chart(
            [series],
            x_format=lambda x: f"{x:.1f}",
            x_range=(0.0, 1.0),
            y_range=(0.0, 1.0),
            diagonal=True,
            y_label="observed",
            label="calibration diagram",
        )
        body = [
            _row(
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

    def robustness(self) -> str:
        r = self.document("robustness.json")
        if r is None:
            return _note(f"robustness, invariance and directional tests: {NOT_COMPUTED}")
        metric = r["metric"]
        out = [
            _note(
                f"On {r['rows']:,} of {r['of_rows']:,} test rows (seed {r['seed']}), through the "
                f"bundle's own predict; clean {metric} {number(r['clean'])}."
            )
        ]
        shown = sorted(
            (p for p in r.get("perturbation", []) if p.get("degradation") is not None),
            key=lambda p: -p["degradation"],
        )[:RANKED]
        if shown:

            def name(p: Mapping[str, Any]) -> str:
                level = f" {p['level']:g} sd" if p.get("level") is not None else ""
                return f"{p['feature']} · {p['perturbation']}{level}"

            svg = hbar_chart(
                [name(p) for p in shown],
                [p["degradation"] for p in shown],
                colors=[BAD if p["degradation"] > 0 else OTHER for p in shown],
                label="worst perturbations",
            )
            out.append(figure(svg, f"{metric} lost per perturbation, worst first", 560))
            body = [
                _row(
                    [
                        escape(name(p)),
                        number(p.get(metric)),
                        number(p.get("change")),
                        number(p.get("mean_abs_shift")),
                    ]
                )
                for p in shown
            ]
            out.append(table(["perturbation", metric, "change", "mean |Δ prediction|"], body))
        invariance = r.get("invariance") or []
        out.append("<h3>Invariance of sensitive columns</h3>")
        out.append(
            table(
                ["column", "method", "changed share", "tolerance", "max |Δ|", "verdict"],
                [
                    _row(
                        [
                            f"<code>{escape(e['column'])}</code>",
                            escape(e["method"]),
                            percent(e["changed_share"]),
                            number(e["tolerance"]),
                            number(e.get("max_abs_change")),
                            badge("alert", "breach") if e["breach"] else badge("ok", "holds"),
                        ]
                    )
                    for e in invariance
                ],
            )
            if invariance
            else _note("no [features] sensitive columns declared: nothing to swap")
        )
        directional = r.get("directional") or []
        out.append("<h3>Directional expectations</h3>")
        out.append(
            table(
                ["feature", "expected", "violations", "worst example", "verdict"],
                [self.direction_row(e) for e in directional],
            )
            if directional
            else _note("no [[expectations]] declared: no direction to check")
        )
        return "".join(out)

    def direction_row(self, e: Mapping[str, Any]) -> str:
        ex = e["examples"][0] if e.get("examples") else None
        example = (
            f"test row {ex['row']}: {number(ex['value'])} → {number(ex['moved_to'])}, prediction "
            f"{number(ex['prediction'])} → {number(ex['moved_prediction'])}"
            if ex
            else "–"
        )
        return _row(
            [
                f"<code>{escape(e['feature'])}</code>",
                escape(e["direction"]),
                f"{e['violations']:,} of {e['rows']:,} ({percent(e['violation_share'])})",
                escape(example),
                badge("alert", "violated") if e["breach"] else badge("ok", "holds"),
            ]
        )

    def learning(self) -> str:
        d = self.document("diagnostics.json")
        if d is None:
            return _note(f"the learning curve and its diagnosis: {NOT_COMPUTED}")
        out = []
        curve = d.get("learning_curve")
        if curve:
            sizes = [float(s) for s in curve["sizes"]]
            series = [
                Series("train", sizes, curve["train"], color=OTHER, dashed=True),
                Series("dev", sizes, curve["dev"], color=CHOSEN),
            ]
            svg = line_chart(
                series,
                x_format=lambda x: f"{x:,.0f}",
                y_label=str(curve["metric"]),
                label="learning curve",
            )
            caption = f"{curve['metric']} by training rows"
            out.append(f'<div class="grid">{figure(svg, caption)}</div>')
            out.append(
                f"<p><b>Diagnosis ({escape(str(curve.get('kind', '')))}):</b> "
                f"{escape(str(curve.get('diagnosis', '')))}</p>"
            )
            points = [
                _row([f"{int(n):,}", number(t), number(v)])
                for n, t, v in zip(curve["sizes"], curve["train"], curve["dev"], strict=True)
            ]
            out.append(table(["train rows", "train", "dev"], points))
        else:
            out.append(_note(f"the learning curve: {NOT_COMPUTED}"))
        sanity = d.get("sanity")
        if sanity:
            out.append("<h3>Sanity check</h3>")
            out.append(
                f"<p>{_pass(sanity.get('passed'))} on {_value(sanity.get('rows'))} rows: "
                f"{escape(str(sanity.get('metric')))} {number(sanity.get('value'))}. "
                f"{escape(str(sanity.get('note') or ''))}</p>"
            )
        champion = d.get("champion")
        out.append("<h3>Against the champion</h3>")
        if champion:
            names = sorted(set(champion.get("dev", {})) | set(champion.get("test", {})))
            out.append(
                _note(f"champion: v{champion.get('version')}")
                + table(
                    ["metric", "champion dev", "champion test"],
                    [
                        _row(
                            [
                                escape(m),
                                number(champion.get("dev", {}).get(m)),
                                number(champion.get("test", {}).get(m)),
                            ]
                        )
                        for m in names
                    ],
                )
            )
        else:
            out.append(_note("no champion to compare with when this model was trained"))
        return "".join(out)

    def errors(self) -> str:
        e = self.document("error_analysis.json")
        if e is None:
            return _note(f"the error analysis: {NOT_COMPUTED}")
        out = [
            _note(
                f"On the {e.get('split', 'test')} split ({_value(e.get('rows'))} rows): "
                f"{e.get('error', 'error')} overall {number(e.get('overall'))}; the slices where "
                "errors concentrate, worst first."
            )
        ]
        found = e.get("slices") or []

        def where(s: Mapping[str, Any]) -> str:
            return " and ".join(
                f"{c} = {v}" for c, v in zip(s["columns"], s["values"], strict=False)
            )

        if found:
            top = found[:RANKED]
            svg = hbar_chart(
                [where(s) for s in top],
                [s.get("share_of_error") for s in top],
                colors=[BAD] * len(top),
                value_format=percent,
                label="share of error per slice",
            )
            out.append(figure(svg, "share of the error in each slice", 560))
            body = [
                _row(
                    [
                        escape(where(s)),
                        f"{int(s['rows']):,}",
                        percent(s.get("share_of_error")),
                        number(s.get("error")),
                        f"{escape(str(s.get('metric', '')))} {number(s.get('value'))} "
                        f"{_interval(s.get('lower'), s.get('upper'))}",
                        number(s.get("score")),
                    ]
                )
                for s in found
            ]
            out.append(
                table(["slice", "rows", "share of error", "error", "metric [95%]", "score"], body)
            )
        else:
            out.append(_note("no slice concentrates the error"))
        worst = e.get("worst")
        path = self.bundle.path / str(worst) if worst else None
        out.append("<h3>Worst predictions</h3>")
        if path is not None and path.is_file() and path.parent == self.bundle.path:
            frame = pd.read_csv(path, nrows=WORST_ROWS)
            body = [
                _row([escape(_value(_plain(v))) for v in r]) for r in frame.itertuples(index=False)
            ]
            out.append(
                _note(f"the first {len(frame)} rows of {path.name}")
                + table([str(c) for c in frame.columns], body)
            )
        else:
            out.append(_note(f"the worst predictions: {NOT_COMPUTED}"))
        return "".join(out)

    def importance(self) -> str:
        found = self.evaluation.get("importance")
        if not found:
            return _note(
                f"the {self.manifest.get('family')} model cannot explain its scores: no "
                "attributions to average"
            )
        rule = found.get("rule")
        if rule:
            return _note(
                f"A rule has no per-field attribution: its condition `{rule['condition']}` held "
                f"on {percent(rule['holds_share'])} of {found['rows']:,} test rows."
            )
        fields = found["fields"][:RANKED]
        svg = hbar_chart(
            [f["field"] for f in fields],
            [f["mean_abs"] for f in fields],
            label="global importance",
        )
        return _note(
            f"Mean absolute attribution ({found['scale']}) over {found['rows']:,} of "
            f"{found.get('of_rows', found['rows']):,} {found.get('split', 'test')} rows; the "
            f"top {len(fields)} of {len(found['fields'])} fields."
        ) + figure(svg, f"mean |attribution| ({found['scale']})", 560)

    def explained(self) -> str:
        rows = self.rows
        if rows is None or rows.empty:
            return _note(self.rows_note or "no test rows were available to explain")
        if not self.bundle.explains:
            return _note(
                f"the {self.manifest.get('family')} model cannot explain its scores "
                "(no explainer for this family)"
            )
        features = self.bundle.features
        frame = rows[features].reset_index(drop=True)
        explanation = self.bundle.explain(frame)
        scores = self.bundle.predict(frame)
        classes = self.bundle.classes if self.manifest.get("task") == "multiclass" else None
        model = self.bundle.model
        prior = (
            model.prior() if isinstance(model, RuleModel) and explanation.rule is not None else None
        )
        cards = []
        for i, record in enumerate(frame.to_dict("records")):
            raw = explanation.score[i]
            k = int(np.argmax(raw)) if classes is not None else 0
            target = self.target if classes is None else f"{self.target}={classes[k]}"
            item = explanation.row(
                i, k, record=record, target=target, prior=None if prior is None else prior[k]
            )
            score = scores[i][k] if np.ndim(scores) == 2 else scores[i]
            actual = (
                f"; actual {self.target}: {_value(_plain(rows[self.target].iloc[i]))}"
                if self.target in rows.columns
                else ""
            )
            top = list(item["attributions"].items())[:6]
            attributions = [
                _row(
                    [
                        f"<code>{escape(f)}</code>",
                        escape(_value(_plain(record.get(f)))),
                        f"{v:+.4g}",
                    ]
                )
                for f, v in top
            ]
            reasons = "".join(f"<li>{escape(r)}</li>" for r in item["reasons"])
            cards.append(
                '<div class="card">'
                f"<h3>Row {i + 1}: {escape(target)} {number(float(score))}{escape(actual)}</h3>"
                f'<p class="note">raw score {number(item["score"])} = base '
                f"{number(item['base'])} + attributions ({escape(item['scale'])})</p>"
                f"<ul>{reasons}</ul>"
                + (table(["field", "value", "attribution"], attributions) if top else "")
                + "</div>"
            )
        return (
            _note(
                f"{len(cards)} test rows explained through the bundle's own explain: the "
                "attributions add up to the raw score, before any calibrator."
            )
            + f'<div class="grid">{"".join(cards)}</div>'
        )


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
