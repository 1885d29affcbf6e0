"""``shipyard monitor`` over a real prediction log: a churn champion trained on 1,500
customers, its log written by PredictionLog from the customers it never saw; drift and
pipeline faults planted in that live traffic are found on their column and nowhere else."""

from __future__ import annotations

import dataclasses
import http.server
import json
import re
import shutil
import threading
import time
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from shipyard.cli import app
from shipyard.errors import DataError, DeploymentError, ReferenceMissing, UsageError
from shipyard.monitoring.monitor import Latencies, iso, parse_window
from shipyard.monitoring.results import COLUMNS, KEY, read_results
from shipyard.monitoring.watch import monitor
from shipyard.project import Project
from shipyard.serving.log import PredictionLog, feature_types
from shipyard.spec import MonitoringSection, Spec
from shipyard.workspace import Workspace
from support import churn_champion, free_port, records_of

DAY = 1_780_012_800.0  # 2026-05-29 00:00 UTC


@pytest.fixture(scope="module")
def trained(tmp_path_factory, churn):
    return churn_champion(tmp_path_factory.mktemp("churn-monitor"), churn)


@pytest.fixture
def project(trained):
    """The trained project with an empty log and no results kept."""
    project = trained[0]
    for folder in (project.workspace.logs, project.workspace.folder / "monitoring"):
        shutil.rmtree(folder, ignore_errors=True)
    return project


def write_log(
    project,
    bundle,
    version,
    frame,
    *,
    start=DAY,
    step=10.0,
    arm="champion",
    predictions=None,
    latency=None,
    errors=None,
):
    """Log ``frame``'s rows as the service does (typed by the contract), ``step`` seconds
    apart from ``start``; the model's real output unless ``predictions`` is given."""
    types = feature_types(bundle.contract, bundle.features)
    output = bundle.predict(frame) if predictions is None else predictions
    log = PredictionLog(project.workspace.logs, batch_rows=2000, flush_seconds=60)
    for i, (record, score) in enumerate(zip(records_of(frame), output, strict=True)):
        failed = errors is not None and errors[i]
        log.append(
            {
                "request_id": f"r{i}",
                "time": start + i * step,
                "entity_id": None,
                "model_version": version,
                "arm": arm,
                "features": record,
                "types": types,
                "prediction": None if failed else float(score),
                "latency_ms": float(latency[i]) if latency is not None else 1.0 + (i % 7) * 0.1,
                "warnings": [],
                "error": "boom" if failed else None,
            }
        )
    log.close()


def fired(result, level="alert"):
    return {
        (a["section"], a["column"], a["statistic"]) for a in result.alerts if a["level"] == level
    }


def test_identical_traffic_raises_no_alert_and_its_results_are_kept_once(trained, project):
    _, bundle, version, live = trained
    write_log(project, bundle, version, live)
    before = {p: p.read_bytes() for p in project.workspace.logs.rglob("*.parquet")}
    result = project.monitor(window="1d")
    assert result.exit_code == 0 and fired(result) == set()
    assert (result.rows_read, result.windows, result.versions) == (len(live), 1, [version])
    frame = result.frame()
    assert list(frame.columns) == list(COLUMNS)
    psi = frame[(frame.section == "feature_drift") & (frame.statistic == "psi")]
    assert set(psi.column) == set(bundle.features) - {"rownames"} and (psi.value < 0.1).all()
    rows = frame[(frame.section == "system") & (frame.statistic == "rows")]
    assert rows.value.tolist() == [len(live)]
    p50 = frame[frame.statistic == "latency_p50"].value.item()
    assert p50 == pytest.approx(1.3, rel=0.01)  # latencies 1.0 … 1.6 ms, evenly
    mean = frame[frame.statistic == "mean_prediction"].value.item()
    assert mean == pytest.approx(float(bundle.predict(live).mean()), rel=1e-9)
    kept = read_results(project.workspace)
    assert len(kept) == len(frame)
    again = project.monitor(window="1d")  # the same window again replaces its rows
    assert len(read_results(project.workspace)) == len(kept) == len(again.rows)
    project.monitor(window="6h")  # other windows are kept beside them
    every = read_results(project.workspace)
    assert len(every) > len(kept) and not every.duplicated(list(KEY)).any()
    assert every.model_version.dropna().unique().tolist() == [version]
    assert {p: p.read_bytes() for p in project.workspace.logs.rglob("*.parquet")} == before


