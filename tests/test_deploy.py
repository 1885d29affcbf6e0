"""Deploying on NYC flights: champion, shadow, canary, champion, rollback; kill -9 mid-promotion;
batch scoring of the full table with both engines; gates refusing what should not ship."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shipyard.bundle import load_bundle
from shipyard.demo import FLIGHTS_RULE
from shipyard.errors import BundleError, RegistryLocked
from shipyard.project import Project
from shipyard.registry import Deployment
from support import FLIGHTS_FLAGGED as FLAGGED
from support import churn_project, toml_text


def _spec(data: str, exclude: list[str]) -> str:
    return toml_text(
        {
            "project": {
                "name": "flights",
                "task": "binary",
                "target": "arr_delayed",
                "data": data,
                "positive": True,
                "id": "tailnum",
                "time": "time_hour",
            },
            "features": {"exclude": exclude, "slices": ["origin"]},
            "baseline": {"rule": FLIGHTS_RULE},
            "split": {"train": 0.8, "dev": 0.1, "test": 0.1, "purge_entities": False},
            "serving": {"canary_steps": [5, 10, 25, 50, 100]},
        }
    )


def cli(folder: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "shipyard", *args, "--spec", str(folder / "shipyard.toml")],
        capture_output=True,
        text=True,
        cwd=folder,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def aliases(project: Project) -> dict[str, int]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(project.tracker().uri)
    return {a: int(v) for a, v in client.get_registered_model("flights").aliases.items()}


@pytest.fixture(scope="module")
def flow(tmp_path_factory, flights):
    """v1: January–August, without the departure hour (nor the time column, whose hour it
    is); v2: January–October, with both."""
    folder = tmp_path_factory.mktemp("flights-deploy")
    sample = flights.iloc[::3].reset_index(drop=True)
    sample[sample["month"] <= 8].to_parquet(folder / "jan_aug.parquet", index=False)
    sample[sample["month"] <= 10].to_parquet(folder / "jan_oct.parquet", index=False)
    spec = folder / "shipyard.toml"
    spec.write_text(_spec("jan_aug.parquet", [*FLAGGED, "hour", "time_hour"]))
    first = Project.load(spec).train()
    promoted = Project.load(spec).promote(first.version, "champion")
    spec.write_text(_spec("jan_oct.parquet", FLAGGED))
    second = Project.load(spec).train()
    return folder, first, second, promoted


def test_january_to_october_challenger_goes_shadow_canary_champion_and_rolls_back(flow):
    folder, first, second, promoted = flow
    project = Project.load(folder / "shipyard.toml")
    assert first.readiness["passed"] and promoted.after["champion"] == first.version == 1
    # v2 was judged against the champion at train time (item 3), slice by slice
    item3 = second.readiness["items"][2]
    assert item3["evidence"]["champion"]["version"] == 1
    assert second.readiness["passed"], [i["summary"] for i in second.readiness["items"]]

    shadow = json.loads(cli(folder, "promote", "2", "--to", "shadow", "--json").stdout)
    assert shadow["after"] == {"champion": 1, "challenger": 2, "mode": "shadow", "percent": 0.0}
    assert aliases(project) == {"champion": 1, "challenger": 2}
    canary = json.loads(
        cli(folder, "promote", "2", "--to", "canary", "--percent", "10", "--json").stdout
    )
    assert canary["after"]["mode"] == "canary" and canary["after"]["percent"] == 10.0

    champion = json.loads(cli(folder, "promote", "2", "--to", "champion", "--json").stdout)
    versus = champion["versus"]
    # scored on the same, newest test split: v2's (September–October flights)
    assert versus["rows"] > 5000 and versus["improvement"] >= versus["min_improvement"]
    assert versus["candidate"] > versus["champion"]
    assert champion["after"] == {"champion": 2, "challenger": None, "mode": None, "percent": 0.0}
    assert aliases(project) == {"champion": 2}

    started = time.perf_counter()
    back = project.rollback(reason="test: restore the first")
    assert time.perf_counter() - started < 30  # the alias mirror included; the commit is ms
    assert back.committed_seconds < 1.0
    assert back.after["champion"] == 1 and back.rolled_back == 2
    assert aliases(project) == {"champion": 1}

    listing = json.loads(cli(folder, "models", "--json").stdout)
    roles = {v["version"]: v["role"] for v in listing["versions"]}
    assert roles == {1: "champion", 2: "rolled back"}
    assert [v["aliases"] for v in listing["versions"]] == [["champion"], []]
    history = listing["history"]
    assert [(h["action"], h.get("to")) for h in history] == [
        ("promote", "champion"),
        ("promote", "shadow"),
        ("promote", "canary"),
        ("promote", "champion"),
        ("rollback", None),
    ]
    assert history[-1]["reason"] == "test: restore the first" and history[-1]["actor"]
    human = cli(folder, "models").stdout
    assert "rolled back" in human and "rollback of v2 → champion v1" in human

    # a rolled-back version does not silently return
    refused = cli(folder, "promote", "2", "--to", "champion", check=False)
    assert refused.returncode == 1 and "was rolled back" in refused.stderr


#: deployment records that are JSON but make no sense (what the hostile trial wrote)
NONSENSE = {
    "null champion": {
        "model": "flights",
        "revision": 9,
        "champion": None,
        "champions": [None, "x"],
    },
    "text champion": {"model": "flights", "revision": 9, "champion": "abc", "champions": ["abc"]},
    "bundle outside": {
        "model": "flights",
        "revision": 9,
        "champion": 1,
        "champions": [1, 2],
        "bundles": {"1": "../../../../etc", "2": "../../../../etc"},
    },
    "history text": {"model": "flights", "revision": 9, "champion": 1, "history": "abc"},
}


@pytest.mark.parametrize("case", sorted(NONSENSE))
def test_a_nonsense_record_is_refused_by_rollback_and_the_aliases_stay(flow, case):
    folder = flow[0]
    project = Project.load(folder / "shipyard.toml")
    before, record = aliases(project), project.registry.path
    good = record.read_bytes()
    record.write_text(json.dumps(NONSENSE[case]))
    try:
        done = cli(folder, "rollback", "--reason", "test", check=False)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "is not a valid deployment state" in done.stderr and str(record) in done.stderr
        assert aliases(project) == before  # MLflow's aliases untouched
        assert json.loads(record.read_text()) == NONSENSE[case]  # nothing written over it
    finally:
        record.write_bytes(good)


def test_a_retrain_with_nothing_new_is_refused_as_champion(flow):
    """January–October without the hour, like the champion: two more months of data alone."""
    folder, _, _, _ = flow
    spec = folder / "shipyard.toml"
    text = spec.read_text()
    spec.write_text(_spec("jan_oct.parquet", [*FLAGGED, "hour", "time_hour"]))
    try:
        third = Project.load(spec).train()
    finally:
        spec.write_text(text)
    proc = cli(folder, "promote", str(third.version), "--to", "champion", check=False)
    assert proc.returncode == 1 and "refused" in proc.stderr
    assert "beats the champion" in proc.stderr or "slices_hold" in proc.stderr
    assert Project.load(spec).registry.state().champion == 1


def test_kill_9_during_promote_leaves_old_or_new_state_and_aliases_are_repaired(flow):
    folder, _, _, _ = flow
    project = Project.load(folder / "shipyard.toml")
    registry = project.registry
    command = [
        sys.executable,
        "-m",
        "shipyard",
        "promote",
        "2",
        "--force",
        "--reason",
        "kill trial",
        "--spec",
        str(folder / "shipyard.toml"),
    ]
    started = time.perf_counter()
    subprocess.run([*command, "--to", "shadow"], check=True, capture_output=True)
    full = time.perf_counter() - started  # one whole promotion, alias mirror included
    rng = random.Random(11)
    outcomes = {"old": 0, "new": 0}
    for trial in range(6):
        before = registry.state()
        target = ["--to", "canary", "--percent", str(10 + trial)]
        proc = subprocess.Popen(
            [*command, *target], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(0.3, 1.0) * full)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        after = registry.state()
        if after.revision == before.revision:
            assert after == before
            outcomes["old"] += 1
        else:
            assert after.revision == before.revision + 1
            assert after.summary() == {
                "champion": 1,
                "challenger": 2,
                "mode": "canary",
                "percent": float(10 + trial),
            }
            assert after.history[:-1] == before.history
            outcomes["new"] += 1
        assert not list(registry.folder.glob("*.tmp")) or after.revision >= before.revision
    assert sum(outcomes.values()) == 6
    # a kill between the commit and the alias mirror leaves MLflow behind: models repairs it
    from mlflow.tracking import MlflowClient

    client = MlflowClient(project.tracker().uri)
    client.set_registered_model_alias("flights", "champion", "2")  # a hand edit in the UI
    listing = json.loads(cli(folder, "models", "--json").stdout)
    assert listing["repairs"]
    state = registry.state()
    assert aliases(project) == {"champion": state.champion, "challenger": state.challenger}
    # leave the flow's state as the next tests expect it
    registry.update(
        "test",
        lambda s: Deployment.from_dict(
            {**s.to_dict(), "challenger": None, "mode": None, "percent": 0.0}
        ),
    )


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance for the module (shipyard leaves a running instance up)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_predict_full_flights_matches_bundle_predict_with_both_engines(
    flow, flights, tmp_path, ray_local
):
    folder, first, _, _ = flow
    full = tmp_path / "flights.parquet"
    flights.to_parquet(full, index=False, row_group_size=50_000)
    bundle = load_bundle(first.bundle)
    expected = bundle.predict(flights[bundle.features])
    outputs = {}
    project = Project.load(folder / "shipyard.toml")
    # the command line once (local), then the Python API twin with Ray already running
    proc = cli(folder, "predict", str(full), str(tmp_path / "local.parquet"), "--json")
    summary = json.loads(proc.stdout)
    assert summary["rows"] == len(flights) and summary["version"] == 1
    outputs["local"] = pd.read_parquet(tmp_path / "local.parquet")
    result = project.predict(full, tmp_path / "ray.parquet", engine="ray")
    assert result.rows == len(flights) and result.engine == "ray"
    outputs["ray"] = pd.read_parquet(tmp_path / "ray.parquet")
    local, ray = outputs["local"], outputs["ray"]
    np.testing.assert_array_equal(local["prediction"].to_numpy(), expected)
    pd.testing.assert_frame_equal(local, ray)
    assert local["tailnum"].tolist()[:100] == flights["tailnum"].tolist()[:100]
    assert (local["model_version"] == 1).all()


def test_predict_with_bad_rows_writes_the_side_file_with_both_engines(
    flow, flights, tmp_path, ray_local
):
    folder, _first, _, _ = flow
    bad = flights.head(3000).copy()
    bad.loc[10, "distance"] = -5.0  # below anything seen: scored, listed
    bad.loc[20, "carrier"] = "ZZ"  # a carrier training never saw: scored, listed
    bad.to_csv(tmp_path / "bad.csv", index=False)
    frames = {}
    for engine in ("local", "ray"):
        out = tmp_path / f"bad-{engine}.parquet"
        result = Project.load(folder / "shipyard.toml").predict(
            tmp_path / "bad.csv", out, engine=engine, chunk_rows=1000
        )
        summary = result.to_dict()
        problems = pd.read_parquet(summary["problems_file"])
        frames[engine] = problems
        hits = problems.set_index("row")
        assert (
            hits.loc[10, "reason"] == "out_of_range" and hits.loc[20, "reason"] == "unseen_category"
        )
        assert summary["rows"] == 3000
    pd.testing.assert_frame_equal(frames["local"], frames["ray"])


def test_an_impossible_p99_is_refused_by_promote_naming_the_item(tmp_path, churn):
    project = churn_project(tmp_path, churn, constraints={"p99_latency_ms": 0.0001})
    result = project.train()
    assert not result.readiness["passed"]
    proc = cli(tmp_path, "promote", str(result.version), "--to", "champion", check=False)
    assert proc.returncode == 1
    assert "2. constraints_met" in proc.stderr and "p99_latency_ms" in proc.stderr
    assert project.registry.state() == Deployment("churn")  # unchanged: nothing deployed
    assert not project.registry.path.exists()


def test_a_bundle_that_fails_verification_is_refused_and_nothing_changes(tmp_path, churn):
    project = churn_project(tmp_path, churn, constraints={"max_ece": 0.5})
    result = project.train()
    model_file = next((result.bundle / "model").iterdir())
    model_file.write_text(model_file.read_text() + " ")
    with pytest.raises(BundleError, match="changed since the bundle was written"):
        project.promote(result.version, "champion", force=True, reason="test")
    assert project.registry.state().revision == 0
    proc = cli(tmp_path, "promote", "99", "--to", "champion", check=False)
    assert proc.returncode == 2 and "has no version 99" in proc.stderr
    proc = cli(tmp_path, "promote", "other/1", "--to", "champion", check=False)
    assert proc.returncode == 2 and "model 'other'" in proc.stderr


def test_rollback_wins_while_a_slow_promotion_checks_its_gates(tmp_path, churn):
    project = churn_project(tmp_path, churn, constraints={"max_ece": 0.5})
    assert (project.train().version, project.train().version) == (1, 2)
    project.promote(1, "champion", force=True, reason="test")
    project.promote(2, "champion", force=True, reason="test")
    checking, release = threading.Event(), threading.Event()

    def slow(stage: str) -> None:  # the gate check of a big test split, held open
        if stage == "checking the gates":
            checking.set()
            assert release.wait(60)

    outcome: dict[str, object] = {}

    def promote() -> None:
        try:
            project.promote(1, "shadow", force=True, reason="slow", progress=slow)
        except RegistryLocked as exc:
            outcome["refused"] = str(exc)

    worker = threading.Thread(target=promote)
    worker.start()
    assert checking.wait(60)
    started = time.perf_counter()
    back = project.rollback(reason="emergency", mirror="skip")  # while the gates are checked
    took = time.perf_counter() - started
    release.set()
    worker.join(60)
    assert back.after["champion"] == 1 and back.rolled_back == 2 and took < 5
    # the promotion was judged against a state that is gone: refused, nothing committed
    assert "changed while the gates were checked" in str(outcome["refused"])
    state = project.registry.state()
    assert (state.champion, state.challenger, state.rolled_back) == (1, None, (2,))
    assert [h["action"] for h in state.history] == ["promote", "promote", "rollback"]
