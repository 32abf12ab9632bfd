"""The warehouse benchmark: synthesize, build, and time the warehouse against the H5.

    python -m bench.run --tokens 5M --out bench/results/bench-5M.json     # make bench
    python -m bench.run --reviews 432248 --out bench/results/full.json    # make bench-full

One run measures, side by side on the same synthetic input (cached under .bench/):

- the build: wall and CPU seconds, activation rows per second, peak RSS (of the
  largest process, from the children's resource usage, and of the whole process tree,
  sampled from /proc), the phases from the manifest, and the sizes against the H5;
- the reference document's per-token loop (`get_feature_activations_chunk`) on a
  slice of the H5, extrapolated linearly to the whole file (marked `extrapolated`);
- a vectorized numpy scan of the whole H5 for one feature (chunked `z_idx == f`,
  then the top-k by value): the best one can do without a warehouse;
- the warehouse (warm, in one read-only connection, median of repeats):
  `top_k_contexts(F, 20)` for a rare, a median and the densest feature,
  `feature_by_stars(F)`, `review_features(R, 20)`, a full `GROUP BY feature` over
  the `activations` view against DuckDB's plain scan of the same Parquet files;
- the CLI as a user runs it (separate processes, median of repeats): `saewh --help`
  and `saewh report top-k` end to end.

It prints a table of medians and ratios with the targets of issue 4 and writes it all
as JSON.  Timings are wall-clock on a shared machine: the JSON keeps every repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.summary import TARGETS, print_table, summarize

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".bench"
TOKENS_PER_REVIEW = 110  # synthetic reviews average ~110 GPT-2 tokens
FULL_REVIEWS = 432_248


# --------------------------------------------------------------------------- helpers


def parse_count(text: str) -> int:
    text = text.strip().upper().replace("_", "")
    mult = {"K": 1_000, "M": 1_000_000, "G": 1_000_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if mult > 1 else text) * mult)


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_bytes": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": load,
    }


def git_commit() -> str | None:
    """The source's commit (`COMMIT` file when run from an exported tree)."""
    if (ROOT / "COMMIT").is_file():
        return (ROOT / "COMMIT").read_text().strip()
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def dir_bytes(path: Path) -> int:
    # (not through the links a warehouse keeps to its current snapshot's files)
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def saewh_command() -> list[str]:
    """The CLI as installed next to this interpreter, else run from the source tree."""
    exe = Path(sys.executable).parent / "saewh"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from warehouse.cli import app; app()"]


def timed_runs(fn, repeats: int, warmup: int = 1) -> dict:
    for _ in range(warmup):
        fn()
    xs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        xs.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(xs), "min_s": min(xs), "runs_s": xs}


def measured_run(cmd: list[str], cwd: Path = ROOT) -> dict:
    """Run `cmd` to its end: exit code, wall and CPU seconds, the peak RSS of its largest
    process (`os.wait4`'s usage of that child and the children it waited for, not of
    every child so far), and the tail of its stderr (kept in a file: a pipe could fill)."""
    with tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        err.seek(0)
        return {"exit_code": os.waitstatus_to_exitcode(status), "seconds": wall,
                "peak_rss_bytes": usage.ru_maxrss * 1024, "cpu_s": usage.ru_utime + usage.ru_stime,
                "stderr": err.read()[-2000:]}


def archived_saewh(commit: str) -> tuple[list[str], str]:
    """The CLI as it was at `commit` (its etl/, warehouse/, sql/), and the full hash."""
    full = subprocess.run(["git", "-C", str(ROOT), "rev-parse", commit], capture_output=True, text=True,
                          check=True).stdout.strip()
    root = CACHE / f"tree-{full[:12]}"
    if not (root / "warehouse" / "cli.py").exists():
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile() as fh:
            subprocess.run(["git", "-C", str(ROOT), "archive", full, "etl", "warehouse", "sql"], stdout=fh,
                           check=True)
            fh.seek(0)
            with tarfile.open(fileobj=fh) as tar:
                tar.extractall(root, filter="data")
    code = f"import sys; sys.path.insert(0, {str(root)!r}); from warehouse.cli import app; app()"
    return [sys.executable, "-c", code], full


