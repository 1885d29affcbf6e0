"""Closed days of the prediction log compacted into one file each, and summarized once:
on a real churn log spread over past days, nothing is lost, nothing is read twice (a
compaction killed half-way included), and a month computed from its kept days equals the
month computed from the log."""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import shutil
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shipyard.monitoring.days import DayStore, days_folder, scan_days
from shipyard.monitoring.monitor import Answering, answers, parse_window, scan, segments
from shipyard.serving.app import build
from shipyard.serving.compaction import DailyCompaction, compact_log
from shipyard.serving.log import (
    REPLACES,
    PredictionLog,
    feature_types,
    log_files,
    read_log,
    replaced_names,
)
from support import churn_champion, records_of

DAY = 1_780_012_800.0  # 2026-05-29 00:00 UTC

SPREAD = 86_400 * 3 / 2_000  # the first 2,000 customers over three days


@pytest.fixture(scope="module")
def champion(tmp_path_factory, churn):
    """A churn champion trained on 1,500 customers, and the customers it never saw."""
    return churn_champion(tmp_path_factory.mktemp("churn-days"), churn)


@pytest.fixture
def trained(champion):
    """The champion with an empty log and no monitoring kept."""
    project = champion[0]
    for folder in (project.workspace.logs, project.workspace.folder / "monitoring"):
        shutil.rmtree(folder, ignore_errors=True)
    return champion


def in_order(table: pa.Table) -> pa.Table:
    return table.sort_by([("time", "ascending"), ("request_id", "ascending")])


def small_files(project, bundle, version, live, rows=2_000, batch=150):
    """``rows`` customers logged over three past days in batches of ``batch`` (many files)."""
    types = feature_types(bundle.contract, bundle.features)
    frame = live.iloc[:rows]
    output = bundle.predict(frame)
    log = PredictionLog(project.workspace.logs, batch_rows=batch, flush_seconds=60)
    for i, (record, score) in enumerate(zip(records_of(frame), output, strict=True)):
        log.append(
            {
                "request_id": f"r{i}",
                "time": DAY + i * SPREAD,
                "entity_id": None,
                "model_version": version,
                "arm": "champion",
                "features": record,
                "types": types,
                "prediction": float(score),
                "latency_ms": 1.0 + (i % 5) * 0.2,
                "warnings": [],
                "error": None,
            }
        )
        if i % batch == batch - 1:
            log.flush()
    log.close()
    return project.workspace.logs


def test_compaction_keeps_every_row_once_and_the_reader_survives_a_kill(trained):
    project, bundle, version, live = trained
    logs = small_files(project, bundle, version, live)
    before = read_log(logs)
    days = sorted(logs.glob("date=*"))
    assert len(days) == 3 and len(log_files(logs)) > 10
    done = compact_log(logs, before=dt.date(2026, 6, 1))
    assert (done.days, done.rows, done.files) == (3, before.num_rows, done.removed)
    assert [len(log_files(logs, since=dt.date.fromisoformat(d.name[5:]))) for d in days] == [
        3,
        2,
        1,
    ]
    after = read_log(logs)
    assert in_order(after).equals(in_order(before))
    assert compact_log(logs, before=dt.date(2026, 6, 1)).days == 0  # nothing left to do

    # a kill after the rename, before the removals: the replaced files come back
    compacted = next(days[0].glob("compacted-*.parquet"))
    (name,) = [n for n in replaced_names([compacted]) if n.startswith("part-")][:1]
    shutil.copy(compacted, days[0] / name)  # any bytes: a replaced name is never read
    assert in_order(read_log(logs)).equals(in_order(before))
    assert compact_log(logs, before=dt.date(2026, 6, 1)).removed == 1
    assert not (days[0] / name).exists()

    # a late file in a compacted day is read beside it, then folded in
    late = PredictionLog(logs, flush_seconds=60)
    late.append({**_record(version), "time": DAY + 3_600.0})
    late.close()
    assert read_log(logs).num_rows == before.num_rows + 1
    assert compact_log(logs, before=dt.date(2026, 6, 1)).days == 1
    assert len(list(days[0].glob("*.parquet"))) == 1
    assert read_log(logs).num_rows == before.num_rows + 1
    meta = pq.read_schema(next(days[0].glob("*.parquet"))).metadata
    assert REPLACES in meta


