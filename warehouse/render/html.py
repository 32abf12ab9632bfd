"""The self-contained HTML page: tables, shaded contexts, SVG bar charts.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from warehouse.render.output import Output
from warehouse.render.terminal import (
    _bars_hint,
    _hidden_columns,
    _hint,
    _shaded_hint,
    _token_parts,
    fill_caption,
)
from warehouse.render.values import KWIC, NEWLINE, Section, _finite, _is_numeric, display_value, float32_text

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
