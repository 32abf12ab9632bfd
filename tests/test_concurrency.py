"""Many readers at once, and nothing through the query path can modify the warehouse.

Readers: `saewh sql` processes, the DuckDB CLI (`duckdb -readonly`) and Python
processes holding `warehouse.db.connect()` connections, all started together on one
warehouse; every one must succeed with the same answers, and the warehouse's bytes
must not change.  Writes (`saewh sql`, a `connect()` connection, the CLI in
read-only mode) are refused.  A rebuild (`--replace`) under running readers never
makes one of them fail.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from reliability import ROOT, assert_clean_error, saewh, tree_hashes

from etl.build import build_warehouse
from etl.publish import republish_moved
from etl.synth import synthesize
from warehouse.db import connect

DUCKDB_CLI = Path(sys.executable).parent / "duckdb"
N_LATENTS = 4096
QUERIES = [
    "SELECT rank, token_pos, review_id, value FROM top_k(16751 * 4096 // 24576, 10) ORDER BY rank",
    "SELECT stars, n_reviews, n_active_reviews FROM feature_by_stars(4242 * 4096 // 24576) ORDER BY stars",
    "SELECT count(*) AS n, sum(value)::DOUBLE AS s FROM activations WHERE feature < 200",
    "SELECT alignment, count(*) AS n FROM reviews GROUP BY alignment ORDER BY alignment",
]


@pytest.fixture(scope="module")
def wh(tmp_path_factory):
    base = tmp_path_factory.mktemp("concurrency")
    res = synthesize(base / "in", n_reviews=300, n_latents=N_LATENTS, seed=0)
    target = base / "wh"
    build_warehouse(res.h5_path, res.npz_path, target, n_latents=N_LATENTS)
    con = connect(target)
    try:
        expected = [[list(r) for r in con.execute(q).fetchall()] for q in QUERIES]
    finally:
        con.close()
    return {"path": target, "inputs": (res.h5_path, res.npz_path), "expected": expected}


# A Python reader: one connection held for `seconds` (or until a stop file appears),
# running every query in a loop.
_PY_READER = """
import json, os, sys, time
from etl.publish import republish_moved
from warehouse.db import connect
wh, seconds, queries = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
stop = sys.argv[4] if len(sys.argv) > 4 else None
con = connect(wh)
deadline, rounds, answers = time.monotonic() + seconds, 0, None
while True:
    got = [[list(r) for r in con.execute(q).fetchall()] for q in queries]
    if answers is None:
        answers = got
    elif got != answers:
        sys.exit("answers changed between rounds")
    rounds += 1
    if (os.path.exists(stop) if stop else time.monotonic() > deadline):
        break
