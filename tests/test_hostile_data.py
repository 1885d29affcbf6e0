"""Training data a tool should not take silently: each case is a clear exit 2, never a silent
rename, a silent extra class or a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shipyard.data.io import read_table
from shipyard.errors import DataError, RuleError
from shipyard.models.expression import parse


def shipyard(folder: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "shipyard", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done


def test_duplicate_column_names_are_refused_not_renamed(tmp_path: Path, churn: pd.DataFrame):
    sample = churn.head(300)
    text = sample.to_csv(index=False).splitlines()
    header = text[0].split(",")
    header[header.index("tenure")] = "monthly_charges"  # now named twice
    (tmp_path / "dup.csv").write_text("\n".join([",".join(header), *text[1:]]) + "\n")
    with pytest.raises(DataError, match="'monthly_charges' more than once"):
        read_table(tmp_path / "dup.csv")
    done = shipyard(tmp_path, "init", "dup.csv", "--target", "churn")
    assert done.returncode == 2 and "more than once" in done.stderr
    assert not (tmp_path / "shipyard.toml").exists()  # nothing written


def test_nested_parquet_columns_are_refused_naming_them(tmp_path: Path, churn: pd.DataFrame):
    table = pa.Table.from_pandas(churn.head(300), preserve_index=False)
    tags = pa.array([["a", "b"]] * table.num_rows, type=pa.list_(pa.string()))
    point = pa.array([{"x": 1.0, "y": 2.0}] * table.num_rows)
    pq.write_table(
        table.append_column("tags", tags).append_column("point", point), tmp_path / "n.parquet"
    )
    with pytest.raises(DataError, match=r"nested column\(s\) 'tags' .*'point'"):
        read_table(tmp_path / "n.parquet")
    done = shipyard(tmp_path, "init", "n.parquet", "--target", "churn")
    assert done.returncode == 2 and "Flatten them" in done.stderr
    assert not (tmp_path / "shipyard.toml").exists()


@pytest.mark.parametrize(
    ("labels", "shown"),
    [((" 1", "0 ", "maybe"), "spaces around"), (("Yes", "yes ", "No"), "'Yes' vs 'yes '")],
)
def test_target_labels_that_differ_only_in_spacing_or_case(tmp_path, churn, labels, shown):
    frame = churn.head(400).copy()
    frame["churn"] = [labels[i % len(labels)] for i in range(len(frame))]
    frame.to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "shipyard.toml").write_text(
        '[project]\nname = "t"\ntask = "multiclass"\ntarget = "churn"\ndata = "t.csv"\n'
    )
    done = shipyard(tmp_path, "check")
    assert done.returncode == 2, done.stdout
    assert "differ only in spaces or case" in done.stderr and shown in " ".join(done.stderr.split())


def test_a_rule_nested_past_the_limit_is_a_rule_error():
    roles = {"tenure": "numeric"}
    assert parse("(" * 20 + "tenure < 6" + ")" * 20, roles).evaluate_one({"tenure": 3})
    with pytest.raises(RuleError, match="more than 32 deep"):
        parse("(" * 400 + "tenure < 6" + ")" * 400, roles)
    with pytest.raises(RuleError, match="more than 32 deep"):
        parse("not " * 400 + "tenure < 6", roles)
