"""The holdout cohort on telco churn: after a rollout, 5% of entity ids (5% ± 1% of 10,000)
stay on the previous champion, sticky across calls and across router instances and
independent of the canary's buckets; a real uvicorn server answers them with arm
``holdout`` in the log, ``experiment`` accepts the arm, and the holdout ends by command
(``shipyard promote --end-holdout``) or at its date, recorded in the history."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from shipyard.errors import SpecError
from shipyard.registry import Deployment, holdout_until, promoted, rolled_back
from shipyard.serving.advance import HOLDOUT_ACTOR
from shipyard.serving.log import read_log
from shipyard.serving.router import Router, in_canary, in_holdout
from shipyard.spec import Spec
from support import champion_alone, churn_traffic, served_app, served_churn, shipyard_cli

IDS = [f"C{i:05d}" for i in range(10_000)]
SERVING = {"log_flush_seconds": 0.2, "poll_seconds": 0.5, "holdout_percent": 5}


@pytest.fixture(scope="module")
def churn_held(tmp_path_factory, churn):
    """Churn (2,000 customers trained on), champion v1; every customer as traffic with its
    row number as entity id."""
    folder = tmp_path_factory.mktemp("holdout")
    project = served_churn(
        folder, churn.sample(2000, random_state=5), project={"id": "rownames"}, serving=SERVING
    )
    records, labels = churn_traffic(churn)
    return {
        "folder": folder,
        "project": project,
        "rel": project.registry.state().bundle(1),
        "records": records,
        "labels": labels,
    }


def _rollout(churn_held, until: str | None = None) -> Deployment:
    """v1 champion alone, then v2 (the same bundle) champion with v1 held out for 5%."""

    def change(state: Deployment) -> Deployment:
        alone = champion_alone(state)
        return promoted(
            alone,
            2,
            "champion",
            actor="test",
            bundle=churn_held["rel"],
            holdout_percent=5,
            holdout_until=until,
        )

    return churn_held["project"].registry.update("test", change)[1]


def test_five_percent_of_ten_thousand_ids_are_held_out_independently_of_the_canary():
    held = [i for i in IDS if in_holdout(i, 5)]
    assert abs(len(held) / len(IDS) - 0.05) <= 0.01
    assert [i for i in IDS if in_holdout(i, 5)] == held  # the same ids every time
    assert set(held) <= {i for i in IDS if in_holdout(i, 20)}  # a larger share contains it
    # another salt: the canary's share among held-out ids is the canary's share overall
    canary = [i for i in IDS if in_canary(i, 50)]
    assert abs(sum(in_canary(i, 50) for i in held) / len(held) - len(canary) / len(IDS)) < 0.08
    assert set(held) != {i for i in IDS if in_canary(i, 5)}


def test_holdout_percent_is_validated():
    with pytest.raises(SpecError, match="holdout_percent"):
        Spec.from_dict(
            {"project": {"target": "y", "task": "binary"}, "serving": {"holdout_percent": 25}}
        )
    with pytest.raises(SpecError, match="holdout_days"):
        Spec.from_dict(
            {"project": {"target": "y", "task": "binary"}, "serving": {"holdout_days": 0}}
        )


def test_a_rollout_keeps_the_old_champion_for_the_holdout_sticky_across_routers(churn_held):
    state = _rollout(churn_held)
    assert state.summary() == {
        "champion": 2,
        "challenger": None,
        "mode": None,
        "percent": 0.0,
        "holdout": 1,
        "holdout_percent": 5.0,
        "holdout_until": None,
    }
    assert state.role(1) == "holdout 5%" and state.history[-1]["after"]["holdout"] == 1
    project = churn_held["project"]
    template = churn_held["records"][0]
    routers = [
        Router(project.workspace, project.spec.serving, id_field="rownames") for _ in range(2)
    ]
    try:
        answers = [
            [r.answer(r.routes, {**template, "rownames": i}, i) for i in IDS[:2000]]
            for r in routers
        ]
    finally:
        for r in routers:
            r.close()
    first, second = ([(a.arm, a.version) for a in got] for got in answers)
    assert first == second  # the same id, the same arm, in another router instance
    assert first == [("holdout", 1) if in_holdout(i, 5) else ("champion", 2) for i in IDS[:2000]]
    assert 0.04 <= sum(arm == "holdout" for arm, _ in first) / 2000 <= 0.06


def test_the_service_logs_the_holdout_experiment_compares_it_and_a_command_ends_it(churn_held):
    project = churn_held["project"]
    _rollout(churn_held)
    records, labels = churn_held["records"], churn_held["labels"]
    with served_app(project.spec.root / "shipyard.toml") as (client, service):
        arms: dict[str, str] = {}
        feedback = []
        for start in range(0, 3000, 500):
            batch = records[start : start + 500]
            body = client.post("/predict", json=batch).json()
            for i, (record, answer) in enumerate(zip(batch, body["predictions"], strict=True)):
                entity = str(record["rownames"])
                assert arms.setdefault(entity, answer["arm"]) == answer["arm"]
                assert answer["model_version"] == (1 if answer["arm"] == "holdout" else 2)
                request_id = f"{body['request_id']}-{i}"
                feedback.append({"request_id": request_id, "label": labels[entity]})
        again = client.post("/predict", json=records[:500]).json()["predictions"]
        assert [a["arm"] for a in again] == [arms[str(r["rownames"])] for r in records[:500]]
        assert set(arms.values()) == {"holdout", "champion"}
        assert all((arm == "holdout") == in_holdout(e, 5) for e, arm in arms.items())
        for start in range(0, len(feedback), 500):  # within [serving] max_records
            sent = client.post("/feedback", json={"feedback": feedback[start : start + 500]})
            assert sent.status_code == 202, sent.text
        service.flush()
        logged = read_log(project.workspace.logs).to_pandas()
        held = logged[logged["arm"] == "holdout"]
        assert len(held) and set(held["model_version"]) == {1}

        service.flush()  # the predictions and the feedback are on disk
        verdict = project.experiment(arms=("champion", "holdout"))
        assert verdict.control.n + verdict.treatment.n == 3000  # every answer has its label
        assert verdict.srm.expected_share == pytest.approx((0.95, 0.05))
        labeled = sum(in_holdout(str(r["rownames"]), 5) for r in records[:3000])
        assert verdict.treatment.name == "holdout" and verdict.treatment.n == labeled
        # monitor scores the labeled answers of the holdout as an arm of its own (the old version)
        scored = {
            (r["arm"], r["model_version"]): r["value"]
            for r in project.monitor().to_dict()["rows"]
            if r["section"] == "performance" and r["statistic"] == "rows" and not r["column"]
        }
        assert scored[("holdout", 1)] == labeled and scored[("champion", 2)] == 3000 - labeled

        ended = shipyard_cli(
            churn_held["folder"], "promote", "--end-holdout", "--reason", "done", "--json"
        )
        assert ended.returncode == 0, ended.stderr
        out = json.loads(ended.stdout)
        assert out["ended"] == 1 and out["percent"] == 5.0 and "holdout" not in out["after"]
        state = project.registry.state()
        entry = state.history[-1]
        assert entry["action"] == "end holdout" and entry["reason"] == "done"
        assert entry["before"]["holdout"] == 1 and state.holdout is None
        deadline = time.monotonic() + 10
        while service.router.routes.holdout is not None:  # the watcher follows the record
            assert time.monotonic() < deadline
            time.sleep(0.02)
        after = client.post("/predict", json=records[:500]).json()["predictions"]
        assert {(a["arm"], a["model_version"]) for a in after} == {("champion", 2)}
    again = shipyard_cli(churn_held["folder"], "promote", "--end-holdout")
    assert again.returncode == 2 and "no holdout cohort to end" in again.stderr
    assert "Traceback" not in again.stderr


def test_a_holdout_past_its_date_is_ended_by_the_server(churn_held):
    past = holdout_until(-1 / 24, datetime.now(UTC))  # an hour ago
    _rollout(churn_held, until=past)
    project = churn_held["project"]
    with served_app(project.spec.root / "shipyard.toml") as (client, _):
        deadline = time.monotonic() + 10
        while project.registry.state().holdout is not None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        answers = client.post("/predict", json=churn_held["records"][:500]).json()["predictions"]
        assert {a["arm"] for a in answers} == {"champion"}
    entry = project.registry.state().history[-1]
    assert entry["action"] == "end holdout" and entry["actor"] == HOLDOUT_ACTOR
    assert entry["reason"] == f"holdout_until {past} reached"


def test_holdout_days_needs_a_champion_promotion(churn_held):
    refused = shipyard_cli(
        churn_held["folder"], "promote", "2", "--to", "canary", "--holdout-days", "3"
    )
    assert refused.returncode == 2 and "--holdout-days" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_the_record_keeps_the_holdout_and_refuses_one_that_makes_no_sense():
    state = promoted(Deployment("m"), 1, "champion", actor="t", bundle="b/1")
    until = holdout_until(14, datetime(2026, 3, 1, tzinfo=UTC))
    state = promoted(
        state, 2, "champion", actor="t", bundle="b/2", holdout_percent=5, holdout_until=until
    )
    assert (state.holdout, state.holdout_percent, state.holdout_until) == (1, 5.0, until)
    assert Deployment.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    assert state.holdout_expired(datetime(2026, 3, 15, tzinfo=UTC))
    assert not state.holdout_expired(datetime(2026, 3, 14, 23, tzinfo=UTC))
    with pytest.raises(SpecError, match="answers the holdout cohort"):
        promoted(state, 1, "canary", actor="t", percent=5)
    # the next rollout without a holdout share ends it; so does a rollback (v1 is back)
    third = promoted(state, 3, "champion", actor="t", bundle="b/3")
    assert third.holdout is None and third.summary()["champion"] == 3
    assert rolled_back(state, actor="t").holdout is None
    for field, value, message in [
        ("holdout_until", "next week", "must be an ISO time"),
        ("holdout_until", "2026-03-15T00:00:00", "must name its time zone"),
        ("holdout", 2, "must be a former champion"),
        ("holdout_percent", 0, "'holdout_percent' must be in"),
    ]:
        with pytest.raises(ValueError, match=message):
            Deployment.from_dict({**state.to_dict(), field: value})
