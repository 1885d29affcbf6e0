import numpy as np
import pandas as pd
import pytest

from shipyard.data.dataset import Dataset
from shipyard.data.split import make_splits, resolve_strategy, split_findings
from shipyard.errors import DataError
from support import make_spec


def _all_rows(splits) -> np.ndarray:
    return np.concatenate(list(splits.parts().values()))


def _sides(values: pd.Series, splits) -> pd.Series:
    """For each value, how many of train / dev / test it appears in."""
    side = pd.Series(index=values.index, dtype=object)
    side.iloc[splits.train] = "train"
    side.iloc[splits.dev] = "dev"
    side.iloc[splits.test] = "test"
    return side.groupby(values.to_numpy()).nunique()


@pytest.mark.parametrize("strategy", ["random", "stratified", "group", "time"])
def test_parts_are_disjoint_and_deterministic(flights_sample, strategy):
    spec = make_spec(
        "arr_delayed",
        project={"id": "tailnum", "time": "time_hour"},
        split={"strategy": strategy, "purge_entities": False},
    )
    ds = Dataset(flights_sample, spec)
    a, b = make_splits(ds), make_splits(ds)
    rows = _all_rows(a)
    assert len(rows) == len(np.unique(rows))  # no row in two parts
    assert len(rows) == len(flights_sample) - sum(a.dropped.values())
    for name, part in a.parts().items():
        assert np.array_equal(part, b.parts()[name]), name
    assert a.report["train"]["share"] == pytest.approx(0.7, abs=0.03)
    other_seed = make_splits(
        Dataset(
            flights_sample,
            make_spec(
                "arr_delayed",
                project={"id": "tailnum", "time": "time_hour"},
                split={"strategy": strategy, "seed": 1, "purge_entities": False},
            ),
        )
    )
    if strategy != "time":  # a time split does not depend on the seed, except within dev
        assert not np.array_equal(a.train, other_seed.train)


def test_stratified_keeps_the_class_balance(churn):
    ds = Dataset(churn, make_spec("churn", split={"strategy": "stratified"}))
    splits = make_splits(ds)
    overall = ds.target.y.mean()
    for name in ("train", "dev_blackbox", "test"):
        assert splits.report[name]["positive_rate"] == pytest.approx(overall, abs=0.01), name
    assert splits.report["dev_eyeball"]["rows"] == pytest.approx(0.2 * len(splits.dev), abs=5)


def test_group_split_never_puts_an_entity_on_two_sides(flights_sample):
    ds = Dataset(
        flights_sample,
        make_spec("arr_delayed", project={"id": "tailnum"}, split={"strategy": "group"}),
    )
    splits = make_splits(ds)
    sides = _sides(flights_sample["tailnum"], splits)
    assert sides.max() == 1
    assert splits.report["test"]["entities"] > 100


def test_time_split_is_ordered_and_purges_recurring_entities(flights_sample):
    spec = make_spec(
        "arr_delayed", project={"id": "tailnum", "time": "time_hour"}, split={"strategy": "time"}
    )
    ds = Dataset(flights_sample, spec)
    splits = make_splits(ds)
    stamps = pd.to_datetime(flights_sample["time_hour"], utc=True)
    assert stamps.iloc[splits.train].max() < stamps.iloc[splits.dev].min()
    assert stamps.iloc[splits.dev].max() < stamps.iloc[splits.test].min()
    assert _sides(flights_sample["tailnum"], splits).max() == 1  # NaN keys are no entity
    assert splits.dropped["purged_from_test"] > 0
    (heavy,) = [f for f in split_findings(ds, splits) if f.code == "split_purge_heavy"]
    assert heavy.evidence["purged_rows"] == sum(splits.dropped.values())


def test_exact_duplicates_never_straddle(churn):
    frame = pd.concat([churn, churn.iloc[:500]], ignore_index=True)  # 500 rows copied
    for strategy in ("random", "stratified"):
        ds = Dataset(frame, make_spec("churn", split={"strategy": strategy}))
        splits = make_splits(ds)
        hashes = pd.Series(ds.row_hashes)
        assert _sides(hashes, splits).max() == 1, strategy


def test_auto_resolution(flights_sample, churn):
    def resolve(frame, target, task="binary", **project):
        return resolve_strategy(Dataset(frame, make_spec(target, task, project=project)))

    assert resolve(flights_sample, "arr_delayed", time="time_hour", id="tailnum") == "time"
    assert resolve(flights_sample, "arr_delayed", id="tailnum") == "group"
    assert resolve(churn, "churn") == "stratified"
    assert resolve(churn, "monthly_charges", task="regression") == "random"


def test_policies_that_need_a_column_say_so(churn):
    with pytest.raises(DataError, match=r"needs project\.id"):
        make_splits(Dataset(churn, make_spec("churn", split={"strategy": "group"})))
    with pytest.raises(DataError, match=r"needs project\.time"):
        make_splits(Dataset(churn, make_spec("churn", split={"strategy": "time"})))


def test_time_split_without_purge_reports_shared_entities(flights_sample):
    spec = make_spec(
        "arr_delayed",
        project={"id": "tailnum", "time": "time_hour"},
        split={"strategy": "time", "purge_entities": False},
    )
    ds = Dataset(flights_sample, spec)
    splits = make_splits(ds)
    assert splits.dropped == {}
    (shared,) = [f for f in split_findings(ds, splits) if f.code == "entities_shared_over_time"]
    train = set(flights_sample["tailnum"].iloc[splits.train].dropna())
    test = flights_sample["tailnum"].iloc[splits.test]
    assert shared.evidence["test_rows_with_entity_in_train"] == pytest.approx(
        test.isin(train).mean(), abs=1e-6
    )
