"""Tracking against a real `mlflow server` on 127.0.0.1, started and stopped by the test."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from support import free_port, running_server
from test_train import churn_project


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{folder / 'server.db'}",
        "--artifacts-destination",
        (folder / "artifacts").as_uri(),
        "--workers",
        "1",
    ]
    uri = f"http://127.0.0.1:{port}"
    with running_server(command, uri + "/health", folder / "server.log"):
        yield uri


def test_train_tracks_and_registers_on_a_real_server(tmp_path: Path, churn, mlflow_server):
    project = churn_project(
        tmp_path, churn, tracking={"uri": mlflow_server, "experiment": "remote"}
    )
    result = project.train()
    assert not (
        tmp_path / ".shipyard" / "mlflow.db"
    ).exists()  # nothing embedded: all on the server
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server)
    run = client.get_run(result.run_id)
    assert run.data.tags["shipyard_kind"] == "train"
    assert run.data.metrics[f"test_{result.metric}"] == pytest.approx(
        result.test[result.chosen][result.metric]
    )
    assert client.get_model_version("churn", str(result.version)).run_id == result.run_id
    assert project.runs()[0].run_id == result.run_id
