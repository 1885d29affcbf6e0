"""The ``shipyard`` command line: a thin layer over :class:`shipyard.project.Project`.

Every command takes ``--spec PATH`` and ``--json``. Exit codes: 0 success, 1 a check found
an error-level problem, 2 a usage or input error (one clear message, no traceback).
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table as RichTable

from shipyard import __version__
from shipyard.errors import ShipyardError
from shipyard.project import CheckReport, Project

app = typer.Typer(
    name="shipyard",
    help="Take a tabular model from a data file to production and keep it healthy there.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)

SpecOption = Annotated[Path, typer.Option("--spec", help="Path to shipyard.toml.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def _fail(message: str, code: int) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


@contextmanager
def _errors():
    """Turn shipyard's errors (and OS errors) into one message and the right exit code."""
    try:
        yield
    except ShipyardError as exc:
        _fail(str(exc), exc.exit_code)
    except OSError as exc:
        _fail(f"{exc.strerror or exc}: '{exc.filename}'" if exc.filename else str(exc), 2)
    except KeyboardInterrupt:
        _fail("interrupted", 130)


def _progress(quiet: bool) -> tuple[Callable[[str], None], Callable[[], None]]:
    if quiet:
        return (lambda _: None), (lambda: None)
    status = err.status("starting")
    status.start()
    return (lambda stage: status.update(f"{stage}…")), status.stop


def _emit_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")


def print_check(report: CheckReport, console: Console = out) -> None:
    """The human form of a check report: findings by severity, then the split plan."""
    console.print(
        f"[bold]shipyard check[/] {escape(report.data)}  "
        f"({report.rows:,} rows × {report.columns} columns, "
        f"snapshot {report.snapshot_id[:12]}, contract {report.contract_source})"
    )
    for f in report.findings:
        style = SEVERITY_STYLE[f.severity]
        cols = f"  [bold]{escape(f.column)}[/]" if f.column else ""
        console.print(f"[{style}]{f.severity.upper():<7}[/] {f.check}/{f.code}{cols}")
        console.print(Padding(f"{escape(f.message)}\n[dim]→ {escape(f.action)}[/]", (0, 0, 0, 8)))
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


@app.command()
def init(
    data: Annotated[Path, typer.Argument(help="CSV or Parquet file (or folder of Parquet files).")],
    target: Annotated[str, typer.Option("--target", help="The column to predict.")],
    task: Annotated[
        str | None, typer.Option(help="binary, multiclass or regression (inferred).")
    ] = None,
    spec: SpecOption = Path("shipyard.toml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing spec.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Write a commented shipyard.toml inferred from DATA."""
    with _errors():
        _, inferred = Project.init(data, target, spec, task=task, force=force)
    summary = {
        "spec": str(spec),
        "task": inferred.task,
        "target": inferred.target,
        "positive": None if inferred.positive is None else str(inferred.positive),
        "id": inferred.id,
        "time": inferred.time,
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
    if inferred.exclude:
        out.print("  excluded: " + ", ".join(f"{c} ({why})" for c, why in inferred.exclude.items()))
    out.print("Read and edit it, then run [bold]shipyard check[/].")


@app.command()
def check(
    data: Annotated[
        Path | None, typer.Argument(help="Data to check (default: project.data).")
    ] = None,
    spec: SpecOption = Path("shipyard.toml"),
    as_json: JsonOption = False,
) -> None:
    """Contract, data quality and leakage audit; findings sorted by severity."""
    with _errors():
        project = Project.load(spec)
        update, stop = _progress(as_json)
        try:
            report = project.check(data, progress=update)
        finally:
            stop()
    if as_json:
        _emit_json(report.to_dict())
    else:
        print_check(report)
    raise typer.Exit(report.exit_code)


@app.command()
def demo(
    workdir: Annotated[
        Path | None,
        typer.Option(help="Folder for the demo project (default: a new temporary folder)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """The loop so far on NYC flights (bundled): init, then check, in a fresh folder."""
    from shipyard.demo import flights_frame

    with _errors():
        folder = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="shipyard-demo-"))
        folder.mkdir(parents=True, exist_ok=True)
        data = folder / "flights.csv"
        update, stop = _progress(as_json)
        try:
            update("writing NYC flights (336,776 rows) with target arr_delayed = arr_delay > 15")
            flights_frame().to_csv(data, index=False)
            update("shipyard init")
            _, inferred = Project.init(data, "arr_delayed", folder / "shipyard.toml", force=True)
            project = Project.load(folder / "shipyard.toml")
            report = project.check(progress=update)
        finally:
            stop()
    if as_json:
        _emit_json({"folder": str(folder), "check": report.to_dict()})
        return
    out.print(
        f"[bold]shipyard demo[/] in {folder}\n"
        f"$ shipyard init flights.csv --target arr_delayed   (id: {inferred.id}, "
        f"time: {inferred.time})\n$ shipyard check"
    )
    print_check(report)
    out.print(
        f"\nThe project is in {folder}: edit shipyard.toml there and run "
        f"`shipyard check --spec {folder / 'shipyard.toml'}` again."
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


def main() -> None:
    app()
