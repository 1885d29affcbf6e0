"""Helpers for tests: writing specs, grouping findings, a faulty challenger."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import shipyard
from shipyard.bundle import load_bundle
from shipyard.leftovers import Marker
from shipyard.project import Project
from shipyard.serving.router import Arm
from shipyard.spec import Spec

#: the environment for a child ``python -m shipyard``: this checkout's code, wherever it runs
CHILD_ENV = {**os.environ, "PYTHONPATH": str(Path(shipyard.__file__).resolve().parents[1])}


def shipyard_cli(
    folder: Path, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``shipyard ARGS`` in a child process in ``folder``, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "shipyard", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=CHILD_ENV,
    )


RULE = "tenure < 6 and contract == 'Month-to-month'"

# what `shipyard check` flags on flights (tests/test_demo.py), plus row number and constant year
FLIGHTS_FLAGGED = [
    "rownames",
    "year",
    "arr_delay",
    "arr_time",
    "dep_delay",
    "dep_time",
    "month",
    "sched_arr_time",
    "sched_dep_time",
]


FLIGHTS_PROJECT = {
    "name": "flights",
    "task": "binary",
    "target": "arr_delayed",
    "data": "flights.parquet",
    "positive": True,
    "time": "time_hour",
}


def flights_project(
    folder: Path, frame: pd.DataFrame, *, project: dict | None = None, extra: str = "", **sections
) -> Project:
    """NYC flights (arrival delayed by more than 15 minutes) as a project in ``folder``:
    ``project`` keys over :data:`FLIGHTS_PROJECT`, the other sections as given, ``extra``
    TOML appended (an array of tables, say)."""
    frame.to_parquet(folder / "flights.parquet", index=False)
    spec = {"project": {**FLIGHTS_PROJECT, **(project or {})}, **sections}
    (folder / "shipyard.toml").write_text(toml_text(spec) + extra)
    return Project.load(folder / "shipyard.toml")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def toml_text(sections: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, table in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
        lines.append("")
    text = "\n".join(lines)
    tomllib.loads(text)  # the helper itself must write valid TOML
    return text


def make_spec(target: str, task: str = "binary", **sections: dict[str, Any]) -> Spec:
    project = {"target": target, "task": task, **sections.pop("project", {})}
    return Spec.from_dict({"project": project, **sections})


def codes(findings) -> dict[str, list]:
    """Findings grouped by code: {code: [finding, ...]}."""
    out: dict[str, list] = {}
    for f in findings:
        out.setdefault(f.code, []).append(f)
    return out


def records_of(frame: pd.DataFrame) -> list[dict]:
    return [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
        for r in frame.to_dict("records")
    ]


def with_surprises(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Unseen categories, missing values and out-of-range numbers in a copy of the frame."""
    out = frame.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    for col in out.columns:
        rows = rng.choice(len(out), size=max(1, len(out) // 10), replace=False)
        if pd.api.types.is_numeric_dtype(out[col]) and not pd.api.types.is_bool_dtype(out[col]):
            out[col] = out[col].astype(float)
            out.loc[rows[: len(rows) // 2], col] = np.nan
            out.loc[rows[len(rows) // 2 :], col] = out[col].max() * 10
        else:
            out[col] = out[col].astype(object)
            out.loc[rows[: len(rows) // 2], col] = None
            out.loc[rows[len(rows) // 2 :], col] = "never-seen-before"
    return out


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(command: list[str], health_url: str, log_path, env=None, timeout: float = 120):
    """Start a server process, wait until ``health_url`` answers, stop it afterwards."""
    import subprocess
    import time
    import urllib.request

    import pytest

    with open(log_path, "w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = Path(log_path).read_text()[-3000:]
                    pytest.fail(f"{command[:4]} did not start: {tail}")
                try:
                    with urllib.request.urlopen(health_url, timeout=2):
                        break
                except OSError:
                    time.sleep(0.5)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def churn_project(folder: Path, churn: pd.DataFrame, **overrides) -> Project:
    """Telco churn as CSV with a rule baseline, slices and constraints; sections overridable."""
    folder.mkdir(parents=True, exist_ok=True)
    churn.to_csv(folder / "churn.csv", index=False)
    sections = {
        "project": {
            "name": "churn",
            "task": "binary",
            "target": "churn",
            "data": "churn.csv",
            "positive": "Yes",
        },
        "constraints": {"max_ece": 0.03, "p99_latency_ms": 50.0},
        "features": {"exclude": ["rownames"], "slices": ["contract", "senior_citizen"]},
        "baseline": {"rule": RULE},
        "split": {"strategy": "stratified"},
    }
    for key, value in overrides.items():
        sections.setdefault(key, {}).update(value)
    (folder / "shipyard.toml").write_text(toml_text(sections))
    return Project.load(folder / "shipyard.toml")


def churn_champion(folder: Path, churn: pd.DataFrame) -> tuple[Project, Any, int, pd.DataFrame]:
    """A churn champion trained on 1,500 customers (seed 11), its bundle and version, and the
    customers it never saw (its features only): live traffic for monitoring tests."""
    sample = churn.sample(1500, random_state=11)
    project = churn_project(folder, sample)
    result = project.train()
    project.promote(result.version, "champion", force=True, reason="test")
    bundle = load_bundle(result.bundle)
    live = churn.drop(sample.index).reset_index(drop=True)[bundle.features]
    return project, bundle, result.version, live


def served_churn(folder: Path, churn: pd.DataFrame, **overrides) -> Project:
    """:func:`churn_project` trained once (no tracking), its bundle champion as version 1."""
    from shipyard.registry import promoted

    project = churn_project(folder, churn, **overrides)
    rel = project.workspace.relative(project.train(track=False).bundle)
    project.registry.update(
        "promote", lambda s: promoted(s, 1, "champion", actor="test", bundle=rel)
    )
    return project


def churn_traffic(churn: pd.DataFrame) -> tuple[list[dict], dict[str, str]]:
    """Every churn customer as a record to serve (a missing value as None, the row number
    as the entity id ``rownames``), and each entity's label."""
    records = [
        {k: None if v != v else v for k, v in r.items()}  # NaN: a missing value
        for r in records_of(churn.drop(columns=["churn"]))
    ]
    labels = {str(r): y for r, y in zip(churn["rownames"], churn["churn"], strict=True)}
    return records, labels


def champion_alone(state):
    """The deployment with version 1 champion alone again: no challenger, nothing rolled
    back, no holdout (a served module's tests reuse its one bundle as version 2)."""
    import dataclasses

    return dataclasses.replace(
        state,
        champion=1,
        challenger=None,
        mode=None,
        percent=0.0,
        champions=(1,),
        rolled_back=(),
        holdout=None,
        holdout_percent=0.0,
        holdout_until=None,
    )


@contextmanager
def served_app(spec: Path, arm_loader=None):
    """The service of a project in this process, on a real uvicorn server on 127.0.0.1:
    yields an httpx client on it and the :class:`~shipyard.serving.service.Service`, and
    closes both after."""
    from shipyard.serving.app import build

    app, service = build(spec, arm_loader=arm_loader)
    try:
        with uvicorn_app(app) as (client, _):
            yield client, service
    finally:
        service.close()


class Faulty(Arm):
    """An in-memory challenger: raises, sleeps, or shifts the real bundle's output."""

    def __init__(self, version, bundle, fault):
        super().__init__(version, bundle)
        self.fault = fault

    def score(self, record):
        if self.fault == "raise":
            raise RuntimeError("challenger broken")
        if self.fault == "sleep":
            time.sleep(1.0)
        out = super().score(record)
        return min(1.0, out + 0.5) if self.fault == "shift" else out

    def score_many(self, records):
        return [self.score(record) for record in records]


def faulty_arm(fault, version, path):
    """Version 1 as it is; any other version a :class:`Faulty` with ``fault``. Warmed as
    the server's own loader does, so that no first call is slow (a canary's p99 would
    breach its guardrail on a cold start alone)."""
    bundle = load_bundle(path)
    bundle.model.warm()
    return Arm(version, bundle) if version == 1 else Faulty(version, bundle, fault)


def schemathesis_checks() -> list:
    """What the service promises: no 5xx, and every response (status, type, body) as
    documented."""
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

    return [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]


def schemathesis_failures(schema, paths=None, max_examples: int = 25) -> list[str]:
    """Run schemathesis's generated cases (bounded) on every operation of ``schema`` (or on
    ``paths``); the failures, one line each."""
    from hypothesis import HealthCheck, given, settings

    checks = schemathesis_checks()
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if paths is not None and operation.path not in paths:
            continue

        @settings(
            max_examples=max_examples,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @given(case=operation.as_strategy())
        def check(case):
            try:
                case.call_and_validate(checks=checks)
            except Exception as exc:
                failures.append(f"{case.method} {case.path}: {str(exc)[:300]}")

        check()
    return failures


@contextmanager
def uvicorn_app(app, **options):
    """A FastAPI app on a real uvicorn server on 127.0.0.1, in a thread of this process;
    yields an httpx client on it and its port, and stops the server after. ``options``:
    more of ``uvicorn.Config``'s keywords (e.g. ``serving.connection.server_options``)."""
    import threading

    import httpx
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client, port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def chromium() -> str:
    """Debian's Chromium; the report's browser tests never skip without it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, (
        "chromium is not installed, and the report's browser test needs it: "
        "apt-get install -y chromium (.ci/run installs it when it runs as root)"
    )
    return found


def browse(page: Path, profile: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on ``page`` with no network: every host unresolvable, a dead proxy."""
    command = [
        chromium(),
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=127.0.0.1:9",
        "--enable-logging=stderr",
        f"--user-data-dir={profile}",
        *options,
        page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


#: hosts Chromium itself calls (time, updates, accounts) whatever the page holds
BROWSER_HOSTS = ("google.com", "googleapis.com", "gstatic.com", "chromium.org")


def page_requests(netlog: Path) -> list[str]:
    """Every http(s) or ws URL a page asked for, from Chromium's ``--log-net-log`` file
    (Chromium's own calls to its services left out)."""
    from urllib.parse import urlsplit

    text = netlog.read_text(errors="replace")
    try:
        events = json.loads(text).get("events", [])
    except ValueError:  # a log cut short when the browser quit: read the URLs as text
        import re

        urls = re.findall(r'"url":"([^"]+)"', text)
    else:
        urls = [e["params"]["url"] for e in events if "url" in (e.get("params") or {})]
    wanted = [u for u in urls if u.split(":", 1)[0] in ("http", "https", "ws", "wss")]

    def browsers(url: str) -> bool:
        host = urlsplit(url).hostname or ""
        return any(host == h or host.endswith("." + h) for h in BROWSER_HOSTS)

    return sorted({u for u in wanted if not browsers(u)})


def wait_for_marker(folder: Path, process: subprocess.Popen[bytes], *, bundle: bool) -> Marker:
    """The training's marker, once it exists (with ``bundle``: once its bundle is on disk)."""
    markers = folder / ".shipyard" / "training"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, "the training ended before it could be observed"
        for path in markers.glob("*.json"):
            marker = Marker.read(path)
            if not bundle or (
                marker.run_id
                and marker.bundle
                and (folder / ".shipyard" / marker.bundle / "manifest.json").exists()
            ):
                return marker
        time.sleep(0.02)
    raise AssertionError("no training marker appeared")
