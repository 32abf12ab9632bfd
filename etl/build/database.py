"""Writing a snapshot's `warehouse.duckdb`: the native copies, the views, the macros.

The statements are the sql/ files rendered for the snapshot (warehouse.ddl); the
database is written once, before the snapshot is published, and never again.
"""

from __future__ import annotations

from pathlib import Path

from warehouse.contract import SCHEMA_VERSION
from warehouse.db import duckdb_connect
from warehouse.ddl import macro_statements, render_ddl
from warehouse.snapshots import DB_FILE

# The newest storage format (the file needs DuckDB >= 1.2 to open; the project pins its
# DuckDB and DuckDB CLI).  The memory limit bounds the build's steps here (DuckDB spills
# past it, to <database>.tmp in the staging directory).
_BUILD_CONFIG = {"storage_compatibility_version": "latest", "memory_limit": "256MB"}


# The copy of the reviews (every text, two ART indexes) runs beside the merge workers:
# one thread and 128 MB took the same 3.1 s at 47M tokens as two threads and 256 MB,
# with 3.0 instead of 3.7 CPU-seconds and a peak 145 instead of 287 MB above the process's
# (the largest part of the main process's peak at that size).
_REVIEWS_CONFIG = dict(_BUILD_CONFIG, memory_limit="128MB", threads=1)


def start_database(directory: Path, root: Path) -> None:
    """Create `warehouse.duckdb` with the native copy of the reviews (sql/native_reviews.sql),
    which needs only `reviews.parquet`: the build runs this while its workers merge.
    The connection is closed after it, so DuckDB's memory is not held until the end."""
    path = Path(directory) / DB_FILE
    path.unlink(missing_ok=True)
    con = duckdb_connect(path, config=_REVIEWS_CONFIG)
    try:
        for stmt in render_ddl(Path(root), "native_reviews.sql"):
            con.execute(stmt)
    finally:
        con.close()


def load_top_examples(directory: Path, root: Path, rows) -> None:
    """`top_examples_native` and the `top_examples` view (sql/native.sql) from the build's
    Arrow table of the top examples, in `start_database`'s file.  The build runs this
    while it writes the same rows to `top_examples.parquet` (DuckDB's threads need no
    GIL), where reading that file back cost the serial end of the build 0.6 s."""
    import pyarrow as pa

    # In batches of DuckDB's row-group size: one 2.4M-row batch loaded in 0.49 s, these
    # in 0.26 (zero-copy slices; the rows keep their order either way).
    rows = pa.Table.from_batches(rows.to_batches(max_chunksize=122_880), rows.schema)
    con = duckdb_connect(Path(directory) / DB_FILE, config=_BUILD_CONFIG)
    try:
        con.register("top_examples_rows", rows)
        for stmt in render_ddl(Path(root), "native.sql"):
            con.execute(stmt)
        con.unregister("top_examples_rows")
    finally:
        con.close()


def finish_database(directory: Path, root: Path) -> None:
    """The views and the macros, in the file of `start_database` and `load_top_examples`."""
    con = duckdb_connect(Path(directory) / DB_FILE, config=_BUILD_CONFIG)
    try:
        for stmt in render_ddl(Path(root)):
            con.execute(stmt)
        for stmt in macro_statements():
            con.execute(stmt)
        con.execute("CREATE TABLE warehouse_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        con.execute(
            "INSERT INTO warehouse_meta VALUES ('root', $root), ('schema_version', $v)",
            {"root": str(root), "v": str(SCHEMA_VERSION)},
        )
    finally:
        con.close()


def rewrite_views(snapshot: Path) -> None:
    """Re-create the views over `snapshot`'s own files (and the macros) in its database:
    for a new snapshot made from a moved one (`etl.publish.republish_moved`), before it
    is published; never on a published one."""
    con = duckdb_connect(Path(snapshot) / DB_FILE)
    try:
        for stmt in render_ddl(Path(snapshot)) + macro_statements():
            con.execute(stmt)
        con.execute("UPDATE warehouse_meta SET value = $root WHERE key = 'root'", {"root": str(snapshot)})
    finally:
        con.close()
