"""The workspace: the ``.shipyard/`` folder beside ``shipyard.toml`` and what lives in it.

This is the one place that knows the layout; everything else asks the :class:`Workspace`::

    .shipyard/
        contract.json               the contract ``check`` learned from the spec's data
        reports/                    check reports (``check-<snapshot>.json``)
        bundles/<run id>/           one verified bundle per training run
        training/<token>.json       a training in flight: its owner process, run and bundle
        deployment/<model>.json     the deployment record (and its ``.lock``)
        logs/date=YYYY-MM-DD/       the prediction log (Parquet parts)
        labels/labels.parquet       delayed labels ingested by ``shipyard labels``
        labels/feedback/date=…/     labels the service received (``POST /feedback``)
        mlflow.db, mlartifacts/     the embedded MLflow store, when no tracking URI is set
        downloads/                  bundles fetched from a tracking server

It opens the deployment record (:attr:`Workspace.registry`), finds a version's bundle in one
way (:meth:`Workspace.bundle`) and makes a tracker (:meth:`Workspace.tracker`). Importing it
imports neither pandas nor MLflow, so ``rollback`` and the service's start-up stay light.
Deleting ``.shipyard/`` resets the project.

>>> ws = Workspace(Path("/proj"), "flights")
>>> ws.bundles.as_posix(), ws.registry.path.as_posix()
('/proj/.shipyard/bundles', '/proj/.shipyard/deployment/flights.json')
>>> parse_selector("models:/flights/3", "flights"), parse_selector("champion", "flights")
(3, 'champion')
"""

from __future__ import annotations

import functools
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from shipyard.errors import BundleError, DeploymentError, SpecError, WorkspaceError
from shipyard.registry import Registry

if TYPE_CHECKING:
    from shipyard.spec import Spec
    from shipyard.tracking import Tracker
    from shipyard.tracking_worker import RemoteTracker

NAME = ".shipyard"  # the project's state folder, beside shipyard.toml


def parse_selector(selector: str | int, model: str) -> int | str:
    """``3``, ``flights/3``, ``models:/flights/3`` → 3; ``champion``/``challenger`` as is."""
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


@dataclass(frozen=True)
class Located:
    """A version's bundle folder; ``run_id`` when it was checked against MLflow's registry."""

    number: int
    path: Path
    run_id: str | None = None


