"""The one exception tree of shipyard.

Every error shipyard raises on purpose derives from :class:`ShipyardError`. Each class
knows the command-line exit code and the HTTP status it maps to, so the CLI and the
service translate errors in exactly one place each::

    ShipyardError                       exit 2 / HTTP 500 unless a subclass says otherwise
    ├── SpecError(ValueError)           shipyard.toml is missing, malformed or invalid
    ├── DataError(ValueError)           a data file cannot be read or does not fit the spec
    │   └── ContractViolation           data breaks the learned contract (carries violations)
    ├── WorkspaceError                  refusing to overwrite or write project state
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


class DataError(ShipyardError, ValueError):
    """A data file cannot be read, or its content does not fit what the spec declares."""

    http_status = 422


class ContractViolation(DataError):
    """Data breaks the learned contract; ``violations`` lists every problem found."""

    def __init__(self, message: str, violations: list[Any] | None = None) -> None:
        super().__init__(message)
        self.violations = list(violations or [])


class WorkspaceError(ShipyardError):
    """A file shipyard would write already exists, or project state cannot be written."""


class NotFittedError(ShipyardError, AttributeError):
    """An object that learns from data was used before it learned anything."""

    exit_code = 1
