"""A training's MLflow run is kept by a process of its own: the training process never
imports MLflow, the run is complete when `train` returns, and the process leaves nothing
behind; a failure there is a TrackingError here, and the run ends FAILED."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from shipyard.cores import available_cores
from shipyard.errors import TrackingError
from shipyard.tracking import Tracker
from shipyard.tracking_worker import RemoteTracker
from support import CHILD_ENV, churn_project, wait_for_marker

TRAIN = """
import json, sys
from shipyard.project import Project
result = Project.load(sys.argv[1]).train()
print(json.dumps({"run_id": result.run_id, "version": result.version,
                  "mlflow_imported": "mlflow" in sys.modules}))
"""


def _gone(folder: Path, timeout: float = 60.0) -> list[str]:
    """What is left in ``folder`` once the tracking processes had ``timeout`` s to end."""
    deadline = time.monotonic() + timeout
    while (left := sorted(p.name for p in folder.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def test_a_training_run_is_kept_by_a_process_of_its_own(tmp_path: Path, churn) -> None:
    project = churn_project(tmp_path / "churn", churn)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", TRAIN, str(project.spec_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(scratch)},
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    said = json.loads(done.stdout.strip().splitlines()[-1])
    assert said["mlflow_imported"] is False  # MLflow's Python ran in the tracking process
    assert said["version"] == 1

    tracker = project.tracker()
    run = tracker.get_run(said["run_id"])
    assert run.status == "FINISHED"  # complete when train returned
    assert run.tags["registered_version"] == "1"
    assert run.tags["readiness_passed"] in ("True", "False")
    beside = available_cores() >= 2 and not os.environ.get("SHIPYARD_THREADS")
    assert run.tags["rungs_side_by_side"] == str(beside)
    assert run.metrics["dev_roc_auc"] > 0.8
    logged = {f.path for f in tracker.client.list_artifacts(said["run_id"], "plots")} | {
        f.path for f in tracker.client.list_artifacts(said["run_id"])
    }
    assert {"plots/roc.png", "plots/reliability.png", "readiness.json", "spec.json"} <= logged
    rungs = tracker.client.search_runs(
        [tracker.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{said['run_id']}'"
    )
    assert sorted(r.data.tags["rung"] for r in rungs) == ["constant", "gbt", "linear", "rule"]
    assert all(r.info.status == "FINISHED" for r in rungs)
    gbt = next(r for r in rungs if r.data.tags["rung"] == "gbt")
    curve = tracker.client.get_metric_history(gbt.info.run_id, "learning_curve_dev")
    assert len(curve) == int(float(gbt.data.metrics["rounds"]))  # every round, in order
    assert [m.step for m in curve] == list(range(len(curve)))
    assert _gone(scratch) == []  # the scratch folder went with the tracking process


def test_a_new_store_is_made_only_once_the_training_goes_ahead(tmp_path: Path) -> None:
    store = tmp_path / "mlflow.db"
    remote = RemoteTracker(f"sqlite:///{store}", "later", tmp_path / "artifacts")
    try:
        assert not store.exists()  # a training refused now leaves nothing behind
        remote.open()
        with remote.run("train") as run_id:
            remote.metrics({"auc": 0.5})
    finally:
        remote.close()
    assert Tracker(f"sqlite:///{store}", "later").get_run(run_id).metrics == {"auc": 0.5}


def test_a_logging_failure_there_is_a_tracking_error_here(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    remote = RemoteTracker(uri, "failures", tmp_path / "artifacts")
    try:
        with (
            pytest.raises(TrackingError, match=r"missing\.csv") as raised,
            remote.run("train") as run_id,
        ):
            remote.metrics({"auc": 0.75})
            remote.plot(
                "roc", "plots/roc.png", "ROC", np.array([0, 1, 1]), np.array([0.2, 0.7, 0.9])
            )
            remote.file(tmp_path / "missing.csv")  # sent, not waited for
            remote.tags({"after": "the failure"})  # not logged: the run has failed
        assert "logging a file" in str(raised.value)
    finally:
        remote.close()
    run = Tracker(uri, "failures", tmp_path / "artifacts").get_run(run_id)
    assert run.status == "FAILED"
    assert run.metrics == {"auc": 0.75}  # what came before the failure is kept
    assert "after" not in run.tags


def test_a_tracking_process_that_dies_is_named(tmp_path: Path) -> None:
    remote = RemoteTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "dies", tmp_path / "art")
    try:
        assert remote._child is not None
        remote._child.kill()
        remote._child.wait()
        with (
            pytest.raises(TrackingError, match=r"the tracking process for sqlite:.* stopped"),
            remote.run("train"),
        ):
            pass
    finally:
        remote.close()


def test_an_unusable_store_is_refused_as_the_tracker_refuses_it(tmp_path: Path) -> None:
    (tmp_path / "mlflow.db").write_text("not a database")
    with pytest.raises(TrackingError, match="cannot use tracking URI sqlite:"):
        RemoteTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "refused", tmp_path / "art")


def test_ctrl_c_ends_the_run_failed_and_the_tracking_process_with_it(tmp_path: Path, churn):
    """Ctrl-C reaches the whole process group: the tracking process ignores it, so the
    training can end its run FAILED (exit 130) and no run is left RUNNING."""
    project = churn_project(tmp_path, churn)
    process = subprocess.Popen(
        [sys.executable, "-m", "shipyard", "train"],
        cwd=tmp_path,
        env=CHILD_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        # as a terminal starts it: a shell's background job (CI's, say) ignores Ctrl-C
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        marker = wait_for_marker(tmp_path, process, bundle=True)  # the run has begun
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130, stderr.decode()[-2000:]
    assert "interrupted" in stderr.decode()
    assert marker.run_id is not None
    assert project.tracker().get_run(marker.run_id).status == "FAILED"
