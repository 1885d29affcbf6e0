"""The monitoring report on real numbers, opened in a real browser with no network.

The results frame is computed, not typed in: a reference learned on NYC flights of
January–April (:class:`~shipyard.monitoring.Reference`), a LightGBM champion and a weaker
LightGBM shadow fitted on those months, and per month May–December a sample of flights
summarized and compared (:mod:`shipyard.monitoring.drift`), scored by both models (prediction
drift, mean prediction, agreement, timed one-row latency), and — for the months whose labels
have matured — the realized AUC with its bootstrap interval per origin, an estimated AUC from
the probabilities alone, and the calibration back-test. One feature is renamed to a
``<script>`` tag: the page must show it as text. Headless Chromium renders the page with every
host unresolvable and a dead proxy, and the test reads the DOM it built after its script ran.
"""

from __future__ import annotations

import re
import time
from html import escape
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from shipyard.data.contract import Contract
from shipyard.errors import UsageError
from shipyard.evaluation.calibration import ece, reliability
from shipyard.evaluation.slices import metric_interval
from shipyard.monitoring import Reference
from shipyard.monitoring.report import COLUMNS, render, write_report
from support import browse

EVIL = '<script>console.error("pwned")</script>carrier'
NUMBERS = ["dep_delay", "distance", "dep_time", "air_time"]
ROLES = {**dict.fromkeys(NUMBERS, "numeric"), EVIL: "categorical", "origin": "categorical"}
FEATURES = list(ROLES)
MONTHS = range(5, 13)
LABELED = range(5, 11)  # November and December: labels not matured yet
PER_MONTH = 3000


def _drift_rows(results: list[Any], section: str) -> list[dict[str, Any]]:
    """DriftResults as result rows: one per statistic, the verdict's level on each."""
    out = []
    for r in results:
        stats = [("psi", r.psi, None, None, None)]
        if r.kind == "numeric":
            stats += [
                ("ks", r.ks, r.ks, r.ks_upper, r.pvalue),
                ("wasserstein", r.wasserstein, r.wasserstein_lower, r.wasserstein_upper, None),
            ]
        elif r.kind == "categorical":
            stats += [
                ("jensen_shannon", r.jensen_shannon, None, None, None),
                ("chi2", r.chi2, None, None, r.pvalue),
                ("unseen_rate", r.unseen_rate, None, None, None),
            ]
        for statistic, value, lower, upper, pvalue in stats:
            out.append(
                {
                    "section": section,
                    "column": r.column,
                    "statistic": statistic,
                    "value": value,
                    "lower": lower,
                    "upper": upper,
                    "pvalue": pvalue,
                    "level": r.level,
                    "note": r.method,
                }
            )
    return out


def _matrix(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    parts = [
        frame[c].astype("category").cat.codes.to_numpy(float)
        if ROLES[c] == "categorical"
        else frame[c].to_numpy(float)
        for c in columns
    ]
    return np.column_stack(parts)


def _fit(frame: pd.DataFrame, columns: list[str]) -> lgb.Booster:
    data = lgb.Dataset(_matrix(frame, columns), frame["arr_delayed"].to_numpy(int))
    params = {"objective": "binary", "verbose": -1, "num_threads": 1, "seed": 1}
    return lgb.train(params, data, num_boost_round=40)


def _wilson(k: float, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _estimated_auc(p: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float]:
    """Each row a positive with weight p and a negative with weight 1 - p; the interval the
    spread of the AUC under labels drawn Bernoulli(p) (40 draws)."""
    doubled = np.concatenate([p, p])
    labels = np.concatenate([np.ones(len(p)), np.zeros(len(p))])
    value = roc_auc_score(labels, doubled, sample_weight=np.concatenate([p, 1 - p]))
    draws = [roc_auc_score(rng.random(len(p)) < p, p) for _ in range(40)]
    return float(value), float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))


def _latency_ms(model: lgb.Booster, x: np.ndarray) -> np.ndarray:
    out = []
    for row in x[:40]:
        start = time.perf_counter()
        model.predict(row[None, :], num_threads=1)
        out.append((time.perf_counter() - start) * 1000)
    return np.array(out)


def _row(section: str, column: str, statistic: str, value: float, **rest: Any) -> dict[str, Any]:
    return {
        "section": section,
        "column": column,
        "statistic": statistic,
        "value": value,
        "level": "ok",
        "note": "",
        **rest,
    }


