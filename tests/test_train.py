"""`shipyard train` end to end on telco churn: ladder, evaluation, bundle, MLflow, reproduce."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shipyard.bundle import load_bundle, verify
from shipyard.data.contract import Contract
from shipyard.data.split import make_splits
from shipyard.errors import (
    BundleError,
    CheckFailed,
    DataError,
    RuleError,
    TrackingError,
    UsageError,
)
from shipyard.project import Project
from shipyard.training import families_for, git_state
from support import churn_project, records_of, toml_text, with_surprises

TRAIN_LOGS: list[str] = []  # what MLflow logged (warning and up) and warned while `trained` ran


@pytest.fixture(scope="module")
def trained(tmp_path_factory, churn):
    import logging
    import warnings

    folder = tmp_path_factory.mktemp("churn")
    project = churn_project(folder, churn)

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            TRAIN_LOGS.append(record.getMessage())

    handler = Keep(logging.WARNING)
    mlflow_logger = logging.getLogger("mlflow")  # MLflow's loggers do not propagate to root
    mlflow_logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = project.train()
    finally:
        mlflow_logger.removeHandler(handler)
    TRAIN_LOGS.extend(str(w.message) for w in caught)
    return project, result


def test_the_logged_model_carries_the_bundles_signature(trained):
    """MLflow warned "Failed to infer model signature" on every train: shipyard now gives it
    the bundle's signature (categories as MLflow strings), so nothing is inferred."""
    import mlflow

    project, result = trained
    assert not [m for m in TRAIN_LOGS if "signature" in m.lower()], TRAIN_LOGS
    assert not [m for m in TRAIN_LOGS if "input example" in m.lower()], TRAIN_LOGS
    info = mlflow.models.get_model_info(project.tracker().model_uri(result.run_id))
    assert info.signature is not None
    declared = {
        c["name"]: c for c in json.loads((result.bundle / "signature.json").read_text())["inputs"]
    }
    got = {c.name: c for c in info.signature.inputs.inputs}
    assert list(got) == list(declared) == load_bundle(result.bundle).features
    assert got["contract"].type.name == "string"  # categorical: MLflow stores it as string
    assert got["tenure"].type.name == "long" and got["monthly_charges"].type.name == "double"
    assert not any(c.required for c in got.values())  # shipyard's contract judges nulls


def test_churn_ladder_slices_and_calibration(trained):
    project, result = trained
    assert [row["rung"] for row in result.ladder] == ["constant", "rule", "linear", "gbt"]
    dev = {row["rung"]: row["dev_roc_auc"] for row in result.ladder}
    assert dev["constant"] == 0.5 and dev["rule"] > 0.6 and dev["linear"] > 0.8
    assert result.chosen in ("linear", "gbt")
    assert result.test[result.chosen]["roc_auc"] > 0.8
    columns = {s["column"] for s in result.slices["slices"]}
    assert columns == {"contract", "senior_citizen"}
    contract_rows = sum(s["rows"] for s in result.slices["slices"] if s["column"] == "contract")
    assert contract_rows == len(make_splits(project.dataset()).test)
    for entry in result.slices["slices"]:
        if not entry["tiny"]:
            assert entry["ci_low"] <= entry["roc_auc"] <= entry["ci_high"]
    cal = result.calibration
    assert cal["ece_before"] > 0 and cal["ece_dev_after"] is not None
    assert set(result.constraints) == {"p99_latency_ms", "max_model_mb", "max_ece", "max_slice_gap"}
    assert result.constraints["max_ece"]["value"] == pytest.approx(cal["ece_test"])


