"""Watching a deployed model: what it is compared against, how far live data has moved, and
the labels that arrive later.

The reference statistics a bundle stores at ``train`` (``reference``), mergeable summaries
of windows of live data over the reference's bins (``summary``), the drift statistics with
their error bounds and the alert rule (``drift``), delayed labels and outcomes joined to
logged predictions (``labels``), the realized metric, calibration back-test and metric-drop
rule once labels arrive (``performance``), and the estimated metric before they do
(``estimation``, CBPE); the ``monitor`` command on these: the log streamed into per-window
summaries (``monitor``; on Ray Data with ``--engine ray``, ``distributed``), the
``[monitoring]`` rules and alerts (``alerts``), one run end to
end (``watch``), training/serving skew against offline features (``skew``), the results
table it keeps (``results``) and the self-contained HTML page
drawn from them (``report``, its charts from :mod:`shipyard.reports`); the online
experiment's statistics and verdict, champion against canary (``experiment``). Everything here works from summaries
that merge, never from raw training data.
"""

from shipyard.monitoring.drift import DriftPolicy, DriftResult, compare
from shipyard.monitoring.estimation import (
    compare_estimate,
    estimate,
    outside_support,
    recalibrator,
)
from shipyard.monitoring.experiment import Experiment, analyze
from shipyard.monitoring.labels import LabelsResult, Vocabulary, ingest, read_labels
from shipyard.monitoring.monitor import Window, parse_window
from shipyard.monitoring.performance import calibration_backtest, metric_drop, realized
from shipyard.monitoring.reference import Reference
from shipyard.monitoring.report import write_report
from shipyard.monitoring.results import read_results
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
from shipyard.monitoring.watch import MonitorResult

__all__ = [
    "CategoricalReference",
    "CategoricalSummary",
    "DriftPolicy",
    "DriftResult",
    "Experiment",
    "Keys",
    "LabelsResult",
    "MonitorResult",
    "NumericReference",
    "NumericSummary",
    "Reference",
    "Vocabulary",
    "Window",
    "analyze",
    "calibration_backtest",
    "compare",
    "compare_estimate",
    "compare_offline",
    "estimate",
    "ingest",
    "merge",
    "metric_drop",
    "outside_support",
    "parse_window",
    "read_labels",
    "read_results",
    "realized",
    "recalibrator",
    "skew_report",
    "summarize",
    "summary_from_dict",
    "write_report",
]
