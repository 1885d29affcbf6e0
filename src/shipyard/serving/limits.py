"""What one request may cost the service, from the spec's ``[serving]`` settings.

A request is refused with a 4xx as soon as it breaks a limit, and the work spent on it is
bounded by the limits rather than by what the client sent:

- the body's size (``max_body_mb``): from ``Content-Length`` before any of it is read, or
  as soon as the bytes read pass it;
- the records in one request (``max_records``): counted before any record is built;
- how deeply its JSON nests (``max_depth``): a walk that descends only into objects and
  arrays (a container of scalars is passed over in C) and stops at the first one past the
  limit;
- one field's text (``max_string_chars``): checked by the contract's record check;
- the problems a 422 names (``max_problems``): the first ones, the rest counted;
- the answer's size (``max_response_mb``).

The connection limits (timeouts, concurrent connections) are the server's:
:mod:`shipyard.serving.connection`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shipyard.errors import RequestRefused
from shipyard.spec import ServingSection

MB = 1024 * 1024
_CONTAINERS = frozenset((dict, list))  # what orjson makes of JSON objects and arrays


@dataclass(frozen=True)
class Limits:
    """The per-request limits, in the units the code checks (bytes, characters)."""

    max_records: int
    max_bytes: int
    max_depth: int
    max_chars: int
    max_problems: int
    max_response_bytes: int

    @classmethod
    def of(cls, policy: ServingSection) -> Limits:
        return cls(
            max_records=policy.max_records,
            max_bytes=int(policy.max_body_mb * MB),
            max_depth=policy.max_depth,
            max_chars=policy.max_string_chars,
            max_problems=policy.max_problems,
            max_response_bytes=int(policy.max_response_mb * MB),
        )

    def check_length(self, n: int, *, declared: bool) -> None:
        """Refuse (413) a body of more than ``max_bytes``: its ``Content-Length`` before any
        of it is read (``declared``), or the bytes read so far."""
        if n > self.max_bytes:
            said = (
                f"the body is {n:,} bytes; the limit is {self.max_bytes:,}"
                if declared
                else f"the body is over the limit of {self.max_bytes:,} bytes"
            )
            raise RequestRefused(413, f"{said} ([serving] max_body_mb)", "too_large")

    def check_records(self, n: int) -> None:
        """Refuse (413) a request of more than ``max_records`` records."""
        if n > self.max_records:
            raise RequestRefused(
                413,
                f"{n:,} records in one request; the limit is {self.max_records:,} "
                "([serving] max_records): send them in smaller batches",
                "too_many",
            )

    def check_depth(self, value: Any) -> None:
        """Refuse (400) JSON nested deeper than ``max_depth`` levels (the body is level 1),
        naming where. Only objects and arrays are visited; the walk stops at the first
        container past the limit.

        >>> Limits(1, 1, 3, 1, 1, 1).check_depth({"a": [[1]]})
        >>> Limits(1, 1, 3, 1, 1, 1).check_depth({"a": [[[1]]]})
        Traceback (most recent call last):
        ...
        shipyard.errors.RequestRefused: the JSON body nests deeper than 3 levels (at /a/0/0); a record's fields are single values ([serving] max_depth)
        """
        if type(value) not in _CONTAINERS:
            return
        stack: list[tuple[Any, int, tuple[Any, ...]]] = [(value, 1, ())]
        while stack:
            container, depth, path = stack.pop()
            values = container.values() if type(container) is dict else container
            if not _CONTAINERS.intersection(map(type, values)):  # the common case, in C
                continue
            items = container.items() if type(container) is dict else enumerate(container)
            for key, child in items:
                if type(child) in _CONTAINERS:
                    if depth + 1 > self.max_depth:
                        where = "/".join(str(p)[:40] for p in (*path, key)[:8])
                        raise RequestRefused(
                            400,
                            f"the JSON body nests deeper than {self.max_depth} levels "
                            f"(at /{where}{'/…' if len(path) >= 8 else ''}); "
                            "a record's fields are single values ([serving] max_depth)",
                            "too_deep",
                        )
                    stack.append((child, depth + 1, (*path, key)))

    def refused(
        self, what: str, kind: str, problems: list[dict[str, Any]], total: int
    ) -> RequestRefused:
        """The 422 of a body with ``total`` problems, naming the first ones (``problems``, at
        most ``max_problems``, each ``{"field", "message", …}`` and an optional ``count``)
        and counting the rest; ``what`` names the kind of problem in the message.

        >>> Limits(1, 1, 1, 1, 1, 1).refused("field", "contract", [{"field": "age",
        ...     "message": "'age' must be a number"}], 3).message
        "3 field problem(s) in age (2 more not shown; [serving] max_problems): 'age' must be a number"
        """
        fields = ", ".join(sorted({str(p["field"]) for p in problems if p["field"] is not None}))
        more = total - sum(p.get("count", 1) for p in problems)
        return RequestRefused(
            422,
            f"{total:,} {what} problem(s) in {fields or 'the body'}"
            + (f" ({more:,} more not shown; [serving] max_problems)" if more else "")
            + f": {problems[0]['message']}",
            kind,
            problems,
            summary={"problems": total, "not_shown": more},
        )

    def check_response(self, body: bytes) -> bytes:
        """The answer's bytes, refused (413) when larger than ``max_response_bytes``."""
        if len(body) > self.max_response_bytes:
            raise RequestRefused(
                413,
                f"the answer would be {len(body):,} bytes; the limit is "
                f"{self.max_response_bytes:,} ([serving] max_response_mb): send fewer records",
                "response_too_large",
            )
        return body
