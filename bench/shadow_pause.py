"""Benchmark: the shadow's cost to the champion's tail, measured inside one server.

``bench/serve_latency.py`` compares a shadow-on server with shadow-off ones; on a small
machine two identical servers' p99 differ by up to a fifth (its control shows it), which
blurs a 10% target. Here one ``shipyard serve`` with a shadow challenger answers
concurrency-1 bursts, the shadow process paused (``SIGSTOP``) during every other burst
and running during the rest, the order alternating. Copies logged while it is paused wait
for it up to ``shadow_queue`` rows, and the rest are dropped and counted, as in production.
After a paused burst the shadow is resumed and given a flush plus 0.5 s to answer what
waited, so that the "running" bursts see its steady work, not a backlog.

Same project, requests and load generator as ``bench/serve_latency.py`` (``--workdir``
reuses its project). Reported: p50 and p99 of the pooled requests with the shadow running
and paused, their ratio, and the median over rounds of one round's p99 ratio; the shadow's
counter after the load (it really scored). The shadow pauses only; the server does not
notice.

    .venv/bin/python bench/shadow_pause.py [--rounds 12] [--requests 3000]
        [--log-flush-seconds 1.0] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import serve_latency as common  # the sibling benchmark's helpers

RESULTS = Path(__file__).parent / "results" / "shadow_pause.json"


def shadow_child(server: int) -> int:
    """The pid of the server's shadow process (started with ``spawn``)."""
    listed = subprocess.run(
        ["pgrep", "-P", str(server)], capture_output=True, text=True, check=False
    ).stdout.split()
    for pid in listed:
        if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text():
            return int(pid)
    raise SystemExit(f"the server {server} has no shadow process: is v2 promoted to shadow?")


def quantile_ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12, help="pairs of bursts (on, paused)")
    parser.add_argument("--requests", type=int, default=3000, help="requests per burst")
    parser.add_argument("--log-flush-seconds", type=float, default=1.0)
    parser.add_argument("--records", type=int, default=2000, help="distinct flights to send")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    from shipyard.bundle import load_bundle

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as scratch:
        folder = args.workdir.resolve() if args.workdir else Path(scratch)
        _, spec, bundle_path = common.build_project(folder / "flights", True)
        common.set_log_flush(spec, args.log_flush_seconds)
        shadowed = common.shadow_copy(spec.parent, folder / "flights-shadow")
        notes: list[str] = []
        inputs = common.request_inputs(load_bundle(bundle_path), args.records, notes)
        logs = folder / "logs"
        logs.mkdir(exist_ok=True)
        port = common.free_port()
        command = common.shipyard_command(shadowed, port)
        env = dict(os.environ)
        with common.running(
            "shipyard_shadow", command, port, "/health", logs / "pause.log", env
        ) as server:
            child = shadow_child(server.pid)
            requests = [common.request_bytes(port, "/predict", b) for b in inputs.records_json]
            common.burst(port, requests, 1, 500, 90)  # warm-up
            latency: dict[str, list[float]] = {"running": [], "paused": []}
            p99s: dict[str, list[float]] = {"running": [], "paused": []}
            errors = 0
            catch_up = args.log_flush_seconds + 0.5
            for round_ in range(args.rounds):
                order = ["paused", "running"] if round_ % 2 == 0 else ["running", "paused"]
                for state in order:
                    if state == "paused":
                        os.kill(child, signal.SIGSTOP)
                    time.sleep(0.3)
                    try:
                        run = common.burst(
                            port, requests, 1, args.requests, 90, round_ * args.requests
                        )
                    finally:
                        if state == "paused":
                            os.kill(child, signal.SIGCONT)
                            time.sleep(catch_up)  # the shadow answers what waited meanwhile
                    ok = [t for t, s in zip(run["latency"], run["status"], strict=True) if s == 200]
                    errors += args.requests - len(ok)
                    latency[state] += ok
                    p99s[state].append(quantile_ms(ok, 0.99))
            time.sleep(catch_up)
            scored = _shadow_counts(port)
    summary = {
        state: {
            "requests": len(values),
            "p50_ms": round(quantile_ms(values, 0.5), 3),
            "p99_ms": round(quantile_ms(values, 0.99), 3),
        }
        for state, values in latency.items()
    }
    out: dict[str, Any] = {
        "levels": summary,
        "ratios": {
            "running_vs_paused_p99": round(
                summary["running"]["p99_ms"] / summary["paused"]["p99_ms"], 3
            ),
            "running_vs_paused_p99_median_of_rounds": round(
                statistics.median(
                    a / b for a, b in zip(p99s["running"], p99s["paused"], strict=True)
                ),
                3,
            ),
            "running_vs_paused_p50": round(
                summary["running"]["p50_ms"] / summary["paused"]["p50_ms"], 3
            ),
        },
        "shadow_scored": scored,
        "errors": errors,
        "context": {
            "rounds": args.rounds,
            "requests_per_burst": args.requests,
            "log_flush_seconds": args.log_flush_seconds,
            "cpus": os.cpu_count(),
            "wall_s": round(time.perf_counter() - started, 1),
        },
        "notes": notes,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


def _shadow_counts(port: int) -> dict[str, float]:
    """The shadow's counter by outcome, from ``/metrics``."""
    counts: dict[str, float] = {}
    for series, value in common.fetch(port, "/metrics").items():
        if series.startswith("shipyard_shadow_total{"):
            outcome = series.split('outcome="', 1)[1].split('"', 1)[0]
            counts[outcome] = counts.get(outcome, 0) + value
    return counts


if __name__ == "__main__":
    main()
