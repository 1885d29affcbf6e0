"""Training/serving skew: features an offline pipeline computed, compared row by row with the
features the service logged for the same request.

An offline row finds its logged row (:class:`Keys`) by ``request_id`` when the file has it
(plus the spec's entity id when it has that too, since the records of one request share its
id), else by the entity id and the time: the entity's latest logged request at or before the
offline time, no more than ``tolerance`` (60 s by default) before it. Shadow rows are left
out (they repeat their request's id), as are logged keys held by more than one row
(counted as ambiguous).

Each feature is then compared on the matched rows, after the contract's normalization: a
number differs when ``|a - b| > rtol · max(|a|, |b|) + atol`` (1e-6 and 1e-9 by default);
a boolean after reading every spelling (``data/values.py``); a category as the contract
knows it (``True``, ``1`` and ``1.0`` are ``"1"``); a date-time to the microsecond, in UTC.
A value on one side and a null on the other is a mismatch (counted apart too); two nulls
agree. An offline value its type cannot read (text in a number column) is a mismatch.

The rows (the shared results table's columns; ``section`` ``"skew"``), per feature:
``mismatch_rate`` (with its 95% Wilson interval as ``lower``/``upper``; level ``alert``
above ``threshold``, 0.01 by default), ``null_mismatch_rate``, and for numbers the size of
the mismatch over the mismatched rows with two values: ``median_abs_diff``,
``max_abs_diff``, ``median_rel_diff``, ``max_rel_diff`` (relative to ``max(|a|, |b|)``).
Notes name up to five examples (the key, the offline and the served value). Model-level
rows (``column`` ``""``): ``matched_rows`` and ``unmatched_rate`` (offline rows with no
logged row, or an ambiguous one; level ``warn`` above ``threshold``).

:func:`skew_report` reads an offline file and a prediction log and returns these rows.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import DataError
from shipyard.monitoring.table import result_row

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from shipyard.spec import Spec
    from shipyard.workspace import Workspace

SECTION = "skew"
THRESHOLD = 0.01
RTOL = 1e-6
ATOL = 1e-9
TOLERANCE = dt.timedelta(seconds=60)
N_EXAMPLES = 5
_Z95 = 1.959963984540054
_PREFIX = "f."  # the log's feature columns (serving/log.py)


@dataclass(frozen=True)
class Keys:
    """The offline columns that name a logged row: ``request_id`` (with ``entity`` too when
    given), or ``entity`` and ``time`` (the entity's latest logged request at or before the
    time, at most ``tolerance`` earlier)."""

    request_id: str | None = None
    entity: str | None = None
    time: str | None = None
    tolerance: dt.timedelta = TOLERANCE

    def __post_init__(self) -> None:
        if self.request_id is None and (self.entity is None or self.time is None):
            raise DataError(
                "skew needs a request id column, or an entity id and a time column, to find "
                "each offline row's logged request."
            )

    def describe(self) -> str:
        if self.request_id is not None:
            return f"'{self.request_id}'" + (f" and '{self.entity}'" if self.entity else "")
        return (
            f"'{self.entity}' and the latest request at or before '{self.time}' "
            f"(within {self.tolerance.total_seconds():g} s)"
        )


def compare_offline(
    offline: pd.DataFrame,
    logged: pd.DataFrame,
    *,
    features: Sequence[str],
    types: Mapping[str, str],
    keys: Keys,
    threshold: float = THRESHOLD,
    rtol: float = RTOL,
    atol: float = ATOL,
) -> list[dict[str, Any]]:
    """Skew rows (see the module docstring) of ``offline`` against ``logged``.

    Parameters
    ----------
    offline : pandas.DataFrame
        The offline pipeline's rows: the key columns of ``keys`` and the features.
    logged : pandas.DataFrame
        The prediction log as :func:`~shipyard.serving.log.read_log` reads it (``request_id``,
        ``time``, ``entity_id``, ``arm`` and ``f.<feature>`` columns), as pandas.
    features : sequence of str
        The features to compare; each must be an offline column and a logged one.
    types : mapping
        Feature → ``number``, ``boolean``, ``string`` or ``datetime`` (the log's kinds,
        :func:`~shipyard.serving.log.feature_types`).
    keys : Keys
        How offline rows find their logged rows.
    threshold : float
        A ``mismatch_rate`` above it is an ``alert``; an ``unmatched_rate`` above it a ``warn``.
    rtol, atol : float
        Two numbers agree when ``|a - b| <= rtol · max(|a|, |b|) + atol``.

    Raises
    ------
    DataError
        A key column or feature missing on either side (named), a key without a value or a
        time that does not parse (the column, the count and the first row).
    """
    missing = [c for c in [keys.request_id, keys.entity, keys.time] if c and c not in offline]
    missing += [f for f in features if f not in offline]
    if missing:
        raise DataError(
            f"the offline file has no column {', '.join(map(repr, missing))}; its columns are "
            f"{', '.join(map(str, offline.columns))}. Add them, or compare other features."
        )
    absent = [f for f in features if _PREFIX + f not in logged]
    if absent:
        raise DataError(
            f"the prediction log holds no feature {', '.join(map(repr, absent))}: the "
            "service never logged them. Compare the features the model is served with."
        )
    unknown = sorted(
        {types.get(f, "") for f in features} - {"number", "boolean", "string", "datetime"}
    )
    if unknown:
        raise DataError(f"skew: unknown feature type(s) {unknown}; use the log's kinds.")
    offline = offline.reset_index(drop=True)
    served = logged[logged["arm"] != "shadow"] if "arm" in logged else logged
    matched, names, unmatched, ambiguous = _join(offline, served, keys)
    rows: list[dict[str, Any]] = []
    n = len(matched)
    for feature in features:
        rows += _compare_feature(
            feature,
            types[feature],
            offline[feature].loc[matched["row"]].reset_index(drop=True),
            matched[_PREFIX + feature].reset_index(drop=True),
            names,
            threshold=threshold,
            rtol=rtol,
            atol=atol,
        )
    total = len(offline)
    lost = len(unmatched) + ambiguous
    rows.append(
        _result(
            "",
            "matched_rows",
            float(n),
            "ok" if n else "empty",
            f"{n:,} of {total:,} offline rows matched a logged request by {keys.describe()}",
        )
    )
    rate = lost / total if total else math.nan
    examples = ", ".join(unmatched[:N_EXAMPLES])
    rows.append(
        _result(
            "",
            "unmatched_rate",
            rate,
            "empty" if not total else "warn" if rate > threshold else "ok",
            f"{len(unmatched):,} offline rows matched no logged request"
            + (f" (e.g. {examples})" if examples else "")
            + (
                f"; {ambiguous:,} matched more than one logged row and were left out"
                if ambiguous
                else ""
            ),
        )
    )
    return rows


def _result(
    column: str,
    statistic: str,
    value: float,
    level: str,
    note: str,
    lower: float | None = None,
    upper: float | None = None,
) -> dict[str, Any]:
    return result_row(
        SECTION, column, statistic, value, level=level, note=note, lower=lower, upper=upper
    )


def _key_text(values: pd.Series) -> pd.Series:
    """Key values as the log stores ids: text, ``1`` and ``1.0`` alike (null stays null)."""
    import pandas as pd

    from shipyard.data.contract import category_key

    return values.map(lambda v: None if pd.isna(v) else category_key(v)).astype("string")


def _no_nulls(values: pd.Series, column: str, what: str) -> None:
    bad = values.isna()
    if bad.any():
        first = int(bad.to_numpy().nonzero()[0][0])
        raise DataError(
            f"column '{column}' of the offline file must {what}; {int(bad.sum()):,} of "
            f"{len(values):,} rows do not (first at row {first + 2}, counting the header as row "
            "1). Fill them in, or drop those rows."
        )


def _join(
    offline: pd.DataFrame, served: pd.DataFrame, keys: Keys
) -> tuple[pd.DataFrame, list[str], list[str], int]:
    """The matched logged rows (with ``row``: the offline row), each matched row's key as
    text, the keys of unmatched offline rows, and how many offline rows matched more than
    one logged row."""
    import pandas as pd

    from shipyard.data.values import to_datetime

    left = pd.DataFrame({"row": range(len(offline))})
    on = []
    if keys.request_id is not None:
        left["request_id"] = _key_text(offline[keys.request_id])
        _no_nulls(left["request_id"], keys.request_id, "name a request")
        on.append("request_id")
    if keys.entity is not None:
        left["entity_id"] = _key_text(offline[keys.entity])
        _no_nulls(left["entity_id"], keys.entity, "name an entity")
        on.append("entity_id")
    right = served.assign(
        request_id=served["request_id"].astype("string"),
        entity_id=served["entity_id"].astype("string"),
    )
    ambiguous = 0
    if keys.request_id is not None:
        label = left[on].astype(str).agg("/".join, axis=1)
        repeated = right.duplicated(on, keep=False)
        doubtful = left.merge(
            right.loc[repeated, on].drop_duplicates(), on=on, how="left", indicator=True
        )
        is_ambiguous = (doubtful["_merge"] == "both").to_numpy()
        ambiguous = int(is_ambiguous.sum())
        joined = left[~is_ambiguous].merge(right[~repeated], on=on, how="left", indicator=True)
        found = (joined["_merge"] == "both").to_numpy()
        label = label[~is_ambiguous].reset_index(drop=True)
    else:
        assert keys.time is not None  # Keys checks it has request_id, or entity and time
        stamps = to_datetime(offline[keys.time])
        _no_nulls(stamps, keys.time, "hold a date-time (ISO 8601: 2024-05-01T12:00:00Z)")
        left["time"] = stamps.astype("datetime64[us, UTC]")
        label = left["entity_id"] + "@" + left["time"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        right = right.dropna(subset=["entity_id"])
        right = right.assign(time=right["time"].astype("datetime64[us, UTC]")).sort_values("time")
        order = left.sort_values("time", kind="stable")
        joined = pd.merge_asof(
            order,
            right.rename(columns={"request_id": "logged_request_id"}),
            on="time",
            by="entity_id",
            direction="backward",
            tolerance=pd.Timedelta(keys.tolerance),
        )
        joined = joined.set_index(order.index).sort_index()
        found = joined["logged_request_id"].notna().to_numpy()
        label = label.reset_index(drop=True)
    matched = joined[found].reset_index(drop=True)
    return matched, label[found].tolist(), label[~found].tolist(), ambiguous


def _values(
    kind: str, offline: pd.Series, logged: pd.Series
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both sides as comparable arrays (numbers as float, NaN for null; other kinds as
    objects, None for null) and where an offline value could not be read."""
    import numpy as np
    import pandas as pd

    from shipyard.data.contract import category_key
    from shipyard.data.values import parse_booleans, parse_numbers, to_datetime

    if kind == "number":
        a, bad = parse_numbers(offline)
        return a, logged.to_numpy(dtype=np.float64, na_value=np.nan), bad
    if kind == "boolean":
        a, bad = parse_booleans(offline)
        b, _ = parse_booleans(logged)
        return a, b, bad
    if kind == "datetime":  # as float microseconds since 1970 (exact below 2**53)
        epoch, micro = pd.Timestamp(0, tz="UTC"), pd.Timedelta(microseconds=1)
        stamps = to_datetime(offline)
        bad = (stamps.isna() & offline.notna()).to_numpy()
        a = ((stamps.astype("datetime64[us, UTC]") - epoch) / micro).to_numpy(np.float64)
        served = pd.to_datetime(logged, utc=True).astype("datetime64[us, UTC]")
        return a, ((served - epoch) / micro).to_numpy(np.float64), bad
    known = {v: category_key(v) for v in offline.dropna().unique()}
    a = np.array([None if pd.isna(v) else known[v] for v in offline], dtype=object)
    b = np.array([None if pd.isna(v) else str(v) for v in logged], dtype=object)
    return a, b, np.zeros(len(a), dtype=bool)


