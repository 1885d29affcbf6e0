"""Performance before labels: confidence-based performance estimation (CBPE).

CBPE (NannyML's method) estimates a binary classifier's metrics on a window of predictions
whose labels have not arrived, from its probabilities alone. Every row is read as positive
with weight ``q`` (its calibrated probability) and negative with weight ``1 - q``:

- the expected confusion matrix at the threshold is the sum of these weights per cell
  (``tp`` = Σ q over predicted positives, ``fp`` = Σ (1 - q) over them, ...), and accuracy,
  precision, recall and F1 follow from it;
- the expected ROC AUC is the weighted AUC over the model's scores (each row once as a
  positive of weight q, once as a negative of weight 1 - q: the same number as
  ``sklearn.metrics.roc_auc_score`` on that doubled construction with sample weights), and
  PR AUC likewise; the expected log loss is the mean cross-entropy of q against the scores.

**Interval.** The estimate ± 1.96 standard deviations of the metric over :data:`N_DRAWS`
(200) Monte-Carlo draws of the labels, each row's label Bernoulli(q), with a fixed seed: the
spread the realized metric would show on this window if calibration holds. The rows are
sorted once, so a draw costs O(n); past :data:`DRAW_ROWS` (100,000) rows the draws are taken
on a random 100,000-row subsample and the spread scaled by sqrt(100,000 / n) (counts by the
inverse), as the spread of these metrics shrinks with the square root of the rows. The
interval is sampling error only: it does not widen for calibration error, which on large
windows dominates (NYC flights, ~28,000 flights a month: interval ±0.005, estimate minus
realized AUC from −0.05 to +0.03 over May–December; ``bench/cbpe.py``).

**Calibration.** CBPE needs calibrated probabilities. The served ones are corrected by the
reference's stored test calibration curve when that curve shows miscalibration
(:func:`recalibrator`: its ECE over 0.02 and some bin's Wilson interval excluding its
predicted mean), in log-odds so rows keep their order (:class:`Recalibration`); otherwise
they are used as served.

**Support.** CBPE assumes P(y | x) — and so calibration — holds under the shift. It breaks
when inputs move where the reference had no data. Given the share of rows outside the
reference's support (:func:`outside_support`) over ``max_outside_share`` (5%), or a drift
flag, every estimate's level is ``"warn"`` and its note says why.

:func:`compare_estimate` sets the estimate beside the realized value once labels mature.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from shipyard.data.association import ordered_auc
from shipyard.data.contract import category_key
from shipyard.errors import UsageError
from shipyard.evaluation.calibration import Z95, curve_ece, wilson_interval
from shipyard.evaluation.metrics import EPS, TASK_METRICS, ordered_average_precision
from shipyard.monitoring.summary import (
    CategoricalReference,
    ColumnReference,
    NumericReference,
    as_numbers,
)
from shipyard.monitoring.table import WINDOW, check_length, probabilities, result_row

if TYPE_CHECKING:
    from shipyard.monitoring.reference import Reference

N_DRAWS = 200  # Monte-Carlo label draws behind the interval
DRAW_ROWS = 100_000  # rows the draws are taken on; more are subsampled and the spread scaled
LOGIT_EPS = 1e-9  # probabilities are clipped to [1e-9, 1 - 1e-9] before the log-odds
RECALIBRATE_ECE = 0.02  # the stored curve's ECE over which the probabilities are recalibrated
MAX_OUTSIDE_SHARE = 0.05  # rows outside the reference's support before the estimate warns
CONFUSION = ("tp", "fp", "tn", "fn")
EXPECTED = ("accuracy", "precision", "recall", "f1")
BOUNDED = ("roc_auc", "pr_auc", *EXPECTED)  # in [0, 1]
SECTION = "estimated_performance"


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, LOGIT_EPS, 1 - LOGIT_EPS)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class Recalibration:
    """A correction of served probabilities in log-odds, from a reliability curve:
    ``logit(q) = logit(p) + shift(logit(p))``, where ``shift`` is linear between the bins
    (placed at the logit of their mean predicted) and constant beyond the outer ones.

    Between two bins the map runs from one bin's (smoothed, non-decreasing) observed rate to
    the next one's, so it never decreases; beyond them it is a constant shift, so rows keep
    their order. A step map (isotonic on the bins) gives every row below the first bin's
    mean one probability: with a reference from another month of NYC flights (70% of them
    in the lowest bin) it took November's expected AUC to 0.81, this map to 0.84 (as served
    0.87, realized 0.87). Ten equal-width bins cannot resolve a bin's own tail: for churn
    probabilities planted as p**3 (73% in the lowest bin) this map leaves that tail too
    confident (expected AUC 0.90, realized 0.84; accuracy 0.78 against 0.73, 0.91 as
    served), the step map too flat (AUC 0.77, accuracy 0.74).
    """

    knots: tuple[float, ...]  # logit of each bin's mean predicted, increasing
    shifts: tuple[float, ...]  # logit(observed) - logit(predicted) at each knot

    def apply(self, p: np.ndarray) -> np.ndarray:
        z = _logit(np.asarray(p, dtype=float))
        return 1.0 / (1.0 + np.exp(-(z + np.interp(z, self.knots, self.shifts))))


def recalibrator(
    curve: Sequence[Mapping[str, float]], min_ece: float = RECALIBRATE_ECE
) -> Recalibration | None:
    """The correction CBPE applies to served probabilities, from the stored test calibration
    curve (``Reference.calibration``: per bin the mean predicted, observed rate and count).

    None when the curve shows no miscalibration: its ECE is at most ``min_ece`` (0.02), or no
    bin's observed rate has a 95% Wilson interval that excludes its mean predicted. Otherwise
    a :class:`Recalibration` through each bin's observed rate, smoothed as
    ``(observed · count + 0.5) / (count + 1)`` (never 0 or 1) and made non-decreasing over
    the bins (count-weighted isotonic regression).
    """
    bins = [b for b in curve if b["count"] > 0]
    if len(bins) < 2 or curve_ece(bins) <= min_ece:
        return None
    predicted = np.array([b["predicted"] for b in bins])
    observed = np.array([b["observed"] for b in bins])
    counts = np.array([b["count"] for b in bins], dtype=float)
    low, high = wilson_interval(observed * counts, counts)
    if ((predicted >= low) & (predicted <= high)).all():
        return None
    from sklearn.isotonic import IsotonicRegression

    smoothed = (observed * counts + 0.5) / (counts + 1)
    rising = IsotonicRegression().fit(predicted, smoothed, sample_weight=counts).predict(predicted)
    knots = _logit(predicted)
    return Recalibration(tuple(knots.tolist()), tuple((_logit(rising) - knots).tolist()))


def outside_column(ref: ColumnReference, values: Any) -> np.ndarray:
    """Per value of one column, whether it lies outside ``ref``'s support: a number below
    the train split's minimum or above its maximum, or a category the train split never
    held (for columns whose kept categories were complete). Nulls, and columns of other
    kinds, are inside.

    >>> ref = NumericReference.learn("x", np.arange(10.0))
    >>> outside_column(ref, np.array([-1.0, 4.0, np.nan, 12.0])).tolist()
    [True, False, False, True]
    """
    if isinstance(ref, NumericReference):
        numbers, _ = as_numbers(values)
        with np.errstate(invalid="ignore"):
            return (numbers < ref.edges[0]) | (numbers > ref.edges[-1])
    outside = np.zeros(len(values), bool)
    if isinstance(ref, CategoricalReference) and ref.closed and not ref.boolean:
        codes, uniques = category_codes(values)
        kept = set(ref.categories)
        unseen = np.array([category_key(u) not in kept for u in uniques], dtype=bool)
        present = codes >= 0
        outside[present] = unseen[codes[present]]
    return outside


def category_codes(values: Any) -> tuple[np.ndarray, list[Any]]:
    """Each value's code (-1 for null) and the distinct values the codes index, so that a
    rule on categories runs once per distinct value. A pyarrow array (a log column) is
    encoded by Arrow, without a Python object per row.

    >>> codes, uniques = category_codes(["b", None, "a", "b"])
    >>> codes.tolist(), uniques
    ([0, -1, 1, 0], ['b', 'a'])
    """
    if hasattr(values, "dictionary_encode"):  # a pyarrow Array
        import pyarrow as pa

        try:
            encoded = values if pa.types.is_dictionary(values.type) else values.dictionary_encode()
        except pa.ArrowNotImplementedError:  # a type Arrow does not encode: read as objects
            values = values.to_numpy(zero_copy_only=False)
        else:
            codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
            return codes.astype(np.int64), encoded.dictionary.to_pylist()
    codes, uniques = pd.factorize(pd.Series(values, dtype=object))
    return codes.astype(np.int64), list(uniques)


def outside_support(reference: Reference, frame: pd.DataFrame) -> np.ndarray:
    """Per row of ``frame``, whether any referenced feature lies outside the reference's
    support (:func:`outside_column`). Its mean is ``estimate``'s ``outside_share``."""
    outside = np.zeros(len(frame), bool)
    for name, ref in reference.features.items():
        if name in frame.columns:
            outside |= outside_column(ref, frame[name].to_numpy())
    return outside


