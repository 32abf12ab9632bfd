"""What every `saewh` command shares: the app, one-line errors and exit codes, the
output options and writing a streamed result (stdout carries only data)."""

from __future__ import annotations

import enum
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperGroup

from warehouse.errors import ExitCode, exit_code_of, one_line

T = TypeVar("T")


def _flags_as_flags() -> None:
    """Typer 0.29's help lists a flag (`--csv`, `--help`) with a `<bool>` type, as if it
    took a value: show flags without one (every other option keeps its type)."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich
    if getattr(shown, "_saewh", False):
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        if getattr(self, "is_flag", False) and not getattr(self, "count", False):
            return None
        return shown(self, ctx)

    display_type_rich._saewh = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_as_flags()


class _OneLineErrorGroup(TyperGroup):
    """Usage errors (bad option values, unknown options) as one line on stderr, exit 2.

    Typer would print a framed, multi-line panel; every saewh error is one line.
    """

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except Exception as exc:
            # Click's exceptions, matched by shape: newer Typers vendor their own Click.
            kind = type(exc).__name__
            if kind == "NoArgsIsHelpError":
                message = exc.format_message()  # type: ignore[attr-defined]
                if message.strip():  # (with rich, the help is already printed)
                    typer.echo(message, err=True)
                sys.exit(exc.exit_code)  # type: ignore[attr-defined]
            if kind == "Abort":  # Click's word for a KeyboardInterrupt while it parsed
                typer.echo("saewh: error: interrupted", err=True)
                sys.exit(int(ExitCode.INTERRUPTED))
            if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
                raise
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            typer.echo(f"saewh: error: {one_line(exc.format_message())}{hint}", err=True)
            sys.exit(exc.exit_code)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    name="saewh",
    help="A DuckDB warehouse for sparse-autoencoder activations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_OneLineErrorGroup,
)

DEFAULT_WAREHOUSE = Path("warehouse-data")


def fail(message: str, code: ExitCode) -> typer.Exit:
    typer.echo(f"saewh: error: {message}", err=True)
    return typer.Exit(int(code))


def run_guarded(fn: Callable[[], T]) -> T:
    """Run `fn`, turning the library's exceptions into one-line errors and exit codes.

    Every library error is a `warehouse.errors.SaewhError` carrying its exit code;
    `exit_code_of` is the one rule that maps an exception to a code.
    """
    try:
        return fn()
    except typer.Exit:
        raise
    except BrokenPipeError:
        # The reader went away (`saewh ... | head`): not an error of ours.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        raise typer.Exit(0) from None
    except Exception as exc:  # noqa: BLE001 - the promise is: never a traceback
        code = exit_code_of(exc)
        if code is ExitCode.INTERNAL:
            raise fail(f"internal error: {type(exc).__name__}: {one_line(exc)}", code) from None
        raise fail(one_line(exc), code) from None
    except KeyboardInterrupt as exc:  # (warehouse.signals.Terminated is one: SIGTERM)
        message, code = _interruption(exc)
        raise fail(message, code) from None


def _interruption(exc: KeyboardInterrupt) -> tuple[str, ExitCode]:
    code = exit_code_of(exc)
    return ("terminated" if code is ExitCode.TERMINATED else "interrupted"), code


def default_warehouse() -> Path:
    return Path(os.environ.get("SAEWH_WAREHOUSE", str(DEFAULT_WAREHOUSE)))


WarehouseOpt = Annotated[
    Path | None,
    typer.Option(
        "--warehouse",
        "-w",
        help="Warehouse directory (default: $SAEWH_WAREHOUSE, else ./warehouse-data).",
    ),
]


OUTPUT_FORMATS = ("table", "csv", "json", "jsonl", "parquet", "html")  # = warehouse.render.FORMATS

OutputFormat = enum.Enum("OutputFormat", {f: f for f in OUTPUT_FORMATS}, type=str)

FormatOpt = Annotated[
    OutputFormat | None,
    typer.Option(
        "--format",
        "-f",
        help="Output format (default: table); parquet needs --output.",
        show_default=False,
    ),
]
CsvOpt = Annotated[bool, typer.Option("--csv", help="Shorthand for --format csv.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Shorthand for --format json.")]
OutputOpt = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Write to this file instead of stdout.", dir_okay=False),
]
CsvSafeOpt = Annotated[
    bool,
    typer.Option(
        "--csv-safe",
        help="CSV for spreadsheets: a text cell starting with = + - @ tab or CR gets a leading ' "
        "(implies --format csv).",
    ),
]
SQL_MAX_ROWS = 40  # an arbitrary query may return billions of rows
REPORT_MAX_ROWS = 1000  # a report's rows are bounded by its own options (--k, --limit)
MaxRowsOpt = Annotated[
    int,
    typer.Option("--max-rows", min=0, help="The table shows this many rows and counts the rest (0: all)."),
]


def _choice(value: Any) -> Any:
    """An Enum choice's value (Typer passes choices as Enum members)."""
    return value.value if isinstance(value, enum.Enum) else value


