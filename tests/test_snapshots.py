"""Immutable snapshots: readers of every kind across back-to-back rebuilds of different
inputs never see a mixed answer, never hit a lock error; builds never fail.

Two input sets (A: 300 reviews, B: 450) give different answers to every query.  A
warehouse built from A is rebuilt B, A, B, A... with `saewh build --replace` while
  - Python processes each hold one `connect()` connection and loop over the queries:
    every round must give the answers of their first round (the snapshot they opened);
  - one DuckDB CLI session stays open on `WH/warehouse.duckdb` and is asked again and
    again: the same (its snapshot);
  - short DuckDB CLI processes, `saewh sql` and `saewh report` processes run in loops:
    each answer must be exactly A's or exactly B's.
Each query combines several tables, so a torn read is an answer that is neither.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from reliability import ROOT, assert_clean_error, saewh

from etl.build import build_warehouse
from etl.synth import synthesize
from warehouse.db import connect, open_snapshot

DUCKDB_CLI = Path(sys.executable).parent / "duckdb"
N_LATENTS = 4096
SALSA, ONE_STAR = 16751 * N_LATENTS // 24576, 4242 * N_LATENTS // 24576
# One row each, from several tables and macros at once (md5: CSV-safe text).
QUERIES = [
    f"SELECT (SELECT count(*) FROM reviews) AS reviews, (SELECT count(*) FROM activations) AS acts, "
    f"(SELECT sum(n_active_reviews) FROM feature_by_stars({ONE_STAR})) AS active, "
    f"(SELECT sum(n_reviews) FROM feature_by_stars({ONE_STAR})) AS rated",
    f"SELECT (SELECT md5(string_agg(review_id || ':' || token_pos, ',' ORDER BY rank)) "
    f"FROM top_k({SALSA}, 5)) AS top, "
    f"(SELECT md5(string_agg(token, '|' ORDER BY rank)) FROM top_k_contexts({SALSA}, 5, 2)) AS tokens, "
    f"(SELECT n_active FROM features WHERE feature = {SALSA}) AS n_active",
]
pytestmark = pytest.mark.skipif(not DUCKDB_CLI.exists(), reason="no duckdb CLI next to python")


def _answers(con) -> list[list]:
    return [[str(v) for v in con.execute(q).fetchone()] for q in QUERIES]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    base = tmp_path_factory.mktemp("snapshots")
    out = {}
    for name, n, seed in (("A", 300, 0), ("B", 450, 1)):
        res = synthesize(base / name, n_reviews=n, n_latents=N_LATENTS, seed=seed)
        build_warehouse(res.h5_path, res.npz_path, base / f"wh{name}", n_latents=N_LATENTS)
        con = connect(base / f"wh{name}")
        out[name] = {"h5": res.h5_path, "npz": res.npz_path, "answers": _answers(con),
                     "report": subprocess.run(_report_cmd(base / f"wh{name}"), cwd=ROOT, capture_output=True,
                                              text=True, timeout=120).stdout}
        con.close()
    assert out["A"]["answers"] != out["B"]["answers"]
    assert all(a != b for a, b in zip(out["A"]["answers"], out["B"]["answers"]))
    assert out["A"]["report"] and out["A"]["report"] != out["B"]["report"]
    return base, out


def _report_cmd(wh: Path) -> list[str]:
    return [sys.executable, "-c", "from warehouse.cli import app; app()", "report", "stars",
            "--feature", str(ONE_STAR), "--csv", "-w", str(wh)]


_HOLDER = """
import json, os, sys
from warehouse.db import connect
wh, stop, queries = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
con = connect(wh)
first, rounds = None, 0
while not os.path.exists(stop):
    got = [[str(v) for v in con.execute(q).fetchone()] for q in queries]
    first = first or got
    if got != first:
        sys.exit(f"answers changed within one connection: {got} != {first}")
    rounds += 1
