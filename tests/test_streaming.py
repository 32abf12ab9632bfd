"""Streamed output, interrupts, output errors, exit codes and CSV formula injection.

- Streaming: every format writes rows as DuckDB produces them, in bounded memory
  (peak RSS of a 5M-row export, measured per child with `os.wait4`), and renders
  exactly what the whole-result renderer did (compared with it on random sections).
- Interrupts: SIGINT / SIGTERM stop a running cross join (exit 130 / 143, one line).
- A full device is a write error (exit 7); a reader that goes away ends quietly (0).
- Every exit code of the README's table, triggered and checked.
- `--csv-safe` neutralises formulas; the default CSV is the exact data.

No test here measures time: waits are hang guards.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from etl.build import build_warehouse
from etl.synth import synthesize
from warehouse.cli import ExitCode, app
from warehouse.render import (
    Section,
    csv_value,
    float32_text,
    float32_texts,
    json_value,
    render_sections,
    spreadsheet_safe,
)

ROOT = Path(__file__).resolve().parent.parent
SAEWH = [sys.executable, "-c", "from warehouse.cli import app; app()"]
N_LATENTS = 512


@pytest.fixture(scope="module")
def wh(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("streaming")
    res = synthesize(base / "inputs", n_reviews=60, seed=1, n_latents=N_LATENTS)
    build_warehouse(res.h5_path, res.npz_path, base / "wh", n_latents=N_LATENTS)
    return base / "wh"


def _runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)  # Click < 8.2 mixes stderr into stdout by default
    except TypeError:
        return CliRunner()


def run(args: list, **env: str | None):
    base_env: dict[str, str | None] = {"COLUMNS": "100", "NO_COLOR": "1", "SAEWH_WAREHOUSE": None}
    base_env.update(env)
    return _runner().invoke(app, [str(a) for a in args], env=base_env, catch_exceptions=False)


def one_line_error(stderr: str) -> str:
    assert stderr.startswith("saewh: error: ") and stderr.endswith("\n") and stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr
    return stderr


def saewh(args: list, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "100"}
    env.pop("SAEWH_WAREHOUSE", None)
    return subprocess.run([*SAEWH, *map(str, args)], cwd=ROOT, env=env, timeout=300, **kwargs)


# ---------------------------------------------------------------- rendering: same as before


def _old_csv(section: Section) -> str:
    """The renderer before streaming: every row through csv_value and csv.writer (a
    carriage return now quoted, as a newline always was)."""
    lines = []
    body = [[csv_value(v, t) for v, t in zip(r, section.types)] for r in section.rows]
    for row in [section.columns, *body]:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\r\n").writerow(row)
        lines.append(buf.getvalue()[:-2] + "\n")
    return "".join(lines)


def _old_records(section: Section) -> list[dict]:
    return [{c: json_value(v, t) for c, v, t in zip(section.columns, r, section.types)} for r in section.rows]


def _old(sections: list[Section], fmt: str) -> str:
    multi = len(sections) > 1
    if fmt == "csv":
        return _old_csv(sections[0])
    if fmt == "json":
        doc = {s.name: _old_records(s) for s in sections} if multi else _old_records(sections[0])
        return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    return "".join(
        json.dumps({"section": s.name, **rec} if multi else rec, ensure_ascii=False) + "\n"
        for s in sections
        for rec in _old_records(s)
    )


def _f32(x: float) -> float:
    return float(np.float32(x))


_TYPES = {
    "BIGINT": st.integers(-(2**63), 2**63 - 1),
    "INTEGER": st.integers(-(2**31), 2**31 - 1),
    "BOOLEAN": st.booleans(),
    "VARCHAR": st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
    "DOUBLE": st.floats(allow_nan=True, allow_infinity=True),
    "FLOAT": st.floats(width=32, allow_nan=True, allow_infinity=True).map(_f32),
    "INTEGER[]": st.lists(st.integers(-5, 5), max_size=3),
    "STRUCT(a INTEGER)": st.fixed_dictionaries({"a": st.integers(0, 9)}),
    "DECIMAL(10,2)": st.decimals(min_value=-1000, max_value=1000, places=2, allow_nan=False),
}


@st.composite
def sections(draw) -> tuple[list[str], list[str], list[tuple]]:
    types = draw(st.lists(st.sampled_from(sorted(_TYPES)), min_size=1, max_size=5))
    names = draw(st.lists(st.sampled_from(["a", "b", "c", "value", "x%s", 'q"uote', "é"]),
                          min_size=len(types), max_size=len(types)))
    rows = draw(st.lists(st.tuples(*(st.one_of(st.none(), _TYPES[t]) for t in types)), max_size=8))
    return names, types, rows


def _chunked(rows: list[tuple], size: int):
    return iter([rows[i:i + size] for i in range(0, len(rows), size)])


@settings(max_examples=150, deadline=None)
@given(sections(), st.sampled_from(["csv", "json", "jsonl"]), st.integers(1, 3))
def test_streamed_text_formats_render_as_before(sec, fmt, chunk):
    names, types, rows = sec
    whole = [Section("s", names, types, rows)]
    streamed = [Section("s", names, types, [], stream=_chunked(rows, chunk))]
    assert render_sections(streamed, fmt) == _old(whole, fmt)
    two = [Section("s", names, types, rows), Section("t", names[:1], types[:1], [r[:1] for r in rows])]
    if fmt != "csv":
        assert render_sections(two, fmt) == _old(two, fmt)


def test_long_float_columns_render_as_before():
    """Long FLOAT columns take Arrow's vectorized path: the same text as float32_text."""
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, size=200_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    values = np.concatenate([
        bits,
        rng.lognormal(0, 2, 100_000).astype(np.float32),
        np.array([0.0, -0.0, 1, 110, 1e-4, 1.5e-4, 9.9991, 1e-5, 1e7, 16777216, np.nan, np.inf, -np.inf],
                 dtype=np.float32),
    ]).tolist() + [None]
    expect = [None if v is None else float32_text(v) if math.isfinite(v) else repr(v) for v in values]
    assert float32_texts(values) == expect
    rows = [(v, i) for i, v in enumerate(values[-20_000:])]
    whole = [Section("s", ["v", "i"], ["FLOAT", "BIGINT"], rows)]
    for fmt in ("csv", "json", "jsonl"):
        streamed = [Section("s", ["v", "i"], ["FLOAT", "BIGINT"], [], stream=_chunked(rows, 8192))]
        assert render_sections(streamed, fmt) == _old(whole, fmt), fmt


