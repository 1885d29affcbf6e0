"""The ``shipyard`` command line: a thin layer over :class:`shipyard.project.Project`.

Every command takes ``--spec PATH`` and ``--json``. Exit codes: 0 success, 1 a check found
an error-level problem, 2 a usage or input error (one clear message, no traceback).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
import typer._click as click
from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table as RichTable
from typer.core import TyperArgument, TyperCommand

from shipyard import __version__
from shipyard.errors import ShipyardError, UsageError
from shipyard.progress import Reporter, display

if TYPE_CHECKING:
    from shipyard.project import CheckReport
    from shipyard.training import TrainResult


class _LazyProject:
    """``Project`` imported on first use: it pulls in pandas and the whole pipeline, which
    `shipyard rollback` does not need (it commits in milliseconds from a cold start)."""

    def __getattr__(self, name: str) -> Any:
        from shipyard.project import Project as real

        return getattr(real, name)


Project = _LazyProject()


class _Command(TyperCommand):
    """Usage lines as docs/commands.md writes them, ``check [OPTIONS] [DATA]`` and
    ``init [OPTIONS] DATA``: typer's own are ``[data]`` and ``{data}``."""

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = (param.metavar or param.name or "").upper()
                pieces.append(name if param.required else f"[{name}]")
        return pieces


