"""Robustness at ``train``: perturbations, invariance of sensitive columns and directional
expectations, on telco churn (modeldata::wa_churn) and NYC flights, through the bundle's own
predict on sampled test rows; readiness items 10 and 11; bad ``[[expectations]]`` refused."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from shipyard.bundle import load_bundle
from shipyard.errors import SpecError
from shipyard.evaluation.metrics import score
from shipyard.evaluation.robustness import robustness, sample_rows, spreads
from shipyard.project import Project
from shipyard.spec import Expectation, RobustnessSection, Spec
from support import FLIGHTS_FLAGGED, churn_project, flights_project, shipyard_cli

CHURN_NUMERIC = ("tenure", "monthly_charges", "total_charges")


def items_of(result) -> dict[str, dict]:
    return {i["name"]: i for i in result.readiness["items"]}


@pytest.fixture(scope="module")
def churn_trained(tmp_path_factory, churn):
    """Churn with a planted wrong direction (churn falls with tenure, declared to rise),
    ``senior_citizen`` sensitive and a feature, ``female`` sensitive and excluded; tracked."""
    folder = tmp_path_factory.mktemp("robust-churn")
    project = churn_project(
        folder,
        churn,
        features={
            "exclude": ["rownames", "female"],
            "sensitive": ["senior_citizen", "female"],
        },
    )
    text = (folder / "shipyard.toml").read_text()
    text += '\n[[expectations]]\nfeature = "tenure"\ndirection = "increases"\n'
    (folder / "shipyard.toml").write_text(text)
    project = Project.load(folder / "shipyard.toml")
    return project, project.train()


def test_a_planted_directional_violation_is_found_and_fails_readiness(churn_trained):
    _, result = churn_trained
    (tenure,) = result.robustness["directional"]
    assert tenure["feature"] == "tenure" and tenure["direction"] == "increases"
    # churn falls with tenure: moving tenure up lowers the churn probability on most rows
    assert tenure["rows"] == result.robustness["rows"] > 1000
    assert tenure["violation_share"] > 0.3 > tenure["as_expected_share"]
    assert tenure["violations"] == round(tenure["violation_share"] * tenure["rows"])
    assert tenure["breach"]
    examples = tenure["examples"]
    assert len(examples) == 5
    drops = [e["prediction"] - e["moved_prediction"] for e in examples]
    assert drops == sorted(drops, reverse=True) and drops[-1] > tenure["tolerance"]
    item = items_of(result)["directions_hold"]
    assert item["number"] == 11 and not item["passed"]
    assert "directions violated: tenure increases" in item["summary"]
    assert item["evidence"]["tenure increases"]["violations"] == tenure["violations"]
    assert not result.readiness["passed"]


def test_a_sensitive_column_the_model_uses_is_reported_one_it_does_not_changes_nothing(
    churn_trained,
):
    _, result = churn_trained
    found = {e["column"]: e for e in result.robustness["invariance"]}
    senior, female = found["senior_citizen"], found["female"]
    assert senior["used_as_feature"] and senior["method"] == "swap"
    assert senior["changed_share"] > 0.1 and senior["max_abs_change"] > 0.05
    assert senior["p50_abs_change"] <= senior["p90_abs_change"] <= senior["p99_abs_change"]
    assert senior["breach"]
    # excluded: swapped in the frame the bundle is given, and every prediction is unchanged
    assert not female["used_as_feature"]
    assert female["changed_share"] == 0.0 and female["max_abs_change"] == 0.0
    assert not female["breach"]
    item = items_of(result)["invariance_holds"]
    assert item["number"] == 10 and not item["passed"]
    assert item["summary"].startswith("invariance breached by senior_citizen;")
    assert "'female' (swap, not a feature) changes 0.0% of rows" in item["summary"]


def test_the_tables_are_stored_printed_and_tracked(churn_trained):
    project, result = churn_trained
    stored = json.loads((result.bundle / "robustness.json").read_text())
    assert stored == json.loads(json.dumps(result.robustness))
    tracker = project.tracker()
    artifacts = {a.path for a in tracker.client.list_artifacts(result.run_id)}
    assert "robustness.json" in artifacts
    metrics = tracker.get_run(result.run_id).metrics
    senior = next(e for e in result.robustness["invariance"] if e["column"] == "senior_citizen")
    assert metrics["invariance_senior_citizen_changed_share"] == pytest.approx(
        senior["changed_share"]
    )
    assert metrics["direction_tenure_violation_share"] == pytest.approx(
        result.robustness["directional"][0]["violation_share"]
    )
    assert result.seconds["robustness"] > 0
    from rich.console import Console

    from shipyard.cli import print_robustness

    console = Console(record=True, width=200)
    print_robustness(result.robustness, console)
    text = console.export_text()
    assert "invariance of sensitive columns" in text and "senior_citizen" in text
    assert "female (not a feature)" in text and "violated" in text


def test_the_perturbation_table_on_churn(churn_trained):
    """Recomputed here from the bundle: the clean metric on the same sampled rows, every
    feature set missing, noise at each level, unseen and corrupted categories."""
    _, result = churn_trained
    robust = result.robustness
    bundle = load_bundle(result.bundle)
    table = {(p["feature"], p["perturbation"], p["level"]): p for p in robust["perturbation"]}
    for col in bundle.features:
        assert (col, "missing", None) in table
    for col in CHURN_NUMERIC:
        assert [table[(col, "noise", level)]["level"] for level in (0.1, 0.5, 1.0)] == [
            0.1,
            0.5,
            1.0,
        ]
    assert ("contract", "unseen", None) in table and ("contract", "corrupted", None) in table
    assert ("senior_citizen", "corrupted", None) in table  # a boolean, flipped
    # contract is churn's strongest column: giving every row another contract hurts most
    worst = robust["worst_perturbation"]
    assert (worst["feature"], worst["perturbation"]) == ("contract", "corrupted")
    assert worst["degradation"] > 0.1
    tenure = [table[("tenure", "noise", level)]["degradation"] for level in (0.1, 1.0)]
    assert tenure[0] < tenure[1]
    for p in robust["perturbation"]:
        assert p["change"] == pytest.approx(p["roc_auc"] - robust["clean"])
        assert p["degradation"] == pytest.approx(-p["change"])
    assert robust["seed"] == 42 and robust["settings"]["noise"] == [0.1, 0.5, 1.0]


def test_directions_computed_directly_on_the_trained_bundle(churn_trained, churn):
    """The true direction (churn decreases with tenure) against the planted one on the same
    rows: one's violations are exactly the other's rows moving as expected; every example
    is the bundle's prediction on that row, moved."""
    _, result = churn_trained
    bundle = load_bundle(result.bundle)
    frame = churn[bundle.features].reset_index(drop=True)
    y = (churn["churn"] == "Yes").to_numpy().astype(int)
    roles = {c: "numeric" if c in CHURN_NUMERIC else "categorical" for c in bundle.features}
    roles |= {c: "boolean" for c in bundle.features if churn[c].dtype.kind == "i"}
    roles["tenure"] = "numeric"
    spread = spreads(frame, roles)
    settings = RobustnessSection(rows=800, noise=(0.5,))
    out = robustness(
        bundle.predict,
        frame,
        y,
        features=bundle.features,
        roles=roles,
        spread=spread,
        metric="roc_auc",
        task="binary",
        sensitive=[],
        expectations=[
            Expectation("tenure", "decreases"),
            Expectation("monthly_charges", "increases"),
        ],
        settings=settings,
        seed=3,
    )
    picked = sample_rows(len(frame), 800, 3)
    assert out["rows"] == 800 and out["of_rows"] == len(frame)
    sample = frame.iloc[picked].reset_index(drop=True)
    clean = bundle.predict(sample)
    assert out["clean"] == pytest.approx(score("roc_auc", y[picked], clean))
    decreases = out["directional"][0]
    assert decreases["step"] == pytest.approx(0.5 * spread["tenure"])
    assert decreases["violation_share"] < 0.1 < decreases["as_expected_share"]
    planted = next(e for e in result.robustness["directional"] if e["direction"] == "increases")
    assert planted["violation_share"] > 3 * decreases["violation_share"]
    moved = sample.copy()
    moved["tenure"] = sample["tenure"] + 0.5 * spread["tenure"]
    change = bundle.predict(moved) - clean
    assert decreases["violations"] == int((change > settings.tolerance).sum())
    for example in out["directional"][1]["examples"]:
        row = frame.iloc[[example["row"]]].copy()
        assert example["value"] == row["monthly_charges"].iloc[0]
        assert bundle.predict(row)[0] == pytest.approx(example["prediction"], abs=1e-12)
        row["monthly_charges"] = example["moved_to"]
        assert bundle.predict(row)[0] == pytest.approx(example["moved_prediction"], abs=1e-12)
        assert example["moved_prediction"] < example["prediction"] - settings.tolerance


