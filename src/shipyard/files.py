"""Files shipyard writes: every one of them lands atomically, or not at all.

One way to write a file, used by everything shipyard writes (the deployment record, the
contract, check reports, bundles' documents, batch outputs, prediction-log parts, the spec
``init`` writes): write a temporary file in the same folder, ``fsync`` it, rename it over the
target in one :func:`os.replace`, then ``fsync`` the folder so the rename itself survives a
power cut. A reader, or a ``kill -9`` at any moment, sees the old file or the new one, never a
half-written one; a leftover temporary name (``.NAME.PID.tmp``) is all a crash can leave, and
:func:`sweep` removes those.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     target = Path(d) / "state.json"
...     atomic_write(target, '{"revision": 1}')
...     with atomic_path(target) as tmp:
...         _ = tmp.write_text('{"revision": 2}')
...     target.read_text(), sorted(p.name for p in Path(d).iterdir())
('{"revision": 2}', ['state.json'])
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write", "commit", "fsync_folder", "sweep", "temporary_name"]


def temporary_name(path: Path) -> Path:
    """The hidden temporary name beside ``path`` this process writes before renaming."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename in it) to disk."""
    _fsync(folder)


def commit(tmp: Path, path: Path, *, durable: bool = True) -> None:
    """Put a finished temporary file in place: fsync it, rename it over ``path`` (the one
    atomic step), fsync the folder. For writers that need the temporary name themselves
    (a Parquet writer kept open across chunks); otherwise use :func:`atomic_path`."""
    if durable:
        _fsync(tmp)
    os.replace(tmp, path)
    if durable:
        fsync_folder(path.parent)


@contextlib.contextmanager
def atomic_path(path: Path | str, *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically.

    On an exception the temporary file is removed and ``path`` is untouched. ``durable``
    fsyncs the file and the folder (turn it off only for files that are cheap to redo).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        commit(tmp, path, durable=durable)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: Path | str, data: bytes | str, *, durable: bool = True) -> None:
    """Write ``data`` (text is UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    raw = data.encode() if isinstance(data, str) else data
    with atomic_path(path, durable=durable) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)


def sweep(folder: Path, pattern: str = ".*.tmp") -> int:
    """Remove temporary files a killed writer left in ``folder``; how many there were."""
    removed = 0
    for leftover in Path(folder).glob(pattern):
        with contextlib.suppress(OSError):
            leftover.unlink()
            removed += 1
    return removed
