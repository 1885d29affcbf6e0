"""The online service: the HTTP app that answers prediction requests with the deployed
champion, routes a share of traffic to a canary, mirrors requests to a shadow, and records
every answer in the prediction log (``log``), off the request path.

Modules: ``app`` (the routes), ``service`` (what the routes share: limits, checks,
answers), ``limits`` (what one request may cost), ``connection`` (the read timeouts and
connection limit of ``shipyard serve``), ``admin`` (the admin token's guard), ``protocol``
(the wire formats: MLflow's, the Open Inference Protocol's, the answer of one record),
``router`` (champion, shadow, canary, guardrails), ``shadow`` (the challenger's own
process), ``schema`` (OpenAPI pieces from the contract), ``metrics`` (Prometheus text),
``log``, ``feedback`` (``POST /feedback``'s checks and its log). Importing the package loads nothing heavy: the names
below are imported from their module on first use.
"""

_LAZY = {
    "FeedbackLog": "shipyard.serving.feedback",
    "Metrics": "shipyard.serving.metrics",
    "PartLog": "shipyard.serving.log",
    "PredictionLog": "shipyard.serving.log",
    "Router": "shipyard.serving.router",
    "Service": "shipyard.serving.service",
    "Shadow": "shipyard.serving.shadow",
    "build": "shipyard.serving.app",
    "create_app": "shipyard.serving.app",
    "read_log": "shipyard.serving.log",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'shipyard.serving' has no attribute {name!r}")


__all__ = [
    "FeedbackLog",
    "Metrics",
    "PartLog",
    "PredictionLog",
    "Router",
    "Service",
    "Shadow",
    "build",
    "create_app",
    "read_log",
]