def test_the_run_is_tracked_with_everything(trained):
    project, result = trained
    tracker = project.tracker()
    run = tracker.get_run(result.run_id)
    tags, params, metrics = run.tags, run.params, run.metrics
    # the code's git state; outside a repository there is none, and no "None" tag is stored
    git = git_state(project.spec.root)
    if git["git_commit"] is None:
        assert "git_commit" not in tags and "git_dirty" not in tags
    else:
        assert tags["git_commit"] == git["git_commit"]
    for key in (
        "data_snapshot_id",
        "contract_hash",
        "spec_hash",
        "feature_set_version",
        "test_predictions_sha256",
    ):
        assert key in tags, key
    assert tags["data_snapshot_id"] == project.read().snapshot_id
    assert params["seed"] == "42" and params["metric"] == "roc_auc"
    assert "chosen.seed" in params
    assert metrics["test_roc_auc"] == pytest.approx(result.test[result.chosen]["roc_auc"])
    assert "dev_roc_auc" in metrics and "ece_before" in metrics and "peak_memory_mb" in metrics
    assert any(k.startswith("slice_contract_") for k in metrics)
    artifacts = {a.path for a in tracker.client.list_artifacts(result.run_id)}
    assert {
        "spec.json",
        "ladder.json",
        "slices.json",
        "calibration.json",
        "environment.json",
        "robustness.json",
        "importance.json",
        "samples",
        "plots",
        "predictions",
    } <= artifacts
    # global importance on the test split, kept in the run for the model report
    kept = json.loads(
        Path(tracker.client.download_artifacts(result.run_id, "importance.json")).read_text()
    )
    assert kept == result.importance and kept["split"] == "test"
    assert {r["field"] for r in kept["fields"]} == set(load_bundle(result.bundle).features)
    plots = {a.path for a in tracker.client.list_artifacts(result.run_id, "plots")}
    assert plots == {"plots/reliability.png", "plots/roc.png"}
    nested = tracker.client.search_runs(
        [tracker.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'"
    )
    assert sorted(r.data.tags["rung"] for r in nested) == ["constant", "gbt", "linear", "rule"]
    gbt = next(r for r in nested if r.data.tags["rung"] == "gbt")
    curve = tracker.client.get_metric_history(gbt.info.run_id, "learning_curve_dev")
    assert len(curve) > 5 and [m.step for m in curve[:3]] == [0, 1, 2]
    assert result.version == 1
    version = tracker.client.get_model_version("churn", "1")
    assert version.run_id == result.run_id


def test_bundle_predictions_paths_and_pyfunc_agree(trained, churn, monkeypatch):
    project, result = trained
    bundle = load_bundle(result.bundle)
    frame = with_surprises(churn.drop(columns=["churn"]).iloc[:2000], seed=1)
    frame_out = bundle.predict(frame)
    one = np.array([bundle.predict_one(r) for r in records_of(frame)])
    np.testing.assert_allclose(one, frame_out, rtol=0, atol=1e-9)
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", project.tracker().uri)  # restored after the test
    mlflow.set_tracking_uri(project.tracker().uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/churn/{result.version}")
    clean = churn.drop(columns=["churn"]).iloc[:500]
    np.testing.assert_allclose(np.asarray(pyfunc.predict(clean)), bundle.predict(clean), atol=1e-12)


def test_tampered_bundles_refuse_to_load(trained, tmp_path):
    _, result = trained
    for case in ("changed", "missing", "extra", "version"):
        copy = tmp_path / case
        shutil.copytree(result.bundle, copy)
        if case == "changed":
            path = copy / "model" / "model.json"
            path.write_text(path.read_text().replace("0", "1", 1))
            expected = "model/model.json' changed"
        elif case == "missing":
            (copy / "contract.json").unlink()
            expected = "'contract.json' is missing"
        elif case == "extra":
            (copy / "model" / "evil.py").write_text("import os")
            expected = "'model/evil.py' is not listed"
        else:
            manifest = json.loads((copy / "manifest.json").read_text())
            manifest["format_version"] = 99
            (copy / "manifest.json").write_text(json.dumps(manifest))
            expected = "format version 99"
        with pytest.raises(BundleError, match=expected):
            load_bundle(copy)
    assert verify(result.bundle)["run_id"] == result.run_id


def test_reproduce_gives_identical_test_predictions(trained):
    project, result = trained
    outcome = project.reproduce(result.run_id[:8])  # a unique prefix, as people type it
    assert outcome.run_id == result.run_id
    assert outcome.identical, outcome
    assert outcome.max_prediction_diff == 0.0
    assert outcome.metrics["test_roc_auc"]["recorded"] == outcome.metrics["test_roc_auc"]["now"]


def test_reproduce_refuses_changed_data(trained, tmp_path, churn):
    project, result = trained
    folder = tmp_path / "copy"
    shutil.copytree(project.spec.root, folder)
    churn.iloc[:-5].to_csv(folder / "churn.csv", index=False)
    with pytest.raises(Exception, match="no longer matches"):
        Project.load(folder / "shipyard.toml").reproduce(result.run_id)


def test_preprocessing_is_fitted_on_train_only(tmp_path, churn):
    """Change every dev and test value: nothing fitted on train moves (trees may stop at
    another round, since early stopping watches dev, but their transform does not move)."""
    project = churn_project(tmp_path, churn)
    ds = project.dataset()
    splits = make_splits(ds)
    changed = ds.frame.copy()
    rows = np.concatenate([splits.dev, splits.test])
    changed.loc[rows, "tenure"] = changed.loc[rows, "tenure"] * 7 + 3
    changed.loc[rows, "monthly_charges"] = np.nan
    changed.loc[rows, "contract"] = "Ten year"
    fitted = []
    for frame in (ds.frame, changed):
        data = type(ds)(frame, ds.spec)
        roles = {c: data.role[c] for c in data.candidates}
        train = frame.iloc[splits.train]
        dev = (frame.iloc[splits.dev_blackbox], data.target.y[splits.dev_blackbox])
        models = families_for(ds.spec, data)
        for model in models:
            model.fit(train, data.target.y[splits.train], roles=roles, dev=dev)
        fitted.append(models)
    for before, after in zip(*fitted, strict=True):
        if hasattr(before, "transform_"):
            assert before.transform_.to_dict() == after.transform_.to_dict(), before.name
        if before.name != "gbt":
            assert before.state() == after.state(), before.name
    learned = [
        Contract.learn(f.iloc[splits.train], ds.role, target="churn").to_dict()
        for f in (ds.frame, changed)
    ]
    assert learned[0] == learned[1]


def test_error_findings_refuse_training_unless_ignored(tmp_path, churn):
    leaky = churn.copy()
    leaky["churn_flag"] = (leaky["churn"] == "Yes").astype(int)
    project = churn_project(tmp_path, leaky, baseline={"rule": "tenure < 6"})
    with pytest.raises(CheckFailed, match="target_derived") as info:
        project.train(track=False)
    assert info.value.exit_code == 1
    result = project.train(ignore_findings=["target_derived"])
    run = project.tracker().get_run(result.run_id)
    assert json.loads(run.params["ignored_findings"]) == ["target_derived"]


def test_bad_rules_exit_2_with_the_position(tmp_path, churn):
    project = churn_project(tmp_path, churn, baseline={"rule": "tenure < 'six'"})
    with pytest.raises(RuleError, match="at position 10"):
        project.train(track=False)
    cli = subprocess.run(
        [sys.executable, "-m", "shipyard", "train"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 2 and "column 'tenure' is numeric" in cli.stderr
    assert "Traceback" not in cli.stderr


def test_unreachable_tracking_uri_exits_2_and_registers_nothing(tmp_path, churn):
    project = churn_project(tmp_path, churn, tracking={"uri": "http://127.0.0.1:9"})
    with pytest.raises(TrackingError, match=r"http://127\.0\.0\.1:9 cannot be reached"):
        project.train()
    assert not (tmp_path / ".shipyard" / "bundles").exists()
    cli = subprocess.run(
        [sys.executable, "-m", "shipyard", "train"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 2 and "127.0.0.1:9" in cli.stderr and "Traceback" not in cli.stderr


def test_cli_train_prints_the_ladder_constraints_and_run(tmp_path, churn):
    churn_project(tmp_path, churn, constraints={"max_ece": 0.5})
    cli = subprocess.run(
        [sys.executable, "-m", "shipyard", "train"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr
    text = " ".join(cli.stdout.split())
    for part in (
        "ladder (dev roc_auc, blackbox)",
        "constant",
        "rule",
        "linear",
        "gbt",
        "max_ece",
        "pass",
        "calibration: ECE on dev",
        "registered version 1",
        "report:",
    ):
        assert part in text, part
    assert f"report: {tmp_path.resolve()}" in text or "report: " + str(tmp_path) in text
    runs = subprocess.run(
        [sys.executable, "-m", "shipyard", "runs", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    listed = json.loads(runs.stdout)[0]
    # the command ends without the interpreter's teardown: the run was complete before it
    assert listed["version"] == "1" and listed["status"] == "FINISHED", listed


def test_a_class_absent_from_train_is_a_clear_error(tmp_path, churn):
    frame = churn.copy()
    frame["when"] = pd.date_range("2024-01-01", periods=len(frame), freq="h").astype(str)
    frame["plan"] = np.where(np.arange(len(frame)) > len(frame) * 0.9, "new", frame["contract"])
    frame.drop(columns=["contract"]).to_csv(tmp_path / "plans.csv", index=False)
    (tmp_path / "shipyard.toml").write_text(
        toml_text(
            {
                "project": {
                    "target": "plan",
                    "task": "multiclass",
                    "data": "plans.csv",
                    "time": "when",
                },
                "features": {"exclude": ["rownames", "churn"]},
                "split": {"strategy": "time"},
            }
        )
    )
    with pytest.raises(DataError, match="no rows of class new"):
        Project.load(tmp_path / "shipyard.toml").train(track=False)


def test_readiness_checklist_is_computed_stored_and_tracked(trained):
    project, result = trained
    readiness = result.readiness
    assert [i["name"] for i in readiness["items"]] == [
        "beats_baselines",
        "constraints_met",
        "slices_hold",
        "calibration_validated",
        "features_available",
        "skew_guarded",
        "reproducible",
        "bundle_verifies",
        "rollback_target",
        "invariance_holds",
        "directions_hold",
    ]
    items = {i["name"]: i for i in readiness["items"]}
    assert readiness["passed"] == all(i["passed"] for i in readiness["items"])
    assert items["skew_guarded"]["evidence"]["max_difference"] <= 1e-9
    assert items["bundle_verifies"]["passed"] and items["reproducible"]["passed"]
    margins = items["beats_baselines"]["evidence"]["margins"]
    dev = {row["rung"]: row["dev_roc_auc"] for row in result.ladder}
    assert margins["rule"] == pytest.approx(dev[result.chosen] - dev["rule"])
    assert items["rollback_target"]["evidence"]["fallback"] in ("linear", "rule")
    stored = json.loads((result.bundle / "readiness.json").read_text())
    assert stored == json.loads(json.dumps(readiness))
    assert verify(result.bundle)["fallback"] == items["rollback_target"]["evidence"]["fallback"]
    tags = project.tracker().get_run(result.run_id).tags
    assert tags["readiness_passed"] == str(readiness["passed"])


def test_an_impossible_constraint_fails_readiness(tmp_path, churn):
    project = churn_project(tmp_path, churn, constraints={"p99_latency_ms": 0.0001})
    result = project.train(track=False)
    items = {i["name"]: i for i in result.readiness["items"]}
    assert not result.readiness["passed"]
    assert not items["constraints_met"]["passed"]
    assert "p99_latency_ms" in items["constraints_met"]["summary"]


def test_run_ids_resolve_from_any_unique_prefix(tmp_path):
    """`reproduce` takes what `runs` shows: a prefix that one run's id starts with; an
    unknown or ambiguous prefix is a usage error (exit 2) saying which."""
    from shipyard.tracking import Tracker

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "prefixes", tmp_path / "artifacts")
    ids: list[str] = []
    while len({i[0] for i in ids}) == len(ids):  # until two ids share a first character
        with tracker.run("train", tags={"shipyard_kind": "train"}) as run_id:
            ids.append(run_id)
    with tracker.run("rung", tags={"shipyard_kind": "rung"}) as other:
        pass
    for run_id in ids:
        assert tracker.resolve_run(run_id) == run_id
        assert tracker.resolve_run(run_id[:12].upper()) == run_id
    shared = next(i[0] for i in ids if sum(j[0] == i[0] for j in ids) > 1)
    with pytest.raises(UsageError, match=f"prefix '{shared}' is ambiguous: 2 runs match") as exc:
        tracker.resolve_run(shared)
    assert exc.value.exit_code == 2
    with pytest.raises(UsageError, match="no run 'zz'"):
        tracker.resolve_run("zz")  # run ids are hex: nothing starts with z
    with pytest.raises(UsageError, match="no run"):
        tracker.resolve_run(other)  # only training runs are reproducible


def test_a_reused_check_gives_its_roles_and_the_columns_are_not_profiled_again(tmp_path, churn):
    """``train`` right after ``check`` of the same data, spec and version reuses the check,
    and its roles with it: no "profiling columns" stage, no profile computed, and the very
    roles and candidate features a fresh profile finds; a changed spec profiles again."""
    from shipyard.data.dataset import Dataset

    project = churn_project(tmp_path, churn)
    report = project.check()
    stages: list[str] = []
    project.train(progress=stages.append, track=False)
    assert any(s.startswith("reusing the check") for s in stages)
    assert "profiling columns" not in stages
    again, ds, _splits, table = project._check(None, lambda _: None, reuse=True)
    fresh = Dataset(table.frame, project.spec)
    assert again.created == report.created and "profiles" not in ds.__dict__
    assert ds.role == report.roles == fresh.role
    assert ds.candidates == fresh.candidates
    text = (tmp_path / "shipyard.toml").read_text()
    (tmp_path / "shipyard.toml").write_text(text.replace("[split]", "[split]\nseed = 8", 1))
    stages.clear()
    Project.load(tmp_path / "shipyard.toml").train(progress=stages.append, track=False)
    assert "profiling columns" in stages
