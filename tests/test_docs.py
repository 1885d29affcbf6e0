"""The docs cannot rot: every example file runs, every ``>>>`` block passes, every link
resolves inside the repository, and nothing points at notes users of the repo do not have."""

import doctest
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = sorted((DOCS / "examples").glob("*.py"))
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def run_example(name: str, tmp_path: Path) -> dict:
    """Run docs/examples/NAME in a temp dir with the tests' interpreter; its last line is JSON."""
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT / "src")}
    env.pop("MLFLOW_TRACKING_URI", None)  # the examples track to a SQLite store of their own
    done = subprocess.run(
        [sys.executable, str(DOCS / "examples" / name)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_example_is_tested_here():
    tested = set(re.findall(r'run_example\("(\w+\.py)"', Path(__file__).read_text()))
    assert tested == {p.name for p in EXAMPLES}


def test_notebook_flow(tmp_path):
    out = run_example("notebook_flow.py", tmp_path)
    assert Path(out["folder"]).parent == tmp_path  # nothing written outside the temp dir
    assert out["task"] == "binary" and out["errors"] == 0
    assert out["version"] == 1 and out["mlflow_db"]
    assert out["chosen"] in {"constant", "rule", "linear", "gbt"}
    assert 0.6 < out["test_metric"] <= 1.0  # churn is predictable: well above chance
    assert len(out["scores"]) == 5 and all(0.0 <= p <= 1.0 for p in out["scores"])
    assert out["one"] == pytest.approx(out["scores"][0], abs=1e-9)  # one-record path = frame path
    assert len(set(out["scores"])) > 1


def test_check_new_data(tmp_path):
    out = run_example("check_new_data.py", tmp_path)
    # says which contract: the check's (all rows) is not the bundle's (the train split's)
    assert out["learned_source"].startswith("learned from this data (all rows)")
    assert "the model's bundle keeps the train split's contract" in out["learned_source"]
    assert out["exit_code"] == 1  # error-level findings
    assert out["contract_findings"] == [
        ["missing_column", "tenure"],
        ["unseen_category", "contract"],
        ["wrong_type", "monthly_charges"],
    ]


def test_deploy_flow(tmp_path):
    out = run_example("deploy_flow.py", tmp_path)
    assert out["version"] == 1 and out["ready"] is True
    assert out["champion"] == 1
    assert out["scored"] == out["rows"] == 500
    assert out["columns"] == ["row", "prediction", "model_version", "snapshot_id"]
    assert 0.0 <= out["min"] < out["max"] <= 1.0


# --- code blocks in the docs ---------------------------------------------------------------


def _blocks(page: Path) -> list[tuple[str, str]]:
    return FENCE.findall(page.read_text(encoding="utf-8"))


def test_python_blocks_are_doctests_or_example_files():
    """A ```python block is either doctest-style (run below) or the example it names."""
    for page in PAGES:
        for lang, body in _blocks(page):
            if lang != "python":
                continue
            if body.lstrip().startswith(">>>"):
                continue
            first = body.splitlines()[0]
            named = re.match(r"# docs/examples/(\w+\.py)", first)
            assert named, f"{page.name}: a python block neither doctest nor an example:\n{body}"
            example = (DOCS / "examples" / named.group(1)).read_text(encoding="utf-8")
            assert "\n".join(body.splitlines()[1:]).strip() in example, (
                f"{page.name}: the block differs from {named.group(1)}"
            )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_doctest_blocks_pass(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT / "src"))
    text = "\n".join(
        body for lang, body in _blocks(page) if lang == "python" and ">>>" in body.lstrip()[:3]
    )
    test = doctest.DocTestParser().get_doctest(text, {}, page.name, str(page), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0, f"{runner.failures} doctest failure(s) in {page.name}"


# --- links ---------------------------------------------------------------------------------


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def _links(page: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", page.read_text(encoding="utf-8")))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_resolve_inside_the_repository(page):
    bad = []
    for link in _links(page):
        if link.startswith(("http://", "https://")):
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.is_relative_to(ROOT) or not target.exists():
            bad.append(f"{link}: no such file in the repository")
        elif anchor and (target.suffix != ".md" or anchor not in _anchors(target)):
            bad.append(f"{link}: no heading with anchor #{anchor}")
    assert bad == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_doc_points_at_workshop_notes(page):
    text = page.read_text(encoding="utf-8")
    assert "../shared" not in text and "DESIGN.md" not in text


def test_the_docs_exist_and_link_to_each_other():
    names = {p.name for p in DOCS.glob("*.md")}
    assert {"architecture.md", "configuration.md", "commands.md"} <= names
    readme_links = {link.partition("#")[0] for link in _links(ROOT / "README.md")}
    assert {f"docs/{n}" for n in ("architecture.md", "configuration.md", "commands.md")} <= (
        readme_links
    )


def test_configuration_page_runs_doctests():
    text = "\n".join(b for lang, b in _blocks(DOCS / "configuration.md") if lang == "python")
    assert len(doctest.DocTestParser().get_examples(text)) >= 2


# --- the configuration reference matches the declarations ----------------------------------


def _toml_default(value) -> str:
    if value is None or value == "":  # "" is how an unset string reads in the dataclass
        return "unset"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, tuple):
        return "`[" + ", ".join(map(str, value)) + "]`"
    return f"`{value}`"


def _documented_keys() -> dict[str, dict[str, list[str]]]:
    """{section: {key: [type, default, allowed, meaning]}} from docs/configuration.md."""
    out: dict[str, dict[str, list[str]]] = {}
    section = None
    for line in (DOCS / "configuration.md").read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^## `\[(\w+)\]`", line)
        if heading:
            section = out.setdefault(heading.group(1), {})
            continue
        if line.startswith("## "):
            section = None
        row = re.match(r"^\| `(\w+)` \| (.*) \|$", line)
        if section is not None and row:
            section[row.group(1)] = [c.strip() for c in row.group(2).split(" | ")]
    return out


def test_configuration_lists_every_declared_key_with_its_type_and_default():
    import dataclasses

    from shipyard.spec import SECTIONS

    documented = _documented_keys()
    assert list(documented) == list(SECTIONS)
    for name, (section_cls, keys) in SECTIONS.items():
        assert list(documented[name]) == list(keys), name
        defaults = {f.name: f.default for f in dataclasses.fields(section_cls)}
        for key, decl in keys.items():
            type_name, default, _allowed, meaning = documented[name][key]
            assert type_name == decl.type_name, f"{name}.{key}"
            assert meaning
            if decl.required:
                expected = "required"
            elif (name, key) == ("objective", "metric"):
                expected = "by task"  # DEFAULT_METRIC, by task; documented in the row
            else:
                expected = _toml_default(defaults[key])
                if isinstance(defaults[key], tuple) and not defaults[key]:
                    expected = "`[]`"
            assert default == expected, f"{name}.{key}: documented {default}, code {expected}"


def test_the_default_metric_of_each_task_is_the_documented_one():
    from shipyard.spec import DEFAULT_METRIC

    row = _documented_keys()["objective"]["metric"][3]
    for task, metric in DEFAULT_METRIC.items():
        assert f"`{metric}` for {task}" in row


# --- the command reference matches the command line ----------------------------------------


def _command_sections() -> dict[str, str]:
    text = (DOCS / "commands.md").read_text(encoding="utf-8")
    parts = re.split(r"^## `shipyard (\w+)", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def test_commands_page_documents_every_command_and_option():
    import typer.main

    from shipyard.cli import app

    group = typer.main.get_command(app)
    sections = _command_sections()
    assert set(sections) == set(group.commands)
    table = (DOCS / "commands.md").read_text(encoding="utf-8").split("Exit codes:")[0]
    for name, command in group.commands.items():
        options = {o for p in command.params for o in p.opts if o.startswith("--")}
        for option in options - {"--spec", "--json"}:
            assert f"`{option}" in sections[name], f"{name}: {option} undocumented"
        # the table of common options says exactly which commands take --spec and --json
        row = next(line for line in table.splitlines() if f"`{name}`" in line)
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1].startswith("yes") == ("--spec" in options), name
        assert cells[2].startswith("yes") == ("--json" in options), name
