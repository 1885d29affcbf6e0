"""Promotion: the gates a registered version passes before it meets users, and rollback.

``promote`` resolves a version in MLflow's registry, verifies its bundle, and refuses
(:class:`CheckFailed`, exit 1, naming each failed item) unless

- its readiness checklist passed (``readiness.json`` in the bundle, computed at ``train``);
- it was not rolled back before;
- to become champion over an existing one: on the same, newest test split (the test split of
  whichever of the two was trained later), it beats the champion by ``min_improvement`` and
  no slice is worse than the champion's beyond the candidate's 95% interval.

``--force`` with a reason overrides the gates; the history records what was overridden. The
whole gate runs under the registry's lock, and the new state is committed in one atomic
write (:mod:`shipyard.registry`); MLflow's aliases are mirrored after the commit.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import BundleError, CheckFailed, DataError, ShipyardError, SpecError
from shipyard.registry import Deployment, actor, next_canary_percent, promoted, rolled_back

if TYPE_CHECKING:
    from shipyard.bundle import Bundle
    from shipyard.project import Project
    from shipyard.spec import Spec
    from shipyard.tracking import Tracker

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class Version:
    """A registered version resolved to its verified bundle folder."""

    number: int
    run_id: str
    bundle: Path


def parse_selector(selector: str | int, model: str) -> int | str:
    """``3``, ``flights/3``, ``models:/flights/3`` → 3; ``champion``/``challenger`` as is.

    >>> parse_selector("models:/flights/3", "flights"), parse_selector("champion", "flights")
    (3, 'champion')
    """
    text = str(selector).strip()
    if text in ("champion", "challenger"):
        return text
    found = re.fullmatch(r"(?:models:/)?(?:(?P<name>[^/@]+)[/@])?(?P<number>\d+)", text)
    if found is None:
        raise SpecError(
            f"'{selector}' is not a model version: give a number (3), NAME/3, models:/NAME/3, "
            "champion or challenger."
        )
    name = found.group("name")
    if name is not None and name != model:
        raise SpecError(
            f"'{selector}' is a version of model '{name}'; this project's registered model is "
            f"'{model}' ([project] name in shipyard.toml)."
        )
    return int(found.group("number"))


def resolve(project: Project, tracker: Tracker, selector: str | int) -> Version:
    """The registered version ``selector`` of this project's model, its bundle verified."""
    from shipyard.bundle import verify

    model = project.spec.project.name
    wanted = parse_selector(selector, model)
    if isinstance(wanted, str):
        number = project.registry.state().aliases()[wanted]
        if number is None:
            raise SpecError(f"'{model}' has no {wanted} yet; see `shipyard models`.")
        wanted = number
    versions = {int(v.version): v for v in tracker.versions(model)}
    if wanted not in versions:
        listed = ", ".join(map(str, versions)) or "none yet — run `shipyard train`"
        raise SpecError(
            f"model '{model}' has no version {wanted} in {tracker.uri}; versions: {listed}."
        )
    run_id = versions[wanted].run_id
    folder = project.workspace / "bundles" / run_id
    if not folder.is_dir():  # trained elsewhere: fetch the bundle from the tracking server
        downloaded = tracker.download_bundle(model, wanted, project.workspace / "downloads")
        shutil.copytree(downloaded, folder)
    manifest = verify(folder)
    if manifest.get("run_id") != run_id:
        raise BundleError(
            f"bundle '{folder}' belongs to run {manifest.get('run_id')}, but version {wanted} "
            f"was registered from run {run_id}; it is not this version's bundle."
        )
    return Version(wanted, run_id, folder)


def bundle_for(project: Project, selector: str | int) -> tuple[int, Path]:
    """The version and bundle folder ``selector`` names; deployed ones without MLflow."""
    state = project.registry.state()
    wanted = parse_selector(selector, project.spec.project.name)
    if isinstance(wanted, str):
        number = state.aliases()[wanted]
        if number is None:
            raise SpecError(
                f"'{project.spec.project.name}' has no {wanted} yet: promote a version first "
                "(`shipyard promote VERSION --to ...`), or pass --model VERSION."
            )
        wanted = number
    recorded = state.bundle(wanted)
    if recorded and (project.workspace / recorded).is_dir():
        return wanted, project.workspace / recorded
    return wanted, resolve(project, project.tracker(), wanted).bundle


