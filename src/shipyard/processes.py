"""What this machine says of a process: whether it is alive, and when it started.

Used to tell a dead writer's leftovers from a live one's (temporary files, trainings in
flight) and to estimate this process's own load. Linux's ``/proc`` gives the start time;
elsewhere it is unknown (None). Imports nothing beyond the standard library.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["alive", "start_ticks"]


def alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (anyone's: one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (Linux); None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # field 2 (the command) is in parentheses and may hold spaces: count from after it
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])  # field 22 of proc(5)
