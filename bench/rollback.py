"""Benchmark: how fast a rollback is end to end: the ``shipyard rollback`` command from a cold
start, and a running ``shipyard serve`` picking the change up.

All in this one run, on telco churn (``modeldata::wa_churn``, a seeded sample of --rows):

- a tracked project is trained twice (v1, then v2 with another ``min_improvement`` and a
  slightly different sample); v1 then v2 are promoted to champion (force, "bench");
- ``shipyard serve`` runs as a subprocess on a free 127.0.0.1 port with ``[serving]
  poll_seconds`` left at its default (2 s), so a pickup under 100 ms can only come from the
  router's watch of the deployment record;
- each of --rounds rounds: a thread polls ``GET /health`` every ~2 ms from before the
  command starts; ``python -m shipyard rollback --json`` runs as a fresh process (cold
  start: its whole wall clock is timed); the commit moment is the record's mtime (the atomic
  replace's write); pickup = the first /health answer showing the new revision − the commit
  moment. The round then waits for the detached alias mirror to finish (its line in
  ``.shipyard/mirror.log``; reported as ``aliases_mirrored_after_s``), so the next round's
  cold start is not measured against a process importing MLflow on the same two cores. Then
  v2 is promoted back to champion (force) and the server is waited for.

References, same run: (a) the synchronous path, ``promotion.rollback(mirror="now")`` in a
fresh ``python -c`` process (what the command cost before: importing MLflow to mirror the
aliases), its wall clock, and the ratio CLI / synchronous; (b) the poll fallback,
``poll_seconds``, and the ratio pickup / poll. After the last round, MLflow's aliases are
checked (up to --mirror-wait s) to agree with the record: ``aliases_mirrored``.

Reported: median and max of the CLI wall time, ``committed_seconds`` and pickup latency.
Targets: CLI wall (median) < 1 s; pickup (median) < 0.1 s.

    .venv/bin/python bench/rollback.py [--rounds 20] [--rows 2000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TARGETS = {"cli_wall_s": 1.0, "pickup_s": 0.1}
POLL_HEALTH_S = 0.002
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy

SPEC = """[project]
name = "churn"
task = "binary"
target = "churn"
data = "churn.csv"
positive = "Yes"

[features]
exclude = ["rownames"]
slices = ["contract"]

[baseline]
rule = "tenure < 6 and contract == 'Month-to-month'"

[split]
strategy = "stratified"

[objective]
min_improvement = {min_improvement}
"""

SYNC_ROLLBACK = """
import json, sys, time
started = time.perf_counter()
from shipyard import promotion
from shipyard.spec import load_spec
from shipyard.workspace import Workspace
out = promotion.rollback(Workspace.of(load_spec(sys.argv[1])), reason="bench", mirror="now")
print(json.dumps({**out.to_dict(), "inner_seconds": time.perf_counter() - started}))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def health(port: int) -> dict[str, Any] | None:
    try:
        with DIRECT.open(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def build_project(folder: Path, rows: int) -> Path:
    """The project with v1 and v2 registered and promoted (v2 champion); reused if there."""
    from shipyard.demo import churn_frame
    from shipyard.project import Project

    spec = folder / "shipyard.toml"
    record = folder / ".shipyard" / "deployment" / "churn.json"
    if record.exists():
        return spec
    folder.mkdir(parents=True, exist_ok=True)
    churn = churn_frame()
    for version, (seed, gain) in enumerate(((0, 0.0), (1, 0.001)), start=1):
        churn.sample(rows, random_state=seed).to_csv(folder / "churn.csv", index=False)
        spec.write_text(SPEC.format(min_improvement=gain))
        trained = Project.load(spec).train()
        assert trained.version == version, trained.version
    project = Project.load(spec)
    project.promote(1, "champion", force=True, reason="bench")
    project.promote(2, "champion", force=True, reason="bench")
    return spec


@contextlib.contextmanager
def serving(spec: Path, port: int, log_path: Path, timeout: float = 120) -> Iterator[None]:
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "shipyard", "serve", "--spec", str(spec)),
                *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + timeout
            while health(port) is None:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.2)
            yield
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=20)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