def test_drift_planted_in_one_column_is_flagged_on_that_column_only(trained, project):
    _, bundle, version, live = trained
    shifted = live.copy()
    shifted["monthly_charges"] = shifted["monthly_charges"] + 25.0
    write_log(project, bundle, version, shifted)
    result = project.monitor(window="1d")
    drifted = {c for s, c, _ in fired(result) if s == "feature_drift"}
    assert drifted == {"monthly_charges"}
    (alert,) = [
        a
        for a in result.alerts
        if a["column"] == "monthly_charges" and a["section"] == "feature_drift"
    ]
    assert re.match(
        r"significant \(ks p=.*\) and psi [0-9.]+ over the alert floor 0.2", alert["note"]
    )
    assert result.exit_code == 1


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("null", ("quality", "total_charges", "null_rate")),
        ("unit", ("quality", "monthly_charges", "range_violation_rate")),
        ("rename", ("quality", "contract", "unseen_rate")),
    ],
)
def test_each_pipeline_fault_raises_its_alert(trained, project, fault, expected):
    _, bundle, version, live = trained
    broken = live.copy()
    if fault == "null":
        broken["total_charges"] = np.nan
    elif fault == "unit":
        broken["monthly_charges"] = broken["monthly_charges"] * 100
    else:
        broken["contract"] = broken["contract"].replace("Month-to-month", "monthly")
    write_log(project, bundle, version, broken)
    result = project.monitor(window="1d")
    assert expected in fired(result)
    assert {c for _, c, _ in fired(result)} <= {expected[1], "score", ""}
    if fault != "null":  # the distribution moved too
        assert ("feature_drift", expected[1]) in {(s, c) for s, c, _ in fired(result)}


def test_a_shadow_is_compared_with_the_champion_on_the_same_requests(trained, project):
    _, bundle, version, live = trained
    frame = live.head(800)
    scores = bundle.predict(frame)
    write_log(project, bundle, version, frame, predictions=scores)
    flipped = scores.copy()
    flipped[:200] = 1 - flipped[:200]
    write_log(project, bundle, version, frame, arm="shadow", predictions=flipped)
    result = project.monitor(window="1d")
    frame_ = result.frame()
    (row,) = frame_[frame_.statistic == "agreement"].itertuples()
    changed = ((scores[:200] >= 0.5) != (flipped[:200] >= 0.5)).sum()
    assert row.arm == "shadow" and row.value == pytest.approx(1 - changed / 800)
    volume = frame_[frame_.statistic == "rows"]
    assert volume[volume.section == "volume"].value.tolist() == [800]  # the shadow copies


def test_volume_latency_and_errors_follow_the_monitoring_rules(trained, project):
    _, bundle, version, live = trained
    frame = live.head(1300)
    # 5 hours of 250 requests, then an hour of 50: the volume dropped
    times = np.concatenate([np.arange(1250) * 14.4, 5 * 3600 + np.arange(50) * 60.0])
    latency = np.where(np.arange(1300) % 50 == 0, 80.0, 2.0)
    errors = np.arange(1300) % 25 == 0
    types = feature_types(bundle.contract, bundle.features)
    log = PredictionLog(project.workspace.logs, batch_rows=5000, flush_seconds=60)
    for i, (record, score) in enumerate(zip(records_of(frame), bundle.predict(frame), strict=True)):
        log.append(
            {
                "request_id": f"r{i}",
                "time": DAY + times[i],
                "entity_id": None,
                "model_version": version,
                "arm": "champion",
                "features": record,
                "types": types,
                "prediction": None if errors[i] else float(score),
                "latency_ms": latency[i],
                "warnings": ["tenure: out_of_range"] if i < 13 else [],
                "error": "boom" if errors[i] else None,
            }
        )
    log.close()
    spec = dataclasses.replace(project.spec, monitoring=MonitoringSection(max_latency_p99_ms=50.0))
    result = monitor(spec, project.workspace, window="1h", now=DAY + 6 * 3600)
    frame_ = result.frame()
    ratio = frame_[frame_.statistic == "volume_ratio"]
    assert ratio.value.tolist()[1:] == pytest.approx([1, 1, 1, 1, 0.2])
    assert ratio.level.tolist() == ["empty", "ok", "ok", "ok", "ok", "alert"]
    errors_ = frame_[frame_.statistic == "error_rate"]
    assert errors_.value.tolist() == pytest.approx([0.04] * 6)
    assert (errors_.level == "alert").all()  # over serving's 0.02
    p99 = frame_[frame_.statistic == "latency_p99"]
    assert p99.value.iloc[0] == pytest.approx(80.0, rel=0.01) and p99.level.iloc[0] == "alert"
    warned = frame_[(frame_.statistic == "warning_rate")]
    assert warned.column.tolist() == ["tenure"] and warned.value.item() == pytest.approx(13 / 250)


