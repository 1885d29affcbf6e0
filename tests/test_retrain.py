"""``shipyard retrain`` on real NYC flights: a champion trained on January to March, its
prediction log written by PredictionLog from the flights of April to August it served (with
shadow copies of some requests), labels ingested by request id. Retrained on the served
months, the new version scores September better than the old champion; the freshness
guard refuses stale or thinly labeled data unless overridden, and says why."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from shipyard.bundle import load_bundle
from shipyard.data.dataset import Dataset
from shipyard.data.split import make_splits
from shipyard.errors import CheckFailed, DeploymentError, SpecError, UsageError
from shipyard.project import Project
from shipyard.retraining import due, freshness_problems, served_records
from shipyard.serving.log import PredictionLog, feature_types
from shipyard.spec import Spec
from support import FLIGHTS_FLAGGED, flights_project, records_of, shipyard_cli

REASON = "replayed 2013 traffic"


def _months(flights: pd.DataFrame, months: list[int], n: int, seed: int) -> pd.DataFrame:
    rows = flights[flights["month"].isin(months)]
    picked = np.sort(np.random.default_rng(seed).choice(len(rows), n, replace=False))
    return rows.iloc[picked].reset_index(drop=True)


@pytest.fixture(scope="module")
def served(tmp_path_factory, flights):
    """The champion (v1, trained on 4,000 flights of January to March), the 6,000 flights of
    April to August it answered (logged at their scheduled hour, every fifth also answered
    by a shadow), and 3,000 September flights neither model sees."""
    folder = tmp_path_factory.mktemp("retrain")
    project = flights_project(
        folder,
        _months(flights, [1, 2, 3], 4000, seed=1),
        features={"exclude": [*FLIGHTS_FLAGGED, "air_time", "flight"]},
        constraints={"max_data_age_days": 30},
        robustness={"rows": 300, "noise": [1.0]},
        retrain={"window": "200d", "when": ["age"], "max_champion_age_days": 30},
    )
    result = project.train()
    project.promote(result.version, "champion", force=True, reason="test")
    bundle = load_bundle(result.bundle)
    traffic = _months(flights, [4, 5, 6, 7, 8], 6000, seed=2)
    types = feature_types(bundle.contract, bundle.features)
    scores = bundle.predict(traffic[bundle.features])
    log = PredictionLog(project.workspace.logs, batch_rows=2000, flush_seconds=60)
    stamps = pd.to_datetime(traffic["time_hour"], utc=True)
    for i, (record, score, stamp) in enumerate(
        zip(records_of(traffic[bundle.features]), scores, stamps, strict=True)
    ):
        entry = {
            "request_id": f"r{i}",
            "time": stamp.timestamp(),
            "entity_id": None,
            "model_version": result.version,
            "arm": "champion",
            "features": record,
            "types": types,
            "prediction": float(score),
            "latency_ms": 1.0,
            "warnings": [],
            "error": None,
        }
        log.append(entry)
        if i % 5 == 0:  # a shadow's answer to the same request: never a training row
            log.append({**entry, "arm": "shadow", "model_version": 99, "prediction": 0.5})
    log.close()
    september = _months(flights, [9], 3000, seed=3)
    return project, bundle, traffic, september


def _labels(project: Project, rows: pd.DataFrame, ids: list[str], name: str) -> None:
    """Only these labels in the store: ``rows``' delays, under request ids ``ids``."""
    shutil.rmtree(project.workspace.labels, ignore_errors=True)
    path = project.spec.root / name
    pd.DataFrame({"request_id": ids, "arr_delayed": rows["arr_delayed"].to_numpy()}).to_csv(
        path, index=False
    )
    project.labels(path)


def _label_all(project: Project, traffic: pd.DataFrame) -> None:
    """Labels for every answer but those of the last four days (not matured yet)."""
    stamps = pd.to_datetime(traffic["time_hour"], utc=True)
    matured = traffic[stamps < stamps.max() - pd.Timedelta(days=4)]
    _labels(project, matured, [f"r{i}" for i in matured.index], "labels.csv")


def _refused(project: Project, **options) -> str:
    """The message of the retrain's refusal (CheckFailed: exit 1)."""
    with pytest.raises(CheckFailed) as caught:
        project.retrain(**options)
    return str(caught.value)


def test_no_labels_and_labels_of_another_model_are_refused(served):
    project, _, traffic, _ = served
    shutil.rmtree(project.workspace.labels, ignore_errors=True)
    message = _refused(project)
    assert "no labeled production records in the window" in message
    assert "6,000 request(s) there, none with a label" in message
    _labels(project, traffic.head(500), [f"other-{i}" for i in range(500)], "foreign.csv")
    message = _refused(project)
    assert "500 of the 500 stored labels name request ids that match no logged answer" in message
    assert "a different model or service" in message


