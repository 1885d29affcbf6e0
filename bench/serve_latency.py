"""Benchmark: the online service (``shipyard serve``) under a bounded load at concurrency 1
and 16, beside ``mlflow models serve`` on the same registered version and beside a minimal
FastAPI app that calls a raw LightGBM Booster on a prepared row; with a shadow challenger off
and on.

All in this one run, on NYC flights (each server a subprocess with one worker on a free
127.0.0.1 port, polled until its health check answers, stopped at the end even on error):

- a project is trained and tracked like ``bench/batch_predict.py``'s (post-departure columns
  excluded, ``min_improvement = 0`` so ``gbt`` wins): version 1 on the whole table, promoted
  to champion (force, "bench"), and version 2 on every other row, the shadow challenger;
- --records real flights, a seeded sample, are the requests: raw records of the bundle's
  feature columns as JSON (NaN → null); every answer is compared with the bundle's own
  ``predict_one``;
- the servers:
    ``minimal``: FastAPI on uvicorn, access log off, ``POST /predict {"row": [floats]}`` →
    ``booster.predict(np.array([row]), num_threads=1)[0]`` on ``model.lgb.txt`` of v1's
    bundle, the row prepared beforehand by the bundle's own transform;
    ``mlflow``: ``mlflow models serve -m models:/flights/1 --env-manager local``, stock
    settings, ``POST /invocations {"dataframe_records": [record]}``;
    ``shipyard``: ``shipyard serve --workers 1``, ``POST /predict`` with the raw record,
    champion v1 alone; ``shipyard_control``: a second, identical server (the noise floor of
    an on/off comparison: how far two equal servers' p99 differ here); ``shipyard_shadow``:
    the same on a copy of the project in which v2 is promoted to shadow (a copy, so both can
    run at once: a server polls its state);
- the load generator is this process: one thread per concurrent caller, each with one
  keep-alive HTTP/1.1 connection (a blocking socket), requests encoded beforehand,
  responses parsed by hand, the garbage collector off while timing. It shares the 2 cores
  with the server, so it is kept cheap: here it costs about 60 µs of CPU per request
  against about 110 µs for an asyncio client. A request's latency is the time from writing
  it to having its whole response. Its ceiling is measured first, against a stub server
  answering every request with canned bytes;
- each level (concurrency 1, then 16) warms every server up, then runs --requests timed
  requests per server, under a time limit. ``mlflow`` (about 60 requests/s) gets
  --mlflow-requests, alone. ``minimal`` and the three ``shipyard`` servers run at the
  same time and take turns in --bursts rounds (the order rotating), so that what other
  processes do to the machine meanwhile falls on all of them alike;
- the shadow scores the champion's rows of the prediction log once the log has written
  them, so its work trails its requests by up to a log flush: the shipyard servers log
  with ``log_flush_seconds`` --log-flush-seconds (1.0, a project's default), and a burst
  lasts about ten flushes (--requests / --bursts = 8000 requests, about 10 s at
  concurrency 1), so that nine tenths of the shadow's work fall inside its own burst,
  where they count. The pause before each burst (the flush plus 0.15 s) lets what a
  burst left finish before another server's burst starts.

Reported per server and level: p50 / p95 / p99 / mean / max latency (ms), requests/s and
p99 (also per burst), errors (non-2xx, exceptions, unfinished, malformed bodies), the server's CPU
per request (its process group, from /proc) and the client's; for the subject, its
``/health`` and ``/metrics`` after the load (the shadow's counter shows it really scored).

Targets: shipyard p50 at concurrency 1 ≤ 1.5× the minimal app's; shipyard requests/s at
concurrency 16 ≥ 0.6× the minimal app's; shadow-on p99 at concurrency 1 ≤ 1.10× shadow-off's
on the pooled requests (at 16, where the server is saturated and the shadow's work takes
CPU from the champion, the ratio is reported beside it; so is, at both levels, the median
over rounds of one round's ratio, and the same ratios for the control server: the noise
floor the shadow's ratio should be read against); zero errors on every server.

    .venv/bin/python bench/serve_latency.py [--requests 32000] [--mlflow-requests 300]
        [--warmup 200] [--bursts 4] [--records 2000] [--only-references] [--workdir DIR]

``--workdir DIR`` keeps the project and the servers' logs in DIR and reuses a project an
earlier run left there (no training: about 70 s less).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

EXCLUDE = (
    "rownames",
    "year",
    "month",
    "arr_delay",
    "arr_time",
    "dep_delay",
    "dep_time",
    "sched_arr_time",
    "sched_dep_time",
    # the time column: its calendar parts are features since they could be, and with them
    # the linear rung wins; kept out so the servers compare on the same gbt model as before
    "time_hour",
)
LEVELS = (1, 16)
TARGETS = {"p50_c1_vs_minimal": 1.5, "rps_c16_vs_minimal": 0.6, "shadow_p99_c1": 1.10}
# predictions equal up to JSON's float text (shortest round-trip repr: exact in practice)
TOLERANCE = 1e-9
PAUSE_S = 0.25  # between bursts
REQUEST_TIMEOUT = 30.0  # seconds one request may take before it counts as an error

MINIMAL_APP = '''"""The minimal reference: FastAPI calling a raw LightGBM Booster on a prepared row."""
import os

import lightgbm
import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel

booster = lightgbm.Booster(model_file=os.environ["BENCH_MODEL_FILE"])
app = FastAPI()


class Row(BaseModel):
    row: list[float | None]


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/predict")
async def predict(body: Row) -> dict[str, float]:
    return {"prediction": float(booster.predict(np.array([body.row], dtype=float), num_threads=1)[0])}
'''

# The client's ceiling: a server that does next to nothing (canned bytes per request).
STUB_SERVER = """
import asyncio, sys
BODY = b'{"prediction":0.5}'
RESPONSE = (b"HTTP/1.1 200 OK\\r\\ncontent-type: application/json\\r\\ncontent-length: "
            + str(len(BODY)).encode() + b"\\r\\n\\r\\n" + BODY)
