"""One ``shipyard monitor`` run: the log scanned, every rule applied, the results kept,
the alerts raised.

:func:`monitor` is what :meth:`Project.monitor <shipyard.project.Project.monitor>` and the
command line call. It reads the prediction log window by window
(:func:`~shipyard.monitoring.monitor.scan`), compares each window of each answering version
and arm with that version's reference (:mod:`shipyard.monitoring.alerts` holds the rules),
adds the workspace-level rows (volume, staleness), the performance rows once per window,
version and arm (``performance.rows``) and the skew rows of ``--offline`` (``skew.rows``),
keeps every row in the workspace
(:func:`~shipyard.monitoring.results.write_results`), and posts the alerts to
``[monitoring] webhook`` when one is set. It never writes to the log or the labels.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shipyard.errors import DataError, DeploymentError, ReferenceMissing, ShipyardError, UsageError
from shipyard.monitoring import alerts as rules
from shipyard.monitoring.days import DayStore, days_folder, scan_days
from shipyard.monitoring.monitor import (
    US,
    Answering,
    Group,
    Scan,
    Window,
    agreement,
    answers,
    iso,
    parse_time,
    parse_window,
    segments,
)
from shipyard.monitoring.results import COLUMNS, to_frame, write_results
from shipyard.monitoring.summary import CategoricalSummary, NumericSummary
from shipyard.monitoring.table import result_row

if TYPE_CHECKING:
    import pandas as pd

    from shipyard.spec import Spec
    from shipyard.workspace import Workspace

#: the arms that answered users (a shadow copies them; a holdout is the previous champion)
SERVING_ARMS = ("champion", "canary", "holdout")


@dataclass
class WindowContext:
    """What ``performance.rows`` is given for one window of one version and arm."""

    start_us: int
    end_us: int
    version: int
    arm: str
    request_ids: np.ndarray  # the window's logged requests, in log order
    scores: np.ndarray  # their scores, one column per name in ``score_columns``
    score_columns: list[str]
    reference: Any  # the version's Reference (test metrics, calibration curve)
    labels: Any  # pa.Table of read_labels(workspace)
    drifted: bool  # a feature of this window raised a drift alert (CBPE's assumption fails)
    spec: Spec
    workspace: Workspace
    # aligned with request_ids: the [features] slices and sensitive columns' values, and
    # whether any input of the row lay outside the reference's support
    features: pd.DataFrame | None = None
    outside: np.ndarray | None = None
    test_slices: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # Answering's


@dataclass
class RunContext:
    """What ``skew.rows`` is given: the run's scope and the log files it read."""

    since_us: int | None
    until_us: int | None
    model: int | None
    files: list[Path]
    spec: Spec
    workspace: Workspace


@dataclass
class MonitorResult:
    """What one ``monitor`` run computed: the rows, the alerts, the warnings."""

    window: str
    since: str | None
    until: str | None
    files: int
    rows_read: int
    days_kept: int  # closed days taken from the kept day summaries, not read again
    windows: int
    versions: list[int]
    rows: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    results: list[str] = field(default_factory=list)  # the Parquet files written
    report: str | None = None
    webhook: str | None = None  # "sent", or "failed"; None when nothing was posted
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """1 when any alert fired, else 0."""
        return 1 if any(a["level"] == "alert" for a in self.alerts) else 0

    def frame(self) -> pd.DataFrame:
        """The rows as the results table (:data:`~shipyard.monitoring.results.COLUMNS`)."""
        return to_frame(self.rows)

    def to_dict(self) -> dict[str, Any]:
        def plain(r: Mapping[str, Any]) -> dict[str, Any]:
            out = {c: r.get(c) for c in COLUMNS}
            out["window_start"], out["window_end"] = iso(r["window_start"]), iso(r["window_end"])
            for key in ("value", "lower", "upper", "pvalue"):
                value = out[key]
                out[key] = None if value is None or not np.isfinite(value) else float(value)
            return out

        return {
            "window": self.window,
            "since": self.since,
            "until": self.until,
            "files": self.files,
            "rows_read": self.rows_read,
            "days_kept": self.days_kept,
            "windows": self.windows,
            "versions": self.versions,
            "counts": {
                level: sum(a["level"] == level for a in self.alerts) for level in ("alert", "warn")
            },
            "alerts": [plain(a) for a in self.alerts],
            "warnings": self.warnings,
            "results": self.results,
            "report": self.report,
            "webhook": self.webhook,
            "seconds": self.seconds,
            "exit_code": self.exit_code,
            "rows": [plain(r) for r in self.rows],
        }


