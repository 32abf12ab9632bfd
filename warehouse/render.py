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

import csv
import html
import io
import json
import math
import os
import shutil
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

FORMATS = ("table", "csv", "json", "jsonl", "parquet", "html")
KWIC = ("left_context", "token", "right_context")
NUMERIC_PREFIXES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
                    "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL")
ELLIPSIS = "…"
NEWLINE = "⏎"

# ANSI styles (only ever emitted when colour is on).
_BOLD, _TOKEN, _DIM, _RESET = "\x1b[1m", "\x1b[1;33m", "\x1b[2m", "\x1b[0m"


@dataclass
class Section:
    """One result set, with what the renderer needs to show it."""

    name: str
    columns: list[str]
    types: list[str]
    rows: list[tuple]
    caption: str = ""
    display: tuple[str, ...] = ()
    arrow: Any = field(default=None, repr=False)  # a pyarrow.Table, only for parquet


# ---------------------------------------------------------------- values


def float32_text(x: float) -> str:
    """The shortest decimal that reads back as the same float32 (DuckDB prints FLOAT so)."""
    target = struct.unpack("f", struct.pack("f", x))[0]
    for digits in range(1, 10):
        text = f"{x:.{digits}g}"
        if struct.unpack("f", struct.pack("f", float(text)))[0] == target:
            # '%g' turns 110 into '1.1e+02'; Python's repr of the same value may be
            # shorter and is plainer: take the shorter, preferring no exponent on a tie.
            return min((text, repr(float(text))), key=lambda t: (len(t), "e" in t))
    return repr(x)


def _is_float32(typ: str | None) -> bool:
    return typ == "FLOAT"


def _is_numeric(typ: str | None, value: Any) -> bool:
    if typ:
        return typ.startswith(NUMERIC_PREFIXES) and "[" not in typ
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _finite(x: float) -> bool:
    return not (math.isnan(x) or math.isinf(x))


def json_value(value: Any, typ: str | None = None) -> Any:
    """A JSON-serializable value; FLOAT as its shortest float32 decimal, NaN/inf as null."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not _finite(value):
            return None
        return float(float32_text(value)) if _is_float32(typ) else value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    return str(value)


def csv_value(value: Any, typ: str | None = None) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return float32_text(value) if _is_float32(typ) and _finite(value) else repr(value)
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(json_value(value), ensure_ascii=False)
    return json_value(value, typ)


def display_value(value: Any, typ: str | None = None) -> str:
    """A short human form: FLOAT as float32, DOUBLE to 6 significant digits."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if _is_float32(typ) and _finite(value):
            return float32_text(value)
        return f"{value:.6g}"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(json_value(value), ensure_ascii=False)
    return str(json_value(value, typ))


# ---------------------------------------------------------------- cell widths


def _cell_len(text: str) -> int:
    from rich.cells import cell_len

    return cell_len(text)


def _clusters(text: str) -> list[str]:
    """Characters with their zero-width followers (combining marks, VS16, ZWJ sequences)."""
    out: list[str] = []
    join_next = False
    for ch in text:
        if out and (join_next or ch in "\u200d\ufe0f" or _cell_len(ch) == 0):
            out[-1] += ch
        else:
            out.append(ch)
        join_next = ch == "\u200d"
    return out


def _sanitize(text: str, newlines: bool = True) -> str:
    """No control characters reach the terminal; newlines become ⏎ (unless kept)."""
    out = []
    for ch in text:
        if ch == "\n":
            out.append("\n" if not newlines else NEWLINE)
        elif ch == "\t":
            out.append(" ")
        elif ch == "\r":
            continue
        elif ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0:
            out.append("\ufffd")
        else:
            out.append(ch)
    return "".join(out)


def truncate_end(text: str, width: int) -> str:
    """Fit `text` in `width` cells, cutting its end (marked with …)."""
    if _cell_len(text) <= width:
        return text
    if width <= 0:
        return ""
    out, used = [], 0
    for cl in _clusters(text):
        w = _cell_len(cl)
        if used + w > width - 1:
            break
        out.append(cl)
        used += w
    return "".join(out) + ELLIPSIS


