"""The terminal table: cell widths, truncation, bars, keyword-in-context columns.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from warehouse.render.values import ELLIPSIS, KWIC, NEWLINE, _finite, _is_numeric, display_value

# ANSI styles of the terminal table.
_BOLD, _TOKEN, _DIM, _RESET = "\x1b[1m", "\x1b[1;33m", "\x1b[2m", "\x1b[0m"


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