def _compare_feature(
    feature: str,
    kind: str,
    offline: pd.Series,
    logged: pd.Series,
    names: list[str],
    *,
    threshold: float,
    rtol: float,
    atol: float,
) -> list[dict[str, Any]]:
    import numpy as np

    a, b, unreadable = _values(kind, offline, logged)
    n = len(a)
    null_a = np.array([v is None for v in a], bool) if a.dtype == object else np.isnan(a)
    null_b = np.array([v is None for v in b], bool) if b.dtype == object else np.isnan(b)
    null_a &= ~unreadable
    one_null = null_a != null_b
    both = ~null_a & ~null_b & ~unreadable
    differ = np.zeros(n, dtype=bool)
    if kind == "number":
        with np.errstate(invalid="ignore"):
            gap = np.abs(a - b)
            scale = np.maximum(np.abs(a), np.abs(b))
            differ[both] = gap[both] > rtol * scale[both] + atol
    else:
        differ[both] = a[both] != b[both]
    mismatch = differ | one_null | unreadable
    k, nulls = int(mismatch.sum()), int(one_null.sum())
    examples = ", ".join(
        f"{names[i]} (offline {_shown(offline.iloc[i])}, served {_shown(logged.iloc[i])})"
        for i in np.flatnonzero(mismatch)[:N_EXAMPLES]
    )
    if n == 0:
        rate, low, high, level = math.nan, None, None, "empty"
    else:
        rate = k / n
        low, high = _wilson(k, n)
        level = "alert" if rate > threshold else "ok"
    rule = (
        f"|a - b| > {rtol:g}·max(|a|, |b|) + {atol:g}"
        if kind == "number"
        else "not equal after the contract's normalization"
    )
    note = (
        f"{k:,} of {n:,} matched rows differ ({rule}; a null on one side only counts)"
        + (f", e.g. {examples}" if examples else "")
        if n
        else "no offline row matched a logged request"
    )
    rows = [
        _result(feature, "mismatch_rate", rate, level, note, low, high),
        _result(
            feature,
            "null_mismatch_rate",
            nulls / n if n else math.nan,
            "ok" if n else "empty",
            f"{nulls:,} of {n:,} matched rows hold a value on one side and a null on the other",
        ),
    ]
    if kind == "number":
        sized = differ & both
        gaps = gap[sized]
        relative = gaps / scale[sized]
        for statistic, values in [("abs_diff", gaps), ("rel_diff", relative)]:
            for how in ["median", "max"]:
                empty = not len(values)
                rows.append(
                    _result(
                        feature,
                        f"{how}_{statistic}",
                        math.nan
                        if empty
                        else float(np.median(values) if how == "median" else np.max(values)),
                        "empty" if empty else "ok",
                        "no two values differ"
                        if empty
                        else f"over the {len(values):,} mismatched rows with a value on both sides"
                        + (" (relative to max(|a|, |b|))" if statistic == "rel_diff" else ""),
                    )
                )
    return rows


