"""A training run's tracker in a process of its own.

``train`` tracks every run in MLflow, and MLflow costs seconds of pure Python before the
first thing is logged: its import, opening the store, the scan of installed packages behind
a model's pip requirements. In the training process that Python holds the interpreter lock
while the models fit beside it, and slowed a small data set's fits threefold. So the run's
:class:`~shipyard.tracking.Tracker` lives in a child interpreter (``python -m
shipyard.tracking_worker``), started before the data is checked (it imports MLflow
meanwhile; :meth:`RemoteTracker.open`, sent once the check has let the training go ahead
and the lighter rungs are fitted, makes a new store and pays the costs of logging a model
beside the trees), and a :class:`RemoteTracker` in the
training process speaks to it: one JSON line per call on the child's stdin, one JSON
line per answer on a private copy of its stdout.

Only what names something waits for an answer (starting a run: its id names the bundle;
ending one; registering the model: its version). Everything else is sent and logged while
the training goes on; a failure is kept and raised at the next answer as the same
:class:`TrackingError` it would have been. Arrays and tables cross as files in a scratch
folder, never as pickles. What MLflow warns in the child is warned again in the parent,
under the same logger. The child ends when told to, or when its stdin closes (the parent
died): a run it leaves open is failed by the next command, as any interrupted training's.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import IO, Any

import numpy as np

from shipyard.errors import ShipyardError, TrackingError

# the parent waits this long for the child to finish after being told to, then ends it
QUIT_TIMEOUT_S = 60.0
# what answers carry back of the child's logging (MLflow's loggers do not propagate)
FORWARDED_LOGGERS = ("mlflow", "alembic")


class RemoteTracker:
    """The training-facing part of a :class:`~shipyard.tracking.Tracker` (runs, logging and
    registering a bundle), run by a child process. Building one starts the child and waits
    until an existing store is open (a new one waits for :meth:`open`): a
    :class:`TrackingError` then is the Tracker's own."""

    def __init__(self, uri: str, experiment: str, artifact_root: Path | None = None) -> None:
        self.uri = uri
        self._scratch = Path(tempfile.mkdtemp(prefix="shipyard-tracking-"))
        self._sent = 0
        self._writing = threading.Lock()  # open() may come from the thread that built this
        self._stderr = (self._scratch / "stderr.txt").open("w+b")
        here = str(Path(__file__).resolve().parent.parent)  # shipyard importable as here
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p),
        }
        setting = {
            "uri": uri,
            "experiment": experiment,
            "artifact_root": None if artifact_root is None else str(artifact_root),
            "scratch": str(self._scratch),
        }
        try:
            self._child: subprocess.Popen[bytes] | None = subprocess.Popen(
                [sys.executable, "-m", "shipyard.tracking_worker", json.dumps(setting)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env=env,
            )
        except OSError as exc:
            self._stderr.close()
            shutil.rmtree(self._scratch, ignore_errors=True)
            raise TrackingError(f"cannot start the tracking process for {uri}: {exc}") from exc
        try:
            self._answer()  # an existing store is open, or the Tracker's error
        except BaseException:
            self.close()
            raise

    def open(self) -> None:
        """The training goes ahead: a SQLite store that does not exist yet is made now, and
        MLflow's one-off costs behind logging a model are paid, while the trees fit (not
        waited for; a failure is raised at the run's start). Until then the child has only
        imported MLflow, so a refused training leaves no store behind."""
        self._send("open", {})

    # --- runs ------------------------------------------------------------------------------

    @contextmanager
    def run(
        self, name: str, nested: bool = False, tags: Mapping[str, str] | None = None
    ) -> Iterator[str]:
        """Start a run (nested under the active one if ``nested``); yields its id. The run
        ends FAILED when the block raises, FINISHED once everything sent is logged. A nested
        run is not waited for: it yields ``""`` (its id is MLflow's, in the store)."""
        args = {"name": name, "nested": nested, "tags": dict(tags or {})}
        if nested:
            self._send("start", args)
        run_id = "" if nested else str(self._call("start", args))
        try:
            yield run_id
        except BaseException:
            with suppress(TrackingError):  # the training's own error is the one to raise
                self._end(nested, failed=True)
            raise
        self._end(nested, failed=False)

    def _end(self, nested: bool, failed: bool) -> None:
        if nested:
            self._send("end", {"failed": failed})
        else:
            self._call("end", {"failed": failed})

    # --- logging (into the active run; not waited for) --------------------------------------

    def params(self, values: Mapping[str, Any]) -> None:
        self._send("params", {"values": _plain(dict(values))})

    def metrics(self, values: Mapping[str, float], step: int | None = None) -> None:
        plain = {k: float(v) for k, v in values.items() if v is not None}
        self._send("metrics", {"values": plain, "step": step})

    def curve(self, name: str, values: list[float]) -> None:
        self._send("curve", {"name": name, "values": [float(v) for v in values]})

    def tags(self, values: Mapping[str, Any]) -> None:
        self._send("tags", {"values": {k: str(v) for k, v in values.items() if v is not None}})

    def json(self, document: Any, path: str) -> None:
        self._send("json", {"document": _plain(document), "path": path})

    def file(self, path: Path | str, folder: str | None = None) -> None:
        self._send("file", {"path": str(path), "folder": folder})

    def table(self, frame: Any, path: str) -> None:
        """A frame as the file ``path`` names (Parquet or CSV), written here, logged there."""
        file = self._place(Path(path).name)
        frame.to_parquet(file, index=False) if path.endswith(".parquet") else frame.to_csv(
            file, index=False
        )
        self.file(file, str(Path(path).parent) if "/" in path else None)

    def plot(self, kind: str, path: str, title: str, *data: Any) -> None:
        """A figure drawn there by ``shipyard.evaluation.plots`` from ``data`` (arrays cross
        as one ``.npz`` file, the rest as JSON)."""
        arrays: list[np.ndarray] = []
        parts: list[dict[str, Any]] = []
        for datum in data:
            if isinstance(datum, np.ndarray):
                parts.append({"array": f"arr_{len(arrays)}"})  # savez's names, in order
                arrays.append(datum)
            else:
                parts.append({"value": _plain(datum)})
        file = self._place("plot.npz")
        np.savez(file, *arrays)
        self._send(
            "plot", {"kind": kind, "path": path, "title": title, "data": parts, "file": str(file)}
        )

    def log_bundle(
        self, bundle: Path, registered_model: str, input_example: Any = None
    ) -> int | None:
        """Log the bundle as a pickle-free pyfunc model and register a new version (waited
        for: the version is the answer)."""
        if input_example is not None:
            raise TrackingError("the tracking process logs models without an input example")
        version = self._call("log_bundle", {"bundle": str(bundle), "model": registered_model})
        return None if version is None else int(version)

    # --- the child ---------------------------------------------------------------------------

    def close(self) -> None:
        """Tell the child to finish what it was sent and end. Not waited for: a thread
        reaps it (and ends it if it has not ended within ``QUIT_TIMEOUT_S``)."""
        child, self._child = self._child, None
        if child is None:
            return
        with suppress(OSError):
            if child.stdin is not None:
                child.stdin.write(b'{"op": "quit"}\n')
                child.stdin.close()
        if child.stdout is not None:
            child.stdout.close()
        self._stderr.close()
        threading.Thread(
            target=_reap, args=(child, self._scratch), name="shipyard-tracking-reaper", daemon=True
        ).start()

    def _place(self, name: str) -> Path:
        self._sent += 1
        folder = self._scratch / str(self._sent)
        folder.mkdir()
        return folder / name

    def _send(self, op: str, args: Mapping[str, Any], answer: bool = False) -> None:
        child = self._child
        if child is None or child.stdin is None:
            raise TrackingError(f"the tracking process for {self.uri} has ended")
        line = json.dumps({"op": op, "args": args, "answer": answer}, default=str)
        try:
            with self._writing:
                child.stdin.write(line.encode() + b"\n")
                child.stdin.flush()
        except OSError as exc:
            raise TrackingError(
                f"the tracking process for {self.uri} stopped: {self._last_words()}"
            ) from exc

    def _call(self, op: str, args: Mapping[str, Any]) -> Any:
        self._send(op, args, answer=True)
        return self._answer()

    def _answer(self) -> Any:
        child = self._child
        line = child.stdout.readline() if child is not None and child.stdout else b""
        if not line:
            raise TrackingError(
                f"the tracking process for {self.uri} stopped: {self._last_words()}"
            )
        answer = json.loads(line)
        for name, level, message in answer.get("logs", ()):
            logging.getLogger(name).log(level, "%s", message)
        for category, message in answer.get("warnings", ()):
            warnings.warn(message, _category(category), stacklevel=3)
        if "error" in answer:
            raise TrackingError(answer["error"])
        return answer.get("value")

    def _last_words(self) -> str:
        child = self._child
        if child is not None:
            with suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)
        self._stderr.flush()
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace").strip()
        return text.splitlines()[-1] if text else "no message (see the tracking store)"


