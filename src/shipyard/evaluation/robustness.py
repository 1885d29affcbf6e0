"""Robustness, invariance and directional tests of the chosen model on the test split.

``train`` runs :func:`robustness` once the bundle is written, through the bundle's own
``predict`` (transform, model and calibrator: what is served), on at most ``[robustness]
rows`` test rows drawn with the ``[split] seed``. Every variant of the sample is scored in
one call, so the cost is one prediction over (variants × rows) rows. Three tables:

- ``perturbation``: per feature and perturbation, the metric on the perturbed sample and its
  change from the clean sample, and the mean absolute change of the prediction. Numeric
  features get Gaussian noise at each ``noise`` level (in the feature's train standard
  deviations); every feature is set missing; categorical features get a value never seen in
  training (``unseen``) and a seen value drawn at random for each row (``corrupted``);
  boolean features are flipped (``corrupted``).
- ``invariance``: per ``[features] sensitive`` column, the attribute is swapped (a
  categorical or boolean column: every row gets another observed value) or resampled (a
  numeric column: a permutation of its values), and the change of the prediction is
  summarized: its quantiles, its mean, and the share of rows changed by more than
  ``tolerance``. A column that is not a feature is swapped too, in the frame the model is
  given, so the test shows the served path ignores it.
- ``directional``: per ``[[expectations]]`` entry, every sampled row's feature is moved up
  by ``step`` train standard deviations; a row whose prediction moves against the declared
  direction by more than ``tolerance`` is a violation. Violations are counted and the worst
  are listed as examples.

``tolerance`` is in probability for classifiers and in the train target's standard
deviations for regression (:func:`tolerance_unit`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from shipyard.errors import DataError
from shipyard.evaluation.metrics import HIGHER_IS_BETTER, score
from shipyard.spec import Expectation, RobustnessSection

UNSEEN = "__shipyard_unseen__"
EXAMPLES = 5
SWAP_MAX_VALUES = 20  # a sensitive column with more values is resampled, not swapped

Predict = Callable[[pd.DataFrame], np.ndarray]


def check_expectations(
    expectations: Sequence[Expectation], features: Sequence[str], roles: Mapping[str, str]
) -> None:
    """Refuse an expectation on a column that is not a numeric feature (before training).

    Raises
    ------
    DataError
        Naming the ``expectations[N].feature`` key, the column and what to do.
    """
    problems = []
    for n, e in enumerate(expectations):
        key = f"'expectations[{n}].feature' = {e.feature!r}"
        if e.feature not in features:
            problems.append(
                f"{key} is not a feature of this model (features: {', '.join(features[:20])}"
                f"{' …' if len(features) > 20 else ''}); name a feature or remove the expectation"
            )
        elif roles.get(e.feature) != "numeric":
            problems.append(
                f"{key} is a {roles.get(e.feature)} feature; a direction can be checked on a "
                "numeric feature only (it is moved up by [robustness] step)"
            )
    if problems:
        raise DataError("\n".join(problems) + "\nFix [[expectations]] in shipyard.toml.")


def sample_rows(n: int, rows: int, seed: int) -> np.ndarray:
    """At most ``rows`` of ``n`` row positions, drawn with ``seed``, in order."""
    if n <= rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, rows, replace=False))


def tolerance_unit(task: str, y_train: np.ndarray) -> float:
    """What one unit of ``tolerance`` is: 1 (probability) for classifiers, the train
    target's standard deviation for regression."""
    if task != "regression":
        return 1.0
    spread = float(np.std(np.asarray(y_train, dtype=float)))
    return spread if spread > 0 else 1.0


def spreads(train: pd.DataFrame, roles: Mapping[str, str]) -> dict[str, float]:
    """The train standard deviation of every numeric feature (0 when constant)."""
    out = {}
    for col in train.columns:
        if roles.get(col) == "numeric":
            values = pd.to_numeric(train[col], errors="coerce")
            sd = values.std()
            out[col] = float(sd) if pd.notna(sd) else 0.0
    return out


def _change(base: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Per row, the prediction's change (multiclass: the largest change of a class's
    probability, unsigned)."""
    if base.ndim == 2:
        return np.abs(other - base).max(axis=1)
    return other - base


def _numbers(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series, errors="coerce").astype(float)


def _observed(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The column's observed values and their frequencies."""
    counts = series.dropna().value_counts()
    return counts.index.to_numpy(dtype=object), (counts / counts.sum()).to_numpy()


