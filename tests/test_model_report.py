"""The model report on a real training run, read as HTML and opened in a real browser.

Telco churn is trained once (tracked and registered): ``train`` writes ``report.html`` into
the bundle, signs it into the manifest and logs it to the run. The page is parsed section by
section and each is checked against the bundle's own numbers. The learning curve and the error
slices are the run's own (``diagnostics.json``, ``error_analysis.json`` with
``worst_predictions.csv``); a copy of the bundle without them says "not computed for this
run". Headless
Chromium renders the page with every host unresolvable and a NetLog of every request.
"""

from __future__ import annotations

import json
import re
import shutil
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from shipyard.bundle import add_document, load_bundle, verify
from shipyard.data.split import make_splits
from shipyard.project import Project
from shipyard.reports.markup import number, percent
from shipyard.reports.model import NOT_COMPUTED, render_model_report
from support import (
    FLIGHTS_FLAGGED,
    browse,
    churn_project,
    page_requests,
    shipyard_cli,
    toml_text,
)

SECTIONS = {
    "spec": "Spec and objective",
    "data": "Data checks",
    "ladder": "The ladder",
    "constraints": "Constraints",
    "readiness": "Readiness",
    "slices": "Slices",
    "calibration": "Calibration",
    "robustness": "Robustness, invariance and directions",
    "learning": "Learning curve",
    "errors": "Error slices",
    "importance": "Global importance",
    "explained": "Explained predictions",
}


