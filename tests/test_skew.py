"""Skew on telco churn: 2,000 customers' records written to a real prediction log (typed by
their learned contract), then an "offline pipeline" copy of the same rows with a fault planted
in one column is compared row by row; the fault is found on that column, with its computed
mismatch rate and size, and on no other. Keys by request id and by entity + time, and the
refusals."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from shipyard.data.contract import Contract
from shipyard.errors import DataError
from shipyard.monitoring.skew import Keys, compare_offline, skew_report
from shipyard.serving.log import PredictionLog, feature_types, read_log

N = 2000
START = dt.datetime(2024, 5, 1, 8, 0, tzinfo=dt.UTC)
SPEC = SimpleNamespace(project=SimpleNamespace(id="rownames", time=None))


@pytest.fixture(scope="module")
def served(churn, tmp_path_factory):
    """The first N customers answered one request each, 10 s apart; the log's folder."""
    folder = tmp_path_factory.mktemp("skew")
    frame = churn.head(N).reset_index(drop=True)
    features = [c for c in frame.columns if c not in ("rownames", "churn")]
    types = feature_types(Contract.learn(frame[features]), features)
    log = PredictionLog(folder / "logs", batch_rows=N)
    for i, record in enumerate(frame[features].to_dict("records")):
        log.append(
            {
                "request_id": f"r{i}",
                "time": (START + dt.timedelta(seconds=10 * i)).timestamp(),
                "entity_id": str(frame["rownames"][i]),
                "model_version": 1,
                "arm": "champion",
                "features": {k: (None if pd.isna(v) else v) for k, v in record.items()},
                "types": types,
                "prediction": 0.5,
                "latency_ms": 1.0,
                "warnings": [],
                "error": None,
            }
        )
    log.close()
    assert log.written == N
    return {"folder": folder, "logs": folder / "logs", "frame": frame, "features": features}


def by(rows, statistic):
    return {r["column"]: r for r in rows if r["statistic"] == statistic}


def test_a_planted_scale_change_is_found_on_its_column_alone(served, tmp_path):
    frame = served["frame"]
    offline = frame.drop(columns=["churn"]).assign(request_id=[f"r{i}" for i in range(N)])
    planted = np.random.default_rng(3).random(N) < 0.07
    offline.loc[planted, "monthly_charges"] *= 1.1
    offline.to_parquet(tmp_path / "offline.parquet", index=False)

    rows = skew_report(tmp_path / "offline.parquet", served["logs"], SPEC)
    rates = by(rows, "mismatch_rate")
    assert set(rates) == set(served["features"])
    hit = rates["monthly_charges"]
    assert hit["value"] == pytest.approx(planted.mean(), abs=0) and hit["level"] == "alert"
    assert 0.05 < hit["value"] < 0.09
    assert hit["lower"] < hit["value"] < hit["upper"]
    assert f"{planted.sum():,} of {N:,} matched rows differ" in hit["note"]
    first = np.flatnonzero(planted)[0]  # an example, by its keys: request id / entity id
    assert f"r{first}/{frame['rownames'][first]} (offline" in hit["note"]
    others = {c: r["value"] for c, r in rates.items() if c != "monthly_charges"}
    assert others == dict.fromkeys(others, 0.0)
    assert all(r["level"] == "ok" for c, r in rates.items() if c != "monthly_charges")
    # the size of the mismatch: 10% of the served value, 1/11 of the larger one
    values = frame["monthly_charges"][planted].to_numpy()
    assert by(rows, "max_abs_diff")["monthly_charges"]["value"] == pytest.approx(
        0.1 * values.max(), rel=1e-9
    )
    assert by(rows, "median_rel_diff")["monthly_charges"]["value"] == pytest.approx(
        0.1 / 1.1, rel=1e-9
    )
    assert by(rows, "median_abs_diff")["tenure"]["level"] == "empty"  # nothing differs there
    assert by(rows, "matched_rows")[""]["value"] == N
    assert by(rows, "unmatched_rate")[""]["value"] == 0.0
    assert {r["section"] for r in rows} == {"skew"}