con.close()
print(json.dumps({"rounds": rounds, "answers": answers}))
"""


def _py_reader(wh: Path, seconds: float, stop: Path | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-c", _PY_READER, str(wh), str(seconds), json.dumps(QUERIES)]
    cmd += [str(stop)] if stop else []
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _saewh_sql(wh: Path, query: str) -> subprocess.Popen:
    cmd = [sys.executable, "-c", "from warehouse.cli import app; app()", "sql", "-w", str(wh), "--json",
           query]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _duckdb_cli(wh: Path, query: str) -> subprocess.Popen:
    cmd = [str(DUCKDB_CLI), "-readonly", "-json", str(wh / "warehouse.duckdb"), "-c", query]
    return subprocess.Popen(cmd, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _rows(json_text: str) -> list[list]:
    return [list(r.values()) for r in json.loads(json_text or "[]")]


def _same(got, expected) -> bool:
    """Equal, floats to 1e-6 relative (the CLI's JSON prints fewer digits)."""
    if isinstance(got, (list, tuple)) and isinstance(expected, (list, tuple)):
        return len(got) == len(expected) and all(_same(g, e) for g, e in zip(got, expected))
    if isinstance(got, float) or isinstance(expected, float):
        return got == pytest.approx(expected, rel=1e-6)
    return got == expected


@pytest.mark.skipif(not DUCKDB_CLI.exists(), reason="the duckdb CLI is not installed next to python")
def test_concurrent_readers(wh):
    path, expected = wh["path"], wh["expected"]
    before = tree_hashes(path)
    py = [_py_reader(path, seconds=3.0) for _ in range(2)]
    time.sleep(0.5)  # the Python readers hold their connections from here on
    others = []
    for _ in range(2):
        for i, q in enumerate(QUERIES):
            others.append(("saewh", i, _saewh_sql(path, q)))
            others.append(("duckdb", i, _duckdb_cli(path, q)))
    for kind, i, proc in others:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{kind} {QUERIES[i]}: {err}"
        assert _same(_rows(out), expected[i]), f"{kind} {QUERIES[i]}"
    for proc in py:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        result = json.loads(out)
        assert result["rounds"] >= 1 and _same(result["answers"], expected)
    assert tree_hashes(path) == before  # readers changed nothing, not even the .duckdb file


WRITES = [
    "CREATE TABLE t AS SELECT 1 AS x",
    "INSERT INTO warehouse_meta VALUES ('x', 'y')",
    "UPDATE warehouse_meta SET value = 'elsewhere' WHERE key = 'root'",
    "DROP VIEW activations",
    "CREATE OR REPLACE MACRO top_k(f, k) AS TABLE SELECT 1",
    "COPY (SELECT 1) TO '{out}'",
    "ATTACH '{db}' AS other",
    "SELECT 1; DROP VIEW reviews",
]


def test_writes_are_refused(wh, tmp_path):
    path = wh["path"]
    before = tree_hashes(path)
    out, db = tmp_path / "out.csv", tmp_path / "other.duckdb"
    for stmt in WRITES:
        stmt = stmt.format(out=out, db=db)
        assert_clean_error(saewh("sql", "-w", path, stmt), 6)
        if "ATTACH" in stmt or "COPY" in stmt:
            # A connect() connection is read-only for the database; COPY ... TO still writes
            # wherever the (trusted, programmatic) caller says, so only `saewh sql` refuses it.
            continue
        con = connect(path)
        try:
            with pytest.raises(duckdb.Error, match="read-only|Cannot execute"):
                con.execute(stmt)
        finally:
            con.close()
        if DUCKDB_CLI.exists():
            done = subprocess.run([str(DUCKDB_CLI), "-readonly", str(path / "warehouse.duckdb"), "-c", stmt],
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode != 0 or "read-only" in done.stderr.lower() or "Error" in done.stderr, stmt
    assert not out.exists() and not db.exists()
    assert tree_hashes(path) == before


def test_readers_survive_a_rebuild(wh, tmp_path):
    """Readers keep answering while `saewh build --replace` swaps a new warehouse in; the
    rebuild is of the same inputs, so (the output being deterministic) the answers never
    change either."""
    target = tmp_path / "wh"
    shutil.copytree(wh["path"], target, symlinks=True)
    republish_moved(target)
    stop = tmp_path / "stop"
    readers = [_py_reader(target, seconds=0, stop=stop) for _ in range(2)]
    time.sleep(1.0)
    h5, npz = wh["inputs"]
    cmd = [sys.executable, "-c", "from warehouse.cli import app; app()", "build", "--h5", str(h5),
           "--npz", str(npz), "-w", str(target), "--latents", str(N_LATENTS), "--replace"]
    build = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    time.sleep(1.0)  # and a few more rounds on the new files
    stop.touch()
    for proc in readers:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        result = json.loads(out)
        assert result["rounds"] > 3 and _same(result["answers"], wh["expected"])
    # New connections see the rebuilt warehouse; it answers the same.
    con = connect(target)
    try:
        got = [[list(r) for r in con.execute(q).fetchall()] for q in QUERIES]
    finally:
        con.close()
    assert _same(got, wh["expected"])
