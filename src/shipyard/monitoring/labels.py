"""Labels: delayed outcomes joined to logged predictions, kept in the workspace.

Labels arrive days or weeks after a prediction, as a file (``shipyard labels FILE``,
:func:`ingest`) or through the service (``POST /feedback``, ``serving/feedback.py``). Either
way each label is typed and checked against the deployed model's target (:class:`Vocabulary`, through ``data/values.py``): a regression target takes numbers, a
classifier one of its classes (as the contract knows a category: ``1``, ``1.0`` and
``True`` are one class; a boolean-like target takes every boolean spelling).

A file names each prediction by ``request_id`` (what the service answered), or by the
spec's entity ``id`` plus a ``time``: then the label belongs to that entity's latest logged
prediction (champion or canary) at or before the time. The label column is named as the
spec's target, or ``label``.

The store is one Parquet file, ``.shipyard/labels/labels.parquet``, rewritten atomically
(``files.py``). Its rows are keyed by what the file gave (the request id, or the entity and
time), and the rule for a key seen before is: **the same label changes nothing; a different
label from a later ingestion replaces the earlier one** (counted as ``replaced``). So the
same file ingested twice writes nothing. Within one file, one key with two different labels
is an error naming the keys. The service's feedback goes to its own batched, atomic parts
(``.shipyard/labels/feedback/``), and :func:`read_labels` reads both: the latest label of
each request wins, whichever way it came.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.bundle import MANIFEST
from shipyard.errors import DataError, DeploymentError, ShipyardError
from shipyard.serving.log import read_log

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from shipyard.spec import Spec
    from shipyard.workspace import Workspace

STORE = "labels.parquet"
N_EXAMPLES = 5
_ENTITY_TIME = "entity_id+time"


class Vocabulary:
    """What a label of one target may be: ``parse(value) -> (label, outcome)``.

    ``label`` is the class as text (a regression's number as text), ``outcome`` the number
    monitoring scores with: the value (regression), 1.0 for the positive class and 0.0 for
    the other (binary), NaN (multiclass).

    >>> v = Vocabulary("binary", ["No", "Yes"])
    >>> v.parse("Yes"), v.parse("No")
    (('Yes', 1.0), ('No', 0.0))
    >>> Vocabulary("binary", [0, 1]).parse("yes"), Vocabulary("regression", []).parse(" 2.5 ")
    (('1', 1.0), ('2.5', 2.5))
    >>> Vocabulary("multiclass", ["a", "b", "c"]).parse("d")
    Traceback (most recent call last):
    shipyard.data.values.ValueTypeError: 'd' is not a class of the target; classes: a, b, c
    """

    def __init__(self, task: str, classes: list[Any]) -> None:
        from shipyard.data.contract import category_key
        from shipyard.data.values import is_boolean, to_bool

        self.task = task
        self.keys = [category_key(c) for c in classes]
        self._positive = self.keys[-1] if task == "binary" and self.keys else None
        # a target whose classes are both booleans in some spelling takes every spelling
        self._by_truth: dict[bool, str] = {}
        if task == "binary" and len(classes) == 2 and all(is_boolean(c) for c in classes):
            truths = [to_bool(c) for c in classes]
            if set(truths) == {True, False}:
                self._by_truth = {
                    t: k for t, k in zip(truths, self.keys, strict=True) if t is not None
                }

    def describe(self) -> str:
        """What a label must be, as a message says it."""
        if self.task == "regression":
            return "a number"
        return "one of the classes " + ", ".join(self.keys)

    def parse(self, value: Any) -> tuple[str, float]:
        """The label and outcome of one value; :class:`ValueTypeError` when it is not one."""
        from shipyard.data.contract import category_key
        from shipyard.data.values import ValueTypeError, is_null, to_bool, to_number

        if value is None or (not isinstance(value, str) and is_null(value)):
            raise ValueTypeError("the label is missing")
        if self.task == "regression":
            number = to_number(value)
            if math.isnan(number):
                raise ValueTypeError(f"{value!r} is not a number (a label must be finite)")
            return (str(int(number)) if number.is_integer() else repr(number)), number
        key = category_key(value.strip() if isinstance(value, str) else value)
        if key not in self.keys and self._by_truth:
            try:
                truth = to_bool(value)
            except ValueTypeError:
                truth = None
            if truth is not None:
                key = self._by_truth[truth]
        if key not in self.keys:
            raise ValueTypeError(
                f"{value!r} is not a class of the target; classes: {', '.join(self.keys)}"
            )
        if self.task == "binary":
            return key, 1.0 if key == self._positive else 0.0
        return key, math.nan


def vocabulary(spec: Spec, workspace: Workspace) -> Vocabulary:
    """The vocabulary of the champion's target (its bundle's task and classes)."""
    import json

    if spec.project.task == "regression":
        return Vocabulary("regression", [])
    try:
        located = workspace.bundle("champion")
    except ShipyardError as exc:
        raise DeploymentError(
            f"labels are checked against the champion's classes, and there is none: {exc}"
        ) from exc
    manifest = json.loads((located.path / MANIFEST).read_text())
    return Vocabulary(manifest["task"], list(manifest.get("classes") or []))


@dataclass
class LabelsResult:
    """What ``shipyard labels FILE`` did."""

    source: str
    key: str  # "request_id" or "entity_id+time"
    label_column: str
    rows: int
    duplicates: int  # rows repeating another row's key and label (kept once)
    added: int
    replaced: int
    unchanged: int
    matched: int
    unmatched: int
    stored: int  # labels in the store afterwards
    path: str
    written: bool
    unmatched_examples: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _problem(column: str, bad: pd.Series, total: int, rule: str, fix: str) -> str:
    """A message naming the column, the first bad value and its row, and the count."""
    first = bad.index[0]
    return (
        f"column '{column}' {rule}; got {bad.iloc[0]!r} in {len(bad):,} of {total:,} rows "
        f"(first at row {first + 2}, counting the header as row 1). {fix}"
    )


def entity_and_time(columns: Sequence[Any], spec: Spec, what: str) -> tuple[str, str]:
    """The entity id and time columns of a file without ``request_id``: the spec's
    ``[project] id``, and its ``[project] time`` when the file has it, else ``time``;
    a :class:`DataError` naming what is missing (``what`` names the file).

    >>> from types import SimpleNamespace as NS
    >>> entity_and_time(["cust", "time"], NS(project=NS(id="cust", time="at")), "a file")
    ('cust', 'time')
    """
    entity = spec.project.id
    when = spec.project.time or "time"
    when = when if when in columns else "time"
    if entity is None or entity not in columns or when not in columns:
        needs = (
            f"'{entity}' (the spec's [project] id) and '{when}'"
            if entity
            else "an entity id and a time"
        )
        raise DataError(
            f"{what} needs a 'request_id' column, or {needs}; its columns are "
            f"{', '.join(map(str, columns))}. Add the column(s)."
        )
    return entity, when


def _keys(frame: pd.DataFrame, spec: Spec) -> tuple[str, pd.DataFrame]:
    """The key kind and a frame of request_id / entity_id / time, validated."""
    import pandas as pd

    from shipyard.data.values import to_datetime

    n = len(frame)
    entity = spec.project.id
    if "request_id" in frame.columns:
        ids = frame["request_id"]
        missing = ids[ids.isna() | (ids.astype(str).str.strip() == "")]
        if len(missing):
            raise DataError(
                _problem("request_id", missing, n, "must name a request", "Fill in every id.")
            )
        out = pd.DataFrame({"request_id": ids.astype(str).str.strip()})
        out["entity_id"] = frame[entity].astype("string") if entity in frame.columns else None
        out["time"] = pd.NaT
        out["key"] = out["request_id"]
        return "request_id", out
    entity, when = entity_and_time(list(frame.columns), spec, "a labels file")
    entities = frame[entity]
    missing = entities[entities.isna()]
    if len(missing):
        raise DataError(_problem(entity, missing, n, "must name an entity", "Fill in every id."))
    stamps = to_datetime(frame[when])
    bad = frame[when][stamps.isna()]
    if len(bad):
        raise DataError(
            _problem(
                str(when),
                bad,
                n,
                "must hold a date-time",
                "Write ISO 8601 times (2024-05-01T12:00:00Z).",
            )
        )
    out = pd.DataFrame({"request_id": pd.Series([None] * n, dtype="string", index=frame.index)})
    out["entity_id"] = entities.astype(str)
    out["time"] = stamps.dt.as_unit("us")
    out["key"] = out["entity_id"] + "@" + stamps.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return _ENTITY_TIME, out


def _parse_labels(
    values: pd.Series, column: str, vocab: Vocabulary
) -> tuple[list[str], list[float]]:
    """Each value's (label, outcome), one parse per distinct value; every bad value is an
    error naming the column, the value and its row."""
    import pandas as pd

    from shipyard.data.values import ValueTypeError

    parsed: dict[Any, tuple[str, float] | str] = {}
    labels, outcomes, bad_rows = [], [], []
    for position, value in zip(values.index, values.tolist(), strict=True):
        hashable = value if not isinstance(value, float) or not math.isnan(value) else None
        if hashable not in parsed:
            try:
                parsed[hashable] = vocab.parse(value)
            except ValueTypeError as exc:
                parsed[hashable] = str(exc)
        hit = parsed[hashable]
        if isinstance(hit, str):
            bad_rows.append(position)
            labels.append("")
            outcomes.append(math.nan)
        else:
            labels.append(hit[0])
            outcomes.append(hit[1])
    if bad_rows:
        bad = values.loc[bad_rows]
        reason = parsed[bad.iloc[0] if not pd.isna(bad.iloc[0]) else None]
        raise DataError(
            _problem(
                column,
                bad,
                len(values),
                f"must be {vocab.describe()} ({reason})",
                "Fix the labels, or retrain if the target's classes changed.",
            )
        )
    return labels, outcomes


def _match(kind: str, rows: pd.DataFrame, logs: Path) -> tuple[pd.Series, list[str]]:
    """Which rows name a logged prediction (and, by entity and time, which request)."""
    import pandas as pd

    warnings = []
    if not logs.is_dir():
        warnings.append(f"no prediction log at {logs} yet: every label is unmatched for now")
        return pd.Series(False, index=rows.index), warnings
    logged = read_log(logs, columns=["request_id", "entity_id", "arm"]).to_pandas()
    if kind == "request_id":
        return rows["request_id"].isin(set(logged["request_id"])), warnings
    served = logged[logged["arm"] != "shadow"].dropna(subset=["entity_id"])
    served = served.assign(time=served["time"].dt.tz_convert("UTC").astype("datetime64[us, UTC]"))
    left = rows.reset_index().sort_values("time")
    joined = pd.merge_asof(
        left,
        served[["time", "entity_id", "request_id"]].sort_values("time"),
        on="time",
        by="entity_id",
        direction="backward",
        suffixes=("", "_logged"),
    ).set_index("index")
    rows["request_id"] = joined["request_id_logged"].reindex(rows.index).astype("string")
    return rows["request_id"].notna(), warnings


def _store_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("key", pa.string()),
            ("request_id", pa.string()),
            ("entity_id", pa.string()),
            ("time", pa.timestamp("us", tz="UTC")),
            ("label", pa.string()),
            ("outcome", pa.float64()),
            ("source", pa.string()),
            ("ingested_at", pa.timestamp("us", tz="UTC")),
        ]
    )


def _read_store(path: Path) -> pa.Table:
    import pyarrow.parquet as pq

    if not path.exists():
        return _store_schema().empty_table()
    with pq.ParquetFile(path) as file:
        return file.read().cast(_store_schema())


def ingest(path: Path | str, spec: Spec, workspace: Workspace) -> LabelsResult:
    """Validate a labels file and merge it into the workspace's store (see the module
    docstring for the rules); nothing is written when it is refused or changes nothing.

    Raises
    ------
    DataError
        Missing columns, a label of the wrong type or an unknown class, a key without a
        value, or one key given two different labels (each message names them).
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from shipyard.data.io import read_table
    from shipyard.files import atomic_path

    source = Path(path)
    frame = read_table(source).frame.reset_index(drop=True)
    target = spec.project.target
    column = target if target in frame.columns else "label" if "label" in frame.columns else None
    if column is None:
        raise DataError(
            f"'{source}' has no label column: name it '{target}' (the spec's target) or "
            f"'label'; its columns are {', '.join(map(str, frame.columns))}."
        )
    kind, rows = _keys(frame, spec)
    vocab = vocabulary(spec, workspace)
    rows["label"], rows["outcome"] = _parse_labels(frame[column], column, vocab)

    same = rows.duplicated(subset=["key", "label"])
    duplicates = int(same.sum())
    rows = rows[~same]
    conflicting = rows["key"][rows["key"].duplicated(keep=False)]
    if len(conflicting):
        names = sorted(set(conflicting))
        shown = ", ".join(names[:N_EXAMPLES]) + (
            f" and {len(names) - N_EXAMPLES:,} more" if len(names) > N_EXAMPLES else ""
        )
        raise DataError(
            f"'{source}' gives {len(names):,} {'request' if kind == 'request_id' else 'entity and time'}"
            f"(s) two different labels: {shown}. Keep one label for each."
        )
    matched, warnings = _match(kind, rows, workspace.logs)
    unmatched_keys = rows["key"][~matched].tolist()
    if unmatched_keys:
        warnings.append(
            f"{len(unmatched_keys):,} of {len(rows):,} labels name no logged prediction "
            "(no prediction of the entity at or before the time), "
            f"e.g. {', '.join(unmatched_keys[:N_EXAMPLES])}; they are kept and join once the predictions are logged"
            if kind == _ENTITY_TIME
            else f"{len(unmatched_keys):,} of {len(rows):,} labels name request ids the prediction log "
            f"does not hold, e.g. {', '.join(unmatched_keys[:N_EXAMPLES])}; check they come from this service"
        )

    store_path = workspace.labels / STORE
    old = _read_store(store_path).to_pandas()
    now = pd.Timestamp(dt.datetime.now(dt.UTC)).as_unit("us")
    new = pd.DataFrame(
        {
            "key": rows["key"].astype(str),
            "request_id": rows["request_id"].astype("string"),
            "entity_id": rows["entity_id"].astype("string"),
            "time": pd.to_datetime(rows["time"], utc=True).dt.as_unit("us"),
            "label": rows["label"].astype(str),
            "outcome": rows["outcome"].astype(float),
            "source": source.name,
            "ingested_at": now,
        }
    )
    before = old.set_index("key")
    seen = new["key"].isin(before.index)
    compared = new[seen].set_index("key")
    was = before.loc[compared.index]
    same_label = (compared["label"] == was["label"]) & (
        compared["request_id"].fillna("") == was["request_id"].fillna("")
    )
    unchanged = int(same_label.sum())
    replaced_keys = set(compared.index[~same_label.to_numpy()])
    added = int((~seen).sum())
    changed = new[~seen | new["key"].isin(replaced_keys)]
    written = bool(len(changed))
    if written:
        kept = old[~old["key"].isin(set(changed["key"]))]
        merged = pd.concat([kept, changed], ignore_index=True).sort_values("key", kind="stable")
        table = pa.Table.from_pandas(merged, schema=_store_schema(), preserve_index=False)
        with atomic_path(store_path) as temporary:
            pq.write_table(table, temporary)
        stored = len(merged)
    else:
        stored = len(old)
    return LabelsResult(
        source=str(source),
        key=kind,
        label_column=column,
        rows=len(frame),
        duplicates=duplicates,
        added=added,
        replaced=len(replaced_keys),
        unchanged=unchanged,
        matched=int(matched.sum()),
        unmatched=len(unmatched_keys),
        stored=stored,
        path=str(store_path),
        written=written,
        unmatched_examples=unmatched_keys[:N_EXAMPLES],
        warnings=warnings,
    )


