"""``shipyard monitor``: the prediction log read back, window by window, into mergeable
summaries and the results table.

The log is streamed file by file (:func:`~shipyard.serving.log.read_log_file`, only the
columns monitoring needs), so memory holds one file plus the summaries, whatever the log's
size. Each row goes to a **window**: a time window aligned to UTC boundaries (``1h`` starts
on the hour; ``Nd`` windows are counted from Monday 1970-01-05 00:00 UTC, so ``1d`` is a UTC
day and ``7d`` an ISO week, Monday to Monday), or every ``N rows`` in log order. Per window,
model version and arm it keeps a :class:`Group`: each feature's and each prediction column's
summary over the answering bundle's reference bins (:func:`~shipyard.monitoring.summary.
summarize`; two files' groups combine with :func:`~shipyard.monitoring.summary.merge`),
values outside the contract's range, contract warnings by field, errors, a latency histogram
and the last request's time. The rules (:mod:`shipyard.monitoring.alerts`) turn groups into
rows of the shared results table (:data:`COLUMNS`), which are kept in the workspace
(:func:`write_results`, :func:`read_results`).

Agreement of a shadow or canary with the champion needs the same requests' answers side by
side, and the realized metric per slice needs each labeled request's slice, so each window
keeps per logged row its request id and answers, the value of each ``[features] slices``
and ``sensitive`` column (a category code or a number) and whether any input lay outside
the reference's support (:func:`~shipyard.monitoring.estimation.outside_column`, computed
as the row is read): the one part of the memory that grows with the log.

>>> parse_window("7d").seconds, parse_window("5000 rows").rows
(604800, 5000)
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from shipyard.errors import DataError, UsageError
from shipyard.monitoring.reference import Reference, prediction_columns
from shipyard.monitoring.summary import (
    NumericReference,
    NumericSummary,
    Summary,
    as_numbers,
    category_positions,
    merge,
    positions_summary,
    summarize,
)
from shipyard.serving.log import FIELDS as LOG_FIELDS
from shipyard.spec import WINDOW_PATTERN

if TYPE_CHECKING:
    import pyarrow as pa

    from shipyard.data.contract import Contract

US = 1_000_000
ORIGIN_US = 4 * 86_400 * US  # Monday 1970-01-05 00:00 UTC: where day windows are counted from
#: The log's fields monitoring reads (its feature columns are read beside them).
FIELDS = tuple(name for name in LOG_FIELDS if name != "entity_id")
#: Rows read before they are grouped and summarized (memory holds about one batch).
BATCH_ROWS = 262_144
#: A group of this many rows has its columns summarized on several threads.
PARALLEL_ROWS = 50_000
# the latency histogram: 200 bins per decade from 1 µs to 1,000 s (each 1.2% wide)
LATENCY_EDGES = np.logspace(-3, 6, 9 * 200 + 1)


@dataclass(frozen=True)
class Window:
    """How rows are grouped: every ``seconds`` (aligned to UTC) or every ``rows``."""

    text: str
    seconds: int | None = None
    rows: int | None = None
    months: int | None = None  # calendar months (UTC), e.g. "1mo"

    @property
    def whole_days(self) -> bool:
        """Windows made of whole UTC days (days, weeks, months), so days merge into them."""
        return self.months is not None or (self.seconds is not None and self.seconds % 86_400 == 0)

    @property
    def timed(self) -> bool:
        """Windows by time (hours, days, months), not by a count of rows."""
        return self.rows is None

    def index(self, time_us: np.ndarray) -> np.ndarray:
        """The window of each time (epoch microseconds) of a timed window."""
        if self.months is not None:
            months = time_us.astype("datetime64[us]").astype("datetime64[M]").astype(np.int64)
            return months // self.months
        assert self.seconds is not None
        return (time_us - ORIGIN_US) // (self.seconds * US)

    def bounds(self, index: int) -> tuple[int, int]:
        """A timed window's start (included) and end (excluded), epoch microseconds.

        >>> [iso(t) for t in parse_window("1mo").bounds(520)]
        ['2013-05-01T00:00:00Z', '2013-06-01T00:00:00Z']
        """
        if self.months is not None:
            start, end = (
                int(np.datetime64(i * self.months, "M").astype("datetime64[us]").astype(np.int64))
                for i in (index, index + 1)
            )
            return start, end
        assert self.seconds is not None
        start = ORIGIN_US + index * self.seconds * US
        return start, start + self.seconds * US


def parse_window(text: str) -> Window:
    """``1h``, ``6h``, ``1d``, ``7d``, ``1mo`` (calendar months, UTC) or ``5000 rows``
    (``[monitoring] window``, ``--window``)."""
    found = re.fullmatch(WINDOW_PATTERN, str(text))
    if found is None:
        raise UsageError(
            f"--window {text!r} is not a window: give hours (1h), days (1d, 7d), calendar "
            "months (1mo) or a count of rows (5000 rows)."
        )
    count, unit = int(found.group("count")), found.group("unit")
    if unit.startswith("row"):
        return Window(f"{count} rows", rows=count)
    if unit == "mo":
        return Window(f"{count}mo", months=count)
    return Window(f"{count}{unit}", seconds=count * (3600 if unit == "h" else 86_400))


def parse_time(text: str | None, option: str) -> int | None:
    """An ISO date or date-time (naive means UTC) as epoch microseconds."""
    if text is None:
        return None
    try:
        stamp = dt.datetime.fromisoformat(str(text).strip())
    except ValueError:
        raise UsageError(
            f"{option} {text!r} is not a date or time: write it as ISO 8601, e.g. 2026-05-01 "
            "or 2026-05-01T12:00:00Z."
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return (stamp - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def iso(micros: int | None) -> str | None:
    """Epoch microseconds as ISO 8601 in UTC."""
    if micros is None:
        return None
    stamp = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=int(micros))
    return stamp.isoformat().replace("+00:00", "Z")


@dataclass
class Latencies:
    """A latency histogram over :data:`LATENCY_EDGES` that merges by addition; a quantile
    is the geometric middle of its bin (within 0.6% of the exact value)."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(len(LATENCY_EDGES) + 1, np.int64))

    def add(self, values: np.ndarray) -> None:
        finite = values[np.isfinite(values)]
        index = np.searchsorted(LATENCY_EDGES, np.maximum(finite, LATENCY_EDGES[0]))
        self.counts += np.bincount(index, minlength=len(self.counts))

    def merge(self, other: Latencies) -> None:
        self.counts += other.counts

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    def quantile(self, q: float) -> float:
        if self.n == 0:
            return float("nan")
        k = int(np.searchsorted(np.cumsum(self.counts), q * self.n, side="left"))
        k = min(max(k, 1), len(LATENCY_EDGES) - 1)
        return float(math.sqrt(LATENCY_EDGES[k - 1] * LATENCY_EDGES[k]))


