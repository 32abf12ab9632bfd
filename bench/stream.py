"""Streaming export benchmark: peak memory and time of `saewh sql` writing a large result.

    python -m bench.stream                                   # make bench-stream: 160M rows
    python -m bench.stream --rows 10M --formats parquet,csv  # smaller, quicker
    python -m bench.stream --warehouse .bench/wh-r45455-s0   # also SELECT * FROM activations

Each export is one `saewh sql --format F -o FILE QUERY` process; its peak RSS is its
own (`os.wait4`'s resource usage of that child, not the largest child so far), its
time the wall clock.  The query is a generated range shaped like `activations`
(token_pos BIGINT, review_idx, feature, value FLOAT, bucket), so no warehouse is needed
to measure it; `--warehouse` adds the real table (160,034,560 rows at 5M tokens, as
`make bench` builds it).

Side by side, the materializing paths it replaces:

- the code of `--baseline-commit` (default 8042aea, the last commit before streaming,
  exported with `git archive` into .bench/) run the same way on `--baseline-rows`
  (default 10M: the old text formats held every row as a Python tuple, ~0.3 KB a
  row, so 160M would not fit in this machine's memory), next to the streaming code
  on the same rows, as a ratio;
- DuckDB's whole-result Arrow table written with `pyarrow.parquet.write_table` (what
  the old parquet path did before it also made Python rows) at the full row count.

Prints a table and writes every number as JSON (`--out`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.run import (
    CACHE,
    ROOT,
    archived_saewh,
    git_commit,
    log,
    machine,
    measured_run,
    parse_count,
    saewh_command,
)

FORMATS = ("parquet", "csv", "jsonl", "json")
BASELINE_COMMIT = "8042aea"


def range_query(rows: int) -> str:
    """A generated result shaped like `activations` (5 columns, 24 bytes a row in Arrow)."""
    return (
        "SELECT range AS token_pos, (range // 32)::INTEGER AS review_idx, "
        "(range * 7919 % 24576)::INTEGER AS feature, ((range % 100000) / 9973.0)::FLOAT AS value, "
        f"((range * 7919 % 24576) // 64)::INTEGER AS bucket FROM range({rows})"
    )


def measure(cmd: list[str], out: Path) -> dict:
    """Run one export; wall seconds, this process's peak RSS, and the file's size."""
    run = measured_run(cmd)
    size = out.stat().st_size if out.exists() else 0
    out.unlink(missing_ok=True)
    if run["exit_code"] != 0:
        log(f"exit {run['exit_code']}: {run['stderr'].strip()[-300:]}")
    return {"exit_code": run["exit_code"], "seconds": run["seconds"], "peak_rss_bytes": run["peak_rss_bytes"],
            "cpu_s": run["cpu_s"], "output_bytes": size}


def arrow_whole_table(warehouse: Path, query: str, out: Path) -> dict:
    """DuckDB's whole result as one Arrow table, then pyarrow.parquet.write_table."""
    code = (
        "import sys, duckdb, pyarrow.parquet as pq\n"
        "con = duckdb.connect()\n"
        "con.execute(sys.argv[1])\n"
        "pq.write_table(con.fetch_arrow_table(), sys.argv[2], compression='zstd')\n"
    )
    return measure([sys.executable, "-c", code, query, str(out)], out)


