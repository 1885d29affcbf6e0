"""The registered model served by `mlflow models serve` (real server on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from shipyard.bundle import load_bundle
from test_tracking_server import _free_port
from test_train import churn_project


def test_mlflow_models_serve_gives_the_bundles_predictions(tmp_path, churn):
    project = churn_project(tmp_path, churn)
    result = project.train()
    port = _free_port()
    bin_dir = os.path.dirname(sys.executable)  # mlflow starts `uvicorn` from PATH
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": project.tracker().uri,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
    }
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        f"models:/churn/{result.version}",
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"mlflow models serve did not start: {(tmp_path / 'serve.log').read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(url + "/ping", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        rows = churn.drop(columns=["churn"]).iloc[:50]
        body = json.dumps(
            {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
        )
        request = urllib.request.Request(
            url + "/invocations", data=body.encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            served = np.asarray(json.loads(response.read())["predictions"], dtype=float)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    expected = load_bundle(result.bundle).predict(rows)
    np.testing.assert_allclose(served, expected, atol=1e-9)