class Stub(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer = transport, bytearray()
    def data_received(self, data):
        self.buffer += data
        while (end := self.buffer.find(b"\\r\\n\\r\\n")) >= 0:
            head = bytes(self.buffer[:end]).lower()
            at = head.find(b"content-length:")
            size = int(head[at + 15:].split(b"\\r\\n", 1)[0]) if at >= 0 else 0
            if len(self.buffer) < end + 4 + size:
                return
            del self.buffer[:end + 4 + size]
            self.transport.write(RESPONSE)
async def main():
    server = await asyncio.get_running_loop().create_server(Stub, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()
asyncio.run(main())
"""


class ServerFailed(RuntimeError):
    """A server exited, or did not answer its health check in time."""


def plain(value: Any) -> Any:
    """A JSON-safe Python value: numpy scalars unwrapped, NaN / NA / NaT as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    return value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running(
    label: str,
    command: Sequence[str],
    port: int,
    health: str,
    log_path: Path,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> Iterator[subprocess.Popen]:
    """Start ``command`` in its own process group, poll ``health`` until it answers 200
    (bounded by ``timeout``), and stop the whole group afterwards, even on error."""
    url = f"http://127.0.0.1:{port}{health}"
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    with log_path.open("w") as log:
        process = subprocess.Popen(
            list(command), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise ServerFailed(
                        f"{label} exited with code {process.returncode}: "
                        f"{log_path.read_text()[-2000:]}"
                    )
                if time.monotonic() > deadline:
                    raise ServerFailed(
                        f"{label} did not answer {health} within {timeout:.0f} s: "
                        f"{log_path.read_text()[-2000:]}"
                    )
                try:
                    with direct.open(url, timeout=2) as response:
                        if response.status == 200:
                            break
                except (urllib.error.URLError, OSError):
                    pass
                time.sleep(0.2)
            yield process
        finally:
            _stop(process)


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of a process group
    (a server and any workers it started), from /proc."""
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[2]) == pgid:  # pgrp; then utime and stime, in clock ticks
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def fetch(port: int, path: str) -> Any:
    """A GET answer: JSON parsed; Prometheus text as {series: value}, histogram buckets
    left out."""
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with direct.open(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        text = response.read().decode()
    if "json" in response.headers.get("content-type", ""):
        return json.loads(text)
    series = (line.rsplit(" ", 1) for line in text.splitlines() if line[:1] not in ("", "#"))
    return {name: float(value) for name, value in series if "_bucket{" not in name}


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process group we started (mlflow's CLI runs uvicorn as a child)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):  # a child left behind in the group
        os.killpg(process.pid, signal.SIGKILL)


# --- the load generator -----------------------------------------------------------------------


def _parse(buffer: bytearray) -> tuple[int, bytes, int, bool] | None:
    """(status, body, bytes used, server closes) of the first whole HTTP/1.1 response in
    ``buffer``, or None while it is incomplete."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).lower()
    status = int(head[9:12])
    closes = b"\r\nconnection: close" in head
    start = end + 4
    at = head.find(b"\r\ncontent-length:")
    if at >= 0:
        stop = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : stop if stop >= 0 else len(head)])
        if len(buffer) < start + length:
            return None
        return status, bytes(buffer[start : start + length]), start + length, closes
    if b"\r\ntransfer-encoding: chunked" in head:
        body, pos = bytearray(), start
        while True:
            line_end = buffer.find(b"\r\n", pos)
            if line_end < 0:
                return None
            size = int(bytes(buffer[pos:line_end]).split(b";")[0], 16)
            if len(buffer) < line_end + 4 + size:
                return None
            body += buffer[line_end + 2 : line_end + 2 + size]
            pos = line_end + 4 + size
            if size == 0:
                return status, bytes(body), pos, closes
    raise ValueError("response has neither Content-Length nor chunked transfer encoding")


def request_bytes(port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _connect(port: int) -> socket.socket:
    """A blocking socket whose reads and writes time out in the kernel (SO_RCVTIMEO): a
    Python-level timeout would add a poll() before every recv, ~15 µs a request here."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT)
    sock.settimeout(None)
    limit = struct.pack("ll", int(REQUEST_TIMEOUT), 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, limit)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, limit)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def burst(
    port: int,
    requests: Sequence[bytes],
    concurrency: int,
    count: int,
    limit_s: float,
    offset: int = 0,
) -> dict[str, Any]:
    """``count`` requests from ``concurrency`` threads, each with its own keep-alive
    connection; the i-th is ``requests[(offset + i) % len(requests)]``. No request starts
    after ``limit_s``, and none waits longer than REQUEST_TIMEOUT."""
    latency = [math.nan] * count
    status = [0] * count  # 0: never sent (time limit); -1: an exception
    bodies: list[bytes] = [b""] * count
    indices = iter(range(count))  # shared: each index is taken by exactly one caller
    lock = threading.Lock()
    n = len(requests)
    perf = time.perf_counter

    def caller(sock: socket.socket | None, deadline: float) -> None:
        buffer = bytearray()
        try:
            while True:
                with lock:
                    i = next(indices, None)
                if i is None or perf() > deadline:
                    return
                if sock is None:
                    sock, buffer = _connect(port), bytearray()
                start = perf()
                try:
                    sock.sendall(requests[(offset + i) % n])
                    while (parsed := _parse(buffer)) is None:
                        chunk = sock.recv(65536)
                        if not chunk:
                            raise ConnectionError("the server closed the connection")
                        buffer += chunk
                except (OSError, ValueError) as exc:
                    latency[i], status[i], bodies[i] = perf() - start, -1, repr(exc).encode()
                    sock.close()
                    sock = None
                    continue
                latency[i] = perf() - start
                status[i], bodies[i], used, closes = parsed
                del buffer[:used]
                if closes:
                    sock.close()
                    sock = None
        finally:
            if sock is not None:
                sock.close()

    socks = [_connect(port) for _ in range(concurrency)]  # connected before the clock starts
    gc.collect()
    gc.disable()
    try:
        cpu, start = time.process_time(), perf()
        threads = [threading.Thread(target=caller, args=(s, start + limit_s)) for s in socks]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall, cpu = perf() - start, time.process_time() - cpu
    finally:
        gc.enable()
    return {
        "latency": latency,
        "status": status,
        "bodies": bodies,
        "wall": wall,
        "cpu": cpu,
        "timed_out": 0 in status,
    }


def pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Bursts of one server as one run: requests in order, walls and CPU added up."""
    return {
        "latency": [x for r in runs for x in r["latency"]],
        "status": [x for r in runs for x in r["status"]],
        "bodies": [x for r in runs for x in r["bodies"]],
        "wall": sum(r["wall"] for r in runs),
        "cpu": sum(r["cpu"] for r in runs),
        "server_cpu": sum(r["server_cpu"] for r in runs),
        "load_avg_1m": max(r["load_avg_1m"] for r in runs),
        "timed_out": any(r["timed_out"] for r in runs),
        "rps_per_burst": [
            round(sum(200 <= c < 300 for c in r["status"]) / r["wall"], 1) for r in runs
        ],
        "p99_ms_per_burst": [_p99_ms(r) for r in runs],
    }


def _p99_ms(run: dict[str, Any]) -> float | None:
    status = np.array(run["status"])
    ms = np.array(run["latency"])[(status >= 200) & (status < 300)] * 1e3
    return round(float(np.percentile(ms, 99)), 3) if len(ms) else None


def summarize(run: dict[str, Any], bad_bodies: int) -> dict[str, Any]:
    status = np.array(run["status"])
    answered = status > 0
    ok = (status >= 200) & (status < 300)
    ms = np.array(run["latency"])[ok] * 1e3
    count = len(status)

    def pct(q: float) -> float | None:
        return round(float(np.percentile(ms, q)), 3) if len(ms) else None

    return {
        "requests": count,
        "ok": int(ok.sum()),
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "mean_ms": round(float(ms.mean()), 3) if len(ms) else None,
        "max_ms": round(float(ms.max()), 3) if len(ms) else None,
        "rps": round(int(ok.sum()) / run["wall"], 1),
        "rps_per_burst": run["rps_per_burst"],
        "p99_ms_per_burst": run["p99_ms_per_burst"],
        "seconds": round(run["wall"], 2),
        "errors": {
            "http": int((answered & ~ok).sum()),
            "exceptions": int((status == -1).sum()),
            "unfinished": int((status == 0).sum()),
            "bad_body": bad_bodies,
        },
        "server_cpu_us_per_request": round(run["server_cpu"] / max(answered.sum(), 1) * 1e6),
        "client_cpu_us_per_request": round(run["cpu"] / max(count, 1) * 1e6, 1),
        "load_avg_1m_max": round(run["load_avg_1m"], 2),
    }


# --- the project and what every server is asked -------------------------------------------------


def build_project(folder: Path, with_shadow: bool) -> tuple[Any, Path, Path]:
    """Flights with the gbt rung winning, tracked: v1 on the whole table, and, ``with_shadow``,
    v2 on every other row; versions an earlier run left in ``folder`` are reused. Ends with
    champion v1 and no challenger. Returns the project, its spec and v1's bundle."""
    from shipyard.demo import flights_frame
    from shipyard.project import Project

    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "shipyard.toml"
    have = 0
    if spec.exists():  # --workdir of an earlier run
        project = Project.load(spec)
        have = len(project.tracker().versions(project.spec.project.name))
    else:
        flights_frame().to_parquet(folder / "flights.parquet", index=False)
        Project.init(folder / "flights.parquet", "arr_delayed", spec)
        text = spec.read_text()
        listed = ", ".join(f'"{c}"' for c in EXCLUDE)
        for pattern, line in (
            (r"^exclude = \[.*\]$", f"exclude = [{listed}]"),
            (r"^min_improvement = .*$", "min_improvement = 0.0"),
        ):
            text, found = re.subn(pattern, line, text, count=1, flags=re.M)
            assert found == 1, f"shipyard.toml has no line matching {pattern!r}"
        spec.write_text(text)
    if have < 1:
        assert Project.load(spec).train().version == 1
    if with_shadow and have < 2:
        text = spec.read_text()
        flights_frame().iloc[::2].to_parquet(folder / "half.parquet", index=False)
        spec.write_text(text.replace('data = "flights.parquet"', 'data = "half.parquet"', 1))
        try:
            assert Project.load(spec).train().version == 2
        finally:
            spec.write_text(text)
    project = Project.load(spec)
    project.registry.path.unlink(missing_ok=True)  # the bench's own project: start over
    project.promote(1, "champion", force=True, reason="bench")
    return project, spec, project.workspace.bundle(1).path


@dataclass
class Inputs:
    """The same flights, in each server's request format, and the answers expected."""

    records: list[dict[str, Any]]  # raw records, as parsed from JSON
    expected: np.ndarray  # bundle.predict_one(record)
    raw: np.ndarray  # the booster's score of the prepared row: the minimal app's answer
    calibrated_max_diff: float  # |calibrator(raw) - expected|, the minimal app's gap
    records_json: list[bytes]  # shipyard: the record itself
    mlflow_json: list[bytes]  # {"dataframe_records": [record]}
    rows_json: list[bytes]  # {"row": [floats]}: the record prepared by the bundle's transform


def request_inputs(bundle: Any, n: int, notes: list[str]) -> Inputs:
    """``n`` real flights (a seeded sample) as JSON records of the bundle's features."""
    import pandas as pd

    from shipyard.demo import flights_frame

    features = bundle.features
    sample = flights_frame().sample(n, random_state=0)[features]
    plain_records = [{k: plain(v) for k, v in r.items()} for r in sample.to_dict("records")]
    records_json = [json.dumps(r, allow_nan=False).encode() for r in plain_records]
    records = [json.loads(body) for body in records_json]  # what a server receives
    expected = np.array([bundle.predict_one(r) for r in records], dtype=float)
    transform = bundle.model.transform_
    rows = np.array([transform.transform_one(r) for r in records], dtype=float)
    if not np.allclose(rows, transform.transform(pd.DataFrame(records)), equal_nan=True):
        notes.append("the transform's one-record and frame paths differ on these records")
    raw = bundle.model.booster_.predict(rows, num_threads=1)
    calibrated = raw
    if bundle.calibrator is not None:
        calibrated = bundle.calibrator.apply(raw)
        notes.append(
            f"the bundle keeps a '{bundle.calibrator.kind}' calibrator: the minimal app returns "
            "the raw booster score, compared with the bundle's after applying the calibrator"
        )
    return Inputs(
        records=records,
        expected=expected,
        raw=raw,
        calibrated_max_diff=float(np.max(np.abs(calibrated - expected))),
        records_json=records_json,
        mlflow_json=[json.dumps({"dataframe_records": [r]}).encode() for r in records],
        rows_json=[
            json.dumps({"row": [None if math.isnan(x) else x for x in row]}).encode()
            for row in rows.tolist()
        ],
    )


# --- measuring one server ----------------------------------------------------------------------


def shipyard_answer(document: dict[str, Any], champion: int) -> str | None:
    """What is wrong with a ``shipyard serve`` answer (None: nothing): every field there,
    and answered by the champion, shadow or not."""
    missing = {"prediction", "model_version", "arm", "request_id"} - set(document)
    if missing:
        return f"missing {sorted(missing)}"
    arm, version = document["arm"], document["model_version"]
    if str(version) != str(champion) or arm != "champion":
        return f"answered by arm {arm!r} v{version}, not the champion v{champion}"
    return None


def check_bodies(
    run: dict[str, Any],
    expected: np.ndarray,
    value: Callable[[Any], Any],
    valid: Callable[[Any], str | None] | None = None,
) -> tuple[int, float, str | None]:
    """Malformed 2xx bodies, the largest |prediction - expected|, and the first problem."""
    n = len(expected)
    bad, worst, first = 0, 0.0, None
    for i, (code, body) in enumerate(zip(run["status"], run["bodies"], strict=True)):
        if not 200 <= code < 300:
            if first is None and code != 0:
                first = f"HTTP {code}: {body[:300].decode(errors='replace')}"
            continue
        try:
            document = json.loads(body)
            got = float(value(document))
            problem = valid(document) if valid is not None else None
            if problem is None and not math.isfinite(got):
                problem = "the prediction is not a finite number"
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            got, problem = math.nan, f"unreadable body ({exc!r})"
        if problem is not None:
            bad += 1
            first = first or f"{problem}: {body[:300].decode(errors='replace')}"
            continue
        worst = max(worst, abs(got - expected[i % n]))
    return bad, worst, first


@dataclass
class Load:
    """How hard to push: timed requests and warm-up per concurrency level, time limit."""

    requests: int
    warmup: int
    limit_s: float


@dataclass
class Server:
    """One server to measure: how to start it, what to send it, what it should answer."""

    label: str
    command: list[str]
    port: int
    health: str  # GET path that answers 200 once the server is ready
    env: dict[str, str]
    path: str  # POST path of a prediction
    bodies: Sequence[bytes]  # JSON bodies, one per record
    plan: Load
    value: Callable[[Any], Any]  # the prediction in a parsed response
    expected: np.ndarray  # per record
    valid: Callable[[Any], str | None] | None = None  # what is wrong with a response
    optional: bool = False  # if it does not start, leave it out with a note
    after: tuple[str, ...] = ()  # GET paths whose answers are kept, read after the load


def _started(
    targets: list[Server], stack: contextlib.ExitStack, logs: Path, notes: list[str]
) -> dict[str, int]:
    """Start the targets (stopped when ``stack`` closes); their process group ids. An
    ``optional`` target that does not start is left out, with a note."""
    pids = {}
    for target in targets:
        log = logs / f"{target.label}.log"
        try:
            process = stack.enter_context(
                running(target.label, target.command, target.port, target.health, log, target.env)
            )
        except ServerFailed as exc:
            if not target.optional:
                raise
            notes.append(f"{target.label} was not measured: {exc}")
            continue
        pids[target.label] = process.pid
    return pids


def _outcome(target: Server, runs: dict[int, list[dict[str, Any]]]) -> tuple[dict, dict]:
    """One target's summary per level, and how far its predictions are from the expected."""
    levels, worst, first_problem, timed_out = {}, 0.0, None, []
    for concurrency, parts in runs.items():
        run = pooled(parts)
        bad, diff, problem = check_bodies(run, target.expected, target.value, target.valid)
        levels[f"c{concurrency}"] = summarize(run, bad)
        worst, first_problem = max(worst, diff), first_problem or problem
        if run["timed_out"]:
            timed_out.append(concurrency)
    result: dict[str, Any] = {"levels": levels}
    if first_problem:
        result["first_problem"] = first_problem
    if timed_out:
        result["hit_time_limit_at_concurrency"] = timed_out
    print(f"{target.label}: " + json.dumps(levels), file=sys.stderr, flush=True)
    return result, {"max_abs_diff_vs_bundle": worst, "equal": worst <= TOLERANCE}


def measure(
    targets: list[Server], logs: Path, bursts: int, notes: list[str], pause: float = PAUSE_S
) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Start every target; at each concurrency level, warm each up, then run ``bursts``
    rounds of one burst per target, the order rotating, so that what other processes do to
    the machine falls on all of them alike; stop them all. ``pause`` seconds pass before
    each burst: what the last burst left to do (a log flush, the shadow's copies) is done
    then, not during another server's burst. Per target that started: its summary, and how
    far its predictions are from the expected ones."""
    with contextlib.ExitStack() as stack:
        pids = _started(targets, stack, logs, notes)
        up = [t for t in targets if t.label in pids]
        encoded = {t.label: [request_bytes(t.port, t.path, b) for b in t.bodies] for t in up}
        runs: dict[str, dict[int, list[dict[str, Any]]]] = {t.label: {} for t in up}
        for concurrency in LEVELS:
            for t in up:
                burst(t.port, encoded[t.label], concurrency, t.plan.warmup, t.plan.limit_s)
                runs[t.label][concurrency] = []
            for round_ in range(bursts):
                for t in up[round_ % len(up) :] + up[: round_ % len(up)]:
                    time.sleep(pause)  # what the last burst left queued (a shadow) drains
                    count = max(1, t.plan.requests // bursts)
                    load_avg, cpu = os.getloadavg()[0], group_cpu(pids[t.label])
                    run = burst(
                        t.port, encoded[t.label], concurrency, count, t.plan.limit_s, round_ * count
                    )
                    run["server_cpu"] = group_cpu(pids[t.label]) - cpu
                    run["load_avg_1m"] = load_avg
                    runs[t.label][concurrency].append(run)
        time.sleep(pause)
        after = {t.label: {path: fetch(t.port, path) for path in t.after} for t in up}
    out = {t.label: _outcome(t, runs[t.label]) for t in up}
    for t in up:
        if after[t.label]:
            out[t.label][0]["after_load"] = after[t.label]
    return out


def set_log_flush(spec: Path, seconds: float) -> None:
    """Set ``[serving] log_flush_seconds`` of the bench's project (before the shadow's copy
    is made): the shadow scores the champion's logged rows a flush after they were
    answered, so a burst must span many flushes for the shadow's work to fall inside it."""
    text, found = re.subn(
        r"^log_flush_seconds = [^#\n]*",
        f"log_flush_seconds = {seconds!r} ",
        spec.read_text(),
        count=1,
        flags=re.M,
    )
    assert found == 1, f"{spec} has no log_flush_seconds line"
    spec.write_text(text)


def shadow_copy(project: Path, copy: Path) -> Path:
    """A copy of the project (its MLflow store, bundles and deployment state, not its
    prediction logs) with v2 promoted to shadow: a second server, shadow on, can then run
    beside the first, whose own state stays champion only. Returns the copy's spec."""
    from shipyard.project import Project

    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns("logs"))
    Project.load(copy / "shipyard.toml").promote(2, "shadow", force=True, reason="bench")
    return copy / "shipyard.toml"


# --- the servers --------------------------------------------------------------------------------


def stub_command(port: int) -> list[str]:
    return [sys.executable, "-c", STUB_SERVER, str(port)]


def minimal_command(app_dir: Path, port: int) -> list[str]:
    (app_dir / "minimal_app.py").write_text(MINIMAL_APP)
    return [
        *(sys.executable, "-m", "uvicorn", "minimal_app:app", "--app-dir", str(app_dir)),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
        *("--no-access-log", "--log-level", "warning"),
    ]


def mlflow_command(model: str, version: int, port: int) -> list[str]:
    return [
        *(sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{model}/{version}"),
        *("--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)),
    ]


def shipyard_command(spec: Path, port: int) -> list[str]:
    return [
        *(sys.executable, "-m", "shipyard", "serve", "--spec", str(spec)),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
    ]


# --- the report ---------------------------------------------------------------------------------


def report(
    results: dict[str, dict[str, Any]],
    predictions: dict[str, dict[str, Any]],
    calibrated_max_diff: float,
) -> dict[str, Any]:
    """Ratios, errors and targets from the per-server results."""

    def level(label: str, concurrency: int, key: str) -> float | None:
        return results.get(label, {}).get("levels", {}).get(f"c{concurrency}", {}).get(key)

    def ratio(a: tuple[str, int, str], b: tuple[str, int, str], digits: int = 3) -> float | None:
        x, y = level(*a), level(*b)
        return round(x / y, digits) if x is not None and y else None

    def paired(concurrency: int, subject: str = "shipyard_shadow") -> float | None:
        on = level(subject, concurrency, "p99_ms_per_burst") or []
        off = level("shipyard", concurrency, "p99_ms_per_burst") or []
        rounds = [a / b for a, b in zip(on, off, strict=False) if a is not None and b]
        return round(float(np.median(rounds)), 3) if rounds else None

    ratios = {
        "shipyard_p50_c1_vs_minimal": ratio(("shipyard", 1, "p50_ms"), ("minimal", 1, "p50_ms")),
        "shipyard_rps_c16_vs_minimal": ratio(("shipyard", 16, "rps"), ("minimal", 16, "rps")),
        "shipyard_rps_c16_vs_mlflow": ratio(("shipyard", 16, "rps"), ("mlflow", 16, "rps"), 1),
        "shadow_on_vs_off_p99_c1": ratio(
            ("shipyard_shadow", 1, "p99_ms"), ("shipyard", 1, "p99_ms")
        ),
        "shadow_on_vs_off_p99_c16": ratio(
            ("shipyard_shadow", 16, "p99_ms"), ("shipyard", 16, "p99_ms")
        ),
        # the same, as the median over rounds of one round's ratio (the two servers' bursts
        # of a round run back to back): less swayed by a noisy minute than the pooled p99
        "shadow_on_vs_off_p99_c1_median_of_rounds": paired(1),
        "shadow_on_vs_off_p99_c16_median_of_rounds": paired(16),
        # the noise floor: a second shadow-off server, identical to the first, measured the
        # same way (a ratio away from 1.0 here is this machine, not the shadow)
        "control_vs_off_p99_c1": ratio(
            ("shipyard_control", 1, "p99_ms"), ("shipyard", 1, "p99_ms")
        ),
        "control_vs_off_p99_c16": ratio(
            ("shipyard_control", 16, "p99_ms"), ("shipyard", 16, "p99_ms")
        ),
        "control_vs_off_p99_c1_median_of_rounds": paired(1, "shipyard_control"),
        "control_vs_off_p99_c16_median_of_rounds": paired(16, "shipyard_control"),
        "minimal_rps_c16_vs_mlflow": ratio(("minimal", 16, "rps"), ("mlflow", 16, "rps"), 1),
        "mlflow_p50_c1_vs_minimal": ratio(("mlflow", 1, "p50_ms"), ("minimal", 1, "p50_ms"), 1),
        "minimal_rps_c16_vs_client_ceiling": ratio(
            ("minimal", 16, "rps"), ("client_ceiling", 16, "rps")
        ),
    }
    servers = [label for label in results if label != "client_ceiling"]
    errors = {
        label: sum(sum(lv["errors"].values()) for lv in results[label]["levels"].values())
        for label in results
    }
    errors["total"] = sum(errors[label] for label in servers)
    equal = [predictions[label]["equal"] for label in servers if label != "minimal"]
    equal.append(calibrated_max_diff <= TOLERANCE)
    subject = "shipyard" in results and "shipyard_shadow" in results
    # the shadow really scored: its counter, by outcome, read from /metrics after the load
    metrics = results.get("shipyard_shadow", {}).get("after_load", {}).get("/metrics", {})
    shadow: dict[str, float] = {}
    for series, value in metrics.items():
        if series.startswith("shipyard_shadow_total"):
            outcome = re.search(r'outcome="([^"]*)"', series)
            key = outcome.group(1) if outcome else series
            shadow[key] = shadow.get(key, 0) + value

    def met(value: float | None, limit: float, at_most: bool) -> bool | None:
        if value is None:
            return None
        return value <= limit if at_most else value >= limit

    targets = {
        "shipyard p50@1 / minimal p50@1 <= 1.5": met(
            ratios["shipyard_p50_c1_vs_minimal"], TARGETS["p50_c1_vs_minimal"], True
        ),
        "shipyard rps@16 / minimal rps@16 >= 0.6": met(
            ratios["shipyard_rps_c16_vs_minimal"], TARGETS["rps_c16_vs_minimal"], False
        ),
        "shadow-on p99@1 / shadow-off p99@1 <= 1.10 (and the shadow scored)": (
            met(ratios["shadow_on_vs_off_p99_c1"], TARGETS["shadow_p99_c1"], True)
            and shadow.get("ok", 0) > 0
            if subject
            else None
        ),
        "zero errors on every server": errors["total"] == 0 if subject else None,
    }
    return {
        "ratios": ratios,
        "predictions": {
            **predictions,
            "minimal_calibrated_max_abs_diff_vs_bundle": calibrated_max_diff,
        },
        "predictions_equal_bundle": all(equal),
        "shadow_scored": shadow if subject else None,
        "errors": errors,
        "targets": targets,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32000, help="timed requests per level")
    parser.add_argument(
        "--mlflow-requests", type=int, default=300, help="timed requests per level, mlflow"
    )
    parser.add_argument("--warmup", type=int, default=200, help="warm-up requests per level")
    parser.add_argument("--records", type=int, default=2000, help="distinct flights to send")
    parser.add_argument(
        "--limit-seconds", type=float, default=90.0, help="time limit of one timed run"
    )
    parser.add_argument(
        "--bursts",
        type=int,
        default=4,
        help="rounds in which the minimal app and shipyard (shadow off, its control, on) take turns",
    )
    parser.add_argument(
        "--log-flush-seconds",
        type=float,
        default=1.0,
        help="the shipyard servers' [serving] log_flush_seconds: how often the shadow is "
        "handed its copies",
    )
    parser.add_argument(
        "--only-references", action="store_true", help="skip `shipyard serve` (the subject)"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep the project and server logs here, and reuse a project an earlier run left "
        "here (skips training); default: a temporary folder",
    )
    args = parser.parse_args()

    from shipyard.bundle import load_bundle

    started = time.perf_counter()
    notes: list[str] = []
    load_before = os.getloadavg()
    if load_before[0] > 1.0:
        notes.append(
            f"1-minute load average {load_before[0]:.2f} at the start: other processes are "
            "using the 2 cores the servers and the client share, so timings may be inflated"
        )
    # mlflow models serve starts `uvicorn` from PATH
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    plan = Load(args.requests, args.warmup, args.limit_seconds)
    results: dict[str, dict[str, Any]] = {}
    predictions: dict[str, dict[str, Any]] = {}

    with contextlib.ExitStack() as stack:
        folder = (
            args.workdir.resolve()
            if args.workdir
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="shipyard-bench-")))
        )
        project, spec, bundle_path = build_project(folder / "flights", not args.only_references)
        set_log_flush(spec, args.log_flush_seconds)
        pause = max(PAUSE_S, args.log_flush_seconds + 0.15)
        train_s = time.perf_counter() - started
        name = project.spec.project.name
        bundle = load_bundle(bundle_path)
        if bundle.manifest["family"] != "gbt":
            raise SystemExit(f"v1 is a '{bundle.manifest['family']}' model, not gbt")
        inputs = request_inputs(bundle, args.records, notes)
        logs = folder / "logs"
        logs.mkdir(exist_ok=True)

        def prediction(document: dict[str, Any]) -> Any:
            return document["prediction"]

        port = free_port()  # the client's own ceiling, against canned responses
        ceiling = Server(
            "client_ceiling",
            stub_command(port),
            port,
            "/health",
            env,
            "/predict",
            inputs.records_json,
            Load(max(args.requests, 10_000), args.warmup, args.limit_seconds),
            prediction,
            np.full(len(inputs.records), 0.5),
        )
        port = free_port()
        mlflow = Server(
            "mlflow",
            mlflow_command(name, 1, port),
            port,
            "/ping",
            {**env, "MLFLOW_TRACKING_URI": project.tracker().uri},
            "/invocations",
            inputs.mlflow_json,
            Load(args.mlflow_requests, min(args.warmup, 30), args.limit_seconds),
            lambda document: document["predictions"][0],
            inputs.expected,
        )
        port = free_port()
        together = [
            Server(
                "minimal",
                minimal_command(folder, port),
                port,
                "/health",
                {**env, "BENCH_MODEL_FILE": str(bundle_path / "model" / "model.lgb.txt")},
                "/predict",
                inputs.rows_json,
                plan,
                prediction,
                inputs.raw,
            )
        ]
        if args.only_references:
            notes.append("the subject (`shipyard serve`) was skipped: --only-references")
        else:  # shadow off: the project, twice (the second, a control: the noise floor);
            # shadow on: a copy of it with v2 promoted to shadow
            for label, project_spec in (
                ("shipyard", spec),
                ("shipyard_control", spec),
                ("shipyard_shadow", shadow_copy(spec.parent, folder / "flights-shadow")),
            ):
                port = free_port()
                together.append(
                    Server(
                        label,
                        shipyard_command(project_spec, port),
                        port,
                        "/health",
                        env,
                        "/predict",
                        inputs.records_json,
                        plan,
                        prediction,
                        inputs.expected,
                        lambda document: shipyard_answer(document, 1),
                        optional=True,
                        after=("/health", "/metrics"),
                    )
                )
        for group, bursts in (([ceiling], 1), ([mlflow], 1), (together, args.bursts)):
            for label, (result, agreement) in measure(group, logs, bursts, notes, pause).items():
                results[label], predictions[label] = result, agreement

    load_after = os.getloadavg()
    if load_after[0] > 1.0:
        notes.append(f"1-minute load average {load_after[0]:.2f} at the end")
    if "shipyard_shadow" not in results:
        notes.append("targets on the subject are null: `shipyard serve` was not measured")
    out = {
        "records": len(inputs.records),
        "features": bundle.features,
        "requests_per_level": {"default": args.requests, "mlflow": args.mlflow_requests},
        "warmup_per_level": {"default": args.warmup, "mlflow": min(args.warmup, 30)},
        "client": (
            "one thread per concurrent caller, each with a keep-alive HTTP/1.1 connection "
            "(blocking socket), requests encoded beforehand; latency = from writing the "
            "request to having the whole response"
        ),
        "servers": results,
        **report(results, predictions, inputs.calibrated_max_diff),
        "context": {
            "model": name,
            "champion": 1,
            "shadow": None if args.only_references else 2,
            "log_flush_seconds": args.log_flush_seconds,
            "pause_between_bursts_s": pause,
            "cpus": os.cpu_count(),
            "load_avg_1_5_15_before": [round(x, 2) for x in load_before],
            "load_avg_1_5_15_after": [round(x, 2) for x in load_after],
            "prepare_s": round(train_s, 1),
            "wall_s": round(time.perf_counter() - started, 1),
        },
        "notes": notes,
    }
    print(json.dumps(out, indent=2))
    results_folder = Path(__file__).parent / "results"
    results_folder.mkdir(exist_ok=True)
    (results_folder / "serve_latency.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
