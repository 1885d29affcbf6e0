"""The prediction log: round trip, flushing by count and time, dropping, reading while
writing, failed writes, and surviving ``kill -9``."""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from shipyard.errors import DataError, SpecError
from shipyard.serving.log import PredictionLog, read_log

DAY_ONE = dt.datetime(2024, 3, 9, 23, 59, 58, tzinfo=dt.UTC).timestamp()
DAY_TWO = dt.datetime(2024, 3, 10, 0, 0, 1, tzinfo=dt.UTC).timestamp()


def record(i: int, when: float = DAY_ONE, **changes) -> dict:
    """A binary-classification record numbered ``i``; ``changes`` override fields."""
    base = {
        "request_id": f"r{i}",
        "time": when + i / 1000,
        "entity_id": f"customer-{i}",
        "model_version": 3,
        "arm": "champion",
        "features": {"age": 40 + i, "plan": "basic", "tenure": None},
        "prediction": i / 100,
        "latency_ms": 1.5 + i,
        "warnings": [],
        "error": None,
    }
    return base | changes


def wait_until(condition, timeout: float = 5.0) -> float:
    """Poll ``condition`` every 10 ms; return the seconds it took, fail after ``timeout``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.01)
    return time.monotonic() - start


def temporaries(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.rglob("*.tmp"))


def test_round_trip_keeps_every_value_and_partitions_by_date(tmp_path: Path) -> None:
    records = [
        record(0),
        record(1, entity_id=None, warnings=["age above the training range", "plan unseen"]),
        record(2, prediction=[0.1, 0.7, 0.2], features={"colour": "red", "n": 2.5}),
        record(3, arm="shadow", request_id="r1", model_version=4, prediction=0.25),
        record(4, prediction=None, error="model raised ValueError: bad input"),
        record(5, when=DAY_TWO, arm="canary", warnings=["x"]),
        record(6, when=DAY_TWO, prediction=[0.5, 0.5]),
    ]
    log = PredictionLog(tmp_path, flush_seconds=60)
    for item in reversed(records):  # out of order: read_log sorts by time
        log.append(item)
    log.close()
    assert (log.written, log.dropped, log.errors) == (7, 0, 0)

    table = read_log(tmp_path)
    assert table.schema.field("time").type.tz == "UTC"
    rows = table.to_pylist()
    assert [row["request_id"] for row in rows] == ["r0", "r1", "r2", "r1", "r4", "r5", "r6"]
    for row, item in zip(rows, records, strict=True):
        multiclass = isinstance(item["prediction"], list)
        assert row["time"] == dt.datetime.fromtimestamp(item["time"], dt.UTC)
        typed = {
            f"f.{k}": float(v) if isinstance(v, int) else v for k, v in item["features"].items()
        }
        assert {k: v for k, v in row.items() if k.startswith("f.") and v is not None} == {
            k: v for k, v in typed.items() if v is not None
        }
        assert row["prediction"] == (None if multiclass else item["prediction"])
        assert row["probabilities"] == (item["prediction"] if multiclass else None)
        for key in ["entity_id", "model_version", "arm", "latency_ms", "warnings", "error"]:
            assert row[key] == item[key], key

    # untyped records: each feature typed by its JSON kind, in its own column
    assert [n for n in table.column_names if n.startswith("f.")] == [
        "f.age",
        "f.plan",
        "f.colour",
        "f.n",
    ]
    assert "features" not in table.column_names
    assert str(table.schema.field("f.age").type) == "double"

    partitions = sorted(path.name for path in tmp_path.iterdir())
    assert partitions == ["date=2024-03-09", "date=2024-03-10"]
    day_two_files = [path.name for path in (tmp_path / "date=2024-03-10").iterdir()]
    assert len(day_two_files) == 1
    assert day_two_files[0].startswith(f"part-20240310T000001005000-{os.getpid()}-")
    assert read_log(tmp_path, since=dt.date(2024, 3, 10)).column("request_id").to_pylist() == [
        "r5",
        "r6",
    ]


def test_a_full_batch_is_written_at_once_and_a_partial_one_waits(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, batch_rows=5, flush_seconds=60)
    for i in range(8):
        log.append(record(i))
    wait_until(lambda: log.written == 5)
    time.sleep(0.2)  # the other three wait for a full batch or a minute
    assert read_log(tmp_path).column("request_id").to_pylist() == [f"r{i}" for i in range(5)]
    log.flush()
    assert read_log(tmp_path).num_rows == 8
    log.close()


def test_a_record_is_on_disk_within_flush_seconds_without_close(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, batch_rows=1000, flush_seconds=0.3)
    time.sleep(0.05)  # let the writer start
    log.append(record(0))
    took = wait_until(lambda: read_log(tmp_path).num_rows == 1)
    assert 0.25 <= took <= 0.3 + 1.0
    log.close()


def test_a_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, batch_rows=1000, flush_seconds=60, max_queue=10)
    start = time.perf_counter()
    for i in range(25):
        log.append(record(i))
    assert time.perf_counter() - start < 0.05
    assert log.dropped == 15
    log.close()
    log.append(record(99))  # after close: dropped, not raised
    assert (log.written, log.dropped) == (10, 16)
    assert read_log(tmp_path).column("request_id").to_pylist() == [f"r{i}" for i in range(10)]


def test_reads_while_writing_always_succeed_and_never_shrink(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, batch_rows=50, flush_seconds=0.05)
    stop = threading.Event()

    def produce() -> None:
        i = 0
        while not stop.is_set():
            log.append(record(i, features={"payload": "x" * 200, "i": i}))
            i += 1
            if i % 5 == 0:
                time.sleep(0.001)

    producer = threading.Thread(target=produce)
    producer.start()
    counts = []
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        counts.append(read_log(tmp_path).num_rows)
    stop.set()
    producer.join()
    log.close()
    assert len(counts) > 5
    assert counts == sorted(counts)
    assert counts[-1] > 0
    assert read_log(tmp_path).num_rows == log.written > counts[-1]
    assert log.errors == 0


def test_failed_writes_are_counted_reported_once_and_retried(tmp_path: Path, capfd) -> None:
    blocker = tmp_path / "date=2024-03-10"
    blocker.write_text("a file where the partition folder should be")
    log = PredictionLog(tmp_path, flush_seconds=60)
    log.append(record(0))
    log.append(record(1, when=DAY_TWO))
    log.append({"request_id": "no other field"})
    log.flush()
    log.append(record(2, when=DAY_TWO))
    log.flush()
    assert (log.written, log.errors) == (1, 3)  # a malformed record, then two failed writes
    stderr = capfd.readouterr().err
    assert stderr.count("could not write") == 1
    assert "dropped a malformed record" in stderr

    blocker.unlink()
    log.close()
    assert (log.written, log.errors, log.dropped) == (3, 3, 0)
    assert read_log(tmp_path).column("request_id").to_pylist() == ["r0", "r1", "r2"]


def test_start_removes_dead_writers_temporaries_but_not_live_ones(tmp_path: Path) -> None:
    partition = tmp_path / "date=2024-03-09"
    partition.mkdir()
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead, live = int(finished.stdout), os.getpid()
    names = {
        "dead": f".part-20240309T235958000000-{dead}-0.parquet.tmp",
        "live": f".part-20240309T235958000000-{live}-900.parquet.tmp",
        "old": f".part-20240309T235958000000-{live}-901.parquet.tmp",
    }
    for name in names.values():
        (partition / name).write_bytes(b"half a parquet file")
    two_minutes_ago = time.time() - 120
    os.utime(partition / names["old"], (two_minutes_ago, two_minutes_ago))

    log = PredictionLog(tmp_path)
    log.append(record(0))
    log.close()
    assert temporaries(tmp_path) == [names["live"]]
    assert read_log(tmp_path).num_rows == 1  # the leftover temporary is ignored


def test_bad_settings_and_a_missing_folder_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="batch_rows must be an integer >= 1; got 0"):
        PredictionLog(tmp_path, batch_rows=0)
    with pytest.raises(SpecError, match="flush_seconds must be > 0; got -1"):
        PredictionLog(tmp_path, flush_seconds=-1)
    with pytest.raises(
        DataError, match=r"no prediction log at .*missing: the folder does not exist"
    ):
        read_log(tmp_path / "missing")
    assert read_log(tmp_path).num_rows == 0


def test_importing_the_log_loads_neither_pandas_nor_mlflow_nor_pyarrow() -> None:
    script = textwrap.dedent(
        """
        import sys, tempfile, shipyard.serving.log as log
        heavy = ["pandas", "mlflow", "pyarrow"]
        print(sorted(name for name in heavy if name in sys.modules))
        with tempfile.TemporaryDirectory() as folder:
            writer = log.PredictionLog(folder)
            writer.append({"request_id": "r", "time": 1e9, "entity_id": None,
                           "model_version": 1, "arm": "champion", "features": {"a": 1},
                           "prediction": [0.5, 0.5], "latency_ms": 1.0, "warnings": [],
                           "error": None})
            writer.close()
            print(writer.written, log.read_log(folder).num_rows, "pandas" in sys.modules)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.split("\n")[:2] == ["[]", "1 1 False"]  # writing needs no pandas either


