"""Values: how text and JSON become typed values, the one vocabulary every path shares.

Training reads a file, batch scoring reads text, a rule compares a column with a literal,
and the service receives JSON. All of them type a value here, so ``"yes"``, ``"Y"``,
``True`` and ``1`` mean the same thing wherever they arrive.

nulls
    ``None``, ``NaN``, ``pd.NA`` and ``NaT``; in text, the spellings in :data:`NULL_STRINGS`
    (exactly what ``pandas.read_csv`` treats as missing by default; both readers are given
    this list, so a CSV cell is null for training and for batch scoring alike). A JSON
    string such as ``"NA"`` is a null only where a boolean or a number is expected;
    a category keeps it as text.
booleans
    ``True``/``False`` (Python or NumPy), the numbers 0 and 1, and the text in
    :data:`TRUE_STRINGS` / :data:`FALSE_STRINGS` in any case and with surrounding blanks:
    yes/no, y/n, true/false, t/f, 1/0, 1.0/0.0. Anything else ("maybe", 2) is not a
    boolean: a :class:`ValueTypeError` from the strict functions, a flagged row from the
    vectorized ones.
numbers
    ints and floats (not booleans), and text that parses as a number after stripping
    blanks (``" 3.5 "`` is 3.5). Non-finite numbers count as missing.
datetimes
    ISO 8601 text (or any format pandas reads), timestamps; always in UTC.

Scalar functions (:func:`to_bool`, :func:`to_number`, :func:`bool_code`,
:func:`number_or_nan`, :func:`parse_datetime`) serve the one-record path: no dataframe is
built. Vectorized twins (:func:`parse_booleans`, :func:`parse_numbers`, :func:`to_datetime`)
work on a pandas Series or an Arrow array, one scalar call per distinct value, so a frame and
a record give identical results by construction.

>>> [to_bool(v) for v in ("yes", " No ", "Y", "t", "TRUE", 1, 0.0, True, None, "NA")]
[True, False, True, True, True, True, False, True, None, None]
>>> to_number(" 3.5 "), to_number(7)
(3.5, 7.0)
>>> to_bool("maybe")
Traceback (most recent call last):
shipyard.data.values.ValueTypeError: 'maybe' is not a boolean; write yes/no, y/n, true/false, t/f or 1/0 (any case)
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from shipyard.errors import DataError

#: Text read as null: the default ``na_values`` of ``pandas.read_csv``, also passed to
#: pyarrow's CSV reader (whose own default list lacks ``None`` and ``<NA>``).
NULL_STRINGS: tuple[str, ...] = (
    "",
    "#N/A",
    "#N/A N/A",
    "#NA",
    "-1.#IND",
    "-1.#QNAN",
    "-NaN",
    "-nan",
    "1.#IND",
    "1.#QNAN",
    "<NA>",
    "N/A",
    "NA",
    "NULL",
    "NaN",
    "None",
    "n/a",
    "nan",
    "null",
)
TRUE_STRINGS: tuple[str, ...] = ("true", "t", "yes", "y", "1", "1.0")
FALSE_STRINGS: tuple[str, ...] = ("false", "f", "no", "n", "0", "0.0")
#: What a message tells a user a boolean may be.
BOOLEAN_SPELLINGS = "yes/no, y/n, true/false, t/f or 1/0 (any case)"

_NULL_TEXT = frozenset(NULL_STRINGS)
_BOOL_TEXT: dict[str, bool] = {
    **{s: True for s in TRUE_STRINGS},
    **{s: False for s in FALSE_STRINGS},
}
# every spelling as users write it, so the common case is one dict lookup
_BOOL_EXACT: dict[str, bool] = {
    variant: truth
    for text, truth in _BOOL_TEXT.items()
    for variant in (text, text.upper(), text.capitalize())
}


class ValueTypeError(DataError):
    """A value that is not in its column's vocabulary ("maybe" for a boolean)."""


