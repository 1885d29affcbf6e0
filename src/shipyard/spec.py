"""``shipyard.toml``: the project's objective, constraints and policies, validated on load.

Every key is declared once, in :data:`SECTIONS`, with its type, what is allowed and its
default. Loading checks every key and collects every problem before raising one
:class:`~shipyard.errors.SpecError` that names each key, the value found and what is
allowed; an unknown key gets a "did you mean" hint.

>>> spec = Spec.from_dict({"project": {"target": "churn", "task": "binary"}})
>>> spec.objective.metric, spec.split.strategy
('roc_auc', 'auto')
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shipyard.errors import SpecError

TASKS = ("binary", "multiclass", "regression")
CLASSIFICATION_METRICS = ("roc_auc", "log_loss", "pr_auc", "f1", "accuracy")
REGRESSION_METRICS = ("rmse", "mae", "r2")
DEFAULT_METRIC = {"binary": "roc_auc", "multiclass": "log_loss", "regression": "rmse"}
DIRECTIONS = ("increases", "decreases")
SPLIT_STRATEGIES = ("auto", "random", "stratified", "group", "time")
UNKNOWN_POLICIES = ("bucket", "hash")
#: A monitoring window: hours (``1h``), days (``1d``, ``7d``) or a count of rows (``5000 rows``).
WINDOW_PATTERN = r"\s*(?P<count>[1-9][0-9]*)\s*(?P<unit>h|d|mo|rows?)\s*"
#: A retraining window: hours (``12h``) or days (``90d``).
SPAN_PATTERN = r"\s*(?P<count>[1-9][0-9]*)\s*(?P<unit>h|d)\s*"
#: What ``shipyard monitor --retrain`` retrains on (``[retrain] when``).
RETRAIN_TRIGGERS = ("alert", "age")


@dataclass(frozen=True)
class ProjectSection:
    """What is predicted, from which data, for which entity and at which time."""

    name: str = "shipyard-project"
    task: str = "binary"
    target: str = ""
    data: str = ""
    id: str | None = None
    time: str | None = None
    positive: str | int | bool | None = None


@dataclass(frozen=True)
class ObjectiveSection:
    """The one optimizing metric, and how much better a more complex model must be."""

    metric: str = ""
    min_improvement: float = 0.005


@dataclass(frozen=True)
class ConstraintsSection:
    """Satisficing constraints: a candidate must meet every one that is set."""

    p99_latency_ms: float | None = None
    max_model_mb: float | None = None
    max_ece: float | None = None
    max_slice_gap: float | None = None
    max_data_age_days: float | None = None


@dataclass(frozen=True)
class FeaturesSection:
    """Which columns are features, which are slices or sensitive, unknown-category policy."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    sensitive: tuple[str, ...] = ()
    slices: tuple[str, ...] = ()
    # columns the user confirms are available at the moment of prediction: strong, not leaks
    known_at_prediction: tuple[str, ...] = ()
    unknown: str = "bucket"
    hash_buckets: int = 1024


@dataclass(frozen=True)
class BaselineSection:
    """The heuristic rule the ladder must beat, e.g. ``tenure < 6``."""

    rule: str | None = None


@dataclass(frozen=True)
class SplitSection:
    """How rows are split into train, dev (eyeball + blackbox) and test."""

    strategy: str = "auto"
    train: float = 0.7
    dev: float = 0.15
    test: float = 0.15
    eyeball: float = 0.2
    seed: int = 42
    purge_entities: bool = True


@dataclass(frozen=True)
class TrainingSection:
    """How the ladder's fits use the machine: threads and a time budget per rung."""

    threads: int | None = None  # unset: picked from the cores free at each fit
    max_rung_seconds: float | None = None  # unset: no budget