WRITER = textwrap.dedent(
    """
    import sys, time
    from shipyard.serving.log import PredictionLog

    log = PredictionLog(sys.argv[1], batch_rows=1_000_000, flush_seconds=0.2)
    for i in range(100_000):
        log.append({"request_id": f"k{i}", "time": time.time(), "entity_id": str(i),
                    "model_version": 1, "arm": "champion", "features": {"i": i, "pad": "x" * 500},
                    "prediction": 0.5, "latency_ms": 1.0, "warnings": [], "error": None})
        print(i, time.monotonic(), flush=True)
        time.sleep(0.0005)
    """
)


@pytest.mark.parametrize("trial", range(5))
def test_kill_9_loses_only_the_unflushed_batch_and_a_restart_carries_on(
    tmp_path: Path, trial: int
) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        first = writer.stdout.readline()
        assert first, "the writer process did not start"
        time.sleep(random.Random(trial).uniform(0.8, 1.2))
        killed_at = time.monotonic()
        os.kill(writer.pid, signal.SIGKILL)
        lines = [first, *writer.stdout.read().splitlines()]
    finally:
        writer.kill()
        writer.wait()
    # the kill can cut the last line short, and can fall between an append and its print
    appended = [line.split() for line in lines if len(line.split()) == 2]
    due = {f"k{i}" for i, at in appended if float(at) < killed_at - (0.2 + 0.5)}
    assert len(due) > 20  # the kill came late enough to test something

    on_disk = set(read_log(tmp_path).column("request_id").to_pylist())
    assert due <= on_disk
    assert on_disk <= {f"k{i}" for i in range(int(appended[-1][0]) + 2)}
    for path in tmp_path.rglob("part-*.parquet"):
        pq.read_table(path)  # every file left behind is whole

    log = PredictionLog(tmp_path, flush_seconds=0.2)
    log.append(record(0, when=time.time()))
    log.close()
    after = read_log(tmp_path).column("request_id").to_pylist()
    assert set(after) == on_disk | {"r0"}
    assert len(after) == len(on_disk) + 1
    assert temporaries(tmp_path) == []


