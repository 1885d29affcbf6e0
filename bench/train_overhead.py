"""Benchmark: `shipyard train`'s wall time beside the bare fits of the same model families.

On two real tables — telco churn (``modeldata::wa_churn``, 7,043 rows) and NYC flights
(336,776 rows) — each project is made as a user makes it (``init``, ``check``, the flagged
columns excluded), then, in fresh child processes, all in this one run:

- ``bare fits`` (the reference): read the same file; the same feature columns, a date-time
  one as the calendar parts shipyard's transform makes of it (those its train values span);
  a constant (the train mean), scikit-learn's one-hot + standardized logistic regression
  (ridge for regression) and LightGBM with the rung's parameters, early-stopped on the same
  blackbox dev rows; each scored once on dev. LightGBM gets the threads shipyard would pick
  at that moment (``shipyard.cores``), so the comparison is of the framework, not of thread
  counts;
- ``shipyard train``: the command a user runs (``shipyard train --json``) after ``check``
  (its report reused, as when a user runs ``check`` then ``train``): split, ladder,
  latency, calibration, slices, test, bundle, readiness, MLflow run and registered version;
- the same training as a library call, ``Project.train()`` in a script (``train_process_s``),
  which also records the seconds between its progress stages.

The fitting alone is compared too: train's ladder (``ladder_s``: every rung fitted and scored
on dev) against the bare script's two fits (``fits_s``).

Framework overhead = train / bare − 1 on whole processes (start-up, imports and exit
included: each side pays the imports its work needs), goal under 25% (issue 15): for the
command (``overhead_cli``) and for the library call (``overhead``). Both
children are also timed inside (``*_inside_s``), after the imports the bare script makes
(numpy, pandas, LightGBM, scikit-learn), which the train child makes too, so that figure
compares the work after them (MLflow's import is train's own: its tracking process,
started inside, makes it). The train child records the seconds between its progress
stages (``train_stages_s``).

Each figure is the median of --repeat runs; every train starts from a copy of the checked
project (no champion, an empty MLflow store).

    .venv/bin/python bench/train_overhead.py [--repeat 3] [--datasets churn flights]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BARE = """
import json, sys, time
import numpy as np, pandas as pd, lightgbm as lgb
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import mean_squared_error, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from shipyard.cores import LEDGER

plan = json.loads(open(sys.argv[2]).read())
rows = np.load(sys.argv[3])
start = time.perf_counter()
frame = pd.read_csv(sys.argv[1], low_memory=False)
y_all = frame[plan["target"]]
if plan["task"] == "regression":
    y = y_all.to_numpy(float)
else:
    y = (y_all.astype(str) == str(plan["positive"])).to_numpy(int)
X = frame[plan["features"]].copy()
categorical = [c for c, r in plan["roles"].items() if r in ("categorical", "boolean")]
numeric = [c for c, r in plan["roles"].items() if r == "numeric"]
pandas_name = {"weekday": "day_of_week"}
for c, parts in plan["calendar"].items():  # the calendar parts shipyard's transform makes
    stamps = pd.to_datetime(X.pop(c), utc=True, format="ISO8601", errors="coerce")
    for part in parts:
        X[f"{c}_{part}"] = getattr(stamps.dt, pandas_name.get(part, part)).astype(float)
        numeric.append(f"{c}_{part}")
for c in categorical:
    X[c] = X[c].astype("string").astype("category")
train, dev = rows["train"], rows["dev_blackbox"]
Xt, Xd, yt, yd = X.iloc[train], X.iloc[dev], y[train], y[dev]
constant = float(yt.mean())
linear = make_pipeline(
    ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(add_indicator=True), StandardScaler()), numeric),
        ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                              OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=10)),
         categorical),
    ]),
    Ridge() if plan["task"] == "regression" else LogisticRegression(max_iter=500, random_state=42),
)
Xt_lin = Xt.astype({c: object for c in categorical})
Xd_lin = Xd.astype({c: object for c in categorical})
fits_start = time.perf_counter()
linear.fit(Xt_lin, yt)
with LEDGER.threads("bare gbt") as threads:
    params = dict(num_leaves=31, learning_rate=0.05, min_child_samples=50, feature_fraction=0.9,
                  seed=42, deterministic=True, force_row_wise=True, num_threads=threads,
                  verbose=-1, objective="regression" if plan["task"] == "regression" else "binary")
    data = lgb.Dataset(Xt, yt, categorical_feature=categorical or "auto")
    valid = lgb.Dataset(Xd, yd, reference=data)
    seen = []
    booster = lgb.train(params, data, 1000, valid_sets=[valid],
                        callbacks=[lgb.early_stopping(50, verbose=False),
                                   lambda env: seen.append(env.iteration)])