con.close()
print(json.dumps({"rounds": rounds, "answers": first}))
"""


class Loop(threading.Thread):
    """Runs `cmd` again and again until stopped, keeping every (returncode, out, err)."""

    def __init__(self, cmd: list[str], cwd: Path | str):
        super().__init__(daemon=True)
        self.cmd, self.cwd, self.results, self.stop = cmd, cwd, [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            done = subprocess.run(self.cmd, cwd=self.cwd, capture_output=True, text=True, timeout=120)
            self.results.append((done.returncode, done.stdout, done.stderr))


def _cli_rows(out: str) -> list[list[str]]:
    """`duckdb -csv -noheader` output of the QUERIES, one list of strings per query."""
    return [line.split(",") for line in out.strip().splitlines()]


def _cli_expected(answers: list[list]) -> list[list[str]]:
    return [[str(v) for v in a] for a in answers]


def _session_ask(proc: subprocess.Popen) -> list[list[str]]:
    """Ask the open DuckDB CLI session every query; read the rows back up to a marker."""
    proc.stdin.write("".join(q + ";\n" for q in QUERIES) + "SELECT 'END-OF-ANSWERS';\n")
    proc.stdin.flush()
    lines = []
    while (line := proc.stdout.readline().rstrip("\n")) != "END-OF-ANSWERS":
        assert line or proc.poll() is None, "the DuckDB CLI session ended"
        lines.append(line)
    return [line.split(",") for line in lines]


def test_readers_across_back_to_back_rebuilds(inputs, tmp_path):
    base, ins = inputs
    target = tmp_path / "wh"
    build_warehouse(ins["A"]["h5"], ins["A"]["npz"], target, n_latents=N_LATENTS)
    expected = {k: _cli_expected(v["answers"]) for k, v in ins.items()}
    stop = tmp_path / "stop"
    holders = [subprocess.Popen([sys.executable, "-c", _HOLDER, str(target), str(stop), json.dumps(QUERIES)],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    session = subprocess.Popen([str(DUCKDB_CLI), "-readonly", "-csv", "-noheader", "warehouse.duckdb"],
                               cwd=target, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    session_first = _session_ask(session)
    assert session_first == expected["A"]
    cli_cmd = [str(DUCKDB_CLI), "-readonly", "-csv", "-noheader", str(target / "warehouse.duckdb"),
               "-c", ";\n".join(QUERIES) + ";"]
    sql_cmd = [sys.executable, "-c", "from warehouse.cli import app; app()", "sql", "-w", str(target),
               "--csv", QUERIES[0]]
    loops = [Loop(cli_cmd, "/"), Loop(cli_cmd, "/"), Loop(sql_cmd, ROOT), Loop(_report_cmd(target), ROOT)]
    for loop in loops:
        loop.start()
    builds, session_answers = [], 0
    for name in "BABA":
        cmd = [sys.executable, "-c", "from warehouse.cli import app; app()", "build", "--h5",
               str(ins[name]["h5"]), "--npz", str(ins[name]["npz"]), "-w", str(target),
               "--latents", str(N_LATENTS), "--replace"]
        builds.append(subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300))
        assert _session_ask(session) == session_first  # the open session keeps its snapshot
        session_answers += 1
    time.sleep(1.0)
    for loop in loops:
        loop.stop.set()
    for loop in loops:
        loop.join(timeout=120)
    stop.touch()
    held = []
    for proc in holders:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        held.append(json.loads(out))
    session.stdin.close()
    session.wait(timeout=60)

    for build in builds:
        assert build.returncode == 0, build.stderr
    for result in held:
        assert _cli_expected(result["answers"]) == expected["A"]
    both = (expected["A"], expected["B"])
    n_queries = sum(r["rounds"] * len(QUERIES) for r in held) + session_answers * len(QUERIES)
    seen = set()
    for loop in loops[:2]:
        for code, out, err in loop.results:
            assert code == 0, err
            assert _cli_rows(out) in both, out
            seen.add(_cli_rows(out) == expected["A"])
        n_queries += len(loop.results) * len(QUERIES)
    for code, out, err in loops[2].results:
        assert code == 0, err
        rows = [line.split(",") for line in out.strip().splitlines()[1:]]
        assert rows in ([expected["A"][0]], [expected["B"][0]]), out
    for code, out, err in loops[3].results:
        assert code == 0, err
        assert out in (ins["A"]["report"], ins["B"]["report"]), out
    n_queries += len(loops[2].results) + len(loops[3].results)
    assert seen == {True, False}, "the short-lived readers saw only one of the two builds"
    assert n_queries >= 1000, n_queries
    print(f"{n_queries} answers checked; short readers: {[len(loop.results) for loop in loops]}")

    # New readers see the last build (A); the held snapshots went once their readers closed
    # (the last build keeps the one it replaced).
    con, snapshot = open_snapshot(target)
    assert _cli_expected(_answers(con)) == expected["A"]
    con.close()
    kept = sorted(p.name for p in (target / "snapshots").iterdir())
    assert snapshot.name in kept and len(kept) <= 3


def test_vacuum_keeps_what_is_in_use(inputs, tmp_path):
    base, ins = inputs
    target = tmp_path / "wh"
    for name in "AB":
        build_warehouse(ins[name]["h5"], ins[name]["npz"], target, n_latents=N_LATENTS, replace=True)
    old_con, old = open_snapshot(target)  # B
    build_warehouse(ins["A"]["h5"], ins["A"]["npz"], target, n_latents=N_LATENTS, replace=True)
    snapshots = sorted(p.name for p in (target / "snapshots").iterdir())
    assert len(snapshots) == 2 and old.name in snapshots  # the first (A) went: nobody had it open
    done = saewh("vacuum", "-w", target)
    assert done.exit_code == 0, done.stderr
    assert "kept 1 in use" in done.stderr
    assert _cli_expected(_answers(old_con)) == _cli_expected(ins["B"]["answers"])
    old_con.close()
    done = saewh("vacuum", "-w", target)
    assert done.exit_code == 0 and "removed 1 snapshot" in done.stderr
    current = os.readlink(target / "current").split("/")[1]
    assert [p.name for p in (target / "snapshots").iterdir()] == [current]
    con = connect(target)
    assert _cli_expected(_answers(con)) == _cli_expected(ins["A"]["answers"])
    con.close()


def test_a_failed_rebuild_changes_nothing(inputs, tmp_path):
    base, ins = inputs
    target = tmp_path / "wh"
    build_warehouse(ins["A"]["h5"], ins["A"]["npz"], target, n_latents=N_LATENTS)
    before = sorted(str(p.relative_to(target)) for p in target.rglob("*"))
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not an h5 file")
    done = saewh("build", "--h5", bad, "--npz", ins["B"]["npz"], "-w", target, "--replace")
    assert done.exit_code != 0
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*")) == before


def test_a_flat_warehouse_of_an_older_saewh_is_rebuilt_in_place(inputs, tmp_path):
    base, ins = inputs
    target = tmp_path / "wh"
    target.mkdir()
    (target / "manifest.json").write_text('{"schema_version": 4}')
    (target / "warehouse.duckdb").write_bytes(b"")
    (target / "activations").mkdir()
    assert_clean_error(saewh("sql", "-w", target, "SELECT 1"), 4, "older saewh", "--replace")
    done = saewh("build", "--h5", ins["A"]["h5"], "--npz", ins["A"]["npz"], "-w", target,
                 "--latents", N_LATENTS, "--replace")
    assert done.exit_code == 0, done.stderr
    assert sorted(p.name for p in target.iterdir()) == ["current", "manifest.json", "snapshots",
                                                        "warehouse.duckdb"]
    assert saewh("verify", "-w", target).exit_code == 0


def test_a_moved_warehouse_is_republished_never_rewritten(inputs, tmp_path):
    base, ins = inputs
    first = tmp_path / "first"
    build_warehouse(ins["A"]["h5"], ins["A"]["npz"], first, n_latents=N_LATENTS)
    old = (first / "current").resolve().name
    db_bytes = (first / "current" / "warehouse.duckdb").read_bytes()
    moved = tmp_path / "moved"
    os.rename(first, moved)
    con = connect(moved)  # temporary views over the files here; nothing written
    assert _cli_expected(_answers(con)) == _cli_expected(ins["A"]["answers"])
    con.close()
    assert (moved / "current").resolve().name == old
    assert saewh("repoint", "-w", moved).exit_code == 0  # a new snapshot, views here
    assert (moved / "current").resolve().name != old
    assert (moved / "snapshots" / old / "warehouse.duckdb").read_bytes() == db_bytes  # untouched
    done = subprocess.run([str(DUCKDB_CLI), "-readonly", "-csv", "-noheader", "warehouse.duckdb", "-c",
                           QUERIES[0] + ";"], cwd=moved, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and _cli_rows(done.stdout) == [_cli_expected(ins["A"]["answers"])[0]]
    assert saewh("verify", "-w", moved).exit_code == 0
