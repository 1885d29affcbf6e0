"""The one feature transform, used in training and in serving.

Fitted on the train split only. Per column:

numeric
    median imputation, plus a missing-indicator column wherever training saw a missing
    value; standardized with the train mean and standard deviation when ``scale``;
boolean
    1.0 for true, 0.0 for false, in every spelling :mod:`shipyard.data.values` accepts
    (``True``, ``1``, ``"yes"``, ``"Y"`` …, so training's spelling does not matter); missing
    (and a value that is not a boolean, which the contract refuses) handled as for numbers.
    Plans saved by format version 1 (``true_key`` and ``known``) are read as they scored:
    their true key's meaning decides, or their exact keys when it has none;
categorical
    a vocabulary of the train values seen at least ``min_frequency`` times; everything else
    (rare, unseen) shares one UNKNOWN bucket, and missing has its own bucket when training
    had missing values. With ``unknown = "hash"`` values are hashed (CRC-32) into
    ``hash_buckets`` instead (collisions are the accepted cost). Encoded ``onehot`` (for
    linear models) or ``ordinal`` (one integer code per column, for trees);
datetime
    its calendar, in UTC: ``month``, ``weekday`` (Monday = 0), ``day_of_year`` and, when the train values carry a time of day, ``hour`` — each only
    when the train values span its cycle (a year for the month and the day of year), each
    then treated as numeric. Never the absolute timestamp or the year: a model would read
    them as a trend and extrapolate it past the train period (a time split's test rows all
    lie beyond it). This is how the time column (``project.time``, the moment of
    prediction) becomes features; see :func:`calendar_parts`.

Two paths give identical output: :meth:`Transform.transform` (a frame, vectorized) and
:meth:`Transform.transform_one` (one record, a plain dict, built for serving). Learned
parameters are plain JSON (:meth:`to_dict` / :meth:`from_dict`).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from shipyard.data.contract import category_key
from shipyard.data.values import (
    bool_code,
    number_or_nan,
    parse_booleans,
    parse_datetime,
    to_bool,
    to_datetime,
)
from shipyard.errors import BundleError, NotFittedError, SpecError

# 3: date-times are ``month``, ``weekday``, ``day_of_year`` and ``hour`` (with a time of
#    day), each only when train spans its cycle; version-2 plans (with ``day``) still score;
# 2: booleans by vocabulary; 1 (``true_key``/``known``) is still read
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
CALENDAR_PARTS = ("month", "weekday", "day_of_year")
TIME_OF_DAY_PARTS = ("hour",)
#: Days the train values must span for a part to repeat within them: a part whose cycle train
#: has not completed (the month, on eight months of data) takes values later rows hold and
#: train never did, and a model extrapolates them (a time split's test rows all lie later).
CYCLE_DAYS = {"month": 364, "weekday": 7, "day_of_year": 364, "hour": 1}
_PANDAS_PART = {"weekday": "day_of_week"}  # the rest share pandas' ``.dt`` names


def calendar_parts(stamps: pd.Series) -> tuple[str, ...]:
    """The parts a date-time column expands to: each calendar part whose cycle the values
    span (:data:`CYCLE_DAYS`), and ``hour`` only when some value carries a time of day (a
    date-only column would give a constant hour of 0).

    >>> calendar_parts(to_datetime(pd.Series(["2016-07-02", "2016-12-24"])))
    ('weekday',)
    >>> calendar_parts(to_datetime(pd.Series(["2016-01-01", "2016-12-31"])))
    ('month', 'weekday', 'day_of_year')
    >>> calendar_parts(to_datetime(pd.Series(["2013-01-01 05:00", "2013-01-09", None])))
    ('weekday', 'hour')
    """
    valid = stamps.dropna()
    if valid.empty:
        return ()
    span = (valid.max() - valid.min()) / pd.Timedelta(days=1)
    clock = bool(((valid - valid.dt.normalize()) != pd.Timedelta(0)).any())
    parts = CALENDAR_PARTS + (TIME_OF_DAY_PARTS if clock else ())
    return tuple(p for p in parts if span >= CYCLE_DAYS[p])


def _stamp_parts(stamps: pd.Series, part: str) -> pd.Series:
    return getattr(stamps.dt, _PANDAS_PART.get(part, part))


def _hash_bucket(key: str, buckets: int) -> int:
    return zlib.crc32(key.encode("utf-8")) % buckets


_number = number_or_nan
_parse_time = parse_datetime


def _part(stamp: datetime | None, part: str) -> float:
    if stamp is None:
        return math.nan
    if part == "weekday":
        return float(stamp.weekday())
    if part == "day_of_year":
        return float(stamp.timetuple().tm_yday)
    return float(getattr(stamp, part))


class Transform:
    """Feature transform: fit on train, then identical frame and one-record outputs.

    >>> frame = pd.DataFrame({"age": [30.0, None, 50.0], "plan": ["a", "b", "a"]})
    >>> t = Transform(min_frequency=1).fit(frame, {"age": "numeric", "plan": "categorical"})
    >>> t.feature_names_
    ['age', 'age__missing', 'plan=a', 'plan=b', 'plan=UNKNOWN']
    >>> t.transform_one({"age": None, "plan": "z"}).tolist() == t.transform(
    ...     pd.DataFrame({"age": [None], "plan": ["z"]}))[0].tolist()
    True
    """

    def __init__(
        self,
        *,
        categorical: str = "onehot",
        unknown: str = "bucket",
        hash_buckets: int = 1024,
        min_frequency: int = 10,
        scale: bool = True,
    ) -> None:
        self.categorical = categorical
        self.unknown = unknown
        self.hash_buckets = hash_buckets
        self.min_frequency = min_frequency
        self.scale = scale

    # --- fitting --------------------------------------------------------------------

    def fit(self, frame: pd.DataFrame, roles: Mapping[str, str]) -> Transform:
        """Learn every statistic from ``frame`` (the train split) for the columns in ``roles``."""
        plans: list[dict[str, Any]] = []
        for name, role in roles.items():
            series = frame[name]
            if role == "numeric":
                plans.append(self._fit_numeric(name, pd.to_numeric(series, errors="coerce")))
            elif role == "boolean":
                plans.append(self._fit_boolean(name, series))
            elif role == "datetime":
                stamps = to_datetime(series)
                for part in calendar_parts(stamps):
                    values = _stamp_parts(stamps, part)
                    plan = self._fit_numeric(f"{name}.{part}", values.astype(float))
                    plan.update(kind="datetime", column=name, part=part)
                    plans.append(plan)
            elif role == "categorical":
                plans.append(self._fit_categorical(name, series))
            else:
                raise SpecError(
                    f"column '{name}' has role '{role}', which is not a feature role (numeric, "
                    "boolean, datetime, categorical); exclude it in [features] exclude"
                )
        self.plans_ = plans
        self.feature_names_ = [n for p in plans for n in p["outputs"]]
        self.categorical_indices_ = [
            i for i, n in enumerate(self.feature_names_) if self._is_code(n, plans)
        ]
        self._compile()
        return self

    def _is_code(self, name: str, plans: list[dict[str, Any]]) -> bool:
        return any(
            p["kind"] == "categorical" and p["encoding"] == "ordinal" and p["outputs"] == [name]
            for p in plans
        )

    def _fit_numeric(self, name: str, values: pd.Series) -> dict[str, Any]:
        finite = values[np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))]
        median = float(finite.median()) if len(finite) else 0.0
        mean = float(finite.mean()) if len(finite) else 0.0
        std = float(finite.std(ddof=0)) if len(finite) > 1 else 0.0
        indicator = bool(len(finite) < len(values))
        outputs = [name, f"{name}__missing"] if indicator else [name]
        return {
            "kind": "numeric",
            "column": name,
            "median": median,
            "center": mean if self.scale else 0.0,
            "scale": std if self.scale and std > 0 else 1.0,
            "indicator": indicator,
            "outputs": outputs,
        }

    def _fit_boolean(self, name: str, series: pd.Series) -> dict[str, Any]:
        codes, _ = parse_booleans(series)
        plan = self._fit_numeric(name, pd.Series(codes, index=series.index))
        plan.update(kind="boolean")
        return plan

    def _fit_categorical(self, name: str, series: pd.Series) -> dict[str, Any]:
        has_missing = bool(series.isna().any())
        plan: dict[str, Any] = {
            "kind": "categorical",
            "column": name,
            "encoding": self.categorical,
            "missing": has_missing,
        }
        if self.unknown == "hash":
            plan["hash_buckets"] = self.hash_buckets
            size = self.hash_buckets
            labels = [f"{name}#{i}" for i in range(size)]
        else:
            # count the values, then key each distinct one: mapping every row's value through
            # category_key first cost ~0.3 s a column on 235,000 train rows
            raw = series.dropna().value_counts()
            counts = raw.groupby([category_key(v) for v in raw.index]).sum()
            vocab = sorted(str(k) for k, c in counts.items() if c >= self.min_frequency)
            plan["vocabulary"] = vocab
            labels = [f"{name}={v}" for v in vocab] + [f"{name}=UNKNOWN"]
            size = len(vocab) + 1
        if has_missing:
            labels.append(f"{name}=MISSING")
            size += 1
        plan["size"] = size
        plan["outputs"] = labels if self.categorical == "onehot" else [name]
        return plan

    # --- applying -------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "plans_"):
            raise NotFittedError(
                "this Transform is not fitted yet; call Transform.fit(train_frame, roles) first"
            )

    @property
    def n_features(self) -> int:
        self._check_fitted()
        return len(self.feature_names_)

    def _code_of(self, plan: dict[str, Any], value: Any, lookup: dict[str, int]) -> int:
        """The bucket of one categorical value: vocabulary index, UNKNOWN, MISSING or hash."""
        if type(value) is str:
            key = value
        elif value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
            return plan["size"] - 1 if plan["missing"] else self._unknown_code(plan)
        else:
            key = category_key(value)
        if "hash_buckets" in plan:
            return _hash_bucket(key, plan["hash_buckets"])
        return lookup.get(key, len(plan["vocabulary"]))

    @staticmethod
    def _unknown_code(plan: dict[str, Any]) -> int:
        if "hash_buckets" in plan:
            return _hash_bucket("", plan["hash_buckets"])
        return len(plan["vocabulary"])

    def _compile(self) -> None:
        self._lookups = [{v: i for i, v in enumerate(p.get("vocabulary", []))} for p in self.plans_]

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """The feature matrix of a frame: float64, one row per row, ``n_features`` columns."""
        self._check_fitted()
        out = np.empty((len(frame), len(self.feature_names_)), dtype=np.float64)
        for first, width, within, values in self._blocks(frame):
            if within is None:
                out[:, first] = values
            else:
                out[:, first : first + width] = 0.0
                out[np.arange(len(frame)), first + within] = values
        return out

    def transform_sparse(self, frame: pd.DataFrame) -> Any:
        """:meth:`transform`'s matrix as a SciPy CSR matrix, built without the dense one: one
        stored entry per row for each output column, or one-hot block, of a plan (an entry
        may be a stored zero: a missing-indicator's 0, say). Each row's entries are in
        column order, so a solver's sums over them are the dense matrix's sums over its
        non-zero entries, in the same order."""
        from scipy import sparse

        self._check_fitted()
        blocks = list(self._blocks(frame))
        n, k = len(frame), len(blocks)
        data = np.empty((n, k), dtype=np.float64)
        indices = np.empty((n, k), dtype=np.int32)
        for j, (first, _width, within, values) in enumerate(blocks):
            data[:, j] = values
            indices[:, j] = first if within is None else first + within
        matrix = sparse.csr_matrix(
            (data.ravel(), indices.ravel(), np.arange(0, n * k + 1, k, dtype=np.int64)),
            shape=(n, len(self.feature_names_)),
        )
        matrix.has_sorted_indices = True
        return matrix

    def entries_per_row(self) -> int:
        """How many entries :meth:`transform_sparse` stores per row."""
        self._check_fitted()
        return sum(1 + bool(p.get("indicator")) for p in self.plans_)

    def _blocks(
        self, frame: pd.DataFrame
    ) -> Iterator[tuple[int, int, np.ndarray | None, np.ndarray | float]]:
        """Each row's entry in each block of output columns, plan by plan: ``(first, width,
        within, values)``, the block of ``width`` columns from ``first``; ``within`` is the
        column of each row's entry inside it (one-hot; the rest of the block is 0), None
        for a one-column block; ``values`` the entries' values."""
        col = 0
        stamps_cache: dict[str, pd.Series] = {}
        for plan, lookup in zip(self.plans_, self._lookups, strict=True):
            name = plan["column"]
            if plan["kind"] == "categorical":
                series = frame[name] if name in frame.columns else pd.Series([None] * len(frame))
                uniques, inverse = _factorize(series)
                codes = np.array([self._code_of(plan, u, lookup) for u in uniques], dtype=np.int64)
                row_codes = codes[inverse]
                if plan["encoding"] == "onehot":
                    yield col, plan["size"], row_codes, 1.0
                    col += plan["size"]
                else:
                    yield col, 1, None, row_codes.astype(np.float64)
                    col += 1
                continue
            if plan["kind"] == "datetime":
                if name not in stamps_cache:
                    source = (
                        frame[name] if name in frame.columns else pd.Series([None] * len(frame))
                    )
                    stamps_cache[name] = to_datetime(source)
                stamps = stamps_cache[name]
                values = _stamp_parts(stamps, plan["part"])
                raw = values.to_numpy(dtype=float, na_value=np.nan)
            elif plan["kind"] == "boolean":
                series = frame[name] if name in frame.columns else pd.Series([None] * len(frame))
                uniques, inverse = _factorize(series)
                mapped = np.array([self._boolean(plan, u) for u in uniques] + [math.nan])
                raw = mapped[inverse]
            else:
                series = frame[name] if name in frame.columns else pd.Series([np.nan] * len(frame))
                raw = _numeric_array(series)
            missing = ~np.isfinite(raw)
            value = np.where(missing, plan["median"], raw)
            yield col, 1, None, (value - plan["center"]) / plan["scale"]
            col += 1
            if plan["indicator"]:
                yield col, 1, None, missing.astype(np.float64)
                col += 1

    @staticmethod
    def _boolean(plan: dict[str, Any], value: Any) -> float:
        if "true_key" in plan:  # a version-1 plan whose keys are not all booleans
            if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
                return math.nan
            key = category_key(value)
            if key == plan["true_key"]:
                return 1.0
            return 0.0 if key in plan["known"] else math.nan
        code = bool_code(value)
        return code if plan.get("positive", True) else 1.0 - code

    def transform_one(self, record: Mapping[str, Any]) -> np.ndarray:
        """The feature row of one record (a dict); equal to the frame path's row."""
        self._check_fitted()
        out = np.empty(len(self.feature_names_), dtype=np.float64)
        col = 0
        stamps: dict[str, datetime | None] = {}
        for plan, lookup in zip(self.plans_, self._lookups, strict=True):
            kind = plan["kind"]
            value = record.get(plan["column"])
            if kind == "categorical":
                code = self._code_of(plan, value, lookup)
                if plan["encoding"] == "onehot":
                    out[col : col + plan["size"]] = 0.0
                    out[col + code] = 1.0
                    col += plan["size"]
                else:
                    out[col] = code
                    col += 1
                continue
            if kind == "datetime":
                name = plan["column"]
                if name not in stamps:
                    stamps[name] = _parse_time(value)
                raw = _part(stamps[name], plan["part"])
            elif kind == "boolean":
                raw = self._boolean(plan, value)
            else:
                raw = _number(value)
            missing = math.isnan(raw)
            out[col] = ((plan["median"] if missing else raw) - plan["center"]) / plan["scale"]
            col += 1
            if plan["indicator"]:
                out[col] = 1.0 if missing else 0.0
                col += 1
        return out

    def transform_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The feature rows of many records (dicts): row ``i`` equals
        ``transform_one(records[i])`` exactly (the same per-value steps, then the same float
        arithmetic column by column), without pandas and at a fraction of the per-record cost."""
        self._check_fitted()
        n = len(records)
        out = np.empty((n, len(self.feature_names_)), dtype=np.float64)
        col = 0
        stamps: dict[str, list[datetime | None]] = {}
        for plan, lookup in zip(self.plans_, self._lookups, strict=True):
            kind, name = plan["kind"], plan["column"]
            values = [record.get(name) for record in records]
            if kind == "categorical":
                codes = np.array([self._code_of(plan, v, lookup) for v in values], dtype=np.int64)
                if plan["encoding"] == "onehot":
                    out[:, col : col + plan["size"]] = 0.0
                    out[np.arange(n), col + codes] = 1.0
                    col += plan["size"]
                else:
                    out[:, col] = codes
                    col += 1
                continue
            if kind == "datetime":
                if name not in stamps:
                    stamps[name] = [_parse_time(v) for v in values]
                raw = np.array([_part(t, plan["part"]) for t in stamps[name]], dtype=np.float64)
            elif kind == "boolean":
                raw = np.array([self._boolean(plan, v) for v in values], dtype=np.float64)
            else:
                raw = np.array([_number(v) for v in values], dtype=np.float64)
            missing = np.isnan(raw)
            out[:, col] = (np.where(missing, plan["median"], raw) - plan["center"]) / plan["scale"]
            col += 1
            if plan["indicator"]:
                out[:, col] = missing
                col += 1
        return out

    # --- persistence ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "format_version": FORMAT_VERSION,
            "settings": {
                "categorical": self.categorical,
                "unknown": self.unknown,
                "hash_buckets": self.hash_buckets,
                "min_frequency": self.min_frequency,
                "scale": self.scale,
            },
            "plans": self.plans_,
            "feature_names": self.feature_names_,
            "categorical_indices": self.categorical_indices_,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Transform:
        version = data.get("format_version")
        if version not in READABLE_VERSIONS:
            raise BundleError(
                f"transform format version {version!r} is not supported (this shipyard reads "
                f"versions {', '.join(map(str, READABLE_VERSIONS))}); retrain the model"
            )
        out = cls(**data["settings"])
        plans = list(data["plans"])
        if version == 1:
            plans = [_upgrade_boolean(p) if p["kind"] == "boolean" else p for p in plans]
        out.plans_ = plans
        out.feature_names_ = list(data["feature_names"])
        out.categorical_indices_ = list(data["categorical_indices"])
        out._compile()
        return out


def _upgrade_boolean(plan: dict[str, Any]) -> dict[str, Any]:
    """A version-1 boolean plan (1.0 for ``true_key``, 0.0 for the other ``known`` keys,
    NaN for anything else) in the vocabulary form, when its keys are booleans: then every
    training spelling scores as before and the other spellings of the same truth join it.
    A plan over keys that are not booleans (a column declared boolean by hand) keeps its
    exact keys.

    >>> _upgrade_boolean({"true_key": "yes", "known": ["no", "yes"], "median": 1.0})
    {'median': 1.0, 'positive': True}
    >>> _upgrade_boolean({"true_key": "0", "known": ["0"]})
    {'positive': False}
    """
    try:
        truth = to_bool(plan["true_key"])
        meanings = {key: to_bool(key) for key in plan["known"]}
    except ValueError:
        return dict(plan)
    if truth is None or any(
        (key == plan["true_key"]) != (meaning == truth) for key, meaning in meanings.items()
    ):
        return dict(plan)
    out = {k: v for k, v in plan.items() if k not in ("true_key", "known")}
    out["positive"] = truth
    return out


def _factorize(series: pd.Series) -> tuple[list[Any], np.ndarray]:
    """Distinct values (missing kept as one ``None``) and each row's index into them."""
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    values = list(uniques)
    if (codes < 0).any():
        codes = np.where(codes < 0, len(values), codes)
        values.append(None)
    return values, codes


def _numeric_array(series: pd.Series) -> np.ndarray:
    if pd.api.types.is_bool_dtype(series):
        return series.astype(float).to_numpy()
    if pd.api.types.is_numeric_dtype(series):
        return series.to_numpy(dtype=float, na_value=np.nan)
    uniques, inverse = _factorize(series)
    mapped = np.array([_number(u) for u in uniques] or [math.nan])
    return mapped[inverse]
