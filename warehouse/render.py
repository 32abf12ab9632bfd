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
import errno
import html
import io
import json
import math
import os
import re
import shutil
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from warehouse.errors import OutputError

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
    """One result set, with what the renderer needs to show it.

    Its rows are either all in `rows` or, for a result being streamed from DuckDB, in
    `stream`: chunks of rows fetched as the renderer asks for them (read once).
    """

    name: str
    columns: list[str]
    types: list[str]
    rows: list[tuple]
    caption: str = ""
    display: tuple[str, ...] = ()
    # For parquet: a pyarrow.Table, or a RecordBatchReader streaming the result.
    arrow: Any = field(default=None, repr=False)
    stream: Iterator[list[tuple]] | None = field(default=None, repr=False)

    def chunks(self) -> Iterator[list[tuple]]:
        """The rows, a chunk at a time (a streamed section can be read once)."""
        if self.stream is not None:
            for chunk in self.stream:
                if chunk:
                    yield chunk
        elif self.rows:
            yield self.rows


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


# Below this many values a column is formatted value by value: importing pyarrow (for the
# vectorized path) costs more than it saves, and small results never need it.
_VECTOR_MIN = 4096


def float32_texts(values: Sequence[float | None], as_json: bool = False) -> list[str | None]:
    """`float32_text` of each finite value (with `as_json`, the JSON number of `json_value`:
    `repr(float(text))`); NaN and infinities as `repr` ('nan', 'inf'), None as None.

    Long columns go through Arrow's float32 -> string cast (shortest round-trip digits,
    as `float32_text` finds them: the nearest d-digit decimal round-trips whenever any
    does).  Arrow's text is taken where it is certainly the same text: fixed notation
    with a decimal point and no more than three zeros after it, the range in which
    '%g' and `repr` both print those digits plainly.  Everything else (whole numbers,
    exponents, tiny values, NaN) goes the slow way.
    """
    cell = _float32_json if as_json else _float32_cell
    if len(values) < _VECTOR_MIN:
        return [cell(v) for v in values]
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        return [cell(v) for v in values]
    texts = pc.cast(pa.array(values, type=pa.float32()), pa.string())
    plain = pc.and_(
        pc.match_substring(texts, "."),
        pc.invert(pc.match_substring_regex(texts, r"[eE]|^-?0\.000")),
    )
    return [t if ok else cell(v) for v, t, ok in zip(values, texts.to_pylist(), plain.to_pylist())]


def _float32_cell(value: float | None) -> str | None:
    if value is None:
        return None
    return float32_text(value) if _finite(value) else repr(value)


def _float32_json(value: float | None) -> str | None:
    if value is None:
        return None
    return repr(float(float32_text(value))) if _finite(value) else repr(value)


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
        elem = typ[:-2] if typ and typ.endswith("[]") else None  # FLOAT[]: float32 decimals too
        return [json_value(v, elem) for v in value]
    return str(value)


def csv_value(value: Any, typ: str | None = None) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return float32_text(value) if _is_float32(typ) and _finite(value) else repr(value)
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(json_value(value, typ), ensure_ascii=False)
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


def _hint(display: Sequence[str], word: str) -> str | None:
    """The rest of the first `-- display: WORD ...` hint, or None."""
    for hint in display:
        if hint == word or hint.startswith(word + " "):
            return hint[len(word):].strip()
    return None


def _shaded_hint(display: Sequence[str]) -> tuple[str, str, str | None] | None:
    """`shaded TOKENS VALUES [INDEX]`: list columns of a row's window tokens and the
    feature's value on each (html shades every token; the table shows the context)."""
    rest = _hint(display, "shaded")
    parts = rest.split() if rest else []
    if len(parts) < 2:
        return None
    return parts[0], parts[1], parts[2] if len(parts) > 2 else None


def _hidden_columns(display: Sequence[str]) -> set[str]:
    shaded = _shaded_hint(display)
    return {c for c in shaded if c} if shaded else set()


_PLACEHOLDER = re.compile(r"\{(\w+)(?::(%))?\}")


