"""Rendering result sets: table (terminal), csv, json, jsonl, parquet, html.

`render_sections` takes the `Section`s of a report (or of `saewh sql`) and returns
the text (or, for parquet, writes the file).  Only the terminal table shortens
anything: it fits the width, cuts a left context from its start and a right
context from its end, and shows newlines as ⏎; csv/json/jsonl/parquet/html carry
full values.  Output is deterministic: no timestamps, no paths.

Display conventions, driven by column names and `-- display:` hints:
- `left_context`, `token`, `right_context` columns are shown as one keyword-in-context
  column, the token highlighted (bold yellow on a colour terminal, `[...]` otherwise,
  `<mark>` in html);
- `-- display: vertical`: one `name  value` line per column (a record card);
- `-- display: bars COLUMN [LABEL]`: a bar per row (a histogram); html draws an SVG.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from warehouse.render.html import _write_html
from warehouse.render.output import Output, _BinaryOutput
from warehouse.render.terminal import (
    _BOLD,
    _style,
    fill_caption,
    render_table,
    terminal_width,
    truncate_end,
    truncate_start,
    use_color,
)
from warehouse.render.textformats import (
    FORMULA_STARTS,
    _write_csv,
    _write_json_array,
    _write_jsonl,
    records,
    render_csv,
    spreadsheet_safe,
)
from warehouse.render.values import (
    ELLIPSIS,
    FORMATS,
    KWIC,
    NEWLINE,
    NUMERIC_PREFIXES,
    Section,
    csv_value,
    display_value,
    float32_text,
    float32_texts,
    json_value,
)

__all__ = [
    "ELLIPSIS",
    "FORMATS",
    "FORMULA_STARTS",
    "KWIC",
    "NEWLINE",
    "NUMERIC_PREFIXES",
    "Omitted",
    "Output",
    "Section",
    "csv_value",
    "display_value",
    "fill_caption",
    "float32_text",
    "float32_texts",
    "json_value",
    "records",
    "render",
    "render_csv",
    "render_sections",
    "render_table",
    "spreadsheet_safe",
    "terminal_width",
    "truncate_end",
    "truncate_start",
    "use_color",
    "write_parquet",
    "write_sections",
]


# ---------------------------------------------------------------- entry points


@dataclass
class Omitted:
    """Rows of a table section the terminal table left out (counted, not kept)."""

    section: str
    shown: int
    total: int
    columns: tuple[str, ...] = ()  # columns cut off at the terminal's edge
    needed: int = 0  # the width they need


def _write_table(
    section: Section, out: Output, *, width: int | None, color: bool, max_rows: int
) -> tuple[Omitted | None, tuple | None]:
    """The first `max_rows` rows (0: all) as a terminal table; the rest only counted.
    Returns what was left out and the first row."""
    chunks = section.chunks()
    rows: list[tuple] = []
    for chunk in chunks:
        rows.extend(chunk)
        if max_rows and len(rows) > max_rows:
            break
    shown = rows[:max_rows] if max_rows else rows
    cut: list[str] = []
    out.write(render_table(section.columns, shown, width, types=section.types, display=section.display,
                           color=color, cut=cut))
    columns, needed = (tuple(cut[:-1]), int(cut[-1])) if cut else ((), 0)
    first = rows[0] if rows else None
    if len(shown) == len(rows):
        return (Omitted(section.name, len(shown), len(shown), columns, needed) if columns else None), first
    out.flush()  # the rows shown are on screen while the rest is counted
    total = len(rows) + sum(len(chunk) for chunk in chunks)
    return Omitted(section.name, len(shown), total, columns, needed), first


def write_sections(
    sections: Iterable[Section],
    fmt: str,
    out: Output,
    *,
    multi: bool,
    title: str = "",
    subtitle: str = "",
    width: int | None = None,
    color: bool = False,
    max_rows: int = 0,
    csv_safe: bool = False,
) -> list[Omitted]:
    """Write result sets in `fmt` (every format but parquet, see `write_parquet`) to `out`
    as their rows stream; returns what the terminal table left out (`max_rows`).

    One section writes as itself (a JSON array, one CSV table); several (`multi`) as a
    JSON object of arrays by section name, JSONL lines tagged with `"section"`, headed
    terminal tables, or one html page.  CSV holds one section only.  A section without
    columns (a statement that returns no result set) writes nothing.
    """
    omitted: list[Omitted] = []
    if fmt == "table":
        context: dict[str, Any] | None = None
        for i, s in enumerate(x for x in sections if x.columns):
            if i:
                out.write("\n")
            if multi:
                caption = fill_caption(s.caption, context or {}) if s.caption else ""
                out.write(_style(s.name + (f" — {caption}" if caption else ""), _BOLD, color) + "\n")
            cut, first = _write_table(s, out, width=width, color=color, max_rows=max_rows)
            if context is None:  # the first section (a summary) names what later captions cite
                context = dict(zip(s.columns, first)) if first else {}
            if cut is not None:
                omitted.append(cut)
    elif fmt == "csv":
        if multi:
            raise ValueError("csv holds one result set; choose a section")
        for s in sections:
            if s.columns:
                _write_csv(s, out, csv_safe)
    elif fmt == "json":
        if multi:
            out.write("{")
            for i, s in enumerate(sections):
                out.write(("," if i else "") + "\n  " + json.dumps(s.name, ensure_ascii=False) + ": ")
                _write_json_array(s, out, level=1)
            out.write("\n}\n")
        else:
            for s in sections:
                if s.columns:
                    _write_json_array(s, out, level=0)
                    out.write("\n")
    elif fmt == "jsonl":
        for s in sections:
            _write_jsonl(s, out, tag=multi)
    elif fmt == "html":
        _write_html(sections, out, multi, title or "saewh", subtitle)
    else:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return omitted


def render_sections(
    sections: list[Section],
    fmt: str,
    *,
    title: str = "",
    subtitle: str = "",
    width: int | None = None,
    color: bool = False,
) -> str:
    """`write_sections` into a string (every row: no `max_rows`)."""
    out = Output(io.StringIO())
    write_sections(sections, fmt, out, multi=len(sections) > 1, title=title, subtitle=subtitle,
                   width=width, color=color)
    return out.getvalue()


# A Parquet row group gathers record batches up to this many bytes or rows: large
# enough for good row groups of narrow rows, small enough to bound memory with wide ones.
_ROW_GROUP_BYTES = 16 << 20
_ROW_GROUP_ROWS = 1 << 20


def write_parquet(section: Section, out: Output) -> None:
    """Write one section as Parquet (full values, DuckDB's column types), batch by batch."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = section.arrow
    if source is None:
        raise ValueError("parquet output needs the result as Arrow (run with arrow=True)")
    if isinstance(source, pa.Table):
        source = source.to_reader()
    writer = pq.ParquetWriter(_BinaryOutput(out), source.schema, compression="zstd")
    try:
        pending: list = []
        size = rows = 0
        for batch in source:
            pending.append(batch)
            size += batch.nbytes
            rows += batch.num_rows
            if size >= _ROW_GROUP_BYTES or rows >= _ROW_GROUP_ROWS:
                writer.write_table(pa.Table.from_batches(pending, source.schema), row_group_size=rows)
                pending, size, rows = [], 0, 0
        if pending:
            writer.write_table(pa.Table.from_batches(pending, source.schema), row_group_size=rows)
    finally:
        writer.close()


def render(columns: list[str], rows: list[tuple], fmt: str = "table") -> str:
    """Render plain rows in one of the text FORMATS (no column types known)."""
    return render_sections([Section("query", columns, [], rows)], fmt)
