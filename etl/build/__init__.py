"""The ETL: H5 + NPZ -> partitioned Parquet + a DuckDB file of views and macros.

Phases, a module each (working memory is bounded by chunk, window and group sizes;
what still grows with the input is per-review and per-token state: see README "What
is met, and what is only nearly"):
1. `map_reviews`: stream `rev_idx`, give every review a compact `review_idx` and every
   token its position in its review (rank in file order); spill both as .npy.
2. `explode`: workers stream disjoint token ranges of `z_idx`/`z_val`, drop zero slots,
   sort each chunk by feature and append its (token_pos, value, review_idx) to one
   spill file per feature bucket; they also tokenize the chunk's reviews, write the
   `tokens` table and rank each review's features (`review_top_features`).
   Then `reviews.parquet` is written and the NPZ dropped (`finish.write_reviews`).
3. `merge`: workers take buckets; each bucket's rows are gathered feature by feature
   from the spills (each chunk's slice is already in token order, so no sort is
   needed) and written as sorted Parquet, while feature statistics, the top
   examples and per-star-rating counts are accumulated on the way.
4. `finish`: features/top_examples/feature_stars Parquet (the top examples' positions
   and character offsets read from the token arrays in one pass), `warehouse.duckdb`,
   `manifest.json`, a verification, and an atomic swap into place.

Around them: `context` (the frozen `BuildContext` every phase reads, the work
directory's file names, `Tuning`), `kernels` (the numpy kernels, pure functions),
`files` (file primitives, the texts store), `database` (writing `warehouse.duckdb`),
`parallel` (forked workers), `errors`.  What the phases write — tables, columns,
Parquet schemas and writer settings, constants — is `warehouse.contract`.  This module runs the phases.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa

from etl.build import explode, finish, merge
from etl.build.context import (
    DEFAULT_CHUNK_TOKENS,
    DEFAULT_LATENTS,
    BuildContext,
    Settings,
    SnapshotDir,
    Tuning,
    install,
)
from etl.build.errors import BuildError, OutputError, explain_failure, output_error
from etl.build.files import open_texts, texts_at, texts_to_arrow
from etl.build.finish import BuildSummary
from etl.build.map_reviews import ReviewMap, map_reviews
from etl.build.parallel import Counter, release_free_memory, run_parallel, submit_held, wait_for
from etl.inputs import InputError, load_npz, open_h5, scan_h5
from etl.progress import Progress
from etl.publish import current_name, new_snapshot, prune, publish
from etl.review_stats import group_codes
from etl.staging import LockBusy, acquire_build_lock, release_lock
from etl.tokenizer import load_tokenizer
from warehouse.contract import BUCKET_WIDTH
from warehouse.contract.parquet import parquet_writer
from warehouse.signals import signals_held
from warehouse.snapshots import CURRENT, SNAPSHOTS, is_legacy

__all__ = [
    "DEFAULT_CHUNK_TOKENS",
    "DEFAULT_LATENTS",
    "BuildError",
    "BuildSummary",
    "OutputError",
    "Tuning",
    "build_warehouse",
]


def build_warehouse(
    h5: Path,
    npz: Path,
    warehouse: Path,
    tokenizer: str = "gpt2",
    workers: int = 1,
    replace: bool = False,
    n_latents: int = DEFAULT_LATENTS,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    progress: bool = False,
    infer_latents: bool = False,
    tuning: Tuning | None = None,
    engine: str | LocalRunner = "local",
    master: str | None = None,
) -> BuildSummary:
    """Build a warehouse from an activations H5 and a metadata NPZ, atomically.

    Inputs are checked before anything is written (`etl.inputs`); values are checked
    chunk by chunk as they stream into a new snapshot (`warehouse.snapshots`), which
    is verified and then published with one rename (`etl.publish`); any failure
    removes it, so readers only ever see the previous snapshot or the new, verified
    one, and a reader that opened the previous one keeps it.
    `infer_latents` takes `n_latents` = max feature index + 1 from a first full pass
    over the H5 (which also checks every value before anything is written).
    `tuning` sets memory and I/O granularity (`Tuning`; no output byte depends on it).
    `engine`: where the explode and merge tasks run, "local" (forked workers) or
    "spark" (`etl.spark`, on the Spark cluster `master`; needs the `spark` extra).
    """
    from warehouse.verify import verify_warehouse

    started = time.perf_counter()
    target = Path(warehouse).absolute()
    _check_target(target, replace)
    settings = Settings(Path(h5), Path(npz), tokenizer, max(1, int(workers)), n_latents, chunk_tokens,
                        progress, tuning or Tuning())
    runner = _runner(engine, master)
    meta, settings = _validated(settings, infer_latents)
    lock = _lock(target)
    staging = None  # the new snapshot, written in place under its final name
    published = False
    summary = BuildSummary(str(target), n_latents=settings.n_latents, n_latents_inferred=infer_latents)
    created = not target.exists()
    try:
        _check_target(target, replace)
        settings = runner.configure(settings)
        previous = current_name(target)
        with signals_held():  # an interrupt must not come between the mkdir and the name
            staging = new_snapshot(target)
        _build_snapshot(SnapshotDir(staging), settings, meta, summary, started, previous, runner)
        verify_warehouse(staging)
        with signals_held():
            publish(target, staging)
            published = True
        # The snapshot just replaced stays for readers that resolved `current` a moment
        # ago; older ones go unless a connection has them open (etl.publish).
        try:
            prune(target, keep={staging.name} | ({previous} if previous else set()))
        except OSError:
            pass  # the next build or `saewh vacuum` removes them
    except BaseException as exc:
        with signals_held():
            if staging is not None and not published:
                shutil.rmtree(staging, ignore_errors=True)
                if created:
                    shutil.rmtree(target, ignore_errors=True)
        explain_failure(exc, settings.h5, settings.n_latents, settings.chunk, target)
        raise
    finally:
        install(None)
        release_lock(lock)
        runner.close()
    summary.seconds = time.perf_counter() - started
    summary.rows_per_second = summary.n_activations / max(summary.seconds, 1e-9)
    return summary


def _validated(settings: Settings, infer_latents: bool) -> tuple[dict, Settings]:
    """The NPZ's contents and the settings (with the inferred `n_latents`), once the
    inputs and settings are checked: before anything is written."""
    if not infer_latents and settings.n_latents <= 0:
        raise BuildError(f"--latents must be positive, got {settings.n_latents}")
    if settings.chunk <= 0:
        raise BuildError(f"--chunk-tokens must be positive, got {settings.chunk}")
    meta = load_npz(settings.npz)
    load_tokenizer(settings.tokenizer)  # a bad tokenizer fails before any work
    open_h5(settings.h5).close()
    if infer_latents:
        n_latents = scan_h5(settings.h5, None, settings.chunk)
        if n_latents == 0:
            raise InputError(f"{settings.h5}: z_idx holds no feature index to infer --latents from")
        settings = dataclasses.replace(settings, n_latents=n_latents)
    return meta, settings


def _lock(target: Path) -> int:
    """The target's build lock (its fd), as a BuildError or OutputError if not taken."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return acquire_build_lock(target)
    except LockBusy as exc:
        raise BuildError(str(exc)) from None
    except OSError as exc:
        raise output_error(exc, target) from None