def fill_caption(text: str, context: dict[str, Any], types: dict[str, str | None] | None = None) -> str:
    """`{column}` / `{column:%}` in a caption, from the report's first section's first row
    (a summary): counts with thousands separators, FLOAT as float32, `%` as a percentage."""

    def one(m: re.Match) -> str:
        name, pct = m.group(1), m.group(2)
        if name not in context:
            return "?"
        v = context[name]
        if v is None:
            return "NULL"
        if pct:
            return f"{float(v) * 100:.3g}%"
        if isinstance(v, int) and not isinstance(v, bool):
            return f"{v:,}"
        return display_value(v, (types or {}).get(name))

    return _PLACEHOLDER.sub(one, text)


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
    cut: list[str] | None = None,
) -> str:
    """A plain-text table that fits `width` cells (default: the terminal's width).  Columns
    that do not fit even at their narrowest are cut off at the right edge; their names
    go into `cut` (and the width the table needs last), so the caller can say so."""
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
    needed = sum(c.width for c in cols) + len(sep) * (len(cols) - 1)
    if needed > width:  # still too wide: the columns past the edge are cut, and named
        start, names = 0, []
        for c in cols:
            if start + c.width > width and c.kind != "bar":
                names.append(c.header or "bar")
            start += c.width + len(sep)
        if cut is not None and names:
            cut.extend([*names, str(needed)])
        if not color:  # a colour terminal wraps its own lines
            lines = [truncate_end(line, width) for line in lines]
    return "\n".join(lines) + "\n"


def _strip_ansi(text: str) -> str:
    for code in (_BOLD, _TOKEN, _DIM, _RESET):
        text = text.replace(code, "")
    return text


def _layout_columns(columns, rows, types, display) -> list[_Col]:
    bars = _bars_hint(display)
    has_kwic = all(k in columns for k in KWIC)
    hidden = _hidden_columns(display)  # shown by the context column (html shades them)
    cols: list[_Col] = []
    for i, name in enumerate(columns):
        if name in hidden:
            continue
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

# Types whose Python values csv.writer and json.dumps already write as `csv_value` and
# `json_value` would (ints, strings, booleans; DOUBLE in csv, whose writer uses repr):
# a column of them is passed through whole instead of value by value.
_PLAIN_TYPES = frozenset({"BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT",
                          "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT", "VARCHAR"})

# OWASP's list: a spreadsheet runs a cell starting with one of these as a formula.
FORMULA_STARTS = "=+-@\t\r"


def spreadsheet_safe(text: str) -> str:
    """`text` with a leading ' when a spreadsheet would read it as a formula (OWASP)."""
    return "'" + text if text and text[0] in FORMULA_STARTS else text


def _csv_column(values: list, typ: str | None, safe: bool) -> list:
    if typ in _PLAIN_TYPES or typ == "DOUBLE":
        out = values
    elif _is_float32(typ):
        return float32_texts(values)
    else:
        out = [csv_value(v, typ) for v in values]
    if safe:
        # Only text can smuggle a formula: numbers (-1), dates and JSON of lists stay exact.
        out = [spreadsheet_safe(c) if isinstance(v, str) else c for v, c in zip(values, out)]
    return out


def _json_column(values: list, typ: str | None) -> list:
    if typ in _PLAIN_TYPES:
        return values
    if _is_float32(typ):
        return [None if t is None or t[-1] in "nf" else float(t) for t in float32_texts(values, as_json=True)]
    return [json_value(v, typ) for v in values]


# Types whose every value `_json_texts` writes as one JSON scalar (no list or object).
_SCALAR_JSON_TYPES = _PLAIN_TYPES | {"FLOAT", "DOUBLE"}
_encode_string = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) uses


def _json_texts(values: list, typ: str | None) -> list[str]:
    """Each value as the JSON text `json.dumps(json_value(v, typ), ensure_ascii=False)` writes."""
    nulls = None in values
    if typ == "VARCHAR":
        if not nulls:
            return list(map(_encode_string, values))
        return ["null" if v is None else _encode_string(v) for v in values]
    if typ == "BOOLEAN":
        return ["null" if v is None else "true" if v else "false" for v in values]
    if typ in _PLAIN_TYPES:  # integers
        return ["null" if v is None else str(v) for v in values] if nulls else list(map(str, values))
    if typ == "DOUBLE":
        return ["null" if v is None or not _finite(v) else repr(v) for v in values]
    if _is_float32(typ):
        return ["null" if t is None or t[-1] in "nf" else t for t in float32_texts(values, as_json=True)]
    return [json.dumps(json_value(v, typ), ensure_ascii=False) for v in values]


