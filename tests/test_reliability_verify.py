"""`saewh verify`, the verification every build runs before publishing, and `connect`'s
handling of moved warehouses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import duckdb
import pytest
from inputs import write_inputs
from reliability import N_LATENTS, ROOT, assert_clean_error, leftovers, saewh, saewh_subprocess, tree_hashes

from etl.build import build_warehouse
from etl.publish import republish_moved
from warehouse.db import connect
from warehouse.verify import database_entry, verify_warehouse

WAREHOUSE = 4


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("verify")
    h5, npz = write_inputs(base / "in", n_reviews=14, n_latents=N_LATENTS, k=8, seed=4, variant="awkward")
    build_warehouse(h5, npz, base / "wh", n_latents=N_LATENTS, workers=2, chunk_tokens=100)
    return base / "wh", h5, npz


@pytest.fixture
def wh(built, tmp_path):
    """A private copy (re-pointed by connect on first use)."""
    dst = tmp_path / "wh"
    shutil.copytree(built[0], dst, symlinks=True)
    return dst


def manifest(wh):
    return json.loads((wh / "manifest.json").read_text())


def edit_manifest(wh, fn):
    m = manifest(wh)
    fn(m)
    (wh / "manifest.json").write_text(json.dumps(m))


def verify(wh, *extra):
    return saewh("verify", "-w", wh, *extra)


def xor(path, offset, n=512):
    """Flip every bit of `n` bytes of `path` at `offset`."""
    with open(path, "r+b") as fh:
        fh.seek(offset)
        block = fh.read(n)
        fh.seek(offset)
        fh.write(bytes(b ^ 0xFF for b in block))


def test_intact_warehouse_verifies(wh):
    result = verify(wh)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.strip() == f"{wh}: ok"


def test_flipped_byte_is_a_checksum_mismatch(wh):
    path = wh / "current" / "activations" / "bucket=0" / "part-0.parquet"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    assert_clean_error(verify(wh), WAREHOUSE, "activations/bucket=0/part-0.parquet", "checksum")


def test_damaged_footer_without_checksums(wh):
    path = wh / "current" / "features.parquet"
    raw = bytearray(path.read_bytes())
    raw[-12:-4] = b"\0" * 8  # footer length and part of the metadata
    path.write_bytes(bytes(raw))
    assert_clean_error(verify(wh, "--no-checksums"), WAREHOUSE, "features.parquet", "not readable Parquet")
    assert_clean_error(verify(wh), WAREHOUSE, "features.parquet", "checksum")


@pytest.mark.parametrize("victim", ["reviews.parquet", "tokens/part-0000.parquet",
                                    "activations/bucket=1/part-0.parquet"])
def test_deleted_file(wh, victim):
    (wh / "current" / victim).unlink()
    assert_clean_error(verify(wh), WAREHOUSE, victim, "missing")


@pytest.mark.parametrize("victim", ["warehouse.duckdb", "manifest.json"])
def test_deleted_database_or_manifest(wh, victim):
    (wh / victim).unlink()  # the link the DuckDB CLI opens
    assert_clean_error(verify(wh), WAREHOUSE, victim, "is not the link")
    (wh / "current" / victim).unlink()  # the snapshot's own file
    assert_clean_error(verify(wh), WAREHOUSE, "current snapshot", "incomplete")


def test_truncated_file(wh):
    path = wh / "current" / "top_examples.parquet"
    path.write_bytes(path.read_bytes()[:-100])
    assert_clean_error(verify(wh), WAREHOUSE, "top_examples.parquet", "bytes")


def test_extra_file_a_view_would_read(wh):
    shutil.copy(wh / "current" / "activations" / "bucket=0" / "part-0.parquet",
                wh / "current" / "activations" / "bucket=0" / "part-1.parquet")
    assert_clean_error(verify(wh), WAREHOUSE, "bucket=0/part-1.parquet", "not in manifest.json")


@pytest.mark.parametrize("extra", ["activations/bucket=1/notes.txt", "tokens/part-9999.parquet",
                                   "review_top_features/x", "stray.parquet", "warehouse.duckdb.wal"])
def test_extra_file_a_reader_would_take_is_an_error(wh, extra):
    """An unlisted file in a table's directory, any unlisted Parquet file, and a DuckDB
    write-ahead log (DuckDB replays it on open) fail verify, even with --no-checksums."""
    (wh / "current" / extra).write_bytes(b"not in the manifest")
    assert_clean_error(verify(wh), WAREHOUSE, extra, "not in manifest.json")
    assert_clean_error(verify(wh, "--no-checksums"), WAREHOUSE, extra, "not in manifest.json")


def test_extra_file_nothing_reads_is_a_warning(wh):
    """Any other unlisted file is one warning line each; verify still succeeds."""
    snap = (wh / "current").resolve()
    (snap / "notes.txt").write_text("mine")
    (snap / "sub").mkdir()
    (snap / "sub" / ".DS_Store").write_bytes(b"\0")
    result = verify(wh)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"saewh: warning: {snap}: notes.txt is not in manifest.json (no table reads it)",
        f"saewh: warning: {snap}: sub/.DS_Store is not in manifest.json (no table reads it)",
        f"{wh}: ok",
    ]
    assert len(verify_warehouse(wh)) == 2


def test_manifest_edits(wh):
    original = (wh / "manifest.json").read_text()

    def check(fn, *needles):
        (wh / "manifest.json").write_text(original)
        edit_manifest(wh, fn)
        assert_clean_error(verify(wh), WAREHOUSE, *needles)

    check(lambda m: m["files"]["reviews"][0].update(rows=m["files"]["reviews"][0]["rows"] + 1),
          "reviews.parquet", "rows")
    check(lambda m: m["files"]["features"][0].update(bytes=1), "features.parquet", "bytes")
    check(lambda m: m["files"]["features"][0].update(sha256="0" * 64), "features.parquet", "checksum")
    check(lambda m: m.update(schema_version=99), "schema version 99")
    check(lambda m: m.pop("files"), "manifest.json is malformed")
    check(lambda m: m["files"].pop("tokens"), "no files for table tokens")
    check(lambda m: m["files"]["reviews"][0].update(path="../../../etc/passwd"), "outside the warehouse")
    check(lambda m: m["summary"].update(n_activations=m["summary"]["n_activations"] + 5),
          "activations", "the build produced")
    check(lambda m: m["sae"].update(n_latents=N_LATENTS * 2), "table features", "the build produced")
    (wh / "manifest.json").write_text("{not json")
    assert_clean_error(verify(wh), WAREHOUSE, "manifest.json is unreadable")


def test_database_damaged_or_missing(wh):
    db = wh / "current" / "warehouse.duckdb"
    db.write_bytes(b"\0" * 4096)
    assert_clean_error(verify(wh), WAREHOUSE, "warehouse.duckdb")
    db.unlink()
    assert_clean_error(verify(wh), WAREHOUSE, "incomplete")


# --------------------------------------------------------------------------- warehouse.duckdb


@pytest.mark.parametrize("at", [0.05, 0.25, 0.50])
def test_damaged_database_fails_its_checksum(wh, at):
    """512 bytes XOR-ed inside warehouse.duckdb: `verify` said ok and the reports then
    failed with "Corrupt database file".  With the file's SHA-256 in the manifest, any
    change is found (the one-line error names the file; exit code 4)."""
    assert verify(wh).exit_code == 0
    db = wh / "warehouse.duckdb"
    xor(db, int(db.stat().st_size * at))
    line = assert_clean_error(verify(wh), WAREHOUSE, "warehouse.duckdb")
    assert "checksum mismatch" in line or "cannot be opened" in line, line
    # as a user runs it: a process of its own
    assert_clean_error(saewh_subprocess("verify", "-w", wh), WAREHOUSE, "warehouse.duckdb")


def _native_data_offset(wh, table, column):
    """A file offset inside a block holding `table.column`'s data (DuckDB's layout: three
    4 KiB headers, then fixed-size blocks), from DuckDB's own storage info."""
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"ATTACH '{wh / 'warehouse.duckdb'}' AS w (READ_ONLY)")
        sizes = con.execute("SELECT block_size FROM pragma_database_size() WHERE database_name = 'w'")
        block_size = sizes.fetchone()[0]
        block, offset = con.execute(
            f"SELECT block_id, block_offset FROM pragma_storage_info('w.{table}') "
            "WHERE column_name = $c AND block_id >= 0 ORDER BY row_group_id LIMIT 1",
            {"c": column},
        ).fetchone()
    finally:
        con.close()
    return 3 * 4096 + block * block_size + offset + 8


