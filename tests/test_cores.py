"""Threads from the cores actually free: the choice, the ledger across concurrent work, the
user's override, and that the thread count never changes a fitted model."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest

from shipyard.cores import (
    LEDGER,
    THREADS_ENV,
    Ledger,
    available_cores,
    choose_threads,
    others_load,
    own_load,
    requested_threads,
)
from shipyard.data.roles import profile
from shipyard.errors import SpecError
from shipyard.models import Constant, GradientBoostedTrees, Linear, Watch
from shipyard.models.ladder import climb


@pytest.mark.parametrize(
    ("cores_", "others", "held", "requested", "expected"),
    [
        (2, 0.0, 0, None, 2),  # an idle two-core machine: both
        (2, 0.2, 0, None, 2),  # a daemon's trickle does not take a core
        (2, 0.8, 0, None, 1),  # another process on one core: one thread, not two fighting
        (2, 1.0, 0, None, 1),
        (2, 7.4, 0, None, 1),  # overloaded (as this machine was): still at least one
        (2, 0.0, 1, None, 1),  # the tracking set-up holds one core: the fit gets the other
        (2, 0.0, 2, None, 1),  # everything held: the floor of one, work never waits
        (8, 2.6, 3, None, 2),  # 8 − 2.6 → 5 free, 3 held by shipyard's own work
        (8, -1.0, 0, None, 8),  # a negative estimate counts as no load
        (4, 3.0, 0, 3, 3),  # the user's count wins over the load…
        (2, 0.0, 0, 16, 2),  # …capped at the cores this process may use
        (2, 0.0, 5, 2, 2),  # and is not reduced by what shipyard holds
    ],
)
def test_the_choice_on_constructed_inputs(cores_, others, held, requested, expected):
    assert choose_threads(cores_, others, held=held, requested=requested) == expected


def test_the_choice_on_this_machine():
    """The real affinity mask and load average of the machine running the tests."""
    mine = available_cores()
    assert mine <= len(os.sched_getaffinity(0))  # fewer only under a cgroup CPU quota
    assert 1 <= mine <= (os.cpu_count() or 1)
    load = os.getloadavg()[0]
    others = others_load(mine)
    assert 0.0 <= others <= load * mine / (os.cpu_count() or 1) + 1e-9
    threads = choose_threads(mine, others)
    assert 1 <= threads <= mine
    # the estimate of this process's own share is at most what it ran on average
    assert 0.0 <= own_load() <= mine + 1e-9
    with LEDGER.threads("test") as granted:
        assert 1 <= granted <= mine
        assert LEDGER.in_use >= granted
    assert LEDGER.in_use == 0


def test_a_fresh_process_counts_almost_nothing_of_the_load_as_its_own():
    code = "from shipyard.cores import own_load; print(own_load())"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    # it ran about a second: at most a few hundredths of a core over the one-minute window
    assert 0.0 <= float(done.stdout) < 0.1


def test_concurrent_work_never_holds_more_threads_than_cores():
    """Many holders at once: every grant after the cores run out is the floor of one."""
    ledger = Ledger(cores=lambda: 4, load=lambda mine: 0.0)
    granted: list[int] = []
    ready, release = threading.Barrier(6), threading.Event()

    def work() -> None:
        with ledger.threads("worker") as n:
            granted.append(n)
            ready.wait(timeout=30)
            release.wait(timeout=30)

    workers = [threading.Thread(target=work) for _ in range(5)]
    for w in workers:
        w.start()
    ready.wait(timeout=30)
    assert sum(granted) == ledger.in_use
    # the first takes all 4; every later one gets the floor of one thread
    assert sorted(granted) == [1, 1, 1, 1, 4]
    release.set()
    for w in workers:
        w.join(timeout=30)
    assert ledger.in_use == 0
    with ledger.threads("after", at_most=3) as n:
        assert n == 3  # everything was given back; at_most caps the grant


def test_the_tracking_set_up_holds_a_core_the_fit_beside_it_cannot_take():
    ledger = Ledger(cores=lambda: 2, load=lambda mine: 0.0)
    with ledger.threads("tracking set-up", at_most=1) as background, ledger.threads("gbt") as fit:
        assert (background, fit) == (1, 1)
    with ledger.threads("gbt") as alone:
        assert alone == 2


def test_the_environment_overrides_the_spec(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert requested_threads(None) is None
    assert requested_threads(3) == 3
    monkeypatch.setenv(THREADS_ENV, "1")
    assert requested_threads(3) == 1
    for bad in ("0", "two", "-1", "1.5"):
        monkeypatch.setenv(THREADS_ENV, bad)
        with pytest.raises(SpecError) as info:
            requested_threads(None)
        assert THREADS_ENV in str(info.value) and repr(bad) in str(info.value)


def _churn_xy(churn: pd.DataFrame):
    frame = churn.drop(columns=["rownames", "churn"])
    y = (churn["churn"] == "Yes").to_numpy(int)
    roles = {c: p.role for c, p in profile(frame).items()}
    return frame.iloc[:5000], y[:5000], (frame.iloc[5000:], y[5000:]), roles


def test_the_thread_count_never_changes_the_model(churn):
    """Seed-determinism holds whatever the free cores allowed: 1, 2 or 3 threads give the
    same trees and the same coefficients, bit for bit."""
    frame, y, dev, roles = _churn_xy(churn)
    texts, coefs = set(), set()
    for threads in (1, 2, 3):
        gbt = GradientBoostedTrees(seed=7, n_estimators=150)
        watch = Watch(threads=threads)
        gbt.fit(frame, y, roles=roles, dev=dev, watch=watch)
        assert watch.threads_used == min(threads, available_cores())
        trees, _, params = gbt.model_text_.partition("\nparameters:\n")
        assert f"[num_threads: {watch.threads_used}]" in params  # the one line that differs
        texts.add(trees)
        linear = Linear(seed=7).fit(frame, y, roles=roles, watch=Watch(threads=threads))
        coefs.add(np.asarray(linear.coef_).tobytes())
    assert len(texts) == 1 and len(coefs) == 1


def test_a_tiny_budget_stops_boosting_and_keeps_the_rounds_so_far(churn):
    frame, y, dev, roles = _churn_xy(churn)
    full = GradientBoostedTrees(seed=7).fit(frame, y, roles=roles, dev=dev)
    rounds: list[tuple[int, int]] = []
    watch = Watch(max_seconds=1e-9, on_round=lambda done, total: rounds.append((done, total)))
    cut = GradientBoostedTrees(seed=7).fit(frame, y, roles=roles, dev=dev, watch=watch)
    # over budget from the start: boosting stops after its first round, and keeps it
    assert watch.budget_hit and watch.rounds == 1 and rounds == [(1, 1000)]
    assert cut.best_iteration_ == 1 < full.best_iteration_
    assert "Tree=0" in cut.model_text_ and "Tree=1" not in cut.model_text_
    p = cut.predict(dev[0])
    assert p.shape == (len(dev[0]),) and np.all((p > 0) & (p < 1))
    # the same fit without a budget follows every round to early stopping
    unbounded = Watch(on_round=lambda done, total: rounds.append((done, total)))
    GradientBoostedTrees(seed=7).fit(frame, y, roles=roles, dev=dev, watch=unbounded)
    assert not unbounded.budget_hit and unbounded.rounds == rounds[-1][0] > 1


def _churn_families() -> list:
    return [Constant(seed=7), Linear(seed=7), GradientBoostedTrees(seed=7)]


def _climb_churn(families, data, **options):
    frame, y, dev, roles = data
    return climb(
        families, (frame, y), dev, roles=roles, metric="roc_auc", min_improvement=0.005, **options
    )


def test_the_lighter_rungs_fit_beside_the_trees_and_change_nothing(churn):
    """With no thread count fixed and two or more cores, constant and linear are fitted on a
    thread of their own beside the trees: the same scores, choice and trees as one after the
    other, each rung announced once, in the ladder's order, and never more threads than cores."""
    if available_cores() < 2:
        pytest.skip("one core: the rungs fit one after another")
    frame, y, dev, roles = _churn_xy(churn)
    seen: list[tuple[str, int]] = []

    def ladder(threads):
        stages: list[str] = []
        done = _climb_churn(
            _churn_families(),
            (frame, y, dev, roles),
            threads=threads,
            progress=stages.append,
            on_round=lambda _d, _t: seen.append(("round", LEDGER.in_use)),
        )
        return done, stages

    beside, stages = ladder(None)
    alone, _ = ladder(1)
    assert beside.side_by_side and not alone.side_by_side
    assert stages[:3] == ["rung constant 1/3", "rung linear 2/3", "rung gbt 3/3"]
    assert [r.dev_score for r in beside.rungs] == [r.dev_score for r in alone.rungs]
    assert [r.delta for r in beside.rungs] == [r.delta for r in alone.rungs]
    assert beside.chosen.name == alone.chosen.name
    assert (
        beside.rungs[2].model.model_text_.partition("\nparameters:\n")[0]
        == (alone.rungs[2].model.model_text_.partition("\nparameters:\n")[0])
    )
    assert beside.rungs[1].threads == 1 and beside.rungs[2].threads >= 1
    # while both fitted, the grants held never passed the cores (one each on two)
    assert max(held for _, held in seen) <= max(available_cores(), 2)


