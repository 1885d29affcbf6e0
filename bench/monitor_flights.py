"""End to end on NYC flights, as a user would run it: a champion trained on January–April
serves May–December through the real service, labels arrive a month late, and ``shipyard
monitor`` reads the log back per month.

1. ``init``-style spec on January–April (the columns ``check`` flags excluded, as in the
   README), ``train`` (tracked in MLflow, SQLite), ``promote 1 --to champion``;
2. ``shipyard serve`` on a free 127.0.0.1 port; May–December sent over HTTP in time order,
   --batch records per ``POST /predict`` (each record's own ``request_id`` kept);
3. labels with a delay: at the end of December, the flights more than --delay-days old have
   their outcome (``arr_delayed``), written as a CSV of ``request_id`` and the label and
   ingested with ``shipyard labels``;
4. ``shipyard monitor --report monitor.html --json`` with ``[monitoring] window = "1mo"``,
   ``clock = "event"`` (windows by the flight's own time) and ``max_metric_drop = 0.02``
   (an AUC drop of two points is what this user will not accept): per month, the delay rate served, the mean prediction and its drift against the
   test split's, the estimated AUC (CBPE, before labels) beside the realized one (once
   labelled), and the alerts.

Results go to ``bench/results/monitor_flights.json`` and a table is printed.

    .venv/bin/python bench/monitor_flights.py [--sample 3] [--batch 500] [--delay-days 30]
        [--workdir DIR]

``--sample k`` keeps every k-th flight (the default 3 sends ~75,000 of May–December's
~225,000), so a run takes a few minutes on two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

from shipyard.demo import FLIGHTS_RULE, flights_frame  # noqa: E402

#: what ``shipyard check`` flags on flights (README), kept out of the features
EXCLUDE = [
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def shipyard(folder: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-m", "shipyard", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        env=env,
    )
    if check and done.returncode != 0:
        raise SystemExit(f"shipyard {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done


def spec_text() -> str:
    exclude = ", ".join(f'"{c}"' for c in EXCLUDE)
    return f"""[project]
name = "flights"
task = "binary"
target = "arr_delayed"
data = "jan_apr.parquet"
positive = true
id = "tailnum"
time = "time_hour"

[features]
exclude = [{exclude}]
slices = ["origin"]

[baseline]
rule = "{FLIGHTS_RULE}"

[split]
purge_entities = false

[monitoring]
window = "1mo"
clock = "event"
max_metric_drop = 0.02
"""


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The request a client sends: the features, the entity id and the time (what ``check``
    excluded never leaves the client)."""
    out = frame.drop(columns=["arr_delayed", *EXCLUDE]).astype(object)
    out = out.where(out.notna(), None)
    return out.to_dict("records")


def _send(
    folder: Path, server: subprocess.Popen[bytes], url: str, rows: list[dict[str, Any]], batch: int
) -> tuple[list[str], float]:
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("shipyard serve did not start:\n" + (folder / "serve.log").read_text())
        time.sleep(0.3)
    ids: list[str] = []
    started = time.perf_counter()
    with httpx.Client(base_url=url, timeout=120) as client:
        for start in range(0, len(rows), batch):
            answer = client.post("/predict", json=rows[start : start + batch])
            if answer.status_code != 200:
                raise SystemExit(
                    f"POST /predict answered {answer.status_code}: {answer.text[:500]}"
                )
            ids.extend(p["request_id"] for p in answer.json()["predictions"])
    took = time.perf_counter() - started
    time.sleep(2.0)  # the log's last flush
    return ids, took


def serve_traffic(folder: Path, later: pd.DataFrame, batch: int) -> tuple[list[str], float]:
    """Every row of ``later`` through ``POST /predict`` in time order; the record ids."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with open(folder / "serve.log", "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "shipyard", "serve", "--port", str(port)],
            cwd=folder,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            ids, took = _send(folder, server, f"http://127.0.0.1:{port}", records(later), batch)
        finally:
            server.terminate()
            server.wait(timeout=30)
    return ids, took


def per_month(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The monitor's rows that tell the story, per month: the mean prediction and its PSI,
    the estimated (CBPE) and realized AUC with their intervals, the labeled share, the
    alerts (section/statistic)."""
    months: dict[str, dict[str, Any]] = {}
    for r in rows:
        m = months.setdefault(r["window_start"][:7], {"alerts": []})
        key = (r["section"], r["column"], r["statistic"])
        interval = [r["value"], r["lower"], r["upper"]]
        if key == ("prediction_drift", "score", "mean_prediction"):
            m["mean_prediction"] = r["value"]
        elif key == ("prediction_drift", "score", "psi"):
            m["psi"] = r["value"]
        elif key == ("estimated_performance", "", "roc_auc"):
            m["estimated"] = interval
        elif key == ("performance", "", "roc_auc"):
            m["realized"] = interval
        elif key == ("performance", "", "labeled_share"):
            m["labeled_share"] = r["value"]
        if r["level"] == "alert":
            m["alerts"].append(f"{r['section']}/{r['column'] or '-'}/{r['statistic']}")
    return dict(sorted(months.items()))