def test_thin_labels_and_stale_labels_are_refused_with_the_numbers(served):
    project, _, traffic, _ = served
    few = traffic.sample(1200, random_state=4)
    _labels(project, few, [f"r{i}" for i in few.index], "few.csv")
    message = _refused(project, now=dt.datetime(2013, 9, 2, tzinfo=dt.UTC))
    assert "retraining refused" in message and "max_data_age_days" not in message
    assert "1,200 of the 6,000 answered requests in the window" in message
    assert "(20.0%), below [retrain] min_labeled_share = 0.5" in message
    # the newest label is from August 2013: years past the 30 days allowed
    _label_all(project, traffic)
    run = shipyard_cli(project.spec.root, "retrain")
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "days old, over [constraints] max_data_age_days = 30" in run.stderr
    print(run.stderr)
    assert "min_labeled_share" not in run.stderr and "--allow-stale --reason" in run.stderr
    run = shipyard_cli(project.spec.root, "retrain", "--allow-stale")
    assert run.returncode == 2 and "--allow-stale needs --reason" in run.stderr
    with pytest.raises(UsageError, match="'3mo' is not a span of time"):
        project.retrain(window="3mo")
    # two days after the newest label, with most answers labeled, nothing is refused
    champion = load_bundle(project.workspace.bundle("champion").path)
    data = pd.read_parquet(project.spec.data_path)
    fresh = served_records(
        project.spec,
        project.workspace,
        champion,
        data,
        since=None,
        window="200d",
        now=dt.datetime(2013, 9, 2, tzinfo=dt.UTC),
    )
    assert freshness_problems(fresh, project.spec) == []
    assert fresh.newest_label_age_days == pytest.approx(6, abs=1.5)
    assert list(fresh.rows.columns) == list(data.columns)
    assert fresh.rows["arr_delayed"].isin([True, False]).all()


@pytest.fixture(scope="module")
def retrained(served):
    """Every matured answer labeled, the data file changed (its first ten rows dropped),
    then `shipyard retrain --allow-stale --reason …`."""
    project, _, traffic, _ = served
    _label_all(project, traffic)
    data = pd.read_parquet(project.spec.data_path)
    data.iloc[10:].to_parquet(project.spec.data_path, index=False)
    run = shipyard_cli(project.spec.root, "retrain", "--allow-stale", "--reason", REASON, "--json")
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


def test_retrained_on_served_months_beats_the_old_champion_on_september(served, retrained):
    project, champion, traffic, september = served
    stamps = pd.to_datetime(traffic["time_hour"], utc=True)
    labeled = int((stamps < stamps.max() - pd.Timedelta(days=4)).sum())
    assert retrained["added_rows"] == labeled  # one row per request: no shadow copies
    assert retrained["data_rows"] == 3990
    assert retrained["answered"] == 6000
    assert retrained["labeled_share"] == pytest.approx(labeled / 6000)
    new = load_bundle(retrained["train"]["bundle"])
    y = september["arr_delayed"].to_numpy()
    old_auc = roc_auc_score(y, champion.predict(september[champion.features]))
    new_auc = roc_auc_score(y, new.predict(september[new.features]))
    print(
        f"September ROC AUC on {len(september):,} flights: old champion {old_auc:.4f}, "
        f"retrained with {retrained['added_rows']:,} served rows {new_auc:.4f}"
    )
    assert new_auc > old_auc
    # the newest rows, served in summer, are the test split of the combined data
    recorded = json.loads((new.path / "spec.json").read_text())
    ds = Dataset(pd.read_parquet(retrained["data"]), Spec.from_dict(recorded, project.spec.root))
    splits = make_splits(ds)
    times = pd.to_datetime(ds.frame["time_hour"], utc=True)
    assert times.iloc[splits.test].min() >= times.iloc[splits.train].max()
    assert times.iloc[splits.test].min() >= pd.Timestamp("2013-07-01", tz="UTC")


