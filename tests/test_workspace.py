"""The workspace as a user meets it when there is nothing in it, or when its state is broken:
every command answers with one clear message and exit 2, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shipyard.errors import WorkspaceError
from shipyard.registry import Deployment, Registry, promoted
from shipyard.workspace import Workspace

SHIPYARD = [sys.executable, "-m", "shipyard"]
COMMANDS = {
    "serve": ["serve", "--port", "1"],
    "promote": ["promote", "1", "--to", "champion"],
    "rollback": ["rollback"],
    "predict": ["predict", "in.csv", "out.parquet"],
    "models": ["models"],
    "runs": ["runs"],
    "reproduce": ["reproduce", "0123abcd"],
    "check": ["check"],
    "train": ["train"],
}
SPEC = '[project]\nname = "m"\ntask = "binary"\ntarget = "y"\ndata = "data.csv"\n'


def run(folder: Path, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SHIPYARD, *args], cwd=folder, capture_output=True, text=True, timeout=300
    )


def one_message(done: subprocess.CompletedProcess) -> str:
    """The one error message of a failed command (no traceback, no second error)."""
    text = done.stdout + done.stderr
    assert "Traceback" not in text, text
    assert done.stderr.count("error:") == 1, done.stderr
    return " ".join(done.stderr.split())


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_in_an_empty_folder_says_what_to_do(tmp_path: Path, command: str):
    done = run(tmp_path, COMMANDS[command])
    assert done.returncode == 2
    message = one_message(done)
    assert "no spec file at 'shipyard.toml'" in message and "shipyard init" in message
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_on_a_spec_with_nothing_else(tmp_path: Path, command: str):
    (tmp_path / "shipyard.toml").write_text(SPEC)
    done = run(tmp_path, COMMANDS[command])
    if command in ("models", "runs"):  # an empty listing is an answer, not an error
        assert done.returncode == 0, done.stderr
        assert "yet: run `shipyard train`" in done.stdout
        return
    assert done.returncode == 2, done.stdout + done.stderr
    message = one_message(done)
    expected = {
        "serve": "has no champion yet, so there is nothing to serve",
        "promote": "has no version 1",
        "rollback": "has no champion: there is nothing to roll back",
        "predict": "has no champion yet: promote a version first",
        "reproduce": "no run '0123abcd'",
        "check": "no such file or folder",
        "train": "no such file or folder",
    }[command]
    assert expected in message


CORRUPTED = {
    "truncated": b'{"model": "m", "revision": ',
    "not utf-8": b"\xff\xfe{}",
    "null champion": json.dumps(
        {"model": "m", "revision": 2, "champion": None, "champions": [None, "x"]}
    ).encode(),
    "text champion": json.dumps(
        {"model": "m", "revision": 1, "champion": "abc", "champions": ["abc"]}
    ).encode(),
    "bundle outside": json.dumps(
        {
            "model": "m",
            "revision": 1,
            "champion": 1,
            "champions": [1],
            "bundles": {"1": "../../../../etc"},
        }
    ).encode(),
    "history text": json.dumps({"model": "m", "revision": 1, "history": "abc"}).encode(),
    "a list": b"[1, 2]",
}


@pytest.mark.parametrize("case", sorted(CORRUPTED))
def test_a_corrupted_record_is_refused_naming_the_file(tmp_path: Path, case: str):
    registry = Registry(tmp_path, "m")
    registry.path.write_bytes(CORRUPTED[case])
    with pytest.raises(WorkspaceError, match="is not a valid deployment state") as caught:
        registry.state()
    assert str(registry.path) in str(caught.value) and "Restore it" in str(caught.value)
    with pytest.raises(WorkspaceError):  # nothing is committed over a record it cannot read
        registry.update("t", lambda s: promoted(s, 1, "champion", actor="t", bundle="b/1"))
    assert registry.path.read_bytes() == CORRUPTED[case]


@pytest.mark.parametrize("command", ["serve", "promote", "rollback", "predict", "models"])
def test_commands_on_a_corrupted_record_exit_2(tmp_path: Path, command: str):
    (tmp_path / "shipyard.toml").write_text(SPEC)
    record = Workspace(tmp_path, "m").registry.path
    record.parent.mkdir(parents=True)
    record.write_bytes(CORRUPTED["null champion"])
    done = run(tmp_path, COMMANDS[command])
    assert done.returncode == 2, done.stdout + done.stderr
    message = one_message(done)
    assert "is not a valid deployment state" in message and "'champion" in message
    assert record.read_bytes() == CORRUPTED["null champion"]


def test_a_good_record_still_reads_back(tmp_path: Path):
    registry = Registry(tmp_path, "m")
    registry.update("t", lambda s: promoted(s, 1, "champion", actor="t", bundle="bundles/r1"))
    state = registry.state()
    assert state.champion == 1 and state.bundle(1) == "bundles/r1"
    assert Deployment.from_dict(state.to_dict()) == state


def test_the_workspace_keeps_bundles_inside_it(tmp_path: Path):
    ws = Workspace(tmp_path, "m")
    (ws.bundles / "r1").mkdir(parents=True)
    assert ws.inside("bundles/r1") == (ws.bundles / "r1").resolve()
    assert ws.relative(ws.bundles / "r1") == "bundles/r1"
    with pytest.raises(WorkspaceError, match="outside"):
        ws.inside("../../etc")
