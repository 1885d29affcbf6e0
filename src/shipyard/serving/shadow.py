"""The shadow: a challenger scoring copies of live requests in a process of its own.

Scoring one record costs a challenger a few hundred microseconds of Python. On the server's
threads that time holds the interpreter lock, and a request arriving meanwhile waits for it:
the champion's tail latency grew by a third in ``bench/serve_latency.py``. So the challenger
runs in a child process (started with ``spawn``, at idle CPU priority), fed through a pipe:

- :meth:`Shadow.submit` appends a copy of a request to a bounded queue and returns at once;
  when the queue is full the copy is dropped (counted), never waited for;
- a sender thread wakes every ``SEND_EVERY`` seconds and hands what is queued to the child in
  batches (one wake-up per interval, not one per request); a receiver thread reads back the
  child's tallies of records answered and failed, for the metrics, at most one per
  ``REPORT_EVERY``;
- the child loads the challenger with the server's own arm loader, scores each batch it is
  handed together (``Arm.score_many``: the one-record path's values at a fraction of its
  cost per record, which matters because whatever CPU the shadow uses, even at idle
  priority, slows the champion's tail on a small machine; a row's latency is its share of
  the batch's time), and writes its answers (arm ``shadow``, or the error) to a prediction
  log of its own — same folder, its own files — so logging them costs the server nothing
  either. It counts a record after logging it, and exits, flushing its log, when its pipe
  closes: a server killed with ``kill -9`` leaves no orphan behind.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

BATCH = 64  # requests handed to the child in one message, at most
SEND_EVERY = 0.01  # seconds between the sender's hand-overs
REPORT_EVERY = 0.1  # seconds between the child's tallies, at most one per interval
_FLUSH = b'"flush"'


class Shadow:
    """The shadow process of one challenger version (see the module docstring).

    ``loader(version, path)`` loads the challenger in the child; ``log()``, when given, makes
    the child's prediction log. Both cross into the child, so they must be picklable (a
    module-level function or a ``functools.partial`` of one). ``on_counts({"ok": n,
    "error": m})`` receives the child's tallies; ``on_drop(n)`` the records dropped.
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
        self._queue: deque = deque()  # copies waiting for the sender (and flush marks)
        self._queue_size = queue_size
        self._stop = threading.Event()
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
        self._threads = [
            threading.Thread(target=self._send, name="shipyard-shadow-send", daemon=True),
            threading.Thread(target=self._receive, name="shipyard-shadow-receive", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, request_id: str, records: list, entities: list[str]) -> None:
        """Queue a copy of a request for the shadow; never blocks, never raises."""
        if len(self._queue) >= self._queue_size:
            self._on_drop(len(records))
        else:
            self._queue.append((request_id, records, entities))

    def _send(self) -> None:
        """Every ``SEND_EVERY`` seconds, hand what is queued to the child in batches: one
        wake-up per interval, not one per request, however busy the server."""
        while True:
            stopping = self._stop.wait(SEND_EVERY)
            while self._queue:
                copies, flush = [], False
                while self._queue and len(copies) < BATCH and not flush:
                    item = self._queue.popleft()
                    flush = item is _FLUSH
                    if not flush:
                        copies.append(item)
                try:
                    if copies:
                        self._outbox.send_bytes(orjson.dumps(copies))
                    if flush:
                        self._outbox.send_bytes(_FLUSH)
                except (OSError, ValueError):  # the child is gone: the copies are dropped
                    self._on_drop(sum(len(records) for _, records, _ in copies))
            if stopping:
                return

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
            else:
                self._on_counts(message)
        with self._flushed:  # nobody waits for a child that is gone
            self._flushes = -1
            self._flushed.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Have the child log every copy queued so far and write its log; True once it did
        (False when the child is gone or the timeout passed)."""
        deadline = time.monotonic() + timeout
        with self._flushed:
            before = self._flushes
        if before < 0:
            return False
        self._queue.append(_FLUSH)  # behind the copies already queued
        with self._flushed:
            done = self._flushed.wait_for(
                lambda: self._flushes != before, max(0.0, deadline - time.monotonic())
            )
            return done and self._flushes > 0

    def close(self, timeout: float = 5.0) -> None:
        """Stop taking copies, let the child finish what it holds, then stop it."""
        self._stop.set()
        self._threads[0].join(timeout=timeout)
        with contextlib.suppress(OSError):
            self._outbox.close()  # the child sees the end of its input, flushes and exits
        self.process.join(timeout=timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=timeout)
        self._threads[1].join(timeout=timeout)
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
    """The shadow process: load the challenger, answer batches until the input closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when the shadow stops
    _idle_priority()
    log = make_log() if make_log is not None else None
    try:
        arm, failure = loader(version, Path(path)), None
    except Exception as exc:
        arm, failure = None, f"version {version} did not load: {type(exc).__name__}: {exc}"
        print(f"shipyard serve: the shadow could not start: {failure}", file=sys.stderr)
    counts, reported = {"ok": 0, "error": 0}, time.monotonic()
    try:
        while True:
            if any(counts.values()):  # report the tally when a quiet interval passes
                wait = REPORT_EVERY - (time.monotonic() - reported)
                if wait <= 0 or not inbox.poll(wait):
                    outbox.send_bytes(orjson.dumps(counts))
                    counts, reported = {"ok": 0, "error": 0}, time.monotonic()
                    continue
            try:
                message = inbox.recv_bytes()
            except (EOFError, OSError):
                return
            if message == _FLUSH:
                if log is not None:
                    log.flush()
                outbox.send_bytes(orjson.dumps(counts))  # counted before "flushed" is seen
                counts, reported = {"ok": 0, "error": 0}, time.monotonic()
                outbox.send_bytes(b'"flushed"')
                continue
            copies = orjson.loads(message)
            answers = iter(_score_all(arm, failure, [r for _, rs, _ in copies for r in rs]))
            for request_id, records, entities in copies:
                for record, entity in zip(records, entities, strict=True):
                    output, latency, error = next(answers)
                    if log is not None:
                        log.append(
                            {
                                "request_id": request_id,
                                "time": time.time(),
                                "entity_id": entity if entity != request_id else None,
                                "model_version": version,
                                "arm": "shadow",
                                "features": record,
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
