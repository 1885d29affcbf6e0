"""The service's OpenAPI pieces, generated from the champion's data contract.

A record is a JSON object with one property per model input: numbers (or numeric text) for
numeric columns, strings (or numbers) for categories, date-time strings, and for booleans
JSON ``true``/``false``, 0/1 or any spelling :mod:`shipyard.data.values` accepts (yes/no,
y/n, true/false, t/f, 1/0, any case), all scored alike; ``null`` is accepted everywhere
(served with a warning where training saw none); nothing else may be sent, except the
spec's entity ``id`` field. The Open Inference Protocol metadata declares a boolean input
``BOOL``: a ``BOOL`` tensor of JSON booleans, or a ``BYTES`` tensor of the spellings above.
"""

from __future__ import annotations

from typing import Any

_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "details": {}},
    "required": ["error"],
}
_REFUSALS = {
    "400": "malformed JSON, wrong shape or datatype",
    "413": "body or record count over the limit",
    "415": "not JSON",
    "422": "a record breaks the data contract (details name each field), or explain was "
    "asked of a model family without an explainer",
}
_TYPES = {
    "numeric": ["number", "string", "null"],
    "boolean": ["boolean", "number", "string", "null"],
    "datetime": ["string", "null"],
}


def _property(role: str) -> dict[str, Any]:
    """The JSON schema of one field of a record.

    >>> _property("boolean")["examples"][:3]
    [True, False, 'yes']
    """
    # imported here: the vocabulary lives beside pandas, which the service's own modules
    # do not import (the app is built after its bundles, which have loaded it)
    from shipyard.data.contract import EXPECTED
    from shipyard.data.values import FALSE_STRINGS, TRUE_STRINGS

    spellings = sorted({v for s in (*TRUE_STRINGS, *FALSE_STRINGS) for v in (s, s.capitalize())})
    out: dict[str, Any] = {"type": _TYPES.get(role, ["string", "number", "boolean", "null"])}
    if role in EXPECTED:
        out["description"] = EXPECTED[role]
    if role == "boolean":
        out["examples"] = [True, False, "yes", "no", 1, 0]
        out["x-accepted-spellings"] = [*spellings, "(any case)"]
    return out


def record_schema(contract: Any, features: list[str], id_field: str | None) -> dict[str, Any]:
    """The JSON schema of one record."""
    properties: dict[str, Any] = {}
    required = []
    for name in features:
        col = contract.columns.get(name)
        role = col.role if col is not None else "categorical"
        properties[name] = _property(role)
        if col is not None and col.required:
            required.append(name)
    if id_field and id_field not in properties:
        properties[id_field] = {"type": ["string", "integer", "null"]}
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def _responses(ok: dict[str, Any], content: str = "application/json") -> dict[str, Any]:
    out = {"200": {"description": "answered", "content": {content: {"schema": ok}}}}
    for code, why in _REFUSALS.items():
        out[code] = {"description": why, "content": {"application/json": {"schema": _ERROR}}}
    return out


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def named_output(classes: list[str] | None) -> dict[str, dict[str, Any]]:
    """The schema of an answer's prediction: a number (P(positive) for binary, the value for
    regression), or for multiclass the label (one of ``classes``) and one probability per
    class, keyed by class name.

    >>> named_output(["a", "b"])["probabilities"]["required"]
    ['a', 'b']
    """
    if classes is None:
        return {"prediction": {"type": "number"}}
    probability = {"type": "number", "minimum": 0, "maximum": 1}
    return {
        "prediction": {
            "type": "string",
            "enum": list(classes),
            "description": "the most probable class",
        },
        "probabilities": {
            "type": "object",
            "description": "the probability of each class, by name",
            "properties": {c: probability for c in classes},
            "required": list(classes),
            "additionalProperties": False,
        },
    }


#: An answer's ``explanation`` (asked with ``explain``; see :mod:`shipyard.models.explanation`).
EXPLANATION: dict[str, Any] = {
    "type": "object",
    "description": (
        "why the model gave this score: base + the sum of the attributions = score, the "
        "model's raw score (log-odds for binary trees and linear models, before any "
        "calibrator; a probability for the constant and rule rungs)"
    ),
    "properties": {
        "base": {"type": "number", "description": "the score before any feature"},
        "score": {"type": "number", "description": "the raw score explained"},
        "scale": {"type": "string", "enum": ["log-odds", "logit", "probability", "value"]},
        "attributions": {
            "type": "object",
            "description": "each input field's share of score - base, largest first",
            "additionalProperties": {"type": "number"},
        },
        "reasons": {
            "type": "array",
            "description": "the top reasons in plain language",
            "items": {"type": "string"},
        },
        "rule": {
            "type": "object",
            "description": "the rule rung's explanation: its condition and whether it held",
            "properties": {"condition": {"type": "string"}, "holds": {"type": "boolean"}},
            "required": ["condition", "holds"],
        },
        "class": {"type": "string", "description": "multiclass: the class explained"},
    },
    "required": ["base", "score", "scale", "attributions", "reasons"],
}