def _choose_format(
    fmt: Any, as_csv: bool, as_json: bool, output: Path | None, csv_safe: bool = False
) -> str:
    chosen = {f for f, on in (("csv", as_csv), ("json", as_json)) if on}
    if fmt:
        chosen.add(_choice(fmt))
    if len(chosen) > 1:
        raise fail(f"conflicting output formats: {', '.join(sorted(chosen))}", ExitCode.USAGE)
    if csv_safe and chosen - {"csv"}:
        raise fail(f"--csv-safe is for csv output, not {chosen.pop()}", ExitCode.USAGE)
    fmt = chosen.pop() if chosen else ("csv" if csv_safe else "table")
    if fmt == "parquet" and output is None:
        raise fail("--format parquet writes a file: give it --output FILE", ExitCode.USAGE)
    return fmt


def _open_output(output: Path | None) -> Any:
    """stdout or the --output file (one that cannot be created is a usage error)."""
    from warehouse.render import Output

    if output is None:
        return Output(sys.stdout)
    try:
        return Output(path=output)
    except OSError as exc:
        raise fail(f"cannot write {output}: {exc.strerror or one_line(exc)}", ExitCode.USAGE) from None


def _emit(text: str, output: Path | None) -> None:
    """Data to stdout (or --output); nothing else goes there."""
    out = _open_output(output)
    try:
        out.write(text)
        out.commit()
    except BaseException:
        out.abort()
        raise


def _check_one_section(fmt: str, names: list[str], what: str) -> None:
    """csv and parquet hold one result set: refuse several before any query runs."""
    if fmt in ("csv", "parquet") and len(names) > 1:
        raise fail(
            f"{what} has several sections ({', '.join(names)}); {fmt} holds one: choose it with --section",
            ExitCode.USAGE,
        )


def _write_result(
    result: Any,
    fmt: str,
    output: Path | None,
    *,
    title: str = "",
    subtitle: str = "",
    what: str = "this result",
    max_rows: int = 0,
    csv_safe: bool = False,
) -> None:
    """Stream a `warehouse.reports.Result` in `fmt`: the query runs in a thread, so
    Ctrl-C and SIGTERM stop it (see `run_interruptible`)."""
    from warehouse.render import use_color, write_parquet, write_sections
    from warehouse.reports import run_interruptible

    names = result.names
    _check_one_section(fmt, names, what)
    out = _open_output(output)
    color = fmt == "table" and output is None and use_color(sys.stdout)

    def work() -> list:
        if fmt == "parquet":
            for section in result.sections():
                if section.columns:
                    write_parquet(section, out)
            return []
        return write_sections(
            result.sections(), fmt, out, multi=len(names) > 1, title=title, subtitle=subtitle,
            color=color, max_rows=max_rows, csv_safe=csv_safe,
        )

    def stuck(exc: BaseException) -> None:
        # The query ignored the interrupt for a second (or a write is blocked): leave
        # without it, and without half an --output file.
        out.abort(close=False)
        message, code = _interruption(exc)  # type: ignore[arg-type]
        sys.stderr.write(f"saewh: error: {message}\n")
        sys.stderr.flush()
        os._exit(int(code))

    try:
        omitted = run_interruptible(work, result.interrupt, stuck)
        out.commit()
    except BaseException:
        out.abort()
        raise
    for cut in omitted:
        where = f"{cut.section}: " if len(names) > 1 else ""
        if cut.total > cut.shown:
            typer.echo(
                f"saewh: {where}{cut.total - cut.shown:,} more rows not shown ({cut.shown:,} of "
                f"{cut.total:,}); all of them: --max-rows 0, or --csv / --format parquet -o FILE",
                err=True,
            )
        if cut.columns:  # never a column dropped silently
            typer.echo(
                f"saewh: {where}columns cut off at the terminal's edge: {', '.join(cut.columns)}; "
                f"see them: COLUMNS={cut.needed} (the table's width), or --json / --csv",
                err=True,
            )