def test_sql_output_of_many_types_is_unchanged(wh):
    """Rows from DuckDB's stream render as they did from fetchall (every format)."""
    import duckdb

    query = (
        "SELECT range AS i, range::FLOAT / 7 AS f, range / 7 AS d, 'r' || range AS s, range % 2 = 0 AS b, "
        "[range, NULL] AS l, {'k': range} AS st, DATE '2020-01-01' + range::INTEGER AS dt, "
        "range::DECIMAL(12, 3) / 8 AS dec, NULL AS n FROM range(5000)"
    )
    con = duckdb.connect()
    cur = con.execute(query)
    whole = Section("query", [d[0] for d in cur.description], [str(d[1]) for d in cur.description],
                    cur.fetchall())
    con.close()
    for fmt, flag in (("csv", "--csv"), ("json", "--json"), ("jsonl", "--format=jsonl")):
        result = run(["sql", query, flag, "-w", wh])
        assert result.exit_code == 0, result.stderr
        assert result.stdout == _old([whole], fmt), fmt
    table = run(["sql", query, "--max-rows", 0, "-w", wh])
    assert table.stdout == render_sections([whole], "table", width=100)


# ---------------------------------------------------------------- the table and its row limit


def test_table_shows_the_first_rows_and_counts_the_rest(wh):
    result = run(["sql", "SELECT range AS n FROM range(1000)", "--max-rows", 10, "-w", wh])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[2:] == [str(i) for i in range(10)]  # (widths fit the rows shown)
    assert result.stderr == (
        "saewh: 990 more rows not shown (10 of 1,000); all of them: --max-rows 0, "
        "or --csv / --format parquet -o FILE\n"
    )
    default = run(["sql", "SELECT range AS n FROM range(1000)", "-w", wh])
    assert len(default.stdout.splitlines()) == 2 + 40 and "960 more rows" in default.stderr
    everything = run(["sql", "SELECT range AS n FROM range(1000)", "--max-rows", 0, "-w", wh])
    assert len(everything.stdout.splitlines()) == 2 + 1000 and everything.stderr == ""
    exact = run(["sql", "SELECT range AS n FROM range(40)", "-w", wh])
    assert len(exact.stdout.splitlines()) == 2 + 40 and exact.stderr == ""


