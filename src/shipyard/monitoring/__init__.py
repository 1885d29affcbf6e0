"""Watching a deployed model: labels joined to logged predictions (``labels``).

Drift statistics and the ``monitor`` command build on these.
"""

from shipyard.monitoring.labels import FeedbackLog, LabelsResult, Vocabulary, ingest, read_labels

__all__ = ["FeedbackLog", "LabelsResult", "Vocabulary", "ingest", "read_labels"]
