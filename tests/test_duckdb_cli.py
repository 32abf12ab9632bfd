"""The warehouse as seen from outside Python: the real `duckdb` CLI (the one the
`duckdb-cli` package installs next to this interpreter) opening `warehouse.duckdb` from
another working directory, and `warehouse.db.connect` on a moved warehouse directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bruteforce import BruteForce
from inputs import SALSA, write_inputs

DUCKDB = Path(sys.executable).parent / "duckdb"

pytestmark = pytest.mark.skipif(
    not DUCKDB.is_file(),
    reason=f"no duckdb CLI at {DUCKDB} (installed by the duckdb-cli package: pip install .)",
)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from etl.build import build_warehouse

    root = tmp_path_factory.mktemp("cli")
    h5, npz = write_inputs(root / "inputs", n_reviews=16, variant="plain", seed=4)
    bf = BruteForce(h5, npz)
    warehouse = root / "place" / "warehouse"
    warehouse.parent.mkdir()
    build_warehouse(h5, npz, warehouse, tokenizer="gpt2", workers=1, replace=False,
                    progress=False)
    return root, warehouse, bf


def run_cli(args: list[str], cwd: Path) -> str:
    env = dict(os.environ, HOME=str(cwd))  # no ~/.duckdbrc of the developer's
    proc = subprocess.run([str(DUCKDB), *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, encoding="utf-8", timeout=60)
    assert proc.returncode == 0, f"duckdb {' '.join(args)} failed:\n{proc.stderr}"
    return proc.stdout


def _expected_contexts(bf: BruteForce, k: int) -> list[tuple]:
    return [(row[0], row[1], row[2], row[7], row[8], row[9])
            for row in bf.top_k_contexts(SALSA, k)]


def test_cli_top_k_contexts_from_another_directory(built, tmp_path):
    root, warehouse, bf = built
    elsewhere = tmp_path / "somewhere-else"
    elsewhere.mkdir()
    db = str(warehouse / "warehouse.duckdb")
    exp = _expected_contexts(bf, 5)
    assert len(exp) == 5 and all(e[4] == " salsa" for e in exp)

    # Exactly the documented command, default (box) output.
    out = run_cli(["-readonly", db, "-c", f"select * from top_k_contexts({SALSA}, 5)"],
                  elsewhere)
    assert out.count("salsa") >= 5
    for e in exp:
        assert e[2] in out  # review ids
        assert e[3].strip()[:10] in out  # left contexts, as far as the box shows them

    # Same query in JSON mode: every row exactly.
    out = run_cli(["-readonly", "-json", db, "-c",
                   f"select * from top_k_contexts({SALSA}, 5)"], elsewhere)
    rows = json.loads(out)
    got = [(r["rank"], r["token_pos"], r["review_id"], r["left_context"], r["token"],
            r["right_context"]) for r in rows]
    assert got == exp
    values = [np.float32(r["value"]) for r in rows]
    assert values == [row[4] for row in bf.top_k(SALSA, 5)]

    # A relative database path from a directory that is not the warehouse's.
    rel = os.path.relpath(db, root)
    out = run_cli(["-readonly", "-json", rel, "-c",
                   f"select token from top_k_contexts({SALSA}, 5)"], root)
    assert [r["token"] for r in json.loads(out)] == [" salsa"] * 5


def test_moved_warehouse_still_answers(tmp_path):
    """The build writes absolute paths; `connect` reads a moved warehouse through
    temporary views, and `saewh repoint` publishes it for the DuckDB CLI."""
    from etl.build import build_warehouse
    from warehouse.db import connect

    h5, npz = write_inputs(tmp_path / "inputs", n_reviews=12, variant="plain", seed=5)
    bf = BruteForce(h5, npz)
    built_at = tmp_path / "first" / "warehouse"
    built_at.parent.mkdir()
    build_warehouse(h5, npz, built_at, tokenizer="gpt2", workers=1, replace=False,
                    progress=False)
    moved = tmp_path / "second" / "renamed-warehouse"
    moved.parent.mkdir()
    shutil.move(str(built_at), str(moved))
    assert not built_at.exists()  # nothing can be read at the old location

    con = connect(moved)
    try:
        got = con.execute("SELECT * FROM top_k_contexts($f, $k)", {"f": SALSA, "k": 5}).fetchall()
        n = con.execute("SELECT count(*) FROM activations").fetchone()[0]
    finally:
        con.close()
    assert [(g[0], g[1], g[2], g[7], g[8], g[9]) for g in got] == _expected_contexts(bf, 5)
    assert n == len(bf.activations(range(256)))
    # Once `saewh repoint` has re-published it, the CLI reads the moved warehouse too.
    from reliability import saewh

    assert saewh("repoint", "-w", moved).exit_code == 0
    out = run_cli(["-readonly", "-json", str(moved / "warehouse.duckdb"), "-c",
                   f"select token from top_k_contexts({SALSA}, 3)"], tmp_path)
    tokens = [r["token"] for r in json.loads(out)]
    assert tokens and tokens == [e[4] for e in _expected_contexts(bf, 3)]


def test_connections_never_draw_duckdb_progress_bars_on_stdout(tmp_path) -> None:
    """DuckDB's progress bar goes to stdout, which must carry only data (CSV, JSON...)."""
    from inputs import write_inputs

    from etl.build import build_warehouse
    from warehouse.db import connect

    h5, npz = write_inputs(tmp_path, n_reviews=12, n_latents=128, k=8, seed=3)
    build_warehouse(h5, npz, tmp_path / "wh", n_latents=128)
    con = connect(tmp_path / "wh")
    try:
        assert con.execute("SELECT current_setting('enable_progress_bar')").fetchone()[0] is False
    finally:
        con.close()
