"""Batch scoring: a CSV or Parquet file (or a folder of Parquet files) in, Parquet out.

The input is streamed in chunks — Parquet record batches, CSV blocks — so memory stays
flat however large the file: a reader thread decodes the next chunk while the current one
is checked and scored, and a writer thread appends finished chunks to the output. Every
chunk goes through :func:`score_chunk`, the one scoring function both engines run:

- ``local``: the three-stage pipeline above, in this process;
- ``ray``: the same function mapped over Ray Data blocks (a local Ray instance by
  default, or a cluster's address), read back in order — identical output.

Each chunk is checked against the bundle's contract. Rows whose values cannot be read as the
type training saw (text in a numeric column) are not scored (``prediction`` is null); rows
with nulls, out-of-range values or unseen categories are scored as the transform handles
them. Both kinds are listed, with the reason, in a side file ``<OUT stem>.problems.parquet``
and counted in the summary; nothing is dropped silently.

The output keeps the row number, the id column and any requested pass-through columns, and
adds the prediction, the model version and the input's snapshot id. It is written under a
temporary name and renamed at the end, so a failure never leaves a half file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shipyard.bundle import Bundle, load_bundle
from shipyard.cluster import ENGINES, failure, ray_session
from shipyard.data.contract import Contract, Violation
from shipyard.data.io import CSV_SUFFIXES, data_files, snapshot_id
from shipyard.data.values import NULL_STRINGS, parse_booleans, parse_numbers
from shipyard.errors import ContractViolation, DataError, ShipyardError, WorkspaceError
from shipyard.files import commit, temporary_name

DEFAULT_CHUNK_ROWS = 65_536
PROBLEMS = "_problems"
Progress = Callable[[int, int | None], None]


def _no_progress(done: int, total: int | None) -> None:
    return None


@dataclass
class BatchResult:
    """What a batch scoring run did."""

    output: Path
    rows: int
    scored: int
    not_scored: int
    problems: dict[str, int]  # reason -> rows
    problems_file: Path | None
    version: int | None
    snapshot_id: str
    engine: str
    seconds: float
    columns: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["output"] = str(self.output)
        out["problems_file"] = None if self.problems_file is None else str(self.problems_file)
        out["rows_per_second"] = self.rows / self.seconds if self.seconds else None
        return out


# --- reading ------------------------------------------------------------------------------


def _is_csv(path: Path) -> bool:
    return path.name.lower().endswith(CSV_SUFFIXES)


def input_columns(files: Sequence[Path]) -> list[str]:
    """Column names of the input, from the Parquet schema or the CSV header."""
    first = files[0]
    try:
        if _is_csv(first):
            with first.open(encoding="utf-8") as handle:
                header = handle.readline()
            sep = "\t" if first.name.lower().endswith(".tsv") else ","
            return [c.strip().strip('"') for c in header.rstrip("\r\n").split(sep)]
        return list(pq.read_schema(first).names)
    except (OSError, UnicodeDecodeError, pa.ArrowException) as exc:
        raise DataError(f"cannot read the columns of '{first}': {exc}. Fix the file.") from exc


def _csv_options(path: Path, columns: Sequence[str], chunk_bytes: int) -> dict[str, Any]:
    """Every column as text: no per-block type guessing; :func:`conform` types them."""
    import pyarrow.csv as pacsv

    return {
        "read_options": pacsv.ReadOptions(block_size=chunk_bytes),
        "parse_options": pacsv.ParseOptions(
            delimiter="\t" if path.name.lower().endswith(".tsv") else ","
        ),
        "convert_options": pacsv.ConvertOptions(
            include_columns=list(columns),
            column_types={c: pa.string() for c in columns},
            strings_can_be_null=True,
            null_values=list(NULL_STRINGS),  # the cells training's reader reads as null
        ),
    }


def read_chunks(
    files: Sequence[Path], columns: Sequence[str], chunk_rows: int
) -> Iterator[pa.Table]:
    """The needed columns of every file, chunk by chunk (never the whole file at once)."""
    import pyarrow.csv as pacsv

    for path in files:
        try:
            if _is_csv(path):
                reader = pacsv.open_csv(path, **_csv_options(path, columns, chunk_rows * 64))
                for batch in reader:
                    yield pa.Table.from_batches([batch])
            else:
                for batch in pq.ParquetFile(path).iter_batches(
                    batch_size=chunk_rows, columns=list(columns)
                ):
                    yield pa.Table.from_batches([batch])
        except pa.ArrowException as exc:
            raise DataError(f"'{path}' cannot be read: {exc}. Fix or re-export the file.") from exc


def read_csv_text(data: bytes, columns: Sequence[str]) -> pa.Table:
    """CSV bytes as :func:`read_chunks` reads a CSV file: every column text, nulls by
    :data:`~shipyard.data.values.NULL_STRINGS` (the readiness check's batch path)."""
    import io

    import pyarrow.csv as pacsv

    options = _csv_options(Path("rows.csv"), columns, max(len(data), 1 << 16))
    return pacsv.read_csv(io.BytesIO(data), **options)


def _total_rows(files: Sequence[Path]) -> int | None:
    if any(_is_csv(f) for f in files):
        return None
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


# --- scoring ------------------------------------------------------------------------------


def conform(frame: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """Type text columns (CSV) as training saw them, in :mod:`shipyard.data.values`'s
    vocabulary: numbers as float, booleans (any spelling) as ``True``/``False``. A value
    that does not parse stays text, so the contract reports it (``wrong_type``) and the row
    is not scored."""
    out = {}
    for name in frame.columns:
        series = frame[name]
        col = contract.columns.get(name)
        if col is None or not (
            pd.api.types.is_string_dtype(series) or pd.api.types.is_object_dtype(series)
        ):
            out[name] = series
            continue
        numeric_dtype = str(col.dtype).startswith(("int", "float", "uint"))
        if col.role == "numeric" or (numeric_dtype and col.role in ("categorical", "id")):
            numbers, bad = parse_numbers(series)
            number = pd.Series(numbers, index=series.index)
            out[name] = number if not bad.any() else number.astype(object).where(~bad, series)
        elif col.role == "boolean":
            codes, bad = parse_booleans(series)
            truth = np.where(np.isnan(codes), None, codes == 1.0)
            mapped = pd.Series(truth, index=series.index, dtype=object)
            out[name] = mapped if not bad.any() else mapped.where(~bad, series)
        else:
            out[name] = series
    return pd.DataFrame(out, index=frame.index)


def score_chunk(
    table: pa.Table,
    bundle: Bundle,
    *,
    keep: Sequence[str],
    version: int | None,
    snapshot: str,
) -> pa.Table:
    """Check and score one chunk: the output columns plus ``_problems`` (JSON per row)."""
    frame = conform(table.to_pandas(), bundle.contract)
    checked = [c for c in bundle.features if c in bundle.contract.columns]
    violations = bundle.contract.validate(frame[checked])
    unscorable = np.zeros(len(frame), dtype=bool)
    per_row: dict[int, list[dict[str, Any]]] = {}
    for v in violations:
        rows = v.rows if v.rows is not None else np.array([], dtype=int)
        scored = v.severity != "error"
        if not scored:
            unscorable[rows] = True
        values = (
            frame[v.column].to_numpy()[rows] if v.column in frame.columns else [None] * len(rows)
        )
        for row, value in zip(rows.tolist(), values, strict=True):
            per_row.setdefault(row, []).append(_problem(v, value, scored))
    features = frame[bundle.features].copy()
    for name in features.columns:  # unreadable cells become missing, and their rows unscored
        if features[name].dtype == object and bundle.contract.columns.get(name) is not None:
            col = bundle.contract.columns[name]
            if col.role == "numeric":
                features[name] = parse_numbers(features[name])[0]
    output = np.asarray(bundle.predict(features), dtype=float)
    columns: dict[str, Any] = {c: table.column(c) for c in keep}
    if bundle.task == "multiclass":
        output[unscorable] = np.nan
        for k, cls in enumerate(bundle.classes):
            columns[f"proba_{cls}"] = pa.array(output[:, k])
        labels = np.asarray([str(c) for c in bundle.classes], dtype=object)[output.argmax(axis=1)]
        labels[unscorable] = None
        columns["prediction"] = pa.array(labels, type=pa.string())
    else:
        output = output.reshape(-1)
        columns["prediction"] = pa.array(np.where(unscorable, np.nan, output), mask=unscorable)
    columns["model_version"] = pa.array(
        np.full(len(frame), -1 if version is None else version, np.int32)
    )
    columns["snapshot_id"] = pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(len(frame), dtype=np.int32)), pa.array([snapshot], type=pa.string())
    )
    problems: list[str | None] = [None] * len(frame)
    for row, items in per_row.items():
        problems[row] = json.dumps(items, default=str)
    columns[PROBLEMS] = pa.array(problems, type=pa.string())
    return pa.table(columns)


