"""Creating, connecting to and verifying a warehouse directory."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

import duckdb

from warehouse.snapshots import (
    CURRENT,
    DB_FILE,
    MANIFEST,
    SNAPSHOTS,
    WarehouseError,
    current_snapshot,
    is_snapshot_name,
)
from warehouse.sqlfiles import load_sql, split_statements, sql_dir, sql_string_literal

__all__ = ["DB_FILE", "MANIFEST", "WarehouseError"]  # (re-exported: their home is warehouse.snapshots)
SCHEMA_VERSION = 5  # = etl.build.SCHEMA_VERSION; 5: snapshots (warehouse.snapshots)
TABLES = (
    "activations", "tokens", "reviews", "features", "top_examples", "feature_stars",
    "feature_review_stats", "review_top_features",
)


# Each table's files, relative to the warehouse (the manifest lists the same files).
_TABLE_GLOBS = {
    "activations": "activations/bucket=*/part-0.parquet",
    "tokens": "tokens/*.parquet",
    "review_top_features": "review_top_features/*.parquet",
}


def table_files(root: Path) -> dict[str, list[str]]:
    """Each table's Parquet files relative to `root`: from its manifest when it has one
    (so a file that went missing is an error when a view reads it, not a smaller
    answer), else as the build laid them out."""
    root = Path(root)
    if (root / MANIFEST).is_file():
        try:
            files = read_manifest(root)["files"]
            return {t: [str(e["path"]) for e in entries] for t, entries in files.items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise WarehouseError(f"{root}: {MANIFEST} is unreadable ({_first_line(exc)})") from None
    out = {t: [f"{t}.parquet"] for t in TABLES}
    for table, pattern in _TABLE_GLOBS.items():
        # (pathlib matches the pattern below root only: root is taken literally)
        out[table] = sorted(str(p.relative_to(root)) for p in root.glob(pattern))
    return out


def glob_escaped(path: str) -> str:
    """`path` as a DuckDB file pattern matching only itself: DuckDB globs every path
    it reads, so a directory named `g[A]` would otherwise read `gA`."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in path)


def _files_literal(root: Path, relative: list[str]) -> str:
    return "[" + ", ".join(sql_string_literal(glob_escaped(str(root / r))) for r in relative) + "]"


_FILES_PLACEHOLDER = re.compile(r"\{\{files ([a-z_]+)\}\}")


def _render_schema(root: Path, name: str = "schema.sql") -> list[str]:
    """The statements of a DDL file with `{{files TABLE}}` rendered as the exact list of
    the table's files.  Split first: a `;` in a path must not end a statement."""
    files = table_files(root)
    return [
        _FILES_PLACEHOLDER.sub(lambda m: _files_literal(Path(root), files[m.group(1)]), stmt)
        for stmt in split_statements(load_sql(name).sql)
    ]


def _macro_statements() -> list[str]:
    """sql/macros.sql, then every sql/macros_*.sql (later files may use earlier macros)."""
    names = ["macros.sql"] + sorted(p.name for p in sql_dir().glob("macros_*.sql"))
    return [stmt for name in names for stmt in split_statements(load_sql(name).sql)]