app = typer.Typer(
    name="shipyard",
    help="Take a tabular model from a data file to production and keep it healthy there.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# In a terminal, rich fits output to its width; in a pipe or a file it would assume 80
# columns and cut table cells ("3f9a0c…"), so there lines are as long as their content.
# Messages on stderr likewise: a path or a name cut across two lines of a log is one a
# reader (or grep) cannot find.
_piped = not (sys.stdout is not None and sys.stdout.isatty())
_err_piped = not (sys.stderr is not None and sys.stderr.isatty())
out = Console(highlight=False, soft_wrap=False, width=100_000 if _piped else None)
err = Console(stderr=True, highlight=False, width=100_000 if _err_piped else None)

SpecOption = Annotated[Path, typer.Option("--spec", help="Path to shipyard.toml.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def _fail(message: str, code: int, as_json: bool = False) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}")
    if as_json:  # a script reading stdout learns of the refusal too
        _emit_json({"error": message, "exit_code": code})
    raise typer.Exit(code)


@contextmanager
def _errors(as_json: bool = False) -> Iterator[None]:
    """The one place an error becomes a message and an exit code: shipyard's errors carry
    their own; OS errors (a path, a permission) are usage errors (2)."""
    try:
        yield
    except ShipyardError as exc:
        _fail(str(exc), exc.exit_code, as_json)
    except OSError as exc:
        _fail(f"{exc.strerror or exc}: '{exc.filename}'" if exc.filename else str(exc), 2, as_json)
    except KeyboardInterrupt:
        _fail("interrupted", 130, as_json)


@contextmanager
def _progress(command: str) -> Iterator[Reporter]:
    """The stages (and a rung's rounds) on stderr: live in a terminal, one plain line per
    stage otherwise (see :mod:`shipyard.progress`); stdout stays clean for --json."""
    with display(command, err) as reporter:
        yield reporter


def _tidy(project: Any) -> dict[str, Any] | None:
    """Settle what killed trainings left behind, saying so in one line on stderr; the
    record for ``--json`` output (None when there was nothing to do)."""
    done = project.tidy()
    if not done:
        return None
    err.print(f"[yellow]{escape(done.line())}[/]", soft_wrap=True)  # one line, unwrapped
    return done.to_dict()


def _emit_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")


def print_check(report: CheckReport, console: Console = out) -> None:
    """The human form of a check report: findings by severity, then the split plan."""
    console.print(
        f"[bold]shipyard check[/] {escape(report.data)}  "
        f"({report.rows:,} rows × {report.columns} columns, "
        f"snapshot {report.snapshot_id[:12]})"
    )
    console.print(f"contract: {escape(report.contract_source)}")
    for f in report.findings:
        style = SEVERITY_STYLE[f.severity]
        cols = f"  [bold]{escape(f.column)}[/]" if f.column else ""
        console.print(f"[{style}]{f.severity.upper():<7}[/] {f.check}/{f.code}{cols}")
        console.print(
            Padding(
                f"{escape(f.message)}\n[dim]→ {escape(f.action)}[/]", (0, 0, 0, 8), expand=False
            )
        )
    if report.splits:
        parts = report.splits["parts"]
        split_table = RichTable(
            title=f"split plan: {report.splits['strategy']}", title_justify="left"
        )
        for col in ("part", "rows", "share", "target", "from", "to"):
            split_table.add_column(col)
        for name, entry in parts.items():
            target = entry.get(
                "positive_rate", entry.get("target_mean", entry.get("class_shares", ""))
            )
            split_table.add_row(
                name,
                f"{entry['rows']:,}",
                f"{entry['share']:.1%}",
                str(target),
                str(entry.get("time_from", "")),
                str(entry.get("time_to", "")),
            )
        console.print(split_table)
        if report.splits.get("dropped"):
            console.print(f"[yellow]rows left out of every split:[/] {report.splits['dropped']}")
    counts = report.counts()
    verdict = (
        "[bold red]errors found[/]: fix them, or exclude the columns named, before training"
        if counts["error"]
        else "[bold green]no errors[/]"
    )
    console.print(
        f"{counts['error']} errors, {counts['warning']} warnings, {counts['info']} info: {verdict}"
    )


@app.command(cls=_Command)
def init(
    data: Annotated[
        Path,
        typer.Argument(metavar="DATA", help="CSV or Parquet file (or folder of Parquet files)."),
    ],
    target: Annotated[str, typer.Option("--target", help="The column to predict.")],
    task: Annotated[
        str | None, typer.Option(help="binary, multiclass or regression (inferred).")
    ] = None,
    spec: SpecOption = Path("shipyard.toml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing spec.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Write a commented shipyard.toml inferred from DATA."""
    with _errors(as_json):
        _, inferred = Project.init(data, target, spec, task=task, force=force)
    summary = {
        "spec": str(spec),
        "task": inferred.task,
        "target": inferred.target,
        "positive": None if inferred.positive is None else str(inferred.positive),
        "id": inferred.id,
        "time": inferred.time,
        "time_features": [f"{inferred.time}.{part}" for part in inferred.time_parts],
        "exclude": inferred.exclude,
        "roles": {c: p.role for c, p in inferred.profiles.items()},
    }
    if as_json:
        _emit_json(summary)
        return
    out.print(
        f"wrote [bold]{escape(str(spec))}[/]: task [bold]{inferred.task}[/], target "
        f"[bold]{escape(inferred.target)}[/]"
        + (f", positive class {inferred.positive!r}" if inferred.positive is not None else "")
    )
    out.print(f"  entity key (id): {inferred.id or '—'}   time column: {inferred.time or '—'}")
    if inferred.time_parts:
        out.print(
            f"  the time column's calendar is a feature ({', '.join(inferred.time_parts)}, "
            "each only if the train split spans its cycle); "
            f"\\[features] exclude = [{escape(json.dumps(inferred.time))}] turns it off"
        )
    if inferred.exclude:
        out.print("  excluded: " + ", ".join(f"{c} ({why})" for c, why in inferred.exclude.items()))
    out.print("Read and edit it, then run [bold]shipyard check[/].")


@app.command(cls=_Command)
def check(
    data: Annotated[
        Path | None, typer.Argument(metavar="DATA", help="Data to check (default: project.data).")
    ] = None,
    spec: SpecOption = Path("shipyard.toml"),
    as_json: JsonOption = False,
) -> None:
    """Contract, data quality and leakage audit; findings sorted by severity."""
    with _errors(as_json):
        project = Project.load(spec)
        cleaned = _tidy(project)
        with _progress("check") as update:
            report = project.check(data, progress=update)
    if as_json:
        _emit_json({**report.to_dict(), "cleaned_up": cleaned})
    else:
        print_check(report)
    raise typer.Exit(report.exit_code)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_train(result: TrainResult, console: Console = out) -> None:
    """The human form of a training result: ladder, constraints, calibration, slices."""
    metric = result.metric
    ladder = RichTable(title=f"ladder (dev {metric}, blackbox)", title_justify="left")
    for col in (
        "rung",
        f"dev {metric}",
        "improvement vs previous",
        "fit s",
        "p99 ms",
        "size MB",
        "test " + metric,
    ):
        ladder.add_column(col, justify="left" if col == "rung" else "right")
    for row in result.ladder:
        name = row["rung"]
        mark = " ← chosen" if name == result.chosen else ""
        ladder.add_row(
            f"{name}{mark}",
            _fmt(row[f"dev_{metric}"]),
            "—" if row["delta"] is None else f"{row['delta']:+.4f}",
            _fmt(row["fit_s"], 2) + (" (over budget)" if row.get("budget_hit") else ""),
            _fmt(row["p99_ms"], 3),
            _fmt(row["size_mb"], 3),
            _fmt(result.test[name][metric]),
        )
    champion = (result.diagnostics or {}).get("champion")
    if champion is not None:  # the deployed system, scored on the same dev and test rows
        ladder.add_row(
            f"champion v{champion['version']} (deployed)",
            _fmt(champion["dev"][metric]),
            *("—" for _ in range(4)),
            _fmt(champion["test"][metric]),
        )
    console.print(ladder)
    from shipyard.evaluation.metrics import HIGHER_IS_BETTER

    higher = HIGHER_IS_BETTER[metric]
    items = {i["name"]: i for i in (result.readiness or {}).get("items", [])}
    needed = items.get("beats_baselines", {}).get("evidence", {}).get("min_improvement")
    console.print(
        f"({metric}: {'higher' if higher else 'lower'} is better; improvement = "
        + ("this − previous" if higher else "previous − this")
        + ", positive when the rung did better)"
        + (
            f"; chosen: the simplest rung within min_improvement = {needed['rule']} of the best"
            if isinstance(needed, dict)
            else ""
        ),
        markup=False,
    )
    for warning in result.warnings:
        console.print(f"[bold yellow]warning:[/] {escape(warning)}")
    table = RichTable(title="constraints (satisficing)", title_justify="left")
    for col in ("constraint", "limit", "value", "result"):
        table.add_column(col)
    for name, item in result.constraints.items():
        verdict = (
            ("[green]pass[/]" if item["passed"] else "[bold red]FAIL[/]")
            if item["limit"] is not None
            else f"[dim]{item.get('note', '')}[/]"
        )
        table.add_row(name, _fmt(item["limit"]), _fmt(item["value"]), verdict)
    console.print(table)
    cal = result.calibration
    if cal.get("applies") and "ece_before" in cal:
        crossfit = [v for k, v in cal.items() if k.endswith("_crossfit") and v is not None]
        if cal.get("kept"):
            text = (
                f"ECE on dev {cal['ece_before']:.4f} before, {cal['ece_dev_after']:.4f} after "
                f"{cal['kept']} calibration (cross-fitted on dev)"
            )
        elif crossfit:
            best = min(crossfit)
            why = (
                f"within max_ece {cal['max_ece']:g}"
                if cal.get("max_ece") is not None
                else "set [constraints] max_ece to require calibration"
            )
            text = (
                f"ECE on dev {cal['ece_before']:.4f} before, {best:.4f} after "
                f"{cal.get('chosen') or 'the best'} calibration (cross-fitted on dev)"
                + ("" if cal.get("chosen") else ": no calibrator helped")
                + f"; not applied: {why}"
            )
        else:
            text = f"ECE on dev {cal['ece_before']:.4f}"
        console.print(f"calibration: {escape(text)}; ECE on test {_fmt(cal.get('ece_test'))}")
    slices = result.slices
    if slices["slices"]:
        worst = slices["worst_slice"]
        where = f" ({worst['column']} = {worst['value']})" if worst else ""
        tiny = sum(1 for e in slices["slices"] if e["tiny"])
        floor = items.get("slices_hold", {}).get("evidence", {}).get("max_slice_gap")
        console.print(
            f"slices: {len(slices['slices'])} on test, worst gap {slices['worst_gap']:.4f}{where}"
            + (f", {tiny} too small to judge (marked tiny)" if tiny else "")
            + (f"; floor: max_slice_gap = {floor['rule']}" if isinstance(floor, dict) else ""),
            markup=False,
        )
    print_groups(slices.get("sensitive") or {}, console)
    print_robustness(result.robustness, console)
    print_diagnostics(result.diagnostics, console)
    print_error_slices(result.error_analysis, console)
    readiness = result.readiness
    if readiness:
        verdict = "[bold green]ready[/]" if readiness["passed"] else "[bold red]not ready[/]"
        console.print(f"readiness: {verdict}")
        for item in readiness["items"]:
            mark = "[green]✓[/]" if item["passed"] else "[bold red]✗[/]"
            console.print(f"  {mark} {item['number']}. {item['name']}: {escape(item['summary'])}")
    console.print(
        f"chosen: [bold]{result.chosen}[/]; test {metric} [bold]{result.test[result.chosen][metric]:.4f}[/]"
        + ("" if result.constraints_met else "  [bold red](constraints not met)[/]")
    )
    console.print(
        f"run {result.run_id or '—'}; registered version {result.version or '—'}; "
        f"bundle {result.bundle}"
    )
    if result.report is not None:
        console.print(f"report: {escape(str(result.report))}")


def print_groups(groups: dict[str, Any], console: Console = out) -> None:
    """Per-group rates of each sensitive column on test, and the gaps between groups."""
    from shipyard.evaluation.readiness import RATE_NAMES

    for col, entry in groups.items():
        keys = [k for k in RATE_NAMES if k in entry["gaps"]]
        extra = [
            k
            for k in ("target_mean", "prediction_mean")
            if entry["groups"] and k in entry["groups"][0]
        ]
        used = "a feature" if entry["used_as_feature"] else "not a feature"
        table = RichTable(title=f"sensitive '{col}' ({used}), test split", title_justify="left")
        for name in ("group", "rows", *extra, *keys):
            table.add_column(RATE_NAMES.get(name, name.replace("_", " ")))
        for g in entry["groups"]:
            table.add_row(
                escape(g["value"]) + (" (tiny)" if g["tiny"] else ""),
                f"{g['rows']:,}",
                *(_fmt(g[k]) for k in (*extra, *keys)),
            )
        table.add_row(
            "gap (max − min)", "", *([""] * len(extra)), *(_fmt(entry["gaps"][k]) for k in keys)
        )
        console.print(table)


def print_diagnostics(diagnosed: dict[str, Any], console: Console = out) -> None:
    """The learning curve's diagnosis and the sanity fit (loud when it fails)."""
    if not diagnosed:
        return
    curve = diagnosed["learning_curve"]
    sizes = ", ".join(f"{n:,}" for n in curve["sizes"])
    console.print(f"learning curve (refits at {sizes} train rows): {escape(curve['diagnosis'])}")
    check = diagnosed["sanity"]
    if check["passed"]:
        console.print(f"sanity: {escape(check['note'])}")
    else:
        console.print(f"[bold red]SANITY CHECK FAILED:[/] {escape(check['note'])}")


def print_error_slices(analysis: dict[str, Any], console: Console = out, top: int = 3) -> None:
    """The top error slices of the eyeball split, in one short table."""
    if not analysis:
        return
    shown = analysis["slices"][:top]
    where = (
        f"{analysis['split']}, {analysis['rows']:,} rows; mean error {_fmt(analysis['overall'])}"
    )
    if not shown:
        console.print(
            f"error slices ({where}): none errs enough above average for its size", markup=False
        )
        return
    table = RichTable(
        title=f"error slices, top {len(shown)} of {len(analysis['slices'])} ({where})",
        title_justify="left",
    )
    for name in ("slice", "rows", "share of error", "mean error", "metric [95% interval]"):
        table.add_column(name)
    for e in shown:
        interval = f" [{_fmt(e['lower'])}, {_fmt(e['upper'])}]" if e["lower"] is not None else ""
        table.add_row(
            escape(
                " and ".join(f"{c} = {v}" for c, v in zip(e["columns"], e["values"], strict=True))
            ),
            f"{e['rows']:,}",
            f"{e['share_of_error']:.1%}",
            _fmt(e["error"]),
            f"{e['metric']} {_fmt(e['value'])}{interval}",
        )
    console.print(table)
    console.print(
        f"(error: {analysis['error']}; the worst rows: {analysis['worst']})", markup=False
    )


def print_robustness(robust: dict[str, Any], console: Console = out, worst: int = 8) -> None:
    """The robustness tables on test: the worst perturbations, invariance, directions."""
    if not robust:
        return
    metric = robust["metric"]
    where = f"{robust['rows']:,} of {robust['of_rows']:,} test rows, seed {robust['seed']}"
    shown = sorted(
        (p for p in robust["perturbation"] if p["degradation"] is not None),
        key=lambda p: -p["degradation"],
    )[:worst]
    if shown:
        table = RichTable(
            title=f"perturbations, worst {len(shown)} of {len(robust['perturbation'])} "
            f"({where}; clean {metric} {_fmt(robust['clean'])})",
            title_justify="left",
        )
        for name in ("feature", "perturbation", metric, "change", "mean |Δ prediction|"):
            table.add_column(name)
        for p in shown:
            level = f" {p['level']:g} sd" if p["level"] is not None else ""
            table.add_row(
                escape(p["feature"]),
                p["perturbation"] + level,
                _fmt(p[metric]),
                _fmt(p["change"]),
                _fmt(p["mean_abs_shift"]),
            )
        console.print(table)
    if robust["invariance"]:
        table = RichTable(title=f"invariance of sensitive columns ({where})", title_justify="left")
        for name in ("column", "method", "changed share", "p99 |Δ|", "max |Δ|", "verdict"):
            table.add_column(name)
        for e in robust["invariance"]:
            table.add_row(
                escape(e["column"]) + ("" if e["used_as_feature"] else " (not a feature)"),
                e["method"],
                f"{e['changed_share']:.1%} (|Δ| > {e['tolerance']:.4g})",
                _fmt(e.get("p99_abs_change")),
                _fmt(e.get("max_abs_change")),
                "[bold red]breach[/]" if e["breach"] else "[green]holds[/]",
            )
        console.print(table)
    if robust["directional"]:
        table = RichTable(title=f"directional expectations ({where})", title_justify="left")
        for name in ("feature", "expected", "violations", "worst example", "verdict"):
            table.add_column(name)
        for e in robust["directional"]:
            ex = e["examples"][0] if e["examples"] else None
            table.add_row(
                escape(e["feature"]),
                e["direction"],
                f"{e['violations']:,} of {e['rows']:,} ({e['violation_share']:.1%})",
                f"test row {ex['row']}: {ex['value']:g} → {ex['moved_to']:.4g}, prediction "
                f"{ex['prediction']:.4f} → {ex['moved_prediction']:.4f}"
                if ex
                else "—",
                "[bold red]violated[/]" if e["breach"] else "[green]holds[/]",
            )
        console.print(table)


@app.command(cls=_Command)
def train(
    spec: SpecOption = Path("shipyard.toml"),
    ignore_findings: Annotated[
        list[str] | None,
        typer.Option(
            "--ignore-findings",
            help="Train despite check errors with this code (repeatable; recorded).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Split, climb the ladder, evaluate, bundle, track and register a candidate."""
    with _errors(as_json):
        project = Project.load(spec)
        cleaned = _tidy(project)
        with _progress("train") as update:
            result = project.train(
                ignore_findings=ignore_findings or [], progress=update, on_round=update.rounds
            )
    if as_json:
        _emit_json({**result.to_dict(), "cleaned_up": cleaned})
    else:
        print_train(result)
    _END_AT_ONCE.append(True)


@app.command(cls=_Command)
def report(
    run_or_version: Annotated[
        str,
        typer.Argument(
            metavar="RUN_OR_VERSION",
            help="A version (3, v3, champion, challenger) or a training run's id (or prefix).",
        ),
    ],
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="Write the page here (default: .shipyard/reports/)."),
    ] = None,
    spec: SpecOption = Path("shipyard.toml"),
    as_json: JsonOption = False,
) -> None:
    """The model report: one self-contained HTML page (no network needed to open it)."""
    with _errors(as_json):
        project = Project.load(spec)
        _tidy(project)
        with _progress("report") as update:
            path = project.report(run_or_version, out=out_file, progress=update)
    if as_json:
        _emit_json({"report": str(path)})
    else:
        out.print(f"report: {escape(str(path))}")


@app.command(cls=_Command)
def runs(spec: SpecOption = Path("shipyard.toml"), as_json: JsonOption = False) -> None:
    """Tracked training runs, newest first."""
    with _errors(as_json):
        project = Project.load(spec)
        _tidy(project)
        rows = project.runs()
    if as_json:
        _emit_json([r.to_dict() for r in rows])
        return
    table = RichTable()
    for col in (
        "run id",
        "started",
        "status",
        "chosen",
        "metric",
        "dev",
        "test",
        "version",
        "snapshot",
    ):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r.run_id,
            r.started,
            r.status,
            str(r.chosen or "—"),
            r.metric or "—",
            _fmt(r.dev),
            _fmt(r.test),
            str(r.version or "—"),
            r.snapshot or "—",
        )
    out.print(table if rows else "no tracked runs yet: run `shipyard train`")


@app.command(cls=_Command)
def models(spec: SpecOption = Path("shipyard.toml"), as_json: JsonOption = False) -> None:
    """Registered versions with metrics, readiness and deployment role (aliases repaired)."""
    with _errors(as_json):
        project = Project.load(spec)
        cleaned = _tidy(project)
        with _progress("models") as update:
            update("reading the registry")
            listing = project.models()
    if as_json:
        _emit_json({**listing.to_dict(), "cleaned_up": cleaned})
        return
    state = listing.state
    metric = listing.versions[-1].metric if listing.versions else ""
    table = RichTable(title=f"model {listing.model} ({metric})", title_justify="left")
    for col in ("v", "created", "chosen", "dev", "test", "ready", "role", "aliases"):
        table.add_column(col)
    for r in listing.versions:
        ready = (
            "—"
            if r.ready is None
            else "[green]yes[/]"
            if r.ready
            else f"[red]no[/] ({', '.join(r.failed)})"
        )
        table.add_row(
            str(r.version),
            r.created,
            str(r.chosen),
            _fmt(r.dev),
            _fmt(r.test),
            ready,
            f"[bold]{r.role}[/]" if r.role else "",
            ", ".join(r.aliases),
        )
    out.print(table if listing.versions else "no registered versions yet: run `shipyard train`")
    out.print(
        f"deployment state (revision {state['revision']}): champion {state['champion'] or '—'}, "
        f"challenger {state['challenger'] or '—'}"
        + (f" ({state['mode']} {state['percent']:g}%)" if state["challenger"] else "")
        + (
            f", holdout {state['holdout']} ({state['holdout_percent']:g}% of entities"
            + (f" until {state['holdout_until']})" if state["holdout_until"] else ")")
            if state.get("holdout")
            else ""
        )
    )
    for repair in listing.repairs:
        out.print(f"[yellow]repaired MLflow alias[/]: {escape(repair)}")
    for h in listing.history[-10:]:
        if h.get("action") == "promote":
            what = f"promote v{h.get('version')} → {h.get('to')}" + (
                f" {h['after']['percent']:g}%" if h.get("to") == "canary" else ""
            )
        elif h.get("action") == "rollback":
            what = f"rollback of v{h.get('version')} → champion v{h['after']['champion']}"
        else:
            what = f"{h.get('action')} v{h.get('version')}"
        reason = f"  reason: {escape(h['reason'])}" if h.get("reason") else ""
        forced = "  [red]forced[/]" if h.get("forced") else ""
        out.print(
            f"  r{h['revision']} {h['time'][:19]} {escape(h['actor'])}: {what}{reason}{forced}"
        )


@app.command(cls=_Command)
def promote(
    version: Annotated[
        str | None,
        typer.Argument(metavar="VERSION", help="Version number, NAME/N or models:/NAME/N."),
    ] = None,
    to: Annotated[str | None, typer.Option("--to", help="shadow, canary or champion.")] = None,
    percent: Annotated[
        float | None,
        typer.Option(help="Canary traffic percent (default: next of [serving] canary_steps)."),
    ] = None,
    stop: Annotated[
        bool, typer.Option("--stop", help="End the shadow or canary challenger (no VERSION).")
    ] = False,
    end_holdout: Annotated[
        bool,
        typer.Option(
            "--end-holdout", help="End the holdout cohort: the champion answers it (no VERSION)."
        ),
    ] = False,
    holdout_days: Annotated[
        float | None,
        typer.Option(
            "--holdout-days",
            help="With --to champion: keep the holdout cohort this many days "
            "(default [serving] holdout_days).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Override failed gates.")] = False,
    reason: Annotated[
        str | None, typer.Option(help="Why (required with --force; recorded).")
    ] = None,
    spec: SpecOption = Path("shipyard.toml"),
    as_json: JsonOption = False,
) -> None:
    """Gate a version on readiness (and on beating the champion), then deploy it; or, with
    --stop, take the challenger off traffic; with --end-holdout, end the holdout cohort."""
    if stop or end_holdout:
        flag = "--stop" if stop else "--end-holdout"
        if stop and end_holdout:
            _fail("give --stop or --end-holdout, not both", 2)
        if version is not None or to is not None or percent is not None or force or holdout_days:
            _fail(f"{flag} takes no VERSION, --to, --percent, --holdout-days or --force", 2)
        (_stop if stop else _end_holdout)(spec, reason, as_json)
        return
    if version is None or to is None:
        _fail("give a VERSION and --to shadow|canary|champion (or --stop)", 2)
    with _errors(as_json):
        project = Project.load(spec)
        cleaned = _tidy(project)
        with _progress("promote") as update:
            outcome = project.promote(
                version,
                to,
                percent=percent,
                force=force,
                reason=reason,
                progress=update,
                holdout_days=holdout_days,
            )
    if as_json:
        _emit_json({**outcome.to_dict(), "cleaned_up": cleaned})
        return
    after = outcome.after
    role = (
        "champion"
        if to == "champion"
        else f"{after['mode']}"
        + (f" at {after['percent']:g}%" if after["mode"] == "canary" else "")
    )
    versus = outcome.versus
    if versus:
        out.print(
            f"vs champion v{versus['version']} on the newest test split ({versus['rows']:,} rows): "
            f"{versus['metric']} {versus['candidate']:.4f} vs {versus['champion']:.4f} "
            f"({versus['improvement']:+.4f}); {versus['slices_compared']} slices compared"
        )
    if outcome.failures:
        out.print("[bold red]FORCED over[/]: " + "; ".join(map(escape, outcome.failures)))
    out.print(
        f"[bold green]version {outcome.version} is now {role}[/] (revision "
        f"{outcome.revision}, committed in {outcome.committed_seconds:.2f} s)"
    )
    if to == "champion" and after.get("holdout"):
        until = after["holdout_until"]
        out.print(
            f"  holdout: v{after['holdout']} keeps answering {after['holdout_percent']:g}% of "
            f"entities (arm 'holdout') " + (f"until {until}" if until else "until --end-holdout")
        )
    for line in outcome.aliases:
        out.print(f"  MLflow {escape(line)}")


def _stop(spec: Path, reason: str | None, as_json: bool) -> None:
    from shipyard import promotion
    from shipyard.spec import load_spec
    from shipyard.workspace import Workspace

    with _errors(as_json), _progress("promote") as update:
        outcome = promotion.stop(Workspace.of(load_spec(spec)), reason=reason, progress=update)
    if as_json:
        _emit_json(outcome.to_dict())
        return
    out.print(
        f"[bold green]{outcome.mode} v{outcome.stopped} stopped[/]: champion "
        f"v{outcome.after['champion']} answers alone (revision {outcome.revision})"
    )
    for line in outcome.aliases:
        out.print(f"  MLflow {escape(line)}")


def _end_holdout(spec: Path, reason: str | None, as_json: bool) -> None:
    from shipyard import promotion
    from shipyard.spec import load_spec
    from shipyard.workspace import Workspace

    with _errors(as_json):
        outcome = promotion.end_holdout(Workspace.of(load_spec(spec)), reason=reason)
    if as_json:
        _emit_json(outcome.to_dict())
        return
    out.print(
        f"[bold green]holdout v{outcome.ended} ended[/]: champion v{outcome.after['champion']} "
        f"answers its {outcome.percent:g}% of entities (revision {outcome.revision})"
    )


@app.command(cls=_Command)
def labels(
    source: Annotated[Path, typer.Argument(metavar="FILE", help="CSV or Parquet file of labels.")],
    spec: SpecOption = Path("shipyard.toml"),
    as_json: JsonOption = False,
) -> None:
    """Ingest delayed labels (by request_id, or entity id + time); idempotent."""
    with _errors(as_json):
        result = Project.load(spec).labels(source)
    if as_json:
        _emit_json(result.to_dict())
        return
    out.print(
        f"{result.rows:,} rows: {result.added:,} added, {result.replaced:,} replaced, "
        f"{result.unchanged:,} unchanged; {result.matched:,} matched and "
        f"{result.unmatched:,} unmatched in the prediction log; {result.stored:,} stored"
    )
    for warning in result.warnings:
        out.print(f"[yellow]warning[/]: {escape(warning)}")


LEVEL_STYLE = {"alert": "bold red", "warn": "yellow"}


def print_monitor(result: Any, console: Console = out) -> None:
    """The alerts of a monitor run as a table, most severe first; then its warnings."""
    from shipyard.monitoring.monitor import iso

    console.print(
        f"monitored {result.rows_read:,} logged rows in {result.files} file(s): "
        f"{result.windows} window(s) of {result.window}, version(s) "
        f"{', '.join(map(str, result.versions))}; {len(result.rows):,} results kept"
    )
    if result.alerts:
        table = RichTable(show_edge=False, pad_edge=False)
        for name in ("level", "window", "version", "arm", "section", "column", "statistic"):
            table.add_column(name)
        table.add_column("value", justify="right")
        table.add_column("why")
        for a in result.alerts:
            start = iso(a["window_start"]) or ""
            table.add_row(
                f"[{LEVEL_STYLE[a['level']]}]{a['level']}[/]",
                start,
                "" if a["model_version"] is None else str(a["model_version"]),
                escape(a["arm"]),
                a["section"],
                escape(a["column"]),
                a["statistic"],
                _fmt(a["value"]),
                escape(a["note"]),
            )
        console.print(table)
    counts = {level: sum(a["level"] == level for a in result.alerts) for level in ("alert", "warn")}
    style = "bold red" if counts["alert"] else "bold green"
    console.print(f"[{style}]{counts['alert']} alert(s)[/], {counts['warn']} warning(s)")
    for warning in result.warnings:
        console.print(f"[yellow]warning[/]: {escape(warning)}")
    if result.report:
        console.print(f"report: {escape(result.report)}")


@app.command(cls=_Command)
def monitor(
    since: Annotated[
        str | None, typer.Option(help="From this UTC date or time (ISO 8601), included.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Until this UTC date or time (ISO 8601), excluded.")
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(help="1h, 1d, 7d, 1mo or 'N rows' (default: [monitoring] window)."),
    ] = None,
    clock: Annotated[
        str | None,
        typer.Option(
            help="Windows by when the service answered ('logged') or by each request's own "
            "[project] time ('event'); default: [monitoring] clock."
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Only this version (default: every one).")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Also write an HTML report here.")
    ] = None,
    offline: Annotated[
        Path | None,
        typer.Option("--offline", help="Features an offline pipeline computed (skew)."),
    ] = None,
    engine: Annotated[
        str, typer.Option(help="local, or ray (Ray Data; the 'ray' extra): the same results.")
    ] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="A Ray cluster's address (default: a local instance).")
    ] = None,
    retrain: Annotated[
        bool,
        typer.Option(
            "--retrain",
            help="Then retrain when a [retrain] when trigger holds (exit code: the retrain's).",
        ),
    ] = False,
    spec: SpecOption = Path("shipyard.toml"),
    as_json: JsonOption = False,
) -> None:
    """Drift, live data quality and system metrics over the prediction log; exit 1 on alert.
    With --retrain, a retrain follows when [retrain] when says it is due."""
    with _errors(as_json):
        project = Project.load(spec)
        result = project.monitor(
            since=since,
            until=until,
            window=window,
            model=model,
            report=report,
            offline=offline,
            clock=clock,
            engine=engine,
            ray_address=ray_address,
        )
    if not retrain:
        if as_json:
            _emit_json(result.to_dict())
        else:
            print_monitor(result)
        raise typer.Exit(result.exit_code)
    if not as_json:
        print_monitor(result)
    alerts = sum(a["level"] == "alert" for a in result.alerts)
    document: dict[str, Any] = {"monitor": result.to_dict(), "retrain_due": [], "retrain": None}
    try:
        with _errors(), _progress("retrain") as update:
            reasons = document["retrain_due"] = project.retrain_due(alerts)
            if not reasons:
                when = ", ".join(project.spec.retrain.when) or "nothing ([retrain] when is empty)"
                if not as_json:
                    out.print(f"no retrain: no trigger holds (retraining on: {escape(when)})")
            else:
                if not as_json:
                    out.print("retraining because " + escape("; ".join(reasons)))
                retrained = project.retrain(progress=update, on_round=update.rounds)
                document["retrain"] = retrained.to_dict()
    except typer.Exit as refused:  # the message is on stderr; the document says it too
        if as_json:
            _emit_json({**document, "exit_code": refused.exit_code})
        raise
    code = result.exit_code if document["retrain"] is None else retrained.exit_code
    if as_json:
        _emit_json({**document, "exit_code": code})
    elif document["retrain"] is not None:
        print_retrain(retrained)
    raise typer.Exit(code)


@app.command(cls=_Command)
def retrain(
    since: Annotated[
        str | None,
        typer.Option(help="Add the answers from this UTC date or time (ISO 8601) on."),
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(
            help="Add the newest span of answers, 12h or 90d (default: [retrain] window)."
        ),
    ] = None,
    allow_stale: Annotated[
        bool,
        typer.Option(
            "--allow-stale", help="Retrain although the freshness guard refuses (needs --reason)."
        ),
    ] = False,
    reason: Annotated[
        str | None, typer.Option(help="Why the stale data is used (recorded in the run).")
    ] = None,
    spec: SpecOption = Path("shipyard.toml"),
    as_json: JsonOption = False,
) -> None:
    """Retrain from scratch on the spec's data plus labeled served records, refusing stale
    data; the new version enters as the shadow challenger (exit 1 when refused or gated)."""
    with _errors(as_json):
        project = Project.load(spec)
        cleaned = _tidy(project)
        with _progress("retrain") as update:
            result = project.retrain(
                since=since,
                window=window,
                allow_stale=allow_stale,
                reason=reason,
                progress=update,
                on_round=update.rounds,
            )
    if as_json:
        _emit_json({**result.to_dict(), "cleaned_up": cleaned})
    else:
        print_retrain(result)
    raise typer.Exit(result.exit_code)


def print_retrain(result: Any, console: Console = out) -> None:
    """The training, the rows the log added, the freshness and where the version went."""
    print_train(result.train, console)
    age = result.newest_label_age_days
    console.print(
        f"trained on {result.data_rows:,} rows of the data file + {result.added_rows:,} "
        f"labeled production records (window {escape(result.window)}: "
        f"{escape(str(result.window_start))} to {escape(str(result.window_end))}; "
        f"{result.labeled_share:.1%} of {result.answered:,} answers labeled, the newest "
        f"{age:,.1f} days old)"
    )
    for warning in result.warnings:
        console.print(f"[yellow]warning[/]: {escape(warning)}")
    version = result.train.version
    if result.promoted is not None:
        console.print(f"[bold green]version {version} is now the shadow challenger[/]")
    else:
        console.print(
            f"[bold red]version {version} is registered but not promoted to shadow[/]; failed:"
        )
        for failure in result.failures:
            console.print(f"  - {escape(failure)}")


#: verdicts that exit 1: the experiment found a problem
EXPERIMENT_PROBLEMS = ("stop: harm", "blocked: sample ratio mismatch")


@app.command(cls=_Command)
def experiment(
    metric: Annotated[
        str,
        typer.Option(help="'outcome' (the label as a number) or a numeric prediction-log field."),
    ] = "outcome",
    arms: Annotated[
        str, typer.Option(help="The control arm and the treatment arm, comma-separated.")
    ] = "champion,canary",
    alpha: Annotated[float, typer.Option(help="The false-positive rate to hold.")] = 0.05,
    mde: Annotated[
        float | None,
        typer.Option(help="Minimum detectable lift, absolute (default 0.02 for a rate)."),
    ] = None,
    percent: Annotated[
        float | None,
        typer.Option(help="The treatment's configured share in % (default: the canary's)."),
    ] = None,
    lower_is_better: Annotated[
        bool, typer.Option("--lower-is-better", help="A lower outcome is the better one.")
    ] = False,
    spec: SpecOption = Path("shipyard.toml"),
    as_json: JsonOption = False,
) -> None:
    """The online verdict, champion against canary: launch, keep running or stop; exit 1 on
    harm or a sample-ratio mismatch."""
    with _errors(as_json):
        names = tuple(a.strip() for a in arms.split(","))
        if len(names) != 2 or not all(names) or names[0] == names[1]:
            raise UsageError(f"--arms takes two different arm names, comma-separated; got '{arms}'")
        result = Project.load(spec).experiment(
            metric=metric,
            arms=(names[0], names[1]),
            alpha=alpha,
            mde=mde,
            percent=percent,
            higher_is_better=not lower_is_better,
        )
    if as_json:
        _emit_json(result.to_dict())
    else:
        print_experiment(result)
    raise typer.Exit(1 if result.verdict in EXPERIMENT_PROBLEMS else 0)


def print_experiment(result: Any, console: Console = out) -> None:
    """Per arm, the fixed-horizon and always-valid lift, the sample-ratio check, the verdict."""
    table = RichTable(show_edge=False, pad_edge=False)
    for name in ("arm", "n", "rate" if result.kind == "proportion" else "mean"):
        table.add_column(name, justify="right" if name != "arm" else "left")
    for arm in (result.control, result.treatment):
        table.add_row(escape(arm.name), f"{arm.n:,}", _fmt(arm.mean))
    console.print(table)
    fixed, sequential = result.fixed, result.sequential
    console.print(
        f"lift {fixed.lift:+.4f}; fixed-horizon {fixed.test}: p = {fixed.p_value:.3g}, "
        f"{1 - result.alpha:.0%} CI [{fixed.ci[0]:+.4f}, {fixed.ci[1]:+.4f}], power "
        f"{fixed.power:.0%} against MDE {result.mde:g} ({fixed.required_per_arm:,} per arm needed)"
    )
    console.print(
        f"always-valid mSPRT: p = {sequential.p_value:.3g}, confidence sequence "
        f"[{sequential.ci[0]:+.4f}, {sequential.ci[1]:+.4f}] over {sequential.peeks} peeks"
    )
    console.print(
        f"sample ratio: {result.srm.counts[0]:,} / {result.srm.counts[1]:,} against "
        f"{result.srm.expected_share[0]:.0%} / {result.srm.expected_share[1]:.0%}, "
        f"p = {result.srm.p_value:.3g}"
    )
    style = "bold green" if result.verdict == "launch" else "bold red"
    if result.verdict not in EXPERIMENT_PROBLEMS and result.verdict != "launch":
        style = "yellow"
    console.print(f"[{style}]{result.verdict}[/] (acting on the {result.acting_on})")
    console.print(escape(result.reason))


@app.command(cls=_Command)
def rollback(
    reason: Annotated[str | None, typer.Option(help="Why, recorded in the history.")] = None,
    spec: SpecOption = Path("shipyard.toml"),
    as_json: JsonOption = False,
) -> None:
    """The champion goes back to the previous champion; the current one is marked."""
    from shipyard import promotion
    from shipyard.spec import load_spec
    from shipyard.workspace import Workspace

    with _errors(as_json), _progress("rollback") as update:
        workspace = Workspace.of(load_spec(spec))
        outcome = promotion.rollback(workspace, reason=reason, progress=update, mirror="background")
    if as_json:
        _emit_json(outcome.to_dict())
        return
    out.print(
        f"[bold green]champion is v{outcome.after['champion']}[/] again (v"
        f"{outcome.rolled_back} rolled back; revision {outcome.revision}, committed in "
        f"{outcome.committed_seconds * 1000:.1f} ms)"
    )
    for line in outcome.aliases:
        out.print(f"  MLflow {escape(line)}")


@app.command(cls=_Command)
def predict(
    source: Annotated[
        Path, typer.Argument(metavar="IN", help="CSV or Parquet file, or a folder of Parquet.")
    ],
    output: Annotated[
        Path, typer.Argument(metavar="OUT", help="Output Parquet file (written atomically).")
    ],
    model: Annotated[
        str, typer.Option("--model", help="champion, challenger, or a version number.")
    ] = "champion",
    engine: Annotated[str, typer.Option(help="local, or ray (Ray Data; the 'ray' extra).")] = (
        "local"
    ),
    keep: Annotated[
        list[str] | None, typer.Option("--keep", help="Pass-through column (repeatable).")
    ] = None,
    chunk_rows: Annotated[int | None, typer.Option(help="Rows per chunk (memory bound).")] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="A Ray cluster's address (default: a local instance).")
    ] = None,
    spec: SpecOption = Path("shipyard.toml"),
    as_json: JsonOption = False,
) -> None:
    """Score a file of any size in chunks; rows breaking the contract go to a side file."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with _errors(as_json):
        project = Project.load(spec)
        _tidy(project)
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            disable=as_json,
            transient=True,
        ) as bar:
            task = bar.add_task(f"scoring {source.name}", total=None)
            result = project.predict(
                source,
                output,
                model=model,
                engine=engine,
                keep=keep or [],
                chunk_rows=chunk_rows,
                ray_address=ray_address,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    if as_json:
        _emit_json(result.to_dict())
        return
    out.print(
        f"[bold green]scored {result.scored:,} of {result.rows:,} rows[/] with version "
        f"{result.version} ({result.engine}, {result.seconds:.1f} s, "
        f"{result.rows / max(result.seconds, 1e-9):,.0f} rows/s) → {escape(str(result.output))}"
    )
    out.print(f"columns: {', '.join(result.columns)}; input snapshot {result.snapshot_id[:12]}")
    if result.problems_file is not None:
        reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(result.problems.items()))
        out.print(
            f"[yellow]rows breaking the contract[/]: {reasons}; {result.not_scored:,} not scored "
            f"(prediction null). Listed with reasons in {escape(str(result.problems_file))}"
        )


@app.command(cls=_Command)
def reproduce(
    run_id: Annotated[
        str,
        typer.Argument(
            metavar="RUN", help="A run id, or a unique prefix of one (see `shipyard runs`)."
        ),
    ],
    spec: SpecOption = Path("shipyard.toml"),
    as_json: JsonOption = False,
) -> None:
    """Re-run a tracked run from its snapshot, spec and seeds; verify metrics and predictions."""
    with _errors(as_json):
        project = Project.load(spec)
        _tidy(project)
        with _progress("reproduce") as update:
            outcome = project.reproduce(run_id, progress=update, on_round=update.rounds)
    if as_json:
        _emit_json(outcome.to_dict())
    else:
        for name, item in outcome.metrics.items():
            mark = "[green]same[/]" if item["same"] else "[bold red]DIFFERENT[/]"
            out.print(f"{name:<24} recorded {item['recorded']:.6f}  now {item['now']:.6f}  {mark}")
        out.print(
            f"test predictions: {outcome.test_rows:,} rows, max difference "
            f"{_fmt(outcome.max_prediction_diff, 3)}"
        )
        out.print(
            "[bold green]reproduced exactly[/]"
            if outcome.identical
            else "[bold red]not reproduced[/]: see the differences above"
        )
    raise typer.Exit(0 if outcome.identical else 1)


@app.command(cls=_Command)
def demo(
    workdir: Annotated[
        Path | None,
        typer.Option(help="Folder for the demo project (default: a new temporary folder)."),
    ] = None,
    sample: Annotated[
        int,
        typer.Option(min=1, help="Keep every N-th flight (1: all 336,776; 3 runs ~3x faster)."),
    ] = 1,
    as_json: JsonOption = False,
) -> None:
    """The whole loop on bundled NYC flights: check, train, promote, serve, labels, monitor,
    retrain, shadow, canary with the experiment's verdict, champion."""
    from shipyard.demo import run_demo

    with _errors(as_json):
        folder = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="shipyard-demo-"))
        with _progress("demo") as update:
            outcome = run_demo(folder, progress=update, sample=sample)
    if as_json:
        _emit_json(outcome.to_dict())
        return
    out.print(f"[bold]shipyard demo[/]: the whole loop on NYC flights 2013, in {folder}")
    out.print("\n$ shipyard init flights_jan_apr.parquet --target arr_delayed\n$ shipyard check")
    print_check(outcome.check)
    out.print(
        f"\nexcluding what the check flagged: {', '.join(outcome.excluded)}; "
        f"baseline rule: {outcome.rule!r}\n$ shipyard train"
    )
    print_train(outcome.train)
    table = RichTable(title="served months: drift before labels, the metric once they arrive")
    for name in ("month", "delay rate", "mean score", "PSI", "estimated AUC", "realized AUC"):
        table.add_column(name, justify="right")
    table.add_column("alerts")
    for month, m in outcome.months.items():
        table.add_row(
            month,
            _fmt(m.get("delay_rate"), 3),
            _fmt(m.get("mean_prediction"), 3),
            _fmt(m.get("psi"), 3),
            _fmt(m.get("estimated_auc"), 3),
            _fmt(m.get("realized_auc"), 3),
            escape(", ".join(sorted(set(m.get("alerts", []))))[:60]),
        )
    out.print(table)
    stages = RichTable(title="the loop, stage by stage")
    for name in ("stage", "seconds", "what it stands for", "found"):
        stages.add_column(name)
    for stage in outcome.stages:
        found = ", ".join(
            f"{k}={v}" for k, v in stage.found.items() if not isinstance(v, dict | list)
        )
        stages.add_row(
            stage.name, f"{stage.seconds:.1f}", escape(stage.command), escape(found[:90])
        )
    out.print(stages)
    final = outcome.final
    verdict = outcome.experiment
    said = (
        f"[bold]{verdict.verdict}[/] ({escape(verdict.reason)})"
        if verdict is not None
        else f"none: {escape(str(outcome.stages[-2].found.get('stopped')))}"
    )
    out.print(
        f"\nexperiment: {said}"
        f"\nchampion now: v{final['champion']}; the whole loop took {outcome.seconds:.0f} s"
        f"\n\nReports (open in a browser, no network needed):"
        f"\n  monitoring: {outcome.reports['monitor']}\n  model:      {outcome.reports['model']}"
        f"\nSee every run in the MLflow UI (with the virtual environment active):\n  cd {folder} && "
        f"mlflow ui --backend-store-uri {outcome.tracking_uri} --port 5000\n"
        "then open http://127.0.0.1:5000"
    )