def _json_template(columns: Sequence[str], indent: str | None) -> str | None:
    """A %-template writing one record as json.dumps would (`indent`: the record's
    lines' indentation inside a JSON array), or None when the fields are not one per
    column (a duplicate name: a dict keeps the last value at the first place)."""
    if len(set(columns)) != len(columns):
        return None
    keys = [_encode_string(c).replace("%", "%%") + ": %s" for c in columns]
    if indent is None:
        return "{" + ", ".join(keys) + "}"
    inner = indent + "  "
    return "{\n" + inner + (",\n" + inner).join(keys) + "\n" + indent + "}" if keys else "{}"


def _json_lines(section: Section, chunk: list[tuple], template: str) -> Iterator[str]:
    types = section.types or [None] * len(section.columns)
    cols = [_json_texts(c, t) for c, t in zip(_columns(chunk, len(types)), types)]
    return (template % row for row in zip(*cols))


def _columns(chunk: list[tuple], n: int) -> list[list]:
    return [list(col) for col in zip(*chunk)] if chunk else [[] for _ in range(n)]


def _csv_rows(rows: list[Sequence[Any]]) -> str:
    """CSV lines, a field quoted when it holds a comma, a quote, a newline or a carriage
    return: csv.writer, told that lines end in a newline, leaves a lone carriage return
    bare, and readers split the record there."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    text = buf.getvalue()
    if "\r" not in text:
        return text
    lines = []
    for row in rows:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\r\n").writerow(row)  # quotes a carriage return too
        lines.append(buf.getvalue()[:-2] + "\n")
    return "".join(lines)


def _write_csv(section: Section, out: Output, safe: bool) -> None:
    types = section.types or [None] * len(section.columns)
    out.write(_csv_rows([[spreadsheet_safe(c) for c in section.columns] if safe else section.columns]))
    for chunk in section.chunks():
        cols = [_csv_column(c, t, safe) for c, t in zip(_columns(chunk, len(types)), types)]
        out.write(_csv_rows(list(zip(*cols))))


def _records(section: Section, chunk: list[tuple]) -> Iterator[dict[str, Any]]:
    types = section.types or [None] * len(section.columns)
    cols = [_json_column(c, t) for c, t in zip(_columns(chunk, len(types)), types)]
    names = section.columns
    return (dict(zip(names, row)) for row in zip(*cols))


def render_csv(section: Section) -> str:
    out = Output(io.StringIO())
    _write_csv(section, out, safe=False)
    return out.getvalue()


def records(section: Section) -> list[dict[str, Any]]:
    return [rec for chunk in section.chunks() for rec in _records(section, chunk)]


def _write_json_array(section: Section, out: Output, level: int) -> None:
    """The records as `json.dumps(records, indent=2)` nested `level` deep writes them,
    one chunk at a time (records never hold a raw newline: JSON escapes it)."""
    pad = "  " * (level + 1)
    scalar = bool(section.types) and all(t in _SCALAR_JSON_TYPES for t in section.types)
    template = _json_template(section.columns, pad) if scalar else None
    first = True
    for chunk in section.chunks():
        if template is not None:
            texts: Iterable[str] = _json_lines(section, chunk, template)
        else:  # lists and objects inside: json.dumps lays them out
            texts = (json.dumps(rec, ensure_ascii=False, indent=2).replace("\n", "\n" + pad)
                     for rec in _records(section, chunk))
        parts = []
        for text in texts:
            parts.append(("[\n" if first else ",\n") + pad + text)
            first = False
        out.write("".join(parts))
    out.write("[]" if first else "\n" + "  " * level + "]")


def _write_jsonl(section: Section, out: Output, tag: bool) -> None:
    columns = (["section"] if tag else []) + section.columns
    template = _json_template(columns, None) if section.types else None
    if template is not None and tag:
        template = template.replace("%s", _encode_string(section.name).replace("%", "%%"), 1)
    for chunk in section.chunks():
        if template is not None:
            out.write("".join(line + "\n" for line in _json_lines(section, chunk, template)))
            continue
        recs = _records(section, chunk)
        if tag:
            recs = ({"section": section.name, **rec} for rec in recs)
        out.write("".join(json.dumps(rec, ensure_ascii=False) + "\n" for rec in recs))


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
p.headline { font-size: 1.05rem; margin: .2rem 0 .8rem; }
td.shaded { white-space: pre-wrap; font-family: ui-monospace, monospace; line-height: 1.7;
            min-width: 32ch; max-width: 90ch; }
table.shaded th:last-child { white-space: normal; }
span.t { border-radius: 2px; }
span.t.q { outline: 2px solid #b34700; outline-offset: -1px; font-weight: 700; }
svg.bars line.ref { stroke: #b34700; stroke-dasharray: 5 4; }
svg.bars text.ref { fill: #b34700; }
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


def _html_kwic_open(section: Section, others: Sequence[int]) -> str:
    head = _html_head(section, others)
    return f'<table class="kwic"><thead><tr>{head}<th colspan="3">context</th></tr></thead><tbody>'


def _html_kwic_row(section: Section, r: tuple, others: Sequence[int]) -> str:
    li, ti, ri = (section.columns.index(k) for k in KWIC)
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
    return f"<tr>{cells}{ctx}</tr>"


# The shade of a token: this orange at opacity = value / the feature's max (0: none).
_SHADE = (255, 122, 0)


def _html_shaded_open(section: Section, others: Sequence[int]) -> str:
    head = _html_head(section, others)
    return (f'<table class="kwic shaded"><thead><tr>{head}<th>context (shade: activation; '
            "hover: value)</th></tr></thead><tbody>")


def _html_shaded_row(section: Section, r: tuple, others: Sequence[int], top: float) -> str:
    """One row: its other cells, then every token of the window, shaded by the feature's
    exact value on it (in `title`, shown on hover), the row's own token outlined."""
    tok_col, val_col, idx_col = _shaded_hint(section.display) or ("", "", None)
    tokens = r[section.columns.index(tok_col)]
    values = r[section.columns.index(val_col)]
    center = r[section.columns.index(idx_col)] if idx_col in section.columns else None
    types = section.types or [None] * len(section.columns)
    cells = "".join(_html_cell(r[i], types[i]) for i in others)
    if not tokens or r[section.columns.index("token")] is None:  # unaligned review: no text
        return f'<tr>{cells}<td class="null">NULL</td></tr>'
    spans = []
    for j, (t, v) in enumerate(zip(tokens, values)):
        v = float(v or 0.0)
        alpha = min(v / top, 1.0) if top > 0 and v > 0 else 0.0
        style = f' style="background:rgba({_SHADE[0]},{_SHADE[1]},{_SHADE[2]},{alpha:.3f})"' if alpha else ""
        cls = "t q" if j == center else "t"
        text = str(t).replace("\n", NEWLINE)
        spans.append(f'<span class="{cls}"{style} title="{_h(float32_text(v))}">{_h(text)}</span>')
    return f'<tr>{cells}<td class="shaded">{"".join(spans)}</td></tr>'


