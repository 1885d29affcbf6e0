"""Diagnostics of the chosen rung at ``train``: learning curve, a sanity fit, the champion.

``train`` runs :func:`diagnostics` once the bundle is written and keeps the result in the
bundle's ``diagnostics.json`` (and the tracked run's). Three parts:

- ``learning_curve``: the chosen family refitted with its chosen parameters (its own fit:
  trees early-stop on dev, as on the ladder) on nested samples of the train split at
  :data:`FRACTIONS` of at most :data:`MAX_ROWS` rows, drawn with the ``[split] seed``.
  Each size gets the metric on the rows it was fitted on (``train``), on dev (``dev``) and
  on train rows held out of every fit (``holdout``: the train distribution, unseen). One
  sentence says what the curves show (:func:`diagnose`): ``variance`` (dev still improving
  as rows are added: more data helps), ``bias`` (train no better than dev and dev flat:
  more data will not help, a richer model or better features may), ``mismatch`` (held-out
  train rows score clearly better than dev: dev differs from train, and more train-like
  data will not close the gap), or ``ok`` (dev has levelled off).
- ``sanity``: the chosen family, with its capacity opened up (:data:`OPEN_CAPACITY`) and no
  early stopping, fitted on :data:`SANITY_ROWS` train rows and scored on those same rows.
  Any working pipeline memorizes so few rows; one that cannot (features and labels out of
  step, a transform that scrambles rows) has a bug, and the note says so loudly. It passes
  when the fit closes at least :data:`SANITY_SKILL` of the way from the constant baseline
  to a perfect score on the sample.
- ``champion``: the deployed champion's bundle (its own transform, model and calibrator)
  scored on the same dev and test rows as the ladder: the current production system as a
  baseline rung. None when no champion is deployed or it cannot score these rows.

The cost is bounded: ``len(FRACTIONS)`` refits on at most :data:`MAX_ROWS` rows, one fit on
:data:`SANITY_ROWS` rows, and one prediction of dev and test by the champion.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from shipyard.evaluation.metrics import Margin, all_metrics, improvement, score
from shipyard.evaluation.slices import bootstrap
from shipyard.models.base import Family, Watch
from shipyard.models.constant import Constant

#: the most train rows a learning curve draws its samples from
MAX_ROWS = 20_000
#: the learning curve's sizes, as fractions of its row pool (nested samples)
FRACTIONS = (0.125, 0.25, 0.5, 1.0)
#: the smallest learning-curve sample
MIN_ROWS = 100
#: train rows held out of every learning-curve fit (at most; and at most a fifth of train)
HOLDOUT_ROWS = 5_000
#: the rows a learning-curve fit is scored on (the first of its sample)
EVAL_ROWS = 5_000
#: the rows of the sanity fit
SANITY_ROWS = 200
#: the share of the way from the constant baseline to a perfect score the sanity fit must go
SANITY_SKILL = 0.5
#: the rounds of a boosted family's sanity fit (no early stopping)
SANITY_ROUNDS = 300
#: parameters that let a family fit a tiny sample as closely as it can (where it has them)
OPEN_CAPACITY: dict[str, dict[str, Any]] = {
    "gbt": {"min_child_samples": 1, "feature_fraction": 1.0, "n_estimators": SANITY_ROUNDS},
    "linear": {"C": 1e4, "alpha": 1e-4},
}
#: each metric's perfect value
PERFECT = {
    "roc_auc": 1.0,
    "pr_auc": 1.0,
    "f1": 1.0,
    "accuracy": 1.0,
    "r2": 1.0,
    "log_loss": 0.0,
    "rmse": 0.0,
    "mae": 0.0,
}
#: the smallest change the diagnosis counts, in the metric's units (rmse, mae: a fraction
#: of the constant baseline's value), whatever ``[objective] min_improvement`` is
FLOOR = 0.005
BOOTSTRAP_DRAWS = 100

Fit = Callable[[Family, pd.DataFrame, np.ndarray, np.ndarray | None], Family]


def refit(model: Family, **overrides: Any) -> Family:
    """A fresh, unfitted ``model`` of the same family with its parameters (``overrides``
    applied where the family has them)."""
    params = model.get_params()
    params.update({k: v for k, v in overrides.items() if k in params})
    return type(model)(**params)


def _sample(n: int, rows: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(n)[:rows]


def _standard_error(metric: str, y: np.ndarray, s: np.ndarray, seed: int) -> float:
    """The bootstrap standard error of ``metric`` on these rows (0 when it cannot be told);
    AUC's resamples are weights on one sort of the rows (see :func:`slices.bootstrap`)."""
    if len(y) < 2:
        return 0.0
    values = bootstrap(metric, y, s, np.random.default_rng(seed), BOOTSTRAP_DRAWS)
    return float(np.std(values)) if len(values) > 1 else 0.0


