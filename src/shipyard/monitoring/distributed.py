"""``shipyard monitor --engine ray``: the prediction log scanned on Ray Data, into the same
:class:`~shipyard.monitoring.monitor.Scan` as the local engine.

The log's files (in :func:`~shipyard.serving.log.log_files`' order) are cut into runs of
consecutive files, a few per worker. Each run is one item of a Ray dataset
(``ray.data.from_items``), not a block of ``ray.data.read_parquet``: log files differ in
their feature columns and types, and an unreadable or foreign file must be a counted warning
(``Scan.skipped``), as it is locally, not a failed read of the whole log. Two passes:

1. **census** (Ray tasks): each run's rows in range (``--since``/``--until``, ``--model``,
   the event clock) per file, and the model versions that answered them. It reads only the
   ``time`` and ``model_version`` columns (and the clock's). Windows of ``N rows`` count
   rows across the whole log, so a run's first row is numbered from the rows of the runs
   before it; and the driver resolves each version's bundle once (the versions without one
   are skipped with their reason, as locally).
2. **scan** (a pool of Ray actors, each loading a version's bundle once,
   :meth:`Answering.load <shipyard.monitoring.monitor.Answering.load>`): each run goes
   through the local engine's own :func:`~shipyard.monitoring.monitor.scan` from its row
   offset, into per-window, per-version, per-arm groups.

The driver merges the runs' scans in log order (:meth:`Group.merge
<shipyard.monitoring.monitor.Group.merge>`), so the counts, the warnings and the groups are
the local engine's, and the summaries equal them up to the order their floats were added
(``tests/test_monitor_ray.py`` checks the results rows to 1e-12). A file the census read
but the scan could not (a damaged column) is skipped by the scan as locally; the offsets
are then counted again from what the scan read and the runs scanned once more, so the
windows of ``N rows`` stay the local ones.

The log files and bundles must be readable at the same paths by every Ray worker: a local
instance always can; a cluster needs the workspace on a shared filesystem.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.cluster import failure, ray_session
from shipyard.errors import DataError, ShipyardError
from shipyard.monitoring.monitor import Answering, Scan, Window, _on_clock, _within, scan

__all__ = ["scan_ray"]

RUNS_PER_WORKER = 4  # runs of files per worker: enough to even out runs of unequal size


def scan_ray(
    files: Sequence[Path],
    bundles: Callable[[int], Path | None],
    window: Window,
    *,
    since_us: int | None,
    until_us: int | None,
    model: int | None = None,
    clock: str | None = None,
    address: str | None = None,
    slices: Sequence[str] = (),
) -> Scan:
    """:func:`~shipyard.monitoring.monitor.scan` of ``files`` on Ray Data (the instance
    already initialized in this process, else a local one or the cluster at ``address``).

    ``bundles(version)`` is the bundle folder of a version that answered, or None to skip
    its rows; it is called once per version found, on the driver. The other arguments are
    :func:`~shipyard.monitoring.monitor.scan`'s.

    Raises
    ------
    ShipyardError
        Ray Data is not installed, Ray cannot be started or reached, or a worker failed
        (the shipyard error it raised, when it raised one).
    """
    paths = [str(f) for f in files]
    if not paths:
        return Scan()
    scope = {"since_us": since_us, "until_us": until_us, "model": model, "clock": clock}
    with ray_session(address) as ray:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        runs = _runs(paths, workers * RUNS_PER_WORKER)
        counted = _map(ray, _census, runs, [0] * len(runs), {"scope": scope})
        versions = sorted({v for _, found in counted for v in found})
        located = {v: str(path) for v in versions if (path := bundles(v)) is not None}
        scanner = {"window": window, "bundles": located, "scope": scope, "slices": list(slices)}
        actors = min(workers, len(runs))
        expected = [rows for rows, _ in counted]
        parts: list[Scan] = _map(ray, _Scanner, runs, _offsets(expected), scanner, actors)
        read = [part.rows for part in parts]
        if not window.timed and read != expected:  # a file the census read, the scan skipped
            parts = _map(ray, _Scanner, runs, _offsets(read), scanner, actors)
    return _merged(parts)


def _offsets(rows: list[int]) -> list[int]:
    """Where each run's rows start: the rows in range of the runs before it."""
    return [0, *np.cumsum(rows[:-1], dtype=np.int64).tolist()]


def _runs(paths: list[str], count: int) -> list[list[str]]:
    """``paths`` cut into at most ``count`` runs of consecutive files, as even as can be."""
    size = max(1, math.ceil(len(paths) / max(1, count)))
    return [paths[i : i + size] for i in range(0, len(paths), size)]