def write_results(path: Path, res: dict) -> None:
    """A run's results as JSON (every repeat kept), its directory made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2, default=str) + "\n")
    log(f"wrote {path}")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- inputs


def ensure_inputs(n_reviews: int, seed: int) -> tuple[Path, Path, float | None]:
    """Synthetic inputs, cached by (reviews, seed)."""
    from etl.synth import H5_NAME, NPZ_NAME, synthesize

    d = CACHE / "inputs" / f"r{n_reviews}-s{seed}"
    h5, npz = d / H5_NAME, d / NPZ_NAME
    if h5.exists() and npz.exists():
        return h5, npz, None
    log(f"synthesizing {n_reviews:,} reviews into {d}")
    t0 = time.perf_counter()
    synthesize(d, n_reviews=n_reviews, seed=seed)
    return h5, npz, time.perf_counter() - t0


# --------------------------------------------------------------------------- build


def _tree_rss(pid: int) -> dict[int, int]:
    """Resident bytes of a process and each of its descendants (from /proc)."""
    out: dict[int, int] = {}
    todo = [pid]
    seen = set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/statm") as fh:
                out[p] = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            with open(f"/proc/{p}/task/{p}/children") as fh:
                todo.extend(int(c) for c in fh.read().split())
        except (OSError, ValueError):
            continue
    return out


def run_build(h5: Path, npz: Path, wh: Path, workers: int) -> dict:
    cmd = saewh_command() + [
        "build",
        "--h5",
        str(h5),
        "--npz",
        str(npz),
        "--warehouse",
        str(wh),
        "--workers",
        str(workers),
        "--replace",
    ]
    log("building: " + " ".join(cmd[-10:]))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_tree = 0
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    stop = threading.Event()

    peak_parent = peak_worker = 0

    def sample() -> None:
        nonlocal peak_tree, peak_parent, peak_worker
        while not stop.is_set():
            rss = _tree_rss(proc.pid)
            peak_tree = max(peak_tree, sum(rss.values()))
            peak_parent = max(peak_parent, rss.get(proc.pid, 0))
            peak_worker = max([peak_worker] + [v for p, v in rss.items() if p != proc.pid])
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"build failed ({proc.returncode}):\n{err[-2000:]}")
    manifest = json.loads((wh / "manifest.json").read_text())
    summary = manifest["summary"]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "command": " ".join(["saewh"] + cmd[len(saewh_command()) :]),
        "wall_s": wall,
        "cpu_s": cpu,
        "rows": summary["n_activations"],
        "tokens": summary["n_tokens"],
        "rows_per_s": summary["n_activations"] / wall,
        "peak_rss_largest_process_bytes": after.ru_maxrss * 1024,
        "peak_rss_process_tree_bytes": peak_tree,
        "peak_rss_build_process_sampled_bytes": peak_parent,
        "peak_rss_worker_sampled_bytes": peak_worker,
        "phase_seconds": summary.get("phase_seconds", {}),
        "stdout": out.strip().splitlines()[-1:] if out.strip() else [],
    }


def sizes(wh: Path, h5: Path) -> dict:
    tables = {}
    for p in sorted(wh.iterdir()):
        if p.name.startswith("."):
            continue
        tables[p.name.removesuffix(".parquet")] = dir_bytes(p) if p.is_dir() else p.stat().st_size
    total = sum(tables.values())
    return {
        "h5_bytes": h5.stat().st_size,
        "warehouse_bytes": total,
        "ratio": total / h5.stat().st_size,
        "by_table": tables,
    }


# --------------------------------------------------------------------------- H5 baselines


def reference_loop(h5: Path, feature: int, n_slice: int) -> dict:
    """The reference document's `get_feature_activations_chunk` on the first n_slice tokens."""
    import h5py

    t0 = time.perf_counter()
    with h5py.File(h5, "r") as f:
        total = f["z_idx"].shape[0]
        n_slice = min(n_slice, total)
        chunk_size = 100_000
        all_active = []
        for start in range(0, n_slice, chunk_size):
            end = min(start + chunk_size, n_slice)
            activations = np.zeros(end - start, dtype=np.float32)
            indices_chunk = f["z_idx"][start:end]
            values_chunk = f["z_val"][start:end]
            for i in range(end - start):
                mask = indices_chunk[i] == feature
                if np.any(mask):
                    activations[i] = values_chunk[i][mask][0]
            all_active.extend(np.where(activations > 0)[0] + start)
    took = time.perf_counter() - t0
    return {
        "slice_tokens": n_slice,
        "slice_s": took,
        "total_tokens": total,
        "extrapolated_s": took * total / n_slice,
        "extrapolated": n_slice < total,
    }


