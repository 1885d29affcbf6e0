"""The deployment state: transitions, the atomic record, the lock, and kill -9 at any point."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shipyard.errors import (
    CheckFailed,
    DeploymentError,
    RegistryLocked,
    SpecError,
    WorkspaceError,
)
from shipyard.registry import (
    Deployment,
    Registry,
    next_canary_percent,
    promoted,
    rolled_back,
    sync_aliases,
)

STEPS = (5.0, 10.0, 25.0, 50.0, 100.0)


def _deployed() -> Deployment:
    state = promoted(Deployment("m"), 1, "champion", actor="t", bundle="bundles/a")
    return promoted(state, 2, "shadow", actor="t", bundle="bundles/b")


def test_a_full_promotion_path_and_rollback_keep_history_and_lineage():
    state = _deployed()
    assert (state.champion, state.challenger, state.mode, state.percent) == (1, 2, "shadow", 0.0)
    percent = next_canary_percent(state, 2, STEPS)
    assert percent == 5.0  # first step: not a canary yet
    state = promoted(state, 2, "canary", actor="t", percent=percent)
    assert next_canary_percent(state, 2, STEPS) == 10.0  # then the next step
    state = promoted(state, 2, "champion", actor="t", reason="beat v1")
    assert (state.champion, state.challenger, state.champions) == (2, None, (1, 2))
    state = rolled_back(state, actor="t", reason="latency")
    assert state.champion == 1 and state.rolled_back == (2,) and state.role(2) == "rolled back"
    assert [h["action"] for h in state.history] == ["promote"] * 4 + ["rollback"]
    assert state.history[-1]["before"]["champion"] == 2
    assert state.history[-1]["reason"] == "latency"
    assert state.revision == len(state.history) == 5
    assert state.bundle(2) == "bundles/b"
    assert Deployment.from_dict(json.loads(json.dumps(state.to_dict()))) == state


def test_moves_that_make_no_sense_are_refused():
    with pytest.raises(SpecError, match="no champion yet"):
        promoted(Deployment("m"), 1, "shadow", actor="t")
    state = _deployed()
    with pytest.raises(SpecError, match="already the champion"):
        promoted(state, 1, "champion", actor="t")
    with pytest.raises(SpecError, match="is the champion"):
        promoted(state, 1, "canary", actor="t", percent=10)
    with pytest.raises(SpecError, match="--percent must be in"):
        promoted(state, 2, "canary", actor="t", percent=150)
    with pytest.raises(SpecError, match="canary only"):
        promoted(state, 2, "shadow", actor="t", percent=5)
    last = promoted(state, 2, "canary", actor="t", percent=100)
    with pytest.raises(SpecError, match="last of"):
        next_canary_percent(last, 2, STEPS)
    with pytest.raises(CheckFailed, match="first champion"):
        rolled_back(state, actor="t")
    with pytest.raises(DeploymentError, match="no champion"):
        rolled_back(Deployment("m"), actor="t")


def test_rollback_skips_versions_already_rolled_back():
    state = promoted(Deployment("m"), 1, "champion", actor="t")
    state = promoted(state, 2, "champion", actor="t")
    state = promoted(state, 3, "champion", actor="t")
    state = rolled_back(state, actor="t")
    assert state.champion == 2
    state = rolled_back(state, actor="t")
    assert state.champion == 1 and state.rolled_back == (3, 2)
    with pytest.raises(CheckFailed):
        rolled_back(state, actor="t")


def test_the_record_is_replaced_atomically_and_read_back(tmp_path: Path):
    registry = Registry(tmp_path, "flights")
    assert registry.state() == Deployment("flights")
    before, after = registry.update("t", lambda s: promoted(s, 1, "champion", actor="t"))
    assert before.revision == 0 and after.revision == 1
    assert registry.state() == after
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flights.json", "flights.lock"]
    # a temporary file a killed writer left behind is swept by the next change
    (tmp_path / ".flights.json.999.tmp").write_text("{half")
    registry.update("t", lambda s: promoted(s, 2, "champion", actor="t"))
    assert not list(tmp_path.glob("*.tmp"))
    assert registry.state().champion == 2


def test_a_hand_broken_record_is_a_clear_error(tmp_path: Path):
    registry = Registry(tmp_path, "flights")
    registry.path.write_text("{not json")
    with pytest.raises(WorkspaceError, match=r"flights\.json.*cannot be read"):
        registry.state()


def test_a_second_change_while_one_holds_the_lock_is_refused_and_changes_nothing(tmp_path):
    registry = Registry(tmp_path, "flights")
    registry.update("t", lambda s: promoted(s, 1, "champion", actor="t"))
    other = Registry(tmp_path, "flights")
    with registry.lock("promote 2 --to champion"):
        with pytest.raises(RegistryLocked, match=r"promote 2 --to champion by pid \d+") as info:
            other.update("t", lambda s: promoted(s, 2, "champion", actor="t"))
        assert info.value.exit_code == 1
    assert registry.state().champion == 1 and registry.state().revision == 1
    other.update("t", lambda s: promoted(s, 2, "champion", actor="t"))  # free again
    assert registry.state().champion == 2


class _Aliases:
    """An in-memory alias store (the real one, MLflow, is exercised in test_deploy.py)."""

    def __init__(self, aliases: dict[str, int]) -> None:
        self.values = dict(aliases)

    def aliases(self, model):
        return dict(self.values)

    def set_alias(self, model, alias, version):
        self.values[alias] = version

    def delete_alias(self, model, alias):
        self.values.pop(alias)


def test_aliases_are_repaired_from_the_state():
    store = _Aliases({"champion": 7, "challenger": 1})
    repairs = sync_aliases(_deployed(), store)
    assert store.values == {"champion": 1, "challenger": 2}
    assert len(repairs) == 2
    assert sync_aliases(_deployed(), store) == []
    alone = promoted(Deployment("m"), 1, "champion", actor="t")
    assert sync_aliases(alone, store) == ["removed alias 'challenger' (was version 2)"]
    assert store.values == {"champion": 1}


WRITER = """
import sys
from shipyard.registry import Registry, promoted, Deployment
registry = Registry(sys.argv[1], "m")
n = 0
while True:
    n += 1
    to = "canary" if n % 2 else "shadow"
    registry.update("loop", lambda s: promoted(
        s, 2, to, actor="loop", percent=(n % 100) + 1 if to == "canary" else None,
        reason="x" * 300))  # a longer record: a torn write would show
    print(n, flush=True)
"""


def test_kill_9_at_random_points_leaves_the_old_or_the_new_state(tmp_path: Path):
    """Many writers killed with SIGKILL mid-loop: every state read back is a whole one."""
    registry = Registry(tmp_path, "m")
    registry.update("setup", lambda s: promoted(s, 1, "champion", actor="t"))
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rng = random.Random(4)
    trials, revisions = 30, []
    for _ in range(trials):
        before = registry.state()
        proc = subprocess.Popen(
            [sys.executable, str(script), str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        proc.stdout.readline()  # it has written at least once: kill it somewhere in the loop
        time.sleep(rng.uniform(0, 0.05))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        after = registry.state()  # parses: never a torn file
        assert after.revision >= before.revision + 1
        assert after.revision == len(after.history)
        assert after.history[: len(before.history)] == before.history
        last = after.history[-1]
        assert last["after"] == after.summary()  # the record agrees with itself
        assert last["before"] == after.history[-2]["after"]
        revisions.append(after.revision)
    assert len(set(revisions)) == trials
    # the lock died with its holders: the next change goes through at once
    registry.update("after", lambda s: promoted(s, 3, "shadow", actor="t"))
    assert registry.state().challenger == 3
