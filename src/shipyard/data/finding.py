"""Findings: one thing a check found, with its evidence and what to do about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("error", "warning", "info")

# Every code a check can emit; ``--ignore-findings`` accepts only these. A test reads the
# emitting modules' source and fails when a code is emitted but missing here.
CODES: tuple[str, ...] = (
    # data/contract.py (violations, as project.py reports them), project.py
    "missing_column",
    "out_of_range",
    "split_impossible",
    "unexpected_null",
    "unlabeled_data",
    "unseen_category",
    "wrong_type",
    # data/quality.py
    "association",
    "class_balance",
    "class_imbalance",
    "conflicting_duplicates",
    "constant_column",
    "duplicate_keys",
    "duplicate_rows",
    "free_text",
    "freshness",
    "extreme_values",
    "high_cardinality",
    "implausible_zeros",
    "missing_target",
    "missing_values",
    "mixed_date_formats",
    "mixed_types",
    "near_constant_column",
    "row_count",
    "sensitive_excluded",
    "sensitive_feature",
    "small_data",
    "stale_data",
    "unparseable_time",
    # data/leakage.py
    "duplicates_across_split",
    "leaky_combination",
    "model_too_good",
    "post_event_time",
    "predictive_id",
    "row_order",
    "target_derived",
    "too_good",
    # data/split.py
    "entities_shared_over_time",
    "small_dev_split",
    "split_purge_heavy",
    "target_shift",
    "unseen_after_split",
)


def unknown_codes(codes: list[str] | tuple[str, ...]) -> list[str]:
    """The codes in ``codes`` that no check emits (sorted).

    >>> unknown_codes(["too_good", "too_god"])
    ['too_god']
    """
    return sorted(set(codes) - set(CODES))


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
    check: str = "quality"  # "contract", "quality", "leakage" or "split"

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