@dataclass
class Group:
    """What one window of one model version and arm held, in counts that add up."""

    window: int
    version: int
    arm: str
    first_us: int
    last_us: int
    rows: int = 0
    errors: int = 0
    features: dict[str, Summary] = field(default_factory=dict)
    predictions: dict[str, Summary] = field(default_factory=dict)
    out_of_range: Counter[str] = field(default_factory=Counter)
    absent: Counter[str] = field(default_factory=Counter)  # rows whose file lacked the field
    new_fields: Counter[str] = field(default_factory=Counter)  # non-null values of unknown fields
    warnings: Counter[str] = field(default_factory=Counter)  # by field
    reasons: dict[str, Counter[str]] = field(default_factory=dict)
    latency: Latencies = field(default_factory=Latencies)
    answers: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    # per file, aligned with ``answers``: the slice columns' values, the outside-support flags
    slices: list[dict[str, Any]] = field(default_factory=list)
    outside: list[np.ndarray] = field(default_factory=list)

    def merge(self, other: Group) -> None:
        self.first_us, self.last_us = (
            min(self.first_us, other.first_us),
            max(self.last_us, other.last_us),
        )
        self.rows += other.rows
        self.errors += other.errors
        for mine, theirs in (
            (self.features, other.features),
            (self.predictions, other.predictions),
        ):
            for name, summary in theirs.items():
                mine[name] = merge(mine[name], summary) if name in mine else summary
        for counter in ("out_of_range", "absent", "new_fields", "warnings"):
            getattr(self, counter).update(getattr(other, counter))
        for name, reasons in other.reasons.items():
            self.reasons.setdefault(name, Counter()).update(reasons)
        self.latency.merge(other.latency)
        self.answers.extend(other.answers)
        self.slices.extend(other.slices)
        self.outside.extend(other.outside)