def monitor(
    spec: Spec,
    workspace: Workspace,
    *,
    since: str | None = None,
    until: str | None = None,
    window: str | None = None,
    model: str | int | None = None,
    report: Path | str | None = None,
    offline: Path | str | None = None,
    clock: str | None = None,
    now: float | None = None,
    engine: str = "local",
    ray_address: str | None = None,
) -> MonitorResult:
    """Monitor the prediction log between ``since`` and ``until`` (ISO dates or times,
    UTC when naive; ``until`` excluded) in windows of ``window`` (default
    ``[monitoring] window``), for every version in the log or only ``model``; the log read
    in this process (``engine="local"``) or on Ray Data (``"ray"``: a local instance, or
    the cluster at ``ray_address``; :mod:`shipyard.monitoring.distributed`), with the
    same results.

    Raises
    ------
    UsageError
        An unparsable window or time, ``since`` not before ``until``, ``--report`` or
        ``--offline`` without the module that does it, an unknown engine, or
        ``ray_address`` without ``engine="ray"``.
    DataError
        No log, or no logged prediction in the range (nothing to compute).
    DeploymentError
        No champion and no ``model``.
    ReferenceMissing
        No answering version has reference statistics (retrain).
    ShipyardError
        ``engine="ray"`` without Ray Data installed, or Ray cannot be started or reached.
    """
    started = time.perf_counter()
    settings = spec.monitoring
    shape = parse_window(window or settings.window)
    since_us, until_us = parse_time(since, "--since"), parse_time(until, "--until")
    if since_us is not None and until_us is not None and since_us >= until_us:
        raise UsageError(f"--since {since} is not before --until {until}: swap them.")
    _engine(engine, ray_address)
    version = _version(workspace, model)
    from shipyard.serving.log import PREFIX, log_files

    event = _event_column(spec, clock or settings.clock)
    if event is None:  # the log's day partitions bound what is read
        files = log_files(workspace.logs, since=_day(since_us), until=_day(until_us, end=True))
    else:  # a request's own time is not its file's day
        files = log_files(workspace.logs)
    if not files:
        raise DataError(
            f"no logged predictions{_range(since, until)}: the prediction log "
            f"{workspace.logs} holds no file there; serve traffic first (`shipyard serve`), "
            "or widen --since/--until."
        )
    loader, store = _day_store(spec, workspace)
    reading: dict[str, Any] = {
        "since_us": since_us,
        "until_us": until_us,
        "model": version,
        "clock": None if event is None else PREFIX + event,
    }
    if engine == "ray":
        from shipyard.monitoring.distributed import scan_ray

        found = scan_ray(
            files, loader.path, shape, address=ray_address, slices=loader.slices, **reading
        )
    else:
        found = scan_days(
            files,
            loader,
            shape,
            store,
            today=dt.datetime.fromtimestamp(time.time() if now is None else now, dt.UTC).date(),
            **reading,
        )
    warnings = [*found.skipped, *loader.warnings]
    if found.without_clock:
        warnings.append(
            f"{found.without_clock:,} logged rows have no '{event}' (the event clock) and "
            "were left out."
        )
    if found.rows == 0:
        raise DataError(
            f"no logged predictions{_range(since, until)}"
            + (f" of version {version}" if version is not None else "")
            + f" in {found.files} log file(s) of {workspace.logs}; widen --since/--until"
            + (f" ({len(found.skipped)} file(s) skipped as unreadable)" if found.skipped else "")
            + "."
        )
    if not found.groups:
        if loader.missing:
            raise loader.missing[0]
        raise DataError(
            f"none of the {found.rows:,} logged rows came from a version with a bundle."
        )
    for skipped, count in sorted(found.versions_without_bundle.items()):
        warnings.append(f"{count:,} rows of version {skipped} were skipped: {loader.why[skipped]}")
    if now is None and event is not None:  # on the event clock, now is the newest event
        now_us = max(g.last_us for g in found.groups.values()) + 1
    else:
        now_us = round((time.time() if now is None else now) * US)
    rows, bounds = _group_rows(found, shape, loader, spec, workspace, now_us)
    rows += _workspace_rows(found, shape, bounds, settings, workspace, until_us or now_us)
    if offline is not None:
        context = RunContext(since_us, until_us, version, list(files), spec, workspace)
        scope = (min(b[0] for b in bounds.values()), max(b[1] for b in bounds.values()))
        from shipyard.monitoring import skew

        rows += _stamped(skew.rows(Path(offline), context), scope)
    frame = to_frame(rows)
    written = write_results(workspace, frame)
    fired = rules.alerts(rows)
    result = MonitorResult(
        window=shape.text,
        since=since,
        until=until,
        files=found.files,
        rows_read=found.rows,
        days_kept=found.days_kept,
        windows=len({(r["window_start"], r["window_end"]) for r in rows}),
        versions=sorted({g.version for g in found.groups.values()}),
        rows=rows,
        alerts=fired,
        warnings=warnings,
        results=[str(p) for p in written],
    )
    if settings.webhook and fired:
        document = {"project": spec.project.name, **result.to_dict()}
        document.pop("rows")
        problem = rules.send(settings.webhook, document, settings.webhook_timeout_seconds)
        result.webhook = "failed" if problem else "sent"
        if problem:
            warnings.append(problem)
    if report is not None:
        meta = {k: v for k, v in result.to_dict().items() if k not in ("rows", "alerts")}
        from shipyard.monitoring.report import write_report

        path = write_report(Path(report), frame, meta)
        result.report = str(path)
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def _version(workspace: Workspace, model: str | int | None) -> int | None:
    """The version ``--model`` names (None: every version), after checking that something
    is deployed when none is named."""
    from shipyard.workspace import parse_selector

    if model is None:
        if workspace.registry.state().champion is None:
            raise DeploymentError(
                f"'{workspace.model}' has no champion, so there is nothing deployed to "
                "monitor: promote a version (`shipyard promote VERSION --to champion`), or "
                "name one with --model VERSION."
            )
        return None
    selected = parse_selector(model, workspace.model)
    if isinstance(selected, str):
        return workspace.bundle(selected).number
    return selected