def _build_snapshot(
    out: SnapshotDir, settings: Settings, meta: dict, summary: BuildSummary, started: float,
    previous: str | None, runner: LocalRunner,
) -> None:
    """All four phases into the (empty) snapshot `out`, up to its manifest.

    `meta` (the NPZ) is consumed: emptied once the reviews are written, since the merge
    needs none of it (a forked worker's RSS counts every page of this process), like
    the per-review arrays dropped here.
    """
    phases: dict[str, float] = {}
    out.make_dirs()
    t0 = time.perf_counter()
    with open_h5(settings.h5) as f:
        n_tokens, k = f["z_idx"].shape
        reviews = map_reviews(f, meta["review_ids"], out.work, settings.chunk, settings.progress)
    phases["map_reviews"] = time.perf_counter() - t0
    summary.n_tokens, summary.k = int(n_tokens), int(k)
    if n_tokens >= 2**32:
        raise BuildError(f"{settings.h5}: {n_tokens} tokens; spill files hold token_pos as uint32 (< 2**32)")
    ctx = _context(out, settings, meta, reviews, int(n_tokens))
    install(ctx)  # before any worker forks: they inherit it

    t0 = time.perf_counter()
    results = runner.explode(ctx, meta)
    phases["explode"] = time.perf_counter() - t0
    summary.zero_slots_dropped = sum(r.zeros for r in results)
    summary.n_activations = sum(r.rows for r in results)
    text_lens = np.full(ctx.n_reviews, -1, np.int64)
    for r in results:
        if r.text_lens is not None:
            text_lens[r.text_lens[0]] = r.text_lens[1]
    runs = tuple(r.runs for r in sorted(results, key=lambda r: r.worker))
    feature_rows = sum(r.feature_rows for r in results)
    files = [e for r in results for e in r.files]
    del results

    t0 = time.perf_counter()
    summary.alignment = _write_reviews(ctx, meta, reviews, text_lens)
    del reviews, text_lens
    meta.clear()
    release_free_memory()
    phases["reviews"] = time.perf_counter() - t0

    merged, t0 = _merge_and_finish(ctx, runs, feature_rows, phases, runner)
    n_tok = ctx.n_tokens_of
    summary.n_reviews = ctx.n_reviews
    summary.n_reviews_with_tokens = int((n_tok > 0).sum())
    summary.h5_reviews_missing_from_npz = ctx.n_reviews - ctx.n_npz
    summary.npz_reviews_without_tokens = int((n_tok[: ctx.n_npz] == 0).sum())
    summary.warnings = finish.warnings(summary)
    phases["finish"] = time.perf_counter() - t0
    summary.phase_seconds = {k: round(v, 3) for k, v in phases.items()}
    # The manifest records the build's time up to here (verify and swap come after).
    summary.seconds = time.perf_counter() - started
    summary.rows_per_second = summary.n_activations / max(summary.seconds, 1e-9)
    finished = {e["path"]: e for e in files + [e for m in merged for e in m.files]}
    finish.write_manifest(out, summary, settings.h5, settings.npz, settings.tokenizer, finished, previous)


