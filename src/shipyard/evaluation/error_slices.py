"""Error slices: where the model is wrong most, found on the eyeball split.

A search in the manner of SliceLine (Sagadeeva & Boehm, SIGMOD 2021) over slices of one or
two columns: a slice is a value of a column (categories, booleans, a numeric column's
quantile bin learned on train, or ``missing``) or a conjunction of two such values of
different columns. Each row carries an error: log loss for classification (−log of the
probability given to the true class), squared error for regression (absolute error when the
optimizing metric is MAE). A slice ``S`` of ``|S|`` rows among ``n``, with mean error
``ē_S`` against the overall mean ``ē``, scores

    score = α (ē_S / ē − 1) − (1 − α) (n / |S| − 1)

so a slice ranks high when its rows are much worse than average and it is not tiny (α is
:data:`ALPHA`); only slices scoring above zero are reported, best first, except that a
one-column slice moves up to just before a pair holding it (:func:`parents_first`). Pruning
is by size: a value with fewer than ``min_rows`` rows is no candidate, and neither is any
pair holding it (a pair is never larger than its parts). A pair with exactly the rows of one
of its parts adds nothing and is dropped, and so is a pair whose mean error is not at least
:data:`MIN_LIFT` above each part's, or whose rows do not err significantly more than the
rest of each part (a one-sided Welch t-test, as SliceFinder tests slices): the simpler slice
explains it. Slices holding exactly the same rows under other names are reported once. Each
column offers at most :data:`MAX_VALUES` values (its most frequent), so the search costs two
small matrix products whatever the data.

Each reported slice carries its share of the total error, its mean error, and the
optimizing metric with its 95% bootstrap interval (:func:`~shipyard.evaluation.slices.
metric_interval`); where the metric is undefined on the slice (AUC on one class) the per-row
error's own metric (log loss, RMSE, MAE) stands in and ``metric`` says so.
:func:`error_analysis` also returns the worst mispredictions for reading by hand.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from shipyard.evaluation.metrics import EPS, score
from shipyard.evaluation.slices import metric_interval

ALPHA = 0.95
BINS = 5
MAX_VALUES = 12
MIN_LIFT = 0.1
MIN_ROWS = 20
MIN_SHARE = 0.02
SIGNIFICANCE = 0.05
TOP = 10
WORST_ROWS = 50
WORST_FILE = "worst_predictions.csv"
SLICED_ROLES = ("numeric", "categorical", "boolean")
ERRORS = {
    "log_loss": "log loss per row: −log of the probability given to the true class",
    "squared": "squared error per row: (prediction − target)²",
    "absolute": "absolute error per row: |prediction − target|",
}


def row_errors(task: str, metric: str, y: np.ndarray, output: np.ndarray) -> tuple[str, np.ndarray]:
    """The per-row error of this task and metric, and its name (a key of :data:`ERRORS`).

    >>> row_errors("binary", "roc_auc", np.array([1, 0]), np.array([0.5, 0.5]))[1].round(4)
    array([0.6931, 0.6931])
    >>> row_errors("regression", "mae", np.array([1.0, 3.0]), np.array([2.0, 2.0]))
    ('absolute', array([1., 1.]))
    """
    if task == "binary":
        p = np.clip(output.astype(float), EPS, 1 - EPS)
        return "log_loss", -(y * np.log(p) + (1 - y) * np.log(1 - p))
    if task == "multiclass":
        p = output[np.arange(len(y)), y.astype(int)]
        return "log_loss", -np.log(np.clip(p.astype(float), EPS, 1))
    diff = output.astype(float) - y.astype(float)
    return ("absolute", np.abs(diff)) if metric == "mae" else ("squared", diff**2)


def _number(value: float) -> str:
    return f"{value:.6g}"


def learn_bins(train: pd.Series, role: str) -> list[float] | None:
    """Interior quantile edges (:data:`BINS` bins) of a numeric column on the train rows;
    None when the column is sliced by value (not numeric, or at most 8 distinct values).

    >>> learn_bins(pd.Series(range(101)), "numeric")
    [20.0, 40.0, 60.0, 80.0]
    """
    if role != "numeric":
        return None
    values = pd.to_numeric(train, errors="coerce").dropna()
    if values.nunique() <= 8:
        return None
    edges = np.unique(np.quantile(values.to_numpy(dtype=float), np.linspace(0, 1, BINS + 1)))
    inner = [float(f"{e:.10g}") for e in edges[1:-1]]  # 60.00000000000001 is 60
    return inner or None


def bin_labels(series: pd.Series, edges: list[float] | None) -> np.ndarray:
    """The slice value of each row as text: its bin (``"≤ 12"``, ``"(12, 29]"``, ``"> 55"``)
    when ``edges`` are given, else the value itself; nulls are ``"missing"``.

    >>> list(bin_labels(pd.Series([1.0, 15.0, 99.0, None]), [12.0, 29.0]))
    ['≤ 12', '(12, 29]', '> 29', 'missing']
    """
    if edges is None:
        return series.astype(str).where(series.notna(), "missing").to_numpy(dtype=object)
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    names = [
        f"≤ {_number(edges[0])}",
        *(f"({_number(a)}, {_number(b)}]" for a, b in pairwise(edges)),
        f"> {_number(edges[-1])}",
    ]
    codes = np.searchsorted(np.asarray(edges), values, side="left")
    out = np.array(names, dtype=object)[np.minimum(codes, len(names) - 1)]
    out[np.isnan(values)] = "missing"
    return out


def slice_score(errors: np.ndarray, sizes: np.ndarray, n: int, mean: float, alpha: float) -> Any:
    """SliceLine's score of slices with total ``errors`` over ``sizes`` rows (of ``n``).

    >>> slice_score(np.array([20.0]), np.array([10]), 100, 1.0, 0.95).round(4)
    array([0.5])
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return alpha * (errors / sizes / mean - 1) - (1 - alpha) * (n / sizes - 1)


