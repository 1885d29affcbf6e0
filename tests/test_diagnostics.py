"""Diagnostics at ``train``: the chosen rung's learning curve and its diagnosis, the sanity
fit on a tiny train sample (and its loud failure on a planted pipeline bug), and the
deployed champion scored on the same dev and test rows; on telco churn
(modeldata::wa_churn) and NYC flights (a 40,000-row sample)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rich.console import Console

from shipyard.bundle import load_bundle
from shipyard.cli import print_diagnostics, print_train
from shipyard.data.split import make_splits
from shipyard.evaluation.diagnostics import (
    MAX_ROWS,
    SANITY_ROWS,
    SANITY_SKILL,
    diagnose,
    sanity,
)
from shipyard.evaluation.metrics import all_metrics
from shipyard.models import Linear
from shipyard.project import Project
from support import FLIGHTS_FLAGGED, churn_project, flights_project


@pytest.fixture(scope="module")
def churn_twice(tmp_path_factory, churn):
    """Churn trained (tracked), its version promoted champion, then trained again."""
    folder = tmp_path_factory.mktemp("diag-churn")
    project = churn_project(folder, churn)
    first = project.train()
    project.promote(first.version, "champion", force=True, reason="test")
    second = Project.load(folder / "shipyard.toml").train()
    return project, first, second


def _flights(tmp_path, flights_sample, **split) -> Project:
    return flights_project(
        tmp_path,
        flights_sample,
        project={"id": "tailnum"},
        features={"exclude": [*FLIGHTS_FLAGGED, "air_time", "flight"]},
        split={"train": 0.8, "dev": 0.1, "test": 0.1, "purge_entities": False, **split},
        robustness={"rows": 300, "noise": [1.0]},
    )


def test_churn_learning_curve_shows_variance_more_data_helps(churn_twice):
    _, first, _ = churn_twice
    curve = first.diagnostics["learning_curve"]
    assert curve["metric"] == "roc_auc" == first.metric
    sizes = curve["sizes"]
    assert len(sizes) == 4 and sizes == sorted(set(sizes))
    # nested samples of the train rows not held out, the largest all of them
    assert sizes[-1] == curve["of_rows"] - curve["holdout_rows"]
    assert curve["holdout_rows"] == curve["of_rows"] // 5
    assert len(curve["train"]) == len(curve["dev"]) == len(curve["holdout"]) == 4
    # the refits fit their own rows better than dev, most at the smallest size
    assert all(t >= d for t, d in zip(curve["train"], curve["dev"], strict=True))
    assert curve["train"][0] - curve["dev"][0] > 0.05
    assert curve["dev"][-1] - curve["dev"][0] > curve["tolerance"]
    assert curve["kind"] == "variance"
    assert curve["diagnosis"].startswith("variance:") and "more data helps" in curve["diagnosis"]
    # the largest refit is the chosen rung's own fit on fewer rows: close to its dev score
    assert curve["dev"][-1] == pytest.approx(first.dev["roc_auc"], abs=0.03)


def test_churn_sanity_passes_on_the_real_rung(churn_twice):
    _, first, _ = churn_twice
    check = first.diagnostics["sanity"]
    assert check["rows"] == SANITY_ROWS and check["metric"] == "roc_auc"
    assert check["passed"] and check["value"] > 0.95 and check["constant"] == 0.5
    assert check["skill"] >= SANITY_SKILL
    assert f"the '{first.chosen}' family fits 200 train rows" in check["note"]


def _churn_rows(project: Project, bundle_path):
    ds = project.dataset()
    bundle = load_bundle(bundle_path)
    features = bundle.features
    return bundle, ds.frame[features], ds.target.y, {c: ds.role[c] for c in features}


def _misaligned(roles, seed: int):
    """A planted pipeline bug: the labels reach ``fit`` out of step with their rows."""

    def fit(model, frame, y, weights):
        shuffled = np.random.default_rng(seed).permutation(y)
        return model.fit(frame, shuffled, roles=roles, weights=weights)

    return fit


@pytest.mark.parametrize("family", ["chosen", "linear"])
def test_sanity_fails_loudly_when_labels_reach_fit_shuffled(churn_twice, family):
    project, first, _ = churn_twice
    bundle, frame, y, roles = _churn_rows(project, first.bundle)
    model = bundle.model if family == "chosen" else Linear(task="binary", seed=42)
    honest = sanity(model, (frame, y), roles=roles, metric="roc_auc", seed=3)
    assert honest["passed"] and honest["value"] > 0.85 and honest["skill"] > 0.7
    fit = _misaligned(roles, seed=5)
    broken = sanity(model, (frame, y), roles=roles, metric="roc_auc", seed=3, fit=fit)
    # fitted on shuffled labels, scored against the true ones: near chance, not memorized
    assert not broken["passed"]
    assert broken["skill"] < SANITY_SKILL and abs(broken["value"] - 0.5) < 0.2
    assert broken["note"].startswith("PIPELINE BUG?")
    assert "labels out of step" in broken["note"]
    console = Console(record=True, width=200)
    print_diagnostics({**first.diagnostics, "sanity": broken}, console)
    assert "SANITY CHECK FAILED: PIPELINE BUG?" in console.export_text()


def test_champion_is_a_baseline_on_the_same_dev_and_test_rows(churn_twice):
    project, first, second = churn_twice
    assert first.diagnostics["champion"] is None  # nothing deployed yet
    champion = second.diagnostics["champion"]
    assert champion["version"] == first.version
    # the same data and seed: the same test rows, and the champion's bundle scores them as
    # the first run did
    assert champion["test"] == pytest.approx(first.test[first.chosen])
    # dev and test through the champion's bundle (its calibrator, if kept, applied), on the
    # rows the second run's ladder was scored on
    ds = project.dataset()
    splits = make_splits(ds)
    bundle = load_bundle(first.bundle)
    for part, rows in (("dev", splits.dev_blackbox), ("test", splits.test)):
        frame = ds.frame.iloc[rows][bundle.features]
        expected = all_metrics("binary", ds.target.y[rows], bundle.predict(frame))
        assert champion[part] == pytest.approx(expected)
    assert champion["dev"]["roc_auc"] == pytest.approx(first.dev["roc_auc"], abs=0.01)
    console = Console(record=True, width=200)
    print_train(second, console)
    text = console.export_text()
    assert f"champion v{first.version} (deployed)" in text
    assert "learning curve (refits at" in text and "sanity: the" in text


def test_diagnostics_are_stored_tracked_and_timed(churn_twice):
    project, _, second = churn_twice
    stored = json.loads((second.bundle / "diagnostics.json").read_text())
    assert stored == json.loads(json.dumps(second.diagnostics))
    assert set(stored) == {"learning_curve", "sanity", "champion"}
    assert second.to_dict()["diagnostics"] == second.diagnostics
    assert second.seconds["diagnostics"] > 0
    tracker = project.tracker()
    artifacts = {a.path for a in tracker.client.list_artifacts(second.run_id)}
    assert "diagnostics.json" in artifacts
    metrics = tracker.get_run(second.run_id).metrics
    assert metrics["champion_test_roc_auc"] == pytest.approx(
        second.diagnostics["champion"]["test"]["roc_auc"]
    )


def test_flights_time_split_is_a_train_dev_mismatch(tmp_path, flights_sample):
    """Dev is later in time than train: train rows held out of every fit score clearly
    better than dev, so the diagnosis is a mismatch, not a shortage of data."""
    result = _flights(tmp_path, flights_sample).train(track=False)
    curve = result.diagnostics["learning_curve"]
    assert curve["sizes"] == [2_500, 5_000, 10_000, MAX_ROWS]  # capped at 20,000 rows
    assert curve["of_rows"] > MAX_ROWS + curve["holdout_rows"]
    shift = curve["holdout"][-1] - curve["dev"][-1]
    assert shift > 2 * curve["noise"] > 0 and shift > curve["tolerance"]
    assert curve["kind"] == "mismatch"
    assert "train/dev mismatch" in curve["diagnosis"]
    assert result.diagnostics["sanity"]["passed"]


def test_flights_random_split_is_no_mismatch(tmp_path, flights_sample):
    """The same flights split at random: held-out train rows and dev are alike, and dev
    improves with every doubling of the rows: variance, more data helps."""
    result = _flights(tmp_path, flights_sample, strategy="random").train(track=False)
    curve = result.diagnostics["learning_curve"]
    assert abs(curve["holdout"][-1] - curve["dev"][-1]) < 2 * curve["noise"]
    # at random, dev keeps improving with rows (time-split dev flattens at the shift)
    assert curve["kind"] == "variance"
    assert curve["dev"] == sorted(curve["dev"]) and curve["dev"][-1] - curve["dev"][0] > 0.05
    assert all(t > d for t, d in zip(curve["train"], curve["dev"], strict=True))
    assert result.diagnostics["sanity"]["passed"]


@pytest.mark.parametrize(
    ("train", "dev", "holdout", "kind"),
    [
        ([0.90, 0.86], [0.70, 0.75], [0.70, 0.75], "variance"),  # dev still improving
        ([0.71, 0.71], [0.70, 0.703], [0.70, 0.703], "bias"),  # met, flat
        ([0.95, 0.90], [0.80, 0.801], [0.80, 0.80], "ok"),  # gap, but dev flat
        ([0.95, 0.90], [0.70, 0.75], [0.80, 0.85], "mismatch"),  # unseen train ≫ dev
    ],
)
def test_diagnose_names_each_kind(train, dev, holdout, kind):
    curve = {"metric": "roc_auc", "sizes": [1000, 2000], "train": train, "dev": dev}
    found, sentence = diagnose({**curve, "holdout": holdout}, tolerance=0.005, noise=0.01)
    assert found == kind and sentence.split(":")[0] in (kind, "train/dev mismatch")
    # lower is better: the same curves mirrored keep their kind
    mirrored = {
        "metric": "log_loss",
        "sizes": [1000, 2000],
        "train": [1 - v for v in train],
        "dev": [1 - v for v in dev],
        "holdout": [1 - v for v in holdout],
    }
    assert diagnose(mirrored, tolerance=0.005, noise=0.01)[0] == kind


@pytest.mark.parametrize("metric", ["roc_auc", "pr_auc", "log_loss"])
def test_the_noise_is_the_standard_error_of_resampled_rows(churn, metric):
    """The learning curve's noise: the bootstrap standard error on dev, AUC's resamples
    counted as weights on one sort of the rows; the same value, to the last bit, as scoring
    each resample's rows (100 draws of the seed's generator) on churn's tenure as a score."""
    from shipyard.evaluation.diagnostics import BOOTSTRAP_DRAWS, _standard_error
    from shipyard.evaluation.metrics import score

    y = (churn["churn"] == "Yes").to_numpy().astype(int)
    tenure = churn["tenure"].to_numpy(dtype=float)
    s = 1 / (1 + np.exp((tenure - tenure.mean()) / tenure.std()))  # short tenure: churn
    rng = np.random.default_rng(11)
    values = []
    for _ in range(BOOTSTRAP_DRAWS):
        rows = rng.integers(0, len(y), len(y))
        values.append(score(metric, y[rows], s[rows]))
    assert _standard_error(metric, y, s, seed=11) == float(np.std(values)) > 0
