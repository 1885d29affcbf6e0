"""Ray: the one place shipyard starts a local Ray instance or joins a cluster.

``--engine ray`` (batch scoring, :mod:`shipyard.batch`; the monitor's log scan,
:mod:`shipyard.monitoring.distributed`) runs inside :func:`ray_session`: Ray is imported
there (the optional ``ray`` extra, with a message naming it when it is missing), a local
instance is started — or the cluster at ``--ray-address`` joined — unless the caller already
did, and shut down again at the end if it was started here. :func:`failure` turns what
Ray raises from a task or an actor (its own wrapper types) back into shipyard's error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from shipyard.errors import ShipyardError

__all__ = ["ENGINES", "failure", "ray_session"]

#: The engines ``--engine`` accepts.
ENGINES = ("local", "ray")


@contextmanager
def ray_session(address: str | None) -> Iterator[ModuleType]:
    """The ``ray`` module, with Ray Data imported and an instance to run on: the one
    already initialized in this process, else a new local one (every core) or the cluster
    at ``address``; a Ray started here is shut down on leaving.

    Raises
    ------
    ShipyardError
        Ray Data is not installed, or the instance cannot be started or reached.
    """
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ShipyardError(
            "--engine ray needs Ray Data: install it with `pip install 'shipyard[ray]'`."
        ) from exc
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
                num_cpus=None if address else (os.cpu_count() or 1),
            )
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, its own types
            where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
            raise ShipyardError(
                f"cannot start or reach {where}: {exc}. Check --ray-address (or leave it out "
                "for a local instance), or use --engine local."
            ) from exc
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()


def failure(exc: Exception, doing: str) -> ShipyardError:
    """What to raise for ``exc``, an error out of Ray's execution: the shipyard error a
    task or actor raised (Ray wraps it, keeping it as the cause), else one saying what
    failed (``doing``, e.g. ``"scoring"``)."""
    if isinstance(exc, ShipyardError):
        return exc
    if isinstance(exc.__cause__, ShipyardError):
        return exc.__cause__
    return ShipyardError(f"{doing} on Ray failed: {exc}")