def _readiness_failures(bundle: Bundle) -> list[str]:
    from shipyard.evaluation.readiness import Readiness

    path = bundle.path / "readiness.json"
    if not path.exists():
        return ["readiness: the bundle carries no readiness checklist (train it again)"]
    readiness = Readiness.from_dict(json.loads(path.read_text()))
    return [f"{i.number}. {i.name}: {i.summary}" for i in readiness.failed]


def newest_test_split(project: Project, bundles: list[Bundle]) -> tuple[Any, Any, Any, Bundle]:
    """Frame, target and roles of the test split of the most recently trained bundle."""
    from shipyard.data.dataset import Dataset
    from shipyard.data.io import read_table
    from shipyard.data.split import make_splits
    from shipyard.spec import Spec

    newest = max(bundles, key=lambda b: b.manifest["created"])
    spec = Spec.from_dict(json.loads((newest.path / "spec.json").read_text()), project.spec.root)
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
    project: Project, candidate: Bundle, champion: Bundle, champion_version: int
) -> dict[str, Any]:
    """Candidate vs champion on the newest test split, overall and per slice."""
    from shipyard.evaluation.readiness import compare_with_champion

    frame, y, ds, newest = newest_test_split(project, [candidate, champion])
    scores = {}
    for name, bundle in (("candidate", candidate), ("champion", champion)):
        missing = [c for c in bundle.features if c not in frame.columns]
        if missing:
            raise DataError(
                f"the {name}'s features {missing} are not in the newest test data "
                f"'{ds.spec.data_path}'; the two versions cannot be compared on it."
            )
        scores[name] = bundle.predict(frame[bundle.features])
    spec = ds.spec
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
        min_improvement=project.spec.objective.min_improvement,
        seed=spec.split.seed,
    )
    out["test_split_of"] = newest.manifest.get("run_id")
    return out


def promote(
    project: Project,
    selector: str | int,
    to: str,
    *,
    percent: float | None = None,
    force: bool = False,
    reason: str | None = None,
    progress: Progress = _quiet,
) -> dict[str, Any]:
    """Gate and promote a version (see the module docstring); returns what happened."""
    from shipyard.bundle import load_bundle

    if force and not (reason and reason.strip()):
        raise SpecError('--force needs --reason "why": the override is recorded in the history.')
    started = time.perf_counter()
    registry = project.registry
    progress("resolving the version")
    tracker = project.tracker()
    who = actor()
    outcome: dict[str, Any] = {}

    def change(state: Deployment) -> Deployment:
        version = resolve(project, tracker, selector)
        bundle = load_bundle(version.bundle)
        progress("checking the gates")
        failures = _readiness_failures(bundle)
        if version.number in state.rolled_back:
            failures.append(
                f"rolled back: version {version.number} was rolled back; it does not return "
                "silently"
            )
        versus = None
        if to == "champion" and state.champion not in (None, version.number):
            progress(f"scoring v{version.number} and champion v{state.champion} on the newest test")
            champion_path = _bundle_path(project, tracker, state, state.champion)
            versus = versus_champion(project, bundle, load_bundle(champion_path), state.champion)
            if not versus["beats_champion"]:
                failures.append(
                    f"beats the champion: {versus['metric']} {versus['candidate']:.4f} vs "
                    f"champion v{state.champion} {versus['champion']:.4f} on the newest test "
                    f"split ({versus['rows']:,} rows): {versus['improvement']:+.4f}, needs "
                    f"≥ {versus['min_improvement']:g}"
                )
            if versus["regressed_slices"]:
                failures.append(
                    "no slice regresses against the champion: "
                    + ", ".join(versus["regressed_slices"])
                )
        outcome.update(version=version.number, failures=failures, versus=versus)
        if failures and not force:
            raise CheckFailed(
                f"promotion of version {version.number} to {to} refused; failed:\n"
                + "\n".join(f"  - {f}" for f in failures)
                + '\nFix these and train again, or override with --force --reason "…" '
                "(recorded in the history)."
            )
        step = (
            percent
            if to != "canary" or percent is not None
            else next_canary_percent(state, version.number, project.spec.serving.canary_steps)
        )
        return promoted(
            state,
            version.number,
            to,
            actor=who,
            percent=step,
            bundle=version.bundle.relative_to(project.workspace).as_posix(),
            reason=reason,
            forced=failures if force and failures else None,
            evidence={"versus_champion": versus} if versus else None,
        )

    before, after = registry.update(f"promote {selector} --to {to}", change)
    outcome["committed_seconds"] = time.perf_counter() - started
    outcome.update(before=before.summary(), after=after.summary(), revision=after.revision)
    outcome["aliases"] = _mirror(after, tracker, progress)
    return outcome