def _context(
    out: SnapshotDir, settings: Settings, meta: dict, reviews: ReviewMap, n_tokens: int
) -> BuildContext:
    """The build's context, from the mapped reviews and the NPZ's metadata (whose ids
    become Arrow arrays here)."""
    n_tok = reviews.n_tokens
    n_npz, n_all = len(meta["review_ids"]), len(reviews.review_ids)
    stars = meta["stars"]
    star_values = np.unique(stars)
    star_code = np.full(n_all, -1, np.int64)
    star_code[:n_npz] = np.searchsorted(star_values, stars)
    star_code[n_tok == 0] = -1
    groups = {
        "business": group_codes(meta["business_ids"], n_all, n_tok > 0),
        "user": group_codes(meta["user_ids"], n_all, n_tok > 0),
    }
    # The ids move into Arrow arrays before the workers fork (a forked child's RSS
    # counts every page of its parent: as Python str objects, 130 MB at full size,
    # 35 MB as Arrow strings), the texts into a memory-mapped Arrow file after
    # (`_explode`).
    for key in ("review_ids", "user_ids", "business_ids"):
        meta[key] = pa.array(meta[key].tolist(), pa.string())
    release_free_memory()  # also the temporaries of group_codes
    return BuildContext(
        settings=settings, h5=settings.h5.absolute(), out=out, n_tokens=n_tokens, n_tokens_of=n_tok,
        n_npz=n_npz, star_code=star_code, star_values=star_values, groups=groups,
        counter=Counter(shared=settings.workers > 1), texts_ready=multiprocessing.get_context("fork").Event(),
        n_vocab=len(load_tokenizer(settings.tokenizer).vocab_strings),
    )


