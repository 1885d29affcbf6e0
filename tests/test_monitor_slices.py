"""Per-slice realized metrics and CBPE's out-of-support share in ``shipyard monitor``: a
churn champion trained on 1,500 customers (slices ``contract`` and ``senior_citizen``,
sensitive ``female``) serves the customers it never saw; their labels arrive as a file, as a
user ingests them. Labels made wrong in one slice show on that slice, with its alert; inputs
moved past the train range show as the share outside the reference's support and CBPE's
warning, and the customers it was trained on show none."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk

from shipyard.bundle import load_bundle
from shipyard.monitoring import Reference, monitor, outside_support
from shipyard.monitoring.monitor import Answering, answers, parse_window, scan, segments
from shipyard.serving.log import log_files
from support import served_churn
from test_monitor import write_log

CONTRACTS = ("Month-to-month", "One year", "Two year")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, churn):
    sample = churn.sample(1500, random_state=11)
    folder = tmp_path_factory.mktemp("churn-slices")
    project = served_churn(folder, sample, features={"sensitive": ["female"]})
    bundle = load_bundle(project.workspace.bundle(1).path)
    live = churn.drop(sample.index).reset_index(drop=True)
    return project, bundle, 1, live, sample.reset_index(drop=True)


@pytest.fixture
def project(trained):
    """The trained project with an empty log, no labels and no results kept."""
    project = trained[0]
    for folder in (
        project.workspace.logs,
        project.workspace.labels,
        project.workspace.folder / "monitoring",
    ):
        shutil.rmtree(folder, ignore_errors=True)
    return project


def _rows(result, section, statistic, prefix=""):
    frame = result.frame()
    picked = frame[(frame.section == section) & (frame.statistic == statistic)]
    return {r.column: r for r in picked.itertuples() if r.column.startswith(prefix)}


def _ingest(project, labels):
    path = project.spec.root / "labels.csv"
    ids = [f"r{i}" for i in range(len(labels))]
    pd.DataFrame({"request_id": ids, "churn": labels}).to_csv(path, index=False)
    done = project.labels(path)
    assert done.matched == len(labels) and done.unmatched == 0
    return done


def test_labels_wrong_in_one_slice_show_on_that_slice_with_its_alert(trained, project):
    _, bundle, version, live, _ = trained
    features = live[bundle.features]
    write_log(project, bundle, version, features)
    scores = bundle.predict(features)
    month = (live["contract"] == "Month-to-month").to_numpy()
    labels = live["churn"].to_numpy(dtype=object).copy()
    # the month-to-month customers' outcomes shuffled among them: the model cannot rank
    # them any more, the churn rate of the slice stays what it was
    labels[month] = np.random.default_rng(1).permutation(labels[month])
    _ingest(project, labels)
    page = project.spec.root / "monitor.html"
    result = project.monitor(window="1d", report=page)
    y = labels == "Yes"

    auc = _rows(result, "performance", "roc_auc", "contract=")
    assert set(auc) == {f"contract={c}" for c in CONTRACTS}
    for contract in CONTRACTS:
        row = auc[f"contract={contract}"]
        rows = (live["contract"] == contract).to_numpy()
        assert row.value == pytest.approx(sk.roc_auc_score(y[rows], scores[rows]), abs=1e-12)
        assert row.lower < row.value < row.upper
        count = _rows(result, "performance", "rows")[f"contract={contract}"]
        assert count.value == rows.sum()
    shuffled = auc["contract=Month-to-month"]
    assert shuffled.value < 0.55  # no better than chance
    others = [auc[f"contract={c}"] for c in CONTRACTS[1:]]
    assert all(shuffled.upper < other.lower for other in others)  # intervals apart

    drops = _rows(result, "performance", "roc_auc_drop", "contract=")
    assert drops["contract=Month-to-month"].level == "alert"
    assert drops["contract=One year"].level == "ok"  # Two year was tiny at train: not judged
    assert "contract=Two year" not in drops
    fired = {(a["section"], a["column"], a["statistic"]) for a in result.alerts}
    assert ("performance", "contract=Month-to-month", "roc_auc_drop") in fired
    assert result.exit_code == 1
    test = next(
        e
        for e in bundle.evaluation()["slices"]["slices"]
        if (e["column"], e["value"]) == ("contract", "Month-to-month")
    )
    # judged against the lower end of the slice's test interval at train
    assert drops["contract=Month-to-month"].value == pytest.approx(test["ci_low"] - shuffled.value)

    # the sensitive column and the boolean slice are cut by their values as at train
    assert set(_rows(result, "performance", "roc_auc", "female=")) == {"female=0", "female=1"}
    assert set(_rows(result, "performance", "roc_auc", "senior_citizen=")) == {
        "senior_citizen=0",
        "senior_citizen=1",
    }
    html = page.read_text()
    assert "contract · roc_auc per value" in html and "contract=Month-to-month" in html

    # the right labels, ingested again, replace the wrong ones: no slice alerts any more
    again = _ingest(project, live["churn"].to_numpy(dtype=object))
    assert again.replaced == (labels != live["churn"].to_numpy(dtype=object)).sum()
    fixed = project.monitor(window="1d")
    assert not [a for a in fixed.alerts if a["section"] == "performance"]
    healed = _rows(fixed, "performance", "roc_auc", "contract=")["contract=Month-to-month"]
    assert healed.lower > shuffled.upper


def test_inputs_moved_past_the_train_range_give_a_support_share_and_cbpe_warns(trained, project):
    _, bundle, version, live, sample = trained
    reference = Reference.from_bundle(bundle)
    # identical traffic: the customers the model was trained on lie inside its support
    write_log(project, bundle, version, sample[bundle.features])
    calm = project.monitor(window="1d")
    (share,) = _rows(calm, "estimated_performance", "outside_support_share").values()
    assert share.value == 0.0 and share.level == "ok"
    assert _rows(calm, "estimated_performance", "roc_auc")[""].level == "ok"

    shutil.rmtree(project.workspace.logs)
    shifted = live[bundle.features].assign(
        monthly_charges=live["monthly_charges"] * 1.6,  # a price rise
        tenure=live["tenure"] + 24,  # two years on
    )
    write_log(project, bundle, version, shifted)
    moved = project.monitor(window="1d")
    expected = outside_support(reference, shifted).mean()
    top = reference.features["monthly_charges"].edges[-1]
    assert expected >= (shifted["monthly_charges"] > top).mean() > 0.2
    (share,) = _rows(moved, "estimated_performance", "outside_support_share").values()
    assert share.value == pytest.approx(expected, abs=1e-12) and share.level == "warn"
    estimated = _rows(moved, "estimated_performance", "roc_auc")[""]
    assert estimated.level == "warn" and f"{expected:.1%} of rows lie outside" in estimated.note
    warned = {(a["section"], a["statistic"]) for a in moved.alerts if a["level"] == "warn"}
    assert ("estimated_performance", "outside_support_share") in warned


def test_a_window_read_from_several_files_keeps_each_rows_slice_and_support(
    trained, project, monkeypatch
):
    _, bundle, version, live, _ = trained
    features = live[bundle.features].head(4500)
    moved = features.copy()
    moved.loc[moved.index[::3], "tenure"] = 200.0  # every third customer past the train range
    write_log(project, bundle, version, moved)  # written in parts of 2,000 rows
    files = log_files(project.workspace.logs)
    assert len(files) >= 2

    def answering(v):
        return Answering.load(v, bundle.path, ["contract", "senior_citizen", "female"])

    monkeypatch.setattr(monitor, "BATCH_ROWS", 1)  # each file read and grouped alone
    found = scan(files, answering, parse_window("1d"), since_us=None, until_us=None)
    (group,) = found.groups.values()
    assert len(group.slices) == len(group.outside) == len(group.answers) == len(files)
    ids, _ = answers(group)
    frame, outside = segments(group)
    assert len(frame) == len(outside) == len(ids) == len(features)
    assert frame["contract"].cat.codes.dtype == np.int8  # one byte per row
    order = np.array([int(i[1:]) for i in ids])
    assert (frame["contract"].astype(str).to_numpy() == live["contract"].to_numpy()[order]).all()
    assert (frame["female"].to_numpy() == live["female"].to_numpy()[order].astype(str)).all()
    reference = Reference.from_bundle(bundle)
    assert (outside == outside_support(reference, moved).astype(bool)[order]).all()
    assert outside.mean() == pytest.approx(1 / 3, abs=0.01)
