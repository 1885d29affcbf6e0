import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shipyard.data.contract import Contract
from shipyard.errors import ContractViolation, DataError, NotFittedError


@pytest.fixture(scope="module")
def contract(churn: pd.DataFrame) -> Contract:
    return Contract.learn(churn, target="churn")


def test_learns_types_nulls_ranges_bins_and_categories(contract: Contract, churn: pd.DataFrame):
    total = contract.columns["total_charges"]
    assert total.role == "numeric"
    assert total.null_rate == pytest.approx(11 / len(churn))
    assert total.min == churn["total_charges"].min() and total.max == churn["total_charges"].max()
    assert len(total.bin_edges) >= 5
    assert sum(total.bin_freqs) == pytest.approx(1 - total.null_rate)
    contract_col = contract.columns["contract"]
    assert set(contract_col.categories) == set(churn["contract"].unique())
    assert sum(contract_col.categories.values()) == pytest.approx(1.0)
    assert contract.columns["tenure"].null_rate == 0
    assert contract.features == [c for c in churn.columns if c != "churn"]


def test_json_round_trip(contract: Contract, tmp_path: Path):
    contract.save(tmp_path / "contract.json")
    loaded = Contract.load(tmp_path / "contract.json")
    assert loaded.to_dict() == contract.to_dict()
    assert loaded.hash() == contract.hash()


def test_frame_validation_collects_every_violation(contract: Contract, churn: pd.DataFrame):
    bad = churn.drop(columns=["payment_method"]).copy()
    bad["tenure"] = bad["tenure"].astype(object)
    bad.loc[[17, 40, 41], "tenure"] = "forty"
    bad.loc[5, "monthly_charges"] = 10_000.0
    bad.loc[[1, 2], "contract"] = "Ten year"
    bad.loc[3, "female"] = np.nan
    found = {(v.column, v.reason): v for v in contract.validate(bad)}
    assert found["payment_method", "missing_column"].severity == "error"
    wrong = found["tenure", "wrong_type"]
    assert (wrong.severity, wrong.count, wrong.first_row, wrong.examples) == (
        "error",
        3,
        17,
        ("forty",),
    )
    assert "3 of 7,043 rows" in wrong.message
    assert found["monthly_charges", "out_of_range"].severity == "warning"
    unseen = found["contract", "unseen_category"]
    assert (unseen.count, unseen.examples) == (2, ("Ten year",))
    assert found["female", "unexpected_null"].severity == "warning"
    assert len(found) == 5
    with pytest.raises(ContractViolation) as info:
        contract.check(bad)
    assert {v.column for v in info.value.violations} == {"payment_method", "tenure"}


def test_clean_training_data_has_no_violations(contract: Contract, churn: pd.DataFrame):
    assert contract.validate(churn) == []


def test_record_validation(contract: Contract, churn: pd.DataFrame):
    record = churn.drop(columns=["churn"]).iloc[0].to_dict()
    record = {k: (v.item() if hasattr(v, "item") else v) for k, v in record.items()}
    assert contract.record_validator(contract.features)(record) == []
    broken = {**record, "tenure": "forty", "contract": "Ten year", "monthly_charges": -5.0}
    del broken["payment_method"]
    reasons = {
        (v.column, v.reason, v.severity)
        for v in contract.record_validator(contract.features)(broken)
    }
    assert reasons == {
        ("tenure", "wrong_type", "error"),
        ("contract", "unseen_category", "warning"),
        ("monthly_charges", "out_of_range", "warning"),
        ("payment_method", "missing_column", "error"),
    }
    extra = contract.record_validator(contract.features)({**record, "colour": "red"})
    assert [(v.column, v.reason) for v in extra] == [("colour", "unknown_field")]
    assert (
        contract.record_validator(contract.features)({**record, "total_charges": None}) == []
    )  # nullable column
    nulls = contract.record_validator(contract.features)({**record, "tenure": None})
    assert [(v.reason, v.severity) for v in nulls] == [("unexpected_null", "warning")]
    assert [
        v.reason for v in contract.record_validator(contract.features)({**record, "female": True})
    ] == []
    assert [
        v.reason for v in contract.record_validator(contract.features)({**record, "tenure": True})
    ] == ["wrong_type"]


def test_record_validation_needs_no_dataframe_and_is_fast(contract: Contract, churn: pd.DataFrame):
    records = [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
        for r in churn.drop(columns=["churn"]).head(500).to_dict("records")
    ]
    contract.record_validator(contract.features)(records[0])
    start = time.perf_counter()
    problems = sum(len(contract.record_validator(contract.features)(r)) for r in records)
    per_record = (time.perf_counter() - start) / len(records)
    assert problems == 0
    # not a performance assertion (see bench/): a sanity bound that catches a dataframe sneaking in
    assert per_record < 0.005


def test_unlearned_contract_and_unknown_format(tmp_path: Path):
    with pytest.raises(NotFittedError, match=r"Contract.learn"):
        Contract().validate(pd.DataFrame({"a": [1]}))
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"format_version": 99, "columns": []}))
    with pytest.raises(DataError, match="format version 99"):
        Contract.load(path)
