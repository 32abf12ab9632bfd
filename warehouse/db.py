"""Connecting to a warehouse: a read-only connection to its current snapshot.

Writing a database is the build's (etl.build.database); checking one is
warehouse.verify; the DDL both render is warehouse.ddl.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import duckdb

from warehouse.ddl import render_ddl
from warehouse.errors import WarehouseError, one_line
from warehouse.snapshots import DB_FILE, current_snapshot, read_manifest
from warehouse.sqlfiles import sql_string_literal

# Re-exported for Python users: `from warehouse.db import connect, read_manifest`.
__all__ = ["check_directory", "connect", "open_snapshot", "points_here", "read_manifest"]


def duckdb_connect(
    path: Path, read_only: bool = False, config: dict | None = None
) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path), read_only=read_only, config=config or {})
    # DuckDB draws its progress bar on stdout, which carries only data here.
    con.execute("SET enable_progress_bar = false")
    # Every macro binds Parquet views (a general path stays in the plan until the
    # optimizer drops it): cached footers halve top_k_contexts (14.5 -> 7.6 ms at 47M
    # tokens).  The files of a warehouse never change in place (builds swap directories).
    con.execute("SET parquet_metadata_cache = true")
    return con


def check_directory(directory: Path) -> Path:
    """The warehouse's absolute path, once its current snapshot is there (else WarehouseError)."""
    directory = Path(directory).absolute()
    current_snapshot(directory)
    return directory


def attach_private(path: Path) -> duckdb.DuckDBPyConnection:
    """`path` attached read-only to a new in-memory DuckDB instance of its own.

    Within one process `duckdb.connect(path)` shares one database instance per file, and
    DuckDB's configuration (what the sandbox locks) belongs to the instance: a locked
    connection would lock every other connection to the file in the process, and a
    second sandboxed open could not configure its own."""
    con = duckdb_connect(Path(":memory:"))
    try:
        con.execute(f"ATTACH {sql_string_literal(str(path))} AS warehouse (READ_ONLY)")
        con.execute("USE warehouse")
    except BaseException:
        con.close()
        raise
    return con


def open_snapshot_db(snapshot: Path, private: bool) -> duckdb.DuckDBPyConnection:
    if private:
        return attach_private(snapshot / DB_FILE)
    return duckdb_connect(snapshot / DB_FILE, read_only=True)


def stored_root(con: duckdb.DuckDBPyConnection, directory: Path) -> str | None:
    try:
        row = con.execute("SELECT value FROM warehouse_meta WHERE key = 'root'").fetchone()
    except duckdb.Error as exc:
        con.close()
        raise WarehouseError(f"{directory}: not a warehouse database ({one_line(exc)})") from None
    return row[0] if row else None


def _overlay_views(con: duckdb.DuckDBPyConnection, snapshot: Path) -> None:
    """Temporary views over `snapshot` that shadow the stored ones, for this connection."""
    for stmt in render_ddl(snapshot):
        con.execute(stmt.replace("CREATE OR REPLACE VIEW", "CREATE OR REPLACE TEMP VIEW", 1))


def _same_directory(stored: str, snapshot: Path) -> bool:
    """Whether the views' stored root is `snapshot` (also when reached by another path)."""
    try:
        return stored == str(snapshot) or os.path.samefile(stored, snapshot)
    except OSError:
        return False


def _moved(con: duckdb.DuckDBPyConnection, snapshot: Path) -> bool:
    """Whether the views stored in `con`'s database name another place than `snapshot`."""
    stored = stored_root(con, snapshot)
    return stored is not None and not _same_directory(stored, snapshot)


def read_files_here(con: duckdb.DuckDBPyConnection, snapshot: Path) -> None:
    """If the snapshot was moved since its views were stored, shadow them for `con`."""
    if _moved(con, snapshot):
        _overlay_views(con, snapshot)


def open_snapshot(directory: Path, private: bool = False) -> tuple[duckdb.DuckDBPyConnection, Path]:
    """A read-only connection to the warehouse's current snapshot, and that snapshot's
    directory (its manifest describes exactly what the connection reads).

    The connection keeps reading that snapshot whatever builds publish meanwhile.  A
    snapshot removed between resolving `current` and opening it (a build and a vacuum
    in that instant) is retried at the new `current`.  Opening never writes: a moved
    warehouse's connection gets temporary views over its files where they are now
    (`saewh repoint` publishes a snapshot whose stored views name them, for the
    DuckDB CLI).  `private` attaches the file to a DuckDB instance of this
    connection's own (as catalog `warehouse`), whose configuration can then be locked
    (the sandbox).
    """
    directory = Path(directory).absolute()
    deadline = time.monotonic() + 5.0
    while True:
        snapshot = current_snapshot(directory)
        try:
            con = open_snapshot_db(snapshot, private)
        except duckdb.IOException as exc:
            # Removed, or being removed (its remover holds a lock), since `current` moved on.
            moved_on = current_snapshot(directory) != snapshot
            if time.monotonic() > deadline or not (moved_on or "lock" in str(exc).lower()):
                raise
            time.sleep(0.02)
            continue
        read_files_here(con, snapshot)
        return con, snapshot


def points_here(directory: Path) -> bool:
    """Whether the current snapshot's stored views name its files where they are now."""
    snapshot = current_snapshot(Path(directory).absolute())
    con = open_snapshot_db(snapshot, private=True)
    try:
        return not _moved(con, snapshot)
    finally:
        con.close()


def connect(directory: Path, private: bool = False) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the warehouse's current snapshot (see `open_snapshot`)."""
    return open_snapshot(directory, private)[0]
