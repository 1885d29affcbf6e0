"""The service's feedback: labels sent to ``POST /feedback``, checked, and written like the
prediction log.

A body is one JSON object::

    {"feedback": [{"request_id": "<the id /predict answered with>", "label": "Yes"}, ...]}

Each item names a request by the ``request_id`` the service answered with and gives its
``label``: a number (regression) or one of the champion's classes, as ``shipyard labels``
takes them (:class:`~shipyard.monitoring.labels.Vocabulary`: ``1``, ``1.0`` and ``true`` are
one class; a boolean-like target takes every boolean spelling). Nothing else may be in an
item. Every problem is collected (the first ``max_problems`` named, all counted) and refuses
the whole body with a 422 naming the item and field; nothing of a refused body is written.
One request id given the same label twice counts once (``duplicates``); given two different
labels it is a problem.

A request id the log does not hold (yet) is accepted: the label may arrive before the
prediction's batch is flushed, or come from another worker, so feedback is matched when it
is read (:func:`~shipyard.monitoring.labels.read_labels`), not when it arrives.

Accepted items go to a :class:`FeedbackLog` (``.shipyard/labels/feedback/``): queued on the
request path, written by the prediction log's machinery (:class:`~shipyard.serving.log.PartLog`)
in atomic Parquet parts ``date=YYYY-MM-DD/part-….parquet`` holding ``request_id``, ``time``
(when it arrived, UTC), ``label`` (the class as text, a regression's number as text) and
``outcome`` (the number monitoring scores with). A ``kill -9`` loses at most the batch not
yet flushed (``[serving] log_flush_seconds``) and never leaves half a file.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import DataError, RequestRefused
from shipyard.serving.limits import Limits
from shipyard.serving.log import PartLog, log_files

if TYPE_CHECKING:
    import pyarrow as pa

    from shipyard.monitoring.labels import Vocabulary

#: The body's one field: the list of items.
FIELD = "feedback"
#: The fields of one item.
ITEM_FIELDS = ("request_id", "label")


@cache
def feedback_schema() -> pa.Schema:
    """The fields of a feedback file."""
    import pyarrow as pa

    return pa.schema(
        [
            ("request_id", pa.string()),
            ("time", pa.timestamp("us", tz="UTC")),
            ("label", pa.string()),
            ("outcome", pa.float64()),
        ]
    )


class FeedbackLog(PartLog):
    """The labels the service received, written like the prediction log (see the module
    docstring). A record is ``{"request_id", "time" (epoch seconds), "label", "outcome"}``."""

    what = "feedback log"

    def _coerce(self, record: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        micros = round(float(record["time"]) * 1e6)
        outcome = float(record["outcome"])
        values = {
            "request_id": str(record["request_id"]),
            "time": micros,
            "label": str(record["label"]),
            "outcome": None if outcome != outcome else outcome,  # NaN (multiclass) as null
        }
        return micros, values, {}

    def _fields(self) -> pa.Schema:
        return feedback_schema()


def parse_feedback(
    body: Any, vocabulary: Vocabulary, limits: Limits
) -> tuple[list[dict[str, Any]], int]:
    """The items of a parsed ``POST /feedback`` body, checked: each as ``{"request_id",
    "label", "outcome"}`` once, and how many repeated an earlier item.

    Raises
    ------
    RequestRefused
        400 when the body is not ``{"feedback": [...]}`` with a non-empty list, 413 past
        ``max_records`` items, 422 naming every bad item and field (the first
        ``max_problems``; ``summary`` counts them all).

    Examples
    --------
    >>> from shipyard.monitoring.labels import Vocabulary
    >>> limits = Limits(10, 1000, 8, 100, 5, 1000)
    >>> items = [{"request_id": "a", "label": "yes"}, {"request_id": "a", "label": "Yes"}]
    >>> parse_feedback({"feedback": items}, Vocabulary("binary", ["No", "Yes"]), limits)
    ([{'request_id': 'a', 'label': 'Yes', 'outcome': 1.0}], 1)
    """
    from shipyard.data.values import ValueTypeError, brief

    items = body.get(FIELD) if isinstance(body, dict) else None
    if not isinstance(items, list) or not items or len(body) != 1:
        raise RequestRefused(
            400,
            f'send {{"{FIELD}": [{{"request_id": "…", "label": …}}, …]}}: one field, '
            f"'{FIELD}', holding a non-empty list of items",
            "shape",
        )
    limits.check_records(len(items))
    problems: list[dict[str, Any]] = []
    n_problems = 0

    def problem(i: int, name: str | None, reason: str, message: str) -> None:
        nonlocal n_problems
        n_problems += 1
        if len(problems) < limits.max_problems:
            problems.append({"record": i, "field": name, "reason": reason, "message": message})

    accepted: dict[str, dict[str, Any]] = {}
    duplicates = 0
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            problem(i, None, "shape", f"item {i} is {type(item).__name__}, not a JSON object")
            continue
        for name in sorted(set(item) - set(ITEM_FIELDS), key=str)[:3]:
            problem(
                i,
                name,
                "unknown_field",
                f"item {i}: unknown field {brief(name)}; send 'request_id' and 'label' only",
            )
        request_id, label = item.get("request_id"), item.get("label")
        if not isinstance(request_id, str) or not request_id.strip():
            problem(
                i,
                "request_id",
                "missing" if request_id is None else "wrong_type",
                f"item {i}: 'request_id' must be the id the service answered with (text); "
                f"got {brief(request_id)}",
            )
            request_id = None
        elif len(request_id) > limits.max_chars:
            problem(
                i,
                "request_id",
                "too_long",
                f"item {i}: 'request_id' holds {len(request_id):,} characters; the limit is "
                f"{limits.max_chars:,} ([serving] max_string_chars)",
            )
            request_id = None
        parsed = None
        if isinstance(label, str) and len(label) > limits.max_chars:
            problem(
                i,
                "label",
                "too_long",
                f"item {i}: 'label' holds {len(label):,} characters; the limit is "
                f"{limits.max_chars:,} ([serving] max_string_chars)",
            )
        elif label is not None and not isinstance(label, str | int | float | bool):
            problem(
                i,
                "label",
                "wrong_type",
                f"item {i}: 'label' must be {vocabulary.describe()}; got {brief(label)}",
            )
        else:
            try:
                parsed = vocabulary.parse(label)
            except ValueTypeError as exc:
                reason = (
                    "missing"
                    if label is None
                    else "wrong_type"
                    if vocabulary.task == "regression"
                    else "unknown_class"
                )
                problem(
                    i, "label", reason, f"item {i}: 'label' must be {vocabulary.describe()}; {exc}"
                )
        if request_id is None or parsed is None:
            continue
        earlier = accepted.get(request_id)
        if earlier is None:
            accepted[request_id] = {
                "request_id": request_id,
                "label": parsed[0],
                "outcome": parsed[1],
            }
        elif earlier["label"] == parsed[0]:
            duplicates += 1
        else:
            problem(
                i,
                "label",
                "conflict",
                f"item {i}: request {brief(request_id)} is given two different labels "
                f"({brief(earlier['label'])} and {brief(parsed[0])}); send one",
            )
    if problems:
        raise limits.refused("feedback", "feedback", problems, n_problems)
    return list(accepted.values()), duplicates


def read_feedback(folder: Path) -> pa.Table:
    """Every flushed feedback row of a :class:`FeedbackLog`'s folder (none when it does not
    exist), in arrival order; columns as :func:`feedback_schema`.

    Raises
    ------
    DataError
        A file in the folder is not a readable feedback file (its name and what to do).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = feedback_schema()
    tables = []
    for path in log_files(folder) if folder.is_dir() else []:
        try:
            with pq.ParquetFile(path) as file:
                tables.append(file.read(columns=schema.names).cast(schema))
        except (OSError, KeyError, pa.ArrowException) as exc:
            raise DataError(
                f"{path} is not a readable feedback file ({type(exc).__name__}: {exc}). "
                "Move it out of the feedback folder."
            ) from exc
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables).sort_by("time")
