"""The one exception tree of shipyard.

Every error shipyard raises on purpose derives from :class:`ShipyardError`. Each class
knows the command-line exit code and the HTTP status it maps to, so the CLI and the
service translate errors in exactly one place each::

    ShipyardError                       exit 2 / HTTP 500 unless a subclass says otherwise
    ├── SpecError(ValueError)           shipyard.toml is missing, malformed or invalid
    │   └── RuleError                   the baseline rule does not parse or type-check
    ├── DataError(ValueError)           a data file cannot be read or does not fit the spec
    │   └── ContractViolation           data breaks the learned contract (carries violations)
    ├── UsageError(ValueError)          an argument names nothing known, or more than one thing
    ├── WorkspaceError                  refusing to overwrite, or unreadable project state
    ├── DeploymentError                 HTTP 503: nothing deployed where something must be
    ├── CheckFailed                     exit 1: a check or gate found a problem
    ├── RegistryLocked                  exit 1 / HTTP 409: another promotion holds the lock
    ├── BundleError                     a bundle fails verification or has an unknown format
    │   └── ReferenceMissing            a bundle has no reference statistics (retrain)
    ├── TrackingError                   the MLflow tracking store/server is unreachable or refused
    ├── RequestRefused                  HTTP 4xx: a request the service refuses (status per case)
    ├── Unexplainable(ValueError)       HTTP 422: explanations asked of a family without an explainer
    └── NotFittedError(AttributeError)  a transform, model or contract used before fit/learn

Messages state the rule, the value received and the fix.
"""

from __future__ import annotations

from typing import Any


class ShipyardError(Exception):
    """Root of every error shipyard raises on purpose."""

    exit_code: int = 2
    http_status: int = 500


class SpecError(ShipyardError, ValueError):
    """``shipyard.toml`` is missing, malformed, or holds a value that is not allowed."""

    http_status = 500


class RuleError(SpecError):
    """The baseline rule does not parse, names an unknown column, or mixes types."""


class DataError(ShipyardError, ValueError):
    """A data file cannot be read, or its content does not fit what the spec declares."""

    http_status = 422


class ContractViolation(DataError):
    """Data breaks the learned contract; ``violations`` lists every problem found."""

    def __init__(self, message: str, violations: list[Any] | None = None) -> None:
        super().__init__(message)
        self.violations = list(violations or [])


class UsageError(ShipyardError, ValueError):
    """An argument names nothing shipyard knows (an unknown finding code, run id), or more
    than one thing (an ambiguous run id prefix)."""


class WorkspaceError(ShipyardError):
    """A file shipyard would write already exists, or project state cannot be read or
    written (the service cannot serve from it: HTTP 503)."""

    http_status = 503


class DeploymentError(ShipyardError):
    """Nothing is deployed where the action needs it (no champion, no challenger)."""

    http_status = 503


class CheckFailed(ShipyardError):
    """A check or gate found a problem (error findings, a failed constraint, a mismatch)."""

    exit_code = 1


class RegistryLocked(ShipyardError):
    """Another process is changing the deployment state; nothing was changed."""

    exit_code = 1
    http_status = 409


class BundleError(ShipyardError):
    """A bundle cannot be trusted: a changed, missing or extra file, or an unknown format."""


class ReferenceMissing(BundleError):
    """A bundle (or a reference) lacks the statistics monitoring needs: written before
    they existed, or for a column that was not referenced. Retraining adds them."""


class TrackingError(ShipyardError):
    """The tracking server or store cannot be reached, or refused a request."""


class RequestRefused(ShipyardError):
    """A request the service refuses: its HTTP status, a stable ``kind`` (counted in
    ``/metrics``) and, when fields are at fault, ``details`` naming each of them (the
    first ones: ``summary`` counts them all)."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str,
        details: Any = None,
        summary: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = status
        self.kind = kind
        self.details = details
        self.summary = summary  # more keys of the answer's body (e.g. counts)

    @property
    def message(self) -> str:
        return str(self)


class Unexplainable(ShipyardError, ValueError):
    """Explanations were asked of a model family that has no explainer."""

    http_status = 422
    kind = "explain"


class NotFittedError(ShipyardError, AttributeError):
    """An object that learns from data was used before it learned anything."""

    exit_code = 1
