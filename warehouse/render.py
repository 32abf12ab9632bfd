"""Rendering query results: table (terminal), csv, json, jsonl."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil

FORMATS = ("table", "csv", "json", "jsonl")


def _jsonable(value):
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", errors="replace")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _cell(value, width: int) -> str:
    if value is None:
        text = "NULL"
    elif isinstance(value, float):
        text = f"{value:.6g}"
    else:
        text = str(value)
    text = text.replace("\n", "⏎").replace("\t", " ")
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def render_table(columns: list[str], rows: list[tuple], width: int | None = None) -> str:
    width = width or shutil.get_terminal_size((120, 24)).columns
    n = len(columns)
    if n == 0:
        return ""
    natural = [max([len(c)] + [len(_cell(r[i], 10_000)) for r in rows]) for i, c in enumerate(columns)]
    budget = max(width - 3 * (n - 1), n * 4)
    widths = natural[:]
    # Shrink the widest columns first until the table fits the terminal.
    while sum(widths) > budget and max(widths) > 4:
        i = widths.index(max(widths))
        widths[i] -= 1
    lines = [" | ".join(_cell(c, w).ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines.append("-+-".join("-" * w for w in widths))
    for r in rows:
        cells = []
        for v, w in zip(r, widths):
            text = _cell(v, w)
            cells.append(text.rjust(w) if isinstance(v, (int, float)) else text.ljust(w))
        lines.append(" | ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def render(columns: list[str], rows: list[tuple], fmt: str = "table") -> str:
    """Render rows in one of FORMATS; csv/json carry full, untruncated values."""
    if fmt == "table":
        return render_table(columns, rows)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        w.writerows([[_jsonable(v) for v in r] for r in rows])
        return buf.getvalue()
    records = [{c: _jsonable(v) for c, v in zip(columns, r)} for r in rows]
    if fmt == "json":
        return json.dumps(records, ensure_ascii=False, indent=2) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps(rec, ensure_ascii=False) + "\n" for rec in records)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
