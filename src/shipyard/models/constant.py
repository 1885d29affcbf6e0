"""The constant rung: the class prior (classification) or the target mean (regression)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from shipyard.models.base import Family
from shipyard.models.explanation import Explanation


class Constant(Family):
    """Predicts the same thing for everyone: the floor every other rung must clear."""

    name = "constant"
    complexity = 0
    explains = True

    def fit(self, frame, y, *, roles, weights=None, dev=None, watch=None) -> Constant:
        if self.task == "regression":
            self.value_ = [float(np.mean(y))]
        else:
            counts = np.bincount(y.astype(np.int64), minlength=self.n_classes).astype(float)
            self.value_ = (counts / counts.sum()).tolist()
        return self

    def _row(self) -> np.ndarray:
        return np.asarray(self.value_, dtype=float)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        self.check_fitted()
        row = self._row()
        if self.task == "regression":
            return np.full(len(frame), row[0])
        return self.as_output(np.tile(row, (len(frame), 1)))

    def predict_one(self, record: Mapping[str, Any]) -> Any:
        self.check_fitted()
        row = self._row()
        if self.task == "regression":
            return float(row[0])
        return float(row[1]) if self.task == "binary" else row.copy()

    def _explained(self, n: int) -> Explanation:
        """No field changes a constant: it reads none, so each field's attribution is 0
        (the exact Shapley value; a bundle lists its features with 0) and the base is the
        output."""
        row = self._row()
        outputs = row[1:] if self.task == "binary" else row  # binary: P(positive)
        scale = "value" if self.task == "regression" else "probability"
        return Explanation([], np.zeros((n, len(outputs), 0)), np.tile(outputs, (n, 1)), scale)

    def explain(self, frame: pd.DataFrame) -> Explanation:
        self._refuse_explain()
        return self._explained(len(frame))

    def explain_records(self, records: Sequence[Mapping[str, Any]]) -> Explanation:
        self._refuse_explain()
        return self._explained(len(records))

    def state(self) -> dict[str, Any]:
        return {"value": self.value_}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.value_ = list(state["value"])
