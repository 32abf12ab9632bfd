"""Unit tests of the renderer and the report-file parser (no warehouse needed)."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.cells import cell_len

from warehouse.render import (
    Section,
    float32_text,
    render_sections,
    render_table,
    truncate_end,
    truncate_start,
)
from warehouse.reports import UsageError, validate
from warehouse.sqlfiles import parse_sql

KWIC_COLS = ["rank", "value", "left_context", "token", "right_context"]
KWIC_TYPES = ["BIGINT", "FLOAT", "VARCHAR", "VARCHAR", "VARCHAR"]


def _f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_float32_text_round_trips(x):
    text = float32_text(x)
    assert _f32(float(text)) == _f32(x)
    assert len(text) <= len(repr(x)) + 1


def test_float32_text_is_short():
    assert float32_text(_f32(9.9991)) == "9.9991"
    assert float32_text(_f32(0.1)) == "0.1"
    assert float32_text(1.0) == "1"


@given(st.text(max_size=60), st.integers(min_value=1, max_value=40))
def test_truncation_fits_and_keeps_the_right_end(text, width):
    end, start = truncate_end(text, width), truncate_start(text, width)
    assert cell_len(end) <= width and cell_len(start) <= width
    if cell_len(text) <= width:
        assert end == start == text
    else:
        assert end.endswith("…") and text.startswith(end[:-1])
        assert start.startswith("…") and text.endswith(start[1:])


def test_truncation_counts_wide_characters():
    text = "chips and salsa 🌶️🌮 yum"
    assert cell_len(truncate_end(text, 19)) <= 19
    assert truncate_start("🌮🌮🌮 salsa", 9) == "…🌮 salsa"
    assert truncate_start("🌮🌮🌮 salsa", 8) == "… salsa"


def _kwic_rows():
    return [
        (1, 9.5, "A very long left context that goes on and on. I could eat their pineapple", " salsa",
         " by the gallon.\nWe split the nachos and more and more"),
        (2, 8.25, "short", " salsa", ""),
        (3, 7.0, None, None, None),  # a review whose tokens could not be aligned
    ]


@pytest.mark.parametrize("width", [40, 60, 80, 120])
def test_kwic_table(width):
    out = render_table(KWIC_COLS, _kwic_rows(), width, types=KWIC_TYPES)
    lines = out.splitlines()
    assert all(cell_len(line) <= width for line in lines)
    assert lines[0].split() == ["rank", "value", "context"]
    row1, row2, row3 = lines[2:]
    assert "ineapple [salsa]" in row1 and "…" in row1
    shown = row1.split(" [salsa]")[0].split("…")[-1]
    assert len(shown) >= 8 and _kwic_rows()[0][2].endswith(shown)
    assert "\n" not in row1 and ("⏎" in row1 or width < 80)
    assert row2.rstrip().endswith("short [salsa]")
    assert row3.rstrip().endswith("NULL")
    # The tokens line up (the left context is right-aligned).
    assert row1.index("[salsa]") == row2.index("[salsa]")


def test_colour_highlights_the_token_only_when_asked():
    plain = render_table(KWIC_COLS, _kwic_rows(), 100, types=KWIC_TYPES)
    coloured = render_table(KWIC_COLS, _kwic_rows(), 100, types=KWIC_TYPES, color=True)
    assert "\x1b[" not in plain
    assert " \x1b[1;33msalsa\x1b[0m" in coloured


def test_control_characters_never_reach_the_terminal():
    out = render_table(["text"], [("a\x1b[31mred\tb\r\nc\x07",)], 80)
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    assert "a\ufffd[31mred b⏎c\ufffd" in out


def test_vertical_and_bars():
    s = Section("summary", ["feature", "text"], ["INTEGER", "VARCHAR"],
                [(7, "one two three four five six seven eight nine ten\n\nnew paragraph")],
                display=("vertical",))
    out = render_sections([s], "table", width=40)
    assert out.splitlines()[0].split() == ["feature", "7"]
    assert all(cell_len(line) <= 40 for line in out.splitlines())
    assert "new paragraph" in out and "⏎" not in out
    h = Section("histogram", ["lo", "n"], ["DOUBLE", "BIGINT"], [(0.0, 1), (0.5, 4), (1.0, 0)],
                display=("bars n lo",))
    lines = render_sections([h], "table", width=60).splitlines()
    assert lines[3].endswith("█" * 30) and lines[2].count("█") in (7, 8) and "█" not in lines[4]


def test_formats_of_several_sections():
    a = Section("a", ["x"], ["INTEGER"], [(1,), (2,)])
    b = Section("b", ["v"], ["FLOAT"], [(_f32(0.1),)])
    assert json.loads(render_sections([a, b], "json")) == {"a": [{"x": 1}, {"x": 2}], "b": [{"v": 0.1}]}
    lines = render_sections([a, b], "jsonl").splitlines()
    assert json.loads(lines[-1]) == {"section": "b", "v": 0.1}
    assert render_sections([b], "csv") == "v\n0.1\n"
    with pytest.raises(ValueError):
        render_sections([a, b], "csv")
    table = render_sections([a, b], "table", width=40)
    assert table.startswith("a\n") and "\nb\n" in table


def test_csv_keeps_nulls_and_full_text():
    s = Section("q", ["t", "n"], ["VARCHAR", "DOUBLE"], [("line1\nline2, with comma", None)])
    assert render_sections([s], "csv") == 't,n\n"line1\nline2, with comma",\n'
    assert json.loads(render_sections([s], "json")) == [{"t": "line1\nline2, with comma", "n": None}]


def test_html_escapes_and_highlights():
    s = Section("examples", KWIC_COLS, KWIC_TYPES,
                [(1, 2.5, "<b>left</b> & ", " salsa", " right\n")])
    page = render_sections([s], "html", title="t <x>")
    assert "<b>left" not in page and "&lt;b&gt;left&lt;/b&gt; &amp; " in page
    assert '<mark class="tok">salsa</mark>' in page and "<title>t &lt;x&gt;</title>" in page
    assert "right⏎" in page


REPORT = """\
-- name: demo
-- description: A demo report.
-- param: feature INTEGER -- a feature
-- param: k INTEGER(1..100) = 20 -- how many
-- param: x DOUBLE(0..) = NULL -- optional
-- param: sort VARCHAR(a|b) = a -- order
-- param: flag BOOLEAN = false -- a flag