@dataclass(frozen=True)
class ServingSection:
    """How challengers meet traffic (the canary's percent steps and guardrails) and the
    service's limits and prediction log (``shipyard serve``)."""

    canary_steps: tuple[float, ...] = (5, 10, 25, 50, 100)
    # guardrails, checked on the last `guardrail_window` canary requests (and as many champion
    # ones) once `guardrail_min_requests` arrived; a breach rolls the challenger back
    guardrail_window: int = 500
    guardrail_min_requests: int = 100
    max_error_rate: float = 0.02
    max_p99_ratio: float = 3.0  # canary p99 latency over the champion's
    p99_floor_ms: float = 5.0  # ... counted only when the canary's p99 is above this
    max_prediction_shift: float = 0.5  # |mean difference| in champion standard deviations
    max_records: int = 1000  # per request
    max_body_mb: float = 4.0
    # the cost of one request: how deep its JSON may nest, how long one field's text may be,
    # how many problems a refusal names (the rest are counted) and how large an answer may be
    max_depth: int = 32
    max_string_chars: int = 10_000
    max_problems: int = 20
    max_response_mb: float = 8.0
    # the server's connections (``shipyard serve``): how long a client may take to send a
    # request's headers and its body, how long an idle keep-alive connection stays open, and
    # how many connections are served at once (past it a request gets 503)
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    idle_timeout_seconds: float = 5.0
    max_connections: int = 400
    poll_seconds: float = 2.0  # how often the deployment state is re-read
    shadow_queue: int = 1000  # logged rows waiting for the shadow; beyond, log files are dropped
    log_batch_rows: int = 1000
    log_flush_seconds: float = 1.0
    # the canary that advances itself (the server's watcher): each step serves
    # `advance_min_requests` canary requests (unset: `guardrail_window`) with no breach and,
    # once outcomes are in, no harm by the always-valid test, then moves to the next step
    auto_advance: bool = False
    advance_min_requests: int | None = None
    advance_alpha: float = 0.05
    # the rise of the squared error the test is tuned to find; unset: a quarter of the
    # champion's mean squared error on the same outcomes
    advance_mde: float | None = None
    # the holdout cohort: after a rollout this share of entities stays on the old champion
    holdout_percent: float = 0.0
    holdout_days: float | None = None  # unset: until `promote --end-holdout`


@dataclass(frozen=True)
class MonitoringSection:
    """What ``shipyard monitor`` alerts on: drift significance and effect floors, live data
    quality, volume, latency, metric and calibration limits, staleness, and a webhook."""

    alpha: float = 0.01
    psi_warn: float = 0.1
    psi_alert: float = 0.2
    wasserstein_warn: float = 0.2  # in reference IQRs (DriftPolicy's floors)
    wasserstein_alert: float = 0.4
    js_warn: float = 0.1
    js_alert: float = 0.2
    max_null_rate_increase: float = 0.1
    max_range_violation_rate: float = 0.05
    max_unseen_rate: float = 0.05
    min_volume_ratio: float = 0.5
    max_latency_p99_ms: float | None = None
    max_error_rate: float = 0.02
    max_metric_drop: float = 0.05
    max_calibration_error: float = 0.1
    max_staleness_hours: float | None = None
    window: str = "1d"
    # which time puts a logged row in a window: "logged" (when the service answered) or
    # "event" (the request's own [project] time field: replayed or late-sent traffic)
    clock: str = "logged"
    webhook: str | None = None
    webhook_timeout_seconds: float = 5.0


@dataclass(frozen=True)
class RetrainSection:
    """When and on what ``shipyard retrain`` runs: the triggers ``shipyard monitor
    --retrain`` acts on, the window of served traffic added to the data, and the share of
    its answered requests that must carry a label."""

    # "alert": a monitoring alert fired; "age": the champion is older than max_champion_age_days
    when: tuple[str, ...] = ()
    max_champion_age_days: float | None = None
    window: str = "90d"  # the newest stretch of the prediction log added (hours or days)
    min_labeled_share: float = 0.5


@dataclass(frozen=True)
class RobustnessSection:
    """How ``train`` tests the chosen model on perturbed test rows: the sample, the noise
    levels, the tolerance on a prediction's change, and the shares readiness allows.

    ``noise`` and ``step`` are in each numeric feature's train standard deviations;
    ``tolerance`` is in probability (classification) or in the train target's standard
    deviations (regression)."""

    rows: int = 2000  # test rows sampled (fixed seed: [split] seed)
    noise: tuple[float, ...] = (0.1, 0.5, 1.0)
    tolerance: float = 0.01  # a prediction changed by more counts as changed
    max_changed_share: float = 0.01  # invariance: rows changed beyond tolerance, per attribute
    step: float = 0.5  # how far a directional expectation moves its feature
    max_violation_share: float = 0.05  # directional: rows moving the wrong way, per expectation


