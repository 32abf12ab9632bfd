"""The sandbox every `saewh sql` query and every report runs in, enforced by DuckDB.

Two layers, both DuckDB's own mechanisms rather than a list of statement words:

1. `check_query`: DuckDB's parser decides what the text is.  Exactly one statement,
   of type SELECT, that `json_serialize_sql` (which serializes SELECT statements
   only) accepts; or `EXPLAIN [ANALYZE]` followed by such a statement.  So
   `EXPLAIN ANALYZE COPY ... TO`, `SET VARIABLE`, `PRAGMA`, `CALL`, `ATTACH`,
   `INSTALL`, `PIVOT` (which creates a type) and several statements are refused
   before anything runs.
2. `lock_down`: the connection's configuration.  The database is open read-only;
   `enable_external_access = false` with `allowed_directories` = the warehouse's own
   directory (and `allowed_paths` = files the user named with `--read`) refuses every
   other file (`read_text('/etc/passwd')`, `COPY ... TO '/tmp/x'`, extension
   installs); extension autoloading is off; spills go to a private temporary
   directory, never into the warehouse; then `lock_configuration = true` refuses any
   later `SET`.  `allowed_directories` alone would still let `COPY ... TO` write
   *inside* the warehouse: the parser gate is what refuses that.

The README's security section lists the attacks tried (tests/test_sandbox.py).
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb


class RefusedQuery(Exception):
    """The text is not one read-only query (one-line message)."""


def _first_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _serializable_select(con: duckdb.DuckDBPyConnection, text: str) -> str | None:
    """None when `text` is one SELECT statement DuckDB serializes, else why not."""
    import duckdb

    try:
        doc = json.loads(con.execute("SELECT json_serialize_sql($q)", {"q": text}).fetchone()[0])
    except (duckdb.Error, ValueError, TypeError) as exc:
        return _first_line(exc)
    if doc.get("error"):
        return str(doc.get("error_message") or doc.get("error_type") or "not a SELECT")
    if len(doc.get("statements", ())) != 1:
        return "not exactly one statement"
    return None


def _explained(text: str) -> str | None:
    """The statement after a leading `EXPLAIN [ANALYZE]`, found by DuckDB's tokenizer."""
    import duckdb

    tokens = duckdb.tokenize(text)

    def word(i: int) -> str:
        if i >= len(tokens) or tokens[i][1] != duckdb.token_type.keyword:
            return ""
        end = tokens[i + 1][0] if i + 1 < len(tokens) else len(text)
        return text[tokens[i][0]:end].strip().lower()

    if word(0) != "explain":
        return None
    rest = 2 if word(1) in ("analyze", "analyse") else 1
    return text[tokens[rest][0]:] if rest < len(tokens) else None


def check_query(con: duckdb.DuckDBPyConnection, text: str) -> None:
    """Raise RefusedQuery unless `text` is exactly one read-only query."""
    import duckdb

    try:
        statements = con.extract_statements(text)
    except duckdb.Error as exc:
        raise RefusedQuery(f"cannot parse the query: {_first_line(exc)}") from None
    if len(statements) != 1:
        raise RefusedQuery(f"expected one statement, got {len(statements)}; run them one at a time")
    kind = statements[0].type.name
    if kind == "SELECT":
        why = _serializable_select(con, text)
    elif kind == "EXPLAIN":
        inner = _explained(text)
        why = _serializable_select(con, inner) if inner else "nothing to explain"
    else:
        why = "not a query"
    if why is not None:
        raise RefusedQuery(
            f"refused {kind} statement ({why}): saewh runs one read-only query (SELECT, WITH, FROM, "
            "VALUES, DESCRIBE, SUMMARIZE, SHOW, or EXPLAIN [ANALYZE] of one); use the duckdb CLI to write"
        )


_TEMP_DIRS: list[str] = []


def _private_temp_dir() -> str:
    """A temporary directory of this process for DuckDB's spills (removed at exit): a
    read-only database would otherwise spill to `<database>.tmp`, inside the warehouse."""
    if not _TEMP_DIRS:
        _TEMP_DIRS.append(tempfile.mkdtemp(prefix="saewh-spill-"))
        atexit.register(shutil.rmtree, _TEMP_DIRS[0], True)
    return _TEMP_DIRS[0]


def _directory_forms(path: Path) -> list[str]:
    """The forms DuckDB may see a directory in: as given and with symlinks resolved, each
    also glob-escaped as the views name it (DuckDB checks the pattern it was given)."""
    from warehouse.db import glob_escaped

    forms = {str(Path(path).absolute()), str(Path(path).resolve())}
    forms |= {glob_escaped(f) for f in forms}
    return sorted(f.rstrip("/") + "/" for f in forms)


def lock_down(
    con: duckdb.DuckDBPyConnection, directories: Iterable[Path], read_files: Iterable[Path] = ()
) -> None:
    """Confine a read-only connection to `directories` (and the named `read_files`), for good."""
    dirs = sorted({form for d in directories for form in _directory_forms(Path(d))})
    files = sorted({str(form(Path(f))) for f in read_files for form in (Path.absolute, Path.resolve)})
    con.execute("SET temp_directory = $t", {"t": _private_temp_dir()})
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET allow_community_extensions = false")
    con.execute("SET python_enable_replacements = false")
    con.execute("SET allowed_directories = $d", {"d": dirs})
    con.execute("SET allowed_paths = $p", {"p": files})
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
