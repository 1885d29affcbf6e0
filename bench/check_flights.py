"""Benchmark: `shipyard check` on the full NYC flights table beside a plain pandas read.

Both run in fresh child processes, so each peak resident memory (VmHWM, see _memory.py) is
its own.
Reported, as the median of --repeat runs, all in this one run:

- ``pandas read``: ``pd.read_csv`` of the same CSV file (the reference);
- ``shipyard check``: ``Project.check()`` — read, contract, quality, leakage, splits;
- ``shipyard check (CLI)``: the whole command, interpreter start-up included.

Targets (issue 2): the whole check under 20 s, and under 3x the plain read's peak memory.

    .venv/bin/python bench/check_flights.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _memory import PEAK_MB

READ = """
import sys, time
import pandas as pd
start = time.perf_counter()
frame = pd.read_csv(sys.argv[1])
wall = time.perf_counter() - start
print(wall, peak_mb(), len(frame))
"""

CHECK = """
import sys, time
from shipyard.project import Project
start = time.perf_counter()
report = Project.load(sys.argv[1]).check()
wall = time.perf_counter() - start
print(wall, peak_mb(), report.rows)
"""

BASELINE = """
import pandas, shipyard.project
print(0, peak_mb(), 0)
"""


def child(code: str, *args: str) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, "-c", PEAK_MB + code, *args], capture_output=True, text=True, check=True
    )
    wall, peak_mb, _ = out.stdout.split()
    return float(wall), float(peak_mb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from shipyard.demo import flights_frame
    from shipyard.project import Project

    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as folder:
        data = Path(folder) / "flights.csv"
        flights_frame().to_csv(data, index=False)
        spec = Path(folder) / "shipyard.toml"
        Project.init(data, "arr_delayed", spec)
        size_mb = data.stat().st_size / 2**20

        rows = {"pandas read": [], "shipyard check": [], "shipyard check (CLI)": []}
        for _ in range(args.repeat):
            rows["pandas read"].append(child(READ, str(data)))
            rows["shipyard check"].append(child(CHECK, str(spec)))
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "shipyard", "check", "--spec", str(spec), "--json"],
                capture_output=True,
                check=False,
            )
            rows["shipyard check (CLI)"].append((time.perf_counter() - start, float("nan")))
        _, imports_mb = child(BASELINE)

    result = {
        name: {
            "wall_s": round(statistics.median(r[0] for r in runs), 3),
            "peak_mb": round(statistics.median(r[1] for r in runs), 1),
        }
        for name, runs in rows.items()
    }
    read, check = result["pandas read"], result["shipyard check"]
    result["ratios"] = {
        "check_wall_vs_read": round(check["wall_s"] / read["wall_s"], 2),
        "check_peak_vs_read_peak": round(check["peak_mb"] / read["peak_mb"], 2),
    }
    result["context"] = {
        "rows": 336_776,
        "csv_mb": round(size_mb, 1),
        "peak_mb_after_imports_only": round(imports_mb, 1),
        "repeat": args.repeat,
        "targets": {"check_wall_s": 20, "check_peak_vs_read_peak": 3},
    }
    print(f"{'':24}{'wall s':>10}{'peak MB':>10}")
    for name in rows:
        print(f"{name:24}{result[name]['wall_s']:>10.2f}{result[name]['peak_mb']:>10.0f}")
    print(
        f"check / read: wall x{result['ratios']['check_wall_vs_read']}, "
        f"peak memory x{result['ratios']['check_peak_vs_read_peak']} (target < 3), "
        f"check wall {check['wall_s']:.1f} s (target < 20 s)"
    )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "check_flights.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
