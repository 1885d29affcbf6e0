"""Cores: how many threads shipyard's own parallel work may start, and who holds them.

LightGBM, OpenBLAS and the compiled forest each start as many threads as they are told.
A count fixed to the machine's cores oversubscribes a machine that other work also uses:
on two cores with one of them busy, a two-thread LightGBM fit waits at every barrier for
the thread that shares its core (an identical fit took 14 s once and 620 s another time).

So every parallel piece of training asks here first:

- :func:`available_cores` — the cores this process may run on (``os.sched_getaffinity``,
  bounded by a cgroup CPU quota when there is one);
- :func:`others_load` — the 1-minute load average (``os.getloadavg``) on those cores, less
  this process's own share of it;
- :func:`choose_threads` — the pure rule: the cores not taken by that load nor held by other
  work inside shipyard, at least 1;
- :data:`LEDGER` — the process-wide record of the threads granted and not yet given back, so
  that concurrent work inside shipyard never holds more threads than there are cores
  (beyond the floor of one thread each: work never waits for a core).

``SHIPYARD_THREADS`` (environment) and ``[training] threads`` (``shipyard.toml``) fix the
count for users who know better, in that order of precedence. The count never changes a
result: LightGBM is run with ``deterministic`` and row-wise histograms, whose output is the
same for every thread count (``tests/test_cores.py`` checks it).

>>> choose_threads(cores=2, others=0.0)
2
>>> choose_threads(cores=2, others=0.9)
1
>>> choose_threads(cores=8, others=2.6, held=3)
2
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from shipyard.errors import SpecError
from shipyard.processes import start_ticks

THREADS_ENV = "SHIPYARD_THREADS"
#: A core counts as free while other work uses less than this share of it.
FREE_SLACK = 0.25
_LOAD_WINDOW_S = 60.0  # the time constant of the 1-minute load average
_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def choose_threads(
    cores: int, others: float, *, held: int = 0, requested: int | None = None
) -> int:
    """The threads one piece of work may start.

    Parameters
    ----------
    cores
        The cores this process may run on.
    others
        The load other processes put on those cores (runnable threads, averaged).
    held
        Threads already granted to concurrent work inside this process.
    requested
        A count the user fixed (environment or spec): used as given, capped only by
        ``cores`` (never by the load, which the user chose to override).

    Returns
    -------
    int
        ``cores - others`` rounded down (a core counts as free while less than
        :data:`FREE_SLACK` of it is used), less ``held``, at least 1.

    >>> choose_threads(cores=4, others=1.2, held=1)
    2
    >>> choose_threads(cores=2, others=5.0, requested=8)
    2
    """
    cores = max(1, int(cores))
    if requested is not None:
        return max(1, min(int(requested), cores))
    free = math.floor(cores - max(0.0, others) + FREE_SLACK)
    return max(1, min(free, cores) - max(0, held))


def available_cores() -> int:
    """The cores this process may run on: its affinity mask, bounded by a cgroup v2 quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cores, math.ceil(quota)) if quota is not None else cores)


def _cgroup_quota() -> float | None:
    """Cores' worth of CPU time the cgroup allows (``cpu.max``: "quota period"), if capped."""
    try:
        quota, period = _CPU_MAX.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return float(quota) / float(period)
    except (ValueError, ZeroDivisionError):
        return None


def own_load() -> float:
    """This process's estimated share of the 1-minute load average.

    The load average counts this process's own runnable threads too. Its share is estimated
    from the CPU time it used since it started, as an exponential average over the same
    one-minute window: a process that just started contributes almost nothing, one that has
    kept a core busy for minutes contributes about 1.
    """
    try:
        age = time.time() - _process_start()
    except (OSError, ValueError, IndexError):
        return 0.0
    if age <= 0:
        return 0.0
    rate = time.process_time() / age  # average busy cores since start
    return rate * (1.0 - math.exp(-age / _LOAD_WINDOW_S))


def _process_start() -> float:
    """This process's start time (seconds since the epoch), from /proc."""
    ticks = start_ticks(os.getpid())
    if ticks is None:
        raise OSError("/proc/self/stat is not readable")
    with open("/proc/uptime") as uptime:
        up = float(uptime.read().split()[0])
    return time.time() - up + ticks / os.sysconf("SC_CLK_TCK")


def others_load(cores: int | None = None) -> float:
    """The load other processes put on this process's cores.

    The 1-minute load average is machine-wide: when the process may use only some of the
    machine's cores, the load is taken as spread evenly over all of them.
    """
    try:
        load = os.getloadavg()[0]
    except OSError:
        return 0.0
    total = os.cpu_count() or 1
    mine = cores if cores is not None else available_cores()
    share = min(1.0, mine / total) if total else 1.0
    return max(0.0, load * share - own_load())


def requested_threads(spec_threads: int | None = None) -> int | None:
    """A thread count the user fixed: ``SHIPYARD_THREADS``, else ``[training] threads``.

    Raises
    ------
    SpecError
        ``SHIPYARD_THREADS`` is set but is not a whole number of 1 or more.
    """
    raw = os.environ.get(THREADS_ENV, "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise SpecError(
                f"{THREADS_ENV} must be a whole number of 1 or more; got {raw!r}. Unset it to "
                "let shipyard pick threads from the free cores."
            )
        return value
    return spec_threads


class Ledger:
    """The threads granted to work inside this process and not yet given back.

    ``cores`` and ``load`` say how many cores the process may use and the load others put
    on them (by default :func:`available_cores` and :func:`others_load`, read at each grant).
    """

    def __init__(
        self,
        cores: Callable[[], int] | None = None,
        load: Callable[[int], float] | None = None,
    ) -> None:
        self._cores = cores
        self._load = load
        self.held: dict[int, tuple[str, int]] = {}
        self._lock = threading.Lock()
        self._next = 0

    @property
    def in_use(self) -> int:
        with self._lock:
            return sum(n for _, n in self.held.values())

    def free(self) -> int:
        """The threads a grant made now would get (see :func:`choose_threads`), granting none."""
        cores = (self._cores or available_cores)()
        return choose_threads(cores, (self._load or others_load)(cores), held=self.in_use)

    @contextmanager
    def threads(
        self, name: str, *, requested: int | None = None, at_most: int | None = None
    ) -> Iterator[int]:
        """Grant ``name`` a thread count (see :func:`choose_threads`) and hold it until the
        block ends. ``at_most`` caps the grant (work that cannot use more)."""
        cores = (self._cores or available_cores)()
        load = (self._load or others_load)(cores) if requested is None else 0.0
        with self._lock:
            held = sum(n for _, n in self.held.values())
            count = choose_threads(cores, load, held=held, requested=requested)
            if at_most is not None:
                count = max(1, min(count, at_most))
            key = self._next
            self._next += 1
            self.held[key] = (name, count)
        try:
            yield count
        finally:
            with self._lock:
                self.held.pop(key, None)


#: The one ledger of this process.
LEDGER = Ledger()
