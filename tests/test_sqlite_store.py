"""A new SQLite tracking store built by shipyard: MLflow's schema, whole, nothing left over;
migrated once per schema revision, copied after that."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from shipyard.tracking import Tracker, build_sqlite_store, sqlite_path, store_cache


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as connection:
        return {row[0] for row in connection.execute("select name from sqlite_master")}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return store_cache()


def _revision(path: Path) -> str:
    with sqlite3.connect(path) as connection:
        return str(connection.execute("select version_num from alembic_version").fetchone()[0])


def test_a_new_store_is_built_once_and_mlflow_opens_it(tmp_path: Path, cache: Path) -> None:
    store = tmp_path / "ws" / "mlflow.db"
    assert build_sqlite_store(store) == "migrated"
    assert build_sqlite_store(store) is None  # it exists: left alone
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


def test_the_next_new_store_is_a_copy_of_the_first_migration(tmp_path: Path, cache: Path) -> None:
    first, second = tmp_path / "a" / "mlflow.db", tmp_path / "b" / "mlflow.db"
    assert build_sqlite_store(first) == "migrated"
    (template,) = cache.glob("mlflow-*.db")
    assert _revision(template) == _revision(first) and template.name.endswith(
        f"-{_revision(first)}.db"
    )
    assert build_sqlite_store(second) == "copied"
    assert _tables(second) == _tables(first) and _revision(second) == _revision(first)
    tracker = Tracker(f"sqlite:///{second}", "copied", artifact_root=tmp_path / "artifacts")
    with tracker.run("one"):
        tracker.metrics({"auc": 0.5})
    assert len(tracker.client.search_runs([tracker.experiment_id])) == 1
    assert _tables(template) == _tables(first)  # the template stays empty: runs went to b
    with sqlite3.connect(template) as connection:
        assert connection.execute("select count(*) from runs").fetchone() == (0,)


def test_a_cached_store_of_another_revision_is_not_used(tmp_path: Path, cache: Path) -> None:
    build_sqlite_store(tmp_path / "a" / "mlflow.db")
    (template,) = cache.glob("mlflow-*.db")
    with sqlite3.connect(template) as connection:  # as if an older MLflow had written it
        connection.execute("update alembic_version set version_num = 'older'")
    store = tmp_path / "b" / "mlflow.db"
    assert build_sqlite_store(store) == "migrated"
    assert _revision(store) == _revision(tmp_path / "a" / "mlflow.db")
    assert _revision(template) == _revision(store)  # the cache holds the current one again
