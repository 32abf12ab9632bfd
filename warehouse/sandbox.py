"""The sandbox every `saewh sql` query and every report runs in, enforced by DuckDB.

Two layers, both DuckDB's own mechanisms rather than a list of statement words:

1. `check_query`: DuckDB's parser decides what the text is.  Exactly one statement,
   of type SELECT, that `json_serialize_sql` (which serializes SELECT statements
   only) accepts; or `EXPLAIN [ANALYZE]` followed by such a statement.  So
   `EXPLAIN ANALYZE COPY ... TO`, `SET VARIABLE`, `PRAGMA`, `CALL`, `ATTACH`,
   `INSTALL`, `PIVOT` (which creates a type) and several statements are refused
   before anything runs.  The serialized tree then names every function the query
   calls, and a few that act rather than compute are refused wherever they appear
   (`_REFUSED_FUNCTIONS`: `enable_logging(storage := 'file', storage_path := ...)`
   wrote log files into the warehouse and changed settings `lock_configuration` does
   not guard); `query('...')` is allowed with a literal string only, itself checked.
2. `lock_down`: the connection's configuration.  The database is open read-only;
   `enable_external_access = false` with `allowed_directories` = the warehouse's own
   directory, in its glob-escaped form only (`_allowed`), and `allowed_paths` = files
   the user named with `--read`, refuses every other file (`read_text('/etc/passwd')`,
   `COPY ... TO '/tmp/x'`, extension installs); extension autoloading is off; spills
   go to a private temporary directory, never into the warehouse; then
   `lock_configuration = true` refuses any later `SET`.  `allowed_directories` alone
   would still let `COPY ... TO` write *inside* the warehouse: the parser gate is what
   refuses that.

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

from warehouse.errors import QueryError, one_line

if TYPE_CHECKING:
    import duckdb


class RefusedQuery(QueryError):
    """The text is not one read-only query."""



# Functions a SELECT may name that act instead of computing: refused wherever they
# appear in the query (DuckDB has no setting that disables a function).
_REFUSED_FUNCTIONS = frozenset({
    # Logging and profiling switch on writers of log and profile files (into the allowed
    # directories: the warehouse) and change settings `lock_configuration` does not guard.
    "enable_logging", "disable_logging", "truncate_duckdb_logs", "write_log",
    "enable_profiling", "disable_profiling",
    "checkpoint", "force_checkpoint",
    # Runs a serialized plan the parser gate never saw.
    "json_execute_serialized_sql",
    # The Python client's scans of raw pointers: from SQL only NULL, which crashes the process.
    "arrow_scan", "arrow_scan_dumb", "pandas_scan", "python_map_function",
})
# query('...') parses its argument when it binds: allowed with a literal string only,
# which is checked like the query itself (to this depth).
_MAX_NESTED_QUERIES = 8


def _functions(tree: object) -> list[dict]:
    """Every function call (scalar or table, any depth) in a serialized statement."""
    found, stack = [], [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("class") == "FUNCTION" and "function_name" in node:
                found.append(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _literal_string(expr: object) -> str | None:
    if not isinstance(expr, dict) or expr.get("type") != "VALUE_CONSTANT" or expr.get("alias"):
        return None
    value = expr.get("value") or {}
    if value.get("is_null") or (value.get("type") or {}).get("id") != "VARCHAR":
        return None
    return value.get("value") if isinstance(value.get("value"), str) else None


def _refused_call(con: duckdb.DuckDBPyConnection, doc: dict, depth: int) -> str | None:
    """Why a serialized SELECT calls something it may not, or None."""
    for fn in _functions(doc.get("statements")):
        name = str(fn["function_name"]).lower()
        if name in _REFUSED_FUNCTIONS:
            return f"function {name}() is not allowed"
        if name == "query":
            args = fn.get("children") or []
            inner = _literal_string(args[0]) if len(args) == 1 else None
            if inner is None or depth >= _MAX_NESTED_QUERIES:
                return "query() takes one literal string here"
            why = _serializable_select(con, inner, depth + 1)
            if why is not None:
                return f"query(): {why}"
    return None


def _serializable_select(con: duckdb.DuckDBPyConnection, text: str, depth: int = 0) -> str | None:
    """None when `text` is one SELECT statement DuckDB serializes and that calls no
    refused function, else why not."""
    import duckdb

    try:
        doc = json.loads(con.execute("SELECT json_serialize_sql($q)", {"q": text}).fetchone()[0])
    except (duckdb.Error, ValueError, TypeError, RecursionError) as exc:
        return one_line(exc)
    if doc.get("error"):
        return str(doc.get("error_message") or doc.get("error_type") or "not a SELECT")
    if len(doc.get("statements", ())) != 1:
        return "not exactly one statement"
    return _refused_call(con, doc, depth)


def _explained(text: str) -> str | None:
    """The statement after a leading `EXPLAIN [ANALYZE]`, found by DuckDB's tokenizer."""
    import duckdb

    tokens = duckdb.tokenize(text)

    def word(i: int) -> str:
        # (the keyword alone: a comment may follow it before the next token)
        if i >= len(tokens) or tokens[i][1] != duckdb.token_type.keyword:
            return ""
        return text[tokens[i][0]:].split(None, 1)[0].split("/*", 1)[0].split("--", 1)[0].lower()

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
        raise RefusedQuery(f"cannot parse the query: {one_line(exc)}") from None
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


def _forms(path: Path) -> list[str]:
    """The absolute forms DuckDB may see a path in: as given and with symlinks resolved."""
    return sorted({str(Path(path).absolute()), str(Path(path).resolve())})


def _allowed(directories: Iterable[Path], read_files: Iterable[Path]) -> tuple[list[str], list[str]]:
    """`allowed_directories` and `allowed_paths` confining DuckDB to `directories` and the
    named `read_files`.

    DuckDB checks the pattern a query gives (`glob`, `read_parquet`), then each file it
    opens.  A directory is allowed only in its glob-escaped form (as the views name
    their files): its raw form, were it `g[A]`, would be a pattern for `gA` beside it,
    and `glob('.../g[A]/*')` would list that sibling.  When the two forms differ, the
    files DuckDB opens (raw paths) are allowed one by one, as they are now."""
    from warehouse.ddl import glob_escaped

    dirs: set[str] = set()
    paths: set[str] = set()
    for directory in directories:
        for form in _forms(Path(directory)):
            dirs.add(glob_escaped(form).rstrip("/") + "/")
            if glob_escaped(form) != form:
                paths |= {
                    str(Path(form) / f.relative_to(directory))
                    for f in Path(directory).rglob("*")
                    if f.is_file() and not f.is_symlink()
                }
    for path in read_files:
        for form in _forms(Path(path)):
            paths |= {form, glob_escaped(form)}
    return sorted(dirs), sorted(paths)


def lock_down(
    con: duckdb.DuckDBPyConnection, directories: Iterable[Path], read_files: Iterable[Path] = ()
) -> None:
    """Confine a read-only connection to `directories` (and the named `read_files`), for good."""
    dirs, files = _allowed(directories, read_files)
    con.execute("SET temp_directory = $t", {"t": _private_temp_dir()})
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET allow_community_extensions = false")
    con.execute("SET python_enable_replacements = false")
    con.execute("SET allowed_directories = $d", {"d": dirs})
    con.execute("SET allowed_paths = $p", {"p": files})
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
