"""The `saewh` command line: parse, call the library, print.

stdout carries only data; progress, summaries and errors go to stderr.  Every
failure is one line on stderr and a documented exit code (see `ExitCode`).
"""

from __future__ import annotations

import enum
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="saewh",
    help="A DuckDB warehouse for sparse-autoencoder activations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEFAULT_WAREHOUSE = Path("warehouse-data")


class ExitCode(enum.IntEnum):
    """Exit codes of every saewh command (documented in the README)."""

    OK = 0
    INTERNAL = 1  # a bug: please report it
    USAGE = 2  # bad command-line options (Typer/Click's own code)
    BAD_INPUT = 3  # an input file is missing, malformed or inconsistent
    WAREHOUSE = 4  # warehouse missing, not a warehouse, already exists, or fails verify
    NOT_FOUND = 5  # unknown feature or review id
    QUERY = 6  # the SQL failed or tried to write
    INTERRUPTED = 130


def fail(message: str, code: ExitCode) -> typer.Exit:
    typer.echo(f"saewh: error: {message}", err=True)
    return typer.Exit(int(code))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def run_guarded(fn):
    """Run `fn`, turning the library's exceptions into one-line errors and exit codes."""
    import duckdb

    from etl.build import BuildError
    from etl.inputs import InputError
    from etl.tokenizer import TokenizerError
    from warehouse.db import WarehouseError

    try:
        return fn()
    except typer.Exit:
        raise
    except (InputError, TokenizerError) as exc:
        raise fail(_one_line(exc), ExitCode.BAD_INPUT) from None
    except (BuildError, WarehouseError) as exc:
        raise fail(_one_line(exc), ExitCode.WAREHOUSE) from None
    except duckdb.Error as exc:
        raise fail(_one_line(exc), ExitCode.QUERY) from None
    except KeyboardInterrupt:
        raise fail("interrupted", ExitCode.INTERRUPTED) from None
    except OSError as exc:
        raise fail(_one_line(exc), ExitCode.BAD_INPUT) from None
    except Exception as exc:  # noqa: BLE001 - the promise is: never a traceback
        raise fail(f"internal error: {type(exc).__name__}: {_one_line(exc)}", ExitCode.INTERNAL) from None


def default_warehouse() -> Path:
    return Path(os.environ.get("SAEWH_WAREHOUSE", str(DEFAULT_WAREHOUSE)))


WarehouseOpt = Annotated[
    Path | None,
    typer.Option(
        "--warehouse",
        "-w",
        help="Warehouse directory [default: $SAEWH_WAREHOUSE, else ./warehouse-data].",
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
    latents: Annotated[int, typer.Option(min=1, help="SAE width; feature ids must be below it.")] = 24576,
    chunk_tokens: Annotated[int, typer.Option(min=1, help="Tokens per processing chunk.")] = 131072,
) -> None:
    """Build (or with --replace, atomically rebuild) a warehouse from an H5 and an NPZ."""

    def go():
        from etl.build import build_warehouse

        target = warehouse or default_warehouse()
        s = build_warehouse(
            h5,
            npz,
            target,
            tokenizer=tokenizer,
            workers=workers,
            replace=replace,
            n_latents=latents,
            chunk_tokens=chunk_tokens,
            progress=True,
        )
        aligned = ", ".join(f"{k} {v:,}" for k, v in sorted(s.alignment.items()))
        typer.echo(
            f"built {s.warehouse}: {s.n_activations:,} activations from {s.n_tokens:,} tokens "
            f"in {s.seconds:.1f}s ({s.rows_per_second:,.0f} rows/s); "
            f"{s.zero_slots_dropped:,} zero slots dropped; {s.n_reviews:,} reviews "
            f"({s.h5_reviews_missing_from_npz:,} only in the H5, "
            f"{s.npz_reviews_without_tokens:,} without tokens); alignment: {aligned}",
            err=True,
        )

    run_guarded(go)


@app.command()
def repoint(warehouse: WarehouseOpt = None) -> None:
    """Re-write the views' absolute paths after moving a warehouse directory."""

    def go():
        from warehouse.db import check_directory
        from warehouse.db import repoint as do_repoint

        do_repoint(check_directory(warehouse or default_warehouse()))

    run_guarded(go)


@app.command()
def verify(
    warehouse: WarehouseOpt = None,
    checksums: Annotated[bool, typer.Option(help="Also check every file's SHA-256.")] = True,
) -> None:
    """Check a warehouse against its manifest: files, sizes, row counts, checksums."""

    def go():
        from warehouse.db import verify_warehouse

        target = warehouse or default_warehouse()
        verify_warehouse(target, checksums=checksums)
        typer.echo(f"{Path(target).absolute()}: ok", err=True)

    run_guarded(go)


@app.command()
def info(warehouse: WarehouseOpt = None) -> None:
    """Print the warehouse's manifest (inputs, row counts, SAE shape, versions) as JSON."""

    def go():
        from warehouse.db import check_directory, read_manifest

        directory = check_directory(warehouse or default_warehouse())
        manifest = read_manifest(directory)
        sizes = {
            table: {
                "rows": sum(f["rows"] for f in files),
                "bytes": sum(f["bytes"] for f in files),
                "files": len(files),
            }
            for table, files in manifest["files"].items()
        }
        out = {k: v for k, v in manifest.items() if k != "files"}
        out["tables"] = sizes
        out["directory"] = str(directory)
        typer.echo(json.dumps(out, indent=2))

    run_guarded(go)


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="A read-only SQL query.")],
    warehouse: WarehouseOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, csv, json or jsonl.")] = "table",
) -> None:
    """Run arbitrary read-only SQL against the warehouse (tables and macros)."""

    def go():
        from warehouse.db import connect
        from warehouse.render import render

        con = connect(warehouse or default_warehouse())
        try:
            rel = con.execute(query)
            if rel.description is None:
                return
            columns = [d[0] for d in rel.description]
            rows = rel.fetchall()
        finally:
            con.close()
        typer.echo(render(columns, rows, fmt), nl=False)

    run_guarded(go)


def main() -> None:  # pragma: no cover - console entry point
    app()
