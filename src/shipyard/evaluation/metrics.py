"""Metrics: the optimizing metric of the spec, and the others reported beside it.

Every metric takes the encoded target (0/1, class codes, or values) and the model output
(P(positive), class probabilities, or values). ``HIGHER_IS_BETTER`` says which way is up.

The gates' margins (``min_improvement``, ``max_slice_gap``) are read through :class:`Margin`:
in the metric's own units for the unitless metrics (AUC, log loss, F1, accuracy, R²), and as a
fraction of the constant baseline's value on the rows judged for ``RELATIVE_METRICS`` (RMSE and
MAE are in the target's units, so no one default can fit every target).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from shipyard.data.association import auc

EPS = 1e-15
HIGHER_IS_BETTER = {
    "roc_auc": True,
    "pr_auc": True,
    "f1": True,
    "accuracy": True,
    "r2": True,
    "log_loss": False,
    "rmse": False,
    "mae": False,
}
# in the target's units: gates count them as a fraction of the constant baseline's value
RELATIVE_METRICS = ("rmse", "mae")


def _labels(y_score: np.ndarray) -> np.ndarray:
    return (y_score >= 0.5).astype(int) if y_score.ndim == 1 else y_score.argmax(axis=1)


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    if s.ndim == 1:
        return auc(y, s)
    return float(np.mean([auc((y == k).astype(np.int8), s[:, k]) for k in range(s.shape[1])]))


def pr_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Average precision (step-wise area under the precision-recall curve)."""
    if s.ndim == 2:
        return float(np.mean([pr_auc((y == k).astype(int), s[:, k]) for k in range(s.shape[1])]))
    # tied scores form one group: precision is evaluated at the end of each group
    values, inverse = np.unique(-s, return_inverse=True)  # descending scores
    y = y.astype(float)
    pos = np.bincount(inverse, weights=y, minlength=len(values))
    neg = np.bincount(inverse, weights=1 - y, minlength=len(values))
    return ordered_average_precision(pos, neg)


def ordered_average_precision(pos: np.ndarray, neg: np.ndarray) -> float:
    """Average precision from positive and negative weights per distinct score, in
    descending score order (counts, or expected counts); 0 when no weight is positive.

    >>> ordered_average_precision(np.array([1.0, 0.0, 1.0]), np.array([0.0, 1.0, 1.0]))
    0.75
    """
    total = pos.sum()
    if total <= 0:
        return 0.0
    precision = np.cumsum(pos) / np.cumsum(pos + neg)
    return float((precision * pos).sum() / total)


def log_loss(y: np.ndarray, s: np.ndarray) -> float:
    if s.ndim == 1:
        p = np.clip(s, EPS, 1 - EPS)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    p = np.clip(s[np.arange(len(y)), y.astype(int)], EPS, 1)
    return float(-np.mean(np.log(p)))


def accuracy(y: np.ndarray, s: np.ndarray) -> float:
    return float(np.mean(_labels(s) == y))


def f1(y: np.ndarray, s: np.ndarray) -> float:
    """F1 of the positive class at threshold 0.5 (macro F1 for multiclass)."""
    pred = _labels(s)
    classes = [1] if s.ndim == 1 else range(s.shape[1])
    scores = []
    for k in classes:
        tp = np.sum((pred == k) & (y == k))
        fp = np.sum((pred == k) & (y != k))
        fn = np.sum((pred != k) & (y == k))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(scores))


def rmse(y: np.ndarray, s: np.ndarray) -> float:
    return float(np.sqrt(np.mean((y - s) ** 2)))


def mae(y: np.ndarray, s: np.ndarray) -> float:
    return float(np.mean(np.abs(y - s)))


def r2(y: np.ndarray, s: np.ndarray) -> float:
    sst = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - s) ** 2)) / sst if sst > 0 else 0.0


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "roc_auc": roc_auc,
    "pr_auc": pr_auc,
    "log_loss": log_loss,
    "accuracy": accuracy,
    "f1": f1,
    "rmse": rmse,
    "mae": mae,
    "r2": r2,
}
TASK_METRICS = {
    "binary": ("roc_auc", "pr_auc", "log_loss", "accuracy", "f1"),
    "multiclass": ("roc_auc", "log_loss", "accuracy", "f1"),
    "regression": ("rmse", "mae", "r2"),
}


def score(metric: str, y: np.ndarray, s: np.ndarray) -> float:
    """One metric.

    >>> score("accuracy", np.array([0, 1, 1]), np.array([0.2, 0.7, 0.4]))
    0.6666666666666666
    """
    return METRICS[metric](y, s)


def all_metrics(task: str, y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    return {m: score(m, y, s) for m in TASK_METRICS[task]}


def improvement(metric: str, new: float, old: float) -> float:
    """How much better ``new`` is than ``old`` (positive = better), whatever the direction."""
    return new - old if HIGHER_IS_BETTER[metric] else old - new


@dataclass(frozen=True)
class Margin:
    """A gate's margin for one metric on some rows: the spec's number and what it amounts to.

    For ``rmse`` and ``mae`` the spec's number is a fraction of ``unit``, the constant
    baseline's value on the rows judged (the metric of predicting their mean); for every other
    metric ``unit`` is 1 and the number is in the metric's own units.

    >>> Margin.on("rmse", 0.005, np.array([0.0, 100.0])).absolute
    0.25
    >>> Margin.on("rmse", 0.005, np.array([0.0, 100.0])).rule
    "0.5% of the constant baseline's rmse (50) = 0.25"
    >>> Margin.on("roc_auc", 0.005, np.array([0, 1])).rule
    '0.005 (roc_auc units)'
    """

    metric: str
    fraction: float
    unit: float = 1.0

    @classmethod
    def on(cls, metric: str, fraction: float, y: np.ndarray) -> Margin:
        y = np.asarray(y, dtype=float)
        if metric not in RELATIVE_METRICS or len(y) == 0:
            return cls(metric, float(fraction))
        return cls(metric, float(fraction), score(metric, y, np.full(len(y), float(y.mean()))))

    @property
    def relative(self) -> bool:
        return self.metric in RELATIVE_METRICS

    @property
    def absolute(self) -> float:
        """The margin in the metric's units."""
        return self.fraction * self.unit

    @property
    def rule(self) -> str:
        if not self.relative:
            return f"{self.fraction:g} ({self.metric} units)"
        return (
            f"{self.fraction:.1%}".replace(".0%", "%")
            + f" of the constant baseline's {self.metric} ({self.unit:.4g}) = {self.absolute:.4g}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "fraction": self.fraction,
            "relative_to": "constant baseline" if self.relative else None,
            "unit": self.unit,
            "absolute": self.absolute,
            "rule": self.rule,
        }
