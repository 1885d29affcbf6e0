"""Deployment state: who serves, who challenges, and every change — one record, one write.

The whole state of a registered model — champion version, challenger version, challenger
mode (``shadow`` or ``canary``), canary percent, the champions in order (for rollback), the
versions rolled back, where each promoted version's bundle lives, and a history of every
change with time, actor and reason — is ONE JSON document,
``.shipyard/deployment/<model>.json``. It is replaced in one atomic operation (written to a
temporary file, flushed to disk, renamed over the old one), so a crash at any point leaves
either the previous state or the new one, never a mix. Changes take an exclusive lock
(``<model>.lock``, released by the kernel if the holder dies); a second promotion while one
holds it is refused, with the holder named.

MLflow's aliases ``champion`` and ``challenger`` mirror this record for the MLflow UI;
:func:`sync_aliases` repairs them from it when they disagree (after a crash between the two
writes, or a hand edit in the UI). Reading the state needs neither MLflow nor pandas, so a
rollback commits in milliseconds.

>>> state = Deployment("flights")
>>> state = promoted(state, 1, "champion", actor="ana", bundle="bundles/r1")
>>> state = promoted(state, 2, "canary", percent=10, actor="ana", bundle="bundles/r2")
>>> state.champion, state.challenger, state.mode, state.percent
(1, 2, 'canary', 10.0)
>>> state = promoted(state, 2, "champion", actor="ana")
>>> state = rolled_back(state, actor="ana", reason="p99 doubled")
>>> state.champion, state.rolled_back, state.revision
(1, (2,), 4)
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from shipyard.errors import (
    CheckFailed,
    DeploymentError,
    RegistryLocked,
    SpecError,
    WorkspaceError,
)
from shipyard.files import atomic_write, sweep

TARGETS = ("shadow", "canary", "champion")
ALIASES = ("champion", "challenger")
STATE_VERSION = 1


@dataclass(frozen=True)
class Deployment:
    """The deployment state of one registered model (see the module docstring)."""

    model: str
    revision: int = 0
    champion: int | None = None
    challenger: int | None = None
    mode: str | None = None  # "shadow" or "canary" when there is a challenger
    percent: float = 0.0  # share of traffic the canary gets
    champions: tuple[int, ...] = ()  # every champion in order; the current one last
    rolled_back: tuple[int, ...] = ()
    bundles: dict[str, str] = field(default_factory=dict)  # version -> bundle folder
    history: tuple[dict[str, Any], ...] = ()
    #: the holdout cohort: the previous champion, still answering ``holdout_percent`` of
    #: entities after a rollout, until ``holdout_until`` (ISO time; None: until ended)
    holdout: int | None = None
    holdout_percent: float = 0.0
    holdout_until: str | None = None

    def role(self, version: int) -> str:
        """What the version does now: champion, shadow, canary P%, rolled back, or ''."""
        if version == self.champion:
            return "champion"
        if version == self.challenger:
            return f"canary {self.percent:g}%" if self.mode == "canary" else "shadow"
        if version == self.holdout:
            return f"holdout {self.holdout_percent:g}%"
        if version in self.rolled_back:
            return "rolled back"
        if version in self.champions:
            return "former champion"
        return ""

    def aliases(self) -> dict[str, int | None]:
        return {"champion": self.champion, "challenger": self.challenger}

    def bundle(self, version: int) -> str | None:
        return self.bundles.get(str(version))

    def summary(self) -> dict[str, Any]:
        """The state without its history (what each history entry records as before/after);
        the holdout's fields only while there is one."""
        out: dict[str, Any] = {
            "champion": self.champion,
            "challenger": self.challenger,
            "mode": self.mode,
            "percent": self.percent,
        }
        if self.holdout is not None:
            out["holdout"] = self.holdout
            out["holdout_percent"] = self.holdout_percent
            out["holdout_until"] = self.holdout_until
        return out

    def holdout_expired(self, now: datetime | None = None) -> bool:
        """Whether a holdout's ``holdout_until`` has passed."""
        if self.holdout is None or self.holdout_until is None:
            return False
        return (now or datetime.now(UTC)) >= datetime.fromisoformat(self.holdout_until)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["state_version"] = STATE_VERSION
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Deployment:
        """The state a record holds, checked for sense, not just for JSON: raises
        :class:`ValueError` naming the first field that is wrong."""
        if not isinstance(data, Mapping):
            raise ValueError(f"the record must be a JSON object, not {type(data).__name__}")
        state = cls(
            model=_field(data, "model", str, required=True),
            revision=_field(data, "revision", int, required=True),
            champion=_version(data, "champion"),
            challenger=_version(data, "challenger"),
            mode=_field(data, "mode", str),
            percent=float(_field(data, "percent", (int, float)) or 0.0),
            champions=tuple(_versions(data, "champions")),
            rolled_back=tuple(_versions(data, "rolled_back")),
            bundles=_bundles(data),
            history=tuple(_history(data)),
            holdout=_version(data, "holdout"),
            holdout_percent=float(_field(data, "holdout_percent", (int, float)) or 0.0),
            holdout_until=_time(data, "holdout_until"),
        )
        if state.revision < 0:
            raise ValueError(f"'revision' must be 0 or more; got {state.revision}")
        if state.mode not in (None, "shadow", "canary"):
            raise ValueError(f'\'mode\' must be null, "shadow" or "canary"; got {state.mode!r}')
        if (state.challenger is None) != (state.mode is None):
            raise ValueError("'challenger' and 'mode' must be set together, or both be null")
        if not 0.0 <= state.percent <= 100.0:
            raise ValueError(f"'percent' must be in [0, 100]; got {state.percent:g}")
        if state.holdout is not None and not 0.0 < state.holdout_percent <= 100.0:
            raise ValueError(
                f"'holdout_percent' must be in (0, 100] while there is a holdout; got "
                f"{state.holdout_percent:g}"
            )
        if state.holdout is not None and state.holdout == state.champion:
            raise ValueError("'holdout' must be a former champion, not the champion itself")
        if state.champion is not None and (
            not state.champions or state.champions[-1] != state.champion
        ):
            raise ValueError(
                f"'champions' must end with the champion ({state.champion}); got {list(state.champions)}"
            )
        return state


