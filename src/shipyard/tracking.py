"""Tracking and the model registry: the one module that talks to MLflow.

Embedded default: a SQLite store and an artifact folder under ``.shipyard/``; any tracking
URI (a team's MLflow server) from ``[tracking] uri`` or ``MLFLOW_TRACKING_URI``. MLflow's
exceptions are translated here into :class:`TrackingError`.

A server URI is probed before anything is logged, so an unreachable server fails fast with
its address named, and nothing is half-registered. A SQLite store that does not exist yet is
built by :func:`build_sqlite_store` (MLflow's own migrations, without waiting for the disk,
run once per schema revision on a machine: later new stores are copies of that result).
MLflow's usage telemetry is off unless ``MLFLOW_DISABLE_TELEMETRY`` says otherwise: it would
send records to a third party from every command.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from shipyard.errors import ShipyardError, TrackingError, UsageError

F = TypeVar("F", bound=Callable[..., Any])

LOADER = Path(__file__).parent / "resources" / "pyfunc_loader.py"
# Fail fast rather than retry for minutes against a server that is not there.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no tqdm bar on stderr


@dataclass(frozen=True)
class RunRecord:
    """A tracked run as shipyard reads it (MLflow's own objects stay in this module)."""

    run_id: str
    start_time: int  # milliseconds since 1970
    status: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RegisteredVersion:
    """One registered version of a model: its number, the run it came from, when."""

    number: int
    run_id: str | None
    created: int  # milliseconds since 1970


def _run_record(run: Any) -> RunRecord:
    return RunRecord(
        run_id=run.info.run_id,
        start_time=int(run.info.start_time or 0),
        status=str(run.info.status),
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
        tags=dict(run.data.tags),
    )


def _translated(what: str) -> Callable[[F], F]:
    """MLflow's exceptions (any type) become :class:`TrackingError` naming ``what`` failed."""

    def wrap(method: F) -> F:
        @functools.wraps(method)
        def call(self: Tracker, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except ShipyardError:
                raise
            except Exception as exc:
                raise TrackingError(f"{what} failed at {self.uri}: {exc}") from exc

        return call  # type: ignore[return-value]

    return wrap


def resolve_uri(configured: str | None, workspace: Path) -> str:
    """Precedence: ``MLFLOW_TRACKING_URI`` > ``[tracking] uri`` > SQLite under ``.shipyard/``."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    if configured:
        return configured
    workspace.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(workspace / 'mlflow.db').resolve()}"


def probe(uri: str, timeout: float = 5.0) -> None:
    """Raise :class:`TrackingError` unless an http(s) tracking server answers its health check."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
            if response.status >= 400:
                raise TrackingError(f"tracking server {uri} answered HTTP {response.status}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise TrackingError(
            f"tracking URI {uri} cannot be reached ({getattr(exc, 'reason', exc)}). Start the "
            "MLflow server, or fix [tracking] uri in shipyard.toml / MLFLOW_TRACKING_URI."
        ) from exc


def sqlite_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` URI (None for any other store, or an in-memory one).

    >>> sqlite_path("sqlite:////tmp/a/mlflow.db")
    PosixPath('/tmp/a/mlflow.db')
    >>> sqlite_path("http://127.0.0.1:5000") is None
    True
    """
    rest = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else ""
    if not rest or rest == ":memory:" or "?" in rest:
        return None
    return Path(rest)


def store_cache() -> Path:
    """Where migrated empty stores are kept for the next new store: ``$XDG_CACHE_HOME/shipyard``
    (``~/.cache/shipyard`` by default)."""
    root = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(root) if root else Path.home() / ".cache") / "shipyard"


def _revision(path: Path) -> str | None:
    """The Alembic revision a SQLite store records (None: no readable revision)."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            row = db.execute("select version_num from alembic_version").fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else str(row[0])


def build_sqlite_store(path: Path) -> str | None:
    """Create the SQLite store ``path`` with MLflow's current schema, unless it exists.

    MLflow builds a new store by running its Alembic migrations: some 430 schema statements
    and about 200 migration modules to import (~4 s of CPU on this machine, ~6 s more when
    every statement waits for the disk under SQLite's default ``synchronous = FULL``). So:

    - the first store built for an MLflow schema revision runs them in a temporary file
      beside the store, with syncing off and the journal in memory, and keeps a copy of the
      result in :func:`store_cache` (``mlflow-<version>-<revision>.db``);
    - every later new store is a copy of that file (milliseconds), used only when it
      records the revision MLflow expects now.

    Either way the file is synced once, then hard-linked into place: a crash leaves no store
    (the next run builds it again) or a whole one, never a half-migrated one, and of two
    processes building the same store at once one wins and both use its file. The schema is
    MLflow's own (its migrations ran); MLflow verifies its revision when it opens the store.

    Returns ``"migrated"`` or ``"copied"`` (how this call built the store), None when the
    store exists. Anything unexpected (MLflow's internals moved, a file system without hard
    links, a cache that cannot be written) leaves the work to the next step down: a failed
    copy migrates, a failed migration leaves the store to MLflow, which migrates the usual
    way when it opens it.
    """
    if path.exists():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.building")
    try:
        import mlflow
        from mlflow.store.db.utils import _get_latest_schema_revision

        head = _get_latest_schema_revision()
        template = store_cache() / f"mlflow-{mlflow.__version__}-{head}.db"
        how = "copied"
        if not (_revision(template) == head and _copy(template, temporary)):
            how = "migrated"
            _migrate(temporary)
            _keep(temporary, template)
        with temporary.open("rb+") as file:
            os.fsync(file.fileno())
        os.link(temporary, path)  # fails if the store appeared meanwhile: that one is used
        return how
    except Exception:  # an optimization only: MLflow migrates the store itself when it opens it
        return None
    finally:
        temporary.unlink(missing_ok=True)


def _copy(source: Path, target: Path) -> bool:
    """Copy the cached store; False (and nothing left at ``target``) when that fails."""
    try:
        shutil.copyfile(source, target)
        return True
    except OSError:
        target.unlink(missing_ok=True)
        return False


def _migrate(path: Path) -> None:
    """Run MLflow's migrations into a new SQLite file, syncing off, journal in memory."""
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables, _verify_schema

    engine = sqlalchemy.create_engine(f"sqlite:///{path}")

    def unsynced(connection: Any, _record: Any) -> None:
        connection.execute("PRAGMA synchronous = OFF")
        connection.execute("PRAGMA journal_mode = MEMORY")

    sqlalchemy.event.listen(engine, "connect", unsynced)
    try:
        _initialize_tables(engine)
        _verify_schema(engine)
    finally:
        engine.dispose()


def _keep(store: Path, template: Path) -> None:
    """Keep a copy of a freshly migrated (still empty) store as the cache's template, put in
    place whole (a temporary name, then renamed); a cache that cannot be written is skipped."""
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        partial = template.with_name(f".{template.name}.{os.getpid()}.{os.urandom(4).hex()}")
        try:
            shutil.copyfile(store, partial)
            os.replace(partial, template)
        finally:
            partial.unlink(missing_ok=True)
    except OSError:
        return


def import_mlflow() -> Any:
    """Import MLflow (seconds of Python) and quiet its loggers (importing it sets its own
    logger to INFO); returns the module."""
    import mlflow

    _quiet_logs()
    return mlflow


def _quiet_logs() -> None:
    import logging

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _warm_up() -> None:
    """Pay MLflow's one-off costs now (the Tracker is built in the background while models
    fit): the scan of installed packages behind pip requirements, and plotting's imports and
    first drawing (its fonts: 0.1 s the run's first figure would otherwise wait for)."""
    try:
        import io

        import numpy as np
        from mlflow.utils import requirements_utils

        requirements_utils._init_packages_to_modules_map()
        import mlflow.pyfunc  # noqa: F401

        from shipyard.evaluation import plots

        figure = plots.roc_figure(np.array([0, 1]), np.array([0.2, 0.7]), "warm-up")
        figure.savefig(io.BytesIO(), format="png")
        plots.close(figure)
    except Exception:  # an optimization only: never fail tracking because of it
        return


class Tracker:
    """An MLflow experiment with one parent run per ``train`` and nested runs per rung."""

    def __init__(
        self, uri: str, experiment: str, artifact_root: Path | None = None, warm: bool = False
    ) -> None:
        probe(uri)
        mlflow = import_mlflow()
        from mlflow.tracking import MlflowClient

        self.mlflow = mlflow
        self.uri = uri
        try:
            # mlflow.set_tracking_uri also writes MLFLOW_TRACKING_URI into os.environ; put the
            # user's value back so the stated precedence holds for the next project in-process.
            before = os.environ.get("MLFLOW_TRACKING_URI")
            mlflow.set_tracking_uri(uri)
            if (store := sqlite_path(uri)) is not None:
                build_sqlite_store(store)
            if before is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = before
            self.client = MlflowClient(uri)
            found = self.client.get_experiment_by_name(experiment)
            if found is None:
                location = (
                    artifact_root.resolve().as_uri()
                    if artifact_root and uri.startswith("sqlite")
                    else None
                )
                self.experiment_id = self.client.create_experiment(
                    experiment, artifact_location=location
                )
            else:
                self.experiment_id = found.experiment_id
        except Exception as exc:
            raise TrackingError(f"cannot use tracking URI {uri}: {exc}") from exc
        self.experiment = experiment
        if warm:  # about to log a model: pay MLflow's one-off costs now (in the background)
            _warm_up()

    @contextmanager
    def run(
        self, name: str, nested: bool = False, tags: Mapping[str, str] | None = None
    ) -> Iterator[str]:
        """Start a run (nested under the active one if ``nested``); yields its id."""
        try:
            active = self.mlflow.start_run(
                experiment_id=self.experiment_id,
                run_name=name,
                nested=nested,
                tags=dict(tags or {}),
            )
        except Exception as exc:
            raise TrackingError(f"starting a run failed at {self.uri}: {exc}") from exc
        with active:
            yield active.info.run_id

    # --- logging (into the active run) ----------------------------------------------------

    @_translated("logging parameters")
    def params(self, values: Mapping[str, Any]) -> None:
        flat = {
            k: (json.dumps(v, default=str) if isinstance(v, dict | list | tuple) else v)
            for k, v in values.items()
        }
        self.mlflow.log_params({k: str(v)[:6000] for k, v in flat.items()})

    @_translated("logging metrics")
    def metrics(self, values: Mapping[str, float], step: int | None = None) -> None:
        clean = {_metric_key(k): float(v) for k, v in values.items() if v is not None}
        self.mlflow.log_metrics(clean, step=step)

    @_translated("logging a curve")
    def curve(self, name: str, values: list[float]) -> None:
        """A learning curve as step metrics."""
        import time

        from mlflow.entities import Metric

        active = self.mlflow.active_run()
        if active is None:
            raise TrackingError("a learning curve is logged inside a run; none is active")
        run_id = active.info.run_id
        now = int(time.time() * 1000)
        batch = [Metric(_metric_key(name), float(v), now, i) for i, v in enumerate(values)]
        for start in range(0, len(batch), 1000):
            self.client.log_batch(run_id, metrics=batch[start : start + 1000])

    @_translated("tagging the run")
    def tags(self, values: Mapping[str, Any]) -> None:
        """Set tags on the active run; a None value is not set (it would read "None")."""
        self.mlflow.set_tags({k: str(v) for k, v in values.items() if v is not None})

    @_translated("logging a document")
    def json(self, document: Any, path: str) -> None:
        self.mlflow.log_dict(json.loads(json.dumps(document, default=str)), path)

    @_translated("logging a figure")
    def figure(self, figure: Any, path: str) -> None:
        self.mlflow.log_figure(figure, path)

    def plot(self, kind: str, path: str, title: str, *data: Any) -> None:
        """Log the figure ``shipyard.evaluation.plots.<kind>_figure(*data, title)`` draws."""
        from shipyard.evaluation import plots

        figure = getattr(plots, f"{kind}_figure")(*data, title)
        try:
            self.figure(figure, path)
        finally:
            plots.close(figure)

    @_translated("logging a file")
    def file(self, path: Path | str, folder: str | None = None) -> None:
        """Log a file as it is (the model report) into the active run, under ``folder``."""
        self.mlflow.log_artifact(str(path), folder)

    @_translated("logging a table")
    def table(self, frame: Any, path: str) -> None:
        with tempfile.TemporaryDirectory() as folder:
            file = Path(folder) / Path(path).name
            frame.to_parquet(file, index=False) if path.endswith(".parquet") else frame.to_csv(
                file, index=False
            )
            self.mlflow.log_artifact(str(file), str(Path(path).parent) if "/" in path else None)

    def log_bundle(
        self, bundle: Path, registered_model: str, input_example: Any = None
    ) -> int | None:
        """Log the bundle as a pickle-free pyfunc model and register a new version.

        The model's signature is the bundle's ``signature.json``: MLflow could only infer it
        by running the model on an example (and warned on every train when it could not).
        """
        import warnings

        from shipyard import __version__

        signature = model_signature(json.loads((bundle / "signature.json").read_text()))
        try:
            with warnings.catch_warnings():
                # Given a signature and no example, MLflow advises an example "to ensure the
                # signature functions correctly": the signature is the bundle's own, exact.
                warnings.filterwarnings("ignore", message=".*An input example was not provided")
                info = self.mlflow.pyfunc.log_model(
                    name="model",
                    python_model=str(LOADER),
                    artifacts={"bundle": str(bundle)},
                    pip_requirements=[f"shipyard=={__version__}"],
                    signature=signature,
                    input_example=input_example,
                    registered_model_name=registered_model,
                )
        except Exception as exc:
            raise TrackingError(f"logging the model to {self.uri} failed: {exc}") from exc
        version = getattr(info, "registered_model_version", None)
        return int(version) if version is not None else None

    # --- reading ------------------------------------------------------------------------

    @_translated("listing runs")
    def runs(self, max_results: int = 50) -> list[RunRecord]:
        """Training runs of the experiment, newest first."""
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string="tags.shipyard_kind = 'train'",
            order_by=["attributes.start_time DESC"],
            max_results=max_results,
        )
        return [_run_record(run) for run in found]

    @_translated("finding the run")
    def resolve_run(self, prefix: str) -> str:
        """The full id of the one training run whose id starts with ``prefix``.

        Raises :class:`UsageError` when no run, or more than one, matches.
        """
        wanted = prefix.strip().lower()
        if not wanted:
            raise UsageError("give a run id (or a prefix of one): see `shipyard runs`")
        matches: list[str] = []
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id],
                filter_string="tags.shipyard_kind = 'train'",
                max_results=1000,
                page_token=token,
            )
            matches += [r.info.run_id for r in page if r.info.run_id.lower().startswith(wanted)]
            token = page.token
            if not token:
                break
        if not matches:
            raise UsageError(
                f"no run '{prefix}' in {self.uri} (no training run's id starts with it): see "
                "`shipyard runs`"
            )
        if len(matches) > 1:
            shown = ", ".join(sorted(matches)[:5]) + (", …" if len(matches) > 5 else "")
            raise UsageError(
                f"run id prefix '{prefix}' is ambiguous: {len(matches)} runs match ({shown}). "
                "Give more characters."
            )
        return matches[0]

    def get_run(self, run_id: str) -> RunRecord:
        try:
            return _run_record(self.client.get_run(run_id))
        except Exception as exc:
            raise TrackingError(f"no run '{run_id}' in {self.uri}: {exc}") from exc

    @_translated("marking runs failed")
    def fail_runs(self, marker: str, run_id: str | None = None) -> list[str]:
        """End as FAILED the runs of a training whose process died: those tagged
        ``shipyard_marker = marker``, run ``run_id``, and their nested runs, wherever still
        RUNNING; the ids it ended."""
        from mlflow.exceptions import MlflowException

        found = {
            r.info.run_id: r
            for r in self.client.search_runs(
                [self.experiment_id], filter_string=f"tags.shipyard_marker = '{marker}'"
            )
        }
        if run_id is not None and run_id not in found:
            try:
                found[run_id] = self.client.get_run(run_id)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
        for parent in list(found):
            for child in self.client.search_runs(
                [self.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'"
            ):
                found[child.info.run_id] = child
        ended = []
        for run in found.values():
            if run.info.status == "RUNNING":
                self.client.set_tag(run.info.run_id, "shipyard_ended", "its process died")
                self.client.set_terminated(run.info.run_id, status="FAILED")
                ended.append(run.info.run_id)
        return sorted(ended)

    def download(self, run_id: str, path: str, dest: Path) -> Path:
        try:
            return Path(self.client.download_artifacts(run_id, path, str(dest)))
        except Exception as exc:
            raise TrackingError(f"run '{run_id}' has no artifact '{path}': {exc}") from exc

    # --- the model registry ---------------------------------------------------------------

    def versions(self, model: str) -> list[RegisteredVersion]:
        """Every registered version of ``model``, oldest first (empty if none)."""
        try:
            found = self.client.search_model_versions(f"name = '{model}'")
        except Exception as exc:
            raise TrackingError(f"cannot list versions of '{model}' in {self.uri}: {exc}") from exc
        out = [
            RegisteredVersion(int(v.version), v.run_id or None, int(v.creation_timestamp or 0))
            for v in found
        ]
        return sorted(out, key=lambda v: v.number)

    def aliases(self, model: str) -> dict[str, int]:
        try:
            found = self.client.get_registered_model(model)
        except Exception:
            return {}
        return {alias: int(version) for alias, version in (found.aliases or {}).items()}

    def set_alias(self, model: str, alias: str, version: int) -> None:
        try:
            self.client.set_registered_model_alias(model, alias, str(version))
        except Exception as exc:
            raise TrackingError(f"cannot set alias '{alias}' of '{model}': {exc}") from exc

    def delete_alias(self, model: str, alias: str) -> None:
        try:
            self.client.delete_registered_model_alias(model, alias)
        except Exception as exc:
            raise TrackingError(f"cannot delete alias '{alias}' of '{model}': {exc}") from exc

    def download_bundle(self, model: str, version: int, dest: Path) -> Path:
        """The bundle artifact of a registered version, downloaded into ``dest``."""
        try:
            folder = self.mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{model}/{version}", dst_path=str(dest)
            )
        except Exception as exc:
            raise TrackingError(
                f"cannot download version {version} of '{model}' from {self.uri}: {exc}"
            ) from exc
        return Path(folder) / "artifacts" / "bundle"

    @_translated("finding the logged model")
    def model_uri(self, run_id: str) -> str:
        models = self.client.search_logged_models(
            experiment_ids=[self.experiment_id], filter_string=f"source_run_id = '{run_id}'"
        )
        if not models:
            raise TrackingError(f"run '{run_id}' logged no model")
        return models[0].model_uri


def _mlflow_type(dtype: str | None) -> str | None:
    """MLflow's column type for a contract dtype (MLflow keeps categories as strings)."""
    if dtype is None:
        return None
    if dtype.startswith("datetime64"):
        return "datetime"
    if dtype in ("bool", "boolean"):
        return "boolean"
    if dtype.startswith(("int", "uint", "Int", "UInt")):
        return "long"
    if dtype.startswith(("float", "Float")):
        return "double"
    return "string"  # str, object, category, string


def model_signature(signature: Mapping[str, Any]) -> Any:
    """An ``mlflow.models.ModelSignature`` from a bundle's ``signature.json``: every input
    column with its type. Columns are not ``required`` for MLflow: shipyard's own contract
    decides what a missing or null value means (served with a warning, or refused)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema, TensorSpec

    columns: list[ColSpec | TensorSpec] = []
    for column in signature["inputs"]:
        kind = _mlflow_type(column.get("dtype"))
        columns.append(
            ColSpec(kind if kind is not None else AnyType(), column["name"], required=False)
        )
    return ModelSignature(inputs=Schema(columns))


def _metric_key(name: str) -> str:
    """MLflow metric names allow letters, digits, and _ - . space / only."""
    return "".join(c if c.isalnum() or c in "_-. /" else "_" for c in name)
