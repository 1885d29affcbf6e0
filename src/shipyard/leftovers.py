"""Trainings in flight, and what a dead one left behind.

A ``train`` writes a small marker, ``.shipyard/training/<token>.json``, before it creates
anything else: its owner (pid, host, boot id and the process's start time) and, once known,
its MLflow run and bundle folder. It removes the marker when it has finished. A marker whose
owner is dead (a ``kill -9``, a power cut) names exactly what was left half-done, and the next
command that opens the workspace settles it with :func:`sweep`: the run (and its nested rung
runs) is marked FAILED, the orphan bundle is removed — never a bundle that a registered
version or the deployment record points at — and the marker goes last, so a sweep that is
itself interrupted is simply done again.

An owner is dead when its pid no longer exists, or the pid now belongs to a process started at
another time (pids are reused), or the machine has rebooted since. A marker written on another
host is never touched: its process cannot be seen from here.

>>> me = Owner.current()
>>> me.alive(), Owner(pid=me.pid, host=me.host, boot=me.boot, started=-1).alive()
(True, False)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import ShipyardError
from shipyard.files import atomic_write
from shipyard.processes import alive, start_ticks

if TYPE_CHECKING:
    from shipyard.tracking import Tracker
    from shipyard.workspace import Workspace

__all__ = ["Cleanup", "Marker", "Owner", "sweep", "training"]


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


@dataclass(frozen=True)
class Owner:
    """The process that runs a training: enough to tell later whether it is still alive."""

    pid: int
    host: str
    boot: str | None
    started: int | None  # clock ticks since boot (Linux), None where it cannot be read

    @classmethod
    def current(cls) -> Owner:
        pid = os.getpid()
        return cls(pid=pid, host=socket.gethostname(), boot=_boot_id(), started=start_ticks(pid))

    @property
    def local(self) -> bool:
        return self.host == socket.gethostname()

    def alive(self) -> bool:
        """Still running (always True for another host's process: it cannot be checked)."""
        if not self.local:
            return True
        if self.boot is not None and self.boot != _boot_id():
            return False  # rebooted since: every process of that boot is gone
        if not alive(self.pid):
            return False
        return self.started is None or start_ticks(self.pid) == self.started

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


@dataclass
class Marker:
    """One training in flight: its owner, when it began, its run and bundle once known."""

    path: Path
    owner: Owner
    began: str
    tracked: bool = True  # its runs carry the tag ``shipyard_marker = <token>``
    run_id: str | None = None
    bundle: str | None = None  # relative to the workspace folder

    @property
    def token(self) -> str:
        return self.path.stem

    def save(self) -> None:
        document = {
            "owner": asdict(self.owner),
            "began": self.began,
            "tracked": self.tracked,
            "run_id": self.run_id,
            "bundle": self.bundle,
        }
        atomic_write(self.path, json.dumps(document, indent=1))

    @classmethod
    def read(cls, path: Path) -> Marker:
        """The marker at ``path``; :class:`ValueError` if it is not one."""
        data = json.loads(path.read_text())
        owner = data["owner"]
        return cls(
            path=path,
            owner=Owner(
                pid=int(owner["pid"]),
                host=str(owner["host"]),
                boot=owner.get("boot"),
                started=owner.get("started"),
            ),
            began=str(data["began"]),
            tracked=bool(data.get("tracked", True)),
            run_id=data.get("run_id"),
            bundle=data.get("bundle"),
        )


@dataclass
class Cleanup:
    """What :func:`sweep` did: runs marked FAILED, bundles removed, what it left and why."""

    trainings: list[str] = field(default_factory=list)  # the dead owners, described
    failed_runs: list[str] = field(default_factory=list)
    removed_bundles: list[str] = field(default_factory=list)
    kept_bundles: list[str] = field(default_factory=list)  # registered or deployed
    problems: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.trainings or self.problems)

    def line(self) -> str:
        """The one line a command prints on stderr ('' when there was nothing to do)."""
        if not self:
            return ""
        parts = []
        if self.trainings:
            n = len(self.trainings)
            parts.append(
                f"cleaned up after {n} killed train{'s' if n > 1 else ''} "
                f"({', '.join(self.trainings)})"
            )
        if self.failed_runs:
            parts.append(
                f"marked run{'s' if len(self.failed_runs) > 1 else ''} FAILED: "
                + ", ".join(self.failed_runs)
            )
        if self.removed_bundles:
            parts.append("removed orphan bundle(s): " + ", ".join(self.removed_bundles))
        if self.kept_bundles:
            parts.append("kept registered bundle(s): " + ", ".join(self.kept_bundles))
        parts += self.problems
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.contextmanager
def training(workspace: Workspace, tracked: bool = True) -> Iterator[Marker]:
    """Mark a training in flight for as long as the block runs.

    The caller tags its runs with ``shipyard_marker = marker.token`` (so a run created just
    before a kill is found too), and sets ``run_id`` and ``bundle`` on the marker and calls
    ``save()`` as soon as they are known. On success the marker is removed. On an exception
    the marker is settled at once (its run marked FAILED, its bundle removed unless
    registered), as the next command would after a kill; if that cannot be done now, the
    marker stays for the next command.
    """
    owner = Owner.current()
    began = datetime.now(UTC)
    token = f"{began:%Y%m%dT%H%M%S%f}-{owner.pid}"
    marker = Marker(workspace.trainings / f"{token}.json", owner, began.isoformat(), tracked)
    marker.save()
    try:
        yield marker
    except BaseException:
        with contextlib.suppress(Exception):
            _settle_all(workspace, [marker], Cleanup())
        raise
    marker.path.unlink(missing_ok=True)