@dataclass(frozen=True)
class Expectation:
    """One ``[[expectations]]`` entry: the prediction moves in ``direction`` as ``feature``
    increases (binary: the positive class's probability; regression: the prediction)."""

    feature: str
    direction: str


@dataclass(frozen=True)
class TrackingSection:
    """Where runs are tracked: an MLflow tracking URI (default: SQLite under .shipyard/)."""

    uri: str | None = None
    experiment: str | None = None


# --- key declarations -------------------------------------------------------------------

Check = Callable[[Any], str | None]


def _one_of(options: tuple[str, ...]) -> Check:
    return lambda v: None if v in options else f"one of {', '.join(map(repr, options))}"


def _fraction(v: Any) -> str | None:
    return None if 0.0 <= v <= 1.0 else "a number between 0 and 1"


def _open_fraction(v: Any) -> str | None:
    return None if 0 < v < 1 else "a number between 0 and 1, both excluded"


def _positive(v: Any) -> str | None:
    return None if v > 0 else "a number greater than 0"


def _non_negative(v: Any) -> str | None:
    return None if v >= 0 else "a number of 0 or more"


def _holdout_share(v: Any) -> str | None:
    return None if 0 <= v <= 20 else "a percent between 0 and 20"


def _percent_steps(v: Any) -> str | None:
    ok = (
        v
        and all(isinstance(p, int | float) and not isinstance(p, bool) and 0 < p <= 100 for p in v)
        and all(a < b for a, b in itertools.pairwise(v))
    )
    return None if ok else "a non-empty, increasing list of percents, each in (0, 100]"


def _window(v: Any) -> str | None:
    if re.fullmatch(WINDOW_PATTERN, v):
        return None
    return 'a window such as "1h", "1d", "7d" or "5000 rows"'


def _span(v: Any) -> str | None:
    if re.fullmatch(SPAN_PATTERN, v):
        return None
    return 'a span of hours or days such as "12h" or "90d"'


def _triggers(v: Any) -> str | None:
    ok = all(t in RETRAIN_TRIGGERS for t in v) and len(set(v)) == len(v)
    return (
        None if ok else f"a list of distinct triggers from {', '.join(map(repr, RETRAIN_TRIGGERS))}"
    )


def _url(v: Any) -> str | None:
    return None if re.fullmatch(r"https?://\S+", v) else "an http:// or https:// URL"


def _non_empty(v: Any) -> str | None:
    return None if str(v).strip() else "a non-empty string"


def _levels(v: Any) -> str | None:
    ok = v and all(isinstance(x, int | float) and not isinstance(x, bool) and x > 0 for x in v)
    return None if ok else "a non-empty list of numbers greater than 0"


@dataclass(frozen=True)
class Key:
    """One declared key: its accepted types, an extra check, and whether it is required."""

    types: tuple[type, ...]
    check: Check | None = None
    required: bool = False
    type_name: str = ""


_STR = Key((str,), _non_empty, type_name="a string")
_NUM = Key((int, float), _positive, type_name="a number")
_FRAC = Key((int, float), _fraction, type_name="a number")
_LIST = Key((list,), type_name="a list of column names")
_POS_INT = Key((int,), _positive, type_name="an integer")

