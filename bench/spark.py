"""The Spark engine beside the local build (issue 15), on one synthetic input:

- `saewh build --workers 2` and `saewh build --engine spark --master local[2]`, each a
  fresh process (the Spark one includes starting its JVM), alternating, `--repeats`
  times: medians and their ratio;
- Spark's task metrics of the last Spark build, from its event log: per stage (the
  explode + shuffle write, the shuffle read + merge) tasks, records and bytes per task,
  run time per task, and so the per-task throughput the README's cluster estimate uses;
- the tables of the two builds compared through DuckDB (EXCEPT ALL both ways);
- the Parquet float columns written with BYTE_STREAM_SPLIT (the build's layout) against
  PLAIN (what Spark 3.5's vectorized reader accepts): bytes, write and read time.

    python -m bench.spark --reviews 2000 --repeats 3 --out bench/results/spark.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.run import CACHE, ensure_inputs, git_commit, log, machine, saewh_command, write_results

MASTER = "local[2]"


def timed_build(h5: Path, npz: Path, wh: Path, spark: bool, event_dir: Path | None = None) -> float:
    cmd = [*saewh_command(), "build", "--h5", str(h5), "--npz", str(npz), "-w", str(wh), "--replace",
           "--latents", "24576"]
    env = dict(os.environ)
    if spark:
        cmd += ["--engine", "spark", "--master", MASTER]
        if event_dir is not None:
            env["PYSPARK_SUBMIT_ARGS"] = (
                f"--conf spark.eventLog.enabled=true --conf spark.eventLog.compress=false "
                f"--conf spark.eventLog.dir=file://{event_dir} pyspark-shell"
            )
    else:
        cmd += ["--workers", "2"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return time.perf_counter() - t0


def task_metrics(event_log: Path) -> dict:
    """Per stage of the job: tasks and the distribution of their records, bytes and run
    time (from SparkListenerTaskEnd events)."""
    stages: dict[int, list[dict]] = {}
    names: dict[int, str] = {}
    # Spark 4 writes a directory of rolling files (eventlog_v2_*/events_N_*), 3.x one file.
    parts = sorted(event_log.glob("events_*")) if event_log.is_dir() else [event_log]
    for line in (x for part in parts for x in part.read_text().splitlines()):
        e = json.loads(line)
        if e.get("Event") == "SparkListenerStageCompleted":
            info = e["Stage Info"]
            names[info["Stage ID"]] = info.get("Stage Name", "")
        ended = e.get("Event") == "SparkListenerTaskEnd"
        if not ended or e.get("Task End Reason", {}).get("Reason") != "Success":
            continue
        m = e["Task Metrics"]
        sw, sr = m.get("Shuffle Write Metrics", {}), m.get("Shuffle Read Metrics", {})
        # The Python side's times (ms), which the task metrics proper do not split out.
        python = {a["Name"]: float(a.get("Update", 0)) / 1e3 for a in e["Task Info"].get("Accumulables", [])
                  if a.get("Name", "").startswith("time to") and "Python" in a.get("Name", "")}
        stages.setdefault(e["Stage ID"], []).append({
            "python_start_s": python.get("time to start Python workers", 0.0),
            "python_init_s": python.get("time to initialize Python workers", 0.0),
            "python_code_s": python.get("time to execute Python code", 0.0),
            "shuffle_write_s": sw.get("Shuffle Write Time", 0) / 1e9,
            "run_s": m["Executor Run Time"] / 1e3,
            "cpu_s": m["Executor CPU Time"] / 1e9,
            "shuffle_write_records": sw.get("Shuffle Records Written", 0),
            "shuffle_write_bytes": sw.get("Shuffle Bytes Written", 0),
            "shuffle_read_records": sr.get("Total Records Read", 0),
            "shuffle_read_bytes": sr.get("Remote Bytes Read", 0) + sr.get("Local Bytes Read", 0),
            "spilled_disk_bytes": m.get("Disk Bytes Spilled", 0),
            "peak_execution_memory": m.get("Peak Execution Memory", 0),
        })
    out = {}
    for stage, tasks in sorted(stages.items()):
        summary = {"name": names.get(stage, ""), "tasks": len(tasks)}
        for key in tasks[0]:
            xs = [t[key] for t in tasks]
            summary[key] = {"median": statistics.median(xs), "max": max(xs), "total": sum(xs)}
        records = summary["shuffle_write_records"]["total"] or summary["shuffle_read_records"]["total"]
        summary["records_per_task_second"] = records / max(summary["run_s"]["total"], 1e-9)
        out[str(stage)] = summary
    return out


def same_tables(a: Path, b: Path) -> dict[str, list[int]]:
    from warehouse.contract import TABLES
    from warehouse.db import connect
    from warehouse.sqlfiles import sql_string_literal

    con = connect(a)
    try:
        con.execute(f"ATTACH {sql_string_literal(str(b / 'warehouse.duckdb'))} AS other (READ_ONLY)")
        return {t: [con.execute(f'SELECT count(*) FROM (FROM {x} EXCEPT ALL FROM {y})').fetchone()[0]
                    for x, y in ((f'"{t}"', f'other."{t}"'), (f'other."{t}"', f'"{t}"'))] for t in TABLES}
    finally:
        con.close()


def float_encodings(wh: Path, repeats: int = 3) -> dict:
    """Every file of the tables with a BYTE_STREAM_SPLIT column, rewritten with the
    build's settings as they are and with PLAIN for those columns: bytes, write time
    (from Arrow in memory), and the time to read them back (pyarrow, all columns; DuckDB,
    a sum over the float column)."""
    import duckdb
    import pyarrow.parquet as pq

    from warehouse.contract.parquet import COMMON_SETTINGS, LAYOUTS

    snapshot = (wh / "current").resolve()
    out = {}
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        for table, floats in (("activations", ["value"]), ("top_examples", ["value"]),
                              ("review_top_features", ["max_value"])):
            layout = LAYOUTS[table]
            files = sorted(snapshot.glob(f"{table}/**/*.parquet")) or [snapshot / f"{table}.parquet"]
            files = [f for f in files if "part-split" not in f.name]
            data = [pq.read_table(f, schema=layout.schema) for f in files]
            plain = dict(layout.settings, column_encoding={
                **layout.settings["column_encoding"], **{c: "PLAIN" for c in floats}})
            row = {"files": len(files), "rows": sum(t.num_rows for t in data)}
            for name, settings in (("byte_stream_split", layout.settings), ("plain", plain)):
                d = Path(tmp) / f"{table}-{name}"
                d.mkdir()
                writes, reads, scans = [], [], []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    for i, t in enumerate(data):
                        with pq.ParquetWriter(d / f"{i}.parquet", layout.schema, **COMMON_SETTINGS,
                                              **settings) as w:
                            w.write_table(t, row_group_size=layout.row_group)
                    writes.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    for i in range(len(data)):
                        pq.read_table(d / f"{i}.parquet")
                    reads.append(time.perf_counter() - t0)
                    con = duckdb.connect()
                    t0 = time.perf_counter()
                    con.execute(f"SELECT sum({floats[0]}) FROM read_parquet('{d}/*.parquet')").fetchall()
                    scans.append(time.perf_counter() - t0)
                    con.close()
                size = sum(p.stat().st_size for p in d.glob("*.parquet"))
                float_bytes = sum(
                    pq.ParquetFile(p).metadata.row_group(g).column(j).total_compressed_size
                    for p in d.glob("*.parquet")
                    for g in range(pq.ParquetFile(p).metadata.num_row_groups)
                    for j in range(pq.ParquetFile(p).metadata.num_columns)
                    if pq.ParquetFile(p).metadata.row_group(g).column(j).path_in_schema in floats
                )
                row[name] = {"bytes": size, "float_column_bytes": float_bytes,
                             "write_s": statistics.median(writes), "read_s": statistics.median(reads),
                             "duckdb_sum_s": statistics.median(scans)}
            row["size_ratio_plain"] = row["plain"]["bytes"] / row["byte_stream_split"]["bytes"]
            out[table] = row
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reviews", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    CACHE.mkdir(exist_ok=True)
    h5, npz, _ = ensure_inputs(a.reviews, a.seed)
    local_wh, spark_wh = CACHE / f"spark-bench-local-r{a.reviews}", CACHE / f"spark-bench-spark-r{a.reviews}"
    events = CACHE / "spark-events"
    shutil.rmtree(events, ignore_errors=True)
    events.mkdir()
    times: dict[str, list[float]] = {"local": [], "spark": []}
    for i in range(a.repeats):
        for engine in ("local", "spark"):
            wh = spark_wh if engine == "spark" else local_wh
            s = timed_build(h5, npz, wh, engine == "spark", events if i == a.repeats - 1 else None)
            times[engine].append(s)
            log(f"{engine} build {i + 1}/{a.repeats}: {s:.1f} s")
    manifest = json.loads((spark_wh / "manifest.json").read_text())["summary"]
    logs = sorted(events.iterdir(), key=lambda q: q.stat().st_mtime)
    result = {
        "machine": machine(),
        "commit": git_commit(),
        "input": {"reviews": a.reviews, "tokens": manifest["n_tokens"],
                  "activations": manifest["n_activations"], "h5_bytes": h5.stat().st_size},
        "master": MASTER,
        "local_workers": 2,
        "build_seconds": {k: {"median": statistics.median(v), "runs": v} for k, v in times.items()},
        "ratio_spark_over_local": statistics.median(times["spark"]) / statistics.median(times["local"]),
        "spark_phase_seconds": manifest["phase_seconds"],
        "task_metrics": task_metrics(logs[-1]) if logs else {},
        "except_all": same_tables(local_wh, spark_wh),
        "float_encodings": float_encodings(local_wh),
    }
    if a.out:
        write_results(a.out, result)
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
