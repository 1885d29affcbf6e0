"""The canary that advances itself, and the holdout cohort's end by date.

The router's watcher thread (never a request) calls :meth:`Advance.check` every
``GUARDRAIL_SECONDS``, right after the guardrails. With ``[serving] auto_advance = true``, a
canary step is judged once it has served ``advance_min_requests`` canary requests (unset:
``guardrail_window``) since its revision began and the guardrail window holds at least
``guardrail_min_requests`` of them:

- a guardrail breach is the guardrails' own business (``Router._check_guardrails`` stops the
  challenger), so a breached step never advances;
- when outcomes are in (``shipyard labels`` or ``POST /feedback``) for both arms, the
  always-valid mSPRT (:func:`~shipyard.monitoring.experiment.always_valid`) compares each
  answer's squared error, ``(prediction - outcome)²``, of the canary's version with the
  champion's over every outcome of this canary so far (since :func:`~shipyard.registry.canary_since`). A significant rise (p-value at or
  below ``advance_alpha``) or a confidence sequence holding only rises is harm: the
  challenger is stopped and marked rolled back. The sample-ratio check is not applied: the
  share changes from step to step by design;
- otherwise the canary moves to the next of ``canary_steps``; the step that would reach 100%
  (or a canary already at the last step) makes it champion, keeping the replaced champion
  as the holdout when ``holdout_percent`` is set.

Every decision is one history entry with actor :data:`ACTOR` and its evidence: requests
seen, the guardrails' values, the test (p-value, confidence sequence, outcomes per arm) or
why there was none. A change made by anyone else since the step began (a manual
``promote`` moved the revision) wins: the step does nothing and its window restarts. While
another change holds the registry's lock (:class:`~shipyard.errors.RegistryLocked`) the step
waits for the next check, said once on stderr; it never raises into the watcher.

The holdout's end by date needs no ``auto_advance``: once a state's ``holdout_until`` has
passed, the first server to notice records ``end holdout`` (actor :data:`HOLDOUT_ACTOR`),
and every server's router drops the holdout as that change reaches it.
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shipyard.errors import RegistryLocked, ShipyardError
from shipyard.registry import (
    Deployment,
    canary_since,
    challenger_stopped,
    holdout_ended,
    holdout_until,
    promoted,
)

if TYPE_CHECKING:
    from shipyard.serving.router import Router
    from shipyard.workspace import Workspace

ACTOR = "shipyard serve (auto_advance)"
HOLDOUT_ACTOR = "shipyard serve (holdout_until)"
#: the always-valid test's mixing sd, unless set: this share of the champion's squared error
RELATIVE_MDE = 0.25


class _Moved(Exception):
    """The state changed since the step began: commit nothing."""


def next_step(percent: float, steps: tuple[float, ...]) -> float | None:
    """The canary's next percent after ``percent``, or None when the next is champion.

    >>> next_step(5, (5, 10, 25, 50, 100)), next_step(50, (5, 10, 25, 50, 100))
    (10.0, None)
    """
    later = [p for p in steps if p > percent]
    return None if not later or later[0] >= 100 else float(later[0])


def outcome_test(
    workspace: Workspace,
    champion: int,
    challenger: int,
    *,
    alpha: float,
    mde: float | None = None,
    since: datetime | None = None,
) -> dict[str, Any]:
    """The always-valid test of the challenger's squared error against the champion's, on
    the logged answers of these two versions since ``since`` (when the canary began) that
    have outcomes; ``harm`` says whether it shows the challenger worse. ``mde``, the mixing
    standard deviation, is a quarter of the champion's mean squared error unless given.
    Without outcomes in both arms: ``{"outcomes": False, ...}`` with the reason."""
    import numpy as np

    from shipyard.monitoring.experiment import MIN_PER_ARM, always_valid, logged_outcomes

    try:
        (ours, theirs), arrivals, _ = logged_outcomes(
            workspace,
            ("champion", "canary"),
            "squared_error",
            versions=(champion, challenger),
            since=since,
        )
    except ShipyardError as exc:
        return {"outcomes": False, "reason": str(exc)}
    counts = {"champion": int(ours.size), "canary": int(theirs.size)}
    if min(ours.size, theirs.size) < MIN_PER_ARM:
        return {
            "outcomes": False,
            "counts": counts,
            "reason": f"fewer than {MIN_PER_ARM} outcomes in an arm: no test yet",
        }
    mixing_sd = mde or RELATIVE_MDE * float(np.mean(ours))
    if mixing_sd <= 0:
        return {"outcomes": False, "counts": counts, "reason": "the champion made no error"}
    sequential = always_valid(
        ours, theirs, "mean", alpha=alpha, mixing_sd=mixing_sd, arrivals=(arrivals[0], arrivals[1])
    )
    rise = float(np.mean(theirs) - np.mean(ours))  # the canary's squared error minus the champion's
    lower, _ = sequential.ci
    harm = (sequential.p_value <= alpha and rise > 0) or lower > 0
    return {
        "outcomes": True,
        "metric": "squared_error",
        "counts": counts,
        "champion_mean": float(np.mean(ours)),
        "canary_mean": float(np.mean(theirs)),
        "rise": rise,
        "p_value": sequential.p_value,
        "ci": list(sequential.ci),
        "alpha": alpha,
        "mixing_sd": mixing_sd,
        "harm": bool(harm),
    }


class Advance:
    """The watcher's auto-advance and holdout-expiry steps for one router."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.decisions: list[dict[str, Any]] = []  # what this server committed, in order
        self._said = ""

    def check(self) -> None:
        """One look: end an expired holdout; with ``auto_advance``, judge the canary's step."""
        self._end_expired_holdout()
        if self.router.policy.auto_advance:
            self._judge_step()

    def say(self, text: str) -> None:
        """Tell stderr why a change waits or was dropped, once per distinct reason."""
        if text != self._said:  # once per distinct wait, not once per check
            self._said = text
            print(f"shipyard serve: {text}", file=sys.stderr)

    def _commit(self, action: str, revision: int, change: Any) -> Deployment | None:
        """Commit ``change`` if the state is still at ``revision``; None when it moved (the
        window restarts) or the lock is held (the next check tries again)."""

        def guarded(state: Deployment) -> Deployment:
            if state.revision != revision:
                raise _Moved(state.revision)
            return change(state)

        try:
            _, after = self.router.registry.update(action, guarded)
        except _Moved as moved:
            self.say(
                f"{action}: the deployment changed since the step began (revision {revision} "
                f"→ {moved.args[0]}); nothing done, the step's window restarts"
            )
            self.router.step_requests = 0
            self.router.reload()
            return None
        except RegistryLocked as exc:
            self.say(f"{action} waits for the next check: {exc}")
            return None
        self._said = ""
        self.decisions.append(after.history[-1])
        self.router.reload()
        return after

    def _end_expired_holdout(self) -> None:
        state = self.router.state
        if not state.holdout_expired():
            return
        self._commit(
            "end holdout",
            state.revision,
            lambda s: holdout_ended(
                s,
                actor=HOLDOUT_ACTOR,
                reason=f"holdout_until {s.holdout_until} reached",
            ),
        )

    def _judge_step(self) -> None:
        router = self.router
        routes = router.routes
        policy = router.policy
        if routes.challenger is None or routes.mode != "canary":
            return
        needed = policy.advance_min_requests or policy.guardrail_window
        served = router.step_requests
        guardrails = router.guardrail_values()
        if served < needed or guardrails["requests"] < policy.guardrail_min_requests:
            return
        if router.guardrail_breach() is not None:
            return  # the guardrails stop the challenger themselves
        version, champion = routes.challenger.version, routes.champion.version
        test = outcome_test(
            router.workspace,
            champion,
            version,
            alpha=policy.advance_alpha,
            mde=policy.advance_mde,
            since=canary_since(router.state),
        )
        evidence = {
            "step_percent": routes.percent,
            "step_requests": served,
            "guardrails": guardrails,
            "test": test,
        }
        if test.get("harm"):
            reason = (
                f"auto_advance: the always-valid test shows harm at {routes.percent:g}%: "
                f"squared error {test['canary_mean']:.4g} vs champion "
                f"{test['champion_mean']:.4g} (p = {test['p_value']:.3g})"
            )
            self._commit(
                "stop challenger",
                routes.revision,
                lambda s: challenger_stopped(s, actor=ACTOR, reason=reason, evidence=evidence),
            )
            return
        step = next_step(routes.percent, policy.canary_steps)
        tested = (
            f"the always-valid p-value {test['p_value']:.3g} shows no harm"
            if test["outcomes"]
            else "no outcomes to test yet"
        )
        held = (
            f"auto_advance: {routes.percent:g}% held for {served:,} canary requests with no "
            f"guardrail breach; {tested}"
        )
        if step is None:
            until = holdout_until(policy.holdout_days)
            self._commit(
                "promote (auto_advance)",
                routes.revision,
                lambda s: promoted(
                    s,
                    version,
                    "champion",
                    actor=ACTOR,
                    reason=held,
                    evidence=evidence,
                    holdout_percent=policy.holdout_percent,
                    holdout_until=until,
                ),
            )
        else:
            self._commit(
                "promote (auto_advance)",
                routes.revision,
                lambda s: promoted(
                    s,
                    version,
                    "canary",
                    actor=ACTOR,
                    percent=step,
                    reason=held,
                    evidence=evidence,
                ),
            )
