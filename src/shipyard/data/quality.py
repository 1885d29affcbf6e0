"""Data quality checks: what is wrong with a table before anything is fitted on it.

Each check returns :class:`~shipyard.data.finding.Finding` objects with the evidence
computed from the data and what to do. :func:`quality_findings` runs them all.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from shipyard.data.association import Target, power_of_codes
from shipyard.data.dataset import Dataset
from shipyard.data.finding import Finding, finding_factory
from shipyard.data.roles import is_string_like
from shipyard.data.values import UNKNOWN_ORDER, date_format

SMALL_DATA_ROWS = 1_000
NEAR_CONSTANT_SHARE = 0.99
IMBALANCE_RATIO = 2.5
HIGH_CARDINALITY = 100
VERY_HIGH_CARDINALITY = 1_000
MISSING_EXPLAINED_AUC = 0.7
SIGNIFICANCE = 0.01
DATE_SCREEN = 200  # distinct values looked at before a column is read as dates
# implausible_zeros: zeros at most this share of a column's values, ...
RARE_ZERO_SHARE = 0.05
# ... with the smallest positive value at least this share of the positive median, ...
ZERO_FAR_FROM_MEDIAN = 0.25
# ... and at least this many times the step between the smallest distinct positive values
ZERO_FAR_IN_STEPS = 10
# extreme_values: this many bulk widths (median to the 0.1th or 99.9th percentile) beyond it
EXTREME_WIDTHS = 10
EXAMPLES = 5


_f = finding_factory("quality")


def check_rows(ds: Dataset) -> list[Finding]:
    n, m = ds.raw.shape
    out = [
        _f("row_count", "info", f"{n:,} rows and {m} columns", "nothing to do", rows=n, n_columns=m)
    ]
    if n < SMALL_DATA_ROWS:
        out.append(
            _f(
                "small_data",
                "warning",
                f"only {n:,} rows: dev and test metrics will be noisy",
                "collect more rows, and read confidence intervals rather than point metrics",
                rows=n,
            )
        )
    if ds.missing_target:
        target = ds.spec.project.target
        out.append(
            _f(
                "missing_target",
                "warning",
                f"{ds.missing_target:,} rows ({ds.missing_target / n:.1%}) have no value in the "
                f"target '{target}'",
                "these rows are left out of every check and of training; "
                "label them or confirm they are unlabeled on purpose",
                [target],
                rows=ds.missing_target,
                rate=round(ds.missing_target / n, 6),
            )
        )
    return out


def _target_relation(missing: np.ndarray, target: Target) -> tuple[float, str]:
    """p-value and a description of how the target differs where a column is missing."""
    from scipy import stats  # imported here: scipy.stats alone costs a second at start-up

    y = target.y
    if target.kind == "regression":
        a, b = y[missing], y[~missing]
        p = float(stats.mannwhitneyu(a, b).pvalue) if len(a) and len(b) else 1.0
        return p, f"target mean {a.mean():.4g} where missing vs {b.mean():.4g} elsewhere"
    table = pd.crosstab(missing, y).to_numpy()
    p = (
        float(stats.chi2_contingency(table)[1])
        if table.shape == (2, table.shape[1]) and table.shape[1] > 1
        else 1.0
    )
    if target.kind == "binary":
        return (
            p,
            f"positive rate {y[missing].mean():.1%} where missing vs {y[~missing].mean():.1%} elsewhere",
        )
    return p, "class mix differs where missing" if p < SIGNIFICANCE else "class mix similar"


def check_missing(ds: Dataset) -> list[Finding]:
    """Nulls per column, and whether missingness relates to the target or to other columns."""
    out = []
    frame, sample = ds.frame, ds.sample
    null_counts = frame.isna().sum()
    sample_nulls = {c: sample[c].isna().to_numpy() for c in frame.columns}
    target_col = ds.spec.project.target
    for col in frame.columns:
        n_null = int(null_counts[col])
        if not n_null or col == target_col:
            continue
        rate = n_null / len(frame)
        p_value, relation = _target_relation(frame[col].isna().to_numpy(), ds.target)
        with_target = p_value < SIGNIFICANCE
        miss = sample[col].isna().to_numpy()
        together, best_col, best_auc = [], None, 0.5
        if 0 < miss.sum() < len(miss):
            indicator = Target("binary", miss.astype(np.int8), ds.sample_target.folds)
            for other in frame.columns:
                if other in (col, target_col) or ds.role[other] in ("index", "constant"):
                    continue
                other_miss = sample_nulls[other]
                overlap = (miss & other_miss).sum() / max((miss | other_miss).sum(), 1)
                if overlap >= 0.5:
                    together.append(other)  # missing in the same rows: a pattern, not a cause
                    continue
                _, value = power_of_codes(ds.sample_codes(other), indicator)
                if value > best_auc:
                    best_col, best_auc = other, value
        explained = best_auc >= MISSING_EXPLAINED_AUC
        if explained and with_target:
            hint = (
                f"MAR: explained by '{best_col}' (AUC {best_auc:.2f}), and it carries signal "
                "about the target"
            )
        elif explained:
            hint = f"MAR: explained by '{best_col}' (AUC {best_auc:.2f}), unrelated to the target"
        elif with_target:
            hint = "possibly MNAR: related to the target and explained by no other column"
        else:
            hint = "consistent with MCAR: related neither to the target nor to other columns"
        if together:
            hint += f"; missing in mostly the same rows as {', '.join(together)}"
        action = (
            "keep a missing-indicator feature (shipyard's transform adds one) rather than "
            "dropping rows"
            if with_target
            else "impute from the training split (shipyard does, with a missing indicator)"
        )
        if rate > 0.5:
            action = "mostly missing: consider dropping the column; otherwise " + action
        out.append(
            _f(
                "missing_values",
                "warning" if rate > 0.05 or with_target else "info",
                f"column '{col}' is missing in {n_null:,} rows ({rate:.2%}); {hint}",
                action,
                [col],
                rows=n_null,
                rate=round(rate, 6),
                mechanism=hint.split(":")[0],
                target_relation=relation,
                target_p_value=p_value,
                explained_by=best_col if explained else None,
                explained_auc=round(best_auc, 4),
                missing_together_with=together,
            )
        )
    return out


def check_duplicates(ds: Dataset) -> list[Finding]:
    out = []
    n = len(ds.frame)
    dup_rows = int(pd.Series(ds.row_hashes).duplicated().sum())
    if dup_rows:
        out.append(
            _f(
                "duplicate_rows",
                "warning",
                f"{dup_rows:,} rows ({dup_rows / n:.2%}) are exact copies of an earlier row",
                "remove them if they are collection artifacts; shipyard's splits keep copies "
                "on one side",
                rows=dup_rows,
                rate=round(dup_rows / n, 6),
            )
        )
    features = pd.Series(ds.feature_hashes)
    y = pd.Series(ds.frame[ds.spec.project.target].astype(str).to_numpy())
    labels = y.groupby(features.to_numpy()).nunique()
    conflicting = labels[labels > 1]
    if len(conflicting):
        rows = int(features.isin(conflicting.index).sum())
        out.append(
            _f(
                "conflicting_duplicates",
                "warning",
                f"{len(conflicting):,} sets of identical feature rows ({rows:,} rows) carry "
                "different targets",
                "check the labels; the features cannot tell these "
                "rows apart, which caps any model's accuracy",
                groups=len(conflicting),
                rows=rows,
            )
        )
    key = ds.spec.project.id
    if key:
        counts = ds.frame[key].value_counts()
        repeated = counts[counts > 1]
        if len(repeated):
            out.append(
                _f(
                    "duplicate_keys",
                    "info",
                    f"{len(repeated):,} of {len(counts):,} values of the entity key '{key}' "
                    f"appear on more than one row (up to {int(counts.max()):,} rows)",
                    "expected for repeated events of one entity; splits keep each entity on "
                    "one side",
                    [key],
                    keys=len(repeated),
                    max_rows=int(counts.max()),
                )
            )
    return out


def check_constant(ds: Dataset) -> list[Finding]:
    out = []
    for col, prof in ds.profiles.items():
        if col == ds.spec.project.target:
            continue
        if prof.role == "constant":
            value = ds.frame[col].dropna().iloc[0] if ds.frame[col].notna().any() else None
            out.append(
                _f(
                    "constant_column",
                    "warning",
                    f"column '{col}' holds a single value ({value})"
                    if value is not None
                    else f"column '{col}' is empty in every row",
                    "drop it: it carries no information (shipyard leaves it out)",
                    [col],
                    value=None if value is None else str(value),
                )
            )
            continue
        top = ds.frame[col].value_counts(dropna=False, normalize=True)
        if len(top) and top.iloc[0] >= NEAR_CONSTANT_SHARE:
            out.append(
                _f(
                    "near_constant_column",
                    "info",
                    f"column '{col}' has one value in {top.iloc[0]:.2%} of rows",
                    "it can only help on the rare rows; check it earns its place",
                    [col],
                    top_value=str(top.index[0]),
                    share=round(float(top.iloc[0]), 6),
                )
            )
    return out


def check_balance(ds: Dataset) -> list[Finding]:
    if not ds.spec.is_classification:
        return []
    target = ds.spec.project.target
    counts = ds.frame[target].value_counts()
    shares = counts / counts.sum()
    evidence = {str(k): int(v) for k, v in counts.items()}
    text = ", ".join(f"{k}: {v:.1%}" for k, v in shares.items())
    ratio = counts.iloc[0] / counts.iloc[-1]
    if ratio >= IMBALANCE_RATIO:
        # training.py weights classes only for f1 (a thresholded metric): ranking metrics and
        # log loss do better on unweighted, calibrated probabilities
        metric = ds.spec.objective.metric
        weighting = (
            "shipyard weights the classes inside the training split, because the metric is f1"
            if metric == "f1"
            else f"shipyard does not weight the classes for metric {metric} (it does only for "
            "f1, which thresholds predictions)"
        )
        return [
            _f(
                "class_imbalance",
                "warning",
                f"target '{target}' is imbalanced ({text}); a constant guess of "
                f"'{counts.index[0]}' is {shares.iloc[0]:.1%} accurate",
                f"judge models by roc_auc, pr_auc or log_loss, not accuracy; {weighting}",
                [target],
                counts=evidence,
                majority_to_minority=round(float(ratio), 3),
            )
        ]
    return [
        _f(
            "class_balance",
            "info",
            f"target '{target}' classes: {text}",
            "nothing to do",
            [target],
            counts=evidence,
        )
    ]


def check_cardinality(ds: Dataset) -> list[Finding]:
    out = []
    for col, prof in ds.profiles.items():
        if prof.role != "categorical" or prof.n_unique <= HIGH_CARDINALITY:
            continue
        severity = "warning" if prof.n_unique > VERY_HIGH_CARDINALITY else "info"
        out.append(
            _f(
                "high_cardinality",
                severity,
                f"categorical column '{col}' has {prof.n_unique:,} distinct values",
                'set [features] unknown = "hash" (the hashing trick) or group rare values; '
                "rare categories fall into the unknown bucket otherwise",
                [col],
                n_unique=prof.n_unique,
            )
        )
    return out


def check_mixed_types(ds: Dataset) -> list[Finding]:
    """String columns holding a mix of numbers and text, or of Python types."""
    out = []
    for col in ds.frame.columns:
        series = ds.frame[col]
        if not is_string_like(series) or ds.role.get(col) == "datetime":
            continue
        values = series.dropna()
        if values.empty:
            continue
        inferred = pd.api.types.infer_dtype(values, skipna=True)
        counts = values.astype(str).str.strip().value_counts()
        parsed = pd.to_numeric(pd.Series(counts.index), errors="coerce").to_numpy()
        is_number = ~np.isnan(parsed)
        share = float(counts.to_numpy()[is_number].sum() / counts.sum())
        if inferred.startswith("mixed") or 0.5 <= share < 1.0:
            odd = counts.index[~is_number] if share >= 0.5 else counts.index[is_number]
            out.append(
                _f(
                    "mixed_types",
                    "warning",
                    f"column '{col}' mixes types: {share:.1%} of values are numbers, the "
                    f"rest are not (e.g. {[str(v) for v in odd[:3]]})",
                    "fix the odd values at the source, or declare the column categorical",
                    [col],
                    numeric_share=round(share, 6),
                    odd_rows=int(counts[odd].sum()),
                    examples=[str(v) for v in odd[:5]],
                    inferred_type=inferred,
                )
            )
    return out


def _date_formats(counts: pd.Series) -> tuple[dict[str, dict[str, Any]], int, list[str]]:
    """Rows and examples per written date format of a column's distinct values (numeric
    dates of unknown day/month order read in the order the column's other dates settle,
    if they settle one); how many rows hold no date, and the commonest of those values."""
    formats: dict[str, dict[str, Any]] = {}
    undated, odd = 0, list[str]()
    for value, rows in counts.items():
        label = date_format(str(value))
        if label is None:
            undated += int(rows)
            if len(odd) < 5:
                odd.append(str(value))
            continue
        entry = formats.setdefault(label, {"rows": 0, "examples": []})
        entry["rows"] += int(rows)
        if len(entry["examples"]) < 3:
            entry["examples"].append(str(value))
    for label in [k for k in formats if k.endswith(UNKNOWN_ORDER)]:
        day_first, month_first = label.removesuffix(UNKNOWN_ORDER).split(" or ")
        known = [order for order in (day_first, month_first) if order in formats]
        if len(known) == 1:  # the column's other dates settle the order: read these so
            undecided = formats.pop(label)
            formats[known[0]]["rows"] += undecided["rows"]
            examples = formats[known[0]]["examples"]
            examples += undecided["examples"][: 3 - len(examples)]
    return dict(sorted(formats.items(), key=lambda kv: -kv[1]["rows"])), undated, odd


def check_date_formats(ds: Dataset) -> list[Finding]:
    """Text columns of dates written in several formats, or mostly dates with some values
    that are not: read as they are, they become a category (or silently NaT)."""
    out = []
    for col in ds.frame.columns:
        series = ds.frame[col]
        if col == ds.spec.project.target or not is_string_like(series):
            continue
        values = series.dropna()
        screen = values.head(20 * DATE_SCREEN).unique()[:DATE_SCREEN]  # cheap: most are not
        if not len(screen) or sum(date_format(str(v)) is not None for v in screen) < 0.3 * len(
            screen
        ):
            continue
        counts = values.astype(str).str.strip().value_counts()
        formats, undated, odd = _date_formats(counts)
        total = int(counts.sum())
        dated = total - undated
        if dated < 0.5 * total or (len(formats) < 2 and undated == 0):
            continue  # not mostly dates, or one clean format
        conflict = _both_orders(formats)  # then no numeric date's reading can be trusted
        ambiguous = sum(
            v["rows"]
            for k, v in formats.items()
            if k.endswith(UNKNOWN_ORDER) or (conflict and k.startswith(("DD", "MM")))
        )
        seen = ", ".join(
            f"{label} ({v['rows']:,} rows, e.g. '{v['examples'][0]}')"
            for label, v in formats.items()
        )
        not_dates = f"; {undated:,} rows are not dates (e.g. {odd[:3]})" if undated else ""
        order = (
            f"; day and month cannot be told apart in {ambiguous:,} rows, so no reading of "
            "them is safe"
            if ambiguous
            else ""
        )
        out.append(
            _f(
                "mixed_date_formats",
                "error" if ambiguous else "warning",
                f"column '{col}' holds dates written in {len(formats)} format"
                f"{'s' if len(formats) != 1 else ''}: {seen}{not_dates}{order}. Read as is, "
                + (
                    "its values that are not dates become missing"
                    if ds.role.get(col) == "datetime"
                    else f"it is a '{ds.role.get(col)}' column of {len(counts):,} distinct values"
                ),
                "normalize the dates upstream to one format (ISO 8601, YYYY-MM-DD; where day "
                "and month are numbers, the source must say which comes first), or declare "
                "what the column is: list it in [features] exclude if it is not a feature"
                + (
                    ", or train over it deliberately with --ignore-findings mixed_date_formats "
                    "(it stays a category)"
                    if ambiguous
                    else ""
                ),
                [col],
                formats=formats,
                undated_rows=undated,
                undated_examples=odd,
                ambiguous_rows=ambiguous,
                dated_share=round(dated / total, 6),
                role=ds.role.get(col),
            )
        )
    return out


def _both_orders(formats: dict[str, Any]) -> bool:
    """Day-first and month-first numeric dates in one column: each reading contradicts the
    other, so neither can be trusted."""
    day_first = any(k.startswith("DD") and not k.endswith(UNKNOWN_ORDER) for k in formats)
    month_first = any(k.startswith("MM") and not k.endswith(UNKNOWN_ORDER) for k in formats)
    return day_first and month_first


def check_text(ds: Dataset) -> list[Finding]:
    return [
        _f(
            "free_text",
            "info",
            f"column '{col}' looks like free text",
            "it is left out of features; derive features from it deliberately",
            [col],
        )
        for col, prof in ds.profiles.items()
        if prof.role == "text"
    ]


def check_freshness(ds: Dataset, now: datetime | None = None) -> list[Finding]:
    time_col = ds.spec.project.time
    if not time_col:
        return []
    stamps = ds.stamps(time_col)
    if stamps.notna().sum() == 0:
        return [
            _f(
                "unparseable_time",
                "error",
                f"time column '{time_col}' holds no parseable dates",
                "point project.time at a date or timestamp column",
                [time_col],
            )
        ]
    newest = stamps.max()
    now = now or datetime.now(UTC)
    age_days = (pd.Timestamp(now) - newest).total_seconds() / 86400
    limit = ds.spec.constraints.max_data_age_days
    evidence = {"newest": newest.isoformat(), "age_days": round(age_days, 2), "limit_days": limit}
    if limit is not None and age_days > limit:
        return [
            _f(
                "stale_data",
                "warning",
                f"the newest row ('{time_col}' = {newest:%Y-%m-%d}) is {age_days:,.0f} days old, "
                f"over max_data_age_days = {limit:g}",
                "get fresher data before training a model for production, or raise the limit "
                "deliberately",
                [time_col],
                **evidence,
            )
        ]
    return [
        _f(
            "freshness",
            "info",
            f"the newest row ('{time_col}' = {newest:%Y-%m-%d}) is {age_days:,.0f} days old",
            "set [constraints] max_data_age_days to guard freshness"
            if limit is None
            else "nothing to do",
            [time_col],
            **evidence,
        )
    ]


def check_association(ds: Dataset) -> list[Finding]:
    ranked = [
        {"column": c, "metric": p.metric, "value": round(p.value, 4), "power": round(p.power, 4)}
        for c, p in ds.powers.items()
    ]
    top = ", ".join(f"{r['column']} ({r['metric']} {r['value']:.3f})" for r in ranked[:5])
    return [
        _f(
            "association",
            "info",
            f"strongest single columns: {top}",
            "read this ranking for surprises: a top column you would not have at prediction "
            "time is a leak",
            ranking=ranked,
        )
    ]


def _row_examples(ds: Dataset, col: str, rows: np.ndarray) -> list[dict[str, object]]:
    """The first rows of ``rows`` as {row, value}: row numbers of the data file (from 0)."""
    labels = ds.frame.index[rows[:EXAMPLES]]
    values = ds.frame[col].to_numpy()[rows[:EXAMPLES]]
    return [{"row": int(r), "value": float(v)} for r, v in zip(labels, values, strict=True)]


def check_implausible(ds: Dataset) -> list[Finding]:
    """Values a user would want flagged as physically impossible or implausible.

    Two rules, on every numeric column (the target too):

    ``implausible_zeros``: zeros in a column whose other values are all positive, when the
    zeros are rare (at most ``RARE_ZERO_SHARE`` of the values) *and* sit far below the bulk:
    the smallest positive value is at least ``ZERO_FAR_FROM_MEDIAN`` of the positive median
    and at least ``ZERO_FAR_IN_STEPS`` times the median step between the smallest distinct
    positive values. A diamond 0 mm wide (smallest other width 3.73, in steps of 0.01) is
    flagged. Naturally zero-inflated columns are not: counts (the next value, 1, is one step
    away), money (the smallest positive amount is tiny against the median), and any column
    where zero is common (tenure 0, no purchases, no debt).

    ``extreme_values``: values more than ``EXTREME_WIDTHS`` bulk widths beyond the 99.9th
    percentile (or below the 0.1th), a bulk width being the distance from the median to that
    percentile. A diamond 58.9 mm deep whose 99.9th percentile is 8.87 (median 5.71) is
    flagged, as are sentinel codes (999999 in a column of tens); long natural tails (incomes,
    delays) stay within it.
    """
    out = []
    for col, prof in ds.profiles.items():
        if prof.role != "numeric" or is_string_like(ds.frame[col]):
            continue
        values = pd.to_numeric(ds.frame[col], errors="coerce").to_numpy(
            dtype=float, na_value=np.nan
        )
        valid = np.isfinite(values)
        v = values[valid]
        if len(v) < 20:
            continue
        zero = valid & (values == 0)
        n_zero = int(zero.sum())
        positive = v[v != 0]
        if n_zero and len(positive) and positive.min() > 0 and n_zero <= RARE_ZERO_SHARE * len(v):
            smallest = float(positive.min())
            median = float(np.median(positive))
            distinct = np.unique(positive)
            low_end = distinct[: max(len(distinct) // 10, 2)]
            step = float(np.median(np.diff(low_end))) if len(low_end) > 1 else smallest
            if smallest >= ZERO_FAR_FROM_MEDIAN * median and smallest >= ZERO_FAR_IN_STEPS * step:
                rows = np.flatnonzero(zero)
                examples = _row_examples(ds, col, rows)
                out.append(
                    _f(
                        "implausible_zeros",
                        "warning",
                        f"column '{col}' is 0 in {n_zero:,} rows (e.g. rows "
                        f"{', '.join(str(e['row']) for e in examples)}) while every other value "
                        f"is positive, the smallest {smallest:g} (median {median:g}): likely a "
                        "missing value recorded as 0, or a measuring error",
                        f"set these zeros to missing (shipyard imputes them with a missing "
                        f"indicator) or fix them at the source; if 0 is a real '{col}', ignore "
                        "this",
                        [col],
                        rows=n_zero,
                        rate=round(n_zero / len(v), 6),
                        smallest_positive=smallest,
                        positive_median=median,
                        low_end_step=step,
                        examples=examples,
                    )
                )
        q_low, median, q_high = (float(q) for q in np.quantile(v, [0.001, 0.5, 0.999]))
        high = q_high + EXTREME_WIDTHS * (q_high - median)
        low = q_low - EXTREME_WIDTHS * (median - q_low)
        beyond = valid & (
            ((values > high) & (q_high > median)) | ((values < low) & (q_low < median))
        )
        if beyond.any():
            rows = np.flatnonzero(beyond)
            rows = rows[np.argsort(-np.abs(values[rows] - median), kind="stable")]
            examples = _row_examples(ds, col, rows)
            out.append(
                _f(
                    "extreme_values",
                    "warning",
                    f"column '{col}' has {len(rows):,} value{'s' if len(rows) > 1 else ''} far "
                    "beyond the bulk: "
                    + ", ".join(f"{e['value']:g} (row {e['row']})" for e in examples)
                    + f"; over {EXTREME_WIDTHS}× as far past the 0.1–99.9th percentiles "
                    f"[{q_low:g}, {q_high:g}] as they lie from the median {median:g}",
                    "check them at the source: a unit slip, a typo or a sentinel code (999, -1) "
                    "for missing; fix them or set them to missing before training",
                    [col],
                    rows=len(rows),
                    percentile_0_1=q_low,
                    median=median,
                    percentile_99_9=q_high,
                    low_limit=low,
                    high_limit=high,
                    examples=examples,
                )
            )
    return out


def check_sensitive(ds: Dataset) -> list[Finding]:
    """A column declared sensitive ([features] sensitive) that is also a feature."""
    out = []
    y = ds.target.y
    for col in ds.spec.features.sensitive:
        if col in ds.spec.features.exclude and col in ds.frame.columns:
            out.append(
                _f(
                    "sensitive_excluded",
                    "info",
                    f"sensitive column '{col}' is also in [features] exclude: it is not a "
                    "feature, so swapping it (`train`'s invariance test, readiness item 10) "
                    "changes nothing by construction and proves nothing about columns that "
                    "stand in for it",
                    "keep it excluded if the model must not use it; its slice metrics and "
                    "per-group positive and error rates are still reported, and they are what "
                    "shows a dependence through other columns",
                    [col],
                )
            )
            continue
        if col not in ds.candidates or col not in ds.frame.columns:
            continue
        groups = ds.frame[col].astype(str).where(ds.frame[col].notna(), "missing").to_numpy()
        names, inverse = np.unique(groups, return_inverse=True)
        rows = np.bincount(inverse, minlength=len(names))
        if ds.target.kind == "binary":
            rate = np.bincount(inverse, weights=y, minlength=len(names)) / rows
            label = f"rate of '{ds.positive}'"
        elif ds.target.kind == "regression":
            rate = np.bincount(inverse, weights=y, minlength=len(names)) / rows
            label = f"mean '{ds.spec.project.target}'"
        else:
            rate = None
            label = ""
        order = np.argsort(-rows)[:EXAMPLES]
        per_group = {
            str(names[i]): {"rows": int(rows[i])}
            | ({} if rate is None else {"target": round(float(rate[i]), 6)})
            for i in order
        }
        shown = ", ".join(
            f"{names[i]} {rate[i]:.3g}" if rate is not None else f"{names[i]} ({rows[i]:,} rows)"
            for i in order
        )
        power = ds.powers.get(col)
        out.append(
            _f(
                "sensitive_feature",
                "warning",
                f"sensitive column '{col}' is used as a feature: the model can condition on it "
                "directly"
                + (f" ({power.metric} {power.value:.3f} on its own)" if power else "")
                + (f"; {label} by group: {shown}" if rate is not None else f"; groups: {shown}"),
                f"exclude '{col}' in [features] exclude unless using it is intended and allowed; "
                "either way `train` reports, per group, the positive and error rates (false "
                "positive and false negative rates) beside the slice metrics, and readiness "
                "says the column is a feature",
                [col],
                groups=per_group,
                power=None if power is None else round(power.value, 4),
            )
        )
    return out


def quality_findings(ds: Dataset, now: datetime | None = None) -> list[Finding]:
    """Every data quality check on a dataset."""
    return [
        *check_rows(ds),
        *check_missing(ds),
        *check_duplicates(ds),
        *check_constant(ds),
        *check_balance(ds),
        *check_cardinality(ds),
        *check_mixed_types(ds),
        *check_date_formats(ds),
        *check_implausible(ds),
        *check_sensitive(ds),
        *check_text(ds),
        *check_freshness(ds, now),
        *check_association(ds),
    ]
