"""Retraining on served data: the spec's data plus the labeled production records.

``shipyard retrain`` (:meth:`shipyard.project.Project.retrain`) is log-and-replay: the rows
added to the data are the feature values the service logged for the champion's answers
(``serving/log.py``), one row per request id, joined with their ingested labels
(``monitoring/labels.py``) by request id, so the new model learns from what it will be
served. Shadow rows (copies of a request) and failed answers are left out. When the spec
has a ``[project] time`` column, it is the log's time of the answer (to the microsecond:
answers served within one second still order), or under ``[monitoring] clock = "event"``
the request's own logged time, the one monitor windows it by; an ``[project] id`` column is
the logged entity id.

The window is ``[retrain] window`` (or ``--window``) back from the newest answer in the
log, or everything from ``--since``. Two rules guard freshness (:func:`freshness_problems`):
the newest labeled record may be no older than ``[constraints] max_data_age_days``, and at
least ``[retrain] min_labeled_share`` of the window's answers must carry a label.

:func:`write_training_data` keeps the combined rows as a Parquet file under
``.shipyard/retrain/`` named by its content, with a JSON note of where its rows came from;
the retrained version's spec names that file as its data, so its test split can be rebuilt
(promotion against a champion, ``reproduce``, the model report) like any other version's.

:func:`due` says whether ``shipyard monitor --retrain`` should retrain (``[retrain] when``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from shipyard.errors import CheckFailed, DataError, UsageError
from shipyard.spec import SPAN_PATTERN

if TYPE_CHECKING:
    from shipyard.bundle import Bundle
    from shipyard.data.io import Table
    from shipyard.spec import Spec
    from shipyard.training import TrainResult
    from shipyard.workspace import Workspace

FOLDER = "retrain"
N_EXAMPLES = 5
_DAY = 86_400.0


def span_seconds(text: str, option: str = "--window") -> float:
    """A span of hours or days (``12h``, ``90d``) in seconds.

    >>> span_seconds("90d"), span_seconds("12h")
    (7776000.0, 43200.0)
    """
    found = re.fullmatch(SPAN_PATTERN, str(text))
    if found is None:
        raise UsageError(
            f"{option} {text!r} is not a span of time: give hours (12h) or days (90d)."
        )
    return int(found.group("count")) * (3600.0 if found.group("unit") == "h" else _DAY)


@dataclass
class Served:
    """The champion's answers in one window of the log, and the labeled ones as data rows."""

    rows: pd.DataFrame  # labeled answers: features, target, time and id as the data has them
    window_start: str | None
    window_end: str | None
    answered: int  # the champion's answers in the window, one per request id
    labeled: int
    newest_label: str | None  # the log time of the newest labeled answer
    newest_label_age_days: float | None
    foreign_labels: int = 0  # stored labels whose request id no logged answer holds
    foreign_examples: list[str] = field(default_factory=list)

    @property
    def labeled_share(self) -> float:
        return self.labeled / self.answered if self.answered else 0.0

    def describe(self) -> str:
        return f"from {self.window_start} to {self.window_end}"


def _iso(stamp: Any) -> str | None:
    return None if stamp is None or pd.isna(stamp) else pd.Timestamp(stamp).isoformat()