def _segment_rows(live: pd.DataFrame, y: np.ndarray, s: np.ndarray) -> list[dict[str, Any]]:
    """Realized AUC overall and per origin, each with its 95% bootstrap interval."""
    out = []
    segments = [("", np.ones(len(live), bool))] + [
        (f"origin={o}", (live["origin"] == o).to_numpy()) for o in ("EWR", "JFK", "LGA")
    ]
    for name, mask in segments:
        low, high = metric_interval("roc_auc", y[mask], s[mask])
        auc = float(roc_auc_score(y[mask], s[mask]))
        out.append(
            _row("performance", name, "roc_auc", auc, lower=low, upper=high, note="bootstrap 95%")
        )
    return out


def _calibration_rows(y: np.ndarray, p: np.ndarray) -> list[dict[str, Any]]:
    """The back-test: ECE, and observed (Wilson interval) and predicted per bin."""
    out = [_row("calibration", "", "ece", ece(y, p), note="10 equal-width bins")]
    for b in reliability(y, p):
        low, high = _wilson(b["observed"] * b["count"], b["count"])
        name = f"bin[{b['lo']:.1f},{b['hi']:.1f})"
        out.append(_row("calibration", name, "observed", b["observed"], lower=low, upper=high))
        out.append(_row("calibration", name, "predicted", b["predicted"]))
    return out


def _quality_rows(
    contract: Contract, everything: pd.DataFrame, live: pd.DataFrame
) -> list[dict[str, Any]]:
    """Null rates of the month, range violations of its sample (the contract's), volume."""
    out = [_row("quality", c, "null_rate", float(everything[c].isna().mean())) for c in FEATURES]
    found = {v.column: v.count for v in contract.validate(live[FEATURES]) if v.check == "range"}
    for column in NUMBERS:
        rate = found.get(column, 0) / len(live)
        out.append(
            _row(
                "quality",
                column,
                "range_violation_rate",
                rate,
                level="warn" if rate > 0.01 else "ok",
                note="outside the train range",
            )
        )
    out.append(_row("volume", "", "rows", float(len(everything)), note="flights this month"))
    return out


@pytest.fixture(scope="module")
def monitored(flights) -> tuple[pd.DataFrame, dict[str, Any]]:
    frame = flights.rename(columns={"carrier": EVIL})
    frame = frame[frame["arr_delayed"].notna() & frame["dep_delay"].notna()]
    spring = frame[frame["month"] <= 4].sample(8000, random_state=1)
    train, test = spring.iloc[:5000], spring.iloc[5000:]
    contract = Contract.learn(train[FEATURES], ROLES)
    arms = {"champion": FEATURES, "shadow": [c for c in FEATURES if c != "dep_delay"]}
    models = {arm: _fit(train, columns) for arm, columns in arms.items()}
    # each arm's predictions are compared with its own bundle's test output
    refs = {
        arm: Reference.learn(
            train[FEATURES] if arm == "champion" else train[[]],
            ROLES,
            contract=contract,
            task="binary",
            test_output=models[arm].predict(_matrix(test, columns)),
        )
        for arm, columns in arms.items()
    }
    validate = contract.record_validator(FEATURES)
    rng = np.random.default_rng(3)
    rows: list[dict[str, Any]] = []
    for month in MONTHS:
        everything = frame[frame["month"] == month]
        live = everything.sample(PER_MONTH, random_state=month)
        start = pd.Timestamp(2013, month, 1, tz="UTC")
        window = {
            "window_start": start,
            "window_end": start + pd.offsets.MonthBegin(1),
            "model_version": 1,
        }
        y = live["arr_delayed"].to_numpy(int)
        scores = {arm: models[arm].predict(_matrix(live, c)) for arm, c in arms.items()}
        found: dict[str, list[dict[str, Any]]] = {
            "champion": _drift_rows(
                refs["champion"].compare(refs["champion"].summarize(live)), "feature_drift"
            )
            + _quality_rows(contract, everything, live),
            "shadow": [],
        }
        for arm, s in scores.items():
            ref = refs[arm]
            found[arm] += _drift_rows(ref.compare(ref.summarize_predictions(s)), "prediction_drift")
            found[arm].append(_row("prediction_drift", "score", "mean_prediction", float(s.mean())))
            latency = _latency_ms(models[arm], _matrix(live, arms[arm]))
            found[arm] += [
                _row(
                    "system",
                    "",
                    f"latency_p{q}",
                    float(np.percentile(latency, q)),
                    note="one-row predict",
                )
                for q in (50, 95, 99)
            ]
            refused = [bool(validate(r)) for r in live[FEATURES].head(200).to_dict("records")]
            found[arm].append(
                _row(
                    "system",
                    "",
                    "error_rate",
                    float(np.mean(refused)),
                    note="records the contract refuses",
                )
            )
            if month in LABELED:
                found[arm] += _segment_rows(live, y, s)
        same = float(np.mean((scores["shadow"] > 0.5) == (scores["champion"] > 0.5)))
        found["shadow"].append(
            _row(
                "agreement",
                "score",
                "label_agreement",
                same,
                level="ok" if same > 0.8 else "warn",
                note="same label at 0.5",
            )
        )
        value, low, high = _estimated_auc(scores["champion"], rng)
        found["champion"].append(
            _row(
                "estimated_performance",
                "",
                "roc_auc",
                value,
                lower=low,
                upper=high,
                note="expected AUC from the probabilities",
            )
        )
        if month in LABELED:
            found["champion"] += _calibration_rows(y, scores["champion"])
        for arm, arm_rows in found.items():
            rows += [{**window, "arm": arm, **r} for r in arm_rows]
    results = pd.DataFrame(rows).reindex(columns=list(COLUMNS))
    keys = ("level", "window_start", "arm", "section", "column", "statistic", "value")
    alerts = [
        {k: r[k] for k in keys} | {"message": f"{r['column']}: {r['note'] or r['statistic']}"}
        for r in rows
        if r["level"] in ("warn", "alert") and r["statistic"] in ("psi", "range_violation_rate")
    ]
    meta = {
        "project": "flights <delays>",
        "model_versions": [1],
        "window": "1 month",
        "alerts": alerts,
        "thresholds": {"psi_warn": 0.1, "psi_alert": 0.2},
    }
    return results, meta


