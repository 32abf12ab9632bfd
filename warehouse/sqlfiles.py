"""SQL lives in `sql/*.sql` (shipped as package data); this module finds and parses it.

A file starts with a header of `-- name:` and `-- description:` lines, optionally
`-- param:` lines (`-- param: NAME TYPE [= DEFAULT] -- help`) declaring the values
the file binds as `$NAME`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def sql_dir() -> Path:
    """The installed `warehouse/sql` package data, or `sql/` in a source checkout."""
    for candidate in (_HERE / "sql", _HERE.parent / "sql"):
        if (candidate / "macros.sql").is_file():
            return candidate
    raise FileNotFoundError(f"SQL files not found next to {_HERE}")


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: str | None
    help: str


@dataclass(frozen=True)
class SqlFile:
    name: str
    description: str
    sql: str
    params: tuple[Param, ...] = field(default_factory=tuple)
    path: Path | None = None


_HEADER = re.compile(r"^--\s*(name|description|param):\s*(.*)$")
_PARAM = re.compile(r"^(\w+)\s+(\w+)(?:\s*=\s*(\S+))?\s*(?:--\s*(.*))?$")


def parse_sql(text: str, path: Path | None = None) -> SqlFile:
    name = description = None
    params: list[Param] = []
    for line in text.splitlines():
        m = _HEADER.match(line.strip())
        if not m:
            continue
        key, value = m.group(1), m.group(2).strip()
        if key == "name":
            name = value
        elif key == "description":
            description = value
        else:
            pm = _PARAM.match(value)
            if not pm:
                raise ValueError(f"{path}: bad param declaration {value!r}")
            params.append(Param(pm.group(1), pm.group(2), pm.group(3), pm.group(4) or ""))
    if not name or not description:
        raise ValueError(f"{path}: SQL file needs '-- name:' and '-- description:' headers")
    return SqlFile(name, description, text, tuple(params), path)


@cache
def load_sql(relative: str) -> SqlFile:
    path = sql_dir() / relative
    return parse_sql(path.read_text(encoding="utf-8"), path)


def split_statements(sql: str) -> list[str]:
    """Split a DDL file on statement-ending semicolons (none appear inside literals here)."""
    body = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def sql_string_literal(value: str) -> str:
    """Quote a value as a SQL string literal: only for DDL, which cannot bind parameters."""
    return "'" + value.replace("'", "''") + "'"