class _Hook(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list] = []
    delay = 0.0

    def do_POST(self):
        time.sleep(self.delay)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        return None


@pytest.fixture
def webhook():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    _Hook.received, _Hook.delay = [], 0.0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts"
    server.shutdown()
    server.server_close()


def test_alerts_are_posted_to_the_webhook_and_a_down_or_slow_one_is_a_warning(
    trained, project, webhook
):
    _, bundle, version, live = trained
    broken = live.copy()
    broken["total_charges"] = np.nan
    write_log(project, bundle, version, broken)
    settings = MonitoringSection(webhook=webhook, webhook_timeout_seconds=0.5)
    result = monitor(dataclasses.replace(project.spec, monitoring=settings), project.workspace)
    assert result.webhook == "sent" and len(_Hook.received) == 1
    sent = _Hook.received[0]
    assert sent["project"] == "churn" and sent["counts"] == result.to_dict()["counts"]
    assert ("quality", "total_charges", "null_rate") in {
        (a["section"], a["column"], a["statistic"]) for a in sent["alerts"]
    }
    _Hook.delay = 2.0  # slower than the timeout
    slow = monitor(dataclasses.replace(project.spec, monitoring=settings), project.workspace)
    assert slow.webhook == "failed" and "within 0.5 s" in slow.warnings[-1]
    closed = MonitoringSection(
        webhook=f"http://127.0.0.1:{free_port()}/", webhook_timeout_seconds=1
    )
    down = monitor(dataclasses.replace(project.spec, monitoring=closed), project.workspace)
    assert down.webhook == "failed" and "could not be reached" in down.warnings[-1]
    assert down.exit_code == 1


def test_the_command_prints_alerts_and_json_with_its_exit_codes(trained, project):
    _, bundle, version, live = trained
    broken = live.copy()
    broken["contract"] = broken["contract"].replace("Month-to-month", "monthly")
    write_log(project, bundle, version, broken)
    runner = CliRunner()
    spec = str(project.spec.root / "shipyard.toml")
    text = runner.invoke(app, ["monitor", "--spec", spec])
    assert text.exit_code == 1 and "unseen_rate" in text.stdout and "alert(s)" in text.stdout
    shown = runner.invoke(app, ["monitor", "--spec", spec, "--json", "--window", "6000 rows"])
    document = json.loads(shown.stdout)
    assert shown.exit_code == 1 and document["exit_code"] == 1 and document["windows"] == 1
    assert document["counts"]["alert"] == sum(a["level"] == "alert" for a in document["alerts"])
    calm = runner.invoke(app, ["monitor", "--spec", spec, "--until", "2026-05-29"])
    assert calm.exit_code == 2 and "no logged predictions" in calm.stderr
    for args, message in [
        (["--since", "2026-06-02", "--until", "2026-06-01"], "is not before --until"),
        (["--window", "fortnight"], "is not a window"),
        (["--since", "yesterday"], "is not a date or time"),
    ]:
        refused = runner.invoke(app, ["monitor", "--spec", spec, *args])
        assert refused.exit_code == 2 and message in refused.stderr, args
        assert "Traceback" not in refused.output
    page = project.spec.root / "monitor.html"
    made = runner.invoke(app, ["monitor", "--spec", spec, "--report", str(page), "--json"])
    assert made.exit_code == 1 and json.loads(made.stdout)["report"] == str(page)
    html = page.read_text()
    assert "contract" in html and "unseen_rate" in html and "<svg" in html