@pytest.fixture(scope="module")
def page(monitored, tmp_path_factory) -> tuple[Path, str, str, str]:
    results, meta = monitored
    folder = tmp_path_factory.mktemp("report")
    path = write_report(folder / "monitor.html", results, meta)
    done = browse(path, folder / "profile", "--virtual-time-budget=2000", "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    return path, path.read_text(), done.stdout, done.stderr


def test_the_page_references_nothing_outside_itself(page):
    _, html, _, _ = page
    assert "http://" not in html and "https://" not in html
    for pattern in (r"\bsrc\s*=", r"@import", r"url\(", r"<link\b"):
        assert not re.search(pattern, html, re.I), pattern
    assert re.findall(r'href="([^"]*)"', html) == [
        "#alerts",
        "#drift",
        "#predictions",
        "#system",
        "#segments",
        "#quality",
        "#skew",
    ]


def test_the_browser_renders_every_section_and_chart(page, monitored):
    results, _ = monitored
    _, html, dom, stderr = page
    assert 'data-ready="yes"' in dom  # the page's script ran to its end
    assert "Uncaught" not in stderr  # and raised nothing (console errors go to stderr)
    headings = re.findall(r"<h2>(.*?)</h2>", dom)
    assert headings == [
        "Alerts",
        "Feature drift",
        "Predictions",
        "Latency and errors",
        "Segment metrics",
        "Live data quality",
        "Training/serving skew",
    ]
    assert "No skew rows." in dom  # an empty section is one line
    charts = dom.count("<svg")
    # one PSI chart per feature; mean prediction and PSI of the score; agreement; latency per
    # arm and the error rate; realized/estimated per (arm, segment); the last window's values
    # side by side per (arm, slice column); the calibration plot and the ECE; volume
    realized = results[results["section"] == "performance"]
    segments = realized.groupby(["arm", "column"]).ngroups
    sliced = realized[realized["column"].str.contains("=")]
    columns = sliced.assign(name=sliced["column"].str.partition("=")[0]).groupby(["arm", "name"])
    assert charts == len(FEATURES) + 2 + 1 + 2 + 1 + segments + columns.ngroups + 2 + 1
    assert f"{charts} charts" in dom  # counted by the script in the browser
    headers = re.findall(r'<table class="sortable"><thead>(.*?)</thead>', html)
    assert dom.count('<th class="sort"') == sum(h.count("<th>") for h in headers) > 0
    # the last window's statistics: a row per feature, with p-values
    last = results[
        (results["section"] == "feature_drift")
        & (results["window_start"] == results["window_start"].max())
    ]
    ks = last[last["statistic"] == "ks"].iloc[0]
    assert f"p={ks['pvalue']:.2g}" in dom


def test_user_strings_are_shown_as_text_never_run(page):
    _, html, dom, stderr = page
    assert html.count("<script>") == 1 and dom.count("<script>") == 1  # the page's own
    assert "&lt;script&gt;console.error(&quot;pwned&quot;)&lt;/script&gt;carrier" in html
    assert '&lt;script&gt;console.error("pwned")&lt;/script&gt;carrier' in dom  # as text
    assert "pwned" not in stderr  # the browser's console: the name never ran
    assert "Monitoring · flights &lt;delays&gt;" in dom


def test_drift_is_drawn_worst_feature_first_with_its_floors(page, monitored):
    results, _ = monitored
    _, html, _, _ = page
    psi = results[(results["section"] == "feature_drift") & (results["statistic"] == "psi")]
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", html[html.find('id="drift"') :])
    severity = {"alert": 0, "warn": 1, "ok": 3}
    ranked = sorted(
        psi.groupby("column"),
        key=lambda g: (min(severity[lv] for lv in g[1]["level"]), -g[1]["value"].max()),
    )
    assert captions[0] == escape(ranked[0][0])  # the worst feature first
    assert psi["value"].max() > 0.05  # summer moved something, and the chart shows it
    first_chart = html[html.find('id="drift"') :].split("</figure>")[0]
    assert first_chart.count('stroke-dasharray="5 3"') == 2  # warn and alert floors
    assert first_chart.count("<circle") == len(MONTHS)


def test_alerts_are_sorted_by_severity(monitored, tmp_path):
    results, meta = monitored
    alerts = [
        {
            "level": "warn",
            "window_start": "2013-06-01",
            "arm": "champion",
            "section": "quality",
            "column": "a",
            "statistic": "null_rate",
            "value": 0.3,
            "message": "first warn",
        },
        {
            "level": "alert",
            "window_start": "2013-09-01",
            "arm": "champion",
            "section": "feature_drift",
            "column": "b",
            "statistic": "psi",
            "value": 0.4,
            "message": "the alert",
        },
        {
            "level": "warn",
            "window_start": "2013-05-01",
            "arm": "shadow",
            "section": "system",
            "column": "",
            "statistic": "latency_p99",
            "value": 9.0,
            "message": "earlier warn",
        },
    ]
    html = render(results, {**meta, "alerts": alerts})
    table = html[html.find('id="alerts"') : html.find('id="drift"')]
    order = [m for m in ("the alert", "earlier warn", "first warn") if m in table]
    assert order == ["the alert", "earlier warn", "first warn"]
    assert [table.find(m) for m in order] == sorted(table.find(m) for m in order)
    assert "1 alert(s), 2 warning(s)." in table


def test_a_screenshot_reads(page, tmp_path):
    path, _, _, _ = page
    shot = tmp_path / "report.png"
    done = browse(
        path,
        tmp_path / "profile",
        f"--screenshot={shot}",
        "--window-size=1200,3000",
        "--hide-scrollbars",
        "--virtual-time-budget=2000",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 100_000


def test_empty_results_give_a_page_of_notes_and_bad_frames_a_clear_error(tmp_path):
    path = write_report(tmp_path / "empty.html", pd.DataFrame(columns=list(COLUMNS)), {})
    html = path.read_text()
    assert "No feature drift rows." in html and "No alert fired in this range." in html
    assert "<svg" not in html
    with pytest.raises(UsageError, match=r"lack the column.*statistic"):
        write_report(tmp_path / "bad.html", pd.DataFrame({"value": [1.0]}), {})
    assert not (tmp_path / "bad.html").exists()


@pytest.mark.parametrize(
    ("freq", "label"),
    [("MS", "Jun 2013"), ("D", "Jun 02"), ("h", "06-01 02:00"), ("10min", "00:20")],
)
def test_axis_dates_are_written_by_window_size(freq, label):
    starts = pd.date_range("2013-06-01", periods=4, freq=freq, tz="UTC")
    ends = starts + (starts[1] - starts[0])
    rows = pd.DataFrame(
        {"window_start": starts, "window_end": ends, "model_version": 1, "arm": "champion",
         "section": "volume", "column": "", "statistic": "rows", "value": [10.0, 12, 9, 11],
         "lower": None, "upper": None, "pvalue": None, "level": "ok", "note": ""}
    )  # fmt: skip
    svg = render(rows, {})
    assert f">{label}</text>" in svg


def test_without_alerts_in_meta_the_fired_rows_are_listed_and_markers_show_the_verdict(
    monitored,
):
    results, _ = monitored
    # the monitor may put a column's verdict only on the statistic that decided it
    drift = results["section"] == "feature_drift"
    one_row = results.copy()
    one_row.loc[drift & (one_row["statistic"] != "wasserstein"), "level"] = "ok"
    html = render(one_row, {"versions": [1], "warnings": ["2 log files skipped: truncated"]})
    fired = one_row[one_row["level"].isin(["warn", "alert"])]
    table = html[html.find('id="alerts"') : html.find('id="drift"')]
    assert table.count("<tr>") - 1 == len(fired) > 0  # header row + one per fired row
    assert "2 log files skipped: truncated" in table and "v1" in html
    decided = one_row[drift & one_row["level"].isin(["warn", "alert"])]
    column = decided.iloc[0]["column"]
    start = html.find(f"<figcaption>{escape(column)}</figcaption>")
    chart = html[html.rfind("<svg", 0, start) : start]
    assert re.search(r'<circle[^>]*fill="#(c62828|e0a000)"', chart)  # its PSI markers say so