def _version(value: bool) -> None:
    if value:
        out.print(f"shipyard {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """shipyard: from a data file to a model in production, the disciplined way."""


@app.command(cls=_Command)
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (each loads the models).")] = 1,
    spec: SpecOption = Path("shipyard.toml"),
) -> None:
    """The online service: the champion answers, a challenger shadows or takes a canary share;
    every answer is logged under .shipyard/logs/. Admin routes need SHIPYARD_ADMIN_TOKEN."""
    import os

    from shipyard.spec import load_spec

    if workers < 1:
        _fail("--workers must be 1 or more", 2)
    with _errors():
        loaded = load_spec(spec)
        from shipyard.serving.app import build

        build(spec, log=False)[1].router.close()  # refuse now, clearly, what workers would fail on
    os.environ["SHIPYARD_SPEC"] = str(Path(spec).resolve())
    import uvicorn

    from shipyard.serving.connection import server_options

    err.print(
        f"serving '{loaded.project.name}' on http://{host}:{port} ({workers} worker(s)); "
        "Ctrl-C stops"
    )
    uvicorn.run(
        "shipyard.serving.app:from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
        **server_options(loaded.serving),  # read timeouts, idle timeout, connection limit
    )


#: set by a command whose work is all written and closed: the process then ends without
#: the interpreter's teardown (after `train`, freeing the data's millions of objects one by
#: one took 0.3 s on flights' 336,776 rows; nothing is left to flush but stdout and stderr)
_END_AT_ONCE: list[bool] = []


def main() -> None:
    try:
        app()
    except SystemExit as end:
        if not _END_AT_ONCE:
            raise
        code = end.code if isinstance(end.code, int) else int(end.code is not None)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
