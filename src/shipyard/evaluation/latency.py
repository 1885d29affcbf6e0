"""Latency and size: how a candidate behaves as a service, not only as a score."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

WARMUP = 20


def one_record_latency(
    predict_one: Callable[[Any], Any], records: Sequence[Any], warmup: int = WARMUP
) -> dict[str, float]:
    """p50 / p99 milliseconds of single calls ``predict_one(record)``, after a warm-up."""
    for record in records[:warmup]:
        predict_one(record)
    times = np.empty(len(records))
    clock = time.perf_counter_ns
    for i, record in enumerate(records):
        start = clock()
        predict_one(record)
        times[i] = clock() - start
    return {
        "p50_ms": float(np.percentile(times, 50) / 1e6),
        "p99_ms": float(np.percentile(times, 99) / 1e6),
        "n": len(records),
    }


def saved_size_mb(save: Callable[[Path], Any]) -> float:
    """Megabytes on disk of whatever ``save(folder)`` writes."""
    with tempfile.TemporaryDirectory() as folder:
        save(Path(folder))
        return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 2**20
