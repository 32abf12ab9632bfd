"""`saewh report NAME` (one command per sql/reports/*.sql, options from its declared
parameters) and `saewh export`: registered on the app when `warehouse.cli` loads."""

from __future__ import annotations

import enum
import inspect
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from warehouse.api import Warehouse
from warehouse.cli_common import (
    REPORT_MAX_ROWS,
    SQL_MAX_ROWS,
    CsvOpt,
    CsvSafeOpt,
    FormatOpt,
    JsonOpt,
    MaxRowsOpt,
    OutputFormat,
    OutputOpt,
    WarehouseOpt,
    _check_one_section,
    _choice,
    _choose_format,
    _emit,
    _write_result,
    default_warehouse,
    run_guarded,
)
from warehouse.sqlfiles import Param, SqlFile


def _command_group(name: str, help: str) -> typer.Typer:
    """A `saewh NAME ...` group with the main app's behaviour (help when bare, no shell
    completion, no pretty tracebacks); `warehouse.cli` adds it to the app."""
    return typer.Typer(
        name=name, help=help, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False
    )


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
