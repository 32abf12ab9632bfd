"""Every error saewh shows a user: one hierarchy whose classes carry their exit code.

The library raises a `SaewhError` subclass with a one-line message; the CLI prints
`saewh: error: <message>` on stderr and exits with the class's `exit_code`
(`exit_code_of`, the one rule).  This module imports nothing heavy, so the CLI can map
errors without importing the ETL.
"""

from __future__ import annotations

import enum
import sys
from typing import ClassVar


class ExitCode(enum.IntEnum):
    """Exit codes of every saewh command (documented in the README)."""

    OK = 0
    INTERNAL = 1  # a bug: please report it
    USAGE = 2  # bad command-line options (Typer/Click's own code)
    BAD_INPUT = 3  # an input file is missing, malformed or inconsistent
    WAREHOUSE = 4  # warehouse missing, not a warehouse, already exists, or fails verify
    NOT_FOUND = 5  # unknown feature or review id
    QUERY = 6  # the SQL failed or tried to write
    WRITE_FAILED = 7  # the warehouse or the output could not be written (disk full, I/O error...)
    INTERRUPTED = 130  # Ctrl-C (SIGINT)
    TERMINATED = 143  # SIGTERM


def one_line(text: object) -> str:
    """`text` with every run of whitespace (newlines included) made one space; for an
    exception with no message, its class name (a reason is never empty)."""
    line = " ".join(str(text).split())
    if not line and isinstance(text, BaseException):
        return type(text).__name__
    return line


class SaewhError(Exception):
    """An error meant for the user: its message is one line, its class says the exit code."""

    exit_code: ClassVar[ExitCode] = ExitCode.INTERNAL

    def __str__(self) -> str:
        return one_line(super().__str__()) or type(self).__name__


class UsageError(SaewhError):
    """An option value the command cannot use."""

    exit_code = ExitCode.USAGE


class InputError(SaewhError):
    """An input file is missing, malformed or inconsistent.

    `position` is the H5 token row of the problem when there is one, so a parallel
    build can look for an earlier one (etl.inputs.scan_h5).
    """

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, message: str, position: int | None = None):
        super().__init__(message)
        self.position = position

    def __reduce__(self):  # keep `position` across the worker -> parent pickle
        return (type(self), (self.args[0], self.position))


class WarehouseError(SaewhError):
    """The warehouse is missing, moved beyond repair, busy, or inconsistent."""

    exit_code = ExitCode.WAREHOUSE


class NotFound(SaewhError):
    """An unknown feature, review id or token."""

    exit_code = ExitCode.NOT_FOUND


class QueryError(SaewhError):
    """The SQL failed, or is not one read-only query."""

    exit_code = ExitCode.QUERY


class OutputError(SaewhError):
    """The warehouse or the output could not be written: disk full, read-only, I/O error."""

    exit_code = ExitCode.WRITE_FAILED


def exit_code_of(exc: BaseException) -> ExitCode:
    """The exit code for `exc`: its class's, for the library's errors.

    Two foreign kinds reach the CLI without passing through a library edge that could
    wrap them: DuckDB's errors (a query that fails inside the engine: QUERY) and
    OSError from opening a user's file (BAD_INPUT).  Anything else is a bug (INTERNAL).
    """
    if isinstance(exc, SaewhError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return getattr(exc, "exit_code", ExitCode.INTERRUPTED)
    duckdb = sys.modules.get("duckdb")  # not imported: not raised (importing it is slow)
    if duckdb is not None and isinstance(exc, duckdb.Error):
        return ExitCode.QUERY
    if isinstance(exc, OSError):
        return ExitCode.BAD_INPUT
    return ExitCode.INTERNAL

