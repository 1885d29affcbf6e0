"""The wire formats of the service's routes: how a request body becomes records, and how
answers are written back.

- MLflow's scoring protocol: ``dataframe_split`` / ``dataframe_records`` JSON, or
  ``text/csv`` with a header row (read with the stdlib ``csv`` module; every cell text,
  typed by the contract's record check as batch types a CSV file);
- the Open Inference Protocol (KServe V2) JSON tensors, one input per column;
- the answer of one record (:func:`named`): one number for binary (P(positive)) and
  regression; for multiclass the label and each class's probability by name, as batch
  output's ``prediction`` and ``proba_<class>``.

Every refusal is a :class:`~shipyard.errors.RequestRefused` naming what is wrong. Nothing
here imports pandas (the vocabulary of null text is imported when a CSV body arrives, after
the bundles have loaded it).
"""

from __future__ import annotations

import itertools
import math
import uuid
from typing import Any

import orjson

from shipyard.errors import RequestRefused
from shipyard.serving.limits import Limits
from shipyard.serving.router import Answer

_NUMBER_TYPES = {
    "FP16",
    "FP32",
    "FP64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
}


def parse_json(raw: bytes) -> Any:
    """A JSON body, refused (400) when it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestRefused(
            400,
            f"the body is not valid JSON ({exc}); NaN and Infinity are not JSON: send null",
            "malformed",
        ) from None


def named(output: Any, classes: list[str] | None) -> dict[str, Any]:
    """One answer as the service gives it: ``{"prediction": p}`` for binary (P(positive)) and
    regression; for multiclass the label (the most probable class, the first on a tie, as
    batch's ``prediction``) and ``{"probabilities": {class: p}}``.

    >>> named(0.25, None)
    {'prediction': 0.25}
    >>> named([0.2, 0.5, 0.3], ["a", "b", "c"])
    {'prediction': 'b', 'probabilities': {'a': 0.2, 'b': 0.5, 'c': 0.3}}
    """
    if classes is None or not isinstance(output, list):
        return {"prediction": output}
    best = max(range(len(output)), key=output.__getitem__)  # first of equal maxima
    return {
        "prediction": classes[best],
        "probabilities": dict(zip(classes, output, strict=True)),
    }


def explain_query(query: bytes, value: str | None) -> bool:
    """Whether ``POST /predict?explain=…`` asks for explanations: ``true``/``1`` yes,
    ``false``/``0`` (or no query at all: ``query`` is the raw query string, checked first so
    a plain request reads nothing more) no; anything else refused (400).

    >>> explain_query(b"", None), explain_query(b"explain=true", "true")
    (False, True)
    """
    if not query or value is None:
        return False
    flag = value.strip().lower()
    if flag in ("true", "1"):
        return True
    if flag in ("false", "0"):
        return False
    raise RequestRefused(
        400, f"the query parameter 'explain' is true or false; got {_brief(value)}", "explain"
    )


def oip_explain(body: Any) -> bool:
    """Whether an inference request's ``parameters`` ask ``{"explain": true}``; refused (400)
    when ``parameters`` is not an object or ``explain`` not a JSON boolean.

    >>> oip_explain({"inputs": []}), oip_explain({"parameters": {"explain": True}})
    (False, True)
    """
    parameters = body.get("parameters") if isinstance(body, dict) else None
    if parameters is None:
        return False
    if not isinstance(parameters, dict):
        raise RequestRefused(400, "'parameters' must be a JSON object", "shape")
    flag = parameters.get("explain", False)
    if not isinstance(flag, bool):
        raise RequestRefused(
            400, f"parameters.explain is true or false; got {_brief(flag)}", "explain"
        )
    return flag


def _brief(value: Any) -> str:
    from shipyard.data.values import brief  # the refusal path only: it lives beside pandas

    return brief(value)


def mlflow_records(body: Any, limits: Limits) -> list[dict[str, Any]]:
    """The records of MLflow's JSON scoring protocol; ``limits``: records counted before
    any is built."""
    if not isinstance(body, dict):
        raise RequestRefused(
            400, "expected {'dataframe_split': {...}} or {'dataframe_records': [...]}", "shape"
        )
    unknown = [_brief(k) for k in body if k not in ("dataframe_split", "dataframe_records")]
    if unknown or len(body) != 1:
        raise RequestRefused(
            400,
            "send exactly one of 'dataframe_split' or 'dataframe_records'"
            + (f"; unknown field(s): {', '.join(sorted(unknown[:10]))}" if unknown else ""),
            "shape",
        )
    if "dataframe_records" in body:
        return body["dataframe_records"]  # counted by the service before it is read
    split = body.get("dataframe_split")
    if isinstance(split, dict):
        columns, data = split.get("columns"), split.get("data")
        extra = [_brief(k) for k in split if k not in ("columns", "data", "index")]
        if extra:
            raise RequestRefused(
                400,
                "dataframe_split takes 'columns', 'data' and 'index'; unknown: "
                + ", ".join(sorted(extra[:10])),
                "shape",
            )
        if (
            not isinstance(columns, list)
            or not all(isinstance(c, str) for c in columns)
            or not isinstance(data, list)
        ):
            raise RequestRefused(
                400,
                "dataframe_split needs 'columns' (a list of names) and 'data' (a list of rows)",
                "shape",
            )
        limits.check_records(len(data))
        rows = []
        for i, row in enumerate(data):
            if not isinstance(row, list) or len(row) != len(columns):
                raise RequestRefused(
                    400, f"dataframe_split row {i} must be a list of {len(columns)} values", "shape"
                )
            rows.append(dict(zip(columns, row, strict=True)))
        return rows
    raise RequestRefused(
        400, "expected {'dataframe_split': {...}} or {'dataframe_records': [...]}", "shape"
    )


def csv_records(raw: bytes, limits: Limits) -> list[dict[str, Any]]:
    """``text/csv`` (MLflow's scoring protocol): a header row naming the fields, then one
    row per record. Every value is text, typed by the contract's record check as a CSV file
    is in batch (:mod:`shipyard.data.values`); a cell batch's reader reads as null
    (:data:`~shipyard.data.values.NULL_STRINGS`, the empty cell among them) is null."""
    import csv
    import io

    from shipyard.data.values import NULL_STRINGS

    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RequestRefused(400, f"the CSV body is not UTF-8 text ({exc})", "malformed") from None
    most = limits.max_records + 2  # a header, one row too many
    try:
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        # blank lines (a trailing newline) hold no record
        rows = list(itertools.islice((row for row in reader if row), most))
    except csv.Error as exc:
        raise RequestRefused(400, f"the CSV body cannot be read ({exc})", "malformed") from None
    limits.check_records(len(rows) - 1)  # past the limit: at least this many, refused
    header = rows[0] if rows else []
    if not header or any(not name for name in header) or len(set(header)) != len(header):
        raise RequestRefused(
            400,
            "a CSV body starts with a header row of distinct, non-empty field names",
            "shape",
        )
    nulls = frozenset(NULL_STRINGS)
    records = []
    for i, row in enumerate(rows[1:], start=1):
        if len(row) != len(header):
            raise RequestRefused(
                400,
                f"CSV row {i} has {len(row)} values; the header names {len(header)} fields",
                "shape",
            )
        records.append({k: None if v in nulls else v for k, v in zip(header, row, strict=True)})
    if not records:
        raise RequestRefused(400, "the CSV body has a header row but no records", "shape")
    return records


def oip_outputs(answers: list[Answer], classes: list[str] | None) -> list[dict[str, Any]]:
    """The OIP output tensors: ``prediction`` FP64 [n] (binary, regression); for multiclass
    ``prediction`` BYTES [n] (the label) and ``probabilities`` FP64 [n, k], whose
    ``parameters`` name the classes in column order."""
    n = len(answers)
    if classes is None:
        data = [a.output for a in answers]
        return [{"name": "prediction", "datatype": "FP64", "shape": [n], "data": data}]
    items = [named(a.output, classes) for a in answers]
    return [
        {
            "name": "prediction",
            "datatype": "BYTES",
            "shape": [n],
            "data": [item["prediction"] for item in items],
        },
        {
            "name": "probabilities",
            "datatype": "FP64",
            "shape": [n, len(classes)],
            "data": [p for a in answers for p in a.output],
            "parameters": {"classes": classes},
        },
    ]


def _check_chars(what: str, text: str, limits: Limits) -> None:
    """Refuse (422) a name or id longer than a field's text may be."""
    if len(text) > limits.max_chars:
        raise RequestRefused(
            422,
            f"{what} holds {len(text):,} characters; the limit is {limits.max_chars:,} "
            "([serving] max_string_chars)",
            "too_long",
        )


def oip_records(body: Any, limits: Limits) -> tuple[list[dict[str, Any]], str]:
    """One record per row of the OIP tensors (one input per column); ``limits``: rows
    counted before any record is built, names and the request id no longer than a field's
    text may be."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or not body["inputs"]:
        raise RequestRefused(
            400, "an inference request needs 'inputs': a non-empty list of tensors", "shape"
        )
    given = body.get("id")
    request_id: str = given if isinstance(given, str) else uuid.uuid4().hex
    _check_chars("the request 'id'", request_id, limits)
    columns: dict[str, list[Any]] = {}
    rows = None
    for i, tensor in enumerate(body["inputs"]):
        if not isinstance(tensor, dict):
            raise RequestRefused(
                400, f"input {i} must be an object with name, shape, datatype and data", "shape"
            )
        name, shape, datatype, data = (tensor.get(k) for k in ("name", "shape", "datatype", "data"))
        if not isinstance(name, str) or not name:
            raise RequestRefused(400, f"input {i} needs a 'name' (the column)", "shape")
        _check_chars(f"input {i}'s name", name, limits)
        label = name if len(name) <= 60 else name[:60] + "…"  # as messages quote it
        if (
            not isinstance(shape, list)
            or not shape
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
        ):
            raise RequestRefused(
                400, f"input '{label}': 'shape' must be a list of non-negative integers", "shape"
            )
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            given = shape if len(shape) <= 8 else _brief(shape)
            raise RequestRefused(
                400,
                f"input '{label}': shape must be [n] or [n, 1] (one value per row); got {given}",
                "shape",
            )
        if datatype not in _NUMBER_TYPES | {"BYTES", "BOOL"}:
            raise RequestRefused(
                400, f"input '{label}': unsupported datatype {_brief(datatype)}", "datatype"
            )
        flat = _flatten(data)
        if flat is None or len(flat) != math.prod(shape):
            raise RequestRefused(
                400,
                f"input '{label}': 'data' must hold {math.prod(shape)} values for shape {shape}",
                "shape",
            )
        for value in flat:
            if not _fits(value, datatype):
                raise RequestRefused(
                    400, f"input '{label}': {_brief(value)} is not a {datatype} value", "datatype"
                )
        if rows is not None and shape[0] != rows:
            raise RequestRefused(
                400, f"input '{label}' has {shape[0]} rows; the others have {rows}", "shape"
            )
        rows = shape[0]
        if name in columns:
            raise RequestRefused(400, f"input '{label}' is given twice", "shape")
        columns[name] = flat
    limits.check_records(rows or 0)
    return [
        {name: values[i] for name, values in columns.items()} for i in range(rows or 0)
    ], request_id


def _flatten(data: Any) -> list[Any] | None:
    if not isinstance(data, list):
        return None
    if all(not isinstance(v, list) for v in data):
        return data
    out = []
    for v in data:
        if isinstance(v, list):
            if any(isinstance(x, list) for x in v):
                return None
            out.extend(v)
        else:
            out.append(v)
    return out


def _fits(value: Any, datatype: str) -> bool:
    if value is None:
        return True
    if datatype == "BYTES":
        return isinstance(value, str)
    if datatype == "BOOL":
        return isinstance(value, bool)
    if datatype.startswith(("INT", "UINT")):
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, int | float) and not isinstance(value, bool)