def _explode(ctx: BuildContext, meta: dict) -> list[explode.ExplodeResult]:
    """Phase 2 in the workers.  Meanwhile this process converts the NPZ texts (taken out
    of `meta`) into the memory-mapped Arrow file the workers read: it does so while the
    workers explode their first chunk, and each worker waits for `texts_ready` before
    it reads one (0.3 s of the build's serial start at 5M tokens, ~3 s at 47M)."""
    npz_texts = [meta.pop("texts")]

    def convert_texts() -> None:
        texts_to_arrow(npz_texts.pop(), ctx.work.texts)
        ctx.texts_ready.set()
        release_free_memory()

    workers = ctx.settings.workers
    bounds = np.linspace(0, ctx.n_tokens, workers + 1).astype(np.int64)
    ranges = [(w, int(bounds[w]), int(bounds[w + 1])) for w in range(workers)]
    bar = Progress("explode", ctx.n_tokens, ctx.settings.progress)
    results = run_parallel(explode.explode_task, ranges, workers, bar, ctx.counter, started=convert_texts)
    bar.close()
    return results


def _write_reviews(
    ctx: BuildContext, meta: dict, reviews: ReviewMap, text_lens: np.ndarray
) -> dict[str, int]:
    """`reviews.parquet`, once every review's text is tokenized; returns how many reviews
    have each alignment."""
    # Texts of token-less NPZ reviews are tokenized too, so n_text_tokens is complete.
    # (Mapped for this only: a take touches the pages of whole 64K-text chunks, which
    # stay in this process's RSS while the mapping lives: 190 MB at full size.)
    missing_len = np.flatnonzero(text_lens[: ctx.n_npz] < 0)
    if len(missing_len):
        texts = texts_at(open_texts(ctx.work.texts), missing_len)
        text_lens[missing_len] = load_tokenizer(ctx.settings.tokenizer).count_tokens(texts)
    aligned = finish.alignment(reviews.n_tokens, text_lens, ctx.n_npz)
    finish.write_reviews(ctx.out, meta, reviews, text_lens, aligned)
    names, counts = np.unique(aligned, return_counts=True)
    return {str(a): int(c) for a, c in zip(names, counts)}


