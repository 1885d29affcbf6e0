"""The one small contract every model family follows.

A family is built from keyword parameters only; ``fit`` learns state (names ending in
``_``) and returns ``self``; ``predict`` (a frame) and ``predict_one`` (a plain dict, the
serving path) refuse to run before ``fit`` with :class:`~shipyard.errors.NotFittedError`.
Families take raw rows — each owns whatever transform it needs, fitted on the train split
only — and give:

- ``binary``: the probability of the positive class, shape ``(n,)``;
- ``multiclass``: class probabilities, shape ``(n, k)``;
- ``regression``: the predicted value, shape ``(n,)``.

``fit`` may be given a :class:`Watch`: the time budget of the fit, a hook told of each
boosting round, and a thread count the user fixed. A family that can stop midway (the
trees) stops once over the budget and keeps what it has; it records what happened on the
watch (``budget_hit``, ``rounds``).

A family that can say why it gave each score sets ``explains`` and implements ``explain``
(a frame) and ``explain_records`` (dicts, the serving path): attributions per input field
that add up to the raw score (see :mod:`shipyard.models.explanation`). Asked of a family
without an explainer they raise :class:`~shipyard.errors.Unexplainable`.

``save(folder)`` writes JSON (and LightGBM's own text format for trees) and
``load(folder)`` reads it back: nothing is pickled, loading runs no code.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from shipyard.errors import BundleError, NotFittedError, SpecError, Unexplainable

if TYPE_CHECKING:
    from shipyard.models.explanation import Explanation

TASKS = ("binary", "multiclass", "regression")


def _no_rounds(done: int, total: int) -> None:
    return None


@dataclass
class Watch:
    """What the ladder asks of one fit beyond the data, and what the fit reports back.

    ``max_seconds`` is the budget (None: none), counted from ``started``; ``on_round(done,
    total)`` is called after each boosting round; ``threads`` is a count the user fixed
    (None: picked from the free cores, see :mod:`shipyard.cores`). The family sets
    ``budget_hit``, ``rounds`` (rounds run) and ``threads_used``.
    """

    max_seconds: float | None = None
    on_round: Callable[[int, int], None] = _no_rounds
    threads: int | None = None
    started: float = field(default_factory=time.perf_counter)
    budget_hit: bool = False
    rounds: int | None = None
    threads_used: int | None = None

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def over_budget(self) -> bool:
        return self.max_seconds is not None and self.elapsed() > self.max_seconds


class Family:
    """Base of every model family (see the module docstring for the contract)."""

    name: ClassVar[str] = "family"
    complexity: ClassVar[int] = 0
    files: ClassVar[tuple[str, ...]] = ("model.json",)
    #: whether the family explains its scores (``explain``, ``explain_records``)
    explains: ClassVar[bool] = False

    def __init__(self, *, task: str = "binary", n_classes: int = 2, seed: int = 0) -> None:
        if task not in TASKS:
            raise SpecError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
        self.task = task
        self.n_classes = n_classes
        self.seed = seed

    # --- the contract ------------------------------------------------------------------

    def fit(
        self,
        frame: pd.DataFrame,
        y: np.ndarray,
        *,
        roles: Mapping[str, str],
        weights: np.ndarray | None = None,
        dev: tuple[pd.DataFrame, np.ndarray] | None = None,
        watch: Watch | None = None,
    ) -> Family:
        raise NotImplementedError

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def predict_one(self, record: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def predict_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """``predict_one`` of many records at once, as ``predict`` returns it (one value or
        one row of class probabilities per record). Families with a matrix path override this
        to score the records together."""
        return np.array([self.predict_one(record) for record in records], dtype=np.float64)

    def explain(self, frame: pd.DataFrame) -> Explanation:
        """Why each row of ``frame`` got its score: attributions per input field that add up
        to the raw score (see :mod:`shipyard.models.explanation`)."""
        self._refuse_explain()
        raise NotImplementedError

    def explain_records(self, records: Sequence[Mapping[str, Any]]) -> Explanation:
        """``explain`` of records (dicts), through the one-record transform (serving)."""
        self._refuse_explain()
        raise NotImplementedError

    def _refuse_explain(self) -> None:
        if not self.explains:
            raise Unexplainable(
                f"model family '{self.name}' has no explainer: it cannot say why it gave a "
                "score. Ask without explain, or serve a family that explains (constant, "
                "rule, linear, gbt)"
            )
        self.check_fitted()

    def warm(self) -> None:
        """Build now whatever the one-record path would build on its first call (a server
        calls this at load so its first request does not pay for it)."""

    def accelerate(self) -> bool:
        """Switch frame scoring to a faster path with the same output, if the family has one
        (used by batch scoring); returns whether it did."""
        return False

    def get_params(self) -> dict[str, Any]:
        return {"task": self.task, "n_classes": self.n_classes, "seed": self.seed}

    def state(self) -> dict[str, Any]:
        """Learned state as plain JSON data (see :meth:`from_state`)."""
        raise NotImplementedError

    def set_state(self, state: Mapping[str, Any]) -> None:
        raise NotImplementedError

    # --- shared machinery --------------------------------------------------------------

    @property
    def fitted(self) -> bool:
        return any(k.endswith("_") and not k.startswith("_") for k in vars(self))

    def check_fitted(self) -> None:
        # the one-record path calls this on every request: once fitted, a model stays fitted
        # (fit and set_state only add attributes), so the scan of its attributes is done once
        if self.__dict__.get("_seen_fitted"):
            return
        if self.fitted:
            self._seen_fitted = True
        else:
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call .fit(train_frame, y, roles=...) first"
            )

    def save(self, folder: Path | str) -> list[str]:
        """Write the model into ``folder``; returns the file names written."""
        self.check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        document = {"family": self.name, "params": self.get_params(), "state": self.state()}
        (folder / "model.json").write_text(json.dumps(document, indent=1, sort_keys=True))
        return ["model.json"]

    @classmethod
    def load(cls, folder: Path | str) -> Family:
        folder = Path(folder)
        document = json.loads((folder / "model.json").read_text())
        if document.get("family") != cls.name:
            raise BundleError(
                f"'{folder}' holds a '{document.get('family')}' model, not '{cls.name}': the "
                "bundle's manifest and its model disagree; retrain it"
            )
        model = cls(**document["params"])
        model.set_state(document["state"])
        model._load_files(folder)
        return model

    def _load_files(self, folder: Path) -> None:
        """Read any file beside model.json (LightGBM's text model)."""

    def as_output(self, scores: np.ndarray) -> np.ndarray:
        """Binary families compute (n, 2) probabilities internally; callers get P(positive)."""
        if self.task == "binary" and scores.ndim == 2:
            return scores[:, 1]
        return scores


def class_weights(y: np.ndarray, task: str, threshold: float = 2.5) -> np.ndarray | None:
    """Balanced sample weights when the classes are imbalanced (majority/minority ≥ threshold).

    Computed on the train split only; ``None`` for regression or balanced classes.

    >>> class_weights(np.array([0, 0, 0, 1]), "binary").tolist()
    [0.6666666666666666, 0.6666666666666666, 0.6666666666666666, 2.0]
    """
    if task == "regression":
        return None
    counts = np.bincount(y.astype(np.int64))
    present = counts[counts > 0]
    if present.max() / present.min() < threshold:
        return None
    per_class = len(y) / (len(present) * np.where(counts > 0, counts, 1))
    return per_class[y.astype(np.int64)]
