"""The build against the alternative a DuckDB user would write, side by side in one run.

    python -m bench.alternative --tokens 5M --out bench/results/alternative-5M.json   # make bench-alternative

The alternative (issue 13): explode the H5 into long rows (token_pos, review_idx,
feature, value) with numpy, a chunk at a time, into one unsorted Parquet file; then let
DuckDB sort and partition them, `COPY (SELECT *, feature // 64 AS bucket FROM rows
ORDER BY feature, token_pos) TO dir (FORMAT parquet, PARTITION_BY (bucket))`, DuckDB's
own mechanism for a hive-partitioned, sorted table (only `activations`: none of the
statistics, top examples or review tables the build also writes).  Each side runs in a
process of its own, alternating `--repeats` times; median wall time and the largest peak
RSS (os.wait4) are compared as ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.run import (
    CACHE,
    TOKENS_PER_REVIEW,
    ensure_inputs,
    git_commit,
    log,
    measured_run,
    parse_count,
    saewh_command,
    write_results,
)

# The alternative's two steps, as the scripts a user would run (no saewh code).
EXPLODE = r"""
import sys, h5py, numpy as np, pyarrow as pa, pyarrow.parquet as pq
h5, out = sys.argv[1], sys.argv[2]
with h5py.File(h5, "r") as f:
    z_idx, z_val, rev = f["z_idx"], f["z_val"], f["rev_idx"]
    ids = {}
    writer = None
    for a in range(0, z_idx.shape[0], 1 << 20):
        idx, val, r = z_idx[a:a + (1 << 20)], z_val[a:a + (1 << 20)], rev[a:a + (1 << 20)]
        review = np.array([ids.setdefault(x, len(ids)) for x in r.tolist()], np.int32)
        keep = val > 0
        tp = np.repeat(np.arange(a, a + len(idx), dtype=np.int64), idx.shape[1]).reshape(idx.shape)
        t = pa.table({"token_pos": tp[keep], "review_idx": np.broadcast_to(review[:, None], idx.shape)[keep],
                      "feature": idx[keep].astype(np.int32), "value": val[keep]})
        writer = writer or pq.ParquetWriter(out, t.schema)
        writer.write_table(t)
    writer.close()
"""
COPY = r"""
import sys, duckdb
rows, out = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute("SET preserve_insertion_order = false")
# (DuckDB takes no bound parameter for COPY's target; both paths are the bench's own.)
con.execute(f"COPY (SELECT *, feature // 64 AS bucket FROM read_parquet('{rows}') "
            f"ORDER BY feature, token_pos) TO '{out}' (FORMAT parquet, PARTITION_BY (bucket))")
"""


def measure(cmd: list[str]) -> dict:
    """Wall seconds and peak RSS of the largest process of `cmd`; a failure ends the bench."""
    run = measured_run(cmd)
    if run["exit_code"] != 0:
        raise SystemExit(f"failed: {cmd[:4]}\n{run['stderr']}")
    return {"seconds": run["seconds"], "peak_rss_bytes": run["peak_rss_bytes"]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", default="5M")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    n_reviews = -(-parse_count(a.tokens) // TOKENS_PER_REVIEW)
    h5, npz, _ = ensure_inputs(n_reviews, 0)
    builds, explodes, copies = [], [], []
    for i in range(a.repeats):  # alternating, so both sides see the same machine load
        work = Path(tempfile.mkdtemp(prefix="alternative-", dir=CACHE))
        try:
            log(f"{i + 1}/{a.repeats}: saewh build")
            builds.append(measure([*saewh_command(), "build", "--h5", str(h5), "--npz", str(npz),
                                   "--warehouse", str(work / "wh"), "--workers", str(a.workers)]))
            shutil.rmtree(work / "wh")
            log(f"{i + 1}/{a.repeats}: alternative: numpy explode to Parquet, then DuckDB COPY")
            explodes.append(measure([sys.executable, "-c", EXPLODE, str(h5), str(work / "rows.parquet")]))
            copies.append(measure([sys.executable, "-c", COPY, str(work / "rows.parquet"),
                                   str(work / "activations")]))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    build = {"seconds": statistics.median(b["seconds"] for b in builds),
             "peak_rss_bytes": max(b["peak_rss_bytes"] for b in builds), "runs": builds}
    explode = {"seconds": statistics.median(e["seconds"] for e in explodes),
               "peak_rss_bytes": max(e["peak_rss_bytes"] for e in explodes), "runs": explodes}
    copy = {"seconds": statistics.median(c["seconds"] for c in copies),
            "peak_rss_bytes": max(c["peak_rss_bytes"] for c in copies), "runs": copies}
    alt_s = statistics.median(e["seconds"] + c["seconds"] for e, c in zip(explodes, copies))
    alt_rss = max(explode["peak_rss_bytes"], copy["peak_rss_bytes"])
    res = {
        "command": "python -m bench.alternative " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": git_commit(), "load_average": os.getloadavg(),
        "input": {"reviews": n_reviews, "h5": str(h5)},
        "build": build, "alternative": {"explode": explode, "copy": copy},
        "time_ratio_alternative_over_build": alt_s / build["seconds"],
        "rss_ratio_alternative_over_build": alt_rss / build["peak_rss_bytes"],
    }
    gib = 2**30
    print(f"saewh build (every table):             {build['seconds']:7.1f} s  "
          f"peak {build['peak_rss_bytes'] / gib:.2f} GiB")
    print(f"numpy explode + DuckDB COPY (1 table): {alt_s:7.1f} s  peak {alt_rss / gib:.2f} GiB "
          f"(explode {explode['seconds']:.1f} s, COPY {copy['seconds']:.1f} s)")
    print(f"ratios: time {res['time_ratio_alternative_over_build']:.2f}x, "
          f"memory {res['rss_ratio_alternative_over_build']:.2f}x")
    if a.out:
        write_results(a.out, res)


if __name__ == "__main__":
    main()
