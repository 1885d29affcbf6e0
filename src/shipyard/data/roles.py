"""Column roles: what each column of a table is, inferred from its values and its name.

A role decides how a column is checked and, later, transformed:

``numeric``, ``categorical``, ``boolean``, ``datetime``
    ordinary features;
``id``
    an entity key (a customer, a plane): repeated rows of one entity must not straddle
    splits, and the key itself is not a feature;
``index``
    a row number (``rownames``, ``Unnamed: 0``): carries row order, never a feature;
``text``
    free text: long strings, mostly unique, with spaces;
``constant``
    one value (or none): carries no information.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from shipyard.data.values import all_boolean, to_datetime

ROLES = ("numeric", "categorical", "boolean", "datetime", "id", "index", "text", "constant")

_INDEX_NAMES = re.compile(
    r"^(rownames|row_?names?|index|unnamed: ?\d+|row_?(id|num(ber)?)|idx)$", re.I
)
_ID_NAMES = re.compile(r"(^id$|_id$|id$|^uuid|_uuid$|_key$|num$|number$|_no$)", re.I)
_SAMPLE = 200


@dataclass(frozen=True)
class ColumnProfile:
    """One column's inferred role and the basic counts behind it."""

    name: str
    role: str
    dtype: str
    n_unique: int
    null_rate: float


def is_string_like(series: pd.Series) -> bool:
    return pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)


def numeric_share(series: pd.Series) -> float:
    """Share of non-null values of a string column that parse as numbers."""
    values = series.dropna()
    if values.empty:
        return 0.0
    sample = values.sample(min(len(values), 2000), random_state=0) if len(values) > 2000 else values
    parsed = pd.to_numeric(sample.astype(str).str.strip(), errors="coerce")
    return float(parsed.notna().mean())


def looks_like_datetime(series: pd.Series) -> bool:
    """True for datetime dtypes and for strings that parse as ISO-like dates."""
    if pd.api.types.is_datetime64_any_dtype(series):
        return True
    if not is_string_like(series):
        return False
    sample = series.dropna().astype(str).head(_SAMPLE)
    if sample.empty or not sample.str.contains(r"\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{2,4}").all():
        return False
    parsed = pd.to_datetime(sample, errors="coerce", utc=True, format="mixed")
    return bool(parsed.notna().all())


def epoch_seconds(series: pd.Series) -> np.ndarray:
    """A date-time column as float seconds since 1970 (NaN where missing or unparseable)."""
    stamps = to_datetime(series)
    out = stamps.astype("int64").to_numpy(dtype=float, copy=True)
    unit = np.datetime_data(stamps.dtype.base if hasattr(stamps.dtype, "base") else stamps.dtype)[0]
    out /= {"s": 1, "ms": 1e3, "us": 1e6, "ns": 1e9}.get(unit, 1e9)
    out[stamps.isna().to_numpy()] = np.nan
    return out


def _is_boolean(series: pd.Series, uniques: np.ndarray) -> bool:
    """Both truths and nothing else, in the vocabulary of :mod:`shipyard.data.values`
    (``yes``/``No``/``Y``/``true``/``1`` …, spellings mixed or not)."""
    if pd.api.types.is_bool_dtype(series):
        return True
    if pd.api.types.is_numeric_dtype(series):
        return len(uniques) == 2 and set(np.asarray(uniques, dtype=float)) <= {0.0, 1.0}
    return len(uniques) <= 12 and all_boolean(uniques)


def _is_row_number(values: pd.Series) -> bool:
    """0, 1, 2, … or 1, 2, 3, … in file order: a row number, whatever its name."""
    first = values.iloc[0]
    return (
        len(values) > 2
        and first in (0, 1)
        and bool((np.diff(values.to_numpy(dtype=float)) == 1).all())
    )


def infer_role(series: pd.Series, name: str | None = None) -> str:
    """The role of one column.

    >>> infer_role(pd.Series([1, 2, 3, 4]), "rownames")
    'index'
    >>> infer_role(pd.Series(["Yes", "No", "No"]), "churn")
    'boolean'
    >>> infer_role(pd.Series(["y", "N", "yes", None]), "owner")
    'boolean'
    """
    name = str(series.name if name is None else name)
    values = series.dropna()
    n = len(series)
    if values.empty:
        return "constant"
    uniques = values.unique()
    if len(uniques) <= 1:
        return "constant"
    if _is_boolean(series, uniques):
        return "boolean"
    if looks_like_datetime(series):
        return "datetime"
    numeric = pd.api.types.is_numeric_dtype(series)
    if numeric:
        integral = pd.api.types.is_integer_dtype(series) or bool(
            np.all(np.mod(values.to_numpy(dtype=float), 1) == 0)
        )
        all_unique = len(uniques) == n
        if integral and all_unique and (_INDEX_NAMES.match(name) or _is_row_number(values)):
            return "index"
        if integral and _ID_NAMES.search(name) and len(uniques) > max(50, 0.01 * n):
            return "id"
        return "numeric"
    if is_string_like(series) and numeric_share(values) >= 0.95:
        return "numeric"  # numbers stored as text; quality checks report the rest
    text_values = values.astype(str)
    if _INDEX_NAMES.match(name) and len(uniques) == n:
        return "index"
    if _ID_NAMES.search(name) and len(uniques) > max(50, 0.01 * n):
        return "id"
    sample = text_values.head(2000)
    if (
        sample.str.len().mean() > 30
        and sample.str.contains(" ").mean() > 0.5
        and (len(uniques) > 0.5 * len(values))
    ):
        return "text"
    return "categorical"


def profile(frame: pd.DataFrame) -> dict[str, ColumnProfile]:
    """Infer the role of every column of a frame."""
    out = {}
    for name in frame.columns:
        series = frame[name]
        out[name] = ColumnProfile(
            name=name,
            role=infer_role(series, name),
            dtype=str(series.dtype),
            n_unique=int(series.nunique(dropna=True)),
            null_rate=float(series.isna().mean()),
        )
    return out
