"""Batch scoring (local engine) on telco churn: equality, bad rows, bad input, atomic output."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from shipyard import batch
from shipyard.bundle import load_bundle
from shipyard.data.io import read_table, snapshot_id
from shipyard.errors import DataError, WorkspaceError
from support import churn_project


@pytest.fixture(scope="module")
def scored(tmp_path_factory, churn):
    """A churn bundle (trained untracked) and the raw data as CSV and as Parquet."""
    folder = tmp_path_factory.mktemp("batch")
    project = churn_project(folder, churn, project={"id": "rownames"})
    result = project.train(track=False)
    churn.drop(columns=["churn"]).to_parquet(folder / "churn.parquet", index=False)
    return folder, result.bundle, load_bundle(result.bundle)


def test_csv_in_small_chunks_equals_the_bundle_on_the_whole_frame(scored):
    folder, path, bundle = scored
    out = folder / "out" / "scores.parquet"
    result = batch.predict(
        path, folder / "churn.csv", out, version=3, id_column="rownames", chunk_rows=500
    )
    frame = read_table(folder / "churn.csv").frame
    got = pd.read_parquet(out)
    expected = bundle.predict(frame[bundle.features])
    assert result.rows == len(frame) == len(got)
    assert got["row"].tolist() == list(range(len(frame)))
    np.testing.assert_array_equal(got["prediction"].to_numpy(), expected)
    assert got["rownames"].tolist() == [str(v) for v in frame["rownames"]]  # CSV text kept
    assert set(got["model_version"]) == {3}
    assert set(got["snapshot_id"]) == {snapshot_id(folder / "churn.csv")}
    assert list(got.columns) == ["row", "rownames", "prediction", "model_version", "snapshot_id"]


def test_parquet_keeps_pass_through_columns_and_types(scored):
    folder, path, bundle = scored
    out = folder / "p.parquet"
    result = batch.predict(
        path, folder / "churn.parquet", out, version=1, keep=["contract"], chunk_rows=1000
    )
    frame = pd.read_parquet(folder / "churn.parquet")
    got = pd.read_parquet(out)
    np.testing.assert_array_equal(got["prediction"].to_numpy(), bundle.predict(frame))
    assert got["contract"].tolist() == frame["contract"].tolist()
    assert result.rows == 7043 and result.scored == 7043


def test_rows_breaking_the_contract_are_listed_not_dropped(scored, churn):
    folder, path, bundle = scored
    bad = churn.drop(columns=["churn"]).copy()
    bad["tenure"] = bad["tenure"].astype(object)
    bad.loc[3, "tenure"] = "forty"  # unreadable: not scored
    bad.loc[5, "monthly_charges"] = 1e6  # out of range: scored
    bad.loc[7, "contract"] = "Lifetime"  # unseen category: scored
    bad.to_csv(folder / "bad.csv", index=False)
    out = folder / "bad.parquet"
    result = batch.predict(path, folder / "bad.csv", out, version=1, id_column="rownames")
    got = pd.read_parquet(out)
    assert len(got) == len(bad)  # nothing dropped
    assert np.isnan(got["prediction"][3]) and got["prediction"].notna().sum() == len(bad) - 1
    assert result.not_scored == 1 and result.scored == len(bad) - 1
    problems = pd.read_parquet(result.problems_file)
    assert result.problems_file == folder / "bad.problems.parquet"
    first = problems.set_index("row").loc[[3, 5, 7]]
    assert first["reason"].tolist() == ["wrong_type", "out_of_range", "unseen_category"]
    assert first["column"].tolist() == ["tenure", "monthly_charges", "contract"]
    assert first["value"].tolist() == ["forty", "1000000.0", "Lifetime"]
    assert first["scored"].tolist() == [False, True, True]
    assert first["id"].tolist() == [str(bad.loc[i, "rownames"]) for i in (3, 5, 7)]
    assert result.problems["wrong_type"] == 1
    # the scored bad rows get what the bundle gives them (transform handles the surprises)
    frame = read_table(folder / "bad.csv").frame
    for row in (5, 7):
        assert got["prediction"][row] == bundle.predict_one(frame.iloc[row].to_dict())


def test_missing_columns_exit_2_naming_them_and_leave_no_file(scored, churn, tmp_path):
    _folder, path, _bundle = scored
    churn.drop(columns=["tenure", "contract", "churn"]).to_csv(tmp_path / "m.csv", index=False)
    out = tmp_path / "m.parquet"
    with pytest.raises(DataError, match="tenure, contract"):
        batch.predict(path, tmp_path / "m.csv", out, version=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.csv"]


def test_bad_output_names_and_engines_are_refused(scored, tmp_path):
    folder, path, _ = scored
    with pytest.raises(DataError, match=r"must be a \.parquet"):
        batch.predict(path, folder / "churn.csv", tmp_path / "x.csv", version=1)
    with pytest.raises(WorkspaceError, match="is the input"):
        batch.predict(path, folder / "churn.parquet", folder / "churn.parquet", version=1)
    with pytest.raises(DataError, match="--engine must be one of"):
        batch.predict(path, folder / "churn.csv", tmp_path / "x.parquet", version=1, engine="x")
    with pytest.raises(DataError, match="no such file"):
        batch.predict(path, tmp_path / "nope.csv", tmp_path / "x.parquet", version=1)


def test_a_failure_mid_stream_leaves_neither_output_nor_temporary(scored, churn, tmp_path):
    folder, path, _ = scored
    text = (folder / "churn.csv").read_text().splitlines()
    # a row with too many fields far down the file: the reader fails after chunks were written
    broken = [*text[:5000], text[5000] + ",1,2,3", *text[5001:]]
    (tmp_path / "broken.csv").write_text("\n".join(broken) + "\n")
    out = tmp_path / "o.parquet"
    with pytest.raises(DataError, match="cannot be read"):
        batch.predict(path, tmp_path / "broken.csv", out, version=1, chunk_rows=200)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.csv"]


def test_cli_predict_on_a_missing_column_is_exit_2_without_traceback(scored, churn, tmp_path):
    folder, _, _ = scored
    churn.drop(columns=["tenure", "churn"]).to_csv(tmp_path / "m.csv", index=False)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "shipyard",
            "predict",
            str(tmp_path / "m.csv"),
            str(tmp_path / "o.parquet"),
            "--spec",
            str(folder / "shipyard.toml"),
            "--model",
            "champion",
        ],
        capture_output=True,
        text=True,
    )
    # nothing is deployed in this project: the message says so, before reading anything
    assert proc.returncode == 2
    assert "no champion yet" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o.parquet").exists()