def _engine(engine: str, ray_address: str | None) -> None:
    from shipyard.cluster import ENGINES

    if engine not in ENGINES:
        raise UsageError(
            f"--engine {engine!r} is not an engine: give 'local' (this process) or 'ray' "
            "(Ray Data, the 'ray' extra)."
        )
    if ray_address is not None and engine != "ray":
        raise UsageError(
            f"--ray-address {ray_address!r} names a Ray cluster, which only --engine ray "
            "uses: add --engine ray, or leave the address out."
        )


def _day(micros: int | None, end: bool = False) -> dt.date | None:
    if micros is None:
        return None
    if end:
        micros -= 1  # until is excluded
    return (dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros)).date()


def _day_store(spec: Spec, workspace: Workspace) -> tuple[_Loader, DayStore]:
    """The versions' loader and the kept days of ``monitor`` runs of this spec (the slice
    columns kept per answer are part of a kept day's key)."""
    loader = _Loader(workspace, [*spec.features.slices, *spec.features.sensitive])
    return loader, DayStore(days_folder(workspace), salt=",".join(loader.slices))


def keep_days(spec: Spec, workspace: Workspace, *, now: float | None = None) -> int:
    """Keep the summaries of every closed day of the prediction log that is not kept yet
    (:func:`~shipyard.monitoring.days.keep_closed_days`), as ``monitor`` would keep them
    after reading the day: the online service calls this after each compaction, so
    ``monitor`` reads closed days from their summaries, never their rows. Nothing is kept
    when windows follow the event clock (a request's own time is not its file's day)."""
    from shipyard.monitoring.days import keep_closed_days
    from shipyard.serving.log import log_files

    if spec.monitoring.clock != "logged":
        return 0
    loader, store = _day_store(spec, workspace)
    today = dt.datetime.fromtimestamp(time.time() if now is None else now, dt.UTC).date()
    return keep_closed_days(log_files(workspace.logs), loader, store, today=today)


def _range(since: str | None, until: str | None) -> str:
    return "".join([f" from {since}" if since else "", f" until {until}" if until else ""])


class _Loader:
    """Each answering version's bundle, loaded once; a version whose bundle cannot be
    found or has no reference is skipped with its reason."""

    def __init__(self, workspace: Workspace, slices: list[str]) -> None:
        self.workspace = workspace
        self.slices = slices
        self.loaded: dict[int, Answering | None] = {}
        self.paths: dict[int, Path] = {}
        self.why: dict[int, str] = {}
        self.missing: list[ReferenceMissing] = []
        self.warnings: list[str] = []

    def __call__(self, version: int) -> Answering | None:
        if version not in self.loaded:
            try:
                located = self.workspace.bundle(version)
                self.loaded[version] = Answering.load(version, located.path, self.slices)
                self.paths[version] = located.path
            except ReferenceMissing as exc:
                self.missing.append(exc)
                self.loaded[version], self.why[version] = None, str(exc)
            except ShipyardError as exc:
                self.loaded[version], self.why[version] = None, str(exc)
        return self.loaded[version]

    def path(self, version: int) -> Path | None:
        """The bundle folder of an answering version (loaded here first, so that a
        version without one is skipped with its reason), or None."""
        return self.paths[version] if self(version) is not None else None