def served_records(
    spec: Spec,
    workspace: Workspace,
    champion: Bundle,
    data: pd.DataFrame,
    *,
    since: str | None,
    window: str,
    now: dt.datetime,
) -> Served:
    """The labeled champion answers of the window, as rows of ``data``'s columns.

    Raises
    ------
    CheckFailed
        The window holds no labeled answer (the message says whether the stored labels
        name requests this log never answered: labels of another model or service).
    DataError
        There is no prediction log, or a label is a class the data does not hold.
    """
    from shipyard.monitoring.labels import read_labels
    from shipyard.monitoring.monitor import parse_time
    from shipyard.serving.log import PREFIX, feature_types, read_log

    if not workspace.logs.is_dir():
        raise CheckFailed(
            f"no labeled production records in the window: there is no prediction log at "
            f"'{workspace.logs}'. Serve the champion (`shipyard serve`) and ingest labels "
            "(`shipyard labels FILE`) before retraining on served data."
        )
    since_us = parse_time(since, "--since")
    seconds = span_seconds(window)
    types = feature_types(champion.contract, champion.features)
    day = None if since_us is None else (pd.Timestamp(since_us, unit="us", tz="UTC").date())
    log = read_log(workspace.logs, since=day, types=types).to_pandas()
    answers = log[(log["arm"] == "champion") & log["error"].isna()]
    answers = answers.drop_duplicates("request_id", keep="first")
    if since_us is not None:
        start = pd.Timestamp(since_us, unit="us", tz="UTC")
        answers = answers[answers["time"] >= start]
    elif len(answers):
        start = answers["time"].max() - pd.Timedelta(seconds=seconds)
        answers = answers[answers["time"] > start]
    else:
        start = None
    end = answers["time"].max() if len(answers) else None
    labels = read_labels(workspace).to_pandas()
    keyed = labels[labels["request_id"].notna()][["request_id", "label", "outcome"]]
    labeled = answers.merge(keyed, on="request_id", how="inner")
    served = Served(
        rows=pd.DataFrame(),
        window_start=_iso(start),
        window_end=_iso(end),
        answered=len(answers),
        labeled=len(labeled),
        newest_label=None,
        newest_label_age_days=None,
    )
    every_request = set(read_log(workspace.logs, columns=["request_id"])["request_id"].to_pylist())
    foreign = keyed["request_id"][~keyed["request_id"].isin(every_request)]
    served.foreign_labels = len(foreign)
    served.foreign_examples = sorted(foreign.astype(str))[:N_EXAMPLES]
    if not len(labeled):
        raise CheckFailed(_nothing_labeled(served, len(keyed), workspace))
    newest = labeled["time"].max()
    served.newest_label = _iso(newest)
    served.newest_label_age_days = (pd.Timestamp(now) - newest).total_seconds() / _DAY
    served.rows = _as_data_rows(labeled, data, spec, PREFIX)
    return served


def _nothing_labeled(served: Served, stored: int, workspace: Workspace) -> str:
    where = served.describe() if served.answered else "of the prediction log"
    text = (
        f"no labeled production records in the window {where}: the champion answered "
        f"{served.answered:,} request(s) there, none with a label."
    )
    if served.foreign_labels:
        return text + (
            f" {served.foreign_labels:,} of the {stored:,} stored labels name request ids that "
            f"match no logged answer (e.g. {', '.join(served.foreign_examples)}): they are "
            "labels of a different model or service. Ingest the labels of this service's "
            "requests (`shipyard labels FILE`)."
        )
    return text + (
        " Ingest the labels of those requests (`shipyard labels FILE`), or widen the window "
        "(--window, --since)."
    )


def _as_data_rows(
    labeled: pd.DataFrame, data: pd.DataFrame, spec: Spec, prefix: str
) -> pd.DataFrame:
    """The labeled answers with ``data``'s columns and dtypes: the logged features, the
    label as the target, the answer's time as ``[project] time`` (on the event clock, the
    request's own, logged as a feature), the entity as ``id``; columns the log does not
    hold (excluded ones, say) are missing."""
    target, time, entity = spec.project.target, spec.project.time, spec.project.id
    out = pd.DataFrame(index=range(len(labeled)))
    labeled = labeled.reset_index(drop=True)
    for column in data.columns:
        if column == target:
            values = _targets(labeled, data[target], spec)
        elif (
            column == time
            and spec.monitoring.clock == "logged"
            and not pd.api.types.is_numeric_dtype(data[column].dtype)
        ):
            values = labeled["time"]  # a time as a number (a year) is a logged feature
        elif column == entity:
            values = labeled["entity_id"]
        elif prefix + str(column) in labeled.columns:
            values = labeled[prefix + str(column)]
        else:
            values = pd.Series(np.nan, index=out.index)
        out[column] = _like(values, data[column])
    return out


