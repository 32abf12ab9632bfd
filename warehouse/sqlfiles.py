"""SQL lives in `sql/*.sql` (shipped as package data); this module finds and parses it.

A file starts with a header of `-- name:` and `-- description:` lines, optionally
`-- param:` lines declaring the values the file binds as `$NAME`:

    -- param: NAME TYPE[(CONSTRAINT)] [= DEFAULT] [-- help]

TYPE is INTEGER, BIGINT, DOUBLE, VARCHAR or BOOLEAN; CONSTRAINT is an inclusive range
`LO..HI` (either end may be omitted) or a choice `a|b|c`; DEFAULT is a literal or NULL
(no DEFAULT: the parameter is required).

A file holding several result sets (a report with sections) separates its statements
with `-- statement: NAME [-- caption]` lines; a `-- display: HINT` line after one tells
the renderer how to show it (`vertical`, or `bars COLUMN [LABEL_COLUMN]`).  A file
without `-- statement:` lines is one statement named after the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from warehouse.contract import sql_constant

_HERE = Path(__file__).resolve().parent


def sql_dir() -> Path:
    """The installed `warehouse/sql` package data, or `sql/` in a source checkout."""
    for candidate in (_HERE / "sql", _HERE.parent / "sql"):
        if (candidate / "macros.sql").is_file():
            return candidate
    raise FileNotFoundError(f"SQL files not found next to {_HERE}")


PARAM_TYPES = ("INTEGER", "BIGINT", "DOUBLE", "VARCHAR", "BOOLEAN")


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: str | None
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        return self.default is None and self.type != "BOOLEAN"

    def default_value(self) -> object:
        """The DEFAULT literal as a Python value (None for NULL or no default)."""
        if self.type == "BOOLEAN":
            return (self.default or "false").lower() == "true"
        if self.default is None or self.default.upper() == "NULL":
            return None
        if self.type in ("INTEGER", "BIGINT"):
            return int(self.default)
        if self.type == "DOUBLE":
            return float(self.default)
        return self.default.strip("'")


@dataclass(frozen=True)
class Statement:
    """One statement of a SQL file: a report's section."""

    name: str
    sql: str
    caption: str = ""
    display: tuple[str, ...] = ()

    @property
    def params(self) -> tuple[str, ...]:
        """The `$name` parameters the statement binds, in order of first use."""
        return tuple(dict.fromkeys(_BIND.findall(_strip_comments(self.sql))))


@dataclass(frozen=True)
class SqlFile:
    name: str
    description: str
    sql: str
    params: tuple[Param, ...] = field(default_factory=tuple)
    path: Path | None = None
    statements: tuple[Statement, ...] = field(default_factory=tuple)
    title: str = ""  # `-- title:` (e.g. `Feature $feature`): the html page's title


_HEADER = re.compile(r"^--\s*(name|description|title|param|statement|display):\s*(.*)$")
_PARAM = re.compile(r"^(\w+)\s+(\w+)(?:\(([^)]*)\))?(?:\s*=\s*(\S+))?\s*(?:--\s*(.*))?$")
_STATEMENT = re.compile(r"^([\w-]+)\s*(?:--\s*(.*))?$")
_BIND = re.compile(r"\$([A-Za-z_]\w*)")


def _strip_comments(sql: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines())


def _parse_param(value: str, path: Path | None) -> Param:
    pm = _PARAM.match(value)
    if not pm or pm.group(2).upper() not in PARAM_TYPES:
        raise ValueError(f"{path}: bad param declaration {value!r}")
    name, typ, constraint, default, help_ = pm.groups()
    typ = typ.upper()
    lo = hi = None
    choices: tuple[str, ...] = ()
    if constraint:
        if ".." in constraint and typ in ("INTEGER", "BIGINT", "DOUBLE"):
            a, b = (x.strip() for x in constraint.split("..", 1))
            conv = float if typ == "DOUBLE" else int
            lo, hi = (conv(a) if a else None), (conv(b) if b else None)
        elif "|" in constraint or typ == "VARCHAR":
            choices = tuple(c.strip() for c in constraint.split("|") if c.strip())
        else:
            raise ValueError(f"{path}: bad constraint {constraint!r} for {name}")
    if default and default.startswith("contract."):
        # A default that is a contract constant (`= contract.DEFAULT_BEFORE`), not a copy of it.
        try:
            default = sql_constant(default.removeprefix("contract."))
        except KeyError:
            raise ValueError(f"{path}: {name}'s default {default} is not in warehouse.contract") from None
    return Param(name, typ, default, help_ or "", lo, hi, choices)


def parse_sql(text: str, path: Path | None = None) -> SqlFile:
    name = description = None
    title = ""
    params: list[Param] = []
    # (name, caption, display hints, lines) per `-- statement:` block
    blocks: list[tuple[str, str, list[str], list[str]]] = []
    for line in text.splitlines():
        m = _HEADER.match(line.strip())
        if not m:
            if blocks:
                blocks[-1][3].append(line)
            continue
        key, value = m.group(1), m.group(2).strip()
        if key == "name":
            name = value
        elif key == "description":
            description = value
        elif key == "title":
            title = value
        elif key == "param":
            params.append(_parse_param(value, path))
        elif key == "statement":
            sm = _STATEMENT.match(value)
            if not sm:
                raise ValueError(f"{path}: bad statement header {value!r}")
            blocks.append((sm.group(1), sm.group(2) or "", [], []))
        else:
            if not blocks:
                raise ValueError(f"{path}: '-- display:' outside a '-- statement:' block")
            blocks[-1][2].append(value)
    if not name or not description:
        raise ValueError(f"{path}: SQL file needs '-- name:' and '-- description:' headers")
    if blocks:
        statements = tuple(
            Statement(n, "\n".join(lines).strip().rstrip(";").strip(), cap, tuple(disp))
            for n, cap, disp, lines in blocks
        )
    else:
        statements = (Statement(name, text.strip().rstrip(";").strip()),)
    return SqlFile(name, description, text, tuple(params), path, statements, title)


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