def _map(
    ray: Any,
    work: Any,
    runs: list[list[str]],
    offsets: list[int],
    kwargs: dict[str, Any],
    actors: int | None = None,
) -> list[Any]:
    """``work`` on every run (Ray tasks, or a pool of ``actors`` when ``work`` is a class),
    each run's result in run order."""
    items = [
        {"run": k, "paths": paths, "offset": int(offset)}
        for k, (paths, offset) in enumerate(zip(runs, offsets, strict=True))
    ]
    data = ray.data.from_items(items, override_num_blocks=len(items))
    options: dict[str, Any] = {"batch_size": 1, "batch_format": "pyarrow"}
    if actors is None:
        mapped = data.map_batches(work, fn_kwargs=kwargs, **options)
    else:
        pool = ray.data.ActorPoolStrategy(size=actors)
        mapped = data.map_batches(work, fn_constructor_kwargs=kwargs, compute=pool, **options)
    try:
        rows = mapped.take_all()
    except ShipyardError:
        raise
    except Exception as exc:  # a worker's error arrives wrapped in Ray's own types
        raise failure(exc, "the monitor's log scan") from exc
    by_run = {int(row["run"]): pickle.loads(row["result"]) for row in rows}
    return [by_run[k] for k in range(len(items))]


def _results(table: Any, each: Callable[[list[Path], int], Any]) -> dict[str, list[Any]]:
    """One batch of runs (a ``pyarrow`` table) mapped by ``each(paths, offset)``, the
    results pickled (our own objects, between our own processes)."""
    runs = table.column("run").to_pylist()
    results = [
        pickle.dumps(each([Path(p) for p in paths], offset))
        for paths, offset in zip(
            table.column("paths").to_pylist(), table.column("offset").to_pylist(), strict=True
        )
    ]
    return {"run": runs, "result": results}


def _census(table: Any, scope: dict[str, Any]) -> dict[str, list[Any]]:
    """Per run: its files' rows in range, and the versions that answered them."""

    def count(paths: list[Path], offset: int) -> tuple[int, set[int]]:
        rows, versions = 0, set()
        for path in paths:
            found = _in_range(path, **scope)
            if found is not None:
                rows += found.num_rows
                versions.update(found.column("model_version").fill_null(-1).to_pylist())
        return rows, versions

    return _results(table, count)


def _in_range(
    path: Path,
    *,
    since_us: int | None,
    until_us: int | None,
    model: int | None,
    clock: str | None,
) -> Any:
    """A file's ``time`` and ``model_version`` in range, as the local scan filters them;
    None when the file cannot be read (the scan says why)."""
    from shipyard.serving.log import read_log_file

    try:
        table = read_log_file(path, columns=["model_version", *([clock] if clock else [])])
    except DataError:
        return None
    if clock is not None:
        table = _on_clock(table, clock, path, Scan())  # its warning is the scan's to give
    return _within(table, since_us, until_us, model)


class _Scanner:
    """One Ray actor: each answering version's bundle loaded once, then runs of files
    scanned by the local engine's :func:`~shipyard.monitoring.monitor.scan`."""

    def __init__(
        self,
        window: Window,
        bundles: dict[int, str],
        scope: dict[str, Any],
        slices: Sequence[str] = (),
    ) -> None:
        self.window = window
        self.bundles = bundles
        self.scope = scope
        self.slices = list(slices)
        self.loaded: dict[int, Answering | None] = {}

    def answering(self, version: int) -> Answering | None:
        if version not in self.loaded:
            path = self.bundles.get(version)
            self.loaded[version] = (
                None if path is None else Answering.load(version, Path(path), self.slices)
            )
        return self.loaded[version]

    def __call__(self, table: Any) -> dict[str, list[Any]]:
        def part(paths: list[Path], offset: int) -> Scan:
            return scan(paths, self.answering, self.window, offset=offset, **self.scope)

        return _results(table, part)


def _merged(parts: list[Scan]) -> Scan:
    """The runs' scans as one, in log order: what one local scan of every file finds."""
    out = Scan()
    for part in parts:
        out.files += part.files
        out.rows += part.rows
        out.skipped.extend(part.skipped)
        out.versions_without_bundle.update(part.versions_without_bundle)
        out.without_clock += part.without_clock
        for key, group in part.groups.items():
            if key in out.groups:
                out.groups[key].merge(group)
            else:
                out.groups[key] = group
    return out
