import numpy as np
import pandas as pd
import pytest

from shipyard.data.dataset import Dataset
from shipyard.data.leakage import leakage_findings
from support import codes, make_spec


@pytest.fixture(scope="module")
def flights_audit(flights_sample: pd.DataFrame):
    spec = make_spec("arr_delayed", project={"id": "tailnum", "time": "time_hour"})
    findings, flagged = leakage_findings(Dataset(flights_sample, spec))
    return codes(findings), flagged


def test_flights_arr_delay_is_target_derived(flights_audit):
    found, flagged = flights_audit
    (derived,) = found["target_derived"]
    assert derived.columns == ("arr_delay",) and derived.severity == "error"
    assert derived.evidence["value"] > 0.99 and derived.evidence["name_matches_target"]
    assert "arr_delay" in flagged


def test_flights_dep_delay_is_too_good(flights_audit):
    found, _ = flights_audit
    (too_good,) = [f for f in found["too_good"] if f.columns == ("dep_delay",)]
    assert 0.85 < too_good.evidence["value"] < 0.95
    assert too_good.evidence["power"] - too_good.evidence["next_best_power"] >= 0.25


def test_flights_arrival_times_together_determine_the_target(flights_audit):
    found, _ = flights_audit
    pairs = {f.columns: f for f in found["leaky_combination"]}
    arrival = pairs[("arr_time", "sched_arr_time")]
    assert arrival.severity == "error" and arrival.evidence["how"] == "difference"
    assert arrival.evidence["value"] > 0.98
    assert max(arrival.evidence["alone"].values()) < 0.5  # neither alone comes close


def test_flights_model_on_all_columns_names_the_columns_responsible(flights_audit):
    found, _ = flights_audit
    (model,) = found["model_too_good"]
    assert model.evidence["value"] > 0.99
    assert model.columns[0] == "arr_delay"
    assert (
        model.evidence["steps"][-1]["power_after"] < 0.9
    )  # elimination stopped when it was no longer too good


def test_flights_tailnum_repeats_and_row_order(flights_audit, flights_sample):
    found, _ = flights_audit
    (entity,) = found["entity_repeated"]
    assert entity.columns == ("tailnum",)
    assert entity.evidence["entities"] == flights_sample["tailnum"].nunique()
    assert entity.evidence["random_split_test_rows_with_entity_in_train"] > 0.8
    index_order = [f for f in found["row_order"] if f.columns == ("rownames",)]
    assert index_order and index_order[0].evidence["value"] > 0.55


def test_clean_churn_raises_no_leakage_finding(churn):
    spec = make_spec("churn", features={"exclude": ["rownames"]})
    findings, flagged = leakage_findings(Dataset(churn, spec))
    assert findings == [] and flagged == set()


def test_regression_target_derived_and_post_event_time():
    rng = np.random.default_rng(0)
    n = 3000
    start = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 300, n), unit="D"
    )
    price = rng.gamma(2.0, 50.0, n)
    frame = pd.DataFrame(
        {
            "ordered_at": start,
            "delivered_at": start + pd.to_timedelta(rng.integers(1, 10, n), unit="D"),
            "weight": rng.normal(size=n),
            "price_with_tax": price * 1.2,
            "price": price,
        }
    )
    spec = make_spec("price", task="regression", project={"time": "ordered_at"})
    found = codes(leakage_findings(Dataset(frame, spec))[0])
    assert found["target_derived"][0].columns == ("price_with_tax",)
    assert found["target_derived"][0].evidence["metric"] == "R²"
    assert found["post_event_time"][0].columns == ("delivered_at",)


def test_ids_duplicates_and_row_order_in_a_constructed_frame():
    rng = np.random.default_rng(1)
    n = 4000
    customer = rng.integers(0, 400, n)
    churny = rng.random(400) < 0.3  # each customer's label is mostly their own
    y = np.where(rng.random(n) < 0.9, churny[customer], ~churny[customer]).astype(int)
    frame = pd.DataFrame(
        {"customer_id": [f"C{c:04d}" for c in customer], "x": rng.normal(size=n), "y": y}
    )
    frame = frame.sort_values("y", kind="stable").reset_index(
        drop=True
    )  # the file is sorted by label
    frame = pd.concat([frame, frame.iloc[:200]], ignore_index=True)  # exact copies
    found = codes(leakage_findings(Dataset(frame, make_spec("y")))[0])
    assert found["possible_entity_key"][0].columns == ("customer_id",)
    assert found["predictive_id"][0].evidence["value"] > 0.8
    position = [f for f in found["row_order"] if not f.columns]
    assert position and position[0].severity == "warning" and position[0].evidence["value"] > 0.9
    dups = found["duplicates_across_split"][0]
    assert dups.evidence["rows"] == 400 and dups.evidence["groups"] == 200
    assert 0 < dups.evidence["groups_straddling_random_split"] < 200


def test_multiclass_audit_finds_a_derived_column(churn):
    frame = churn.drop(columns=["rownames"]).copy()
    frame["contract_code"] = frame["contract"].map(
        {"Month-to-month": 0, "One year": 1, "Two year": 2}
    )
    spec = make_spec("contract", task="multiclass")
    found = codes(leakage_findings(Dataset(frame, spec))[0])
    assert found["target_derived"][0].columns == ("contract_code",)


def test_numbers_stored_as_text_are_still_binned(churn):
    frame = churn.drop(columns=["rownames"]).copy()
    frame["churn_score"] = (
        np.where(frame["churn"] == "Yes", 0.9, 0.1) + np.arange(len(frame)) * 1e-6
    )
    frame["churn_score"] = frame["churn_score"].astype(str)
    frame.loc[17, "churn_score"] = "?"  # one stray string makes the whole column text
    found = codes(leakage_findings(Dataset(frame, make_spec("churn")))[0])
    assert found["target_derived"][0].columns == ("churn_score",)