TYPES = {"age": "number", "vip": "boolean", "plan": "string", "since": "datetime"}


def test_typed_records_store_each_feature_in_a_column_of_its_contract_type(
    tmp_path: Path,
) -> None:
    """Values arrive as the service got them (numeric text, boolean spellings, ISO text);
    the writer types them through data/values.py, and what a type cannot hold is null."""
    sent = [
        {"age": " 41.5 ", "vip": "Yes", "plan": "gold", "since": "2024-03-01T12:00:00Z"},
        {"age": 7, "vip": False, "plan": 3.0, "since": "2024-03-02"},
        {"age": "forty", "vip": "maybe", "plan": True, "since": "not a time"},
        {"age": None, "plan": None},  # missing and null fields
    ]
    log = PredictionLog(tmp_path, flush_seconds=60)
    for i, features in enumerate(sent):
        log.append(record(i, features=features, types=TYPES))
    log.close()
    assert (log.written, log.errors) == (4, 0)
    schema = pq.read_schema(next(tmp_path.rglob("part-*.parquet")))
    assert {name: str(schema.field(name).type) for name in schema.names if "." in name} == {
        "f.age": "double",
        "f.vip": "bool",
        "f.plan": "string",
        "f.since": "timestamp[us, tz=UTC]",
    }
    assert "features" not in schema.names
    table = read_log(tmp_path)
    columns = {name: table.column(name).to_pylist() for name in ["f.age", "f.vip", "f.plan"]}
    assert columns == {
        "f.age": [41.5, 7.0, None, None],
        "f.vip": [True, False, None, None],
        "f.plan": ["gold", "3", "1", None],  # a category as the contract knows it
    }
    assert table.column("f.since").to_pylist() == [
        dt.datetime(2024, 3, 1, 12, tzinfo=dt.UTC),
        dt.datetime(2024, 3, 2, tzinfo=dt.UTC),
        None,
        None,
    ]


def test_each_arm_carries_its_own_features_and_a_disagreement_becomes_text(
    tmp_path: Path,
) -> None:
    log = PredictionLog(tmp_path, flush_seconds=60)
    log.append(
        record(0, features={"age": "30", "plan": "a"}, types={"age": "number", "plan": "string"})
    )
    log.append(
        record(
            1,
            arm="canary",
            features={"age": "31", "zip": "02134"},
            types={"age": "string", "zip": "string"},
        )
    )
    log.append(record(2, arm="shadow", features=None))
    log.close()
    table = read_log(tmp_path)
    assert table.column("f.plan").to_pylist() == ["a", None, None]
    assert table.column("f.zip").to_pylist() == [None, "02134", None]
    # one file, two arms typing `age` apart: stored as text, and read as numbers on request
    assert table.column("f.age").to_pylist() == ["30.0", "31", None]
    typed = read_log(tmp_path, types={"age": "number"})
    assert typed.column("f.age").to_pylist() == [30.0, 31.0, None]
    assert read_log(tmp_path, columns=["f.zip"]).column_names == ["time", "f.zip"]