#: ``POST /predict``'s ``explain`` query parameter.
EXPLAIN_PARAMETER: dict[str, Any] = {
    "name": "explain",
    "in": "query",
    "required": False,
    "schema": {"type": "boolean", "default": False},
    "description": (
        "add each answer's explanation (attributions per input field and the top reasons); "
        "422 when the model's family has no explainer"
    ),
}


def _answer(classes: list[str] | None) -> dict[str, Any]:
    output = named_output(classes)
    return {
        "type": "object",
        "properties": {
            **output,
            "model_version": {"type": "integer"},
            "arm": {"type": "string", "enum": ["champion", "canary", "challenger", "holdout"]},
            "warnings": {"type": "array", "items": {"type": "string"}},
            "explanation": EXPLANATION,
        },
        "required": [*output, "model_version", "arm", "warnings"],
    }


def predict_openapi(record: dict[str, Any], classes: list[str] | None = None) -> dict[str, Any]:
    """``POST /predict``; ``classes``: the champion's, when it is multiclass."""
    many = {"type": "array", "items": record, "minItems": 1}
    one = _answer(classes)
    record_id = {"type": "string", "description": "this record's id, for its label"}
    item = {
        **one,
        "properties": {"request_id": record_id, **one["properties"]},
        "required": ["request_id", *one["required"]],
    }
    answer = {
        "type": "object",
        "properties": {
            "request_id": {"type": "string"},
            "predictions": {"type": "array", "items": item},
            **one["properties"],
        },
        "required": ["request_id"],
    }
    return {
        "parameters": [EXPLAIN_PARAMETER],
        "requestBody": _body({"oneOf": [record, many]}),
        "responses": _responses(answer),
    }


def invocations_openapi(record: dict[str, Any], classes: list[str] | None = None) -> dict[str, Any]:
    """MLflow's ``POST /invocations``: JSON (``dataframe_split``, ``dataframe_records``) or
    ``text/csv`` with a header row; ``classes``: the champion's, when it is multiclass."""
    split = {
        "type": "object",
        "properties": {
            "columns": {"type": "array", "items": {"type": "string"}},
            "data": {"type": "array", "items": {"type": "array"}, "minItems": 1},
            "index": {"type": "array"},
        },
        "required": ["columns", "data"],
        "additionalProperties": False,
    }
    body = {
        "oneOf": [
            {
                "type": "object",
                "properties": {"dataframe_split": split},
                "required": ["dataframe_split"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {
                    "dataframe_records": {"type": "array", "items": record, "minItems": 1}
                },
                "required": ["dataframe_records"],
                "additionalProperties": False,
            },
        ]
    }
    output = named_output(classes)
    item = (
        output["prediction"]
        if classes is None
        else {"type": "object", "properties": output, "required": list(output)}
    )
    ok = {
        "type": "object",
        "properties": {"predictions": {"type": "array", "items": item}},
        "required": ["predictions"],
    }
    csv = {
        "schema": {"type": "string"},
        "example": ",".join(record["properties"]) + "\n",
    }
    request = _body(body)
    request["content"]["text/csv"] = csv
    return {"requestBody": request, "responses": _responses(ok)}


def oip_openapi() -> dict[str, Any]:
    tensor = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "datatype": {"type": "string"},
            "data": {"type": "array"},
        },
        "required": ["name", "shape", "datatype", "data"],
    }
    body = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "inputs": {"type": "array", "items": tensor},
            "parameters": {
                "type": "object",
                "properties": {
                    "explain": {
                        "type": "boolean",
                        "description": "answer each record's explanation in parameters.explanations",
                    }
                },
            },
        },
        "required": ["inputs"],
    }
    ok = {
        "type": "object",
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "parameters": {
                "type": "object",
                "properties": {
                    "warnings": {
                        "type": "array",
                        "description": "the contract's warnings, one list per record",
                        "items": {"type": "array", "items": {"type": "string"}},
                    },
                    "explanations": {
                        "type": "array",
                        "description": "asked with parameters.explain: one per record",
                        "items": EXPLANATION,
                    },
                },
            },
            "outputs": {"type": "array", "items": tensor},
        },
        "required": ["model_name", "outputs"],
    }
    out = {"requestBody": _body(body), "responses": _responses(ok)}
    out["responses"]["404"] = {
        "description": "model or version not served",
        "content": {"application/json": {"schema": _ERROR}},
    }
    return out


