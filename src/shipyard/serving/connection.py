"""The server's connections: read timeouts and a connection limit, on uvicorn's h11 protocol.

uvicorn closes an idle keep-alive connection (``timeout_keep_alive``) and answers 503 past
``limit_concurrency``, but it has no timeout on reading a request: a client may take
forever to send its headers or its body, holding a connection and the body read so far.
:class:`Connection` (uvicorn's ``H11Protocol`` with two deadlines) adds them, with h11's own
view of the request to know which part is awaited:

- **headers**: a connection must send a request's headers within ``header_timeout``, from
  connecting or from the first byte of its next request; otherwise it is closed;
- **body**: the whole body must arrive within ``body_timeout`` of the headers; otherwise it
  is answered ``408`` (when no answer has started) and closed. The app sees the client
  leave, with ``scope["shipyard.timeout"] = "body"`` saying why;
- **idle**: uvicorn's ``timeout_keep_alive``, set from ``idle_timeout``;
- **connections**: past ``max_connections`` open at once a connection's request is
  answered 503 and the connection closed (uvicorn's own 503, decided per connection when
  it opens, so the limit counts connections, not requests in flight).

These are deadlines, not inactivity timers: a client trickling one byte a second is closed
at the same time as one that sends nothing. What was closed is counted in
:data:`CONNECTIONS` (rendered by ``/metrics``). :func:`server_options` gives the keyword
arguments of ``uvicorn.run`` / ``uvicorn.Config`` for a ``[serving]`` policy.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from shipyard.spec import ServingSection

TIMEOUT_SCOPE_KEY = "shipyard.timeout"
REASONS = ("header_timeout", "body_timeout", "over_limit")


class ConnectionStats:
    """Connections closed or refused by a limit, by reason (one per server process)."""

    def __init__(self) -> None:
        self.closed: Counter[str] = Counter()
        self.open = 0

    def render(self) -> str:
        """The Prometheus text of these counts (``/metrics`` appends it)."""
        lines = [
            "# HELP shipyard_connections_open HTTP connections open now.",
            "# TYPE shipyard_connections_open gauge",
            f"shipyard_connections_open {self.open}",
            "# HELP shipyard_connections_closed_total Connections closed or refused by a "
            "limit, by reason.",
            "# TYPE shipyard_connections_closed_total counter",
        ]
        lines += [
            f'shipyard_connections_closed_total{{reason="{reason}"}} {self.closed[reason]}'
            for reason in REASONS
        ]
        return "\n".join(lines) + "\n"


CONNECTIONS = ConnectionStats()


@dataclass(frozen=True)
class ConnectionLimits:
    """The connection settings of ``[serving]``, in seconds and connections."""

    header_timeout: float
    body_timeout: float
    max_connections: int

    @classmethod
    def of(cls, policy: ServingSection) -> ConnectionLimits:
        return cls(
            policy.header_timeout_seconds, policy.body_timeout_seconds, policy.max_connections
        )

    def __call__(self, **kwargs: Any) -> Connection:
        """A protocol instance for one connection (uvicorn calls this as the protocol
        class; being a plain dataclass, it crosses into worker processes by pickle)."""
        return Connection(limits=self, **kwargs)


class Connection(H11Protocol):
    """uvicorn's h11 protocol with a header and a body deadline and a connection limit."""

    def __init__(self, *args: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._awaiting: str | None = None  # "headers", "body" or None
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        CONNECTIONS.open += 1
        if len(self.connections) > self.limits.max_connections:
            # uvicorn's own 503 for every request on this connection (its check is
            # `len(connections) >= limit_concurrency`); the answer closes it
            self.limit_concurrency = 0
            CONNECTIONS.closed["over_limit"] += 1
        self._track()

    def connection_lost(self, exc: Exception | None) -> None:
        CONNECTIONS.open -= 1
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._track()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._track()

    # --- the deadlines --------------------------------------------------------------------

    def _track(self) -> None:
        """Arm the deadline of what is awaited now; keep a running one."""
        if self.transport is None or self.transport.is_closing():
            return
        state = self.conn.their_state
        awaiting: str | None
        if state is h11.SEND_BODY:
            awaiting = "body"
        elif state is h11.IDLE and (self.cycle is None or self.conn.trailing_data[0]):
            # a new connection, or the first bytes of a kept-alive one's next request
            awaiting = "headers"
        else:  # a whole request is in, or an idle kept-alive connection (uvicorn's timer)
            awaiting = None
        if awaiting == self._awaiting:
            return
        self._disarm()
        self._awaiting = awaiting
        if awaiting is not None:
            seconds = (
                self.limits.header_timeout if awaiting == "headers" else self.limits.body_timeout
            )
            self._deadline = self.loop.call_later(seconds, self._expire, awaiting)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._awaiting = None

    def _expire(self, awaiting: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        CONNECTIONS.closed["header_timeout" if awaiting == "headers" else "body_timeout"] += 1
        cycle = self.cycle
        if awaiting == "body" and cycle is not None and not cycle.response_started:
            cycle.scope[TIMEOUT_SCOPE_KEY] = "body"  # type: ignore[literal-required]
            message = (
                f"the request body did not arrive within {self.limits.body_timeout:g} s "
                "([serving] body_timeout_seconds)\n"
            ).encode()
            try:
                for event in (
                    h11.Response(
                        status_code=408,
                        headers=[
                            (b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(message)).encode()),
                            (b"connection", b"close"),
                        ],
                        reason=b"Request Timeout",
                    ),
                    h11.Data(data=message),
                    h11.EndOfMessage(),
                ):
                    self.transport.write(self.conn.send(event) or b"")
            except h11.LocalProtocolError:  # h11 cannot answer in this state: just close
                pass
        self.transport.close()


def server_options(policy: ServingSection) -> dict[str, Any]:
    """The keyword arguments of ``uvicorn.run`` / ``uvicorn.Config`` that apply the
    policy's connection settings."""
    return {
        "http": ConnectionLimits.of(policy),
        "timeout_keep_alive": policy.idle_timeout_seconds,
    }
