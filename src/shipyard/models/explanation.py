"""Explanations: why a model gave a row its score, field by field.

An :class:`Explanation` holds, for each row and each model output, an attribution per
*input field* (the user's columns, not the transformed ones) and a base value, such that

    base + sum of the attributions = the model's raw score

exactly (to float rounding). The raw score is the model's own scale before any calibrator:

- gradient-boosted trees: LightGBM's exact TreeSHAP (``pred_contrib``), in log-odds for
  binary, per class before the softmax for multiclass, the value for regression; the base is
  the trees' expected score on their training data;
- linear: each transformed column's coefficient times its value (``w_j x_j``), summed per
  field; the base is the intercept. Numbers are standardized with the train mean, so a
  number's attribution is its pull away from the average row; a category's one-hot
  coefficients are centred by the L2 penalty (shifting them all by one constant into the
  unpenalized intercept would change no prediction), so its attribution is its pull away
  from the average category;
- constant: every attribution is 0 (no field changes its output: the exact Shapley value);
  the base is the constant, a probability (or the value);
- rule: the output depends on the fields only through the rule's condition, so the
  explanation is the condition itself (:attr:`Explanation.holds`), with no per-field
  attribution; the base is the side's output (a probability, or the value).

Transformed columns map back to their source field (:func:`field_matrix`): the one-hot
columns of a category, a number's missing indicator and a date-time's calendar parts all sum
into the column they came from. :func:`reasons` turns one row's attributions into plain
language, :func:`importance` averages absolute attributions into global importance.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

#: How many reasons an explained answer gives (the largest attributions by size).
TOP_REASONS = 3


@dataclass(frozen=True)
class Explanation:
    """Attributions of ``n`` rows: ``values`` is ``(n, k, len(fields))`` and ``base``
    ``(n, k)``, ``k`` the model's outputs (1 for binary and regression; the classes for
    multiclass). ``scale`` names the raw score's units (``"log-odds"``, ``"logit"`` per
    class, ``"probability"``, ``"value"``). A rule rung's explanation has no fields; its
    ``holds`` says, per row, whether the rule's condition ``rule`` held."""

    fields: list[str]
    values: np.ndarray
    base: np.ndarray
    scale: str
    rule: str | None = None
    holds: np.ndarray | None = None

    @functools.cached_property
    def score(self) -> np.ndarray:
        """The raw score each row's attributions add up to, ``(n, k)`` (summed once)."""
        return self.base + self.values.sum(axis=-1)

    def over(self, fields: Sequence[str]) -> Explanation:
        """The same attributions over ``fields`` (a bundle's features, in order): a field
        the model does not read gets 0, and one it reads beyond them is kept (last), so the
        sum is unchanged. A rule's explanation has no fields and stays so.

        >>> e = Explanation(["b"], np.ones((1, 1, 1)), np.zeros((1, 1)), "value").over(["a", "b"])
        >>> e.fields, e.values.tolist()
        (['a', 'b'], [[[0.0, 1.0]]])
        """
        if self.rule is not None or self.fields == list(fields):
            return self
        index = {field: j for j, field in enumerate(self.fields)}
        fields = [*fields, *(f for f in self.fields if f not in set(fields))]
        values = np.zeros((*self.values.shape[:2], len(fields)))
        for j, field in enumerate(fields):
            if field in index:
                values[:, :, j] = self.values[:, :, index[field]]
        return replace(self, fields=list(fields), values=values)

    def row(
        self,
        i: int,
        output: int = 0,
        *,
        record: Mapping[str, Any] | None = None,
        target: str = "score",
        prior: float | None = None,
    ) -> dict[str, Any]:
        """Row ``i``'s explanation of ``output`` as the service answers it: base, score,
        scale, the attributions by field (largest first) and the plain-language reasons
        (``record``: the row's input values, quoted in them; ``target``: what the score is
        of, e.g. "churn"; ``prior``: a rule rung's output over all train rows)."""
        values = self.values[i, output]
        order = sorted(range(len(self.fields)), key=lambda j: -abs(values[j]))
        attributions = {self.fields[j]: float(values[j]) for j in order}
        out: dict[str, Any] = {
            "base": float(self.base[i, output]),
            "score": float(self.score[i, output]),
            "scale": self.scale,
            "attributions": attributions,
        }
        if self.rule is not None and self.holds is not None:
            holds = bool(self.holds[i])
            out["rule"] = {"condition": self.rule, "holds": holds}
            out["reasons"] = [rule_reason(self.rule, holds, out["score"], prior, target)]
        else:
            out["reasons"] = reasons(attributions, record or {}, target, self.scale)
        return out


