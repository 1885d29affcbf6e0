"""Reference statistics: what a bundle's monitoring compares live traffic against.

Learned at ``train`` and stored in the bundle as ``reference.json`` (bundle format 2), so no
raw training data is needed later:

- per numeric feature, the fine bins and the train split's counts over them
  (:class:`~shipyard.monitoring.summary.NumericReference`); per categorical or boolean
  feature, the top categories and their counts
  (:class:`~shipyard.monitoring.summary.CategoricalReference`); columns of other roles
  (datetimes, ids, text) are listed in ``skipped`` with the reason;
- the model's output on the test split, in the same form: ``score`` (P(positive) for binary
  tasks, the predicted value for regression) or ``score[<class>]`` per class (multiclass),
  with the dev split's output summarized over the same bins (``prediction_dev``);
- the test and dev metrics of the chosen model, and its test-set calibration curve.

>>> import pandas as pd
>>> frame = pd.DataFrame({"age": [30.0, 40, 50, 60], "plan": ["a", "b", "a", "a"]})
>>> ref = Reference.learn(frame, {"age": "numeric", "plan": "categorical"})
>>> [r.level for r in ref.compare(ref.summarize(frame))]
['ok', 'ok']
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipyard.data.contract import Contract
from shipyard.errors import ReferenceMissing
from shipyard.monitoring.drift import DriftPolicy, DriftResult, compare
from shipyard.monitoring.summary import (
    CategoricalReference,
    ColumnReference,
    NumericReference,
    NumericSummary,
    Summary,
    column_reference_from_dict,
    summarize,
)

FORMAT_VERSION = 1
FILE = "reference.json"


def prediction_columns(task: str, classes: Sequence[Any]) -> list[str]:
    """The names the model's outputs are monitored under."""
    if task == "multiclass":
        return [f"score[{c}]" for c in classes]
    return ["score"]


def _outputs(task: str, classes: Sequence[Any], output: np.ndarray) -> dict[str, np.ndarray]:
    names = prediction_columns(task, classes)
    if output.ndim == 2:
        return {name: output[:, i] for i, name in enumerate(names)}
    return {names[0]: np.asarray(output, dtype=np.float64)}


