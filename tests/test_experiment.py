"""The online experiment's statistics on real outcomes: NYC flights delayed by more than 15
minutes (a proportion) and their arrival delay in minutes (a mean)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from shipyard.errors import DataError
from shipyard.monitoring.experiment import (
    analyze,
    confidence_sequence,
    fixed_horizon,
    mixture_ratio,
    msprt_p_values,
    required_per_arm,
    sample_ratio,
    summarize_arm,
)
from shipyard.serving.router import in_canary
from support import shipyard_cli


@pytest.fixture(scope="module")
def delayed(flights: pd.DataFrame) -> np.ndarray:
    """0/1 outcomes of every flight with a recorded arrival, in time order."""
    return flights.loc[flights["arr_delay"].notna(), "arr_delayed"].to_numpy(dtype=float)


@pytest.fixture(scope="module")
def minutes(flights_sample: pd.DataFrame) -> np.ndarray:
    return flights_sample["arr_delay"].dropna().to_numpy(dtype=float)


def _arms(values: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two arms of ``n`` flights each, assigned at random."""
    drawn = values[np.random.default_rng(seed).choice(values.size, 2 * n, replace=False)]
    return drawn[:n], drawn[n:]


def _planted(arm: np.ndarray, lift: float, seed: int) -> np.ndarray:
    """The arm with a random share of its 0s flipped to 1, raising its rate by ``lift``."""
    rate = arm.mean()
    flip = (arm == 0) & (np.random.default_rng(seed).random(arm.size) < lift / (1 - rate))
    return np.where(flip, 1.0, arm)


def test_z_test_matches_the_chi_square_of_the_two_by_two_table(delayed: np.ndarray) -> None:
    a, b = _arms(delayed, 3000, seed=1)
    b = _planted(b, 0.03, seed=2)
    control, treatment = (
        summarize_arm(a, "champion", "proportion"),
        summarize_arm(b, "canary", "proportion"),
    )
    result = fixed_horizon(control, treatment, "proportion", mde=0.02)
    table = [[a.sum(), a.size - a.sum()], [b.sum(), b.size - b.sum()]]
    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    assert result.statistic**2 == pytest.approx(chi2, rel=1e-9)
    assert result.p_value == pytest.approx(p, rel=1e-9)
    assert result.lift == pytest.approx(b.mean() - a.mean())
    se = np.sqrt(a.mean() * (1 - a.mean()) / a.size + b.mean() * (1 - b.mean()) / b.size)
    assert result.ci[1] - result.lift == pytest.approx(stats.norm.ppf(0.975) * se)
    assert result.relative_lift == pytest.approx(result.lift / a.mean())
    assert result.relative_ci is not None
    assert result.relative_ci[0] < result.relative_lift < result.relative_ci[1]


def test_welch_t_matches_scipy(minutes: np.ndarray) -> None:
    a, b = minutes[:4000], minutes[4000:9000]
    result = fixed_horizon(
        summarize_arm(a, "champion", "mean"), summarize_arm(b, "canary", "mean"), "mean", mde=2.0
    )
    reference = stats.ttest_ind(b, a, equal_var=False)
    interval = reference.confidence_interval(0.95)
    assert result.test == "Welch t"
    assert result.statistic == pytest.approx(reference.statistic, rel=1e-9)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert result.ci == pytest.approx((interval.low, interval.high), rel=1e-9)


def test_required_sample_size_gives_the_asked_power(delayed: np.ndarray) -> None:
    rate = delayed.mean()
    n = required_per_arm(rate * (1 - rate), (rate + 0.02) * (1 - rate - 0.02), 0.02, 0.05, 0.8)
    # at that size the test's power against the MDE is the 80% asked for
    se = np.sqrt((rate * (1 - rate) + (rate + 0.02) * (1 - rate - 0.02)) / n)
    assert stats.norm.cdf(0.02 / se - stats.norm.ppf(0.975)) == pytest.approx(0.8, abs=1e-3)
    a, b = _arms(delayed, n, seed=3)
    result = fixed_horizon(
        summarize_arm(a, "champion", "proportion"),
        summarize_arm(b, "canary", "proportion"),
        "proportion",
        mde=0.02,
    )
    assert result.power == pytest.approx(0.8, abs=0.02)
    assert result.required_per_arm == pytest.approx(n, rel=0.02)


