"""Performance in production on real data (telco churn, a logistic model fitted on part of
it): the realized metric against scikit-learn, per slice and arm; CBPE's expected metrics
against scikit-learn's weighted metrics on the same construction, and against the realized
AUC of disjoint windows; the calibration back-test on calibrated and on planted
miscalibrated (p**3) probabilities; the support warning after a covariate shift; the
metric-drop rule; the monitor's hook."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn import metrics as sk
from sklearn.linear_model import LogisticRegression

from shipyard.errors import DataError, UsageError
from shipyard.evaluation.calibration import curve_ece, ece, reliability
from shipyard.monitoring import (
    Reference,
    calibration_backtest,
    compare_estimate,
    estimate,
    metric_drop,
    outside_support,
    realized,
    recalibrator,
)
from shipyard.monitoring.performance import rows as window_rows
from support import make_spec

FIT, REF = slice(0, 2500), slice(2500, 4000)  # the model's rows; the "test" rows at train
NUMBERS = ["tenure", "monthly_charges", "total_charges"]


def _design(frame: pd.DataFrame, columns: pd.Index, mean: pd.Series, std: pd.Series):
    x = pd.get_dummies(frame, dtype=float).reindex(columns=columns, fill_value=0.0)
    return (x - mean) / std


@pytest.fixture(scope="module")
def churn_model(churn):
    """Churn shuffled; a logistic model on FIT; its P(churn) on every row."""
    frame = churn.drop(columns="rownames").sample(frac=1.0, random_state=11)
    frame = frame.reset_index(drop=True)
    frame["total_charges"] = frame["total_charges"].fillna(0.0)
    y = (frame["churn"] == "Yes").to_numpy(dtype=int)
    features = frame.drop(columns="churn")
    x = pd.get_dummies(features, dtype=float)
    mean, std = x.iloc[FIT].mean(), x.iloc[FIT].std().replace(0, 1)
    design = _design(features, x.columns, mean, std)
    model = LogisticRegression(max_iter=2000).fit(design.iloc[FIT], y[FIT])

    def predict(rows: pd.DataFrame) -> np.ndarray:
        return model.predict_proba(_design(rows, x.columns, mean, std))[:, 1]

    p = predict(features)
    return SimpleNamespace(
        features=features,
        labels=frame["churn"].to_numpy(dtype=object),
        y=y,
        p=p,
        predict=predict,
        live=np.arange(4000, len(y)),
        curve=reliability(y[REF], p[REF]),
    )


def _one(rows, statistic, column=""):
    (found,) = [r for r in rows if r["statistic"] == statistic and r["column"] == column]
    return found


def test_cbpe_equals_sklearn_weighted_metrics_on_the_doubled_construction(churn_model):
    """Each row once as a positive of weight p and once as a negative of weight 1 - p."""
    w = churn_model.live[:1500]
    p = churn_model.p[w]
    scores = np.round(p, 2)  # what the model ranks by, with ties
    found = estimate("binary", "roc_auc", p, scores=scores)
    y2, s2, w2 = np.r_[np.ones(len(p)), np.zeros(len(p))], np.r_[scores, scores], np.r_[p, 1 - p]
    pred2 = (s2 >= 0.5).astype(int)
    expected = {
        "roc_auc": sk.roc_auc_score(y2, s2, sample_weight=w2),
        "accuracy": sk.accuracy_score(y2, pred2, sample_weight=w2),
        "precision": sk.precision_score(y2, pred2, sample_weight=w2),
        "recall": sk.recall_score(y2, pred2, sample_weight=w2),
        "f1": sk.f1_score(y2, pred2, sample_weight=w2),
    }
    for statistic, value in expected.items():
        assert _one(found, statistic)["value"] == pytest.approx(value, abs=1e-9), statistic
    cells = sk.confusion_matrix(y2, pred2, sample_weight=w2)  # [[tn, fp], [fn, tp]]
    for statistic, value in zip(("tn", "fp", "fn", "tp"), cells.ravel(), strict=True):
        assert _one(found, statistic)["value"] == pytest.approx(value, abs=1e-6)
    pr = estimate("binary", "pr_auc", p, scores=scores)
    ap = sk.average_precision_score(y2, s2, sample_weight=w2)
    assert _one(pr, "pr_auc")["value"] == pytest.approx(ap, abs=1e-9)
    loss = estimate("binary", "log_loss", p)
    assert _one(loss, "log_loss")["value"] == pytest.approx(
        sk.log_loss(y2, np.r_[p, p], sample_weight=w2), abs=1e-9
    )


def test_cbpe_interval_holds_the_realized_auc_in_most_windows(churn_model):
    windows = np.array_split(churn_model.live, 6)  # ~500 customers each, disjoint
    held, inside, errors = 0, 0, []
    for w in windows:
        est = _one(
            estimate("binary", "roc_auc", churn_model.p[w], calibration=churn_model.curve),
            "roc_auc",
        )
        real = _one(realized("binary", "roc_auc", churn_model.y[w], churn_model.p[w]), "roc_auc")
        assert real["value"] == pytest.approx(
            sk.roc_auc_score(churn_model.y[w], churn_model.p[w]), abs=1e-12
        )
        assert 0.02 < est["upper"] - est["lower"] < 0.15  # a real spread, not a point
        held += est["lower"] <= real["value"] <= est["upper"]
        inside += real["lower"] <= est["value"] <= real["upper"]
        errors.append(abs(est["value"] - real["value"]))
    assert held >= 5 and inside >= 5, (held, inside, errors)
    assert max(errors) < 0.05


def test_realized_reads_class_labels_and_counts_what_is_labeled(churn_model):
    w = churn_model.live
    labels = churn_model.labels[w].copy()
    missing = np.random.default_rng(3).random(len(w)) < 0.3
    labels[missing] = None  # not arrived yet
    found = realized("binary", "roc_auc", labels, churn_model.p[w], classes=["No", "Yes"])
    keep = ~missing
    value = _one(found, "roc_auc")
    assert value["value"] == pytest.approx(
        sk.roc_auc_score(churn_model.y[w][keep], churn_model.p[w][keep]), abs=1e-12
    )
    assert value["lower"] < value["value"] < value["upper"]
    assert _one(found, "rows")["value"] == keep.sum()
    assert _one(found, "labeled_share")["value"] == pytest.approx(keep.sum() / len(w))
    # only labeled rows passed: the share's denominator is given
    only = realized(
        "binary", "accuracy", churn_model.y[w][keep], churn_model.p[w][keep], n_predictions=len(w)
    )
    assert _one(only, "labeled_share")["value"] == pytest.approx(keep.sum() / len(w))
    assert _one(only, "accuracy")["value"] == pytest.approx(
        sk.accuracy_score(churn_model.y[w][keep], churn_model.p[w][keep] >= 0.5)
    )


def test_slice_and_arm_intervals_contain_the_overall_value_where_they_should(churn_model):
    w = churn_model.live
    y, p = churn_model.y[w], churn_model.p[w]
    rng = np.random.default_rng(5)
    noise = rng.choice(["a", "b", "c"], len(w))  # slices that cannot differ but by chance
    contract = churn_model.features["contract"].to_numpy()[w]
    found = realized("binary", "roc_auc", y, p, slices={"noise": noise, "contract": contract})
    overall = _one(found, "roc_auc")["value"]
    for value in ("a", "b", "c"):
        row = _one(found, "roc_auc", f"noise={value}")
        assert row["lower"] <= overall <= row["upper"], row
        assert row["value"] == pytest.approx(sk.roc_auc_score(y[noise == value], p[noise == value]))
    month = _one(found, "roc_auc", "contract=Month-to-month")
    rows = contract == "Month-to-month"
    assert month["value"] == pytest.approx(sk.roc_auc_score(y[rows], p[rows]))
    assert _one(found, "rows", "contract=Month-to-month")["value"] == rows.sum()
    # per arm: every row carries its arm, each arm's interval holds the pooled value
    arms = rng.choice(["champion", "canary"], len(w), p=[0.8, 0.2])
    by_arm = realized("binary", "roc_auc", y, p, arms=arms)
    assert {r["arm"] for r in by_arm} == {"champion", "canary"}
    for arm in ("champion", "canary"):
        (row,) = [r for r in by_arm if r["arm"] == arm and r["statistic"] == "roc_auc"]
        assert row["lower"] <= overall <= row["upper"]
        assert row["value"] == pytest.approx(sk.roc_auc_score(y[arms == arm], p[arms == arm]))


def test_planted_miscalibration_shows_in_the_backtest(churn_model):
    w = churn_model.live
    y, p = churn_model.y[w], churn_model.p[w]
    good = calibration_backtest(y, p, max_ece=0.1, reference=churn_model.curve)
    ece_row = _one(good, "ece")
    assert ece_row["value"] == pytest.approx(ece(y, p), abs=1e-12) and ece_row["value"] < 0.05
    assert ece_row["level"] == "ok" and ece_row["lower"] <= ece_row["value"] <= ece_row["upper"]
    assert _one(good, "ece_increase")["value"] == pytest.approx(
        ece(y, p) - curve_ece(churn_model.curve)
    )
    bad = calibration_backtest(y, p**3, max_ece=0.1, reference=churn_model.curve)
    ece_row = _one(bad, "ece")
    assert ece_row["value"] == pytest.approx(ece(y, p**3), abs=1e-12) and ece_row["value"] > 0.1
    assert ece_row["level"] == "alert" and ece_row["pvalue"] < 0.01
    # per bin: the observed rate is the rows' rate, inside its Wilson interval
    in_bin = (p**3 >= 0.3) & (p**3 < 0.4)
    observed = _one(bad, "observed_rate", "bin[0.3,0.4)")
    assert observed["value"] == pytest.approx(y[in_bin].mean())
    assert observed["lower"] < observed["value"] < observed["upper"]
    assert _one(bad, "rows", "bin[0.3,0.4)")["value"] == in_bin.sum()
    assert _one(bad, "predicted_mean", "bin[0.3,0.4)")["value"] == pytest.approx(
        (p**3)[in_bin].mean()
    )
    warned = {
        r["column"] for r in bad if r["statistic"] == "observed_rate" and r["level"] == "warn"
    }
    assert len(warned) >= 3  # p**3 under-predicts: the observed rates sit far above
    assert not [r for r in good if r["level"] == "warn"]


def test_cbpe_recalibrates_by_the_stored_curve_when_it_shows_miscalibration(churn_model):
    w = np.array_split(churn_model.live, 3)[0]
    y, p3 = churn_model.y[w], churn_model.p[w] ** 3
    skewed = reliability(churn_model.y[REF], churn_model.p[REF] ** 3)
    mapping = recalibrator(skewed)
    assert mapping is not None
    grid = np.linspace(0, 1, 1001)
    assert np.all(np.diff(mapping.apply(grid)) >= 0)  # never reverses an order
    # p**3 under-predicts: the correction raises every probability
    assert np.all(mapping.apply(p3) > p3)
    assert recalibrator([{**b, "observed": b["predicted"]} for b in skewed]) is None
    real = sk.accuracy_score(y, p3 >= 0.5)
    recal = _one(estimate("binary", "accuracy", p3, calibration=skewed), "accuracy")
    raw = _one(estimate("binary", "accuracy", p3), "accuracy")
    assert abs(raw["value"] - real) > 0.15  # as served, p**3 promises 0.91
    assert abs(recal["value"] - real) < abs(raw["value"] - real) / 3
    assert "recalibrated" in recal["note"]
    auc = _one(estimate("binary", "roc_auc", p3, calibration=skewed), "roc_auc")
    # 73% of p**3 sits in the curve's lowest bin, whose low tail the ten bins cannot
    # resolve: the rows there keep their order but stay too confident (measured +0.07)
    assert auc["value"] == pytest.approx(sk.roc_auc_score(y, p3), abs=0.08)


def test_an_estimate_after_covariate_shift_carries_the_support_warning(churn_model):
    train = churn_model.features.iloc[FIT]
    roles = {c: "numeric" if c in NUMBERS else "categorical" for c in train.columns}
    reference = Reference.learn(train, roles)
    window = churn_model.features.iloc[churn_model.live[:800]].reset_index(drop=True)
    inside = outside_support(reference, window).mean()
    assert inside < 0.05
    calm = estimate("binary", "roc_auc", churn_model.predict(window), outside_share=inside)
    assert _one(calm, "roc_auc")["level"] == "ok"
    shifted = window.assign(monthly_charges=window["monthly_charges"] * 1.6)  # a price rise
    share = outside_support(reference, shifted).mean()
    top = train["monthly_charges"].max()
    assert share == pytest.approx((shifted["monthly_charges"] > top).mean())
    assert share > 0.2
    found = estimate("binary", "roc_auc", churn_model.predict(shifted), outside_share=share)
    row = _one(found, "roc_auc")
    assert row["level"] == "warn" and "outside the reference's support" in row["note"]
    assert f"{share:.1%}" in row["note"]
    renamed = window.assign(contract=window["contract"].replace("Two year", "Two-year"))
    unseen = (window["contract"] == "Two year").to_numpy()
    assert (
        outside_support(reference, renamed) == (unseen | outside_support(reference, window))
    ).all()
    drifted = estimate("binary", "roc_auc", churn_model.p[:100], drifted=True)
    assert _one(drifted, "roc_auc")["level"] == "warn"


def test_compare_estimate_sets_the_estimate_beside_the_realized_value(churn_model):
    estimated, real = [], []
    for i, w in enumerate(np.array_split(churn_model.live, 3)):
        stamp = {"window_start": i, "window_end": i + 1, "arm": "champion"}
        estimated += [{**r, **stamp} for r in estimate("binary", "roc_auc", churn_model.p[w])]
        real += [
            {**r, **stamp}
            for r in realized("binary", "roc_auc", churn_model.y[w], churn_model.p[w])
        ]
    pairs = compare_estimate(estimated, real)
    assert [r["window_start"] for r in pairs] == [0, 1, 2]
    for pair, i in zip(pairs, range(3), strict=True):
        est = next(r for r in estimated if r["window_start"] == i and r["statistic"] == "roc_auc")
        got = next(r for r in real if r["window_start"] == i and r["statistic"] == "roc_auc")
        assert pair["statistic"] == "roc_auc_estimate_error"
        assert pair["value"] == pytest.approx(got["value"] - est["value"])
        assert pair["level"] == ("ok" if est["lower"] <= got["value"] <= est["upper"] else "warn")
    # an estimate whose interval misses the realized value warns
    off = [{**estimated[0], "value": 0.99, "lower": 0.98, "upper": 1.0}]
    assert compare_estimate(off, real)[0]["level"] == "warn"


def test_metric_drop_alerts_on_the_interval_and_warns_on_the_point():
    auc = {"section": "performance", "column": "", "statistic": "roc_auc", "arm": "canary"}
    alert = metric_drop(0.85, {**auc, "value": 0.70, "lower": 0.66, "upper": 0.74}, 0.05)
    assert alert["level"] == "alert" and alert["statistic"] == "roc_auc_drop"
    assert alert["value"] == pytest.approx(0.15) and alert["lower"] == pytest.approx(0.11)
    assert alert["arm"] == "canary"
    noisy = metric_drop(0.85, {**auc, "value": 0.78, "lower": 0.70, "upper": 0.83}, 0.05)
    assert noisy["level"] == "warn"  # the point dropped 0.07, the interval allows 0.02
    assert (
        metric_drop(0.85, {**auc, "value": 0.83, "lower": 0.80, "upper": 0.86}, 0.05)["level"]
        == "ok"
    )
    loss = {**auc, "statistic": "log_loss", "value": 0.60, "lower": 0.55, "upper": 0.65}
    assert metric_drop(0.40, loss, 0.05)["level"] == "alert"  # lower is better: 0.55 - 0.40
    rmse = {**auc, "statistic": "rmse", "value": 12.0, "lower": 11.5, "upper": 12.5}
    assert metric_drop(10.0, rmse, 0.1)["level"] == "alert"  # 10% of 10 = 1 < 11.5 - 10
    assert metric_drop(10.0, rmse, 0.16)["level"] == "warn"  # 1.6: the point, not the end
    empty = metric_drop(0.85, {**auc, "value": float("nan"), "lower": None, "upper": None}, 0.05)
    assert empty["level"] == "empty"


def test_bad_input_is_named(churn_model):
    with pytest.raises(DataError, match=r"'p' must hold probabilities.*row 1"):
        estimate("binary", "roc_auc", [0.2, 1.3, 0.5])
    with pytest.raises(DataError, match="'scores' has 2 rows but the predictions have 3"):
        estimate("binary", "roc_auc", [0.2, 0.3, 0.5], scores=[0.1, 0.2])
    with pytest.raises(DataError, match=r"not classes of the model \(first: 'Maybe'\)"):
        realized("binary", "roc_auc", ["Yes", "Maybe"], [0.2, 0.7], classes=["No", "Yes"])
    with pytest.raises(DataError, match="class codes"):
        realized("binary", "roc_auc", [0, 2], [0.2, 0.7])
    with pytest.raises(UsageError, match="metric 'rmse' is not one of task 'binary'"):
        realized("binary", "rmse", [0, 1], [0.2, 0.7])
    (row,) = estimate("regression", "rmse", [1.0, 2.0])
    assert row["level"] == "empty" and "binary classifiers only" in row["note"]
    assert _one(realized("binary", "roc_auc", [1, 1], [0.2, 0.7]), "roc_auc")["level"] == "empty"
    assert _one(calibration_backtest([None, None], [0.2, 0.7]), "ece")["level"] == "empty"


def test_the_monitor_hook_scores_a_matured_window(churn_model):
    w = churn_model.live[:1000]
    train = churn_model.features.iloc[FIT]
    roles = {c: "numeric" if c in NUMBERS else "categorical" for c in train.columns}
    test_auc = sk.roc_auc_score(churn_model.y[REF], churn_model.p[REF])
    reference = Reference.learn(
        train,
        roles,
        task="binary",
        classes=["No", "Yes"],
        test_output=churn_model.p[REF],
        metrics={"test": {"roc_auc": test_auc}},
        calibration=churn_model.curve,
    )
    ids = np.array([f"r{i}" for i in range(len(w))], dtype=object)
    scores = churn_model.p[w].reshape(-1, 1).copy()
    scores[7] = np.nan  # a request that errored
    labeled = np.arange(len(w)) < 700  # 70% of the labels arrived
    labels = pa.table(
        {
            "request_id": ids[labeled],
            "label": churn_model.labels[w][labeled].astype(str),
            "outcome": churn_model.y[w][labeled].astype(float),
        }
    )
    spec = make_spec("churn", project={"positive": "Yes"}, features={"slices": ["contract"]})
    window = churn_model.features.iloc[w].reset_index(drop=True)
    context = SimpleNamespace(
        request_ids=ids,
        scores=scores,
        reference=reference,
        labels=labels,
        drifted=False,
        spec=spec,
        features=window[["contract"]],
        outside=outside_support(reference, window),
    )
    found = window_rows(context)
    sections = {r["section"] for r in found}
    assert sections == {"performance", "estimated_performance", "calibration"}
    answered = ~np.isnan(scores[:, 0])
    support = _one(found, "outside_support_share")
    assert support["value"] == pytest.approx(outside_support(reference, window)[answered].mean())
    keep = labeled & ~np.isnan(scores[:, 0])
    real = _one([r for r in found if r["section"] == "performance"], "roc_auc")
    assert real["value"] == pytest.approx(sk.roc_auc_score(churn_model.y[w][keep], scores[keep, 0]))
    share = _one([r for r in found if r["section"] == "performance"], "labeled_share")
    assert share["value"] == pytest.approx(keep.sum() / (len(w) - 1))
    drop = _one(found, "roc_auc_drop")
    assert drop["value"] == pytest.approx(test_auc - real["value"])
    assert _one(found, "roc_auc_estimate_error")["level"] in ("ok", "warn")
    assert any(r["column"].startswith("contract=") for r in found)
    # before labels: the estimate only, no judgement of the metric
    early = window_rows(SimpleNamespace(**{**vars(context), "labels": labels.slice(0, 100)}))
    assert not [r for r in early if r["statistic"] in ("roc_auc_drop", "ece")]
    assert _one([r for r in early if r["section"] == "estimated_performance"], "roc_auc")
