"""Slice metrics: the optimizing metric per value of each slice and sensitive column.

Numeric columns are cut into quartiles of the evaluated rows. Each slice reports its size,
the metric and a bootstrap confidence interval; slices too small to judge are marked
``tiny`` rather than hidden, and left out of the worst-slice gap.

:func:`group_rates` adds, for the sensitive columns, what the metric alone hides: per group
the target rate, the predicted positive rate and the false positive and false negative rates
(binary), the error rate (multiclass) or the mean error (regression), and the largest gap
between judged groups. :func:`metric_interval` is the same bootstrap interval for any rows
(``train`` reads the blackbox dev part's with it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from shipyard.data.association import ordered_auc
from shipyard.evaluation.metrics import HIGHER_IS_BETTER, score

MIN_ROWS = 50
MIN_MINORITY = 5
N_BOOT = 100


def slice_groups(series: pd.Series, role: str) -> pd.Series:
    """The slice each row falls in: a numeric column with more than 8 values by the quartiles
    of these rows (``"(29.0, 55.0]"``), any other column by its value as text; nulls are
    ``"missing"``."""
    if role == "numeric":
        series = pd.to_numeric(series, errors="coerce")  # text that holds numbers, too
    if role == "numeric" and series.nunique() > 8:
        edges = np.unique(
            np.nanquantile(series.to_numpy(dtype=float, na_value=np.nan), [0, 0.25, 0.5, 0.75, 1])
        )
        if len(edges) > 2:
            labels = pd.cut(series, edges, include_lowest=True, duplicates="drop").astype(str)
            return labels.where(series.notna(), "missing")
    return series.astype(str).where(series.notna(), "missing")


def _defined(metric: str, y: np.ndarray) -> bool:
    if metric in ("roc_auc", "pr_auc"):
        return len(np.unique(y)) > 1
    return len(y) > 1


def _bootstrap_auc(
    y: np.ndarray, s: np.ndarray, rng: np.random.Generator, draws: int
) -> list[float]:
    """AUC of ``draws`` bootstrap resamples, each as weights on one sort of the slice.

    Resampling n rows with replacement is the same as giving each row a count drawn from a
    multinomial; AUC with tied scores grouped is then two weighted cumulative sums, O(n) per
    resample instead of a sort.
    """
    order = np.argsort(s, kind="mergesort")
    y_sorted, s_sorted = y[order].astype(float), s[order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    out = []
    for _ in range(draws):
        counts = np.bincount(rng.integers(0, len(y), len(y)), minlength=len(y))[order]
        pos = np.add.reduceat(counts * y_sorted, starts)
        neg = np.add.reduceat(counts * (1 - y_sorted), starts)
        if pos.sum() and neg.sum():
            out.append(ordered_auc(pos, neg))
    return out


def bootstrap(
    metric: str, y: np.ndarray, s: np.ndarray, rng: np.random.Generator, draws: int = N_BOOT
) -> list[float]:
    """``metric`` on ``draws`` bootstrap resamples of these rows (``rng`` draws each as
    ``integers(0, n, n)``), leaving out the resamples it is undefined on (one class)."""
    if metric == "roc_auc" and s.ndim == 1:
        return _bootstrap_auc(y, s, rng, draws)
    boots = []
    for _ in range(draws):
        b = rng.integers(0, len(y), len(y))
        if _defined(metric, y[b]):
            boots.append(score(metric, y[b], s[b]))
    return boots


def _interval(
    metric: str, y: np.ndarray, s: np.ndarray, rng: np.random.Generator
) -> tuple[float, float] | None:
    """The 95% bootstrap interval of ``metric`` on these rows (None when undefined)."""
    boots = bootstrap(metric, y, s, rng)
    if not boots:
        return None
    low, high = np.quantile(boots, [0.025, 0.975])
    return float(low), float(high)


def metric_interval(
    metric: str, y: np.ndarray, s: np.ndarray, seed: int = 0
) -> tuple[float, float] | None:
    """The 95% bootstrap interval (N_BOOT resamples) of ``metric`` on rows ``y``, ``s``.

    >>> low, high = metric_interval("accuracy", np.array([0, 1] * 50), np.full(100, 0.7))
    >>> round(low, 2), round(high, 2)
    (0.4, 0.59)
    """
    if not _defined(metric, y):
        return None
    return _interval(metric, y, s, np.random.default_rng(seed))


def slice_metrics(
    frame: pd.DataFrame,
    y: np.ndarray,
    s: np.ndarray,
    columns: list[str],
    roles: dict[str, str],
    metric: str,
    task: str,
    seed: int = 0,
) -> dict[str, Any]:
    """Per slice: rows, metric, 95% bootstrap interval, tiny flag; plus the worst gap."""
    rng = np.random.default_rng(seed)
    overall = score(metric, y, s)
    slices = []
    for col in columns:
        groups = slice_groups(frame[col], roles.get(col, "categorical")).to_numpy()
        for value in pd.unique(groups):
            idx = np.flatnonzero(groups == value)
            ys, ss = y[idx], s[idx]
            minority = (
                int(np.bincount(ys.astype(int)).min())
                if task != "regression" and len(np.unique(ys)) > 1
                else (0 if task != "regression" else len(ys))
            )
            tiny = len(idx) < MIN_ROWS or (task != "regression" and minority < MIN_MINORITY)
            entry: dict[str, Any] = {
                "column": col,
                "value": str(value),
                "rows": len(idx),
                "tiny": tiny,
            }
            if _defined(metric, ys):
                entry[metric] = score(metric, ys, ss)
                interval = _interval(metric, ys, ss, rng)
                if interval is not None:
                    entry["ci_low"], entry["ci_high"] = interval
            else:
                entry[metric] = None
                entry["tiny"] = True
            slices.append(entry)
    judged = [e for e in slices if not e["tiny"] and e[metric] is not None]
    sign = 1 if HIGHER_IS_BETTER[metric] else -1
    gaps = [sign * (overall - e[metric]) for e in judged]
    worst = max(gaps, default=0.0)
    worst_slice = judged[int(np.argmax(gaps))] if judged else None
    return {
        "metric": metric,
        "overall": overall,
        "slices": slices,
        "worst_gap": float(worst),
        "worst_slice": None
        if worst_slice is None
        else {"column": worst_slice["column"], "value": worst_slice["value"]},
    }


def _rate(hits: np.ndarray, among: np.ndarray) -> float | None:
    return float(hits[among].mean()) if among.any() else None


def group_rates(
    frame: pd.DataFrame,
    y: np.ndarray,
    s: np.ndarray,
    columns: list[str],
    roles: dict[str, str],
    task: str,
    features: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """Per group of each column: target and error rates, and the largest gap between groups.

    Binary: ``target_rate`` (actual positives), ``predicted_rate`` (scores ≥ 0.5, the
    threshold the accuracy and F1 metrics use), ``fpr`` (false positive rate, among actual
    negatives) and ``fnr`` (false negative rate, among actual positives). Multiclass:
    ``error_rate`` (arg-max label wrong). Regression: ``target_mean``, ``prediction_mean`` and
    ``mean_error`` (prediction − target: negative means under-predicted). Gaps are max − min
    over groups that are not ``tiny`` (as :func:`slice_metrics` judges them).
    """
    out: dict[str, Any] = {}
    for col in columns:
        groups = slice_groups(frame[col], roles.get(col, "categorical")).to_numpy()
        entries = []
        for value in pd.unique(groups):
            idx = groups == value
            ys, ss = y[idx], s[idx]
            entry: dict[str, Any] = {"value": str(value), "rows": int(idx.sum())}
            if task == "binary":
                pred = ss >= 0.5
                actual = ys == 1
                entry.update(
                    target_rate=float(actual.mean()),
                    predicted_rate=float(pred.mean()),
                    fpr=_rate(pred, ~actual),
                    fnr=_rate(~pred, actual),
                )
                minority = int(min(actual.sum(), (~actual).sum()))
            elif task == "multiclass":
                entry["error_rate"] = float((ss.argmax(axis=1) != ys).mean())
                minority = int(np.bincount(ys.astype(int)).min()) if len(np.unique(ys)) > 1 else 0
            else:
                entry.update(
                    target_mean=float(ys.mean()),
                    prediction_mean=float(ss.mean()),
                    mean_error=float((ss - ys).mean()),
                )
                minority = len(ys)
            entry["tiny"] = bool(len(ys) < MIN_ROWS or minority < MIN_MINORITY)
            entries.append(entry)
        rates = {
            "binary": ("target_rate", "predicted_rate", "fpr", "fnr"),
            "multiclass": ("error_rate",),
            "regression": ("mean_error",),
        }[task]
        gaps = {}
        for key in rates:
            judged = [e[key] for e in entries if not e["tiny"] and e[key] is not None]
            gaps[key] = float(max(judged) - min(judged)) if len(judged) > 1 else None
        out[col] = {"used_as_feature": col in features, "groups": entries, "gaps": gaps}
    return out