def truncate_start(text: str, width: int) -> str:
    """Fit `text` in `width` cells, cutting its start (marked with …): keeps the end."""
    if _cell_len(text) <= width:
        return text
    if width <= 0:
        return ""
    out, used = [], 0
    for cl in reversed(_clusters(text)):
        w = _cell_len(cl)
        if used + w > width - 1:
            break
        out.append(cl)
        used += w
    return ELLIPSIS + "".join(reversed(out))


def _pad(text: str, width: int, right: bool = False) -> str:
    gap = " " * max(width - _cell_len(text), 0)
    return gap + text if right else text + gap


def _wrap(text: str, width: int) -> list[str]:
    """Word-wrap one paragraph to `width` cells (long words are cut hard)."""
    width = max(width, 1)
    lines: list[str] = []
    line, used = "", 0
    for word in text.split(" "):
        w = _cell_len(word)
        if line and used + 1 + w > width:
            lines.append(line)
            line, used = "", 0
        while w > width:  # a word longer than the line
            head = truncate_end(word, width + 1)[:-1] or word[:1]
            if line:
                lines.append(line)
                line, used = "", 0
            lines.append(head)
            word = word[len(head):]
            w = _cell_len(word)
        line, used = (f"{line} {word}", used + 1 + w) if line else (word, w)
    lines.append(line)
    return lines


# ---------------------------------------------------------------- terminal table


def _style(text: str, code: str, color: bool) -> str:
    return f"{code}{text}{_RESET}" if color and text else text


def _bars_hint(display: Sequence[str]) -> tuple[str, str | None] | None:
    for hint in display:
        parts = hint.split()
        if parts and parts[0] == "bars" and len(parts) >= 2:
            return parts[1], parts[2] if len(parts) > 2 else None
    return None


_EIGHTHS = " ▏▎▍▌▋▊▉█"


def _bar(value: Any, top: float, width: int) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not top or value <= 0:
        return ""
    if not _finite(float(value)):
        return ""
    eighths = round(min(value / top, 1.0) * width * 8)
    full, part = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[part] if part else "")


@dataclass
class _Col:
    header: str
    kind: str  # "plain", "kwic" or "bar"
    index: int = -1  # source column (plain, bar)
    numeric: bool = False
    natural: int = 0
    minimum: int = 0
    width: int = 0


def _token_parts(token: str) -> tuple[str, str, str]:
    """(leading whitespace, visible token, trailing whitespace) of a token."""
    core = token.strip(" ")
    if not core:
        return "", token, ""
    lead = token[: len(token) - len(token.lstrip(" "))]
    trail = token[len(token.rstrip(" ")):]
    return lead, core, trail


def _kwic(left: Any, token: Any, right: Any, width: int, left_width: int, color: bool) -> str:
    """One keyword-in-context cell: left context right-aligned in `left_width` cells."""
    if token is None:
        return _style("NULL", _DIM, color)
    lead, core, trail = _token_parts(_sanitize(str(token)))
    shown = f"{lead}{core}{trail}" if color else f"{lead}[{core}]{trail}"
    left_text = truncate_start(_sanitize(left or ""), left_width)
    rest = max(width - left_width - _cell_len(shown), 0)
    right_text = truncate_end(_sanitize(right or ""), rest)
    tok = f"{lead}{_style(core, _TOKEN, color)}{trail}" if color else shown
    return _pad(left_text, left_width, right=True) + tok + right_text


