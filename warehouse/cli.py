"""The `saewh` command line: parse, call the library, print.

stdout carries only data; progress, summaries and errors go to stderr.  Every
failure is one line on stderr and a documented exit code (see `ExitCode`).
The shared machinery is `warehouse.cli_common`; the report and export commands are
`warehouse.cli_reports`.
"""

from __future__ import annotations

import enum
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from warehouse.api import Warehouse
from warehouse.cli_common import (
    SQL_MAX_ROWS,
    CsvOpt,
    CsvSafeOpt,
    FormatOpt,
    JsonOpt,
    MaxRowsOpt,
    OutputOpt,
    WarehouseOpt,
    _choice,
    _choose_format,
    _emit,
    _write_result,
    app,
    default_warehouse,
    fail,
    run_guarded,
)
from warehouse.cli_reports import export_app, report_app
from warehouse.errors import ExitCode


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
    engine: Annotated[
        str,
        typer.Option(help="Where the heavy phases run: local (worker processes) or spark (the spark extra)."),
    ] = "local",
    master: Annotated[
        str | None,
        typer.Option(help="--engine spark: the Spark master URL (default local[*]; an active session wins)."),
    ] = None,
) -> None:
    """Build (or with --replace, atomically rebuild) a warehouse from an H5 and an NPZ.

    Inputs are validated first; the build writes into a staging directory beside the
    target and swaps it in only when complete and verified (see the README).
    """
    if infer_latents and latents is not None:
        raise fail("--latents and --infer-latents exclude each other", ExitCode.USAGE)
    if engine not in ("local", "spark") or (master is not None and engine != "spark"):
        raise fail("--engine is local or spark; --master needs --engine spark", ExitCode.USAGE)

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
                engine=engine,
                master=master,
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


# After the commands above, so `saewh --help` lists them first.
app.add_typer(report_app, name="report")
app.add_typer(export_app, name="export")


def main() -> None:  # pragma: no cover - console entry point
    app()