def test_flights_robustness_invariance_and_directions(tmp_path, flights_sample):
    """NYC flights (40,000 sampled): carrier is sensitive and a feature (reported), flight
    number sensitive and excluded (unchanged); delays grow through the day, so 'hour
    decreases' is a planted violation; the test split is sampled to 1,500 rows."""
    project = flights_project(
        tmp_path,
        flights_sample,
        project={"id": "tailnum"},
        features={
            "exclude": [*FLIGHTS_FLAGGED, "air_time", "flight"],
            "sensitive": ["carrier", "flight"],
        },
        split={"train": 0.8, "dev": 0.1, "test": 0.1, "purge_entities": False},
        robustness={"rows": 1500},
        extra='\n[[expectations]]\nfeature = "hour"\ndirection = "decreases"\n',
    )
    result = project.train(track=False)
    robust = result.robustness
    assert robust["rows"] == 1500 and robust["of_rows"] > 1500
    found = {e["column"]: e for e in robust["invariance"]}
    assert found["carrier"]["used_as_feature"] and found["carrier"]["changed_share"] > 0.1
    assert found["carrier"]["breach"]
    assert not found["flight"]["used_as_feature"] and found["flight"]["method"] == "resample"
    assert found["flight"]["max_abs_change"] == 0.0
    (hour,) = robust["directional"]
    assert hour["breach"] and hour["violation_share"] > hour["as_expected_share"]
    assert hour["violation_share"] > 0.2
    table = {(p["feature"], p["perturbation"], p["level"]) for p in robust["perturbation"]}
    assert {("origin", "unseen", None), ("hour", "noise", 1.0), ("distance", "missing", None)} <= (
        table
    )
    items = items_of(result)
    assert not items["invariance_holds"]["passed"] and not items["directions_hold"]["passed"]


