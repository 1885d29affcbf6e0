"""Model performance once labels arrive: the realized metric, the calibration back-test,
and the metric-drop rule.

Every function returns rows of the shared results table; ``window_start``, ``window_end``,
``model_version`` and (unless ``arms`` is given) ``arm`` are the monitor's to fill.

- :func:`realized` (section ``"performance"``): the optimizing metric over the labeled rows of
  a window, overall, per slice value (column ``"<slice>=<value>"``) and per arm, each with the
  95% bootstrap interval of :func:`~shipyard.evaluation.slices.metric_interval` (100
  resamples), the labeled rows (``"rows"``) and the labeled share of the predictions.
- :func:`calibration_backtest` (section ``"calibration"``): per equal-width probability bin
  (column ``"bin[0.7,0.8)"``) the mean predicted probability, the observed rate with its 95%
  Wilson interval and the rows ("when it says 80%, does it happen 80% of the time?"); then
  the expected calibration error (``"ece"``) with a bootstrap interval and the p-value of a
  calibrated model reaching it, and its change from the test ECE at train.
- :func:`metric_drop`: the alert rule for a realized (or estimated) metric against the
  reference's test value.

Performance before labels (CBPE) is :mod:`shipyard.monitoring.estimation`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from shipyard.data.contract import category_key
from shipyard.errors import DataError, UsageError
from shipyard.evaluation.calibration import curve_ece, ece, reliability, wilson_interval
from shipyard.evaluation.metrics import (
    HIGHER_IS_BETTER,
    RELATIVE_METRICS,
    TASK_METRICS,
    score,
)
from shipyard.evaluation.slices import MIN_MINORITY, MIN_ROWS, N_BOOT, metric_interval, slice_groups
from shipyard.monitoring.estimation import compare_estimate, estimate
from shipyard.monitoring.summary import as_numbers
from shipyard.monitoring.table import WINDOW, check_length, probabilities, result_row

N_DRAWS = 200  # bootstrap resamples and calibrated label draws behind the ECE test
NOT_JUDGED = "not judged"  # what a tiny slice's note ends with: no drop rule applies to it


def _encode(task: str, y_true: Any, classes: Sequence[Any]) -> np.ndarray:
    """Labels as the metrics read them (class codes, 0/1 or values), NaN where missing."""
    if task == "regression" or not classes:
        values, invalid = as_numbers(np.asarray(y_true, dtype=object))
        if invalid:
            raise DataError(
                f"'y_true' holds {invalid} values that are not numbers; pass `classes` to "
                "read class labels, or the encoded outcomes (0/1 for a binary target)."
            )
        if task != "regression":
            whole = np.isnan(values) | ((values >= 0) & (values == np.round(values)))
            known = whole & (np.isnan(values) | (values <= 1) | (task == "multiclass"))
            if not known.all():
                raise DataError(
                    f"'y_true' must hold class codes (0 or 1 for a binary target); got "
                    f"{values[~known][0]!r}. Pass `classes` to read class labels."
                )
        return values
    position = {category_key(c): float(i) for i, c in enumerate(classes)}
    series = pd.Series(np.asarray(y_true, dtype=object))
    missing = series.isna().to_numpy()
    keys = series.map(lambda v: None if v is None or v != v else category_key(v))
    codes = keys.map(position).to_numpy(dtype=float)
    unknown = np.isnan(codes) & ~missing
    if unknown.any():
        raise DataError(
            f"'y_true' holds {int(unknown.sum())} labels that are not classes of the model "
            f"(first: {series[unknown].iloc[0]!r}); its classes are {list(classes)}."
        )
    return codes


# --- realized ---------------------------------------------------------------------------


def _defined(metric: str, y: np.ndarray) -> bool:
    if len(y) == 0:
        return False
    return metric not in ("roc_auc", "pr_auc") or len(np.unique(y)) > 1


def _tiny(task: str, y: np.ndarray) -> bool:
    if task == "regression":
        return len(y) < MIN_ROWS
    return len(y) < MIN_ROWS or int(np.bincount(y.astype(int), minlength=2).min()) < MIN_MINORITY


def _realized_rows(
    task: str,
    metric: str,
    y: np.ndarray,
    s: np.ndarray,
    column: str,
    predictions: int,
    seed: int,
) -> list[dict[str, Any]]:
    labeled = ~np.isnan(y)
    ys, ss = y[labeled], s[labeled]
    n = len(ys)
    share = n / predictions if predictions else float("nan")
    where = f"slice {column}" if column else "the window"
    rows = [
        result_row("performance", column, "rows", n, note="labeled rows"),
        result_row(
            "performance",
            column,
            "labeled_share",
            share,
            level="ok" if predictions else "empty",
            note=f"{n:,} of {predictions:,} predictions have a label",
        ),
    ]
    if not _defined(metric, ys):
        why = "no labeled rows" if n == 0 else "only one class among the labels"
        rows.insert(
            0,
            result_row(
                "performance",
                column,
                metric,
                float("nan"),
                level="empty",
                note=f"{metric} is not computable on {where}: {why}",
            ),
        )
        return rows
    codes = ys if task == "regression" else ys.astype(int)
    value = score(metric, codes, ss)
    interval = metric_interval(metric, codes, ss, seed=seed)
    note = f"{metric} on {n:,} labeled rows; 95% bootstrap interval ({N_BOOT} resamples)"
    if _tiny(task, codes):
        note += f"; tiny (under {MIN_ROWS} rows or {MIN_MINORITY} of a class): {NOT_JUDGED}"
    lower, upper = interval if interval is not None else (None, None)
    rows.insert(
        0, result_row("performance", column, metric, value, lower=lower, upper=upper, note=note)
    )
    return rows


def realized(
    task: str,
    metric: str,
    y_true: Any,
    scores: Any,
    *,
    classes: Sequence[Any] = (),
    slices: Mapping[str, Any] | None = None,
    arms: Any = None,
    n_predictions: int | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """The optimizing metric on the labeled predictions of one window (section "performance").

    ``y_true`` holds one label per prediction, missing (None or NaN) where none has arrived:
    class labels when ``classes`` (the bundle's, in order) is given, else the encoded
    outcomes (0/1, class codes, values). ``scores`` is the model's output as served
    (P(positive), class probabilities, values). Each of ``slices`` (name → one value per
    prediction) is cut as at ``train`` (:func:`~shipyard.evaluation.slices.slice_groups`):
    one row set per value, column ``"<name>=<value>"``. With ``arms`` (one arm per
    prediction) every row is computed per arm and carries its ``"arm"``; without, the rows
    are the window's. ``n_predictions`` is the labeled share's denominator when ``y_true``
    holds only the labeled rows (default: the rows passed).

    >>> rows = realized("binary", "accuracy", [0, 1, 1, None], [0.2, 0.9, 0.4, 0.7])
    >>> [(r["statistic"], round(r["value"], 3)) for r in rows]
    [('accuracy', 0.667), ('rows', 3.0), ('labeled_share', 0.75)]
    """
    if metric not in TASK_METRICS.get(task, ()):
        raise UsageError(
            f"metric '{metric}' is not one of task '{task}': use one of "
            f"{list(TASK_METRICS.get(task, ()))}."
        )
    s = np.asarray(scores, dtype=float)
    y = _encode(task, y_true, classes)
    check_length(len(s), y_true=y, arms=arms, **dict(slices or {}))
    groups: list[tuple[str | None, np.ndarray]] = [(None, np.ones(len(s), bool))]
    if arms is not None:
        arm_values = np.asarray(arms, dtype=object).astype(str)
        groups = [(str(a), arm_values == a) for a in pd.unique(arm_values)]
    out: list[dict[str, Any]] = []
    for arm, mask in groups:
        found = _realized_rows(
            task,
            metric,
            y[mask],
            s[mask],
            "",
            n_predictions if n_predictions is not None and arm is None else int(mask.sum()),
            seed,
        )
        for name, values in (slices or {}).items():
            series = pd.Series(np.asarray(values, dtype=object)[mask]).infer_objects()
            role = "numeric" if pd.api.types.is_numeric_dtype(series) else "categorical"
            cut = slice_groups(series, role).to_numpy()
            for value in pd.unique(cut):
                rows = cut == value
                found += _realized_rows(
                    task,
                    metric,
                    y[mask][rows],
                    s[mask][rows],
                    f"{name}={value}",
                    int(rows.sum()),
                    seed,
                )
        if arm is not None:
            for row in found:
                row["arm"] = arm
        out += found
    return out


# --- calibration back-test --------------------------------------------------------------


def _bin_label(lo: float, hi: float) -> str:
    return f"bin[{lo:g},{hi:g}]" if hi >= 1 else f"bin[{lo:g},{hi:g})"


def _ece_of(bins: np.ndarray, gap: np.ndarray, weights: np.ndarray, n_bins: int) -> float:
    """ECE from each row's bin and ``p - y``, rows counted ``weights`` times: per bin the
    count-weighted |mean predicted - observed| is |Σ w (p - y)|, so ECE = Σ_b |Σ w (p-y)| / Σ w."""
    return float(
        np.abs(np.bincount(bins, weights=weights * gap, minlength=n_bins)).sum() / weights.sum()
    )


def calibration_backtest(
    y_true: Any,
    p: Any,
    bins: int = 10,
    *,
    max_ece: float = 0.1,
    alpha: float = 0.01,
    reference: Sequence[Mapping[str, float]] = (),
    n_draws: int = N_DRAWS,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Predicted against observed per probability bin, and ECE (section "calibration").

    ``y_true`` is the 0/1 outcome (missing where no label arrived: those rows are left out),
    ``p`` the served P(positive); for multiclass, ``y_true`` the class codes and ``p`` the
    class probabilities, judged by the top class's confidence against being right, as
    :func:`~shipyard.evaluation.calibration.reliability` does. ``reference`` is the stored
    test calibration curve (``Reference.calibration``): its ECE is reported beside.

    Per bin: ``predicted_mean``, ``observed_rate`` (its 95% Wilson interval as lower/upper;
    level ``"warn"`` when the predicted mean lies outside the interval AND the gap is over
    ``max_ece``) and ``rows``. Then ``ece``: its value (equal-width bins, count-weighted), a
    bootstrap 95% interval (``n_draws`` resamples), and as p-value the share of ``n_draws``
    label draws from Bernoulli(p) — a perfectly calibrated model on these same probabilities
    — whose ECE reaches it (ECE is biased upward on few rows, so size alone misleads). Level
    ``"alert"`` when ECE is over ``max_ece`` AND the p-value is under ``alpha``; ``"warn"``
    when only the first holds. Then ``ece_increase``: ECE minus the reference's test ECE.
    """
    y = np.asarray(y_true, dtype=float)
    prob = probabilities(p, "p")
    check_length(len(prob), y_true=y)
    keep = ~np.isnan(y)
    y, prob = y[keep], prob[keep]
    if prob.ndim == 2:  # top-label confidence against being right
        y = (prob.argmax(axis=1) == y).astype(float)
        prob = prob.max(axis=1)
    if len(y) == 0:
        return [
            result_row(
                "calibration", "", "ece", float("nan"), level="empty", note="no labeled rows"
            )
        ]
    out: list[dict[str, Any]] = []
    for b in reliability(y, prob, bins):
        column = _bin_label(b["lo"], b["hi"])
        observed, count = b["observed"], b["count"]
        low, high = wilson_interval(observed * count, count)
        off = not (low <= b["predicted"] <= high) and abs(b["predicted"] - observed) > max_ece
        out += [
            result_row(
                "calibration",
                column,
                "predicted_mean",
                b["predicted"],
                note="mean predicted probability",
            ),
            result_row(
                "calibration",
                column,
                "observed_rate",
                observed,
                lower=float(low),
                upper=float(high),
                level="warn" if off else "ok",
                note=f"observed rate, 95% Wilson interval; predicted {b['predicted']:.3f}"
                + (" lies outside it" if off else ""),
            ),
            result_row("calibration", column, "rows", count, note="labeled rows in the bin"),
        ]
    value = ece(y, prob, bins)
    index = np.minimum((prob * bins).astype(int), bins - 1)
    rng = np.random.default_rng(seed)
    n = len(y)
    null = np.array(
        [_ece_of(index, prob - (rng.random(n) < prob), np.ones(n), bins) for _ in range(n_draws)]
    )
    boot = np.array(
        [
            _ece_of(
                index, prob - y, np.bincount(rng.integers(0, n, n), minlength=n).astype(float), bins
            )
            for _ in range(n_draws)
        ]
    )
    pvalue = (1 + int((null >= value).sum())) / (1 + n_draws)
    low, high = np.quantile(boot, [0.025, 0.975])
    over = value > max_ece
    level = "alert" if over and pvalue < alpha else "warn" if over else "ok"
    ref_ece = curve_ece(reference) if reference else float("nan")
    held = "over" if over else "within"
    note = (
        f"ECE over {bins} equal-width bins on {n:,} labeled rows, {held} max {max_ece:g}; "
        f"p-value: share of {n_draws} calibrated label draws reaching it"
        + (f" (test ECE at train: {ref_ece:.4f})" if reference else "")
    )
    out.append(
        result_row(
            "calibration",
            "",
            "ece",
            value,
            lower=low,
            upper=high,
            pvalue=pvalue,
            level=level,
            note=note,
        )
    )
    if reference:
        out.append(
            result_row(
                "calibration",
                "",
                "ece_increase",
                value - ref_ece,
                note=f"ECE now minus the test ECE at train ({ref_ece:.4f})",
            )
        )
    return out


# --- judging --------------------------------------------------------------------------


def metric_drop(
    reference_value: float,
    row: Mapping[str, Any],
    max_drop: float,
    higher_is_better: bool | None = None,
) -> dict[str, Any]:
    """How far a realized (or estimated) metric fell from the reference's test value, and
    whether that alerts (statistic ``"<metric>_drop"``, in the row's section).

    ``max_drop`` is in the metric's units, except for ``rmse`` and ``mae``, where it is a
    fraction of the reference value. value = the drop (positive = worse); lower/upper = the
    drop at the interval's two ends. Level ``"alert"`` when the interval's better end (upper
    for higher-is-better metrics, lower otherwise) still shows a drop over ``max_drop``: the
    drop is then over the floor at the interval's confidence, so a noisy small window cannot
    alert by chance. ``"warn"`` when only the point estimate does (or there is no interval);
    ``"empty"`` when the value is not computable. The reference value's own test-set error is
    not counted.

    >>> row = {"statistic": "roc_auc", "value": 0.70, "lower": 0.66, "upper": 0.74}
    >>> drop = metric_drop(0.85, row, 0.05)
    >>> round(drop["value"], 2), drop["level"]
    (0.15, 'alert')
    """
    metric = str(row["statistic"])
    if higher_is_better is None:
        higher_is_better = HIGHER_IS_BETTER.get(metric, True)
    floor = max_drop * abs(reference_value) if metric in RELATIVE_METRICS else max_drop
    sign = 1.0 if higher_is_better else -1.0
    value = float(row["value"])
    keep = {k: row[k] for k in (*WINDOW, "section", "column") if k in row}
    section = str(keep.pop("section", "performance"))
    column = str(keep.pop("column", ""))
    if not np.isfinite(value):
        return {
            **keep,
            **result_row(
                section,
                column,
                f"{metric}_drop",
                float("nan"),
                level="empty",
                note=f"{metric} not computable",
            ),
        }
    drop = sign * (reference_value - value)
    low: float | None = None
    high: float | None = None
    ends = [row.get("lower"), row.get("upper")]
    if all(e is not None and np.isfinite(e) for e in ends):
        low, high = sorted(sign * (reference_value - float(e)) for e in ends)  # type: ignore[arg-type]
        level = "alert" if low > floor else "warn" if drop > floor else "ok"
        judged = f"the interval's better end shows a drop of {low:.4f}"
    else:
        level = "warn" if drop > floor else "ok"
        judged = "no interval: judged on the point estimate"
    note = (
        f"{metric} {value:.4f} against {reference_value:.4f} at train: drop {drop:.4f}, "
        f"max {floor:.4g}; {judged}"
    )
    return {
        **keep,
        **result_row(
            section, column, f"{metric}_drop", drop, lower=low, upper=high, level=level, note=note
        ),
    }


# --- the monitor's hook -----------------------------------------------------------------

MATURE_SHARE = 0.5  # labeled share from which a window's metric is judged


def _window_labels(labels: Any, ids: np.ndarray, task: str) -> np.ndarray:
    """The label of each request id (class text, or the value for regression), or None."""
    frame = labels.select(["request_id", "label", "outcome"]).to_pandas()
    frame = frame[frame["request_id"].notna()]
    by_id = frame.set_index("request_id")["outcome" if task == "regression" else "label"]
    found = by_id.reindex(pd.Index(ids, dtype=object))
    return found.astype(object).where(found.notna(), None).to_numpy()


def _slice_drop(test: Mapping[str, Any], row: Mapping[str, Any], max_drop: float) -> dict[str, Any]:
    """:func:`metric_drop` of a slice against its test value at train, taken at the end of
    the test value's 95% interval nearest the live one (the lower end for higher-is-better
    metrics): a slice's test rows are few, so its own sampling error is counted too."""
    metric = str(row["statistic"])
    higher = HIGHER_IS_BETTER.get(metric, True)
    lenient = float(test["lower"] if higher else test["upper"])
    drop = metric_drop(lenient, row, max_drop, higher)
    drop["note"] += (
        f"; the slice's test value at train {float(test['value']):.4f} "
        f"[{float(test['lower']):.4f}, {float(test['upper']):.4f}], compared at its "
        f"{'lower' if higher else 'upper'} end"
    )
    return drop


def rows(context: Any) -> list[dict[str, Any]]:
    """Everything this module and CBPE say about one window of one version and arm, as
    ``shipyard monitor`` calls it (its ``WindowContext``: ``request_ids``, ``scores`` one
    column per prediction column, ``reference``, ``labels`` from ``read_labels``,
    ``drifted``, ``spec``; optional, aligned with ``request_ids``: ``features``, a frame
    holding the ``[features] slices`` and ``sensitive`` columns, which adds the per-slice
    metrics, and ``outside``, whether each row had an input outside the reference's
    support, whose share CBPE reports and warns on; ``test_slices``, each slice's test
    metrics at train).

    Always: the CBPE estimate (binary) and the realized rows (metric, labeled rows and
    share), overall and per slice. Once the window has matured — at least
    :data:`MATURE_SHARE` (half) of its answered predictions labeled — also the metric drop
    against the test value at train (``[monitoring] max_metric_drop``), overall and for
    each slice that is not tiny now nor was at train (:func:`_slice_drop`), the
    calibration back-test (``max_calibration_error``, ``alpha``) and, for binary tasks, the
    estimate on the labeled rows beside the realized value.
    """
    ref, spec = context.reference, context.spec
    task, metric, classes = ref.task, spec.objective.metric, ref.classes
    policy = getattr(spec, "monitoring", None)
    max_drop = getattr(policy, "max_metric_drop", 0.05)
    max_ece = getattr(policy, "max_calibration_error", 0.1)
    alpha = getattr(policy, "alpha", 0.01)
    scores = np.asarray(context.scores, dtype=float).reshape(len(context.request_ids), -1)
    answered = ~np.isnan(scores).any(axis=1)
    s = scores[answered] if task == "multiclass" else scores[answered, 0]
    y_true = _window_labels(context.labels, np.asarray(context.request_ids)[answered], task)
    features = getattr(context, "features", None)
    slices = None
    if isinstance(features, pd.DataFrame):
        check_length(len(answered), features=features)
        features = features[answered].reset_index(drop=True)
        wanted = [*spec.features.slices, *spec.features.sensitive]
        slices = {c: features[c].to_numpy() for c in dict.fromkeys(wanted) if c in features}
    flags = getattr(context, "outside", None)
    outside = None
    if flags is not None:
        check_length(len(answered), outside=flags)
        outside = float(np.mean(np.asarray(flags, bool)[answered])) if answered.any() else None
    out: list[dict[str, Any]] = []
    if task == "binary":
        out += estimate(
            task,
            metric,
            s,
            calibration=ref.calibration,
            drifted=context.drifted,
            outside_share=outside,
        )
    found = realized(task, metric, y_true, s, classes=classes, slices=slices)
    out += found
    y = _encode(task, y_true, classes)
    labeled = ~np.isnan(y)
    if not len(y) or labeled.mean() < MATURE_SHARE:
        return out
    test_value = ref.metrics.get("test", {}).get(metric)
    if test_value is not None:
        out.append(metric_drop(float(test_value), found[0], max_drop))
    tests = getattr(context, "test_slices", None) or {}
    for row in found:
        test = tests.get(row["column"]) if row["column"] else None
        if test is None or test["metric"] != metric or row["statistic"] != metric:
            continue
        if NOT_JUDGED not in row["note"]:
            out.append(_slice_drop(test, row, max_drop))
    if task != "regression":
        out += calibration_backtest(y, s, max_ece=max_ece, alpha=alpha, reference=ref.calibration)
    if task == "binary":
        on_labeled = estimate(task, metric, s[labeled], calibration=ref.calibration)
        out += compare_estimate(on_labeled, [r for r in found if r["column"] == ""])
    return out
