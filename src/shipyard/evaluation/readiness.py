"""The production-readiness checklist, item by item with its evidence.

Computed for every candidate at the end of ``train``, shown, tracked and stored in the
bundle (``readiness.json``). A candidate is ready when every item passes:

1. ``beats_baselines`` — the chosen model beats the constant and rule rungs on blackbox dev
   by at least ``min_improvement``; the evidence carries the dev metric's 95% interval
   (:func:`dev_precision`), and the summary says when dev is too small to select on;
2. ``constraints_met`` — every satisficing constraint set in ``[constraints]`` holds;
3. ``slices_hold`` — every judged slice is within the floor of the overall metric
   (``max_slice_gap``, or 0.10 when unset; for RMSE and MAE, judged at the better end of the
   slice's 95% bootstrap interval, since a few large errors swing them), and, when a champion exists, no slice is worse
   than the champion's beyond the candidate's 95% interval (:func:`compare_with_champion`,
   on the candidate's test split at ``train``, again on the newest test split at ``promote``);
   a sensitive column (``[features] sensitive``) that is also a feature is named in the
   summary, and the evidence carries its per-group rates and error-rate gaps
   (:func:`~shipyard.evaluation.slices.group_rates`); neither changes the verdict;
4. ``calibration_validated`` — classifiers: test ECE within ``max_ece`` (recorded when unset);
5. ``features_available`` — no input feature is a column the leakage audit flagged (the
   features the spec confirms in ``[features] known_at_prediction`` are listed in the evidence:
   the audit reports them as information, not leaks);
6. ``skew_guarded`` — every path a row reaches the model by gives the frame path's output on
   held-out rows (:func:`skew_outputs`): the one-record path, batch scoring of the rows as
   CSV text (``shipyard predict``'s reader and :func:`~shipyard.batch.score_chunk`), and the
   service's record path (its contract check, then the arm's ``score``) on the rows as a
   client sends them, typed JSON and as text; a row the batch leaves unscored or the
   service refuses fails the item;
7. ``reproducible`` — data snapshot, spec, seeds and environment are recorded;
8. ``bundle_verifies`` — the bundle's manifest and every file check out;
9. ``rollback_target`` — a simpler rung is packaged alongside (``fallback/``) to fall back to;
10. ``invariance_holds`` — swapping or resampling each ``[features] sensitive`` column changes
    the prediction beyond ``[robustness] tolerance`` on at most ``max_changed_share`` of the
    sampled test rows (:func:`robustness_items`, from
    :func:`~shipyard.evaluation.robustness.robustness`);
11. ``directions_hold`` — each ``[[expectations]]`` entry is violated on at most
    ``[robustness] max_violation_share`` of the sampled test rows.

``min_improvement`` and ``max_slice_gap`` are read by :class:`~shipyard.evaluation.metrics.Margin`:
for RMSE and MAE as fractions of the constant baseline's value on the rows judged (blackbox dev
for item 1, test for item 3, the shared test split against a champion), in the metric's own
units for every other metric. Each item's evidence records the rule as applied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

# DEV_HALF_WIDTH: the dev interval's half-width above which dev is too small to select on
# (in the metric's units, or for RMSE and MAE a fraction of the constant baseline)
from shipyard.data.split import DEV_HALF_WIDTH
from shipyard.evaluation.metrics import HIGHER_IS_BETTER, Margin, improvement, score
from shipyard.evaluation.slices import metric_interval, slice_metrics

DEFAULT_SLICE_FLOOR = 0.10
SKEW_TOLERANCE = 1e-9
RATE_NAMES = {
    "target_rate": "target rate",
    "predicted_rate": "predicted positive rate",
    "fpr": "false positive rate",
    "fnr": "false negative rate",
    "error_rate": "error rate",
    "mean_error": "mean error",
}
BASELINES = ("constant", "rule")


@dataclass(frozen=True)
class Item:
    """One checklist item: passed or not, and the computed evidence."""

    number: int
    name: str
    passed: bool
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Readiness:
    """The whole checklist."""

    items: list[Item]

    @property
    def passed(self) -> bool:
        return all(item.passed for item in self.items)

    @property
    def failed(self) -> list[Item]:
        return [item for item in self.items if not item.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "items": [asdict(i) for i in self.items]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Readiness:
        return cls([Item(**item) for item in data["items"]])


def assess(
    *,
    metric: str,
    min_improvement: float,
    ladder: Sequence[Mapping[str, Any]],
    chosen: str,
    constraints: Mapping[str, Mapping[str, Any]],
    slices: Mapping[str, Any],
    max_slice_gap: float | None,
    calibration: Mapping[str, Any],
    max_ece: float | None,
    task: str,
    features: Sequence[str],
    flagged: Sequence[str],
    known_at_prediction: Sequence[str] = (),
    frame_output: np.ndarray,
    record_output: np.ndarray,
    recorded: Mapping[str, Any],
    other_paths: Mapping[str, np.ndarray] | None = None,
    refused: Mapping[str, int] | None = None,
    bundle_problem: str | None,
    fallback: str | None,
    champion: Mapping[str, Any] | None = None,
    dev_y: np.ndarray | None = None,
    test_y: np.ndarray | None = None,
    dev_interval: Mapping[str, Any] | None = None,
    groups: Mapping[str, Any] | None = None,
    extra: Sequence[Item] = (),
) -> Readiness:
    """Compute every item from what ``train`` measured.

    ``dev_interval`` (from :func:`dev_precision`) and ``groups`` (from
    :func:`~shipyard.evaluation.slices.group_rates` on the sensitive columns) are reported in
    items 1 and 3; ``extra`` items (:func:`robustness_items`) follow item 9.

    ``dev_y`` and ``test_y`` (the blackbox dev and test targets) set the unit of the margins
    for RMSE and MAE; without them the margins are read in the metric's units.
    """
    items: list[Item] = []
    empty = np.array([], dtype=float)
    needed = Margin.on(metric, min_improvement, empty if dev_y is None else dev_y)
    scores = {row["rung"]: row[f"dev_{metric}"] for row in ladder}
    baselines = {name: scores[name] for name in BASELINES if name in scores and name != chosen}
    if chosen in BASELINES:
        items.append(
            Item(
                1,
                "beats_baselines",
                False,
                f"the chosen model is the '{chosen}' baseline itself",
                {"dev": scores},
            )
        )
    else:
        margins = {
            name: improvement(metric, scores[chosen], value) for name, value in baselines.items()
        }
        ok = all(m >= needed.absolute for m in margins.values())
        worst = min(margins, key=lambda name: margins[name]) if margins else None
        items.append(
            Item(
                1,
                "beats_baselines",
                ok,
                f"dev {metric} {scores[chosen]:.4f}; beats "
                + ", ".join(f"{n} by {m:+.4f}" for n, m in margins.items())
                + f" (needs ≥ min_improvement: {needed.rule})"
                + ("" if ok else f"; not enough over '{worst}'")
                + _dev_note(dev_interval),
                {
                    "dev": scores,
                    "margins": margins,
                    "min_improvement": needed.to_dict(),
                    "dev_interval": None if dev_interval is None else dict(dev_interval),
                },
            )
        )
    failed = [n for n, c in constraints.items() if not c["passed"]]
    items.append(
        Item(
            2,
            "constraints_met",
            not failed,
            "every constraint set holds" if not failed else f"failed: {', '.join(failed)}",
            {n: dict(c) for n, c in constraints.items()},
        )
    )
    gap = Margin.on(
        metric,
        max_slice_gap if max_slice_gap is not None else DEFAULT_SLICE_FLOOR,
        empty if test_y is None else test_y,
    )
    floor = gap.absolute
    overall = slices.get("overall")
    below, _ = judge_slices(metric, slices, gap)
    regressed = list(champion["regressed_slices"]) if champion else []
    if champion is None:
        versus = "; no champion to compare with"
    elif regressed:
        versus = f"; worse than champion v{champion['version']} beyond the interval: " + ", ".join(
            regressed
        )
    else:
        versus = (
            f"; no slice worse than champion v{champion['version']} beyond the interval "
            f"({champion['slices_compared']} compared)"
        )
    items.append(
        Item(
            3,
            "slices_hold",
            not below and not regressed,
            (
                f"{len(slices.get('slices', []))} slices within {floor:.4g} of the overall "
                f"{metric} {_number(overall)}"
                if not below
                else f"below the floor ({floor:.4g} under the overall {metric} "
                f"{_number(overall)}): {', '.join(below)}"
            )
            + f" (max_slice_gap: {gap.rule}"
            + (", judged at the better end of each slice's 95% interval)" if gap.relative else ")")
            + versus
            + _sensitive_note(groups),
            {
                "floor": floor,
                "max_slice_gap": gap.to_dict(),
                "judged_at": "95% interval's better end" if gap.relative else "slice value",
                "below": below,
                "worst_gap": slices.get("worst_gap"),
                "champion": dict(champion) if champion else None,
                "sensitive": None if groups is None else dict(groups),
            },
        )
    )
    if task == "regression":
        items.append(Item(4, "calibration_validated", True, "regression: not applicable"))
    else:
        value = calibration.get("ece_test")
        ok = value is not None and (max_ece is None or value <= max_ece)
        items.append(
            Item(
                4,
                "calibration_validated",
                ok,
                f"test ECE {value:.4f}"
                + (
                    f" ≤ max_ece {max_ece:g}"
                    if ok and max_ece is not None
                    else f" > max_ece {max_ece:g}"
                    if max_ece is not None
                    else " (max_ece not set: recorded, not bounded)"
                ),
                {"ece_test": value, "max_ece": max_ece, "calibrator": calibration.get("kept")},
            )
        )
    leaky = sorted(set(features) & set(flagged))
    confirmed = sorted(set(features) & set(known_at_prediction))
    items.append(
        Item(
            5,
            "features_available",
            not leaky,
            (
                "no feature was flagged by the leakage audit"
                if not leaky
                else f"features flagged by the leakage audit: {', '.join(leaky)}"
            )
            + (
                f"; confirmed known at the moment of prediction: {', '.join(confirmed)}"
                if confirmed
                else ""
            ),
            {"flagged_features": leaky, "known_at_prediction": confirmed},
        )
    )
    items.append(skew_item(frame_output, {"record": record_output, **(other_paths or {})}, refused))
    missing = [
        k for k in ("data_snapshot_id", "spec_hash", "seed", "environment") if not recorded.get(k)
    ]
    note = "" if recorded.get("git_commit") else "; no git commit (the project is not in git)"
    items.append(
        Item(
            7,
            "reproducible",
            not missing,
            (
                "snapshot, spec, seeds and environment recorded"
                if not missing
                else f"not recorded: {', '.join(missing)}"
            )
            + note,
            dict(recorded),
        )
    )
    items.append(
        Item(
            8,
            "bundle_verifies",
            bundle_problem is None,
            "manifest and every file verified" if bundle_problem is None else bundle_problem,
        )
    )
    items.append(
        Item(
            9,
            "rollback_target",
            fallback is not None,
            f"the '{fallback}' rung is packaged alongside as fallback/"
            if fallback
            else "no simpler rung to fall back to",
            {"fallback": fallback},
        )
    )
    return Readiness([*items, *extra])


def robustness_items(robust: Mapping[str, Any]) -> list[Item]:
    """Items 10 and 11 from :func:`~shipyard.evaluation.robustness.robustness`'s tables."""
    sampled = f" ({robust.get('rows')} sampled test rows, seed {robust.get('seed')})"
    invariance = [
        (
            e["column"],
            f"'{e['column']}' ({e['method']}{'' if e['used_as_feature'] else ', not a feature'}) "
            f"changes {e['changed_share']:.1%} of rows by more than {e['tolerance']:.4g}",
            e,
        )
        for e in robust.get("invariance", [])
    ]
    directions = [
        (
            f"{e['feature']} {e['direction']}",
            f"'{e['feature']}' {e['direction']}: {e['violations']} of {e['rows']} rows "
            f"({e['violation_share']:.1%}) move the other way",
            e,
        )
        for e in robust.get("directional", [])
    ]
    return [
        _robustness_item(
            10,
            "invariance_holds",
            invariance,
            "max_changed_share",
            "no [features] sensitive columns declared: nothing to swap",
            "invariance breached by",
            sampled,
        ),
        _robustness_item(
            11,
            "directions_hold",
            directions,
            "max_violation_share",
            "no [[expectations]] declared: no direction to check",
            "directions violated:",
            sampled,
        ),
    ]


