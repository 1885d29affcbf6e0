"""Promotion: the gates a registered version passes before it meets users, and rollback.

``promote`` resolves a version in MLflow's registry, verifies its bundle, and refuses
(:class:`CheckFailed`, exit 1, naming each failed item) unless

- its readiness checklist passed (``readiness.json`` in the bundle, computed at ``train``);
- it was not rolled back before;
- to become champion over an existing one: on the same, newest test split (the test split of
  whichever of the two was trained later), it beats the champion by ``min_improvement`` and
  no slice is worse than the champion's beyond the candidate's 95% interval.

``--force`` with a reason overrides the gates; the history records what was overridden. The
gates are computed without the registry's lock (scoring a test split takes seconds); the lock
is held only to commit, after checking that the state did not move meanwhile, so a
``rollback`` never waits behind a gate check. The new state is committed in one atomic write
(:mod:`shipyard.registry`); MLflow's aliases are mirrored after the commit.

Every function takes the :class:`~shipyard.spec.Spec` and the
:class:`~shipyard.workspace.Workspace` and returns a small result type with ``to_dict()``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import (
    CheckFailed,
    DataError,
    DeploymentError,
    RegistryLocked,
    ShipyardError,
    SpecError,
)
from shipyard.registry import (
    Deployment,
    actor,
    challenger_stopped,
    holdout_until,
    next_canary_percent,
    promoted,
    rolled_back,
    sync_aliases,
)
from shipyard.workspace import Workspace

if TYPE_CHECKING:
    from shipyard.bundle import Bundle
    from shipyard.spec import Spec
    from shipyard.tracking import Tracker

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def _readiness_failures(bundle: Bundle) -> list[str]:
    from shipyard.evaluation.readiness import Readiness

    path = bundle.path / "readiness.json"
    if not path.exists():
        return ["readiness: the bundle carries no readiness checklist (train it again)"]
    readiness = Readiness.from_dict(json.loads(path.read_text()))
    return [f"{i.number}. {i.name}: {i.summary}" for i in readiness.failed]


def newest_test_split(spec: Spec, bundles: list[Bundle]) -> tuple[Any, Any, Any, Bundle]:
    """Frame, target and roles of the test split of the most recently trained bundle."""
    from shipyard.data.dataset import Dataset
    from shipyard.data.io import read_table
    from shipyard.data.split import make_splits
    from shipyard.spec import Spec

    newest = max(bundles, key=lambda b: b.manifest["created"])
    spec = Spec.from_dict(json.loads((newest.path / "spec.json").read_text()), spec.root)
    if spec.data_path is None:
        raise DataError("version's spec names no data file; cannot rebuild its test split.")
    table = read_table(spec.data_path)
    if table.snapshot_id != newest.manifest["snapshot_id"]:
        raise DataError(
            f"the data at '{table.path}' changed since the newer version was trained "
            f"(snapshot {newest.manifest['snapshot_id'][:12]}, now {table.snapshot_id[:12]}), "
            "so its test split cannot be rebuilt. Restore that file, or pass --force --reason."
        )
    ds = Dataset(table.frame, spec)
    splits = make_splits(ds)
    frame = ds.frame.iloc[splits.test].reset_index(drop=True)
    return frame, ds.target.y[splits.test], ds, newest


def versus_champion(
    spec: Spec, candidate: Bundle, champion: Bundle, champion_version: int
) -> dict[str, Any]:
    """Candidate vs champion on the newest test split, overall and per slice."""
    from shipyard.evaluation.readiness import compare_with_champion

    min_improvement = spec.objective.min_improvement
    frame, y, ds, newest = newest_test_split(spec, [candidate, champion])
    scores = {}
    for name, bundle in (("candidate", candidate), ("champion", champion)):
        missing = [c for c in bundle.features if c not in frame.columns]
        if missing:
            raise DataError(
                f"the {name}'s features {missing} are not in the newest test data "
                f"'{ds.spec.data_path}'; the two versions cannot be compared on it."
            )
        scores[name] = bundle.predict(frame[bundle.features])
    spec = ds.spec  # the newer version's own spec: its slices and seed
    out = compare_with_champion(
        version=champion_version,
        metric=spec.objective.metric,
        task=ds.target.kind,
        y=y,
        frame=frame,
        candidate=scores["candidate"],
        champion=scores["champion"],
        slice_columns=list(dict.fromkeys([*spec.features.slices, *spec.features.sensitive])),
        roles=ds.role,
        min_improvement=min_improvement,
        seed=spec.split.seed,
    )
    out["test_split_of"] = newest.manifest.get("run_id")
    return out


@dataclass(frozen=True)
class PromoteResult:
    """What ``promote`` did: the version, the states before and after, the gates' evidence."""

    version: int
    to: str
    before: dict[str, Any]
    after: dict[str, Any]
    revision: int
    committed_seconds: float
    failures: list[str] = field(default_factory=list)  # gates overridden with --force
    versus: dict[str, Any] | None = None
    aliases: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RollbackResult:
    """What ``rollback`` did: which version went back, the states before and after."""

    rolled_back: int | None
    before: dict[str, Any]
    after: dict[str, Any]
    revision: int
    committed_seconds: float
    aliases: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VersionRow:
    """One registered version as ``shipyard models`` lists it."""

    version: int
    run_id: str | None
    created: str
    chosen: str | None
    metric: str
    dev: float | None
    test: float | None
    snapshot: str
    ready: bool | None
    failed: list[str]
    role: str
    aliases: list[str]


