"""`saewh verify`, the verification every build runs before its swap, and `connect`'s
handling of moved and half-swapped warehouses."""

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
from warehouse.db import connect, database_entry, record_database_checksum, verify_warehouse

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
    shutil.copytree(built[0], dst)
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


def finalize_database(wh):
    """What a build does once its database is final in its snapshot directory (see
    warehouse.db.database_entry): here, re-point the copy first, then record the file."""
    connect(wh).close()
    record_database_checksum(wh)


def test_intact_warehouse_verifies(wh):
    result = verify(wh)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.strip() == f"{wh}: ok"


def test_flipped_byte_is_a_checksum_mismatch(wh):
    path = wh / "activations" / "bucket=0" / "part-0.parquet"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    assert_clean_error(verify(wh), WAREHOUSE, "activations/bucket=0/part-0.parquet", "checksum")


def test_damaged_footer_without_checksums(wh):
    path = wh / "features.parquet"
    raw = bytearray(path.read_bytes())
    raw[-12:-4] = b"\0" * 8  # footer length and part of the metadata
    path.write_bytes(bytes(raw))
    assert_clean_error(verify(wh, "--no-checksums"), WAREHOUSE, "features.parquet", "not readable Parquet")
    assert_clean_error(verify(wh), WAREHOUSE, "features.parquet", "checksum")


@pytest.mark.parametrize("victim", ["reviews.parquet", "tokens/part-0000.parquet",
                                    "activations/bucket=1/part-0.parquet"])
def test_deleted_file(wh, victim):
    (wh / victim).unlink()
    assert_clean_error(verify(wh), WAREHOUSE, victim, "missing")


@pytest.mark.parametrize("victim", ["warehouse.duckdb", "manifest.json"])
def test_deleted_database_or_manifest(wh, victim):
    (wh / victim).unlink()
    assert_clean_error(verify(wh), WAREHOUSE, victim, "not a warehouse")


def test_truncated_file(wh):
    path = wh / "top_examples.parquet"
    path.write_bytes(path.read_bytes()[:-100])
    assert_clean_error(verify(wh), WAREHOUSE, "top_examples.parquet", "bytes")


def test_extra_file_a_view_would_read(wh):
    shutil.copy(wh / "activations" / "bucket=0" / "part-0.parquet",
                wh / "activations" / "bucket=0" / "part-1.parquet")
    assert_clean_error(verify(wh), WAREHOUSE, "bucket=0/part-1.parquet", "not in manifest.json")


@pytest.mark.parametrize("extra", ["activations/bucket=1/notes.txt", "tokens/part-9999.parquet",
                                   "review_top_features/x", "stray.parquet", "warehouse.duckdb.wal"])
def test_extra_file_a_reader_would_take_is_an_error(wh, extra):
    """An unlisted file in a table's directory, any unlisted Parquet file, and a DuckDB
    write-ahead log (DuckDB replays it on open) fail verify, even with --no-checksums."""
    (wh / extra).write_bytes(b"not in the manifest")
    assert_clean_error(verify(wh), WAREHOUSE, extra, "not in manifest.json")
    assert_clean_error(verify(wh, "--no-checksums"), WAREHOUSE, extra, "not in manifest.json")


def test_extra_file_nothing_reads_is_a_warning(wh):
    """Any other unlisted file is one warning line each; verify still succeeds."""
    (wh / "notes.txt").write_text("mine")
    (wh / "sub").mkdir()
    (wh / "sub" / ".DS_Store").write_bytes(b"\0")
    result = verify(wh)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"saewh: warning: {wh}: notes.txt is not in manifest.json (no table reads it)",
        f"saewh: warning: {wh}: sub/.DS_Store is not in manifest.json (no table reads it)",
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
    db = wh / "warehouse.duckdb"
    db.write_bytes(b"\0" * 4096)
    assert_clean_error(verify(wh), WAREHOUSE, "warehouse.duckdb")
    db.unlink()
    assert_clean_error(verify(wh), WAREHOUSE, "not a warehouse")


# --------------------------------------------------------------------------- warehouse.duckdb


@pytest.mark.parametrize("at", [0.05, 0.25, 0.50])
def test_damaged_database_fails_its_checksum(wh, at):
    """512 bytes XOR-ed inside warehouse.duckdb: `verify` said ok and the reports then
    failed with "Corrupt database file".  With the file's SHA-256 in the manifest, any
    change is found (the one-line error names the file; exit code 4)."""
    finalize_database(wh)
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
    """Where the manifest's checksum does not apply (the file was re-pointed since it was
    recorded), verify still reads every native table in full, so DuckDB's block
    checksums find damage in their data."""
    connect(wh).close()  # re-pointed: the recorded checksum is of the build's file
    assert manifest(wh)["database"]["root"] != str(wh)
    xor(wh / "warehouse.duckdb", _native_data_offset(wh, table, column), 64)
    assert_clean_error(verify(wh), WAREHOUSE, "warehouse.duckdb is damaged", table)