def _robustness_item(
    number: int,
    name: str,
    checked: Sequence[tuple[str, str, Mapping[str, Any]]],
    limit: str,
    nothing: str,
    failed: str,
    sampled: str,
) -> Item:
    """One item over (name, sentence, table entry) triples: it fails on any breach."""
    if not checked:
        return Item(number, name, True, nothing, {})
    breaches = [label for label, _, e in checked if e["breach"]]
    text = (
        "; ".join(sentence for _, sentence, _ in checked)
        + f" ({limit} {checked[0][2][limit]:g}){sampled}"
    )
    if breaches:
        text = f"{failed} {', '.join(breaches)}; {text}"
    evidence = {label: dict(e) for label, _, e in checked}
    return Item(number, name, not breaches, text, evidence)


def dev_precision(
    metric: str, task: str, y: np.ndarray, s: np.ndarray, seed: int = 0
) -> dict[str, Any]:
    """How precisely the blackbox dev part measures the chosen model's ``metric``.

    The 95% bootstrap interval of the metric on dev; dev is ``too_small`` to select on when
    the interval's half-width exceeds ``DEV_HALF_WIDTH`` read as a :class:`Margin` (0.05 in
    the metric's units; for RMSE and MAE 5% of the constant baseline's value on dev).
    """
    limit = Margin.on(metric, DEV_HALF_WIDTH, y)
    interval = metric_interval(metric, y, s, seed=seed)
    out: dict[str, Any] = {"rows": len(y), "metric": metric, "value": None}
    if task != "regression":
        counts = np.bincount(np.asarray(y, dtype=int))
        out["minority_rows"] = int(counts[counts > 0].min()) if len(counts) else 0
    if interval is None:
        return {**out, "ci_low": None, "ci_high": None, "half_width": None, "too_small": True}
    low, high = interval
    half = (high - low) / 2
    return {
        **out,
        "value": score(metric, y, s),
        "ci_low": low,
        "ci_high": high,
        "half_width": half,
        "limit": limit.to_dict(),
        "too_small": bool(half > limit.absolute),
    }