def test_the_retrain_is_tracked_recorded_and_enters_as_shadow(served, retrained):
    project, _, _, _ = served
    version = retrained["train"]["version"]
    state = project.registry.state()
    assert (state.champion, state.challenger, state.mode) == (1, version, "shadow")
    assert retrained["promoted"]["to"] == "shadow" and retrained["exit_code"] == 0
    assert retrained["allow_stale"] and retrained["reason"] == REASON
    assert any("max_data_age_days = 30" in p for p in retrained["stale"])
    assert retrained["data_changed"] and any(
        "changed since champion v1 was trained" in w for w in retrained["warnings"]
    )
    tags = project.tracker().get_run(retrained["train"]["run_id"]).tags
    assert tags["shipyard_retrain"] == "true" and tags["retrain_allow_stale"] == "true"
    assert tags["retrain_stale_reason"] == REASON
    assert tags["retrain_window"] == "200d"
    assert int(tags["retrain_rows_added"]) == retrained["added_rows"]
    assert float(tags["retrain_labeled_share"]) == pytest.approx(
        retrained["labeled_share"], abs=1e-4
    )
    assert float(tags["retrain_newest_label_age_days"]) > 365 * 13
    assert tags["retrain_data_snapshot_id"] == retrained["data_snapshot_id"]
    # the version's spec names the combined data, so its test split can be rebuilt
    recorded = json.loads((Path(retrained["train"]["bundle"]) / "spec.json").read_text())
    assert recorded["project"]["data"].startswith(".shipyard/retrain/data-")


def test_monitor_retrain_says_why_not_and_retrains_when_a_trigger_holds(served, retrained):
    project, _, _, _ = served
    run = shipyard_cli(project.spec.root, "monitor", "--retrain", "--since", "2013-08-28", "--json")
    assert "Traceback" not in run.stderr
    document = json.loads(run.stdout)
    assert document["retrain_due"] == [] and document["retrain"] is None
    assert run.returncode == document["monitor"]["exit_code"] == document["exit_code"]
    # a champion past its age is due: the retrain runs, and its freshness guard refuses
    text = project.spec_path.read_text().replace(
        "max_champion_age_days = 30", "max_champion_age_days = 1e-06"
    )
    (project.spec.root / "aged.toml").write_text(text)
    run = shipyard_cli(
        project.spec.root,
        "monitor",
        "--retrain",
        "--since",
        "2013-08-28",
        "--spec",
        "aged.toml",
        "--json",
    )
    document = json.loads(run.stdout)
    assert run.returncode == 1 == document["exit_code"] and document["retrain"] is None
    assert document["retrain_due"][0].startswith("the champion is ")
    assert "over [retrain] max_champion_age_days = 1e-06" in document["retrain_due"][0]
    assert "over [constraints] max_data_age_days = 30" in run.stderr
    # the champion was trained today: only an older one is due
    created = load_bundle(project.workspace.bundle("champion").path).manifest["created"]
    later = dt.datetime.fromisoformat(created) + dt.timedelta(days=31)
    assert due(project.spec, 0, created, later) == [
        "the champion is 31.0 days old, over [retrain] max_champion_age_days = 30"
    ]
    assert due(project.spec, 3, created, later - dt.timedelta(days=2)) == []  # alert not a trigger


def test_the_retrain_section_is_validated():
    with pytest.raises(SpecError) as caught:
        Spec.from_dict(
            {
                "project": {"target": "y", "task": "binary"},
                "retrain": {"whenn": ["alert"], "when": ["age", "sometimes"], "window": "3mo"},
            }
        )
    text = str(caught.value)
    assert "unknown key 'retrain.whenn'" in text and "Did you mean 'when'?" in text
    assert "'retrain.when' must be a list of distinct triggers from 'alert', 'age'" in text
    assert "'retrain.window' must be a span of hours or days" in text
    with pytest.raises(SpecError, match=r"needs 'retrain\.max_champion_age_days'"):
        Spec.from_dict({"project": {"target": "y", "task": "binary"}, "retrain": {"when": ["age"]}})
    spec = Spec.from_dict({"project": {"target": "y", "task": "binary"}})
    assert "retrain" not in spec.to_dict()  # a spec without [retrain] hashes as before
    assert spec.retrain.min_labeled_share == 0.5 and spec.retrain.window == "90d"


def test_without_a_champion_or_with_a_reason_alone_nothing_is_done(tmp_path, flights):
    project = flights_project(tmp_path, _months(flights, [1], 300, seed=5))
    with pytest.raises(DeploymentError, match="champion"):
        project.retrain()
    with pytest.raises(UsageError, match="--reason goes with --allow-stale"):
        project.retrain(reason="why not")
    with pytest.raises(UsageError, match="give --since or --window, not both"):
        project.retrain(since="2013-05-01", window="30d")
    assert not (project.workspace.folder / "retrain").exists()