SECTIONS: dict[str, tuple[type, dict[str, Key]]] = {
    "project": (
        ProjectSection,
        {
            "name": _STR,
            "task": Key((str,), _one_of(TASKS), required=True, type_name="a string"),
            "target": Key((str,), _non_empty, required=True, type_name="a string"),
            "data": _STR,
            "id": _STR,
            "time": _STR,
            "positive": Key((str, int, bool), type_name="a string, integer or boolean"),
        },
    ),
    "objective": (
        ObjectiveSection,
        {
            "metric": Key(
                (str,),
                _one_of(CLASSIFICATION_METRICS + REGRESSION_METRICS),
                type_name="a string",
            ),
            # ranges are checked with the metric in mind, in _cross_checks
            "min_improvement": Key((int, float), _non_negative, type_name="a number"),
        },
    ),
    "constraints": (
        ConstraintsSection,
        {
            "p99_latency_ms": _NUM,
            "max_model_mb": _NUM,
            "max_ece": _FRAC,
            "max_slice_gap": Key((int, float), _non_negative, type_name="a number"),
            "max_data_age_days": _NUM,
        },
    ),
    "features": (
        FeaturesSection,
        {
            "include": _LIST,
            "exclude": _LIST,
            "sensitive": _LIST,
            "slices": _LIST,
            "known_at_prediction": _LIST,
            "unknown": Key((str,), _one_of(UNKNOWN_POLICIES), type_name="a string"),
            "hash_buckets": Key((int,), _positive, type_name="an integer"),
        },
    ),
    "baseline": (BaselineSection, {"rule": _STR}),
    "split": (
        SplitSection,
        {
            "strategy": Key((str,), _one_of(SPLIT_STRATEGIES), type_name="a string"),
            "train": _FRAC,
            "dev": _FRAC,
            "test": _FRAC,
            "eyeball": _FRAC,
            "seed": Key((int,), _non_negative, type_name="an integer"),
            "purge_entities": Key((bool,), type_name="true or false"),
        },
    ),
    "training": (
        TrainingSection,
        {
            "threads": Key((int,), _positive, type_name="an integer"),
            "max_rung_seconds": Key((int, float), _positive, type_name="a number"),
        },
    ),
    "serving": (
        ServingSection,
        {
            "canary_steps": Key((list,), _percent_steps, type_name="a list of percents"),
            "guardrail_window": _POS_INT,
            "guardrail_min_requests": _POS_INT,
            "max_error_rate": _FRAC,
            "max_p99_ratio": Key((int, float), _positive, type_name="a number"),
            "p99_floor_ms": Key((int, float), _positive, type_name="a number"),
            "max_prediction_shift": Key((int, float), _positive, type_name="a number"),
            "max_records": _POS_INT,
            "max_body_mb": Key((int, float), _positive, type_name="a number"),
            "max_depth": _POS_INT,
            "max_string_chars": _POS_INT,
            "max_problems": _POS_INT,
            "max_response_mb": Key((int, float), _positive, type_name="a number"),
            "header_timeout_seconds": Key((int, float), _positive, type_name="a number"),
            "body_timeout_seconds": Key((int, float), _positive, type_name="a number"),
            "idle_timeout_seconds": Key((int, float), _positive, type_name="a number"),
            "max_connections": _POS_INT,
            "poll_seconds": Key((int, float), _positive, type_name="a number"),
            "shadow_queue": _POS_INT,
            "log_batch_rows": _POS_INT,
            "log_flush_seconds": Key((int, float), _positive, type_name="a number"),
            "auto_advance": Key((bool,), type_name="true or false"),
            "advance_min_requests": _POS_INT,
            "advance_alpha": Key((int, float), _open_fraction, type_name="a number"),
            "advance_mde": Key((int, float), _positive, type_name="a number"),
            "holdout_percent": Key((int, float), _holdout_share, type_name="a number"),
            "holdout_days": Key((int, float), _positive, type_name="a number"),
        },
    ),
    "monitoring": (
        MonitoringSection,
        {
            "alpha": Key((int, float), _open_fraction, type_name="a number"),
            "psi_warn": _NUM,
            "psi_alert": _NUM,
            "wasserstein_warn": _NUM,
            "wasserstein_alert": _NUM,
            "js_warn": _FRAC,
            "js_alert": _FRAC,
            "max_null_rate_increase": _FRAC,
            "max_range_violation_rate": _FRAC,
            "max_unseen_rate": _FRAC,
            "min_volume_ratio": _FRAC,
            "max_latency_p99_ms": _NUM,
            "max_error_rate": _FRAC,
            "max_metric_drop": _NUM,
            "max_calibration_error": _FRAC,
            "max_staleness_hours": _NUM,
            "window": Key((str,), _window, type_name="a string"),
            "clock": Key((str,), _one_of(("logged", "event")), type_name="a string"),
            "webhook": Key((str,), _url, type_name="a string"),
            "webhook_timeout_seconds": _NUM,
        },
    ),
    "retrain": (
        RetrainSection,
        {
            "when": Key((list,), _triggers, type_name="a list of triggers"),
            "max_champion_age_days": _NUM,
            "window": Key((str,), _span, type_name="a string"),
            "min_labeled_share": _FRAC,
        },
    ),
    "robustness": (
        RobustnessSection,
        {
            "rows": _POS_INT,
            "noise": Key((list,), _levels, type_name="a list of numbers"),
            "tolerance": Key((int, float), _non_negative, type_name="a number"),
            "max_changed_share": _FRAC,
            "step": _NUM,
            "max_violation_share": _FRAC,
        },
    ),
    "tracking": (TrackingSection, {"uri": _STR, "experiment": _STR}),
}
#: ``[[expectations]]``: an array of tables, each with these keys (both required)
EXPECTATION_KEYS: dict[str, Key] = {
    "feature": Key((str,), _non_empty, required=True, type_name="a string"),
    "direction": Key((str,), _one_of(DIRECTIONS), required=True, type_name="a string"),
}


