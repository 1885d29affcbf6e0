"""A killed `train` leaves nothing half-done: the next command settles it; a live one is
left alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from shipyard import leftovers
from shipyard.leftovers import Marker, Owner
from shipyard.project import Project
from support import CHILD_ENV, churn_project, shipyard_cli, wait_for_marker


def _start_train(folder: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "shipyard", "train", "--json"],
        cwd=folder,
        env=CHILD_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_a_killed_train_is_cleaned_up_by_the_next_command(tmp_path, churn):
    project = churn_project(tmp_path, churn)
    process = _start_train(tmp_path)
    try:
        marker = wait_for_marker(tmp_path, process, bundle=True)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert marker.owner.pid == process.pid and not marker.owner.alive()
    run_id = marker.run_id
    assert run_id is not None
    bundle = tmp_path / ".shipyard" / "bundles" / run_id
    assert bundle.is_dir()
    assert project.tracker().get_run(run_id).status == "RUNNING"  # what a kill leaves

    listed = shipyard_cli(tmp_path, "runs")
    assert listed.returncode == 0, listed.stderr
    said = " ".join(listed.stderr.split())
    assert "cleaned up after 1 killed train" in said, said
    assert f"pid {process.pid}" in said
    assert f"marked run FAILED: {run_id}" in said
    assert f"removed orphan bundle(s): bundles/{run_id}" in said
    assert len(listed.stderr.strip().splitlines()) == 1  # one line
    assert "None" not in listed.stdout
    row = next(line for line in listed.stdout.splitlines() if run_id in line)
    assert "FAILED" in row

    run = project.tracker().get_run(run_id)
    assert run.status == "FAILED" and run.tags["shipyard_ended"] == "its process died"
    assert not bundle.exists() and not bundle.with_name(run_id + ".tmp").exists()
    assert list((tmp_path / ".shipyard" / "training").iterdir()) == []

    again = shipyard_cli(tmp_path, "models", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["cleaned_up"] is None
    assert "cleaned up" not in again.stderr
    rows = json.loads(shipyard_cli(tmp_path, "runs", "--json").stdout)
    assert [(r["run_id"], r["status"], r["version"]) for r in rows] == [(run_id, "FAILED", None)]


def test_a_live_train_is_left_alone_and_registered_bundles_are_kept(tmp_path, churn):
    project = churn_project(tmp_path, churn)
    process = _start_train(tmp_path)
    try:
        marker = wait_for_marker(tmp_path, process, bundle=False)
        assert marker.owner.alive()
        done = project.tidy()  # while that training runs, in another live process
        assert not done and done.line() == ""
        assert marker.path.exists()
    finally:
        assert process.wait(timeout=300) == 0
    assert not marker.path.exists()  # a finished training removes its own marker
    (run,) = project.tracker().runs()
    assert run.status == "FINISHED" and run.tags["registered_version"] == "1"
    assert run.tags["shipyard_marker"] == marker.token

    # the same training seen as if it had died after registering (its pid is gone now):
    # nothing is running to mark, and the bundle version 1 came from stays
    dead = Marker(
        marker.path,
        marker.owner,
        marker.began,
        run_id=run.run_id,
        bundle=f"bundles/{run.run_id}",
    )
    dead.save()
    done = Project.load(tmp_path / "shipyard.toml").tidy()
    assert done.trainings == [
        f"pid {process.pid} on {marker.owner.host}, began {marker.began[:19]}"
    ]
    assert done.failed_runs == [] and done.removed_bundles == []
    assert done.kept_bundles == [f"bundles/{run.run_id}"]
    assert (tmp_path / ".shipyard" / "bundles" / run.run_id / "manifest.json").exists()
    assert not dead.path.exists()


def test_markers_of_other_hosts_and_reused_pids(tmp_path, churn):
    project = churn_project(tmp_path, churn)
    folder = tmp_path / ".shipyard" / "training"
    me = Owner.current()
    elsewhere = Marker(folder / "a.json", Owner(1, "another-host", None, None), "2026", False)
    elsewhere.save()
    reused = Marker(folder / "b.json", Owner(me.pid, me.host, me.boot, -1), "2026", False)
    orphan = tmp_path / ".shipyard" / "bundles" / "local-1"
    orphan.mkdir(parents=True)
    reused.bundle = "bundles/local-1"
    reused.save()
    done = leftovers.sweep(project.workspace)
    # the pid is this very process, but it started at another time: the owner is dead
    assert done.trainings == [f"pid {me.pid} on {me.host}, began 2026"]
    assert done.removed_bundles == ["bundles/local-1"] and not orphan.exists()
    assert elsewhere.path.exists() and not reused.path.exists()
    (folder / "c.json").write_text("{not json")
    assert "is not a training marker" in leftovers.sweep(project.workspace).line()


def test_a_training_that_raises_settles_its_own_marker_at_once(tmp_path, churn):
    workspace = churn_project(tmp_path, churn).workspace
    bundle = workspace.bundles / "local-7"
    with (
        pytest.raises(RuntimeError, match="the fit failed"),
        leftovers.training(workspace, tracked=False) as marker,
    ):
        assert Marker.read(marker.path).owner == Owner.current()
        bundle.mkdir(parents=True)
        (bundle / "manifest.json").write_text("{}")
        marker.bundle = workspace.relative(bundle)
        marker.save()
        raise RuntimeError("the fit failed")
    assert not bundle.exists() and list(workspace.trainings.iterdir()) == []
    with leftovers.training(workspace, tracked=False) as marker:
        assert marker.path.exists()
    assert not marker.path.exists()  # a training that ends well leaves no marker
    assert not leftovers.sweep(workspace)