def _field(data: Mapping[str, Any], key: str, kind: Any, required: bool = False) -> Any:
    if key not in data or data[key] is None:
        if required:
            raise ValueError(f"'{key}' is missing")
        return None
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"'{key}' has the wrong type: {value!r}")
    return value


def _version(data: Mapping[str, Any], key: str) -> int | None:
    value = _field(data, key, int)
    if value is not None and value < 1:
        raise ValueError(f"'{key}' must be a version number (1 or more); got {value!r}")
    return value


def _versions(data: Mapping[str, Any], key: str) -> list[int]:
    values = list(_field(data, key, (list, tuple)) or [])
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"'{key}' must list version numbers; got {value!r} in {values!r}")
    return values


def _time(data: Mapping[str, Any], key: str) -> str | None:
    value = _field(data, key, str)
    if value is not None:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"'{key}' must be an ISO time; got {value!r}") from None
        if moment.tzinfo is None:
            raise ValueError(f"'{key}' must name its time zone (e.g. +00:00); got {value!r}")
    return value


def _bundles(data: Mapping[str, Any]) -> dict[str, str]:
    bundles = _field(data, "bundles", dict) or {}
    for key, folder in bundles.items():
        if not key.isdigit() or not isinstance(folder, str) or not folder:
            raise ValueError(f"'bundles' maps version numbers to folders; got {key!r}: {folder!r}")
        if folder.startswith("/") or ".." in Path(folder).parts:
            raise ValueError(
                f"'bundles' names the folder {folder!r} for version {key}: bundle folders are "
                "relative paths inside the workspace"
            )
    return dict(bundles)


