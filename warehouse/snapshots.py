"""A warehouse is a directory of immutable snapshots and one pointer to the current one.

    WH/current           -> snapshots/<id>              (publishing renames a new link over it)
    WH/warehouse.duckdb  -> current/warehouse.duckdb    (what the DuckDB CLI opens)
    WH/manifest.json     -> current/manifest.json
    WH/snapshots/<id>/   manifest.json, warehouse.duckdb, activations/, tokens/, *.parquet

A build writes a complete snapshot under its final name (its views name their files
by absolute path, so nothing is re-pointed after publishing) and publishes it with one
atomic rename of `current` (`etl.publish`).  Nothing in a published snapshot is ever
written again.  A reader resolves `current` once and opens that snapshot's database:
it keeps answering from it, whatever builds happen meanwhile, until it closes.

Which snapshots are in use is what DuckDB itself records: every connection to a
database file, from any process, holds a POSIX lock on it.  `in_use` probes for one
with an open-file-description lock, which conflicts with POSIX locks of every process,
this one included.  Snapshots are removed (`etl.publish.prune`, `saewh vacuum`) only
while that probe's write lock is held, so a reader opening one at that moment fails
on the lock and retries at the new `current`.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import struct
from pathlib import Path

from warehouse.errors import WarehouseError

DB_FILE = "warehouse.duckdb"
MANIFEST = "manifest.json"
CURRENT = "current"
SNAPSHOTS = "snapshots"
# The entries a warehouse built before snapshots (schema version 4) kept at its top.
LEGACY_ENTRIES = (
    "activations", "tokens", "review_top_features", "reviews.parquet", "features.parquet",
    "top_examples.parquet", "feature_stars.parquet", "feature_review_stats.parquet",
    "warehouse.duckdb.wal",
)
_SNAPSHOT_NAME = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}")


def is_snapshot_name(name: str) -> bool:
    return bool(_SNAPSHOT_NAME.fullmatch(name))


def is_legacy(root: Path) -> bool:
    """A warehouse of the flat layout (before snapshots): a regular manifest at its top."""
    manifest = Path(root) / MANIFEST
    return manifest.is_file() and not manifest.is_symlink() and not (Path(root) / CURRENT).is_symlink()


def current_snapshot(root: Path) -> Path:
    """The directory of the snapshot `root/current` names now (WarehouseError if none)."""
    root = Path(root).absolute()
    try:
        link = os.readlink(root / CURRENT)
    except FileNotFoundError:
        if not root.exists():
            raise WarehouseError(f"{root}: no such warehouse; build one with `saewh build`") from None
        if is_legacy(root):
            raise WarehouseError(
                f"{root}: built by an older saewh (no snapshots); rebuild it with `saewh build --replace`"
            ) from None
        raise WarehouseError(
            f"{root}: not a warehouse (no {CURRENT}); build one with `saewh build`"
        ) from None
    except OSError as exc:
        if (root / CURRENT).is_dir():
            raise WarehouseError(
                f"{root}: {CURRENT} is a directory, not a link (copied following links?); "
                "copy a warehouse with `cp -a` (or shutil.copytree(..., symlinks=True))"
            ) from None
        raise WarehouseError(f"{root}: not a warehouse ({CURRENT}: {exc.strerror})") from None
    parts = Path(link).parts
    if len(parts) != 2 or parts[0] != SNAPSHOTS or not is_snapshot_name(parts[1]):
        raise WarehouseError(f"{root}: {CURRENT} points to {link!r}, not to a snapshot")
    snapshot = root / SNAPSHOTS / parts[1]
    if not (snapshot / DB_FILE).is_file() or not (snapshot / MANIFEST).is_file():
        raise WarehouseError(f"{root}: the current snapshot {parts[1]} is incomplete; rebuild the warehouse")
    return snapshot


def snapshot_dirs(root: Path) -> list[Path]:
    """Every snapshot directory of `root`, oldest first (names start with their UTC time)."""
    base = Path(root) / SNAPSHOTS
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if p.is_dir() and not p.is_symlink() and is_snapshot_name(p.name))


# Linux's open-file-description locks (fcntl.F_OFD_SETLK from Python 3.9 on Linux).
_F_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", 37 if os.uname().sysname == "Linux" else None)


def _ofd_write_lock(fd: int) -> bool | None:
    """Try to write-lock all of `fd`'s file: True taken, False held by someone, None unsupported."""
    if _F_OFD_SETLK is None:
        return None
    flock = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    try:
        fcntl.fcntl(fd, _F_OFD_SETLK, flock)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            return False
        if exc.errno == errno.EINVAL:
            return None
        raise
    return True


def lock_if_unused(db_path: Path) -> int | None:
    """An fd of `db_path` holding a write lock no DuckDB connection can coexist with, or
    None when some connection (any process, this one too) has the file open, or when
    the system cannot tell (then the snapshot counts as in use: kept)."""
    try:
        fd = os.open(db_path, os.O_RDWR)
    except OSError:
        return None
    if _ofd_write_lock(fd):
        return fd
    os.close(fd)
    return None


def in_use(snapshot: Path) -> bool:
    """Whether any connection has the snapshot's database open."""
    if not (Path(snapshot) / DB_FILE).exists():
        return False
    fd = lock_if_unused(Path(snapshot) / DB_FILE)
    if fd is None:
        return True
    os.close(fd)  # releases the lock
    return False


def read_manifest(directory: Path) -> dict:
    """The manifest of the snapshot (or warehouse, through its link) `directory`."""
    return json.loads((Path(directory) / MANIFEST).read_text())
