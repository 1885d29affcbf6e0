"""Benchmark: ``/health`` latency and the server's memory while two clients send the most
expensive bad requests, against the same server idle.

On telco churn (modeldata::wa_churn, 7,043 rows): a project is trained (untracked) and its
version 1 promoted to champion; ``shipyard serve`` (one worker, the ``[serving]`` defaults)
runs as a subprocess on a free 127.0.0.1 port. Then --rounds rounds, each of two phases of
--seconds seconds:

- ``idle``: only the probe runs;
- ``hostile``: two attacker threads, each with one keep-alive connection, send back to back
  and in turn the requests the issue found most expensive:
    ``unknown_fields``: 1,000 records of the real columns plus 380 unknown fields each
    (about 3.7 MB: just under ``max_body_mb``), to ``/predict``;
    ``huge_string``: one record whose ``contract`` (a category) holds 3.9 MB of text;
    ``deep_nesting``: 1,000 records whose ``contract`` is a value nested 28 levels deep
    (within ``max_depth``, so every record is walked and refused), to ``/invocations``;
    ``too_deep``: one record with a value nested 1,000 levels deep (orjson's limit is 1,024).

In both phases a probe thread sends ``GET /health`` on its own keep-alive connection every
20 ms and times each answer (from writing the request to having the whole response), and a
sampler reads the server's ``VmRSS`` from ``/proc`` every 50 ms.

Reported: per phase and round, ``/health`` p50 / p99 (ms) and the peak RSS (MB); the
medians over rounds of each, and hostile over idle (ratio and difference); per attack, its
status, answer size and client-side latency (median), and the count sent. Results go to
``bench/results/hostile_load.json``.

    .venv/bin/python bench/hostile_load.py [--seconds 15] [--rounds 3] [--workdir DIR]
        [--src PATH --out FILE]

``--src`` runs the server from another source tree (the same project and attacks), e.g.
an older checkout's ``src`` to measure what a change bought; ``--out`` writes elsewhere.

The machine is shared (2 cores, other engineers' tests): the ratios are what to read; the
attackers and the probe run in this process, beside the server.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def project(folder: Path) -> tuple[Path, list[dict[str, Any]]]:
    """A trained churn project with version 1 champion (reused when ``folder`` has one)."""
    sys.path.insert(0, str(ROOT / "src"))
    from shipyard.demo import churn_frame
    from shipyard.project import Project
    from shipyard.registry import promoted

    frame = churn_frame()
    spec = folder / "shipyard.toml"
    records = [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
        for r in frame.drop(columns=["churn", "rownames"]).head(1000).to_dict("records")
    ]
    if spec.exists():
        return spec, records
    frame.to_csv(folder / "churn.csv", index=False)
    Project.init(folder / "churn.csv", "churn", spec)
    text = spec.read_text()
    text = re.sub(r"^exclude = \[.*\]$", 'exclude = ["rownames"]', text, count=1, flags=re.M)
    spec.write_text(text)
    proj = Project.load(spec)
    result = proj.train(track=False)
    rel = proj.workspace.relative(result.bundle)
    proj.registry.update("promote", lambda s: promoted(s, 1, "champion", actor="bench", bundle=rel))
    return spec, records


def attacks(records: list[dict[str, Any]]) -> dict[str, tuple[str, bytes]]:
    junk = {f"j{j}": 0 for j in range(380)}
    nested = "[" * 28 + "1" + "]" * 28
    deep = "[" * 1000 + "]" * 1000
    one = orjson.dumps({**records[0], "contract": None}).decode()
    many = b"[" + b",".join(orjson.dumps({**r, **junk}) for r in records) + b"]"
    rows = ",".join(
        orjson.dumps({**r, "contract": None})
        .decode()
        .replace('"contract":null', f'"contract":{nested}')
        for r in records
    )
    return {
        "unknown_fields": ("/predict", many),
        "huge_string": ("/predict", orjson.dumps({**records[0], "contract": "x" * 3_900_000})),
        "deep_nesting": ("/invocations", f'{{"dataframe_records": [{rows}]}}'.encode()),
        "too_deep": ("/predict", one.replace('"contract":null', f'"contract":{deep}').encode()),
    }


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def phase(port: int, pid: int, seconds: float, hostile: dict[str, tuple[str, bytes]] | None):
    stop = threading.Event()
    probes: list[float] = []
    rss: list[float] = []
    sent: dict[str, list[tuple[int, int, float]]] = {k: [] for k in hostile or {}}
    errors: list[str] = []

    def probe() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while not stop.is_set():
            start = time.perf_counter()
            try:
                conn.request("GET", "/health")
                conn.getresponse().read()
                probes.append(time.perf_counter() - start)
            except (OSError, http.client.HTTPException) as exc:
                errors.append(f"probe: {exc!r}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            time.sleep(0.02)
        conn.close()

    def sample() -> None:
        while not stop.is_set():
            rss.append(rss_mb(pid))
            time.sleep(0.05)

    def attack(offset: int) -> None:
        assert hostile is not None
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        kinds = list(hostile)
        i = offset
        while not stop.is_set():
            kind = kinds[i % len(kinds)]
            path, body = hostile[kind]
            i += 1
            start = time.perf_counter()
            try:
                conn.request("POST", path, body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                data = response.read()
                sent[kind].append((response.status, len(data), time.perf_counter() - start))
            except (OSError, http.client.HTTPException) as exc:
                errors.append(f"{kind}: {exc!r}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.close()

    threads = [threading.Thread(target=probe), threading.Thread(target=sample)]
    if hostile:
        threads += [threading.Thread(target=attack, args=(k,)) for k in (0, 2)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(timeout=180)
    out: dict[str, Any] = {
        "health_requests": len(probes),
        "health_p50_ms": percentile(probes, 0.50) * 1e3,
        "health_p99_ms": percentile(probes, 0.99) * 1e3,
        "health_max_ms": max(probes) * 1e3,
        "peak_rss_mb": max(rss),
        "errors": errors[:10],
        "n_errors": len(errors),
    }
    if hostile:
        out["attacks"] = {
            kind: {
                "sent": len(rows),
                "statuses": sorted({s for s, _, _ in rows}),
                "answer_bytes": max((n for _, n, _ in rows), default=0),
                "latency_p50_ms": statistics.median(t for _, _, t in rows) * 1e3 if rows else None,
            }
            for kind, rows in sent.items()
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--src",
        type=Path,
        default=ROOT / "src",
        help="the shipyard source tree the server runs (e.g. an older checkout's, to compare)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "hostile_load.json")
    args = parser.parse_args()
    folder = args.workdir or Path(tempfile.mkdtemp(prefix="hostile-"))
    folder.mkdir(parents=True, exist_ok=True)
    spec, records = project(folder)
    bodies = attacks(records)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(args.src)}
    env.pop("SHIPYARD_ADMIN_TOKEN", None)
    log = open(folder / "server.log", "w")  # noqa: SIM115 (closed in finally)
    server = subprocess.Popen(
        [sys.executable, "-m", "shipyard", "serve", "--spec", str(spec), "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (folder / "server.log").read_text()[-2000:]
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "shipyard serve did not start"
            time.sleep(0.2)
        rounds = []
        for r in range(args.rounds):
            idle = phase(port, server.pid, args.seconds, None)
            hostile = phase(port, server.pid, args.seconds, bodies)
            rounds.append({"idle": idle, "hostile": hostile})
            print(
                f"round {r + 1}: /health p50 {idle['health_p50_ms']:.2f} → "
                f"{hostile['health_p50_ms']:.2f} ms, p99 {idle['health_p99_ms']:.2f} → "
                f"{hostile['health_p99_ms']:.2f} ms, peak RSS {idle['peak_rss_mb']:.0f} → "
                f"{hostile['peak_rss_mb']:.0f} MB",
                flush=True,
            )
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()

    def med(which: str, key: str) -> float:
        return statistics.median(r[which][key] for r in rounds)

    summary: dict[str, Any] = {}
    for key in ("health_p50_ms", "health_p99_ms", "peak_rss_mb"):
        idle, hostile = med("idle", key), med("hostile", key)
        summary[key] = {
            "idle": round(idle, 3),
            "hostile": round(hostile, 3),
            "ratio": round(hostile / idle, 3),
            "difference": round(hostile - idle, 3),
        }
    out = {
        "what": "shipyard serve (1 worker, [serving] defaults) on telco churn; /health every "
        "20 ms and VmRSS every 50 ms, idle vs two clients sending the most expensive bad "
        "requests; medians over rounds",
        "server_src": str(args.src),
        "seconds_per_phase": args.seconds,
        "rounds": rounds,
        "median": summary,
        "attack_bodies_bytes": {k: len(b) for k, (_, b) in bodies.items()},
        "machine": {"cpus": os.cpu_count(), "loadavg_at_end": os.getloadavg()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
