"""Time read_log over 1,000,000 logged rows (typed layout, 1,000-row files as a server with
the default batch_rows writes them), 25 feature columns. Run once; the machine is shared.

    PYTHONPATH=src python bench/read_log.py [ROWS]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time

from shipyard.serving.log import PredictionLog, read_log

N_FEATURES = 25


def main(rows: int) -> None:
    types = {f"x{j}": "number" for j in range(N_FEATURES - 5)} | {
        f"c{j}": "string" for j in range(5)
    }
    with tempfile.TemporaryDirectory() as folder:
        log = PredictionLog(folder, batch_rows=1000, flush_seconds=60, max_queue=rows + 1)
        start = time.perf_counter()
        for i in range(rows):
            features = {f"x{j}": (i * 7 + j) % 1000 / 10 for j in range(N_FEATURES - 5)}
            features |= {f"c{j}": "abcde"[(i + j) % 5] for j in range(5)}
            log.append(
                {
                    "request_id": f"r{i}",
                    "time": 1.7e9 + i / 100,
                    "entity_id": str(i % 5000),
                    "model_version": 1,
                    "arm": "champion",
                    "features": features,
                    "types": types,
                    "prediction": 0.5,
                    "latency_ms": 1.0,
                    "warnings": [],
                    "error": None,
                }
            )
        log.close()
        wrote = time.perf_counter() - start
        times = []
        for _ in range(3):
            start = time.perf_counter()
            table = read_log(folder)
            times.append(time.perf_counter() - start)
        print(
            {
                "rows": table.num_rows,
                "columns": table.num_columns,
                "write_s": round(wrote, 2),
                "read_s": [round(t, 3) for t in times],
                "read_median_s": round(statistics.median(times), 3),
            }
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