@dataclass(frozen=True)
class ModelsListing:
    """Every registered version, the deployment state and its history, the alias repairs."""

    model: str
    state: dict[str, Any]
    versions: list[VersionRow]
    history: list[dict[str, Any]]
    repairs: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _gates(
    spec: Spec,
    workspace: Workspace,
    tracker: Tracker,
    state: Deployment,
    selector: str | int,
    to: str,
    progress: Progress,
) -> tuple[int, Path, list[str], dict[str, Any] | None]:
    """The version, its bundle, every failed gate and the comparison with the champion."""
    from shipyard.bundle import load_bundle

    version = workspace.bundle(selector, tracker=tracker, registered=True)
    bundle = load_bundle(version.path)
    progress("checking the gates")
    failures = _readiness_failures(bundle)
    if version.number in state.rolled_back:
        failures.append(
            f"rolled back: version {version.number} was rolled back; it does not return silently"
        )
    versus = None
    if to == "champion" and state.champion not in (None, version.number):
        progress(f"scoring v{version.number} and champion v{state.champion} on the newest test")
        champion = load_bundle(workspace.bundle(state.champion, tracker=tracker).path)
        versus = versus_champion(spec, bundle, champion, state.champion)
        if not versus["beats_champion"]:
            failures.append(
                f"beats the champion: {versus['metric']} {versus['candidate']:.4f} vs "
                f"champion v{state.champion} {versus['champion']:.4f} on the newest test "
                f"split ({versus['rows']:,} rows): improves by {versus['improvement']:+.4f}, "
                f"needs ≥ min_improvement: {versus.get('min_improvement_rule', versus['min_improvement'])}"
            )
        if versus["regressed_slices"]:
            failures.append(
                "no slice regresses against the champion: " + ", ".join(versus["regressed_slices"])
            )
    return version.number, version.path, failures, versus


def promote(
    spec: Spec,
    workspace: Workspace,
    selector: str | int,
    to: str,
    *,
    percent: float | None = None,
    force: bool = False,
    reason: str | None = None,
    progress: Progress = _quiet,
    holdout_days: float | None = None,
) -> PromoteResult:
    """Gate and promote a version (see the module docstring).

    A new champion keeps the one it replaces for ``[serving] holdout_percent`` of entities
    (the holdout cohort) for ``holdout_days`` (else ``[serving] holdout_days``; neither: until
    :func:`end_holdout`).

    The gates are computed on the state as read at the start, without the lock; the commit
    takes the lock and is refused (:class:`RegistryLocked`, exit 1) if another change
    committed meanwhile, since the gates were judged against a state that is gone.
    """
    if force and not (reason and reason.strip()):
        raise SpecError('--force needs --reason "why": the override is recorded in the history.')
    if holdout_days is not None and (to != "champion" or holdout_days <= 0):
        raise SpecError(
            f"--holdout-days must be a positive number of days, with --to champion; got "
            f"{holdout_days:g} with --to {to}"
        )
    if holdout_days is not None and not spec.serving.holdout_percent:
        raise SpecError(
            "--holdout-days needs a holdout cohort: set [serving] holdout_percent (up to 20) "
            "in shipyard.toml"
        )
    until = holdout_until(holdout_days or spec.serving.holdout_days)
    started = time.perf_counter()
    registry = workspace.registry
    progress("resolving the version")
    tracker = workspace.tracker()
    who = actor()
    seen = registry.state()
    number, path, failures, versus = _gates(spec, workspace, tracker, seen, selector, to, progress)
    if failures and not force:
        raise CheckFailed(
            f"promotion of version {number} to {to} refused; failed:\n"
            + "\n".join(f"  - {f}" for f in failures)
            + '\nFix these and train again, or override with --force --reason "…" '
            "(recorded in the history)."
        )

    def change(state: Deployment) -> Deployment:
        if state.revision != seen.revision:
            raise RegistryLocked(
                f"the deployment of '{state.model}' changed while the gates were checked "
                f"(revision {seen.revision} → {state.revision}: "
                f"{state.history[-1].get('action') if state.history else 'a change'}); nothing "
                "was promoted. Run the promotion again to gate it against the new state."
            )
        step = (
            percent
            if to != "canary" or percent is not None
            else next_canary_percent(state, number, spec.serving.canary_steps)
        )
        return promoted(
            state,
            number,
            to,
            actor=who,
            percent=step,
            bundle=workspace.relative(path),
            reason=reason,
            forced=failures if force and failures else None,
            evidence={"versus_champion": versus} if versus else None,
            holdout_percent=spec.serving.holdout_percent,
            holdout_until=until,
        )

    progress("committing")
    before, after = registry.update(f"promote {selector} --to {to}", change)
    committed = time.perf_counter() - started
    return PromoteResult(
        version=number,
        to=to,
        before=before.summary(),
        after=after.summary(),
        revision=after.revision,
        committed_seconds=committed,
        failures=failures,
        versus=versus,
        aliases=_mirror(after, tracker, progress),
    )


