"""The Project: a folder with ``shipyard.toml``, and every action on it.

The command line is a thin layer over this class; each command has a Python twin::

    project = Project.load("shipyard.toml")
    report = project.check()
    report.exit_code  # 0 clean, 1 error findings

State lives in ``.shipyard/`` beside the spec; deleting it resets the project.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from shipyard import __version__, leftovers
from shipyard.bundle import load_bundle
from shipyard.cores import LEDGER
from shipyard.data.contract import Contract, Violation
from shipyard.data.dataset import Dataset
from shipyard.data.finding import CODES, Finding, by_severity, unknown_codes
from shipyard.data.io import Table, read_table
from shipyard.data.leakage import leakage_findings
from shipyard.data.quality import quality_findings
from shipyard.data.split import Splits, make_splits, split_findings
from shipyard.errors import (
    CheckFailed,
    DataError,
    ShipyardError,
    SpecError,
    TrackingError,
    UsageError,
)
from shipyard.evaluation.robustness import check_expectations
from shipyard.files import atomic_write
from shipyard.leftovers import Cleanup
from shipyard.registry import Registry
from shipyard.scaffold import Inferred, write_spec
from shipyard.spec import Spec, load_spec
from shipyard.tracking import Tracker, probe
from shipyard.tracking_worker import RemoteTracker
from shipyard.training import TrainResult
from shipyard.training import train as run_training
from shipyard.workspace import Workspace

if TYPE_CHECKING:
    from shipyard.batch import BatchResult
    from shipyard.promotion import ModelsListing, PromoteResult, RollbackResult
    from shipyard.retraining import RetrainResult

Progress = Callable[[str], None]
Rounds = Callable[[int, int], None]
REPORT_REUSE = timedelta(days=1)


def _quiet(_: str) -> None:
    return None


def _once_built(
    action: Callable[[RemoteTracker], None],
) -> Callable[[Future[RemoteTracker]], None]:
    """A done-callback that runs ``action`` on the tracker, if it was built."""

    def callback(future: Future[RemoteTracker]) -> None:
        if not future.cancelled() and future.exception() is None:
            action(future.result())

    return callback


def _open(tracker: RemoteTracker) -> None:
    with suppress(TrackingError):  # a child that died is named at the run's start
        tracker.open()


def _no_rounds(done: int, total: int) -> None:
    return None


@dataclass
class CheckReport:
    """Everything ``shipyard check`` found about one data file."""

    data: str
    snapshot_id: str
    rows: int
    columns: int
    roles: dict[str, str]
    findings: list[Finding]
    flagged: list[str]
    splits: dict[str, Any]
    contract_source: str
    seconds: dict[str, float] = field(default_factory=dict)
    spec_hash: str = ""
    created: str = ""
    version: str = __version__

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def exit_code(self) -> int:
        return 1 if self.errors else 0

    def counts(self) -> dict[str, int]:
        return {
            s: sum(f.severity == s for f in self.findings) for s in ("error", "warning", "info")
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "snapshot_id": self.snapshot_id,
            "rows": self.rows,
            "columns": self.columns,
            "roles": self.roles,
            "counts": self.counts(),
            "flagged_columns": self.flagged,
            "findings": [f.to_dict() for f in self.findings],
            "splits": self.splits,
            "contract": self.contract_source,
            "seconds": self.seconds,
            "exit_code": self.exit_code,
            "spec_hash": self.spec_hash,
            "created": self.created,
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckReport:
        findings = [
            Finding(
                f["code"],
                f["severity"],
                f["message"],
                f["action"],
                tuple(f["columns"]),
                f["evidence"],
                f["check"],
            )
            for f in data["findings"]
        ]
        return cls(
            data=data["data"],
            snapshot_id=data["snapshot_id"],
            rows=data["rows"],
            columns=data["columns"],
            roles=data["roles"],
            findings=findings,
            flagged=data["flagged_columns"],
            splits=data["splits"],
            contract_source=data["contract"],
            seconds=data["seconds"],
            spec_hash=data.get("spec_hash", ""),
            created=data.get("created", ""),
            version=data.get("version", ""),
        )


def _violation_finding(v: Violation) -> Finding:
    actions = {
        "missing_column": "add the column to the data, or re-learn the contract on new training data",
        "wrong_type": "fix the values at the source, or re-learn the contract if the type changed on purpose",
        "unexpected_null": "find why values went missing; the model imputes them, but the cause may matter",
        "out_of_range": "check for unit changes or data errors; predictions extrapolate here",
        "unseen_category": "check for new or misspelled categories; they are scored as unknown",
    }
    return Finding(
        code=v.reason,
        severity=v.severity,
        message=v.message,
        action=actions.get(v.reason, "check the data"),
        columns=(v.column,),
        evidence={"rows": v.count, "examples": list(v.examples), "first_row": v.first_row},
        check="contract",
    )


@dataclass(frozen=True)
class RunRow:
    """One tracked training run as ``shipyard runs`` lists it."""

    run_id: str
    started: str
    status: str
    chosen: str | None
    metric: str | None
    dev: float | None
    test: float | None
    version: str | None
    snapshot: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ReproduceResult:
    """A re-run of a tracked run compared with the record: metric by metric, and the test
    predictions row by row."""

    run_id: str
    metric: str | None
    chosen: str
    recorded_chosen: str | None
    metrics: dict[str, dict[str, Any]]
    test_rows: int
    same_test_rows: bool
    max_prediction_diff: float | None

    @property
    def identical(self) -> bool:
        return bool(
            self.same_test_rows
            and self.max_prediction_diff == 0.0
            and all(c["same"] for c in self.metrics.values())
            and self.chosen == self.recorded_chosen
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "identical": self.identical}


#: Leakage findings about feature columns: excluding the columns resolves them.
FEATURE_LEAKS = (
    "target_derived",
    "too_good",
    "leaky_combination",
    "model_too_good",
    "post_event_time",
    "predictive_id",
    "row_order",
)


def _resolved_by_spec(finding: Finding, ds: Dataset) -> Finding:
    """A leak the spec already keeps out of the features becomes information, not an error.

    One excluded column resolves a combination; every column must be out for the others.
    """
    if finding.code not in FEATURE_LEAKS or not finding.columns or finding.severity == "info":
        return finding
    out = [c not in ds.candidates for c in finding.columns]
    resolved = any(out) if finding.code == "leaky_combination" else all(out)
    if not resolved:
        return finding
    return replace(
        finding,
        severity="info",
        message=finding.message + " — already kept out of the features",
        evidence={**finding.evidence, "resolved_by_spec": True},
    )


class Project:
    """A shipyard project: its spec, its workspace, and the actions on them."""

    def __init__(self, spec: Spec, spec_path: Path) -> None:
        self.spec = spec
        self.spec_path = spec_path
        self.workspace = Workspace.of(spec)

    @classmethod
    def load(cls, spec_path: Path | str = "shipyard.toml") -> Project:
        path = Path(spec_path)
        return cls(load_spec(path), path)

    @classmethod
    def init(
        cls,
        data: Path | str,
        target: str,
        spec_path: Path | str = "shipyard.toml",
        task: str | None = None,
        force: bool = False,
    ) -> tuple[Project, Inferred]:
        """Infer a project from ``data`` and write ``spec_path``; returns it and what was inferred."""
        table = read_table(data)
        inferred = write_spec(table.frame, Path(data), target, Path(spec_path), task, force)
        return cls.load(spec_path), inferred

    @property
    def contract_path(self) -> Path:
        return self.workspace.contract_path

    def read(self, data: Path | str | None = None) -> Table:
        """The table at ``data``, or the spec's own data file."""
        path = Path(data) if data is not None else self.spec.data_path
        if path is None:
            raise SpecError(
                "no data file given and shipyard.toml sets no project.data; "
                "pass DATA or set project.data."
            )
        return read_table(path)

    def dataset(self, data: Path | str | None = None) -> Dataset:
        return Dataset(self.read(data).frame, self.spec)

    def check(
        self,
        data: Path | str | None = None,
        progress: Progress = _quiet,
        now: datetime | None = None,
    ) -> CheckReport:
        """Contract, data quality and leakage audit of ``data`` (default: the spec's data).

        Checking the spec's own data (re)learns the contract and saves it under
        ``.shipyard/``; checking another file validates it against that contract.
        """
        return self._check(data, progress, now)[0]

    def _check(
        self,
        data: Path | str | None,
        progress: Progress,
        now: datetime | None = None,
        reuse: bool = False,
        refuse: Callable[[Dataset], None] | None = None,
        save_contract: bool = True,
    ) -> tuple[CheckReport, Dataset, Splits | None, Table]:
        """The check of ``data`` (the spec's by default); ``refuse(ds)`` may raise on the
        profiled dataset before anything is written. Without ``save_contract`` the
        contract learned from the spec's data is not kept (a retrain's combined data)."""
        seconds: dict[str, float] = {}

        def stage(name: str) -> None:
            seconds[name] = time.perf_counter()
            if name != "done":  # the last mark only closes the timing of the one before
                progress(name)

        stage("reading data")
        table = self.read(data)
        own = data is None or (
            self.spec.data_path is not None
            and Path(data).resolve() == self.spec.data_path.resolve()
        )
        if not own and self.spec.project.target not in table.frame.columns:
            return self._check_unlabeled(table), None, None, table  # type: ignore[return-value]
        previous = self._recent_report(table.snapshot_id) if reuse and own else None
        if previous is not None:
            progress(f"reusing the check of {previous.created} (same data, same spec)")
        else:
            stage("profiling columns")
        # a reused check's roles too: profiling the columns again would find them
        ds = Dataset(table.frame, self.spec, roles=previous.roles if previous else None)
        if refuse is not None:
            refuse(ds)
        if previous is not None:
            try:
                splits_again: Splits | None = make_splits(ds)
            except DataError:
                splits_again = None
            return previous, ds, splits_again, table
        findings: list[Finding] = []
        stage("contract")
        if own or not self.contract_path.exists():
            contract = Contract.learn(ds.frame, ds.role, target=self.spec.project.target)
            # the check's contract covers every row; a bundle's covers its train split only,
            # so predicting on this same file can still flag values only dev or test hold
            source = (
                "learned from this data (all rows); the model's bundle keeps the train "
                "split's contract, so predicting on this file can report values seen only in "
                "dev or test as out of range"
            )
        else:
            contract = Contract.load(self.contract_path)
            source = self._validated_source()
            findings += [_violation_finding(v) for v in contract.validate(table.frame)]
        stage("quality checks")
        findings += quality_findings(ds, now)
        stage("leakage audit")
        leaks, flagged = leakage_findings(ds)
        findings += [_resolved_by_spec(f, ds) for f in leaks]
        stage("splits")
        try:
            made = make_splits(ds)
            splits: Splits | None = made
            for finding in split_findings(ds, made):
                if finding.code == "unseen_after_split":
                    flagged.update(finding.columns)
                findings.append(_resolved_by_spec(finding, ds))
        except DataError as exc:
            splits = None
            findings.append(
                Finding(
                    "split_impossible",
                    "error",
                    str(exc),
                    "adjust [split] in shipyard.toml",
                    check="quality",
                )
            )
        stage("done")
        marks = list(seconds.items())
        timing = {name: round(marks[i + 1][1] - t, 3) for i, (name, t) in enumerate(marks[:-1])}
        if own and save_contract:
            contract.save(self.contract_path)
        report = CheckReport(
            data=str(table.path),
            snapshot_id=table.snapshot_id,
            rows=len(table.frame),
            columns=table.frame.shape[1],
            roles=ds.role,
            findings=by_severity(findings),
            flagged=sorted(flagged),
            splits=splits.to_dict() if splits else {},
            contract_source=source,
            seconds=timing,
            spec_hash=self.spec.hash(),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        self._save_report(report)
        return report, ds, splits, table

    # --- training ------------------------------------------------------------------------

    def tidy(self) -> Cleanup:
        """Settle what killed trainings left behind (see :mod:`shipyard.leftovers`): their
        runs marked FAILED, their orphan bundles removed. Trainings still running are left
        alone. Every command that opens the workspace calls it first."""
        return leftovers.sweep(self.workspace)

    def tracker(self, warm: bool = False) -> Tracker:
        """The MLflow tracker for this project (probes a server URI before use)."""
        return self.workspace.tracker(warm=warm)

    def train(
        self,
        ignore_findings: tuple[str, ...] | list[str] = (),
        progress: Progress = _quiet,
        track: bool = True,
        on_round: Rounds = _no_rounds,
    ) -> TrainResult:
        """Check, then split, climb the ladder, evaluate, bundle, track and register.

        Refuses (:class:`CheckFailed`, exit 1) when the check finds an error whose code is
        not in ``ignore_findings``; ignoring is deliberate and recorded in the run.
        ``progress(stage)`` names each stage as it starts, ``on_round(done, total)`` follows
        the boosting rounds of a rung.
        """
        unknown = unknown_codes(list(ignore_findings))
        if unknown:  # a typo would otherwise ignore nothing, silently
            raise UsageError(
                f"--ignore-findings: no check emits {', '.join(map(repr, unknown))}. Known "
                f"codes: {', '.join(sorted(CODES))}"
            )
        if track:  # an unreachable server fails here, first; the store is set up meanwhile
            probe(self.workspace.tracking_uri())
        with ThreadPoolExecutor(max_workers=1) as pool:
            return self._train(pool if track else None, ignore_findings, progress, on_round)

    def _train(
        self,
        pool: ThreadPoolExecutor | None,
        ignore_findings: tuple[str, ...] | list[str],
        progress: Progress,
        on_round: Rounds,
        run_tags: dict[str, str] | None = None,
        now: datetime | None = None,
    ) -> TrainResult:
        """Check the spec's data and train on it; ``run_tags`` go on the run. A retrain's
        project (``run_tags`` given) trains on combined data and keeps no contract of it.

        The tracking process starts first and imports MLflow while the data is checked,
        then opens the store beside the trees once the lighter rungs are fitted; it holds a
        core while it starts, so the fits take one thread fewer."""
        tracker = pool.submit(self._tracker_on_a_core) if pool is not None else None
        try:
            return self._train_checked(tracker, ignore_findings, progress, on_round, run_tags, now)
        finally:  # the tracking process ends, whether the training got to it or not
            if tracker is not None:
                tracker.add_done_callback(_once_built(RemoteTracker.close))

    def _train_checked(
        self,
        tracker: Future[RemoteTracker] | None,
        ignore_findings: tuple[str, ...] | list[str],
        progress: Progress,
        on_round: Rounds,
        run_tags: dict[str, str] | None,
        now: datetime | None,
    ) -> TrainResult:
        report, ds, splits, table = self._check(
            None,
            progress,
            now=now,
            reuse=True,
            refuse=_refuse_expectations,
            save_contract=run_tags is None,
        )
        ignored = sorted(set(ignore_findings))
        blocking = [f for f in report.errors if f.code not in ignored]
        if blocking:
            lines = "\n".join(
                f"  - {f.code} ({f.column or 'table'}): {f.message}" for f in blocking
            )
            raise CheckFailed(
                f"training refused: `shipyard check` found {len(blocking)} error(s):\n{lines}\n"
                "Fix them (e.g. exclude the columns in [features] exclude), or pass "
                "--ignore-findings CODE to proceed deliberately (recorded in the run)."
            )
        if splits is None:
            raise CheckFailed(
                "training refused: the data cannot be split under [split]; see `shipyard check`."
            )
        with leftovers.training(self.workspace, tracked=tracker is not None) as marker:

            def open_tracking() -> None:  # the training goes ahead: a store may be made now
                if tracker is not None:
                    tracker.add_done_callback(_once_built(_open))

            def claim(run_id: str | None, bundle: Path) -> None:
                marker.run_id, marker.bundle = run_id, self.workspace.relative(bundle)
                marker.save()

            result = run_training(
                ds,
                splits,
                snapshot_id=table.snapshot_id,
                bundle_root=self.workspace.bundles,
                tracker=tracker,
                check_report=report.to_dict(),
                ignored_findings=ignored,
                progress=progress,
                on_round=on_round,
                flagged=report.flagged,
                champion=self._champion_bundle(),
                run_tags={**(run_tags or {}), "shipyard_marker": marker.token},
                on_bundle=claim,
                open_tracking=open_tracking,
            )
        return result

    def _tracker_on_a_core(self) -> RemoteTracker:
        with LEDGER.threads("tracking set-up", at_most=1):
            return self.workspace.training_tracker()

    def _champion_bundle(self) -> tuple[int, Path] | None:
        state = self.registry.state()
        recorded = state.bundle(state.champion) if state.champion is not None else None
        if state.champion is None or recorded is None:
            return None
        path = self.workspace.inside(recorded)
        return (state.champion, path) if path.is_dir() else None

    # --- deployment ----------------------------------------------------------------------

    @property
    def registry(self) -> Registry:
        """The deployment state of this project's registered model."""
        return self.workspace.registry

    def models(self) -> ModelsListing:
        """Registered versions with metrics, readiness and role; MLflow aliases repaired."""
        from shipyard import promotion

        return promotion.models(self.spec, self.workspace)

    def promote(
        self,
        version: str | int,
        to: str,
        percent: float | None = None,
        force: bool = False,
        reason: str | None = None,
        progress: Progress = _quiet,
        holdout_days: float | None = None,
    ) -> PromoteResult:
        """Gate ``version`` and make it shadow, canary or champion (see :mod:`promotion`);
        a new champion keeps the old one for the holdout cohort (``[serving]
        holdout_percent``) for ``holdout_days``."""
        from shipyard import promotion

        return promotion.promote(
            self.spec,
            self.workspace,
            version,
            to,
            percent=percent,
            force=force,
            reason=reason,
            progress=progress,
            holdout_days=holdout_days,
        )

    def end_holdout(self, reason: str | None = None) -> Any:
        """End the holdout cohort (``shipyard promote --end-holdout``): a
        :class:`~shipyard.promotion.HoldoutResult`."""
        from shipyard import promotion

        return promotion.end_holdout(self.workspace, reason=reason)

    def labels(self, path: Path | str) -> Any:
        """Ingest a file of delayed labels (``shipyard labels FILE``): a
        :class:`~shipyard.monitoring.labels.LabelsResult` with ``to_dict()``."""
        from shipyard.monitoring.labels import ingest

        return ingest(path, self.spec, self.workspace)

    def monitor(
        self,
        *,
        since: str | None = None,
        until: str | None = None,
        window: str | None = None,
        model: str | int | None = None,
        report: Path | str | None = None,
        offline: Path | str | None = None,
        clock: str | None = None,
        engine: str = "local",
        ray_address: str | None = None,
    ) -> Any:
        """Drift, live data quality, system metrics and alerts over the prediction log
        (``shipyard monitor``): a :class:`~shipyard.monitoring.watch.MonitorResult` with
        ``to_dict()``, ``frame()`` and ``exit_code`` (1 when an alert fired). ``engine``
        ``"ray"`` reads the log on Ray Data (a local instance, or ``ray_address``)."""
        from shipyard.monitoring.watch import monitor

        return monitor(
            self.spec,
            self.workspace,
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

    def experiment(
        self,
        *,
        metric: str = "outcome",
        arms: tuple[str, str] = ("champion", "canary"),
        alpha: float = 0.05,
        mde: float | None = None,
        percent: float | None = None,
        higher_is_better: bool = True,
    ) -> Any:
        """The online verdict of champion against canary (``shipyard experiment``): an
        :class:`~shipyard.monitoring.experiment.Experiment` with ``to_dict()``. The split the
        sample-ratio check expects is the canary's recorded ``percent`` (the holdout's, with the
        arm ``holdout``: the previous champion after a rollout) unless given; the
        MDE is two points of rate for a binary outcome, and must be given for a mean."""
        from shipyard.errors import DataError
        from shipyard.monitoring.experiment import Kind, analyze, logged_outcomes
        from shipyard.registry import canary_since

        binary = metric == "outcome" and self.spec.project.task == "binary"
        kind: Kind = "proportion" if binary else "mean"
        if metric == "squared_error":
            if self.spec.project.task == "multiclass":
                raise DataError(
                    "--metric squared_error needs one score per answer (binary or "
                    "regression); a multiclass answer has one per class"
                )
            higher_is_better = False  # an error: lower is better
            mde = 0.005 if mde is None else mde
        if mde is None:
            if kind == "mean":
                raise DataError(
                    f"--mde is needed for a mean of '{metric}': the smallest lift worth "
                    "detecting, in the metric's own units"
                )
            mde = 0.02
        held = "holdout" in arms  # new champion against the old one, after a rollout
        state = self.registry.state()
        if percent is None:
            if held and state.holdout is not None:
                percent = state.holdout_percent
            elif held or state.mode != "canary" or not state.percent:
                raise DataError(
                    f"no {'holdout' if held else 'canary'}'s traffic share is recorded (the "
                    f"deployment is {state.mode or 'without a challenger'}"
                    f"{'' if state.holdout is None else ', with a holdout'}); pass "
                    "--percent, the share of traffic the second arm was given"
                )
            else:
                percent = state.percent
        if not 0 < percent < 100:
            raise DataError(f"--percent must be between 0 and 100; got {percent:g}")
        shares = [percent if arm in ("canary", "holdout") else 100 - percent for arm in arms]
        canary = arms == ("champion", "canary")
        began = canary_since(state, step=True) if canary else None  # one period of one split
        (first, second), arrivals, units = logged_outcomes(
            self.workspace,
            arms,
            metric,
            versions=(state.champion or 0, state.challenger or 0) if began else None,
            since=began,
        )
        return analyze(
            first,
            second,
            kind=kind,
            names=arms,
            alpha=alpha,
            mde=mde,
            split=(shares[0], shares[1]),
            units=(units[0], units[1]),
            higher_is_better=higher_is_better,
            arrivals=(arrivals[0], arrivals[1]),
        )

    def retrain(
        self,
        *,
        since: str | None = None,
        window: str | None = None,
        allow_stale: bool = False,
        reason: str | None = None,
        progress: Progress = _quiet,
        on_round: Rounds = _no_rounds,
        now: datetime | None = None,
    ) -> RetrainResult:
        """Retrain from scratch on the spec's data plus the labeled production records of the
        window (``shipyard retrain``; see :mod:`shipyard.retraining`), tracked as a training
        run tagged a retrain, and make the new version the shadow challenger through the
        promotion gates. ``window`` defaults to ``[retrain] window``; ``since`` (an ISO date
        or time) takes every answer from then on instead.

        Raises :class:`CheckFailed` (exit 1) when the window holds no labeled answer, or the
        freshness guard refuses and ``allow_stale`` is not set; :class:`UsageError` (exit 2)
        for ``allow_stale`` without a ``reason``. A version the gates keep out of shadow is
        registered all the same; the result's ``failures`` name the gates (exit 1)."""
        from shipyard import promotion, retraining

        if allow_stale and not (reason and reason.strip()):
            raise UsageError(
                '--allow-stale needs --reason "why": the override is recorded in the run.'
            )
        if reason and not allow_stale:
            raise UsageError("--reason goes with --allow-stale (the override it explains).")
        if since is not None and window is not None:
            raise UsageError(
                "give --since or --window, not both: --since takes every answer from then on, "
                "--window the newest span of them."
            )
        window = window or self.spec.retrain.window
        retraining.span_seconds(window)
        now = now or datetime.now(UTC)
        probe(self.workspace.tracking_uri())
        progress("reading the data and the prediction log")
        located = self.workspace.bundle("champion")
        champion = load_bundle(located.path)
        data = self.read()
        served = retraining.served_records(
            self.spec, self.workspace, champion, data.frame, since=since, window=window, now=now
        )
        stale = retraining.freshness_problems(served, self.spec)
        if stale and not allow_stale:
            raise retraining.refuse_stale(stale)
        warnings = [f"retraining with --allow-stale ({reason}): {p}" for p in stale]
        before = retraining.source_snapshot(champion, self.spec.root)
        if before is not None and before != data.snapshot_id:
            warnings.append(
                f"the data file '{data.path}' changed since champion v{located.number} was "
                f"trained (snapshot {before[:12]} then, {data.snapshot_id[:12]} now): the "
                "retrain uses the file as it is now"
            )
        if served.foreign_labels:
            warnings.append(
                f"{served.foreign_labels:,} stored label(s) name request ids no logged answer "
                f"holds (e.g. {', '.join(served.foreign_examples)}): labels of another model "
                "or service, left out"
            )
        note = {
            "data_file": str(data.path),
            "data_snapshot_id": data.snapshot_id,
            "data_rows": len(data.frame),
            "added_rows": len(served.rows),
            "window": window,
            "window_start": served.window_start,
            "window_end": served.window_end,
            "champion": located.number,
        }
        path, written = retraining.write_training_data(self.workspace, data, served, note)
        combined = replace(
            self.spec,
            project=replace(self.spec.project, data=path.relative_to(self.spec.root).as_posix()),
        )
        tags = retraining.tags(served, window, stale, reason, data.snapshot_id)
        try:
            with ThreadPoolExecutor(max_workers=1) as pool:
                trained = Project(combined, self.spec_path)._train(
                    pool, (), progress, on_round, run_tags=tags, now=now
                )
        except BaseException:
            if written:  # nothing trained on it: the combined rows go with the failure
                path.unlink(missing_ok=True)
                path.with_suffix(".json").unlink(missing_ok=True)
            raise
        promoted, failures = None, []
        try:
            promoted = promotion.promote(
                self.spec, self.workspace, trained.version or 0, "shadow", progress=progress
            ).to_dict()
        except ShipyardError as exc:
            failures = [
                line.strip()[2:] for line in str(exc).splitlines() if line.startswith("  - ")
            ] or [str(exc)]
        return retraining.RetrainResult(
            train=trained,
            data=str(path),
            data_rows=len(data.frame),
            added_rows=len(served.rows),
            window=window if since is None else f"since {since}",
            window_start=served.window_start,
            window_end=served.window_end,
            answered=served.answered,
            labeled_share=served.labeled_share,
            newest_label=served.newest_label,
            newest_label_age_days=served.newest_label_age_days,
            stale=stale,
            allow_stale=allow_stale,
            reason=reason,
            data_snapshot_id=data.snapshot_id,
            champion_data_snapshot_id=before,
            promoted=promoted,
            failures=failures,
            warnings=warnings,
        )

    def retrain_due(self, alerts: int, now: datetime | None = None) -> list[str]:
        """Why ``shipyard monitor --retrain`` retrains now, by ``[retrain] when`` (a monitor
        that raised ``alerts``, a champion past ``max_champion_age_days``); empty when no
        trigger holds. Then :meth:`retrain` does it."""
        from shipyard import retraining

        created = load_bundle(self.workspace.bundle("champion").path).manifest.get("created")
        return retraining.due(self.spec, alerts, created, now or datetime.now(UTC))

    def rollback(
        self, reason: str | None = None, progress: Progress = _quiet, mirror: str = "now"
    ) -> RollbackResult:
        """The champion goes back to the previous champion; the current one is marked."""
        from shipyard import promotion

        return promotion.rollback(self.workspace, reason=reason, progress=progress, mirror=mirror)

    def predict(
        self,
        source: Path | str,
        output: Path | str,
        model: str | int = "champion",
        engine: str = "local",
        keep: tuple[str, ...] | list[str] = (),
        chunk_rows: int | None = None,
        ray_address: str | None = None,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> BatchResult:
        """Batch-score ``source`` into ``output`` (Parquet) with a deployed or given version."""
        from shipyard import batch

        located = self.workspace.bundle(model)
        return batch.predict(
            located.path,
            source,
            output,
            version=located.number,
            id_column=self.spec.project.id,
            keep=keep,
            engine=engine,
            chunk_rows=chunk_rows or batch.DEFAULT_CHUNK_ROWS,
            ray_address=ray_address,
            progress=progress or (lambda done, total: None),
        )

    def runs(self, max_results: int = 50) -> list[RunRow]:
        """Tracked training runs, newest first."""
        out = []
        for run in self.tracker().runs(max_results):
            metric = run.params.get("metric")
            # a run killed before registering has none ("None" was written by older versions)
            version = run.tags.get("registered_version")
            out.append(
                RunRow(
                    run_id=run.run_id,
                    started=datetime.fromtimestamp(run.start_time / 1000).isoformat(
                        timespec="seconds"
                    ),
                    status=run.status,
                    chosen=run.tags.get("chosen_rung"),
                    metric=metric,
                    dev=run.metrics.get(f"dev_{metric}") if metric else None,
                    test=run.metrics.get(f"test_{metric}") if metric else None,
                    version=version if version not in ("", "None") else None,
                    snapshot=(run.tags.get("data_snapshot_id") or "")[:12] or None,
                )
            )
        return out

    def reproduce(
        self, run_id: str, progress: Progress = _quiet, on_round: Rounds = _no_rounds
    ) -> ReproduceResult:
        """Re-run a tracked run from its recorded spec, data snapshot and seeds; compare.

        ``run_id`` may be any unique prefix of the id; :class:`UsageError` when it matches no
        training run or more than one.

        Raises :class:`DataError` when the data no longer matches the recorded snapshot.
        The result says, metric by metric and for the test predictions, whether they match.
        """
        tracker = self.tracker()
        run_id = tracker.resolve_run(run_id)  # any unique prefix, as `shipyard runs` shows
        run = tracker.get_run(run_id)
        with tempfile.TemporaryDirectory() as folder:
            spec_file = tracker.download(run_id, "spec.json", Path(folder))
            recorded_spec = json.loads(spec_file.read_text())
            preds_file = tracker.download(
                run_id, "predictions/test_predictions.parquet", Path(folder)
            )
            recorded = pd.read_parquet(preds_file)
            ladder = json.loads(tracker.download(run_id, "ladder.json", Path(folder)).read_text())
        # a rung its time budget stopped is re-run for the rounds it ran, not against a clock
        stopped = {
            row["rung"]: int(row["rounds"])
            for row in ladder
            if row.get("budget_hit") and row.get("rounds") is not None
        }
        spec = Spec.from_dict(recorded_spec, root=self.spec.root)
        table = read_table(spec.data_path) if spec.data_path else self.read()
        expected = run.tags.get("data_snapshot_id")
        if expected and table.snapshot_id != expected:
            raise DataError(
                f"the data at '{table.path}' no longer matches run {run_id}: recorded snapshot "
                f"{expected[:12]}, now {table.snapshot_id[:12]}. Restore that data to reproduce."
            )
        ds = Dataset(table.frame, spec)
        splits = make_splits(ds)
        ignored = json.loads(run.params.get("ignored_findings", "[]"))
        progress("re-running the recorded training")
        with tempfile.TemporaryDirectory() as folder:
            result = run_training(
                ds,
                splits,
                snapshot_id=table.snapshot_id,
                bundle_root=Path(folder),
                tracker=None,
                check_report={},
                ignored_findings=ignored,
                progress=progress,
                on_round=on_round,
                fixed_rounds=stopped,
            )
            bundle = load_bundle(result.bundle)
            new_preds = bundle.predict(ds.frame.iloc[splits.test][bundle.features])
        compare = {}
        for name in sorted(k for k in run.metrics if k.startswith(("dev_", "test_"))):
            part, _, key = name.partition("_")
            values = result.dev if part == "dev" else result.test.get(result.chosen, {})
            if key in values:
                compare[name] = {
                    "recorded": run.metrics[name],
                    "now": values[key],
                    "same": abs(run.metrics[name] - values[key]) <= 1e-9,
                }
        old = np.asarray(recorded["prediction"].tolist(), dtype=float)
        new = np.asarray(new_preds, dtype=float)
        same_rows = bool(np.array_equal(recorded["row"].to_numpy(), splits.test))
        max_diff = (
            float(np.max(np.abs(old - new))) if same_rows and old.shape == new.shape else None
        )
        return ReproduceResult(
            run_id=run_id,
            metric=run.params.get("metric"),
            chosen=result.chosen,
            recorded_chosen=run.tags.get("chosen_rung"),
            metrics=compare,
            test_rows=len(splits.test),
            same_test_rows=same_rows,
            max_prediction_diff=max_diff,
        )

    def report(
        self, selector: str, out: Path | str | None = None, progress: Progress = _quiet
    ) -> Path:
        """Write the model report (:mod:`shipyard.reports.model`) of a version (``3``,
        ``v3``, ``NAME/3``, ``champion``, ``challenger``) or of a training run (its id, or a
        unique prefix of it) to ``out``, by default ``.shipyard/reports/model-v3.html`` (or
        ``model-<run id>.html``); its path. The few test rows it explains are re-read from
        the spec's data when its snapshot is still the one trained on.

        Raises :class:`UsageError` (or :class:`SpecError` for an unknown version), naming
        what was asked, before anything is written."""
        from shipyard.reports.model import EXPLAINED_ROWS, render_model_report

        target = Path(out) if out is not None else None
        if target is not None and not target.parent.is_dir():
            raise UsageError(
                f"--out '{target}': the folder '{target.parent}' does not exist; create it or "
                "name a file in an existing folder."
            )
        progress("finding the bundle")
        version, folder = self._report_bundle(selector)
        bundle = load_bundle(folder)
        progress("reading the test rows to explain")
        rows, note = self._test_rows(bundle, EXPLAINED_ROWS)
        snapshot = str(bundle.manifest.get("snapshot_id") or "")
        try:
            check = json.loads(self._report_path(snapshot).read_text()) if snapshot else None
        except (OSError, ValueError):
            check = None
        progress("drawing the report")
        text = render_model_report(bundle, version=version, check=check, rows=rows, rows_note=note)
        if target is None:
            name = f"v{version}" if version is not None else folder.name
            target = self.workspace.reports / f"model-{name}.html"
        atomic_write(target, text)
        return target

    def _report_bundle(self, selector: str) -> tuple[int | None, Path]:
        """The version (when known) and bundle folder ``selector`` names (see :meth:`report`)."""
        text = str(selector).strip()
        version_text = text[1:] if text[:1] in "vV" and text[1:].isdigit() else text
        if version_text.isdigit() or version_text in ("champion", "challenger") or "/" in text:
            located = self.workspace.bundle(version_text)
            return located.number, located.path
        root = self.workspace.bundles
        found = (
            sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(text))
            if text and root.is_dir()
            else []
        )
        found = [p for p in found if not p.name.endswith(".tmp")]
        if not found:
            raise UsageError(
                f"'{selector}' names no version and no training run of this workspace (no "
                f"bundle under {root} starts with it): give a version (3, v3, champion) or a "
                "run id; `shipyard models` lists versions, `shipyard runs` runs."
            )
        if len(found) > 1:
            shown = ", ".join(p.name for p in found[:5])
            raise UsageError(
                f"run id prefix '{selector}' is ambiguous: {len(found)} runs match ({shown}). "
                "Give more characters."
            )
        recorded = self.workspace.relative(found[0])
        versions = [int(v) for v, b in self.registry.state().bundles.items() if b == recorded]
        if not versions and not found[0].name.startswith("local-"):  # a tracked run's bundle
            try:  # a version not promoted yet: MLflow's registry knows which run it came from
                registered = self.tracker().versions(self.spec.project.name)
                versions = [v.number for v in registered if v.run_id == found[0].name]
            except TrackingError:
                pass
        return (versions[0] if versions else None), found[0]

    def _test_rows(self, bundle: Any, count: int) -> tuple[pd.DataFrame | None, str]:
        """The first ``count`` test rows of the data ``bundle`` was trained on (its recorded
        spec and split), or None and why not."""
        recorded = json.loads((bundle.path / "spec.json").read_text())
        spec = Spec.from_dict(recorded, root=self.spec.root)
        if spec.data_path is None:
            return None, "the spec names no data file to read test rows from"
        try:
            table = read_table(spec.data_path)
        except (OSError, DataError) as exc:
            return None, f"the training data could not be read again ({exc}): no test rows"
        if table.snapshot_id != bundle.manifest.get("snapshot_id"):
            return None, (
                f"the data at '{spec.data_path}' changed since this model was trained (snapshot "
                f"{table.snapshot_id[:12]}, trained on {str(bundle.manifest.get('snapshot_id'))[:12]}"
                "): its test rows cannot be found again"
            )
        try:
            ds = Dataset(table.frame, spec)
            rows = make_splits(ds).test[:count]
        except ShipyardError as exc:
            return None, f"the training data could not be split again ({exc}): no test rows"
        return ds.frame.iloc[rows], ""

    def _validated_source(self) -> str:
        return (
            f"validated against {self.contract_path} (learned from all of project.data; the "
            "model's bundle keeps the train split's contract)"
        )

    def _check_unlabeled(self, table: Table) -> CheckReport:
        """New data without the target (a production batch): the contract is all to check."""
        target = self.spec.project.target
        if not self.contract_path.exists():
            raise DataError(
                f"'{table.path}' has no target column '{target}', and no contract has been learned "
                "yet: run `shipyard check` on the training data first, then check this file "
                "against it."
            )
        contract = Contract.load(self.contract_path)
        findings = [_violation_finding(v) for v in contract.validate(table.frame)]
        findings.append(
            Finding(
                "unlabeled_data",
                "info",
                f"'{table.path}' has no target column '{target}': validated against the contract "
                f"learned from project.data ({contract.n_rows:,} rows, every split); quality and "
                "leakage checks need the target",
                "nothing to do for scoring data",
                check="contract",
            )
        )
        report = CheckReport(
            data=str(table.path),
            snapshot_id=table.snapshot_id,
            rows=len(table.frame),
            columns=table.frame.shape[1],
            roles={c: col.role for c, col in contract.columns.items() if c in table.frame.columns},
            findings=by_severity(findings),
            flagged=[],
            splits={},
            contract_source=self._validated_source(),
            spec_hash=self.spec.hash(),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        self._save_report(report)
        return report

    def _report_path(self, snapshot_id: str) -> Path:
        return self.workspace.reports / f"check-{snapshot_id[:12]}.json"

    def _recent_report(self, snapshot_id: str) -> CheckReport | None:
        """The saved check of this very data under this very spec, if made within a day."""
        path = self._report_path(snapshot_id)
        try:
            report = CheckReport.from_dict(json.loads(path.read_text()))
            age = datetime.now(UTC) - datetime.fromisoformat(report.created)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        same = (
            report.snapshot_id == snapshot_id
            and report.spec_hash == self.spec.hash()
            and report.version == __version__
        )
        return report if same and age < REPORT_REUSE else None

    def _save_report(self, report: CheckReport) -> None:
        path = self._report_path(report.snapshot_id)
        atomic_write(path, json.dumps(report.to_dict(), indent=1, default=str))


def _refuse_expectations(ds: Dataset) -> None:
    """An ``[[expectations]]`` entry on a column that is not a numeric feature: refused
    before the check writes anything or a model is fitted."""
    features = ds.candidates
    check_expectations(ds.spec.expectations, features, {c: ds.role[c] for c in features})