def _shown(value: Any) -> str:
    import pandas as pd

    from shipyard.data.values import brief

    if pd.isna(value):
        return "null"
    return brief(value.item() if hasattr(value, "item") else value, 30)


def _wilson(k: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of a rate ``k / n``.

    >>> [round(x, 4) for x in _wilson(7, 100)]
    [0.0343, 0.1375]
    """
    p = k / n
    centre = p + _Z95**2 / (2 * n)
    half = _Z95 * math.sqrt(p * (1 - p) / n + _Z95**2 / (4 * n * n))
    scale = 1 + _Z95**2 / n
    return max(0.0, (centre - half) / scale), min(1.0, (centre + half) / scale)


_ARROW_KINDS = {"double": "number", "bool": "boolean", "string": "string"}


def skew_report(
    offline_path: Path | str,
    log_folder: Path | str | None,
    spec: Spec,
    workspace: Workspace | None = None,
    *,
    threshold: float = THRESHOLD,
    tolerance: dt.timedelta = TOLERANCE,
    since: dt.date | None = None,
) -> list[dict[str, Any]]:
    """Skew rows of an offline file (CSV or Parquet, read by ``data/io.py``) against a
    prediction log (``log_folder``, else the workspace's): every offline column the log
    holds as a feature is compared (see the module docstring), keyed by ``request_id``
    when the file has it, else by the spec's ``[project] id`` and ``time`` (or a ``time``
    column).

    Raises
    ------
    DataError
        The file cannot be read, has neither key, shares no feature with the log, or none
        of its rows matches a logged request; the log folder is missing or unreadable.
    """
    from shipyard.data.io import read_table
    from shipyard.monitoring.labels import entity_and_time
    from shipyard.serving.log import read_log

    folder = Path(log_folder) if log_folder is not None else (workspace or _workspace(spec)).logs
    source = Path(offline_path)
    offline = read_table(source).frame
    entity = spec.project.id
    if "request_id" in offline.columns:
        keys = Keys(
            "request_id", entity if entity in offline.columns else None, tolerance=tolerance
        )
    else:
        found, when = entity_and_time(list(offline.columns), spec, f"'{source}'")
        keys = Keys(entity=found, time=when, tolerance=tolerance)
    table = read_log(folder, since=since)
    types = {}
    for field in table.schema:
        if field.name.startswith(_PREFIX):
            kind = str(field.type)
            types[field.name[len(_PREFIX) :]] = (
                "datetime" if kind.startswith("timestamp") else _ARROW_KINDS.get(kind, "string")
            )
    key_columns = {keys.request_id, keys.entity}
    features = [c for c in offline.columns if c in types and c not in key_columns]
    if not features:
        raise DataError(
            f"'{source}' shares no feature with the prediction log in {folder}: its columns "
            f"are {', '.join(map(str, offline.columns))}; the log's features are "
            f"{', '.join(sorted(types)) or 'none (it is empty)'}. Compare the same features."
        )
    rows = compare_offline(
        offline, table.to_pandas(), features=features, types=types, keys=keys, threshold=threshold
    )
    if not next(r["value"] for r in rows if r["statistic"] == "matched_rows"):
        unmatched = next(r["note"] for r in rows if r["statistic"] == "unmatched_rate")
        raise DataError(
            f"no row of '{source}' matches a logged request by {keys.describe()} ({unmatched}). "
            "Check that the file and the log cover the same requests and period."
        )
    return rows


def _workspace(spec: Spec) -> Workspace:
    from shipyard.workspace import Workspace

    return Workspace.of(spec)


def rows(offline: Path, context: Any) -> list[dict[str, Any]]:
    """The ``monitor --offline FILE`` hook: :func:`skew_report` of ``offline`` against the
    run's prediction log (``context``: the monitor's ``RunContext``)."""
    return skew_report(offline, context.workspace.logs, context.spec, context.workspace)
