"""The `saewh` command line: parse, call the library, print.

stdout carries only data; progress, summaries and errors go to stderr.  Every
failure is one line on stderr and a documented exit code (see `ExitCode`).
"""

from __future__ import annotations

import enum
import inspect
import json
import os
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperGroup

from warehouse.api import Warehouse
from warehouse.errors import ExitCode, exit_code_of, one_line
from warehouse.sqlfiles import Param, SqlFile

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
            typer.echo(f"saewh: error: {_one_line_text(exc.format_message())}{hint}", err=True)
            sys.exit(exc.exit_code)
        sys.exit(rv if isinstance(rv, int) else 0)


def _one_line_text(text: str) -> str:
    return " ".join(text.split())


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
        raise fail(one_line(exc) or type(exc).__name__, code) from None
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


@app.command()
def synth(
    out: Annotated[Path, typer.Option("--out", help="Directory for sae_features.h5 and metadata.npz.")],
    reviews: Annotated[int, typer.Option(min=1, help="Number of reviews.")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    latents: Annotated[int, typer.Option(min=1, help="SAE width (number of latents).")] = 24576,
    k: Annotated[int, typer.Option(min=1, help="Active features per token.")] = 32,
) -> None:
    """Write a synthetic H5 + NPZ pair in the real formats, with planted features."""

    def go():
        from etl.synth import synthesize

        res = synthesize(
            out, n_reviews=reviews, seed=seed, n_latents=latents, k=k, progress=sys.stderr.isatty()
        )
        typer.echo(
            f"wrote {res.h5_path} and {res.npz_path}: {res.n_reviews:,} reviews, "
            f"{res.n_tokens:,} tokens; planted features: "
            + ", ".join(f"{name}={feat}" for name, feat in res.planted.items()),
            err=True,
        )

    run_guarded(go)


@app.command()
def build(
    h5: Annotated[Path, typer.Option("--h5", help="The SAE activations HDF5 file.")],
    npz: Annotated[Path, typer.Option("--npz", help="The review metadata NPZ file.")],
    warehouse: WarehouseOpt = None,
    tokenizer: Annotated[str, typer.Option(help="`gpt2` (offline) or a transformers name/path.")] = "gpt2",
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    replace: Annotated[bool, typer.Option("--replace", help="Replace an existing warehouse.")] = False,
    latents: Annotated[
        int | None,
        typer.Option(min=1, help="SAE width; feature ids must be below it (default 24,576)."),
    ] = None,
    infer_latents: Annotated[
        bool,
        typer.Option("--infer-latents", help="SAE width = max feature id in the H5 + 1 (one more pass)."),
    ] = False,
    chunk_tokens: Annotated[int, typer.Option(min=1, help="Tokens per processing chunk.")] = 131072,
) -> None:
    """Build (or with --replace, atomically rebuild) a warehouse from an H5 and an NPZ.

    Inputs are validated first; the build writes into a staging directory beside the
    target and swaps it in only when complete and verified (see the README).
    """
    if infer_latents and latents is not None:
        raise fail("--latents and --infer-latents exclude each other", ExitCode.USAGE)

    def go():
        from etl.build import DEFAULT_LATENTS, build_warehouse
        from warehouse.signals import interrupts_as_exceptions

        target = warehouse or default_warehouse()
        with interrupts_as_exceptions():
            s = build_warehouse(
                h5,
                npz,
                target,
                tokenizer=tokenizer,
                workers=workers,
                replace=replace,
                n_latents=latents or DEFAULT_LATENTS,
                chunk_tokens=chunk_tokens,
                progress=True,
                infer_latents=infer_latents,
            )
        aligned = ", ".join(f"{k} {v:,}" for k, v in sorted(s.alignment.items()))
        typer.echo(
            f"built {s.warehouse}: {s.n_activations:,} activations from {s.n_tokens:,} tokens "
            f"in {s.seconds:.1f}s ({s.rows_per_second:,.0f} rows/s); "
            f"{s.zero_slots_dropped:,} zero slots dropped; {s.n_reviews:,} reviews "
            f"({s.h5_reviews_missing_from_npz:,} only in the H5, "
            f"{s.npz_reviews_without_tokens:,} without tokens); alignment: {aligned}"
            + (f"; {s.n_latents:,} latents inferred" if s.n_latents_inferred else ""),
            err=True,
        )
        for what, n in s.warnings.items():
            typer.echo(f"saewh: warning: {n:,} {_WARNINGS.get(what, what)}", err=True)

    run_guarded(go)


_WARNINGS = {
    "reviews_unaligned": "review(s) have more H5 tokens than their text (alignment 'mismatch'): "
    "their token text, offsets and contexts are NULL",
    "reviews_without_metadata": "review(s) named in the H5 are missing from the NPZ (alignment "
    "'no_text'): their text and metadata are NULL",
}


@app.command()
def repoint(warehouse: WarehouseOpt = None) -> None:
    """After moving a warehouse directory: publish its current snapshot again with views
    naming the files where they are now (saewh readers manage without; the DuckDB CLI
    needs it)."""

    def go():
        from etl.publish import republish_moved
        from warehouse.db import check_directory, points_here
        from warehouse.errors import WarehouseError

        root = check_directory(warehouse or default_warehouse())
        if points_here(root):
            typer.echo(f"{root}: its views already name its files", err=True)
        elif republish_moved(root):
            typer.echo(f"{root}: re-published with its views at this place", err=True)
        else:
            raise WarehouseError(
                f"{root}: cannot publish a snapshot here (not writable, or a build holds its lock); "
                "saewh readers still work (through temporary views)"
            )

    run_guarded(go)


@app.command()
def vacuum(warehouse: WarehouseOpt = None) -> None:
    """Remove every snapshot but the current one that no connection has open."""

    def go():
        from etl.publish import prune
        from etl.staging import LockBusy, acquire_build_lock, release_lock
        from warehouse.db import check_directory
        from warehouse.errors import WarehouseError

        root = check_directory(warehouse or default_warehouse())
        try:
            lock = acquire_build_lock(root)
        except LockBusy as exc:
            raise WarehouseError(str(exc)) from None
        try:
            removed, busy = prune(root, keep=set())
        finally:
            release_lock(lock)
        note = f"; kept {len(busy)} in use ({', '.join(busy)})" if busy else ""
        typer.echo(f"{root}: removed {len(removed)} snapshot(s){note}", err=True)

    run_guarded(go)


@app.command()
def verify(
    warehouse: WarehouseOpt = None,
    checksums: Annotated[
        bool,
        typer.Option(help="Read every file in full: SHA-256s, Parquet page CRCs, DuckDB block checksums."),
    ] = True,
) -> None:
    """Check every file of a warehouse against its manifest: sizes, rows, checksums."""

    def go():
        wh = Warehouse(warehouse or default_warehouse())
        for warning in wh.verify(checksums=checksums):
            typer.echo(f"saewh: warning: {warning}", err=True)
        typer.echo(f"{wh.path}: ok", err=True)

    run_guarded(go)


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


InfoFormat = enum.Enum("InfoFormat", {"table": "table", "json": "json"}, type=str)
_INFO_TABLE = InfoFormat("table")


@app.command()
def info(
    warehouse: WarehouseOpt = None,
    fmt: Annotated[InfoFormat, typer.Option("--format", "-f", help="table or json.")] = _INFO_TABLE,
    as_json: JsonOpt = False,
) -> None:
    """What the warehouse holds: inputs, SAE shape, row counts and sizes, versions."""

    def go():
        facts = Warehouse(warehouse or default_warehouse()).info()
        if as_json or _choice(fmt) == "json":
            _emit(json.dumps(facts, indent=2) + "\n", None)
            return
        _emit(_info_text(facts), None)

    run_guarded(go)


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _info_text(manifest: dict) -> str:
    from warehouse.render import render_table

    directory, sizes = manifest["directory"], manifest["tables"]
    summary = manifest.get("summary", {})
    sae = manifest.get("sae", {})
    inputs = manifest.get("inputs", {})
    alignment = ", ".join(f"{k} {v:,}" for k, v in sorted(summary.get("alignment", {}).items()))
    facts = [
        ("directory", str(directory)),
        ("built", str(manifest.get("built_at", "?"))),
        ("snapshot", str(manifest.get("snapshot", "?"))),
        ("schema version", str(manifest.get("schema_version", "?"))),
        ("SAE", f"{sae.get('n_latents', '?'):,} latents, k = {sae.get('k', '?')}"),
        ("tokenizer", str(manifest.get("tokenizer", "?"))),
        ("reviews", f"{summary.get('n_reviews', 0):,} "
                    f"({summary.get('n_reviews_with_tokens', 0):,} with tokens)"),
        ("tokens", f"{summary.get('n_tokens', 0):,}"),
        ("activations", f"{summary.get('n_activations', 0):,} "
                        f"({summary.get('zero_slots_dropped', 0):,} zero slots dropped)"),
        ("alignment", alignment or "?"),
    ]
    for name, meta in sorted(inputs.items()):
        facts.append((f"input {name}", f"{meta.get('path', '?')} ({_human_bytes(meta.get('bytes', 0))})"))
    versions = manifest.get("versions", {})
    facts.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    key_width = max(len(k) for k, _ in facts)
    lines = [f"{k.ljust(key_width)}  {v}" for k, v in facts]
    rows = [(t, m["rows"], _human_bytes(m["bytes"]), m["files"]) for t, m in sizes.items()]
    rows.append(("total", sum(m["rows"] for m in sizes.values()),
                 _human_bytes(sum(m["bytes"] for m in sizes.values())),
                 sum(m["files"] for m in sizes.values())))
    table = render_table(["table", "rows", "size", "files"], rows, types=["VARCHAR", "BIGINT", "", "BIGINT"])
    return "\n".join(lines) + "\n\n" + table


@app.command()
def sql(
    query: Annotated[
        str, typer.Argument(help="One read-only query (SELECT, WITH, FROM, DESCRIBE...); - reads stdin.")
    ],
    warehouse: WarehouseOpt = None,
    fmt: FormatOpt = None,
    as_csv: CsvOpt = False,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    read: Annotated[
        list[Path] | None,
        typer.Option("--read", help="A file of yours the query may read (repeatable), e.g. a CSV to join."),
    ] = None,
    max_rows: MaxRowsOpt = SQL_MAX_ROWS,
    csv_safe: CsvSafeOpt = False,
) -> None:
    """Run one read-only SQL query against the warehouse (tables, views and macros).

    The query runs in a sandbox DuckDB enforces: one SELECT (or EXPLAIN of one); no
    file outside the warehouse but those named with --read; no settings, attach,
    install or load.  Anything else is refused (exit 6).  Rows stream: every format
    but the table (its first --max-rows rows) writes all of them in bounded memory.
    """
    chosen = _choose_format(fmt, as_csv, as_json, output, csv_safe)

    def go():
        text = sys.stdin.read() if query == "-" else query
        wh = Warehouse(warehouse or default_warehouse())
        with wh.sql(text, arrow=chosen == "parquet", read_files=tuple(read or ())) as result:
            _write_result(result, chosen, output, title="saewh sql", subtitle=text, what="the query",
                          max_rows=max_rows, csv_safe=csv_safe)

    run_guarded(go)


# ---------------------------------------------------------------- reports

def _command_group(name: str, help: str) -> typer.Typer:
    """A `saewh NAME ...` group with the main app's behaviour (help when bare, no shell
    completion, no pretty tracebacks)."""
    group = typer.Typer(
        name=name, help=help, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False
    )
    app.add_typer(group, name=name)
    return group


report_app = _command_group(
    "report", "Canned reports, one per SQL file in sql/reports/ (see each one's --help)."
)

_PY_TYPES = {"INTEGER": int, "BIGINT": int, "DOUBLE": float, "VARCHAR": str, "BOOLEAN": bool}


def _param_option(p: Param) -> inspect.Parameter:
    """The Typer option for a report parameter declared in its SQL header."""
    flag = "--" + p.name.replace("_", "-")
    py = _PY_TYPES[p.type]
    extra: dict[str, Any] = {}
    if p.minimum is not None:
        extra["min"] = p.minimum
    if p.maximum is not None:
        extra["max"] = p.maximum
    default = ... if p.required else p.default_value()
    if p.choices:
        py = enum.Enum(f"{p.name}_choice", {c: c for c in p.choices}, type=str)
        if default not in (None, ...):
            default = py(default)
    if py is bool:
        option = typer.Option(default, flag, help=p.help)
    else:
        option = typer.Option(default, flag, help=p.help, show_default=default is not None, **extra)
    annotation = py if (default is not None or py is bool) else (py | None)
    return inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)