def field_matrix(outputs: Sequence[tuple[str, Sequence[str]]]) -> tuple[list[str], np.ndarray]:
    """The input fields, in order, and the ``(columns, fields)`` 0/1 matrix that sums
    transformed columns into the field each came from; ``outputs``: each plan's source field
    and the columns it writes, in column order (a date-time field has one plan per part).

    >>> fields, m = field_matrix([("age", ["age", "age__missing"]), ("plan", ["plan=a", "plan=b"])])
    >>> fields, m.tolist()
    (['age', 'plan'], [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    """
    fields = list(dict.fromkeys(field for field, _ in outputs))
    index = {field: j for j, field in enumerate(fields)}
    owners = [index[field] for field, columns in outputs for _ in columns]
    matrix = np.zeros((len(owners), len(fields)))
    matrix[np.arange(len(owners)), owners] = 1.0
    return fields, matrix


def transform_fields(transform: Any) -> tuple[list[str], np.ndarray]:
    """:func:`field_matrix` of a fitted :class:`~shipyard.features.Transform`, built once per
    transform (a served record is explained with it on every call)."""
    plans = transform.plans_
    cached = transform.__dict__.get("_field_matrix")
    if cached is None or cached[0] is not plans:  # a refit transform has new plans
        made = field_matrix([(plan["column"], plan["outputs"]) for plan in plans])
        cached = transform._field_matrix = (plans, *made)
    return cached[1], cached[2]


def _value_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "missing"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 40 else text[:40] + "…"


def reasons(
    attributions: Mapping[str, float],
    record: Mapping[str, Any],
    target: str = "score",
    scale: str = "log-odds",
    top: int = TOP_REASONS,
) -> list[str]:
    """The ``top`` largest attributions in plain language, largest first; a field whose
    attribution is 0 gives no reason.

    >>> reasons({"tenure": 0.21, "plan": -0.05}, {"tenure": 2, "plan": "b"}, "churn")
    ['tenure of 2 raised the churn score by 0.21 (log-odds)', 'plan of b lowered the churn score by 0.05 (log-odds)']
    """
    ranked = sorted(attributions.items(), key=lambda kv: -abs(kv[1]))
    out = []
    for field, value in ranked[:top]:
        if value == 0 or not math.isfinite(value):
            continue
        verb = "raised" if value > 0 else "lowered"
        out.append(
            f"{field} of {_value_text(record.get(field))} {verb} the {target} score by "
            f"{abs(value):.2g} ({scale})"
        )
    return out


def rule_reason(
    rule: str, holds: bool, score: float, prior: float | None, target: str = "score"
) -> str:
    """The rule rung's one reason: whether its condition held, and the output it gives.

    >>> rule_reason("tenure < 6", True, 0.61, 0.26, "churn")
    'the rule `tenure < 6` holds: churn score 0.61 (0.26 over all train rows)'
    """
    said = "holds" if holds else "does not hold"
    over = "" if prior is None else f" ({prior:.2g} over all train rows)"
    return f"the rule `{rule}` {said}: {target} score {score:.2g}{over}"


def importance(explanation: Explanation, classes: Sequence[Any] | None = None) -> dict[str, Any]:
    """Global importance: the mean absolute attribution of each field over the rows
    explained (over every output, for multiclass), a list ranked largest first (a list: JSON
    written with sorted keys keeps its order), with the scale and the row count. A rule rung
    has no per-field attributions: its importance names the rule and the share of rows it
    held on.

    >>> e = Explanation(["a", "b"], np.array([[[1.0, -2.0]], [[-3.0, 0.0]]]), np.zeros((2, 1)), "value")
    >>> importance(e)["fields"]
    [{'field': 'a', 'mean_abs': 2.0}, {'field': 'b', 'mean_abs': 1.0}]
    """
    n = len(explanation.values)
    out: dict[str, Any] = {"scale": explanation.scale, "rows": n}
    magnitude = np.abs(explanation.values)
    out["fields"] = _ranked(explanation.fields, magnitude.mean(axis=(0, 1)) if n else None)
    if explanation.values.shape[1] > 1 and n:
        names = [str(c) for c in classes] if classes is not None else None
        per_class = magnitude.mean(axis=0)
        out["per_output"] = {
            (names[k] if names else str(k)): _ranked(explanation.fields, per_class[k])
            for k in range(per_class.shape[0])
        }
    if explanation.rule is not None and explanation.holds is not None:
        out["rule"] = {
            "condition": explanation.rule,
            "holds_share": float(explanation.holds.mean()) if n else 0.0,
        }
    return out


def _ranked(fields: Sequence[str], means: np.ndarray | None) -> list[dict[str, Any]]:
    values = [0.0] * len(fields) if means is None else means.tolist()
    ranked = sorted(zip(fields, values, strict=True), key=lambda kv: -kv[1])
    return [{"field": field, "mean_abs": value} for field, value in ranked]
