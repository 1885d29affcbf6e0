"""The canary that advances itself, on telco churn served by a real uvicorn server on
127.0.0.1: a challenger no worse than the champion (the same bundle as version 2) climbs
5 → 10 → 25 → 50% and becomes champion, each step a history entry with its evidence; a
challenger planted worse is stopped (by its error rate, or by the always-valid test on the
outcomes sent to ``POST /feedback``); a manual change during a step wins, and a held
registry lock makes the step wait without failing a request."""

from __future__ import annotations

import dataclasses
import functools
import time

import pytest

from shipyard.registry import Deployment, promoted
from shipyard.serving.advance import ACTOR, next_step
from shipyard.serving.router import in_canary
from support import champion_alone, churn_traffic, faulty_arm, served_app, served_churn

#: small windows so that a step is judged after 50 canary requests. Two copies of one model
#: differ only by noise: the p99 ratio on a shared 2-core machine (its limit out of reach),
#: and the mean prediction of 50 entities against 50 others (about 0.2 standard deviations
#: apart by chance; the limit is five times that)
SERVING = {
    "auto_advance": True,
    "guardrail_window": 50,
    "guardrail_min_requests": 50,
    "max_p99_ratio": 1000.0,
    "max_prediction_shift": 1.0,
    "log_flush_seconds": 0.2,
    "poll_seconds": 0.5,
}


@pytest.fixture(scope="module")
def churn_auto(tmp_path_factory, churn):
    """Churn (2,000 customers trained on) with champion v1; every customer as traffic, the
    row number as entity id, and its label."""
    folder = tmp_path_factory.mktemp("auto")
    sample = churn.sample(2000, random_state=3)
    project = served_churn(folder, sample, project={"id": "rownames"}, serving=SERVING)
    records, labels = churn_traffic(churn)
    return {
        "spec": folder / "shipyard.toml",
        "project": project,
        "rel": project.registry.state().bundle(1),
        "records": records,
        "labels": labels,
    }


def _canary(churn_auto, percent: float = 5) -> Deployment:
    """Champion v1 again (nothing rolled back), the same bundle as canary v2 at ``percent``."""

    def change(state: Deployment) -> Deployment:
        alone = champion_alone(state)
        return promoted(alone, 2, "canary", percent=percent, actor="test", bundle=churn_auto["rel"])

    return churn_auto["project"].registry.update("test", change)[1]


def _traffic(client, churn_auto, start: int, n: int = 250) -> list[dict]:
    """One request of ``n`` customers from ``start`` (wrapping): their answers, each with the
    record's request id."""
    records = churn_auto["records"]
    batch = [records[(start + i) % len(records)] for i in range(n)]
    r = client.post("/predict", json=batch)
    assert r.status_code == 200, r.text
    body = r.json()
    return [
        {**answer, "request_id": f"{body['request_id']}-{i}", "entity": str(batch[i]["rownames"])}
        for i, answer in enumerate(body["predictions"])
    ]


def _label(client, service, churn_auto, answers: list[dict]) -> None:
    """Send each answer's label to ``POST /feedback`` and have the service write it."""
    labels = churn_auto["labels"]
    feedback = [{"request_id": a["request_id"], "label": labels[a["entity"]]} for a in answers]
    assert client.post("/feedback", json={"feedback": feedback}).status_code == 202
    service.flush()


def _auto_entries(state: Deployment, since: int) -> list[dict]:
    return [h for h in state.history[since:] if h["actor"] == ACTOR]


def test_next_step_goes_through_the_steps_and_ends_at_champion():
    steps = (5, 10, 25, 50, 100)
    assert [next_step(p, steps) for p in (5, 10, 25, 50, 100)] == [10, 25, 50, None, None]
    assert next_step(25, (5, 25)) is None  # past the last step: champion


@pytest.mark.parametrize("outcomes", [False, True], ids=["guardrails", "outcomes"])
def test_a_challenger_no_worse_climbs_every_step_and_becomes_champion(churn_auto, outcomes):
    """The same bundle as version 2; with ``outcomes`` every answer's label is sent to
    ``POST /feedback``, so the steps are judged by the always-valid test as well."""
    begun = _canary(churn_auto)
    since = len(begun.history)
    registry = churn_auto["project"].registry
    with served_app(churn_auto["spec"]) as (client, service):
        deadline = time.monotonic() + 120
        n = 0
        while registry.state().champion != 2:
            assert time.monotonic() < deadline, registry.state().summary()
            percent = service.router.routes.percent
            answers = _traffic(client, churn_auto, n)
            if service.router.routes.percent == percent:  # no step during the request
                assert all(
                    (a["arm"] == "canary") == in_canary(a["entity"], percent) for a in answers
                )
            if outcomes:
                _label(client, service, churn_auto, answers)
            n += 250
        time.sleep(0.3)  # the router follows the record
        after = _traffic(client, churn_auto, 0)
        assert {(a["arm"], a["model_version"]) for a in after} == {("champion", 2)}
    state = registry.state()
    entries = _auto_entries(state, since)
    assert [(e["to"], e["after"]["percent"]) for e in entries] == [
        ("canary", 10.0),
        ("canary", 25.0),
        ("canary", 50.0),
        ("champion", 0.0),
    ]
    assert [e["evidence"]["step_percent"] for e in entries] == [5.0, 10.0, 25.0, 50.0]
    for entry in entries:
        evidence = entry["evidence"]
        assert evidence["step_requests"] >= 50  # the step served its window
        guardrails = evidence["guardrails"]
        assert guardrails["requests"] == 50 and guardrails["error_rate"] == 0.0
        assert 0.0 <= guardrails["prediction_shift"] <= 1.0
        test = evidence["test"]
        if test["outcomes"]:
            assert test["harm"] is False and test["p_value"] > 0.05
            assert abs(test["rise"]) < 0.05 and min(test["counts"].values()) >= 50
            assert f"p-value {test['p_value']:.3g} shows no harm" in entry["reason"]
        else:
            assert "with no guardrail breach; no outcomes to test yet" in entry["reason"]
    tested = [e["evidence"]["test"]["outcomes"] for e in entries]
    assert any(tested) if outcomes else not any(tested)  # no labels: judged on guardrails
    assert state.champion == 2 and state.challenger is None and state.champions[-1] == 2
    assert state.holdout is None  # holdout_percent is 0 here


