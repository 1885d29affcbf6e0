"""The README's main command, the whole loop on NYC flights, as a first-time user runs it
(every third flight, so it takes about a minute here)."""

import json
import socket
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient


def test_demo_runs_the_whole_loop(tmp_path: Path):
    command = ["demo", "--workdir", str(tmp_path), "--sample", "3", "--json"]
    result = subprocess.run(
        [sys.executable, "-m", "shipyard", *command],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)

    report = document["check"]
    found = {(f["code"], tuple(f["columns"])): f for f in report["findings"]}
    assert found["target_derived", ("arr_delay",)]["severity"] == "error"
    assert ("too_good", ("dep_delay",)) in found
    assert report["splits"]["strategy"] == "time"
    assert {"arr_delay", "dep_delay", "arr_time"} <= set(document["excluded"])

    train = document["train"]
    dev = {row["rung"]: row["dev_roc_auc"] for row in train["ladder"]}
    assert min(dev["gbt"], dev["linear"]) > dev["constant"] == 0.5
    assert train["version"] == 1

    # served May–October: the summer's delays show in the scores before any label, and the
    # realized AUC (labels a month late) is shown beside the estimated one
    months = document["months"]
    assert list(months) == [f"2013-{m:02d}" for m in range(5, 11)]
    assert max(m["delay_rate"] for m in months.values()) > 0.25
    assert months["2013-07"]["mean_prediction"] > months["2013-05"]["mean_prediction"] - 0.05
    assert all("estimated_auc" in m for m in months.values())
    # labels 30 days late: May–September labeled, October's first day at most
    assert all(months[f"2013-0{m}"]["labeled_share"] > 0.95 for m in range(5, 10))
    assert months["2013-10"].get("labeled_share", 0.0) < 0.1
    assert all("realized_auc" in months[f"2013-0{m}"] for m in range(5, 10))
    assert any(months[k]["alerts"] for k in months)
    stages = {s["name"]: s for s in document["stages"]}
    loop = ["check", "train", "serve", "labels", "monitor", "retrain", "experiment", "decide"]
    assert list(stages) == loop
    assert stages["monitor"]["found"]["exit_code"] == 1  # an alert fired

    retrain = document["retrain"]
    assert retrain["train"]["version"] == 2 and retrain["added_rows"] > 10_000
    assert retrain["promoted"]["to"] == "shadow"
    assert stages["retrain"]["found"]["shadowed"] > 1_000

    verdict, final = document["experiment"], document["final"]
    if verdict is None:  # a guardrail stopped the canary while it served
        assert stages["experiment"]["found"]["stopped"].startswith("guardrail")
        assert final["champion"] == 1 and final["challenger"] is None
    else:
        assert verdict["verdict"] in ("launch", "keep running", "stop: futile", "stop: harm")
        assert verdict["control"]["n"] > 1_000 and verdict["treatment"]["n"] > 1_000
        assert not verdict["srm"]["blocked"]
        if verdict["verdict"] == "keep running":
            assert final == {"champion": 1, "challenger": 2, "mode": "canary", "percent": 50.0}
        else:
            assert final["challenger"] is None
            assert final["champion"] == (2 if verdict["verdict"] == "launch" else 1)

    for path in document["reports"].values():
        assert Path(path).is_file() and Path(path).stat().st_size > 10_000
    client = MlflowClient(f"sqlite:///{tmp_path / '.shipyard' / 'mlflow.db'}")
    run = client.get_run(train["run_id"])
    assert run.data.tags["split_strategy"] == "time"
    # the server is gone: its port is free again
    port = int(stages["serve"]["found"]["url"].rsplit(":", 1)[1])
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0
