"""Canned reports: `sql/reports/*.sql`, parameters bound as `$name`, run read-only.

A report is one SQL file (see `warehouse.sqlfiles` for its header); the CLI's
`saewh report NAME` commands are generated from these files, so a new report is a
new file.  This module finds the files, validates parameter values against the
warehouse (a `feature` must be below the manifest's `sae.n_latents`, a `review_id`
or `token` must exist), runs each statement and returns its rows; rendering lives
in `warehouse.render`.  `run_query` is the read-only arbitrary-SQL path of `saewh sql`.

Nothing here imports numpy, pyarrow, h5py or transformers.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from warehouse.render import Section
from warehouse.sandbox import RefusedQuery, check_query, lock_down
from warehouse.sqlfiles import SqlFile, Statement, parse_sql, sql_dir

if TYPE_CHECKING:
    import duckdb

# Names the CLI uses for its own options: a report parameter may not take them.
RESERVED = frozenset({"warehouse", "fmt", "format", "csv", "json", "output", "section", "show_sql"})


class ReportError(Exception):
    """A report cannot run with these values (one-line message)."""


class NotFound(ReportError):
    """An unknown feature, review id or token."""


class BadValue(ReportError):
    """An option value the report cannot use (a usage error)."""


__all__ = ["BadValue", "NotFound", "RefusedQuery", "ReportError", "Section",
           "load_manifest", "load_reports", "run_query", "run_report", "validate"]


def reports_dir() -> Path:
    return sql_dir() / "reports"


@cache
def load_reports() -> dict[str, SqlFile]:
    """Every report, by name (sorted), parsed and checked for consistency."""
    out: dict[str, SqlFile] = {}
    for path in sorted(reports_dir().glob("*.sql")):
        rep = parse_sql(path.read_text(encoding="utf-8"), path)
        declared = {p.name for p in rep.params}
        if rep.name in out:
            raise ValueError(f"{path}: report name {rep.name!r} is used twice")
        if declared & RESERVED:
            raise ValueError(f"{path}: parameter names {sorted(declared & RESERVED)} are reserved")
        for st in rep.statements:
            undeclared = set(st.params) - declared
            if undeclared:
                raise ValueError(f"{path}: statement {st.name!r} binds undeclared {sorted(undeclared)}")
        out[rep.name] = rep
    return dict(sorted(out.items()))


def _open(
    directory: Path, read_files: tuple[Path, ...] = ()
) -> tuple[duckdb.DuckDBPyConnection, Path]:
    """A read-only connection to the warehouse's current snapshot, confined to that
    snapshot's files (and `read_files`) by `warehouse.sandbox.lock_down`, and the
    snapshot's directory; WarehouseError for anything not a warehouse."""
    import duckdb

    from warehouse.db import WarehouseError, open_snapshot

    try:
        con, snapshot = open_snapshot(directory, private=True)
    except duckdb.Error as exc:
        reason = _first_line(exc)
        raise WarehouseError(f"{directory}: cannot open the warehouse database ({reason})") from None
    for path in read_files:
        if not Path(path).is_file():
            con.close()
            # An input file of the user's: exit BAD_INPUT, as for a missing H5 or NPZ.
            why = "not a file" if Path(path).exists() else "no such file"
            raise FileNotFoundError(f"--read {path}: {why}")
    lock_down(con, [snapshot], read_files)
    return con, snapshot