@dataclass
class Reference:
    """Everything monitoring compares against, for one bundle."""

    features: dict[str, ColumnReference]
    predictions: dict[str, NumericReference] = field(default_factory=dict)
    prediction_dev: dict[str, NumericSummary] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    calibration: list[dict[str, float]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    task: str | None = None
    classes: list[Any] = field(default_factory=list)

    @classmethod
    def learn(
        cls,
        train: pd.DataFrame,
        roles: Mapping[str, str],
        *,
        contract: Contract | None = None,
        task: str | None = None,
        classes: Sequence[Any] = (),
        test_output: np.ndarray | None = None,
        dev_output: np.ndarray | None = None,
        metrics: Mapping[str, Mapping[str, float]] | None = None,
        calibration: Sequence[Mapping[str, float]] = (),
    ) -> Reference:
        """Learn the reference of each column of ``train`` (the train split's features) and,
        when given, of the model's test and dev output."""
        features: dict[str, ColumnReference] = {}
        skipped: dict[str, str] = {}
        for name in train.columns:
            role = roles.get(name)
            column = train[name]
            if role == "numeric":
                coarse = None
                if contract is not None and name in contract.columns:
                    coarse = contract.columns[name].bin_edges
                try:
                    features[name] = NumericReference.learn(name, column, coarse)
                except ValueError:
                    skipped[name] = "no numeric values in the train split"
            elif role in ("categorical", "boolean"):
                features[name] = CategoricalReference.learn(name, column, boolean=role == "boolean")
            else:
                skipped[name] = f"role '{role}' has no drift statistic"
        predictions: dict[str, NumericReference] = {}
        prediction_dev: dict[str, NumericSummary] = {}
        if test_output is not None and task is not None:
            for name, values in _outputs(task, classes, np.asarray(test_output)).items():
                predictions[name] = NumericReference.learn(name, values)
            if dev_output is not None:
                for name, values in _outputs(task, classes, np.asarray(dev_output)).items():
                    dev = summarize(values, predictions[name])
                    assert isinstance(dev, NumericSummary)
                    prediction_dev[name] = dev
        return cls(
            features=features,
            predictions=predictions,
            prediction_dev=prediction_dev,
            metrics={k: dict(v) for k, v in (metrics or {}).items()},
            calibration=[dict(b) for b in calibration],
            skipped=skipped,
            task=task,
            classes=list(classes),
        )

    # --- summarizing and comparing ------------------------------------------------------

    def summarize(self, frame: pd.DataFrame) -> dict[str, Summary]:
        """A summary of every referenced feature present in ``frame``."""
        return {
            name: summarize(frame[name], ref)
            for name, ref in self.features.items()
            if name in frame.columns
        }

    def summarize_predictions(self, output: np.ndarray) -> dict[str, Summary]:
        """A summary of the model's output (as :meth:`Bundle.predict` returns it)."""
        self._require_predictions()
        assert self.task is not None
        return {
            name: summarize(values, self.predictions[name])
            for name, values in _outputs(self.task, self.classes, np.asarray(output)).items()
        }

    def compare(
        self, summaries: Mapping[str, Summary], policy: DriftPolicy | None = None
    ) -> list[DriftResult]:
        """Drift of each summarized feature (or prediction) against its reference."""
        out = []
        for name, summary in summaries.items():
            ref = self.features.get(name) or self.predictions.get(name)
            if ref is None:
                raise ReferenceMissing(
                    f"there is no reference for column '{name}': "
                    + (
                        f"it was skipped at train ({self.skipped[name]})"
                        if name in self.skipped
                        else "it is not a feature of this model"
                    )
                )
            out.append(compare(ref, summary, policy=policy))
        return out

    def _require_predictions(self) -> None:
        if not self.predictions:
            raise ReferenceMissing(
                "this reference holds no prediction distribution (it was learned without "
                "the model's test output); retrain to enable prediction drift."
            )

    # --- persistence --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "task": self.task,
            "classes": self.classes,
            "features": {k: v.to_dict() for k, v in self.features.items()},
            "predictions": {k: v.to_dict() for k, v in self.predictions.items()},
            "prediction_dev": {k: v.to_dict() for k, v in self.prediction_dev.items()},
            "metrics": self.metrics,
            "calibration": self.calibration,
            "skipped": self.skipped,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reference:
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ReferenceMissing(
                f"reference statistics format {version!r} is not readable by this shipyard "
                f"(it reads {FORMAT_VERSION}); retrain to enable drift."
            )
        return cls(
            features={k: column_reference_from_dict(v) for k, v in data["features"].items()},
            predictions={k: NumericReference.from_dict(v) for k, v in data["predictions"].items()},
            prediction_dev={
                k: NumericSummary.from_dict(v) for k, v in data["prediction_dev"].items()
            },
            metrics=data.get("metrics", {}),
            calibration=data.get("calibration", []),
            skipped=data.get("skipped", {}),
            task=data.get("task"),
            classes=list(data.get("classes", [])),
        )

    @classmethod
    def from_bundle(cls, bundle: Any) -> Reference:
        """The reference stored in a loaded (verified) bundle.

        A bundle written before reference statistics existed (format 1) raises
        :class:`~shipyard.errors.ReferenceMissing` naming the features it cannot watch."""
        path = Path(bundle.path) / FILE
        if not path.is_file():
            features = ", ".join(bundle.features) or "its features"
            raise ReferenceMissing(
                f"bundle '{bundle.path}' (format version "
                f"{bundle.manifest.get('format_version')}) has no reference statistics; "
                f"retrain to enable drift on {features} and on its predictions."
            )
        return cls.from_dict(json.loads(path.read_text()))