@dataclass(frozen=True)
class StopResult:
    """What ``promote --stop`` did: which challenger left traffic, the states around it."""

    stopped: int
    mode: str
    before: dict[str, Any]
    after: dict[str, Any]
    revision: int
    aliases: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stop(
    workspace: Workspace, *, reason: str | None = None, progress: Progress = _quiet
) -> StopResult:
    """End the shadow or canary challenger: the champion alone answers again (a running
    server drops the challenger as soon as it sees the record change). The version is not
    marked rolled back: it may be promoted again."""

    def change(state: Deployment) -> Deployment:
        if state.challenger is None:
            raise DeploymentError(
                f"'{state.model}' has no challenger to stop (champion "
                f"{state.champion or '—'} serves alone); `shipyard models` shows the state."
            )
        return challenger_stopped(state, actor=actor(), reason=reason, mark=False)

    before, after = workspace.registry.update("stop challenger", change)
    progress("mirroring MLflow aliases")
    try:
        aliases = _mirror(after, workspace.tracker(), progress)
    except ShipyardError as exc:
        aliases = [f"not mirrored ({exc}); `shipyard models` repairs them"]
    return StopResult(
        stopped=int(before.challenger or 0),
        mode=str(before.mode),
        before=before.summary(),
        after=after.summary(),
        revision=after.revision,
        aliases=aliases,
    )


@dataclass(frozen=True)
class HoldoutResult:
    """What ``promote --end-holdout`` did: which former champion stopped answering."""

    ended: int
    percent: float
    before: dict[str, Any]
    after: dict[str, Any]
    revision: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def end_holdout(workspace: Workspace, *, reason: str | None = None) -> HoldoutResult:
    """End the holdout cohort: its entities are answered by the champion again (a running
    server follows as soon as it sees the record change). Raises
    :class:`~shipyard.errors.DeploymentError` when there is none."""
    from shipyard.registry import holdout_ended

    before, after = workspace.registry.update(
        "end holdout", lambda state: holdout_ended(state, actor=actor(), reason=reason)
    )
    return HoldoutResult(
        ended=int(before.holdout or 0),
        percent=before.holdout_percent,
        before=before.summary(),
        after=after.summary(),
        revision=after.revision,
    )


MIRROR_MODES = ("now", "background", "skip")