fits = time.perf_counter() - fits_start
if plan["task"] == "regression":
    scores = [mean_squared_error(yd, linear.predict(Xd_lin)) ** 0.5,
              mean_squared_error(yd, booster.predict(Xd)) ** 0.5]
else:
    scores = [roc_auc_score(yd, linear.predict_proba(Xd_lin)[:, 1]),
              roc_auc_score(yd, booster.predict(Xd))]
wall = time.perf_counter() - start
print(json.dumps({"wall_s": wall, "fits_s": fits, "dev": scores, "rounds": len(seen),
                  "threads": threads, "constant": constant}))
"""

TRAIN = """
import json, sys, time
import lightgbm, sklearn.linear_model  # what the bare script imports before its clock
from shipyard.project import Project
stages, marks = {}, [("start", time.perf_counter())]

def progress(stage):
    now = time.perf_counter()
    stages[marks[-1][0]] = stages.get(marks[-1][0], 0.0) + now - marks[-1][1]
    marks.append((stage.rsplit(" ", 1)[0] if stage.startswith("rung ") else stage, now))

start = time.perf_counter()
result = Project.load(sys.argv[1]).train(progress=progress)
wall = time.perf_counter() - start
progress("end")
print(json.dumps({"wall_s": wall, "stages": stages, "fitting_s": result.seconds.get("fitting"),
                  "ladder_s": result.seconds.get("ladder"), "chosen": result.chosen,
                  "dev": result.dev.get(result.metric), "version": result.version,
                  "ladder": result.ladder}))
"""


def child(code: str, *args: str) -> dict:
    """Run ``code`` in a fresh interpreter; its JSON line, plus the whole process's wall
    time (start-up and imports included) as ``process_s``."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )
    process_s = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"child failed:\n{done.stderr[-3000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "process_s": process_s}


