"""A Dataset: a table read under a spec — its roles, its target, and cached statistics.

Quality checks, the leakage audit and the splitter all look at the same columns, codes and
row hashes; a Dataset computes each once. It also validates the table against the spec
(target present, usable for the task; every named column present), raising one
:class:`~shipyard.errors.DataError` that names the problem and the fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from functools import cached_property

import numpy as np
import pandas as pd

from shipyard.data.association import N_BINS, Power, Target, codes_for, column_power
from shipyard.data.roles import ColumnProfile, profile, to_datetime
from shipyard.errors import DataError
from shipyard.spec import Spec

#: Roles that are never features by default.
NON_FEATURE_ROLES = ("id", "index", "text", "constant")
SAMPLE_ROWS = 60_000


def _missing_column_message(name: str, key: str, columns: list[str]) -> str:
    close = difflib.get_close_matches(name, columns, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"column '{name}' named by '{key}' in shipyard.toml is not in the data.{hint}"


class Dataset:
    """A frame under a spec, checked for fitness and with cached derived statistics."""

    def __init__(
        self, frame: pd.DataFrame, spec: Spec, roles: Mapping[str, str] | None = None
    ) -> None:
        """``roles`` (every column's) are taken as given instead of profiled: a check of this
        very data under this very spec and version found them."""
        self.spec = spec
        self.raw = frame
        self._known_roles = (
            {c: roles[c] for c in frame.columns}
            if roles is not None and all(c in roles for c in frame.columns)
            else None
        )
        self._validate_names()
        target = spec.project.target
        self.missing_target = int(frame[target].isna().sum())
        self.frame = (
            frame[frame[target].notna()].reset_index(drop=True) if self.missing_target else frame
        )
        self._validate_target()
        self.target = Target.build(
            self.frame[target], spec.project.task, self.positive, seed=spec.split.seed
        )

    # --- validation ------------------------------------------------------------------

    def _validate_names(self) -> None:
        spec, columns = self.spec, list(self.raw.columns)
        target = spec.project.target
        if target not in columns:
            close = difflib.get_close_matches(target, columns, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise DataError(
                f"target column '{target}' (project.target) is not in the data.{hint} "
                f"Columns: {', '.join(columns[:30])}{' …' if len(columns) > 30 else ''}."
            )
        named = [("project.id", spec.project.id), ("project.time", spec.project.time)]
        for key in ("include", "exclude", "sensitive", "slices", "known_at_prediction"):
            named += [(f"features.{key}", c) for c in getattr(spec.features, key)]
        problems = [
            _missing_column_message(c, k, columns) for k, c in named if c and c not in columns
        ]
        if problems:
            raise DataError("\n".join(problems) + "\nFix shipyard.toml or the data.")

    def _validate_target(self) -> None:
        spec = self.spec
        name, task = spec.project.target, spec.project.task
        y = self.frame[name]
        if y.empty:
            raise DataError(
                f"target column '{name}' is empty in every row. Fill in the target, or point "
                "project.target at the column holding the labels."
            )
        n_classes = y.nunique()
        if task == "regression":
            if not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y):
                raise DataError(
                    f"target column '{name}' must be numeric for task 'regression'; got "
                    f"{y.dtype} values such as {list(y.astype(str).unique()[:3])}. "
                    "Use task = 'binary' or 'multiclass', or convert the column to numbers."
                )
            if n_classes < 2:
                raise DataError(f"target column '{name}' has a single value; nothing to predict.")
            return
        if n_classes <= 1000 and not pd.api.types.is_numeric_dtype(y):
            # labels that differ only in spacing or case are one class spelled two ways
            spelled: dict[str, list[str]] = {}
            for label in map(str, y.dropna().unique()):
                spelled.setdefault(label.strip().casefold(), []).append(label)
            clashes = [sorted(v) for v in spelled.values() if len(v) > 1]
            padded = sorted(x for v in spelled.values() for x in v if x != x.strip())
            if clashes or padded:
                shown = "; ".join(" vs ".join(repr(x) for x in c) for c in clashes[:5]) or (
                    ", ".join(map(repr, padded[:5])) + " (spaces around the label)"
                )
                raise DataError(
                    f"target column '{name}' has labels that differ only in spaces or case "
                    f"({shown}): they would train as different classes. Clean the labels "
                    "(strip the spaces, one spelling per class) and run again."
                )
        if n_classes < 2:
            raise DataError(
                f"target column '{name}' has a single class ({y.iloc[0]!r}) in every row; a "
                f"{task} task needs at least two. Check the data or the target column."
            )
        if task == "binary" and n_classes > 2:
            raise DataError(
                f"target column '{name}' has {n_classes} classes but task is 'binary'. "
                "Set task = 'multiclass' in shipyard.toml, or derive a two-class target."
            )
        positive = spec.project.positive
        labels = set(y.astype(str).unique())
        if task == "binary" and positive is not None and str(positive) not in labels:
            raise DataError(
                f"project.positive = {positive!r} is not a value of target '{name}'; "
                f"values are {sorted(labels)}. Set it to one of them."
            )

    # --- derived, computed once ------------------------------------------------------

    @property
    def positive(self) -> object:
        """The positive class of a binary target, matched to the column's own type."""
        pos = self.spec.project.positive
        if self.spec.project.task != "binary":
            return None
        y = self.frame[self.spec.project.target]
        values = list(pd.unique(y))
        if pos is None:
            return default_positive(values)
        for value in values:
            if value == pos or str(value) == str(pos):
                return value
        return pos

    @cached_property
    def profiles(self) -> dict[str, ColumnProfile]:
        return profile(self.frame)

    @property
    def role(self) -> dict[str, str]:
        if self._known_roles is not None:
            return dict(self._known_roles)
        return {name: p.role for name, p in self.profiles.items()}

    @cached_property
    def candidates(self) -> list[str]:
        """Columns that could be features: not the target, not excluded, not id-like.

        The time column (``project.time``) is one when it holds date-times: the moment of
        prediction is known when predicting, and the transform expands it into its calendar
        (month, weekday, day of year …), never its absolute value. ``[features] exclude``
        keeps it out; a time column that is not a date-time (a year, epoch seconds) is only
        a trend and stays out.
        """
        spec = self.spec
        skip = {spec.project.target, spec.project.id, *spec.features.exclude}
        time = spec.project.time
        if time and self.role.get(time) != "datetime":
            skip.add(time)
        if spec.features.include:
            return [c for c in spec.features.include if c not in skip]
        return [c for c, r in self.role.items() if c not in skip and r not in NON_FEATURE_ROLES]

    @cached_property
    def powers(self) -> dict[str, Power]:
        """Out-of-fold power of every column except the target, strongest first."""
        cols = [c for c in self.frame.columns if c != self.spec.project.target]
        powers = {c: column_power(self.frame[c], self.target) for c in cols}
        return dict(sorted(powers.items(), key=lambda kv: (-kv[1].power, -kv[1].value)))

    def stamps(self, column: str) -> pd.Series:
        """A column parsed as UTC timestamps (unparseable values NaT), parsed once."""
        cache = self.__dict__.setdefault("_stamps", {})
        if column not in cache:
            cache[column] = to_datetime(self.frame[column])
        return cache[column]

    @cached_property
    def row_hashes(self) -> np.ndarray:
        """One 64-bit hash per row over every column (equal rows hash equal)."""
        return pd.util.hash_pandas_object(self.frame, index=False).to_numpy()

    @cached_property
    def feature_hashes(self) -> np.ndarray:
        """One 64-bit hash per row over every column but the target."""
        cols = [c for c in self.frame.columns if c != self.spec.project.target]
        return pd.util.hash_pandas_object(self.frame[cols], index=False).to_numpy()

    @cached_property
    def sample_index(self) -> np.ndarray:
        """Row positions of a fixed random sample (all rows when the table is small)."""
        n = len(self.frame)
        if n <= SAMPLE_ROWS:
            return np.arange(n)
        rng = np.random.default_rng(self.spec.split.seed)
        return np.sort(rng.choice(n, SAMPLE_ROWS, replace=False))

    @cached_property
    def sample(self) -> pd.DataFrame:
        return self.frame.iloc[self.sample_index].reset_index(drop=True)

    @cached_property
    def sample_target(self) -> Target:
        t = self.target
        idx = self.sample_index
        return Target(t.kind, t.y[idx], t.folds[idx], t.n_classes)

    def sample_codes(self, column: str, n_bins: int = N_BINS) -> np.ndarray:
        """Codes of a column on the sample (see :func:`codes_for`), computed once."""
        cache = self.__dict__.setdefault("_codes", {})
        if (column, n_bins) not in cache:
            cache[column, n_bins] = codes_for(self.sample[column], n_bins)
        return cache[column, n_bins]


def default_positive(values: list[object]) -> object:
    """The class most likely meant as positive: True, 1, 'yes'/'true', else the rarer sorted last.

    >>> default_positive(["No", "Yes"])
    'Yes'
    >>> default_positive([0, 1])
    1
    """
    for value in values:
        if value is True or (isinstance(value, int | np.integer) and value == 1):
            return value
        if isinstance(value, str) and value.strip().lower() in (
            "yes",
            "true",
            "y",
            "1",
            "positive",
        ):
            return value
    return sorted(values, key=str)[-1]
