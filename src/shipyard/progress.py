"""Progress: what a long command shows while it works, on stderr.

A command reports two things: the stage it starts (``reporter("rung gbt 4/4")``) and, inside
a boosted rung, each round (``reporter.rounds(done, total)``). Where they go depends on
where stderr goes:

- a terminal: a live line (rich) with the stage, a bar of rounds done of the maximum, and
  the time left at the current pace (an upper bound: early stopping usually ends sooner);
- anything else (a pipe, a file, a job runner's log): one plain line per stage,
  ``train: rung gbt 4/4``, and while a rung boosts, a line at most every
  :data:`ROUND_LINE_SECONDS` with its rounds and time left, so a log never goes silent for
  minutes.

stdout is left alone either way, so ``--json`` prints one clean document there.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

#: How often a plain (not terminal) display writes a rung's rounds.
ROUND_LINE_SECONDS = 30.0


class Reporter:
    """Takes stages and rounds and shows nothing (``--quiet`` or a Python caller)."""

    def __call__(self, stage: str) -> None:
        return None

    def rounds(self, done: int, total: int) -> None:
        return None


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class StageLines(Reporter):
    """One plain line per stage on ``stream``; a rung's rounds every ``every`` seconds."""

    def __init__(self, command: str, stream: IO[str], every: float = ROUND_LINE_SECONDS) -> None:
        self.command = command
        self.stream = stream
        self.every = every
        self.stage = ""
        self._started = time.monotonic()
        self._last_line = self._started

    def _write(self, text: str) -> None:
        self.stream.write(f"{self.command}: {text}\n")
        self.stream.flush()

    def __call__(self, stage: str) -> None:
        self.stage = stage
        self._started = self._last_line = time.monotonic()
        self._write(stage)

    def rounds(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last_line < self.every or done >= total:
            return
        self._last_line = now
        spent = now - self._started
        left = spent / done * (total - done) if done else float("nan")
        self._write(
            f"{self.stage}: round {done} of at most {total}, {_duration(spent)} in, "
            f"at most {_duration(left)} left"
        )


class LiveProgress(Reporter):
    """A rich live display: the stage, and a bar of rounds with the time left."""

    def __init__(self, progress: Any) -> None:
        self._progress = progress
        self._task = progress.add_task("starting", total=None)
        self._stage = "starting"

    def __call__(self, stage: str) -> None:
        self._stage = stage
        self._progress.reset(self._task, description=stage, total=None, completed=0)

    def rounds(self, done: int, total: int) -> None:
        self._progress.update(
            self._task,
            completed=done,
            total=total,
            description=f"{self._stage}: round {done}/{total}",
        )


@contextmanager
def display(command: str, console: Any, quiet: bool = False) -> Iterator[Reporter]:
    """The reporter for ``command``: live when ``console`` (rich, on stderr) is a terminal,
    plain lines otherwise, nothing when ``quiet``."""
    if quiet:
        yield Reporter()
        return
    if not console.is_terminal:
        yield StageLines(command, console.file if console.file is not None else sys.stderr)
        return
    from rich.progress import (
        BarColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        yield LiveProgress(bar)