def _candidates(
    frame: pd.DataFrame, train: pd.DataFrame, columns: Sequence[str], roles: Mapping[str, str]
) -> tuple[list[tuple[str, str]], np.ndarray]:
    """The candidate values (column, value) and their row-membership matrix (n × m)."""
    found: list[tuple[str, str]] = []
    blocks = []
    for col in columns:
        edges = learn_bins(train[col], roles.get(col, "categorical")) if col in train else None
        labels = bin_labels(frame[col], edges)
        counts = pd.Series(labels).value_counts(sort=True)
        for value in counts.index[:MAX_VALUES]:
            found.append((col, str(value)))
            blocks.append(labels == value)
    matrix = np.column_stack(blocks) if blocks else np.zeros((len(frame), 0), dtype=bool)
    return found, matrix


def _search(
    matrix: np.ndarray,
    owners: np.ndarray,
    errors: np.ndarray,
    min_rows: int,
    alpha: float,
) -> list[tuple[float, tuple[int, ...], int, float]]:
    """The slices scoring above zero, best first: (score, candidate indices, rows, error
    sum)."""
    n = len(errors)
    mean = float(errors.mean())
    sizes = matrix.sum(axis=0)
    sums = errors @ matrix
    keep = np.flatnonzero(sizes >= min_rows)
    found: list[tuple[float, tuple[int, ...], int, float]] = []
    scores1 = slice_score(sums[keep], sizes[keep], n, mean, alpha)
    found += [
        (float(sc), (int(j),), int(sizes[j]), float(sums[j]))
        for sc, j in zip(scores1, keep, strict=True)
    ]
    if len(keep) > 1:
        part = matrix[:, keep].astype(float)
        sizes2 = (part.T @ part).round().astype(int)
        sums2 = part.T @ (part * errors[:, None])
        a, b = np.triu_indices(len(keep), k=1)
        parents = np.minimum(sizes[keep][a], sizes[keep][b])
        rates = sums[keep] / sizes[keep]
        with np.errstate(divide="ignore", invalid="ignore"):
            rate2 = sums2[a, b] / sizes2[a, b]
        ok = (
            (owners[keep][a] != owners[keep][b])
            & (sizes2[a, b] >= min_rows)
            & (sizes2[a, b] < parents)  # the same rows as a part: nothing new
            # barely worse than a part: the simpler slice explains it
            & (rate2 >= (1 + MIN_LIFT) * np.maximum(rates[a], rates[b]))
        )
        a, b = a[ok], b[ok]
        scores2 = slice_score(sums2[a, b], sizes2[a, b], n, mean, alpha)
        found += [
            (float(sc), (int(keep[i]), int(keep[j])), int(sizes2[i, j]), float(sums2[i, j]))
            for sc, i, j in zip(scores2, a, b, strict=True)
        ]
    found = [f for f in found if math.isfinite(f[0]) and f[0] > 0]
    # best score first; ties: fewer columns, then more rows
    found.sort(key=lambda f: (-f[0], len(f[1]), -f[2]))
    return found