def dev_warning(precision: Mapping[str, Any]) -> str | None:
    """The line ``train`` prints when dev is too small to select on (None otherwise)."""
    if not precision.get("too_small"):
        return None
    rows = f"{precision['rows']:,} rows" + (
        f", {precision['minority_rows']:,} in the rarer class"
        if "minority_rows" in precision
        else ""
    )
    if precision.get("half_width") is None:
        return f"blackbox dev ({rows}) cannot measure {precision['metric']}: too small to select on"
    return (
        f"blackbox dev is too small to select models on ({rows}): dev {precision['metric']} "
        f"{precision['value']:.4f}, 95% interval [{precision['ci_low']:.4f}, "
        f"{precision['ci_high']:.4f}] (±{precision['half_width']:.4f}, over the "
        f"{precision['limit']['rule']} limit); rung differences inside it are noise. Give dev a "
        "larger share or collect more data"
    )


def _dev_note(precision: Mapping[str, Any] | None) -> str:
    if not precision or precision.get("half_width") is None:
        return "" if not precision else "; dev too small to measure the metric"
    text = (
        f"; dev 95% interval [{precision['ci_low']:.4f}, {precision['ci_high']:.4f}] from "
        f"{precision['rows']:,} rows"
        + (
            f" ({precision['minority_rows']:,} in the rarer class)"
            if "minority_rows" in precision
            else ""
        )
    )
    return text + (": too small to select on" if precision["too_small"] else "")