def render_table(
    columns: list[str],
    rows: list[tuple],
    width: int | None = None,
    *,
    types: list[str] | None = None,
    display: Sequence[str] = (),
    color: bool = False,
) -> str:
    """A plain-text table that fits `width` cells (default: the terminal's width)."""
    width = width or terminal_width()
    if not columns:
        return ""
    types = types or [None] * len(columns)  # type: ignore[list-item]
    if "vertical" in display:
        return _render_vertical(columns, rows, width, types, color)
    cols = _layout_columns(columns, rows, types, display)
    sep = "  "
    budget = max(width - len(sep) * (len(cols) - 1), 1)
    for c in cols:
        c.width = c.natural
    # Shrink the widest shrinkable column until the table fits.
    while sum(c.width for c in cols) > budget:
        candidates = [c for c in cols if c.width > c.minimum]
        if not candidates:
            break
        c = max(candidates, key=lambda c: c.width)
        c.width = max(c.minimum, c.width - (sum(x.width for x in cols) - budget))

    kwic_idx = [columns.index(k) for k in KWIC] if all(k in columns for k in KWIC) else None
    left_width = 0
    for c in cols:
        if c.kind == "kwic" and kwic_idx:
            max_left = max((_cell_len(_sanitize(r[kwic_idx[0]] or "")) for r in rows), default=0)
            max_tok = max((_cell_len(_sanitize(r[kwic_idx[1]] or "")) + 2 for r in rows), default=0)
            max_right = max((_cell_len(_sanitize(r[kwic_idx[2]] or "")) for r in rows), default=0)
            left_width = min(max_left, max((c.width - max_tok) // 2, c.width - max_tok - max_right))
            left_width = max(left_width, 0)
    bar_tops: dict[int, float] = {}
    for c in cols:
        if c.kind == "bar":
            vals = [r[c.index] for r in rows if isinstance(r[c.index], (int, float)) and r[c.index]]
            bar_tops[c.index] = max([float(v) for v in vals if _finite(float(v))], default=0.0)

    def header_cell(c: _Col) -> str:
        text = truncate_end(c.header, c.width)
        return _pad(text, c.width, right=c.numeric)

    lines = [_style(sep.join(header_cell(c) for c in cols).rstrip(), _BOLD, color)]
    lines.append(sep.join("─" * c.width for c in cols))
    for r in rows:
        cells = []
        for c in cols:
            if c.kind == "kwic" and kwic_idx:
                text = _kwic(*(r[i] for i in kwic_idx), c.width, left_width, color)
                cells.append(_pad(text, c.width) if not color else text + " " * max(
                    c.width - _cell_len(_strip_ansi(text)), 0))
            elif c.kind == "bar":
                cells.append(_pad(_bar(r[c.index], bar_tops.get(c.index, 0.0), c.width), c.width))
            else:
                v = r[c.index]
                text = truncate_end(_sanitize(display_value(v, types[c.index])), c.width)
                padded = _pad(text, c.width, right=c.numeric)
                cells.append(_style(padded, _DIM, color) if v is None else padded)
        lines.append(sep.join(cells).rstrip())
    if not rows:
        lines.append("(no rows)")
    if not color:  # still too wide (a very narrow terminal): cut the lines
        lines = [truncate_end(line, width) for line in lines]
    return "\n".join(lines) + "\n"


def _strip_ansi(text: str) -> str:
    for code in (_BOLD, _TOKEN, _DIM, _RESET):
        text = text.replace(code, "")
    return text


def _layout_columns(columns, rows, types, display) -> list[_Col]:
    bars = _bars_hint(display)
    has_kwic = all(k in columns for k in KWIC)
    cols: list[_Col] = []
    for i, name in enumerate(columns):
        if has_kwic and name in KWIC:
            if name != "left_context":
                continue
            li, ti, ri = (columns.index(k) for k in KWIC)
            natural = max(
                [7]
                + [
                    _cell_len(_sanitize(r[li] or "")) + _cell_len(_sanitize(r[ti] or "")) + 2
                    + _cell_len(_sanitize(r[ri] or ""))
                    for r in rows
                ]
            )
            cols.append(_Col("context", "kwic", natural=natural, minimum=min(natural, 16)))
            continue
        numeric = _is_numeric(types[i], next((r[i] for r in rows if r[i] is not None), None))
        texts = [_sanitize(display_value(r[i], types[i])) for r in rows]
        natural = max([_cell_len(name)] + [_cell_len(t) for t in texts])
        minimum = natural if numeric else min(natural, 8)
        cols.append(_Col(name, "plain", i, numeric, natural, minimum))
        if bars and bars[0] == name:
            cols.append(_Col("", "bar", i, natural=30, minimum=8))
    return cols


def _render_vertical(columns, rows, width, types, color) -> str:
    key_width = max(_cell_len(c) for c in columns)
    value_width = max(width - key_width - 2, 20)
    blocks = []
    for r in rows:
        lines = []
        for name, value, typ in zip(columns, r, types):
            text = display_value(value, typ)
            wrapped: list[str] = []
            for para in _sanitize(text, newlines=False).split("\n"):
                wrapped.extend(_wrap(para, value_width))
            key = _style(_pad(name, key_width), _BOLD, color)
            for j, part in enumerate(wrapped):
                prefix = key if j == 0 else " " * key_width
                lines.append(f"{prefix}  {part}".rstrip())
        blocks.append("\n".join(lines))
    if not rows:
        return "(no rows)\n"
    return "\n\n".join(blocks) + "\n"


def terminal_width() -> int:
    """$COLUMNS, else the terminal's width, else 120."""
    return max(shutil.get_terminal_size((120, 24)).columns, 40)


def use_color(stream: Any) -> bool:
    """Colour only on a terminal, and never with $NO_COLOR set."""
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


# ---------------------------------------------------------------- csv / json


def render_csv(section: Section) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(section.columns)
    types = section.types or [None] * len(section.columns)
    w.writerows([[csv_value(v, t) for v, t in zip(r, types)] for r in section.rows])
    return buf.getvalue()


def records(section: Section) -> list[dict[str, Any]]:
    types = section.types or [None] * len(section.columns)
    return [
        {c: json_value(v, t) for c, v, t in zip(section.columns, r, types)} for r in section.rows
    ]


# ---------------------------------------------------------------- html

_CSS = """
:root { --fg: #1d2330; --muted: #5c6577; --line: #d9dde5; --bar: #4a78c2; --mark: #ffd54a; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
       margin: 2rem auto; max-width: 1100px; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin: 0 0 .2rem; }
h2 { font-size: 1.1rem; margin: 2rem 0 .2rem; border-bottom: 1px solid var(--line); }
p.caption, p.params { color: var(--muted); margin: .2rem 0 .6rem; }
table { border-collapse: collapse; width: auto; max-width: 100%; }
th, td { padding: .2rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top;
         text-align: left; }
th { font-weight: 600; white-space: nowrap; }
th.num { text-align: right; }
td { white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.null { color: var(--muted); }
table.kv th { text-align: left; color: var(--muted); font-weight: 500; }
table.kv td.num { text-align: left; }
td.text { white-space: pre-wrap; min-width: 40ch; max-width: 80ch; }
table.kwic { width: 100%; table-layout: auto; }
td.left, td.right { max-width: 0; width: 50%; font-family: ui-monospace, monospace; }
td.left > div { display: flex; justify-content: flex-end; overflow: hidden; white-space: pre; }
td.right > div { overflow: hidden; white-space: pre; text-overflow: ellipsis; }
td.tok { white-space: pre; padding: .2rem 0; font-family: ui-monospace, monospace; }
mark.tok { background: var(--mark); font-weight: 700; border-radius: 2px; padding: 0 1px; }
svg.bars { display: block; margin: .4rem 0; }
svg.bars rect.bar { fill: var(--bar); }
svg.bars text { font: 11px system-ui, sans-serif; fill: var(--muted); }
details { margin-top: .3rem; } summary { cursor: pointer; color: var(--muted); }
p.empty { color: var(--muted); font-style: italic; }
"""


def _h(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _html_cell(value: Any, typ: str | None) -> str:
    text = display_value(value, typ)
    if value is None:
        return f'<td class="null">{_h(text)}</td>'
    if _is_numeric(typ, value):
        return f'<td class="num">{_h(text)}</td>'
    if isinstance(value, str) and len(value) > 80:
        return f'<td class="text">{_h(text)}</td>'  # long text: wrapped, newlines kept
    return f"<td>{_h(text.replace(chr(10), NEWLINE))}</td>"


def _html_kwic(section: Section) -> str:
    li, ti, ri = (section.columns.index(k) for k in KWIC)
    others = [i for i, c in enumerate(section.columns) if c not in KWIC]
    head = _html_head(section, others)
    out = [f'<table class="kwic"><thead><tr>{head}<th colspan="3">context</th></tr></thead><tbody>']
    for r in section.rows:
        cells = "".join(_html_cell(r[i], section.types[i] if section.types else None) for i in others)
        left = (r[li] or "").replace("\n", NEWLINE)
        right = (r[ri] or "").replace("\n", NEWLINE)
        if r[ti] is None:
            ctx = '<td class="null" colspan="3">NULL</td>'
        else:
            lead, core, trail = _token_parts(r[ti].replace("\n", NEWLINE))
            ctx = (
                f'<td class="left" title="{_h(left)}"><div><span>{_h(left)}</span></div></td>'
                f'<td class="tok">{_h(lead)}<mark class="tok">{_h(core)}</mark>{_h(trail)}</td>'
                f'<td class="right" title="{_h(right)}"><div>{_h(right)}</div></td>'
            )
        out.append(f"<tr>{cells}{ctx}</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _html_head(section: Section, indices: Sequence[int]) -> str:
    """Header cells; numeric columns' headers are right-aligned like their values."""
    out = []
    for i in indices:
        typ = section.types[i] if section.types else None
        first = next((r[i] for r in section.rows if r[i] is not None), None)
        style = ' class="num"' if _is_numeric(typ, first) else ""
        out.append(f"<th{style}>{_h(section.columns[i])}</th>")
    return "".join(out)


def _html_table(section: Section) -> str:
    types = section.types or [None] * len(section.columns)
    head = _html_head(section, range(len(section.columns)))
    body = "\n".join(
        "<tr>" + "".join(_html_cell(v, t) for v, t in zip(r, types)) + "</tr>" for r in section.rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def _html_vertical(section: Section) -> str:
    types = section.types or [None] * len(section.columns)
    blocks = []
    for r in section.rows:
        trs = "".join(
            f"<tr><th>{_h(c)}</th>{_html_cell(v, t)}</tr>" for c, v, t in zip(section.columns, r, types)
        )
        blocks.append(f'<table class="kv"><tbody>{trs}</tbody></table>')
    return "\n".join(blocks)


def _svg_bars(section: Section, value_col: str, label_col: str | None) -> str:
    """An inline SVG bar chart of `value_col`, one bar per row, labelled by `label_col`."""
    vi = section.columns.index(value_col)
    li = section.columns.index(label_col) if label_col in section.columns else 0
    lt = section.types[li] if section.types else None
    values = [r[vi] if isinstance(r[vi], (int, float)) and _finite(float(r[vi])) else 0 for r in section.rows]
    labels = [display_value(r[li], lt) for r in section.rows]
    if isinstance(section.rows[0][li], float):
        labels = [f"{r[li]:.3g}" for r in section.rows]
    top = max([float(v) for v in values] + [0.0])
    n = len(values)
    w, h, left, bottom, top_pad = 720, 220, 64, 36, 12
    plot_w, plot_h = w - left - 8, h - bottom - top_pad
    step = plot_w / n
    every = max(1, math.ceil(n / 12))
    parts = [
        f'<svg class="bars" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" role="img" aria-label="{_h(value_col)} by {_h(section.columns[li])}">',
        f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{w - 8}" y2="{top_pad + plot_h}" stroke="#999"/>',
        f'<text x="{left - 6}" y="{top_pad + 4}" text-anchor="end">{_h(f"{top:.4g}")}</text>',
        f'<text x="{left - 6}" y="{top_pad + plot_h}" text-anchor="end">0</text>',
    ]
    for i, (v, label) in enumerate(zip(values, labels)):
        bh = plot_h * float(v) / top if top > 0 and v > 0 else 0.0
        x = left + i * step
        parts.append(
            f'<rect class="bar" x="{x + step * 0.08:.1f}" y="{top_pad + plot_h - bh:.1f}" '
            f'width="{step * 0.84:.1f}" height="{bh:.1f}"><title>{_h(label)}: '
            f"{_h(display_value(v))}</title></rect>"
        )
        if i % every == 0:
            parts.append(
                f'<text x="{x + step / 2:.1f}" y="{top_pad + plot_h + 14}" text-anchor="middle">'
                f"{_h(label)}</text>"
            )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{h - 4}" text-anchor="middle">{_h(section.columns[li])} '
        f"(bar: {_h(value_col)})</text>"
    )
    parts.append("</svg>")
    return "\n".join(parts)


def _html_section(section: Section, heading: bool) -> str:
    out = []
    if heading:
        out.append(f'<section id="{_h(section.name)}">')
        out.append(f"<h2>{_h(section.name)}</h2>")
        if section.caption:
            out.append(f'<p class="caption">{_h(section.caption)}</p>')
    else:
        out.append("<section>")
    if not section.rows:
        out.append('<p class="empty">no rows</p>')
    elif "vertical" in section.display:
        out.append(_html_vertical(section))
    elif all(k in section.columns for k in KWIC):
        out.append(_html_kwic(section))
    elif (bars := _bars_hint(section.display)) and bars[0] in section.columns:
        out.append(_svg_bars(section, *bars))
        out.append("<details><summary>data</summary>")
        out.append(_html_table(section))
        out.append("</details>")
    else:
        out.append(_html_table(section))
    out.append("</section>")
    return "\n".join(out)


def render_html(sections: list[Section], title: str, subtitle: str = "") -> str:
    """One self-contained page: inline CSS and SVG, no scripts, no external resources."""
    body = [f"<h1>{_h(title)}</h1>"]
    if subtitle:
        body.append(f'<p class="params">{_h(subtitle)}</p>')
    body.extend(_html_section(s, heading=len(sections) > 1) for s in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_h(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


# ---------------------------------------------------------------- entry points


def render_sections(
    sections: list[Section],
    fmt: str,
    *,
    title: str = "",
    subtitle: str = "",
    width: int | None = None,
    color: bool = False,
) -> str:
    """Render result sets as text in `fmt` (every format but parquet, see `write_parquet`).

    One section renders as itself (a JSON array, one CSV table); several render as a
    JSON object of arrays by section name, JSONL lines tagged with `"section"`,
    headed terminal tables, or one html page.  CSV holds one section only.
    """
    multi = len(sections) > 1
    if fmt == "table":
        parts = []
        for s in sections:
            table = render_table(
                s.columns, s.rows, width, types=s.types, display=s.display, color=color
            )
            if multi:
                head = s.name + (f" — {s.caption}" if s.caption else "")
                table = _style(head, _BOLD, color) + "\n" + table
            parts.append(table)
        return "\n".join(parts)
    if fmt == "csv":
        if multi:
            raise ValueError("csv holds one result set; choose a section")
        return render_csv(sections[0]) if sections else ""
    if fmt == "json":
        if multi:
            doc: Any = {s.name: records(s) for s in sections}
        else:
            doc = records(sections[0]) if sections else []
        return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    if fmt == "jsonl":
        lines = []
        for s in sections:
            for rec in records(s):
                rec = {"section": s.name, **rec} if multi else rec
                lines.append(json.dumps(rec, ensure_ascii=False) + "\n")
        return "".join(lines)
    if fmt == "html":
        return render_html(sections, title or "saewh", subtitle)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def write_parquet(section: Section, path: str | os.PathLike) -> None:
    """Write one section as Parquet (full values, DuckDB's column types)."""
    import pyarrow.parquet as pq

    if section.arrow is None:
        raise ValueError("parquet output needs the result as Arrow (run with arrow=True)")
    pq.write_table(section.arrow, str(path), compression="zstd")


def render(columns: list[str], rows: list[tuple], fmt: str = "table") -> str:
    """Render plain rows in one of the text FORMATS (no column types known)."""
    return render_sections([Section("query", columns, [], rows)], fmt)
