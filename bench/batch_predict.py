"""Benchmark: batch scoring throughput and peak memory of ``shipyard predict`` on NYC flights,
beside a raw LightGBM Booster on the already-prepared matrix; and the time of a rollback.

All in this one run:

- a gradient-boosted bundle is trained (untracked) on full flights with the post-departure
  columns excluded and ``min_improvement = 0`` so the ``gbt`` rung wins;
- the full table (336,776 rows) is written as Parquet, and a doubled copy (673,552 rows),
  both in row groups of --chunk-rows;
- ``shipyard predict`` (``shipyard.batch.predict``: read, contract check, transform, score,
  write, in a fresh process each) scores both files; reported are rows/s over the whole
  call and the process's peak RSS;
- the reference: ``Booster.predict(X)`` on the already-transformed NumPy matrix of the full
  table (LightGBM's default threads), in a fresh process: rows/s of that call alone;
- ``rollback``: two versions of a small (telco churn) project are registered and made
  champion in turn; ``Project.rollback()``'s commit time (the atomic state write: what a
  server polling the state sees), and the command line's wall time, with the moment the new
  state is on disk seen from outside (the rest is Python start-up and MLflow's alias mirror).

Targets: predict throughput ≥ 1.0× the raw Booster's; peak memory flat when the input
doubles (ratio ≈ 1); rollback under 1 s.

    .venv/bin/python bench/batch_predict.py [--chunk-rows 65536] [--repeat 3] [--engine local]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _memory import PEAK_MB

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
)

SCORE = """
import json, sys, time
from shipyard.batch import predict
start = time.perf_counter()
result = predict(sys.argv[1], sys.argv[2], sys.argv[3], version=1, engine=sys.argv[4],
                 chunk_rows=int(sys.argv[5]))
wall = time.perf_counter() - start
print(json.dumps({"rows": result.rows, "seconds": wall,
                  "peak_mb": peak_mb()}))
"""

BOOSTER = """
import json, sys, time
import lightgbm, numpy as np
X = np.load(sys.argv[2])
booster = lightgbm.Booster(model_file=sys.argv[1])
booster.predict(X[:1000])
start = time.perf_counter()
out = booster.predict(X)
wall = time.perf_counter() - start
print(json.dumps({"rows": len(X), "seconds": wall,
                  "peak_mb": peak_mb()}))
