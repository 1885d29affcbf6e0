"""Watching a deployed model: what it is compared against, and how far live data has moved.

The reference statistics a bundle stores at ``train`` (``reference``), mergeable summaries
of windows of live data over the reference's bins (``summary``) and the drift statistics
with their error bounds and the alert rule (``drift``); labels joined to logged predictions
and the ``monitor`` command build on these. Everything here works from summaries that merge,
never from raw training data.
"""

from shipyard.monitoring.drift import DriftPolicy, DriftResult, compare
from shipyard.monitoring.reference import Reference
from shipyard.monitoring.summary import (
    CategoricalReference,
    CategoricalSummary,
    NumericReference,
    NumericSummary,
    merge,
    summarize,
    summary_from_dict,
)

__all__ = [
    "CategoricalReference",
    "CategoricalSummary",
    "DriftPolicy",
    "DriftResult",
    "NumericReference",
    "NumericSummary",
    "Reference",
    "compare",
    "merge",
    "summarize",
    "summary_from_dict",
]
