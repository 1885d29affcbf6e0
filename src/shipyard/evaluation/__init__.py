"""Evaluation beyond one number: metrics, calibration, slices, robustness, diagnostics,
latency and size.

``metrics`` holds the optimizing and reported metrics, ``calibration`` the reliability
curve, ECE and dev-fitted calibrators, ``slices`` per-slice metrics with bootstrap
intervals, ``robustness`` the perturbation, invariance and directional tests on sampled test
rows, ``diagnostics`` the chosen rung's learning curve, sanity fit and the champion as a
baseline, ``error_slices`` the slices of the eyeball split where the model errs most and its
worst mispredictions, ``latency`` one-record latency and saved size.
"""

from shipyard.evaluation.calibration import Calibrator, choose_calibrator, ece, reliability
from shipyard.evaluation.diagnostics import diagnostics
from shipyard.evaluation.error_slices import error_analysis
from shipyard.evaluation.latency import one_record_latency, saved_size_mb
from shipyard.evaluation.metrics import HIGHER_IS_BETTER, all_metrics, improvement, score
from shipyard.evaluation.robustness import robustness
from shipyard.evaluation.slices import slice_metrics

__all__ = [
    "HIGHER_IS_BETTER",
    "Calibrator",
    "all_metrics",
    "choose_calibrator",
    "diagnostics",
    "ece",
    "error_analysis",
    "improvement",
    "one_record_latency",
    "reliability",
    "robustness",
    "saved_size_mb",
    "score",
    "slice_metrics",
]
