"""Publishing a snapshot and removing the ones no reader needs (see warehouse.snapshots).

Every function here runs with the target's build lock held (`etl.staging`), so no
other build or vacuum of the same warehouse is running: a snapshot directory that is
neither current nor kept is a finished one nobody needs any more, or a leftover of a
build that died.

Retention: a build keeps the snapshot it replaced (a reader that resolved `current`
just before the publish still finds it) and removes every older one that no
connection has open.  `saewh vacuum` removes every snapshot but the current one that
no connection has open.  A snapshot in use is never removed; the next build or vacuum
after its readers close removes it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from pathlib import Path

from etl.staging import fsync_dir, fsync_tree
from warehouse.snapshots import (
    CURRENT,
    DB_FILE,
    LEGACY_ENTRIES,
    MANIFEST,
    SNAPSHOTS,
    current_snapshot,
    is_legacy,
    lock_if_unused,
    snapshot_dirs,
)


def new_snapshot(root: Path) -> Path:
    """Create and return an empty snapshot directory under its final name (unpublished)."""
    base = Path(root) / SNAPSHOTS
    base.mkdir(parents=True, exist_ok=True)
    while True:
        name = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(4)
        try:
            (base / name).mkdir()
            return base / name
        except FileExistsError:
            continue


def current_name(root: Path) -> str | None:
    """The snapshot `current` names, or None (no warehouse yet, or a legacy one)."""
    try:
        return Path(os.readlink(Path(root) / CURRENT)).name
    except OSError:
        return None


def _replace_with_symlink(path: Path, points_to: str) -> None:
    if path.is_symlink() and os.readlink(path) == points_to:
        return
    tmp = path.parent / f".{path.name}.new-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(points_to, tmp)
    os.replace(tmp, path)  # atomic: readers see the old entry or the new link


def publish(root: Path, snapshot: Path) -> None:
    """Make `snapshot` current: synced to disk first, then one atomic rename of `current`.

    The fixed links the DuckDB CLI opens (`warehouse.duckdb`, `manifest.json`) point
    through `current` and are created once.  A warehouse of the flat layout becomes a
    snapshot warehouse here (its old files go after the links are in place).
    """
    root = Path(root)
    fsync_tree(snapshot)
    fsync_dir(snapshot.parent)
    legacy = is_legacy(root)
    # The links first: until `current` exists (a first build) they lead nowhere, and
    # readers find no warehouse, as before the build.
    for name in (DB_FILE, MANIFEST):
        _replace_with_symlink(root / name, f"{CURRENT}/{name}")
    _replace_with_symlink(root / CURRENT, f"{SNAPSHOTS}/{snapshot.name}")
    fsync_dir(root)
    if legacy:
        for name in LEGACY_ENTRIES:
            path = root / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            elif path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)


def remove_snapshot(snapshot: Path) -> bool:
    """Remove a snapshot unless a connection has its database open (then False).

    Its database is unlinked while the lock that proves it unused is held, so a
    reader that resolved `current` long ago and opens it now fails (and retries at
    the current snapshot) instead of reading a directory being deleted.
    """
    db = snapshot / DB_FILE
    if db.exists():
        fd = lock_if_unused(db)
        if fd is None:
            return False
        try:
            db.unlink()
        finally:
            os.close(fd)
    shutil.rmtree(snapshot, ignore_errors=True)
    return not snapshot.exists()


def prune(root: Path, keep: set[str]) -> tuple[list[str], list[str]]:
    """Remove the snapshots not named in `keep` that nobody uses: (removed, kept in use)."""
    removed, busy = [], []
    for link in Path(root).glob(".*.new-*"):  # a publish's link of a process that died
        if link.is_symlink():
            link.unlink(missing_ok=True)
    keep = keep | {current_name(root)}
    for snapshot in snapshot_dirs(root):
        if snapshot.name in keep:
            continue
        (removed if remove_snapshot(snapshot) else busy).append(snapshot.name)
    return removed, busy


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # published files are immutable: two names for one file are safe
    except OSError:
        shutil.copy2(src, dst)


def republish_moved(root: Path) -> bool:
    """The current snapshot of a moved warehouse again, as a new snapshot whose views name
    the files where they are now (hard links to its files, a copy of its database with
    the views re-written), published like a build's.  False, changing nothing, when the
    warehouse cannot be written or a build holds its lock: readers then overlay views.
    """
    import json

    import duckdb

    from etl.build.database import rewrite_views
    from etl.staging import release_lock, try_lock
    from warehouse.verify import database_entry
    root = Path(root).absolute()
    if not (os.access(root, os.W_OK) and os.access(root / SNAPSHOTS, os.W_OK)):
        return False
    try:
        fd = try_lock(root)
    except OSError:
        return False
    if fd is None:
        return False
    new = None
    try:
        old = current_snapshot(root)
        new = new_snapshot(root)
        for dirpath, _dirs, names in os.walk(old):
            rel = Path(dirpath).relative_to(old)
            (new / rel).mkdir(exist_ok=True)
            for name in names:
                if rel == Path(".") and name in (DB_FILE, MANIFEST) or name.endswith(".wal"):
                    continue
                _link_or_copy(Path(dirpath) / name, new / rel / name)
        shutil.copyfile(old / DB_FILE, new / DB_FILE)
        rewrite_views(new)
        manifest = json.loads((old / MANIFEST).read_text())
        manifest.update(snapshot=new.name, previous=old.name, database=database_entry(new))
        (new / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        publish(root, new)
        prune(root, keep={new.name, old.name})
        return True
    except (OSError, ValueError, duckdb.Error):
        if new is not None:
            shutil.rmtree(new, ignore_errors=True)
        return False
    finally:
        release_lock(fd)
