"""Tables: a data file (CSV, Parquet, or a folder of Parquet files) and its snapshot id.

The snapshot id is a SHA-256 of the file bytes (for a folder, of each file's relative path
and bytes, in sorted order), computed by streaming, so it is the same however and however
often the data is read, and a large file never has to be held twice in memory.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from shipyard.data.values import NULL_STRINGS
from shipyard.errors import DataError
from shipyard.files import atomic_path

CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
_CHUNK = 1 << 20


@dataclass
class Table:
    """A loaded data file: the frame, where it came from, and its content hash."""

    frame: pd.DataFrame
    path: Path
    snapshot_id: str


def data_files(path: Path) -> list[Path]:
    """The files a path stands for: itself, or the Parquet files in a folder (sorted)."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _is_parquet(p))
        if not files:
            raise DataError(
                f"folder '{path}' holds no Parquet files (*.parquet). "
                "Point at a CSV or Parquet file, or a folder of Parquet files."
            )
        return files
    if not path.exists():
        raise DataError(f"no such file or folder: '{path}'. Check the path.")
    return [path]


def snapshot_id(path: Path | str) -> str:
    """SHA-256 over the data's bytes, streamed in 1 MiB chunks.

    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = Path(d, "a.csv"); _ = p.write_text("x\\n1\\n")
    ...     snapshot_id(p) == snapshot_id(p)
    True
    """
    path = Path(path)
    digest = hashlib.sha256()
    files = data_files(path)
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with file.open("rb") as handle:
            while block := handle.read(_CHUNK):
                digest.update(block)
    return digest.hexdigest()


def _is_parquet(path: Path) -> bool:
    return path.name.lower().endswith(PARQUET_SUFFIXES)


def _read_csv(path: Path) -> pd.DataFrame:
    sep = "\t" if path.name.lower().endswith(".tsv") else ","
    try:
        repeated = _csv_header_duplicates(path, sep)
    except UnicodeDecodeError:
        repeated = []  # reported below, with the byte
    if repeated:
        raise DataError(
            f"'{path}' has the column name(s) {', '.join(map(repr, repeated))} more than once in "
            "its header; give every column its own name (nothing was renamed or read)."
        )
    try:
        return pd.read_csv(
            path,
            sep=sep,
            encoding="utf-8",
            low_memory=False,
            keep_default_na=False,
            na_values=list(NULL_STRINGS),  # the same cells batch scoring reads as null
        )
    except UnicodeDecodeError as exc:
        raise DataError(
            f"'{path}' is not UTF-8 text (byte {exc.start}: {exc.object[exc.start : exc.start + 1]!r})."
            " Re-save it as UTF-8, e.g. `iconv -f latin1 -t utf-8 IN > OUT`."
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(
            f"'{path}' is empty: no header and no rows. Point at a file with data."
        ) from exc
    except pd.errors.ParserError as exc:
        raise DataError(f"'{path}' is not a readable CSV file: {exc}. Fix the file.") from exc


def _duplicates(names: list[str]) -> list[str]:
    from collections import Counter

    return sorted(name for name, n in Counter(names).items() if n > 1)


def _csv_header_duplicates(path: Path, sep: str) -> list[str]:
    """Column names the header repeats (pandas would rename them silently: ``age.1``)."""
    import csv

    with path.open(encoding="utf-8", newline="") as handle:
        header = next(csv.reader(handle, delimiter=sep), [])
    return _duplicates([h.strip() for h in header])


def _check_parquet_schema(path: Path) -> None:
    """Refuse what a table of features cannot hold: repeated names, nested columns."""
    import pyarrow.parquet as pq
    import pyarrow.types as pat

    schema = pq.read_schema(path)
    repeated = _duplicates(list(schema.names))
    if repeated:
        raise DataError(
            f"'{path}' has the column name(s) {', '.join(map(repr, repeated))} more than once; "
            "give every column its own name."
        )
    nested = [
        f"'{f.name}' ({f.type})"
        for f in schema
        if pat.is_nested(f.type) or (pat.is_dictionary(f.type) and pat.is_nested(f.type.value_type))
    ]
    if nested:
        raise DataError(
            f"'{path}' has nested column(s) {', '.join(nested[:10])}: shipyard reads one value "
            "per cell. Flatten them (one column per field or element) or drop them."
        )


def _read_parquet(files: list[Path], origin: Path) -> pd.DataFrame:
    try:
        for f in files:
            _check_parquet_schema(f)
    except DataError:
        raise
    except Exception as exc:  # pyarrow raises several unrelated types for a broken file
        raise DataError(
            f"'{origin}' is not a readable Parquet file: {exc}. Re-export it, or use CSV."
        ) from exc
    try:
        frames = [pd.read_parquet(f) for f in files]
    except Exception as exc:  # pyarrow raises several unrelated types for a broken file
        raise DataError(
            f"'{origin}' is not a readable Parquet file: {exc}. Re-export it, or use CSV."
        ) from exc
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def read_table(path: Path | str) -> Table:
    """Read a CSV or Parquet file (or a folder of Parquet files) into a :class:`Table`.

    Raises
    ------
    DataError
        The path does not exist, the file is empty, holds only a header, is not UTF-8,
        or is not a readable CSV/Parquet file.
    """
    path = Path(path)
    files = data_files(path)
    if path.is_dir() or _is_parquet(path):
        frame = _read_parquet(files, path)
    elif path.name.lower().endswith(CSV_SUFFIXES):
        if path.stat().st_size == 0:
            raise DataError(f"'{path}' is empty: no header and no rows. Point at a file with data.")
        frame = _read_csv(path)
    else:
        raise DataError(
            f"'{path}' has an unknown type; shipyard reads CSV ({', '.join(CSV_SUFFIXES)}) "
            f"and Parquet ({', '.join(PARQUET_SUFFIXES)}) files, or a folder of Parquet files."
        )
    if frame.shape[1] == 0:
        raise DataError(f"'{path}' has no columns. Point at a file with a header row and data.")
    if len(frame) == 0:
        raise DataError(
            f"'{path}' has a header but no rows ({frame.shape[1]} columns). "
            "Point at a file with data."
        )
    frame.columns = [str(c) for c in frame.columns]
    return Table(frame=frame, path=path, snapshot_id=snapshot_id(path))


def write_parquet(frame: pd.DataFrame, path: Path | str) -> None:
    """Write a frame to Parquet through a temporary name, so a crash leaves no half file."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