def vectorized_scan(h5: Path, feature: int, k: int = 20, chunk: int = 1 << 20) -> list[tuple[int, float]]:
    """The best plain-numpy answer to top-k: scan every token's slots for the feature."""
    import h5py

    pos_parts, val_parts = [], []
    with h5py.File(h5, "r") as f:
        z_idx, z_val = f["z_idx"], f["z_val"]
        n = z_idx.shape[0]
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            rows, cols = np.nonzero(z_idx[s:e] == feature)
            if len(rows):
                vals = z_val[s:e][rows, cols]
                pos_parts.append(rows + s)
                val_parts.append(vals)
    if not pos_parts:
        return []
    pos, val = np.concatenate(pos_parts), np.concatenate(val_parts)
    keep = val > 0
    pos, val = pos[keep], val[keep]
    order = np.lexsort((pos, -val))[:k]
    return list(zip(pos[order].tolist(), val[order].tolist()))


# --------------------------------------------------------------------------- warehouse


def pick_features(con) -> dict[str, int]:
    rows = con.execute(
        """
        WITH live AS (SELECT feature, n_active FROM features WHERE n_active > 0),
        ranked AS (SELECT feature, n_active, row_number() OVER (ORDER BY n_active, feature) AS i,
                          count(*) OVER () AS n FROM live)
        SELECT
          (SELECT feature FROM ranked WHERE i = greatest(1, (n // 100))),
          (SELECT feature FROM ranked WHERE i = greatest(1, n // 2)),
          (SELECT feature FROM ranked ORDER BY n_active DESC, feature LIMIT 1)
        FROM ranked LIMIT 1
        """
    ).fetchone()
    return {"rare": rows[0], "median": rows[1], "densest": rows[2]}


def pick_reviews(con, n: int = 3) -> list[str]:
    rows = con.execute(
        "SELECT review_id FROM reviews WHERE n_tokens > 0 ORDER BY hash(review_idx) LIMIT $n", {"n": n}
    ).fetchall()
    return [r[0] for r in rows]