def sweep(workspace: Workspace) -> Cleanup:
    """Settle every training whose owner is dead (see the module docstring).

    Cheap when there is nothing to do (one folder listing, no MLflow). Trainings of live
    processes, and of other hosts, are left alone.
    """
    done = Cleanup()
    folder = workspace.trainings
    if not folder.is_dir():
        return done
    for leftover in folder.glob(".*.tmp"):  # a marker write killed before its rename
        found = re.fullmatch(r"\..+\.(\d+)\.tmp", leftover.name)
        if found and not alive(int(found.group(1))):
            leftover.unlink(missing_ok=True)
    dead: list[Marker] = []
    for path in sorted(folder.glob("*.json")):
        try:
            marker = Marker.read(path)
        except (OSError, ValueError, KeyError, TypeError):
            done.problems.append(
                f"'{path}' is not a training marker shipyard can read; delete it if no "
                "`shipyard train` is running"
            )
            continue
        if not marker.owner.alive():
            dead.append(marker)
    if dead:
        _settle_all(workspace, dead, done)
    return done


def _settle_all(workspace: Workspace, markers: list[Marker], done: Cleanup) -> None:
    tracker: Tracker | None = None
    protected: set[Path] | None = None
    for marker in markers:
        with _claimed(marker.path) as mine:
            if not mine:
                continue  # another command is settling it right now, or has settled it
            try:
                if marker.tracked and tracker is None:
                    tracker = workspace.tracker()
                if marker.bundle is not None and protected is None:
                    protected = _protected(workspace, tracker)
                failed = (
                    tracker.fail_runs(marker.token, marker.run_id)
                    if marker.tracked and tracker is not None
                    else []
                )
                removed, kept = _remove_bundle(workspace, marker, protected or set())
            except ShipyardError as exc:
                done.problems.append(
                    f"could not clean up after the training of {marker.owner.describe()} "
                    f"({exc}); the next command will try again"
                )
                continue
            done.trainings.append(f"{marker.owner.describe()}, began {marker.began[:19]}")
            done.failed_runs += failed
            done.removed_bundles += removed
            done.kept_bundles += kept
            marker.path.unlink(missing_ok=True)


@contextlib.contextmanager
def _claimed(path: Path) -> Iterator[bool]:
    """Hold an exclusive lock on the marker file; False if another process holds it, or the
    marker is gone (settled while we waited)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield os.fstat(fd).st_nlink > 0
    finally:
        os.close(fd)


def _protected(workspace: Workspace, tracker: Tracker | None) -> set[Path]:
    """Bundle folders that must stay: those the deployment record names, and those of runs
    a registered version came from. Raises if either cannot be read (then nothing goes)."""
    keep = {workspace.inside(p) for p in workspace.registry.state().bundles.values()}
    if tracker is not None:
        keep |= {
            workspace.run_bundle(v.run_id).resolve()
            for v in tracker.versions(workspace.model)
            if v.run_id is not None
        }
    return keep


def _remove_bundle(
    workspace: Workspace, marker: Marker, protected: set[Path]
) -> tuple[list[str], list[str]]:
    if marker.bundle is None:
        return [], []
    folder = workspace.inside(marker.bundle)
    if folder in protected:
        return [], [marker.bundle]
    removed = []
    for path in (folder, folder.with_name(folder.name + ".tmp")):  # save_bundle's temporary
        if path.exists():
            removed.append(workspace.relative(path))
            shutil.rmtree(path, ignore_errors=True)
    return removed, []
