"""Building the same inputs twice gives the same warehouse.

- Same options: every Parquet file is byte-for-byte identical (pyarrow writes its
  version in `created_by` but no timestamps) and the manifests differ only in what
  describes the run itself: `built_at`, timings, the target path.
- Different worker counts and chunk sizes: identical table contents (all tables,
  sorted); the files may be cut differently (one `tokens` part per worker).
`warehouse.duckdb` holds views and macros, not data, and stores the absolute path of
its directory; it is not compared byte for byte.
"""

from __future__ import annotations

import json

import pytest
from inputs import write_inputs
from reliability import N_LATENTS, tree_hashes

from etl.build import build_warehouse
from warehouse.contract import TABLES
from warehouse.db import connect

VOLATILE_SUMMARY = ("warehouse", "seconds", "rows_per_second", "phase_seconds")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("det")
    return write_inputs(d, n_reviews=30, n_latents=N_LATENTS, k=8, seed=11, variant="awkward")


def _build(inputs, target, **kw):
    build_warehouse(*inputs, target, n_latents=N_LATENTS, **kw)
    return target


def _parquet_hashes(wh):
    """The current snapshot's Parquet files by their path inside it."""
    return {k: v for k, v in tree_hashes(wh / "current").items() if k.endswith(".parquet")}


def _stable_manifest(wh) -> dict:
    m = json.loads((wh / "manifest.json").read_text())
    # (the database's checksum differs too: the file stores its directory's path)
    for key in ("built_at", "snapshot", "previous", "database"):
        m.pop(key)
    for key in VOLATILE_SUMMARY:
        m["summary"].pop(key)
    return m


def _contents(wh) -> dict[str, list]:
    con = connect(wh)
    try:
        return {t: con.execute(f'SELECT * FROM "{t}" ORDER BY ALL').fetchall() for t in TABLES}
    finally:
        con.close()


def test_same_options_same_bytes(inputs, tmp_path):
    a = _build(inputs, tmp_path / "a", workers=1)
    b = _build(inputs, tmp_path / "b", workers=1)
    ha, hb = _parquet_hashes(a), _parquet_hashes(b)
    assert ha and ha == hb
    assert _stable_manifest(a) == _stable_manifest(b)


def test_parallel_build_same_bytes_too(inputs, tmp_path):
    a = _build(inputs, tmp_path / "a", workers=2, chunk_tokens=64)
    b = _build(inputs, tmp_path / "b", workers=2, chunk_tokens=64)
    assert _parquet_hashes(a) == _parquet_hashes(b)
    assert _stable_manifest(a) == _stable_manifest(b)


def test_rebuild_in_place_is_identical(inputs, tmp_path):
    a = _build(inputs, tmp_path / "a", workers=1)
    before = _parquet_hashes(a)
    _build(inputs, a, workers=1, replace=True)
    assert _parquet_hashes(a) == before


def test_workers_and_chunks_change_nothing_in_the_tables(inputs, tmp_path):
    ref = _contents(_build(inputs, tmp_path / "ref", workers=1))
    assert all(ref[t] for t in TABLES)
    for workers, chunk in ((2, 50), (2, 7), (1, 13)):
        target = tmp_path / f"w{workers}-c{chunk}"
        got = _contents(_build(inputs, target, workers=workers, chunk_tokens=chunk))
        for table in TABLES:
            assert got[table] == ref[table], f"{table} differs with workers={workers}, chunk={chunk}"


def test_merge_windows_and_blocks_change_no_byte(inputs, tmp_path):
    """The merge reads each bucket's spill in windows, gathers it in blocks and computes
    the review statistics in groups of features, the top examples' lookups read the
    token arrays in windows, and the run counts are laid out by bucket a few runs at a
    time: tiny windows (many reads per bucket, features split across windows) and one
    feature a group give the same files."""
    from etl.build import Tuning

    ref = _parquet_hashes(_build(inputs, tmp_path / "ref", workers=2, chunk_tokens=50))
    tiny = Tuning(
        merge_window_rows=3, merge_block_rows=2, pair_group=2, gather_window_bytes=20, runs_at_once=3
    )
    small = _build(inputs, tmp_path / "small", workers=2, chunk_tokens=50, tuning=tiny)
    assert _parquet_hashes(small) == ref
