"""Labels: ingestion by request id and by entity + time, idempotence, the replace rule and
refusals, against a real prediction log. The champion's classes come from a Vocabulary set
here (the CLI path with a trained champion is not covered yet)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

import shipyard.monitoring.labels as labels
from shipyard.errors import DataError
from shipyard.monitoring.labels import Vocabulary, ingest, read_labels
from shipyard.serving.log import PredictionLog
from shipyard.workspace import Workspace

SPEC = SimpleNamespace(project=SimpleNamespace(target="churn", id="cust", time=None, task="binary"))


@pytest.fixture
def ws(tmp_path: Path, monkeypatch) -> Workspace:
    monkeypatch.setattr(
        labels, "vocabulary", lambda spec, workspace: Vocabulary("binary", ["No", "Yes"])
    )
    workspace = Workspace(tmp_path, "m")
    log = PredictionLog(workspace.logs)
    for i in range(3):
        log.append(
            {
                "request_id": f"r{i}",
                "time": 1.7e9 + i,
                "entity_id": f"e{i}",
                "model_version": 1,
                "arm": "champion",
                "features": {"a": i},
                "prediction": 0.5,
                "latency_ms": 1.0,
                "warnings": [],
                "error": None,
            }
        )
    log.close()
    return workspace


def test_request_ids_are_matched_counted_and_a_second_ingestion_changes_nothing(ws, tmp_path):
    source = tmp_path / "labels.csv"
    source.write_text("request_id,churn\nr0,Yes\nr1,No\nzz,Yes\n")
    first = ingest(source, SPEC, ws)
    assert (first.added, first.matched, first.unmatched, first.stored) == (3, 2, 1, 3)
    assert first.unmatched_examples == ["zz"] and "zz" in first.warnings[0]
    store = Path(first.path)
    before = store.read_bytes()
    again = ingest(source, SPEC, ws)
    assert (again.added, again.replaced, again.unchanged, again.written) == (0, 0, 3, False)
    assert store.read_bytes() == before
    source.write_text("request_id,churn\nr1,Yes\n")  # a later label replaces the earlier one
    later = ingest(source, SPEC, ws)
    assert (later.replaced, later.stored) == (1, 3)
    by_id = {r["request_id"]: (r["label"], r["outcome"]) for r in read_labels(ws).to_pylist()}
    assert by_id == {"r0": ("Yes", 1.0), "r1": ("Yes", 1.0), "zz": ("Yes", 1.0)}


def test_entity_and_time_join_the_latest_prediction_at_or_before(ws, tmp_path):
    source = tmp_path / "late.csv"
    source.write_text("cust,time,label\ne1,2023-11-14T22:13:25Z,yes\n")
    result = ingest(source, SPEC, ws)
    assert (result.key, result.matched, result.label_column) == ("entity_id+time", 1, "label")
    assert read_labels(ws).column("request_id").to_pylist() == ["r1"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "request_id,churn\nr0,maybe\n",
            r"column 'churn' must be one of the classes No, Yes.*'maybe'.*row 2",
        ),
        ("request_id,churn\nr0,Yes\nr0,No\n", r"two different labels: r0"),
        ("request_id,outcome\nr0,Yes\n", r"no label column: name it 'churn'"),
        ("churn\nYes\n", r"needs a 'request_id' column, or 'cust'"),
    ],
)
def test_bad_labels_are_refused_and_nothing_is_written(ws, tmp_path, text, message):
    source = tmp_path / "bad.csv"
    source.write_text(text)
    with pytest.raises(DataError, match=message):
        ingest(source, SPEC, ws)
    assert not (ws.labels / "labels.parquet").exists()