class _Ranking:
    """The window's rows sorted once by score, ties grouped, for the metrics of many draws."""

    def __init__(self, s: np.ndarray, threshold: float) -> None:
        self.order = np.argsort(s, kind="mergesort")
        ordered = s[self.order]
        self.starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        self.sizes = np.diff(np.r_[self.starts, len(s)]).astype(float)
        self.predicted = s >= threshold
        clipped = np.clip(s, EPS, 1 - EPS)
        self.log_pos, self.log_neg = -np.log(clipped), -np.log(1 - clipped)

    def metrics(self, y: np.ndarray) -> dict[str, float]:
        """Every estimated statistic for labels (or expected labels) ``y``, one per row."""
        pos = np.add.reduceat(y[self.order], self.starts)
        neg = self.sizes - pos
        tp = float(y[self.predicted].sum())
        fp = float(self.predicted.sum()) - tp
        fn = float(y.sum()) - tp
        tn = len(y) - tp - fp - fn
        return {
            "roc_auc": ordered_auc(pos, neg) if pos.sum() > 0 and neg.sum() > 0 else np.nan,
            "pr_auc": ordered_average_precision(pos[::-1], neg[::-1]) if pos.sum() > 0 else np.nan,
            "log_loss": float(np.mean(y * self.log_pos + (1 - y) * self.log_neg)),
            "accuracy": (tp + tn) / len(y),
            "precision": tp / (tp + fp) if tp + fp > 0 else np.nan,
            "recall": tp / (tp + fn) if tp + fn > 0 else np.nan,
            "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else np.nan,
            "tp": tp,
            "fp": fp,
            "tn": tn,
            "fn": fn,
        }


