"""The sandbox of `saewh sql` and the reports (warehouse/sandbox.py), attacked; and
warehouses at paths that are also glob patterns, SQL or quotes.

The escape corpus (`CORPUS`) runs every case through `saewh sql -w WH "<text>"` and
asserts its result (refused by the parser gate, refused by DuckDB's configuration, an
error, or a run for the controls) and that nothing changed: every file and directory
of the test's tree (the warehouse, a sibling of it, a canary directory outside it, a
watched directory the attacks write to) keeps its path, size, mtime_ns and sha256,
`/tmp/x` is untouched, DuckDB's spill directory stays empty, and a sandboxed
connection's settings, variables, databases and catalog are the same after the case.
One child process runs the cases that could write to HOME or TMPDIR again, with both
pointing at empty directories that must stay empty.  The README's security table lists the same cases
(`test_readme_security_table`).

Everything goes through the CLI and `warehouse.reports` (whose `_open` is the sandboxed
connection), never through the warehouse's layout: tests find files with rglob.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from inputs import SALSA, write_inputs
from reliability import ROOT, assert_clean_error, saewh

from warehouse.cli import ExitCode
from warehouse.ddl import glob_escaped
from warehouse.reports import _open
from warehouse.sandbox import check_query

N_LATENTS = 256
QUERY = int(ExitCode.QUERY)
SMALL, BIG = 12, 20  # reviews in the two input sets
README = ROOT / "README.md"

# ---------------------------------------------------------------- the corpus

# Results, as the README's table names them.
PARSER, CONFIG, ERROR, RUNS = (
    "refused by the parser gate", "refused by configuration", "error", "runs",
)


@dataclass(frozen=True)
class Case:
    attack: str | None  # the README row (None: a control)
    sql: str  # placeholders: WH, WA, OTHER, OUTSIDE, TMP, PARQUET, RID
    result: str

    @property
    def id(self) -> str:
        return re.sub(r"\s+", " ", self.sql)[:70]


C = Case
EXPLAIN_ANALYZE_COPY = "EXPLAIN ANALYZE COPY ... TO"
CORPUS = [
    # Writing files: COPY and every wrapper of it.
    C("COPY ... TO", "COPY (SELECT 1) TO 'WH/warehouse.duckdb'", PARSER),
    C("COPY ... TO", "COPY features TO 'PARQUET' (FORMAT parquet)", PARSER),
    C("COPY ... TO", "COPY (SELECT 1) TO '/tmp/x'", PARSER),
    C("COPY ... FROM", "COPY warehouse_meta FROM 'OUTSIDE/secret.txt'", PARSER),
    *(C(EXPLAIN_ANALYZE_COPY, f"EXPLAIN ANALYZE COPY (SELECT 1 AS a) TO '{target}' (FORMAT {fmt})", PARSER)
      for target, fmt in (("WH/warehouse.duckdb", "csv"), ("WH/manifest.json", "csv"), ("PARQUET", "parquet"),
                          ("TMP/x", "csv"), ("/tmp/x", "csv"))),
    C(EXPLAIN_ANALYZE_COPY, "EXPLAIN (ANALYZE, FORMAT json) COPY (SELECT 1) TO 'TMP/x'", PARSER),
    C(EXPLAIN_ANALYZE_COPY, "EXPLAIN ANALYZE /* c */ COPY (SELECT 1) TO 'TMP/x'", PARSER),
    C("EXPLAIN COPY", "EXPLAIN COPY (SELECT 1 AS a) TO 'TMP/x'", PARSER),
    C("EXPLAIN COPY", "EXPLAIN VERBOSE COPY (SELECT 1 AS a) TO 'TMP/x'", PARSER),
    C("COPY inside a CTE or subquery", "WITH t AS (COPY (SELECT 1) TO 'TMP/x') SELECT 1", PARSER),
    C("COPY inside a CTE or subquery", "SELECT * FROM (COPY (SELECT 1) TO 'TMP/x')", PARSER),
    C("COPY inside a CTE or subquery", "SELECT (COPY (SELECT 1) TO 'TMP/x')", PARSER),
    C("COPY inside a CTE or subquery", "SUMMARIZE (COPY (SELECT 1) TO 'TMP/x')", PARSER),
    C("EXPORT / IMPORT DATABASE", "EXPORT DATABASE 'TMP/export'", PARSER),
    C("EXPORT / IMPORT DATABASE", "IMPORT DATABASE 'WH'", PARSER),
    C("EXPORT / IMPORT DATABASE", "IMPORT DATABASE 'OUTSIDE'", PARSER),
    # SQL hidden in a string.
    C("query() / query_table()", "SELECT * FROM query('COPY (SELECT 1) TO ''TMP/x''')", PARSER),
    C("query() / query_table()",
      "SELECT * FROM query('SELECT * FROM query(''COPY (SELECT 1) TO ''''TMP/x'''''')')", PARSER),
    C("query() / query_table()", "SELECT * FROM query('SELECT 1' || '')", PARSER),
    C("query() / query_table()", "SELECT * FROM query_table('OUTSIDE/f.parquet')", CONFIG),
    C("query() / query_table()", "SELECT * FROM query_table('/etc/passwd')", ERROR),
    C("query() / query_table()", "SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT 1'))",
      PARSER),
    # Reading outside the warehouse.
    C("reading a file outside", "SELECT * FROM read_text('/etc/passwd')", CONFIG),
    C("reading a file outside", "SELECT * FROM read_csv('/etc/passwd')", CONFIG),
    C("reading a file outside", "SELECT * FROM read_blob('/etc/passwd')", CONFIG),
    C("reading a file outside", "SELECT * FROM read_json('/etc/passwd')", CONFIG),
    C("reading a file outside", "SELECT * FROM sniff_csv('/etc/passwd')", CONFIG),
    C("reading a file outside", "SELECT * FROM read_text('file:///etc/passwd')", CONFIG),
    C("reading a file outside", "SELECT * FROM read_text('/proc/self/environ')", CONFIG),
    C("reading a file outside", "SELECT * FROM read_text('/etc/pass*')", CONFIG),
    C("reading a file outside", "SELECT * FROM read_parquet('OUTSIDE/f.parquet')", CONFIG),
    C("reading a file outside", "SELECT * FROM 'OUTSIDE/f.parquet'", CONFIG),
    C("reading a file outside", "SELECT * FROM parquet_metadata('OUTSIDE/f.parquet')", CONFIG),
    C("reading a file outside", "SELECT * FROM read_duckdb('OUTSIDE/other.duckdb')", CONFIG),
    C("reading a file outside", "SELECT count(*) FROM read_parquet(['PARQUET', 'OUTSIDE/f.parquet'])",
      CONFIG),
    C("listing directories", "SELECT * FROM glob('/*')", CONFIG),
    C("listing directories", "SELECT * FROM glob('OUTSIDE/*')", CONFIG),
    C("a sibling named like the warehouse", "SELECT * FROM read_parquet('WA/f.parquet')", CONFIG),
    C("a sibling named like the warehouse", "SELECT * FROM glob('WA/*')", CONFIG),
    C("a sibling named like the warehouse", "SELECT * FROM glob('WH*/*')", CONFIG),
    C("path traversal", "SELECT * FROM read_parquet('WH/../OTHER/f.parquet')", CONFIG),
    C("path traversal", "SELECT * FROM read_text('WH/../../../../../../etc/passwd')", CONFIG),
    C("path traversal", "SELECT * FROM glob('WH/../*')", CONFIG),
    C("secrets and the environment", "SELECT * FROM duckdb_secrets()", CONFIG),
    C("secrets and the environment", "SELECT * FROM which_secret('s3://bucket/key', 's3')", CONFIG),
    C("secrets and the environment", "SELECT getenv('HOME')", ERROR),
    C("secrets and the environment", "SELECT * FROM sys", ERROR),
    # Attaching, extensions, settings.
    C("ATTACH / DETACH / USE", "ATTACH 'TMP/other.duckdb' AS other", PARSER),
    C("ATTACH / DETACH / USE", "ATTACH ':memory:' AS m", PARSER),
    C("ATTACH / DETACH / USE", "DETACH warehouse", PARSER),
    C("ATTACH / DETACH / USE", "USE memory", PARSER),
    C("INSTALL / LOAD", "INSTALL httpfs", PARSER),
    C("INSTALL / LOAD", "FORCE INSTALL httpfs", PARSER),
    C("INSTALL / LOAD", "LOAD httpfs", PARSER),
    C("INSTALL / LOAD", "LOAD 'TMP/x.duckdb_extension'", PARSER),
    C("INSTALL / LOAD", "SELECT * FROM sqlite_scan('OUTSIDE/x.db', 't')", ERROR),
    C("SET / RESET", "SET threads = 1", PARSER),
    C("SET / RESET", "SET lock_configuration = false", PARSER),
    C("SET / RESET", "SET GLOBAL enable_external_access = true", PARSER),
    C("SET / RESET", "RESET threads", PARSER),
    C("variables", "SET VARIABLE x = 1", PARSER),
    C("variables", "SELECT getvariable('x')", RUNS),
    C("PRAGMA / CALL", "PRAGMA enable_profiling", PARSER),
    C("PRAGMA / CALL", "PRAGMA database_list", PARSER),
    C("PRAGMA / CALL", "CALL pragma_version()", PARSER),
    C("PRAGMA / CALL", "CHECKPOINT", PARSER),
    # Functions that act: logging, profiling, checkpoints, raw pointers.
    C("functions that act", "SELECT * FROM enable_logging(storage := 'file', storage_path := 'WH/logs', "
      "level := 'trace', storage_buffer_size := 1), read_text('WH/manifest.json')", PARSER),
    C("functions that act", "SELECT * FROM enable_logging(storage := 'file', storage_path := 'TMP/logs')",
      PARSER),
    C("functions that act", "SUMMARIZE SELECT * FROM enable_logging()", PARSER),
    C("functions that act", "EXPLAIN ANALYZE SELECT * FROM system.main.ENABLE_LOGGING()", PARSER),
    C("functions that act", "SELECT * FROM query('SELECT * FROM enable_logging()')", PARSER),
    C("functions that act",
      "SELECT * FROM enable_profiling(save_location := 'WH/profile.json', format := 'json')", PARSER),
    C("functions that act", "SELECT (SELECT count(*) FROM disable_logging())", PARSER),
    C("functions that act", "SELECT * FROM truncate_duckdb_logs()", PARSER),
    C("functions that act", "SELECT write_log('x', level := 'error')", PARSER),
    C("functions that act", "SELECT * FROM checkpoint()", PARSER),
    C("functions that act", "SELECT * FROM force_checkpoint()", PARSER),
    C("functions that act", "SELECT * FROM pandas_scan(NULL)", PARSER),
    C("functions that act", "SELECT * FROM arrow_scan(NULL, NULL, NULL)", PARSER),
    # Changing the catalog.
    C("CREATE", "CREATE TABLE t AS SELECT 1", PARSER),
    C("CREATE", "CREATE TEMP TABLE t AS SELECT 1", PARSER),
    C("CREATE", "CREATE VIEW v AS SELECT 1", PARSER),
    C("CREATE", "CREATE OR REPLACE MACRO top_k(f, k) AS TABLE SELECT 1", PARSER),
    C("CREATE", "CREATE TYPE mood AS ENUM ('a', 'b')", PARSER),
    C("CREATE", "CREATE SEQUENCE s", PARSER),
    C("CREATE", "CREATE SECRET (TYPE s3, KEY_ID 'k', SECRET 's')", PARSER),
    C("PIVOT (creates an enum type)", "PIVOT reviews ON stars USING count(*)", PARSER),
    C("PIVOT (creates an enum type)", "SELECT * FROM (PIVOT reviews ON stars USING count(*))", PARSER),
    C("INSERT / UPDATE / DELETE", "INSERT INTO warehouse_meta VALUES ('x', 'y')", PARSER),
    C("INSERT / UPDATE / DELETE", "UPDATE warehouse_meta SET value = 'elsewhere'", PARSER),
    C("INSERT / UPDATE / DELETE", "DELETE FROM warehouse_meta", PARSER),
    C("DROP / ALTER", "DROP VIEW reviews", PARSER),
    C("DROP / ALTER", "ALTER VIEW reviews RENAME TO r", PARSER),
    C("VACUUM", "VACUUM", PARSER),
    # Several statements, and text that only looks like several.
    C("several statements", "SELECT 1; DROP VIEW reviews", PARSER),
    C("several statements", "SELECT 1; SELECT 2", PARSER),
    C("several statements", "/* SELECT 1; */ DROP VIEW reviews", PARSER),
    C("a statement in a comment", "SELECT 1 /* ; DROP VIEW reviews */", RUNS),
    C("a statement in a comment", "SELECT 1 -- ; DROP VIEW reviews", RUNS),
    C("`;` inside a string literal", "SELECT 'a;b' AS s, 'x''; DROP VIEW reviews; --' AS t", RUNS),
    # Controls: read-only queries run.
    C(None, "SELECT count(*) FROM reviews", RUNS),
    C(None, "WITH t AS (SELECT feature FROM features) SELECT count(*) FROM t", RUNS),
    C(None, "FROM reviews SELECT review_id LIMIT 2", RUNS),
    C(None, "VALUES (1, 'a'), (2, 'b')", RUNS),
    C(None, "DESCRIBE reviews", RUNS),
    C(None, "SUMMARIZE features", RUNS),
    C(None, "SHOW TABLES", RUNS),
    C(None, "EXPLAIN SELECT count(*) FROM activations", RUNS),
    C(None, "EXPLAIN ANALYZE SELECT count(*) FROM activations", RUNS),
    C(None, "EXPLAIN ANALYZE /* c */ SELECT 1", RUNS),
    C(None, "SELECT * FROM top_k(SALSA, 3)", RUNS),
    C(None, "SELECT * FROM top_k_contexts(SALSA, 2, before := 3, after := 1)", RUNS),
    C(None, "SELECT * FROM feature_by_stars(SALSA)", RUNS),
    C(None, "SELECT * FROM review_features('RID', 3)", RUNS),
    C(None, "SELECT * FROM feature_tokens(SALSA) LIMIT 2", RUNS),
    C(None, "SELECT * FROM star_signal(min_reviews := 1) LIMIT 2", RUNS),
    C(None, "SELECT * FROM query('SELECT 42 AS answer')", RUNS),
    C(None, "PIVOT reviews ON stars IN (1, 5) USING count(*)", RUNS),
    C(None, "SELECT count(*) FROM read_parquet('PARQUET')", RUNS),
    C(None, "SELECT * FROM read_duckdb('WH/warehouse.duckdb', table_name := 'warehouse_meta')", RUNS),
    C(None, "SELECT current_setting('allowed_directories') IS NOT NULL", RUNS),
]


def _placeholders(corpus: dict) -> dict[str, str]:
    return {
        "WH": str(corpus["wh"]), "WA": str(corpus["wa"]), "OTHER": "other", "OUTSIDE": str(corpus["outside"]),
        "TMP": str(corpus["tmp"]), "PARQUET": glob_escaped(str(corpus["parquet"])), "RID": corpus["rid"],
        "SALSA": str(SALSA),
    }


def render(sql: str, corpus: dict) -> str:
    values = _placeholders(corpus)
    return re.sub(r"\b(" + "|".join(values) + r")\b", lambda m: values[m.group(1)], sql)


def result_of(result) -> str:
    """The corpus's name for what `saewh sql` did (any failure must be exit 6, one line)."""
    if result.exit_code == 0:
        return RUNS
    line = assert_clean_error(result, QUERY).removeprefix("saewh: error: ")
    if line.startswith(("refused ", "expected one statement", "cannot parse the query")):
        return PARSER
    if "Permission Error" in line:
        return CONFIG
    return ERROR


