"""``shipyard init``: infer a project from a data file and write a commented ``shipyard.toml``.

The written file is meant to be read and edited: every section says what it is for, the
inferred role of every column is listed, and the suggestions (entity key, time column,
exclusions) say why they were made.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from shipyard.data.dataset import NON_FEATURE_ROLES, Dataset, default_positive
from shipyard.data.roles import ColumnProfile, profile, to_datetime
from shipyard.data.split import recurring_entity_share
from shipyard.errors import DataError, SpecError, WorkspaceError
from shipyard.evaluation.metrics import RELATIVE_METRICS
from shipyard.features.transform import calendar_parts
from shipyard.files import atomic_write
from shipyard.spec import DEFAULT_METRIC, TASKS, Spec

_TIME_NAMES = ("time", "date", "timestamp", "created", "at")


@dataclass
class Inferred:
    """What ``init`` inferred about a data set."""

    target: str
    task: str
    positive: object = None
    id: str | None = None
    time: str | None = None
    time_parts: tuple[str, ...] = ()  # the time column's calendar parts over all rows
    exclude: dict[str, str] = field(default_factory=dict)  # column -> why
    slices: list[str] = field(default_factory=list)
    recurring: float = 0.0  # share of later rows whose entity was seen before the train cut
    profiles: dict[str, ColumnProfile] = field(default_factory=dict)


def infer_task(y: pd.Series) -> str:
    """binary for two classes, regression for many numeric values, else multiclass.

    >>> infer_task(pd.Series([0.5, 1.25, 3.0, 4.5] * 10))
    'regression'
    >>> infer_task(pd.Series(["a", "b", "a"]))
    'binary'
    """
    values = y.dropna()
    n_unique = values.nunique()
    if n_unique == 2:
        return "binary"
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric and (n_unique > 20 or not (values % 1 == 0).all()):
        return "regression"
    return "multiclass"


def infer(frame: pd.DataFrame, target: str, task: str | None = None) -> Inferred:
    """Infer task, column roles, entity key, time column and exclusions."""
    if target not in frame.columns:
        close = difflib.get_close_matches(target, list(frame.columns), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise DataError(
            f"target column '{target}' is not in the data.{hint} "
            f"Columns: {', '.join(map(str, frame.columns[:30]))}."
        )
    y = frame[target]
    if y.isna().all():
        raise DataError(
            f"target column '{target}' is empty in every row; pick the column holding the labels."
        )
    if task is not None and task not in TASKS:
        raise SpecError(f"--task must be one of {', '.join(TASKS)}; got {task!r}")
    task = task or infer_task(y)
    if task != "regression" and y.nunique() < 2:
        raise DataError(
            f"target column '{target}' has a single class ({y.dropna().iloc[0]!r}); "
            "a classification task needs at least two."
        )
    if task == "regression" and (
        not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y)
    ):
        raise DataError(
            f"target column '{target}' must be numeric for task 'regression'; got {y.dtype}. "
            "Use --task binary or --task multiclass."
        )
    profiles = profile(frame.drop(columns=[target]))
    out = Inferred(target=target, task=task, profiles=profiles)
    if task == "binary":
        out.positive = _positive_value(default_positive(list(pd.unique(y.dropna()))))
    ids = [c for c, p in profiles.items() if p.role == "id"]
    repeated = [c for c in ids if frame[c].duplicated().any()]
    out.id = next(iter(repeated or ids), None)
    times = [c for c, p in profiles.items() if p.role == "datetime"]
    times.sort(key=lambda c: not any(k in c.lower() for k in _TIME_NAMES))
    out.time = times[0] if times else None
    if out.time:
        out.time_parts = calendar_parts(to_datetime(frame[out.time]))
    for col, prof in profiles.items():
        if prof.role in NON_FEATURE_ROLES and col != out.id:
            out.exclude[col] = {
                "index": "a row number",
                "constant": "a single value",
                "text": "free text",
                "id": "an id-like key",
            }[prof.role]
    if out.id and out.time:
        probe = Spec.from_dict(
            {"project": {"target": target, "task": task, "id": out.id, "time": out.time}}
        )
        out.recurring = recurring_entity_share(Dataset(frame, probe))
    out.slices = [
        c
        for c, p in profiles.items()
        if p.role in ("categorical", "boolean") and 2 <= p.n_unique <= 10
    ][:3]
    return out


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def _shown(name: object) -> str:
    """A column name as a comment may hold it: one line, control characters escaped."""
    text = str(name)
    if text.isprintable():
        return text
    return json.dumps(text, ensure_ascii=False)[1:-1]


def _positive_value(value: object) -> object:
    if hasattr(value, "item"):
        value = value.item()
    return value if isinstance(value, bool | int | str) else str(value)


def _purge_lines(inf: Inferred) -> list[str]:
    if not (inf.id and inf.time):
        return []
    if inf.recurring > 0.5:
        return [
            f"# {inf.recurring:.0%} of rows after the train cut belong to a '{_shown(inf.id)}' seen before it:",
            "# purging them would leave little to test on. Entities recur in production too,",
            "# so a time split keeps them (the key itself is never a feature).",
            "purge_entities = false",
        ]
    return ["purge_entities = true   # a time split drops later rows of entities seen earlier"]


def _time_feature_lines(inf: Inferred) -> list[str]:
    """What the time column gives the model, and how to turn it off."""
    if not inf.time:
        return []
    shown = _shown(inf.time)
    parts = ", ".join(p.replace("_", " ") for p in inf.time_parts)
    return [
        f"# '{shown}' is also a feature, through its calendar (in UTC): {parts}.",
        "# Each part only if the train split spans its cycle (a year for month and day of",
        "# year); never the date itself: a time split's test rows all lie after train.",
        f'# To train without them, add "{shown}" to [features] exclude.',
    ]


def render(inferred: Inferred, data_path: str, name: str) -> str:
    """The text of a commented ``shipyard.toml``."""
    inf = inferred
    roles = "\n".join(
        f"#   {_shown(c):<24} {p.role:<12} {p.n_unique:>8,} distinct  {p.null_rate:6.1%} missing"
        for c, p in inf.profiles.items()
    )
    lines = [
        "# shipyard.toml: written by `shipyard init`; read it, edit it, keep it in version control.",
        "# The objective and its constraints are decided here, before any model is trained.",
        "",
        "[project]",
        f"name = {_toml(name)}",
        f"task = {_toml(inf.task)}          # binary, multiclass or regression",
        f"target = {_toml(inf.target)}",
        f"data = {_toml(data_path)}",
    ]
    if inf.positive is not None:
        lines.append(f"positive = {_toml(_positive_value(inf.positive))}   # the class to detect")
    lines.append(
        f"id = {_toml(inf.id)}   # entity key: rows of one entity never straddle splits"
        if inf.id
        else '# id = "customer_id"   # entity key, if rows repeat an entity'
    )
    lines.append(
        f"time = {_toml(inf.time)}   # moment of prediction: enables time splits and freshness"
        if inf.time
        else '# time = "event_time"   # moment of prediction, if the data has one'
    )
    lines += _time_feature_lines(inf)
    metric = DEFAULT_METRIC[inf.task]
    metrics = (
        "roc_auc, log_loss, pr_auc, f1, accuracy" if inf.task != "regression" else "rmse, mae, r2"
    )
    lines += [
        "",
        "# Column roles as inferred (id, index, text and constant columns are not features):",
        roles,
        "",
        "[objective]",
        f"metric = {_toml(metric)}   # the one optimizing metric: {metrics}",
        "min_improvement = 0.005   # a more complex model must beat a simpler one by this much"
        + (
            " (for rmse and mae: a share of the constant baseline's value, 0.005 = 0.5%;"
            " for r2: in its units)"
            if metric in RELATIVE_METRICS
            else f" ({metric} units)"
        ),
        "",
        "[constraints]   # satisficing: a candidate must meet every one set here",
        "# p99_latency_ms = 10.0     # one-record prediction latency",
        "# max_model_mb = 50.0",
    ]
    if inf.task != "regression":
        lines.append("# max_ece = 0.05           # expected calibration error")
    lines += [
        "# max_slice_gap = 0.05     # worst slice vs overall metric, 0.10 when unset"
        + (
            " (for rmse and mae: a share of the constant baseline's value on test, judged at"
            " the better end of the slice's 95% interval)"
            if metric in RELATIVE_METRICS
            else f" ({metric} units)"
        ),
        "# max_data_age_days = 30   # refuse stale training data (needs project.time)",
        "",
        "[features]",
        "# include = []   # when set, only these columns are features",
        f"exclude = {_toml(list(inf.exclude))}",
    ]
    for col, why in inf.exclude.items():
        lines.append(f"#   {_shown(col)}: {why}")
    lines += [
        "sensitive = []   # columns whose slices must not regress (e.g. age band, gender)",
        f"slices = {_toml(inf.slices)}   # report metrics per value of these columns",
        'unknown = "bucket"   # unseen categories: "bucket" (one UNKNOWN) or "hash"',
        "# hash_buckets = 1024",
        "",
        "[baseline]",
        "# rule = \"tenure < 6 and contract == 'Month-to-month'\"   # the heuristic to beat",
        "",
        "[split]",
        'strategy = "auto"   # auto: time if project.time, group if project.id repeats, '
        "else stratified/random",
        "train = 0.7",
        "dev = 0.15",
        "test = 0.15",
        "eyeball = 0.2   # share of dev kept for reading errors by hand (not model selection)",
        "seed = 42",
        *_purge_lines(inf),
        "",
        "[serving]",
        "canary_steps = [5, 10, 25, 50, 100]   # percents `promote --to canary` steps through",
        "# canary guardrails, on the last `guardrail_window` canary requests: a breach rolls back",
        "max_error_rate = 0.02",
        "max_p99_ratio = 3.0          # canary p99 latency over the champion's",
        "max_prediction_shift = 0.5   # |mean difference| in champion standard deviations",
        "max_records = 1000           # per request",
        "log_flush_seconds = 1.0      # a killed server loses at most this much of its log;",
        "#                             a shadow scores each request this long after it",
        "",
        "# [robustness]   # train tests the model on perturbed test rows (sampled, seeded)",
        "# rows = 2000          # at most this many test rows",
        "# tolerance = 0.01     # a prediction moved by more counts as changed",
        "# max_changed_share = 0.01   # swapping a sensitive column may change this share",
        "",
        "# [[expectations]]   # how the prediction should move as a numeric feature increases",
        '# feature = "tenure"',
        '# direction = "decreases"   # or "increases"',
        "",
        "[tracking]",
        '# uri = "http://127.0.0.1:5000"   # default: a SQLite store under .shipyard/',
        f"experiment = {_toml(name)}",
        "",
    ]
    return "\n".join(lines)


def write_spec(
    frame: pd.DataFrame,
    data: Path,
    target: str,
    out: Path,
    task: str | None = None,
    force: bool = False,
) -> Inferred:
    """Infer and write ``out``; refuses to overwrite an existing file unless ``force``."""
    if out.exists() and not force:
        raise WorkspaceError(f"'{out}' already exists; pass --force to overwrite it.")
    inferred = infer(frame, target, task)
    try:
        data_path = os.path.relpath(data.resolve(), out.resolve().parent)
    except ValueError:
        data_path = str(data.resolve())
    name = out.resolve().parent.name or "shipyard-project"
    text = render(inferred, data_path, name)
    try:  # what is written must read back as exactly what was inferred
        back = tomllib.loads(text)["project"]
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(
            f"could not write a valid shipyard.toml for this data ({exc}); nothing was written"
        ) from exc
    if back.get("target") != inferred.target or back.get("id") != inferred.id:
        raise SpecError(
            "the column names of this data do not survive a round trip through TOML; "
            "rename the columns (no control characters) — nothing was written"
        )
    atomic_write(out, text)
    return inferred