def test_report_table_limit_names_the_section(wh):
    result = run(["report", "feature", "--feature", 5, "--max-rows", 2, "-w", wh])
    assert result.exit_code == 0
    assert re.search(r"^saewh: histogram: 18 more rows not shown \(2 of 20\)", result.stderr, re.M)


# ---------------------------------------------------------------- memory


# Linux records the RSS a process had when it calls exec as part of its peak
# (`ru_maxrss`): a command spawned by this test process, grown by the tests before it
# (2.9 GB in a full run), would report at least that.  So the command is forked by a
# small process of its own, which reports the command's peak on its last stderr line.
_PEAK_OF = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
sys.stderr.write(f"\\npeak-rss-kib {usage.ru_maxrss}\\n")
sys.exit(os.waitstatus_to_exitcode(status) & 0xFF)
"""


def _start(args: list) -> subprocess.Popen:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.Popen([sys.executable, "-c", _PEAK_OF, *SAEWH, *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_rss(proc: subprocess.Popen) -> tuple[int, int, str]:
    """(exit code, peak RSS in bytes, stderr) of one command started by `_start`."""
    err = proc.stderr.read().decode() if proc.stderr else ""
    proc.wait()
    err, _, peak = err.rstrip("\n").rpartition("\npeak-rss-kib ")
    return proc.returncode, int(peak) * 1024, err


STREAM_ROWS = 5_000_000
# 5M rows of this query are ~490 MB of CSV and ~470 MB as Arrow columns (the old
# parquet path held those plus every row as a Python tuple; the old text path ~3 GB):
# any implementation holding the result exceeds the bound, a streaming one stays far
# below it (about 150-230 MB measured, 127 MB of it the interpreter, DuckDB and pyarrow).
STREAM_QUERY = (f"SELECT range AS a, range * 2 AS b, (range % 1000)::FLOAT / 7 AS c, "
                f"'row ' || repeat('x', 60) || range AS d FROM range({STREAM_ROWS})")
RSS_BOUND = 300 * 1024**2


@pytest.mark.slow
def test_exports_stream_in_bounded_memory(wh, tmp_path):
    formats = ("parquet", "csv", "jsonl", "json")
    procs = {f: _start(["sql", "-w", wh, "--format", f, "-o", tmp_path / f"out.{f}", STREAM_QUERY])
             for f in formats}  # side by side: each one's peak is its own (wait4)
    measured = {f: _wait_rss(p) for f, p in procs.items()}
    for fmt, (code, rss, err) in measured.items():
        assert code == 0, (fmt, err)
        assert rss < RSS_BOUND, f"{fmt}: peak RSS {rss / 2**20:.0f} MiB"
    for fmt in ("csv", "jsonl", "json"):
        assert (tmp_path / f"out.{fmt}").stat().st_size > 1.5 * RSS_BOUND
    import pyarrow.parquet as pq

    assert pq.ParquetFile(tmp_path / "out.parquet").metadata.num_rows == STREAM_ROWS
    for fmt in ("csv", "jsonl"):
        with open(tmp_path / f"out.{fmt}", "rb") as fh:
            assert sum(1 for _ in fh) == STREAM_ROWS + (fmt == "csv")


# ---------------------------------------------------------------- interrupts


def _caught(pid: int, signum: int) -> bool:
    """Whether the process has its own handler for the signal (/proc's SigCgt mask)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = int(re.search(r"^SigCgt:\s*([0-9a-f]+)", status, re.M).group(1), 16)
    return bool(mask >> (signum - 1) & 1)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, ExitCode.INTERRUPTED),
                                          (signal.SIGTERM, ExitCode.TERMINATED)])
