"""Findings: one thing a check found, with its evidence and what to do about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class Finding:
    """One result of a data check.

    ``code`` is stable (scripts and ``--ignore-findings`` use it); ``columns`` names every
    column involved; ``evidence`` holds the computed numbers behind the finding.
    """

    code: str
    severity: str
    message: str
    action: str
    columns: tuple[str, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict)
    check: str = "quality"  # "contract", "quality" or "leakage"

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")

    @property
    def column(self) -> str | None:
        return ", ".join(self.columns) if self.columns else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "check": self.check,
            "columns": list(self.columns),
            "message": self.message,
            "action": self.action,
            "evidence": self.evidence,
        }


def finding_factory(check: str):
    """A short constructor for one check's findings: ``f(code, severity, message, action,
    columns, **evidence)``."""

    def make(
        code: str, severity: str, message: str, action: str, columns=(), **evidence
    ) -> Finding:
        return Finding(code, severity, message, action, tuple(columns), evidence, check=check)

    return make


def by_severity(findings: list[Finding]) -> list[Finding]:
    """Errors first, then warnings, then info; stable within a severity."""
    order = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(findings, key=lambda f: order[f.severity])
