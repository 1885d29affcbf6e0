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

Importing this module loads neither pandas nor pyarrow; the first :class:`PredictionLog`
loads pyarrow, and writing never loads pandas.
"""

from __future__ import annotations

import datetime as dt
import importlib
import itertools
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import DataError, SpecError, WorkspaceError
from shipyard.files import atomic_path, fsync_folder

if TYPE_CHECKING:
    import pyarrow as pa

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US_PER_DAY = 86_400_000_000
_MAX_MICROS = 253_402_300_800_000_000  # 10000-01-01, past datetime's range
_STALE_SECONDS = 60.0
_SEQUENCE = itertools.count()  # shared by every log of this process, so names never collide


@cache
def _schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("request_id", pa.string()),
            ("time", pa.timestamp("us", tz="UTC")),
            ("entity_id", pa.string()),
            ("model_version", pa.int64()),
            ("arm", pa.string()),
            ("features", pa.string()),
            ("prediction", pa.float64()),
            ("probabilities", pa.list_(pa.float64())),
            ("latency_ms", pa.float64()),
            ("warnings", pa.list_(pa.string())),
            ("error", pa.string()),
        ]
    )


class PredictionLog:
    """Append prediction records on the request path; a daemon thread writes them to Parquet.

    Parameters
    ----------
    folder : str or Path
        Where the date partitions go, usually ``.shipyard/logs``; created if missing.
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

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     log = PredictionLog(folder)
    ...     log.append({"request_id": "r1", "time": 1_700_000_000.0, "entity_id": None,
    ...                 "model_version": 3, "arm": "champion", "features": {"age": 41},
    ...                 "prediction": 0.82, "latency_ms": 1.9, "warnings": [], "error": None})
    ...     log.close()
    ...     read_log(folder).column("prediction").to_pylist()
    [0.82]
    """

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
                raise SpecError(f"prediction log: {name} must be an integer >= 1; got {value!r}.")
        if not flush_seconds > 0:
            raise SpecError(f"prediction log: flush_seconds must be > 0; got {flush_seconds!r}.")
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkspaceError(
                f"cannot create the prediction log folder {self.folder}: {exc}. "
                "Fix its permissions or log to another folder."
            ) from exc
        self.batch_rows, self.max_queue = batch_rows, max_queue
        self.flush_seconds = float(flush_seconds)
        self.dropped = self.written = self.errors = 0
        self.on_written: Callable[[Path, int], None] | None = None
        self._queue: deque[tuple[float, Any]] = deque()  # (monotonic arrival, record)
        self._retained: list[tuple[int, bytes]] = []  # rows of failed writes, to retry
        self._retry_at = 0.0
        self._reported: set[tuple] = set()
        self._closed = False
        self._wake = threading.Event()
        self._write_lock = threading.Lock()  # the writer thread and flush() take turns
        self._drop_lock = threading.Lock()
        for name in ["orjson", "pyarrow.json", "pyarrow.parquet"]:
            importlib.import_module(name)  # now, not late into the first batch
        self._thread = threading.Thread(
            target=self._run, name="shipyard-prediction-log", daemon=True
        )
        self._thread.start()

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
                rows.append(_row(self._queue.popleft()[1]))
            except Exception as exc:
                self._report("record", exc, "dropped a malformed record")
        days: dict[int, list[tuple[int, bytes]]] = {}
        for row in rows:
            days.setdefault(row[0] // _US_PER_DAY, []).append(row)
        for day_rows in days.values():
            try:
                path = _write_file(self.folder, sorted(day_rows, key=lambda row: row[0]))
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
                f"shipyard: prediction log {self.folder}: {what}: {type(exc).__name__}: {exc} "
                "(further errors of this kind are only counted in PredictionLog.errors)",
                file=sys.stderr,
                flush=True,
            )


def _row(record: dict[str, Any]) -> tuple[int, bytes]:
    """One record as its time in microseconds and a JSON line of its column values.

    Values are coerced here, one record at a time, so that a malformed record is dropped
    alone instead of failing its batch. A NaN prediction or latency is stored as null, as
    is a missing latency (a failed answer's); missing ``features`` (a shadow's row: its
    champion's row of the request holds them) are stored as null.
    """
    import orjson

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
    options = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
    features = record["features"]
    if features is not None:
        features = orjson.dumps(features, default=str, option=options).decode()
    entity_id, error = record["entity_id"], record["error"]
    values = {
        "request_id": str(record["request_id"]),
        "time": micros,
        "entity_id": None if entity_id is None else str(entity_id),
        "model_version": version,
        "arm": str(record["arm"]),
        "features": features,
        "prediction": None if prediction is None else float(prediction),
        "probabilities": probabilities,
        "latency_ms": None if record["latency_ms"] is None else float(record["latency_ms"]),
        "warnings": [str(warning) for warning in record["warnings"] or ()],
        "error": None if error is None else str(error),
    }
    return micros, orjson.dumps(values)


def _write_file(folder: Path, rows: list[tuple[int, bytes]]) -> Path:
    """Write one day's rows: temporary file, fsync, rename into place, fsync the folder;
    return the file's path."""
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
    # Arrow's JSON reader, unlike pa.array() on Python lists, does not import pandas.
    lines = b"\n".join(line for _, line in rows)
    as_json = _schema().set(1, pa.field("time", pa.int64()))  # JSON holds microseconds
    table = pyarrow.json.read_json(
        pa.BufferReader(lines),
        read_options=pyarrow.json.ReadOptions(use_threads=False, block_size=len(lines) + 1),
        parse_options=pyarrow.json.ParseOptions(explicit_schema=as_json),
    ).cast(_schema())
    with atomic_path(final) as temporary:  # hidden .part-….tmp until it is whole
        pq.write_table(table, temporary)
    return final


def _remove_stale_temporaries(folder: Path) -> None:
    """Remove temporary files of writers that died (pid gone, or older than a minute)."""
    for temporary in folder.glob("date=*/.part-*.tmp"):
        try:
            pid = int(temporary.name.split("-")[2])
        except (IndexError, ValueError):
            pid = None
        try:
            old = time.time() - temporary.stat().st_mtime > _STALE_SECONDS
            if old or (pid is not None and pid != os.getpid() and not _alive(pid)):
                temporary.unlink(missing_ok=True)
        except FileNotFoundError:  # its writer renamed it meanwhile
            continue


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def read_log(folder: str | Path, *, since: dt.date | None = None) -> pa.Table:
    """Read every flushed row of a prediction log, in time order.

    Parameters
    ----------
    folder : str or Path
        The folder a :class:`PredictionLog` writes to.
    since : datetime.date, optional
        Only read the date partitions from this UTC day on.

    Returns
    -------
    pyarrow.Table
        One row per record, in the log's fixed schema; temporary files are ignored, so this
        is safe while a server is writing.

    Raises
    ------
    DataError
        If ``folder`` does not exist.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(
            f"no prediction log at {folder}: the folder does not exist. Start the online "
            "service (it creates the folder), or pass the folder it logs to."
        )
    tables = []
    for partition in sorted(folder.glob("date=*")):
        try:
            day = dt.date.fromisoformat(partition.name.removeprefix("date="))
        except ValueError:
            continue
        if since is None or day >= since:
            for path in sorted(partition.glob("part-*.parquet")):
                with pq.ParquetFile(path) as file:  # not read_table: it would import pandas
                    tables.append(file.read().cast(_schema()))
    return pa.concat_tables(tables or [_schema().empty_table()]).sort_by("time")
