"""`Warehouse(path)`: the library's front door, for Python users and the CLI alike.

    from warehouse import Warehouse
    wh = Warehouse("wh")
    with wh.report("top-k", feature=16751, k=5) as result:
        rows = result.fetchall()
    wh.sql("SELECT * FROM top_k(16751, 5)").fetchall()
    wh.info()["tables"]["activations"]["rows"]

Every method raises a `warehouse.errors.SaewhError` subclass for what a user can fix.
`sql` and `report` run in the sandbox (read-only, no file outside the warehouse) and
stream: the returned `Result` runs its statements as it is read.  `connect()` is the
plain read-only DuckDB connection, for anything else.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from warehouse.errors import UsageError

if TYPE_CHECKING:
    import duckdb

    from warehouse.reports import Result


class Warehouse:
    """A warehouse directory (its current snapshot is resolved by each call)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).absolute()

    def __repr__(self) -> str:
        return f"Warehouse({str(self.path)!r})"

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A read-only DuckDB connection with the views and macros, kept on the snapshot
        current when it opened (`warehouse.db.connect`)."""
        from warehouse.db import connect

        return connect(self.path)

    def sql(self, query: str, *, read_files: tuple[Path, ...] = (), arrow: bool = False) -> Result:
        """One read-only query, sandboxed; `read_files` are files of yours it may read."""
        from warehouse.reports import run_query

        return run_query(self.path, query, arrow=arrow, read_files=tuple(read_files))

    def report(self, name: str, *, sections: list[str] | None = None, arrow: bool = False,
               **params: Any) -> Result:
        """The canned report `name` (`saewh report NAME`), its options as keywords
        (`feature=16751`); options left out take the report's defaults."""
        from warehouse.reports import load_reports, run_report

        reports = load_reports()
        if name not in reports:
            raise UsageError(f"no report {name!r}; the reports: {', '.join(reports)}")
        rep = reports[name]
        declared = {p.name: p for p in rep.params}
        unknown = sorted(set(params) - set(declared))
        if unknown:
            raise UsageError(f"report {name} has no option {unknown[0]!r}; "
                             f"its options: {', '.join(declared)}")
        if sections is not None:
            known = [st.name for st in rep.statements]
            missing = [s for s in sections if s not in known]
            if missing:
                raise UsageError(f"report {name} has no section {missing[0]!r}; "
                                 f"its sections: {', '.join(known)}")
        values = {p: params[p] if p in params else declared[p].default_value() for p in declared}
        return run_report(rep, self.path, values, sections, arrow=arrow)

    def info(self) -> dict:
        """The current snapshot's manifest (less its file list) with each table's rows,
        bytes and files, and the directory (`saewh info --json`)."""
        from warehouse.db import check_directory
        from warehouse.reports import load_manifest

        directory = check_directory(self.path)
        manifest = load_manifest(directory)
        out = {k: v for k, v in manifest.items() if k != "files"}
        out["tables"] = {
            table: {
                "rows": sum(f["rows"] for f in files),
                "bytes": sum(f["bytes"] for f in files),
                "files": len(files),
            }
            for table, files in manifest.get("files", {}).items()
        }
        out["directory"] = str(directory)
        return out

    def verify(self, checksums: bool = True) -> list[str]:
        """Check every file against the manifest (`saewh verify`); WarehouseError names
        the first problem; returns the warnings (files no table reads)."""
        from warehouse.verify import verify_warehouse

        return verify_warehouse(self.path, checksums=checksums)