"""


def run(script: str, *args: str) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-c", PEAK_MB + script, *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def flights_bundle(folder: Path):
    """Full flights, the gbt rung trained untracked; returns the frame and the bundle path."""
    from shipyard.demo import flights_frame
    from shipyard.project import Project

    frame = flights_frame()
    folder.mkdir(parents=True)
    data = folder / "flights.parquet"
    frame.to_parquet(data, index=False)
    spec = folder / "shipyard.toml"
    Project.init(data, "arr_delayed", spec)
    text = spec.read_text()
    listed = ", ".join(f'"{c}"' for c in EXCLUDE)
    text = re.sub(r"^exclude = \[.*\]$", f"exclude = [{listed}]", text, count=1, flags=re.M)
    text = re.sub(r"^min_improvement = .*$", "min_improvement = 0.0", text, count=1, flags=re.M)
    spec.write_text(text)
    result = Project.load(spec).train(track=False)
    return frame, result.bundle, result.chosen


def rollback_times(folder: Path, repeat: int) -> dict[str, float]:
    """Register two churn versions, then roll back ``repeat`` times (re-promoting between)."""
    from shipyard.demo import churn_frame
    from shipyard.project import Project

    folder.mkdir(parents=True)
    churn_frame().to_csv(folder / "churn.csv", index=False)
    spec = folder / "shipyard.toml"
    Project.init(folder / "churn.csv", "churn", spec)
    project = Project.load(spec)
    first, second = project.train().version, Project.load(spec).train().version
    project.promote(first, "champion", force=True, reason="bench")
    api, cli_wall, cli_commit = [], [], []
    for i in range(repeat):
        project.promote(second, "champion", force=True, reason="bench")
        api.append(project.rollback(reason="bench", mirror="skip").committed_seconds)
        project.promote(second, "champion", force=True, reason="bench")
        state_file = project.registry.path
        before = state_file.stat().st_mtime_ns
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "shipyard", "rollback", "--spec", str(spec), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        seen = None
        while proc.poll() is None:
            if seen is None and state_file.stat().st_mtime_ns != before:
                seen = time.perf_counter() - start
            time.sleep(0.001)
        cli_wall.append(time.perf_counter() - start)
        cli_commit.append(seen if seen is not None else cli_wall[-1])
        assert project.registry.state().champion == first, f"rollback {i} did not restore"
    return {
        "api_commit_ms": statistics.median(api) * 1e3,
        "cli_until_committed_s": statistics.median(cli_commit),
        "cli_wall_s": statistics.median(cli_wall),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunk-rows", type=int, default=65_536)
    parser.add_argument("--repeat", type=int, default=3, help="passes per measurement (median)")
    parser.add_argument("--engine", default="local", choices=["local", "ray"])
    args = parser.parse_args()

    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from shipyard.bundle import load_bundle

    notes = []
    if os.getloadavg()[0] > 1.0:
        notes.append(f"load average {os.getloadavg()[0]:.2f} at the start: timings may be high")
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmp:
        folder = Path(tmp)
        frame, bundle_path, chosen = flights_bundle(folder / "train")
        if chosen != "gbt":
            notes.append(f"the chosen rung is '{chosen}', not gbt")
        bundle = load_bundle(bundle_path)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        inputs = {"full": folder / "full.parquet", "double": folder / "double.parquet"}
        pq.write_table(table, inputs["full"], row_group_size=args.chunk_rows)
        pq.write_table(
            pa.concat_tables([table, table]), inputs["double"], row_group_size=args.chunk_rows
        )
        X = bundle.model.transform_.transform(frame[bundle.features])
        np.save(folder / "X.npy", np.ascontiguousarray(X, dtype=np.float64))
        model_file = folder / "model.txt"
        bundle.model.booster_.save_model(str(model_file))

        shipyard_runs = {name: [] for name in inputs}
        booster_runs = []
        for _ in range(args.repeat):
            booster_runs.append(run(BOOSTER, str(model_file), str(folder / "X.npy")))
            for name, path in inputs.items():
                out = folder / f"out-{name}.parquet"
                shipyard_runs[name].append(
                    run(
                        SCORE,
                        str(bundle_path),
                        str(path),
                        str(out),
                        args.engine,
                        str(args.chunk_rows),
                    )
                )
        # the output is the bundle's own predictions, row for row
        got = pd.read_parquet(folder / "out-full.parquet")["prediction"].to_numpy()
        same = bool(np.array_equal(got, bundle.predict(frame[bundle.features])))
        rollback = rollback_times(folder / "rollback", args.repeat)

    def rate(runs):
        return statistics.median(r["rows"] / r["seconds"] for r in runs)

    booster_rate = rate(booster_runs)
    full_rate, double_rate = rate(shipyard_runs["full"]), rate(shipyard_runs["double"])
    peak = {n: statistics.median(r["peak_mb"] for r in runs) for n, runs in shipyard_runs.items()}
    report = {
        "rows": len(frame),
        "engine": args.engine,
        "chunk_rows": args.chunk_rows,
        "predict_rows_per_s": round(full_rate),
        "predict_rows_per_s_doubled": round(double_rate),
        "raw_booster_rows_per_s": round(booster_rate),
        "throughput_vs_booster": round(full_rate / booster_rate, 3),
        "predict_seconds": round(statistics.median(r["seconds"] for r in shipyard_runs["full"]), 3),
        "raw_booster_seconds": round(statistics.median(r["seconds"] for r in booster_runs), 3),
        "peak_mb_full": round(peak["full"]),
        "peak_mb_doubled": round(peak["double"]),
        "peak_ratio_doubled_vs_full": round(peak["double"] / peak["full"], 3),
        "raw_booster_peak_mb": round(statistics.median(r["peak_mb"] for r in booster_runs)),
        "predictions_equal_bundle_predict": same,
        "rollback": {k: round(v, 4) for k, v in rollback.items()},
        "targets": {
            "throughput_vs_booster >= 1.0": full_rate / booster_rate >= 1.0,
            "peak flat when doubled (ratio <= 1.1)": peak["double"] / peak["full"] <= 1.1,
            "rollback committed < 1 s (command line, from process start)": rollback[
                "cli_until_committed_s"
            ]
            < 1.0,
        },
        "notes": notes,
    }
    print(json.dumps(report, indent=2))
    folder = Path(__file__).parent / "results"
    folder.mkdir(exist_ok=True)
    (folder / "batch_predict.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
