"""Routing: which deployed version answers each record, and the challenger's two modes.

The router reads the deployment state (``registry.py``) at start, on ``reload()``, whenever
the record's file changes (it is watched: a committed change is served within
:data:`WATCH_SECONDS`) and on a poll every ``poll_seconds`` as the fallback; it builds the new
:class:`Routes` completely (bundles loaded and verified) and only then swaps one reference: a request reads the routes once, so it is answered by the old set or
the new one, never a mix, and never fails because of a swap.

- **champion** answers every record not sent to a canary;
- **shadow**: the challenger scores a copy of each request in a process of its own
  (``shadow.py``), fed from the champion's rows of the server's prediction log (``log``:
  without one there is no shadow) with a bounded backlog; its errors, slowness or a full
  backlog never change a response (they are counted, and its outputs logged as rows with
  arm ``shadow``);
- **canary**: ``percent`` of entity ids (the spec's ``id`` field, else the request id) go to
  the challenger, by a hash of the id, so an id always lands on the same arm. A canary that
  raises is answered by the champion (the user never sees it) and counted. Guardrails
  compare the last ``guardrail_window`` canary records with the champion's: error rate,
  p99 latency ratio, and the shift of the mean prediction in champion standard deviations; a
  breach takes the challenger off in the deployment state (history: who, why, evidence) and
  reloads. With ``[serving] auto_advance`` the watcher also moves the canary through its
  steps (``advance.py``);
- **holdout**: after a rollout, ``holdout_percent`` of entity ids (hashed like the canary's,
  with a salt of their own, so the two shares are independent) stay on the previous
  champion, logged with arm ``holdout``, until the holdout ends (by command, or at its
  ``holdout_until``, which the watcher records).

An :class:`Arm` is the predictor (``score(record)``, and ``score_many(records)`` for the
shadow's batches) the router composes; tests hand the router arms of their own.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipyard.errors import DeploymentError, RegistryLocked, ShipyardError
from shipyard.registry import Deployment, actor, challenger_stopped
from shipyard.serving.advance import Advance
from shipyard.serving.log import feature_types
from shipyard.serving.shadow import Shadow
from shipyard.spec import ServingSection
from shipyard.workspace import Workspace

BUCKETS = 10_000
WATCH_SECONDS = 0.05  # how often the deployment record's file is looked at (a stat)
GUARDRAIL_SECONDS = 0.2  # how often the canary's guardrails (and the shadow child) are checked
SHADOW_BACKOFF = 1.0  # seconds before the first restart of a dead shadow child; doubles
SHADOW_BACKOFF_MAX = 60.0
HOLDOUT_SALT = b"holdout"


class Arm:
    """One deployed version answering records through its bundle's one-record path."""

    def __init__(self, version: int, bundle: Any) -> None:
        self.version = version
        self.bundle = bundle
        self.features = list(bundle.features)
        self.multiclass = bundle.task == "multiclass"
        #: the class names a multiclass answer gives (``str`` of each, in the order of
        #: ``score``'s probabilities, as batch output names them); None otherwise
        self.classes: list[str] | None = (
            [str(c) for c in bundle.classes] if self.multiclass else None
        )
        #: how the prediction log types each of this arm's features (``log.feature_types``)
        self.log_types: dict[str, str] = feature_types(bundle.contract, self.features)

    def score(self, record: Mapping[str, Any]) -> float | list[float]:
        out = self.bundle.predict_one(record)
        return [float(x) for x in out] if self.multiclass else float(out)

    def explain(self, records: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Why each record got its score (:meth:`~shipyard.models.explanation.Explanation.row`):
        the attributions per feature, adding up to the model's raw score (before any
        calibrator), and the top reasons in plain language; for multiclass, of the class
        answered (the most probable; named under ``class``). Refused
        (:class:`~shipyard.errors.Unexplainable`, 422) when the family has no explainer."""
        model = self.bundle.model
        explanation = self.bundle.explain_records(records)
        prior = model.prior() if explanation.rule is not None else None
        out = []
        for i, record in enumerate(records):
            scores = explanation.score[i]
            k = max(range(len(scores)), key=scores.__getitem__) if self.multiclass else 0
            item = explanation.row(
                i,
                k,
                record=record,
                target=self.target if self.classes is None else f"{self.target}={self.classes[k]}",
                prior=None if prior is None else prior[k],
            )
            if self.classes is not None:
                item["class"] = self.classes[k]
            out.append(item)
        return out

    @functools.cached_property
    def target(self) -> str:
        """The target's name, as reasons say it ("raised the churn score")."""
        import json

        spec = json.loads((self.bundle.path / "spec.json").read_text())
        return str(spec.get("project", {}).get("target") or "model")

    def score_many(self, records: list[Mapping[str, Any]]) -> list[float | list[float]]:
        """``score`` of each record, scored together (the shadow's batches): the same
        values, at a fraction of the per-record cost."""
        out = self.bundle.predict_records(records)
        return [[float(x) for x in row] for row in out] if self.multiclass else out.tolist()

    def accelerate(self) -> bool:
        """Switch ``score_many`` to the family's faster batch path, same values (trees: the
        compiled forest); ``score`` keeps the one-record path. Whether it did."""
        return self.bundle.model.accelerate()


