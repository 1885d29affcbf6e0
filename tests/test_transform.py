import numpy as np
import pandas as pd
import pytest

from shipyard.data.roles import profile
from shipyard.errors import NotFittedError
from shipyard.features.transform import Transform
from support import records_of, with_surprises

FEATURE_ROLES = ("numeric", "categorical", "boolean", "datetime")


def _roles(frame: pd.DataFrame, drop=()) -> dict[str, str]:
    return {
        c: p.role for c, p in profile(frame).items() if p.role in FEATURE_ROLES and c not in drop
    }


@pytest.mark.parametrize("encoding", ["onehot", "ordinal"])
@pytest.mark.parametrize("unknown", ["bucket", "hash"])
def test_frame_and_record_paths_agree_on_churn(churn, encoding, unknown):
    frame = churn.drop(columns=["churn", "rownames"])
    roles = _roles(frame)
    t = Transform(categorical=encoding, unknown=unknown, hash_buckets=64).fit(
        frame.iloc[:4000], roles
    )
    test = with_surprises(frame.iloc[4000:])
    matrix = t.transform(test)
    records = records_of(test)
    rows = np.array([t.transform_one(r) for r in records])
    assert matrix.shape == (len(test), t.n_features)
    assert np.isfinite(matrix).all()
    np.testing.assert_allclose(rows, matrix, rtol=0, atol=1e-9)
    # the many-records path is the one-record path exactly, row for row
    np.testing.assert_array_equal(t.transform_records(records), rows)
    assert t.transform_records([]).shape == (0, t.n_features)


def test_frame_and_record_paths_agree_on_flights_with_datetimes(flights_sample):
    frame = flights_sample.drop(columns=["arr_delayed"])
    roles = _roles(frame, drop=("rownames", "tailnum"))
    assert roles["time_hour"] == "datetime"
    # every other flight: train spans the year, so every calendar part repeats within it
    t = Transform(categorical="onehot", min_frequency=20).fit(frame.iloc[::2], roles)
    parts = [n for n in t.feature_names_ if n.startswith("time_hour.")]
    assert parts == [f"time_hour.{p}" for p in ("month", "weekday", "day_of_year", "hour")]
    # the first half-year alone has not seen every month: month and day of year stay out
    first = frame[pd.to_datetime(frame["time_hour"]) < pd.Timestamp("2013-07-01", tz="UTC")]
    half = Transform(min_frequency=20).fit(first, {"time_hour": "datetime"})
    assert half.feature_names_ == ["time_hour.weekday", "time_hour.hour"]
    test = with_surprises(frame.iloc[1::2].head(5000), seed=3)
    records = records_of(test)
    rows = np.array([t.transform_one(r) for r in records])
    np.testing.assert_allclose(rows, t.transform(test), rtol=0, atol=1e-9)
    np.testing.assert_array_equal(t.transform_records(records), rows)


@pytest.mark.parametrize("encoding", ["onehot", "ordinal"])
def test_the_sparse_matrix_is_the_dense_one_entry_for_entry(flights_sample, encoding):
    """``transform_sparse`` builds the CSR matrix without the dense one: the same values,
    one stored entry per row per plan (plus its missing-indicator), in column order, on
    flights with date-time parts and on rows with missing, unseen and out-of-range values.
    A solver given it gets the same coefficients as from the dense matrix's own CSR copy."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    frame = flights_sample.drop(columns=["arr_delayed"])
    roles = _roles(frame, drop=("rownames", "tailnum"))
    t = Transform(categorical=encoding, min_frequency=20).fit(frame.iloc[::2], roles)
    test = with_surprises(frame.iloc[1::2].head(5000), seed=5)
    dense, built = t.transform(test), t.transform_sparse(test)
    assert built.format == "csr" and built.shape == dense.shape
    np.testing.assert_array_equal(built.toarray(), dense)
    assert built.nnz == len(test) * t.entries_per_row()
    assert all(np.all(np.diff(row.indices) > 0) for row in built[:200])  # column order
    assert t.entries_per_row() == len(t.plans_) + sum(bool(p.get("indicator")) for p in t.plans_)
    if encoding == "onehot":  # the rows as they came (a fit on the surprises would not settle)
        rows = frame.iloc[1::2].head(5000)
        y = flights_sample["arr_delayed"].iloc[1::2].head(5000).to_numpy().astype(int)
        fits = [
            LogisticRegression(max_iter=500).fit(m, y).coef_
            for m in (t.transform_sparse(rows), sparse.csr_matrix(t.transform(rows)))
        ]
        np.testing.assert_array_equal(fits[0], fits[1])


def test_statistics_come_from_the_frame_it_was_fitted_on(churn):
    frame = churn.drop(columns=["churn", "rownames"])
    roles = _roles(frame)
    train, rest = frame.iloc[:5000], frame.iloc[5000:].copy()
    t = Transform(min_frequency=1).fit(train, roles)
    plans = {p["column"]: p for p in t.to_dict()["plans"]}
    assert plans["tenure"]["median"] == train["tenure"].median()
    assert plans["tenure"]["center"] == pytest.approx(train["tenure"].mean())
    assert plans["total_charges"]["indicator"] is True  # train has missing total_charges
    assert set(plans["contract"]["vocabulary"]) == set(train["contract"])
    rest["tenure"] = rest["tenure"] * 100  # changing other rows changes nothing fitted
    again = Transform(min_frequency=1).fit(train, roles)
    assert again.to_dict() == t.to_dict()


def test_rare_categories_share_the_unknown_bucket_and_json_round_trip(churn):
    frame = churn[["payment_method", "tenure"]]
    t = Transform(min_frequency=2000).fit(
        frame, {"payment_method": "categorical", "tenure": "numeric"}
    )
    counts = frame["payment_method"].value_counts()
    assert t.to_dict()["plans"][0]["vocabulary"] == sorted(counts[counts >= 2000].index)
    clone = Transform.from_dict(t.to_dict())
    np.testing.assert_array_equal(clone.transform(frame), t.transform(frame))


def test_unfitted_transform_says_what_to_call():
    with pytest.raises(NotFittedError, match=r"Transform\.fit"):
        Transform().transform_one({"a": 1})


def test_a_boolean_with_no_values_in_train_does_not_raise():
    train = pd.DataFrame({"flag": [None, None, None], "x": [1.0, 2.0, 3.0]})
    t = Transform().fit(train, {"flag": "boolean", "x": "numeric"})
    later = pd.DataFrame({"flag": ["yes", None], "x": [1.0, None]})
    np.testing.assert_array_equal(
        t.transform(later), np.array([t.transform_one(r) for r in records_of(later)])
    )