@pytest.mark.parametrize("query", [
    "SELECT count(*) FROM range(1000000) a, range(1000000) b",  # one long task: ignores DuckDB's checks
    "SELECT range, range * 2 FROM range(10000000000)",  # streamed rows
])
def test_a_signal_stops_a_running_query(wh, signum, code, query):
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen([*SAEWH, "sql", "--csv", "-w", str(wh), query], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        guard = time.monotonic() + 60  # hang guards, not thresholds
        # The query runs once saewh handles SIGTERM itself (it does while a query runs) and
        # has burnt some CPU on it.
        while not _caught(proc.pid, signal.SIGTERM) and proc.poll() is None and time.monotonic() < guard:
            time.sleep(0.02)
        start = _cpu_seconds(proc.pid)
        while _cpu_seconds(proc.pid) < start + 0.5 and proc.poll() is None and time.monotonic() < guard:
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == int(code), err
    word = "interrupted" if signum == signal.SIGINT else "terminated"
    assert one_line_error(err) == f"saewh: error: {word}\n"


def test_an_interrupted_export_leaves_no_file(wh, tmp_path):
    target = tmp_path / "out.parquet"
    target.write_text("previous")
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [*SAEWH, "sql", "--format", "parquet", "-o", str(target), "-w", str(wh),
         "SELECT range, range * 2 FROM range(10000000000)"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        guard = time.monotonic() + 60
        while not list(tmp_path.glob(".out.parquet.saewh-*")) and time.monotonic() < guard:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet"]
    assert target.read_text() == "previous"


def test_a_failed_query_keeps_the_previous_output(wh, tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("previous")
    result = run(["sql", "SELECT 1 / 0 AS x, error('boom')", "--csv", "-o", target, "-w", wh])
    assert result.exit_code == ExitCode.QUERY
    one_line_error(result.stderr)
    assert target.read_text() == "previous" and sorted(tmp_path.iterdir()) == [target]
    ok = run(["sql", "SELECT 1 AS x", "--csv", "-o", target, "-w", wh])
    assert ok.exit_code == 0 and target.read_text() == "x\n1\n"


# ---------------------------------------------------------------- output errors


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("fmt", ["table", "csv", "json", "jsonl", "html", "parquet"])
def test_a_full_device_is_a_write_error(wh, fmt):
    args = ["sql", "-w", wh, "--format", fmt, "SELECT range AS n FROM range(100000)"]
    for how in ("stdout", "-o"):
        if how == "-o":
            proc = saewh([*args, "-o", "/dev/full"], capture_output=True, text=True)
        elif fmt == "parquet":
            continue
        else:
            with open("/dev/full", "w") as full:
                proc = saewh(args, stdout=full, stderr=subprocess.PIPE, text=True)
        assert proc.returncode == ExitCode.WRITE_FAILED, (fmt, how, proc.stderr)
        assert "No space left on device" in one_line_error(proc.stderr)


def test_a_closed_pipe_ends_quietly(wh):
    env = {**os.environ, "NO_COLOR": "1"}
    # (The table is made whole before it is written: not 100M rows of it.)
    for fmt, rows in (("csv", 10**8), ("jsonl", 10**8), ("table", 200_000)):
        proc = subprocess.Popen(
            [*SAEWH, "sql", "--format", fmt, "--max-rows", "0", "-w", str(wh),
             f"SELECT range AS n FROM range({rows})"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stdout.readline()
        proc.stdout.close()  # `| head -1`
        err = proc.stderr.read().decode() if proc.stderr else ""
        proc.wait(timeout=120)
        assert (proc.returncode, err) == (0, ""), fmt


# ---------------------------------------------------------------- every exit code


def _readme_exit_codes() -> dict[int, str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    return {int(m[1]): m[2] for m in re.finditer(r"^\| (\d+) \| `(\w+)` \|", table, re.M)}


def test_the_readme_lists_every_exit_code():
    assert _readme_exit_codes() == {int(c): c.name for c in ExitCode}


def test_every_exit_code(wh, tmp_path, monkeypatch):
    """Each code of the README's table, from a command that must end with it."""
    seen: dict[ExitCode, str] = {}

    def expect(code: ExitCode, args: list) -> None:
        result = run(args)
        assert result.exit_code == int(code), (code, args, result.stderr)
        if code is not ExitCode.OK:
            one_line_error(result.stderr)
        seen[code] = result.stderr

    expect(ExitCode.OK, ["sql", "SELECT 1", "-w", wh])
    expect(ExitCode.USAGE, ["sql", "SELECT 1", "--bogus"])
    expect(ExitCode.USAGE, ["sql", "SELECT 1", "--csv-safe", "--json", "-w", wh])
    expect(ExitCode.BAD_INPUT, ["build", "--h5", tmp_path / "none.h5", "--npz", tmp_path / "none.npz",
                                "-w", tmp_path / "new"])
    expect(ExitCode.WAREHOUSE, ["sql", "SELECT 1", "-w", tmp_path / "no-warehouse"])
    expect(ExitCode.NOT_FOUND, ["report", "stars", "--feature", N_LATENTS, "-w", wh])
    expect(ExitCode.QUERY, ["sql", "SELECT * FROM no_such_table", "-w", wh])
    if Path("/dev/full").exists():
        expect(ExitCode.WRITE_FAILED, ["sql", "SELECT 1", "-o", "/dev/full", "-w", wh])

    # INTERNAL: a bug.  None is known, so one is planted: the promise is one line, code 1.
    import warehouse.reports

    def bug(*args, **kwargs):
        raise RuntimeError("planted bug")

    monkeypatch.setattr(warehouse.reports, "run_query", bug)
    expect(ExitCode.INTERNAL, ["sql", "SELECT 1", "-w", wh])
    assert "internal error: RuntimeError: planted bug" in seen[ExitCode.INTERNAL]
    monkeypatch.undo()

    # 130 and 143 need a real process and a signal: test_a_signal_stops_a_running_query.
    signalled = {ExitCode.INTERRUPTED, ExitCode.TERMINATED}
    if not Path("/dev/full").exists():
        signalled.add(ExitCode.WRITE_FAILED)
    assert set(seen) | signalled == set(ExitCode)


# ---------------------------------------------------------------- CSV formula injection


RISKY = "SELECT * FROM (VALUES ('=1+1', -1, -1.5::DOUBLE), ('+SUM(A1)', 2, 0.5), ('-2', 3, 1), " \
    "('@cmd', 4, 1), (chr(9) || 'tab', 5, 1), (chr(13) || 'cr', 6, 1), ('plain', 7, 1), " \
    "('', 8, 1), (NULL, 9, 1)) AS t(\"=formula\", n, x)"


def test_csv_is_exact_by_default(wh):
    result = run(["sql", RISKY, "--csv", "-w", wh])
    assert result.exit_code == 0
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["=formula", "n", "x"]
    assert [r[0] for r in rows[1:]] == ["=1+1", "+SUM(A1)", "-2", "@cmd", "\ttab", "\rcr", "plain", "", ""]
    assert rows[1][1:] == ["-1", "-1.5"]


def test_csv_safe_neutralises_formulas(wh):
    result = run(["sql", RISKY, "--csv-safe", "-w", wh])  # implies --format csv
    assert result.exit_code == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["'=formula", "n", "x"]
    assert [r[0] for r in rows[1:]] == [
        "'=1+1", "'+SUM(A1)", "'-2", "'@cmd", "'\ttab", "'\rcr", "plain", "", ""]
    assert rows[1][1:] == ["-1", "-1.5"]  # numbers are not text: a negative number stays exact
    same = run(["sql", RISKY, "--csv", "--csv-safe", "-w", wh])
    assert same.stdout == result.stdout
    report = run(["report", "token", "--token", " salsa", "--k", 2, "--csv-safe", "-w", wh])
    assert report.exit_code == 0 and report.stdout.startswith("rank,feature")


def test_spreadsheet_safe():
    assert [spreadsheet_safe(x) for x in ("=a", "+a", "-a", "@a", "\ta", "\ra", "a=", "", "'=a")] == [
        "'=a", "'+a", "'-a", "'@a", "'\ta", "'\ra", "a=", "", "'=a"]
