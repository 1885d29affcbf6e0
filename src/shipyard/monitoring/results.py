"""The results table: every number ``shipyard monitor`` computed, kept in the workspace.

One row per window, model version, arm, section, statistic and column (:data:`COLUMNS`),
under ``.shipyard/monitoring/results/`` as one Parquet file per window
(``<start>_<end>.parquet``), so drift over time is a query over :func:`read_results`.
Workspace-level rows (volume, staleness) have no model version and the arm ``""``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from shipyard.monitoring.table import WINDOW

if TYPE_CHECKING:
    import pyarrow as pa

#: The columns, in order (see docs/commands.md, ``monitor``): the window keys, then a row's.
COLUMNS = (
    *WINDOW,
    "section",
    "column",
    "statistic",
    "value",
    "lower",
    "upper",
    "pvalue",
    "level",
    "note",
)


def results_folder(workspace: Any) -> Path:
    return Path(workspace.folder) / "monitoring" / "results"


def results_schema() -> pa.Schema:
    import pyarrow as pa

    stamp = pa.timestamp("us", tz="UTC")
    return pa.schema(
        [
            ("window_start", stamp),
            ("window_end", stamp),
            ("model_version", pa.int64()),
            ("arm", pa.string()),
            ("section", pa.string()),
            ("column", pa.string()),
            ("statistic", pa.string()),
            ("value", pa.float64()),
            ("lower", pa.float64()),
            ("upper", pa.float64()),
            ("pvalue", pa.float64()),
            ("level", pa.string()),
            ("note", pa.string()),
        ]
    )


#: What identifies a row: a later run's row with the same key replaces it.
KEY = ["window_start", "window_end", "model_version", "arm", "section", "column", "statistic"]


def to_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Result rows (window times as epoch microseconds) as the results table."""
    frame = pd.DataFrame([{c: row.get(c) for c in COLUMNS} for row in rows], columns=COLUMNS)
    for column in ("window_start", "window_end"):
        frame[column] = pd.to_datetime(frame[column].astype("int64"), unit="us", utc=True)
    frame["model_version"] = frame["model_version"].astype("Int64")
    for column in ("value", "lower", "upper", "pvalue"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    for column in ("arm", "section", "column", "statistic", "level", "note"):
        frame[column] = frame[column].fillna("").astype(str)
    return frame


def _keys(frame: pd.DataFrame) -> list[str]:
    """Each row's :data:`KEY` as text (a version as an integer, however it was read)."""
    keyed = frame[KEY].copy()
    keyed["model_version"] = [None if pd.isna(v) else int(v) for v in keyed["model_version"]]
    return ["|".join(map(str, key)) for key in keyed.itertuples(index=False)]


def _table(frame: pd.DataFrame) -> pa.Table:
    """The frame as the results schema (times through epoch microseconds: pyarrow reading
    a zoned pandas column goes through its deprecated ``Series.values``)."""
    import pyarrow as pa

    plain = frame.copy()
    stamps = ("window_start", "window_end")
    for column in stamps:
        plain[column] = plain[column].dt.tz_convert(None).astype("datetime64[us]").astype("int64")
    schema = results_schema()
    as_numbers = pa.schema(
        [pa.field(f.name, pa.int64()) if f.name in stamps else f for f in schema]
    )
    return pa.Table.from_pandas(plain, schema=as_numbers, preserve_index=False).cast(schema)


def write_results(workspace: Any, frame: pd.DataFrame) -> list[Path]:
    """Keep result rows: one Parquet file per window (``<start>_<end>.parquet``), written
    atomically; a row with the same window, version, arm, section, column and statistic
    as a kept one replaces it. The paths written."""
    import pyarrow.parquet as pq

    from shipyard.files import atomic_path

    folder = results_folder(workspace)
    written = []
    for (start, end), rows in frame.groupby(["window_start", "window_end"], sort=True):
        path = folder / f"{start:%Y%m%dT%H%M%S%f}Z_{end:%Y%m%dT%H%M%S%f}Z.parquet"
        if path.exists():
            old = _read(path)
            new = set(_keys(rows))
            kept = old[[key not in new for key in _keys(old)]]
            rows = pd.concat([kept, rows], ignore_index=True) if len(kept) else rows
        table = _table(rows.reset_index(drop=True))
        with atomic_path(path) as temporary:
            pq.write_table(table, temporary)
        written.append(path)
    return written


def _read(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as file:
        frame = file.read().cast(results_schema()).to_pandas()
    frame["model_version"] = frame["model_version"].astype("Int64")
    return frame


def read_results(workspace: Any) -> pd.DataFrame:
    """Every result row kept in the workspace, in window order (an empty table when
    ``monitor`` never ran)."""
    frames = [_read(path) for path in sorted(results_folder(workspace).glob("*.parquet"))]
    if not frames:
        return results_schema().empty_table().to_pandas()
    frame = pd.concat(frames, ignore_index=True)
    return frame.sort_values(["window_start", "section", "column"], kind="stable").reset_index(
        drop=True
    )