def rollback(
    workspace: Workspace,
    *,
    reason: str | None = None,
    progress: Progress = _quiet,
    mirror: str = "now",
) -> RollbackResult:
    """Champion back to the previous champion, committed from the deployment record alone
    (no pandas, no MLflow) in milliseconds.

    MLflow's aliases are then mirrored: ``now`` (before returning), ``background`` (by a
    detached process, so the command returns at once — what the CLI does) or ``skip``; any
    later command that talks to MLflow repairs them from the record either way.
    """
    if mirror not in MIRROR_MODES:
        raise SpecError(f"mirror must be one of {', '.join(MIRROR_MODES)}; got {mirror!r}")
    started = time.perf_counter()
    before, after = workspace.registry.update(
        "rollback", lambda state: rolled_back(state, actor=actor(), reason=reason)
    )
    committed = time.perf_counter() - started
    if mirror == "now":
        progress("mirroring MLflow aliases")
        try:
            aliases = _mirror(after, workspace.tracker(), progress)
        except ShipyardError as exc:
            aliases = [f"not mirrored ({exc}); `shipyard models` repairs them"]
    elif mirror == "background":
        aliases = [mirror_later(workspace)]
    else:
        aliases = ["not mirrored; `shipyard models` repairs them"]
    return RollbackResult(
        rolled_back=before.champion,
        before=before.summary(),
        after=after.summary(),
        revision=after.revision,
        committed_seconds=committed,
        aliases=aliases,
    )


def mirror_later(workspace: Workspace) -> str:
    """Mirror MLflow's aliases from the deployment record in a detached process (it imports
    MLflow, which costs seconds); what it does goes to ``.shipyard/mirror.log``."""
    workspace.folder.mkdir(parents=True, exist_ok=True)
    log = workspace.folder / "mirror.log"
    args = json.dumps(
        {
            "root": str(workspace.root),
            "model": workspace.model,
            "uri": workspace.tracking_uri_setting,
            "experiment": workspace.experiment,
        }
    )
    code = "import sys; from shipyard.promotion import _mirror_main; _mirror_main(sys.argv[1])"
    with log.open("ab") as sink:
        subprocess.Popen(
            [sys.executable, "-c", code, args],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    return f"aliases are being mirrored in the background (see {log})"


def _mirror_main(argument: str) -> None:
    """The detached mirroring process of :func:`mirror_later`."""
    given = json.loads(argument)
    workspace = Workspace(
        given["root"], given["model"], tracking_uri=given["uri"], experiment=given["experiment"]
    )
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    try:
        tracker = workspace.tracker()  # first: importing MLflow takes seconds
        repairs: list[str] = []
        for _ in range(10):  # until no change committed while we mirrored
            state = workspace.registry.state()
            repairs += sync_aliases(state, tracker)
            if workspace.registry.state().revision == state.revision:
                break
    except ShipyardError as exc:
        print(f"{stamp} aliases not mirrored ({exc}); `shipyard models` repairs them")
        return
    print(f"{stamp} revision {state.revision}: " + ("; ".join(repairs) or "aliases already agree"))


def _mirror(state: Deployment, tracker: Tracker, progress: Progress) -> list[str]:
    progress("mirroring MLflow aliases")
    return sync_aliases(state, tracker)


def models(spec: Spec, workspace: Workspace) -> ModelsListing:
    """Every registered version with its metrics, readiness and role; aliases repaired."""
    tracker = workspace.tracker()
    model = workspace.model
    state = workspace.registry.state()
    repairs = _mirror(state, tracker, _quiet)
    by_version: dict[int, list[str]] = {}
    for alias, number in tracker.aliases(model).items():
        by_version.setdefault(number, []).append(alias)
    rows = []
    for mv in tracker.versions(model):
        run = tracker.get_run(mv.run_id) if mv.run_id else None
        metrics = run.metrics if run else {}
        tags = run.tags if run else {}
        metric = (run.params.get("metric") if run else None) or spec.objective.metric
        readiness = _bundle_readiness(workspace.run_bundle(mv.run_id or ""))
        rows.append(
            VersionRow(
                version=mv.number,
                run_id=mv.run_id,
                created=time.strftime("%m-%d %H:%M", time.localtime(mv.created / 1000)),
                chosen=tags.get("chosen_rung"),
                metric=metric,
                dev=metrics.get(f"dev_{metric}"),
                test=metrics.get(f"test_{metric}"),
                snapshot=(tags.get("data_snapshot_id") or "")[:12],
                ready=None if readiness is None else bool(readiness["passed"]),
                failed=[]
                if readiness is None
                else [i["name"] for i in readiness["items"] if not i["passed"]],
                role=state.role(mv.number),
                aliases=sorted(by_version.get(mv.number, [])),
            )
        )
    return ModelsListing(
        model=model,
        state={**state.summary(), "revision": state.revision, "file": str(workspace.registry.path)},
        versions=rows,
        history=list(state.history),
        repairs=repairs,
    )


def _bundle_readiness(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / "readiness.json").read_text())
    except (OSError, ValueError):
        return None