def test_msprt_p_value_falls_as_evidence_grows(delayed: np.ndarray) -> None:
    a, b = _arms(delayed, 20_000, seed=4)
    b = _planted(b, 0.03, seed=5)
    points = np.arange(500, 20_001, 500)
    m0, m1 = np.cumsum(a)[points - 1] / points, np.cumsum(b)[points - 1] / points
    d, v = m1 - m0, (m0 * (1 - m0) + m1 * (1 - m1)) / points
    p = msprt_p_values(d, v, 0.02)
    assert (np.diff(p) <= 0).all()
    assert p[0] > 0.05 > p[-1]
    # the same variance, a larger difference: more evidence against no lift
    assert mixture_ratio(0.03, 1e-4, 0.02) > mixture_ratio(0.01, 1e-4, 0.02)
    # the confidence sequence excludes 0 exactly when the p-value reaches alpha
    lower, upper = confidence_sequence(d, v, 0.02, 0.05)
    assert ((lower > 0) | (upper < 0) == (p <= 0.05)).all()
    assert (np.diff(lower) >= 0).all() and (np.diff(upper) <= 0).all()


def test_always_valid_false_positive_rate_under_peeking(delayed: np.ndarray) -> None:
    experiments, n, every = 200, 2000, 100
    rng = np.random.default_rng(6)
    rows = np.stack(
        [delayed[rng.choice(delayed.size, 2 * n, replace=False)] for _ in range(experiments)]
    )
    points = np.arange(every, n + 1, every)
    m0 = np.cumsum(rows[:, :n], axis=1)[:, points - 1] / points
    m1 = np.cumsum(rows[:, n:], axis=1)[:, points - 1] / points
    d, v = m1 - m0, (m0 * (1 - m0) + m1 * (1 - m1)) / points
    always_valid = (msprt_p_values(d, v, 0.02)[:, -1] <= 0.05).mean()
    pooled = (m0 + m1) / 2
    naive = (
        (np.abs(d / np.sqrt(pooled * (1 - pooled) * 2 / points)) > stats.norm.ppf(0.975))
        .any(axis=1)
        .mean()
    )
    assert always_valid <= 0.08
    assert naive > 0.12  # twenty looks at a fixed-horizon test: far above its 5%


def test_analyze_holds_alpha_on_a_a_experiments(delayed: np.ndarray) -> None:
    verdicts = [analyze(*_arms(delayed, 2000, seed=100 + i), mde=0.02) for i in range(150)]
    significant = np.mean([v.sequential.p_value <= 0.05 for v in verdicts])
    assert significant <= 0.08
    assert {v.verdict for v in verdicts} <= {"keep running", "stop: futile", "launch", "stop: harm"}
    assert np.mean([v.verdict in ("launch", "stop: harm") for v in verdicts]) == significant
    # the peeks follow the arrivals: the canary's outcomes all arriving last gives fewer peeks
    a, b = _arms(delayed, 2000, seed=1)
    late = analyze(a, b, mde=0.02, arrivals=(np.arange(2000.0), 2000 + np.arange(2000.0)))
    assert late.sequential.peeks == 20  # from 2,100 observations on (100 in the canary)


def test_sample_ratio_mismatch_blocks_the_verdict(delayed: np.ndarray) -> None:
    a, b = _arms(delayed, 3000, seed=7)
    b = _planted(b, 0.1, seed=8)
    assert sample_ratio(6000, 4000).p_value < 1e-10
    assert not sample_ratio(6000, 4000, split=(0.6, 0.4)).blocked
    blocked = analyze(a, b[:2000], mde=0.02)
    assert blocked.srm.blocked
    assert blocked.verdict == "blocked: sample ratio mismatch"
    assert "not the configured 50%/50% split" in blocked.reason
    assert analyze(a, b[:2000], mde=0.02, split=(0.6, 0.4)).verdict == "launch"