def estimate(
    task: str,
    metric: str,
    p: Any,
    *,
    scores: Any = None,
    calibration: Sequence[Mapping[str, float]] = (),
    threshold: float = 0.5,
    outside_share: float | None = None,
    max_outside_share: float = MAX_OUTSIDE_SHARE,
    drifted: bool = False,
    n_draws: int = N_DRAWS,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """CBPE: the expected metric of one window before its labels arrive (section
    "estimated_performance"), for a binary classifier.

    ``p`` is the served P(positive) of each prediction; ``scores`` what the model ranks by
    (default ``p``). ``calibration`` is the stored test curve: when :func:`recalibrator`
    finds it miscalibrated, the expected labels are its mapping of ``p``. Rows: ``metric``,
    then ``accuracy``, ``precision``, ``recall``, ``f1`` at ``threshold`` (on the scores, as
    served) and the expected confusion counts ``tp``, ``fp``, ``tn``, ``fn``, each with the
    estimate ± 1.96 standard deviations over ``n_draws`` Bernoulli label draws (fixed
    ``seed``), ``rows`` and, when ``outside_share`` is given, ``outside_support_share``.
    Level ``"warn"`` on every estimate (and on the share) when ``outside_share`` (rows outside
    the reference's support) is over ``max_outside_share``; on every estimate when
    ``drifted`` is set.

    >>> rows = estimate("binary", "roc_auc", [0.1, 0.2, 0.8, 0.9])
    >>> rows[0]["statistic"], round(rows[0]["value"], 4)
    ('roc_auc', 0.875)
    """
    if task != "binary":
        return [
            result_row(
                SECTION,
                "",
                metric,
                float("nan"),
                level="empty",
                note=f"CBPE estimates binary classifiers only (this model's task is {task})",
            )
        ]
    if metric not in TASK_METRICS["binary"]:
        raise UsageError(
            f"metric '{metric}' is not a binary metric: use one of {list(TASK_METRICS['binary'])}."
        )
    prob = probabilities(p, "p")
    s = prob if scores is None else np.asarray(scores, dtype=float)
    check_length(len(prob), scores=s)
    statistics = list(dict.fromkeys([metric, *EXPECTED, *CONFUSION]))
    if len(prob) == 0:
        return [
            result_row(
                SECTION,
                "",
                name,
                float("nan"),
                level="empty",
                note="no predictions",
            )
            for name in statistics
        ]
    mapping = recalibrator(calibration)
    q = prob if mapping is None else mapping.apply(prob)
    ranking = _Ranking(s, threshold)
    expected = ranking.metrics(q)
    rng = np.random.default_rng(seed)
    n = len(q)
    drawn, scale = (ranking, q), 1.0
    if n > DRAW_ROWS:  # the spread of a mean-like metric scales as 1/sqrt(rows)
        sample = np.sort(rng.choice(n, DRAW_ROWS, replace=False))
        drawn, scale = (_Ranking(s[sample], threshold), q[sample]), float(np.sqrt(DRAW_ROWS / n))
    draws = [
        drawn[0].metrics((rng.random(len(drawn[1])) < drawn[1]).astype(float))
        for _ in range(n_draws)
    ]
    how = (
        "recalibrated by the reference's test curve"
        if mapping is not None
        else "as served (the reference's test curve shows no miscalibration)"
        if calibration
        else "as served (no reference curve given)"
    )
    note = (
        f"CBPE on {len(q):,} predictions, probabilities {how}; interval: ±1.96 sd over "
        f"{n_draws} Bernoulli(p) label draws"
    )
    warned = drifted or (outside_share is not None and outside_share > max_outside_share)
    if warned:
        reason = (
            f"{outside_share:.1%} of rows lie outside the reference's support (over {max_outside_share:.0%})"
            if outside_share is not None and outside_share > max_outside_share
            else "the inputs drifted"
        )
        note += f"; CBPE assumes calibration holds under the shift, but {reason}: the estimate may be wrong"
    out = []
    for name in statistics:
        value = expected[name]
        spread = np.array([d[name] for d in draws])
        spread = spread[np.isfinite(spread)]
        if not np.isfinite(value):
            why = f"{name} is not computable: no predicted or no expected positives"
            out.append(result_row(SECTION, "", name, value, level="empty", note=why))
            continue
        sd = float(spread.std(ddof=1)) if len(spread) > 1 else float("nan")
        half = Z95 * sd * (scale if name not in CONFUSION else 1 / scale)  # counts grow with n
        top = 1.0 if name in BOUNDED else np.inf
        lower = None if np.isnan(half) else max(value - half, 0.0)
        upper = None if np.isnan(half) else min(value + half, top)
        level = "warn" if warned else "ok"
        out.append(
            result_row(SECTION, "", name, value, lower=lower, upper=upper, level=level, note=note)
        )
    out.append(result_row(SECTION, "", "rows", len(q), note="predictions estimated"))
    if outside_share is not None:
        over = outside_share > max_outside_share
        out.append(
            result_row(
                SECTION,
                "",
                "outside_support_share",
                outside_share,
                level="warn" if over else "ok",
                note=f"share of predictions with an input outside the reference's support "
                f"(below the train minimum, above its maximum, or an unseen category); CBPE "
                f"warns over {max_outside_share:.0%}",
            )
        )
    return out


def _key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return (*(row.get(k) for k in WINDOW), row.get("column", ""), row["statistic"])


def compare_estimate(
    estimated_rows: Sequence[Mapping[str, Any]], realized_rows: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The estimate beside the realized value, per window, arm and statistic both hold.

    One row per pair (section "estimated_performance", statistic ``"<metric>_estimate_error"``):
    value = realized − estimated; lower/upper = the realized interval's ends minus the
    estimate (so 0 inside means the estimate lies in the realized interval). Level ``"warn"``
    when the realized value falls outside the estimate's own interval: the labels did not
    behave as the calibrated probabilities said (concept drift, or a shift out of the
    reference's support). The note holds both numbers side by side.
    """
    truth = {
        _key(r): r
        for r in realized_rows
        if r.get("section") == "performance" and np.isfinite(r["value"])
    }
    out = []
    for est in estimated_rows:
        if est.get("section") != SECTION or not np.isfinite(est["value"]):
            continue
        real = truth.get(_key(est))
        if real is None or est["statistic"] in ("rows", *CONFUSION):
            continue
        e, r = float(est["value"]), float(real["value"])
        inside = (est["lower"] is None or est["lower"] <= r) and (
            est["upper"] is None or r <= est["upper"]
        )

        def span(row: Mapping[str, Any]) -> str:
            if row["lower"] is None:
                return ""
            return f" [{row['lower']:.4f}, {row['upper']:.4f}]"

        row = result_row(
            SECTION,
            est.get("column", ""),
            f"{est['statistic']}_estimate_error",
            r - e,
            lower=None if real["lower"] is None else real["lower"] - e,
            upper=None if real["upper"] is None else real["upper"] - e,
            level="ok" if inside else "warn",
            note=f"estimated {e:.4f}{span(est)} before labels, realized {r:.4f}{span(real)}: "
            + ("within" if inside else "outside")
            + " the estimate's interval",
        )
        out.append({**{k: est[k] for k in WINDOW if k in est}, **row})
    return out