def test_a_truncated_or_foreign_file_is_skipped_with_a_counted_warning(trained, project):
    _, bundle, version, live = trained
    write_log(project, bundle, version, live.head(500))
    (partition,) = project.workspace.logs.glob("date=*")
    whole = next(partition.glob("part-*.parquet"))
    (partition / "part-truncated.parquet").write_bytes(whole.read_bytes()[:300])
    pd.DataFrame({"a": [1, 2]}).to_parquet(partition / "part-foreign.parquet")
    result = project.monitor()
    assert result.rows_read == 500 and len(result.warnings) == 2
    assert any("not a prediction-log file" in w for w in result.warnings)
    assert any("part-truncated" in w for w in result.warnings)


def test_nothing_to_monitor_is_a_clear_refusal(trained, project, tmp_path):
    _, bundle, version, live = trained
    with pytest.raises(DataError, match="no prediction log at"):
        project.monitor()
    empty = Workspace(tmp_path, "churn")
    with pytest.raises(DeploymentError, match="has no champion"):
        monitor(project.spec, empty)
    write_log(project, bundle, version, live.head(50))
    with pytest.raises(DataError, match="no logged predictions from 2027-01-01"):
        project.monitor(since="2027-01-01")


def test_a_champion_without_reference_statistics_says_to_retrain(trained, tmp_path):
    project, bundle, version, live = trained
    copy = tmp_path / "old"
    shutil.copytree(project.spec.root, copy)
    old = Project.load(copy / "shipyard.toml")
    folder = old.workspace.bundle(version).path
    (folder / "reference.json").unlink()
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["format_version"] = 1
    del manifest["files"]["reference.json"]
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    shutil.rmtree(old.workspace.logs, ignore_errors=True)
    write_log(old, bundle, version, live.head(50))
    with pytest.raises(ReferenceMissing, match="retrain to enable drift"):
        old.monitor()


def test_windows_latencies_and_the_monitoring_section_are_checked():
    assert parse_window("1h").seconds == 3600 and parse_window(" 7d ").seconds == 604_800
    assert parse_window("250 rows").rows == 250 and parse_window("1row").rows == 1
    with pytest.raises(UsageError, match="is not a window"):
        parse_window("0d")
    lat = Latencies()
    values = np.random.default_rng(0).lognormal(0.5, 1.0, 10_000)
    lat.add(values)
    for q in (0.5, 0.95, 0.99):
        assert lat.quantile(q) == pytest.approx(np.quantile(values, q), rel=0.012)
    spec = Spec.from_dict(
        {"project": {"target": "y", "task": "binary"}, "monitoring": {"window": "6h"}}
    )
    assert spec.monitoring.window == "6h" and spec.monitoring.psi_alert == 0.2
    for bad, message in [
        ({"window": "week"}, "monitoring.window' must be a window"),
        ({"psi_warn": 0.3}, "'monitoring.psi_warn' (0.3) must not exceed"),
        ({"webhook": "ftp://x"}, "an http:// or https:// URL"),
        ({"alpha": 1}, "between 0 and 1, both excluded"),
    ]:
        with pytest.raises(Exception, match=message.replace("(", r"\(").replace(")", r"\)")):
            Spec.from_dict({"project": {"target": "y", "task": "binary"}, "monitoring": bad})


def test_calendar_month_windows_and_the_event_clock_need_a_time_field(trained, project):
    window = parse_window("1mo")
    stamps = np.array(
        ["2013-05-31T23:59:59", "2013-06-01T00:00:00", "2013-12-31T23:00:00"],
        dtype="datetime64[us]",
    ).astype(np.int64)
    index = window.index(stamps)
    assert index[0] + 1 == index[1] and index[2] == index[1] + 6
    assert [iso(t) for t in window.bounds(int(index[2]))] == [
        "2013-12-01T00:00:00Z",
        "2014-01-01T00:00:00Z",
    ]
    _, bundle, version, live = trained
    write_log(project, bundle, version, live.head(300))
    spec = str(project.spec.root / "shipyard.toml")
    refused = CliRunner().invoke(app, ["monitor", "--spec", spec, "--clock", "event"])
    assert refused.exit_code == 2 and "[project] time" in refused.stderr