@pytest.mark.parametrize(("table", "column"), [("reviews_native", "text"), ("top_examples_native", "value")])
def test_damaged_database_without_a_usable_checksum(wh, table, column):
    """Without the manifest's checksum (a warehouse of a saewh that recorded none),
    verify still reads every native table in full, so DuckDB's block checksums find
    damage in their data."""
    edit_manifest(wh, lambda m: m.pop("database"))
    xor(wh / "warehouse.duckdb", _native_data_offset(wh, table, column), 64)
    assert_clean_error(verify(wh), WAREHOUSE, "warehouse.duckdb is damaged", table)


def test_truncated_database(wh):
    db = wh / "warehouse.duckdb"
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
    assert_clean_error(verify(wh), WAREHOUSE, "warehouse.duckdb")


def test_database_checksum_is_compared(built, wh):
    """The recorded size and checksum are compared, also in a copy (a snapshot's database
    is never rewritten, so a moved or copied one still matches)."""
    entry = manifest(wh)["database"]
    assert entry == database_entry(wh / "current")
    assert entry["root"] == str((built[0] / "current").resolve()) and entry["path"] == "warehouse.duckdb"
    edit_manifest(wh, lambda m: m["database"].update(sha256="0" * 64))
    assert_clean_error(verify(wh), WAREHOUSE, "warehouse.duckdb checksum mismatch")
    assert verify(wh, "--no-checksums").exit_code == 0  # no hashing
    edit_manifest(wh, lambda m: m["database"].update(bytes=1))
    assert_clean_error(verify(wh, "--no-checksums"), WAREHOUSE, "warehouse.duckdb has", "bytes")
    edit_manifest(wh, lambda m: m["database"].pop("sha256"))
    assert_clean_error(verify(wh), WAREHOUSE, "manifest.json is malformed")