def error_analysis(
    frame: pd.DataFrame,
    y: np.ndarray,
    output: np.ndarray,
    *,
    train: pd.DataFrame,
    columns: Sequence[str],
    roles: Mapping[str, str],
    metric: str,
    task: str,
    classes: Sequence[Any],
    target: str,
    rows: np.ndarray | None = None,
    split: str = "dev_eyeball",
    seed: int = 0,
    alpha: float = ALPHA,
    top: int = TOP,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Rank the error slices of one split and pick its worst mispredictions.

    Parameters
    ----------
    frame
        The split's rows: the columns to slice over and the inputs shown in the sample.
    y, output
        The encoded target and the model's output on those rows (as served).
    train
        The train rows; numeric columns are binned by their quantiles here.
    columns
        The columns to slice over; those whose role is not numeric, categorical or boolean
        are skipped.
    roles
        Column roles.
    metric, task
        The optimizing metric and the task (binary, multiclass, regression).
    classes
        Class labels in the order of the encoded target (the sample shows labels).
    target
        The target's name (the sample's label column).
    rows
        Row numbers in the dataset, shown first in the sample when given.
    split, seed, alpha, top
        The split's name, the bootstrap seed, SliceLine's α, how many slices to keep.

    Returns
    -------
    dict
        ``split``, ``rows``, ``error`` (what the per-row error is), ``overall`` (its mean),
        ``slices`` (ranked: ``columns``, ``values``, ``rows``, ``share_of_error``, ``error``,
        ``metric``, ``value``, ``lower``, ``upper``, ``score``), ``worst`` (the sample's file
        name), and the search's ``alpha``, ``min_rows`` and ``columns``.
    pandas.DataFrame
        The :data:`WORST_ROWS` rows of largest error, worst first: row number, inputs, label,
        prediction (P(positive), the predicted class, or the value) and error.
    """
    n = len(y)
    kind, errors = row_errors(task, metric, y, output)
    sliced = [c for c in columns if c in frame and roles.get(c, "categorical") in SLICED_ROLES]
    min_rows = max(MIN_ROWS, math.ceil(MIN_SHARE * n))
    doc: dict[str, Any] = {
        "split": split,
        "rows": int(n),
        "error": ERRORS[kind],
        "overall": float(errors.mean()) if n else None,
        "slices": [],
        "worst": WORST_FILE,
        "alpha": alpha,
        "min_rows": min_rows,
        "columns": sliced,
    }
    worst = _worst(frame, y, output, errors, task, classes, target, rows)
    total = float(errors.sum()) if n else 0.0
    if n == 0 or total <= 0:
        return doc, worst
    found, matrix = _candidates(frame, train, sliced, roles)
    owners = np.array([sliced.index(col) for col, _ in found], dtype=int)
    fallback = {"log_loss": "log_loss", "squared": "rmse", "absolute": "mae"}[kind]
    seen: set[bytes] = set()
    for sc, members, size, err in _search(matrix, owners, errors, min_rows, alpha):
        inside = np.logical_and.reduce([matrix[:, j] for j in members])
        rows_key = np.packbits(inside).tobytes()
        if rows_key in seen:  # the same rows under other names (no internet → no streaming)
            continue
        seen.add(rows_key)
        if len(members) == 2 and not _worse_than_its_parts(inside, members, matrix, errors):
            continue
        ys, ss = y[inside], output[inside]
        used = metric
        interval = metric_interval(metric, ys, ss, seed=seed)
        if interval is None:
            used, interval = fallback, metric_interval(fallback, ys, ss, seed=seed)
        low, high = interval if interval is not None else (None, None)
        doc["slices"].append(
            {
                "columns": [found[j][0] for j in members],
                "values": [found[j][1] for j in members],
                "rows": size,
                "share_of_error": err / total,
                "error": err / size,
                "metric": used,
                "value": score(used, ys, ss),
                "lower": low,
                "upper": high,
                "score": sc,
            }
        )
        if len(doc["slices"]) == top:
            break
    doc["slices"] = parents_first(doc["slices"])
    return doc, worst


def parents_first(slices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Slices in score order, except that a one-column slice holding a pair listed before it
    moves up to just before that pair: the simpler description is read first.

    >>> pair = {"columns": ["a", "b"], "values": ["1", "2"]}
    >>> part = {"columns": ["b"], "values": ["2"]}
    >>> parents_first([pair, {"columns": ["c"], "values": ["3"]}, part]) == [part, pair, {
    ...     "columns": ["c"], "values": ["3"]}]
    True
    """
    out: list[dict[str, Any]] = []
    placed: set[int] = set()
    for i, entry in enumerate(slices):
        if i in placed:
            continue
        if len(entry["columns"]) == 2:
            for j in range(i + 1, len(slices)):
                other = slices[j]
                if j not in placed and len(other["columns"]) == 1:
                    part = (other["columns"][0], other["values"][0])
                    if part in zip(entry["columns"], entry["values"], strict=True):
                        out.append(other)
                        placed.add(j)
        out.append(entry)
        placed.add(i)
    return out


