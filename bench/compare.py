"""The build of this tree against the build of an earlier commit, side by side in one run.

    python -m bench.compare --baseline ce9f81f~1 --tokens 5M --repeats 3    # make bench-compare

For a change meant to leave the output alone (a restructuring), it answers both
questions at once, on the same cached input (`make bench`'s, under .bench/inputs):

- is the output the same?  The SHA-256 of every Parquet file of the two warehouses,
  by path inside the snapshot (the manifest and `warehouse.duckdb` carry dates and
  paths, so they differ by design); files only the current build writes (a new
  table) are listed apart;
- is it slower?  Builds alternate (baseline, current, baseline, ...) so both see the
  same machine load; it prints each side's median wall time and peak RSS (of the
  largest process, from `os.wait4`) and their ratio.

The baseline runs from `git archive` of its etl/, warehouse/ and sql/ on this
interpreter (the dependencies are the same), like bench/stream.py's old code.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from bench.run import (
    CACHE,
    TOKENS_PER_REVIEW,
    archived_saewh,
    ensure_inputs,
    git_commit,
    log,
    measured_run,
    parse_count,
    saewh_command,
    write_results,
)


def timed_build(cli: list[str], h5: Path, npz: Path, wh: Path, workers: int) -> dict:
    shutil.rmtree(wh, ignore_errors=True)
    cmd = [*cli, "build", "--h5", str(h5), "--npz", str(npz), "--warehouse", str(wh),
           "--workers", str(workers)]
    run = measured_run(cmd)
    if run["exit_code"] != 0:
        raise SystemExit(f"build failed: {' '.join(cmd)}\n{run['stderr']}")
    # The largest process's peak: the build or one of its workers.
    return {"seconds": run["seconds"], "peak_rss_bytes": run["peak_rss_bytes"]}


def parquet_checksums(wh: Path) -> dict[str, str]:
    """SHA-256 of every Parquet file of the warehouse's current snapshot, by relative path."""
    snapshot = (wh / "current").resolve() if (wh / "current").exists() else wh
    out = {}
    for path in sorted(snapshot.rglob("*.parquet")):
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while block := fh.read(1 << 22):
                h.update(block)
        out[str(path.relative_to(snapshot))] = h.hexdigest()
    return out


def table_files(wh: Path) -> dict[str, list[Path]]:
    """Each table's Parquet files in the warehouse's current snapshot, by table (the first
    part of their path: a directory of parts or one file)."""
    snapshot = (wh / "current").resolve() if (wh / "current").exists() else wh
    out: dict[str, list[Path]] = {}
    for path in sorted(snapshot.rglob("*.parquet")):
        out.setdefault(path.relative_to(snapshot).parts[0].removesuffix(".parquet"), []).append(path)
    return out