def test_entity_and_time_join_finds_renamed_categories_and_nulls_and_counts_unmatched(
    served, tmp_path
):
    frame = served["frame"]
    offline = frame.drop(columns=["churn"]).copy()
    times = [START + dt.timedelta(seconds=10 * i + 5) for i in range(N)]  # 5 s after each request
    offline["time"] = [t.isoformat() for t in times]
    rng = np.random.default_rng(11)
    renamed = (rng.random(N) < 0.05) & (offline["contract"] == "Month-to-month").to_numpy()
    offline["contract"] = offline["contract"].astype(object)
    offline.loc[renamed, "contract"] = "month-to-month"
    nulled = rng.random(N) < 0.03
    offline["tenure"] = offline["tenure"].astype(float)
    offline.loc[nulled, "tenure"] = np.nan
    # past the 60 s tolerance: their request was 70 s earlier
    late = offline.iloc[:3].assign(
        time=[(t + dt.timedelta(seconds=65)).isoformat() for t in times[:3]]
    )
    stranger = offline.iloc[:1].assign(rownames=99_999)
    offline = pd.concat([offline, late, stranger], ignore_index=True)
    offline.to_csv(tmp_path / "offline.csv", index=False)

    rows = skew_report(tmp_path / "offline.csv", served["logs"], SPEC)
    rates = by(rows, "mismatch_rate")
    assert rates["contract"]["value"] == pytest.approx(renamed.sum() / N, abs=0)
    assert (
        rates["contract"]["level"] == "alert"
        and "(offline 'month-to-month', served 'Month-to-month')" in rates["contract"]["note"]
    )
    assert rates["tenure"]["value"] == pytest.approx(nulled.sum() / N, abs=0)
    assert by(rows, "null_mismatch_rate")["tenure"]["value"] == rates["tenure"]["value"]
    assert "(offline null, served" in rates["tenure"]["note"]
    assert by(rows, "median_abs_diff")["tenure"]["level"] == "empty"  # nulls have no size
    # CSV text read back, booleans and numbers stored as 0/1 included: nothing else differs
    clean = [c for c in served["features"] if c not in ("contract", "tenure")]
    assert {c: rates[c]["value"] for c in clean} == dict.fromkeys(clean, 0.0)
    unmatched = by(rows, "unmatched_rate")[""]
    assert unmatched["value"] == pytest.approx(4 / (N + 4)) and unmatched["level"] == "ok"
    assert "99999@" in unmatched["note"]
    assert by(rows, "matched_rows")[""]["value"] == N


def test_records_of_one_request_are_told_apart_by_the_entity_id(served):
    logged = read_log(served["logs"]).to_pandas()
    logged.loc[logged.index[:2], "request_id"] = "shared"  # two records of one request
    offline = served["frame"].head(2).drop(columns=["churn"]).assign(request_id="shared")
    offline.loc[1, "tenure"] += 1
    features, types = ["tenure"], {"tenure": "number"}
    alone = compare_offline(
        offline, logged, features=features, types=types, keys=Keys("request_id")
    )
    assert by(alone, "matched_rows")[""]["value"] == 0
    assert "2 matched more than one logged row" in by(alone, "unmatched_rate")[""]["note"]
    both = compare_offline(
        offline, logged, features=features, types=types, keys=Keys("request_id", "rownames")
    )
    assert by(both, "mismatch_rate")["tenure"]["value"] == 0.5


def test_bad_offline_files_are_refused_naming_what_is_wrong(served, tmp_path):
    frame = served["frame"].drop(columns=["churn"])
    cases = [
        (frame.drop(columns=["rownames"]), "needs a 'request_id' column, or 'rownames'"),
        (frame[["rownames"]].assign(time="2024-05-01", other=1), "shares no feature"),
        (frame.assign(time="2023-01-01T00:00:00Z"), "no row of"),
        (frame.assign(time=["soon"] + ["2024-05-01"] * (N - 1)), "column 'time'"),
        (frame.assign(request_id=[None] + ["r1"] * (N - 1)), "column 'request_id'"),
    ]
    for i, (offline, message) in enumerate(cases):
        path = tmp_path / f"offline{i}.csv"
        offline.to_csv(path, index=False)
        with pytest.raises(DataError, match=message.replace("(", r"\(")):
            skew_report(path, served["logs"], SPEC)
    with pytest.raises(DataError, match="no prediction log at"):
        skew_report(tmp_path / "offline2.csv", tmp_path / "missing", SPEC)
    with pytest.raises(DataError, match="has no column 'monthly'"):
        compare_offline(
            frame, frame, features=["monthly"], types={"monthly": "number"}, keys=Keys("rownames")
        )