# ---------------------------------------------------------------- snapshots


_HASHES: dict[tuple, str] = {}


def _sha256(path: Path, st: os.stat_result) -> str:
    # Cached by inode, size, mtime and ctime (which no write can preserve).
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _HASHES:
        _HASHES[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return _HASHES[key]


def tree_state(*roots: Path) -> dict[str, tuple]:
    """Every entry under `roots` (roots included), symlinks not followed: a file's size,
    mtime_ns, ctime_ns and sha256, a directory's mtime_ns (an entry made and removed
    changes it), a symlink's target; a missing root is recorded as missing."""
    out: dict[str, tuple] = {}

    def record(path: Path) -> None:
        try:
            st = path.lstat()
        except FileNotFoundError:
            out[str(path)] = ("missing",)
            return
        if stat.S_ISLNK(st.st_mode):
            out[str(path)] = ("link", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            out[str(path)] = ("dir", st.st_mtime_ns)
        else:
            out[str(path)] = ("file", st.st_size, st.st_mtime_ns, st.st_ctime_ns, _sha256(path, st))

    for root in roots:
        record(Path(root))
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                record(Path(dirpath) / name)
    return out


_STATE_QUERIES = (
    "SELECT name, value FROM duckdb_settings() ORDER BY name",
    "SELECT * FROM duckdb_variables()",
    "SELECT database_name, path, readonly FROM duckdb_databases() ORDER BY ALL",
    "SELECT database_name, schema_name, table_name, temporary FROM duckdb_tables() ORDER BY ALL",
    "SELECT database_name, schema_name, view_name, temporary FROM duckdb_views() WHERE NOT internal "
    "ORDER BY ALL",
    "SELECT count(*) FROM duckdb_functions()",
    "SELECT database_name, schema_name, function_name FROM duckdb_functions() WHERE NOT internal "
    "ORDER BY ALL",
    "SELECT database_name, schema_name, type_name FROM duckdb_types() WHERE NOT internal ORDER BY ALL",
    "SELECT * FROM duckdb_sequences()",
    "SELECT count(*) FROM duckdb_logs",
)


def connection_state(con: duckdb.DuckDBPyConnection) -> list:
    return [con.execute(q).fetchall() for q in _STATE_QUERIES]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[int, tuple[Path, Path]]:
    base = tmp_path_factory.mktemp("sandbox-inputs")
    return {n: write_inputs(base / str(n), n_reviews=n, n_latents=N_LATENTS, k=8, seed=n)
            for n in (SMALL, BIG)}


def build(inputs: dict, n: int, target: Path) -> Path:
    h5, npz = inputs[n]
    result = saewh("build", "--h5", h5, "--npz", npz, "-w", target, "--latents", N_LATENTS)
    assert result.exit_code == 0, result.stderr
    return target


def sql(wh: Path, query: str, *options):
    return saewh("sql", "-w", wh, query, *options)


def sql_rows(wh: Path, query: str, *options) -> list[dict]:
    result = sql(wh, query, "--csv", *options)
    assert result.exit_code == 0, result.stderr
    return list(csv.DictReader(io.StringIO(result.stdout)))


def write_parquet(path: Path, sql_text: str = "SELECT 42 AS x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    try:
        con.execute(f"COPY ({sql_text}) TO '{path}' (FORMAT parquet)")
    finally:
        con.close()
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, inputs) -> dict:
    """base/x/w (the warehouse), base/x/wA (a sibling whose name it prefixes), base/x/other,
    base/outside, base/canary, base/tmp (where the attacks write) and base/user (--read)."""
    base = tmp_path_factory.mktemp("sandbox")
    wh = build(inputs, SMALL, base / "x" / "w")
    write_parquet(base / "x" / "wA" / "f.parquet")
    write_parquet(base / "x" / "other" / "f.parquet")
    outside = base / "outside"
    write_parquet(outside / "f.parquet")
    (outside / "secret.txt").write_text("key,value\nsecret,1\n")
    (outside / "schema.sql").write_text("CREATE TABLE pwned (x INTEGER);\n")
    (outside / "load.sql").write_text("INSERT INTO pwned VALUES (1);\n")
    duckdb.connect(str(outside / "other.duckdb")).close()
    canary = base / "canary"
    canary.mkdir()
    (canary / "canary.txt").write_text("untouched\n")
    (base / "tmp").mkdir()
    # A first query, so anything a first open may do is done before the snapshots.
    rid = sql_rows(wh, "SELECT review_id FROM reviews ORDER BY review_idx LIMIT 1")[0]["review_id"]
    spill = sql_rows(wh, "SELECT current_setting('temp_directory') AS t")[0]["t"]
    parquet = next(p for p in sorted(wh.rglob("features.parquet")))
    return {"base": base, "wh": wh, "wa": base / "x" / "wA", "outside": outside, "canary": canary,
            "tmp": base / "tmp", "parquet": parquet, "rid": rid, "spill": Path(spill)}


def watched(corpus: dict) -> dict:
    spill = corpus["spill"]
    return {"tree": tree_state(corpus["base"], Path("/tmp/x")),
            "spill": sorted(os.listdir(spill)) if spill.is_dir() else None}


# ---------------------------------------------------------------- the escape corpus


def test_corpus_has_no_duplicates():
    assert len({c.sql for c in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=[c.id for c in CORPUS])
def test_escape_corpus(corpus, case):
    text = render(case.sql, corpus)
    before = watched(corpus)
    result = sql(corpus["wh"], text)
    assert result_of(result) == case.result, (text, result.exit_code, result.stderr)
    if case.result == RUNS:
        assert result.stdout.strip(), text
    assert watched(corpus) == before, text

    # The same text on one sandboxed connection: nothing about it changes, the lock holds.
    con, _snapshot = _open(corpus["wh"])
    try:
        state = connection_state(con)
        try:
            check_query(con, text)
            con.execute(text).fetchall()
        except Exception:  # noqa: BLE001 - refused or failed: the state must still be as it was
            pass
        assert connection_state(con) == state, text
        with pytest.raises(duckdb.Error, match="lock"):
            con.execute("SET threads = 1")
    finally:
        con.close()
    assert watched(corpus) == before, text


# The cases that could leave something in HOME (extensions, secrets) or TMPDIR (spills,
# COPY's temporary files), and controls that spill or profile.
FRESH_PROCESS = {"COPY ... TO", EXPLAIN_ANALYZE_COPY, "EXPORT / IMPORT DATABASE", "ATTACH / DETACH / USE",
                 "INSTALL / LOAD", "SET / RESET", "functions that act", "secrets and the environment", None}


def test_escape_corpus_in_a_fresh_process(corpus, tmp_path):
    """The corpus's cases that could write to HOME or TMPDIR, in one child process whose
    HOME and TMPDIR are empty directories: they are still empty when it exits (DuckDB's
    spill directory included), and the answers are those of the in-process run."""
    home, tmpdir = tmp_path / "home", tmp_path / "tmpdir"
    home.mkdir()
    tmpdir.mkdir()
    before = watched(corpus)
    child = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "from warehouse.cli import app\n"
        "out = []\n"
        "for args in json.load(sys.stdin):\n"
        "    r = CliRunner().invoke(app, args)\n"
        "    out.append([r.exit_code, r.stderr])\n"
        "print(json.dumps(out))\n"
    )
    chosen = [c for c in CORPUS if c.attack in FRESH_PROCESS]
    cases = [["sql", "-w", str(corpus["wh"]), render(c.sql, corpus)] for c in chosen]
    env = dict(os.environ, HOME=str(home), TMPDIR=str(tmpdir))
    env.pop("SAEWH_WAREHOUSE", None)
    proc = subprocess.run([sys.executable, "-c", child], input=json.dumps(cases), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    for case, (code, stderr) in zip(chosen, json.loads(proc.stdout), strict=True):
        assert (code == 0) == (case.result == RUNS), (case.sql, code, stderr)
        if code:
            assert code == QUERY and stderr.count("\n") == 1, (case.sql, code, stderr)
    assert list(home.iterdir()) == [] and list(tmpdir.iterdir()) == []
    assert watched(corpus) == before


def test_symlink_inside_the_warehouse(corpus, tmp_path):
    """A symlink planted in a warehouse (by someone who can write it) does not lead out."""
    wh = tmp_path / "w"
    shutil.copytree(corpus["wh"], wh, symlinks=True)
    assert saewh("repoint", "-w", wh).exit_code == 0
    snap = (wh / "current").resolve()  # the directory a query may read
    (snap / "escape").symlink_to(corpus["outside"], target_is_directory=True)
    (snap / "secret").symlink_to(corpus["outside"] / "secret.txt")
    before = watched(corpus) | {"copy": tree_state(wh)}
    for text in (f"SELECT * FROM read_parquet('{snap}/escape/f.parquet')",
                 f"SELECT * FROM read_text('{snap}/secret')",
                 f"SELECT * FROM read_csv('{snap}/secret')",
                 f"SELECT * FROM glob('{snap}/escape/*')"):
        assert result_of(sql(wh, text)) == CONFIG, text
    files = sql_rows(wh, f"SELECT file FROM glob('{snap}/**')")
    assert files and not any("secret" in r["file"] or "escape" in r["file"] for r in files)
    assert watched(corpus) | {"copy": tree_state(wh)} == before


# ---------------------------------------------------------------- --read FILE


@pytest.fixture(scope="module")
def user_files(corpus) -> dict:
    user = corpus["base"] / "user"
    user.mkdir(exist_ok=True)
    rows = sql_rows(corpus["wh"], "SELECT review_id FROM reviews ORDER BY review_idx")
    rids = [r["review_id"] for r in rows]
    labels = user / "labels.csv"
    labels.write_text("review_id,label\n" + "".join(f"{r},{i % 2}\n" for i, r in enumerate(rids[:5])))
    other = user / "other.csv"
    other.write_text("review_id,label\nx,1\n")
    return {"dir": user, "labels": labels, "other": other, "n": 5}


def test_read_file_joins_reviews(corpus, user_files, monkeypatch):
    labels = user_files["labels"]
    query = ("SELECT count(*) AS n, sum(label) AS positives FROM read_csv('{f}') l "
             "JOIN reviews r USING (review_id)")
    rows = sql_rows(corpus["wh"], query.format(f=labels), "--read", labels)
    assert rows == [{"n": "5", "positives": "2"}]
    # Named relatively, as a user in that directory would.
    monkeypatch.chdir(user_files["dir"])
    assert sql_rows(corpus["wh"], query.format(f="labels.csv"), "--read", "labels.csv") == rows


@pytest.mark.parametrize("text", [
    "SELECT * FROM read_csv('{other}')",
    "SELECT * FROM read_csv('{dir}/*.csv')",
    "SELECT * FROM glob('{dir}/*')",
    "SELECT * FROM read_text('{labels}.bak')",
    "SELECT * FROM read_text('/etc/passwd')",
])
def test_read_file_allows_that_file_only(corpus, user_files, text):
    before = watched(corpus)
    query = text.format(other=user_files["other"], dir=user_files["dir"], labels=user_files["labels"])
    assert result_of(sql(corpus["wh"], query, "--read", user_files["labels"])) == CONFIG
    assert watched(corpus) == before


def test_read_file_cannot_be_written(corpus, user_files):
    labels = user_files["labels"]
    before = tree_state(user_files["dir"])
    text = f"EXPLAIN ANALYZE COPY (SELECT 1) TO '{labels}'"
    assert result_of(sql(corpus["wh"], text, "--read", labels)) == PARSER
    assert tree_state(user_files["dir"]) == before


@pytest.mark.parametrize("what", ["missing", "directory"])
def test_read_file_must_be_a_file(corpus, user_files, what):
    path = user_files["dir"] / "nope.csv" if what == "missing" else user_files["dir"]
    result = sql(corpus["wh"], "SELECT 1", "--read", path)
    assert_clean_error(result, int(ExitCode.BAD_INPUT), "--read", str(path))


# ---------------------------------------------------------------- reports: values are bound


INJECTION = "x'); COPY (SELECT 1) TO 'TMP/pwn.csv'; --"


@pytest.mark.parametrize("args, code", [
    (["review", "--review-id", INJECTION], ExitCode.NOT_FOUND),
    (["token", "--token", INJECTION], ExitCode.NOT_FOUND),
    (["token", "--token", "'; DROP VIEW reviews; --"], ExitCode.NOT_FOUND),
    (["token-search", "--pattern", INJECTION], ExitCode.OK),
    (["text-search", "--pattern", "'; COPY features TO 'TMP/pwn.csv'; --"], ExitCode.OK),
    (["text-search", "--pattern", INJECTION], ExitCode.QUERY),  # RE2 reads it: "unexpected )"
    (["business-features", "--business-id", INJECTION], ExitCode.OK),
    (["user-features", "--user-id", INJECTION], ExitCode.OK),
    (["top-k", "--feature", "1; DROP VIEW reviews"], ExitCode.USAGE),
    (["features", "--sort", "density; DROP VIEW reviews"], ExitCode.USAGE),
])
def test_report_values_are_bound_not_executed(corpus, args, code):
    before = watched(corpus)
    args = [render(a, corpus) if a.startswith(("x'", "'")) else a for a in args]
    result = saewh("report", *args, "-w", corpus["wh"], "--json")
    if code == ExitCode.OK:
        assert result.exit_code == 0, result.stderr
        doc = json.loads(result.stdout)  # no rows: the value was looked for, as a value
        assert doc == [] or doc and all(rows == [] for rows in doc.values()), doc
    else:
        assert_clean_error(result, int(code))
    assert not (corpus["tmp"] / "pwn.csv").exists()
    assert watched(corpus) == before


def test_reports_run_in_the_sandbox(corpus):
    """A report's connection is the locked one: its own SQL could not write either."""
    before = watched(corpus)
    con, _snapshot = _open(corpus["wh"])
    try:
        with pytest.raises(duckdb.Error):
            con.execute(f"COPY (SELECT 1) TO '{corpus['tmp']}/x.csv'")
        with pytest.raises(duckdb.Error):
            con.execute("SELECT * FROM read_text('/etc/passwd')")
        with pytest.raises(duckdb.Error, match="lock"):
            con.execute("SET enable_external_access = true")
    finally:
        con.close()
    result = saewh("report", "review", "--review-id", corpus["rid"], "-w", corpus["wh"], "--json")
    assert result.exit_code == 0, result.stderr
    assert watched(corpus) == before


# ---------------------------------------------------------------- paths


# name -> (reviews, a sibling a glob of the name would also match)
PATHS = {
    "g[A]": (SMALL, "gA"),
    "wh*star": (SMALL, "whXstar"),
    "wh;--drop": (SMALL, None),
    "it's": (SMALL, None),
    "50%_done": (SMALL, None),
    "with space a]b": (SMALL, None),
}


@pytest.fixture(scope="module")
def paths(tmp_path_factory, inputs) -> dict:
    base = tmp_path_factory.mktemp("paths")
    sibling = build(inputs, BIG, base / "sibling-src")
    out = {}
    for name, (_, twin) in PATHS.items():
        out[name] = build(inputs, SMALL, base / name)
        if twin:
            shutil.copytree(sibling, base / twin, symlinks=True)
            write_parquet(base / twin / "only-in-the-sibling.parquet")
    return out


def test_a_build_target_with_a_question_mark_is_refused(inputs, tmp_path):
    h5, npz = inputs[SMALL]
    result = saewh("build", "--h5", h5, "--npz", npz, "-w", tmp_path / "wh?x", "--latents", N_LATENTS)
    assert result.exit_code != 0
    assert_clean_error(result, result.exit_code, "?")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", list(PATHS))
def test_path_reads_exactly_its_warehouse(paths, name):
    wh = paths[name]
    assert sql_rows(wh, "SELECT count(*) AS n FROM reviews") == [{"n": str(PATHS[name][0])}]
    manifest = json.loads(saewh("info", "-w", wh, "--json").stdout)
    rows = sql_rows(wh, "SELECT (SELECT count(*) FROM activations) AS a, (SELECT count(*) FROM tokens) AS t")
    assert rows == [{"a": str(manifest["tables"]["activations"]["rows"]),
                     "t": str(manifest["tables"]["tokens"]["rows"])}]


@pytest.mark.parametrize("name", list(PATHS))
def test_path_reports_and_verify(paths, name):
    wh = paths[name]
    result = saewh("report", "top-k", "--feature", SALSA, "--k", 3, "-w", wh, "--csv")
    assert result.exit_code == 0 and result.stdout.count("\n") == 4, result.stderr
    result = saewh("report", "feature", "--feature", SALSA, "-w", wh, "--json")
    assert result.exit_code == 0, result.stderr
    result = saewh("verify", "-w", wh)
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("name", [n for n, (_, twin) in PATHS.items() if twin])
def test_path_does_not_reach_its_glob_sibling(paths, name):
    """The warehouse's path, taken as a pattern, matches the sibling (a copy of a bigger
    warehouse): the sandbox allows the path in its escaped form only, so the sibling's
    files, and its listing, are out of reach.  The path as typed, a pattern DuckDB
    expands to the sibling's file, is refused, never the sibling's answer."""
    wh = paths[name]
    own = next(wh.rglob("reviews.parquet"))
    escaped = glob_escaped(str(own))
    assert sql_rows(wh, f"SELECT count(*) AS n FROM read_parquet('{escaped}')") == [{"n": str(SMALL)}]
    result = sql(wh, f"SELECT count(*) AS n FROM read_parquet('{own}')", "--csv")
    assert result.stdout == f"n\n{SMALL}\n" if result.exit_code == 0 else result_of(result) == CONFIG
    for text in (f"SELECT * FROM read_parquet('{wh}/only-in-the-sibling.parquet')",
                 f"SELECT * FROM glob('{wh}/*')"):
        result = sql(wh, text)
        assert result_of(result) == CONFIG, (text, result.stdout)


@pytest.fixture
def damaged(paths, tmp_path):
    """A copy of one warehouse (re-published there) and one activations bucket of it."""
    wh = tmp_path / "w[1]"
    shutil.copytree(paths["g[A]"], wh, symlinks=True)
    assert saewh("repoint", "-w", wh).exit_code == 0
    buckets = sorted(p for p in (wh / "current").resolve().rglob("bucket=*") if p.is_dir())
    assert buckets
    feature_bucket = next(b for b in buckets if b.name == f"bucket={SALSA // 64}")
    return wh, feature_bucket


@pytest.mark.parametrize("what", ["file", "directory"])
def test_a_deleted_bucket_is_an_error_not_a_smaller_answer(damaged, what):
    wh, bucket = damaged
    if what == "file":
        next(bucket.glob("*.parquet")).unlink()
    else:
        shutil.rmtree(bucket)
    assert_clean_error(sql(wh, "SELECT count(*) FROM activations"), QUERY)
    assert_clean_error(saewh("report", "feature", "--feature", SALSA, "-w", wh), QUERY)
    assert saewh("verify", "-w", wh).exit_code == int(ExitCode.WAREHOUSE)


# ---------------------------------------------------------------- the README


# Rows of the README's table backed by the tests above rather than by CORPUS.
OTHER_ROWS = {
    "`--read FILE`, another file": CONFIG,  # test_read_file_allows_that_file_only
    "a symlink in the warehouse": CONFIG,  # test_symlink_inside_the_warehouse
    # test_path_does_not_reach_its_glob_sibling
    "a warehouse path that is a glob (`g[A]` beside `gA`)": CONFIG,
    "SQL in a report's string option": "bound as a value",  # test_report_values_are_bound_not_executed
}


def test_readme_security_table():
    """Every attack of the corpus is a row of the README's table, whose example is one of
    its cases and whose result is that case's."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("\n## Security"):]
    section = section[: section.find("\n## ", 1)]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("| ") and len(cells) == 3 and not set(cells[0]) <= {"-"} and cells[0] != "attack":
            rows[cells[0]] = (cells[1], cells[2])
    by_attack: dict[str, list[Case]] = {}
    for case in CORPUS:
        if case.attack:
            by_attack.setdefault(case.attack, []).append(case)
    assert set(rows) == set(by_attack) | set(OTHER_ROWS)
    for attack, cases in by_attack.items():
        example, result = rows[attack]
        assert example.startswith("`") and example.endswith("`"), example
        matching = [c for c in cases if c.sql == example[1:-1].replace("\\|", "|")]
        assert matching, f"{attack}: {example} is not a case of the corpus"
        assert result == matching[0].result, attack
    for attack, result in OTHER_ROWS.items():
        assert rows[attack][1] == result, attack