def load_arm(version: int, path: Path) -> Arm:
    """The arm of a bundle folder (verified on load)."""
    from shipyard.bundle import load_bundle

    bundle = load_bundle(path)
    bundle.model.warm()
    return Arm(version, bundle)


def _bucket(entity: str, salt: bytes = b"") -> int:
    digest = hashlib.blake2b(entity.encode(), digest_size=8, salt=salt).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def in_canary(entity: str, percent: float) -> bool:
    """Whether an entity id falls in the canary's share (stable across processes)."""
    return _bucket(entity) < percent * (BUCKETS / 100)


def in_holdout(entity: str, percent: float) -> bool:
    """Whether an entity id falls in the holdout cohort's share: the canary's scheme with a
    salt of its own, so whether an id is held out says nothing about its canary bucket."""
    return _bucket(entity, HOLDOUT_SALT) < percent * (BUCKETS / 100)


@dataclass(frozen=True)
class Routes:
    """One consistent deployment: who answers, who challenges, how."""

    revision: int
    champion: Arm
    challenger: Arm | None = None
    mode: str | None = None
    percent: float = 0.0
    validate: Callable[[Mapping[str, Any]], list[Any]] = lambda record: []
    #: the feature types of each arm's log rows; a shadowed champion's rows also hold the
    #: challenger's own features (the shadow scores copies read from them)
    log_types: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    holdout: Arm | None = None  # the previous champion, answering the holdout cohort
    holdout_percent: float = 0.0


@dataclass
class Answer:
    output: Any
    arm: str
    version: int
    latency: float
    classes: list[str] | None = None  # the answering arm's class names (multiclass)
    explanation: dict[str, Any] | None = None  # why (asked with explain; ``Arm.explain``)


def _scalar(output: Any) -> float:
    return max(output) if isinstance(output, list) else float(output)


