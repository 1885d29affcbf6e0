"""The rule rung: the heuristic a team already uses, from ``[baseline] rule``.

The rule splits rows in two; the rung predicts, for each side, the class frequencies (or
the target mean) seen on that side of the train split. So it scores like a model and is
judged by the same metric as every other rung.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from shipyard.models.base import Family
from shipyard.models.explanation import Explanation
from shipyard.models.expression import Expression, parse


class Rule(Family):
    """A heuristic rule, e.g. ``tenure < 6 and contract == 'Month-to-month'``."""

    name = "rule"
    complexity = 1
    explains = True

    def __init__(
        self, *, rule: str = "", roles: Mapping[str, str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.rule = rule
        self.roles = dict(roles or {})
        self._expression: Expression | None = None

    @property
    def expression(self) -> Expression:
        if self._expression is None:
            self._expression = parse(self.rule, self.roles)
        return self._expression

    def get_params(self) -> dict[str, Any]:
        return {**super().get_params(), "rule": self.rule, "roles": self.roles}

    def fit(self, frame, y, *, roles, weights=None, dev=None, watch=None) -> Rule:
        self.roles = {**dict(roles), **self.roles}
        self._expression = None
        hit = self.expression.evaluate(frame)
        sides = []
        for mask in (~hit, hit):
            part = y[mask]
            if self.task == "regression":
                sides.append([float(part.mean()) if len(part) else float(y.mean())])
            else:
                counts = np.bincount(part.astype(np.int64), minlength=self.n_classes) + 1.0
                sides.append((counts / counts.sum()).tolist())  # add-one: no side is certain
        self.sides_ = sides
        self.coverage_ = float(hit.mean())
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        self.check_fitted()
        table = np.asarray(self.sides_, dtype=float)
        rows = table[self.expression.evaluate(frame).astype(np.int64)]
        return rows[:, 0] if self.task == "regression" else self.as_output(rows)

    def predict_one(self, record: Mapping[str, Any]) -> Any:
        self.check_fitted()
        row = self.sides_[int(self.expression.evaluate_one(record))]
        if self.task == "regression":
            return float(row[0])
        return float(row[1]) if self.task == "binary" else np.asarray(row, dtype=float)

    def _explained(self, hit: np.ndarray) -> Explanation:
        """The condition is the explanation: the output depends on the fields only through
        whether the rule holds, so there is no per-field attribution; the base is the side's
        output (P(positive) for binary)."""
        table = np.asarray(self.sides_, dtype=float)
        rows = table[hit.astype(np.int64)]
        if self.task == "binary":
            rows = rows[:, 1:]
        scale = "value" if self.task == "regression" else "probability"
        return Explanation(
            [], np.zeros((len(rows), rows.shape[1], 0)), rows, scale, self.rule, hit.astype(bool)
        )

    def explain(self, frame: pd.DataFrame) -> Explanation:
        self._refuse_explain()
        return self._explained(np.asarray(self.expression.evaluate(frame)))

    def explain_records(self, records: Sequence[Mapping[str, Any]]) -> Explanation:
        self._refuse_explain()
        hit = np.array([bool(self.expression.evaluate_one(r)) for r in records], dtype=bool)
        return self._explained(hit)

    def prior(self) -> list[float]:
        """The output over all train rows: each side's output weighted by its share."""
        table = np.asarray(self.sides_, dtype=float)
        mixed = (1 - self.coverage_) * table[0] + self.coverage_ * table[1]
        return mixed[1:].tolist() if self.task == "binary" else mixed.tolist()

    def state(self) -> dict[str, Any]:
        return {"sides": self.sides_, "coverage": self.coverage_}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.sides_ = [list(s) for s in state["sides"]]
        self.coverage_ = float(state["coverage"])
