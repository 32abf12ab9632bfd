"""Canned reports: `sql/reports/*.sql`, parameters bound as `$name`, run read-only.

A report is one SQL file (see `warehouse.sqlfiles` for its header); the CLI's
`saewh report NAME` commands are generated from these files, so a new report is a
new file.  This module finds the files, validates parameter values against the
warehouse (a `feature` must be below the manifest's `sae.n_latents`, a `review_id`
or `token` must exist), runs each statement and returns its rows; rendering lives
in `warehouse.render`.  `run_query` is the read-only arbitrary-SQL path of `saewh sql`.
Results stream: a statement's rows are fetched while they are written (`Result`), in
a thread the main thread can interrupt (`run_interruptible`).

Nothing here imports numpy, pyarrow, h5py or transformers (parquet output and long
FLOAT columns import pyarrow when they are written).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from warehouse.errors import NotFound, UsageError, WarehouseError, one_line
from warehouse.sandbox import RefusedQuery, check_query, lock_down
from warehouse.sqlfiles import SqlFile, Statement, parse_sql, sql_dir

if TYPE_CHECKING:
    import duckdb

    from warehouse.render import Section  # imported when a statement runs: `saewh --help` skips it

T = TypeVar("T")

# Names the CLI uses for its own options: a report parameter may not take them.
RESERVED = frozenset({"warehouse", "fmt", "format", "csv", "json", "output", "section", "show_sql",
                      "max_rows", "csv_safe"})


__all__ = ["NotFound", "RefusedQuery", "Result", "UsageError",
           "load_manifest", "load_reports", "run_interruptible", "run_query", "run_report", "validate"]


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

    from warehouse.db import open_snapshot

    try:
        con, snapshot = open_snapshot(directory, private=True)
        # DuckDB keeps the Parquet bytes a query reads in its buffer pool (up to its
        # memory limit, 80% of RAM) for later queries of the same instance: one process
        # runs one query, so the cache would only make a streamed export's memory grow
        # with the data read (+170 MB over 160M activation rows).  Set before lock_down.
        con.execute("SET enable_external_file_cache = false")
    except duckdb.Error as exc:
        reason = one_line(exc)
        raise WarehouseError(f"{directory}: cannot open the warehouse database ({reason})") from None
    for path in read_files:
        if not Path(path).is_file():
            con.close()
            # An input file of the user's: exit BAD_INPUT, as for a missing H5 or NPZ.
            why = "not a file" if Path(path).exists() else "no such file"
            raise FileNotFoundError(f"--read {path}: {why}")
    lock_down(con, [snapshot], read_files)
    return con, snapshot



def load_manifest(directory: Path) -> dict:
    """manifest.json, or WarehouseError when it is unreadable or lacks `sae.n_latents`."""
    from warehouse.snapshots import read_manifest

    try:
        manifest = read_manifest(directory)
        int(manifest["sae"]["n_latents"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WarehouseError(f"{directory}: unreadable manifest.json ({one_line(exc)})") from None
    return manifest


def validate(rep: SqlFile, values: dict[str, Any]) -> None:
    """Check declared ranges and choices (UsageError) and required values (UsageError)."""
    for p in rep.params:
        v = values.get(p.name)
        if v is None:
            if p.required:
                raise UsageError(f"missing --{p.name.replace('_', '-')}")
            continue
        if p.minimum is not None and v < p.minimum or p.maximum is not None and v > p.maximum:
            raise UsageError(f"--{p.name.replace('_', '-')} {v} is outside [{p.minimum}, {p.maximum}]")
        if p.choices and v not in p.choices:
            raise UsageError(f"--{p.name.replace('_', '-')} must be one of {', '.join(p.choices)}")


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
        # From `vocabulary` (one row per token id): no scan of the tokens.
        if con.execute("SELECT count(*) FROM vocabulary WHERE token = $t", {"t": tok}).fetchone()[0] == 0:
            similar = con.execute(
                "SELECT token, sum(n_occurrences) AS n FROM vocabulary "
                "WHERE lower(trim(token)) = lower(trim($t)) GROUP BY token ORDER BY n DESC, token LIMIT 3",
                {"t": tok},
            ).fetchall()
            hint = ""
            if similar:
                hint = "; did you mean " + " or ".join(f"{t!r} ({n}x)" for t, n in similar) + "?"
            raise NotFound(f"token {tok!r} never occurs in this warehouse{hint}")


# Rows fetched at a time for the text formats (Python tuples: a few MB of narrow rows),
# and per Arrow record batch for parquet (`warehouse.render.write_parquet` gathers
# batches into row groups).
ROWS_PER_CHUNK = 8192
ARROW_BATCH_ROWS = 65536


def _fetch_chunks(con: duckdb.DuckDBPyConnection) -> Iterator[list[tuple]]:
    while True:
        rows = con.fetchmany(ROWS_PER_CHUNK)
        if not rows:
            return
        yield rows


def _run_statement(
    con: duckdb.DuckDBPyConnection, st: Statement, values: dict[str, Any], arrow: bool
) -> Section:
    """Start the statement; its rows stream from DuckDB as the section is read.

    The text formats fetch Python rows (`fetchmany`: the values `fetchall` gives,
    so rendering is the same for every type, and small results never import pyarrow);
    parquet reads Arrow record batches.
    """
    from warehouse.render import Section

    con.execute(st.sql, {name: values[name] for name in st.params})
    if con.description is None:
        return Section(st.name, [], [], [], st.caption, st.display)
    columns = [d[0] for d in con.description]
    types = [str(d[1]) for d in con.description]
    if arrow:
        # `to_arrow_reader` is the newer DuckDB's name of `fetch_record_batch`.
        reader = getattr(con, "to_arrow_reader", None) or con.fetch_record_batch
        return Section(st.name, columns, types, [], st.caption, st.display, arrow=reader(ARROW_BATCH_ROWS))
    return Section(st.name, columns, types, [], st.caption, st.display, stream=_fetch_chunks(con))


class Result:
    """The result sets of a query or a report, streamed from its sandboxed connection.

    Each statement starts when `sections` reaches it: one DuckDB connection streams one
    result at a time, so sections are read in order, each to its end.  `interrupt`
    may be called from another thread (it stops the running statement); `close` (or
    the `with` block) closes the connection.
    """

    def __init__(
        self, con: duckdb.DuckDBPyConnection, statements: list[Statement], values: dict[str, Any],
        arrow: bool = False,
    ) -> None:
        self._con = con
        self._statements = statements
        self._values = values
        self._arrow = arrow

    @property
    def names(self) -> list[str]:
        return [st.name for st in self._statements]

    def sections(self) -> Iterator[Section]:
        for st in self._statements:
            yield _run_statement(self._con, st, self._values, self._arrow)

    def _only_section(self) -> Section:
        if len(self._statements) != 1:
            raise UsageError(f"{len(self._statements)} sections ({', '.join(self.names)}): "
                             "read them with sections(), or choose one with sections=[...]")
        return next(self.sections())

    def fetchall(self) -> list[tuple]:
        """Every row of the only section (a query, or a report of one statement or with
        one chosen), in memory: for large results read `sections()` chunk by chunk."""
        section = self._only_section()
        if section.arrow is not None:
            return [tuple(row.values()) for row in section.arrow.read_all().to_pylist()]
        return [row for chunk in section.chunks() for row in chunk]

    def to_arrow(self) -> Any:
        """The only section as a pyarrow Table (opened with `arrow=True` it is read as Arrow
        batches; otherwise converted from the rows)."""
        import pyarrow as pa

        section = self._only_section()
        if section.arrow is not None:
            return section.arrow.read_all()
        rows = [row for chunk in section.chunks() for row in chunk]
        return pa.table({c: [r[i] for r in rows] for i, c in enumerate(section.columns)})

    def interrupt(self) -> None:
        self._con.interrupt()

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Result:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_interruptible(
    work: Callable[[], T],
    interrupt: Callable[[], None],
    on_stuck: Callable[[BaseException], None],
    grace: float = 1.0,
) -> T:
    """Run `work` (a query and the writing of its rows) in a thread while the main thread
    waits, so SIGINT and SIGTERM stop any query.

    Python runs signal handlers in the main thread only, between bytecodes; DuckDB, run
    by the main thread, notices Ctrl-C only between its own tasks (a cross join
    ignored it until it ended) and then raises a RuntimeError.  Here the main thread
    waits, turns SIGINT into KeyboardInterrupt and SIGTERM into `warehouse.signals.Terminated`
    (as a build does), interrupts the query, and re-raises once `work` has ended.  A
    `work` still running `grace` seconds later (DuckDB stuck in one long task, or a
    write blocked on a full pipe) is abandoned: `on_stuck(exc)` must end the process.
    """
    from warehouse.signals import interrupts_as_exceptions, signals_held

    outcome: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            outcome["error"] = exc
        finally:
            done.set()

    # Waiting on an Event, not Thread.join: a join that a KeyboardInterrupt cuts short
    # marks the thread finished while it still runs (CPython 3.11's bpo-45274 fix).
    worker = threading.Thread(target=run, name="saewh-query", daemon=True)
    with interrupts_as_exceptions():
        try:
            worker.start()
            while not done.wait(0.5):
                pass
        except KeyboardInterrupt as exc:  # (Terminated is one)
            with signals_held():  # a second Ctrl-C must not cut the wait short
                interrupt()
                if not done.wait(grace):
                    on_stuck(exc)
            raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def run_report(
    rep: SqlFile,
    warehouse: Path,
    values: dict[str, Any],
    sections: list[str] | None = None,
    arrow: bool = False,
) -> Result:
    """Validate `values` and open the warehouse; the report's statements (or the named
    `sections`) run as the Result is read."""
    validate(rep, values)
    chosen = [st for st in rep.statements if sections is None or st.name in sections]
    con, snapshot = _open(warehouse)
    try:
        n_latents = int(load_manifest(snapshot)["sae"]["n_latents"])
        _check_exists(con, rep, values, n_latents)
    except BaseException:
        con.close()
        raise
    return Result(con, chosen, values, arrow)


def run_query(
    warehouse: Path, query: str, arrow: bool = False, read_files: tuple[Path, ...] = (), name: str = "query"
) -> Result:
    """Open one read-only query against the warehouse (tables, views and macros), in the
    sandbox (`warehouse.sandbox`); `read_files` are user files the query may read.  It
    runs as the Result is read."""
    con, _snapshot = _open(warehouse, tuple(read_files))
    try:
        check_query(con, query)
    except BaseException:
        con.close()
        raise
    return Result(con, [Statement(name, query)], {}, arrow)