def _duckdb_connect(
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
    con = _duckdb_connect(path, config=_REVIEWS_CONFIG)
    try:
        for stmt in _render_schema(Path(root), "native_reviews.sql"):
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
    con = _duckdb_connect(Path(directory) / DB_FILE, config=_BUILD_CONFIG)
    try:
        con.register("top_examples_rows", rows)
        for stmt in _render_schema(Path(root), "native.sql"):
            con.execute(stmt)
        con.unregister("top_examples_rows")
    finally:
        con.close()


def finish_database(directory: Path, root: Path) -> None:
    """The views and the macros, in the file of `start_database` and `load_top_examples`."""
    con = _duckdb_connect(Path(directory) / DB_FILE, config=_BUILD_CONFIG)
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


def rewrite_views(snapshot: Path) -> None:
    """Re-create the views over `snapshot`'s own files (and the macros) in its database:
    for a new snapshot made from a moved one (`etl.publish.republish_moved`), before it
    is published; never on a published one."""
    con = _duckdb_connect(Path(snapshot) / DB_FILE)
    try:
        for stmt in _render_schema(Path(snapshot)) + _macro_statements():
            con.execute(stmt)
        con.execute("UPDATE warehouse_meta SET value = $root WHERE key = 'root'", {"root": str(snapshot)})
    finally:
        con.close()


def check_directory(directory: Path) -> Path:
    """The warehouse's absolute path, once its current snapshot is there (else WarehouseError)."""
    directory = Path(directory).absolute()
    current_snapshot(directory)
    return directory


def _attach_private(path: Path) -> duckdb.DuckDBPyConnection:
    """`path` attached read-only to a new in-memory DuckDB instance of its own.

    Within one process `duckdb.connect(path)` shares one database instance per file, and
    DuckDB's configuration (what the sandbox locks) belongs to the instance: a locked
    connection would lock every other connection to the file in the process, and a
    second sandboxed open could not configure its own."""
    con = _duckdb_connect(Path(":memory:"))
    try:
        con.execute(f"ATTACH {sql_string_literal(str(path))} AS warehouse (READ_ONLY)")
        con.execute("USE warehouse")
    except BaseException:
        con.close()
        raise
    return con


def _open_snapshot_db(snapshot: Path, private: bool) -> duckdb.DuckDBPyConnection:
    if private:
        return _attach_private(snapshot / DB_FILE)
    return _duckdb_connect(snapshot / DB_FILE, read_only=True)


def _stored_root(con: duckdb.DuckDBPyConnection, directory: Path) -> str | None:
    try:
        row = con.execute("SELECT value FROM warehouse_meta WHERE key = 'root'").fetchone()
    except duckdb.Error as exc:
        con.close()
        raise WarehouseError(f"{directory}: not a warehouse database ({_first_line(exc)})") from None
    return row[0] if row else None


def _overlay_views(con: duckdb.DuckDBPyConnection, snapshot: Path) -> None:
    """Temporary views over `snapshot` that shadow the stored ones, for this connection."""
    for stmt in _render_schema(snapshot):
        con.execute(stmt.replace("CREATE OR REPLACE VIEW", "CREATE OR REPLACE TEMP VIEW", 1))


def _same_directory(stored: str, snapshot: Path) -> bool:
    """Whether the views' stored root is `snapshot` (also when reached by another path)."""
    try:
        return stored == str(snapshot) or os.path.samefile(stored, snapshot)
    except OSError:
        return False


def _moved(con: duckdb.DuckDBPyConnection, snapshot: Path) -> bool:
    """Whether the views stored in `con`'s database name another place than `snapshot`."""
    stored = _stored_root(con, snapshot)
    return stored is not None and not _same_directory(stored, snapshot)


def _read_files_here(con: duckdb.DuckDBPyConnection, snapshot: Path) -> None:
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
            con = _open_snapshot_db(snapshot, private)
        except duckdb.IOException as exc:
            # Removed, or being removed (its remover holds a lock), since `current` moved on.
            moved_on = current_snapshot(directory) != snapshot
            if time.monotonic() > deadline or not (moved_on or "lock" in str(exc).lower()):
                raise
            time.sleep(0.02)
            continue
        _read_files_here(con, snapshot)
        return con, snapshot


def points_here(directory: Path) -> bool:
    """Whether the current snapshot's stored views name its files where they are now."""
    snapshot = current_snapshot(Path(directory).absolute())
    con = _open_snapshot_db(snapshot, private=True)
    try:
        return not _moved(con, snapshot)
    finally:
        con.close()


def connect(directory: Path, private: bool = False) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the warehouse's current snapshot (see `open_snapshot`)."""
    return open_snapshot(directory, private)[0]


def read_manifest(directory: Path) -> dict:
    return json.loads((Path(directory) / MANIFEST).read_text())


# The contract's columns (README): the build may write more, never fewer.
CONTRACT_COLUMNS = {
    "activations": ("token_pos", "review_idx", "feature", "value", "bucket"),
    "tokens": ("token_pos", "review_idx", "position", "token_id", "token", "char_start", "char_end"),
    "reviews": ("review_idx", "review_id", "text", "stars", "useful", "user_id", "business_id",
                "first_token_pos", "n_tokens", "n_text_tokens", "alignment", "in_npz"),
    "features": ("feature", "n_active", "n_reviews", "density", "review_density", "max_value",
                 "mean_value", "sum_value"),
    "top_examples": ("feature", "rank", "token_pos", "review_idx", "value"),
    "feature_stars": ("feature", "stars", "n_active_reviews", "sum_max_value"),
    "feature_review_stats": ("feature", "n_rated", "n_low", "n_high", "n_rated_active", "n_low_active",
                             "n_high_active", "auroc", "auroc_se", "spearman"),
}


def verify_warehouse(directory: Path, checksums: bool = False) -> list[str]:
    """Check every file of a warehouse against its manifest; raise WarehouseError naming
    the first problem, return one line per warning (files no table reads).

    Always: manifest readable and of this schema version; every table's files present,
    of the recorded size, readable Parquet with the recorded row count and the
    contract's columns; activations files inside their bucket's feature range; row totals
    agreeing with the build summary (tokens, activations, reviews, one feature row per
    latent); no unlisted file where a reader of the tables would pick it up; the
    database opening, of this schema version, every view returning the files' rows.
    With `checksums` (`saewh verify`'s default; the build's own verify skips it): every
    file's SHA-256 against the manifest, every Parquet page read back with its CRC
    checked, and every native table and index of `warehouse.duckdb` read in full, so
    DuckDB checks each block's checksum (its SHA-256 too, where the manifest has one
    for the file as it is: see `database_entry`).  Memory stays bounded: files are
    hashed in blocks, Parquet read a row group at a time, tables streamed in batches.
    """
    directory = _snapshot_to_verify(Path(directory).absolute())
    try:
        manifest = read_manifest(directory)
    except (OSError, ValueError) as exc:
        raise WarehouseError(f"{directory}: {MANIFEST} is unreadable ({_first_line(exc)})") from None
    try:
        totals, listed = _verify_files(directory, manifest, checksums)
        _verify_summary(directory, manifest, totals)
        warnings = _unlisted_files(directory, listed)
        _verify_database_file(directory, manifest.get("database"), checksums)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise WarehouseError(f"{directory}: {MANIFEST} is malformed ({type(exc).__name__}: {exc})") from None
    _verify_database(directory, totals)
    return warnings


def _snapshot_to_verify(directory: Path) -> Path:
    """`directory` itself when it is a snapshot (the build verifies its own before
    publishing), else the current snapshot of the warehouse `directory`, whose links
    for the DuckDB CLI must lead to it."""
    if directory.parent.name == SNAPSHOTS and is_snapshot_name(directory.name):
        return directory
    snapshot = current_snapshot(directory)
    for name in (DB_FILE, MANIFEST):
        link = directory / name
        if not link.is_symlink() or os.readlink(link) != f"{CURRENT}/{name}":
            raise WarehouseError(
                f"{directory}: {name} is not the link to {CURRENT}/{name} the DuckDB CLI opens"
            )
    return snapshot


def _first_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _verify_files(directory: Path, manifest: dict, checksums: bool) -> tuple[dict[str, int], set[Path]]:
    """Each table's files; returns the row totals and the (resolved) paths listed."""
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise WarehouseError(
            f"{directory}: schema version {manifest.get('schema_version')} "
            f"but this saewh reads {SCHEMA_VERSION}; rebuild with `saewh build --replace`"
        )
    files = manifest["files"]
    unknown = sorted(set(files) - set(TABLES))
    if unknown:
        raise WarehouseError(f"{directory}: {MANIFEST} names an unknown table {unknown[0]!r}")
    missing = [t for t in TABLES if t not in files]
    if missing:
        raise WarehouseError(f"{directory}: {MANIFEST} lists no files for table {missing[0]}")
    width = int(manifest.get("layout", {}).get("bucket_width", 0))
    listed: set[Path] = set()
    totals: dict[str, int] = {}
    for table in TABLES:
        total = 0
        for entry in files[table]:
            rel = str(entry["path"])
            path = (directory / rel).resolve()
            if Path(rel).is_absolute() or directory.resolve() not in path.parents:
                raise WarehouseError(f"{directory}: {MANIFEST} names a file outside the warehouse: {rel}")
            listed.add(path)
            total += _verify_parquet(directory, table, rel, path, entry, width, checksums)
        totals[table] = total
    return totals, listed


def _verify_parquet(directory: Path, table: str, rel: str, path: Path, entry: dict, width: int,
                    checksums: bool) -> int:
    """One Parquet file against its manifest entry; returns its row count."""
    import pyarrow.parquet as pq

    if not path.is_file():
        raise WarehouseError(f"{directory}: {rel} is missing")
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise WarehouseError(f"{directory}: {rel} has {size} bytes, {MANIFEST} says {entry['bytes']}")
    if checksums and file_sha256(path) != entry["sha256"]:
        raise WarehouseError(f"{directory}: {rel} checksum mismatch (modified or damaged)")
    try:
        pf = pq.ParquetFile(path, page_checksum_verification=checksums)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds
        reason = _first_line(exc)
        raise WarehouseError(f"{directory}: {rel} is not readable Parquet ({reason})") from None
    with pf:
        rows = pf.metadata.num_rows
        if rows != entry["rows"]:
            raise WarehouseError(f"{directory}: {rel} has {rows} rows, {MANIFEST} says {entry['rows']}")
        names = set(pf.schema_arrow.names) | ({"bucket"} if table == "activations" else set())
        lacking = [c for c in CONTRACT_COLUMNS.get(table, ()) if c not in names]
        if lacking:
            raise WarehouseError(f"{directory}: {rel} lacks column {lacking[0]} of table {table}")
        if table == "activations" and width:
            _check_bucket(directory, rel, pf, width)
        if checksums:
            _read_pages(directory, rel, pf)
    return rows


# Rows per batch when a file or table is read back in full: one batch of the widest
# table (reviews, with its texts) stays a few MB.
_VERIFY_BATCH_ROWS = 1 << 14


def _read_pages(directory: Path, rel: str, pf) -> None:
    """Decode every page of every column, a row group at a time: with the file opened with
    `page_checksum_verification`, pyarrow checks each page's CRC as it reads it (DuckDB,
    which answers the queries, does not check them)."""
    for i in range(pf.metadata.num_row_groups):
        try:
            for _ in pf.iter_batches(batch_size=_VERIFY_BATCH_ROWS, row_groups=[i]):
                pass
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds
            reason = _first_line(exc)
            what = "fails its page checksum" if "crc" in reason.lower() else "cannot be decoded"
            raise WarehouseError(f"{directory}: {rel} is damaged: row group {i} {what} ({reason})") from None


# Where an unlisted file is an error rather than a warning: in a table's directory (a
# reader of the directory, Polars' or Spark's, or pyarrow.dataset, would read it as rows),
# any Parquet file, and a DuckDB write-ahead log (DuckDB replays it when it opens the
# database, so its statements would change what every query sees).
_TABLE_DIRS = frozenset(_TABLE_GLOBS)


def _unlisted_files(directory: Path, listed: set[Path]) -> list[str]:
    """Every file under `directory` the manifest does not list: the first one a reader
    would take for data is an error; the others (a stray note, `.DS_Store`) are warnings."""
    known = listed | {(directory / MANIFEST).resolve(), (directory / DB_FILE).resolve()}
    warnings = []
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.resolve() in known:
                continue
            rel = str(path.relative_to(directory))
            if rel.split(os.sep, 1)[0] in _TABLE_DIRS or name.endswith(".parquet"):
                raise WarehouseError(
                    f"{directory}: {rel} is not in {MANIFEST} (a reader of the table's files would read it)"
                )
            if name == f"{DB_FILE}.wal":
                raise WarehouseError(
                    f"{directory}: {rel} is not in {MANIFEST} (DuckDB would replay it into {DB_FILE})"
                )
            warnings.append(f"{directory}: {rel} is not in {MANIFEST} (no table reads it)")
    return warnings


def database_entry(directory: Path) -> dict:
    """The manifest's record of `directory`'s `warehouse.duckdb` (key `database`): its size,
    SHA-256 and the root its views name (`warehouse_meta`).

    Recorded once the file is final: a snapshot's database is never written again
    (moving a warehouse leaves it as it is; `saewh repoint` writes a new snapshot), so
    `verify` compares it always."""
    path = Path(directory) / DB_FILE
    con = _attach_private(path)
    try:
        root = _stored_root(con, Path(directory))
    finally:
        con.close()
    return {"path": DB_FILE, "bytes": path.stat().st_size, "sha256": file_sha256(path), "root": root}


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _verify_database_file(directory: Path, entry: dict | None, checksums: bool) -> None:
    """`warehouse.duckdb` itself, opened read-only in an instance of its own: its
    recorded size and SHA-256; with `checksums`, every native table and index read in
    full (DuckDB checks each block's checksum as it loads it)."""
    path = directory / DB_FILE
    if entry is not None:
        want_bytes, want_sha = int(entry["bytes"]), str(entry["sha256"])
    try:
        con = _open_snapshot_db(directory, private=True)
    except duckdb.Error as exc:
        raise WarehouseError(f"{directory}: {DB_FILE} cannot be opened ({_first_line(exc)})") from None
    try:
        try:
            con.execute("SELECT value FROM warehouse_meta WHERE key = 'root'").fetchone()
        except duckdb.Error as exc:
            reason = _first_line(exc)
            raise WarehouseError(f"{directory}: {DB_FILE} is damaged: warehouse_meta ({reason})") from None
        if entry is not None:
            size = path.stat().st_size
            if size != want_bytes:
                raise WarehouseError(f"{directory}: {DB_FILE} has {size} bytes, {MANIFEST} says {want_bytes}")
            if checksums and file_sha256(path) != want_sha:
                raise WarehouseError(f"{directory}: {DB_FILE} checksum mismatch (modified or damaged)")
        if checksums:
            # The instance is this check's own: a small buffer pool keeps the streamed
            # blocks from piling up in memory (by default DuckDB caches up to 80% of RAM).
            con.execute("SET memory_limit = '256MB'")
            _read_database(directory, con)
    finally:
        con.close()


def _read_database(directory: Path, con: duckdb.DuckDBPyConnection) -> None:
    """Every native table streamed in full, then every single-column index traversed."""
    try:
        tables = con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() "
            "WHERE database_name = current_database() ORDER BY ALL"
        ).fetchall()
        indexes = con.execute(
            "SELECT schema_name, table_name, index_name, expressions FROM duckdb_indexes() "
            "WHERE database_name = current_database() ORDER BY ALL"
        ).fetchall()
    except duckdb.Error as exc:
        raise WarehouseError(f"{directory}: {DB_FILE} is damaged ({_first_line(exc)})") from None
    for schema, table in tables:
        try:
            reader = con.execute(f"SELECT * FROM {_quoted(schema)}.{_quoted(table)}").to_arrow_reader(
                _VERIFY_BATCH_ROWS
            )
            for _ in reader:
                pass
        except Exception as exc:  # noqa: BLE001 - duckdb.Error, or pyarrow's OSError mid-stream
            reason = _first_line(exc)
            raise WarehouseError(f"{directory}: {DB_FILE} is damaged: table {table} ({reason})") from None
    # A scan reads a table's blocks, not its indexes' (whose blocks a lookup loads as
    # it walks the tree).  A range filter over all but the smallest key, which an index
    # scan answers once allowed to return every row, walks every leaf.
    con.execute("SET index_scan_percentage = 1.0")
    con.execute(f"SET index_scan_max_count = {2**62}")
    for schema, table, index, expressions in indexes:
        column = str(expressions).strip("[]")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", column):
            continue  # an expression index: the build makes none
        name, col = f"{_quoted(schema)}.{_quoted(table)}", _quoted(column)
        try:
            (low,) = con.execute(f"SELECT min({col}) FROM {name}").fetchone()
            if low is not None:
                con.execute(f"SELECT count(*) FROM {name} WHERE {col} > $low", {"low": low}).fetchone()
                con.execute(f"SELECT count(*) FROM {name} WHERE {col} = $low", {"low": low}).fetchone()
        except duckdb.Error as exc:
            reason = _first_line(exc)
            raise WarehouseError(f"{directory}: {DB_FILE} is damaged: index {index} ({reason})") from None