@pytest.mark.parametrize("threads", [None, 1])
def test_the_caller_hears_once_the_lighter_rungs_are_fitted(churn, threads):
    """``light_done`` (train opens the tracking store then) is called once, when constant
    and linear are fitted: beside the trees (no count fixed) or before them (one after the
    other, where it comes between the linear and the gbt rung)."""
    families = _churn_families()
    stages: list[str] = []

    def light_done() -> None:
        fitted = [hasattr(families[1], "coef_"), hasattr(families[2], "model_text_")]
        stages.append(f"light done (linear fitted: {fitted[0]}, gbt fitted: {fitted[1]})")

    _climb_churn(
        families, _churn_xy(churn), threads=threads, progress=stages.append, light_done=light_done
    )
    heard = [s for s in stages if s.startswith("light done")]
    assert heard == ["light done (linear fitted: True, gbt fitted: False)"] or (
        threads is None and heard == ["light done (linear fitted: True, gbt fitted: True)"]
    )
    if threads == 1:
        assert stages[:4] == ["rung constant 1/3", "rung linear 2/3", heard[0], "rung gbt 3/3"]


def test_the_train_curve_is_lightgbms_own_train_loss(churn):
    """The train curve is computed after the fit on up to 10,000 train rows (all of them
    here) from each tree's output: LightGBM's own ``binary_logloss`` on the train set,
    round by round, for every round run (as long as the dev curve)."""
    import lightgbm as lgb

    frame, y, dev, roles = _churn_xy(churn)
    gbt = GradientBoostedTrees(seed=7).fit(frame, y, roles=roles, dev=dev)
    train_curve, dev_curve = gbt.curves_["train"], gbt.curves_["dev"]
    assert len(train_curve) == len(dev_curve) > gbt.best_iteration_
    data = lgb.Dataset(
        gbt.transform_.transform(frame), y, categorical_feature=gbt.transform_.categorical_indices_
    )
    recorded: dict = {}
    lgb.train(
        {**gbt._lgb_params(), "num_threads": 1},
        data,
        num_boost_round=len(train_curve),
        valid_sets=[data],
        valid_names=["train"],
        callbacks=[lgb.record_evaluation(recorded)],
    )
    own = recorded["train"]["binary_logloss"]
    assert np.max(np.abs(np.array(own) - np.array(train_curve))) < 1e-12
    assert train_curve[-1] < train_curve[0]