def _targets(labeled: pd.DataFrame, target: pd.Series, spec: Spec) -> pd.Series:
    """Each label as a value of the data's target column."""
    from shipyard.data.contract import category_key

    if spec.project.task == "regression":
        return labeled["outcome"].astype(float)
    classes = {category_key(v): v for v in pd.unique(target.dropna())}
    unknown = sorted(set(labeled["label"]) - set(classes))
    if unknown:
        raise DataError(
            f"labels {', '.join(map(repr, unknown[:N_EXAMPLES]))} are not classes of the "
            f"target '{spec.project.target}' in the data (it holds "
            f"{', '.join(sorted(classes))}); fix the labels, or add the class to the data."
        )
    return labeled["label"].map(classes)


def _like(values: pd.Series, column: pd.Series) -> pd.Series:
    """``values`` in the dtype of the data's ``column`` where it can hold them: a datetime
    in the data's time zone (or none), a time the data writes as text as ISO 8601 text,
    numbers as floats, anything else as Python objects."""
    values = values.reset_index(drop=True)
    if pd.api.types.is_datetime64_any_dtype(values.dtype) and not (
        pd.api.types.is_datetime64_any_dtype(column.dtype)
    ):  # a time the data keeps as text: ISO 8601 in UTC, as the values parser reads it
        stamps = pd.to_datetime(values, utc=True)
        fraction = stamps.dt.strftime(".%f").where(stamps.dt.microsecond > 0, "")
        text = stamps.dt.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"  # whole seconds as ever
        return text.astype(object).where(values.notna(), None)
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        stamps = pd.to_datetime(values, utc=True)
        zone = getattr(column.dtype, "tz", None)
        stamps = stamps.dt.tz_convert(zone) if zone is not None else stamps.dt.tz_localize(None)
        return stamps.astype(column.dtype)
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
        return pd.to_numeric(values, errors="coerce")
    # booleans, categories and text: Python objects, missing as None, as pandas joins them
    return values.astype(object).where(values.notna(), None)


def freshness_problems(served: Served, spec: Spec) -> list[str]:
    """What the freshness guard refuses: the newest labeled record older than ``[constraints]
    max_data_age_days``, or fewer labeled answers than ``[retrain] min_labeled_share``."""
    problems = []
    limit = spec.constraints.max_data_age_days
    age = served.newest_label_age_days
    if limit is not None and age is not None and age > limit:
        problems.append(
            f"the newest labeled production record ({served.newest_label}) is {age:,.1f} days "
            f"old, over [constraints] max_data_age_days = {limit:g}"
        )
    least = spec.retrain.min_labeled_share
    if served.labeled_share < least:
        problems.append(
            f"{served.labeled:,} of the {served.answered:,} answered requests in the window "
            f"{served.describe()} carry a label ({served.labeled_share:.1%}), below [retrain] "
            f"min_labeled_share = {least:g}"
        )
    return problems


def refuse_stale(problems: list[str]) -> CheckFailed:
    return CheckFailed(
        "retraining refused: the production data is not fresh enough:\n"
        + "\n".join(f"  - {p}" for p in problems)
        + "\nIngest fresher labels (`shipyard labels FILE`), or retrain deliberately with "
        '--allow-stale --reason "…" (recorded in the run).'
    )


def source_snapshot(bundle: Bundle, root: Path) -> str | None:
    """The snapshot of the spec's data file a version was trained from: its own snapshot,
    or, for a retrained version, that of the data file its training data was combined from
    (the note beside that data; ``root`` is the spec's folder)."""
    recorded = json.loads((bundle.path / "spec.json").read_text())
    data = Path(str((recorded.get("project") or {}).get("data") or ""))
    if data.parent.name == FOLDER and data.name.startswith("data-"):
        try:
            note = json.loads((root / data).with_suffix(".json").read_text())
            return str(note["data_snapshot_id"])
        except (OSError, ValueError, KeyError):
            return None
    snapshot = bundle.manifest.get("snapshot_id")
    return None if snapshot is None else str(snapshot)