def export(cli: list[str], warehouse: Path, fmt: str, query: str, out: Path) -> dict:
    return measure([*cli, "sql", "-w", str(warehouse), "--format", fmt, "-o", str(out), query], out)


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="160M", help="rows of the generated result (default 160M)")
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--warehouse", type=Path, help="also export SELECT * FROM activations of this warehouse")
    ap.add_argument("--baseline-commit", default=BASELINE_COMMIT, help="'' to skip the old code")
    ap.add_argument("--baseline-rows", default="10M")
    ap.add_argument("--baseline-formats", default="parquet,csv,jsonl")
    ap.add_argument("--no-arrow-baseline", action="store_true", help="skip the whole-table Arrow baseline")
    ap.add_argument("--out", type=Path, help="JSON results file")
    a = ap.parse_args(argv)
    rows, base_rows = parse_count(a.rows), parse_count(a.baseline_rows)
    formats = [f for f in a.formats.split(",") if f]
    scratch = Path(tempfile.mkdtemp(prefix="saewh-stream-", dir=CACHE if CACHE.exists() else None))
    # Any warehouse does for a generated range: the demo's, else a tiny one built here.
    wh = a.warehouse or _small_warehouse(scratch)
    new = saewh_command()
    res: dict = {
        "command": "python -m bench.stream " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": git_commit(),
        "machine": machine(),
        "runs": [],
    }

    def run(label: str, fmt: str, n: int, fn) -> dict:
        log(f"{label}: {fmt}, {n:,} rows")
        r = {"label": label, "format": fmt, "rows": n, **fn(scratch / f"out.{fmt}")}
        res["runs"].append(r)
        log(f"  {r['seconds']:.1f} s, peak RSS {gib(r['peak_rss_bytes'])}, exit {r['exit_code']}")
        return r

    for fmt in formats:
        run("streaming", fmt, rows, lambda out, f=fmt: export(new, wh, f, range_query(rows), out))
    if a.warehouse:
        n_act = json.loads((a.warehouse / "manifest.json").read_text())["summary"]["n_activations"]
        for fmt in formats:
            run("streaming, activations", fmt, n_act,
                lambda out, f=fmt: export(new, wh, f, "SELECT * FROM activations", out))
    if not a.no_arrow_baseline:
        run("whole-table Arrow", "parquet", rows, lambda out: arrow_whole_table(wh, range_query(rows), out))
    if a.baseline_commit:
        old = archived_saewh(a.baseline_commit)[0]
        query = range_query(base_rows)
        for fmt in [f for f in a.baseline_formats.split(",") if f]:
            run("streaming", fmt, base_rows, lambda out, f=fmt: export(new, wh, f, query, out))
            run(f"old {a.baseline_commit}", fmt, base_rows, lambda out, f=fmt: export(old, wh, f, query, out))
    shutil.rmtree(scratch, ignore_errors=True)
    res["table"] = print_table(res["runs"])
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=2) + "\n")
        log(f"wrote {a.out}")


def _small_warehouse(scratch: Path) -> Path:
    demo = ROOT / ".demo" / "warehouse"
    if (demo / "manifest.json").exists():
        return demo
    from etl.build import build_warehouse
    from etl.synth import synthesize

    res = synthesize(scratch / "inputs", n_reviews=20, seed=0, n_latents=256)
    build_warehouse(res.h5_path, res.npz_path, scratch / "wh", n_latents=256)
    return scratch / "wh"


def print_table(runs: list[dict]) -> str:
    """One line per run; a baseline's line also gives its ratio to streaming on the same rows."""
    streaming = {(r["format"], r["rows"]): r for r in runs if r["label"] == "streaming"}
    lines = [("path", "format", "rows", "seconds", "rows/s", "peak RSS", "vs streaming (RSS, time)")]
    for r in runs:
        ratio = ""
        ref = streaming.get((r["format"], r["rows"]))
        if r["label"] != "streaming" and ref and r["label"].split(",")[0] != "streaming":
            ratio = (f"{r['peak_rss_bytes'] / ref['peak_rss_bytes']:.1f}x, "
                     f"{r['seconds'] / ref['seconds']:.1f}x")
        failed = f" (exit {r['exit_code']})" if r["exit_code"] else ""
        lines.append((r["label"] + failed, r["format"], f"{r['rows']:,}", f"{r['seconds']:.1f}",
                      f"{r['rows'] / r['seconds'] / 1e6:.2f}M", gib(r["peak_rss_bytes"]), ratio))
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    text = "\n".join("  ".join(x.ljust(w) for x, w in zip(line, widths)).rstrip() for line in lines)
    print(text)
    return text


if __name__ == "__main__":
    main()