def _html_head(section: Section, indices: Sequence[int]) -> str:
    """Header cells; numeric columns' headers are right-aligned like their values."""
    out = []
    for i in indices:
        typ = section.types[i] if section.types else None
        first = next((r[i] for r in section.rows if r[i] is not None), None)
        style = ' class="num"' if _is_numeric(typ, first) else ""
        out.append(f"<th{style}>{_h(section.columns[i])}</th>")
    return "".join(out)


def _html_table_open(section: Section) -> str:
    return f"<table><thead><tr>{_html_head(section, range(len(section.columns)))}</tr></thead><tbody>"


def _html_table_row(r: tuple, types: Sequence[str | None]) -> str:
    return "<tr>" + "".join(_html_cell(v, t) for v, t in zip(r, types)) + "</tr>"


def _html_table(section: Section) -> str:
    types = section.types or [None] * len(section.columns)
    body = "\n".join(_html_table_row(r, types) for r in section.rows)
    return f"{_html_table_open(section)}\n{body}\n</tbody></table>"


def _html_vertical_block(section: Section, r: tuple) -> str:
    types = section.types or [None] * len(section.columns)
    trs = "".join(
        f"<tr><th>{_h(c)}</th>{_html_cell(v, t)}</tr>" for c, v, t in zip(section.columns, r, types)
    )
    return f'<table class="kv"><tbody>{trs}</tbody></table>'


