"""The data contract: the schema and reference statistics learned from training data.

:meth:`Contract.learn` records, per column, the role, dtype, nullability and null rate,
numeric range and quantile bins with their frequencies (the reference for drift), the
category set with frequencies, and the cardinality. The contract is saved as JSON.

It validates a whole frame (:meth:`Contract.validate`, every violation collected at once,
with counts and examples) and a single record (:meth:`Contract.record_validator`, a plain
dict, no dataframe, for serving). Errors are what cannot be scored safely (a missing
required column, a wrong type); warnings are what can be scored but deserves a look (a value
outside the training range, an unseen category, a null where training had none).

>>> import pandas as pd
>>> c = Contract.learn(pd.DataFrame({"age": [30, 40, 50], "plan": ["a", "b", "a"]}))
>>> [v.reason for v in c.record_validator(c.features)({"age": "forty", "plan": "z"})]
['wrong_type', 'unseen_category']
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipyard.data.roles import infer_role
from shipyard.data.values import (
    BOOLEAN_SPELLINGS,
    BRIEF_CHARS,
    brief,
    is_boolean,
    is_number,
    parse_booleans,
    parse_numbers,
    to_bool,
    to_datetime,
    to_number,
)
from shipyard.errors import ContractViolation, DataError, NotFittedError
from shipyard.files import atomic_write

FORMAT_VERSION = 1
N_DRIFT_BINS = 10
MAX_CATEGORIES = 1000
N_EXAMPLES = 5
MAX_NAMED_FIELDS = 30  # how many expected fields a message lists


@dataclass(frozen=True)
class Violation:
    """One way data breaks the contract, with how often and where."""

    column: str
    check: str  # "presence", "type", "size", "null", "range", "category"
    reason: str  # stable code: missing_column, wrong_type, unexpected_null, ...
    severity: str  # "error" or "warning"
    message: str
    count: int = 1
    examples: tuple[Any, ...] = ()
    first_row: int | None = None
    rows: Any = field(default=None, repr=False, compare=False)  # positions hit, when known

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "rows"}
        out["examples"] = [_plain(v) for v in self.examples]
        return out


@dataclass
class ColumnContract:
    """What training data looked like in one column."""

    name: str
    role: str
    dtype: str
    null_rate: float
    n_unique: int
    required: bool = True
    min: float | None = None
    max: float | None = None
    bin_edges: list[float] = field(default_factory=list)
    bin_freqs: list[float] = field(default_factory=list)
    categories: dict[str, float] = field(default_factory=dict)
    other_freq: float = 0.0  # share of rows in categories beyond MAX_CATEGORIES

    @property
    def nullable(self) -> bool:
        return self.null_rate > 0

    @property
    def closed_set(self) -> bool:
        """Categories are a known, complete set (so an unseen one is worth a warning).

        Booleans are checked against the boolean vocabulary instead (any spelling of true
        or false is known), never against the spellings training happened to use."""
        return self.role == "categorical" and self.other_freq == 0


def drift_edges(numbers: np.ndarray) -> np.ndarray:
    """The coarse drift (PSI) bin edges of finite numbers: their inner
    ``N_DRIFT_BINS``-quantiles, ties collapsed."""
    return np.unique(np.quantile(numbers, np.linspace(0, 1, N_DRIFT_BINS + 1)[1:-1]))


def category_counts(values: pd.Series) -> pd.Series:
    """Non-null values counted per category (spellings of one category, as
    :func:`~shipyard.data.values.category_key` reads them, counted together), the most
    frequent first."""
    counts = values.value_counts()
    grouped = counts.groupby([category_key(v) for v in counts.index]).sum()
    return grouped.sort_values(ascending=False, kind="stable")


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple | dict):  # a client's nested JSON: described, not walked
        return brief(value)
    if isinstance(value, str) and len(value) > BRIEF_CHARS:
        return value[:BRIEF_CHARS] + "…"
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


def _learn_column(series: pd.Series, role: str) -> ColumnContract:
    values = series.dropna()
    col = ColumnContract(
        name=str(series.name),
        role=role,
        dtype=str(series.dtype),
        null_rate=float(series.isna().mean()),
        n_unique=int(values.nunique()),
    )
    if role == "numeric":
        numeric = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
        numeric = numeric[np.isfinite(numeric)]
        if numeric.size:
            col.min, col.max = float(numeric.min()), float(numeric.max())
            edges = drift_edges(numeric)
            counts = np.bincount(
                np.searchsorted(edges, numeric, side="right"), minlength=len(edges) + 1
            )
            col.bin_edges = [float(e) for e in edges]
            col.bin_freqs = [float(c) for c in counts / len(series)]
    elif role == "datetime":
        stamps = to_datetime(values).dropna()
        if len(stamps):
            col.min = float(stamps.min().timestamp())
            col.max = float(stamps.max().timestamp())
    elif role == "boolean":  # frequencies by truth, whatever the spelling
        codes, _ = parse_booleans(series)
        col.categories = {
            key: float(np.mean(codes == code)) for key, code in (("true", 1.0), ("false", 0.0))
        }
    elif role == "categorical":
        freqs = category_counts(values) / len(series)
        kept = freqs.head(MAX_CATEGORIES)
        col.categories = {str(k): float(v) for k, v in kept.items()}
        col.other_freq = float(freqs.iloc[MAX_CATEGORIES:].sum())
    return col


def category_key(value: Any) -> str:
    """The text a category is known by: ``True``, ``1`` and ``1.0`` are all ``"1"``.

    >>> [category_key(v) for v in (True, 1, 1.0, "Yes")]
    ['1', '1', '1', 'Yes']
    """
    if type(value) is str:  # the common case first: this runs per field on the serving path
        return value
    if isinstance(value, bool | np.bool_):
        return "1" if value else "0"
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, np.generic):
        return str(value.item())
    return str(value)


#: What a record's field must hold, by role (the service's 422 messages say this).
EXPECTED = {
    "numeric": 'a number (or numeric text such as "3.5")',
    "boolean": f"a boolean: JSON true/false, or {BOOLEAN_SPELLINGS}",
    "datetime": "a date-time string",
}


def _type_problem(col: ColumnContract, value: Any) -> bool:
    """True when a single non-null value has a type the column cannot take."""
    if col.role == "numeric":
        return not is_number(value)
    if col.role == "boolean":
        return not is_boolean(value)
    if col.role == "datetime":
        return not isinstance(value, str | pd.Timestamp)
    return not isinstance(value, str | int | float | bool | np.generic)


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


class Contract:
    """The learned schema and statistics of a training frame."""

    def __init__(
        self,
        columns: dict[str, ColumnContract] | None = None,
        target: str | None = None,
        n_rows: int = 0,
    ) -> None:
        self.columns = dict(columns or {})
        self.target = target
        self.n_rows = n_rows

    # --- learning and persistence ------------------------------------------------------

    @classmethod
    def learn(
        cls, frame: pd.DataFrame, roles: Mapping[str, str] | None = None, target: str | None = None
    ) -> Contract:
        """Learn the contract of every column of ``frame`` (the target's is kept apart)."""
        roles = dict(roles or {})
        columns = {}
        for name in frame.columns:
            role = roles.get(name) or infer_role(frame[name], name)
            columns[name] = _learn_column(frame[name], role)
        if target is not None and target in columns:
            columns[target].required = False
        return cls(columns, target=target, n_rows=len(frame))

    def _check_learned(self) -> None:
        if not self.columns:
            raise NotFittedError(
                "this contract has learned nothing; call Contract.learn(frame) first"
            )

    @property
    def features(self) -> list[str]:
        return [c for c in self.columns if c != self.target]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "target": self.target,
            "n_rows": self.n_rows,
            "columns": [asdict(c) for c in self.columns.values()],
        }

    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def save(self, path: Path | str) -> None:
        atomic_write(path, json.dumps(self.to_dict(), indent=1, sort_keys=True))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Contract:
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise DataError(
                f"contract format version {version!r} is not supported (this shipyard reads "
                f"version {FORMAT_VERSION}); re-run `shipyard check` to learn it again."
            )
        columns = {c["name"]: ColumnContract(**c) for c in data["columns"]}
        return cls(columns, target=data.get("target"), n_rows=int(data.get("n_rows", 0)))

    @classmethod
    def load(cls, path: Path | str) -> Contract:
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(
                f"cannot read the contract '{path}': {exc}. Re-run `shipyard check`."
            ) from exc

    # --- validating a frame ------------------------------------------------------------

    def validate(self, frame: pd.DataFrame) -> list[Violation]:
        """Every violation in a frame: missing columns, wrong types, nulls, ranges, categories."""
        self._check_learned()
        out: list[Violation] = []
        for col in self.columns.values():
            if col.name not in frame.columns:
                if col.required:
                    out.append(
                        Violation(
                            col.name,
                            "presence",
                            "missing_column",
                            "error",
                            f"required column '{col.name}' is missing; training data had it "
                            f"({col.role}). Add it to the data.",
                        )
                    )
                continue
            out.extend(self._validate_series(col, frame[col.name]))
        return out

    def _validate_series(self, col: ColumnContract, series: pd.Series) -> list[Violation]:
        out = []
        nulls = series.isna()
        n_null = int(nulls.sum())
        if n_null and not col.nullable and col.name != self.target:
            out.append(
                _violation(
                    col,
                    "null",
                    "unexpected_null",
                    "warning",
                    nulls,
                    series,
                    f"has {n_null:,} nulls; training data had none",
                )
            )
        if col.role == "numeric":
            parsed, invalid = parse_numbers(series)
            numeric = pd.Series(parsed, index=series.index)
            bad = pd.Series(invalid, index=series.index)
            if bad.any():
                out.append(
                    _violation(
                        col,
                        "type",
                        "wrong_type",
                        "error",
                        bad,
                        series,
                        f"must be numeric; got non-numeric values in {int(bad.sum()):,} "
                        f"of {len(series):,} rows. Fix the data or declare the column "
                        "categorical in shipyard.toml",
                    )
                )
            if col.min is not None and col.max is not None:
                values = numeric.to_numpy(dtype=float, na_value=np.nan)
                outside = pd.Series((values < col.min) | (values > col.max), index=series.index)
                if outside.any():
                    out.append(
                        _violation(
                            col,
                            "range",
                            "out_of_range",
                            "warning",
                            outside,
                            series,
                            f"has {int(outside.sum()):,} values outside the training "
                            f"range [{col.min:g}, {col.max:g}]",
                        )
                    )
        elif col.role == "boolean":
            _, invalid = parse_booleans(series)
            bad = pd.Series(invalid, index=series.index)
            if bad.any():
                out.append(
                    _violation(
                        col,
                        "type",
                        "wrong_type",
                        "error",
                        bad,
                        series,
                        f"must be boolean ({BOOLEAN_SPELLINGS}); got other values in "
                        f"{int(bad.sum()):,} of {len(series):,} rows. Fix the data or declare "
                        "the column categorical in shipyard.toml",
                    )
                )
        elif col.role == "datetime":
            bad = to_datetime(series).isna() & ~nulls
            if bad.any():
                out.append(
                    _violation(
                        col,
                        "type",
                        "wrong_type",
                        "error",
                        bad,
                        series,
                        f"must hold dates or times; {int(bad.sum()):,} values do not parse",
                    )
                )
        elif col.closed_set:
            known = set(col.categories)
            new = [u for u in series.dropna().unique() if category_key(u) not in known]
            unseen = series.isin(new) & ~nulls
            if unseen.any():
                n_kinds = series[unseen].nunique()
                out.append(
                    _violation(
                        col,
                        "category",
                        "unseen_category",
                        "warning",
                        unseen,
                        series,
                        f"has {n_kinds:,} categories training never saw, in "
                        f"{int(unseen.sum()):,} rows; they are scored as unknown",
                    )
                )
        return out

    # --- validating one record ----------------------------------------------------------

    def record_validator(
        self, columns: Sequence[str], allowed: Sequence[str] = (), max_chars: int | None = None
    ) -> Callable[[Mapping[str, Any]], list[Violation]]:
        """A compiled check of one record that should hold ``columns`` (and may hold
        ``allowed``): every violation, any other field an error. Built for serving.

        ``max_chars``: the longest text a field may hold (longer is an error, ``too_long``).
        The fields that are no input are one violation (``unknown_field``) whose ``count``
        says how many there are and whose message names the first few: the cost of a
        record with thousands of them stays that of a set difference."""
        self._check_learned()
        present = [c for c in columns if c in self.columns]
        checks = [self._compile(self.columns[c], max_chars) for c in present]
        known = frozenset([*columns, *allowed])
        checked = set(present)
        extra = [c for c in dict.fromkeys([*columns, *allowed]) if c not in checked]
        expected = ", ".join(columns[:MAX_NAMED_FIELDS]) + (
            f" … ({len(columns):,} in all; GET /openapi.json lists them)"
            if len(columns) > MAX_NAMED_FIELDS
            else ""
        )

        def validate(record: Mapping[str, Any]) -> list[Violation]:
            out = [v for check in checks if (v := check(record)) is not None]
            if max_chars is not None:
                for name in extra:
                    value = record.get(name)
                    if type(value) is str and len(value) > max_chars:
                        out.append(_too_long(name, value, max_chars))
            n_unknown = len(record.keys() - known)  # a set difference, in C
            if n_unknown:
                names = [
                    _field_name(k)
                    for k in itertools.islice((k for k in record if k not in known), N_EXAMPLES)
                ]
                listed = ", ".join(f"'{n}'" for n in names)
                what = (
                    f"field {listed} is not an input"
                    if n_unknown == 1
                    else f"{n_unknown:,} fields ({listed}"
                    + (", …" if n_unknown > len(names) else "")
                    + ") are not inputs"
                )
                out.append(
                    Violation(
                        names[0],
                        "presence",
                        "unknown_field",
                        "error",
                        f"{what} of this model; expected fields: {expected}",
                        count=n_unknown,
                        examples=tuple(names),
                    )
                )
            return out

        return validate

    def _compile(
        self, col: ColumnContract, max_chars: int | None = None
    ) -> Callable[[Mapping[str, Any]], Violation | None]:
        name, lo, hi, cats = col.name, col.min, col.max, frozenset(col.categories)
        nullable, closed, numeric = col.nullable, col.closed_set, col.role == "numeric"
        boolean = col.role == "boolean"
        expected = EXPECTED.get(col.role, "a string or number")

        def check(record: Mapping[str, Any]) -> Violation | None:
            if name not in record:
                if col.required:
                    return Violation(
                        name,
                        "presence",
                        "missing_column",
                        "error",
                        f"field '{name}' is required ({expected})",
                    )
                return None
            value = record[name]
            if max_chars is not None and type(value) is str and len(value) > max_chars:
                return _too_long(name, value, max_chars)
            if _is_null(value):
                if nullable:
                    return None
                return Violation(
                    name,
                    "null",
                    "unexpected_null",
                    "warning",
                    f"field '{name}' is null; training data had no nulls here",
                )
            if _type_problem(col, value):
                return Violation(
                    name,
                    "type",
                    "wrong_type",
                    "error",
                    f"field '{name}' must be {expected}; got {brief(value)}",
                    examples=(_plain(value),),
                )
            if numeric and not isinstance(value, int | float):
                value = to_number(value)  # numeric text; null spellings are nulls
            if (numeric and math.isnan(value)) or (boolean and to_bool(value) is None):
                if nullable:
                    return None
                return Violation(
                    name,
                    "null",
                    "unexpected_null",
                    "warning",
                    f"field '{name}' is null; training data had no nulls here",
                )
            if numeric and lo is not None and not (lo <= value <= hi):
                return Violation(
                    name,
                    "range",
                    "out_of_range",
                    "warning",
                    f"field '{name}' = {brief(value)} is outside the training range [{lo:g}, {hi:g}]",
                    examples=(_plain(value),),
                )
            if closed and category_key(value) not in cats:
                return Violation(
                    name,
                    "category",
                    "unseen_category",
                    "warning",
                    f"field '{name}' = {brief(value)} is a category training never saw",
                    examples=(_plain(value),),
                )
            return None

        return check

    def check(self, frame: pd.DataFrame) -> None:
        """Raise :class:`ContractViolation` if the frame has any error-level violation."""
        errors = [v for v in self.validate(frame) if v.severity == "error"]
        if errors:
            lines = "\n".join(f"  - column '{v.column}': {v.message}" for v in errors)
            raise ContractViolation(f"data breaks the contract:\n{lines}", errors)


def _field_name(key: Any) -> str:
    """A client's field name as a message quotes it: whole when short, cut when not."""
    text = str(key)
    return (
        text if len(text) <= BRIEF_CHARS else text[:BRIEF_CHARS] + f"… ({len(text):,} characters)"
    )


def _too_long(name: str, value: str, max_chars: int) -> Violation:
    return Violation(
        name,
        "size",
        "too_long",
        "error",
        f"field '{name}' holds {len(value):,} characters; the limit is {max_chars:,} "
        "([serving] max_string_chars): send the value itself, not a document",
    )


def _violation(
    col: ColumnContract,
    check: str,
    reason: str,
    severity: str,
    mask: pd.Series,
    series: pd.Series,
    what: str,
) -> Violation:
    hits = np.flatnonzero(mask.to_numpy())
    examples = tuple(_plain(v) for v in pd.unique(series.iloc[hits[:200]])[:N_EXAMPLES])
    first = int(hits[0]) if len(hits) else None
    return Violation(
        column=col.name,
        check=check,
        reason=reason,
        severity=severity,
        message=f"column '{col.name}' {what} (first at row {first})",
        count=len(hits),
        examples=examples,
        first_row=first,
        rows=hits,
    )
