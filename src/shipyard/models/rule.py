"""The rule rung: the heuristic a team already uses, from ``[baseline] rule``.

The rule splits rows in two; the rung predicts, for each side, the class frequencies (or
the target mean) seen on that side of the train split. So it scores like a model and is
judged by the same metric as every other rung.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from shipyard.models.base import Family
from shipyard.models.expression import Expression, parse


class Rule(Family):
    """A heuristic rule, e.g. ``tenure < 6 and contract == 'Month-to-month'``."""

    name = "rule"
    complexity = 1

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

    def state(self) -> dict[str, Any]:
        return {"sides": self.sides_, "coverage": self.coverage_}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.sides_ = [list(s) for s in state["sides"]]
        self.coverage_ = float(state["coverage"])