def _svg_bars(section: Section, value_col: str, label_col: str | None) -> str:
    """An inline SVG bar chart of `value_col`, one bar per row, labelled by `label_col`;
    `-- display: axes X | Y` names the axes in words, `-- display: reference V TEXT`
    draws a dashed line at V (lift = 1: no preference)."""
    vi = section.columns.index(value_col)
    li = section.columns.index(label_col) if label_col in section.columns else 0
    lt = section.types[li] if section.types else None
    values = [r[vi] if isinstance(r[vi], (int, float)) and _finite(float(r[vi])) else 0 for r in section.rows]
    labels = [display_value(r[li], lt) for r in section.rows]
    if isinstance(section.rows[0][li], float):
        labels = [f"{r[li]:.3g}" for r in section.rows]
    top = max([float(v) for v in values] + [0.0])
    axes = (_hint(section.display, "axes") or "").split("|")
    x_title = axes[0].strip() or section.columns[li]
    y_title = axes[1].strip() if len(axes) > 1 and axes[1].strip() else value_col
    ref_hint = (_hint(section.display, "reference") or "").split(None, 1)
    ref = float(ref_hint[0]) if ref_hint else None
    ref_text = ref_hint[1] if len(ref_hint) > 1 else ""
    if ref is not None:
        top = max(top, ref * 1.1)  # the line stays inside the plot
    n = len(values)
    w, h, left, bottom, top_pad = 720, 240, 80, 40, 12
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
    if ref is not None and top > 0:
        y = top_pad + plot_h - plot_h * ref / top
        parts.append(f'<line class="ref" x1="{left}" y1="{y:.1f}" x2="{w - 8}" y2="{y:.1f}"/>')
        parts.append(f'<text class="ref" x="{w - 10}" y="{y - 4:.1f}" text-anchor="end">'
                     f"{_h(display_value(ref))}{(' — ' + _h(ref_text)) if ref_text else ''}</text>")
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{h - 4}" text-anchor="middle">{_h(x_title)}</text>'
    )
    parts.append(
        f'<text x="14" y="{top_pad + plot_h / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {top_pad + plot_h / 2:.1f})">{_h(y_title)}</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts)


def _write_html_section(
    section: Section, out: Output, heading: bool, context: dict[str, Any] | None = None
) -> tuple | None:
    """One section's html, written as its rows stream (a bar chart needs them all first:
    its rows are a report's bins, a few dozen).  Returns the first row.  `context` is the
    first section's first row: captions and headlines name its columns."""
    context = context or {}
    chunks = section.chunks()
    first = next(chunks, None)
    types = section.types or [None] * len(section.columns)
    head = []
    if heading:
        head.append(f'<section id="{_h(section.name)}">')
        head.append(f"<h2>{_h(section.name)}</h2>")
        if section.caption:
            head.append(f'<p class="caption">{_h(fill_caption(section.caption, context))}</p>')
    else:
        head.append("<section>")
    headline = _hint(section.display, "headline")
    if headline and first:
        own = dict(zip(section.columns, first[0]))
        typed = dict(zip(section.columns, types))
        head.append(f'<p class="headline">{_h(fill_caption(headline, {**context, **own}, typed))}</p>')
    out.write("\n".join(head) + "\n")
    peeked = replace(section, rows=first or [], stream=None)  # what the header cells look at
    bars = _bars_hint(section.display)
    if first is None:
        out.write('<p class="empty">no rows</p>')
    elif bars and bars[0] in section.columns:
        whole = replace(section, rows=[r for c in (first, *chunks) for r in c], stream=None)
        out.write("\n".join([_svg_bars(whole, *bars), "<details><summary>data</summary>",
                             _html_table(whole), "</details>"]))
    else:
        if "vertical" in section.display:
            opening, closing = "", ""
            row = partial(_html_vertical_block, section)
        elif _shaded_hint(section.display) and all(
            c in section.columns for c in (*KWIC, *_hidden_columns(section.display))
        ):
            hidden = _hidden_columns(section.display)
            others = [i for i, c in enumerate(section.columns) if c not in KWIC and c not in hidden]
            opening, closing = _html_shaded_open(peeked, others) + "\n", "\n</tbody></table>"
            vi = section.columns.index(_shaded_hint(section.display)[1])  # type: ignore[index]
            top = context.get("max_value") or max(
                (float(v) for r in first for v in (r[vi] or []) if v is not None), default=0.0
            )
            row = partial(_html_shaded_row, section, others=others, top=float(top))
        elif all(k in section.columns for k in KWIC):
            others = [i for i, c in enumerate(section.columns) if c not in KWIC]
            opening, closing = _html_kwic_open(peeked, others) + "\n", "\n</tbody></table>"
            row = partial(_html_kwic_row, section, others=others)
        else:
            opening, closing = _html_table_open(peeked) + "\n", "\n</tbody></table>"
            row = partial(_html_table_row, types=types)
        out.write(opening)
        sep = ""
        for chunk in _chain(first, chunks):
            out.write(sep + "\n".join(row(r) for r in chunk))
            sep = "\n"
        out.write(closing)
    out.write("\n</section>")
    return first[0] if first else None


def _chain(first: list[tuple], rest: Iterator[list[tuple]]) -> Iterator[list[tuple]]:
    yield first
    yield from rest


def _write_html(sections: Iterable[Section], out: Output, multi: bool, title: str, subtitle: str) -> None:
    """One self-contained page: inline CSS and SVG, no scripts, no external resources."""
    out.write(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_h(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{_h(title)}</h1>"
    )
    if subtitle:
        out.write(f'\n<p class="params">{_h(subtitle)}</p>')
    context: dict[str, Any] | None = None
    for s in sections:
        if s.columns:
            out.write("\n")
            first = _write_html_section(s, out, heading=multi, context=context)
            if context is None:  # the first section (a summary) names what later captions cite
                context = dict(zip(s.columns, first)) if first else {}
    out.write("\n</body>\n</html>\n")


# ---------------------------------------------------------------- output


class Output:
    """Where rendered data goes: a text stream (stdout), or a file.

    Text is written as UTF-8 whatever the locale says (an ASCII locale must not lose
    data).  A regular file is written beside its name and renamed over it by `commit`,
    so a failed or interrupted export leaves the previous file (or none), never half of
    one; a device or pipe (`-o /dev/stdout`, `-o /dev/full`) is written in place.  A
    failing write raises OutputError; a reader that went away, BrokenPipeError.
    """

    def __init__(self, stream: Any = None, path: str | os.PathLike | None = None) -> None:
        self.name = str(path) if path is not None else "stdout"
        self._target: str | None = None
        self._temp: str | None = None
        self._file: Any = None
        if path is not None:
            real = os.path.realpath(path)
            if os.path.exists(real) and not os.path.isfile(real):
                if os.path.isdir(real):
                    raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
                self._file = open(real, "wb", buffering=1 << 20)
            else:
                self._target = real
                head, tail = os.path.split(real)
                self._temp = os.path.join(head, f".{tail}.saewh-{os.getpid()}.tmp")
                self._file = open(self._temp, "wb", buffering=1 << 20)
            self._binary = True
            self._stream = self._file
            return
        buffer = getattr(stream, "buffer", None)
        if buffer is not None:
            stream.flush()
            self._stream, self._binary = buffer, True
        else:
            self._stream, self._binary = stream, False

    def write(self, text: str) -> None:
        if text:
            self._guard(self._stream.write, text.encode("utf-8") if self._binary else text)

    def write_bytes(self, data: bytes) -> None:
        self._guard(self._stream.write, data)

    def flush(self) -> None:
        self._guard(self._stream.flush)

    def getvalue(self) -> str:
        """What was written to an in-memory text stream (`render_sections`)."""
        return self._stream.getvalue()

    def _guard(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except OSError as exc:
            if isinstance(exc, BrokenPipeError) or exc.errno == errno.EPIPE:
                raise BrokenPipeError(errno.EPIPE, "the reader went away") from None
            reason = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
            raise OutputError(f"cannot write {self.name}: {reason}") from None

    def commit(self) -> None:
        """Flush; a file is closed and takes its name (keeping the mode of the one it replaces)."""
        self.flush()
        if self._file is None:
            return
        self._guard(self._file.close)
        if self._temp is not None and self._target is not None:
            try:
                os.chmod(self._temp, os.stat(self._target).st_mode & 0o7777)
            except OSError:
                pass
            self._guard(os.replace, self._temp, self._target)
            self._temp = None

    def abort(self, close: bool = True) -> None:
        """Drop a file being written (its previous content, if any, stays).  `close=False`
        when another thread may be blocked writing it (its close would wait for that)."""
        if close and self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
        if self._temp is not None:
            try:
                os.unlink(self._temp)
            except OSError:
                pass
            self._temp = None


class _BinaryOutput:
    """`Output` as the binary file object pyarrow's writers want."""

    def __init__(self, out: Output) -> None:
        self._out, self._pos, self.closed = out, 0, False

    def write(self, data: Any) -> int:
        data = bytes(data)
        self._out.write_bytes(data)
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        self._out.flush()

    def close(self) -> None:
        self.closed = True


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