def test_build_records_the_database(built):
    entry = manifest(built[0])["database"]
    assert entry["path"] == "warehouse.duckdb"
    assert len(entry["sha256"]) == 64 and entry["bytes"] > 0 and entry["root"]


# --------------------------------------------------------------------------- Parquet pages


def _page_offset(path, column):
    """An offset inside the data of row group 0's last page of `column`: a column chunk
    ends with page data (its pages' headers come before their data)."""
    import pyarrow.parquet as pq

    md = pq.ParquetFile(path).metadata
    col = md.row_group(0).column(md.schema.to_arrow_schema().get_field_index(column))
    return col.data_page_offset + col.total_compressed_size - 16


def test_every_parquet_file_has_page_checksums(wh):
    """Every page of every file the build wrote carries a CRC: one flipped byte in the
    data of any file's first page makes pyarrow's checked read fail."""
    import pyarrow.parquet as pq

    for entries in manifest(wh)["files"].values():
        for entry in entries:
            path = wh / "current" / entry["path"]
            with pq.ParquetFile(path) as pf:
                if pf.metadata.num_row_groups == 0:
                    continue
                name = pf.schema_arrow.names[0]
            raw = path.read_bytes()
            xor(path, _page_offset(path, name), 1)
            with pq.ParquetFile(path, page_checksum_verification=True) as pf:
                with pytest.raises(OSError, match="CRC"):
                    pf.read_row_group(0)
            path.write_bytes(raw)


@pytest.mark.parametrize("column", ["token_pos", "value"])
def test_damaged_parquet_page(wh, column):
    """Bytes flipped inside a data page of an activations bucket file: DuckDB reads such
    a page without a complaint (it does not check page CRCs).  verify names the file:
    by its SHA-256, and by the page's CRC where the manifest's hash was made of the
    damaged bytes; --no-checksums (footers and counts only) does not see it."""
    from warehouse.verify import file_sha256

    rel = "activations/bucket=0/part-0.parquet"
    path = wh / "current" / rel
    xor(path, _page_offset(path, column), 4)
    assert_clean_error(verify(wh), WAREHOUSE, rel, "checksum mismatch")

    def rehash(m):
        entry = next(e for e in m["files"]["activations"] if e["path"] == rel)
        entry["sha256"] = file_sha256(path)

    edit_manifest(wh, rehash)
    assert_clean_error(verify(wh), WAREHOUSE, rel, "row group 0 fails its page checksum")
    assert verify(wh, "--no-checksums").exit_code == 0


def test_misplaced_bucket_file(wh):
    """A file in the wrong bucket directory would answer the wrong feature's queries."""
    a = wh / "current" / "activations" / "bucket=0" / "part-0.parquet"
    b = wh / "current" / "activations" / "bucket=1" / "part-0.parquet"
    sa, sb = a.read_bytes(), b.read_bytes()
    a.write_bytes(sb)
    b.write_bytes(sa)

    def swap_entries(m):
        files = {e["path"]: e for e in m["files"]["activations"]}
        ea, eb = files["activations/bucket=0/part-0.parquet"], files["activations/bucket=1/part-0.parquet"]
        for key in ("bytes", "rows", "sha256"):
            ea[key], eb[key] = eb[key], ea[key]

    edit_manifest(wh, swap_entries)
    assert_clean_error(verify(wh), WAREHOUSE, "activations/bucket=0/part-0.parquet", "outside bucket 0")