def write_training_data(
    workspace: Workspace, data: Table, served: Served, note: dict[str, Any]
) -> tuple[Path, bool]:
    """The data file's rows and the served rows as one Parquet file under
    ``.shipyard/retrain/``, named by the hash of its content, with ``note`` beside it (JSON);
    its path, and whether it is new (the same rows again name the file already there)."""
    from shipyard.files import atomic_path, atomic_write

    combined = pd.concat([data.frame, served.rows], ignore_index=True)
    folder = workspace.folder / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    try:
        digest = hashlib.sha256(
            pd.util.hash_pandas_object(combined.astype(str), index=False).to_numpy().tobytes()
        ).hexdigest()[:16]
        path = folder / f"data-{digest}.parquet"
        if path.exists() and path.with_suffix(".json").exists():
            return path, False
        with atomic_path(path) as temporary:
            combined.to_parquet(temporary, index=False)
    except (TypeError, ValueError, ArithmeticError) as exc:  # pyarrow's errors subclass these
        raise DataError(
            f"the data file's rows and the logged rows do not fit one table ({exc}); check "
            "that the champion's features have the data file's types."
        ) from exc
    atomic_write(path.with_suffix(".json"), json.dumps(note, indent=1, default=str))
    return path, True


@dataclass
class RetrainResult:
    """What one ``shipyard retrain`` did: the training, the served rows it added and the
    freshness guard's verdict, and whether the new version became the shadow challenger."""

    train: TrainResult
    data: str  # the combined training data (Parquet under .shipyard/retrain/)
    data_rows: int  # rows of the spec's data file
    added_rows: int  # labeled production records added from the log
    window: str
    window_start: str | None
    window_end: str | None
    answered: int
    labeled_share: float
    newest_label: str | None
    newest_label_age_days: float | None
    stale: list[str]  # freshness problems overridden with --allow-stale
    allow_stale: bool
    reason: str | None
    data_snapshot_id: str  # of the spec's data file now
    champion_data_snapshot_id: str | None
    promoted: dict[str, Any] | None  # PromoteResult.to_dict() when it became the shadow
    failures: list[str] = field(default_factory=list)  # gates that kept it out of shadow
    warnings: list[str] = field(default_factory=list)

    @property
    def data_changed(self) -> bool:
        return (
            self.champion_data_snapshot_id is not None
            and self.champion_data_snapshot_id != self.data_snapshot_id
        )

    @property
    def exit_code(self) -> int:
        return 1 if self.promoted is None else 0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["train"] = self.train.to_dict()
        out.update(data_changed=self.data_changed, exit_code=self.exit_code)
        return out


def tags(
    served: Served, window: str, stale: list[str], reason: str | None, data: str
) -> dict[str, str]:
    """The run's tags that mark it a retrain (MLflow tag values are text)."""
    return {
        "shipyard_retrain": "true",
        "retrain_window": window,
        "retrain_window_start": str(served.window_start),
        "retrain_window_end": str(served.window_end),
        "retrain_rows_added": str(len(served.rows)),
        "retrain_answered": str(served.answered),
        "retrain_labeled_share": f"{served.labeled_share:.4f}",
        "retrain_newest_label_age_days": f"{served.newest_label_age_days:.2f}",
        "retrain_allow_stale": "true" if stale else "false",
        "retrain_stale_reason": reason or "",
        "retrain_stale_problems": " | ".join(stale),
        "retrain_data_snapshot_id": data,
    }


def due(spec: Spec, alerts: int, champion_created: str | None, now: dt.datetime) -> list[str]:
    """Why ``shipyard monitor --retrain`` retrains now (empty: it does not), by the
    triggers in ``[retrain] when``: ``alert`` (the monitor raised ``alerts``) and ``age``
    (the champion was trained more than ``max_champion_age_days`` ago)."""
    reasons = []
    when = spec.retrain.when
    if "alert" in when and alerts:
        reasons.append(f"monitoring raised {alerts} alert(s)")
    limit = spec.retrain.max_champion_age_days
    if "age" in when and limit is not None and champion_created:
        age = (now - dt.datetime.fromisoformat(champion_created)).total_seconds() / _DAY
        if age > limit:
            reasons.append(
                f"the champion is {age:,.1f} days old, over [retrain] max_champion_age_days "
                f"= {limit:g}"
            )
    return reasons
