"""The baseline ladder: fit rungs from simplest to most complex, keep the simplest that is
within ``min_improvement`` of the best on the blackbox dev set — complexity must earn its
place. For RMSE and MAE the margin is a fraction of the constant baseline's dev value
(:class:`~shipyard.evaluation.metrics.Margin`), in the metric's units otherwise.

Each rung is fitted on the train split only, early-stopped (trees) and scored on blackbox
dev. The ladder table holds, per rung: the dev metric, its improvement over the previous
rung in the metric's direction (positive = better, whether higher or lower is better), fit time, one-record p99 latency and saved size.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from shipyard.cores import LEDGER, available_cores
from shipyard.evaluation.latency import one_record_latency, saved_size_mb
from shipyard.evaluation.metrics import HIGHER_IS_BETTER, Margin, improvement, score
from shipyard.models.base import Family, Watch

LATENCY_RECORDS = 300
#: the complexity from which a rung is trees: fitted beside the lighter rungs when 2+ cores are free
TREES = 3
#: how long a thread may hold the GIL while another waits, while rungs fit side by side
#: (Python's default is 5 ms): a boosting round comes back from LightGBM to a Python
#: callback, and would otherwise wait up to that long for the other lane's Python code
SWITCH_INTERVAL_S = 0.0005


@dataclass
class Rung:
    """One fitted family and how it did."""

    model: Family
    dev_score: float
    fit_seconds: float
    p99_ms: float
    p50_ms: float
    size_mb: float
    delta: float | None = None  # vs the previous rung, positive = better
    dev_output: np.ndarray | None = None  # predictions on dev, kept to avoid scoring twice
    threads: int | None = None  # the threads its fit used
    rounds: int | None = None  # boosting rounds run (trees)
    budget_hit: bool = False  # the fit went over [training] max_rung_seconds

    @property
    def name(self) -> str:
        return self.model.name

    def row(self, metric: str) -> dict[str, Any]:
        return {
            "rung": self.name,
            f"dev_{metric}": self.dev_score,
            "delta": self.delta,
            "fit_s": self.fit_seconds,
            "p99_ms": self.p99_ms,
            "size_mb": self.size_mb,
            "threads": self.threads,
            "rounds": self.rounds,
            "budget_hit": self.budget_hit,
        }


@dataclass
class Ladder:
    """All rungs, the one chosen, and why."""

    metric: str
    rungs: list[Rung]
    chosen: Rung
    best: Rung
    warnings: list[str] = field(default_factory=list)
    margin: Margin | None = None  # min_improvement on blackbox dev, as applied
    records: list[dict[str, Any]] = field(default_factory=list)  # dev rows latency is timed on
    side_by_side: bool = False  # the lighter rungs were fitted beside the trees

    def time_latency(self) -> None:
        """Fill in every rung's latency (when ``climb`` was told not to time yet)."""
        time_rungs(self.rungs, self.records)

    def table(self) -> list[dict[str, Any]]:
        return [r.row(self.metric) for r in self.rungs]