def rollback(
    project: Project, *, reason: str | None = None, progress: Progress = _quiet
) -> dict[str, Any]:
    """Champion back to the previous champion (see :func:`rollback_spec`)."""
    return rollback_spec(project.spec, reason=reason, progress=progress)


def rollback_spec(
    spec: Spec, *, reason: str | None = None, progress: Progress = _quiet
) -> dict[str, Any]:
    """Champion back to the previous champion: committed from the spec alone — no pandas,
    no MLflow — in milliseconds; MLflow's aliases are mirrored after the commit."""
    from shipyard.registry import Registry
    from shipyard.spec import WORKSPACE
    from shipyard.tracking import Tracker, resolve_uri

    started = time.perf_counter()
    workspace = spec.root / WORKSPACE
    registry = Registry(workspace / "deployment", spec.project.name)
    before, after = registry.update(
        "rollback", lambda state: rolled_back(state, actor=actor(), reason=reason)
    )
    committed = time.perf_counter() - started
    outcome: dict[str, Any] = {
        "before": before.summary(),
        "after": after.summary(),
        "rolled_back": before.champion,
        "revision": after.revision,
        "committed_seconds": committed,
    }
    progress("mirroring MLflow aliases")
    try:
        tracker = Tracker(
            resolve_uri(spec.tracking.uri, workspace),
            spec.tracking.experiment or spec.project.name,
            artifact_root=workspace / "mlartifacts",
        )
        outcome["aliases"] = _mirror(after, tracker, progress)
    except ShipyardError as exc:
        outcome["aliases"] = [f"not mirrored ({exc}); `shipyard models` repairs them"]
    return outcome


def _mirror(state: Deployment, tracker: Tracker, progress: Progress) -> list[str]:
    from shipyard.registry import sync_aliases

    progress("mirroring MLflow aliases")
    return sync_aliases(state, tracker)


def _bundle_path(project: Project, tracker: Tracker, state: Deployment, number: int) -> Path:
    recorded = state.bundle(number)
    if recorded and (project.workspace / recorded).is_dir():
        return project.workspace / recorded
    return resolve(project, tracker, number).bundle


def models(project: Project) -> dict[str, Any]:
    """Every registered version with its metrics, readiness and role; aliases repaired."""
    tracker = project.tracker()
    model = project.spec.project.name
    state = project.registry.state()
    repairs = _mirror(state, tracker, _quiet)
    by_version: dict[int, list[str]] = {}
    for alias, number in tracker.aliases(model).items():
        by_version.setdefault(number, []).append(alias)
    rows = []
    for mv in tracker.versions(model):
        number = int(mv.version)
        run = tracker.get_run(mv.run_id) if mv.run_id else None
        metrics = run.data.metrics if run else {}
        tags = run.data.tags if run else {}
        metric = (run.data.params.get("metric") if run else None) or project.spec.objective.metric
        readiness = _bundle_readiness(project.workspace / "bundles" / (mv.run_id or ""))
        rows.append(
            {
                "version": number,
                "run_id": mv.run_id,
                "created": time.strftime(
                    "%m-%d %H:%M", time.localtime(mv.creation_timestamp / 1000)
                ),
                "chosen": tags.get("chosen_rung"),
                "metric": metric,
                "dev": metrics.get(f"dev_{metric}"),
                "test": metrics.get(f"test_{metric}"),
                "snapshot": (tags.get("data_snapshot_id") or "")[:12],
                "ready": None if readiness is None else readiness["passed"],
                "failed": []
                if readiness is None
                else [i["name"] for i in readiness["items"] if not i["passed"]],
                "role": state.role(number),
                "aliases": sorted(by_version.get(number, [])),
            }
        )
    return {
        "model": model,
        "state": {
            **state.summary(),
            "revision": state.revision,
            "file": str(project.registry.path),
        },
        "versions": rows,
        "history": list(state.history),
        "repairs": repairs,
    }


def _bundle_readiness(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / "readiness.json").read_text())
    except (OSError, ValueError):
        return None
