"""The model report's sections on how the model behaves, and why: robustness, invariance and
directions; the learning curve and its diagnosis; error slices with examples; global
importance; explained predictions. Each takes the bundle's
:class:`~shipyard.reports.documents.Documents` and returns its section's markup; a document
the run did not write gives one line, "not computed for this run".
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

import numpy as np
import pandas as pd

from shipyard.models import Rule as RuleModel
from shipyard.reports.documents import (
    BAD,
    CHOSEN,
    NOT_COMPUTED,
    OTHER,
    RANKED,
    Documents,
    bounds,
    note,
    pass_badge,
    plain,
    table_row,
    value_text,
)
from shipyard.reports.markup import badge, figure, number, percent, table
from shipyard.reports.svg import Series, hbar_chart, line_chart

__all__ = ["errors", "explained", "importance", "learning", "robustness"]

WORST_ROWS = 5  # rows of worst_predictions.csv shown


def _numbers(values: list[Any]) -> list[float]:
    """A series' values, a missing one as NaN (a gap in the line)."""
    return [float("nan") if v is None else float(v) for v in values]


def robustness(page: Documents) -> str:
    r = page.document("robustness.json")
    if r is None:
        return note(f"robustness, invariance and directional tests: {NOT_COMPUTED}")
    metric = r["metric"]
    out = [
        note(
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
            table_row(
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
                table_row(
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
        else note("no [features] sensitive columns declared: nothing to swap")
    )
    directional = r.get("directional") or []
    out.append("<h3>Directional expectations</h3>")
    out.append(
        table(
            ["feature", "expected", "violations", "worst example", "verdict"],
            [_direction_row(page, e) for e in directional],
        )
        if directional
        else note("no [[expectations]] declared: no direction to check")
    )
    return "".join(out)


def _direction_row(page: Documents, e: Mapping[str, Any]) -> str:
    ex = e["examples"][0] if e.get("examples") else None
    example = (
        f"test row {ex['row']}: {number(ex['value'])} → {number(ex['moved_to'])}, prediction "
        f"{number(ex['prediction'])} → {number(ex['moved_prediction'])}"
        if ex
        else "–"
    )
    return table_row(
        [
            f"<code>{escape(e['feature'])}</code>",
            escape(e["direction"]),
            f"{e['violations']:,} of {e['rows']:,} ({percent(e['violation_share'])})",
            escape(example),
            badge("alert", "violated") if e["breach"] else badge("ok", "holds"),
        ]
    )


def learning(page: Documents) -> str:
    d = page.document("diagnostics.json")
    if d is None:
        return note(f"the learning curve and its diagnosis: {NOT_COMPUTED}")
    out = []
    curve = d.get("learning_curve")
    if curve:
        sizes = [float(s) for s in curve["sizes"]]
        holdout = curve.get("holdout") or []
        # train rows held out of every fit: the train distribution, unseen (when computed)
        held = len(holdout) == len(sizes) and any(v is not None for v in holdout)
        series = [
            Series("train", sizes, curve["train"], color=OTHER, dashed=True),
            *([Series("held-out train", sizes, _numbers(holdout), color=BAD)] if held else []),
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
        columns = [curve["train"], *([holdout] if held else []), curve["dev"]]
        points = [
            table_row([f"{int(n):,}", *(number(c[i]) for c in columns)])
            for i, n in enumerate(curve["sizes"])
        ]
        head = ["train rows", "train", *(["held-out train"] if held else []), "dev"]
        out.append(table(head, points))
    else:
        out.append(note(f"the learning curve: {NOT_COMPUTED}"))
    sanity = d.get("sanity")
    if sanity:
        out.append("<h3>Sanity check</h3>")
        out.append(
            f"<p>{pass_badge(sanity.get('passed'))} on {value_text(sanity.get('rows'))} rows: "
            f"{escape(str(sanity.get('metric')))} {number(sanity.get('value'))}. "
            f"{escape(str(sanity.get('note') or ''))}</p>"
        )
    champion = d.get("champion")
    out.append("<h3>Against the champion</h3>")
    if champion:
        names = sorted(set(champion.get("dev", {})) | set(champion.get("test", {})))
        out.append(
            note(f"champion: v{champion.get('version')}")
            + table(
                ["metric", "champion dev", "champion test"],
                [
                    table_row(
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
        out.append(note("no champion to compare with when this model was trained"))
    return "".join(out)


def errors(page: Documents) -> str:
    e = page.document("error_analysis.json")
    if e is None:
        return note(f"the error analysis: {NOT_COMPUTED}")
    out = [
        note(
            f"On the {e.get('split', 'test')} split ({value_text(e.get('rows'))} rows), the "
            f"error of each row is its {e.get('error', 'error')}; mean error overall "
            f"{number(e.get('overall'))}. The slices where errors concentrate, worst first."
        )
    ]
    found = e.get("slices") or []

    def where(s: Mapping[str, Any]) -> str:
        return " and ".join(f"{c} = {v}" for c, v in zip(s["columns"], s["values"], strict=False))

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
            table_row(
                [
                    escape(where(s)),
                    f"{int(s['rows']):,}",
                    percent(s.get("share_of_error")),
                    number(s.get("error")),
                    f"{escape(str(s.get('metric', '')))} {number(s.get('value'))} "
                    f"{bounds(s.get('lower'), s.get('upper'))}",
                    number(s.get("score")),
                ]
            )
            for s in found
        ]
        out.append(
            table(["slice", "rows", "share of error", "error", "metric [95%]", "score"], body)
        )
    else:
        out.append(note("no slice concentrates the error"))
    worst = e.get("worst")
    path = page.bundle.path / str(worst) if worst else None
    out.append("<h3>Worst predictions</h3>")
    if path is not None and path.is_file() and path.parent == page.bundle.path:
        frame = pd.read_csv(path, nrows=WORST_ROWS)
        body = [
            table_row([escape(value_text(plain(v))) for v in r])
            for r in frame.itertuples(index=False)
        ]
        out.append(
            note(f"the first {len(frame)} rows of {path.name}")
            + table([str(c) for c in frame.columns], body)
        )
    else:
        out.append(note(f"the worst predictions: {NOT_COMPUTED}"))
    return "".join(out)


def importance(page: Documents) -> str:
    found = page.evaluation.get("importance")
    if not found:
        return note(
            f"the {page.manifest.get('family')} model cannot explain its scores: no "
            "attributions to average"
        )
    rule = found.get("rule")
    if rule:
        return note(
            f"A rule has no per-field attribution: its condition `{rule['condition']}` held "
            f"on {percent(rule['holds_share'])} of {found['rows']:,} test rows."
        )
    fields = found["fields"][:RANKED]
    svg = hbar_chart(
        [f["field"] for f in fields],
        [f["mean_abs"] for f in fields],
        label="global importance",
    )
    return note(
        f"Mean absolute attribution ({found['scale']}) over {found['rows']:,} of "
        f"{found.get('of_rows', found['rows']):,} {found.get('split', 'test')} rows; the "
        f"top {len(fields)} of {len(found['fields'])} fields."
    ) + figure(svg, f"mean |attribution| ({found['scale']})", 560)


def explained(page: Documents) -> str:
    rows = page.rows
    if rows is None or rows.empty:
        return note(page.rows_note or "no test rows were available to explain")
    if not page.bundle.explains:
        return note(
            f"the {page.manifest.get('family')} model cannot explain its scores "
            "(no explainer for this family)"
        )
    features = page.bundle.features
    missing = [f for f in features if f not in rows.columns]
    if missing:
        return note(f"the rows to explain lack the feature(s) {', '.join(missing)}")
    frame = rows[features].reset_index(drop=True)
    explanation = page.bundle.explain(frame)
    scores = page.bundle.predict(frame)
    classes = page.bundle.classes if page.manifest.get("task") == "multiclass" else None
    model = page.bundle.model
    prior = model.prior() if isinstance(model, RuleModel) and explanation.rule is not None else None
    cards = []
    for i, record in enumerate(frame.to_dict("records")):
        raw = explanation.score[i]
        k = int(np.argmax(raw)) if classes is not None else 0
        target = page.target if classes is None else f"{page.target}={classes[k]}"
        item = explanation.row(
            i, k, record=record, target=target, prior=None if prior is None else prior[k]
        )
        score = scores[i][k] if np.ndim(scores) == 2 else scores[i]
        actual = (
            f"; actual {page.target}: {value_text(plain(rows[page.target].iloc[i]))}"
            if page.target in rows.columns
            else ""
        )
        top = list(item["attributions"].items())[:6]
        attributions = [
            table_row(
                [
                    f"<code>{escape(f)}</code>",
                    escape(value_text(plain(record.get(f)))),
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
        note(
            f"{len(cards)} test rows explained through the bundle's own explain: the "
            "attributions add up to the raw score, before any calibrator."
        )
        + f'<div class="grid">{"".join(cards)}</div>'
    )
