"""Benchmark: what an explanation costs per record, beside a plain prediction, in one run.

Telco churn (modeldata::wa_churn) is trained once with ``min_improvement = 0`` so the
gradient-boosted rung (``gbt``) is chosen; its bundle's fallback is the linear rung of the
same training. Timed, per record, after a warm-up (shipyard's own one-record timing loop),
the median of --repeat passes:

- ``gbt``: ``Arm.score(record)`` (the serving path: transform, LightGBM's one-row path)
  against ``Arm.score`` then ``Arm.explain([record])`` (TreeSHAP on LightGBM's one-row
  contribution path, fields summed, reasons written) — what one explained record costs a
  server beyond its answer;
- ``gbt, 100 records``: ``Arm.score_many`` against ``Arm.score_many`` + ``Arm.explain`` of
  the same 100 records, per record (--batches batches);
- ``linear``: the fallback rung's ``predict_one`` against ``predict_one`` +
  ``explain_records([record]).row(0, …)``;
- ``http``: ``POST /predict`` against ``POST /predict?explain=true`` of one record on a real
  uvicorn server in this process (httpx, one connection, requests alternated).

The ratios (explained / plain, p50) are the numbers to read; the absolute times depend on the
machine and its load (noted).

    .venv/bin/python bench/explain_cost.py [--records 300] [--batches 40] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

WARMUP = 50
RULE = "tenure < 6 and contract == 'Month-to-month'"


def plain(value: Any) -> Any:
    if isinstance(value, float) and np.isnan(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def latency_us(call: Callable[[Any], Any], inputs: Sequence[Any]) -> dict[str, float]:
    from shipyard.evaluation.latency import one_record_latency

    ms = one_record_latency(call, inputs, warmup=WARMUP)
    return {"p50_us": ms["p50_ms"] * 1e3, "p99_us": ms["p99_ms"] * 1e3}


def train(folder: Path) -> Any:
    """Churn trained once, its bundle champion as version 1; returns the spec's path."""
    from shipyard.demo import churn_frame
    from shipyard.project import Project
    from shipyard.registry import promoted

    churn_frame().to_csv(folder / "churn.csv", index=False)
    (folder / "shipyard.toml").write_text(
        "\n".join(
            [
                "[project]",
                'name = "churn"',
                'task = "binary"',
                'target = "churn"',
                'data = "churn.csv"',
                'positive = "Yes"',
                "[objective]",
                "min_improvement = 0.0",
                "[features]",
                'exclude = ["rownames"]',
                "[baseline]",
                f'rule = "{RULE}"',
                "",
            ]
        )
    )
    project = Project.load(folder / "shipyard.toml")
    result = project.train(track=False)
    rel = project.workspace.relative(result.bundle)
    project.registry.update("promote", lambda s: promoted(s, 1, "champion", actor="b", bundle=rel))
    return folder / "shipyard.toml", result