def learning_curve(
    model: Family,
    train: tuple[pd.DataFrame, np.ndarray],
    dev: tuple[pd.DataFrame, np.ndarray],
    *,
    roles: Mapping[str, str],
    metric: str,
    min_improvement: float,
    weights: np.ndarray | None = None,
    threads: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Train, dev and held-out train metric of ``model``'s family refitted at growing sizes
    (see the module docstring), with :func:`diagnose`'s sentence and kind."""
    rng = np.random.default_rng(seed)
    n = len(train[0])
    order = rng.permutation(n)
    held = min(HOLDOUT_ROWS, n // 5)
    holdout, pool = order[:held], order[held:][:MAX_ROWS]
    sizes = sorted({max(min(MIN_ROWS, len(pool)), round(len(pool) * f)) for f in FRACTIONS})
    hold_x, hold_y = train[0].iloc[holdout], train[1][holdout]
    out: dict[str, Any] = {
        "metric": metric,
        "sizes": sizes,
        "train": [],
        "dev": [],
        "holdout": [],
        "holdout_rows": held,
        "dev_rows": len(dev[0]),
        "of_rows": n,
        "seed": seed,
    }
    dev_output = None
    for size in sizes:
        rows = pool[:size]
        x, y = train[0].iloc[rows], train[1][rows]
        fitted = refit(model).fit(
            x,
            y,
            roles=roles,
            weights=None if weights is None else weights[rows],
            dev=dev,
            watch=Watch(threads=threads),
        )
        seen = rows[:EVAL_ROWS]
        out["train"].append(score(metric, train[1][seen], fitted.predict(train[0].iloc[seen])))
        dev_output = fitted.predict(dev[0])
        out["dev"].append(score(metric, dev[1], dev_output))
        hold_output = fitted.predict(hold_x) if held else None
        out["holdout"].append(None if hold_output is None else score(metric, hold_y, hold_output))
    noise = 0.0
    if held and dev_output is not None and hold_output is not None:
        noise = float(
            np.hypot(
                _standard_error(metric, dev[1], dev_output, seed),
                _standard_error(metric, hold_y, hold_output, seed),
            )
        )
    tolerance = Margin.on(metric, max(min_improvement, FLOOR), dev[1]).absolute
    out["tolerance"] = tolerance
    out["noise"] = noise
    out["kind"], out["diagnosis"] = diagnose(out, tolerance, noise)
    return out


def diagnose(curve: Mapping[str, Any], tolerance: float, noise: float = 0.0) -> tuple[str, str]:
    """The kind and the one-sentence diagnosis of a learning curve.

    ``tolerance`` is the smallest change that counts (metric units); ``noise`` the standard
    error of the difference between the held-out train rows' metric and dev's: a mismatch
    must exceed twice it as well, and a train-dev gap within twice it counts as none.

    >>> diagnose({"metric": "rmse", "sizes": [100, 200], "train": [1.0, 2.0],
    ...           "dev": [5.0, 4.0], "holdout": [5.0, 4.0]}, 0.1)[0]
    'variance'
    """
    metric, sizes = curve["metric"], curve["sizes"]
    train, dev, holdout = curve["train"][-1], curve["dev"][-1], curve["holdout"][-1]
    gap = improvement(metric, train, dev)  # > 0: train better than dev
    at = f"at {sizes[-1]:,} rows train {metric} {train:.4g}, dev {dev:.4g}"
    if holdout is not None:
        shift = improvement(metric, holdout, dev)  # > 0: unseen train rows better than dev
        if shift > max(tolerance, 2 * noise) and shift > gap / 2:
            return "mismatch", (
                f"train/dev mismatch: train rows held out of the fit score {metric} "
                f"{holdout:.4g}, dev {dev:.4g} ({at}); dev differs from train (a shift in "
                "time or population), and more data like train will not close it: train on "
                "data like dev, or check how dev was drawn"
            )
    gain = improvement(metric, dev, curve["dev"][-2]) if len(sizes) > 1 else 0.0
    if gain > tolerance:
        return "variance", (
            f"variance: dev {metric} still improves as rows are added ({curve['dev'][-2]:.4g} "
            f"at {sizes[-2]:,} rows, {dev:.4g} at {sizes[-1]:,}; train {train:.4g}): more "
            "data helps"
        )
    if gap <= max(tolerance, 2 * noise):
        return "bias", (
            f"bias: the model fits train no better than dev ({at}) and dev has stopped "
            "improving: more data will not help; a more expressive model or better features "
            "may"
        )
    return "ok", (f"ok: dev {metric} has levelled off ({at}): more data of this kind adds little")


def sanity(
    model: Family,
    train: tuple[pd.DataFrame, np.ndarray],
    *,
    roles: Mapping[str, str],
    metric: str,
    threads: int | None = None,
    seed: int = 0,
    fit: Fit | None = None,
) -> dict[str, Any]:
    """Whether ``model``'s family, capacity opened up, fits :data:`SANITY_ROWS` train rows
    (see the module docstring). ``fit(model, frame, y, weights)`` fits the family (the
    default: its own ``fit``, without dev); a test passes one with a planted bug."""
    rng = np.random.default_rng(seed)
    rows = np.sort(_sample(len(train[0]), SANITY_ROWS, rng))
    x, y = train[0].iloc[rows].reset_index(drop=True), train[1][rows]
    base = {"rows": len(rows), "metric": metric}
    if model.name in ("constant", "rule"):
        return {
            **base,
            "value": None,
            "passed": True,
            "note": f"not applicable: the chosen rung '{model.name}' learns no pattern to fit",
        }
    if model.task != "regression" and len(np.unique(y)) < 2:
        return {
            **base,
            "value": None,
            "passed": True,
            "note": "not applicable: the sample holds one class only",
        }

    def own_fit(m: Family, frame: pd.DataFrame, target: np.ndarray, w: Any) -> Family:
        return m.fit(frame, target, roles=roles, weights=w, watch=Watch(threads=threads))

    fitter = fit if fit is not None else own_fit
    opened = refit(model, **OPEN_CAPACITY.get(model.name, {}))
    value = score(metric, y, fitter(opened, x, y, None).predict(x))
    flat = Constant(task=model.task, n_classes=model.n_classes, seed=model.seed)
    constant = score(metric, y, flat.fit(x, y, roles=roles).predict(x))
    reach = improvement(metric, PERFECT[metric], constant)
    skill = improvement(metric, value, constant) / reach if reach > 0 else 1.0
    passed = bool(skill >= SANITY_SKILL)
    name = f"'{model.name}'"
    if passed:
        note = (
            f"the {name} family fits {len(rows)} train rows ({metric} {value:.4g} on them; "
            f"constant {constant:.4g}): the pipeline can learn"
        )
    else:
        note = (
            f"PIPELINE BUG? the {name} family cannot fit {len(rows)} train rows it was "
            f"fitted on ({metric} {value:.4g} on them, constant {constant:.4g}; it closed "
            f"{skill:.0%} of the way to a perfect score, {SANITY_SKILL:.0%} is the least). "
            "Any working pipeline memorizes so few rows: look for labels out of step with "
            "their rows, a transform that differs between fit and predict, or a target "
            "leaking away in a join"
        )
    return {
        **base,
        "value": value,
        "passed": passed,
        "note": note,
        "constant": constant,
        "skill": skill,
        "seed": seed,
    }


def champion_baseline(
    version: int,
    predict: Callable[[pd.DataFrame], np.ndarray],
    features: list[str],
    task: str,
    dev: tuple[pd.DataFrame, np.ndarray],
    test: tuple[pd.DataFrame, np.ndarray],
) -> dict[str, Any] | None:
    """The champion's metrics on the ladder's dev and test rows, through its bundle's
    ``predict``; None when the rows lack a column it needs, or its output does not fit
    this task (another target)."""
    if any(c not in dev[0].columns or c not in test[0].columns for c in features):
        return None
    try:
        return {
            "version": version,
            "dev": all_metrics(task, dev[1], np.asarray(predict(dev[0][features]))),
            "test": all_metrics(task, test[1], np.asarray(predict(test[0][features]))),
        }
    except (ValueError, IndexError):
        return None


def diagnostics(
    model: Family,
    train: tuple[pd.DataFrame, np.ndarray],
    dev: tuple[pd.DataFrame, np.ndarray],
    *,
    roles: Mapping[str, str],
    metric: str,
    min_improvement: float,
    weights: np.ndarray | None = None,
    threads: int | None = None,
    seed: int = 0,
    champion: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The three parts of ``diagnostics.json`` (see the module docstring); ``champion`` is
    :func:`champion_baseline`'s result, computed by the caller who holds the bundle."""
    return {
        "learning_curve": learning_curve(
            model,
            train,
            dev,
            roles=roles,
            metric=metric,
            min_improvement=min_improvement,
            weights=weights,
            threads=threads,
            seed=seed,
        ),
        "sanity": sanity(model, train, roles=roles, metric=metric, threads=threads, seed=seed),
        "champion": champion,
    }