def test_verdicts_on_planted_effects(delayed: np.ndarray) -> None:
    a, b = _arms(delayed, 20_000, seed=9)
    launch = analyze(a, _planted(b, 0.03, seed=10), mde=0.02)
    assert launch.verdict == "launch"
    assert launch.sequential.ci[0] > 0 and launch.sequential.p_value <= 0.05
    assert "always-valid" in launch.acting_on
    assert launch.sequential.peeks == 400  # every 100 of the 40,000 observations
    harm = analyze(_planted(a, 0.03, seed=11), b, mde=0.02)
    assert harm.verdict == "stop: harm"
    assert harm.sequential.ci[1] < 0
    futile = analyze(a, b, mde=0.05)
    assert futile.verdict == "stop: futile"
    assert futile.sequential.ci[0] <= 0 <= futile.sequential.ci[1] < 0.05
    early = analyze(a[:1000], b[:1000], mde=0.02)
    assert early.verdict == "keep running"
    assert early.samples_needed_per_arm == early.fixed.required_per_arm - 1000 > 5000
    document = early.to_dict()
    assert document["verdict"] == "keep running"
    assert document["control"]["n"] == 1000


def test_bad_input_is_refused_with_a_clear_message(
    delayed: np.ndarray, minutes: np.ndarray
) -> None:
    with pytest.raises(DataError, match="arm 'canary' has no outcomes"):
        analyze(delayed[:100], [], mde=0.02)
    with pytest.raises(
        DataError, match="every outcome is 0 in arm 'champion' and 0 in arm 'canary'"
    ):
        analyze(np.zeros(500), np.zeros(500), mde=0.02)
    with pytest.raises(DataError, match=r"0 or 1; arm 'champion' has \d+ others"):
        analyze(minutes[:500], delayed[:500], mde=0.02)
    with pytest.raises(DataError, match="missing or infinite outcomes"):
        analyze(np.r_[delayed[:100], np.nan], delayed[:100], mde=0.02)
    with pytest.raises(DataError, match="minimum detectable effect must be positive"):
        analyze(delayed[:100], delayed[100:200], mde=0)


@pytest.fixture(scope="module")
def served_flights(tmp_path_factory, flights_sample: pd.DataFrame):
    """A regression project whose log holds 8,000 flights routed 70/30 to champion and canary
    by entity, as the router does, and whose labels are their arrival delays; the canary's
    flights arrive 6 minutes earlier (a planted gain: a lower delay is the better one)."""
    from shipyard.monitoring.labels import ingest
    from shipyard.project import Project
    from shipyard.serving.log import PredictionLog
    from shipyard.serving.router import in_canary

    folder = tmp_path_factory.mktemp("served_flights")
    (folder / "shipyard.toml").write_text(
        '[project]\nname = "flights"\ntask = "regression"\ntarget = "arr_delay"\n'
        'data = "flights.csv"\nid = "flight_id"\n'
    )
    project = Project.load(folder / "shipyard.toml")
    rows = flights_sample[flights_sample["arr_delay"].notna()].head(8000)
    log = PredictionLog(project.workspace.logs)
    delays = []
    for i, delay in enumerate(rows["arr_delay"].to_numpy(dtype=float)):
        arm = "canary" if in_canary(f"e{i}", 30) else "champion"
        log.append(
            {
                "request_id": f"r{i}",
                "time": 1.7e9 + i,
                "entity_id": f"e{i}",
                "model_version": 2 if arm == "canary" else 1,
                "arm": arm,
                "features": {"distance": 100.0},
                "prediction": 5.0,
                "latency_ms": 1.0,
                "warnings": [],
                "error": None,
            }
        )
        delays.append(delay - 6 if arm == "canary" else delay)
    log.close()
    labels = folder / "labels.csv"
    pd.DataFrame({"request_id": [f"r{i}" for i in range(len(delays))], "arr_delay": delays}).to_csv(
        labels, index=False
    )
    ingest(labels, project.spec, project.workspace)
    return folder