def climb(
    families: Sequence[Family],
    train: tuple[pd.DataFrame, np.ndarray],
    dev: tuple[pd.DataFrame, np.ndarray],
    *,
    roles: Mapping[str, str],
    metric: str,
    min_improvement: float,
    weights: np.ndarray | None = None,
    progress: Callable[[str], None] = lambda _: None,
    on_round: Callable[[int, int], None] = lambda done, total: None,
    max_rung_seconds: float | None = None,
    threads: int | None = None,
    unbudgeted: Sequence[str] = (),
    time_now: bool = True,
    light_done: Callable[[], None] = lambda: None,
) -> Ladder:
    """Fit every family in order of complexity, then time each, and choose one.

    Each fit gets a :class:`~shipyard.models.base.Watch`: ``max_rung_seconds`` (its budget,
    except for the families named in ``unbudgeted``), ``on_round`` (told of each boosting
    round) and ``threads`` (a count the user fixed; None: from the free cores). With no count
    fixed and two or more cores free, the lighter rungs fit beside the trees
    (:func:`_side_by_side`); the rungs, their scores and the choice are the same. Latency is
    measured after every fit, so no fit competes with the timing loop; with
    ``time_now=False`` it is left to the caller (:meth:`Ladder.time_latency`), who can do
    other work while background work (the tracking set-up) finishes. ``light_done()`` is
    called once the lighter rungs are fitted (side by side: a core is then free beside the
    trees, for work the caller has waited with).
    """
    records = dev[0].head(LATENCY_RECORDS).to_dict("records")
    ordered = sorted(families, key=lambda m: m.complexity)

    def fit(model: Family, fixed: int | None, started: Callable[[], None] | None = None) -> Rung:
        number = ordered.index(model) + 1
        progress(f"rung {model.name} {number}/{len(ordered)}")
        if started is not None:
            started()
        budget = None if model.name in unbudgeted else max_rung_seconds
        watch = Watch(max_seconds=budget, on_round=on_round, threads=fixed)
        start = time.perf_counter()
        model.fit(train[0], train[1], roles=roles, weights=weights, dev=dev, watch=watch)
        seconds = time.perf_counter() - start
        dev_output = model.predict(dev[0])
        rung = Rung(
            model,
            score(metric, dev[1], dev_output),
            seconds,
            0.0,
            0.0,
            saved_size_mb(model.save),
            dev_output=dev_output,
            threads=watch.threads_used,
            rounds=watch.rounds,
            budget_hit=watch.budget_hit,
        )
        return rung

    light = [m for m in ordered if m.complexity < TREES]
    heavy = [m for m in ordered if m.complexity >= TREES]
    side_by_side = threads is None and available_cores() >= 2 and bool(light and heavy)
    if side_by_side:
        rungs = _side_by_side(fit, light, heavy, max(1, LEDGER.free() - 1), light_done)
    else:
        rungs = [fit(model, threads) for model in light]
        light_done()
        rungs += [fit(model, threads) for model in heavy]
    for before, rung in pairwise(rungs):
        rung.delta = improvement(metric, rung.dev_score, before.dev_score)
    warnings = [
        _budget_message(
            rung,
            None if rung.name in unbudgeted else max_rung_seconds,
            getattr(rung.model, "n_estimators", None),
        )
        for rung in rungs
        if rung.budget_hit
    ]
    if time_now:
        progress("timing one-record predictions")
        time_rungs(rungs, records)
    best = max(rungs, key=lambda r: r.dev_score if HIGHER_IS_BETTER[metric] else -r.dev_score)
    margin = Margin.on(metric, min_improvement, dev[1])
    chosen = next(
        r for r in rungs if improvement(metric, best.dev_score, r.dev_score) <= margin.absolute
    )
    constant = rungs[0] if rungs[0].name == "constant" else None
    if constant is not None:
        for rung in rungs[1:]:
            if improvement(metric, rung.dev_score, constant.dev_score) <= 0:
                warnings.append(
                    f"rung '{rung.name}' does not beat the constant baseline on dev "
                    f"({metric} {rung.dev_score:.4f} vs {constant.dev_score:.4f}): look for a data or "
                    "label problem (wrong target, leakage removed too much, a broken join), not a "
                    "model problem"
                )
    return Ladder(metric, rungs, chosen, best, warnings, margin, records, side_by_side)


def _side_by_side(
    fit: Callable[..., Rung],
    light: list[Family],
    heavy: list[Family],
    tree_threads: int,
    light_done: Callable[[], None],
) -> list[Rung]:
    """The light rungs (constant, rule, linear) fitted one after another on a thread of their
    own, with one thread each, beside the trees with ``tree_threads`` (the free cores less
    that one, at least 1): the ladder then takes about as long as its trees.

    On two cores that is two one-thread fits: neither waits at a barrier for a busy core
    (the oversubscription that made a two-thread fit take 620 s), and when another process
    holds a core the two share the rest, which is never slower than one after the other.
    Each rung is announced as it starts, in the ladder's order (the trees once the last
    light rung has started); results do not depend on thread counts (see
    :mod:`shipyard.cores`)."""
    announced = threading.Event()

    def lane() -> list[Rung]:
        try:
            rungs = [
                fit(model, 1, announced.set if model is light[-1] else None) for model in light
            ]
        finally:
            announced.set()  # also when a light rung fails: the trees must not wait forever
        light_done()
        return rungs

    interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="shipyard-rungs") as pool:
            done = pool.submit(lane)
            announced.wait()
            trees = [fit(model, tree_threads) for model in heavy]  # a failure still joins
            return [*done.result(), *trees]
    finally:
        sys.setswitchinterval(interval)


def time_rungs(rungs: Sequence[Rung], records: Sequence[Mapping[str, Any]]) -> None:
    """Each rung's one-record latency (p50, p99) on ``records``: run it when nothing else
    in the process competes for the cores, or the numbers measure the competition."""
    for rung in rungs:
        if records:
            latency = one_record_latency(rung.model.predict_one, records)
            rung.p99_ms, rung.p50_ms = latency["p99_ms"], latency["p50_ms"]


def _budget_message(rung: Rung, budget: float | None, most: int | None) -> str:
    """What a rung's time budget did, for the output and the tracked run."""
    limit = f"[training] max_rung_seconds = {budget:g}"
    if rung.rounds is not None and most is not None:
        kept = getattr(rung.model, "best_iteration_", rung.rounds)
        return (
            f"rung '{rung.name}' hit its time budget ({limit}) after {rung.rounds} of {most} "
            f"boosting rounds ({rung.fit_seconds:.1f} s): it keeps {kept} rounds (the best on "
            "dev so far) and may be weaker than a full fit. Raise the budget, or unset it, to "
            "let it finish."
        )
    return (
        f"rung '{rung.name}' went over its time budget ({limit}): its fit took "
        f"{rung.fit_seconds:.1f} s and cannot be stopped midway, so it was kept whole. Raise "
        "the budget, or use less data."
    )
