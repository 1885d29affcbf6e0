"""Drift read back from the prediction log agrees with reference implementations on the raw
data, as ``bench/drift_evidently.py`` measures it at 10^6 rows: real NYC flights (reference
January–April, 20,000 live flights of May–December) are logged by ``PredictionLog`` with
typed columns, read with ``read_log``, summarized and compared. ``tests/test_drift.py``
checks the statistics on in-memory frames; this checks the path from the log."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from shipyard.monitoring import NumericReference, Reference, summarize
from shipyard.serving.log import PREFIX, PredictionLog, read_log

NUMBERS = ["dep_delay", "arr_delay", "air_time", "distance", "dep_time"]
CATEGORIES = ["carrier", "dest", "tailnum"]
ROLES = dict.fromkeys(NUMBERS, "numeric") | dict.fromkeys(CATEGORIES, "categorical")
ROLES["arr_delayed"] = "boolean"
TYPES = (  # the log's column kinds (serving.log.feature_types of these roles)
    dict.fromkeys(NUMBERS, "number")
    | dict.fromkeys(CATEGORIES, "string")
    | {"arr_delayed": "boolean"}
)


@pytest.fixture(scope="module")
def logged(flights: pd.DataFrame, tmp_path_factory):
    """(reference, reference rows, live rows, the live rows' summaries read from the log)."""
    rng = np.random.default_rng(11)
    spring = flights[flights["month"] <= 4]
    later = flights[flights["month"] >= 5]
    ref_rows = spring.iloc[rng.choice(len(spring), 20_000, replace=False)]
    live = later.iloc[np.sort(rng.choice(len(later), 20_000, replace=False))]
    reference = Reference.learn(ref_rows[list(ROLES)], ROLES)
    folder = tmp_path_factory.mktemp("log")
    log = PredictionLog(folder, flush_seconds=60, max_queue=len(live) + 1)
    seconds = pd.to_datetime(live["time_hour"]).astype("int64") // 10**9
    features = live[list(ROLES)].astype(object)
    rows = features.where(features.notna(), None).to_dict("records")
    for i, (when, values) in enumerate(zip(seconds, rows, strict=True)):
        log.append(
            {
                "request_id": f"r{i}",
                "time": float(when),
                "entity_id": None,
                "model_version": 1,
                "arm": "champion",
                "features": values,
                "types": TYPES,
                "prediction": 0.5,
                "latency_ms": 1.0,
                "warnings": [],
                "error": None,
            }
        )
    log.close()
    assert (log.written, log.dropped, log.errors) == (len(live), 0, 0)
    table = read_log(folder, types=TYPES, columns=[PREFIX + name for name in ROLES])
    summaries = {
        name: summarize(table.column(PREFIX + name), ref)
        for name, ref in reference.features.items()
    }
    return reference, ref_rows, live, summaries


def test_the_log_loses_nothing_the_summaries_count(logged):
    reference, _, live, summaries = logged
    direct = reference.summarize(live)
    for name, summary in summaries.items():
        np.testing.assert_array_equal(summary.counts, direct[name].counts, err_msg=name)
        assert summary.nulls == direct[name].nulls == int(live[name].isna().sum()), name
    assert summaries["dep_delay"].nulls > 0 and summaries["tailnum"].nulls > 0  # nulls kept


def _psi_bins(ref, values: pd.Series) -> np.ndarray:
    """Raw values counted on shipyard's PSI bins, computed here from the raw column."""
    if isinstance(ref, NumericReference):
        x = values.dropna().to_numpy(float)
        return np.bincount(
            np.searchsorted(ref.coarse_edges, x, side="right"), minlength=len(ref.coarse_edges) + 1
        )
    x = values.dropna()
    x = x.map({True: "true", False: "false"}) if ref.boolean else x.astype(str)
    kept = x.value_counts().reindex(ref.categories, fill_value=0).to_numpy()
    return np.append(kept, len(x) - kept.sum())


def test_psi_from_the_log_equals_numpy_on_the_raw_data_with_the_same_bins(logged):
    reference, ref_rows, live, summaries = logged
    results = {r.column: r for r in reference.compare(summaries)}
    for name, ref in reference.features.items():
        p, q = _psi_bins(ref, ref_rows[name]) / 1.0, _psi_bins(ref, live[name]) / 1.0
        p, q = p / p.sum(), q / q.sum()
        p, q = np.where(p == 0, 1e-4, p), np.where(q == 0, 1e-4, q)
        want = float(np.sum((q - p) * np.log(q / p)))
        assert results[name].psi == pytest.approx(want, abs=1e-9), name
    assert max(r.psi for r in results.values()) > 0.01  # real drift, not a zero comparison


def test_ks_and_wasserstein_from_the_log_contain_scipys_values_on_the_raw_data(logged):
    reference, ref_rows, live, summaries = logged
    results = {r.column: r for r in reference.compare(summaries)}
    for name in NUMBERS:
        a, b = ref_rows[name].dropna().to_numpy(float), live[name].dropna().to_numpy(float)
        r = results[name]
        d = stats.ks_2samp(a, b).statistic
        assert r.ks - 1e-12 <= d <= r.ks_upper + 1e-12, name
        assert r.ks_upper - r.ks < 0.01, name  # the sketch's stated bound, met
        w = stats.wasserstein_distance(a, b) / reference.features[name].scale
        assert r.wasserstein_lower - 1e-9 <= w <= r.wasserstein_upper + 1e-9, name


def test_jensen_shannon_and_chi_square_from_the_log_equal_scipy_on_the_same_bins(logged):
    reference, ref_rows, live, summaries = logged
    results = {r.column: r for r in reference.compare(summaries)}
    for name in [*CATEGORIES, "arr_delayed"]:
        ref = reference.features[name]
        p, q = _psi_bins(ref, ref_rows[name]), _psi_bins(ref, live[name])
        assert results[name].jensen_shannon == pytest.approx(
            jensenshannon(p, q, base=2), abs=1e-9
        ), name
        table = np.vstack([p, q])[:, (p + q) > 0]
        chi2 = stats.chi2_contingency(table, correction=False)
        assert results[name].chi2 == pytest.approx(chi2.statistic, rel=1e-9), name
        assert results[name].pvalue == pytest.approx(chi2.pvalue, rel=1e-6, abs=1e-300), name
    assert len(reference.features["tailnum"].categories) == 200  # capped: "other" is used