def _check_bucket(directory: Path, rel: str, pf, width: int) -> None:
    part = Path(rel).parent.name
    if not part.startswith("bucket=") or not part[7:].isdigit():
        raise WarehouseError(f"{directory}: {rel} is not in a bucket=N directory")
    bucket = int(part[7:])
    col = pf.schema_arrow.get_field_index("feature")
    for i in range(pf.metadata.num_row_groups):
        stats = pf.metadata.row_group(i).column(col).statistics
        if stats is None or not stats.has_min_max:
            continue
        if stats.min < bucket * width or stats.max >= (bucket + 1) * width:
            raise WarehouseError(
                f"{directory}: {rel} holds features {stats.min}..{stats.max}, "
                f"outside bucket {bucket} ({bucket * width}..{(bucket + 1) * width - 1})"
            )


def _verify_summary(directory: Path, manifest: dict, totals: dict[str, int]) -> None:
    """Row totals against the build's own counts (computed before any file was written)."""
    summary = manifest.get("summary") or {}
    expect = {
        "activations": summary.get("n_activations"),
        "tokens": summary.get("n_tokens"),
        "reviews": summary.get("n_reviews"),
        "features": manifest.get("sae", {}).get("n_latents"),
    }
    for table, want in expect.items():
        if want is not None and totals[table] != int(want):
            raise WarehouseError(
                f"{directory}: table {table} has {totals[table]} rows but the build produced {want}"
            )


