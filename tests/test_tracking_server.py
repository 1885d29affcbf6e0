"""Tracking against a real `mlflow server` on 127.0.0.1, started and stopped by the test."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from test_train import churn_project


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
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
    log = (folder / "server.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"mlflow server exited: {(folder / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(uri + "/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not answer /health within 90 s")
        yield uri
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


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
    assert project.runs()[0]["run_id"] == result.run_id
