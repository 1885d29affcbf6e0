"""The conformance suite every model family passes (see STYLE.md): adding a family means
passing these checks, not writing new ad-hoc tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shipyard.data.roles import profile
from shipyard.errors import NotFittedError
from shipyard.models import FAMILIES, class_weights
from support import records_of, with_surprises

RULES = {
    "binary": "tenure < 6 and contract == 'Month-to-month'",
    "multiclass": "tenure > 24",
    "regression": "internet_service == 'Fiber optic'",
}
TARGETS = {"binary": "churn", "multiclass": "contract", "regression": "monthly_charges"}


def _task_data(churn: pd.DataFrame, task: str):
    target = TARGETS[task]
    frame = churn.drop(columns=["rownames", target])
    if task == "regression":
        frame = frame.drop(columns=["total_charges"])  # total ≈ monthly × tenure: too easy
        y = churn[target].to_numpy(dtype=float)
        n_classes = 2
    else:
        codes, classes = pd.factorize(churn[target], sort=True)
        y = (churn[target] == "Yes").to_numpy(int) if task == "binary" else codes
        n_classes = 2 if task == "binary" else len(classes)
    roles = {c: p.role for c, p in profile(frame).items()}
    return frame, y, roles, n_classes


def _make(name: str, task: str, roles, n_classes):
    cls = FAMILIES[name]
    kwargs = {"task": task, "n_classes": n_classes, "seed": 0}
    if name == "rule":
        kwargs.update(rule=RULES[task], roles=roles)
    if name == "gbt":
        kwargs.update(n_estimators=60)
    return cls(**kwargs)


CASES = [(name, task) for name in FAMILIES for task in TARGETS]


@pytest.fixture(scope="module", params=CASES, ids=[f"{n}-{t}" for n, t in CASES])
def fitted(request, churn):
    name, task = request.param
    frame, y, roles, n_classes = _task_data(churn, task)
    train, dev, test = frame.iloc[:4500], frame.iloc[4500:5500], frame.iloc[5500:]
    model = _make(name, task, roles, n_classes)
    model.fit(
        train, y[:4500], roles=roles, weights=class_weights(y[:4500], task), dev=(dev, y[4500:5500])
    )
    return model, test.reset_index(drop=True), y[5500:], task, n_classes


def test_output_shape_and_dtype_are_as_declared(fitted):
    model, test, _, task, n_classes = fitted
    out = model.predict(test)
    assert out.dtype == np.float64
    if task == "multiclass":
        assert out.shape == (len(test), n_classes)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-9)
    else:
        assert out.shape == (len(test),)
    if task == "binary":
        assert ((out >= 0) & (out <= 1)).all()


def test_one_record_path_equals_frame_path(fitted):
    model, test, _, _, _ = fitted
    frame_out = model.predict(test)
    one = np.array([model.predict_one(r) for r in records_of(test)])
    np.testing.assert_allclose(one, frame_out, rtol=0, atol=1e-9)


def test_records_path_equals_one_record_path_exactly(fitted):
    model, test, _, _, _ = fitted
    records = records_of(with_surprises(test.head(200), seed=7))
    one = np.array([model.predict_one(r) for r in records])
    np.testing.assert_array_equal(model.predict_records(records), one)
    np.testing.assert_array_equal(model.predict_records(records[:1]), one[:1])
    # many records: a family may switch to its matrix scorer, which equals the frame path
    np.testing.assert_allclose(
        model.predict_records(records_of(test)), model.predict(test), rtol=0, atol=1e-9
    )


def test_save_load_round_trip_gives_identical_predictions(fitted, tmp_path: Path):
    model, test, _, _, _ = fitted
    files = model.save(tmp_path)
    assert set(files) == set(type(model).files)
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".pkl", ".pickle", ".joblib")]
    loaded = type(model).load(tmp_path)
    np.testing.assert_array_equal(loaded.predict(test), model.predict(test))


def test_unknown_categories_and_missing_values_never_raise(fitted):
    model, test, _, _, _ = fitted
    odd = with_surprises(test.head(300), seed=5)
    frame_out = model.predict(odd)
    assert np.isfinite(frame_out).all()
    one = np.array([model.predict_one(r) for r in records_of(odd)])
    np.testing.assert_allclose(one, frame_out, rtol=0, atol=1e-9)
    assert np.isfinite(np.asarray(model.predict_one({}), dtype=float)).all()  # every field missing


def test_predict_never_mutates_its_input(fitted):
    model, test, _, _, _ = fitted
    before = test.copy()
    record = records_of(test.head(1))[0]
    record_before = dict(record)
    model.predict(test)
    model.predict_one(record)
    pd.testing.assert_frame_equal(test, before)
    assert record == record_before or all(
        (a == b) or (a != a and b != b)
        for a, b in zip(record.values(), record_before.values(), strict=True)
    )


def test_better_than_chance_where_it_should_be(fitted):
    from shipyard.evaluation.metrics import score

    model, test, y, task, _ = fitted
    out = model.predict(test)
    if model.name == "constant":
        return
    if task == "regression":
        assert score("r2", y, out) > 0.05
    else:
        assert score("roc_auc", y, out) > 0.55


@pytest.mark.parametrize("name", list(FAMILIES))
def test_predicting_before_fit_says_what_to_call(name):
    model = FAMILIES[name](
        task="binary", **({"rule": "x > 1", "roles": {"x": "numeric"}} if name == "rule" else {})
    )
    with pytest.raises(NotFittedError, match=r"\.fit\("):
        model.predict(pd.DataFrame({"x": [1.0]}))
    with pytest.raises(NotFittedError):
        model.predict_one({"x": 1.0})