def _reap(child: subprocess.Popen[bytes], scratch: Path) -> None:
    try:
        child.wait(timeout=QUIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    shutil.rmtree(scratch, ignore_errors=True)


def _plain(value: Any) -> Any:
    """``value`` as JSON reads it back (what the Tracker would log of it)."""
    return json.loads(json.dumps(value, default=str))


def _category(name: str) -> type[Warning]:
    """The warning class to warn again as, from the child's class name: a builtin one as
    itself, a library's deprecation as a deprecation (hidden by default, as it was there).

    >>> [_category(n).__name__ for n in ("FutureWarning", "SADeprecationWarning", "Odd")]
    ['FutureWarning', 'DeprecationWarning', 'UserWarning']
    """
    found = getattr(builtins, name, None)
    if isinstance(found, type) and issubclass(found, Warning):
        return found
    return DeprecationWarning if name.endswith("DeprecationWarning") else UserWarning


# --- the child process ---------------------------------------------------------------------


class _ParentGone(Exception):
    """The parent process went away (its end of a pipe closed)."""


class _Forward(logging.Handler):
    """Keeps what MLflow logs at warning and up, for the next answer."""

    def __init__(self, kept: list[tuple[str, int, str]]) -> None:
        super().__init__(logging.WARNING)
        self.kept = kept

    def emit(self, record: logging.LogRecord) -> None:
        self.kept.append((record.name, record.levelno, record.getMessage()))


def _serve(setting: Mapping[str, Any], answers: IO[bytes]) -> None:
    from shipyard import tracking

    logs: list[tuple[str, int, str]] = []
    caught: list[tuple[str, str]] = []

    def keep_warning(message: Any, category: type[Warning], *_: Any, **__: Any) -> None:
        caught.append((category.__name__, str(message)))

    warnings.showwarning = keep_warning

    def say(**answer: Any) -> None:
        answer.update(logs=list(logs), warnings=list(caught))
        logs.clear()
        caught.clear()
        try:
            answers.write(json.dumps(answer, default=str).encode() + b"\n")
            answers.flush()
        except OSError as exc:
            raise _ParentGone from exc

    def open_store() -> tracking.Tracker:
        root = setting["artifact_root"]
        return tracking.Tracker(
            uri, setting["experiment"], artifact_root=Path(root) if root else None
        )

    uri = setting["uri"]
    store = tracking.sqlite_path(uri)
    tracker: tracking.Tracker | None = None
    if store is None or store.exists():
        try:
            tracker = open_store()
        except ShipyardError as exc:
            say(error=str(exc))
            return
    else:  # made once the training goes ahead ("open"): a refused one leaves no store
        tracking.import_mlflow()  # most of the cost: paid now
    for name in FORWARDED_LOGGERS:  # after the import, which sets MLflow's own handler
        logging.getLogger(name).addHandler(_Forward(logs))
    say(value=None)

    runs: list[AbstractContextManager[str]] = []
    pending: str | None = None  # the first failure since the last answer
    told = False  # to quit; else the parent went away (stdin closed)
    for line in sys.stdin.buffer:
        request = json.loads(line)
        op, args = request["op"], request.get("args", {})
        if op == "quit":
            told = True
            break
        value: Any = None
        try:
            if op == "end":  # a run whose logging failed ends FAILED too
                failure = (RuntimeError, RuntimeError("the training failed"), None)
                failed = args["failed"] or pending is not None
                runs.pop().__exit__(*(failure if failed else (None, None, None)))
            elif pending is None:
                tracker = tracker or open_store()
                if op == "open":  # the model is logged later: pay its one-off costs now
                    tracking._warm_up()
                else:
                    value = _do(tracker, op, args, runs)
        except Exception as exc:
            pending = pending or (
                str(exc) if isinstance(exc, ShipyardError) else f"{op} failed at {uri}: {exc}"
            )
        if request.get("answer"):
            if pending is not None:
                say(error=pending)
                pending = None
            else:
                say(value=value)
    if not told:  # stdin closed: the parent went away
        raise _ParentGone
    while runs:  # told to quit with a run open: the training ended without it
        runs.pop().__exit__(RuntimeError, RuntimeError("the training ended"), None)


def _do(
    tracker: Any, op: str, args: Mapping[str, Any], runs: list[AbstractContextManager[str]]
) -> Any:
    if op == "start":
        context = tracker.run(args["name"], nested=args["nested"], tags=args["tags"])
        run_id = context.__enter__()
        runs.append(context)
        return run_id
    if op == "log_bundle":
        return tracker.log_bundle(Path(args["bundle"]), args["model"])
    if op == "metrics":
        return tracker.metrics(args["values"], step=args["step"])
    if op == "plot":
        with np.load(args["file"]) as arrays:
            data = [arrays[p["array"]] if "array" in p else p["value"] for p in args["data"]]
        return tracker.plot(args["kind"], args["path"], args["title"], *data)
    if op in ("params", "tags"):
        return getattr(tracker, op)(args["values"])
    if op == "curve":
        return tracker.curve(args["name"], args["values"])
    if op == "json":
        return tracker.json(args["document"], args["path"])
    if op == "file":
        return tracker.file(args["path"], args["folder"])
    raise TrackingError(f"the tracking process has no operation '{op}'")


def main() -> None:
    """The child: answers go to a private copy of stdout, and stdout itself to stderr, so
    nothing MLflow prints can break a line of the conversation."""
    # Ctrl-C reaches the whole process group: the parent decides, and ends the run FAILED
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    setting = json.loads(sys.argv[1])
    try:
        _serve(setting, answers)
    except _ParentGone:
        # A parent that went away leaves its run open, as a killed training does: the next
        # command's clean-up fails it and says so. Nothing here may end it on the way out
        # (MLflow's exit hook, or the run's context closed by the collector), hence _exit.
        shutil.rmtree(setting["scratch"], ignore_errors=True)
        os._exit(0)
    finally:  # the parent does not wait for this process: the scratch folder goes with it
        shutil.rmtree(setting["scratch"], ignore_errors=True)


if __name__ == "__main__":
    main()
