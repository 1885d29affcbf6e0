"""The command line, run as a user runs it: a real `shipyard` process, exit codes, stdout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from support import toml_text

SHIPYARD = [sys.executable, "-m", "shipyard"]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*SHIPYARD, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def _no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stderr + result.stdout


def test_init_then_check_on_churn(tmp_path: Path, churn: pd.DataFrame):
    churn.to_csv(tmp_path / "churn.csv", index=False)
    init = run("init", "churn.csv", "--target", "churn", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    text = (tmp_path / "shipyard.toml").read_text()
    assert 'task = "binary"' in text and 'positive = "Yes"' in text
    assert 'exclude = ["rownames"]' in text
    assert "#   total_charges" in text  # column roles listed as comments
    again = run("init", "churn.csv", "--target", "churn", cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr
    assert run("init", "churn.csv", "--target", "churn", "--force", cwd=tmp_path).returncode == 0

    check = run("check", "--json", cwd=tmp_path)
    assert check.returncode == 0, check.stderr  # no error findings on clean churn
    report = json.loads(check.stdout)
    found = {f["code"] for f in report["findings"]}
    assert {"missing_values", "class_imbalance"} <= found
    assert not [f for f in report["findings"] if f["check"] == "leakage"]
    assert report["splits"]["strategy"] == "stratified"
    assert (tmp_path / ".shipyard" / "contract.json").exists()

    human = run("check", cwd=tmp_path)
    assert (
        human.returncode == 0 and "class_imbalance" in human.stdout and "split plan" in human.stdout
    )
    # it says which contract it learned: all rows here, the train split's in the bundle
    assert (
        "contract: learned from this data (all rows); the model's bundle keeps the train "
        "split's contract" in " ".join(human.stdout.split())
    )


def test_check_new_data_against_the_contract(tmp_path: Path, churn: pd.DataFrame):
    churn.to_csv(tmp_path / "churn.csv", index=False)
    assert run("init", "churn.csv", "--target", "churn", cwd=tmp_path).returncode == 0
    assert run("check", cwd=tmp_path).returncode == 0
    batch = churn.sample(2000, random_state=0).drop(columns=["payment_method"])
    batch["tenure"] = batch["tenure"].astype(object)
    batch.iloc[:3, batch.columns.get_loc("tenure")] = "unknown"
    batch.to_csv(tmp_path / "batch.csv", index=False)
    result = run("check", "batch.csv", "--json", cwd=tmp_path)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    contract = {
        (f["columns"][0], f["code"]): f for f in report["findings"] if f["check"] == "contract"
    }
    assert contract["payment_method", "missing_column"]["severity"] == "error"
    assert contract["tenure", "wrong_type"]["evidence"]["rows"] == 3
    assert report["contract"].startswith("validated against ")
    assert "the model's bundle keeps the train split's contract" in report["contract"]


def test_check_unlabeled_batch_against_the_contract(tmp_path: Path, churn: pd.DataFrame):
    churn.to_csv(tmp_path / "churn.csv", index=False)
    assert run("init", "churn.csv", "--target", "churn", cwd=tmp_path).returncode == 0
    batch = churn.drop(columns=["churn"]).head(500)
    batch.to_csv(tmp_path / "batch.csv", index=False)
    before = run("check", "batch.csv", cwd=tmp_path)  # no contract learned yet
    assert before.returncode == 2 and "run `shipyard check` on the training data" in before.stderr
    assert run("check", cwd=tmp_path).returncode == 0
    batch.loc[:2, "contract"] = "Ten year"
    batch.to_csv(tmp_path / "batch.csv", index=False)
    result = run("check", "batch.csv", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr  # warnings only: unseen categories can be scored
    report = json.loads(result.stdout)
    codes = {f["code"]: f for f in report["findings"]}
    assert codes["unseen_category"]["evidence"]["rows"] == 3
    assert "unlabeled_data" in codes and report["splits"] == {}


def test_check_exits_1_on_leaky_flights(tmp_path: Path, flights_sample: pd.DataFrame):
    flights_sample.to_parquet(tmp_path / "flights.parquet", index=False)
    assert run("init", "flights.parquet", "--target", "arr_delayed", cwd=tmp_path).returncode == 0
    result = run("check", cwd=tmp_path)
    assert result.returncode == 1
    assert "target_derived" in result.stdout and "arr_delay" in result.stdout


def _spec(tmp_path: Path, data: str, target: str = "y", task: str = "binary") -> None:
    (tmp_path / "shipyard.toml").write_text(
        toml_text({"project": {"target": target, "task": task, "data": data}})
    )


def _good(tmp_path: Path, name: str = "data.csv") -> None:
    rng = np.random.default_rng(0)
    pd.DataFrame(
        {
            "x": rng.normal(size=50),
            "y": rng.integers(0, 2, 50),
            "label": ["a"] * 50,
            "empty": [None] * 50,
        }
    ).to_csv(tmp_path / name, index=False)


BAD_INPUTS = {
    "empty file": (lambda p: (p / "data.csv").write_bytes(b""), "y", "binary", "is empty"),
    "header only": (lambda p: (p / "data.csv").write_text("x,y\n"), "y", "binary", "no rows"),
    "unreadable parquet": (
        lambda p: (p / "data.parquet").write_bytes(b"PAR1garbage"),
        "y",
        "binary",
        "not a readable Parquet file",
    ),
    "non-UTF-8 CSV": (
        lambda p: (p / "data.csv").write_bytes("x,y\nJosé,1\n".encode("latin-1")),
        "y",
        "binary",
        "not UTF-8",
    ),
    "missing target column": (_good, "churn", "binary", "target column 'churn'"),
    "all-null target": (_good, "empty", "binary", "empty in every row"),
    "single-class target": (_good, "label", "binary", "single class"),
    "non-numeric regression target": (_good, "label", "regression", "must be numeric"),
    "path that does not exist": (lambda p: None, "y", "binary", "no such file"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_with_one_clear_message_and_writes_nothing(tmp_path: Path, case):
    make, target, task, message = BAD_INPUTS[case]
    make(tmp_path)
    name = "data.parquet" if (tmp_path / "data.parquet").exists() else "data.csv"
    before = sorted(p.name for p in tmp_path.iterdir())

    init = run("init", name, "--target", target, "--task", task, cwd=tmp_path)
    assert init.returncode == 2, init.stdout + init.stderr
    assert message in init.stderr and init.stderr.startswith("error:")
    _no_traceback(init)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written

    _spec(tmp_path, name, target, task)
    check = run("check", cwd=tmp_path)
    assert check.returncode == 2, check.stdout + check.stderr
    assert message in check.stderr
    _no_traceback(check)
    assert not (tmp_path / ".shipyard").exists()


def test_malformed_and_invalid_spec(tmp_path: Path):
    _good(tmp_path)
    (tmp_path / "shipyard.toml").write_text("[project]\ntarget = 'y\n")
    result = run("check", cwd=tmp_path)
    assert result.returncode == 2 and "not valid TOML" in result.stderr
    _no_traceback(result)
    (tmp_path / "shipyard.toml").write_text(
        "[project]\ntarget = 'y'\ntask = 'binary'\ndata = 'data.csv'\n[split]\nstratgy = 'time'\n"
    )
    result = run("check", cwd=tmp_path)
    assert result.returncode == 2 and "Did you mean 'strategy'?" in result.stderr
    missing = run("check", "--spec", "nope.toml", cwd=tmp_path)
    assert missing.returncode == 2 and "shipyard init" in missing.stderr
    assert not (tmp_path / ".shipyard").exists()


def test_usage_errors_exit_2(tmp_path: Path):
    assert run("init", "data.csv", cwd=tmp_path).returncode == 2  # --target missing
    _good(tmp_path)
    bad_task = run("init", "data.csv", "--target", "y", "--task", "ranking", cwd=tmp_path)
    assert bad_task.returncode == 2 and "--task must be one of" in bad_task.stderr
    assert run("--version", cwd=tmp_path).stdout.startswith("shipyard ")


def test_init_escapes_hostile_column_names(tmp_path: Path, churn: pd.DataFrame):
    frame = churn.sample(600, random_state=0).reset_index(drop=True)
    frame = frame.rename(
        columns={"tenure": 'tenure\nid = "colour"', "contract": "con\x00tract", "female": 'f"e'}
    )
    frame.to_parquet(tmp_path / "churn.parquet", index=False)
    done = run("init", "churn.parquet", "--target", "churn", cwd=tmp_path)
    _no_traceback(done)
    assert done.returncode == 0, done.stderr
    import tomllib

    spec = tomllib.loads((tmp_path / "shipyard.toml").read_text())
    assert spec["project"]["target"] == "churn" and spec["project"].get("id") != "colour"
    check = run("check", "--json", cwd=tmp_path)
    _no_traceback(check)
    roles = json.loads(check.stdout)["roles"]
    assert {'tenure\nid = "colour"', "con\x00tract", 'f"e'} <= set(roles)


def test_unknown_ignore_findings_code_exits_2(tmp_path: Path, churn: pd.DataFrame):
    churn.head(800).to_csv(tmp_path / "churn.csv", index=False)
    assert run("init", "churn.csv", "--target", "churn", cwd=tmp_path).returncode == 0
    typo = run(
        "train", "--ignore-findings", "too_good", "--ignore-findings", "too_god", cwd=tmp_path
    )
    _no_traceback(typo)
    assert typo.returncode == 2
    message = " ".join(typo.stderr.split())
    assert "no check emits 'too_god'" in message and "'too_good'" not in message
    assert "Known codes: association," in message and "target_derived" in message
    assert not (tmp_path / ".shipyard" / "bundles").exists()  # refused before any work


@pytest.mark.parametrize(
    ("command", "usage"),
    [
        ("check", "check [OPTIONS] [DATA]"),
        ("init", "init [OPTIONS] DATA"),
        ("predict", "predict [OPTIONS] IN OUT"),
        ("reproduce", "reproduce [OPTIONS] RUN"),
        ("promote", "promote [OPTIONS] [VERSION]"),
    ],
)
def test_usage_lines_name_arguments_as_the_docs_do(tmp_path: Path, command: str, usage: str):
    shown = run(command, "--help", cwd=tmp_path)
    assert shown.returncode == 0
    line = next(text for text in shown.stdout.splitlines() if "Usage:" in text)
    assert usage in line and "{" not in line  # typer's own: `{data}`, `[data]`


def test_tables_in_a_pipe_keep_every_cell_whole(tmp_path: Path, churn: pd.DataFrame):
    """Rich assumed 80 columns when stdout is not a terminal and cut run ids ("3f9a0c…")
    that `reproduce` then could not use; in a pipe nothing is cut."""
    from shipyard.project import Project

    churn.head(800).to_csv(tmp_path / "churn.csv", index=False)
    assert run("init", "churn.csv", "--target", "churn", cwd=tmp_path).returncode == 0
    tracker = Project.load(tmp_path / "shipyard.toml").tracker()
    ids = []
    for _ in range(2):
        tags = {"shipyard_kind": "train", "data_snapshot_id": "ab" * 32, "chosen_rung": "gbt"}
        with tracker.run("train", tags=tags) as run_id:
            tracker.params({"metric": "roc_auc"})
            tracker.metrics({"dev_roc_auc": 0.8412345, "test_roc_auc": 0.8398765})
            ids.append(run_id)
    listed = run("runs", cwd=tmp_path)  # stdout is a pipe here
    assert listed.returncode == 0, listed.stderr
    assert "…" not in listed.stdout
    for run_id in ids:
        assert run_id in listed.stdout and len(run_id) == 32
    assert "0.8412" in listed.stdout and "abababababab" in listed.stdout