class Router:
    """Reads the deployment state and answers records (see the module docstring)."""

    def __init__(
        self,
        workspace: Workspace,
        policy: ServingSection,
        *,
        id_field: str | None = None,
        arm_loader: Callable[[int, Path], Arm] = load_arm,
        log: Any = None,
        shadow_log: Callable[[], Any] | None = None,
        metrics: Any = None,
    ) -> None:
        self.workspace = workspace
        self.registry = workspace.registry
        self.policy = policy
        self.id_field = id_field
        self._load_arm = arm_loader
        self._arms: dict[int, Arm] = {}
        self._log = log
        self._shadow_log = shadow_log
        self.metrics = metrics
        self.breaches: list[dict[str, Any]] = []
        #: canary requests answered (or failed) since the routes' revision began
        self.step_requests = 0
        self._window: dict[str, deque[tuple[float, bool, float]]] = {
            "champion": deque(maxlen=policy.guardrail_window),
            "canary": deque(maxlen=policy.guardrail_window),
        }
        self._paths: dict[int, Path] = {}
        self._shadow: Shadow | None = None
        self._restarts = 0  # restarts of the current shadow's child
        self._restart_at: float | None = None
        self._stop = threading.Event()
        self._reload_lock = threading.Lock()
        self._seen = self._stamp()
        self.state_error: str | None = None  # why the record could not be used, if so
        self.state = self.registry.state()  # the record as last read
        self.routes = self._build(self.state)
        self._follow(self.routes)
        self.advance = Advance(self)
        self._threads = [
            threading.Thread(target=self._watch, name="shipyard-watch", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    # --- deployment state ---------------------------------------------------------------

    def _arm(self, state: Deployment, version: int) -> Arm:
        if version not in self._arms:
            folder = state.bundle(version)
            if folder is None:
                raise DeploymentError(
                    f"the deployment record {self.registry.path} names no bundle for version "
                    f"{version}; promote the version again (`shipyard promote {version} --to …`)."
                )
            self._paths[version] = self.workspace.inside(folder)
            self._arms[version] = self._load_arm(version, self._paths[version])
        return self._arms[version]

    def _follow(self, routes: Routes) -> None:
        """Start the shadow process a shadow challenger needs; stop one no longer needed."""
        challenger = routes.challenger
        shadowing = routes.mode == "shadow" and challenger is not None and self._log is not None
        wanted = challenger.version if shadowing and challenger is not None else None
        current = self._shadow
        if current is not None and current.version == wanted:
            return
        self._shadow = None
        if current is not None:
            self._log.on_written = None
            current.close()
        self._restarts, self._restart_at = 0, None
        if wanted is not None:
            self._start_shadow(wanted)

    def _start_shadow(self, version: int) -> None:
        self._shadow = Shadow(
            self._load_arm,
            version,
            self._paths[version],
            log=self._shadow_log,
            queue_size=self.policy.shadow_queue,
            on_counts=functools.partial(self._shadow_counted, version),
            on_drop=self._shadow_dropped,
        )
        self._log.on_written = self._shadow.feed

    def shadow_state(self) -> str | None:
        """``running``, ``restarting`` (the child died; a new one starts after a backoff)
        or None without a shadow."""
        shadow = self._shadow
        if shadow is None:
            return None
        return "running" if shadow.process.is_alive() else "restarting"

    def _supervise(self) -> None:
        """Restart a shadow child that died, after a backoff that doubles (1 s … 60 s) while
        it keeps dying; its copies meanwhile are dropped and counted."""
        with self._reload_lock:
            shadow = self._shadow
            if shadow is None or shadow.process.is_alive():
                return
            now = time.monotonic()
            if self._restart_at is None:
                delay = min(SHADOW_BACKOFF_MAX, SHADOW_BACKOFF * 2**self._restarts)
                self._restart_at = now + delay
                print(
                    f"shipyard serve: the shadow process of v{shadow.version} died (exit "
                    f"{shadow.process.exitcode}); restarting it in {delay:g} s",
                    file=sys.stderr,
                )
                return
            if now < self._restart_at:
                return
            self._restart_at = None
            self._restarts += 1
            self._log.on_written = None
            shadow.close(timeout=1.0)
            self._start_shadow(shadow.version)
            if self.metrics is not None:
                self.metrics.count("shipyard_shadow_restarts_total", version=str(shadow.version))

    def _build(self, state: Deployment) -> Routes:
        if state.champion is None:
            raise DeploymentError(
                f"model '{state.model}' has no champion yet, so there is nothing to serve: "
                "train one and promote it first (`shipyard train`, then "
                "`shipyard promote VERSION --to champion`)."
            )
        champion = self._arm(state, state.champion)
        challenger = self._arm(state, state.challenger) if state.challenger is not None else None
        held = state.holdout is not None and not state.holdout_expired()
        holdout = self._arm(state, state.holdout) if held and state.holdout is not None else None
        allowed = [
            *(challenger.features if challenger else []),
            *(holdout.features if holdout else []),
            *([self.id_field] if self.id_field else []),
        ]
        validate = champion.bundle.contract.record_validator(
            champion.features, allowed, max_chars=self.policy.max_string_chars
        )
        log_types: dict[str, Mapping[str, str]] = {"champion": champion.log_types}
        if challenger is not None:
            log_types["canary"] = log_types["challenger"] = challenger.log_types
            if state.mode == "shadow":
                log_types["champion"] = {**challenger.log_types, **champion.log_types}
        if holdout is not None:
            log_types["holdout"] = holdout.log_types
        return Routes(
            state.revision,
            champion,
            challenger,
            state.mode,
            state.percent,
            validate,
            log_types,
            holdout,
            state.holdout_percent if holdout is not None else 0.0,
        )

    def reload(self) -> Routes:
        """Re-read the state; swap in new routes when it changed (atomically).

        A record that cannot be used (corrupt, naming a bundle that fails verification)
        raises, keeps the current routes serving, and is kept in :attr:`state_error` (the
        service's readiness answers 503) until a good record is read."""
        with self._reload_lock:
            try:
                state = self.registry.state()
                routes = self._build(state) if state.revision != self.routes.revision else None
            except ShipyardError as exc:
                self.state_error = str(exc)
                raise
            self.state_error = None
            self.state = state
            if routes is not None:
                if routes.challenger is not getattr(self.routes, "challenger", None):
                    for window in self._window.values():
                        window.clear()
                self.step_requests = 0
                self.routes = routes
                keep = {state.champion, state.challenger, state.holdout}
                self._arms = {v: a for v, a in self._arms.items() if v in keep}
                self._follow(routes)
            return self.routes

    def _stamp(self) -> tuple[int, int, int] | None:
        """What identifies the record's file now (an atomic replace changes the inode)."""
        try:
            st = os.stat(self.registry.path)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _watch(self) -> None:
        last_poll = last_guard = time.monotonic()
        said = ""
        while not self._stop.wait(WATCH_SECONDS):
            try:
                now = time.monotonic()
                if now - last_guard >= GUARDRAIL_SECONDS:
                    last_guard = now
                    self._check_guardrails()
                    self.advance.check()
                    self._supervise()
                stamp = self._stamp()
                if stamp != self._seen or now - last_poll >= self.policy.poll_seconds:
                    last_poll = now
                    self._seen = stamp
                    self.reload()
            except Exception as exc:  # the watcher must outlive a bad state file
                last_poll = now - max(0.0, self.policy.poll_seconds - 0.5)  # retry in 0.5 s
                if str(exc) != said:  # once per distinct problem, not once per poll
                    said = str(exc)
                    print(
                        f"shipyard serve: keeping the current routes; the deployment state "
                        f"cannot be used: {exc}",
                        file=sys.stderr,
                    )
            else:
                said = ""

    # --- answering ----------------------------------------------------------------------

    def answer(self, routes: Routes, record: Mapping[str, Any], entity: str) -> Answer:
        """The answer to one (validated) record, by the holdout, the canary or the champion."""
        held = routes.holdout
        if held is not None and in_holdout(entity, routes.holdout_percent):
            start = time.perf_counter()
            try:
                output = held.score(record)
            except Exception:  # the champion answers instead, counted
                if self.metrics is not None:
                    self.metrics.count(
                        "shipyard_errors_total", endpoint="holdout", kind="holdout_error"
                    )
            else:
                latency = time.perf_counter() - start
                return Answer(output, "holdout", held.version, latency, held.classes)
        challenger = routes.challenger
        if challenger is not None and routes.mode == "canary" and in_canary(entity, routes.percent):
            start = time.perf_counter()
            self.step_requests += 1
            try:
                output = challenger.score(record)
            except Exception:
                self._window["canary"].append((time.perf_counter() - start, True, math.nan))
                if self.metrics is not None:
                    self.metrics.count(
                        "shipyard_errors_total", endpoint="canary", kind="challenger_error"
                    )
            else:
                latency = time.perf_counter() - start
                self._window["canary"].append((latency, False, _scalar(output)))
                return Answer(output, "canary", challenger.version, latency, challenger.classes)
        start = time.perf_counter()
        output = routes.champion.score(record)
        latency = time.perf_counter() - start
        if challenger is not None and routes.mode == "canary":
            self._window["champion"].append((latency, False, _scalar(output)))
        return Answer(output, "champion", routes.champion.version, latency, routes.champion.classes)

    def _shadow_dropped(self, n: int) -> None:
        if self.metrics is not None:
            self.metrics.count("shipyard_shadow_total", n, outcome="dropped")

    def _shadow_counted(self, version: int, counts: dict[str, int]) -> None:
        if self.metrics is not None:
            for outcome, n in counts.items():
                if n:
                    self.metrics.count(
                        "shipyard_shadow_total", n, outcome=outcome, version=str(version)
                    )

    def flush_shadow(self, timeout: float = 10.0) -> bool:
        """Have the shadow log what it was handed so far (True when there is none); flush
        the server's log first."""
        shadow = self._shadow
        return shadow is None or shadow.flush(timeout)

    def shadow_pending(self) -> int:
        """Copies handed to the shadow and not answered yet (0 without a shadow)."""
        shadow = self._shadow
        return 0 if shadow is None else shadow.pending

    # --- guardrails ---------------------------------------------------------------------

    def guardrail_values(self) -> dict[str, Any]:
        """The guardrails' values on the current windows (the evidence of a breach or of a
        step held): requests in each window, the canary's error rate, the p99 latency ratio
        and the prediction shift (None where a window is empty)."""
        canary, champion = list(self._window["canary"]), list(self._window["champion"])
        values: dict[str, Any] = {
            "requests": len(canary),
            "champion_requests": len(champion),
            "error_rate": None,
            "p99_ratio": None,
            "canary_p99_ms": None,
            "champion_p99_ms": None,
            "prediction_shift": None,
        }
        if canary:
            values["error_rate"] = sum(1 for _, failed, _ in canary if failed) / len(canary)
        if not canary or not champion:
            return values
        p99_canary = _quantile([lat for lat, failed, _ in canary if not failed], 0.99)
        p99_champion = _quantile([lat for lat, _, _ in champion], 0.99)
        values["canary_p99_ms"], values["champion_p99_ms"] = p99_canary * 1e3, p99_champion * 1e3
        if p99_champion > 0:
            values["p99_ratio"] = p99_canary / p99_champion
        ours = [y for _, failed, y in canary if not failed]
        theirs = [y for _, _, y in champion]
        spread = _std(theirs)
        if ours and spread > 0:
            values["prediction_shift"] = (
                abs(sum(ours) / len(ours) - sum(theirs) / len(theirs)) / spread
            )
        return values

    def guardrail_breach(self) -> dict[str, Any] | None:
        """The first breached guardrail on the current windows, with its evidence, or None."""
        v = self.guardrail_values()
        p = self.policy
        if v["requests"] < p.guardrail_min_requests:
            return None
        if v["error_rate"] > p.max_error_rate:
            return {
                "guardrail": "max_error_rate",
                "value": v["error_rate"],
                "limit": p.max_error_rate,
                "requests": v["requests"],
            }
        if v["champion_requests"] < p.guardrail_min_requests:
            return None
        if (
            v["p99_ratio"] is not None
            and v["p99_ratio"] > p.max_p99_ratio
            and v["canary_p99_ms"] > p.p99_floor_ms  # a ratio of microseconds is noise
        ):
            return {
                "guardrail": "max_p99_ratio",
                "value": v["p99_ratio"],
                "limit": p.max_p99_ratio,
                "canary_p99_ms": v["canary_p99_ms"],
                "champion_p99_ms": v["champion_p99_ms"],
                "floor_ms": p.p99_floor_ms,
            }
        shift = v["prediction_shift"]
        if shift is not None and shift > p.max_prediction_shift:
            return {
                "guardrail": "max_prediction_shift",
                "value": shift,
                "limit": p.max_prediction_shift,
            }
        return None

    def _check_guardrails(self) -> None:
        routes = self.routes
        if routes.challenger is None or routes.mode != "canary":
            return
        breach = self.guardrail_breach()
        if breach is None:
            return
        version = routes.challenger.version
        reason = (
            f"guardrail {breach['guardrail']} breached: {breach['value']:.4g} > {breach['limit']:g}"
        )
        try:
            self.registry.update(
                "stop challenger",
                lambda state: (
                    challenger_stopped(
                        state, actor=f"shipyard serve ({actor()})", reason=reason, evidence=breach
                    )
                    if state.challenger == version
                    else state
                ),
            )
        except RegistryLocked as exc:  # a promotion holds the lock: the next check stops it
            self.advance.say(f"the {reason} waits for the next check: {exc}")
            return
        self.breaches.append({"version": version, **breach})
        if self.metrics is not None:
            self.metrics.count(
                "shipyard_guardrail_breaches_total",
                guardrail=breach["guardrail"],
                version=str(version),
            )
        self.reload()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        with self._reload_lock:
            shadow, self._shadow = self._shadow, None
        if shadow is not None:
            self._log.on_written = None
            shadow.close()


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _std(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