def make_project(name: str, folder: Path) -> tuple[Path, Path, Path]:
    """The project as a user makes it: init, check, exclude what check flagged; then the
    bare child's plan (same features, roles, target) and the split's rows."""
    import numpy as np

    from shipyard.demo import churn_frame, flights_frame
    from shipyard.project import Project

    frame, target = (
        (churn_frame(), "churn") if name == "churn" else (flights_frame(), "arr_delayed")
    )
    data = folder / f"{name}.csv"
    frame.to_csv(data, index=False)
    spec = folder / "shipyard.toml"
    Project.init(data, target, spec, force=True)
    report = Project.load(spec).check()
    text = spec.read_text()
    current = re.search(r"^exclude = \[(.*)\]$", text, re.M)
    already = [c.strip().strip('"') for c in current.group(1).split(",")] if current else []
    excluded = [c for c in dict.fromkeys([*already, *report.flagged]) if c]
    listed = ", ".join(f'"{c}"' for c in excluded)
    text = re.sub(r"^exclude = \[.*\]$", f"exclude = [{listed}]", text, count=1, flags=re.M)
    spec.write_text(text)
    project = Project.load(spec)
    check = project.check()  # the report `train` reuses
    if check.errors:
        raise SystemExit(f"{name}: check still finds errors: {[f.code for f in check.errors]}")
    from shipyard.data.split import make_splits
    from shipyard.data.values import to_datetime
    from shipyard.features.transform import calendar_parts

    ds = project.dataset()
    splits = make_splits(ds)
    plan = {
        "target": project.spec.project.target,
        "task": project.spec.project.task,
        "positive": ds.positive,
        "features": ds.candidates,
        "roles": {c: ds.role[c] for c in ds.candidates},
        # a date-time feature enters as the calendar parts its train values span
        "calendar": {
            c: calendar_parts(to_datetime(ds.frame[c].iloc[splits.train]))
            for c in ds.candidates
            if ds.role[c] == "datetime"
        },
    }
    plan_path = folder / "plan.json"
    plan_path.write_text(json.dumps(plan, default=str))
    rows_path = folder / "rows.npz"
    np.savez(rows_path, **splits.parts())
    return data, plan_path, rows_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--datasets", nargs="+", default=["churn", "flights"])
    args = parser.parse_args()

    result: dict = {}
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmp:
        # a machine's first new store runs MLflow's migrations and caches the result; every
        # timed train then copies it, as every new project after the first one does
        from shipyard.tracking import build_sqlite_store

        cache = build_sqlite_store(Path(tmp) / "warm" / "mlflow.db")
        for name in args.datasets:
            template = Path(tmp) / name
            template.mkdir()
            data, plan, rows = make_project(name, template)
            runs: dict[str, list[dict]] = {"bare fits": [], "shipyard train": [], "CLI": []}
            for i in range(args.repeat):
                runs["bare fits"].append(child(BARE, str(data), str(plan), str(rows)))
                copy = Path(tmp) / f"{name}-{i}"
                shutil.copytree(template, copy)
                runs["shipyard train"].append(child(TRAIN, str(copy / "shipyard.toml")))
                shutil.rmtree(copy)
                # the command, as a user runs it
                copy = Path(tmp) / f"{name}-{i}-cli"
                shutil.copytree(template, copy)
                start = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "shipyard", "train", "--json"],
                    cwd=copy,
                    capture_output=True,
                    check=True,
                )
                runs["CLI"].append({"wall_s": time.perf_counter() - start})
                shutil.rmtree(copy)

            def median(part: str, key: str, runs: dict[str, list[dict]] = runs) -> float:
                return round(statistics.median(r[key] for r in runs[part]), 3)

            bare, train = median("bare fits", "process_s"), median("shipyard train", "process_s")
            bare_in, train_in = median("bare fits", "wall_s"), median("shipyard train", "wall_s")
            bare_fits, ladder = median("bare fits", "fits_s"), median("shipyard train", "ladder_s")
            last = runs["shipyard train"][-1]
            stages = sorted({k for r in runs["shipyard train"] for k in r["stages"]})
            result[name] = {
                "bare_process_s": bare,
                "train_process_s": train,
                "overhead": round(train / bare - 1, 3),
                "bare_inside_s": bare_in,
                "train_inside_s": train_in,
                "overhead_inside": round(train_in / bare_in - 1, 3),
                "bare_fits_s": bare_fits,
                "train_ladder_s": ladder,
                "ladder_overhead": round(ladder / bare_fits - 1, 3),
                "train_cli_s": median("CLI", "wall_s"),
                "overhead_cli": round(median("CLI", "wall_s") / bare - 1, 3),
                "train_fitting_s": median("shipyard train", "fitting_s"),
                "train_stages_s": {
                    k: round(
                        statistics.median(r["stages"].get(k, 0.0) for r in runs["shipyard train"]),
                        3,
                    )
                    for k in stages
                },
                "bare_dev": runs["bare fits"][-1]["dev"],
                "bare_gbt_rounds": runs["bare fits"][-1]["rounds"],
                "bare_threads": [r["threads"] for r in runs["bare fits"]],
                "train_chosen": last["chosen"],
                "train_dev": last["dev"],
                "train_ladder": last["ladder"],
                "all": {
                    k: [{m: round(v, 3) for m, v in r.items() if m.endswith("_s")} for r in rs]
                    for k, rs in runs.items()
                },
            }
    result["context"] = {
        "repeat": args.repeat,
        "goal": (
            "overhead_cli = `shipyard train --json` process / bare process - 1 under 0.25 "
            "(overhead: the same for Project.train() in a script)"
        ),
        "note": (
            "medians; each run a fresh child process, train after check, every train on a "
            "fresh copy of the checked project (an empty MLflow store). *_process_s: the "
            "whole child, start-up, imports and exit included (the goal's measure: shipyard "
            "imports scikit-learn, LightGBM and MLflow lazily, the bare script at its top). "
            "*_inside_s: after the imports the bare script makes (numpy, pandas, LightGBM, "
            "scikit-learn), which the train child makes too; MLflow is imported by train's "
            "tracking process, started inside. train_stages_s: seconds from each progress "
            "stage to the next ('start' = reading the data and reusing the check; 'tracking "
            "set-up' = the wait for the tracking process to open the store; 'tracking' = "
            "the wait for it to log the run and register the model). The machine has 2 "
            "cores and is shared "
            "with other engineers' test runs: see load_average_at_end"
        ),
        "store_cache": f"the warm-up store was {cache}; each timed train's store was copied",
        "ladder_overhead": (
            "train's ladder (constant, linear, gbt fitted, each scored on dev) / the bare "
            "script's linear + gbt fits (fits_s), - 1: the fitting alone"
        ),
        "load_average_at_end": os.getloadavg(),
        "cores": len(os.sched_getaffinity(0)),
    }
    print(
        f"{'':10}{'bare s':>9}{'command s':>11}{'overhead':>10}{'train s':>9}{'overhead':>10}"
        f"{'bare in s':>11}{'train in s':>12}{'overhead':>10}{'bare fits s':>13}"
        f"{'ladder s':>10}{'overhead':>10}"
    )
    for name in args.datasets:
        r = result[name]
        print(
            f"{name:10}{r['bare_process_s']:>9.2f}{r['train_cli_s']:>11.2f}"
            f"{r['overhead_cli']:>+10.0%}{r['train_process_s']:>9.2f}{r['overhead']:>+10.0%}{r['bare_inside_s']:>11.2f}{r['train_inside_s']:>12.2f}"
            f"{r['overhead_inside']:>+10.0%}{r['bare_fits_s']:>13.2f}{r['train_ladder_s']:>10.2f}"
            f"{r['ladder_overhead']:>+10.0%}"
        )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "train_overhead.json").write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