def test_moved_warehouse_verifies(built, tmp_path):
    moved = tmp_path / "elsewhere" / "moved"
    shutil.copytree(built[0], moved, symlinks=True)
    assert verify(moved).exit_code == 0


# --------------------------------------------------------------------------- build-time verify


def test_build_verifies_before_publishing(built, tmp_path, monkeypatch):
    """A build whose output lost rows (here: a bucket file deleted after the merge) fails
    its own verification; the previous warehouse stays, byte for byte."""
    from etl.build import finish

    target = tmp_path / "wh"
    shutil.copytree(built[0], target, symlinks=True)
    assert republish_moved(target)  # so hashing below sees its final bytes
    before = tree_hashes(target)
    real_write = finish.write_feature_tables

    def lose_a_bucket(out, *args, **kw):
        real_write(out, *args, **kw)
        out.activations_part(2).unlink()

    monkeypatch.setattr(finish, "write_feature_tables", lose_a_bucket)
    result = saewh("build", "--h5", built[1], "--npz", built[2], "-w", target, "--latents", N_LATENTS,
                   "--replace")
    assert_clean_error(result, WAREHOUSE, "table activations has", "the build produced")
    assert tree_hashes(target) == before
    assert leftovers(target) == []


# --------------------------------------------------------------------------- connect


def test_repoint_republishes_a_moved_warehouse_another_process_holds_open(built, tmp_path):
    """`saewh repoint` publishes a new snapshot with its views here; the snapshot another
    process has open is neither written nor removed."""
    moved = tmp_path / "moved"
    shutil.copytree(built[0], moved, symlinks=True)
    old = (moved / "current").resolve()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys, time; c = duckdb.connect(sys.argv[1], read_only=True); "
         "print('open', flush=True); time.sleep(60)", str(old / "warehouse.duckdb")],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        before = tree_hashes(old)
        done = saewh("repoint", "-w", moved)
        assert done.exit_code == 0, done.stderr
        con = connect(moved)
        try:
            n = con.execute("SELECT count(*) FROM activations").fetchone()[0]
            stored = con.execute("SELECT value FROM warehouse_meta WHERE key = 'root'").fetchone()[0]
        finally:
            con.close()
        assert n == manifest(moved)["summary"]["n_activations"]
        assert stored == str((moved / "current").resolve()) != str(old)
        assert tree_hashes(old) == before and old.is_dir()
    finally:
        holder.kill()
        holder.wait()


def test_connect_to_a_moved_warehouse_writes_nothing(built, tmp_path):
    """connect reads a moved warehouse through temporary views over its files where they
    are now (the old place is gone), and writes nothing; repoint is refused while a
    build holds the lock."""
    from etl.staging import acquire_build_lock, release_lock

    first, moved = tmp_path / "first", tmp_path / "moved"
    shutil.copytree(built[0], first, symlinks=True)
    assert republish_moved(first)  # its views now name first/
    os.rename(first, moved)
    before = tree_hashes(moved)
    con = connect(moved)
    try:
        n = con.execute("SELECT count(*) FROM activations").fetchone()[0]
        top = con.execute("SELECT count(*) FROM top_k(0, 5)").fetchone()[0]
        stored = con.execute("SELECT value FROM warehouse_meta WHERE key = 'root'").fetchone()[0]
    finally:
        con.close()
    assert n == manifest(moved)["summary"]["n_activations"] and top == 5
    assert stored.startswith(str(first))  # not re-published
    assert tree_hashes(moved) == before
    lock = acquire_build_lock(moved)
    try:
        assert_clean_error(saewh("repoint", "-w", moved), WAREHOUSE, "build holds its lock")
    finally:
        release_lock(lock)
    assert tree_hashes(moved) == before


def test_connect_is_read_only(built, tmp_path):
    con = connect(built[0])
    try:
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("CREATE TABLE t (x INTEGER)")
    finally:
        con.close()


def test_verify_function_returns_nothing_when_ok(built):
    assert verify_warehouse(built[0], checksums=True) == []
    assert os.path.isdir(built[0])
