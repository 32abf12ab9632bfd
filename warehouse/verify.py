"""Checking a warehouse against its manifest (`saewh verify`, and the build before it publishes)."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import duckdb

from warehouse.contract import CONTRACT_COLUMNS, SCHEMA_VERSION, TABLE_GLOBS, TABLES
from warehouse.db import attach_private, open_snapshot_db, read_files_here, stored_root
from warehouse.errors import WarehouseError, one_line
from warehouse.snapshots import (
    CURRENT,
    DB_FILE,
    MANIFEST,
    SNAPSHOTS,
    current_snapshot,
    is_snapshot_name,
    read_manifest,
)


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
        raise WarehouseError(f"{directory}: {MANIFEST} is unreadable ({one_line(exc)})") from None
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
        reason = one_line(exc)
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
            reason = one_line(exc)
            what = "fails its page checksum" if "crc" in reason.lower() else "cannot be decoded"
            raise WarehouseError(f"{directory}: {rel} is damaged: row group {i} {what} ({reason})") from None


# Where an unlisted file is an error rather than a warning: in a table's directory (a
# reader of the directory, Polars' or Spark's, or pyarrow.dataset, would read it as rows),
# any Parquet file, and a DuckDB write-ahead log (DuckDB replays it when it opens the
# database, so its statements would change what every query sees).
_TABLE_DIRS = frozenset(TABLE_GLOBS)


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
    con = attach_private(path)
    try:
        root = stored_root(con, Path(directory))
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
        con = open_snapshot_db(directory, private=True)
    except duckdb.Error as exc:
        raise WarehouseError(f"{directory}: {DB_FILE} cannot be opened ({one_line(exc)})") from None
    try:
        try:
            con.execute("SELECT value FROM warehouse_meta WHERE key = 'root'").fetchone()
        except duckdb.Error as exc:
            reason = one_line(exc)
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
        raise WarehouseError(f"{directory}: {DB_FILE} is damaged ({one_line(exc)})") from None
    for schema, table in tables:
        try:
            reader = con.execute(f"SELECT * FROM {_quoted(schema)}.{_quoted(table)}").to_arrow_reader(
                _VERIFY_BATCH_ROWS
            )
            for _ in reader:
                pass
        except Exception as exc:  # noqa: BLE001 - duckdb.Error, or pyarrow's OSError mid-stream
            reason = one_line(exc)
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
            reason = one_line(exc)
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
        con = open_snapshot_db(directory, private=True)
    except duckdb.Error as exc:
        raise WarehouseError(f"{directory}: {DB_FILE} cannot be opened ({one_line(exc)})") from None
    try:
        read_files_here(con, directory)  # moved: check the files here, writing nothing
        try:
            row = con.execute("SELECT value FROM warehouse_meta WHERE key = 'schema_version'").fetchone()
        except duckdb.Error as exc:
            reason = one_line(exc)
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
                raise WarehouseError(f"{directory}: view {table} fails ({one_line(exc)})") from None
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