def http_us(spec: Path, records: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """p50 / p99 microseconds of plain and explained ``POST /predict`` of one record."""
    import httpx
    import uvicorn

    from shipyard.serving.app import build

    app, service = build(spec, log=False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    times: dict[str, list[float]] = {"plain": [], "explained": []}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            for i, record in enumerate([*records[:WARMUP], *records]):
                for name, url in (("plain", "/predict"), ("explained", "/predict?explain=true")):
                    start = time.perf_counter_ns()
                    response = client.post(url, json=record)
                    elapsed = (time.perf_counter_ns() - start) / 1e3
                    assert response.status_code == 200, response.text
                    if i >= WARMUP:
                        times[name].append(elapsed)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        service.close()
    return {
        name: {
            "p50_us": float(np.percentile(values, 50)),
            "p99_us": float(np.percentile(values, 99)),
        }
        for name, values in times.items()
    }


def _median(passes: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(p[k] for p in passes), 2) for k in passes[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300, help="records timed per path")
    parser.add_argument("--batches", type=int, default=40, help="100-record batches timed")
    parser.add_argument("--repeat", type=int, default=3, help="passes (median)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    from shipyard.bundle import load_bundle
    from shipyard.demo import churn_frame
    from shipyard.models import Linear
    from shipyard.serving.router import Arm

    notes: list[str] = []
    load = os.getloadavg()[0]
    if load > 1.0:
        notes.append(f"1-minute load average {load:.2f} at the start: timings may be inflated")
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmp:
        spec, result = train(Path(tmp))
        bundle = load_bundle(result.bundle)
        bundle.model.warm()
        arm = Arm(1, bundle)
        linear = Linear.load(bundle.path / "fallback")
        churn = churn_frame()
        sample = churn.sample(args.records, random_state=0)[bundle.features]
        records = [{k: plain(v) for k, v in r.items()} for r in sample.to_dict("records")]
        rows = churn.sample(100 * args.batches, random_state=1)[bundle.features]
        many = [{k: plain(v) for k, v in r.items()} for r in rows.to_dict("records")]
        batches = [many[i : i + 100] for i in range(0, len(many), 100)]

        def explained_one(record: dict[str, Any]) -> Any:
            arm.score(record)
            return arm.explain([record])

        def explained_many(batch: list[dict[str, Any]]) -> Any:
            arm.score_many(batch)
            return arm.explain(batch)

        def linear_explained(record: dict[str, Any]) -> Any:
            linear.predict_one(record)
            return linear.explain_records([record]).row(0, record=record, target="churn")

        paths: dict[str, tuple[Callable[[Any], Any], Sequence[Any], int]] = {
            "gbt plain": (arm.score, records, 1),
            "gbt explained": (explained_one, records, 1),
            "gbt 100 plain": (arm.score_many, batches, 100),
            "gbt 100 explained": (explained_many, batches, 100),
            "linear plain": (linear.predict_one, records, 1),
            "linear explained": (linear_explained, records, 1),
        }
        passes: dict[str, list[dict[str, float]]] = {name: [] for name in paths}
        for _ in range(args.repeat):
            for name, (call, inputs, per) in paths.items():
                timed = latency_us(call, inputs)
                passes[name].append({k: v / per for k, v in timed.items()})
        per_record = {name: _median(p) for name, p in passes.items()}
        http = http_us(spec, records)
        # the explanations add up to the raw score (checked here too: the numbers are real)
        X = bundle.model.transform_.transform(sample)
        raw = bundle.model.booster_.predict(X, raw_score=True)
        scores = np.array([e["score"] for e in arm.explain(records)])
        max_gap = float(np.max(np.abs(scores - raw)))

    def ratio(a: dict[str, float], b: dict[str, float]) -> float:
        return round(a["p50_us"] / b["p50_us"], 2)

    out = {
        "data": "modeldata::wa_churn",
        "chosen": result.chosen,
        "records": args.records,
        "batches_of_100": args.batches,
        "repeat": args.repeat,
        "per_record_us": per_record,
        "http_us": {k: {m: round(v, 1) for m, v in d.items()} for k, d in http.items()},
        "ratios_p50": {
            "gbt explained vs plain": ratio(per_record["gbt explained"], per_record["gbt plain"]),
            "gbt 100 explained vs plain": ratio(
                per_record["gbt 100 explained"], per_record["gbt 100 plain"]
            ),
            "linear explained vs plain": ratio(
                per_record["linear explained"], per_record["linear plain"]
            ),
            "http explained vs plain": ratio(http["explained"], http["plain"]),
        },
        "explanation_cost_us_p50": {
            "gbt": round(
                per_record["gbt explained"]["p50_us"] - per_record["gbt plain"]["p50_us"], 1
            ),
            "linear": round(
                per_record["linear explained"]["p50_us"] - per_record["linear plain"]["p50_us"], 1
            ),
            "http": round(http["explained"]["p50_us"] - http["plain"]["p50_us"], 1),
        },
        "max_gap_score_vs_raw": max_gap,
        "notes": notes,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "explain_cost.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