def _other_values(series: pd.Series, rng: np.random.Generator) -> pd.Series:
    """Every row given an observed value other than its own, drawn by frequency (a null
    row gets any observed value)."""
    values, freq = _observed(series)
    if len(values) < 2:
        return series.copy()
    current = series.to_numpy(dtype=object)
    out = current.copy()
    codes = pd.Index(values).get_indexer(current)  # -1: null
    for code in np.unique(codes):
        rows = np.flatnonzero(codes == code)
        p = freq.copy()
        if code >= 0:
            p[code] = 0.0
        out[rows] = values[rng.choice(len(values), size=len(rows), p=p / p.sum())]
    return pd.Series(out, index=series.index)


def _perturbations(
    frame: pd.DataFrame,
    features: Sequence[str],
    roles: Mapping[str, str],
    spread: Mapping[str, float],
    levels: Sequence[float],
    rng: np.random.Generator,
) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """Each perturbation's description and the perturbed copy of ``frame``."""
    out: list[tuple[dict[str, Any], pd.DataFrame]] = []

    def add(col: str, kind: str, level: float | None, rows: int, values: Any) -> None:
        moved = frame.copy()
        moved[col] = values
        out.append(({"feature": col, "perturbation": kind, "level": level, "rows": rows}, moved))

    for col in features:
        role = roles.get(col, "categorical")
        present = int(frame[col].notna().sum())
        if role == "numeric" and spread.get(col, 0.0) > 0:
            numbers = _numbers(frame[col])
            for level in levels:
                add(
                    col,
                    "noise",
                    level,
                    present,
                    numbers + rng.normal(0, level * spread[col], len(frame)),
                )
        add(col, "missing", None, len(frame), np.nan if role in ("numeric", "boolean") else None)
        if role == "categorical":
            add(col, "unseen", None, len(frame), UNSEEN)
        if role in ("categorical", "boolean"):
            other = _other_values(frame[col].astype(object), rng)
            add(col, "corrupted", None, present, other.astype(frame[col].dtype).to_numpy())
    return out


def _swapped(
    frame: pd.DataFrame, col: str, role: str, rng: np.random.Generator
) -> tuple[str, pd.DataFrame]:
    """The sensitive column swapped (few values) or resampled (a permutation)."""
    out = frame.copy()
    if role != "numeric" and frame[col].nunique() <= SWAP_MAX_VALUES:
        swapped = _other_values(frame[col].astype(object), rng).to_numpy()
        out[col] = pd.Series(swapped, index=frame.index).astype(frame[col].dtype)
        return "swap", out
    out[col] = frame[col].to_numpy()[rng.permutation(len(frame))]
    return "resample", out


def _distribution(change: np.ndarray) -> dict[str, float]:
    size = np.abs(change)
    p50, p90, p99 = np.quantile(size, [0.5, 0.9, 0.99])
    return {
        "mean_change": float(change.mean()),
        "p50_abs_change": float(p50),
        "p90_abs_change": float(p90),
        "p99_abs_change": float(p99),
        "max_abs_change": float(size.max()),
    }