def _history(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    history = list(_field(data, "history", (list, tuple)) or [])
    for entry in history:
        if not isinstance(entry, dict) or not isinstance(entry.get("action"), str):
            raise ValueError(f"'history' must list change entries with an action; got {entry!r}")
    return history


def actor() -> str:
    """Who is making a change: ``SHIPYARD_ACTOR``, else user@host."""
    name = os.environ.get("SHIPYARD_ACTOR")
    if name:
        return name
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _entry(
    before: Deployment, after: Deployment, action: str, who: str, **details: Any
) -> dict[str, Any]:
    return {
        "revision": after.revision,
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "actor": who,
        "action": action,
        "before": before.summary(),
        "after": after.summary(),
        **{k: v for k, v in details.items() if v is not None},
    }


def canary_since(state: Deployment, *, step: bool = False) -> datetime | None:
    """When the state's canary began: the time of the change that made its version the
    canary after something else (its later steps continue it), or with ``step`` the change
    that set its current percent (each step is a new split). None without a canary."""
    if state.challenger is None or state.mode != "canary":
        return None
    keys = ("challenger", "mode", "percent") if step else ("challenger", "mode")
    began = None
    for entry in reversed(state.history):
        after, before = entry.get("after") or {}, entry.get("before") or {}
        if any(after.get(k) != getattr(state, k) for k in keys):
            break
        began = entry.get("time")
        if any(before.get(k) != after.get(k) for k in keys):
            break
    return None if began is None else datetime.fromisoformat(began)


def next_canary_percent(state: Deployment, version: int, steps: tuple[float, ...]) -> float:
    """The canary's next step: the first step when the version is not the canary yet."""
    if state.challenger == version and state.mode == "canary":
        later = [p for p in steps if p > state.percent]
        if not later:
            raise SpecError(
                f"version {version} is already a canary at {state.percent:g}%, the last of "
                f"[serving] canary_steps {list(steps)}; promote it --to champion."
            )
        return float(later[0])
    return float(steps[0])


def promoted(
    state: Deployment,
    version: int,
    to: str,
    *,
    actor: str,
    percent: float | None = None,
    bundle: str | None = None,
    reason: str | None = None,
    forced: list[str] | None = None,
    evidence: Mapping[str, Any] | None = None,
    holdout_percent: float = 0.0,
    holdout_until: str | None = None,
) -> Deployment:
    """The state after promoting ``version`` to ``to`` (pure: nothing is written).

    A new champion with ``holdout_percent`` above 0 keeps the champion it replaces as the
    holdout (that share of entities stays on it, until ``holdout_until`` or
    :func:`holdout_ended`); without one, any earlier holdout ends with the rollout.

    Raises :class:`SpecError` (exit 2) for a move that makes no sense in this state.
    """
    if to not in TARGETS:
        raise SpecError(f"--to must be one of {', '.join(TARGETS)}; got {to!r}")
    bundles = dict(state.bundles)
    if bundle is not None:
        bundles[str(version)] = bundle
    if to == "champion":
        if state.champion == version:
            raise SpecError(f"version {version} is already the champion of '{state.model}'.")
        if percent is not None:
            raise SpecError("--percent applies to --to canary only.")
        challenger = None if state.challenger == version else state.challenger
        after = replace(
            state,
            revision=state.revision + 1,
            champion=version,
            challenger=challenger,
            mode=None if challenger is None else state.mode,
            percent=0.0 if challenger is None else state.percent,
            champions=(*[v for v in state.champions if v != version], version),
            rolled_back=tuple(v for v in state.rolled_back if v != version),
            bundles=bundles,
            **_holdout_after(state, holdout_percent, holdout_until),
        )
    else:
        if state.champion is None:
            raise SpecError(
                f"'{state.model}' has no champion yet, so there is nothing to {to} against: "
                "promote a version --to champion first."
            )
        if state.champion == version:
            raise SpecError(
                f"version {version} is the champion; a challenger must be another version."
            )
        if state.holdout == version:
            raise SpecError(
                f"version {version} answers the holdout cohort; end the holdout first "
                "(`shipyard promote --end-holdout`)."
            )
        if to == "shadow":
            if percent is not None:
                raise SpecError("--percent applies to --to canary only (a shadow gets 0%).")
            percent = 0.0
        elif percent is None or not 0 < percent <= 100:
            raise SpecError(f"--percent must be in (0, 100]; got {percent!r}")
        after = replace(
            state,
            revision=state.revision + 1,
            challenger=version,
            mode=to,
            percent=float(percent),
            rolled_back=tuple(v for v in state.rolled_back if v != version),
            bundles=bundles,
        )
    entry = _entry(
        state,
        after,
        "promote",
        actor,
        version=version,
        to=to,
        reason=reason,
        forced=forced,
        evidence=dict(evidence) if evidence else None,
    )
    return replace(after, history=(*state.history, entry))


def holdout_until(days: float | None, now: datetime | None = None) -> str | None:
    """The ISO time a holdout of ``days`` ends at (None: no end date).

    >>> holdout_until(14, datetime(2026, 3, 1, tzinfo=UTC))
    '2026-03-15T00:00:00+00:00'
    """
    if days is None:
        return None
    end = (now or datetime.now(UTC)) + timedelta(days=days)
    return end.isoformat(timespec="seconds")


def _holdout_after(state: Deployment, percent: float, until: str | None) -> dict[str, Any]:
    """The holdout fields of a rollout: the replaced champion held out, or none."""
    if percent > 0 and state.champion is not None:
        return {
            "holdout": state.champion,
            "holdout_percent": float(percent),
            "holdout_until": until,
        }
    return {"holdout": None, "holdout_percent": 0.0, "holdout_until": None}


def holdout_ended(
    state: Deployment, *, actor: str, reason: str | None = None, evidence: Any = None
) -> Deployment:
    """The state after the holdout cohort ends (pure): its entities go to the champion.

    Raises :class:`DeploymentError` when there is no holdout."""
    if state.holdout is None:
        raise DeploymentError(
            f"'{state.model}' has no holdout cohort to end (champion {state.champion or '—'} "
            "answers every entity not in a canary); `shipyard models` shows the state."
        )
    after = replace(
        state,
        revision=state.revision + 1,
        holdout=None,
        holdout_percent=0.0,
        holdout_until=None,
    )
    entry = _entry(
        state, after, "end holdout", actor, version=state.holdout, reason=reason, evidence=evidence
    )
    return replace(after, history=(*state.history, entry))


def rolled_back(state: Deployment, *, actor: str, reason: str | None = None) -> Deployment:
    """The state after rolling the champion back to the previous one (pure).

    The rolled-back version is marked: promoting it again needs ``--force --reason``.
    Raises :class:`CheckFailed` (exit 1) when there is nothing to roll back to.
    """
    if state.champion is None:
        raise DeploymentError(
            f"'{state.model}' has no champion: there is nothing to roll back. Promote a version "
            "--to champion first (`shipyard models` lists them)."
        )
    earlier = [v for v in state.champions[:-1] if v not in state.rolled_back]
    if not earlier:
        raise CheckFailed(
            f"version {state.champion} is the first champion of '{state.model}': there is no "
            "previous champion to roll back to. Promote another version --to champion instead."
        )
    target = earlier[-1]
    gone = state.champion
    challenger = None if state.challenger in (target, gone) else state.challenger
    after = replace(
        state,
        revision=state.revision + 1,
        champion=target,
        challenger=challenger,
        mode=None if challenger is None else state.mode,
        percent=0.0 if challenger is None else state.percent,
        champions=(*[v for v in state.champions if v not in (gone, target)], target),
        rolled_back=(*[v for v in state.rolled_back if v != gone], gone),
        **_holdout_after(state, 0.0, None),  # the old champion answers everyone again
    )
    entry = _entry(state, after, "rollback", actor, version=gone, reason=reason)
    return replace(after, history=(*state.history, entry))


def challenger_stopped(
    state: Deployment,
    *,
    actor: str,
    reason: str | None = None,
    evidence: Any = None,
    mark: bool = True,
) -> Deployment:
    """The state after taking the challenger off traffic (pure); the champion is untouched.

    ``mark`` (a guardrail breach) marks the challenger rolled back, so it does not return
    without ``--force``; a user ending an experiment (``promote --stop``) does not. A state
    without a challenger comes back unchanged (two servers may breach at once; the first
    one wins).
    """
    if state.challenger is None:
        return state
    gone = state.challenger
    after = replace(
        state,
        revision=state.revision + 1,
        challenger=None,
        mode=None,
        percent=0.0,
        rolled_back=(*[v for v in state.rolled_back if v != gone], gone)
        if mark
        else state.rolled_back,
    )
    entry = _entry(
        state, after, "stop challenger", actor, version=gone, reason=reason, evidence=evidence
    )
    return replace(after, history=(*state.history, entry))


class Registry:
    """The deployment-state file of one model, its lock, and atomic replacement."""

    def __init__(self, folder: Path, model: str) -> None:
        self.folder = Path(folder)
        self.model = model
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)
        self.path = self.folder / f"{safe}.json"
        self.lock_path = self.folder / f"{safe}.lock"

    def state(self) -> Deployment:
        """The committed state (an empty one before the first promotion)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return Deployment(self.model)
        except OSError as exc:
            raise WorkspaceError(
                f"the deployment record '{self.path}' cannot be read: {exc}"
            ) from exc
        try:
            state = Deployment.from_dict(json.loads(raw.decode("utf-8")))
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise WorkspaceError(
                f"the deployment record '{self.path}' cannot be read: it is not a valid deployment "
                f"state ({exc}); "
                "it was edited by hand or by another tool. Restore it from version control or a "
                f"backup (each change is also in its 'history'), or delete it to start over "
                "with nothing deployed."
            ) from None
        if state.model != self.model:
            raise WorkspaceError(
                f"'{self.path}' holds the state of model '{state.model}', not '{self.model}'."
            )
        return state

    @contextlib.contextmanager
    def lock(self, action: str) -> Iterator[None]:
        """Hold the exclusive change lock, or raise :class:`RegistryLocked` at once."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
                raise RegistryLocked(
                    f"another change to '{self.model}' is in progress ({holder}); nothing was "
                    "changed. Wait for it to finish and run again."
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{action} by pid {os.getpid()} since {_now()}".encode(), 0)
            yield
        finally:
            os.close(fd)  # closing releases the lock; the kernel releases it if we die

    def update(
        self, action: str, change: Callable[[Deployment], Deployment]
    ) -> tuple[Deployment, Deployment]:
        """Under the lock: read the state, compute the new one, commit it atomically."""
        with self.lock(action):
            self._sweep()
            before = self.state()
            after = change(before)
            self._write(after)
            return before, after

    def _write(self, state: Deployment) -> None:
        # the one atomic step: before the rename the old state, after it the new one
        atomic_write(self.path, json.dumps(state.to_dict(), indent=1, sort_keys=True))

    def _sweep(self) -> None:
        """Remove temporary files a killed writer left behind (under the lock)."""
        sweep(self.folder, f".{self.path.name}.*.tmp")


class AliasStore(Protocol):
    def aliases(self, model: str) -> dict[str, int]: ...
    def set_alias(self, model: str, alias: str, version: int) -> None: ...
    def delete_alias(self, model: str, alias: str) -> None: ...


def sync_aliases(state: Deployment, store: AliasStore) -> list[str]:
    """Make MLflow's ``champion``/``challenger`` aliases mirror the state; list the repairs."""
    current = store.aliases(state.model)
    repairs = []
    for alias, version in state.aliases().items():
        have = current.get(alias)
        if have == version:
            continue
        if version is None:
            store.delete_alias(state.model, alias)
            repairs.append(f"removed alias '{alias}' (was version {have})")
        else:
            store.set_alias(state.model, alias, version)
            repairs.append(
                f"alias '{alias}' → version {version}"
                + (f" (was {have})" if have is not None else "")
            )
    return repairs


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
