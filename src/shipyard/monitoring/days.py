"""Each closed day of the prediction log summarized once and kept, so a month is computed
from its days.

A ``shipyard monitor`` run whose windows are made of whole UTC days (``1d``, ``7d``, ``1mo``
on the logged clock) groups the log by day, then merges the days into its windows: the
summaries add up exactly (:func:`~shipyard.monitoring.summary.merge`), so the numbers are the
same as grouping by the window directly. A day that is over (before today, UTC) and wholly
inside ``--since``/``--until`` is kept here after it was read::

    .shipyard/monitoring/days/date=YYYY-MM-DD/<key>.parquet

one row per logged answer (request id, the group it belongs to, its scores, whether an
input lay outside the reference's support, its slice columns' values: what agreement, the
labels' join and per-slice metrics need) and, in the file's metadata, every group's summaries, counts and
latency histogram. ``<key>`` is a digest of the day's log files (names, sizes, modification
times), of the slice columns kept per answer and of :data:`FORMAT`: a day whose files
changed (a late file, a compaction) is read again, and the stale entry removed. Days with a
skipped file or rows of a version without a bundle are not kept (their warnings must show
on every run). The store is a cache: deleting it loses nothing, and ``monitor`` still never
writes to the log.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pandas as pd

from shipyard.files import atomic_path
from shipyard.monitoring.summary import summary_from_dict

if TYPE_CHECKING:
    import pyarrow as pa

    from shipyard.monitoring.monitor import Answering, Group, Scan, Window

#: The layout of a kept day; a change makes every kept day stale.
FORMAT = 1
#: Days written at once after a scan (their writes wait on the file system).
SAVE_THREADS = 4
_SLICE = "slice."


def days_folder(workspace: Any) -> Path:
    return Path(workspace.folder) / "monitoring" / "days"


class DayStore:
    """The kept days of one workspace (see the module docstring)."""

    def __init__(self, folder: Path, *, salt: str = "") -> None:
        self.folder = folder
        self.salt = salt  # what else the groups depend on (the slice columns kept)
        self.hits = 0
        self.saved = 0
        self._counting = threading.Lock()

    def key(self, files: Sequence[Path]) -> str:
        digest = hashlib.sha256(f"{FORMAT}|{self.salt}".encode())
        for path in files:
            try:
                stat = path.stat()
            except FileNotFoundError:  # compacted meanwhile: this key will not be found
                continue
            digest.update(f"|{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        return digest.hexdigest()[:20]

    def _path(self, day: str, key: str) -> Path:
        return self.folder / day / f"{key}.parquet"

    def has(self, day: str, key: str) -> bool:
        """Whether the day is kept under ``key`` (its ``.json`` is written last)."""
        return self._path(day, key).with_suffix(".json").is_file()

    def load(self, day: str, key: str) -> tuple[list[Group], int] | None:
        """The day's groups and its files' count, or None when not kept (or unreadable)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = self._path(day, key)
        try:
            meta = orjson.loads(path.with_suffix(".json").read_bytes())
            with pq.ParquetFile(path, pre_buffer=False) as file:
                table = file.read(use_threads=False)
        except (OSError, KeyError, ValueError, pa.ArrowException):
            return None
        groups = [_group(data) for data in meta["groups"]]
        owner = table.column("group").to_numpy()
        ids = table.column("request_id").to_numpy(zero_copy_only=False)
        scores = np.column_stack(
            [table.column(n).to_numpy() for n in table.column_names if n.startswith("s")]
            or [np.full(len(ids), np.nan)]
        )
        outside = table.column("outside").to_numpy(zero_copy_only=False)
        bounds = np.searchsorted(owner, np.arange(len(groups) + 1))
        for i, group in enumerate(groups):
            lo, hi = bounds[i], bounds[i + 1]
            doc = meta["groups"][i]
            group.answers = [(ids[lo:hi], scores[lo:hi, : doc["width"]])] if hi > lo else []
            group.outside = [outside[lo:hi]] if hi > lo else []
            sliced = {n: _slice_values(table.column(_SLICE + n), lo, hi) for n in doc["slices"]}
            group.slices = [sliced] if hi > lo else []
        self.hits += 1
        return groups, int(meta["files"])

    def save_all(self, days: Iterable[tuple[str, str, list[Group], int]]) -> None:
        """:meth:`save` each ``(day, key, groups, files)``, on a few threads: a day's
        writes and renames wait on the file system, not on the interpreter."""
        from concurrent.futures import ThreadPoolExecutor

        todo = list(days)
        if len(todo) < 2:
            for day in todo:
                self.save(*day)
            return
        with ThreadPoolExecutor(SAVE_THREADS, thread_name_prefix="shipyard-keep-day") as pool:
            for done in [pool.submit(self.save, *day) for day in todo]:
                done.result()

    def save(self, day: str, key: str, groups: Iterable[Group], files: int) -> None:
        """Keep a day's groups (atomically); stale entries of the day are removed."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from shipyard.monitoring.monitor import answers, segments

        groups = list(groups)
        ids, owners, blocks, docs, outside, sliced = [], [], [], [], [], []
        for i, group in enumerate(groups):
            got_ids, got_scores = answers(group)
            frame, beyond = segments(group)
            ids.append(got_ids)
            owners.append(np.full(len(got_ids), i, np.int32))
            blocks.append(got_scores)
            outside.append(beyond if len(beyond) == len(got_ids) else np.zeros(len(got_ids), bool))
            sliced.append(frame)
            docs.append(
                {**_document(group), "width": got_scores.shape[1], "slices": list(frame.columns)}
            )
        width = max((b.shape[1] for b in blocks), default=1)
        padded = [
            np.pad(b, ((0, 0), (0, width - b.shape[1])), constant_values=np.nan) for b in blocks
        ]
        scores = np.concatenate(padded) if padded else np.empty((0, width))
        columns = {
            "request_id": pa.array(np.concatenate(ids) if ids else [], pa.string()),
            "group": pa.array(np.concatenate(owners) if owners else [], pa.int32()),
            **{f"s{j}": pa.array(scores[:, j], pa.float64()) for j in range(width)},
            "outside": pa.array(np.concatenate(outside) if outside else [], pa.bool_()),
        }
        for name in dict.fromkeys(c for frame in sliced for c in frame.columns):
            columns[_SLICE + name] = _slice_column(name, sliced)
        meta = {"format": FORMAT, "day": day, "files": files, "groups": docs}
        path = self._path(day, key)
        for stale in path.parent.glob("*.*") if path.parent.is_dir() else []:
            if stale.stem != key:
                stale.unlink(missing_ok=True)
        # the answers, then the groups: a day is kept once its .json is in place
        with atomic_path(path, durable=False) as temporary:  # a cache: cheap to redo
            pq.write_table(pa.table(columns), temporary)
        with atomic_path(path.with_suffix(".json"), durable=False) as temporary:
            temporary.write_bytes(orjson.dumps(meta))
        with self._counting:
            self.saved += 1


def _slice_column(name: str, frames: Sequence[pd.DataFrame]) -> pa.Array:
    """One slice column over every group's rows: numbers as float64, categories as text;
    null where a group has no such column."""
    import pyarrow as pa

    parts = [frame[name] if name in frame.columns else None for frame in frames]
    numeric = all(
        p is None or (not isinstance(p.dtype, pd.CategoricalDtype) and p.dtype.kind in "iuf")
        for p in parts
    )
    chunks = []
    for frame, part in zip(frames, parts, strict=True):
        if part is None:
            chunks.append(pa.nulls(len(frame.index), pa.float64() if numeric else pa.string()))
        elif numeric:
            chunks.append(pa.array(part.to_numpy(np.float64), pa.float64(), from_pandas=True))
        else:
            values = part.astype(object).tolist()
            chunks.append(pa.array([None if pd.isna(v) else str(v) for v in values], pa.string()))
    return pa.concat_arrays(chunks) if chunks else pa.array([], pa.float64())


def _slice_values(column: pa.ChunkedArray, lo: int, hi: int) -> Any:
    """A kept slice column's rows of one group, as :func:`~shipyard.monitoring.monitor.
    segments` takes them: float64 numbers or categories."""
    import pyarrow as pa

    part = column.slice(lo, hi - lo)
    if pa.types.is_floating(part.type):
        return part.to_numpy()
    return pd.Categorical(part.to_pylist())


def scan_days(
    files: Sequence[Path],
    answering: Callable[[int], Answering | None],
    window: Window,
    store: DayStore,
    *,
    since_us: int | None,
    until_us: int | None,
    model: int | None = None,
    clock: str | None = None,
    today: dt.date | None = None,
) -> Scan:
    """:func:`~shipyard.monitoring.monitor.scan`, with closed days kept in ``store``: with
    windows of whole days on the logged clock, the log is grouped by UTC day and the days
    merged into the windows; each day before ``today`` wholly inside ``since_us``/
    ``until_us`` is taken from ``store`` when kept there, and kept after it was read.
    Other windows and clocks are a plain scan."""
    from shipyard.monitoring.monitor import Scan, _partition, parse_window, scan

    if clock is not None or not window.whole_days:
        return scan(
            files, answering, window, since_us=since_us, until_us=until_us, model=model, clock=clock
        )
    today = today or dt.datetime.now(dt.UTC).date()
    by_day = _by_day(files)
    out, daily = Scan(), Scan()
    unread: list[Path] = []
    keep: dict[str, str] = {}
    for day, day_files in by_day.items():
        inside = _whole_day(day, since_us, until_us)
        key = store.key(day_files)
        kept = store.load(day, key) if inside and closed(day, today) else None
        if kept is None:
            unread.extend(day_files)
            if inside and closed(day, today) and model is None:
                keep[day] = key
            continue
        groups, count = kept
        out.files += count
        for group in groups:
            if model is None or group.version == model:
                daily.groups[(group.window, group.version, group.arm)] = group
                out.rows += group.rows
    one_day = parse_window("1d")
    read = scan(unread, answering, one_day, since_us=since_us, until_us=until_us, model=model)
    out.files += read.files
    out.rows += read.rows
    out.skipped += read.skipped
    out.versions_without_bundle += read.versions_without_bundle
    by_partition: dict[str, list[Group]] = {}
    for group in read.groups.values():
        by_partition.setdefault(_partition(group.first_us), []).append(group)
    store.save_all(
        (day, key, by_partition[day], len(by_day[day]))
        for day, key in keep.items()
        if day not in read.skipped_days
        and day not in read.unanswered_days
        and by_partition.get(day)
    )
    daily.groups.update(read.groups)
    for group in sorted(daily.groups.values(), key=lambda g: (g.window, g.version, g.arm)):
        index = int(window.index(np.array([group.first_us]))[0])
        group.window = index
        at = (index, group.version, group.arm)
        if at in out.groups:
            out.groups[at].merge(group)
        else:
            out.groups[at] = group
    out.days_kept = store.hits
    return out


def keep_closed_days(
    files: Sequence[Path],
    answering: Callable[[int], Answering | None],
    store: DayStore,
    *,
    today: dt.date | None = None,
) -> int:
    """Read and keep every closed day of ``files`` that ``store`` does not hold yet, one day
    at a time (memory holds one day): what the online service does after its midnight
    compaction, so that no ``monitor`` run reads a closed day's raw rows. Returns how many
    days were kept."""
    from shipyard.monitoring.monitor import parse_window

    today = today or dt.datetime.now(dt.UTC).date()
    by_day = _by_day(files)
    one_day, saved = parse_window("1d"), store.saved
    for day, day_files in sorted(by_day.items()):
        if closed(day, today) and not store.has(day, store.key(day_files)):
            scan_days(
                day_files, answering, one_day, store, since_us=None, until_us=None, today=today
            )
    return store.saved - saved


def _by_day(files: Sequence[Path]) -> dict[str, list[Path]]:
    """The log's files by their day's partition (``date=YYYY-MM-DD``), in order."""
    by_day: dict[str, list[Path]] = {}
    for path in files:
        by_day.setdefault(path.parent.name, []).append(path)
    return by_day


def _whole_day(day: str, since_us: int | None, until_us: int | None) -> bool:
    """Whether the partition ``date=…`` lies wholly inside [since, until)."""
    from shipyard.monitoring.monitor import US

    try:
        start = dt.date.fromisoformat(day.removeprefix("date="))
    except ValueError:
        return False
    first = (start - dt.date(1970, 1, 1)).days * 86_400 * US
    return (since_us is None or since_us <= first) and (
        until_us is None or first + 86_400 * US <= until_us
    )


def closed(day: str, today: dt.date) -> bool:
    """Whether the partition ``date=YYYY-MM-DD`` is a day before ``today``."""
    try:
        return dt.date.fromisoformat(day.removeprefix("date=")) < today
    except ValueError:
        return False


def _document(group: Group) -> dict[str, Any]:
    return {
        "window": group.window,
        "version": group.version,
        "arm": group.arm,
        "first_us": group.first_us,
        "last_us": group.last_us,
        "rows": group.rows,
        "errors": group.errors,
        "features": {n: _packed(s.to_dict()) for n, s in group.features.items()},
        "predictions": {n: _packed(s.to_dict()) for n, s in group.predictions.items()},
        "out_of_range": dict(group.out_of_range),
        "absent": dict(group.absent),
        "new_fields": dict(group.new_fields),
        "warnings": dict(group.warnings),
        "reasons": {n: dict(c) for n, c in group.reasons.items()},
        "latency": _sparse(group.latency.counts),
    }


def _group(data: dict[str, Any]) -> Group:
    from shipyard.monitoring.monitor import Group, Latencies

    latency = Latencies()
    index, counts = data["latency"]
    latency.counts[np.asarray(index, np.intp)] = counts
    return Group(
        window=int(data["window"]),
        version=int(data["version"]),
        arm=str(data["arm"]),
        first_us=int(data["first_us"]),
        last_us=int(data["last_us"]),
        rows=int(data["rows"]),
        errors=int(data["errors"]),
        features={n: summary_from_dict(_unpacked(s)) for n, s in data["features"].items()},
        predictions={n: summary_from_dict(_unpacked(s)) for n, s in data["predictions"].items()},
        out_of_range=Counter(data["out_of_range"]),
        absent=Counter(data["absent"]),
        new_fields=Counter(data["new_fields"]),
        warnings=Counter(data["warnings"]),
        reasons={n: Counter(c) for n, c in data["reasons"].items()},
        latency=latency,
    )


def _sparse(counts: np.ndarray) -> list[list[int]]:
    index = np.flatnonzero(counts)
    return [index.tolist(), counts[index].tolist()]


def _packed(summary: dict[str, Any]) -> dict[str, Any]:
    """A summary's counts as base64 of little-endian int64: a day holds thousands of them."""
    counts = np.asarray(summary["counts"], "<i8")
    return {**summary, "counts": base64.b64encode(counts.tobytes()).decode()}


def _unpacked(summary: dict[str, Any]) -> dict[str, Any]:
    counts = np.frombuffer(base64.b64decode(summary["counts"]), "<i8").astype(np.int64)
    return {**summary, "counts": counts}
