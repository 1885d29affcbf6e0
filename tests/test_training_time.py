"""Training time and progress on real data (telco churn): a rung's time budget through
`train`, its output and the tracked run, `reproduce` of a budget-stopped run, the plain
stage lines of the command line when stderr is not a terminal, and the live display."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from rich.console import Console

from shipyard.cli import print_train
from shipyard.progress import LiveProgress, StageLines, display
from shipyard.project import Project
from shipyard.training import TrainResult
from support import churn_project, shipyard_cli


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory, churn):
    """`shipyard train --json` under a budget no rung can meet, stdout and stderr piped."""
    folder = tmp_path_factory.mktemp("budget")
    churn_project(folder, churn, training={"max_rung_seconds": 0.01})
    done = shipyard_cli(folder, "train", "--json", timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder, done


def test_json_stays_one_document_and_stages_go_to_stderr_one_line_each(budgeted):
    _, done = budgeted
    document = json.loads(done.stdout)  # the whole of stdout: nothing else was printed there
    assert document["chosen"] in {"constant", "rule", "linear", "gbt"}
    lines = [line for line in done.stderr.splitlines() if line.startswith("train: ")]
    stages = [line.removeprefix("train: ") for line in lines]
    for stage in (
        "reading data",
        "leakage audit",
        "rung constant 1/4",
        "rung rule 2/4",
        "rung linear 3/4",
        "rung gbt 4/4",
        "calibration",
        "test split (scored once)",
        "readiness",
        "tracking",
    ):
        assert stage in stages, stage
    assert stages.index("rung constant 1/4") < stages.index("rung gbt 4/4")
    assert len(stages) == len(set(stages))  # one line per stage, no repeats of a spinner


def test_a_tiny_budget_stops_the_trees_and_says_so(budgeted):
    folder, done = budgeted
    document = json.loads(done.stdout)
    rows = {row["rung"]: row for row in document["ladder"]}
    gbt = rows["gbt"]
    assert gbt["budget_hit"] is True and 1 <= gbt["rounds"] < 1000
    assert gbt["threads"] >= 1 and rows["linear"]["threads"] >= 1
    assert rows["constant"]["budget_hit"] is False
    stopped = [w for w in document["warnings"] if "rung 'gbt' hit its time budget" in w]
    assert len(stopped) == 1
    assert (
        "max_rung_seconds = 0.01" in stopped[0] and f"after {gbt['rounds']} of 1000" in stopped[0]
    )
    # the human output says it too: the warning, and the ladder marks the rung
    result = TrainResult(
        **{k: v for k, v in document.items() if k not in ("constraints_met", "cleaned_up")}
    )
    console = Console(record=True, width=250, file=io.StringIO())
    print_train(result, console)
    text = console.export_text()
    assert "hit its time budget" in text and "(over budget)" in text
    # and the tracked run records it, on the run and on the rung's own run
    tracker = Project.load(folder / "shipyard.toml").tracker()
    run = tracker.get_run(document["run_id"])
    assert "gbt" in run.tags["budget_hit_rungs"].split(",")
    assert run.params["max_rung_seconds"] == "0.01"
    children = tracker.client.search_runs(
        [tracker.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{document['run_id']}'"
    )
    rung = next(c for c in children if c.data.tags.get("rung") == "gbt")
    assert rung.data.tags["budget_hit"] == "True"
    assert rung.data.metrics["rounds"] == gbt["rounds"]


def test_reproduce_reruns_a_budget_stopped_rung_for_its_recorded_rounds(budgeted):
    folder, done = budgeted
    run_id = json.loads(done.stdout)["run_id"]
    again = subprocess.run(
        [sys.executable, "-m", "shipyard", "reproduce", run_id[:8]],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "reproduced exactly" in again.stdout
    assert "reproduce: rung gbt 4/4" in again.stderr.splitlines()


def test_plain_lines_report_long_rungs_without_flooding():
    stream = io.StringIO()
    lines = StageLines("train", stream, every=0.0)
    lines("rung gbt 4/4")
    lines.rounds(5, 10)
    lines.rounds(10, 10)  # the last round: the next stage's line follows at once
    lines("calibration")
    out = stream.getvalue().splitlines()
    assert out[0] == "train: rung gbt 4/4"
    assert out[1].startswith("train: rung gbt 4/4: round 5 of at most 10, ")
    assert out[1].endswith(" left") and "s in, at most" in out[1]
    assert out[2:] == ["train: calibration"]
    quiet = io.StringIO()
    slow = StageLines("train", quiet)  # the default: a rounds line at most every 30 s
    slow("rung gbt 4/4")
    for done in range(1, 1000):
        slow.rounds(done, 1000)
    assert quiet.getvalue() == "train: rung gbt 4/4\n"


def test_a_terminal_gets_a_live_display_with_rounds():
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    with display("train", console) as reporter:
        assert isinstance(reporter, LiveProgress)
        reporter("rung gbt 4/4")
        reporter.rounds(250, 1000)
        task = reporter._progress.tasks[0]
        assert (task.completed, task.total) == (250, 1000)
        assert task.description == "rung gbt 4/4: round 250/1000"
    assert "rung gbt 4/4: round 250/1000" in screen.getvalue()
    plain = Console(file=io.StringIO(), force_terminal=False)
    with display("train", plain) as reporter:
        assert isinstance(reporter, StageLines)
