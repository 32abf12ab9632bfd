"""Result sets (`Section`) and how one value is written in each format.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator, Sequence
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