def _did_you_mean(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


@dataclass(frozen=True)
class Spec:
    """A validated ``shipyard.toml``.

    ``root`` is the folder holding the file; relative data paths resolve against it.
    """

    project: ProjectSection
    objective: ObjectiveSection = field(default_factory=ObjectiveSection)
    constraints: ConstraintsSection = field(default_factory=ConstraintsSection)
    features: FeaturesSection = field(default_factory=FeaturesSection)
    baseline: BaselineSection = field(default_factory=BaselineSection)
    split: SplitSection = field(default_factory=SplitSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    serving: ServingSection = field(default_factory=ServingSection)
    monitoring: MonitoringSection = field(default_factory=MonitoringSection)
    robustness: RobustnessSection = field(default_factory=RobustnessSection)
    retrain: RetrainSection = field(default_factory=RetrainSection)
    tracking: TrackingSection = field(default_factory=TrackingSection)
    expectations: tuple[Expectation, ...] = ()
    root: Path = field(default=Path("."), compare=False)

    @property
    def is_classification(self) -> bool:
        return self.project.task in ("binary", "multiclass")

    @property
    def data_path(self) -> Path | None:
        """The data file the spec names, resolved against the spec's folder."""
        if not self.project.data:
            return None
        path = Path(self.project.data).expanduser()
        return path if path.is_absolute() else self.root / path

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (no ``root``): every default filled in, unset keys left out.

        ``Spec.from_dict(spec.to_dict())`` gives the same spec back.
        """
        out = asdict(self)
        out.pop("root")
        expectations = out.pop("expectations")
        for name, section in out.items():
            # None means "not set": TOML has no null, and from_dict must read this back
            out[name] = {
                k: list(v) if isinstance(v, tuple) else v
                for k, v in section.items()
                if v is not None
            }
        if expectations:  # left out when empty: specs without any hash as before
            out["expectations"] = list(expectations)
        if self.retrain == RetrainSection():  # likewise: a spec without [retrain] hashes as before
            out.pop("retrain")
        return out

    def hash(self) -> str:
        """A SHA-256 of the normalized spec: equal specs hash equal, however written."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    @classmethod
    def from_dict(cls, raw: dict[str, Any], root: Path | str = ".", source: str = "") -> Spec:
        """Validate a parsed TOML document; every problem is reported at once."""
        where = f" in {source}" if source else ""
        problems: list[str] = []
        sections: dict[str, Any] = {}
        for name, value in raw.items():
            if name == "expectations":
                continue  # an array of tables, read by _expectations
            if name not in SECTIONS:
                problems.append(
                    f"unknown section [{name}]; allowed: "
                    f"{', '.join('[' + s + ']' for s in SECTIONS)}."
                    + _did_you_mean(name, list(SECTIONS))
                )
            elif not isinstance(value, dict):
                problems.append(f"'{name}' must be a [{name}] table, got {value!r}")
        if "project" not in raw:
            problems.append("missing [project] section with at least 'task' and 'target'")
        for name, (section_cls, keys) in SECTIONS.items():
            table = raw.get(name, {})
            if not isinstance(table, dict):
                continue
            values = _read_table(name, table, keys, problems, required=name in raw)
            if not problems:
                sections[name] = section_cls(**values)
        expectations = _expectations(raw.get("expectations", []), problems)
        if not problems:
            problems.extend(_cross_checks(sections))
            problems.extend(_expectation_checks(sections, expectations))
        if problems:
            raise SpecError(
                f"shipyard.toml is not valid{where}:\n"
                + "\n".join(f"  - {p}" for p in problems)
                + "\nFix the file (see the comments `shipyard init` writes) and run again."
            )
        project = sections["project"]
        objective = sections.get("objective", ObjectiveSection())
        if not objective.metric:
            objective = ObjectiveSection(DEFAULT_METRIC[project.task], objective.min_improvement)
        sections["objective"] = objective
        return cls(root=Path(root), expectations=expectations, **sections)


def _read_table(
    where: str,
    table: dict[str, Any],
    keys: dict[str, Key],
    problems: list[str],
    required: bool = True,
) -> dict[str, Any]:
    """The table's declared and valid values (lists as tuples); every unknown key, wrong
    value and (when ``required``) missing required key is appended to ``problems``."""
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in keys:
            problems.append(
                f"unknown key '{where}.{key}'; allowed: {', '.join(keys)}."
                + _did_you_mean(key, list(keys))
            )
        elif problem := _check_value(keys[key], value):
            problems.append(f"'{where}.{key}' must be {problem}; got {value!r}")
        else:
            values[key] = tuple(value) if isinstance(value, list) else value
    if required:
        problems.extend(
            f"missing required key '{where}.{k}'"
            for k, decl in keys.items()
            if decl.required and k not in table
        )
    return values


def _check_value(decl: Key, value: Any) -> str | None:
    # bool is an int in Python; accept it only where bool is declared.
    if isinstance(value, bool) and bool not in decl.types:
        return decl.type_name
    if not isinstance(value, decl.types):
        return decl.type_name
    if isinstance(value, list):
        if decl.check is not None:
            return decl.check(value)
        if not all(isinstance(v, str) and v for v in value):
            return "a list of column names (strings)"
        return None
    return decl.check(value) if decl.check else None


def _expectations(raw: Any, problems: list[str]) -> tuple[Expectation, ...]:
    """The ``[[expectations]]`` entries, each key checked; problems are appended."""
    if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
        problems.append(
            "'expectations' must be an array of tables, each written as [[expectations]] "
            'with feature = "COLUMN" and direction = "increases" or "decreases"'
        )
        return ()
    out = []
    for n, entry in enumerate(raw):
        values = _read_table(f"expectations[{n}]", entry, EXPECTATION_KEYS, problems)
        if len(values) == len(EXPECTATION_KEYS):
            out.append(Expectation(**values))
    return tuple(out)


def _expectation_checks(
    sections: dict[str, Any], expectations: tuple[Expectation, ...]
) -> list[str]:
    """What the spec alone shows wrong with ``[[expectations]]``: the target, an excluded
    column, a feature named twice, a multiclass task. ``train`` checks the rest against
    the data (a column that is not a numeric feature)."""
    project: ProjectSection = sections["project"]
    features: FeaturesSection = sections.get("features", FeaturesSection())
    problems = []
    if expectations and project.task == "multiclass":
        problems.append(
            "'expectations' apply to binary and regression tasks (the prediction's direction "
            "is one number there); remove [[expectations]] for a multiclass task"
        )
    seen: dict[str, int] = {}
    for n, e in enumerate(expectations):
        key = f"'expectations[{n}].feature' = {e.feature!r}"
        if e.feature == project.target:
            problems.append(f"{key} is the target, not a feature")
        elif e.feature in features.exclude:
            problems.append(
                f"{key} is excluded in [features] exclude, so it is not a feature; remove the "
                "expectation or the exclusion"
            )
        if e.feature in seen:
            problems.append(f"{key} is already expected in 'expectations[{seen[e.feature]}]'")
        seen.setdefault(e.feature, n)
    return problems


def _cross_checks(sections: dict[str, Any]) -> list[str]:
    problems = []
    project: ProjectSection = sections["project"]
    objective: ObjectiveSection | None = sections.get("objective")
    if objective and objective.metric:
        allowed = REGRESSION_METRICS if project.task == "regression" else CLASSIFICATION_METRICS
        if objective.metric not in allowed:
            problems.append(
                f"'objective.metric' = {objective.metric!r} does not fit task "
                f"{project.task!r}; use one of {', '.join(allowed)}"
            )
    problems.extend(_margin_checks(project, objective, sections.get("constraints")))
    split: SplitSection | None = sections.get("split")
    if split:
        total = split.train + split.dev + split.test
        if abs(total - 1.0) > 1e-6:
            problems.append(
                f"'split.train' + 'split.dev' + 'split.test' must add up to 1; got {total:g}"
            )
        if split.train <= 0 or split.dev <= 0 or split.test <= 0:
            problems.append(
                "'split.train', 'split.dev' and 'split.test' must each be greater than 0 "
                "(dev selects the model; test is scored once at the end)"
            )
        if split.eyeball >= 1:
            problems.append("'split.eyeball' must be below 1: the rest of dev selects the model")
    monitoring: MonitoringSection | None = sections.get("monitoring")
    if monitoring:
        for name in ("psi", "wasserstein", "js"):
            warn, alert = getattr(monitoring, f"{name}_warn"), getattr(monitoring, f"{name}_alert")
            if warn > alert:
                problems.append(
                    f"'monitoring.{name}_warn' ({warn:g}) must not exceed "
                    f"'monitoring.{name}_alert' ({alert:g})"
                )
    retrain: RetrainSection | None = sections.get("retrain")
    if retrain and "age" in retrain.when and retrain.max_champion_age_days is None:
        problems.append(
            "'retrain.when' holds \"age\", which needs 'retrain.max_champion_age_days': set "
            "how many days a champion may serve before it is retrained"
        )
    features: FeaturesSection | None = sections.get("features")
    if features:
        both = sorted(set(features.include) & set(features.exclude))
        if both:
            problems.append(f"columns both included and excluded in [features]: {both}")
        if project.target in features.include:
            problems.append(f"the target '{project.target}' cannot be a feature (features.include)")
        if project.target in features.known_at_prediction:
            problems.append(
                f"the target '{project.target}' cannot be known at the moment of prediction "
                "(features.known_at_prediction): it is what is predicted"
            )
    return problems


def _margin_checks(
    project: ProjectSection,
    objective: ObjectiveSection | None,
    constraints: ConstraintsSection | None,
) -> list[str]:
    """``min_improvement`` and ``max_slice_gap`` read with the metric in mind.

    For RMSE and MAE both are fractions of the constant baseline's value (0.005 is 0.5%);
    for every other metric they are in its own units. Either way a margin of 1 or more can
    never be met (or never binds): the likely mistake is an absolute number in the target's
    units.
    """
    metric = (objective.metric if objective else "") or DEFAULT_METRIC.get(project.task, "")
    if metric in ("rmse", "mae"):
        unit = f"a fraction of the constant baseline's {metric} (0.05 = 5%)"
        hint = (
            ". It is no longer read in the target's units: divide an absolute margin by the "
            f"constant baseline's {metric}, which `shipyard train` prints"
        )
    else:
        unit, hint = f"in {metric} units", ""
    problems = []
    improve = objective.min_improvement if objective else 0.0
    if improve >= 1:
        problems.append(
            f"'objective.min_improvement' for metric '{metric}' is {unit}, so it must be "
            f"below 1; got {improve!r}{hint}"
        )
    gap = constraints.max_slice_gap if constraints else None
    if gap is not None and gap > 1:
        problems.append(
            f"'constraints.max_slice_gap' for metric '{metric}' is {unit}, so it must be "
            f"from 0 to 1; got {gap!r}{hint}"
        )
    return problems


def load_spec(path: Path | str) -> Spec:
    """Read and validate ``shipyard.toml``.

    Raises
    ------
    SpecError
        The file is missing, is not valid TOML, or holds an invalid key or value.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(
            f"no spec file at '{path}'. Run `shipyard init DATA --target COLUMN` to write one, "
            "or pass --spec PATH."
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise SpecError(f"'{path}' is not UTF-8 text: {exc}. Save it as UTF-8.") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"'{path}' is not valid TOML: {exc}. Fix the syntax there.") from exc
    return Spec.from_dict(raw, root=path.resolve().parent, source=str(path))