def test_a_challenger_that_errors_is_stopped_and_never_advances(churn_auto):
    begun = _canary(churn_auto, percent=10)
    since = len(begun.history)
    registry = churn_auto["project"].registry
    with served_app(churn_auto["spec"], functools.partial(faulty_arm, "raise")) as (client, _):
        deadline = time.monotonic() + 60
        n = 0
        while registry.state().challenger is not None:
            assert time.monotonic() < deadline
            answers = _traffic(client, churn_auto, n)
            assert {a["arm"] for a in answers} == {"champion"}  # the champion covers for it
            n += 250
    state = registry.state()
    assert _auto_entries(state, since) == []  # never a step
    last = state.history[-1]
    assert last["action"] == "stop challenger" and "max_error_rate" in last["reason"]
    assert last["evidence"]["value"] == 1.0 and 2 in state.rolled_back and state.champion == 1


def test_a_challenger_worse_on_the_outcomes_is_stopped_by_the_always_valid_test(churn_auto):
    """The challenger adds 0.5 to every churn probability; the prediction-shift guardrail is
    put out of reach, so only the outcomes (labels sent to /feedback) can show the harm."""
    begun = _canary(churn_auto, percent=25)
    since = len(begun.history)
    registry = churn_auto["project"].registry
    with served_app(churn_auto["spec"], functools.partial(faulty_arm, "shift")) as (
        client,
        service,
    ):
        service.router.policy = dataclasses.replace(
            service.router.policy, max_prediction_shift=1e9, advance_min_requests=100
        )
        deadline = time.monotonic() + 120
        n = 0
        while registry.state().challenger is not None:
            assert time.monotonic() < deadline, registry.state().summary()
            _label(client, service, churn_auto, _traffic(client, churn_auto, n, n=100))
            n += 100
            time.sleep(0.1)
    state = registry.state()
    last = state.history[-1]
    assert last["actor"] == ACTOR and last["action"] == "stop challenger"
    assert "the always-valid test shows harm" in last["reason"]
    test = last["evidence"]["test"]
    assert test["outcomes"] is True and test["harm"] is True
    assert test["p_value"] <= 0.05 and test["rise"] > 0.05
    assert test["canary_mean"] > test["champion_mean"]
    assert min(test["counts"].values()) >= 50
    assert 2 in state.rolled_back and state.champion == 1 and state.challenger is None
    # it may have advanced before the outcomes arrived, never to champion
    assert all(e["to"] == "canary" for e in _auto_entries(state, since) if e.get("to"))


def test_a_manual_change_during_a_step_wins_and_a_held_lock_makes_the_step_wait(churn_auto):
    begun = _canary(churn_auto, percent=5)
    since = len(begun.history)
    registry = churn_auto["project"].registry
    with served_app(churn_auto["spec"]) as (client, service):
        router = service.router
        with registry.lock("manual promote (test)"):
            n = 0
            deadline = time.monotonic() + 60
            while "waits for the next check" not in router.advance._said:
                assert time.monotonic() < deadline, "the step never came due"
                _traffic(client, churn_auto, n)  # requests keep being answered
                n += 250
                time.sleep(0.05)
            assert "in progress (manual promote (test)" in router.advance._said
            assert registry.state().revision == begun.revision  # nothing committed
            due = router.step_requests
            # the manual promotion commits while holding the lock (what `promote` does)
            manual = promoted(registry.state(), 2, "canary", percent=25, actor="ana")
            registry._write(manual)
        deadline = time.monotonic() + 10
        while router.routes.revision != manual.revision:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert router.step_requests < due  # the window restarted at the manual state
        state = registry.state()
        assert state.history[-1]["actor"] == "ana" and state.percent == 25.0
        assert _auto_entries(state, since) == []  # the auto step did nothing
        # a step judged against a revision that moved commits nothing
        assert router.advance._commit("promote (auto_advance)", begun.revision, lambda s: s) is None
        assert "changed since the step began" in router.advance._said
        assert registry.state().revision == manual.revision
        # and from the manual state the canary goes on by itself: 25 → 50
        deadline = time.monotonic() + 60
        while registry.state().percent != 50.0:
            assert time.monotonic() < deadline
            _traffic(client, churn_auto, n)
            n += 250
    entry = _auto_entries(registry.state(), since)[0]
    assert entry["evidence"]["step_percent"] == 25.0 and entry["after"]["percent"] == 50.0
