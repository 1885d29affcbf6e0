"""A new SQLite tracking store built by shipyard: MLflow's schema, whole, nothing left over."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from shipyard.tracking import Tracker, build_sqlite_store, sqlite_path


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as connection:
        return {row[0] for row in connection.execute("select name from sqlite_master")}


def test_a_new_store_is_built_once_and_mlflow_opens_it(tmp_path: Path) -> None:
    store = tmp_path / "ws" / "mlflow.db"
    assert build_sqlite_store(store) is True
    assert build_sqlite_store(store) is False  # it exists: left alone
    assert [p.name for p in store.parent.iterdir()] == ["mlflow.db"]  # no temporary file
    assert {"experiments", "runs", "metrics", "registered_models", "alembic_version"} <= _tables(
        store
    )
    uri = f"sqlite:///{store}"
    assert sqlite_path(uri) == store
    tracker = Tracker(uri, "built", artifact_root=tmp_path / "artifacts")  # verifies the revision
    with tracker.run("one"):
        tracker.metrics({"auc": 0.75})
    assert [r.data.metrics for r in tracker.client.search_runs([tracker.experiment_id])] == [
        {"auc": 0.75}
    ]
