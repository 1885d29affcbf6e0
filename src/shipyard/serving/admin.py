"""The admin routes' guard: the token from the environment (at least
``ADMIN_TOKEN_MIN_LENGTH`` characters, compared in constant time by the app) and the rate
limit on failed attempts per client."""

from __future__ import annotations

import os
import time

from shipyard.errors import SpecError

ADMIN_TOKEN_ENV = "SHIPYARD_ADMIN_TOKEN"
ADMIN_TOKEN_MIN_LENGTH = 16
ADMIN_MAX_FAILURES = 5  # failed admin attempts per client and window before 429
ADMIN_WINDOW_SECONDS = 60.0


def admin_token() -> str | None:
    """The admin token from the environment (None: admin routes off); refused when short."""
    token = os.environ.get(ADMIN_TOKEN_ENV) or None
    if token is not None and len(token) < ADMIN_TOKEN_MIN_LENGTH:
        raise SpecError(
            f"{ADMIN_TOKEN_ENV} is {len(token)} characters; an admin token needs at least "
            f"{ADMIN_TOKEN_MIN_LENGTH} (e.g. `export {ADMIN_TOKEN_ENV}=$(openssl rand -hex 24)`), "
            "or unset it to turn the admin routes off."
        )
    return token


class AdminGuard:
    """Failed admin attempts per client: after ``ADMIN_MAX_FAILURES`` within
    ``ADMIN_WINDOW_SECONDS`` the client is refused (429) until the window passes."""

    def __init__(self) -> None:
        self._failures: dict[str, list[float]] = {}

    def _recent(self, client: str) -> list[float]:
        now = time.monotonic()
        kept = [t for t in self._failures.get(client, []) if now - t < ADMIN_WINDOW_SECONDS]
        if kept:
            self._failures[client] = kept
        else:
            self._failures.pop(client, None)
        return kept

    def blocked(self, client: str) -> bool:
        return len(self._recent(client)) >= ADMIN_MAX_FAILURES

    def failed(self, client: str) -> None:
        if len(self._failures) > 10_000:  # bounded: forget the oldest clients first
            self._failures.pop(next(iter(self._failures)))
        self._failures.setdefault(client, []).append(time.monotonic())
