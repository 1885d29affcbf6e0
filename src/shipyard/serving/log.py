"""The prediction log: every answer of the online service, written to Parquet off the request path.

The service calls :meth:`PredictionLog.append` with one plain dict per prediction (the
champion's, a canary's, and a shadow's as its own row with the same ``request_id``). That
call only puts the dict on a queue; a daemon thread turns pending records into a batch when
``batch_rows`` are waiting or ``flush_seconds`` after the first one arrived, whichever is
first, and writes it as one file::

    <folder>/date=YYYY-MM-DD/part-<UTC time of first row>-<pid>-<seq>.parquet

Each file is written under a hidden ``.tmp`` name in the same folder, fsynced, renamed into
place with :func:`os.replace`, and the folder is fsynced: a reader, or a ``kill -9``, never
sees half a file, and a killed server loses at most the batch it had not flushed yet. A new
log on the same folder removes the temporary files dead writers left and carries on.
:func:`read_log` reads every flushed row while the server keeps writing, and a listener set as
:attr:`PredictionLog.on_written` hears of each file once it is in place (the shadow reads its
copies of the champion's requests from there).

Features are typed columns, one per feature, named ``f.<feature>`` so that they never collide
with the log's own fields (:data:`FIELDS`): a record's ``types`` (:func:`feature_types` of
the answering arm's contract: ``number`` → float64, ``boolean`` → bool, ``string`` →
string, ``datetime`` → timestamp in UTC) says how the writer thread types each value
(through ``data/values.py``, the one value parser); a value its type cannot hold is stored
as null. A record without ``types`` has its features typed by their JSON kind. So reading a
million rows is reading Parquet columns, with no JSON parsed per row. Files of the first
layout (features as one JSON string per row, in a ``features`` column) are still read, into
the same columns.

The machinery (queue, writer thread, atomic part files, retries, counts) is
:class:`PartLog`'s; a log of other records says how one record becomes a row
(:meth:`PartLog._coerce`) and which fields its files hold (:meth:`PartLog._fields`): the
service's feedback log (``serving/feedback.py``) is the other one. :func:`log_files` lists a
log's flushed files for any reader.

Importing this module loads neither pandas nor pyarrow; the first :class:`PartLog`
loads pyarrow, and writing records without ``types`` never loads pandas (typed records use
``data/values.py``, which does; the service has it loaded anyway).
"""

from __future__ import annotations

import datetime as dt
import importlib
import itertools
import math
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import DataError, SpecError, WorkspaceError
from shipyard.files import atomic_path, fsync_folder
from shipyard.processes import alive

if TYPE_CHECKING:
    import pyarrow as pa

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US_PER_DAY = 86_400_000_000
_MAX_MICROS = 253_402_300_800_000_000  # 10000-01-01, past datetime's range
_STALE_SECONDS = 60.0
_THREADED_READ_ROWS = 65_536  # files of this many rows or more are read in parallel
_SEQUENCE = itertools.count()  # shared by every log of this process, so names never collide


#: The Parquet metadata key of a compacted file (``serving/compaction.py``): the JSON list of
#: the files it replaces.
REPLACES = b"shipyard.replaces"
#: The log's own fields, in order; feature columns follow them.
FIELDS = (
    "request_id",
    "time",
    "entity_id",
    "model_version",
    "arm",
    "prediction",
    "probabilities",
    "latency_ms",
    "warnings",
    "error",
)
#: The prefix of a feature's column: feature ``age`` is column ``f.age``.
PREFIX = "f."
_ROLE_KINDS = {"numeric": "number", "boolean": "boolean", "datetime": "datetime"}


@cache
def _schema() -> pa.Schema:
    """The log's own fields (feature columns are added per file)."""
    import pyarrow as pa

    return pa.schema(
        [
            ("request_id", pa.string()),
            ("time", pa.timestamp("us", tz="UTC")),
            ("entity_id", pa.string()),
            ("model_version", pa.int64()),
            ("arm", pa.string()),
            ("prediction", pa.float64()),
            ("probabilities", pa.list_(pa.float64())),
            ("latency_ms", pa.float64()),
            ("warnings", pa.list_(pa.string())),
            ("error", pa.string()),
        ]
    )