def test_cli_verdict_from_the_log_joined_with_labels(served_flights: Path) -> None:
    run = shipyard_cli(
        served_flights, "experiment", "--percent", "30", "--mde", "3", "--lower-is-better", "--json"
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["verdict"] == "launch"
    assert result["kind"] == "mean" and result["fixed"]["test"] == "Welch t"
    assert result["control"]["n"] + result["treatment"]["n"] == 8000
    assert result["treatment"]["n"] == pytest.approx(2400, abs=150)
    assert result["fixed"]["lift"] == pytest.approx(-6, abs=3)
    assert result["sequential"]["ci"][1] < 0
    human = shipyard_cli(served_flights, "experiment", "--percent", "30", "--mde", "3")
    # higher is better by default: six minutes more delay avoided reads as harm (exit 1)
    assert human.returncode == 1 and "stop: harm" in human.stdout
    assert "always-valid" in human.stdout


def test_cli_refusals(served_flights: Path) -> None:
    srm = shipyard_cli(served_flights, "experiment", "--percent", "50", "--mde", "3", "--json")
    assert srm.returncode == 1
    assert "sample ratio mismatch" in srm.stdout
    for args, message in [
        (["--percent", "30", "--arms", "champion,shadow", "--mde", "3"], "arm 'shadow' has no"),
        (["--percent", "30", "--arms", "champion"], "two different arm names"),
        (["--percent", "30"], "--mde is needed for a mean of 'outcome'"),
        (["--mde", "3"], "no canary's traffic share is recorded"),
        (["--percent", "30", "--mde", "3", "--metric", "speed"], "--metric 'speed' is neither"),
    ]:
        run = shipyard_cli(served_flights, "experiment", *args)
        assert run.returncode == 2, (args, run.stdout, run.stderr)
        assert message in run.stderr
        assert "Traceback" not in run.stderr


def test_only_the_current_split_and_versions_count_and_squared_error_is_read_from_labels(
    served_flights: Path,
) -> None:
    from shipyard.monitoring.experiment import logged_outcomes
    from shipyard.project import Project
    from shipyard.registry import Deployment, canary_since

    project = Project.load(served_flights / "shipyard.toml")
    labels = pd.read_csv(served_flights / "labels.csv")["arr_delay"].to_numpy()
    arms = ("champion", "canary")
    half = pd.Timestamp(1.7e9 + 4000, unit="s", tz="UTC")  # the second half of the requests
    (first, second), _, _ = logged_outcomes(project.workspace, arms, "outcome", since=half)
    assert len(first) + len(second) == 4000
    (first, second), _, _ = logged_outcomes(
        project.workspace, arms, "squared_error", versions=(1, 2)
    )
    champion = np.array([not in_canary(f"e{i}", 30) for i in range(8000)])
    assert (len(first), len(second)) == (champion.sum(), (~champion).sum())
    assert np.allclose(np.sort(first), np.sort((5.0 - labels[champion]) ** 2))
    (first, second), _, _ = logged_outcomes(project.workspace, arms, "outcome", versions=(1, 3))
    assert (len(first), len(second)) == (champion.sum(), 0)  # no answer of a version 3

    def entry(time: str, before: dict, after: dict) -> dict:
        return {"time": time, "before": before, "after": after}

    shadow = {"champion": 1, "challenger": 2, "mode": "shadow", "percent": 0.0}
    five = {**shadow, "mode": "canary", "percent": 5.0}
    ten = {**five, "percent": 10.0}
    state = Deployment(
        "flights",
        champion=1,
        challenger=2,
        mode="canary",
        percent=10.0,
        history=(
            entry("2026-01-01T00:00:00+00:00", {}, shadow),
            entry("2026-01-02T00:00:00+00:00", shadow, five),
            entry("2026-01-03T00:00:00+00:00", five, ten),
        ),
    )
    assert canary_since(state, step=True) == pd.Timestamp("2026-01-03", tz="UTC")
    assert canary_since(Deployment("flights", champion=1), step=True) is None
