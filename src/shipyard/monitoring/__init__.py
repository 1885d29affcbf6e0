"""Watching a deployed model: what it is compared against, how far live data has moved, and
the labels that arrive later.

The reference statistics a bundle stores at ``train`` (``reference``), mergeable summaries
of windows of live data over the reference's bins (``summary``), the drift statistics with
their error bounds and the alert rule (``drift``), delayed labels and outcomes joined to
logged predictions (``labels``), and training/serving skew: offline features compared row by
row with the logged ones (``skew``); the ``monitor`` command builds on these. Everything here
works from summaries that merge, never from raw training data.
"""

from shipyard.monitoring.drift import DriftPolicy, DriftResult, compare
from shipyard.monitoring.labels import LabelsResult, Vocabulary, ingest, read_labels
from shipyard.monitoring.reference import Reference
from shipyard.monitoring.skew import Keys, compare_offline, skew_report
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
    "Keys",
    "LabelsResult",
    "NumericReference",
    "NumericSummary",
    "Reference",
    "Vocabulary",
    "compare",
    "compare_offline",
    "ingest",
    "merge",
    "read_labels",
    "skew_report",
    "summarize",
    "summary_from_dict",
]