def test_fresh_labels_pass_the_guard_and_a_failed_gate_keeps_the_version_out(served, retrained):
    """The same served months seen from two days after the newest label: nothing refused,
    nothing overridden. Under a latency limit no model meets, the new version is registered
    but kept out of shadow, the failed gate named; the earlier retrain stays the shadow."""
    from rich.console import Console

    from shipyard.cli import print_retrain

    project, _, _, _ = served
    strict = project.spec.root / "strict.toml"
    strict.write_text(
        project.spec_path.read_text().replace(
            "[constraints]\n", "[constraints]\np99_latency_ms = 1e-06\n"
        )
    )
    result = Project.load(strict).retrain(now=dt.datetime(2013, 8, 30, tzinfo=dt.UTC))
    assert result.stale == [] and not result.allow_stale
    assert result.data == retrained["data"]  # the same rows: the same combined file
    assert result.newest_label_age_days == pytest.approx(1.96, abs=0.01)
    assert result.promoted is None and result.exit_code == 1
    assert any("p99" in f or "latency" in f for f in result.failures), result.failures
    state = project.registry.state()
    assert (state.champion, state.challenger, state.mode) == (
        1,
        retrained["train"]["version"],
        "shadow",
    )
    assert result.train.version == retrained["train"]["version"] + 1  # registered all the same
    tags = project.tracker().get_run(result.train.run_id).tags
    assert tags["retrain_allow_stale"] == "false" and tags["retrain_stale_reason"] == ""
    console = Console(record=True, width=200)
    print_retrain(result, console)
    text = console.export_text()
    assert f"+ {result.added_rows:,} labeled production records" in text
    assert f"version {result.train.version} is registered but not promoted to shadow" in text


def test_logged_rows_take_the_data_files_types():
    """A regression target from the labels' numbers, a datetime time column in the data's
    zone, a year-like time left to the logged feature, text and booleans as objects."""
    from shipyard.retraining import _as_data_rows

    data = pd.DataFrame(
        {
            "at": pd.to_datetime(["2013-01-01 05:00"]).tz_localize("America/New_York"),
            "delay": [3.0],
            "carrier": pd.Series(["UA"], dtype="str"),
            "late": [True],
        }
    )
    labeled = pd.DataFrame(
        {
            "time": pd.to_datetime(["2013-06-01T12:00:00Z"], utc=True),
            "entity_id": [None],
            "label": ["12.5"],
            "outcome": [12.5],
            "f.carrier": pd.Series([None], dtype="str"),
            "f.late": [False],
        }
    )
    spec = Spec.from_dict({"project": {"target": "delay", "task": "regression", "time": "at"}})
    rows = _as_data_rows(labeled, data, spec, "f.")
    assert rows["at"].iloc[0] == pd.Timestamp("2013-06-01 08:00", tz="America/New_York")
    assert str(rows["at"].dtype) == str(data["at"].dtype)
    assert rows["delay"].tolist() == [12.5]
    assert rows["carrier"].tolist() == [None] and rows["late"].tolist() == [False]
    combined = pd.concat([data, rows], ignore_index=True)
    assert combined["late"].tolist() == [True, False]
    years = data.assign(at=[2013])
    spec = Spec.from_dict({"project": {"target": "delay", "task": "regression", "time": "at"}})
    assert _as_data_rows(labeled, years, spec, "f.")["at"].isna().all()  # not logged: missing


def test_a_logged_rows_time_is_the_clock_monitor_windows_it_by():
    """Answers served within one second keep their order (the answer's time to the
    microsecond, where the data writes its time as text); under ``clock = "event"`` a row's
    time is the request's own, as replayed traffic is monitored."""
    from shipyard.retraining import _as_data_rows

    data = pd.DataFrame({"at": ["2013-01-01T05:00:00Z"], "delay": [3.0]})
    labeled = pd.DataFrame(
        {
            "time": pd.to_datetime(
                ["2026-12-04T03:46:01.250000Z", "2026-12-04T03:46:01.750000Z"], utc=True
            ),
            "entity_id": [None, None],
            "label": ["1", "2"],
            "outcome": [1.0, 2.0],
            "f.at": ["2013-05-01T10:00:00Z", "2013-05-02T11:00:00Z"],
        }
    )
    project = {"target": "delay", "task": "regression", "time": "at"}
    logged = _as_data_rows(labeled, data, Spec.from_dict({"project": project}), "f.")
    assert logged["at"].tolist() == [
        "2026-12-04T03:46:01.250000Z",
        "2026-12-04T03:46:01.750000Z",
    ]
    event = Spec.from_dict({"project": project, "monitoring": {"clock": "event"}})
    assert _as_data_rows(labeled, data, event, "f.")["at"].tolist() == [
        "2013-05-01T10:00:00Z",
        "2013-05-02T11:00:00Z",
    ]