-- statement: one -- first section
-- display: vertical
SELECT $feature AS f, $k AS k;

-- statement: two
-- display: bars n lo
SELECT $sort AS s WHERE $flag OR $x IS NULL;
"""


def test_parse_report_file():
    rep = parse_sql(REPORT)
    assert rep.name == "demo" and rep.description == "A demo report."
    p = {x.name: x for x in rep.params}
    assert p["feature"].required and not p["k"].required
    assert (p["k"].minimum, p["k"].maximum, p["k"].default_value()) == (1, 100, 20)
    assert (p["x"].minimum, p["x"].maximum, p["x"].default_value()) == (0.0, None, None)
    assert p["sort"].choices == ("a", "b") and p["sort"].default_value() == "a"
    assert p["flag"].default_value() is False and not p["flag"].required
    one, two = rep.statements
    assert (one.name, one.caption, one.display, one.params) == ("one", "first section", ("vertical",),
                                                                 ("feature", "k"))
    assert one.sql == "SELECT $feature AS f, $k AS k"
    assert (two.name, two.display, two.params) == ("two", ("bars n lo",), ("sort", "flag", "x"))


def test_single_statement_file_and_bad_headers():
    rep = parse_sql("-- name: q\n-- description: Q.\nSELECT 1;\n")
    assert [s.name for s in rep.statements] == ["q"] and rep.statements[0].sql.endswith("SELECT 1")
    with pytest.raises(ValueError):
        parse_sql("-- name: q\nSELECT 1")
    with pytest.raises(ValueError):
        parse_sql("-- name: q\n-- description: Q.\n-- param: k FANCY = 1 -- k\nSELECT $k")


def test_validate():
    rep = parse_sql(REPORT)
    validate(rep, {"feature": 1, "k": 20, "x": None, "sort": "a", "flag": False})
    for bad in ({"feature": None}, {"feature": 1, "k": 0}, {"feature": 1, "x": -1.0},
                {"feature": 1, "sort": "c"}):
        with pytest.raises(UsageError):
            validate(rep, bad)


def test_columns_past_the_edge_are_named():
    """A table too wide even at its columns' narrowest names what it cut (the CLI says so
    on stderr), and the width it needs; a table that fits cuts nothing."""
    cols = ["feature", *[f"statistic_{i}" for i in range(8)]]
    rows = [(i, *[1000.0 + i * j for j in range(8)]) for i in range(3)]
    cut: list[str] = []
    out = render_table(cols, rows, 60, types=["INTEGER"] + ["DOUBLE"] * 8, cut=cut)
    assert all(cell_len(line) <= 60 for line in out.splitlines())
    *names, needed = cut
    header = out.splitlines()[0]
    assert names and all(n in cols for n in names) and int(needed) > 60
    assert names[-1] == "statistic_7" and "statistic_7" not in header
    again: list[str] = []
    render_table(cols, rows, int(needed), types=["INTEGER"] + ["DOUBLE"] * 8, cut=again)
    assert again == []