def _sensitive_note(groups: Mapping[str, Any] | None) -> str:
    notes = []
    for col, entry in (groups or {}).items():
        gaps = {k: v for k, v in entry["gaps"].items() if v is not None}
        shown = ", ".join(f"{RATE_NAMES[k]} gap {v:.3f}" for k, v in gaps.items())
        used = "is a feature" if entry["used_as_feature"] else "is not a feature"
        notes.append(f"sensitive '{col}' {used}" + (f" ({shown} across groups)" if shown else ""))
    return ("; " + "; ".join(notes)) if notes else ""


def judge_slices(metric: str, slices: Mapping[str, Any], gap: Margin) -> tuple[list[str], float]:
    """The judged slices below the floor ``gap``, and the worst gap as judged (in ``gap``'s
    units: a fraction of the constant baseline for RMSE and MAE).

    RMSE and MAE of a slice swing with a few large errors, so for them a slice is judged at
    the better end of its 95% interval; every other metric is judged at the slice's value.
    """
    sign = 1 if HIGHER_IS_BETTER[metric] else -1
    end = ("ci_high" if sign > 0 else "ci_low") if gap.relative else metric
    overall = slices.get("overall")
    below, worst = [], 0.0
    for s in slices.get("slices", []):
        if s["tiny"] or s.get(metric) is None or overall is None:
            continue
        shortfall = sign * (overall - s.get(end, s[metric]))
        worst = max(worst, shortfall / gap.unit if gap.unit else shortfall)
        if shortfall > gap.absolute:
            below.append(f"{s['column']}={s['value']}")
    return below, worst