def _event_column(spec: Spec, clock: str) -> str | None:
    """The feature whose value is a request's own time (``clock = "event"``), or None."""
    if clock == "logged":
        return None
    if clock != "event":
        raise UsageError(f"--clock {clock!r} is not a clock: give 'logged' or 'event'.")
    if spec.project.time is None:
        raise UsageError(
            "--clock event puts each request in the window of its own time, the [project] "
            "time field, and this spec names none: set [project] time, or use --clock logged."
        )
    return spec.project.time


def _group_rows(
    found: Scan, shape: Window, loader: _Loader, spec: Spec, workspace: Workspace, now_us: int
) -> tuple[list[dict[str, Any]], dict[int, tuple[int, int]]]:
    """Every rule applied to every group; the rows and each window's (start, end)."""
    bounds: dict[int, tuple[int, int]] = {}
    for group in found.groups.values():
        if shape.timed:
            bounds[group.window] = shape.bounds(group.window)
        else:
            start, end = bounds.get(group.window, (group.first_us, group.last_us + 1))
            bounds[group.window] = (min(start, group.first_us), max(end, group.last_us + 1))
    from shipyard.monitoring import performance
    from shipyard.monitoring.labels import read_labels

    labels = None
    out: list[dict[str, Any]] = []
    policy = rules.policy(spec.monitoring)
    for key in sorted(found.groups):
        group = found.groups[key]
        answer = loader(group.version)
        assert answer is not None
        start, end = bounds[group.window]
        mine = _quality(group, answer, spec)
        mine += _drift(group, answer, policy)
        mine += _system(group, spec)
        if group.arm not in ("champion", ""):
            mine += _agreement(found, group, answer)
        labels = read_labels(workspace) if labels is None else labels
        ids, scores = answers(group)
        features, outside = segments(group)
        drifted = any(r["section"] == "feature_drift" and r["level"] == "alert" for r in mine)
        context = WindowContext(
            start,
            end,
            group.version,
            group.arm,
            ids,
            scores,
            answer.score_columns(),
            answer.reference,
            labels,
            drifted,
            spec,
            workspace,
            features=features,
            outside=outside,
            test_slices=answer.test_slices,
        )
        mine += performance.rows(context)
        for r in mine:
            r.update(window_start=start, window_end=end, model_version=group.version, arm=group.arm)
        out += mine
    return out, bounds


def _stamped(rows: list[dict[str, Any]], bounds: tuple[int, int]) -> list[dict[str, Any]]:
    """Rows a hook made for the whole run, stamped with its range (theirs when they say)."""
    for r in rows:
        r.setdefault("window_start", bounds[0])
        r.setdefault("window_end", bounds[1])
        r.setdefault("model_version", None)
        r.setdefault("arm", "")
    return rows


def _quality(group: Group, answer: Answering, spec: Spec) -> list[dict[str, Any]]:
    settings = spec.monitoring
    out = []
    for name, summary in group.features.items():
        base = answer.reference.features[name].summary
        total, base_total = summary.n + summary.nulls, base.n + base.nulls
        if group.absent[name] >= group.rows:
            out.append(
                result_row(
                    "quality",
                    name,
                    "missing_field",
                    1.0,
                    level="alert",
                    note=f"no logged row of the window carried '{name}', a feature of "
                    f"version {group.version}",
                )
            )
            continue
        out.append(
            rules.null_rate_row(
                name,
                summary.nulls / total if total else float("nan"),
                base.nulls / base_total if base_total else 0.0,
                settings,
            )
        )
        column = answer.contract.columns.get(name)
        if isinstance(summary, NumericSummary) and column is not None and column.min is not None:
            assert column.max is not None
            out.append(
                rules.range_row(
                    name, group.out_of_range[name], summary.n, column.min, column.max, settings
                )
            )
        if isinstance(summary, CategoricalSummary) and summary.n:
            ref = answer.reference.features[name]
            closed = getattr(ref, "closed", False) and not getattr(ref, "boolean", False)
            out.append(rules.unseen_row(name, summary.other / summary.n, closed, settings))
    for name, count in sorted(group.new_fields.items()):
        out.append(
            result_row(
                "quality",
                name,
                "new_field",
                count / group.rows,
                level="warn",
                note=f"{count:,} rows carried '{name}', which version {group.version} does "
                "not know",
            )
        )
    for name, count in sorted(group.warnings.items()):
        reasons = ", ".join(f"{r} ({n:,})" for r, n in group.reasons[name].most_common(3))
        out.append(
            result_row(
                "quality",
                name,
                "warning_rate",
                count / group.rows,
                note=f"contract warnings on {count:,} of {group.rows:,} rows: {reasons}",
            )
        )
    return out


