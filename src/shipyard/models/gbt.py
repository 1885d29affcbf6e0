"""The gradient-boosted trees rung: LightGBM.

Categories enter as integer codes (LightGBM's own categorical splits), numbers unscaled
with missing indicators. Early stopping watches the blackbox dev set; the number of
rounds it chose is kept. Saved in LightGBM's own text format; one record is scored through LightGBM's fast single-row
path with one thread, which keeps latency flat when another process holds the other core;
batch scoring can switch to the compiled forest (``accelerate()``), same output, faster.
"""

from __future__ import annotations

import ctypes
import json
import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipyard.cores import LEDGER
from shipyard.features.transform import Transform
from shipyard.models.base import Family, Watch
from shipyard.models.explanation import Explanation, transform_fields
from shipyard.models.forest import Forest, one_thread

MODEL_FILE = "model.lgb.txt"
_PREDICT_NORMAL = 0
_PREDICT_CONTRIB = 3  # LightGBM's C_API_PREDICT_CONTRIB: TreeSHAP values and the expected value
_FLOAT64 = 1
_MATRIX_ROWS = 256  # from this many records on, Booster.predict beats the one-row path
#: the train rows (evenly spaced over the split) the train learning curve is measured on
CURVE_ROWS = 10_000
_EPSILON = 1e-15  # LightGBM's clamp of a probability inside its log losses


class _SingleRow:
    """LightGBM's fast single-row prediction through its C API, one setup per thread.

    ``Booster.predict`` re-validates its input and builds a prediction context on every
    call (~100 µs); the "fast" C entry points do that once, so one row costs only the trees.
    Output equals ``Booster.predict`` exactly (same code inside LightGBM).
    """

    def __init__(
        self, booster: Any, n_features: int, n_outputs: int, kind: int = _PREDICT_NORMAL
    ) -> None:
        self._booster = booster
        self._n_features = n_features
        self._n_outputs = n_outputs
        self._kind = kind  # _PREDICT_NORMAL, or _PREDICT_CONTRIB (n_outputs: k × (features + 1))
        self._local = threading.local()

    def _setup(self) -> Any:
        from lightgbm.basic import _LIB, _c_str, _safe_call

        handle = ctypes.c_void_p()
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                self._booster._handle,
                ctypes.c_int(self._kind),
                ctypes.c_int(0),
                ctypes.c_int(-1),
                ctypes.c_int(_FLOAT64),
                ctypes.c_int32(self._n_features),
                _c_str("num_threads=1"),
                ctypes.byref(handle),
            )
        )
        out = np.empty(self._n_outputs, dtype=np.float64)
        state = (
            handle,
            out,
            out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
            ctypes.c_int64(0),
            _LIB,
            _safe_call,
        )
        self._local.state = state
        self._local.finalizer = weakref.finalize(self, _free_config, _LIB, handle)
        return state

    def __call__(self, row: np.ndarray) -> np.ndarray:
        state = getattr(self._local, "state", None) or self._setup()
        handle, out, out_ptr, length, lib, safe_call = state
        row = np.ascontiguousarray(row, dtype=np.float64)
        safe_call(
            lib.LGBM_BoosterPredictForMatSingleRowFast(
                handle, row.ctypes.data_as(ctypes.c_void_p), ctypes.byref(length), out_ptr
            )
        )
        return out.copy()


def _free_config(lib: Any, handle: Any) -> None:
    lib.LGBM_FastConfigFree(handle)


def _watching(watch: Watch, total: int, curves: dict[str, dict[str, list[float]]]) -> Any:
    """A LightGBM callback: tells ``watch`` of each round, and stops boosting once the fit is
    over its budget, keeping the rounds up to the best on dev so far (as early stopping
    would; every rung's metric is a loss, lower is better) or all of them without dev."""
    from lightgbm.callback import EarlyStopException

    def callback(env: Any) -> None:
        done = env.iteration - env.begin_iteration + 1
        watch.rounds = done
        watch.on_round(done, total)
        if done < total and watch.over_budget():
            watch.budget_hit = True
            dev = next(iter(curves.get("dev", {}).values()), None)
            best = int(np.argmin(dev)) if dev else done - 1
            raise EarlyStopException(best, env.evaluation_result_list)

    callback.order = 25  # type: ignore[attr-defined]  # after record_evaluation, before early_stopping
    return callback