def _verify_database(directory: Path, totals: dict[str, int]) -> None:
    try:
        con = _open_snapshot_db(directory, private=True)
    except duckdb.Error as exc:
        raise WarehouseError(f"{directory}: {DB_FILE} cannot be opened ({_first_line(exc)})") from None
    try:
        _read_files_here(con, directory)  # moved: check the files here, writing nothing
        try:
            row = con.execute("SELECT value FROM warehouse_meta WHERE key = 'schema_version'").fetchone()
        except duckdb.Error as exc:
            reason = _first_line(exc)
            raise WarehouseError(f"{directory}: {DB_FILE} has no warehouse_meta ({reason})") from None
        if row is None or row[0] != str(SCHEMA_VERSION):
            raise WarehouseError(
                f"{directory}: {DB_FILE} has schema version {row[0] if row else None}, "
                f"expected {SCHEMA_VERSION}"
            )
        for table, rows in totals.items():
            try:
                got = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
                cols = [r[0] for r in con.execute(f'DESCRIBE "{table}"').fetchall()]
            except duckdb.Error as exc:
                raise WarehouseError(f"{directory}: view {table} fails ({_first_line(exc)})") from None
            if got != rows:
                raise WarehouseError(f"{directory}: view {table} has {got} rows, its files {rows}")
            lacking = [c for c in CONTRACT_COLUMNS.get(table, ()) if c not in cols]
            if lacking:
                raise WarehouseError(f"{directory}: view {table} lacks column {lacking[0]}")
    finally:
        con.close()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 4 MiB blocks (the manifest's checksums)."""
    h = hashlib.sha256()
    # Into one reused buffer: a fresh 4 MiB bytes object per block is page-faulted in
    # each time (~20% of the hashing's CPU time).
    buf = bytearray(1 << 22)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()