def test_without_sensitive_columns_or_expectations_the_items_pass(tmp_path, churn):
    result = churn_project(tmp_path, churn, robustness={"rows": 300, "noise": [1.0]}).train(
        track=False
    )
    items = items_of(result)
    assert items["invariance_holds"]["passed"] and items["directions_hold"]["passed"]
    assert items["invariance_holds"]["summary"].startswith("no [features] sensitive columns")
    assert result.robustness["rows"] == 300 and result.robustness["invariance"] == []
    assert {p["level"] for p in result.robustness["perturbation"]} == {1.0, None}


# --- the spec and bad input ----------------------------------------------------------------


def test_expectations_load_round_trip_and_change_the_hash():
    raw = {
        "project": {"target": "churn", "task": "binary", "data": "churn.csv"},
        "expectations": [{"feature": "tenure", "direction": "decreases"}],
        "robustness": {"tolerance": 0.02, "noise": [0.2, 2]},
    }
    spec = Spec.from_dict(raw)
    assert spec.expectations == (Expectation("tenure", "decreases"),)
    assert spec.robustness.noise == (0.2, 2) and spec.robustness.max_changed_share == 0.01
    assert Spec.from_dict(spec.to_dict()) == spec
    plain = Spec.from_dict({"project": raw["project"]})
    assert "expectations" not in plain.to_dict() and plain.hash() != spec.hash()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            {"expectations": [{"feature": "tenure", "direction": "up"}]},
            "'expectations[0].direction' must be one of 'increases', 'decreases'; got 'up'",
        ),
        (
            {"expectations": [{"feature": "tenure", "direction": "increases", "step": 1}]},
            "unknown key 'expectations[0].step'",
        ),
        (
            {"expectations": [{"direction": "increases"}]},
            "missing required key 'expectations[0].feature'",
        ),
        (
            {"expectations": [{"feature": "churn", "direction": "increases"}]},
            "'expectations[0].feature' = 'churn' is the target, not a feature",
        ),
        (
            {
                "features": {"exclude": ["rownames"]},
                "expectations": [{"feature": "rownames", "direction": "increases"}],
            },
            "'expectations[0].feature' = 'rownames' is excluded in [features] exclude",
        ),
        (
            {
                "expectations": [
                    {"feature": "tenure", "direction": "increases"},
                    {"feature": "tenure", "direction": "decreases"},
                ]
            },
            "'expectations[1].feature' = 'tenure' is already expected in 'expectations[0]'",
        ),
        ({"expectations": {"feature": "tenure"}}, "'expectations' must be an array of tables"),
        ({"robustness": {"max_changed_share": 2}}, "'robustness.max_changed_share' must be"),
        ({"robustness": {"noise": []}}, "'robustness.noise' must be a non-empty list"),
    ],
)
def test_bad_expectations_and_settings_name_the_key(extra, expected):
    with pytest.raises(SpecError) as caught:
        Spec.from_dict({"project": {"target": "churn", "task": "binary"}, **extra})
    assert expected in str(caught.value)


