"""Closed days of the prediction log compacted into one file each, so a reader opens one
file per day instead of one per batch.

The service writes a file per batch (a thousand rows, or a second's traffic): a quiet day
leaves hundreds of small files, and opening a file costs about a millisecond whatever its
size. :func:`compact_log` rewrites each closed UTC day (before today, or before ``before``)
that holds more than one file as one::

    <folder>/date=YYYY-MM-DD/compacted-<UTC time of first row>-<pid>-<seq>.parquet

with its rows in time order, its feature columns typed as :func:`~shipyard.serving.log.
read_log` would type them, and the names of the files it replaces in its Parquet metadata
(:data:`REPLACES`). The compacted file is written under a hidden temporary name, fsynced and
renamed into place; only then are the files it replaces removed. A reader
(:func:`~shipyard.serving.log.log_files`) skips every file a compacted file names, so a
``kill -9`` between the rename and the removals leaves the rows readable exactly once, and
the next compaction removes the leftovers. A file that arrives in a day after it was
compacted (a replay of old traffic) is read beside the compacted file and folded in by the
next compaction. One compaction per day at a time (a lock file in the day's folder); a file
that cannot be read is left where it is, for the reader to report.

The online service compacts at start and after each UTC midnight, in a thread of its own
(:class:`DailyCompaction`), never on the request path, then keeps the summaries of the closed
days (:func:`~shipyard.monitoring.watch.keep_days`: what a ``monitor`` run would keep after
reading them), so that monitoring reads a closed day from its summaries; ``shipyard
monitor`` never compacts (it does not write to the log).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from shipyard.errors import DataError
from shipyard.files import atomic_path, fsync_folder
from shipyard.serving.log import (
    _EPOCH,
    _SEQUENCE,
    REPLACES,
    _combine,
    _read_file,
    live_files,
    partitions,
    replaced_names,
)

if TYPE_CHECKING:
    import pyarrow as pa

COMPACTED = "compacted-"
#: Seconds after UTC midnight the service compacts the day that closed: late enough that a
#: shadow has read the day's last files.
AFTER_MIDNIGHT = 600.0
_LOCK = ".compact.lock"


@dataclass
class Compaction:
    """What :func:`compact_log` did."""

    days: int = 0  # days rewritten
    files: int = 0  # files replaced
    rows: int = 0  # rows rewritten
    removed: int = 0  # replaced files removed (leftovers of an earlier compaction included)
    skipped: int = 0  # days another process was compacting


def compact_log(folder: str | Path, *, before: dt.date | None = None) -> Compaction:
    """Compact every day of the log ``folder`` before ``before`` (default: today, UTC)
    that holds more than one file, and remove the files earlier compactions replaced.

    Raises
    ------
    DataError
        If ``folder`` does not exist.
    """
    before = before or dt.datetime.now(dt.UTC).date()
    done = Compaction()
    for _, partition in partitions(folder, until=before - dt.timedelta(days=1)):
        if partition.is_dir():
            _compact_day(partition, done)
    return done


def _compact_day(partition: Path, done: Compaction) -> None:
    with _locked(partition) as locked:
        if not locked:
            done.skipped += 1
            return
        files = live_files(partition)
        _remove_replaced(partition, files, done)
        if len(files) <= 1:
            return
        tables, names = _read_all(files)
        if len(names) <= 1:
            return
        table = tables.sort_by("time")
        final = _name(partition, table)
        schema = table.schema.with_metadata({REPLACES: orjson.dumps(sorted(names))})
        _write(table.replace_schema_metadata(schema.metadata), final)
        done.days += 1
        done.files += len(names)
        done.rows += table.num_rows
        for name in names:
            (partition / name).unlink(missing_ok=True)
            done.removed += 1
        fsync_folder(partition)


def _read_all(files: list[Path]) -> tuple[pa.Table, list[str]]:
    """The readable files' rows as one table (read_log's columns and types) and their names."""
    tables, names = [], []
    for path in files:
        try:
            tables.append(_read_file(path, None).replace_schema_metadata(None))
        except DataError:
            continue  # left in place: the reader reports it
        names.append(path.name)
    return _combine(tables, None, None), names


def _remove_replaced(partition: Path, files: list[Path], done: Compaction) -> None:
    """Remove the files a compacted file already replaces (a compaction killed before it
    removed them); ``files`` (the live ones) are kept."""
    compacted = sorted(partition.glob(f"{COMPACTED}*.parquet"))
    if not compacted:
        return
    live = {path.name for path in files}
    for name in replaced_names(compacted) - live:
        path = partition / name
        if path.exists():
            path.unlink(missing_ok=True)
            done.removed += 1


def _name(partition: Path, table: pa.Table) -> Path:
    import pyarrow as pa
    import pyarrow.compute as pc

    first = pc.min(pc.cast(table.column("time"), pa.int64())).as_py() or 0
    stamp = f"{_EPOCH + dt.timedelta(microseconds=first):%Y%m%dT%H%M%S%f}"
    while (
        path := partition / f"{COMPACTED}{stamp}-{os.getpid()}-{next(_SEQUENCE)}.parquet"
    ).exists():
        pass
    return path


def _write(table: pa.Table, final: Path) -> None:
    import pyarrow.parquet as pq

    with atomic_path(final) as temporary:
        pq.write_table(table, temporary, row_group_size=128 * 1024)


@contextlib.contextmanager
def _locked(partition: Path) -> Iterator[bool]:
    """Hold the day's compaction lock; yields False when another process holds it."""
    fd = os.open(partition / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class DailyCompaction:
    """The online service's compaction: :func:`compact_log` of ``folder`` now and
    :data:`AFTER_MIDNIGHT` seconds after each UTC midnight, in a daemon thread of its own
    (never on the request path), each followed by ``after()`` when given. A failure is
    reported once on stderr and counted in ``errors``; the thread carries on."""

    def __init__(self, folder: str | Path, *, after: Callable[[], object] | None = None) -> None:
        self.folder = Path(folder)
        self.after = after  # run after each compaction (the service keeps the days' summaries)
        self.runs = self.errors = 0
        self._reported: set[tuple[str, str]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="shipyard-log-compaction", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop after the compaction in progress, if any (it is safe to kill: see above)."""
        self._stop.set()
        self._thread.join(timeout=60)

    def _attempt(self, what: str, work: Callable[[], object]) -> None:
        try:
            work()
        except Exception as exc:  # the thread must outlive any bug
            self.errors += 1
            if (what, type(exc).__name__) not in self._reported:
                self._reported.add((what, type(exc).__name__))
                print(
                    f"shipyard: prediction log {self.folder}: could not {what}: "
                    f"{type(exc).__name__}: {exc}",
                    file=sys.stderr,
                    flush=True,
                )

    def _run(self) -> None:
        while not self._stop.is_set():
            self._attempt("compact closed days", lambda: compact_log(self.folder))
            if self.after is not None and not self._stop.is_set():
                self._attempt("summarize closed days", self.after)
            self.runs += 1
            now = dt.datetime.now(dt.UTC)
            midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
            self._stop.wait((midnight - now).total_seconds() + AFTER_MIDNIGHT)