@dataclass
class Answering:
    """A model version that answered: its reference, contract and features; the columns
    its windows are sliced by, and each slice's test metric at train with its 95% interval
    (``{"contract=Two year": {"metric": "roc_auc", "value": 0.81, "lower": 0.74,
    "upper": 0.87}}``, from the bundle's evaluation; slices tiny at train are left out)."""

    version: int
    reference: Reference
    contract: Contract
    features: list[str]
    types: dict[str, str]
    slices: list[str] = field(default_factory=list)
    test_slices: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, version: int, path: Path, slices: Sequence[str] = ()) -> Answering:
        from shipyard.bundle import load_bundle
        from shipyard.serving.log import feature_types

        bundle = load_bundle(path)
        reference = Reference.from_bundle(bundle)  # ReferenceMissing: retrain to enable drift
        features = list(bundle.features)
        found = bundle.evaluation().get("slices") or {}
        metric = found.get("metric")
        tests = {
            f"{e['column']}={e['value']}": {
                "metric": metric,
                "value": float(e[metric]),
                "lower": float(e.get("ci_low", e[metric])),
                "upper": float(e.get("ci_high", e[metric])),
            }
            for e in found.get("slices", [])
            if not e.get("tiny") and e.get(metric) is not None
        }
        types = feature_types(bundle.contract, features)
        return cls(
            version, reference, bundle.contract, features, types, list(dict.fromkeys(slices)), tests
        )

    def score_columns(self) -> list[str]:
        assert self.reference.task is not None
        return prediction_columns(self.reference.task, self.reference.classes)


@dataclass
class Scan:
    """Everything one pass over the log found."""

    groups: dict[tuple[int, int, str], Group] = field(default_factory=dict)
    files: int = 0
    rows: int = 0
    skipped: list[str] = field(default_factory=list)  # one warning per unreadable file
    versions_without_bundle: Counter[int] = field(default_factory=Counter)
    without_clock: int = 0  # rows with no event time (``clock = "event"``), left out
    skipped_days: set[str] = field(default_factory=set)  # partitions with a skipped file
    unanswered_days: set[str] = field(default_factory=set)  # ... with rows of no bundle
    days_kept: int = 0  # days taken from the kept day summaries


def _partition(micros: int) -> str:
    return f"date={dt.date(1970, 1, 1) + dt.timedelta(microseconds=micros):%Y-%m-%d}"


