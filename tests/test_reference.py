"""Reference statistics in the bundle: learned at train on real data, loaded back, used to
compare live traffic; format-1 bundles still load and say to retrain for drift."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from shipyard.bundle import FORMAT_VERSION, load_bundle, verify
from shipyard.errors import ReferenceMissing
from shipyard.monitoring import CategoricalReference, NumericReference, Reference
from support import churn_project


@pytest.fixture(scope="module")
def trained(tmp_path_factory, churn):
    sample = churn.sample(2500, random_state=5)
    project = churn_project(tmp_path_factory.mktemp("churn-ref"), sample)
    result = project.train()
    live = churn.drop(sample.index)  # customers the model never saw
    return project, result, live


def test_the_bundle_stores_reference_statistics_that_load_back(trained):
    _, result, _ = trained
    bundle = load_bundle(result.bundle)
    assert bundle.manifest["format_version"] == FORMAT_VERSION == 2
    ref = Reference.from_bundle(bundle)
    assert set(ref.features) | set(ref.skipped) == set(bundle.features)
    assert isinstance(ref.features["tenure"], NumericReference)
    assert isinstance(ref.features["contract"], CategoricalReference)
    assert ref.features["contract"].closed
    # the numbers are the train split's: its coarse counts are the contract's frequencies
    tenure, contract = ref.features["tenure"], bundle.contract.columns["tenure"]
    coarse = np.bincount(
        tenure.coarse_index(),
        weights=tenure.summary.counts,
        minlength=len(tenure.coarse_edges) + 1,
    )
    np.testing.assert_allclose(
        coarse / (tenure.summary.n + tenure.summary.nulls), contract.bin_freqs, atol=1e-12
    )
    assert (tenure.summary.min, tenure.summary.max) == (contract.min, contract.max)
    cats = ref.features["contract"]
    shares = cats.summary.counts[:-1] / (cats.summary.n + cats.summary.nulls)
    assert dict(zip(cats.categories, shares, strict=True)) == pytest.approx(
        bundle.contract.columns["contract"].categories, abs=1e-12
    )
    # predictions on test (and dev over the same bins), the test metrics and calibration
    assert list(ref.predictions) == ["score"] and list(ref.prediction_dev) == ["score"]
    assert ref.metrics["test"] == pytest.approx(result.test[result.chosen])
    assert ref.metrics["dev"] == pytest.approx(result.dev)
    assert ref.calibration and sum(b["count"] for b in ref.calibration) == (
        ref.predictions["score"].summary.n
    )
    assert ref.calibration == result.calibration["reliability_test"]  # JSON keeps floats exact
    assert ref.task == "binary" and ref.classes == bundle.classes
    # the document is JSON all the way down: written and read, it compares the same
    again = Reference.from_dict(json.loads(json.dumps(ref.to_dict())))
    assert again.to_dict() == ref.to_dict()


def test_live_customers_from_the_same_population_raise_no_alert(trained):
    _, result, live = trained
    bundle = load_bundle(result.bundle)
    ref = Reference.from_bundle(bundle)
    frame = live[bundle.features]
    features = ref.compare(ref.summarize(frame))
    assert len(features) == len(ref.features)
    assert [r.column for r in features if r.level != "ok"] == []
    (scores,) = ref.compare(ref.summarize_predictions(bundle.predict(frame)))
    assert scores.column == "score" and scores.level == "ok"
    assert scores.n_current == len(frame)
    assert scores.mean_current == pytest.approx(float(bundle.predict(frame).mean()))
    # the month-to-month customers alone are a different population: flagged on contract
    month = frame[frame["contract"] == "Month-to-month"]
    flagged = {r.column: r for r in ref.compare(ref.summarize(month))}
    assert flagged["contract"].level == "alert"
    (shifted,) = ref.compare(ref.summarize_predictions(bundle.predict(month)))
    assert shifted.level == "alert" and shifted.mean_current > scores.mean_current


def _as_format_1(path, folder):
    """The bundle as shipyard wrote it before reference statistics (format 1)."""
    old = folder / "old-bundle"
    shutil.copytree(path, old)
    (old / "reference.json").unlink()
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["format_version"] = 1
    del manifest["files"]["reference.json"]
    (old / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return old


def test_a_format_1_bundle_loads_and_says_to_retrain_for_drift(trained, tmp_path):
    _, result, live = trained
    old = _as_format_1(result.bundle, tmp_path)
    assert verify(old)["format_version"] == 1
    bundle = load_bundle(old)
    frame = live[bundle.features].head(200)
    np.testing.assert_array_equal(bundle.predict(frame), load_bundle(result.bundle).predict(frame))
    with pytest.raises(ReferenceMissing, match="retrain to enable drift on") as caught:
        Reference.from_bundle(bundle)
    assert "tenure" in str(caught.value) and "format version 1" in str(caught.value)


def test_a_reference_knows_what_it_does_not_cover(churn):
    frame = churn[["tenure", "contract"]].head(500)
    ref = Reference.learn(frame, {"tenure": "numeric", "contract": "id"})
    assert ref.skipped == {"contract": "role 'id' has no drift statistic"}
    with pytest.raises(ReferenceMissing, match="skipped at train"):
        ref.compare(ref.summarize(frame) | {"contract": ref.summarize(frame)["tenure"]})
    with pytest.raises(ReferenceMissing, match="retrain to enable prediction drift"):
        ref.summarize_predictions(np.zeros(3))


def test_multiclass_outputs_are_watched_per_class():
    rng = np.random.default_rng(0)
    test = rng.dirichlet([2, 3, 5], size=3000)
    dev = rng.dirichlet([2, 3, 5], size=2000)
    ref = Reference.learn(
        pd.DataFrame({"x": rng.normal(size=3000)}),
        {"x": "numeric"},
        task="multiclass",
        classes=["a", "b", "c"],
        test_output=test,
        dev_output=dev,
    )
    assert list(ref.predictions) == ["score[a]", "score[b]", "score[c]"]
    results = ref.compare(ref.summarize_predictions(dev))
    assert [r.level for r in results] == ["ok", "ok", "ok"]
    skewed = rng.dirichlet([5, 3, 2], size=2000)
    assert [r.level for r in ref.compare(ref.summarize_predictions(skewed))] == [
        "alert",
        "ok",
        "alert",
    ]