def warehouse_queries(wh: Path, repeats: int, groupby_repeats: int) -> dict:
    from warehouse.db import connect

    con = connect(wh)
    feats = pick_features(con)
    counts = dict(
        con.execute(
            "SELECT feature, n_active FROM features WHERE feature IN ($a, $b, $c)",
            {"a": feats["rare"], "b": feats["median"], "c": feats["densest"]},
        ).fetchall()
    )
    out: dict = {"features": {k: {"feature": v, "n_active": counts[v]} for k, v in feats.items()}}

    def q(sql: str, params: dict, n: int = repeats) -> dict:
        return timed_runs(lambda: con.execute(sql, params).fetchall(), n)

    for label, f in feats.items():
        log(f"warehouse queries, {label} feature {f}")
        out[f"top_k_contexts_{label}"] = q("SELECT * FROM top_k_contexts($f, 20)", {"f": f})
        out[f"top_k_{label}"] = q("SELECT * FROM top_k($f, 20)", {"f": f})
        out[f"feature_by_stars_{label}"] = q("SELECT * FROM feature_by_stars($f)", {"f": f})
    out["top_k_contexts_window_5_5_median"] = q(
        "SELECT * FROM top_k_contexts($f, 20, before := 5, after := 5)",
        {"f": feats["median"]},
        max(3, repeats // 3),
    )
    reviews = pick_reviews(con)
    out["reviews"] = reviews
    runs = [q("SELECT * FROM review_features($r, 20)", {"r": r}) for r in reviews]
    out["review_features"] = {
        "median_s": statistics.median(r["median_s"] for r in runs),
        "min_s": min(r["min_s"] for r in runs),
        "per_review": runs,
    }
    log("GROUP BY feature: view vs plain Parquet scan")
    sql = "SELECT feature, count(*) AS n, max(value) AS m FROM {src} GROUP BY feature"
    plain = f"read_parquet('{wh}/current/activations/*/*.parquet')"
    out["groupby_view"] = timed_runs(
        lambda: con.execute(sql.format(src="activations")).fetchall(), groupby_repeats
    )
    out["groupby_plain"] = timed_runs(lambda: con.execute(sql.format(src=plain)).fetchall(), groupby_repeats)
    con.close()
    return out


def cli_timings(wh: Path, feature: int, repeats: int) -> dict:
    base = saewh_command()

    def run(args: list[str]) -> None:
        subprocess.run(base + args, check=True, capture_output=True, cwd=ROOT)

    helped = timed_runs(lambda: run(["--help"]), repeats)
    report = timed_runs(
        lambda: run(["report", "top-k", "--feature", str(feature), "--k", "20", "--warehouse", str(wh)]),
        repeats,
    )
    return {"command": base, "help": helped, "report_top_k": report}


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--tokens", help="approximate input size in tokens, e.g. 5M (~110 tokens a review)")
    size.add_argument("--reviews", type=int, help=f"input size in reviews (full size: {FULL_REVIEWS:,})")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15, help="warm repeats per warehouse query")
    ap.add_argument("--scan-repeats", type=int, default=3, help="repeats of the numpy H5 scan per feature")
    ap.add_argument("--groupby-repeats", type=int, default=3)
    ap.add_argument("--reference-tokens", type=int, default=100_000, help="H5 slice for the reference loop")
    ap.add_argument("--warehouse", type=Path, help="where to build (default .bench/wh-<reviews>)")
    ap.add_argument("--skip-build", action="store_true", help="reuse an existing warehouse")
    ap.add_argument("--out", type=Path, help="JSON results file")
    ap.add_argument("--show", type=Path, help="print the table of a stored JSON result and exit")
    a = ap.parse_args(argv)
    if a.show:
        print_table(summarize(json.loads(a.show.read_text())))
        return

    n_reviews = a.reviews or (-(-parse_count(a.tokens) // TOKENS_PER_REVIEW) if a.tokens else 45_500)
    sys.path.insert(0, str(ROOT))
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    res: dict = {
        "command": "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": started,
        "commit": git_commit(),
        "machine": machine(),
        "targets": TARGETS,
    }
    h5, npz, synth_s = ensure_inputs(n_reviews, a.seed)
    import h5py

    with h5py.File(h5, "r") as f:
        n_tokens = int(f["z_idx"].shape[0])
    res["input"] = {
        "reviews": n_reviews,
        "seed": a.seed,
        "n_tokens": n_tokens,
        "h5": str(h5),
        "synth_seconds": synth_s,
    }
    wh = a.warehouse or CACHE / f"wh-r{n_reviews}-s{a.seed}"
    if not a.skip_build:
        res["build"] = run_build(h5, npz, wh, a.workers)
    else:
        res["build"] = json.loads((a.out).read_text())["build"] if a.out and a.out.exists() else {}
    res["sizes"] = sizes(wh, h5)

    res["warehouse"] = warehouse_queries(wh, a.repeats, a.groupby_repeats)
    feats = {k: v["feature"] for k, v in res["warehouse"]["features"].items()}
    log(f"reference loop on {a.reference_tokens:,} tokens")
    res["reference_loop"] = reference_loop(h5, feats["median"], a.reference_tokens)
    res["vectorized_scan"] = {}
    from warehouse.db import connect

    con = connect(wh)
    for label, f in feats.items():
        log(f"numpy H5 scan, {label} feature {f}")
        answer: list = []
        timing = timed_runs(
            lambda f=f, out=answer: out.append(vectorized_scan(h5, f)), a.scan_repeats, warmup=0
        )
        got = con.execute("SELECT token_pos, value FROM top_k($f, 20)", {"f": f}).fetchall()
        timing["agrees_with_warehouse"] = [(int(t), float(np.float32(v))) for t, v in got] == [
            (int(t), float(np.float32(v))) for t, v in answer[-1]
        ]
        res["vectorized_scan"][label] = timing
    con.close()
    log("CLI timings")
    res["cli"] = cli_timings(wh, feats["median"], max(3, a.repeats // 3))
    rows = summarize(res)
    res["table"] = print_table(rows)
    if a.out:
        write_results(a.out, res)


if __name__ == "__main__":
    main()
