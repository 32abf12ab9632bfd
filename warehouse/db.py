"""Creating, connecting to and verifying a warehouse directory."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import duckdb

from warehouse.sqlfiles import load_sql, split_statements, sql_dir, sql_string_literal

DB_FILE = "warehouse.duckdb"
MANIFEST = "manifest.json"
SCHEMA_VERSION = 1
TABLES = ("activations", "tokens", "reviews", "features", "top_examples", "feature_stars")


class WarehouseError(Exception):
    """The warehouse is missing, moved beyond repair, or inconsistent (one-line message)."""


def _render_schema(root: Path) -> list[str]:
    sql = load_sql("schema.sql").sql.replace("{{root}}", sql_string_literal(str(root)))
    return split_statements(sql)


def _macro_statements() -> list[str]:
    """sql/macros.sql, then every sql/macros_*.sql (later files may use earlier macros)."""
    names = ["macros.sql"] + sorted(p.name for p in sql_dir().glob("macros_*.sql"))
    return [stmt for name in names for stmt in split_statements(load_sql(name).sql)]


def create_database(directory: Path, root: Path) -> None:
    """Write `warehouse.duckdb` with the views (over `root`) and the macros."""
    path = Path(directory) / DB_FILE
    path.unlink(missing_ok=True)
    con = duckdb.connect(str(path))
    try:
        for stmt in _render_schema(Path(root)):
            con.execute(stmt)
        for stmt in _macro_statements():
            con.execute(stmt)
        con.execute("CREATE TABLE warehouse_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        con.execute(
            "INSERT INTO warehouse_meta VALUES ('root', $root), ('schema_version', $v)",
            {"root": str(root), "v": str(SCHEMA_VERSION)},
        )
    finally:
        con.close()


def repoint(directory: Path) -> None:
    """Re-write the views' absolute paths (after the directory moved) and the macros."""
    directory = Path(directory).absolute()
    con = duckdb.connect(str(directory / DB_FILE))
    try:
        # Macros are re-created too, so a warehouse picks up a newer saewh's macros.
        for stmt in _render_schema(directory) + _macro_statements():
            con.execute(stmt)
        con.execute("UPDATE warehouse_meta SET value = $root WHERE key = 'root'", {"root": str(directory)})
    finally:
        con.close()


def check_directory(directory: Path) -> Path:
    directory = Path(directory).absolute()
    if not directory.exists():
        raise WarehouseError(f"{directory}: no such warehouse; build one with `saewh build`")
    if not (directory / MANIFEST).is_file() or not (directory / DB_FILE).is_file():
        raise WarehouseError(
            f"{directory}: not a warehouse (no {MANIFEST} or {DB_FILE}); build one with `saewh build`"
        )
    return directory


def connect(directory: Path, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """Open a warehouse for querying (read-only by default), re-pointing it if it moved."""
    directory = check_directory(directory)
    con = duckdb.connect(str(directory / DB_FILE), read_only=read_only)
    try:
        stored = con.execute("SELECT value FROM warehouse_meta WHERE key = 'root'").fetchone()
    except duckdb.Error as exc:
        con.close()
        raise WarehouseError(f"{directory}: not a warehouse database ({exc})") from None
    if stored and stored[0] != str(directory):
        con.close()
        if not os.access(directory / DB_FILE, os.W_OK):
            raise WarehouseError(
                f"{directory}: moved from {stored[0]} and not writable; "
                f"run `saewh repoint {directory}` as its owner"
            )
        repoint(directory)
        con = duckdb.connect(str(directory / DB_FILE), read_only=read_only)
    return con


def read_manifest(directory: Path) -> dict:
    return json.loads((Path(directory) / MANIFEST).read_text())


def verify_warehouse(directory: Path, checksums: bool = False) -> list[str]:
    """Check files, row counts (and optionally checksums) against the manifest.

    Returns nothing when all is well; raises WarehouseError naming the first problem.
    """
    import pyarrow.parquet as pq

    directory = check_directory(directory)
    manifest = read_manifest(directory)
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise WarehouseError(
            f"{directory}: schema version {manifest.get('schema_version')} "
            f"but this saewh reads {SCHEMA_VERSION}; rebuild with `saewh build --replace`"
        )
    expected_rows: dict[str, int] = {}
    for table, files in manifest["files"].items():
        if table not in TABLES:
            raise WarehouseError(f"{directory}: manifest names an unknown table {table!r}")
        total = 0
        for entry in files:
            path = directory / entry["path"]
            if not path.is_file():
                raise WarehouseError(f"{directory}: {entry['path']} is missing")
            if path.stat().st_size != entry["bytes"]:
                raise WarehouseError(f"{directory}: {entry['path']} has the wrong size")
            rows = pq.ParquetFile(path).metadata.num_rows
            if rows != entry["rows"]:
                raise WarehouseError(
                    f"{directory}: {entry['path']} has {rows} rows, manifest says {entry['rows']}"
                )
            if checksums and _sha256(path) != entry["sha256"]:
                raise WarehouseError(f"{directory}: {entry['path']} checksum mismatch")
            total += rows
        expected_rows[table] = total
    con = duckdb.connect(str(directory / DB_FILE), read_only=True)
    try:
        for table, rows in expected_rows.items():
            got = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
            if got != rows:
                raise WarehouseError(f"{directory}: view {table} has {got} rows, files {rows}")
    finally:
        con.close()
    return []


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()