def _command_line(rep: SqlFile, values: dict[str, Any]) -> str:
    parts = ["saewh", "report", rep.name]
    for p in rep.params:
        v = values.get(p.name)
        flag = "--" + p.name.replace("_", "-")
        if p.type == "BOOLEAN":
            parts += [flag] if v else []
        elif v is not None:
            parts += [flag, shlex.quote(str(v))]
    return " ".join(parts)


def _report_title(rep: SqlFile, values: dict[str, Any]) -> str:
    """The page title: the report's `-- title:` with its `$params` filled in (a page
    named after what it shows), else the command line."""
    if not rep.title:
        return _command_line(rep, values)
    return re.sub(r"\$(\w+)", lambda m: str(values.get(m.group(1), m.group(0))), rep.title)


def _report_command(rep: SqlFile) -> Callable[..., None]:
    multi = len(rep.statements) > 1
    section_names = [st.name for st in rep.statements]

    def command(**kwargs: Any) -> None:
        warehouse = kwargs.pop("warehouse")
        output = kwargs.pop("output")
        kwargs.pop("show_sql")  # handled eagerly, see _show_sql
        max_rows = kwargs.pop("max_rows")
        csv_safe = kwargs.pop("csv_safe")
        sections = [_choice(x) for x in kwargs.pop("section", None) or []] or None
        kwargs = {k: _choice(v) for k, v in kwargs.items()}
        chosen = _choose_format(
            kwargs.pop("fmt"), kwargs.pop("as_csv"), kwargs.pop("as_json"), output, csv_safe
        )

        # Checked before the warehouse is opened (Warehouse.report validates the options
        # before it opens it too): a usage error must not wait for a query.
        _check_one_section(chosen, sections or section_names, f"the {rep.name} report")

        def go():
            wh = Warehouse(warehouse or default_warehouse())
            with wh.report(rep.name, sections=sections, arrow=chosen == "parquet", **kwargs) as result:
                _write_result(
                    result,
                    chosen,
                    output,
                    title=_report_title(rep, kwargs),
                    subtitle=(f"{_command_line(rep, kwargs)} — {rep.description}" if rep.title
                              else rep.description),
                    what=f"the {rep.name} report",
                    max_rows=max_rows,
                    csv_safe=csv_safe,
                )

        run_guarded(go)

    params = [_param_option(p) for p in rep.params]
    common = [
        ("warehouse", WarehouseOpt, None),
        ("fmt", FormatOpt, None),
        ("as_csv", CsvOpt, False),
        ("as_json", JsonOpt, False),
        ("output", OutputOpt, None),
        ("max_rows", MaxRowsOpt, REPORT_MAX_ROWS),
        ("csv_safe", CsvSafeOpt, False),
    ]
    if multi:
        section_enum = enum.Enum("section_choice", {n: n for n in section_names}, type=str)
        section_opt = Annotated[
            list[section_enum] | None,  # type: ignore[valid-type]
            typer.Option(
                "--section",
                help="Only this section (repeatable); csv and parquet need exactly one.",
            ),
        ]
        common.append(("section", section_opt, None))
    def show_sql(value: bool) -> None:
        # Eager: runs before Click checks the required options.
        if value:
            run_guarded(lambda: _emit(rep.sql if rep.sql.endswith("\n") else rep.sql + "\n", None))
            raise typer.Exit(0)

    show_sql_opt = typer.Option(
        "--show-sql", help="Print the report's SQL (run it in the duckdb CLI) and exit.",
        is_eager=True, callback=show_sql,
    )
    common.append(("show_sql", Annotated[bool, show_sql_opt], False))
    params += [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        for name, annotation, default in common
    ]
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {}
    command.__name__ = rep.name.replace("-", "_")
    doc = rep.description
    if multi:
        doc += f"\n\nSections: {', '.join(section_names)}."
    command.__doc__ = doc
    return command