def compare_with_champion(
    *,
    version: int,
    metric: str,
    task: str,
    y: np.ndarray,
    frame: pd.DataFrame,
    candidate: np.ndarray,
    champion: np.ndarray,
    slice_columns: Sequence[str],
    roles: Mapping[str, str],
    min_improvement: float,
    seed: int = 0,
) -> dict[str, Any]:
    """Candidate vs champion ``version`` on the same rows: overall and slice by slice.

    A slice regresses when the champion's value lies beyond the candidate's 95% bootstrap
    interval on the wrong side; tiny slices are not judged. The candidate beats the champion
    when its improvement reaches ``min_improvement``, read as a
    :class:`~shipyard.evaluation.metrics.Margin` on these rows (for RMSE and MAE, a fraction
    of the constant baseline's value on them).
    """
    columns = list(slice_columns)
    mine = slice_metrics(frame, y, candidate, columns, dict(roles), metric, task, seed=seed)
    theirs = slice_metrics(frame, y, champion, columns, dict(roles), metric, task, seed=seed)
    higher = HIGHER_IS_BETTER[metric]
    regressed, compared = [], 0
    for a, b in zip(mine["slices"], theirs["slices"], strict=True):
        if a["tiny"] or b["tiny"] or a[metric] is None or b[metric] is None:
            continue
        compared += 1
        bound = a.get("ci_high" if higher else "ci_low", a[metric])
        if (b[metric] > bound) if higher else (b[metric] < bound):
            regressed.append(f"{a['column']}={a['value']} ({a[metric]:.4f} vs {b[metric]:.4f})")
    gain = improvement(metric, mine["overall"], theirs["overall"])
    needed = Margin.on(metric, min_improvement, y)
    return {
        "version": version,
        "metric": metric,
        "rows": len(y),
        "candidate": mine["overall"],
        "champion": theirs["overall"],
        "improvement": gain,
        "min_improvement": needed.absolute,
        "min_improvement_rule": needed.rule,
        "beats_champion": bool(gain >= needed.absolute),
        "slices_compared": compared,
        "regressed_slices": regressed,
    }


def _number(value: Any) -> str:
    return "—" if value is None else f"{value:.4f}"


