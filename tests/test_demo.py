"""The README's main command on the full NYC flights table, as a first-time user runs it."""

import json
import subprocess
import sys
from pathlib import Path


def test_demo_finds_the_flights_leaks(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "shipyard", "demo", "--workdir", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    report = document["check"]
    assert report["rows"] == 336_776
    found = {(f["code"], tuple(f["columns"])): f for f in report["findings"]}
    assert found["target_derived", ("arr_delay",)]["severity"] == "error"
    assert ("too_good", ("dep_delay",)) in found
    assert found["leaky_combination", ("arr_time", "sched_arr_time")]["evidence"]["value"] > 0.99
    assert ("entity_repeated", ("tailnum",)) in found
    assert report["counts"]["error"] >= 2
    spec = (tmp_path / "shipyard.toml").read_text()
    assert 'id = "tailnum"' in spec and 'time = "time_hour"' in spec
    # the split the demo plans: by time, with planes recurring (purge would leave no test set)
    assert report["splits"]["strategy"] == "time"
    assert report["splits"]["parts"]["test"]["rows"] > 40_000