def _first_layout_file(path: Path, rows: list[dict]) -> None:
    """A log file as the first layout wrote it: features as one JSON string per row."""
    import pyarrow as pa

    schema = pa.schema(
        [
            ("request_id", pa.string()),
            ("time", pa.timestamp("us", tz="UTC")),
            ("entity_id", pa.string()),
            ("model_version", pa.int64()),
            ("arm", pa.string()),
            ("features", pa.string()),
            ("prediction", pa.float64()),
            ("probabilities", pa.list_(pa.float64())),
            ("latency_ms", pa.float64()),
            ("warnings", pa.list_(pa.string())),
            ("error", pa.string()),
        ]
    )
    columns = {
        "request_id": [r["request_id"] for r in rows],
        "time": [dt.datetime.fromtimestamp(r["time"], dt.UTC) for r in rows],
        "entity_id": [r["entity_id"] for r in rows],
        "model_version": [r["model_version"] for r in rows],
        "arm": [r["arm"] for r in rows],
        "features": [
            None if r["features"] is None else orjson.dumps(r["features"]).decode() for r in rows
        ],
        "prediction": [r["prediction"] for r in rows],
        "probabilities": [None for _ in rows],
        "latency_ms": [r["latency_ms"] for r in rows],
        "warnings": [r["warnings"] for r in rows],
        "error": [r["error"] for r in rows],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns, schema=schema), path)


@pytest.mark.parametrize("mixed", [False, True], ids=["plain", "mixed-kinds"])
def test_files_of_the_first_layout_read_into_the_same_typed_columns(
    tmp_path: Path, mixed: bool
) -> None:
    old = [
        record(0, features={"age": 41, "plan": "basic", "vip": True}),
        record(1, features={"age": "42.5" if mixed else 42.5, "plan": "pro", "vip": False}),
        record(2, arm="shadow", features=None),
    ]
    _first_layout_file(tmp_path / "date=2024-03-09" / "part-20240309T000000000000-1-0.parquet", old)
    log = PredictionLog(tmp_path, flush_seconds=60)
    log.append(
        record(
            3,
            when=DAY_TWO,
            features={"age": 43, "plan": "basic", "vip": "no"},
            types={"age": "number", "plan": "string", "vip": "boolean"},
        )
    )
    log.close()

    table = read_log(tmp_path, types={"age": "number", "plan": "string", "vip": "boolean"})
    assert table.column_names == [
        *["request_id", "time", "entity_id", "model_version", "arm", "prediction"],
        *["probabilities", "latency_ms", "warnings", "error", "f.age", "f.plan", "f.vip"],
    ]
    assert [str(t) for t in table.schema.types[-3:]] == ["double", "string", "bool"]
    assert table.column("request_id").to_pylist() == ["r0", "r1", "r2", "r3"]
    assert table.column("f.age").to_pylist() == [41.0, 42.5, None, 43.0]
    assert table.column("f.plan").to_pylist() == ["basic", "pro", None, "basic"]
    assert table.column("f.vip").to_pylist() == [True, False, None, False]
    assert table.column("prediction").to_pylist() == [0.0, 0.01, 0.02, 0.03]
    # the old file alone, untyped: the JSON kinds decide (text where the kinds are mixed)
    alone = read_log(tmp_path, since=None).slice(0, 3)
    assert alone.column("f.plan").to_pylist() == ["basic", "pro", None]


def test_reading_200k_rows_runs_no_python_per_row(tmp_path: Path) -> None:
    """The new layout is read as columns: the Python calls read_log makes do not grow with
    the rows (parsing a JSON string per row would make at least 200,000 of them)."""
    log = PredictionLog(tmp_path, batch_rows=50_000, flush_seconds=60, max_queue=250_000)
    kinds = {"age": "number", "plan": "string", "vip": "boolean"}
    for i in range(200_000):
        log.append(
            record(
                i % 1000,
                features={"age": i % 90, "plan": "abc"[i % 3], "vip": i % 2 == 0},
                types=kinds,
            )
        )
    log.close()
    assert log.written == 200_000

    calls = {"python": 0, "orjson": 0}

    def count(frame, event, arg) -> None:
        if event == "call":
            calls["python"] += 1
        elif event == "c_call" and getattr(arg, "__module__", None) in ("orjson", "json"):
            calls["orjson"] += 1

    sys.setprofile(count)
    try:
        table = read_log(tmp_path)
    finally:
        sys.setprofile(None)
    assert table.num_rows == 200_000
    assert table.column("f.age").type == "double"
    assert calls["orjson"] == 0
    assert calls["python"] < 2_000, calls