@pytest.mark.parametrize(
    ("feature", "expected"),
    [
        ("tenur", "'expectations[0].feature' = 'tenur' is not a feature of this model"),
        ("contract", "'expectations[0].feature' = 'contract' is a categorical feature"),
    ],
)
def test_train_refuses_an_expectation_on_a_non_numeric_or_unknown_feature(
    tmp_path, churn, feature, expected
):
    churn_project(tmp_path, churn)
    text = (tmp_path / "shipyard.toml").read_text()
    text += f'\n[[expectations]]\nfeature = "{feature}"\ndirection = "increases"\n'
    (tmp_path / "shipyard.toml").write_text(text)
    done = shipyard_cli(tmp_path, "train")
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr and "Traceback" not in done.stderr
    written = sorted(p.relative_to(tmp_path) for p in (tmp_path / ".shipyard").rglob("*"))
    assert [p for p in written if (tmp_path / p).is_file()] == []  # no check report, no bundle


def test_the_sampled_rows_are_fixed_by_the_seed():
    a, b = sample_rows(10_000, 2000, 42), sample_rows(10_000, 2000, 42)
    assert np.array_equal(a, b) and len(np.unique(a)) == 2000 and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, sample_rows(10_000, 2000, 7))
    assert np.array_equal(sample_rows(50, 2000, 42), np.arange(50))


def test_swaps_give_every_row_another_value_and_keep_nulls_out(churn_trained, churn):
    """A sensitive column outside the model with nulls and three values, and a numeric one
    (tenure, resampled): the swap leaves no row on its own value, nothing reaches the model
    from the first, and a resample keeps the column's values."""
    from shipyard.evaluation.robustness import _other_values, _swapped

    _, result = churn_trained
    bundle = load_bundle(result.bundle)
    rng = np.random.default_rng(0)
    region = pd.Series(["north", "south", None, "east"] * 250, dtype=object)
    other = _other_values(region, rng)
    assert other.notna().all() and not (other[region.notna()] == region[region.notna()]).any()
    assert set(other) == {"north", "south", "east"}
    frame = churn[bundle.features].head(1000).copy()
    method, swapped = _swapped(frame, "tenure", "numeric", rng)
    assert method == "resample"
    assert sorted(swapped["tenure"]) == sorted(frame["tenure"])
    frame["region"] = region.to_numpy()
    y = (churn["churn"].head(1000) == "Yes").to_numpy().astype(int)
    roles = {"tenure": "numeric", "region": "categorical", "contract": "categorical"}
    out = robustness(
        bundle.predict,
        frame,
        y,
        features=bundle.features,
        roles=roles,
        spread={"tenure": float(frame["tenure"].std())},
        metric="roc_auc",
        task="binary",
        sensitive=["region", "tenure"],
        expectations=[],
        settings=RobustnessSection(rows=500, noise=(1.0,)),
        seed=1,
    )
    found = {e["column"]: e for e in out["invariance"]}
    assert found["region"]["method"] == "swap" and found["region"]["max_abs_change"] == 0.0
    assert found["tenure"]["method"] == "resample" and found["tenure"]["changed_share"] > 0.3