def table_digests(wh: Path) -> dict[str, dict]:
    """Per table: bytes on disk, rows, and an order-independent digest of its rows (the
    sum of every row's hash): equal digests mean the same rows, however they are
    encoded, compressed or ordered in the files."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    out = {}
    for table, files in table_files(wh).items():
        rows, digest = con.execute(
            "SELECT count(*), sum(hash(*COLUMNS(*))::HUGEINT)::VARCHAR "
            "FROM read_parquet($files, hive_partitioning = false)",
            {"files": [str(f) for f in files]},
        ).fetchone()
        out[table] = {"bytes": sum(f.stat().st_size for f in files), "rows": rows, "digest": digest}
    con.close()
    return out


def compare(baseline: str, n_reviews: int, seed: int, workers: int, repeats: int) -> dict:
    h5, npz, _ = ensure_inputs(n_reviews, seed)
    old_cli, old_commit = archived_saewh(baseline)
    sides = {"baseline": old_cli, "current": saewh_command()}
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    for i in range(repeats):
        for name, cli in sides.items():
            log(f"build {i + 1}/{repeats}: {name}")
            runs[name].append(timed_build(cli, h5, npz, CACHE / f"compare-{name}-r{n_reviews}", workers))
    checksums = {name: parquet_checksums(CACHE / f"compare-{name}-r{n_reviews}") for name in sides}
    old, new = checksums["baseline"], checksums["current"]
    # Files the baseline did not write (a new table) are listed, not counted as differing.
    added = sorted(set(new) - set(old))
    differing = sorted(p for p in old if old[p] != new.get(p))
    same = not differing
    # When bytes differ (a layout change), the rows must not: compared by digest.
    tables = {name: table_digests(CACHE / f"compare-{name}-r{n_reviews}") for name in sides}
    size = {name: sum(t["bytes"] for t in ts.values()) for name, ts in tables.items()}
    median = {name: statistics.median(r["seconds"] for r in rs) for name, rs in runs.items()}
    peak = {name: max(r["peak_rss_bytes"] for r in rs) for name, rs in runs.items()}
    return {
        "command": "python -m bench.compare " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load_average": os.getloadavg(),
        "baseline": {"ref": baseline, "commit": old_commit},
        "current": {"commit": git_commit()},
        "input": {"reviews": n_reviews, "seed": seed, "h5": str(h5)},
        "runs": runs,
        "median_seconds": median,
        "peak_rss_bytes": peak,
        "time_ratio_current_over_baseline": median["current"] / median["baseline"],
        "parquet_files": len(old),
        "parquet_identical": same,
        "parquet_differing": differing[:20],
        "parquet_added": len(added),
        "parquet_added_tables": sorted({p.split("/")[0].removesuffix(".parquet") for p in added}),
        "tables": tables,
        "rows_identical": all(tables["current"].get(t, {}).get("digest") == d["digest"]
                              for t, d in tables["baseline"].items()),
        "parquet_bytes": size,
        "h5_bytes": h5.stat().st_size,
        "size_ratio_current_over_baseline": size["current"] / size["baseline"],
    }


def print_summary(res: dict) -> None:
    gib = 2**30
    m, p = res["median_seconds"], res["peak_rss_bytes"]
    print(f"baseline {res['baseline']['commit'][:9]} vs current {res['current']['commit'][:9]}, "
          f"{res['input']['reviews']:,} reviews, {len(res['runs']['current'])} builds each, alternating")
    print(f"{'':10} {'median s':>9} {'peak RSS':>10}")
    for name in ("baseline", "current"):
        print(f"{name:10} {m[name]:9.2f} {p[name] / gib:8.2f} GiB")
    print(f"time ratio current/baseline: {res['time_ratio_current_over_baseline']:.3f}")
    verdict = "identical" if res["parquet_identical"] else f"DIFFERENT: {res['parquet_differing']}"
    print(f"Parquet files of the baseline: {res['parquet_files']}, {verdict}")
    if "tables" in res:
        rows = "the same rows in every table" if res["rows_identical"] else "DIFFERENT ROWS"
        print(f"Parquet bytes: baseline {res['parquet_bytes']['baseline'] / 1e6:,.1f} MB, current "
              f"{res['parquet_bytes']['current'] / 1e6:,.1f} MB (ratio "
              f"{res['size_ratio_current_over_baseline']:.3f}; current / H5 "
              f"{res['parquet_bytes']['current'] / res['h5_bytes']:.3f}); {rows}")
        for table, d in res["tables"]["current"].items():
            before = res["tables"]["baseline"].get(table, {}).get("bytes")
            was = f"{before / 1e6:9.1f}" if before else f"{'(new)':>9}"
            print(f"  {table:24} {was} -> {d['bytes'] / 1e6:9.1f} MB")
    if res.get("parquet_added"):
        print(f"added: {res['parquet_added']} files ({', '.join(res['parquet_added_tables'])})")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", required=True, help="a commit (e.g. the one before a change)")
    ap.add_argument("--tokens", default="5M", help="approximate input size (default 5M: make bench's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    n_reviews = -(-parse_count(a.tokens) // TOKENS_PER_REVIEW)
    res = compare(a.baseline, n_reviews, a.seed, a.workers, a.repeats)
    print_summary(res)
    if a.out:
        write_results(a.out, res)
    if not res["parquet_identical"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