class GradientBoostedTrees(Family):
    """LightGBM with early stopping on dev; the learning curve is kept for tracking."""

    name = "gbt"
    complexity = 3
    explains = True
    files = ("model.json", "transform.json", MODEL_FILE)

    def __init__(
        self,
        *,
        num_leaves: int = 31,
        learning_rate: float = 0.05,
        n_estimators: int = 1000,
        early_stopping_rounds: int = 50,
        min_child_samples: int = 50,
        feature_fraction: float = 0.9,
        unknown: str = "bucket",
        hash_buckets: int = 1024,
        num_threads: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_leaves = num_leaves
        self.learning_rate = learning_rate
        self.n_estimators = n_estimators
        self.early_stopping_rounds = early_stopping_rounds
        self.min_child_samples = min_child_samples
        self.feature_fraction = feature_fraction
        self.unknown = unknown
        self.hash_buckets = hash_buckets
        self.num_threads = num_threads

    def get_params(self) -> dict[str, Any]:
        keys = (
            "num_leaves",
            "learning_rate",
            "n_estimators",
            "early_stopping_rounds",
            "min_child_samples",
            "feature_fraction",
            "unknown",
            "hash_buckets",
            "num_threads",
        )
        return {**super().get_params(), **{k: getattr(self, k) for k in keys}}

    def _lgb_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate,
            "min_child_samples": self.min_child_samples,
            "feature_fraction": self.feature_fraction,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbose": -1,
        }
        if self.task == "binary":
            params.update(objective="binary", metric="binary_logloss")
        elif self.task == "multiclass":
            params.update(objective="multiclass", num_class=self.n_classes, metric="multi_logloss")
        else:
            params.update(objective="regression", metric="l2")
        return params

    def fit(self, frame, y, *, roles, weights=None, dev=None, watch=None) -> GradientBoostedTrees:
        import lightgbm as lgb

        watch = watch if watch is not None else Watch()
        self.transform_ = Transform(
            categorical="ordinal", unknown=self.unknown, hash_buckets=self.hash_buckets, scale=False
        ).fit(frame, roles)
        cats = self.transform_.categorical_indices_
        X = self.transform_.transform(frame)
        # the train curve's rows, kept before LightGBM frees the matrix: every round's loss
        # on all of train would cost a pass over it per round (1.3 s of 6.5 on flights)
        rows = np.unique(np.linspace(0, len(X) - 1, min(len(X), CURVE_ROWS)).astype(int))
        sample = (X[rows], np.asarray(y)[rows], None if weights is None else weights[rows])
        train = lgb.Dataset(
            X,
            y,
            weight=weights,
            categorical_feature=cats,
            free_raw_data=True,
        )
        curves: dict[str, dict[str, list[float]]] = {}
        callbacks = [lgb.record_evaluation(curves), _watching(watch, self.n_estimators, curves)]
        valid_sets, names = [], []
        if dev is not None and len(dev[0]):
            valid = lgb.Dataset(
                self.transform_.transform(dev[0]), dev[1], reference=train, categorical_feature=cats
            )
            valid_sets.append(valid)
            names.append("dev")
            callbacks.append(lgb.early_stopping(self.early_stopping_rounds, verbose=False))
        requested = self.num_threads if self.num_threads is not None else watch.threads
        with LEDGER.threads("gbt", requested=requested) as threads:
            watch.threads_used = threads
            booster = lgb.train(
                {**self._lgb_params(), "num_threads": threads},
                train,
                num_boost_round=self.n_estimators,
                valid_sets=valid_sets,
                valid_names=names,
                callbacks=callbacks,
                keep_training_booster=True,  # every round's trees, for the train curve
            )
            self.best_iteration_ = int(booster.best_iteration or booster.current_iteration())
            self.curves_ = {
                "train": self._train_curve(booster, sample, threads),
                **{part: next(iter(metrics.values())) for part, metrics in curves.items()},
            }
        self.model_text_ = booster.model_to_string(num_iteration=self.best_iteration_)
        self._compile()
        return self

    def _train_curve(
        self, booster: Any, sample: tuple[np.ndarray, Any, np.ndarray | None], threads: int
    ) -> list[float]:
        """The training loss after each round on ``sample`` (rows of train), as LightGBM's own
        metric defines it (``binary_logloss``, ``multi_logloss``, ``l2``), from each tree's raw
        output summed in order: the first tree carries the starting average. One prediction
        of every row's leaf in every tree, then each tree's leaf values looked up."""
        X, y, w = sample
        if len(X) == 0:
            return []
        per_round = self.n_classes if self.task == "multiclass" else 1
        rounds = booster.current_iteration()  # every round run, past the best one too
        leaves = booster.predict(X, pred_leaf=True, num_iteration=rounds, num_threads=threads)
        leaves = np.asarray(leaves, dtype=int).reshape(len(X), -1)  # tree: round, class
        raw = np.zeros((len(X), per_round))
        losses = []
        for i in range(rounds):
            for k in range(per_round):
                tree = i * per_round + k
                column = leaves[:, tree]
                values = np.array(
                    [booster.get_leaf_output(tree, int(leaf)) for leaf in range(column.max() + 1)]
                )
                raw[:, k] += values[column]
            if self.task == "regression":
                loss = (raw[:, 0] - y) ** 2
            elif self.task == "binary":
                p = np.clip(1.0 / (1.0 + np.exp(-raw[:, 0])), _EPSILON, 1 - _EPSILON)
                loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
            else:
                z = raw - raw.max(axis=1, keepdims=True)
                p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
                loss = -np.log(np.clip(p[np.arange(len(X)), y.astype(int)], _EPSILON, None))
            losses.append(float(np.average(loss, weights=w)))
        return losses

    def _compile(self) -> None:
        """Drop any Booster built from an older model text; the next use builds it again."""
        self.__dict__.pop("_booster", None)
        self.__dict__.pop("_single_row", None)
        self.__dict__.pop("_forest", None)
        self.__dict__.pop("_one_contrib", None)

    @property
    def booster_(self) -> Any:
        """LightGBM's Booster for the model text, built on first use (importing LightGBM,
        and with it scikit-learn, costs ~1.5 s a compiled forest never needs to pay)."""
        booster = self.__dict__.get("_booster")
        if booster is None:
            import lightgbm as lgb

            booster = self._booster = lgb.Booster(model_str=self.model_text_)
        return booster

    @property
    def _one_row(self) -> _SingleRow:
        single = self.__dict__.get("_single_row")
        if single is None:
            n_outputs = self.n_classes if self.task == "multiclass" else 1
            booster = self.booster_
            single = self._single_row = _SingleRow(booster, booster.num_feature(), n_outputs)
        return single

    def warm(self) -> None:
        self.check_fitted()
        self._one_row  # noqa: B018 - builds the Booster and the one-row path

    def accelerate(self) -> bool:
        """Score frames with a compiled :class:`~shipyard.models.forest.Forest`: LightGBM's
        output exactly, in less time. False (LightGBM keeps scoring) when numba is missing or
        the model is one the forest cannot reproduce."""
        self.check_fitted()
        try:
            forest = Forest.from_text(self.model_text_)
            forest.predict(np.zeros((1, forest.n_features)))  # compile, or load the cached kernel
        except (ImportError, ValueError):
            return False
        self._forest = forest
        return True

    def _scores(self, X: np.ndarray) -> np.ndarray:
        forest = getattr(self, "_forest", None)
        if forest is not None and one_thread(len(X)):  # the serving path: no grant to take
            return forest.predict(X, num_threads=1)
        with LEDGER.threads("gbt scoring", requested=self.num_threads) as threads:
            if forest is not None:
                return forest.predict(X, num_threads=threads)
            return self.booster_.predict(X, num_threads=threads)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        self.check_fitted()
        return self._scores(self.transform_.transform(frame))

    def predict_one(self, record: Mapping[str, Any]) -> Any:
        self.check_fitted()
        out = self._one_row(self.transform_.transform_one(record))
        return float(out[0]) if self.task != "multiclass" else out

    def predict_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The records' rows as one matrix, scored by the compiled forest once accelerated
        or when there are many (``Booster.predict`` costs ~0.7 ms a call), else row by row
        through the one-row path: LightGBM's output either way."""
        self.check_fitted()
        X = self.transform_.transform_records(records)
        if getattr(self, "_forest", None) is not None or len(X) >= _MATRIX_ROWS:
            return self._scores(X)
        one = self._one_row
        out = np.array([one(row) for row in X], dtype=np.float64).reshape(len(X), -1)
        return out if self.task == "multiclass" else out[:, 0]

    @property
    def _contrib_row(self) -> _SingleRow:
        """The one-row path of LightGBM's TreeSHAP (built on the first explained record: a
        server that is never asked to explain never builds it)."""
        single = self.__dict__.get("_one_contrib")
        if single is None:
            k = self.n_classes if self.task == "multiclass" else 1
            booster = self.booster_
            n = booster.num_feature()
            single = self._one_contrib = _SingleRow(booster, n, k * (n + 1), _PREDICT_CONTRIB)
        return single

    def _explained(self, contributions: np.ndarray) -> Explanation:
        """LightGBM's exact TreeSHAP values, ``(rows, k × (columns + 1))`` (each output's
        columns, then its expected value), summed into the source fields."""
        fields, to_field = transform_fields(self.transform_)
        k = self.n_classes if self.task == "multiclass" else 1
        blocks = contributions.reshape(len(contributions), k, -1)
        values = blocks[:, :, :-1] @ to_field
        scale = {"binary": "log-odds", "multiclass": "logit"}.get(self.task, "value")
        return Explanation(fields, values, blocks[:, :, -1].copy(), scale)

    def _contributions(self, X: np.ndarray) -> np.ndarray:
        if len(X) < _MATRIX_ROWS:  # the one-row path: no per-call set-up
            one = self._contrib_row
            return np.array([one(row) for row in X], dtype=np.float64).reshape(len(X), -1)
        with LEDGER.threads("gbt explaining", requested=self.num_threads) as threads:
            return np.asarray(self.booster_.predict(X, pred_contrib=True, num_threads=threads))

    def explain(self, frame: pd.DataFrame) -> Explanation:
        self._refuse_explain()
        return self._explained(self._contributions(self.transform_.transform(frame)))

    def explain_records(self, records: Sequence[Mapping[str, Any]]) -> Explanation:
        self._refuse_explain()
        if len(records) == 1:  # the serving path: one record's row, as predict_one builds it
            row = self.transform_.transform_one(records[0])
            return self._explained(self._contrib_row(row)[None, :])
        return self._explained(self._contributions(self.transform_.transform_records(records)))

    def state(self) -> dict[str, Any]:
        return {
            "best_iteration": self.best_iteration_,
            "curves": self.curves_,
            "features": self.transform_.feature_names_,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.best_iteration_ = int(state["best_iteration"])
        self.curves_ = state.get("curves", {})

    def save(self, folder) -> list[str]:
        names = super().save(folder)
        folder = Path(folder)
        (folder / "transform.json").write_text(json.dumps(self.transform_.to_dict()))
        (folder / MODEL_FILE).write_text(self.model_text_)
        return [*names, "transform.json", MODEL_FILE]

    def _load_files(self, folder: Path) -> None:
        self.transform_ = Transform.from_dict(json.loads((folder / "transform.json").read_text()))
        self.model_text_ = (folder / MODEL_FILE).read_text()
        self._compile()