def _register_reports() -> None:
    from warehouse.reports import load_reports

    for rep in load_reports().values():
        report_app.command(name=rep.name)(_report_command(rep))


_register_reports()


# ---------------------------------------------------------------- exports

export_app = _command_group(
    "export", "Export a feature's dashboard data (Neuronpedia / SAEDashboard JSON) or every feature's stats."
)

ExportFormat = enum.Enum(
    "ExportFormat", {f: f for f in ("neuronpedia", "saedashboard", "neuronpedia-import")}, type=str
)
_NEURONPEDIA = ExportFormat("neuronpedia")


@export_app.command("feature")
def export_feature(
    feature: Annotated[
        list[int], typer.Option(help="Feature id, in [0, n_latents); repeat for several (not neuronpedia).")
    ],
    fmt: Annotated[
        ExportFormat,
        typer.Option(
            "--format", "-f",
            help="neuronpedia (one feature, as its API serves it), saedashboard (a batch-N.json), "
            "neuronpedia-import (Neuronpedia's import tables, written under -o DIR).",
        ),
    ] = _NEURONPEDIA,
    k: Annotated[int, typer.Option(min=0, max=100, help="Top activations.")] = 20,
    intervals: Annotated[int, typer.Option(min=1, max=100, help="Equal-width intervals sampled.")] = 10,
    n: Annotated[int, typer.Option(min=0, max=1000, help="Random examples per interval.")] = 5,
    seed: Annotated[int, typer.Option(help="Sampling seed (same seed, same samples).")] = 0,
    before: Annotated[int, typer.Option(min=0, max=1000, help="Window tokens before the token.")] = 20,
    after: Annotated[int, typer.Option(min=0, max=1000, help="Window tokens after the token.")] = 10,
    bins: Annotated[int, typer.Option(min=1, max=1000, help="Activation histogram bins.")] = 50,
    model: Annotated[str, typer.Option(help="Neuronpedia model id (modelId / model_id).")] = "gpt2-small",
    source: Annotated[
        str | None,
        typer.Option(
            help="Neuronpedia source id LAYER-SET[__SUFFIX] (SAEDashboard's layer, sae_set, sae_id_suffix); "
            "default 0-res-<width>, e.g. 0-res-24k.",
            show_default=False,
        ),
    ] = None,
    creator_id: Annotated[
        str, typer.Option(help="Neuronpedia creatorId of the rows (your user id on the importing instance).")
    ] = "clkht01d40000jv08hvalcvly",
    dataset: Annotated[
        str | None,
        typer.Option(help="Dataset name (dataset / dataSource); default: the NPZ's file name.",
                     show_default=False),
    ] = None,
    warehouse: WarehouseOpt = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write to this file (JSON) or directory (neuronpedia-import)."),
    ] = None,
) -> None:
    """Features' dashboard data for Neuronpedia / SAEDashboard: top activations and interval samples."""

    def go():
        from warehouse.export import export_features

        chosen = _choice(fmt)
        text = export_features(
            warehouse or default_warehouse(),
            list(feature),
            chosen,
            model=model,
            source=source,
            creator_id=creator_id,
            dataset=dataset,
            output=output,
            k=k,
            intervals=intervals,
            n=n,
            seed=seed,
            before=before,
            after=after,
            bins=bins,
        )
        if chosen == "neuronpedia-import":
            sys.stderr.write(f"saewh: wrote {text}")  # a note: the data is the directory
        else:
            _emit(text, output)

    run_guarded(go)


@export_app.command("stats")
def export_stats(
    warehouse: WarehouseOpt = None,
    fmt: FormatOpt = None,
    as_csv: CsvOpt = False,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    max_rows: MaxRowsOpt = SQL_MAX_ROWS,
) -> None:
    """Every feature's statistics (one row per feature): the macro feature_stats().

    The format defaults to the --output suffix (.parquet, .csv, .json, .jsonl), else csv.
    """
    suffix = output.suffix.lstrip(".").lower() if output is not None else ""
    if not (fmt or as_csv or as_json):
        fmt = OutputFormat(suffix) if suffix in ("parquet", "csv", "json", "jsonl") else OutputFormat("csv")
    chosen = _choose_format(fmt, as_csv, as_json, output)

    def go():
        from warehouse.export import stats_result

        with stats_result(warehouse or default_warehouse(), arrow=chosen == "parquet") as result:
            _write_result(result, chosen, output, title="saewh export stats", what="the stats",
                          max_rows=max_rows)

    run_guarded(go)


def main() -> None:  # pragma: no cover - console entry point
    app()
