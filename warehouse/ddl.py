"""The DDL of a warehouse's database, rendered for one snapshot.

DuckDB takes no bound parameters in DDL, so two kinds of value are rendered into the
sql/ files' text, and nothing else: `{{files TABLE}}`, the exact list of a table's
files (each quoted and glob-escaped), and `{{contract NAME}}`, an integer constant of
`warehouse.contract` (sql/contract.sql makes them macros for every other file).  The
build writes these statements into a new snapshot (etl.build.database); a reader of a
moved snapshot runs the views as temporary ones (warehouse.db).
"""

from __future__ import annotations

import re
from pathlib import Path

from warehouse.contract import TABLE_GLOBS, TABLES, sql_constant
from warehouse.errors import WarehouseError, one_line
from warehouse.snapshots import MANIFEST, read_manifest
from warehouse.sqlfiles import load_sql, split_statements, sql_dir, sql_string_literal


def glob_escaped(path: str) -> str:
    """`path` as a DuckDB file pattern matching only itself: DuckDB globs every path
    it reads, so a directory named `g[A]` would otherwise read `gA`."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in path)


def _files_literal(root: Path, relative: list[str]) -> str:
    return "[" + ", ".join(sql_string_literal(glob_escaped(str(root / r))) for r in relative) + "]"


def table_files(root: Path) -> dict[str, list[str]]:
    """Each table's Parquet files relative to `root`: from its manifest when it has one
    (so a file that went missing is an error when a view reads it, not a smaller
    answer), else as the build laid them out."""
    root = Path(root)
    if (root / MANIFEST).is_file():
        try:
            files = read_manifest(root)["files"]
            return {t: [str(e["path"]) for e in entries] for t, entries in files.items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise WarehouseError(f"{root}: {MANIFEST} is unreadable ({one_line(exc)})") from None
    out = {t: [f"{t}.parquet"] for t in TABLES}
    for table, pattern in TABLE_GLOBS.items():
        # (pathlib matches the pattern below root only: root is taken literally)
        out[table] = sorted(str(p.relative_to(root)) for p in root.glob(pattern))
    return out


_FILES_PLACEHOLDER = re.compile(r"\{\{files ([a-z_]+)\}\}")


_CONTRACT_PLACEHOLDER = re.compile(r"\{\{contract ([A-Z_]+)\}\}")


def render_contract(sql: str) -> str:
    """`sql` with `{{contract NAME}}` rendered as the contract's integer constant NAME."""
    return _CONTRACT_PLACEHOLDER.sub(lambda m: sql_constant(m.group(1)), sql)


def render_ddl(root: Path, name: str = "schema.sql") -> list[str]:
    """The statements of the DDL file `name` with `{{files TABLE}}` rendered as the exact
    list of the table's files under `root`, and `{{contract NAME}}` as the contract's
    integer constant NAME.  Split first: a `;` in a path must not end a statement."""
    files = table_files(root)

    def render(stmt: str) -> str:
        stmt = _FILES_PLACEHOLDER.sub(lambda m: _files_literal(Path(root), files[m.group(1)]), stmt)
        return render_contract(stmt)

    return [render(stmt) for stmt in split_statements(load_sql(name).sql)]


def macro_statements() -> list[str]:
    """sql/contract.sql (the contract's constants as macros), sql/macros.sql, then every
    sql/macros_*.sql: later files may use earlier macros.  They name no file (macros
    read the views), so only the contract's constants are rendered."""
    names = ["contract.sql", "macros.sql"] + sorted(p.name for p in sql_dir().glob("macros_*.sql"))
    return [render_contract(stmt) for name in names for stmt in split_statements(load_sql(name).sql)]