def _merge_and_finish(
    ctx: BuildContext, runs: tuple[int, ...], feature_rows: np.ndarray, phases: dict[str, float],
    runner: LocalRunner,
) -> tuple[list[merge.MergeResult], float]:
    """Phase 3 in the workers, then phase 4's tables and database here; returns the
    buckets' results and when phase 4 started.  `runs[w]`: explode worker w's runs."""
    from etl.build.database import finish_database, start_database

    t0 = time.perf_counter()
    out = ctx.out
    ctx.counter.value = 0
    bar = Progress("merge", ctx.n_buckets, ctx.settings.progress, unit="buckets")
    # Largest buckets first: the pool hands out one bucket at a time, so the last
    # ones to finish are small and neither worker waits long for the other.
    bucket_rows = np.add.reduceat(feature_rows, np.arange(0, ctx.settings.n_latents, BUCKET_WIDTH))
    by_size = np.argsort(-bucket_rows, kind="stable").tolist()
    # DuckDB copies the reviews (its own thread, no GIL), and then the reviews split
    # across chunks get their top features, while the workers merge, in this
    # otherwise idle process: 0.5 s of the build's serial end at 5M tokens, 3 s
    # at 47M, and its memory (~0.15 GB at 47M, etl.build.database._REVIEWS_CONFIG) no
    # longer adds to the top examples' at the end.  Started once the pool has forked its
    # workers: a fork beside a running thread could copy a lock it holds.
    with ThreadPoolExecutor(1) as db_thread:
        database: list = []
        try:
            merged = runner.merge(
                ctx,
                [(b, runs) for b in by_size],
                bar,
                lambda: submit_held(
                    db_thread,
                    database,
                    (start_database, out.root, out.root),
                    # Its memory (the split reviews' pairs: ~100 MB at full size)
                    # then comes and goes while this process is light.
                    (finish.write_review_top_partials, out, ctx.settings.workers, ctx.n_reviews),
                ),
            )
            bar.close()
            phases["merge"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            _finish_tables(ctx, merged, db_thread, database)
        except BaseException:
            # Every job must be over before the staging directory is removed (a
            # DuckDB thread still writing would leave files, or an empty directory
            # once it drops its WAL), including one whose future an interrupt kept
            # from this list.
            wait_for(db_thread)
            raise
    for job in database:
        job.result()
    finish_database(out.root, out.root)
    shutil.rmtree(ctx.work.root)
    return merged, t0


def _finish_tables(ctx: BuildContext, merged: list, db_thread: ThreadPoolExecutor, database: list) -> None:
    """Phase 4's Parquet files; the top examples also go to DuckDB (`db_thread`)."""
    from etl.build.database import load_top_examples

    out = ctx.out
    top, top_sizes = finish.top_examples_table(
        ctx.work, ctx.n_buckets, ctx.star_code, ctx.star_values, ctx.settings.tuning.gather_window_bytes
    )
    # DuckDB copies the top examples (after the reviews: one thread) while this thread
    # writes the Parquet files the views need.
    submit_held(db_thread, database, (load_top_examples, out.root, out.root, top))
    finish.write_top_examples(out, top, top_sizes)
    finish.write_feature_tables(out, merged, ctx.n_tokens, int((ctx.n_tokens_of > 0).sum()))
    finish.write_vocabulary(out, ctx.work, load_tokenizer(ctx.settings.tokenizer).vocab_strings,
                            ctx.settings.tuning.gather_window_bytes)
    if not out.has_parts("activations"):
        # Not one active slot: an empty file keeps the activations view's glob valid
        # (and token_feature_stats', written by the same merges).
        merge.activation_writer(out.activations_part(0)).close()
        parquet_writer("token_feature_stats", out.token_stats_part(0)).close()


def _check_target(target: Path, replace: bool) -> None:
    if "?" in str(target):
        # DuckDB reads `path?options` in a database path: the file would be opened elsewhere.
        raise BuildError(f"{target}: DuckDB cannot open a database whose path holds '?'; choose another path")
    if not target.exists() or _unfinished_first_build(target):
        return
    if not replace:
        raise BuildError(f"{target}: already exists; pass --replace to rebuild it")
    if not ((target / CURRENT).is_symlink() or is_legacy(target)):
        raise BuildError(f"{target}: exists and is not a warehouse; refusing to replace it")


def _unfinished_first_build(target: Path) -> bool:
    """What a first build killed before publishing leaves: snapshots, nothing current."""
    entries = list(target.iterdir()) if target.is_dir() else [None]
    return bool(entries) and not (target / CURRENT).is_symlink() and all(
        p is not None and p.name == SNAPSHOTS and p.is_dir() for p in entries
    )


class LocalRunner:
    """Where a build's explode and merge tasks run: here, this machine's forked workers.
    Another engine (etl.spark.SparkRunner) runs them elsewhere and keeps the rest of the
    build: validation, the review map, the reviews, the finish, publishing."""

    def configure(self, settings: Settings) -> Settings:
        """The settings the build runs with (once inputs and target are checked)."""
        return settings

    def explode(self, ctx: BuildContext, meta: dict) -> list[explode.ExplodeResult]:
        """Phase 2: every token range's result; `meta["texts"]` is taken from `meta`."""
        return _explode(ctx, meta)

    def merge(self, ctx: BuildContext, tasks: list[tuple], bar: Progress, started) -> list[merge.MergeResult]:
        """Phase 3: every bucket's result (`tasks`: `merge.merge_task`'s arguments, the
        largest buckets first); `started()` once the tasks are under way."""
        return run_parallel(merge.merge_task, tasks, ctx.settings.workers, bar, ctx.counter, started=started)

    def close(self) -> None:
        """The build is over (also on failure)."""


def _runner(engine: str | LocalRunner, master: str | None) -> LocalRunner:
    """The runner of `engine` (or `engine` itself, a runner); the Spark one is imported
    only when chosen (pyspark is an optional extra, and slow to import)."""
    if isinstance(engine, LocalRunner):
        return engine
    if engine == "local":
        return LocalRunner()
    if engine == "spark":
        from etl.spark import SparkRunner

        return SparkRunner(master)
    raise BuildError(f"unknown engine {engine!r}: choose local or spark")