def _first_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def load_manifest(directory: Path) -> dict:
    """manifest.json, or WarehouseError when it is unreadable or lacks `sae.n_latents`."""
    from warehouse.db import WarehouseError, read_manifest

    try:
        manifest = read_manifest(directory)
        int(manifest["sae"]["n_latents"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WarehouseError(f"{directory}: unreadable manifest.json ({_first_line(exc)})") from None
    return manifest


def validate(rep: SqlFile, values: dict[str, Any]) -> None:
    """Check declared ranges and choices (BadValue) and required values (BadValue)."""
    for p in rep.params:
        v = values.get(p.name)
        if v is None:
            if p.required:
                raise BadValue(f"missing --{p.name.replace('_', '-')}")
            continue
        if p.minimum is not None and v < p.minimum or p.maximum is not None and v > p.maximum:
            raise BadValue(f"--{p.name.replace('_', '-')} {v} is outside [{p.minimum}, {p.maximum}]")
        if p.choices and v not in p.choices:
            raise BadValue(f"--{p.name.replace('_', '-')} must be one of {', '.join(p.choices)}")


def _check_exists(
    con: duckdb.DuckDBPyConnection, rep: SqlFile, values: dict[str, Any], n_latents: int
) -> None:
    names = {p.name for p in rep.params}
    if "feature" in names and values.get("feature") is not None:
        f = values["feature"]
        if not 0 <= f < n_latents:
            raise NotFound(f"unknown feature {f}: this warehouse's features are 0..{n_latents - 1}")
    if "review_id" in names and values.get("review_id") is not None:
        rid = values["review_id"]
        if con.execute("SELECT count(*) FROM reviews WHERE review_id = $r", {"r": rid}).fetchone()[0] == 0:
            raise NotFound(f"unknown review id {rid!r}")
    if "token" in names and values.get("token") is not None:
        tok = values["token"]
        if con.execute("SELECT count(*) FROM tokens WHERE token = $t", {"t": tok}).fetchone()[0] == 0:
            similar = con.execute(
                "SELECT token, count(*) AS n FROM tokens WHERE lower(trim(token)) = lower(trim($t)) "
                "GROUP BY token ORDER BY n DESC, token LIMIT 3",
                {"t": tok},
            ).fetchall()
            hint = ""
            if similar:
                hint = "; did you mean " + " or ".join(f"{t!r} ({n}x)" for t, n in similar) + "?"
            raise NotFound(f"token {tok!r} never occurs in this warehouse{hint}")


def _run_statement(
    con: duckdb.DuckDBPyConnection, st: Statement, values: dict[str, Any], arrow: bool
) -> Section:
    rel = con.execute(st.sql, {name: values[name] for name in st.params})
    columns = [d[0] for d in rel.description]
    types = [str(d[1]) for d in rel.description]
    if arrow:
        table = _arrow(rel)
        return Section(st.name, columns, types, _rows(table), st.caption, st.display, table)
    return Section(st.name, columns, types, rel.fetchall(), st.caption, st.display)


def _arrow(rel: duckdb.DuckDBPyConnection) -> Any:  # (the connection holds the result)
    """The result as a pyarrow.Table (`to_arrow_table` is the newer DuckDB's name)."""
    fetch = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table
    return fetch()


def _rows(table: Any) -> list[tuple]:
    return list(zip(*(table.column(i).to_pylist() for i in range(table.num_columns))))


def run_report(
    rep: SqlFile,
    warehouse: Path,
    values: dict[str, Any],
    sections: list[str] | None = None,
    arrow: bool = False,
) -> list[Section]:
    """Validate `values`, then run the report's statements (or the named `sections`)."""
    validate(rep, values)
    chosen = [st for st in rep.statements if sections is None or st.name in sections]
    con, snapshot = _open(warehouse)
    try:
        n_latents = int(load_manifest(snapshot)["sae"]["n_latents"])
        _check_exists(con, rep, values, n_latents)
        return [_run_statement(con, st, values, arrow) for st in chosen]
    finally:
        con.close()


def run_query(
    warehouse: Path, query: str, arrow: bool = False, read_files: tuple[Path, ...] = ()
) -> Section:
    """Run one read-only query against the warehouse (tables, views and macros), in the
    sandbox (`warehouse.sandbox`); `read_files` are user files the query may read."""
    con, _snapshot = _open(warehouse, tuple(read_files))
    try:
        check_query(con, query)
        st = Statement("query", query)
        rel = con.execute(query)
        if rel.description is None:
            return Section(st.name, [], [], [])
        columns = [d[0] for d in rel.description]
        types = [str(d[1]) for d in rel.description]
        if arrow:
            table = _arrow(rel)
            return Section(st.name, columns, types, _rows(table), arrow=table)
        return Section(st.name, columns, types, rel.fetchall())
    finally:
        con.close()