def _arrow_type(kind: str) -> pa.DataType:
    import pyarrow as pa

    if kind == "number":
        return pa.float64()
    if kind == "boolean":
        return pa.bool_()
    if kind == "datetime":
        return pa.timestamp("us", tz="UTC")
    return pa.string()


def feature_types(contract: Any, features: Any) -> dict[str, str]:
    """Each feature's kind of log column, from a contract's roles: numeric → ``number``,
    boolean → ``boolean``, datetime → ``datetime``, anything else (categorical, text, …)
    → ``string``.

    >>> from types import SimpleNamespace as NS
    >>> roles = {"age": NS(role="numeric"), "plan": NS(role="categorical")}
    >>> feature_types(NS(columns=roles), ["age", "plan", "since"])
    {'age': 'number', 'plan': 'string', 'since': 'string'}
    """
    columns = contract.columns
    return {
        name: _ROLE_KINDS.get(getattr(columns.get(name), "role", ""), "string") for name in features
    }


class PartLog:
    """Append records on the request path; a daemon thread writes them as Parquet parts.

    Subclasses say what a record is (:meth:`_coerce`, :meth:`_fields`, :attr:`what`):
    :class:`PredictionLog` and the service's feedback log.

    Parameters
    ----------
    folder : str or Path
        Where the date partitions go (``.shipyard/logs`` for predictions); created if missing.
    batch_rows : int
        Write a batch as soon as this many records are pending.
    flush_seconds : float
        Write a batch at most this long after its first record arrived.
    max_queue : int
        Records that may wait; beyond it :meth:`append` drops the record and counts it.

    Attributes
    ----------
    dropped : int
        Records dropped because the queue was full, the log was closed, or failed writes
        kept more than ``max_queue`` rows for retrying.
    written : int
        Records written to disk so far.
    errors : int
        Failed writes and malformed records. Each kind is reported once on stderr; rows of a
        failed write are kept and tried again.
    on_written : callable or None
        Called as ``on_written(path, rows)`` by the writing thread after each file is renamed
        into place; it must not block (an exception it raises is counted in ``errors``).
    """

    #: what messages call this log
    what = "log"

    def __init__(
        self,
        folder: str | Path,
        *,
        batch_rows: int = 1000,
        flush_seconds: float = 1.0,
        max_queue: int = 100_000,
    ) -> None:
        for name, value in [("batch_rows", batch_rows), ("max_queue", max_queue)]:
            if not isinstance(value, int) or value < 1:
                raise SpecError(f"{self.what}: {name} must be an integer >= 1; got {value!r}.")
        if not flush_seconds > 0:
            raise SpecError(f"{self.what}: flush_seconds must be > 0; got {flush_seconds!r}.")
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkspaceError(
                f"cannot create the {self.what} folder {self.folder}: {exc}. "
                "Fix its permissions or log to another folder."
            ) from exc
        self.batch_rows, self.max_queue = batch_rows, max_queue
        self.flush_seconds = float(flush_seconds)
        self.dropped = self.written = self.errors = 0
        self.on_written: Callable[[Path, int], None] | None = None
        self._queue: deque[tuple[float, Any]] = deque()  # (monotonic arrival, record)
        self._retained: list[_Row] = []  # rows of failed writes, to retry
        self._retry_at = 0.0
        self._reported: set[tuple] = set()
        self._closed = False
        self._wake = threading.Event()
        self._write_lock = threading.Lock()  # the writer thread and flush() take turns
        self._drop_lock = threading.Lock()
        for name in ["orjson", "pyarrow.json", "pyarrow.parquet"]:
            importlib.import_module(name)  # now, not late into the first batch
        self._thread = threading.Thread(
            target=self._run, name=f"shipyard-{self.what.replace(' ', '-')}", daemon=True
        )
        self._thread.start()

    def _coerce(self, record: dict[str, Any]) -> _Row:
        """One record as its time in microseconds, its column values and its extra
        columns' kinds (raise to drop a malformed record alone)."""
        raise NotImplementedError

    def _fields(self) -> pa.Schema:
        """The fields every file of this log holds (extra typed columns follow them)."""
        raise NotImplementedError

    @property
    def pending(self) -> int:
        """Records queued and not yet written."""
        return len(self._queue)

    def append(self, record: dict) -> None:
        """Queue one record (see the module docstring); O(1), never blocks, never raises."""
        queue = self._queue
        if self._closed or len(queue) >= self.max_queue:
            with self._drop_lock:
                self.dropped += 1
            return
        queue.append((time.monotonic(), record))
        pending = len(queue)
        if pending == 1 or pending == self.batch_rows:
            self._wake.set()

    def flush(self) -> None:
        """Write every record pending now, blocking until done (failures count in ``errors``)."""
        with self._write_lock:
            pending = len(self._queue)  # not what arrives meanwhile, so this ends
            while True:
                take = min(pending, self.batch_rows)
                pending -= take
                if not self._write_batch(take) or pending <= 0:
                    break

    def close(self) -> None:
        """Flush and stop the writer thread; later appends are dropped. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._thread.join()
        self.flush()
        with self._drop_lock:  # rows a failed last write kept, or a racing append queued
            self.dropped += len(self._retained) + len(self._queue)
        self._retained.clear()
        self._queue.clear()

    # --- the writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            _remove_stale_temporaries(self.folder)
        except Exception as exc:
            self._report("start", exc, "could not prepare the log folder")
        while not self._closed:
            try:
                wait = self._seconds_to_next_batch()
                if wait <= 0:
                    with self._write_lock:
                        self._write_batch(min(len(self._queue), self.batch_rows))
                    continue
                self._wake.wait(wait)
                self._wake.clear()
            except Exception as exc:  # the thread must outlive any bug
                self._report("loop", exc, "the writer thread failed")
                time.sleep(self.flush_seconds)

    def _seconds_to_next_batch(self) -> float:
        now, queue = time.monotonic(), self._queue
        if now < self._retry_at:
            return self._retry_at - now
        if self._retained or len(queue) >= self.batch_rows:
            return 0.0
        if queue:
            return queue[0][0] + self.flush_seconds - now
        # An empty queue: append() wakes us, but two racing appends can both miss the
        # wake-up, so look again soon.
        return self.flush_seconds / 4

    def _write_batch(self, take: int) -> bool:
        """Write ``take`` queued records plus the retained rows; return whether all went."""
        rows, self._retained = self._retained, []
        for _ in range(take):
            try:
                rows.append(self._coerce(self._queue.popleft()[1]))
            except Exception as exc:
                self._report("record", exc, "dropped a malformed record")
        days: dict[int, list[_Row]] = {}
        for row in rows:
            days.setdefault(row[0] // _US_PER_DAY, []).append(row)
        for day_rows in days.values():
            try:
                path = _write_file(
                    self.folder, sorted(day_rows, key=lambda row: row[0]), self._fields()
                )
                self.written += len(day_rows)
            except Exception as exc:
                self._report(
                    "write", exc, f"could not write {len(day_rows)} rows; keeping them to retry"
                )
                self._retained.extend(day_rows)
                continue
            listener = self.on_written
            if listener is not None:
                try:
                    listener(path, len(day_rows))
                except Exception as exc:
                    self._report("listener", exc, f"on_written failed for {path.name}")
        overflow = len(self._retained) - self.max_queue
        if overflow > 0:  # a long outage: keep the newest rows
            del self._retained[:overflow]
            with self._drop_lock:
                self.dropped += overflow
        if self._retained:
            self._retry_at = time.monotonic() + max(self.flush_seconds, 1.0)
        return not self._retained

    def _report(self, where: str, exc: Exception, what: str) -> None:
        self.errors += 1
        kind = (where, type(exc).__name__, getattr(exc, "errno", None))
        if kind not in self._reported:
            self._reported.add(kind)
            print(
                f"shipyard: {self.what} {self.folder}: {what}: {type(exc).__name__}: {exc} "
                f"(further errors of this kind are only counted in {type(self).__name__}.errors)",
                file=sys.stderr,
                flush=True,
            )


#: A coerced record: its time in microseconds, its column values, its feature columns' kinds.
_Row = tuple[int, dict[str, Any], dict[str, str]]


class PredictionLog(PartLog):
    """The prediction log: one record per answer (see the module docstring), written by
    :class:`PartLog`'s machinery (its parameters and counts).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     log = PredictionLog(folder)
    ...     log.append({"request_id": "r1", "time": 1_700_000_000.0, "entity_id": None,
    ...                 "model_version": 3, "arm": "champion", "features": {"age": 41},
    ...                 "prediction": 0.82, "latency_ms": 1.9, "warnings": [], "error": None})
    ...     log.close()
    ...     table = read_log(folder)
    ...     table.column("prediction").to_pylist(), table.column("f.age").to_pylist()
    ([0.82], [41.0])
    """

    what = "prediction log"

    def _coerce(self, record: dict[str, Any]) -> _Row:
        return _row(record)

    def _fields(self) -> pa.Schema:
        return _schema()


def _row(record: dict[str, Any]) -> _Row:
    """One record as its time in microseconds, its column values and its features' kinds.

    Values are coerced here, one record at a time, so that a malformed record is dropped
    alone instead of failing its batch. A NaN prediction or latency is stored as null, as
    is a missing latency (a failed answer's); missing ``features`` (no feature columns) are
    stored as nulls in every feature column of the file.
    """
    micros = round(float(record["time"]) * 1e6)
    if not 0 <= micros < _MAX_MICROS:
        raise ValueError(f"time must be epoch seconds in 1970-9999; got {record['time']!r}")
    version = int(record["model_version"])
    if not -(2**63) <= version < 2**63:
        raise ValueError(f"model_version must fit in 64 bits; got {version}")
    prediction: Any = record["prediction"]
    probabilities: list[float] | None = None
    if isinstance(prediction, list | tuple) or bool(getattr(prediction, "ndim", 0)):
        prediction, probabilities = None, [float(p) for p in prediction]
    entity_id, error = record["entity_id"], record["error"]
    values = {
        "request_id": str(record["request_id"]),
        "time": micros,
        "entity_id": None if entity_id is None else str(entity_id),
        "model_version": version,
        "arm": str(record["arm"]),
        "prediction": None if prediction is None else float(prediction),
        "probabilities": probabilities,
        "latency_ms": None if record["latency_ms"] is None else float(record["latency_ms"]),
        "warnings": [str(warning) for warning in record["warnings"] or ()],
        "error": None if error is None else str(error),
    }
    kinds: dict[str, str] = {}
    features = record["features"]
    if features:
        types = record.get("types")
        if types is None:
            for name, value in features.items():
                kind = _json_kind(value)
                if kind is not None:
                    column = PREFIX + str(name)
                    values[column] = _typed(kind, value)
                    kinds[column] = kind
        else:
            for name, kind in types.items():
                column = PREFIX + name
                kinds[column] = kind
                value = features.get(name)
                if value is not None:
                    values[column] = _typed(kind, value)
    return micros, values, kinds


def _json_kind(value: Any) -> str | None:
    """The kind of column a value of an untyped record goes to (None for a null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "string"


def _typed(kind: str, value: Any) -> Any:
    """A feature's value as its column stores it (in JSON for Arrow's reader): a float, a
    bool, text, epoch microseconds; None when the kind cannot hold it."""
    t = type(value)
    if kind == "number":
        if t is float:
            return value if math.isfinite(value) else None
        if t is int:
            return float(value)
        from shipyard.data.values import ValueTypeError, to_number

        try:
            number = to_number(value)
        except ValueTypeError:
            return None
        return number if math.isfinite(number) else None
    if kind == "boolean":
        if t is bool:
            return value
        from shipyard.data.values import ValueTypeError, to_bool

        try:
            return to_bool(value)
        except ValueTypeError:
            return None
    if kind == "datetime":
        from shipyard.data.values import parse_datetime

        stamp = parse_datetime(value)
        if stamp is None:
            return None
        micros = (stamp - _EPOCH) // dt.timedelta(microseconds=1)
        return micros if 0 <= micros < _MAX_MICROS else None
    if t is str:
        return value
    if isinstance(value, bool):  # as a category is known (contract.category_key)
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | dict):
        import orjson

        return orjson.dumps(value, default=str).decode()
    return str(value)


def _file_kinds(rows: list[_Row]) -> dict[str, str]:
    """The feature columns of a file and their kinds; a column rows disagree on is text."""
    kinds: dict[str, str] = {}
    seen: set[int] = set()
    for _, _, row_kinds in rows:
        if id(row_kinds) in seen:  # the rows of one arm share one mapping
            continue
        seen.add(id(row_kinds))
        for column, kind in row_kinds.items():
            if kinds.setdefault(column, kind) != kind:
                kinds[column] = "mixed"
    return kinds


def _write_file(folder: Path, rows: list[_Row], fields: pa.Schema) -> Path:
    """Write one day's rows (``fields`` then their typed extra columns): temporary file,
    fsync, rename into place, fsync the folder; return the file's path."""
    import orjson
    import pyarrow as pa
    import pyarrow.json
    import pyarrow.parquet as pq

    first = _EPOCH + dt.timedelta(microseconds=rows[0][0])
    partition = folder / f"date={first:%Y-%m-%d}"
    if not partition.is_dir():
        partition.mkdir()
        fsync_folder(folder)
    stamp, pid = f"{first:%Y%m%dT%H%M%S%f}", os.getpid()
    while (final := partition / f"part-{stamp}-{pid}-{next(_SEQUENCE)}.parquet").exists():
        pass
    kinds = _file_kinds(rows)
    mixed = [column for column, kind in kinds.items() if kind == "mixed"]
    for column in mixed:  # rare (two arms typing one feature apart): kept as text
        kinds[column] = "string"
        for _, values, _ in rows:
            value = values.get(column)
            if value is not None and not isinstance(value, str):
                values[column] = str(value).lower() if isinstance(value, bool) else str(value)
    # Arrow's JSON reader, unlike pa.array() on Python lists, does not import pandas.
    lines = b"\n".join(orjson.dumps(values) for _, values, _ in rows)
    final_schema = fields
    for column, kind in kinds.items():
        final_schema = final_schema.append(pa.field(column, _arrow_type(kind)))
    as_json = pa.schema(  # JSON holds times as microseconds
        [pa.field(f.name, pa.int64()) if pa.types.is_timestamp(f.type) else f for f in final_schema]
    )
    table = pyarrow.json.read_json(
        pa.BufferReader(lines),
        read_options=pyarrow.json.ReadOptions(use_threads=False, block_size=len(lines) + 1),
        parse_options=pyarrow.json.ParseOptions(
            explicit_schema=as_json, unexpected_field_behavior="ignore"
        ),
    ).cast(final_schema)
    with atomic_path(final) as temporary:  # hidden .part-….tmp until it is whole
        pq.write_table(table, temporary)
    return final


def _remove_stale_temporaries(folder: Path) -> None:
    """Remove temporary files of writers that died (pid gone, or older than a minute)."""
    for temporary in folder.glob("date=*/.*.tmp"):  # parts' and compactions' temporaries
        try:
            pid = int(temporary.name.split("-")[2])
        except (IndexError, ValueError):
            pid = None
        try:
            old = time.time() - temporary.stat().st_mtime > _STALE_SECONDS
            if old or (pid is not None and pid != os.getpid() and not alive(pid)):
                temporary.unlink(missing_ok=True)
        except FileNotFoundError:  # its writer renamed it meanwhile
            continue


def read_log(
    folder: str | Path,
    *,
    since: dt.date | None = None,
    types: Mapping[str, str] | None = None,
    columns: Sequence[str] | None = None,
) -> pa.Table:
    """Read every flushed row of a prediction log, in time order.

    Parameters
    ----------
    folder : str or Path
        The folder a :class:`PredictionLog` writes to.
    since : datetime.date, optional
        Only read the date partitions from this UTC day on.
    types : mapping, optional
        Feature → kind (:func:`feature_types`): those feature columns are given that type
        whatever the files hold (a value the kind cannot hold becomes null). Without it, a
        feature typed apart by two files (text in one, numbers in another) is read as text.
    columns : sequence of str, optional
        Only these columns (log fields, or feature columns ``f.<name>``); ``time`` is always
        read.

    Returns
    -------
    pyarrow.Table
        One row per record: the log's fields (:data:`FIELDS`) then one ``f.<feature>``
        column per feature any file holds (null where a row's arm has no such feature).
        Files of the first layout (``features`` as JSON text) give the same columns.
        Temporary files are ignored, so this is safe while a server is writing.

    Raises
    ------
    DataError
        If ``folder`` does not exist, or a file in it is not a prediction-log file.
    """

    wanted = None if columns is None else {"time", *columns}
    tables = [_read_file(path, wanted) for path in log_files(folder, since=since)]
    return _combine(tables, types, wanted).sort_by("time")


def log_files(
    folder: str | Path, *, since: dt.date | None = None, until: dt.date | None = None
) -> list[Path]:
    """The flushed files of a prediction log (or any :class:`PartLog`'s), day by day from
    the UTC day ``since`` to the day ``until``, both included: each day's compacted files,
    then its part files in name order (the time of their first row), less the files a
    compacted file replaces (:func:`live_files`).

    Raises
    ------
    DataError
        If ``folder`` does not exist.
    """
    return [
        path for _, day in partitions(folder, since=since, until=until) for path in live_files(day)
    ]


def partitions(
    folder: str | Path, *, since: dt.date | None = None, until: dt.date | None = None
) -> list[tuple[dt.date, Path]]:
    """A log's date partitions (``date=YYYY-MM-DD`` folders) and their days, in day order,
    from ``since`` to ``until``, both included; other names are ignored.

    Raises
    ------
    DataError
        If ``folder`` does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(
            f"no prediction log at {folder}: the folder does not exist. Start the online "
            "service (it creates the folder), or pass the folder it logs to."
        )
    found = []
    for partition in sorted(folder.glob("date=*")):
        try:
            day = dt.date.fromisoformat(partition.name.removeprefix("date="))
        except ValueError:
            continue
        if (since is None or day >= since) and (until is None or day <= until):
            found.append((day, partition))
    return found


def live_files(partition: Path) -> list[Path]:
    """A day's flushed files a reader reads: its compacted files
    (:mod:`~shipyard.serving.compaction`) and part files, less those a compacted file
    replaces. Only a day holding both kinds, or two compacted files, has its compacted
    files' metadata read."""
    compacted = sorted(partition.glob("compacted-*.parquet"))
    parts = sorted(partition.glob("part-*.parquet"))
    if not compacted or (len(compacted) == 1 and not parts):
        return [*compacted, *parts]
    replaced = replaced_names(compacted)
    return [path for path in [*compacted, *parts] if path.name not in replaced]


def replaced_names(compacted: Sequence[Path]) -> set[str]:
    """The names of the files the compacted files ``compacted`` replace (:data:`REPLACES`);
    a compacted file that cannot be read replaces nothing."""
    import orjson
    import pyarrow as pa
    import pyarrow.parquet as pq

    names: set[str] = set()
    for path in compacted:
        try:
            metadata = pq.read_schema(path).metadata or {}
            names.update(orjson.loads(metadata.get(REPLACES, b"[]")))
        except (OSError, ValueError, pa.ArrowException):
            continue
    return names


def read_log_file(
    path: str | Path,
    *,
    types: Mapping[str, str] | None = None,
    columns: Sequence[str] | None = None,
) -> pa.Table:
    """One file of a prediction log, in the columns :func:`read_log` gives (``types`` and
    ``columns`` as there), so a reader can stream a log file by file in flat memory.

    Raises
    ------
    DataError
        If the file is truncated, not Parquet, or not a prediction-log file.
    """
    wanted = None if columns is None else {"time", *columns}
    return _combine([_read_file(Path(path), wanted)], types, wanted)


def read_raw(path: str | Path, *, exclude: Sequence[str] = ()) -> pa.Table:
    """One log file's columns as the file holds them (less ``exclude``; ``features`` of the
    first layout as typed columns), unaligned: :func:`combine` aligns many files at once,
    which is what a reader of many small files wants (:func:`read_log_file` does both).

    Raises
    ------
    DataError
        If the file is truncated, not Parquet, or not a prediction-log file.
    """
    return _read_file(Path(path), None, exclude=set(exclude))


def combine(
    tables: Sequence[pa.Table],
    *,
    types: Mapping[str, str] | None = None,
    exclude: Sequence[str] = (),
) -> pa.Table:
    """Tables of :func:`read_raw` as one, in :func:`read_log`'s columns (less ``exclude``)
    and types (``types`` as there)."""
    wanted = {*FIELDS, *(PREFIX + name for name in types or {})} - set(exclude)
    return _combine(list(tables), types, wanted)


def _read_file(
    path: Path, wanted: set[str] | None, *, exclude: frozenset[str] | set[str] = frozenset()
) -> pa.Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        # not read_table: it would import pandas. A small file (one batch) reads fastest in
        # one thread and without pre-buffering; a compacted day in parallel.
        with pq.ParquetFile(path, pre_buffer=False) as file:
            names = file.schema_arrow.names
            if not {"time", "model_version", "arm"} <= set(names):
                raise DataError(
                    f"{path} is not a prediction-log file: it has no 'time', 'model_version' "
                    f"and 'arm' columns (it has {', '.join(names[:8]) or 'none'}). Move it out "
                    "of the log folder."
                )
            if "features" in names:  # the first layout
                table = _from_first_layout(file.read())
            else:
                table = file.read(
                    columns=[
                        n for n in names if (wanted is None or n in wanted) and n not in exclude
                    ],
                    use_threads=file.metadata.num_rows >= _THREADED_READ_ROWS,
                )
    except (OSError, pa.ArrowException) as exc:
        raise DataError(
            f"{path} is not a readable prediction-log file ({type(exc).__name__}: {exc}). "
            "Move it out of the log folder."
        ) from exc
    if wanted is not None or exclude:
        table = table.select(
            [n for n in table.column_names if (wanted is None or n in wanted) and n not in exclude]
        )
    return table


def _from_first_layout(table: pa.Table) -> pa.Table:
    """A file of the first layout (``features`` as one JSON object per row) in today's
    columns: one typed ``f.<name>`` column per feature, by the JSON kind of its values."""
    import orjson
    import pyarrow as pa
    import pyarrow.json

    texts = table.column("features").fill_null("{}").to_pylist()
    table = table.drop_columns(["features"])
    if not texts:
        return table
    lines = "\n".join(texts).encode()
    try:  # Arrow's reader infers each field's type; a field of mixed kinds fails it
        parsed = pyarrow.json.read_json(
            pa.BufferReader(lines),
            read_options=pyarrow.json.ReadOptions(use_threads=False, block_size=len(lines) + 1),
        )
        found = {name: parsed.column(name) for name in parsed.column_names}
    except pa.ArrowInvalid:
        found = {}
    if any(not _plain_type(column.type) for column in found.values()) or not found:
        records = [orjson.loads(text) for text in texts]
        names = list(dict.fromkeys(name for record in records for name in record))
        found = {}
        for name in names:
            raw = [record.get(name) for record in records]
            kinds = {kind for value in raw if (kind := _json_kind(value)) is not None}
            kind = kinds.pop() if len(kinds) == 1 else "string"
            found[name] = pa.array([None if v is None else _typed(kind, v) for v in raw])
    for name, column in found.items():
        table = table.append_column(PREFIX + name, _as_log_type(column))
    return table


def _plain_type(kind: pa.DataType) -> bool:
    import pyarrow as pa

    return not (pa.types.is_nested(kind) or pa.types.is_dictionary(kind))


def _as_log_type(column: Any) -> Any:
    """An inferred column as the log types its kind: integers as float64, timestamps in
    microseconds and UTC, nulls as text."""
    import pyarrow as pa

    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return column.cast(pa.float64())
    if pa.types.is_timestamp(kind):
        if kind.tz is None:
            return column.cast(pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC"))
        return column.cast(pa.timestamp("us", tz="UTC"))
    if pa.types.is_boolean(kind):
        return column
    return column.cast(pa.string())


def _combine(
    tables: list[pa.Table], types: Mapping[str, str] | None, wanted: set[str] | None
) -> pa.Table:
    """One table of many files' tables: the log's fields, then every feature column any of
    them holds, each given one type (``types``, else the files' own, text when they
    disagree) and nulls where a file lacks it."""
    import pyarrow as pa

    fields = [f for f in _schema() if wanted is None or f.name in wanted]
    if types:
        target = {PREFIX + name: _arrow_type(kind) for name, kind in types.items()}
        if wanted is not None:
            target = {name: kind for name, kind in target.items() if name in wanted}
    else:
        target = {}
    found: dict[str, set[pa.DataType]] = {}
    for table in tables:
        for field in table.schema:
            if field.name.startswith(PREFIX):
                found.setdefault(field.name, set()).add(field.type)
    for name, kinds in found.items():
        if name not in target:
            target[name] = kinds.pop() if len(kinds) == 1 else pa.string()
    schema = pa.schema([*fields, *(pa.field(n, kind) for n, kind in target.items())])
    if not tables:
        return schema.empty_table()
    aligned = []
    for table in tables:
        if table.schema.equals(schema, check_metadata=False):
            aligned.append(table.replace_schema_metadata(None))
            continue
        arrays = []
        for field in schema:
            if field.name in table.column_names:
                arrays.append(_cast(table.column(field.name), field.type))
            else:
                arrays.append(pa.nulls(table.num_rows, field.type))
        aligned.append(pa.Table.from_arrays(arrays, schema=schema))
    return pa.concat_tables(aligned)


def _cast(column: Any, kind: pa.DataType) -> Any:
    """A column as ``kind``; text becomes numbers, booleans or times through
    ``data/values.py`` (one parse per distinct value), numbers or booleans become text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if column.type == kind:
        return column
    if pa.types.is_string(kind):
        if pa.types.is_boolean(column.type):
            return pc.if_else(column, "true", "false").cast(kind)
        return column.cast(kind)
    if pa.types.is_null(column.type):
        return column.cast(kind)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        from shipyard.data import values

        if pa.types.is_floating(kind):
            numbers, _ = values.parse_numbers(column)
            return pa.array(numbers, type=kind, from_pandas=True)
        if pa.types.is_boolean(kind):
            codes, _ = values.parse_booleans(column)
            return pa.array(codes == 1.0, mask=codes != codes, type=kind)
        stamps = values.to_datetime(column.to_pandas())
        return pa.array(stamps, type=kind, from_pandas=True)
    try:
        return column.cast(kind)
    except pa.ArrowException:
        return _cast(column.cast(pa.string()), kind)