def _problem(v: Violation, value: Any, scored: bool) -> dict[str, Any]:
    return {
        "column": v.column,
        "check": v.check,
        "reason": v.reason,
        "value": None
        if value is None or (isinstance(value, float) and np.isnan(value))
        else str(value),
        "scored": scored,
    }


# --- writing ------------------------------------------------------------------------------


class _Sink:
    """Writes scored chunks (row numbers added) to a temporary output and a problems file."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.tmp = temporary_name(output)
        self.problems_path = output.with_name(output.stem + ".problems.parquet")
        self.problems_tmp = temporary_name(self.problems_path)
        self.writer: pq.ParquetWriter | None = None
        self.problem_writer: pq.ParquetWriter | None = None
        self.rows = 0
        self.not_scored = 0
        self.counts: dict[str, int] = {}
        self.columns: list[str] = []

    def write(self, table: pa.Table, id_column: str | None) -> None:
        n = table.num_rows
        numbers = np.arange(self.rows, self.rows + n, dtype=np.int64)
        problems = table.column(PROBLEMS)
        table = table.drop_columns([PROBLEMS])
        table = table.add_column(0, "row", pa.array(numbers))
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.tmp, table.schema)
            self.columns = table.schema.names
        self.writer.write_table(table)
        positions = pc.indices_nonzero(pc.is_valid(problems)).to_numpy()
        hits = [(int(i), problems[int(i)].as_py()) for i in positions]
        if hits:
            ids = table.column(id_column).to_pylist() if id_column else None
            records = []
            for i, text in hits:
                items = json.loads(text)
                if any(not item["scored"] for item in items):
                    self.not_scored += 1
                for item in items:
                    self.counts[item["reason"]] = self.counts.get(item["reason"], 0) + 1
                    records.append(
                        {
                            "row": int(numbers[i]),
                            "id": None if ids is None else str(ids[i]),
                            **item,
                        }
                    )
            chunk = pa.Table.from_pylist(records, schema=_PROBLEM_SCHEMA)
            if self.problem_writer is None:
                self.problem_writer = pq.ParquetWriter(self.problems_tmp, _PROBLEM_SCHEMA)
            self.problem_writer.write_table(chunk)
        self.rows += n

    def commit(self) -> Path | None:
        """Close and rename both files into place; the problems file only if there were any."""
        if self.writer is None:
            raise DataError("the input holds no rows to score.")
        self.writer.close()
        commit(self.tmp, self.output)
        if self.problem_writer is not None:
            self.problem_writer.close()
            commit(self.problems_tmp, self.problems_path)
            return self.problems_path
        self.problems_path.unlink(missing_ok=True)  # a stale one from an earlier run would mislead
        return None

    def abort(self) -> None:
        for writer in (self.writer, self.problem_writer):
            if writer is not None:
                with contextlib.suppress(Exception):  # the original error is what matters
                    writer.close()
        self.tmp.unlink(missing_ok=True)
        self.problems_tmp.unlink(missing_ok=True)


_PROBLEM_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("id", pa.string()),
        ("column", pa.string()),
        ("check", pa.string()),
        ("reason", pa.string()),
        ("value", pa.string()),
        ("scored", pa.bool_()),
    ]
)


# --- the two engines ----------------------------------------------------------------------


def _local(
    files: list[Path],
    needed: list[str],
    chunk_rows: int,
    score: Callable[[pa.Table], pa.Table],
) -> Iterator[pa.Table]:
    """Read ahead in a thread while the caller scores (bounded: memory stays flat)."""
    chunks: queue.Queue[Any] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def read() -> None:
        try:
            for chunk in read_chunks(files, needed, chunk_rows):
                while not stop.is_set():
                    try:
                        chunks.put(chunk, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            chunks.put(None)
        except BaseException as exc:  # handed to the consumer, raised there
            chunks.put(exc)

    reader = threading.Thread(target=read, name="shipyard-read", daemon=True)
    reader.start()
    try:
        while (chunk := chunks.get()) is not None:
            if isinstance(chunk, BaseException):
                raise chunk
            yield score(chunk)
    finally:
        stop.set()
        reader.join(timeout=5)


def _ray(
    files: list[Path],
    needed: list[str],
    chunk_rows: int,
    bundle_path: Path,
    kwargs: dict[str, Any],
    address: str | None,
) -> Iterator[pa.Table]:
    with ray_session(address) as ray:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        paths = [str(f) for f in files]
        if _is_csv(files[0]):
            options = _csv_options(files[0], needed, chunk_rows * 64)
            data = ray.data.read_csv(paths, **options)
        else:
            data = ray.data.read_parquet(paths).select_columns(needed)
        scored = data.map_batches(
            _RayScorer,
            fn_constructor_kwargs={"bundle_path": str(bundle_path), **kwargs},
            batch_size=chunk_rows,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=max(1, (os.cpu_count() or 2) - 1)),
        )
        try:
            yield from scored.iter_batches(batch_size=None, batch_format="pyarrow")
        except ShipyardError:
            raise
        except Exception as exc:  # an actor's error arrives wrapped in Ray's own types
            raise failure(exc, "scoring") from exc


class _RayScorer:
    """One Ray actor: loads (and verifies) the bundle once, then scores batches."""

    def __init__(self, bundle_path: str, **kwargs: Any) -> None:
        self.bundle = load_bundle(bundle_path)
        self.bundle.model.accelerate()
        self.kwargs = kwargs

    def __call__(self, table: pa.Table) -> pa.Table:
        return score_chunk(table, self.bundle, **self.kwargs)


def predict(
    bundle_path: Path,
    source: Path | str,
    output: Path | str,
    *,
    version: int | None,
    id_column: str | None = None,
    keep: Sequence[str] = (),
    engine: str = "local",
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    ray_address: str | None = None,
    progress: Progress = _no_progress,
) -> BatchResult:
    """Score ``source`` with the bundle at ``bundle_path`` into ``output`` (Parquet)."""
    started = time.perf_counter()
    source, output = Path(source), Path(output)
    if engine not in ENGINES:
        raise DataError(f"--engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    if chunk_rows < 1:
        raise DataError(f"--chunk-rows must be at least 1; got {chunk_rows}")
    if not output.name.lower().endswith(".parquet"):
        raise DataError(f"the output '{output}' must be a .parquet file name.")
    if output.is_dir():
        raise WorkspaceError(f"the output '{output}' is a folder; give a .parquet file name.")
    files = data_files(source)
    if output.resolve() in {f.resolve() for f in files}:
        raise WorkspaceError(f"the output '{output}' is the input; choose another name.")
    if len({_is_csv(f) for f in files}) > 1:
        raise DataError(f"'{source}' mixes CSV and Parquet files; use one format.")
    bundle = load_bundle(bundle_path)
    columns = input_columns(files)
    missing = [c for c in bundle.features if c not in columns]
    if missing:
        raise ContractViolation(
            f"'{source}' lacks the column(s) {', '.join(missing)} that model version "
            f"{version} needs (of {len(bundle.features)} features). Add them; nothing was written.",
            [
                Violation(c, "presence", "missing_column", "error", f"column '{c}' is missing")
                for c in missing
            ],
        )
    absent = [c for c in keep if c not in columns]
    if absent:
        raise DataError(f"--keep names column(s) {', '.join(absent)} that '{source}' lacks.")
    ids = [id_column] if id_column and id_column in columns else []
    keep = list(dict.fromkeys([*ids, *keep]))
    needed = list(dict.fromkeys([*bundle.features, *keep]))
    snapshot = snapshot_id(source)
    kwargs: dict[str, Any] = {"keep": keep, "version": version, "snapshot": snapshot}
    total = _total_rows(files)
    output.parent.mkdir(parents=True, exist_ok=True)
    sink = _Sink(output)
    try:
        if engine == "local":
            bundle.model.accelerate()  # the compiled forest for trees: same output, faster
            chunks = _local(files, needed, chunk_rows, lambda t: score_chunk(t, bundle, **kwargs))
        else:
            chunks = _ray(files, needed, chunk_rows, Path(bundle_path), kwargs, ray_address)
        for table in chunks:
            sink.write(table, ids[0] if ids else None)
            progress(sink.rows, total)
        problems_file = sink.commit()
    except BaseException:
        sink.abort()
        raise
    return BatchResult(
        output=output,
        rows=sink.rows,
        scored=sink.rows - sink.not_scored,
        not_scored=sink.not_scored,
        problems=sink.counts,
        problems_file=problems_file,
        version=version,
        snapshot_id=snapshot,
        engine=engine,
        seconds=time.perf_counter() - started,
        columns=sink.columns,
    )