def skew_item(
    frame_output: np.ndarray,
    paths: Mapping[str, np.ndarray],
    refused: Mapping[str, int] | None = None,
) -> Item:
    """Item 6: every path's output against the frame path's, and no row refused.

    >>> skew_item(np.array([0.5]), {"record": np.array([0.5])}).passed
    True
    >>> skew_item(np.array([0.5]), {"batch_csv": np.array([0.6])}).summary
    'paths disagree on 1 held-out rows: batch_csv differs from the frame path by 1.0e-01'
    """
    reference = np.asarray(frame_output, float)
    differences = {name: _max_difference(reference, out) for name, out in paths.items()}
    diff = max(differences.values()) if differences else 0.0
    refused = {k: int(v) for k, v in (refused or {}).items() if v}
    ok = diff <= SKEW_TOLERANCE and not refused
    worst = max(differences, key=differences.__getitem__) if differences else "record"
    return Item(
        6,
        "skew_guarded",
        ok,
        (
            f"frame, {', '.join(differences)} paths agree on {len(reference)} held-out "
            f"rows (max difference {diff:.1e})"
            if ok
            else f"paths disagree on {len(reference)} held-out rows: {worst} differs "
            f"from the frame path by {diff:.1e}"
            + (f"; rows unscored or refused: {refused}" if refused else "")
        ),
        {
            "rows": len(reference),
            "max_difference": diff,
            "differences": differences,
            "refused": refused,
        },
    )


def _max_difference(reference: np.ndarray, other: Any) -> float:
    other = np.asarray(other, float).reshape(reference.shape)
    both_nan = np.isnan(reference) & np.isnan(other)
    gap = np.where(both_nan, 0.0, np.abs(reference - other))
    return float(np.nanmax(np.where(np.isnan(gap), np.inf, gap))) if gap.size else 0.0


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def skew_outputs(bundle: Any, sample: pd.DataFrame) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """The bundle's output on ``sample`` (rows as training's reader typed them) by every
    other path, and how many rows each path left unscored or refused.

    - ``record``: :meth:`Bundle.predict_one`, row by row;
    - ``batch_csv``: the rows written as CSV, read as ``shipyard predict`` reads a CSV
      file (all text), through :func:`~shipyard.batch.score_chunk`;
    - ``service_json`` / ``service_text``: what ``POST /predict`` does with one record (the
      contract's record check, then the arm's ``score``) for the rows as JSON sends them,
      typed and as the CSV's text.
    """
    import orjson

    from shipyard.batch import read_csv_text, score_chunk
    from shipyard.serving.router import Arm

    features = list(bundle.features)
    frame = sample[features].reset_index(drop=True)
    multiclass = bundle.task == "multiclass"
    out: dict[str, np.ndarray] = {
        "record": np.array([bundle.predict_one(r) for r in frame.to_dict("records")])
    }
    refused: dict[str, int] = {}
    text = read_csv_text(frame.to_csv(index=False).encode(), features)
    scored = score_chunk(text, bundle, keep=[], version=None, snapshot="")
    if multiclass:
        batch = np.column_stack(
            [scored.column(f"proba_{c}").to_numpy(zero_copy_only=False) for c in bundle.classes]
        )
    else:
        batch = scored.column("prediction").to_numpy(zero_copy_only=False).astype(float)
    out["batch_csv"] = batch
    refused["batch_csv"] = int(scored.column("prediction").null_count)
    arm = Arm(0, bundle)
    validate = bundle.contract.record_validator(features)
    typed = orjson.loads(
        orjson.dumps([{k: _plain(v) for k, v in r.items()} for r in frame.to_dict("records")])
    )
    for name, records in (("service_json", typed), ("service_text", text.to_pylist())):
        answers, n_refused = [], 0
        for record in records:
            if any(v.severity == "error" for v in validate(record)):
                n_refused += 1
                answers.append([np.nan] * len(bundle.classes) if multiclass else np.nan)
            else:
                answers.append(arm.score(record))
        out[name] = np.array(answers, dtype=float)
        refused[name] = n_refused
    return out, refused