def scan(
    files: Sequence[Path],
    answering: Callable[[int], Answering | None],
    window: Window,
    *,
    since_us: int | None,
    until_us: int | None,
    model: int | None = None,
    clock: str | None = None,
    offset: int = 0,
    out: Scan | None = None,
) -> Scan:
    """Read ``files`` into per-window, per-version, per-arm groups, in batches of about
    :data:`BATCH_ROWS` rows (many small files are read, then grouped and summarized together,
    so a file costs its read and little more); ``answering(version)`` gives the version's
    :class:`Answering`, or None to skip its rows. An unreadable or foreign file is a counted
    warning (``Scan.skipped``), never an error. ``offset`` is how many rows in range came
    before ``files`` (windows of N rows count from there: a part of the log scanned apart,
    as ``--engine ray`` does). :func:`~shipyard.monitoring.days.scan_days` is this scan with
    closed days kept and reused."""
    from shipyard.serving.log import combine

    out = Scan() if out is None else out
    pending: list[pa.Table] = []
    held = 0

    def flush() -> None:
        nonlocal offset, held
        if not pending:
            return
        table = combine(pending, exclude=["entity_id"])  # in log order: file by file
        pending.clear()
        held = 0
        for group in _groups_of(table, answering, window, offset, out):
            key = (group.window, group.version, group.arm)
            if key in out.groups:
                out.groups[key].merge(group)
            else:
                out.groups[key] = group
        offset += table.num_rows

    for path, table in _read_ahead(files):
        if isinstance(table, DataError):
            out.skipped.append(str(table))
            out.skipped_days.add(path.parent.name)
            continue
        out.files += 1
        if clock is not None:
            table = _on_clock(table, clock, path, out)
        table = _within(table, since_us, until_us, model)
        if table.num_rows == 0:
            continue
        out.rows += table.num_rows
        pending.append(_in_time_order(table))
        held += table.num_rows
        if held >= BATCH_ROWS:
            flush()
    flush()
    return out


def _read_ahead(files: Sequence[Path], depth: int = 4) -> Iterator[tuple[Path, Any]]:
    """Each file read (its table, or the :class:`DataError` that says why it cannot be),
    in order, the next ``depth`` files read by a thread meanwhile: Arrow's reading releases
    the GIL, so a file is read while the one before it is grouped and summarized."""
    from concurrent.futures import Future, ThreadPoolExecutor

    from shipyard.serving.log import read_raw

    def read(path: Path) -> Any:
        try:
            return read_raw(path, exclude=["entity_id"])
        except DataError as exc:
            return exc

    if len(files) < 2:
        yield from ((path, read(path)) for path in files)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="shipyard-log-reader") as pool:
        ahead: deque[Future[Any]] = deque(pool.submit(read, p) for p in files[:depth])
        for i, path in enumerate(files):
            table = ahead.popleft().result()
            if i + depth < len(files):
                ahead.append(pool.submit(read, files[i + depth]))
            yield path, table


def _in_time_order(table: pa.Table) -> pa.Table:
    """``table`` (one file's rows) sorted by time, unless it already is, as the writer and
    compaction leave it: log order is the files' order, then time within a file."""
    import pyarrow as pa
    import pyarrow.compute as pc

    time = pc.cast(table.column("time"), pa.int64()).to_numpy()
    if len(time) < 2 or bool(np.all(time[1:] >= time[:-1])):
        return table
    return table.sort_by("time")


