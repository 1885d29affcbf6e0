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
import shutil
import subprocess
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

EVIL = "<script>window.pwned=1</script>carrier"
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


@pytest.fixture(scope="module")
def monitored(flights) -> tuple[pd.DataFrame, dict[str, Any]]:
    frame = flights.rename(columns={"carrier": EVIL})
    frame = frame[frame["arr_delayed"].notna() & frame["dep_delay"].notna()]
    spring = frame[frame["month"] <= 4].sample(8000, random_state=1)
    train, test = spring.iloc[:5000], spring.iloc[5000:]
    champion = _fit(train, FEATURES)
    shadow_features = [c for c in FEATURES if c != "dep_delay"]
    shadow = _fit(train, shadow_features)
    contract = Contract.learn(train[FEATURES], ROLES)
    ref = Reference.learn(
        train[FEATURES],
        ROLES,
        contract=contract,
        task="binary",
        test_output=champion.predict(_matrix(test, FEATURES)),
    )
    # each arm's predictions are compared with its own bundle's test output
    shadow_ref = Reference.learn(
        train[[]], {}, task="binary", test_output=shadow.predict(_matrix(test, shadow_features))
    )
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
        scores = {
            "champion": champion.predict(_matrix(live, FEATURES)),
            "shadow": shadow.predict(_matrix(live, shadow_features)),
        }
        arm_rows: dict[str, list[dict[str, Any]]] = {"champion": [], "shadow": []}
        champ = arm_rows["champion"]
        champ += _drift_rows(ref.compare(ref.summarize(live)), "feature_drift")
        for arm, s in scores.items():
            own = ref if arm == "champion" else shadow_ref
            drift = own.compare(own.summarize_predictions(s))
            arm_rows[arm] += _drift_rows(drift, "prediction_drift")
            arm_rows[arm].append(
                {
                    "section": "prediction_drift",
                    "column": "score",
                    "statistic": "mean_prediction",
                    "value": float(s.mean()),
                    "level": "ok",
                    "note": "mean P(delayed)",
                }
            )
            model, columns = (
                (champion, FEATURES) if arm == "champion" else (shadow, shadow_features)
            )
            latency = _latency_ms(model, _matrix(live, columns))
            for q in (50, 95, 99):
                arm_rows[arm].append(
                    {
                        "section": "system",
                        "column": "",
                        "statistic": f"latency_p{q}",
                        "value": float(np.percentile(latency, q)),
                        "level": "ok",
                        "note": "one-row predict",
                    }
                )
        same = float(np.mean((scores["shadow"] > 0.5) == (scores["champion"] > 0.5)))
        arm_rows["shadow"].append(
            {
                "section": "agreement",
                "column": "score",
                "statistic": "label_agreement",
                "value": same,
                "level": "ok" if same > 0.8 else "warn",
                "note": "same label at 0.5",
            }
        )
        for column in FEATURES:
            champ.append(
                {
                    "section": "quality",
                    "column": column,
                    "statistic": "null_rate",
                    "value": float(everything[column].isna().mean()),
                    "level": "ok",
                    "note": "",
                }
            )
        violations = {
            v.column: v.count for v in contract.validate(live[FEATURES]) if v.check == "range"
        }
        for column in NUMBERS:
            rate = violations.get(column, 0) / len(live)
            champ.append(
                {
                    "section": "quality",
                    "column": column,
                    "statistic": "range_violation_rate",
                    "value": rate,
                    "level": "warn" if rate > 0.01 else "ok",
                    "note": "outside the train range",
                }
            )
        champ.append(
            {
                "section": "volume",
                "column": "",
                "statistic": "rows",
                "value": float(len(everything)),
                "level": "ok",
                "note": "flights this month",
            }
        )
        p = scores["champion"]
        value, low, high = _estimated_auc(p, rng)
        champ.append(
            {
                "section": "estimated_performance",
                "column": "",
                "statistic": "roc_auc",
                "value": value,
                "lower": low,
                "upper": high,
                "level": "ok",
                "note": "CBPE-style",
            }
        )
        if month in LABELED:
            for arm, s in scores.items():
                segments = [("", np.ones(len(live), bool))] + [
                    (f"origin={o}", (live["origin"] == o).to_numpy()) for o in ("EWR", "JFK", "LGA")
                ]
                for name, mask in segments:
                    lo, hi = metric_interval("roc_auc", y[mask], s[mask])
                    arm_rows[arm].append(
                        {
                            "section": "performance",
                            "column": name,
                            "statistic": "roc_auc",
                            "value": float(roc_auc_score(y[mask], s[mask])),
                            "lower": lo,
                            "upper": hi,
                            "level": "ok",
                            "note": "bootstrap 95%",
                        }
                    )
            champ.append(
                {
                    "section": "calibration",
                    "column": "",
                    "statistic": "ece",
                    "value": ece(y, p),
                    "level": "ok",
                    "note": "10 equal-width bins",
                }
            )
            for b in reliability(y, p):
                lo, hi = _wilson(b["observed"] * b["count"], b["count"])
                name = f"bin[{b['lo']:.1f},{b['hi']:.1f})"
                champ += [
                    {
                        "section": "calibration",
                        "column": name,
                        "statistic": "observed",
                        "value": b["observed"],
                        "lower": lo,
                        "upper": hi,
                        "level": "ok",
                        "note": "",
                    },
                    {
                        "section": "calibration",
                        "column": name,
                        "statistic": "predicted",
                        "value": b["predicted"],
                        "level": "ok",
                        "note": "",
                    },
                ]
        for arm, found in arm_rows.items():
            rows += [{**window, "arm": arm, **r} for r in found]
    results = pd.DataFrame(rows).reindex(columns=list(COLUMNS))
    alerts = [
        {
            k: r[k]
            for k in ("level", "window_start", "arm", "section", "column", "statistic", "value")
        }
        | {"message": f"{r['column']} drifted: {r['statistic']} {r['value']:.3f}"}
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


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, (
        "chromium is not installed, and the report's browser test needs it: "
        "apt-get install -y chromium (.ci/run installs it when it runs as root)"
    )
    return found


def _browse(page: Path, profile: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on ``page`` with no network: every host unresolvable, a dead proxy."""
    command = [
        _chromium(),
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=127.0.0.1:9",
        "--enable-logging=stderr",
        f"--user-data-dir={profile}",
        *options,
        page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def page(monitored, tmp_path_factory) -> tuple[Path, str, str]:
    results, meta = monitored
    folder = tmp_path_factory.mktemp("report")
    path = write_report(folder / "monitor.html", results, meta)
    done = _browse(path, folder / "profile", "--virtual-time-budget=2000", "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    return path, path.read_text(), done.stdout


def test_the_page_references_nothing_outside_itself(page):
    _, html, _ = page
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
    _, html, dom = page
    assert 'data-ready="yes"' in dom  # the page's script ran to its end
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
    # arm; realized/estimated per (arm, segment); the calibration plot and the ECE; volume
    segments = results[results["section"] == "performance"].groupby(["arm", "column"]).ngroups
    assert charts == len(FEATURES) + 2 + 1 + 2 + segments + 2 + 1
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
    _, html, dom = page
    assert html.count("<script>") == 1 and dom.count("<script>") == 1  # the page's own
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;carrier" in dom
    assert "Monitoring · flights &lt;delays&gt;" in dom


def test_drift_is_drawn_worst_feature_first_with_its_floors(page, monitored):
    results, _ = monitored
    _, html, _ = page
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
    path, _, _ = page
    shot = tmp_path / "report.png"
    done = _browse(
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
