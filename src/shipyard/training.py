"""Training: split → ladder → calibration → evaluation → bundle → tracked run → registry.

:func:`train` runs the whole pipeline on a checked dataset. Every statistic is fitted on
the train split; early stopping and model selection use the blackbox dev set; calibration
is fitted on dev; the test split is scored once, at the end, for the chosen candidate and
the baselines. The result is a bundle, one MLflow run (a nested run per rung), a new
registered model version and the model report (``report.html`` in the bundle, logged to the
run).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import math
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from shipyard.bundle import Bundle, add_document, add_file, load_bundle, save_bundle, verify
from shipyard.cores import requested_threads
from shipyard.data.contract import Contract
from shipyard.data.dataset import Dataset
from shipyard.data.split import Splits
from shipyard.errors import BundleError, DataError
from shipyard.evaluation.calibration import Calibrator, choose_calibrator, ece, reliability
from shipyard.evaluation.diagnostics import champion_baseline, diagnostics
from shipyard.evaluation.error_slices import error_analysis
from shipyard.evaluation.latency import one_record_latency
from shipyard.evaluation.metrics import HIGHER_IS_BETTER, Margin, all_metrics
from shipyard.evaluation.readiness import (
    assess,
    compare_with_champion,
    dev_precision,
    dev_warning,
    judge_slices,
    robustness_items,
    skew_outputs,
)
from shipyard.evaluation.robustness import (
    check_expectations,
    robustness,
    spreads,
    tolerance_unit,
)
from shipyard.evaluation.slices import group_rates, slice_metrics
from shipyard.models import Constant, Family, GradientBoostedTrees, Linear, Rule, class_weights
from shipyard.models.explanation import importance
from shipyard.models.expression import parse
from shipyard.models.ladder import Ladder, climb
from shipyard.monitoring.reference import Reference
from shipyard.reports.model import EXPLAINED_ROWS, render_model_report
from shipyard.spec import Spec

FEATURE_SET_VERSION = 1
REPORT = "report.html"  # the model report, in the bundle and in the run's artifacts
EYEBALL_SAMPLE = 200
PACKAGES = ("shipyard", "numpy", "pandas", "pyarrow", "scikit-learn", "lightgbm", "mlflow", "scipy")


@dataclass
class TrainResult:
    """What one ``train`` produced."""

    run_id: str | None
    version: int | None
    bundle: Path
    ladder: list[dict[str, Any]]
    chosen: str
    metric: str
    constraints: dict[str, dict[str, Any]]
    test: dict[str, dict[str, float]]
    dev: dict[str, float]
    calibration: dict[str, Any]
    slices: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    readiness: dict[str, Any] = field(default_factory=dict)
    robustness: dict[str, Any] = field(default_factory=dict)
    #: the chosen model's global importance on the test split (:func:`global_importance`)
    importance: dict[str, Any] | None = None
    #: learning curve, sanity fit and champion baseline (:mod:`shipyard.evaluation.diagnostics`)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    #: error slices of the eyeball split (:func:`~shipyard.evaluation.error_slices.error_analysis`)
    error_analysis: dict[str, Any] = field(default_factory=dict)
    #: the model report (``report.html`` in the bundle; :mod:`shipyard.reports.model`)
    report: Path | None = None

    @property
    def constraints_met(self) -> bool:
        return all(c["passed"] for c in self.constraints.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "version": self.version,
            "bundle": str(self.bundle),
            "metric": self.metric,
            "chosen": self.chosen,
            "ladder": self.ladder,
            "dev": self.dev,
            "test": self.test,
            "constraints": self.constraints,
            "constraints_met": self.constraints_met,
            "calibration": self.calibration,
            "slices": self.slices,
            "warnings": self.warnings,
            "seconds": self.seconds,
            "readiness": self.readiness,
            "robustness": self.robustness,
            "importance": self.importance,
            "diagnostics": self.diagnostics,
            "error_analysis": self.error_analysis,
            "report": None if self.report is None else str(self.report),
        }


def git_state(folder: Path) -> dict[str, Any]:
    """The commit and dirty flag of the repository holding ``folder`` (None outside git)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return {"git_commit": None, "git_dirty": None}
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=folder, capture_output=True, text=True, timeout=10
        )
        return {"git_commit": commit.stdout.strip(), "git_dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def classes_of(ds: Dataset) -> list[Any]:
    """Class labels in the order of the encoded target (binary: [negative, positive])."""
    y = ds.frame[ds.spec.project.target]
    if ds.target.kind == "binary":
        labels = list(pd.factorize(y, sort=True)[1])
        positive = ds.positive if ds.positive is not None else labels[-1]
        others = [v for v in labels if not (v == positive or str(v) == str(positive))]
        return [others[0] if others else None, positive]
    if ds.target.kind == "multiclass":
        return list(pd.factorize(y, sort=True)[1])
    return []


def families_for(spec: Spec, ds: Dataset, rounds: Mapping[str, int] | None = None) -> list[Family]:
    """The ladder's rungs for this spec: constant, the rule if declared, linear, trees.

    ``rounds`` fixes a boosted rung's number of rounds (``reproduce`` passes those a run
    recorded when its time budget stopped the rung)."""
    common: dict[str, Any] = {
        "task": ds.target.kind,
        "n_classes": ds.target.n_classes,
        "seed": spec.split.seed,
    }
    hashing: dict[str, Any] = {
        "unknown": spec.features.unknown,
        "hash_buckets": spec.features.hash_buckets,
    }
    rungs: list[Family] = [Constant(**common)]
    if spec.baseline.rule:
        roles = {c: r for c, r in ds.role.items() if c != spec.project.target}
        parse(spec.baseline.rule, roles)  # fail before any fitting, with the position
        rungs.append(Rule(rule=spec.baseline.rule, roles=roles, **common))
    trees: dict[str, Any] = {}
    if rounds and "gbt" in rounds:
        trees["n_estimators"] = int(rounds["gbt"])
    rungs += [Linear(**hashing, **common), GradientBoostedTrees(**hashing, **trees, **common)]
    return rungs


def _evaluate_constraints(
    spec: Spec, *, p99_ms: float, size_mb: float, ece_value: float | None, slice_gap: float
) -> dict[str, dict[str, Any]]:
    c = spec.constraints
    checks = {
        "p99_latency_ms": (c.p99_latency_ms, p99_ms),
        "max_model_mb": (c.max_model_mb, size_mb),
        "max_ece": (c.max_ece, ece_value),
        "max_slice_gap": (c.max_slice_gap, slice_gap),
    }
    out = {}
    for name, (limit, value) in checks.items():
        if limit is None:
            out[name] = {"limit": None, "value": value, "passed": True, "note": "not set"}
        elif value is None:
            out[name] = {"limit": limit, "value": None, "passed": True, "note": "not applicable"}
        else:
            out[name] = {"limit": limit, "value": value, "passed": bool(value <= limit)}
    return out


def _versus_champion(
    champion: tuple[int, Path],
    spec: Any,
    ds: Dataset,
    frame: pd.DataFrame,
    y: np.ndarray,
    scores: np.ndarray,
    slice_cols: list[str],
) -> dict[str, Any] | None:
    """The candidate against the current champion on the candidate's test split."""
    version, path = champion
    try:
        bundle = load_bundle(path)
    except BundleError:
        return None  # promote compares again, and refuses a champion that fails to verify
    if any(c not in frame.columns for c in bundle.features):
        return None
    return compare_with_champion(
        version=version,
        metric=spec.objective.metric,
        task=ds.target.kind,
        y=y,
        frame=frame,
        candidate=scores,
        champion=bundle.predict(frame[bundle.features]),
        slice_columns=slice_cols,
        roles=ds.role,
        min_improvement=spec.objective.min_improvement,
        seed=spec.split.seed,
    )


def _champion_rows(
    champion: tuple[int, Path] | None,
    ds: Dataset,
    frame: pd.DataFrame,
    splits: Splits,
    dev_xy: tuple[pd.DataFrame, np.ndarray],
    test_xy: tuple[pd.DataFrame, np.ndarray],
) -> dict[str, Any] | None:
    """The champion's metrics on the candidate's dev and test rows (the ladder's), through
    its own bundle; None without a champion or one that fails to load."""
    if champion is None:
        return None
    version, path = champion
    try:
        bundle = load_bundle(path)
    except BundleError:
        return None
    dev_rows = splits.dev_blackbox if len(splits.dev_blackbox) else splits.dev_eyeball
    return champion_baseline(
        version,
        bundle.predict,
        list(bundle.features),
        ds.target.kind,
        (frame.iloc[dev_rows].reset_index(drop=True), dev_xy[1]),
        (frame.iloc[splits.test].reset_index(drop=True), test_xy[1]),
    )


def _predictions_hash(values: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(values, dtype=np.float64).tobytes()).hexdigest()


#: The most test rows global importance is computed on (evenly spaced over the split).
IMPORTANCE_ROWS = 2_000  # TreeSHAP costs ~0.7 ms a row on flights: 20,000 rows took 15 s


def global_importance(
    model: Family, frame: pd.DataFrame, features: list[str], classes: list[Any]
) -> dict[str, Any] | None:
    """The chosen model's global importance on the test split ``frame``: each feature's mean
    absolute attribution (:func:`~shipyard.models.explanation.importance`), over at most
    :data:`IMPORTANCE_ROWS` rows evenly spaced in it; None for a family that cannot explain.
    Kept in the bundle's evaluation and the run's ``importance.json`` for the model report."""
    if not model.explains:
        return None
    step = max(1, math.ceil(len(frame) / IMPORTANCE_ROWS))
    sample = frame.iloc[::step]
    out = importance(model.explain(sample).over(features), classes)
    out["split"] = "test"
    out["of_rows"] = len(frame)
    return out


def shift_warnings(
    findings: Sequence[Mapping[str, Any]], calibration: Mapping[str, Any]
) -> list[str]:
    """The check's target_shift findings (as in its report) as ``train`` prints them, with
    what the chosen model's test predictions show of the shift (regression: their mean
    error)."""
    bias = calibration.get("mean_error_test")
    return [
        f"{f['code']}: {f['message']}"
        + (
            f"; on test the chosen model's mean error is {bias:+.4g} (prediction − target: "
            f"{'under' if bias < 0 else 'over'}-predicted on average)"
            if bias is not None
            else ""
        )
        for f in findings
        if f["code"] == "target_shift"
    ]


def train(
    ds: Dataset,
    splits: Splits,
    *,
    snapshot_id: str,
    bundle_root: Path,
    tracker: Any,  # a (Remote)Tracker, a Future of one (set up in the background), or None
    check_report: dict[str, Any],
    ignored_findings: list[str],
    progress: Callable[[str], None] = lambda _: None,
    on_round: Callable[[int, int], None] = lambda done, total: None,
    flagged: list[str] | tuple[str, ...] = (),
    champion: tuple[int, Path] | None = None,
    fixed_rounds: Mapping[str, int] | None = None,
    run_tags: Mapping[str, str] | None = None,
    on_bundle: Callable[[str | None, Path], None] | None = None,
    open_tracking: Callable[[], None] = lambda: None,
) -> TrainResult:
    """Run the training pipeline on a checked dataset (see the module docstring).

    ``progress(stage)`` names each stage as it starts; ``on_round(done, total)`` follows a
    boosted rung's rounds. ``fixed_rounds`` (rung name → rounds) re-runs rungs that a time
    budget stopped for exactly the rounds recorded, without the budget. ``run_tags`` go on the
    training run; ``on_bundle(run_id, folder)`` is called once the run exists and before the
    bundle is written (the workspace's marker of a training in flight). ``open_tracking()``
    is called once the lighter rungs are fitted: the tracking process opens the store on the
    core they leave free beside the trees (earlier, it shared two cores with both lanes).
    """
    spec = ds.spec
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    features = ds.candidates
    roles = {c: ds.role[c] for c in features}
    check_expectations(spec.expectations, features, roles)  # before anything is fitted
    frame, y = ds.frame, ds.target.y
    threads = requested_threads(spec.training.threads)
    families = families_for(spec, ds, fixed_rounds)
    # the rule may name columns that are not features: carry them along, unused by the others
    rule_cols = (
        [c for c in cast(Rule, families[1]).expression.columns if c not in features]
        if (spec.baseline.rule)
        else []
    )
    part = {
        name: (frame.iloc[rows][features + rule_cols].reset_index(drop=True), y[rows])
        for name, rows in splits.parts().items()
    }
    train_xy, dev_xy, test_xy = part["train"], part["dev_blackbox"], part["test"]
    if len(dev_xy[0]) == 0:
        dev_xy = part["dev_eyeball"]
    if ds.target.kind != "regression":
        absent = sorted(set(range(ds.target.n_classes)) - set(np.unique(train_xy[1]).tolist()))
        if absent:
            names = [str(classes_of(ds)[k]) for k in absent]
            raise DataError(
                f"the train split has no rows of class {', '.join(names)} of target "
                f"'{spec.project.target}' (split strategy '{splits.strategy}'); no model can learn "
                "it. Use more data, a stratified split, or move the time cut."
            )
    # Weights trade calibrated probabilities for recall on the rare class: worth it only when
    # the metric thresholds predictions (f1); ranking metrics and log loss do better without.
    weights = class_weights(train_xy[1], ds.target.kind) if spec.objective.metric == "f1" else None
    classes = classes_of(ds)
    metric = spec.objective.metric

    fit_start = time.perf_counter()
    # what the ladder and the diagnostics' refits share
    fitting: dict[str, Any] = {
        "roles": roles,
        "metric": metric,
        "min_improvement": spec.objective.min_improvement,
        "weights": weights,
        "threads": threads,
    }
    ladder: Ladder = climb(
        families,
        train_xy,
        dev_xy,
        **fitting,
        progress=progress,
        on_round=on_round,
        max_rung_seconds=spec.training.max_rung_seconds,
        unbudgeted=tuple(fixed_rounds or ()),
        time_now=False,  # timed below, once the tracking set-up is done: work meanwhile
        light_done=open_tracking,
    )
    seconds["fitting"] = sum(r.fit_seconds for r in ladder.rungs)
    seconds["ladder"] = time.perf_counter() - fit_start
    chosen = ladder.chosen.model
    assert ladder.chosen.dev_output is not None  # climb keeps every rung's predictions on dev
    precision = dev_precision(
        metric, ds.target.kind, dev_xy[1], ladder.chosen.dev_output, seed=spec.split.seed
    )
    if (too_small := dev_warning(precision)) is not None:
        ladder.warnings.append(too_small)

    def diagnose() -> dict[str, Any]:
        begun = time.perf_counter()
        found = diagnostics(
            chosen,
            train_xy,
            dev_xy,
            **fitting,
            seed=spec.split.seed,
            champion=_champion_rows(champion, ds, frame, splits, dev_xy, test_xy),
        )
        seconds["diagnostics"] = time.perf_counter() - begun
        return found

    # refits on samples, beside the evaluation below and the wait for the tracking set-up;
    # done before latency is timed, so nothing else runs then
    progress("diagnostics (in the background)")
    background = ThreadPoolExecutor(1, thread_name_prefix="shipyard-diagnostics")
    diagnosis = background.submit(diagnose)
    background.shutdown(wait=False)  # its one thread ends with the task

    progress("calibration")
    calibrator: Calibrator | None = None
    calibration: dict[str, Any] = {"applies": ds.target.kind != "regression"}
    dev_output = ladder.chosen.dev_output
    dev_scores = dev_output
    limit = spec.constraints.max_ece
    calibration["max_ece"] = limit
    if ds.target.kind == "binary":
        # the search always runs, so ECE after calibration is reported; it is applied only
        # when max_ece is set and exceeded, and only if it lowered cross-fitted ECE on dev
        found, evidence = choose_calibrator(dev_xy[1], dev_scores, seed=spec.split.seed)
        calibration.update(evidence)
        if found is not None and limit is not None and evidence["ece_before"] > limit:
            calibrator = found
            dev_scores = calibrator.apply(dev_scores)
        calibration["kept"] = None if calibrator is None else calibrator.kind
        # judged out of sample: the cross-fitted ECE of the kept calibrator on dev
        calibration["ece_dev_after"] = (
            calibration[f"ece_{calibrator.kind}_crossfit"]
            if calibrator is not None
            else calibration["ece_before"]
        )
    elif ds.target.kind == "multiclass":
        calibration.update(
            ece_before=ece(dev_xy[1], dev_scores),
            kept=None,
            note="calibrators are fitted for binary tasks only",
        )

    progress("test split (scored once)")
    test_scores = {r.name: r.model.predict(test_xy[0]) for r in ladder.rungs}
    if calibrator is not None:
        test_scores[chosen.name] = calibrator.apply(test_scores[chosen.name])
    test = {name: all_metrics(ds.target.kind, test_xy[1], s) for name, s in test_scores.items()}
    chosen_test = test_scores[chosen.name]
    if ds.target.kind != "regression":
        calibration["ece_test"] = ece(test_xy[1], chosen_test)
        calibration["reliability_test"] = reliability(test_xy[1], chosen_test)
    else:  # calibration in the large: negative when the model under-predicts on test
        calibration["mean_error_test"] = float(np.mean(chosen_test - test_xy[1]))

    progress("global importance")
    importance = global_importance(chosen, test_xy[0], features, classes)

    progress("slices")
    slice_cols = list(dict.fromkeys([*spec.features.slices, *spec.features.sensitive]))
    test_frame = frame.iloc[splits.test].reset_index(drop=True)
    slices = (
        slice_metrics(
            test_frame,
            test_xy[1],
            chosen_test,
            slice_cols,
            ds.role,
            metric,
            ds.target.kind,
            seed=spec.split.seed,
        )
        if slice_cols
        else {"metric": metric, "slices": [], "worst_gap": 0.0, "worst_slice": None}
    )
    sensitive = list(spec.features.sensitive)
    slices["sensitive"] = (
        group_rates(
            test_frame, test_xy[1], chosen_test, sensitive, ds.role, ds.target.kind, features
        )
        if sensitive
        else {}
    )

    versus = (
        _versus_champion(champion, spec, ds, test_frame, test_xy[1], chosen_test, slice_cols)
        if champion is not None
        else None
    )

    progress("bundle")
    contract = Contract.learn(frame.iloc[splits.train], ds.role, target=spec.project.target)
    dev_metrics = all_metrics(ds.target.kind, dev_xy[1], dev_output)
    reference = Reference.learn(
        train_xy[0][features],
        roles,
        contract=contract,
        task=ds.target.kind,
        classes=classes,
        test_output=chosen_test,
        dev_output=dev_scores,  # as served: calibrated when a calibrator is kept
        metrics={"test": test[chosen.name], "dev": dev_metrics},
        calibration=calibration.get("reliability_test", []),
    )
    diagnosed = diagnosis.result()
    # latency is timed with nothing else running in the process (the tracking process may
    # still be opening the store: it holds a core of its own)
    progress("timing one-record predictions")
    ladder.time_latency()
    if hasattr(tracker, "result"):  # set up while the data was checked and the models fit
        progress("tracking set-up")
        tracker = tracker.result()
    tracked = tracker is not None
    run_ctx = (
        tracker.run(f"train-{chosen.name}", tags={**(run_tags or {}), "shipyard_kind": "train"})
        if tracked
        else None
    )
    run_id = run_ctx.__enter__() if run_ctx is not None else None
    try:
        bundle_path = bundle_root / (run_id or f"local-{int(time.time())}")
        if on_bundle is not None:
            on_bundle(run_id, bundle_path)
        evaluation = {
            "metric": metric,
            "chosen": chosen.name,
            "dev": dev_metrics,
            "dev_interval": precision,
            "test": test[chosen.name],
            "ladder": ladder.table(),
            "slices": slices,
            "calibration": {k: v for k, v in calibration.items() if k != "reliability_test"},
            "importance": importance,
        }
        simpler = [r for r in ladder.rungs if r.model.complexity < chosen.complexity]
        sign = 1 if HIGHER_IS_BETTER[metric] else -1
        fallback = max(simpler, key=lambda r: sign * r.dev_score).model if simpler else None
        save_bundle(
            bundle_path,
            fallback=fallback,
            model=chosen,
            contract=contract,
            spec=spec.to_dict(),
            spec_hash=spec.hash(),
            features=list(train_xy[0].columns),
            roles=ds.role,
            classes=classes,
            calibrator=calibrator,
            evaluation=evaluation,
            run_id=run_id,
            snapshot_id=snapshot_id,
            reference=reference.to_dict(),
        )
        bundle = load_bundle(bundle_path)
        records = test_xy[0].head(300).to_dict("records")
        latency = one_record_latency(bundle.predict_one, records) if records else {"p99_ms": 0.0}
        size_mb = sum(p.stat().st_size for p in bundle_path.rglob("*") if p.is_file()) / 2**20
        if tracked:  # what is known by now is logged while the evaluation goes on
            _log_start(
                tracker,
                ds,
                splits,
                ladder,
                chosen,
                calibrator,
                check_report=check_report,
                ignored=ignored_findings,
                snapshot_id=snapshot_id,
                contract=contract,
                bundle=bundle,
                test=test,
                test_xy=test_xy,
                test_scores=test_scores,
                eyeball=part["dev_eyeball"],
                calibration=calibration,
                slices=slices,
            )
        constraints = _evaluate_constraints(
            spec,
            p99_ms=latency["p99_ms"],
            size_mb=size_mb,
            ece_value=calibration.get("ece_test"),
            slice_gap=judge_slices(
                metric,
                slices,
                Margin.on(metric, spec.constraints.max_slice_gap or 0.0, test_xy[1]),
            )[1],
        )
        progress("robustness")
        robust_start = time.perf_counter()
        robust = robustness(
            bundle.predict,
            pd.concat(
                [test_xy[0], test_frame[[c for c in sensitive if c not in test_xy[0].columns]]],
                axis=1,
            ),
            test_xy[1],
            features=features,
            roles=ds.role,
            spread=spreads(train_xy[0][features], roles),
            metric=metric,
            task=ds.target.kind,
            sensitive=sensitive,
            expectations=spec.expectations,
            settings=spec.robustness,
            unit=tolerance_unit(ds.target.kind, train_xy[1]),
            seed=spec.split.seed,
        )
        seconds["robustness"] = time.perf_counter() - robust_start
        add_document(bundle_path, "robustness.json", robust)
        progress("error analysis")
        errors_start = time.perf_counter()
        eyeball_x, eyeball_y = part["dev_eyeball"]
        extra = [c for c in slice_cols if c not in eyeball_x and c != spec.project.target]
        analysis, worst = error_analysis(
            pd.concat(
                [eyeball_x, frame.iloc[splits.dev_eyeball][extra].reset_index(drop=True)], axis=1
            ),
            eyeball_y,
            bundle.predict(eyeball_x),
            train=pd.concat(
                [train_xy[0], frame.iloc[splits.train][extra].reset_index(drop=True)], axis=1
            ),
            columns=list(dict.fromkeys([*features, *slice_cols])),
            roles=ds.role,
            metric=metric,
            task=ds.target.kind,
            classes=classes,
            target=spec.project.target,
            rows=splits.dev_eyeball,
            seed=spec.split.seed,
        )
        add_document(bundle_path, "error_analysis.json", analysis)
        add_file(bundle_path, analysis["worst"], worst.to_csv(index=False))
        seconds["error_analysis"] = time.perf_counter() - errors_start
        progress("readiness")
        add_document(bundle_path, "diagnostics.json", diagnosed)
        sample = test_xy[0].head(500)
        other_paths, refused = skew_outputs(bundle, sample)
        try:
            verify(bundle_path)
            bundle_problem = None
        except BundleError as exc:
            bundle_problem = str(exc)
        readiness = assess(
            metric=metric,
            min_improvement=spec.objective.min_improvement,
            ladder=ladder.table(),
            chosen=chosen.name,
            constraints=constraints,
            slices=slices,
            max_slice_gap=spec.constraints.max_slice_gap,
            calibration=calibration,
            max_ece=spec.constraints.max_ece,
            task=ds.target.kind,
            features=features,
            flagged=flagged,
            known_at_prediction=spec.features.known_at_prediction,
            frame_output=bundle.predict(sample),
            record_output=other_paths.pop("record"),
            other_paths=other_paths,
            refused=refused,
            recorded={
                "data_snapshot_id": snapshot_id,
                "spec_hash": spec.hash(),
                "seed": spec.split.seed,
                "environment": package_versions(),
                "git_commit": git_state(spec.root)["git_commit"],
            },
            bundle_problem=bundle_problem,
            fallback=None if fallback is None else fallback.name,
            champion=versus,
            dev_y=dev_xy[1],
            test_y=test_xy[1],
            dev_interval=precision,
            groups=slices["sensitive"] or None,
            extra=robustness_items(robust),
        )
        add_document(bundle_path, "readiness.json", readiness.to_dict())
        seconds["total"] = time.perf_counter() - started
        result = TrainResult(
            run_id=run_id,
            version=None,
            bundle=bundle_path,
            ladder=ladder.table(),
            chosen=chosen.name,
            metric=metric,
            constraints=constraints,
            test=test,
            dev=dev_metrics,
            calibration=calibration,
            slices=slices,
            warnings=[
                *shift_warnings(check_report.get("findings", ()), calibration),
                *ladder.warnings,
            ],
            seconds=seconds,
            readiness=readiness.to_dict(),
            robustness=robust,
            importance=importance,
            diagnostics=diagnosed,
            error_analysis=analysis,
        )
        if tracked:
            progress("tracking")
            _log_end(tracker, result, chosen, worst)
            result.version = tracker.log_bundle(bundle_path, spec.project.name, input_example=None)
            tracker.tags({"registered_version": result.version})
        progress("model report")
        report_start = time.perf_counter()
        result.report = write_bundle_report(
            bundle, result.version, check_report, frame.iloc[splits.test[:EXPLAINED_ROWS]]
        )
        seconds["report"] = time.perf_counter() - report_start
        if tracked:
            tracker.file(result.report)
    finally:
        if run_ctx is not None:
            run_ctx.__exit__(*sys.exc_info())
    result.seconds["total"] = time.perf_counter() - started
    return result


def write_bundle_report(
    bundle: Bundle,
    version: int | None,
    check_report: Mapping[str, Any] | None,
    rows: pd.DataFrame | None,
    rows_note: str = "",
) -> Path:
    """The model report of ``bundle`` written into it as ``report.html`` (the manifest
    re-signed), drawn from every document the bundle holds by now; its path."""
    text = render_model_report(
        bundle, version=version, check=check_report, rows=rows, rows_note=rows_note
    )
    add_file(bundle.path, REPORT, text)
    return bundle.path / REPORT


def _log_start(
    tracker: Any,
    ds: Dataset,
    splits: Splits,
    ladder: Ladder,
    chosen: Family,
    calibrator: Calibrator | None,
    *,
    check_report: dict[str, Any],
    ignored: list[str],
    snapshot_id: str,
    contract: Contract,
    bundle: Bundle,
    test: dict[str, dict[str, float]],
    test_xy: tuple[pd.DataFrame, np.ndarray],
    test_scores: dict[str, np.ndarray],
    eyeball: tuple[pd.DataFrame, np.ndarray],
    calibration: dict[str, Any],
    slices: dict[str, Any],
) -> None:
    """Log what is settled once the bundle is written: the run's identity, its parameters,
    the spec, check, ladder and split, test predictions and plots, one nested run per rung."""
    spec = ds.spec
    metric = spec.objective.metric
    tracker.tags(
        {
            **git_state(spec.root),
            "data_snapshot_id": snapshot_id,
            "contract_hash": contract.hash(),
            "spec_hash": spec.hash(),
            "feature_set_version": FEATURE_SET_VERSION,
            "chosen_rung": chosen.name,
            "split_strategy": splits.strategy,
            # rungs a time budget stopped or that went over it; their warning says which
            "budget_hit_rungs": ",".join(r.name for r in ladder.rungs if r.budget_hit) or "none",
            # the lighter rungs fitted beside the trees (same scores and choice either way)
            "rungs_side_by_side": ladder.side_by_side,
        }
    )
    tracker.params(
        {
            "metric": metric,
            "seed": spec.split.seed,
            "chosen_rung": chosen.name,
            "features": ds.candidates,
            "ignored_findings": ignored,
            "known_at_prediction": list(spec.features.known_at_prediction),
            "min_improvement": spec.objective.min_improvement,
            "calibrator": None if calibrator is None else calibrator.kind,
            "max_rung_seconds": spec.training.max_rung_seconds,
            "threads": spec.training.threads if spec.training.threads else "free cores",
            **{f"chosen.{k}": v for k, v in chosen.get_params().items() if k not in ("roles",)},
        }
    )
    tracker.json(spec.to_dict(), "spec.json")
    tracker.json(check_report, "check_report.json")
    tracker.json(ladder.table(), "ladder.json")
    tracker.json(splits.to_dict(), "splits.json")
    tracker.json(slices, "slices.json")
    tracker.json(calibration, "calibration.json")
    tracker.json(package_versions(), "environment.json")
    names = [spec.project.target, "prediction"]
    eyeball_frame = eyeball[0].head(EYEBALL_SAMPLE).copy()
    eyeball_frame[names[0]] = eyeball[1][:EYEBALL_SAMPLE]
    eyeball_frame[names[1]] = _as_column(bundle.predict(eyeball[0].head(EYEBALL_SAMPLE)))
    tracker.table(eyeball_frame, "samples/eyeball_predictions.csv")
    test_pred = pd.DataFrame(
        {"row": splits.test, "y": test_xy[1], "prediction": _as_column(test_scores[chosen.name])}
    )
    tracker.table(test_pred, "predictions/test_predictions.parquet")
    tracker.tags({"test_predictions_sha256": _predictions_hash(test_scores[chosen.name])})
    y_test, s_test = test_xy[1], test_scores[chosen.name]
    if ds.target.kind == "binary":
        tracker.plot(
            "reliability",
            "plots/reliability.png",
            "reliability (test)",
            calibration["reliability_test"],
        )
        tracker.plot("roc", "plots/roc.png", f"ROC (test), {chosen.name}", y_test, s_test)
    elif ds.target.kind == "regression":
        tracker.plot(
            "residuals", "plots/residuals.png", f"residuals (test), {chosen.name}", y_test, s_test
        )
    for rung in ladder.rungs:
        with tracker.run(f"rung-{rung.name}", nested=True):
            tracker.tags(
                {"shipyard_kind": "rung", "rung": rung.name, "budget_hit": rung.budget_hit}
            )
            tracker.params({k: v for k, v in rung.model.get_params().items() if k != "roles"})
            tracker.metrics(
                {
                    f"dev_{metric}": rung.dev_score,
                    "fit_seconds": rung.fit_seconds,
                    "p99_ms": rung.p99_ms,
                    "size_mb": rung.size_mb,
                    f"test_{metric}": test[rung.name][metric],
                    **({"threads": rung.threads} if rung.threads is not None else {}),
                    **({"rounds": rung.rounds} if rung.rounds is not None else {}),
                }
            )
            for part_name, values in getattr(rung.model, "curves_", {}).items():
                tracker.curve(f"learning_curve_{part_name}", values)


def _log_end(tracker: Any, result: TrainResult, chosen: Family, worst: pd.DataFrame) -> None:
    """Log what the evaluation found: the run's metrics and the readiness evidence."""
    metric = result.metric
    # one batch of metrics: each call is a database transaction on the tracking store
    metrics: dict[str, Any] = {f"dev_{k}": v for k, v in result.dev.items()}
    metrics.update({f"test_{k}": v for k, v in result.test[chosen.name].items()})
    for name, values in result.test.items():
        metrics[f"test_{name}_{metric}"] = values[metric]
    cal = result.calibration
    metrics.update({k: v for k, v in cal.items() if k.startswith("ece") and v is not None})
    metrics.update(
        {
            "worst_slice_gap": result.slices["worst_gap"],
            "fit_seconds_total": result.seconds.get("fitting", 0.0),
            "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )
    for entry in result.slices["slices"]:
        if entry.get(metric) is not None:
            metrics[f"slice_{entry['column']}={entry['value']}_{metric}"] = entry[metric]
    for entry in result.robustness.get("invariance", []):
        metrics[f"invariance_{entry['column']}_changed_share"] = entry["changed_share"]
    for entry in result.robustness.get("directional", []):
        metrics[f"direction_{entry['feature']}_violation_share"] = entry["violation_share"]
    champion = result.diagnostics.get("champion")
    if champion is not None:
        metrics[f"champion_dev_{metric}"] = champion["dev"][metric]
        metrics[f"champion_test_{metric}"] = champion["test"][metric]
    for name, item in result.constraints.items():
        if item["value"] is not None:
            metrics[f"constraint_{name}"] = item["value"]
    tracker.metrics(metrics)
    tracker.json(result.constraints, "constraints.json")
    tracker.json(result.readiness, "readiness.json")
    tracker.json(result.robustness, "robustness.json")
    tracker.json(result.diagnostics, "diagnostics.json")
    tracker.json(result.error_analysis, "error_analysis.json")
    tracker.table(worst, result.error_analysis["worst"])
    if result.importance is not None:
        tracker.json(result.importance, "importance.json")
    tracker.tags({"readiness_passed": result.readiness.get("passed")})


def _as_column(values: np.ndarray) -> Any:
    return list(values) if np.ndim(values) == 2 else values
