"""The canned reports (`saewh report ...`), `saewh sql` and `saewh info` through Typer's CliRunner.

Outputs are compared exactly with golden files in tests/golden/, produced on a small
fixed warehouse (300 synthetic reviews, seed 0, 4,096 latents).  When a change to the
reports, the renderer or the synthetic generator is intended, regenerate them with

    SAEWH_UPDATE_GOLDEN=1 python -m pytest tests/test_reports.py

and review the diff.  Tables are rendered at COLUMNS=100 without colour.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from etl.build import build_warehouse
from etl.synth import synthesize
from warehouse.cli import ExitCode, app
from warehouse.render import float32_text
from warehouse.reports import load_reports

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("SAEWH_UPDATE_GOLDEN") == "1"
N_LATENTS = 4096
WIDTH = 100


@pytest.fixture(scope="module")
def wh(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("reports")
    res = synthesize(base / "inputs", n_reviews=300, seed=0, n_latents=N_LATENTS)
    build_warehouse(res.h5_path, res.npz_path, base / "wh", n_latents=N_LATENTS)
    con = duckdb.connect(str(base / "wh" / "warehouse.duckdb"), read_only=True)
    try:
        first = con.execute("SELECT review_id FROM reviews WHERE review_idx = 0").fetchone()[0]
        no_tokens = con.execute(
            "SELECT review_id FROM reviews WHERE n_tokens = 0 ORDER BY review_idx LIMIT 1"
        ).fetchone()[0]
    finally:
        con.close()
    return {"dir": base / "wh", "planted": res.planted, "review": first, "no_tokens": no_tokens}


def _runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)  # Click < 8.2 mixes stderr into stdout by default
    except TypeError:
        return CliRunner()


def run(args: list, input: str | None = None, **env: str):
    base_env = {"COLUMNS": str(WIDTH), "NO_COLOR": "1", "SAEWH_WAREHOUSE": None}
    base_env.update(env)
    return _runner().invoke(app, [str(a) for a in args], input=input, env=base_env, catch_exceptions=False)


def ok(args: list, input: str | None = None, **env: str) -> str:
    result = run(args, input, **env)
    assert result.exit_code == 0, (result.exit_code, result.stderr)
    assert result.stderr == ""
    return result.stdout


def fail(args: list, code: ExitCode) -> str:
    result = run(args)
    assert result.exit_code == int(code), (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == ""
    err = result.stderr
    assert err.startswith("saewh: error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


# ---------------------------------------------------------------- golden files


def _cases(wh: dict) -> list[tuple[str, list[str]]]:
    salsa, one_star, dead = wh["planted"]["salsa"], wh["planted"]["one_star"], wh["planted"]["dead"]
    return [
        ("top-k.csv", ["top-k", "--feature", salsa, "--k", 5, "--csv"]),
        ("top-k.json", ["top-k", "--feature", salsa, "--k", 5, "--json"]),
        ("top-k.txt", ["top-k", "--feature", salsa, "--k", 5]),
        ("top-k-narrow.csv", ["top-k", "--feature", salsa, "--k", 3, "--before", 2, "--after", 0, "--csv"]),
        ("feature.json", ["feature", "--feature", salsa, "--k", 3, "--bins", 10, "--json"]),
        ("feature.html", ["feature", "--feature", salsa, "--k", 3, "--bins", 10, "--format", "html"]),
        ("feature.txt", ["feature", "--feature", salsa, "--k", 3, "--bins", 10]),
        ("feature-examples.csv", ["feature", "--feature", salsa, "--k", 3, "--section", "examples", "--csv"]),
        ("feature-dead.json", ["feature", "--feature", dead, "--json"]),
        ("feature.jsonl", ["feature", "--feature", one_star, "--k", 2, "--bins", 4, "--format", "jsonl"]),
        ("stars.csv", ["stars", "--feature", one_star, "--csv"]),
        ("stars.json", ["stars", "--feature", one_star, "--json"]),
        ("star-features.csv", ["star-features", "--stars", 1, "--k", 5, "--csv"]),
        ("star-features.json", ["star-features", "--stars", 1, "--k", 5, "--json"]),
        ("review.json", ["review", "--review-id", wh["review"], "--k", 5, "--json"]),
        ("review.txt", ["review", "--review-id", wh["review"], "--k", 5]),
        ("review-features.csv",
         ["review", "--review-id", wh["review"], "--k", 5, "--section", "features", "--csv"]),
        ("review.html", ["review", "--review-id", wh["review"], "--k", 5, "--format", "html"]),
        ("token.csv", ["token", "--token", " salsa", "--k", 5, "--csv"]),
        ("token.json", ["token", "--token", " salsa", "--k", 5, "--json"]),
        ("features.csv", ["features", "--limit", 5, "--csv"]),
        ("features.json", ["features", "--sort", "max", "--limit", 3, "--json"]),
        ("features-dead.csv", ["features", "--dead", "--limit", 3, "--csv"]),
        ("features-dense.csv", ["features", "--dense-above", "0.5", "--sort", "n_reviews", "--csv"]),
        ("features.html", ["features", "--limit", 3, "--format", "html"]),
    ]


def test_golden_outputs(wh):
    """Every golden case: exact stdout, empty stderr, exit 0."""
    mismatched = []
    for name, args in _cases(wh):
        out = ok(["report", *args, "-w", wh["dir"]])
        path = GOLDEN / name
        if UPDATE:
            GOLDEN.mkdir(exist_ok=True)
            path.write_text(out, encoding="utf-8")
            continue
        assert path.is_file(), f"{path} missing: run with SAEWH_UPDATE_GOLDEN=1"
        if out != path.read_text(encoding="utf-8"):
            mismatched.append(name)
    assert not mismatched, f"differ from tests/golden (SAEWH_UPDATE_GOLDEN=1 to regenerate): {mismatched}"


def test_golden_outputs_hold_no_paths_or_times(wh):
    for path in GOLDEN.iterdir():
        text = path.read_text(encoding="utf-8")
        assert "/tmp" not in text and str(wh["dir"]) not in text and "pytest-" not in text, path
        assert not re.search(r"20\d\d-\d\d-\d\dT", text), path


def test_output_is_repeatable(wh):
    args = ["report", "token", "--token", " salsa", "--k", 20, "--json", "-w", wh["dir"]]
    assert ok(args) == ok(args)


# ---------------------------------------------------------------- formats


def test_csv_and_json_carry_full_contexts(wh):
    salsa = wh["planted"]["salsa"]
    con = duckdb.connect(str(wh["dir"] / "warehouse.duckdb"), read_only=True)
    try:
        expect = con.execute(
            "SELECT left_context, token, right_context "
            "FROM top_k_contexts($f, 20, before := 40, after := 30)",
            {"f": salsa},
        ).fetchall()
    finally:
        con.close()
    args = ["report", "top-k", "--feature", salsa, "--before", 40, "--after", 30, "-w", wh["dir"]]
    records = json.loads(ok([*args, "--json"]))
    assert [(r["left_context"], r["token"], r["right_context"]) for r in records] == expect
    lines = [json.loads(line) for line in ok([*args, "--format", "jsonl"]).splitlines()]
    assert lines == records
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(ok([*args, "--format", "csv"]))))
    assert [(r["left_context"], r["token"], r["right_context"]) for r in rows] == expect
    assert any("\n" in (left or "") + (right or "") for left, _, right in expect), "want a newline case"


@pytest.mark.parametrize("width", [50, 80, 100, 160])
def test_table_fits_the_width_and_keeps_text_next_to_the_token(wh, width):
    from rich.cells import cell_len

    salsa = wh["planted"]["salsa"]
    out = ok(["report", "top-k", "--feature", salsa, "-w", wh["dir"]], COLUMNS=str(width))
    lines = out.splitlines()
    assert all(cell_len(line) <= width for line in lines), [line for line in lines if cell_len(line) > width]
    assert "\x1b[" not in out  # no colour off a terminal
    records = json.loads(ok(["report", "top-k", "--feature", salsa, "--json", "-w", wh["dir"]]))
    body = lines[2:]
    assert len(body) == len(records)
    offset = lines[0].index("context")
    for line, rec in zip(body, records):
        left = rec["left_context"].replace("\n", "⏎")
        lead = rec["token"][: len(rec["token"]) - len(rec["token"].lstrip(" "))]  # shown before [
        shown = line[offset:].split("[salsa]")[0].lstrip(" ")
        assert shown.endswith(lead)
        shown = shown[: len(shown) - len(lead)]
        # What is shown of the left context is its end: the text next to the token.
        if shown.startswith("…"):
            assert left.endswith(shown[1:]) and len(shown) > 1, (line, left)
        else:
            assert left.endswith(shown), (line, left)
        assert "\n" not in line
    if width <= 80:
        assert all("…" in line for line in body)
    if width >= 100:
        assert any("⏎" in line for line in body)


def test_multi_section_formats(wh):
    salsa = wh["planted"]["salsa"]
    base = ["report", "feature", "--feature", salsa, "-w", wh["dir"]]
    doc = json.loads(ok([*base, "--json"]))
    assert list(doc) == ["summary", "histogram", "stars", "examples", "samples"]
    assert doc["summary"][0]["feature"] == salsa
    assert sum(b["n_activations"] for b in doc["histogram"]) == doc["summary"][0]["n_active"]
    assert {r["section"] for r in map(json.loads, ok([*base, "--format", "jsonl"]).splitlines())} == set(doc)
    only = json.loads(ok([*base, "--section", "stars", "--json"]))
    assert only == doc["stars"]
    two = json.loads(ok([*base, "--section", "stars", "--section", "summary", "--json"]))
    assert list(two) == ["summary", "stars"]
    err = fail([*base, "--csv"], ExitCode.USAGE)
    assert "--section" in err
    # Refused before the warehouse is opened (no query runs): a missing warehouse is
    # not even looked at.
    missing = ["report", "text-search", "--pattern", "salsa", "-w", str(wh["dir"]) + "-nowhere"]
    assert "--section" in fail([*missing, "--csv"], ExitCode.USAGE)
    fail([*missing, "--json"], ExitCode.WAREHOUSE)


def test_parquet_output(wh, tmp_path):
    import pyarrow.parquet as pq

    salsa = wh["planted"]["salsa"]
    target = tmp_path / "top.parquet"
    args = ["report", "top-k", "--feature", salsa, "--format", "parquet", "-o", target, "-w", wh["dir"]]
    assert ok(args) == ""
    table = pq.read_table(target)
    records = json.loads(ok(["report", "top-k", "--feature", salsa, "--json", "-w", wh["dir"]]))
    assert table.column_names == list(records[0])
    assert table.column("left_context").to_pylist() == [r["left_context"] for r in records]
    assert str(table.schema.field("value").type) == "float"
    fail(["report", "top-k", "--feature", salsa, "--format", "parquet", "-w", wh["dir"]], ExitCode.USAGE)
    target2 = tmp_path / "hist.parquet"
    ok(["report", "feature", "--feature", salsa, "--section", "histogram", "--format", "parquet",
        "-o", target2, "-w", wh["dir"]])
    assert pq.read_table(target2).num_rows == 20


def test_output_file(wh, tmp_path):
    salsa = wh["planted"]["salsa"]
    target = tmp_path / "card.html"
    args = ["report", "feature", "--feature", salsa, "--format", "html", "-o", target, "-w", wh["dir"]]
    assert ok(args) == ""
    assert target.read_text(encoding="utf-8") == ok(
        ["report", "feature", "--feature", salsa, "--format", "html", "-w", wh["dir"]]
    )
    fail(["report", "stars", "--feature", salsa, "-o", tmp_path / "no" / "such" / "dir.csv", "--csv",
          "-w", wh["dir"]], ExitCode.USAGE)


def test_html_is_self_contained(wh):
    salsa = wh["planted"]["salsa"]
    page = ok(["report", "feature", "--feature", salsa, "--format", "html", "-w", wh["dir"]])
    assert page.startswith("<!DOCTYPE html>")
    assert re.search(r'<span class="t q" style="[^"]+" title="[0-9.]+"> salsa</span>', page)
    assert "<svg" in page and '<rect class="bar"' in page
    assert "<script" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page


def test_show_sql(wh):
    out = ok(["report", "top-k", "--show-sql"])
    assert out == (ROOT / "sql" / "reports" / "top-k.sql").read_text(encoding="utf-8")


def test_review_without_tokens(wh):
    doc = json.loads(ok(["report", "review", "--review-id", wh["no_tokens"], "--json", "-w", wh["dir"]]))
    assert doc["review"][0]["n_tokens"] == 0 and doc["features"] == []
    assert "(no rows)" in ok(["report", "review", "--review-id", wh["no_tokens"], "-w", wh["dir"]])


def test_warehouse_from_environment(wh):
    one_star = wh["planted"]["one_star"]
    out = ok(["report", "stars", "--feature", one_star, "--csv"], SAEWH_WAREHOUSE=str(wh["dir"]))
    assert out == (GOLDEN / "stars.csv").read_text(encoding="utf-8")


# ---------------------------------------------------------------- errors and exit codes


def test_unknown_feature(wh):
    for f in (N_LATENTS, -1, 10**9):
        for report in ("top-k", "feature", "stars"):
            err = fail(["report", report, "--feature", f, "-w", wh["dir"]], ExitCode.NOT_FOUND)
            assert f"unknown feature {f}" in err and f"0..{N_LATENTS - 1}" in err


def test_unknown_review_and_token(wh):
    err = fail(["report", "review", "--review-id", "no-such-review", "-w", wh["dir"]], ExitCode.NOT_FOUND)
    assert "no-such-review" in err
    err = fail(["report", "token", "--token", "salsa", "-w", wh["dir"]], ExitCode.NOT_FOUND)
    assert "did you mean ' salsa'" in err
    fail(["report", "token", "--token", "qqqzzz", "-w", wh["dir"]], ExitCode.NOT_FOUND)


def test_missing_or_not_a_warehouse(wh, tmp_path):
    fail(["report", "top-k", "--feature", 1, "-w", tmp_path / "nope"], ExitCode.WAREHOUSE)
    fail(["report", "top-k", "--feature", 1, "-w", tmp_path], ExitCode.WAREHOUSE)
    fail(["report", "top-k", "--feature", 1], ExitCode.WAREHOUSE)  # ./warehouse-data does not exist here
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "manifest.json").write_text("{not json")
    (fake / "warehouse.duckdb").write_text("not a database")
    fail(["report", "top-k", "--feature", 1, "-w", fake], ExitCode.WAREHOUSE)
    fail(["info", "-w", fake], ExitCode.WAREHOUSE)
    (fake / "manifest.json").write_text('{"sae": {"n_latents": 10}}')
    fail(["report", "top-k", "--feature", 1, "-w", fake], ExitCode.WAREHOUSE)
    fail(["sql", "SELECT 1", "-w", fake], ExitCode.WAREHOUSE)
    fail(["sql", "SELECT 1", "-w", tmp_path / "nope"], ExitCode.WAREHOUSE)


@pytest.mark.parametrize(
    "args",
    [
        ["top-k", "--feature", "abc"],
        ["top-k"],
        ["top-k", "--feature", 1, "--k", 0],
        ["top-k", "--feature", 1, "--k", "many"],
        ["top-k", "--feature", 1, "--before", -1],
        ["top-k", "--feature", 1, "--bogus"],
        ["top-k", "--feature", 1, "--format", "xml"],
        ["top-k", "--feature", 1, "--csv", "--json"],
        ["top-k", "--feature", 1, "--format", "html", "--csv"],
        ["top-k", "--feature", 1, "--format", "parquet"],
        ["feature", "--feature", 1, "--section", "nope"],
        ["feature", "--feature", 1, "--bins", 0],
        ["star-features", "--stars", 6],
        ["star-features", "--stars", 0],
        ["star-features"],
        ["star-features", "--stars", 1, "--min-reviews", 0],
        ["features", "--sort", "bogus"],
        ["features", "--dense-above", 2],
        ["features", "--limit", -1],
        ["review"],
        ["token"],
        ["no-such-report"],
    ],
)
def test_bad_option_values_are_usage_errors(wh, args):
    fail(["report", *args, "-w", wh["dir"]], ExitCode.USAGE)


def test_every_report_has_help_and_is_listed(wh):
    reports = load_reports()
    assert {"top-k", "feature", "stars", "star-features", "review", "token", "features"} <= set(reports)
    listing = ok(["report", "--help"], COLUMNS="200")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name, rep in reports.items():
        assert rep.description and rep.description.endswith("."), name
        assert name in listing and rep.description in listing, name
        for p in rep.params:
            assert p.help, f"{name}: --{p.name} has no help"
        shown = re.search(rf"saewh report {re.escape(name)}(?![\w-])", readme)
        assert shown, f"README lacks `saewh report {name}`"
        help_text = ok(["report", name, "--help"], COLUMNS="200")
        for p in rep.params:
            assert "--" + p.name.replace("_", "-") in help_text


# ---------------------------------------------------------------- saewh sql and info


def test_sql_runs_queries(wh):
    query = "SELECT feature, n_active FROM features ORDER BY feature LIMIT 2"
    out = ok(["sql", query, "--csv", "-w", wh["dir"]])
    assert out.splitlines()[0] == "feature,n_active" and len(out.splitlines()) == 3
    salsa = wh["planted"]["salsa"]
    rows = json.loads(ok(["sql", f"FROM top_k({salsa}, 2)", "--json", "-w", wh["dir"]]))
    assert [r["rank"] for r in rows] == [1, 2]
    assert ok(["sql", "DESCRIBE reviews", "-w", wh["dir"]]).startswith("column_name")
    assert ok(["sql", "-", "--csv", "-w", wh["dir"]], input="SELECT ' salsa' AS t") == "t\n salsa\n"


@pytest.mark.parametrize(
    "query",
    [
        "COPY (SELECT 1) TO '{tmp}/out.csv'",
        "COPY features TO '{tmp}/out.parquet' (FORMAT parquet)",
        "EXPORT DATABASE '{tmp}/export'",
        "ATTACH '{tmp}/other.duckdb' AS other",
        "INSTALL httpfs",
        "LOAD httpfs",
        "CREATE TABLE t AS SELECT 1",
        "CREATE TEMP TABLE t AS SELECT 1",
        "INSERT INTO features SELECT * FROM features",
        "SET threads = 1",
        "PRAGMA enable_profiling",
        "CALL checkpoint()",
        "SELECT 1; COPY (SELECT 1) TO '{tmp}/out2.csv'",
    ],
)
def test_sql_refuses_writes(wh, tmp_path, query):
    err = fail(["sql", query.format(tmp=tmp_path), "-w", wh["dir"]], ExitCode.QUERY)
    assert "refused" in err or "one statement" in err
    assert list(tmp_path.iterdir()) == []


def test_sql_errors_are_query_errors(wh):
    fail(["sql", "SELECT * FROM no_such_table", "-w", wh["dir"]], ExitCode.QUERY)
    fail(["sql", "SELEC 1", "-w", wh["dir"]], ExitCode.QUERY)


def test_info(wh):
    text = ok(["info", "-w", wh["dir"]])
    assert "4,096 latents" in text and "activations" in text and "total" in text
    doc = json.loads(ok(["info", "--json", "-w", wh["dir"]]))
    assert doc["sae"]["n_latents"] == N_LATENTS
    assert doc["tables"]["reviews"]["rows"] == 300
    assert json.loads(ok(["info", "--format", "json", "-w", wh["dir"]])) == doc


# ---------------------------------------------------------------- start-up


def test_help_and_reports_do_not_import_the_etl(wh):
    code = (
        "import sys\n"
        "from warehouse.cli import app\n"
        "try:\n"
        "    app(sys.argv[1:])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "heavy = sorted(m for m in ('h5py', 'transformers', 'tokenizers', 'etl.build', 'etl.synth')"
        " if m in sys.modules)\n"
        "print(heavy, file=sys.stderr)\n"
    )
    salsa = wh["planted"]["salsa"]
    for args in (["--help"], ["report", "--help"],
                 ["report", "feature", "--feature", str(salsa), "-w", str(wh["dir"])],
                 ["report", "review", "--review-id", wh["review"], "--json", "-w", str(wh["dir"])],
                 ["sql", "SELECT 1", "-w", str(wh["dir"])]):
        proc = subprocess.run(
            [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == "[]", (args, proc.stderr)


# ---------------------------------------------------------------- the browser


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.mark.browser
def test_feature_card_renders_in_headless_chromium(wh, tmp_path):
    browser = _chromium()
    if browser is None:
        message = "chromium is not installed (.ci/run installs Debian's chromium package)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    salsa = wh["planted"]["salsa"]
    page = tmp_path / "card.html"
    ok(["report", "feature", "--feature", salsa, "--format", "html", "-o", page, "-w", wh["dir"]])
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    proc = subprocess.run(
        [browser, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert "<title>Feature " + str(salsa) + "</title>" in dom
    assert re.search(r'<svg[^>]*class="bars"', dom) and dom.count('<rect class="bar"') >= 20
    assert "activation value (bin start)" in dom and "(bar: " not in dom  # axes in words
    assert '<line class="ref"' in dom  # lift = 1
    assert re.search(r'class="headline">[0-9,]+ activations \([0-9.]+% of tokens\)', dom)
    examples = dom[dom.index('<section id="examples">'):dom.index('<section id="samples">')]
    samples = dom[dom.index('<section id="samples">'):]
    # every token of every window is shaded by the feature's exact value on it: checked
    # against the activations and tokens tables directly (no macro)
    con = duckdb.connect(str(wh["dir"] / "warehouse.duckdb"), read_only=True)
    try:
        top = [r[0] for r in con.execute(
            "SELECT token_pos FROM activations WHERE feature = $f ORDER BY value DESC, token_pos LIMIT 10",
            {"f": salsa}).fetchall()]
        expected = []
        for t in top:
            expected.append(con.execute(
                "SELECT list(coalesce(a.value, 0)::FLOAT ORDER BY w.position) FROM tokens c "
                "JOIN tokens w ON w.review_idx = c.review_idx AND w.position BETWEEN c.position - 20 "
                "AND c.position + 10 LEFT JOIN activations a ON a.token_pos = w.token_pos "
                "AND a.feature = $f WHERE c.token_pos = $t", {"f": salsa, "t": t}).fetchone()[0])
        n_samples = con.execute("SELECT count(*) FROM interval_samples($f, n := 2, intervals := 5)",
                                {"f": salsa}).fetchone()[0]
    finally:
        con.close()
    rows = re.findall(r'<td class="shaded">(.*?)</td>', examples)
    assert len(rows) == 10
    for row, values in zip(rows, expected):
        titles = re.findall(r'<span class="t[^"]*"[^>]* title="([^"]*)"', row)
        assert titles == [float32_text(v) for v in values]
        shaded = re.findall(r'<span class="t[^"]*" style="background:rgba\(255,122,0,([0-9.]+)\)"', row)
        assert len(shaded) == sum(1 for v in values if v > 0) >= 1
        assert re.search(r'<span class="t q" style="[^"]+" title="[^"]+">\s?salsa</span>', row)
    # the interval samples beside them, shaded the same way
    assert samples.count('<span class="t q"') == n_samples > 0
    shot = tmp_path / "card.png"
    proc = subprocess.run(
        [browser, *flags, "--window-size=1200,1600", f"--screenshot={shot}", page.as_uri()],
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0 and shot.is_file() and shot.stat().st_size > 10_000, proc.stderr[-2000:]
    # the shading is on screen: pixels of the strongest shade (the activating tokens)
    orange = sum(1 for r, g, b in _png_pixels(shot) if r > 235 and 105 < g < 140 and b < 40)
    assert orange > 500, orange


def _png_pixels(path: Path):
    """The RGB pixels of an 8-bit, non-interlaced RGB/RGBA PNG (Chromium's screenshots)."""
    import struct
    import zlib

    data = path.read_bytes()
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride = zlib.decompress(idat), width * channels
    prev = bytearray(stride)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        for x in range(0, stride, channels):
            yield line[x], line[x + 1], line[x + 2]
        prev = line
