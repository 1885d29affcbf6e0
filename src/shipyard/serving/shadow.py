"""The shadow: a challenger scoring copies of live requests in a process of its own.

Scoring one record costs a challenger a few hundred microseconds of Python. On the server's
threads that time holds the interpreter lock, and a request arriving meanwhile waits for it:
the champion's tail latency grew by a third in ``bench/serve_latency.py``. Handing each
request's copy to a child process still cost the server's threads tens of microseconds per
request, in bursts that lengthened the champion's tail by a fifth. So the shadow adds no
per-request work to the server at all: its copies are the champion's rows of the prediction
log, which the server writes anyway.

- The server's :class:`~shipyard.serving.log.PredictionLog` tells :meth:`Shadow.feed` of
  each file it has just put in place (``on_written``); the feed passes the file's name to
  the child through a pipe — one small message per file, never blocking. A file that would
  take the rows waiting for the child past ``queue_size`` is dropped (its rows counted),
  never waited for; an idle child always takes the next file.
- The child (started with ``spawn``, at idle CPU priority) loads the challenger with the
  server's own arm loader, reads the champion's rows of each file, scores them together
  (``Arm.score_many``: the one-record path's values at a fraction of its cost per record; a
  row's latency is its share of the batch's time) and writes its answers (arm ``shadow``,
  same ``request_id`` and entity, the prediction or the error, and the features it scored,
  typed by its own contract) to a prediction log of its own — same folder, its own
  files, written every second (or every ``log_flush_seconds``, when longer). It reports
  tallies of records answered, failed and dropped, at most one per ``REPORT_EVERY``,
  counting a record after logging it; a receiver thread in the server hands them to the
  metrics.
- A copy is scored a log flush (``log_flush_seconds``) after its request was answered, in
  one burst per file rather than one per request. The child exits, flushing its log, when
  its pipe closes: a server killed with ``kill -9`` leaves no orphan behind.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

REPORT_EVERY = 0.1  # seconds between the child's tallies, at most one per interval
_FLUSH = b'"flush"'
_TALLY = ("ok", "error", "dropped", "other")  # "other": rows of other arms, not copies


class Shadow:
    """The shadow process of one challenger version (see the module docstring).

    ``loader(version, path)`` loads the challenger in the child; ``log()``, when given, makes
    the child's prediction log. Both cross into the child, so they must be picklable (a
    module-level function or a ``functools.partial`` of one). ``on_counts({"ok": n,
    "error": m})`` receives the child's tallies of copies answered and failed; ``on_drop(n)``
    the copies dropped (a backlog over ``queue_size``, a file the child could not read, a
    child gone).
    """

    def __init__(
        self,
        loader: Callable[[int, Path], Any],
        version: int,
        path: Path,
        *,
        log: Callable[[], Any] | None,
        queue_size: int,
        on_counts: Callable[[dict[str, int]], None] = lambda counts: None,
        on_drop: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.version = version
        self._on_counts = on_counts
        self._on_drop = on_drop
        self._queue_size = queue_size
        self._pending = 0  # rows handed to the child and not yet tallied
        self._lock = threading.Lock()  # the log's writer, flush() and the receiver share it
        self._flushed = threading.Condition()
        self._flushes = 0
        context = multiprocessing.get_context("spawn")
        child_inbox, self._outbox = context.Pipe(duplex=False)  # (reading end, writing end)
        self._inbox, child_outbox = context.Pipe(duplex=False)
        self.process = context.Process(
            target=_child,
            args=(child_inbox, child_outbox, loader, version, str(path), log),
            name=f"shipyard-shadow-{version}",
            daemon=not multiprocessing.current_process().daemon,
        )
        self.process.start()
        child_inbox.close()
        child_outbox.close()
        os.set_blocking(self._outbox.fileno(), False)  # a full pipe drops, never waits
        self._receiver = threading.Thread(
            target=self._receive, name="shipyard-shadow-receive", daemon=True
        )
        self._receiver.start()

    @property
    def pending(self) -> int:
        """Rows handed to the child that it has not answered yet."""
        return self._pending

    def feed(self, path: Path, rows: int) -> None:
        """Hand the child a prediction-log file of ``rows`` rows (the log's ``on_written``);
        never blocks, never raises."""
        with self._lock:
            if self._pending and self._pending + rows > self._queue_size:
                self._on_drop(rows)
                return
            self._pending += rows
            try:
                self._outbox.send_bytes(orjson.dumps([str(path), rows]))
            except (OSError, ValueError):  # the child is gone, or far behind
                self._pending -= rows
                self._on_drop(rows)

    def _receive(self) -> None:
        while True:
            try:
                message = orjson.loads(self._inbox.recv_bytes())
            except (EOFError, OSError):
                break
            if message == "flushed":
                with self._flushed:
                    self._flushes += 1
                    self._flushed.notify_all()
                continue
            with self._lock:
                self._pending -= sum(message.values())
            if message["dropped"]:
                self._on_drop(message["dropped"])
            self._on_counts({"ok": message["ok"], "error": message["error"]})
        with self._flushed:  # nobody waits for a child that is gone
            self._flushes = -1
            self._flushed.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Have the child answer every file handed to it so far and write its log; True once
        it did (False when the child is gone or the timeout passed). Flush the server's log
        first, so that its last rows reach the child."""
        deadline = time.monotonic() + timeout
        with self._flushed:
            before = self._flushes
        if before < 0:
            return False
        with self._lock:  # behind the files already handed over
            try:
                self._outbox.send_bytes(_FLUSH)
            except (OSError, ValueError):
                return False
        with self._flushed:
            done = self._flushed.wait_for(
                lambda: self._flushes != before, max(0.0, deadline - time.monotonic())
            )
            return done and self._flushes > 0

    def close(self, timeout: float = 5.0) -> None:
        """Let the child finish the files it was handed, then stop it."""
        with self._lock, contextlib.suppress(OSError):
            self._outbox.close()  # the child sees the end of its input, flushes and exits
        self.process.join(timeout=timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=timeout)
        self._receiver.join(timeout=timeout)
        with contextlib.suppress(OSError):
            self._inbox.close()


def _child(
    inbox: Any,
    outbox: Any,
    loader: Callable,
    version: int,
    path: str,
    make_log: Callable[[], Any] | None,
) -> None:
    """The shadow process: load the challenger, answer files until the input closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when the shadow stops
    _idle_priority()
    log = make_log() if make_log is not None else None
    try:
        arm, failure = loader(version, Path(path)), None
    except Exception as exc:
        arm, failure = None, f"version {version} did not load: {type(exc).__name__}: {exc}"
        print(f"shipyard serve: the shadow could not start: {failure}", file=sys.stderr)
    else:
        try:
            arm.accelerate()  # the batch path: a tree model scores its rows as a forest
        except Exception as exc:  # the one-record path, row by row, still gives the values
            print(f"shipyard serve: the shadow scores row by row: {exc}", file=sys.stderr)
    types = getattr(arm, "log_types", None)  # the features' types in the log, once
    counts, reported = dict.fromkeys(_TALLY, 0), time.monotonic()
    unreadable: set[str] = set()
    try:
        while True:
            if any(counts.values()):  # report the tally when a quiet interval passes
                wait = REPORT_EVERY - (time.monotonic() - reported)
                if wait <= 0 or not inbox.poll(wait):
                    outbox.send_bytes(orjson.dumps(counts))
                    counts, reported = dict.fromkeys(_TALLY, 0), time.monotonic()
                    continue
            try:
                message = inbox.recv_bytes()
            except (EOFError, OSError):
                return
            if message == _FLUSH:
                if log is not None:
                    log.flush()
                outbox.send_bytes(orjson.dumps(counts))  # counted before "flushed" is seen
                counts, reported = dict.fromkeys(_TALLY, 0), time.monotonic()
                outbox.send_bytes(b'"flushed"')
                continue
            file, rows = orjson.loads(message)
            try:
                copies = _copies(file)
            except Exception as exc:
                counts["dropped"] += rows
                kind = type(exc).__name__
                if kind not in unreadable:
                    unreadable.add(kind)
                    print(
                        f"shipyard serve: the shadow could not read {file}: {kind}: {exc} "
                        "(its rows are counted as dropped)",
                        file=sys.stderr,
                    )
                continue
            counts["other"] += rows - len(copies)
            answers = _score_all(arm, failure, [features for _, _, features in copies])
            for (request_id, entity, features), (output, latency, error) in zip(
                copies, answers, strict=True
            ):
                if log is not None:
                    log.append(
                        {
                            "request_id": request_id,
                            "time": time.time(),
                            "entity_id": entity,
                            "model_version": version,
                            "arm": "shadow",
                            "features": features,  # typed as the challenger's contract says
                            "types": types,
                            "prediction": output,
                            "latency_ms": None if latency is None else latency * 1e3,
                            "warnings": [],
                            "error": error,
                        }
                    )
                counts["ok" if error is None else "error"] += 1  # after its log row
    except OSError:  # the server is gone
        return
    finally:
        if log is not None:
            log.close()


def _copies(file: str) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(request id, entity id, features) of each champion row of a log file: the features
    from its typed ``f.<name>`` columns."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from shipyard.serving.log import PREFIX

    with open(file, "rb") as opened:  # whole, then parsed: a third less CPU than from a path
        data = pa.BufferReader(opened.read())
    with pq.ParquetFile(data) as parquet:  # not read_table: it would import pandas
        names = [n for n in parquet.schema_arrow.names if n.startswith(PREFIX)]
        table = parquet.read(columns=["request_id", "entity_id", "arm", *names], use_threads=False)
    table = table.filter(pc.equal(table.column("arm"), "champion"))
    features = [name.removeprefix(PREFIX) for name in names]
    values = [table.column(name).to_pylist() for name in names]
    records = (
        [dict(zip(features, row, strict=True)) for row in zip(*values, strict=True)]
        if names
        else [{} for _ in range(table.num_rows)]
    )
    return list(
        zip(
            table.column("request_id").to_pylist(),
            table.column("entity_id").to_pylist(),
            records,
            strict=True,
        )
    )


def _idle_priority() -> None:
    """Run only on CPU time nothing else wants (Linux ``SCHED_IDLE``; elsewhere the lowest
    nice level): the champion's requests always come first. On a saturated machine the
    shadow falls behind, its queue fills and copies are dropped — counted, never waited for."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(OSError):
            os.nice(19)


def _score_all(
    arm: Any, failure: str | None, records: list[dict]
) -> list[tuple[Any, float | None, str | None]]:
    """:func:`_score` of each record, the records scored together (``arm.score_many``):
    each one's latency is its share of the batch's time. A batch that raises is scored again
    record by record, so that each error lands on the record that caused it."""
    if arm is None:
        return [(None, None, failure)] * len(records)
    start = time.perf_counter()
    try:
        outputs = arm.score_many(records)
    except Exception:
        return [_score(arm, None, record) for record in records]
    share = (time.perf_counter() - start) / max(len(records), 1)
    return [(output, share, None) for output in outputs]


def _score(arm: Any, failure: str | None, record: dict) -> tuple[Any, float | None, str | None]:
    """(output, seconds, None), or (None, None, the error) when the challenger failed."""
    if arm is None:
        return None, None, failure
    start = time.perf_counter()
    try:
        output = arm.score(record)
    except Exception as exc:
        return None, None, f"{type(exc).__name__}: {exc}"
    return output, time.perf_counter() - start, None