def wait_for(port: int, revision: int, timeout: float = 10.0) -> float | None:
    """Poll /health until it shows ``revision``; the wall-clock moment it did, or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = health(port)
        if seen and seen.get("revision") == revision:
            return time.time()
        time.sleep(POLL_HEALTH_S)
    return None


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def one_round(spec: Path, record: Path, port: int, revision: int) -> dict[str, Any]:
    """One cold-start CLI rollback; its wall clock, commit time and the server's pickup."""
    seen: dict[str, float | None] = {}
    watcher = threading.Thread(
        target=lambda: seen.update(at=wait_for(port, revision + 1, timeout=15.0))
    )
    watcher.start()
    mirror_log = spec.parent / ".shipyard" / "mirror.log"
    mirrored_before = _lines(mirror_log)
    started = time.perf_counter()
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "shipyard", "rollback", "--spec", str(spec)),
            *("--json", "--reason", "bench"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    wall = time.perf_counter() - started
    watcher.join(timeout=20)
    if proc.returncode != 0:
        raise RuntimeError(f"rollback failed ({proc.returncode}): {proc.stderr[-2000:]}")
    outcome = json.loads(proc.stdout)
    committed_at = record.stat().st_mtime_ns / 1e9
    entry_time = json.loads(record.read_text())["history"][-1]["time"]
    at = seen.get("at")
    # the detached mirror imports MLflow (seconds of CPU): let it finish, so the next round's
    # cold start is not measured against it, and report how long the aliases took to follow
    deadline = time.monotonic() + 60
    while _lines(mirror_log) <= mirrored_before and time.monotonic() < deadline:
        time.sleep(0.05)
    mirror_done = time.perf_counter() - started if _lines(mirror_log) > mirrored_before else None
    return {
        "cli_wall_s": wall,
        "aliases_mirrored_after_s": mirror_done,
        "committed_seconds": outcome["committed_seconds"],
        "pickup_s": None if at is None else at - committed_at,
        "revision": outcome["revision"],
        "history_time": entry_time,
    }


def restore(spec: Path, port: int) -> int:
    """v2 champion again (force: it was rolled back); the server shows it. Its revision."""
    from shipyard.project import Project

    out = Project.load(spec).promote(2, "champion", force=True, reason="bench")
    if wait_for(port, out.revision) is None:
        raise RuntimeError(f"the server never showed revision {out.revision}")
    return out.revision


def aliases_agree(spec: Path, wait: float) -> tuple[bool, dict[str, int], dict[str, Any]]:
    from shipyard.spec import load_spec
    from shipyard.workspace import Workspace

    workspace = Workspace.of(load_spec(spec))
    state = workspace.registry.state()
    tracker = workspace.tracker()
    wanted = {"champion": state.champion}
    if state.challenger is not None:
        wanted["challenger"] = state.challenger
    deadline = time.monotonic() + wait
    while True:
        found = tracker.aliases(workspace.model)
        if found == wanted or time.monotonic() > deadline:
            return found == wanted, found, wanted
        time.sleep(0.5)


def stats(values: list[float | None]) -> dict[str, float | None]:
    got = [v for v in values if v is not None]
    if not got:
        return {"median": None, "max": None, "missing": len(values)}
    return {
        "median": round(statistics.median(got), 4),
        "max": round(max(got), 4),
        "missing": len(values) - len(got),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--rows", type=int, default=2000, help="churn rows sampled")
    parser.add_argument("--mirror-wait", type=float, default=30.0)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    started = time.perf_counter()
    load_before = os.getloadavg()
    rounds: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        folder = (
            args.workdir.resolve()
            if args.workdir
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="shipyard-bench-")))
        )
        spec = build_project(folder / "churn", args.rows)
        record = spec.parent / ".shipyard" / "deployment" / "churn.json"
        prepare_s = time.perf_counter() - started
        from shipyard.project import Project

        poll_s = Project.load(spec).spec.serving.poll_seconds
        port = free_port()
        with serving(spec, port, folder / "serve.log"):
            revision = json.loads(record.read_text())["revision"]
            for _ in range(args.rounds):
                rounds.append(one_round(spec, record, port, revision))
                revision = restore(spec, port)
            # reference (a): the synchronous path in a fresh process
            reference = []
            for _ in range(max(1, min(3, args.rounds))):
                t0 = time.perf_counter()
                proc = subprocess.run(
                    [sys.executable, "-c", SYNC_ROLLBACK, str(spec)],
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                reference.append(time.perf_counter() - t0)
                if proc.returncode != 0:
                    raise RuntimeError(f"synchronous rollback failed: {proc.stderr[-2000:]}")
                revision = restore(spec, port)
            # one last CLI rollback, then its background mirror must land
            last = one_round(spec, record, port, revision)
            rounds.append(last)
            mirrored, found, wanted = aliases_agree(spec, args.mirror_wait)
        mirror_log = (spec.parent / ".shipyard" / "mirror.log").read_text()[-1500:]

    cli = stats([r["cli_wall_s"] for r in rounds])
    pickup = stats([r["pickup_s"] for r in rounds])
    mirror_after = stats([r["aliases_mirrored_after_s"] for r in rounds])
    sync = stats(reference)
    out = {
        "rounds": len(rounds),
        "cli_wall_s": cli,
        "committed_seconds": stats([r["committed_seconds"] for r in rounds]),
        "pickup_s": pickup,
        "aliases_mirrored_after_s": mirror_after,
        "reference_sync_wall_s": sync,
        "poll_seconds": poll_s,
        "ratios": {
            "cli_vs_sync_wall": (
                round(cli["median"] / sync["median"], 3)
                if cli["median"] and sync["median"]
                else None
            ),
            "pickup_vs_poll": (
                round(pickup["median"] / poll_s, 4) if pickup["median"] is not None else None
            ),
        },
        "aliases_mirrored": mirrored,
        "aliases": {"found": found, "wanted": wanted},
        "targets": {
            "cli wall median < 1 s": cli["median"] is not None
            and cli["median"] < TARGETS["cli_wall_s"],
            "pickup median < 0.1 s": pickup["median"] is not None
            and pickup["median"] < TARGETS["pickup_s"],
        },
        "per_round": [{k: v for k, v in r.items()} for r in rounds],
        "context": {
            "rows": args.rows,
            "cpus": os.cpu_count(),
            "load_avg_1_5_15_before": [round(x, 2) for x in load_before],
            "load_avg_1_5_15_after": [round(x, 2) for x in os.getloadavg()],
            "prepare_s": round(prepare_s, 1),
            "wall_s": round(time.perf_counter() - started, 1),
            "mirror_log_tail": mirror_log,
        },
    }
    print(f"{'':28}{'median':>10}{'max':>10}")
    for label, row in (
        ("CLI wall (cold start) s", cli),
        ("committed_seconds", out["committed_seconds"]),
        ("pickup s", pickup),
        ("aliases mirrored after s", mirror_after),
        ("sync reference wall s", sync),
    ):
        print(f"{label:28}{row['median']!s:>10}{row['max']!s:>10}")
    print(f"ratios {out['ratios']}  aliases_mirrored={mirrored}  targets {out['targets']}")
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "rollback.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