def test_truncated_database(wh):
    finalize_database(wh)
    db = wh / "warehouse.duckdb"
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
    assert_clean_error(verify(wh), WAREHOUSE, "warehouse.duckdb")


def test_database_checksum_applies_to_its_root_only(wh):
    """The recorded checksum is compared while the file's stored root is the recorded
    one; once re-pointed elsewhere the file is new, and verify reads its blocks instead."""
    finalize_database(wh)
    entry = manifest(wh)["database"]
    assert entry == database_entry(wh)
    assert entry["root"] == str(wh) and entry["path"] == "warehouse.duckdb"
    edit_manifest(wh, lambda m: m["database"].update(sha256="0" * 64))
    assert_clean_error(verify(wh), WAREHOUSE, "warehouse.duckdb checksum mismatch")
    assert verify(wh, "--no-checksums").exit_code == 0  # no hashing
    edit_manifest(wh, lambda m: m["database"].update(bytes=1))
    assert_clean_error(verify(wh, "--no-checksums"), WAREHOUSE, "warehouse.duckdb has", "bytes")
    edit_manifest(wh, lambda m: m["database"].update(root="/somewhere/else"))
    assert verify(wh).exit_code == 0
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
            path = wh / entry["path"]
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
    from warehouse.db import file_sha256

    rel = "activations/bucket=0/part-0.parquet"
    path = wh / rel
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
    a = wh / "activations" / "bucket=0" / "part-0.parquet"
    b = wh / "activations" / "bucket=1" / "part-0.parquet"
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
    shutil.copytree(built[0], moved)
    assert verify(moved).exit_code == 0


# --------------------------------------------------------------------------- build-time verify


def test_build_verifies_before_the_swap(built, tmp_path, monkeypatch):
    """A build whose output lost rows (here: a bucket file deleted after the merge) fails
    its own verification; the previous warehouse stays, byte for byte."""
    import etl.build as build_mod

    target = tmp_path / "wh"
    shutil.copytree(built[0], target)
    connect(target).close()  # re-point the copy, so hashing below sees its final bytes
    before = tree_hashes(target)
    real_write = build_mod._write_feature_tables

    def lose_a_bucket(staging, *args, **kw):
        real_write(staging, *args, **kw)
        (staging / "activations" / "bucket=2" / "part-0.parquet").unlink()

    monkeypatch.setattr(build_mod, "_write_feature_tables", lose_a_bucket)
    result = saewh("build", "--h5", built[1], "--npz", built[2], "-w", target, "--latents", N_LATENTS,
                   "--replace")
    assert_clean_error(result, WAREHOUSE, "table activations has", "the build produced")
    assert tree_hashes(target) == before
    assert leftovers(target) == []


# --------------------------------------------------------------------------- connect


def test_connect_recovers_a_half_swapped_warehouse(built, tmp_path):
    """Where renameat2 is missing the swap is two renames; a crash between them leaves
    `.NAME.old-PID` and no NAME.  connect (and so every query) puts it back."""
    target = tmp_path / "wh"
    shutil.copytree(built[0], tmp_path / ".wh.old-4242")
    con = connect(target)
    try:
        n = con.execute("SELECT count(*) FROM reviews").fetchone()[0]
        assert n == manifest(target)["summary"]["n_reviews"]
    finally:
        con.close()
    assert target.is_dir() and leftovers(target) == []


def test_saewh_sql_recovers_too(built, tmp_path):
    shutil.copytree(built[0], tmp_path / ".wh.old-4243")
    result = saewh("sql", "-w", tmp_path / "wh", "SELECT count(*) AS n FROM features", "--csv")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["n", str(N_LATENTS)]


def test_connect_to_a_moved_warehouse_another_process_holds_open(built, tmp_path):
    """Re-pointing needs a write lock; while another process reads the file, connect
    falls back to temporary views instead of failing (and writes nothing)."""
    moved = tmp_path / "moved"
    shutil.copytree(built[0], moved)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys, time; c = duckdb.connect(sys.argv[1], read_only=True); "
         "print('open', flush=True); time.sleep(60)", str(moved / "warehouse.duckdb")],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        before = tree_hashes(moved)
        con = connect(moved)
        try:
            n = con.execute("SELECT count(*) FROM activations").fetchone()[0]
            top = con.execute("SELECT count(*) FROM top_k(0, 5)").fetchone()[0]
            stored = con.execute("SELECT value FROM warehouse_meta WHERE key = 'root'").fetchone()[0]
        finally:
            con.close()
        assert n == manifest(moved)["summary"]["n_activations"] and top == 5
        assert stored == str(built[0])  # not re-pointed: someone else had it open
        assert tree_hashes(moved) == before
    finally:
        holder.kill()
        holder.wait()


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