def feedback_openapi(task: str, classes: list[Any]) -> dict[str, Any]:
    """``POST /feedback`` (``serving/feedback.py``): items naming a request id and its label,
    a number for a regression, else one of ``classes`` (the champion's, as text; the same
    class given as a number or a boolean spelling is accepted as ``shipyard labels`` does)."""
    from shipyard.data.contract import category_key

    if task == "regression":
        label: dict[str, Any] = {"type": "number", "description": "the observed value"}
    else:
        names = [category_key(c) for c in classes]
        label = {
            "type": ["string", "number", "boolean"],
            "description": "the observed class, one of " + ", ".join(names),
            "examples": names,
            "x-classes": names,
        }
    item = {
        "type": "object",
        "properties": {
            "request_id": {
                "type": "string",
                "minLength": 1,
                "description": "the request_id the service answered with",
            },
            "label": label,
        },
        "required": ["request_id", "label"],
        "additionalProperties": False,
    }
    body = {
        "type": "object",
        "properties": {"feedback": {"type": "array", "items": item, "minItems": 1}},
        "required": ["feedback"],
        "additionalProperties": False,
    }
    ok = {
        "type": "object",
        "properties": {
            "accepted": {"type": "integer", "description": "labels queued for the feedback log"},
            "duplicates": {
                "type": "integer",
                "description": "items repeating an earlier item's request id and label",
            },
        },
        "required": ["accepted", "duplicates"],
    }
    error = {"content": {"application/json": {"schema": _ERROR}}}
    responses: dict[str, Any] = {
        "202": {
            "description": "accepted (a request id the log does not hold yet is accepted too)",
            "content": {"application/json": {"schema": ok}},
        }
    }
    for code, why in {
        **_REFUSALS,
        "422": "a label of the wrong type or an unknown class, a missing or unknown field, "
        "one request id given two labels (details name each item and field)",
        "503": "the feedback log's queue is full: nothing was accepted, retry",
    }.items():
        responses[code] = {"description": why, **error}
    return {"requestBody": _body(body), "responses": responses}


def plain_openapi() -> dict[str, Any]:
    """A GET answered with a JSON object (or refused with an error object)."""
    error = {"content": {"application/json": {"schema": _ERROR}}}
    return {
        "responses": {
            "200": {
                "description": "ok",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "401": {"description": "admin token missing or wrong", **error},
            "403": {"description": "admin routes off", **error},
            "404": {"description": "not served", **error},
            "422": {"description": "invalid path", **error},
        }
    }


def text_openapi() -> dict[str, Any]:
    return {
        "responses": {
            "200": {
                "description": "Prometheus text",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        }
    }


def oip_outputs(classes: list[str] | None) -> list[dict[str, Any]]:
    """The OIP metadata of the outputs: ``prediction`` FP64 [-1] (binary, regression); for
    multiclass the label ``prediction`` BYTES [-1] and ``probabilities`` FP64 [-1, k],
    whose ``parameters`` name the classes in column order.

    >>> [o["datatype"] for o in oip_outputs(["a", "b"])]
    ['BYTES', 'FP64']
    """
    if classes is None:
        return [{"name": "prediction", "datatype": "FP64", "shape": [-1]}]
    return [
        {
            "name": "prediction",
            "datatype": "BYTES",
            "shape": [-1],
            "parameters": {"classes": list(classes)},
        },
        {
            "name": "probabilities",
            "datatype": "FP64",
            "shape": [-1, len(classes)],
            "parameters": {"classes": list(classes)},
        },
    ]


def oip_inputs(contract: Any, features: list[str]) -> list[dict[str, Any]]:
    """The OIP metadata of the inputs: one [-1] tensor per column (a boolean is ``BOOL``;
    a ``BYTES`` tensor of yes/no-style text is scored the same, see the module note)."""
    out = []
    for name in features:
        col = contract.columns.get(name)
        role = col.role if col is not None else "categorical"
        datatype = {"numeric": "FP64", "boolean": "BOOL"}.get(role, "BYTES")
        out.append({"name": name, "datatype": datatype, "shape": [-1]})
    return out
