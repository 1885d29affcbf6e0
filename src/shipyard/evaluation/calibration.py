"""Calibration: reliability curves, expected calibration error, and calibrators.

A calibrator maps a model's probability to a calibrated one. It is fitted on the dev set
(never on test) and kept only if it lowers ECE on dev, judged by cross-fitting (fit on one
half, measure on the other, both ways). Saved as JSON: Platt's two numbers, or the
isotonic step function's knots.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np

N_BINS = 10
EPS = 1e-6
Z95 = 1.959963984540054  # the normal quantile of a two-sided 95% interval


def reliability(y: np.ndarray, p: np.ndarray, n_bins: int = N_BINS) -> list[dict[str, float]]:
    """Per equal-width probability bin: mean predicted, observed rate, and count."""
    if p.ndim == 2:  # multiclass: confidence of the top class against being right
        y = (p.argmax(axis=1) == y).astype(int)
        p = p.max(axis=1)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    out = []
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            out.append(
                {
                    "lo": b / n_bins,
                    "hi": (b + 1) / n_bins,
                    "predicted": float(p[mask].mean()),
                    "observed": float(y[mask].mean()),
                    "count": int(mask.sum()),
                }
            )
    return out


def ece(y: np.ndarray, p: np.ndarray, n_bins: int = N_BINS) -> float:
    """Expected calibration error: the count-weighted gap between predicted and observed.

    >>> ece(np.array([0, 1, 1, 0]), np.array([0.0, 1.0, 1.0, 0.0]))
    0.0
    """
    return curve_ece(reliability(y, p, n_bins))


def curve_ece(curve: Sequence[Mapping[str, float]]) -> float:
    """ECE of a reliability curve (as :func:`reliability` returns it, or a stored one)."""
    n = sum(b["count"] for b in curve)
    return float(sum(b["count"] * abs(b["predicted"] - b["observed"]) for b in curve) / max(n, 1))


def wilson_interval(
    successes: np.ndarray | float, n: np.ndarray | float, z: float = Z95
) -> tuple[np.ndarray, np.ndarray]:
    """The Wilson score interval of a rate (95% by default); NaN where ``n`` is 0.

    >>> low, high = wilson_interval(8, 10)
    >>> round(float(low), 4), round(float(high), 4)
    (0.4902, 0.9433)
    """
    k, m = np.asarray(successes, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = k / m
        centre = (rate + z * z / (2 * m)) / (1 + z * z / m)
        half = z * np.sqrt(rate * (1 - rate) / m + z * z / (4 * m * m)) / (1 + z * z / m)
    return centre - half, centre + half


@dataclass
class Calibrator:
    """Platt (logistic on the logit) or isotonic (a monotone step function), as JSON."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(cls, kind: str, y: np.ndarray, p: np.ndarray) -> Calibrator:
        if kind == "platt":
            from sklearn.linear_model import LogisticRegression

            z = _logit(p).reshape(-1, 1)
            model = LogisticRegression(C=1e6, max_iter=1000).fit(z, y)
            return cls("platt", {"a": float(model.coef_[0, 0]), "b": float(model.intercept_[0])})
        from sklearn.isotonic import IsotonicRegression

        model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
        return cls(
            "isotonic", {"x": model.X_thresholds_.tolist(), "y": model.y_thresholds_.tolist()}
        )

    @overload
    def apply(self, p: np.ndarray) -> np.ndarray: ...
    @overload
    def apply(self, p: float) -> float: ...
    def apply(self, p: np.ndarray | float) -> np.ndarray | float:
        if self.kind == "platt":
            out = 1.0 / (1.0 + np.exp(-(self.params["a"] * _logit(p) + self.params["b"])))
        else:
            out = np.interp(p, self.params["x"], self.params["y"])
        return float(out) if np.ndim(out) == 0 else out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": self.params}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibrator:
        return cls(data["kind"], dict(data["params"]))


def _logit(p):
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p / (1 - p))


def choose_calibrator(
    y: np.ndarray, p: np.ndarray, seed: int = 0
) -> tuple[Calibrator | None, dict]:
    """The calibrator (fitted on all of dev) that most lowers cross-fitted ECE, if any does."""
    rng = np.random.default_rng(seed)
    half = rng.permutation(len(y)) % 2 == 0
    before = ece(y, p)
    evidence: dict[str, Any] = {"ece_before": before}
    best_kind, best = None, before
    for kind in ("platt", "isotonic"):
        crossed = np.empty_like(p)
        for fit_mask in (half, ~half):
            if len(np.unique(y[fit_mask])) < 2:
                break
            crossed[~fit_mask] = Calibrator.fit(kind, y[fit_mask], p[fit_mask]).apply(p[~fit_mask])
        else:
            evidence[f"ece_{kind}_crossfit"] = ece(y, crossed)
            if evidence[f"ece_{kind}_crossfit"] < best:
                best_kind, best = kind, evidence[f"ece_{kind}_crossfit"]
    evidence["chosen"] = best_kind
    if best_kind is None:
        return None, evidence
    return Calibrator.fit(best_kind, y, p), evidence