def read_labels(workspace: Workspace) -> pa.Table:
    """Every label the workspace holds (the store and the service's feedback), one per
    request: the latest ingested or received wins. Columns: request_id, entity_id, time,
    label, outcome, source (the file's name, or ``feedback``), ingested_at (when it was
    ingested or received). Labels no logged prediction matched by entity and time have no
    request_id; feedback has no entity_id and no time."""
    import pandas as pd
    import pyarrow as pa

    from shipyard.serving.feedback import read_feedback

    frames = [_read_store(workspace.labels / STORE).to_pandas().drop(columns=["key"])]
    received = read_feedback(workspace.feedback).to_pandas()
    frames.append(
        received.rename(columns={"time": "ingested_at"}).assign(
            entity_id=None, time=pd.NaT, source="feedback"
        )
    )
    frames = [f for f in frames if len(f)]
    schema = _store_schema().remove(0)
    if not frames:
        return schema.empty_table()
    every = pd.concat(frames, ignore_index=True).sort_values("ingested_at", kind="stable")
    keyed = every[every["request_id"].notna()].drop_duplicates("request_id", keep="last")
    kept = pd.concat([keyed, every[every["request_id"].isna()]], ignore_index=True)
    kept["time"] = pd.to_datetime(kept["time"], utc=True).dt.as_unit("us")
    kept["ingested_at"] = pd.to_datetime(kept["ingested_at"], utc=True).dt.as_unit("us")
    return pa.Table.from_pandas(kept[schema.names], schema=schema, preserve_index=False)