def _on_clock(table: pa.Table, clock: str, path: Path, out: Scan) -> pa.Table:
    """``table`` with its ``time`` replaced by the feature column ``clock`` (the request's
    own time); rows without one are counted (``Scan.without_clock``) and left out."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = pa.timestamp("us", tz="UTC")
    if clock not in table.column_names:
        values = pa.nulls(table.num_rows, kind)
    else:
        try:
            values = pc.cast(table.column(clock), kind)
        except pa.ArrowException:
            out.skipped.append(
                f"{path}: its column '{clock}' holds no times, so its rows have no event "
                "time; it was skipped."
            )
            return table.slice(0, 0)
    out.without_clock += values.null_count
    return table.set_column(table.schema.get_field_index("time"), "time", values)


def _within(table: pa.Table, since_us: int | None, until_us: int | None, model: int | None):
    import pyarrow as pa
    import pyarrow.compute as pc

    time = pc.cast(table.column("time"), pa.int64())
    keep = pc.is_valid(time)
    if since_us is not None:
        keep = pc.and_(keep, pc.greater_equal(time, since_us))
    if until_us is not None:
        keep = pc.and_(keep, pc.less(time, until_us))
    if model is not None:
        keep = pc.and_(keep, pc.equal(table.column("model_version"), model))
    if keep.null_count == 0 and pc.all(keep).as_py():
        return table
    return table.filter(pc.fill_null(keep, False))


def _groups_of(
    table: pa.Table,
    answering: Callable[[int], Answering | None],
    window: Window,
    offset: int,
    scan: Scan,
) -> Iterator[Group]:
    """The groups of one batch (rows in time order), by window, version and arm."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from shipyard.serving.log import PREFIX

    time = pc.cast(table.column("time"), pa.int64()).to_numpy()
    if window.timed:
        windows = window.index(time)
    else:
        assert window.rows is not None
        windows = (offset + np.arange(len(time))) // window.rows
    logged = table.column("model_version").fill_null(-1).to_numpy()
    if len(logged) and logged.min() == logged.max():  # one version: the usual case
        version_ids, version_codes = logged[:1], np.zeros(len(logged), np.intp)
    else:
        version_ids, version_codes = np.unique(logged, return_inverse=True)
    arms = pc.dictionary_encode(table.column("arm").fill_null("")).combine_chunks()
    arm_names = arms.dictionary.to_pylist()
    rank = np.argsort(np.argsort(arm_names, kind="stable"))  # arms in name order
    arm_codes = rank[arms.indices.to_numpy()] if len(arm_names) else np.zeros(len(time), int)
    n_arms = max(len(arm_names), 1)
    codes = ((windows - windows.min()) * len(version_ids) + version_codes) * n_arms + arm_codes
    order = None if bool(np.all(codes[1:] >= codes[:-1])) else np.argsort(codes, kind="stable")
    ordered = codes if order is None else codes[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(ordered)]
    present = set(table.column_names)
    unknown_fields = [n for n in table.column_names if n.startswith(PREFIX)]
    arm_by_rank = sorted(arm_names) or [""]
    for first, last in zip(starts.tolist(), ends.tolist(), strict=True):
        code = int(ordered[first])
        version = int(version_ids[code // n_arms % len(version_ids)])
        arm = arm_by_rank[code % n_arms]
        index = None if order is None else order[first:last]
        times = time[first:last] if index is None else time[index]
        answer = answering(version)
        if answer is None:
            scan.versions_without_bundle[version] += last - first
            scan.unanswered_days.update(_partition(int(t)) for t in (times.min(), times.max()))
            continue
        rows = table.slice(first, last - first) if index is None else table.take(pa.array(index))
        group = Group(
            int(windows[first if order is None else order[first]]),
            version,
            arm,
            int(times.min()),
            int(times.max()),
        )
        _fill(group, rows, answer, present, unknown_fields)
        yield group


def _each_column(
    work: Callable[[str, Any], tuple[str, Summary, int | None, np.ndarray | None]],
    columns: dict[str, Any],
    rows: int,
) -> Iterator[tuple[str, Summary, int | None, np.ndarray | None]]:
    """``work(name, reference)`` for every column, on as many threads as the cores free
    allow (:data:`~shipyard.cores.LEDGER`) when the batch is large: sorting and Arrow's
    counting release the GIL."""
    from concurrent.futures import ThreadPoolExecutor

    from shipyard.cores import LEDGER

    if rows < PARALLEL_ROWS or len(columns) < 2:
        yield from (work(name, ref) for name, ref in columns.items())
        return
    with LEDGER.threads("monitor summaries", at_most=len(columns)) as threads:
        if threads == 1:
            yield from (work(name, ref) for name, ref in columns.items())
            return
        with ThreadPoolExecutor(threads, thread_name_prefix="shipyard-summary") as pool:
            yield from pool.map(work, columns, columns.values())


def _floats(values: Any) -> np.ndarray:
    """A numeric log column as float64 (NaN for null); text (a file that typed the feature
    apart) through the one value parser."""
    import pyarrow as pa

    if pa.types.is_floating(values.type) or pa.types.is_integer(values.type):
        return np.asarray(values.cast(pa.float64()).to_numpy(zero_copy_only=False), np.float64)
    numbers, _ = as_numbers(values)
    return numbers


def _fill(
    group: Group, rows: pa.Table, answer: Answering, present: set[str], unknown: list[str]
) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    from shipyard.monitoring.estimation import outside_column
    from shipyard.serving.log import PREFIX

    n = rows.num_rows
    group.rows = n
    unsupported = np.zeros(n, bool)
    group.errors = int(pc.sum(pc.is_valid(rows.column("error"))).as_py() or 0)

    def feature(name: str, ref: Any) -> tuple[str, Summary, int | None, np.ndarray | None]:
        """One feature's summary, its count of values outside the contract's range and
        which rows lie outside the reference's support (None: no row)."""
        column = PREFIX + name
        if column not in present:
            values: Any = pa.nulls(n, pa.float64() if ref.kind == "numeric" else pa.string())
        else:
            values = rows.column(column).combine_chunks()
        if not isinstance(ref, NumericReference):
            positions = category_positions(values, ref)  # one encoding for both
            if positions is None:
                return name, summarize(values, ref), None, outside_column(ref, values)
            summary = positions_summary(positions, ref)
            k = len(ref.categories)  # the position of every other value
            return name, summary, None, positions == k if ref.closed and summary.other else None
        numbers = _floats(values)
        numeric = summarize(numbers, ref)
        assert isinstance(numeric, NumericSummary)
        low, high = numeric.min, numeric.max  # NaN when no value: nothing lies outside

        def beyond(lo: float, hi: float) -> np.ndarray | None:
            if not (low < lo or high > hi):
                return None  # the extremes are inside: every value is
            with np.errstate(invalid="ignore"):
                return (numbers < lo) | (numbers > hi)

        spec = answer.contract.columns.get(name)
        outside = None
        if spec is not None and spec.min is not None and spec.max is not None:
            out_of_range = beyond(spec.min, spec.max)
            outside = 0 if out_of_range is None else int(out_of_range.sum())
        return name, numeric, outside, beyond(ref.edges[0], ref.edges[-1])

    for name in answer.reference.features:
        if PREFIX + name not in present:
            group.absent[name] += n
    for name, summary, outside, beyond in _each_column(feature, answer.reference.features, n):
        group.features[name] = summary
        if outside is not None:
            group.out_of_range[name] = outside
        if beyond is not None:
            unsupported |= beyond
    known = {PREFIX + name for name in answer.features}
    for column in unknown:
        if column not in known and column in rows.column_names:
            filled = int(pc.sum(pc.is_valid(rows.column(column))).as_py() or 0)
            if filled:
                group.new_fields[column[len(PREFIX) :]] += filled
    scores = _scores(rows, answer)
    for name, values in scores.items():
        ref_score = answer.reference.predictions.get(name)
        if ref_score is not None:
            group.predictions[name] = summarize(values, ref_score)
    group.latency.add(rows.column("latency_ms").to_numpy(zero_copy_only=False).astype(float))
    flat = pc.list_flatten(rows.column("warnings"))
    if len(flat):
        tally = pc.value_counts(flat)
        for warning, count in zip(
            tally.field("values").to_pylist(), tally.field("counts").to_pylist(), strict=True
        ):
            column, _, reason = str(warning).partition(": ")
            group.warnings[column] += count
            group.reasons.setdefault(column, Counter())[reason or "warning"] += count
    ids = rows.column("request_id").to_numpy(zero_copy_only=False)
    group.answers.append((ids, np.column_stack(list(scores.values()))))
    group.outside.append(unsupported)
    sliced: dict[str, Any] = {}
    for name in answer.slices:
        if PREFIX + name not in rows.column_names:
            sliced[name] = np.full(n, np.nan)
            continue
        values = rows.column(PREFIX + name).combine_chunks()
        numeric = pa.types.is_integer(values.type) or pa.types.is_floating(values.type)
        sliced[name] = _floats(values) if numeric else _categories(values)
    group.slices.append(sliced)


def _categories(values: Any) -> pd.Categorical:
    """A log column as categories known by :func:`~shipyard.data.contract.category_key`
    (``True``, ``1`` and ``"1"`` are one), one small code per row; null stays null."""
    from shipyard.data.contract import category_key
    from shipyard.monitoring.estimation import category_codes

    codes, uniques = category_codes(values)
    keys = pd.Index([category_key(u) for u in uniques], dtype=object)
    categories = keys.unique()
    position = np.append(categories.get_indexer(keys), -1)  # code -1 (null) stays -1
    return pd.Categorical.from_codes(position[codes], categories)


def _scores(rows: pa.Table, answer: Answering) -> dict[str, np.ndarray]:
    """The model's output per prediction column (NaN where a row has none)."""
    names = answer.score_columns()
    if len(names) == 1:
        return {names[0]: rows.column("prediction").to_numpy(zero_copy_only=False).astype(float)}
    k = len(names)
    matrix = np.full((rows.num_rows, k), np.nan)
    for i, probabilities in enumerate(rows.column("probabilities").to_pylist()):
        if probabilities is not None and len(probabilities) == k:
            matrix[i] = probabilities
    return {name: matrix[:, i] for i, name in enumerate(names)}


def answers(group: Group) -> tuple[np.ndarray, np.ndarray]:
    """A group's request ids and scores (one column per prediction column), in log order."""
    if not group.answers:
        return np.array([], dtype=object), np.empty((0, 1))
    ids = np.concatenate([i for i, _ in group.answers])
    return ids, np.concatenate([s for _, s in group.answers])


def segments(group: Group) -> tuple[pd.DataFrame, np.ndarray]:
    """A group's slice columns (one per ``Answering.slices`` that any row carried: numbers,
    whole ones as integers, or categories) and per row whether an input lay outside the
    reference's support; aligned with :func:`answers`."""
    from pandas.api.types import union_categoricals

    outside = np.concatenate(group.outside) if group.outside else np.zeros(0, bool)
    columns: dict[str, Any] = {}
    for name in group.slices[0] if group.slices else {}:
        parts = [part[name] for part in group.slices]
        if all(isinstance(p, np.ndarray) for p in parts):
            numbers = np.concatenate(parts)
            if np.isnan(numbers).all():
                continue  # no row of the window carried it
            whole = not np.isnan(numbers).any() and bool((numbers == np.round(numbers)).all())
            columns[name] = numbers.astype(np.int64) if whole else numbers
            continue
        found = [p if isinstance(p, pd.Categorical) else _categories(p) for p in parts]
        values = union_categoricals(found)
        if values.isna().all():
            continue
        columns[name] = values
    return pd.DataFrame(columns, index=pd.RangeIndex(len(outside))), outside


def _label(scores: np.ndarray, task: str) -> np.ndarray:
    """What two arms' answers are compared by: the predicted class's index (classification;
    binary at P >= 0.5), the value (regression); NaN where there is none."""
    if task == "regression":
        return scores[:, 0]
    missing = np.isnan(scores).any(axis=1)
    if task == "binary":
        with np.errstate(invalid="ignore"):
            label = (scores[:, 0] >= 0.5).astype(float)
    else:
        label = np.argmax(np.nan_to_num(scores, nan=-1.0), axis=1).astype(float)
    return np.where(missing, np.nan, label)


def agreement(champion: Group, other: Group, task: str) -> tuple[float, int]:
    """Agreement of ``other``'s answers with the champion's on the same request ids: the
    share of identical predicted labels (classification) or the mean absolute difference
    (regression); and how many requests both answered."""
    if not champion.answers or not other.answers:
        return float("nan"), 0
    (mine_ids, mine_scores), (their_ids, their_scores) = answers(champion), answers(other)
    mine = pd.Series(_label(mine_scores, task), index=mine_ids)
    theirs = pd.Series(_label(their_scores, task), index=their_ids)
    mine = mine[~mine.index.duplicated(keep="last")]
    theirs = theirs[~theirs.index.duplicated(keep="last")]
    both = pd.concat([mine, theirs], axis=1, join="inner").dropna()
    if both.empty:
        return float("nan"), 0
    a, b = both.iloc[:, 0].to_numpy(), both.iloc[:, 1].to_numpy()
    if task == "regression":
        return float(np.mean(np.abs(a - b))), len(both)
    return float(np.mean(a == b)), len(both)


# --- hooks: the modules other parts of monitoring plug in through -------------------------