def _worse_than_its_parts(
    inside: np.ndarray, members: tuple[int, ...], matrix: np.ndarray, errors: np.ndarray
) -> bool:
    """Whether a pair's rows err more than the rest of each of its parts: a one-sided Welch
    t-test at :data:`SIGNIFICANCE` (SliceFinder's test), so that a pair is not reported for
    what its part alone explains."""
    from scipy import stats  # imported here: scipy.stats alone costs a second at start-up

    for j in members:
        rest = errors[matrix[:, j] & ~inside]
        if len(rest) < 2:
            return False
        test = stats.ttest_ind(errors[inside], rest, equal_var=False, alternative="greater")
        if not test.pvalue < SIGNIFICANCE:
            return False
    return True


def _worst(
    frame: pd.DataFrame,
    y: np.ndarray,
    output: np.ndarray,
    errors: np.ndarray,
    task: str,
    classes: Sequence[Any],
    target: str,
    rows: np.ndarray | None,
) -> pd.DataFrame:
    order = np.argsort(-errors, kind="stable")[:WORST_ROWS]
    out = frame.iloc[order].reset_index(drop=True)
    if rows is not None:
        out.insert(0, "row", np.asarray(rows)[order])
    labels = np.asarray(classes, dtype=object)
    if task == "regression":
        out[target] = y[order]
        out["prediction"] = output[order]
    elif task == "binary":
        out[target] = labels[y[order].astype(int)]
        out["prediction"] = output[order]  # P(positive)
    else:
        out[target] = labels[y[order].astype(int)]
        out["prediction"] = labels[output[order].argmax(axis=1)] if len(order) else []
        out["probability_of_label"] = output[order, y[order].astype(int)] if len(order) else []
    out["error"] = errors[order]
    return out
