"""Watching a deployed model: what it is compared against, how far live data has moved, and
the labels that arrive later.

The reference statistics a bundle stores at ``train`` (``reference``), mergeable summaries
of windows of live data over the reference's bins (``summary``), the drift statistics with
their error bounds and the alert rule (``drift``), delayed labels and outcomes joined to
logged predictions (``labels``), the realized metric, calibration back-test and metric-drop
rule once labels arrive (``performance``), and the estimated metric before they do
(``estimation``, CBPE); the ``monitor`` command builds on these. Everything here
works from summaries that merge, never from raw training data.
"""

from shipyard.monitoring.drift import DriftPolicy, DriftResult, compare
from shipyard.monitoring.estimation import (
    compare_estimate,
    estimate,
    outside_support,
    recalibrator,
)
from shipyard.monitoring.labels import LabelsResult, Vocabulary, ingest, read_labels
from shipyard.monitoring.performance import calibration_backtest, metric_drop, realized
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
    "LabelsResult",
    "NumericReference",
    "NumericSummary",
    "Reference",
    "Vocabulary",
    "calibration_backtest",
    "compare",
    "compare_estimate",
    "estimate",
    "ingest",
    "merge",
    "metric_drop",
    "outside_support",
    "read_labels",
    "realized",
    "recalibrator",
    "summarize",
    "summary_from_dict",
]
