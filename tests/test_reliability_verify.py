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
from reliability import N_LATENTS, ROOT, assert_clean_error, leftovers, saewh, tree_hashes

from etl.build import build_warehouse
from warehouse.db import connect, verify_warehouse

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


def test_truncated_file(wh):
    path = wh / "current" / "top_examples.parquet"
    path.write_bytes(path.read_bytes()[:-100])
    assert_clean_error(verify(wh), WAREHOUSE, "top_examples.parquet", "bytes")


def test_extra_file_a_view_would_read(wh):
    shutil.copy(wh / "current" / "activations" / "bucket=0" / "part-0.parquet",
                wh / "current" / "activations" / "bucket=0" / "part-1.parquet")
    assert_clean_error(verify(wh), WAREHOUSE, "bucket=0/part-1.parquet", "not in manifest.json")


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
    connect(target).close()  # re-point the copy, so hashing below sees its final bytes
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


def test_connect_republishes_a_moved_warehouse_another_process_holds_open(built, tmp_path):
    """A moved warehouse gets a new snapshot with its views here; the snapshot another
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
        con = connect(moved)
        try:
            n = con.execute("SELECT count(*) FROM activations").fetchone()[0]
            stored = con.execute("SELECT value FROM warehouse_meta WHERE key = 'root'").fetchone()[0]
        finally:
            con.close()
        assert n == manifest(moved)["summary"]["n_activations"]
        assert stored == str((moved / "current").resolve()) != str(old)
        assert tree_hashes(old) == before
    finally:
        holder.kill()
        holder.wait()


def test_connect_to_a_moved_warehouse_it_cannot_republish(built, tmp_path):
    """While a build holds the lock, connect reads a moved warehouse through temporary
    views over its files where they are now (the old place is gone), and writes nothing."""
    from etl.staging import acquire_build_lock, release_lock

    first, moved = tmp_path / "first", tmp_path / "moved"
    shutil.copytree(built[0], first, symlinks=True)
    connect(first).close()  # its views now name first/
    os.rename(first, moved)
    lock = acquire_build_lock(moved)
    try:
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
    finally:
        release_lock(lock)


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