def is_null(value: Any) -> bool:
    """True for ``None``, NaN, ``pd.NA`` and ``NaT`` (text is never null here).

    >>> [is_null(v) for v in (None, float("nan"), pd.NA, pd.NaT, "", 0)]
    [True, True, True, True, False, False]
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    return isinstance(value, np.datetime64) and np.isnat(value)


def is_null_text(text: str) -> bool:
    """True for the text the CSV readers read as null (:data:`NULL_STRINGS`)."""
    return text in _NULL_TEXT or text.strip() == ""


_INVALID = object()


def _bool_or_invalid(value: Any) -> Any:
    """True, False, None (null) or ``_INVALID``."""
    if type(value) is str:
        hit = _BOOL_EXACT.get(value)
        if hit is not None:
            return hit
        text = value.strip()
        hit = _BOOL_TEXT.get(text.lower())
        if hit is not None:
            return hit
        return None if is_null_text(text) else _INVALID
    if value is True or value is False:
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if is_null(value):
        return None
    if isinstance(value, int | float | np.integer | np.floating):
        return True if value == 1 else False if value == 0 else _INVALID
    if isinstance(value, str):  # a str subclass (numpy.str_)
        return _bool_or_invalid(str(value))
    return _INVALID


def to_bool(value: Any) -> bool | None:
    """A boolean in any accepted spelling as ``True``/``False``; ``None`` for a null.

    Raises
    ------
    ValueTypeError
        The value is not a boolean in any spelling.
    """
    out = _bool_or_invalid(value)
    if out is _INVALID:
        raise ValueTypeError(f"{value!r} is not a boolean; write {BOOLEAN_SPELLINGS}")
    return out


def bool_code(value: Any) -> float:
    """1.0 / 0.0 for a boolean, NaN for a null or a value that is not a boolean.

    The transform's lenient form: a model never fails on a value; the contract is what
    refuses it.

    >>> bool_code("Yes"), bool_code(False), bool_code("maybe")
    (1.0, 0.0, nan)
    """
    out = _bool_or_invalid(value)
    if out is True:
        return 1.0
    if out is False:
        return 0.0
    return math.nan


def is_boolean(value: Any) -> bool:
    """True when the value is a boolean or a null (in the vocabulary of a boolean column)."""
    return _bool_or_invalid(value) is not _INVALID


def _number_or_invalid(value: Any) -> Any:
    if isinstance(value, bool | np.bool_):
        return _INVALID
    if isinstance(value, int | float | np.integer | np.floating):
        out = float(value)
        return out if math.isfinite(out) else math.nan
    if isinstance(value, str):
        text = value.strip()
        try:
            out = float(text)
        except ValueError:
            return math.nan if is_null_text(text) else _INVALID
        return out if math.isfinite(out) else math.nan
    if is_null(value):
        return math.nan
    return _INVALID


def to_number(value: Any) -> float:
    """A number (or numeric text) as float; NaN for a null or a non-finite number.

    Raises
    ------
    ValueTypeError
        The value is not a number (``"forty"``, ``True``).
    """
    out = _number_or_invalid(value)
    if out is _INVALID:
        raise ValueTypeError(f"{value!r} is not a number; write digits such as 3.5")
    return out


def is_number(value: Any) -> bool:
    """True when the value is a number, numeric text or a null."""
    return _number_or_invalid(value) is not _INVALID


def number_or_nan(value: Any) -> float:
    """A value as float; anything that is not a finite number counts as missing.

    The transform's lenient form (it keeps the old reading of ``True`` as 1.0).

    >>> number_or_nan(" 2 "), number_or_nan("forty"), number_or_nan(True)
    (2.0, nan, 1.0)
    """
    if value is None:
        return math.nan
    try:
        out = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        return math.nan
    return out if math.isfinite(out) else math.nan


# --- vectorized: a Series or an Arrow array, one scalar call per distinct value -------------


def _series(values: Any) -> pd.Series:
    if isinstance(values, pd.Series):
        return values
    if hasattr(values, "to_pandas"):  # a pyarrow Array or ChunkedArray
        return values.to_pandas()
    return pd.Series(list(values) if not isinstance(values, np.ndarray) else values, dtype=object)


def _per_unique(values: Any, fn: Any) -> tuple[np.ndarray, np.ndarray]:
    """``fn`` (-> float or ``_INVALID``) over distinct values: (floats, invalid mask)."""
    series = _series(values)
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    mapped = [fn(u) for u in uniques]
    invalid = np.array([m is _INVALID for m in mapped] + [False], dtype=bool)
    floats = np.array(
        [math.nan if m is _INVALID else float(m) for m in mapped] + [math.nan], dtype=np.float64
    )
    return floats[codes], invalid[codes]


def _bool_float(value: Any) -> Any:
    out = _bool_or_invalid(value)
    return math.nan if out is None else out


def parse_booleans(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """Booleans as float (1.0, 0.0, NaN for null or invalid) and where a value is invalid.

    >>> codes, bad = parse_booleans(pd.Series(["yes", "No", None, "maybe", "Y"]))
    >>> codes.tolist(), bad.tolist()
    ([1.0, 0.0, nan, nan, 1.0], [False, False, False, True, False])
    """
    series = _series(values)
    if pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=np.float64, na_value=np.nan), np.zeros(len(series), bool)
    return _per_unique(series, _bool_float)


def parse_numbers(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """Numbers (and numeric text) as float (NaN for null, non-finite or invalid) and where
    a value is invalid (not a number, or a boolean).

    >>> numbers, bad = parse_numbers(pd.Series([" 3.5 ", "7", None, "forty", "NA"]))
    >>> numbers.tolist(), bad.tolist()
    ([3.5, 7.0, nan, nan, nan], [False, False, False, True, False])
    """
    series = _series(values)
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        out = series.to_numpy(dtype=np.float64, na_value=np.nan).copy()
        out[~np.isfinite(out)] = np.nan
        return out, np.zeros(len(series), bool)
    return _per_unique(series, _number_or_invalid)


def booleans(values: Any) -> pd.Series:
    """A column as a nullable ``boolean`` Series; values outside the vocabulary raise.

    >>> booleans(pd.Series(["Yes", "no", None])).tolist()
    [True, False, <NA>]
    """
    series = _series(values)
    codes, bad = parse_booleans(series)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueTypeError(
            f"column '{series.name}' must be boolean; got {series.iloc[first]!r} in "
            f"{int(bad.sum()):,} of {len(series):,} rows (first at row {first}). "
            f"Write {BOOLEAN_SPELLINGS}, or declare the column categorical in shipyard.toml."
        )
    return pd.Series(
        pd.array(np.where(np.isnan(codes), None, codes == 1.0), dtype="boolean"),
        index=series.index,
        name=series.name,
    )


def all_boolean(values: Iterable[Any]) -> bool:
    """True when every non-null value is a boolean and both truths occur (a boolean column).

    >>> all_boolean(["Yes", "No", "yes"]), all_boolean(["yes", "yes"]), all_boolean([0, 2])
    (True, False, False)
    """
    seen = set()
    for value in values:
        out = _bool_or_invalid(value)
        if out is _INVALID:
            return False
        if out is not None:
            seen.add(out)
    return seen == {True, False}


# --- datetimes ----------------------------------------------------------------------------


def to_datetime(series: pd.Series) -> pd.Series:
    """A column as UTC timestamps (unparseable values become NaT)."""
    if pd.api.types.is_datetime64_any_dtype(series):
        if getattr(series.dt, "tz", None) is None:
            return series.dt.tz_localize("UTC")
        return series.dt.tz_convert("UTC")
    try:  # ISO 8601 text parses an order of magnitude faster than format inference
        return pd.to_datetime(series, utc=True, format="ISO8601")
    except (ValueError, TypeError):
        return pd.to_datetime(series, errors="coerce", utc=True, format="mixed")


def parse_datetime(value: Any) -> datetime | None:
    """One value as a UTC datetime; ``None`` when missing or unparseable.

    >>> parse_datetime("2024-03-01T12:00:00")
    datetime.datetime(2024, 3, 1, 12, 0, tzinfo=datetime.timezone.utc)
    """
    if is_null(value):
        return None
    if isinstance(value, pd.Timestamp):
        stamp = value
    else:
        try:
            stamp = pd.Timestamp(value)
        except (ValueError, TypeError):
            return None
    if pd.isna(stamp):
        return None
    stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
    return stamp.to_pydatetime()


_MONTH_NAMES = {
    name: number
    for number, full in enumerate(
        (
            "january", "february", "march", "april", "may", "june", "july", "august",
            "september", "october", "november", "december",
        ),
        start=1,
    )
    for name in (full, full[:3], "sept" if full == "september" else full[:3])
}  # fmt: skip
_TIME = r"(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[AaPp]\.?[Mm]\.?)?\s*(?:Z|[+-]\d{2}:?\d{2})?)?"
_DATE_SHAPES = (  # (pattern, label); groups name the parts the label does not fix
    (re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})" + _TIME), "YYYY-MM-DD"),
    (re.compile(r"(\d{4})/(\d{1,2})/(\d{1,2})" + _TIME), "YYYY/MM/DD"),
    (re.compile(r"(\d{1,2})([/.-])(\d{1,2})\2(\d{4}|\d{2})" + _TIME), "numeric"),
    (re.compile(r"([A-Za-z]{3,9})\.? (\d{1,2})(?:st|nd|rd|th)?,? (\d{4})" + _TIME), "Mon D YYYY"),
    (re.compile(r"(\d{1,2}) ([A-Za-z]{3,9})\.?,? (\d{4})" + _TIME), "D Mon YYYY"),
    (re.compile(r"(\d{1,2})-([A-Za-z]{3,9})-(\d{4}|\d{2})" + _TIME), "D-Mon-YYYY"),
)
#: How the label of a numeric date ends when its day and month cannot be told apart
#: (both 12 or less): ``"DD/MM/YYYY or MM/DD/YYYY" + UNKNOWN_ORDER``.
UNKNOWN_ORDER = " (day and month order unknown)"


def date_format(text: str) -> str | None:
    """How one text writes a date: a label such as ``YYYY-MM-DD``, ``DD/MM/YYYY``,
    ``MM/DD/YYYY``, ``Mon D YYYY``; None when it is not a date. A time of day after the
    date does not change the label. Day and month written as numbers, both 12 or less, are
    labelled with both readings (ending in :data:`UNKNOWN_ORDER`); a column's other dates
    may settle the order.

    >>> [date_format(t) for t in ("2024-01-05", "25/01/2024", "01/25/2024", "Jan 5 2024")]
    ['YYYY-MM-DD', 'DD/MM/YYYY', 'MM/DD/YYYY', 'Mon D YYYY']
    >>> date_format("05/01/2024"), date_format("2024-13-01"), date_format("soon")
    ('DD/MM/YYYY or MM/DD/YYYY (day and month order unknown)', None, None)
    """
    text = text.strip()
    for pattern, label in _DATE_SHAPES:
        found = pattern.fullmatch(text)
        if found is None:
            continue
        parts = found.groups()
        if label in ("YYYY-MM-DD", "YYYY/MM/DD"):
            month, day = int(parts[1]), int(parts[2])
        elif label == "numeric":
            first, sep, second, year = int(parts[0]), parts[1], int(parts[2]), parts[3]
            y = "Y" * len(year)
            if first > 12 and 1 <= second <= 12 and first <= 31:
                return f"DD{sep}MM{sep}{y}"
            if second > 12 and 1 <= first <= 12 and second <= 31:
                return f"MM{sep}DD{sep}{y}"
            if 1 <= first <= 12 and 1 <= second <= 12:
                return f"DD{sep}MM{sep}{y} or MM{sep}DD{sep}{y}{UNKNOWN_ORDER}"
            return None
        elif label == "Mon D YYYY":
            month, day = _MONTH_NAMES.get(parts[0].lower(), 0), int(parts[1])
        else:
            month, day = _MONTH_NAMES.get(parts[1].lower(), 0), int(parts[0])
        return label if 1 <= month <= 12 and 1 <= day <= 31 else None
    return None


BRIEF_CHARS = 60  # how much of a value a message quotes


def brief(value: Any, limit: int = BRIEF_CHARS) -> str:
    """A value as a message quotes it: short, one line, whatever the client sent — never
    the whole of a 4 MB string, never a walk into a value nested 1,000 levels deep.

    >>> brief("forty"), brief("x" * 100)[-19:], brief([[1]]), brief({"a": 1})
    ("'forty'", "…' (100 characters)", 'a JSON array of 1 item', 'a JSON object of 1 key')
    """
    if isinstance(value, list | tuple):
        return f"a JSON array of {len(value):,} item{'' if len(value) == 1 else 's'}"
    if isinstance(value, dict):
        return f"a JSON object of {len(value):,} key{'' if len(value) == 1 else 's'}"
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit])[:-1] + f"…' ({len(value):,} characters)"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