def _drift(group: Group, answer: Answering, policy: Any) -> list[dict[str, Any]]:
    from shipyard.monitoring.drift import compare

    out = []
    reference = answer.reference
    for name, summary in group.features.items():
        if group.absent[name] >= group.rows:
            continue
        result = compare(reference.features[name], summary, policy=policy)
        out += rules.drift_rows(result, "feature_drift", policy)
    for name, summary in group.predictions.items():
        result = compare(reference.predictions[name], summary, policy=policy)
        out += rules.drift_rows(result, "prediction_drift", policy)
        base = reference.predictions[name].summary
        assert isinstance(summary, NumericSummary)
        out.append(
            result_row(
                "prediction_drift",
                name,
                "mean_prediction",
                summary.mean,
                note=f"the test split's mean {base.mean:.4g}",
            )
        )
    return out


def _system(group: Group, spec: Spec) -> list[dict[str, Any]]:
    lat = group.latency
    return rules.system_rows(
        lat.quantile(0.5),
        lat.quantile(0.95),
        lat.quantile(0.99),
        group.errors,
        group.rows,
        spec.monitoring,
        spec.monitoring.max_error_rate,
    )


def _agreement(found: Scan, group: Group, answer: Answering) -> list[dict[str, Any]]:
    champions = [
        g for (w, _, arm), g in found.groups.items() if w == group.window and arm == "champion"
    ]
    task = answer.reference.task or "binary"
    statistic = "mean_abs_difference" if task == "regression" else "agreement"
    best, both = float("nan"), 0
    for champion in champions:
        value, n = agreement(champion, group, task)
        if n > both:
            best, both = value, n
    if not both:
        return [
            result_row(
                "agreement",
                "",
                statistic,
                None,
                level="empty",
                note="no request of this window was answered by the champion and this arm",
            )
        ]
    what = "share of identical predicted labels" if task != "regression" else "mean |difference|"
    return [
        result_row(
            "agreement",
            "",
            statistic,
            best,
            note=f"{what} with the champion on {both:,} requests both answered",
        )
    ]


def _workspace_rows(
    found: Scan,
    shape: Window,
    bounds: Mapping[int, tuple[int, int]],
    settings: Any,
    workspace: Workspace,
    end_us: int,
) -> list[dict[str, Any]]:
    """Volume per window (the arms that answered users) and, on the last window, the hours
    since the last request and the last label."""
    volume: dict[int, int] = {}
    for (w, _, arm), group in found.groups.items():
        volume.setdefault(w, 0)
        if arm in SERVING_ARMS:
            volume[w] += group.rows
    windows = sorted(volume)
    if shape.timed:  # the windows in between that no request reached
        windows = list(range(windows[0], windows[-1] + 1))
    out: list[dict[str, Any]] = []
    earlier: list[int] = []
    for w in windows:
        start, end = bounds[w] if w in bounds else shape.bounds(w)
        rows = volume.get(w, 0)
        elapsed = 1.0
        if shape.timed and end > end_us:
            elapsed = max(0.0, min(1.0, (end_us - start) / (end - start)))
        for r in rules.volume_rows(rows, earlier, elapsed, settings):
            r.update(window_start=start, window_end=end, model_version=None, arm="")
            out.append(r)
        if elapsed >= 1:
            earlier.append(rows)
    last_request = max(g.last_us for g in found.groups.values())
    start, end = bounds[max(bounds)]
    stale = [
        rules.staleness_row(
            "hours_since_last_request",
            (end_us - last_request) / (3600 * US),
            settings.max_staleness_hours,
            "request",
        ),
        rules.staleness_row(
            "hours_since_last_label", _hours_since_label(workspace, end_us), None, "label"
        ),
    ]
    for r in stale:
        r.update(window_start=start, window_end=end, model_version=None, arm="")
    return out + stale


def _hours_since_label(workspace: Workspace, end_us: int) -> float | None:
    import pyarrow as pa
    import pyarrow.compute as pc

    from shipyard.monitoring.labels import read_labels

    ingested = read_labels(workspace).column("ingested_at")
    if len(ingested) == 0:
        return None
    latest = pc.max(pc.cast(ingested, pa.int64())).as_py()
    return (end_us - latest) / (3600 * US)
