from pathlib import Path

import pandas as pd
import pytest

from shipyard.data.io import read_table, snapshot_id, write_parquet
from shipyard.errors import DataError


def test_csv_and_parquet_read_the_same_table(tmp_path: Path, churn: pd.DataFrame):
    churn.to_csv(tmp_path / "c.csv", index=False)
    churn.to_parquet(tmp_path / "c.parquet", index=False)
    a, b = read_table(tmp_path / "c.csv"), read_table(tmp_path / "c.parquet")
    assert a.frame.shape == b.frame.shape == churn.shape
    assert a.frame["total_charges"].isna().sum() == 11
    pd.testing.assert_series_equal(a.frame["tenure"], b.frame["tenure"])


def test_snapshot_id_is_a_content_hash(tmp_path: Path, churn: pd.DataFrame):
    path = tmp_path / "c.csv"
    churn.to_csv(path, index=False)
    first = snapshot_id(path)
    assert read_table(path).snapshot_id == first == snapshot_id(path)  # stable across re-reads
    copy = tmp_path / "copy.csv"
    copy.write_bytes(path.read_bytes())
    assert snapshot_id(copy) == first  # independent of the file's name or how it is read
    churn.iloc[:-1].to_csv(path, index=False)
    assert snapshot_id(path) != first  # any change in content changes it


def test_folder_of_parquet_files(tmp_path: Path, churn: pd.DataFrame):
    folder = tmp_path / "parts"
    folder.mkdir()
    write_parquet(churn.iloc[:3000], folder / "part-0.parquet")
    write_parquet(churn.iloc[3000:], folder / "part-1.parquet")
    table = read_table(folder)
    assert len(table.frame) == len(churn)
    assert list(folder.iterdir()) and not list(folder.glob("*.tmp"))
    before = table.snapshot_id
    (folder / "part-1.parquet").rename(folder / "part-2.parquet")
    assert snapshot_id(folder) != before  # file names are part of a folder's snapshot


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "is empty"),
        ("header.csv", b"a,b,c\n", "has a header but no rows"),
        ("latin1.csv", "name,city\nJosé,São Paulo\n".encode("latin-1"), "is not UTF-8"),
        ("broken.parquet", b"PAR1 this is not parquet", "not a readable Parquet file"),
        ("data.xlsx", b"whatever", "unknown type"),
    ],
)
def test_bad_files_give_one_clear_error(tmp_path: Path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_table(path)


def test_missing_path_and_empty_folder(tmp_path: Path):
    with pytest.raises(DataError, match="no such file"):
        read_table(tmp_path / "nope.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no Parquet files"):
        read_table(tmp_path / "empty")
