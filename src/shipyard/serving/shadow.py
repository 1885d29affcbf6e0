"""The shadow: a challenger scoring copies of live requests in a process of its own.

Scoring one record costs a challenger a few hundred microseconds of Python. On the server's
threads that time holds the interpreter lock, and a request arriving meanwhile waits for it:
the champion's tail latency grew by a third in ``bench/serve_latency.py``. So the challenger
runs in a child process (started with ``spawn``, at a lower CPU priority), fed through pipes:

- :meth:`Shadow.submit` puts a copy of a request on a bounded queue and returns at once; when
  the queue is full the copy is dropped (counted), never waited for;
- a sender thread hands the queued copies to the child in batches; a receiver thread reads
  back each record's output and latency, or its error, and passes them to ``on_result`` (the
  prediction log and the metrics). Both threads spend their time blocked on a pipe;
- the child loads the challenger with the server's own arm loader and exits when its pipe
  closes, so a server killed with ``kill -9`` leaves no orphan behind.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
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
_NICE = 10

OnResult = Callable[..., None]


class Shadow:
    """The shadow process of one challenger version (see the module docstring)."""

    def __init__(
        self,
        loader: Callable[[int, Path], Any],
        version: int,
        path: Path,
        on_result: OnResult,
        *,
        queue_size: int,
        on_drop: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.version = version
        self._on_result = on_result
        self._on_drop = on_drop
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._sent: deque = deque()  # batches in the child, oldest first
        self._stop = threading.Event()
        context = multiprocessing.get_context("spawn")
        child_inbox, self._outbox = context.Pipe(duplex=False)  # (reading end, writing end)
        self._inbox, child_outbox = context.Pipe(duplex=False)
        self.process = context.Process(
            target=_child,
            args=(child_inbox, child_outbox, loader, version, str(path)),
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
        try:
            self._queue.put_nowait((request_id, records, entities))
        except queue.Full:
            self._on_drop(len(records))

    def _send(self) -> None:
        while not self._stop.is_set():
            try:
                batch = [self._queue.get(timeout=0.2)]
            except queue.Empty:
                continue
            while len(batch) < BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._sent.append(batch)
            try:
                self._outbox.send_bytes(orjson.dumps([records for _, records, _ in batch]))
            except (OSError, ValueError):  # the child is gone: what is queued is dropped
                self._sent.pop()
                self._on_drop(sum(len(records) for _, records, _ in batch))

    def _receive(self) -> None:
        while True:
            try:
                message = orjson.loads(self._inbox.recv_bytes())
            except (EOFError, OSError):
                return
            if "failed" in message:
                print(
                    f"shipyard serve: the shadow could not start: {message['failed']}",
                    file=sys.stderr,
                )
                continue
            if "results" not in message:
                continue
            batch = self._sent.popleft()
            results = iter(message["results"])
            for request_id, records, entities in batch:
                for record, entity in zip(records, entities, strict=True):
                    output, latency, error = next(results)
                    try:
                        self._on_result(
                            request_id,
                            output,
                            latency,
                            error,
                            record=record,
                            entity=entity,
                            version=self.version,
                        )
                    except Exception as exc:  # logging must not stop the shadow
                        print(
                            f"shipyard serve: recording a shadow answer failed: {exc}",
                            file=sys.stderr,
                        )

    def close(self, timeout: float = 5.0) -> None:
        """Stop taking copies, let the child finish what it holds, then stop it."""
        self._stop.set()
        self._threads[0].join(timeout=timeout)
        with contextlib.suppress(OSError):
            self._outbox.close()  # the child sees the end of its input and exits
        self.process.join(timeout=timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=timeout)
        self._threads[1].join(timeout=timeout)
        with contextlib.suppress(OSError):
            self._inbox.close()


def _child(inbox: Any, outbox: Any, loader: Callable, version: int, path: str) -> None:
    """The shadow process: load the challenger, answer batches until the input closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when the shadow stops
    with contextlib.suppress(OSError):
        os.nice(_NICE)  # a copy never competes with the champion for the CPU
    try:
        arm = loader(version, Path(path))
    except Exception as exc:
        outbox.send_bytes(
            orjson.dumps({"failed": f"version {version}: {type(exc).__name__}: {exc}"})
        )
        arm = None
    while True:
        try:
            batch = orjson.loads(inbox.recv_bytes())
        except (EOFError, OSError):
            return
        results = []
        for records in batch:
            for record in records:
                start = time.perf_counter()
                try:
                    if arm is None:
                        raise RuntimeError(f"version {version} did not load")
                    output = arm.score(record)
                except Exception as exc:
                    results.append((None, None, f"{type(exc).__name__}: {exc}"))
                else:
                    results.append((output, time.perf_counter() - start, None))
        try:
            outbox.send_bytes(orjson.dumps({"results": results}))
        except OSError:
            return