class _Sections(HTMLParser):
    """The text and markup of each ``<section id=…>`` of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.current: str | None = None
        self.depth = 0
        self.text: dict[str, list[str]] = {}
        self.svgs: dict[str, int] = {}
        self.rows: dict[str, int] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section" and self.current is None:
            self.current = dict(attrs)["id"]
            self.text[self.current], self.svgs[self.current] = [], 0
            self.rows[self.current] = 0
        elif tag == "section":
            self.depth += 1
        elif self.current is not None and tag == "svg":
            self.svgs[self.current] += 1
        elif self.current is not None and tag == "tr":
            self.rows[self.current] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "section" and self.depth:
            self.depth -= 1
        elif tag == "section":
            self.current = None

    def handle_data(self, data: str) -> None:
        if self.current is not None:
            self.text[self.current].append(data)


def sections(html: str) -> _Sections:
    parsed = _Sections()
    parsed.feed(html)
    return parsed


def text_of(html: str, anchor: str) -> str:
    return " ".join(" ".join(sections(html).text[anchor]).split())


@pytest.fixture(scope="module")
def trained(tmp_path_factory, churn):
    project = churn_project(tmp_path_factory.mktemp("churn"), churn)
    return project, project.train()


@pytest.fixture(scope="module")
def html(trained) -> str:
    _, result = trained
    return Path(result.report).read_text()


def test_train_writes_signs_and_logs_the_report(trained):
    project, result = trained
    assert result.report == result.bundle / "report.html"
    manifest = verify(result.bundle)  # the report is signed into the manifest
    assert "report.html" in manifest["files"]
    tracker = project.tracker()
    logged = {a.path for a in tracker.client.list_artifacts(result.run_id)}
    assert "report.html" in logged
    copy = Path(tracker.client.download_artifacts(result.run_id, "report.html"))
    assert copy.read_text() == result.report.read_text()
    assert result.to_dict()["report"] == str(result.report)


def test_every_section_is_there_in_order(html):
    found = sections(html)
    assert list(found.text) == list(SECTIONS)
    assert re.findall(r"<h2>(.*?)</h2>", html) == list(SECTIONS.values())
    assert "Model report · churn v1" in html


def test_spec_data_checks_ladder_and_constraints_show_the_runs_numbers(trained, html):
    project, result = trained
    spec = text_of(html, "spec")
    assert "roc_auc (higher is better)" in spec and "stratified (seed 42)" in spec
    assert "contract, senior_citizen" in spec and "max_ece 0.03" in spec
    check = json.loads(next((project.workspace.reports).glob("check-*.json")).read_text())
    data = text_of(html, "data")
    assert f"{check['rows']:,}" in data
    for finding in check["findings"]:
        assert " ".join(finding["message"].split()) in data, finding["code"]
    ladder = text_of(html, "ladder")
    for row in result.ladder:  # every rung's dev metric, as computed
        assert f"{row['rung']}" in ladder and number(row["dev_roc_auc"]) in ladder
    chosen_test = result.test[result.chosen]
    assert all(number(v) in ladder for v in chosen_test.values())
    assert sections(html).svgs["ladder"] == 1
    constraints = text_of(html, "constraints")
    for name, item in result.constraints.items():
        assert name in constraints and number(item["value"]) in constraints


def test_readiness_lists_every_item_with_its_verdict_and_evidence(trained, html):
    _, result = trained
    part = html[html.find('id="readiness"') : html.find('id="slices"')]
    rows = re.findall(r"<tr><td>(\d+)</td><td>(.*?)</td><td><code>(\w+)</code>", part)
    assert [(int(n), name) for n, _, name in rows] == [
        (i["number"], i["name"]) for i in result.readiness["items"]
    ]
    for (_, verdict, _), item in zip(rows, result.readiness["items"], strict=True):
        assert (">pass<" in verdict) == item["passed"]
    failed = sum(not i["passed"] for i in result.readiness["items"])
    verdict = "ready: every item passes" if not failed else f"not ready: {failed} of 11"
    assert verdict in text_of(html, "readiness")
    fallback = result.readiness["items"][8]["evidence"]["fallback"]
    assert f"&quot;fallback&quot;: &quot;{fallback}&quot;" in part  # the evidence, escaped


def test_slices_calibration_robustness_and_importance_are_drawn_from_the_bundle(trained, html):
    _, result = trained
    found = sections(html)
    slices = text_of(html, "slices")
    for entry in result.slices["slices"]:
        assert number(entry["roc_auc"]) in slices
        if entry["ci_low"] is not None:
            assert f"[{number(entry['ci_low'])}, {number(entry['ci_high'])}]" in slices
    assert found.svgs["slices"] == 2  # one chart per slice column
    reference = json.loads((result.bundle / "reference.json").read_text())
    bins = [b for b in reference["calibration"] if b["count"]]
    calibration = text_of(html, "calibration")
    assert found.svgs["calibration"] == 1 and len(bins) > 3
    assert all(number(b["observed"]) in calibration for b in bins)
    assert number(result.calibration["ece_test"]) in calibration
    robust = result.robustness
    worst = robust["worst_perturbation"]
    assert number(robust["clean"]) in text_of(html, "robustness")
    part = html[html.find('id="robustness"') : html.find('id="learning"')]
    assert f"{escape(worst['feature'])} · {worst['perturbation']}" in part
    importance = result.importance
    top = importance["fields"][0]
    part = html[html.find('id="importance"') : html.find('id="explained"')]
    assert f">{escape(top['field'])}</text>" in part and found.svgs["importance"] == 1


def test_the_learning_curve_and_error_slices_are_the_runs_own(trained, html):
    _, result = trained
    found = sections(html)
    curve = result.diagnostics["learning_curve"]
    learning = text_of(html, "learning")
    assert NOT_COMPUTED not in learning and found.svgs["learning"] == 1
    assert " ".join(curve["diagnosis"].split()) in learning and f"({curve['kind']})" in learning
    assert all(f"{n:,}" in learning for n in curve["sizes"])
    assert all(number(v) in learning for v in curve["dev"] + curve["train"])
    assert number(result.diagnostics["sanity"]["value"]) in learning
    assert "no champion to compare with" in learning  # the first version of the project
    analysis = result.error_analysis
    errors = text_of(html, "errors")
    assert NOT_COMPUTED not in errors and found.svgs["errors"] == 1
    assert analysis["slices"] and f"{analysis['rows']} rows" in errors
    for s in analysis["slices"]:
        where = " and ".join(f"{c} = {v}" for c, v in zip(s["columns"], s["values"], strict=True))
        assert where in errors and percent(s["share_of_error"]) in errors
    worst = pd.read_csv(result.bundle / analysis["worst"])
    assert len(worst) > 5 and "the first 5 rows of worst_predictions.csv" in errors
    part = html[html.find('id="errors"') : html.find('id="importance"')]
    table = part[part.find("worst_predictions.csv") :]
    assert table.count("<tr>") == 1 + 5  # its header and five rows
    assert all(f"<td>{r}</td>" in table for r in worst.iloc[:5, 0])


def test_documents_a_run_did_not_write_say_so(trained, tmp_path):
    """A bundle trained before diagnostics and error slices existed: one line each."""
    _, result = trained
    folder = tmp_path / "bundle"
    shutil.copytree(result.bundle, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in ("diagnostics.json", "error_analysis.json", "worst_predictions.csv"):
        (folder / name).unlink()
        del manifest["files"][name]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    html = render_model_report(folder, version=1)
    assert list(sections(html).text) == list(SECTIONS)
    for anchor in ("learning", "errors"):
        assert NOT_COMPUTED in text_of(html, anchor) and sections(html).svgs[anchor] == 0
    # without rows to explain, the page says why
    assert "no test rows were available" in text_of(html, "explained")


def test_explained_predictions_are_the_bundles_own_explanations(trained, html):
    project, result = trained
    bundle = load_bundle(result.bundle)
    ds = project.dataset()
    rows = ds.frame.iloc[make_splits(ds).test[:3]]
    explanation = bundle.explain(rows[bundle.features].reset_index(drop=True))
    scores = bundle.predict(rows[bundle.features])
    explained = text_of(html, "explained")
    for i, record in enumerate(rows[bundle.features].to_dict("records")):
        item = explanation.row(i, record=record, target="churn")
        assert item["reasons"] and all(r in explained for r in item["reasons"])
        assert f"Row {i + 1}: churn {number(float(scores[i]))}" in explained
        assert f"actual churn: {rows['churn'].iloc[i]}" in explained


def test_cli_report_writes_one_page_and_refuses_unknown_versions(trained, tmp_path):
    project, result = trained
    folder = project.spec.root
    done = shipyard_cli(folder, "report", "v1", "--out", str(tmp_path / "v1.html"))
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "v1.html").read_text()
    assert list(sections(page).text) == list(SECTIONS)
    assert text_of(page, "explained") == text_of(result.report.read_text(), "explained")
    by_run = shipyard_cli(folder, "report", result.run_id[:8], "--json")
    assert by_run.returncode == 0, by_run.stderr
    written = Path(json.loads(by_run.stdout)["report"])
    assert written == project.workspace.reports / "model-v1.html" and written.is_file()
    before = sorted(p.name for p in project.workspace.reports.iterdir())
    for wrong, named in (("7", "no version 7"), ("nosuchrun", "'nosuchrun'")):
        refused = shipyard_cli(folder, "report", wrong, "--out", str(tmp_path / "x.html"))
        assert refused.returncode == 2, refused.stderr
        assert named in " ".join(refused.stderr.split()) and "Traceback" not in refused.stderr
        assert not (tmp_path / "x.html").exists()
    assert sorted(p.name for p in project.workspace.reports.iterdir()) == before


def test_a_flights_report_stays_under_a_megabyte(tmp_path, flights_sample):
    flights_sample.to_parquet(tmp_path / "flights.parquet", index=False)
    (tmp_path / "shipyard.toml").write_text(
        toml_text(
            {
                "project": {
                    "name": "flights",
                    "target": "arr_delayed",
                    "task": "binary",
                    "data": "flights.parquet",
                },
                "features": {"exclude": FLIGHTS_FLAGGED, "slices": ["origin", "carrier"]},
            }
        )
    )
    result = Project.load(tmp_path / "shipyard.toml").train(track=False)
    html = result.report.read_text()
    assert len(html.encode()) < 1_000_000
    found = sections(html)
    assert list(found.text) == list(SECTIONS)
    carriers = sorted(
        {str(s["value"]) for s in result.slices["slices"] if s["column"] == "carrier"}
    )
    assert len(carriers) > 10 and all(f">{c}</text>" in html for c in carriers)


@pytest.fixture(scope="module")
def browsed(trained, tmp_path_factory):
    _, result = trained
    folder = tmp_path_factory.mktemp("browser")
    netlog = folder / "netlog.json"
    done = browse(
        result.report,
        folder / "profile",
        "--virtual-time-budget=2000",
        f"--log-net-log={netlog}",
        "--dump-dom",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr, netlog


def test_the_browser_renders_every_section_without_errors_or_requests(browsed, html):
    dom, stderr, netlog = browsed
    assert 'data-ready="yes"' in dom  # the page's script ran to its end
    assert "Uncaught" not in stderr and "CONSOLE" not in stderr
    assert re.findall(r"<h2>(.*?)</h2>", dom) == list(SECTIONS.values())
    charts = dom.count("<svg")
    assert charts == html.count("<svg") >= 6 and f"{charts} charts" in dom
    assert page_requests(netlog) == []  # the page asked for nothing
    for pattern in (r"\bsrc\s*=", r"@import", r"url\(", r"<link\b", r"https?://"):
        assert not re.search(pattern, html, re.I), pattern


def test_the_browser_checks_see_a_page_that_fetches_and_fails(tmp_path):
    """The checks above can fail: a page that loads an image, fetches a script and raises is
    seen by the NetLog and in the console."""
    page = tmp_path / "fetches.html"
    page.write_text(
        '<img src="http://example.com/x.png"><script>fetch("https://cdn.example.org/a.js")'
        ".catch(function () {}); undefinedFunction();</script>"
    )
    netlog = tmp_path / "netlog.json"
    done = browse(
        page,
        tmp_path / "profile",
        "--virtual-time-budget=2000",
        f"--log-net-log={netlog}",
        "--dump-dom",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert page_requests(netlog) == ["http://example.com/x.png", "https://cdn.example.org/a.js"]
    assert "CONSOLE" in done.stderr and "Uncaught ReferenceError" in done.stderr


def test_a_screenshot_at_laptop_width_reads(trained, tmp_path):
    _, result = trained
    shot = tmp_path / "model-report.png"
    done = browse(
        result.report,
        tmp_path / "profile",
        f"--screenshot={shot}",
        "--window-size=1366,6000",
        "--hide-scrollbars",
        "--virtual-time-budget=2000",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 100_000
    width = int.from_bytes(data[16:20], "big")
    assert width == 1366


def test_the_page_escapes_what_comes_from_data(trained, tmp_path):
    """A slice value or a rule quoting markup is shown as text."""
    _, result = trained
    folder = tmp_path / "bundle"
    shutil.copytree(result.bundle, folder)
    evaluation = json.loads((folder / "evaluation.json").read_text())
    evaluation["slices"]["slices"][0]["value"] = "<script>alert(1)</script>"
    add_document(folder, "evaluation.json", evaluation)
    html = render_model_report(folder)
    assert html.count("<script>") == 1  # the page's own
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_changed_data_is_said_in_place_of_explained_rows(trained, tmp_path):
    """`shipyard report` re-reads the spec's data for the rows it explains: data changed
    since training (another snapshot) is said, and the rest of the page is drawn."""
    project, _ = trained
    root = project.spec.root
    shutil.copy(root / "shipyard.toml", tmp_path / "shipyard.toml")
    (tmp_path / ".shipyard").symlink_to(root / ".shipyard")
    changed = pd.read_csv(root / "churn.csv").iloc[:-1]
    changed.to_csv(tmp_path / "churn.csv", index=False)
    path = Project.load(tmp_path / "shipyard.toml").report("1", out=tmp_path / "page.html")
    page = path.read_text()
    assert list(sections(page).text) == list(SECTIONS)
    explained = text_of(page, "explained")
    assert "changed since this model was trained" in explained and "Row 1" not in explained