def _auc(month: dict[str, Any], key: str) -> str:
    v = month.get(key)
    return "" if v is None or v[1] is None else f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--delay-days", type=float, default=30.0)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "monitor_flights.json")
    args = parser.parse_args()
    folder = Path(args.workdir or tempfile.mkdtemp(prefix="shipyard-monitor-flights-"))
    folder.mkdir(parents=True, exist_ok=True)

    flights = flights_frame().dropna(subset=["arr_delay"])
    flights = flights.sort_values("time_hour", kind="stable").iloc[:: args.sample]
    early, later = flights[flights["month"] <= 4], flights[flights["month"] >= 5]
    early.to_parquet(folder / "jan_apr.parquet", index=False)
    (folder / "shipyard.toml").write_text(spec_text())
    print(f"[1/4] train on January–April ({len(early):,} flights) and promote", flush=True)
    trained = json.loads(shipyard(folder, "train", "--json").stdout)
    shipyard(folder, "promote", str(trained["version"]), "--to", "champion")

    print(f"[2/4] serve May–December ({len(later):,} flights) over HTTP", flush=True)
    ids, took = serve_traffic(folder, later, args.batch)

    print(f"[3/4] labels {args.delay_days:g} days late", flush=True)
    when = pd.to_datetime(later["time_hour"], utc=True)
    matured = (when.max() - when).dt.total_seconds() >= args.delay_days * 86_400
    labels = pd.DataFrame({"request_id": ids, "arr_delayed": later["arr_delayed"].to_numpy()})
    labels[matured.to_numpy()].to_csv(folder / "labels.csv", index=False)
    ingested = json.loads(shipyard(folder, "labels", "labels.csv", "--json").stdout)

    print("[4/4] monitor per month", flush=True)
    started = time.perf_counter()
    monitored = shipyard(
        folder,
        "monitor",
        "--until",
        "2014-01-01",
        "--report",
        "monitor.html",
        "--json",
        check=False,
    )
    monitor_seconds = time.perf_counter() - started
    if monitored.returncode not in (0, 1):
        raise SystemExit(f"monitor exited {monitored.returncode}:\n{monitored.stderr}")
    document = json.loads(monitored.stdout)

    truth = later.assign(month=later["time_hour"].str[:7])
    rates = truth.groupby("month")["arr_delayed"].mean()
    months = per_month(document["rows"])
    result = {
        "what": __doc__.splitlines()[0],
        "workdir": str(folder),
        "flights_served": len(later),
        "serve_seconds": round(took, 2),
        "records_per_second": round(len(later) / took, 1),
        "train": {k: trained.get(k) for k in ("version", "chosen", "test_metrics")},
        "train_delay_rate": round(float(early["arr_delayed"].mean()), 4),
        "delay_rate_by_month": {m: round(float(r), 4) for m, r in rates.items()},
        "labels": ingested,
        "monitor_exit_code": monitored.returncode,
        "monitor_seconds": round(monitor_seconds, 2),
        "months": months,
        "alerts": [
            {k: a.get(k) for k in ("level", "window_start", "section", "column", "statistic")}
            for a in document["alerts"]
        ],
        "monitor": {k: v for k, v in document.items() if k != "rows"},  # rows: the workspace
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "monitor"}, indent=2, default=str))
    print(
        f"{'month':8} {'delay':>6} {'mean p':>7} {'psi':>6} {'estimated AUC':>22} "
        f"{'realized AUC':>22} {'labeled':>8}"
    )
    for month, m in months.items():
        print(
            f"{month:8} {rates.get(month, float('nan')):6.3f} {m.get('mean_prediction', 0):7.3f} "
            f"{m.get('psi', 0):6.3f} {_auc(m, 'estimated'):>22} {_auc(m, 'realized'):>22} "
            f"{m.get('labeled_share', 0):8.2f}  {' '.join(m.get('alerts', []))}"
        )
    print(f"monitor exit code {monitored.returncode}; results in {args.out}")


if __name__ == "__main__":
    main()