def test_a_day_being_compacted_elsewhere_is_skipped_and_the_service_compacts_at_start(
    trained,
):
    project, bundle, version, live = trained
    logs = small_files(project, bundle, version, live, rows=600, batch=100)
    (first, *_) = sorted(logs.glob("date=*"))
    fd = os.open(first / ".compact.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another process compacting this day
        done = compact_log(logs, before=dt.date(2026, 6, 1))
        assert done.skipped == 1 and len(list(first.glob("part-*.parquet"))) > 1
    finally:
        os.close(fd)
    rows = read_log(logs).num_rows
    service = DailyCompaction(logs)  # as `shipyard serve` starts it
    deadline = time.monotonic() + 60
    while service.runs == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    service.close()
    assert service.runs >= 1 and service.errors == 0
    assert all(len(list(day.glob("*.parquet"))) == 1 for day in logs.glob("date=*"))
    assert read_log(logs).num_rows == rows


def test_the_service_keeps_closed_days_so_monitor_reads_none_of_their_rows(trained):
    project, bundle, version, live = trained
    logs = small_files(project, bundle, version, live, batch=500)
    _, service = build(project.spec_path)  # as `shipyard serve` builds it
    compaction = service.compaction
    assert compaction is not None
    try:
        deadline = time.monotonic() + 60
        while compaction.runs == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        service.close()
    assert compaction.runs >= 1 and compaction.errors == 0
    days = sorted(p.parent.name for p in days_folder(project.workspace).glob("date=*/*.json"))
    assert days == [p.name for p in sorted(logs.glob("date=*"))] and len(days) == 3
    # the first monitor run takes every closed day from the service's summaries
    first = project.monitor(window="1mo")
    assert (first.days_kept, first.rows_read) == (3, 2_000)


def test_a_month_from_its_kept_days_equals_the_month_from_the_log(trained):
    project, bundle, version, live = trained
    logs = small_files(project, bundle, version, live)
    answer = Answering.load(
        version, project.workspace.bundle(version).path, ["contract", "senior_citizen"]
    )
    files = log_files(logs)
    month = parse_window("1mo")
    direct = scan(files, lambda v: answer, month, since_us=None, until_us=None)
    store = DayStore(days_folder(project.workspace))
    first = scan_days(files, lambda v: answer, month, store, since_us=None, until_us=None)
    assert (store.saved, store.hits, first.days_kept) == (3, 0, 0)
    again = DayStore(days_folder(project.workspace))
    kept = scan_days(files, lambda v: answer, month, again, since_us=None, until_us=None)
    assert (again.hits, kept.days_kept, kept.files, kept.rows) == (3, 3, direct.files, 2_000)
    for got in (first, kept):
        assert got.groups.keys() == direct.groups.keys()
        for key, want in direct.groups.items():
            have = got.groups[key]
            assert (have.rows, have.first_us, have.last_us) == (
                want.rows,
                want.first_us,
                want.last_us,
            )
            assert np.array_equal(have.latency.counts, want.latency.counts)
            for name, summary in want.features.items():
                mine, theirs = have.features[name].to_dict(), summary.to_dict()
                for field, value in theirs.items():
                    if isinstance(value, float):
                        assert mine[field] == pytest.approx(value, rel=1e-12, abs=1e-9), field
                    else:
                        assert mine[field] == value, (name, field)
            ids = lambda g: sorted(np.concatenate([i for i, _ in g.answers]).tolist())  # noqa: E731
            assert ids(have) == ids(want)
            (mine, mine_out), (theirs, theirs_out) = segments(have), segments(want)
            assert list(mine.columns) == list(theirs.columns) == ["contract", "senior_citizen"]
            order = np.argsort(answers(have)[0]), np.argsort(answers(want)[0])
            for name in theirs.columns:
                a, b = mine[name].iloc[order[0]], theirs[name].iloc[order[1]]
                assert a.astype(str).tolist() == b.astype(str).tolist()
            assert np.array_equal(mine_out[order[0]], theirs_out[order[1]])

    # a day that changed (a late file) is read again; the others stay kept
    late = PredictionLog(logs, flush_seconds=60)
    late.append({**_record(version), "time": DAY + 60.0})
    late.close()
    third = DayStore(days_folder(project.workspace))
    changed = scan_days(
        log_files(logs), lambda v: answer, month, third, since_us=None, until_us=None
    )
    assert (third.hits, third.saved, changed.rows) == (2, 1, 2_001)
    # hours do not add up to days: no day is kept or used
    hours = DayStore(days_folder(project.workspace))
    scan_days(
        log_files(logs), lambda v: answer, parse_window("6h"), hours, since_us=None, until_us=None
    )
    assert (hours.hits, hours.saved) == (0, 0)
    # a monitor run says how many days it did not read again; its slice columns (the
    # spec's) are part of a kept day's key, so its first run keeps the days anew
    assert project.monitor(window="1mo").days_kept == 0
    assert project.monitor(window="1mo").days_kept == 3
    assert project.monitor(window="1mo", since="2026-05-30").days_kept == 2


def _record(version):
    return {
        "request_id": "late",
        "entity_id": None,
        "model_version": version,
        "arm": "champion",
        "features": {},
        "prediction": 0.5,
        "latency_ms": 1.0,
        "warnings": [],
        "error": None,
    }