def robustness(
    predict: Predict,
    frame: pd.DataFrame,
    y: np.ndarray,
    *,
    features: Sequence[str],
    roles: Mapping[str, str],
    spread: Mapping[str, float],
    metric: str,
    task: str,
    sensitive: Sequence[str],
    expectations: Sequence[Expectation],
    settings: RobustnessSection,
    unit: float = 1.0,
    seed: int = 0,
) -> dict[str, Any]:
    """The three tables (see the module docstring) on a sample of the test split.

    ``frame`` holds the test rows (the features, and any sensitive column that is not one),
    ``y`` their encoded target; ``predict`` is the bundle's. ``spread`` is each numeric
    feature's train standard deviation (:func:`spreads`), ``unit`` what one unit of
    ``tolerance`` is (:func:`tolerance_unit`). Sampling and noise use ``seed``, reported.
    """
    rng = np.random.default_rng(seed)
    picked = sample_rows(len(frame), settings.rows, seed)
    base = frame.iloc[picked].reset_index(drop=True)
    ys = y[picked]
    tolerance = settings.tolerance * unit
    variants: list[tuple[str, dict[str, Any], pd.DataFrame]] = [
        ("perturbation", info, moved)
        for info, moved in _perturbations(base, features, roles, spread, settings.noise, rng)
    ]
    for col in sensitive:
        method, swapped = _swapped(base, col, roles.get(col, "categorical"), rng)
        info: dict[str, Any] = {"column": col, "method": method, "used_as_feature": col in features}
        variants.append(("invariance", info, swapped))
    moved_values: dict[str, pd.Series] = {}
    for e in expectations:
        step = settings.step * spread.get(e.feature, 0.0)
        moved_values[e.feature] = _numbers(base[e.feature]) + step
        moved = base.copy()
        moved[e.feature] = moved_values[e.feature]
        expected: dict[str, Any] = {"feature": e.feature, "direction": e.direction, "step": step}
        variants.append(("directional", expected, moved))
    scored = _score_together(predict, [base, *(v[2] for v in variants)])
    clean, outputs = scored[0], scored[1:]
    scorable = len(ys) > 1 and (task == "regression" or len(np.unique(ys)) > 1)
    clean_metric = score(metric, ys, clean) if scorable else None
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0

    perturbation: list[dict[str, Any]] = []
    invariance: list[dict[str, Any]] = []
    directional: list[dict[str, Any]] = []
    for (table, info, _), out in zip(variants, outputs, strict=True):
        change = _change(clean, out)
        if table == "perturbation":
            value = score(metric, ys, out) if scorable else None
            delta = None if value is None or clean_metric is None else value - clean_metric
            perturbation.append(
                {
                    **info,
                    "role": roles.get(info["feature"], "categorical"),
                    metric: value,
                    "change": delta,
                    "degradation": None if delta is None else -sign * delta,
                    "mean_abs_shift": float(np.abs(change).mean()) if len(change) else 0.0,
                }
            )
        elif table == "invariance":
            share = float((np.abs(change) > tolerance).mean()) if len(change) else 0.0
            invariance.append(
                {
                    **info,
                    "rows": len(change),
                    **(_distribution(change) if len(change) else {}),
                    "changed_share": share,
                    "tolerance": tolerance,
                    "max_changed_share": settings.max_changed_share,
                    "breach": share > settings.max_changed_share,
                }
            )
        else:
            directional.append(
                _directional(
                    info,
                    base,
                    moved_values[info["feature"]],
                    clean,
                    out,
                    settings,
                    tolerance,
                    picked,
                )
            )
    worst = max(
        (p for p in perturbation if p["degradation"] is not None),
        key=lambda p: p["degradation"],
        default=None,
    )
    return {
        "seed": seed,
        "rows": len(picked),
        "of_rows": len(frame),
        "metric": metric,
        "clean": clean_metric,
        "tolerance": tolerance,
        "settings": {
            "rows": settings.rows,
            "noise": list(settings.noise),
            "tolerance": settings.tolerance,
            "max_changed_share": settings.max_changed_share,
            "step": settings.step,
            "max_violation_share": settings.max_violation_share,
        },
        "perturbation": perturbation,
        "worst_perturbation": None
        if worst is None
        else {k: worst[k] for k in ("feature", "perturbation", "level", "degradation")},
        "invariance": invariance,
        "directional": directional,
    }


def _directional(
    info: dict[str, Any],
    base: pd.DataFrame,
    moved: pd.Series,
    clean: np.ndarray,
    out: np.ndarray,
    settings: RobustnessSection,
    tolerance: float,
    picked: np.ndarray,
) -> dict[str, Any]:
    """One expectation's counts and its worst violations."""
    feature, direction, step = info["feature"], info["direction"], info["step"]
    checked = _numbers(base[feature]).notna().to_numpy()
    change = out - clean
    against = -change if direction == "increases" else change  # > 0: the wrong way
    violated = checked & (against > tolerance)
    n = int(checked.sum())
    share = float(violated.sum() / n) if n else 0.0
    worst = np.flatnonzero(violated)[np.argsort(-against[violated], kind="stable")][:EXAMPLES]
    return {
        "feature": feature,
        "direction": direction,
        "step": step,
        "rows": n,
        "violations": int(violated.sum()),
        "violation_share": share,
        "as_expected_share": float((checked & (-against > tolerance)).sum() / n) if n else 0.0,
        "tolerance": tolerance,
        "max_violation_share": settings.max_violation_share,
        "breach": share > settings.max_violation_share,
        "examples": [
            {
                "row": int(picked[i]),  # position in the test split
                "value": float(_numbers(base[feature]).iloc[i]),
                "moved_to": float(moved.iloc[i]),
                "prediction": float(clean[i]),
                "moved_prediction": float(out[i]),
            }
            for i in worst
        ],
    }


def _score_together(predict: Predict, frames: Sequence[pd.DataFrame]) -> list[np.ndarray]:
    """``predict`` on every frame, in one call over their concatenation."""
    if not frames or not len(frames[0]):
        return [np.asarray(predict(f)) for f in frames]
    sizes = [len(f) for f in frames]
    scored = np.asarray(predict(pd.concat(frames, ignore_index=True)))
    return list(np.split(scored, np.cumsum(sizes)[:-1]))
