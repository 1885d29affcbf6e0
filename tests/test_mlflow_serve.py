"""The registered model served by `mlflow models serve` (real server on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import sys
import urllib.request

import numpy as np

from shipyard.bundle import load_bundle
from support import free_port, running_server
from test_train import churn_project


def test_mlflow_models_serve_gives_the_bundles_predictions(tmp_path, churn):
    project = churn_project(tmp_path, churn)
    result = project.train()
    port = free_port()
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
    url = f"http://127.0.0.1:{port}"
    rows = churn.drop(columns=["churn"]).iloc[:50]
    with running_server(command, url + "/ping", tmp_path / "serve.log", env=env):
        body = json.dumps(
            {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
        )
        request = urllib.request.Request(
            url + "/invocations", data=body.encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            served = np.asarray(json.loads(response.read())["predictions"], dtype=float)
    expected = load_bundle(result.bundle).predict(rows)
    np.testing.assert_allclose(served, expected, atol=1e-9)
