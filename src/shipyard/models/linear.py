"""The linear rung: logistic regression (classification) or ridge (regression).

Fitted with scikit-learn on the shared transform (one-hot categories, standardized
numbers); saved as JSON coefficients and predicted with NumPy, so loading needs neither
scikit-learn nor pickle. Logistic regression is solved on a sparse copy of the matrix when
most of it is zeros (one-hot columns): L-BFGS's loss-and-gradient passes then cost the
stored entries, not rows × columns (see :func:`solver_matrix`). Ridge keeps the dense
matrix: on a sparse one scikit-learn would swap its exact Cholesky solve for an iterative one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from shipyard.cores import LEDGER
from shipyard.features.transform import Transform
from shipyard.models.base import Family
from shipyard.models.explanation import Explanation, transform_fields


def _sigmoid(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp overflows to inf for very negative z: 1/inf = 0
        return 1.0 / (1.0 + np.exp(-z))


#: The largest share of stored entries at which the solver gets a sparse (CSR) matrix.
SPARSE_DENSITY = 0.25


def solver_matrix(transform: Transform, frame: pd.DataFrame) -> Any:
    """The matrix L-BFGS is given: CSR (:meth:`Transform.transform_sparse`, never dense in
    between) when the transform stores at most :data:`SPARSE_DENSITY` of a row's entries,
    else the dense matrix. Each solver iteration multiplies by the matrix twice, so this sets
    its cost: on flights (235,732 × 130, 11 entries a row, 70 iterations, one thread) the fit
    takes 0.6 s of CPU instead of 2.1 s, with the same iterations and dev AUC, and building
    the matrix 0.14 s instead of 0.92 s in a fresh process (the dense matrix's 245 MB are
    fresh memory to fill, then converted).
    """
    if transform.entries_per_row() > SPARSE_DENSITY * transform.n_features:
        return transform.transform(frame)
    return transform.transform_sparse(frame)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class Linear(Family):
    """Logistic or ridge regression; ``C`` (classification) or ``alpha`` (regression)."""

    name = "linear"
    complexity = 2
    explains = True
    files = ("model.json", "transform.json")

    def __init__(
        self,
        *,
        C: float = 1.0,
        alpha: float = 1.0,
        unknown: str = "bucket",
        hash_buckets: int = 1024,
        max_iter: int = 500,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.C = C
        self.alpha = alpha
        self.unknown = unknown
        self.hash_buckets = hash_buckets
        self.max_iter = max_iter

    def get_params(self) -> dict[str, Any]:
        return {
            **super().get_params(),
            "C": self.C,
            "alpha": self.alpha,
            "unknown": self.unknown,
            "hash_buckets": self.hash_buckets,
            "max_iter": self.max_iter,
        }

    def fit(self, frame, y, *, roles, weights=None, dev=None, watch=None) -> Linear:
        from sklearn.linear_model import LogisticRegression, Ridge
        from threadpoolctl import threadpool_limits

        self.transform_ = Transform(
            categorical="onehot", unknown=self.unknown, hash_buckets=self.hash_buckets, scale=True
        ).fit(frame, roles)
        X = (  # Ridge keeps the dense matrix (see the module's docstring)
            self.transform_.transform(frame)
            if self.task == "regression"
            else solver_matrix(self.transform_, frame)
        )
        requested = watch.threads if watch is not None else None
        # BLAS and OpenMP start one thread per core unless told: they get the cores' grant
        with (
            LEDGER.threads("linear", requested=requested) as threads,
            threadpool_limits(limits=threads),
        ):
            if self.task == "regression":
                model = Ridge(alpha=self.alpha).fit(X, y, sample_weight=weights)
                self.coef_ = np.atleast_2d(model.coef_).tolist()
                self.intercept_ = np.atleast_1d(model.intercept_).tolist()
            else:
                model = LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.seed)
                model.fit(X, y, sample_weight=weights)
                self.coef_ = model.coef_.tolist()
                self.intercept_ = model.intercept_.tolist()
        if watch is not None:
            watch.threads_used = threads
            # a solver cannot be stopped midway: an over-budget fit is reported, not cut
            watch.budget_hit = watch.over_budget()
        self._compile()
        return self

    def _compile(self) -> None:
        self._w = np.asarray(self.coef_, dtype=float).T
        self._b = np.asarray(self.intercept_, dtype=float)

    def _link(self, z: np.ndarray) -> np.ndarray:
        if self.task == "regression":
            return z[..., 0]
        if self.task == "binary":
            return _sigmoid(z[..., 0])
        return _softmax(z)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        self.check_fitted()
        return self._link(self.transform_.transform(frame) @ self._w + self._b)

    def predict_one(self, record: Mapping[str, Any]) -> Any:
        self.check_fitted()
        out = self._link(self.transform_.transform_one(record) @ self._w + self._b)
        return float(out) if np.ndim(out) == 0 else out

    def predict_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """``predict_one``'s values exactly: each row's product is the same vector-matrix
        call as ``predict_one``'s (one matrix product would sum in another order and differ
        in the last bit), and the link works element by element."""
        self.check_fitted()
        rows = self.transform_.transform_records(records)
        z = np.array([row @ self._w for row in rows]).reshape(len(rows), -1) + self._b
        return self._link(z)

    def _explained(self, X: np.ndarray) -> Explanation:
        """Exact contributions: column ``j`` adds ``w_j x_j`` to the score (the logit, per
        class for multiclass, the value for regression), summed into its source field; the
        base is the intercept."""
        fields, to_field = transform_fields(self.transform_)
        # (rows, outputs, columns) contributions, then summed per field: (rows, outputs, fields)
        values = (X[:, None, :] * self._w.T[None, :, :]) @ to_field
        base = np.tile(self._b, (len(X), 1))
        scale = {"binary": "log-odds", "multiclass": "logit"}.get(self.task, "value")
        return Explanation(fields, values, base, scale)

    def explain(self, frame: pd.DataFrame) -> Explanation:
        self._refuse_explain()
        return self._explained(self.transform_.transform(frame))

    def explain_records(self, records: Sequence[Mapping[str, Any]]) -> Explanation:
        self._refuse_explain()
        if len(records) == 1:  # the serving path: one record's row, as predict_one builds it
            return self._explained(self.transform_.transform_one(records[0])[None, :])
        return self._explained(self.transform_.transform_records(records))

    def state(self) -> dict[str, Any]:
        return {
            "coef": self.coef_,
            "intercept": self.intercept_,
            "features": self.transform_.feature_names_,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.coef_ = state["coef"]
        self.intercept_ = state["intercept"]
        self._compile()

    def save(self, folder) -> list[str]:
        import json
        from pathlib import Path

        names = super().save(folder)
        (Path(folder) / "transform.json").write_text(json.dumps(self.transform_.to_dict()))
        return [*names, "transform.json"]

    def _load_files(self, folder) -> None:
        import json

        self.transform_ = Transform.from_dict(json.loads((folder / "transform.json").read_text()))
