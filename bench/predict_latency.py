"""Benchmark: one-record prediction latency of a GBT bundle, beside a raw LightGBM booster
and the MLflow pyfunc model, and how much of ``train`` is spent outside model fitting.

All in this one run, on the NYC flights table (or a --rows sample of it):

- ``train``: ``Project.check()`` then ``Project.train()`` (which reuses that check, as a
  user running `shipyard check` then `shipyard train` does), with the post-departure columns
  excluded and
  ``min_improvement = 0.0``, so the gradient-boosted rung (``gbt``) is chosen; reported are
  the wall time and the share of it spent outside model fitting,
  ``1 - seconds["fitting"] / wall``, with the time between progress messages per stage;
- ``bundle.predict_one``: ``load_bundle(...).predict_one(record)`` on a plain dict — the
  serving path, feature transform included;
- ``raw booster``: ``bundle.model.booster_.predict(X[i:i+1], num_threads=1)`` on rows
  transformed beforehand — the floor: LightGBM alone, no transform;
- ``mlflow pyfunc``: ``mlflow.pyfunc.load_model(<the run's model>).predict(df)`` on
  one-row DataFrames built beforehand — what a stock MLflow serving path costs.

Latencies are p50 / p99 microseconds of single calls (``time.perf_counter_ns``) after a
warm-up, the median over --repeat passes; the three paths must give the same prediction.

Targets: train spends under 25% of its wall time outside model fitting;
``predict_one`` p50 at most 1.5x the raw booster's; pyfunc p50 at least 20x ``predict_one``'s.

    .venv/bin/python bench/predict_latency.py [--rows 50000] [--records 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
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
)
WARMUP = 100
TARGETS = {
    "outside_fitting_share": 0.25,
    "predict_one_vs_booster": 1.5,
    "pyfunc_vs_predict_one": 20,
}


def plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def latency_us(call: Callable[[Any], Any], inputs: Sequence[Any]) -> dict[str, float]:
    """p50 / p99 microseconds of ``call(x)`` for each input, after a warm-up (shipyard's own
    timing loop, the one ``train`` uses for the p99 constraint)."""
    from shipyard.evaluation.latency import one_record_latency

    ms = one_record_latency(call, inputs, warmup=WARMUP)
    return {"p50_us": ms["p50_ms"] * 1e3, "p99_us": ms["p99_ms"] * 1e3}


def prepare(folder: Path, rows: int | None):
    """Write flights (or a sample) and a spec on which the gbt rung wins; returns both."""
    from shipyard.demo import flights_frame
    from shipyard.project import Project

    frame = flights_frame()
    if rows is not None and rows < len(frame):
        frame = frame.sample(rows, random_state=0).sort_index()
    data = folder / "flights.csv"
    frame.to_csv(data, index=False)
    spec = folder / "shipyard.toml"
    Project.init(data, "arr_delayed", spec)
    text = spec.read_text()
    listed = ", ".join(f'"{c}"' for c in EXCLUDE)
    text, found = re.subn(r"^exclude = \[.*\]$", f"exclude = [{listed}]", text, count=1, flags=re.M)
    assert found == 1, "shipyard.toml has no `exclude = [...]` line"
    text, found = re.subn(
        r"^min_improvement = .*$", "min_improvement = 0.0", text, count=1, flags=re.M
    )
    assert found == 1, "shipyard.toml has no `min_improvement = ` line"
    spec.write_text(text)
    return frame, spec


def train(spec: Path) -> tuple[Any, Any, float, dict[str, float], float]:
    """`shipyard check`, then `shipyard train` (which reuses that check, as in the README's
    flow), each timed; for train also the time between progress messages."""
    from shipyard.project import Project

    project = Project.load(spec)
    check_start = time.perf_counter()
    project.check()
    check_wall = time.perf_counter() - check_start
    marks: list[tuple[str, float]] = [("tracker set-up", time.perf_counter())]
    start = marks[0][1]
    result = project.train(progress=lambda stage: marks.append((stage, time.perf_counter())))
    wall = time.perf_counter() - start
    marks.append(("end", start + wall))
    stages: dict[str, float] = {}
    for (name, t), (_, t_next) in itertools.pairwise(marks):
        stages[name] = stages.get(name, 0.0) + t_next - t
    return project, result, wall, stages, check_wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows",
        type=int,
        default=None,
        help="sample flights (default: all; at 20,000 rows linear wins, not gbt)",
    )
    parser.add_argument("--records", type=int, default=2000, help="records timed per path")
    parser.add_argument("--pyfunc-calls", type=int, default=300, help="records timed via pyfunc")
    parser.add_argument("--repeat", type=int, default=3, help="latency passes (median)")
    args = parser.parse_args()

    import mlflow
    import pandas as pd

    from shipyard.bundle import load_bundle

    notes: list[str] = []
    load_before = os.getloadavg()
    if load_before[0] > 1.0:
        notes.append(
            f"1-minute load average {load_before[0]:.2f} at the start: another process may be "
            "competing for the cores (LightGBM uses 2 threads), so timings may be inflated"
        )
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmp:
        frame, spec = prepare(Path(tmp), args.rows)
        project, result, wall, stages, check_wall = train(spec)
        fitting = result.seconds["fitting"]
        outside = 1 - fitting / wall
        outside_with_check = 1 - fitting / (wall + check_wall)
        if result.chosen != "gbt":
            notes.append(f"chosen rung is '{result.chosen}', not 'gbt'")

        bundle = load_bundle(result.bundle)
        features = bundle.features
        sample = frame.sample(min(args.records, len(frame)), random_state=0)[features]
        records = [{k: plain(v) for k, v in r.items()} for r in sample.to_dict("records")]
        one_row_frames = [pd.DataFrame([r]) for r in records[: args.pyfunc_calls]]

        booster = getattr(bundle.model, "booster_", None)
        if booster is not None:
            X = bundle.model.transform_.transform(pd.DataFrame(records, columns=features))
            rows = [X[i : i + 1] for i in range(len(X))]
        else:
            notes.append("the chosen model has no LightGBM booster: raw booster path skipped")

        uri = project.workspace.tracking_uri()
        mlflow.set_tracking_uri(uri)
        model_uri = project.tracker().model_uri(result.run_id)
        start = time.perf_counter()
        pyfunc = mlflow.pyfunc.load_model(model_uri)
        pyfunc_load_s = time.perf_counter() - start

        paths: dict[str, tuple[Callable[[Any], Any], Sequence[Any]]] = {
            "bundle.predict_one": (bundle.predict_one, records)
        }
        if booster is not None:
            paths["raw booster"] = (lambda x: booster.predict(x, num_threads=1), rows)
        paths["mlflow pyfunc"] = (pyfunc.predict, one_row_frames)
        passes: dict[str, list[dict[str, float]]] = {name: [] for name in paths}
        for _ in range(args.repeat):
            for name, (call, inputs) in paths.items():
                passes[name].append(latency_us(call, inputs))

        # the same prediction from every path (a kept calibrator applies to the booster's too)
        check = records[:20]
        one = np.array([bundle.predict_one(r) for r in check], dtype=float)
        via_pyfunc = np.array(
            [np.asarray(pyfunc.predict(pd.DataFrame([r]))).ravel()[0] for r in check], dtype=float
        )
        diffs = {"pyfunc vs predict_one": float(np.max(np.abs(via_pyfunc - one)))}
        if booster is not None:
            raw = np.array([booster.predict(rows[i], num_threads=1)[0] for i in range(len(check))])
            if bundle.calibrator is not None:
                raw = bundle.calibrator.apply(raw)
            diffs["booster vs predict_one"] = float(np.max(np.abs(raw - one)))
        max_diff = max(diffs.values())

    latency = {
        name: {
            "p50_us": round(statistics.median(p["p50_us"] for p in runs), 1),
            "p99_us": round(statistics.median(p["p99_us"] for p in runs), 1),
            "calls": len(paths[name][1]),
        }
        for name, runs in passes.items()
    }
    one_p50 = latency["bundle.predict_one"]["p50_us"]
    ratios = {
        "predict_one_vs_booster": (
            round(one_p50 / latency["raw booster"]["p50_us"], 2)
            if "raw booster" in latency
            else None
        ),
        "pyfunc_vs_predict_one": round(latency["mlflow pyfunc"]["p50_us"] / one_p50, 1),
    }
    out = {
        "train": {
            "rows": len(frame),
            "chosen": result.chosen,
            "wall_s": round(wall, 2),
            "fitting_s": round(fitting, 2),
            "ladder_s": round(result.seconds.get("ladder", math.nan), 2),
            "total_s_reported": round(result.seconds.get("total", math.nan), 2),
            "outside_fitting_share": round(outside, 3),
            "check_before_train_s": round(check_wall, 2),
            "outside_fitting_share_check_plus_train": round(outside_with_check, 3),
            "stages_s": {k: round(v, 2) for k, v in stages.items()},
            "ladder": result.ladder,
        },
        "latency": latency,
        "ratios": ratios,
        "max_abs_prediction_diff": diffs,
        "context": {
            "features": features,
            "booster_trees": booster.num_trees() if booster is not None else None,
            "pyfunc_load_s": round(pyfunc_load_s, 2),
            "repeat": args.repeat,
            "cpus": os.cpu_count(),
            "load_avg_1_5_15_before": [round(x, 2) for x in load_before],
            "load_avg_1_5_15_after": [round(x, 2) for x in os.getloadavg()],
            "warmup_calls": WARMUP,
            "targets": TARGETS,
            "notes": notes,
        },
    }

    print(f"train on {len(frame):,} rows: chosen '{result.chosen}', wall {wall:.1f} s")
    print(
        f"  fitting {fitting:.1f} s, outside fitting {outside:.0%} "
        f"(target < {TARGETS['outside_fitting_share']:.0%}); train reused the check run just "
        f"before it ({check_wall:.1f} s): check + train spend {outside_with_check:.0%} outside fitting"
    )
    for name, seconds in stages.items():
        print(f"    {name:32}{seconds:>8.2f} s")
    print(f"\n{'one record':24}{'p50 us':>10}{'p99 us':>10}{'calls':>8}")
    for name, row in latency.items():
        print(f"{name:24}{row['p50_us']:>10.1f}{row['p99_us']:>10.1f}{row['calls']:>8}")
    if ratios["predict_one_vs_booster"] is not None:
        print(
            f"predict_one / raw booster p50: x{ratios['predict_one_vs_booster']} "
            f"(target <= {TARGETS['predict_one_vs_booster']})"
        )
    print(
        f"pyfunc / predict_one p50: x{ratios['pyfunc_vs_predict_one']} "
        f"(target >= {TARGETS['pyfunc_vs_predict_one']})"
    )
    print(
        f"max abs prediction difference over {len(check)} records: {max_diff:.3g} "
        + ", ".join(f"({k}: {v:.3g})" for k, v in diffs.items())
    )
    for note in notes:
        print(f"NOTE: {note}")

    folder = Path(__file__).parent / "results"
    folder.mkdir(exist_ok=True)
    (folder / "predict_latency.json").write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
