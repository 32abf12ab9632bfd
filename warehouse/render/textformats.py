"""CSV, JSON and JSON Lines, written a chunk of rows at a time.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from warehouse.render.output import Output
from warehouse.render.values import Section, _finite, _is_float32, csv_value, float32_texts, json_value

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