class Workspace:
    """The ``.shipyard/`` folder of one project (see the module docstring)."""

    def __init__(
        self,
        root: Path | str,
        model: str,
        *,
        tracking_uri: str | None = None,
        experiment: str | None = None,
    ) -> None:
        self.root = Path(root)
        self.model = model
        self.tracking_uri_setting = tracking_uri
        self.experiment = experiment or model
        self.folder = self.root / NAME

    @classmethod
    def of(cls, spec: Spec) -> Workspace:
        """The workspace of a loaded spec (beside its ``shipyard.toml``)."""
        return cls(
            spec.root,
            spec.project.name,
            tracking_uri=spec.tracking.uri,
            experiment=spec.tracking.experiment,
        )

    def __repr__(self) -> str:
        return f"Workspace({str(self.folder)!r}, model={self.model!r})"

    # --- the layout -----------------------------------------------------------------------

    @property
    def contract_path(self) -> Path:
        return self.folder / "contract.json"

    @property
    def reports(self) -> Path:
        return self.folder / "reports"

    @property
    def bundles(self) -> Path:
        return self.folder / "bundles"

    @property
    def trainings(self) -> Path:
        """Markers of trainings in flight (see :mod:`shipyard.leftovers`)."""
        return self.folder / "training"

    @property
    def deployment(self) -> Path:
        return self.folder / "deployment"

    @property
    def logs(self) -> Path:
        return self.folder / "logs"

    @property
    def labels(self) -> Path:
        return self.folder / "labels"

    @property
    def feedback(self) -> Path:
        return self.labels / "feedback"

    @property
    def artifacts(self) -> Path:
        return self.folder / "mlartifacts"

    @property
    def downloads(self) -> Path:
        return self.folder / "downloads"

    def run_bundle(self, run_id: str) -> Path:
        """Where the bundle of training run ``run_id`` lives."""
        return self.bundles / run_id

    def relative(self, path: Path) -> str:
        """``path`` as the deployment record stores it: relative to the workspace folder."""
        return Path(path).resolve().relative_to(self.folder.resolve()).as_posix()

    def inside(self, recorded: str) -> Path:
        """The folder a recorded (relative) bundle path names; refused if it leaves the
        workspace (a hand-edited record must not point the service at other files)."""
        path = (self.folder / recorded).resolve()
        if not path.is_relative_to(self.folder.resolve()):
            raise WorkspaceError(
                f"the deployment record names the bundle folder '{recorded}', which is outside "
                f"'{self.folder}'. Restore the record ({self.registry.path}) from a backup, or "
                "promote the version again."
            )
        return path

    # --- what lives in it -----------------------------------------------------------------

    @functools.cached_property
    def registry(self) -> Registry:
        """The deployment record of this project's model."""
        return Registry(self.deployment, self.model)

    def tracking_uri(self) -> str:
        """Precedence: ``MLFLOW_TRACKING_URI`` > ``[tracking] uri`` > SQLite in the folder."""
        from shipyard.tracking import resolve_uri

        return resolve_uri(self.tracking_uri_setting, self.folder)

    def tracker(self, warm: bool = False) -> Tracker:
        """The MLflow tracker of this project (a server URI is probed first)."""
        from shipyard.tracking import Tracker

        return Tracker(
            self.tracking_uri(), self.experiment, artifact_root=self.artifacts, warm=warm
        )

    def training_tracker(self) -> RemoteTracker:
        """A training run's tracker, in a process of its own (see ``tracking_worker``)."""
        from shipyard.tracking_worker import RemoteTracker

        return RemoteTracker(self.tracking_uri(), self.experiment, artifact_root=self.artifacts)

    def bundle(
        self, selector: str | int, *, tracker: Tracker | None = None, registered: bool = False
    ) -> Located:
        """The bundle of a version: ``3``, ``NAME/3``, ``models:/NAME/3``, ``champion`` or
        ``challenger``.

        A version the deployment record names is found there without MLflow. Otherwise, or
        with ``registered``, MLflow's registry says which run the version came from; its
        bundle is this workspace's copy, or is downloaded from the tracking server, and its
        manifest must name that run.
        """
        wanted = parse_selector(selector, self.model)
        if isinstance(wanted, str):
            number = self.registry.state().aliases()[wanted]
            if number is None:
                raise DeploymentError(
                    f"'{self.model}' has no {wanted} yet: promote a version first "
                    f"(`shipyard promote VERSION --to {'champion' if wanted == 'champion' else 'shadow'}`)"
                    ", or name a version (e.g. --model 1); `shipyard models` lists them."
                )
            wanted = number
        if not registered:
            recorded = self.registry.state().bundle(wanted)
            if recorded is not None:
                path = self.inside(recorded)
                if path.is_dir():
                    return Located(wanted, path)
        return self._registered(wanted, tracker or self.tracker())

    def _registered(self, number: int, tracker: Tracker) -> Located:
        from shipyard.bundle import verify

        versions = {v.number: v for v in tracker.versions(self.model)}
        if number not in versions:
            listed = ", ".join(map(str, versions)) or "none yet — run `shipyard train`"
            raise SpecError(
                f"model '{self.model}' has no version {number} in {tracker.uri}; versions: {listed}."
            )
        run_id = versions[number].run_id
        if run_id is None:
            raise BundleError(
                f"version {number} of '{self.model}' names no training run in {tracker.uri}, so "
                "its bundle cannot be found; register it again with `shipyard train`."
            )
        folder = self.run_bundle(run_id)
        if not folder.is_dir():  # trained elsewhere: fetch the bundle from the tracking server
            downloaded = tracker.download_bundle(self.model, number, self.downloads)
            shutil.copytree(downloaded, folder)
        manifest = verify(folder)
        if manifest.get("run_id") != run_id:
            raise BundleError(
                f"bundle '{folder}' belongs to run {manifest.get('run_id')}, but version {number} "
                f"was registered from run {run_id}; it is not this version's bundle."
            )
        return Located(number, folder, run_id)
