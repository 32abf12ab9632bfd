"""Phase 3, in each worker: one bucket (64 features) at a time, its rows gathered from
every explode worker's spill file in (feature, token_pos) order and written as one
sorted Parquet file, while its feature statistics, top examples, per-star counts,
review statistics and (token id, feature) statistics are computed on the way."""

from __future__ import annotations

import errno
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from etl.build.context import SPILL_COLUMNS, BuildContext, Tuning, WorkDir, current
from etl.build.files import finished_file, read_ranges
from etl.build.kernels import combine_pairs, gather_index, run_segments, top_candidates, top_per_feature
from etl.build.token_stats import TokenStats
from etl.review_stats import bucket_review_stats, pair_stats
from warehouse.contract import BUCKET_WIDTH, TOP_MATERIALIZED
from warehouse.contract.parquet import parquet_writer, row_group, schema


@dataclass(frozen=True, eq=False)
class MergeResult:
    """What a bucket's merge tells the build: per feature of the bucket (arrays of its
    width), and per (feature, star rating) with active rated reviews (the `stars_`
    arrays)."""

    bucket: int
    files: list[dict]  # manifest entries of its Parquet files (none: no rows)
    feature: np.ndarray
    n_active: np.ndarray  # active tokens
    n_reviews: np.ndarray  # reviews with an active token
    max_value: np.ndarray
    sum_value: np.ndarray
    stars_feature: np.ndarray
    stars_value: np.ndarray
    stars_n_active: np.ndarray  # rated reviews with an active token
    stars_sum_max: np.ndarray  # the sum of their max values
    review_stats: dict[str, np.ndarray]  # etl.review_stats' columns (empty: no rows)


class Segments(NamedTuple):
    """A bucket's rows as segments, one per (feature, spill file, run): a run's rows of
    one feature, already in token order.  Ordered feature-major, then by file and run,
    they are the bucket's rows in (feature, token_pos) order: no sort is needed."""

    paths: list[Path]  # the spill files, indexed by `src`
    f: np.ndarray  # feature offset in the bucket
    src: np.ndarray
    at: np.ndarray  # where its token_pos column starts in its file (in 4-byte values)
    step: np.ndarray  # from one of its columns to the next
    len: np.ndarray  # rows


def merge_task(bucket: int, runs: tuple[int, ...]) -> MergeResult:
    """The pool's entry point: `merge_bucket` with the installed context."""
    return merge_bucket(current(), bucket, runs)


def merge_bucket(ctx: BuildContext, bucket: int, runs: tuple[int, ...]) -> MergeResult:
    """Write one bucket's rows in (feature, token_pos) order and compute its statistics;
    `runs[w]` is the number of runs explode worker w wrote."""
    f_lo, f_hi = ctx.bucket_features(bucket)
    width = f_hi - f_lo
    seg = bucket_segments(ctx.work, bucket, runs, width)
    if seg is None:
        ctx.counter.value += 1
        return _empty_result(bucket, f_lo, width)
    merge = _BucketMerge(ctx, bucket, f_lo, width, int(seg.len.sum()))
    blocks = spill_blocks(seg.paths, seg.src, seg.at, seg.step, seg.len, SPILL_COLUMNS, ctx.settings.tuning)
    for lo, hi, buf, offsets in blocks:
        # The features before the next block's first one are complete (this block's last
        # one may continue in the next).
        merge.block(seg.f[lo:hi], seg.len[lo:hi], buf, offsets, int(seg.f[min(hi, len(seg.f) - 1)]))
    # The last block's arrays (and the window's buffer): not to be held beside the
    # statistics of the last group.
    del buf, offsets
    files = merge.close()
    for w in range(len(runs)):
        ctx.work.spill(w, bucket).unlink(missing_ok=True)
    result = merge.result(files)
    ctx.counter.value += 1
    return result


def bucket_segments(work: WorkDir, bucket: int, runs: tuple[int, ...], width: int) -> Segments | None:
    """The bucket's segments in output order, from every worker's run counts (None: the
    bucket has no rows)."""
    paths, seg_parts = [], []
    for w, n_runs in enumerate(runs):
        path = work.spill(w, bucket)
        if not n_runs or not path.exists():
            continue
        counts = bucket_counts(work, w, n_runs, bucket, width)
        if counts.sum() == 0:
            continue
        fi, ri, at, step, lens = run_segments(counts, SPILL_COLUMNS)
        src = len(paths)
        paths.append(path)
        seg_parts.append((fi, np.full(len(fi), src), ri, at, step, lens))
    if not seg_parts:
        return None
    seg_f, seg_src, seg_run, seg_at, seg_step, seg_len = (np.concatenate(c) for c in zip(*seg_parts))
    order = np.lexsort((seg_run, seg_src, seg_f))
    return Segments(paths, seg_f[order], seg_src[order], seg_at[order], seg_step[order], seg_len[order])


def bucket_counts(work: WorkDir, worker: int, n_runs: int, bucket: int, width: int) -> np.ndarray:
    """A worker's (n_runs, width) rows per run and feature of one bucket."""
    n = n_runs * BUCKET_WIDTH
    path = work.runs(worker)
    with open(path, "rb", buffering=0) as fh:
        counts = np.fromfile(fh, np.int32, n, offset=bucket * n * 4)
    if len(counts) != n:
        raise OSError(errno.EIO, f"{path}: short read")
    return counts.reshape(n_runs, BUCKET_WIDTH)[:, :width].astype(np.int64)


def spill_blocks(
    paths: list[Path], seg_src, seg_at, seg_step, seg_len, columns: int, tuning: Tuning
) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """Blocks of the bucket's segments (at most `tuning.merge_block_rows` rows) with
    their data: yields (lo, hi, buffer, offsets) where offsets[j] is where each segment's
    column j starts in the buffer.  A segment's column j starts at
    seg_at + j * seg_step in its spill file.

    The spill is read one window of `tuning.merge_window_rows` rows at a time, so a
    merge worker's memory does not grow with a dense bucket (or with the input).  The
    sources' reads share one buffer, so a block is gathered in one pass for all of them.
    """
    rows = np.cumsum(seg_len)
    n = len(seg_len)
    lo = 0
    while lo < n:
        base = rows[lo] - seg_len[lo]
        hi = max(lo + 1, int(np.searchsorted(rows, base + tuning.merge_window_rows, "right")))
        w_src, w_len = seg_src[lo:hi], seg_len[lo:hi]
        offsets = np.empty((columns, hi - lo), np.int64)
        buffers, at = [], 0
        for src, path in enumerate(paths):
            sel = np.flatnonzero(w_src == src)
            if not len(sel):
                continue
            starts = seg_at[lo:hi][sel] + np.arange(columns)[:, None] * seg_step[lo:hi][sel]
            buf, where = read_ranges(path, starts.reshape(-1), np.tile(w_len[sel], columns))
            buffers.append(buf)
            offsets[:, sel] = at + where.reshape(columns, len(sel))
            at += len(buf)
        buffer = buffers[0] if len(buffers) == 1 else np.concatenate(buffers)
        del buffers
        w_rows = rows[lo:hi] - base
        block_of = (w_rows - 1) // tuning.merge_block_rows
        cuts = np.flatnonzero(np.diff(block_of)) + 1
        for a, b in zip(np.append(0, cuts).tolist(), np.append(cuts, hi - lo).tolist()):
            yield lo + a, lo + b, buffer, offsets[:, a:b]
        del buffer
        lo = hi


class _BucketMerge:
    """A bucket's merge, block by block: its activations file and what it accumulates."""

    def __init__(self, ctx: BuildContext, bucket: int, f_lo: int, width: int, n_rows: int):
        self.ctx, self.bucket, self.f_lo = ctx, bucket, f_lo
        self.path = ctx.out.activations_part(bucket)
        self.writer = activation_writer(self.path)
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.n_active = np.zeros(width, np.int64)
        self.sums = np.zeros(width, np.float64)
        self.maxes = np.zeros(width, np.float32)
        self.pairs = BucketPairs(ctx, f_lo, width)
        self.token_stats = TokenStats(ctx, f_lo, width, n_rows)
        self.top_parts: list[tuple] = []

    def block(
        self, b_f: np.ndarray, b_len: np.ndarray, buf: np.ndarray, offsets: np.ndarray, limit: int
    ) -> None:
        """A block of segments (features `b_f`, rows `b_len`, columns at `offsets` in
        `buf`); the features before `limit` are complete after it."""
        b_tp, b_v, b_rv = offsets
        # The segments are in output order: each column is one gather.
        at = gather_index(b_tp, b_len)
        tp = buf[at].astype(np.int64)
        at += np.repeat(b_v - b_tp, b_len)
        v = buf[at].view(np.float32)
        at += np.repeat(b_rv - b_v, b_len)
        rv = buf[at].view(np.int32)
        del at
        self.rows(np.repeat(b_f, b_len).astype(np.int32), tp, rv, v, limit)

    def rows(self, f_local: np.ndarray, tp: np.ndarray, rv: np.ndarray, v: np.ndarray, limit: int) -> None:
        """A block's rows in (feature, token_pos) order: feature offsets in the bucket
        (int32), token_pos (int64), review_idx (int32), values (float32); the features
        before `limit` are complete after it."""
        total = len(v)
        self._write(tp, rv, f_local, v, total)
        self.token_stats.add(f_local, tp, v)

        heads = np.flatnonzero(np.append(True, f_local[1:] != f_local[:-1]))
        fids = f_local[heads]
        counts_here = np.diff(np.append(heads, total))
        self.n_active[fids] += counts_here
        self.sums[fids] += np.add.reduceat(v.astype(np.float64), heads)
        self.maxes[fids] = np.maximum(self.maxes[fids], np.maximum.reduceat(v, heads))

        change = np.ones(total, bool)
        change[1:] = (rv[1:] != rv[:-1]) | (f_local[1:] != f_local[:-1])
        rheads = np.flatnonzero(change)
        # The last block's are left to `BucketPairs.finish`, once the block is freed.
        self.pairs.add(
            f_local[rheads],
            rv[rheads],
            np.maximum.reduceat(v, rheads),
            np.diff(np.append(rheads, total)),
            limit,
        )

        # Candidates for the top examples: per feature, rows at or above its k-th value.
        cand = top_candidates(v, heads, counts_here, TOP_MATERIALIZED)
        self.top_parts.append((f_local[cand], tp[cand], rv[cand], v[cand]))
        if len(self.top_parts) > 8:
            self.top_parts = [self._top()[:4]]

    def _top(self) -> tuple:
        """The top rows per feature among the candidates so far."""
        return top_per_feature(*map(np.concatenate, zip(*self.top_parts)), TOP_MATERIALIZED)

    def _write(self, tp, rv, f_local, v, total: int) -> None:
        self.pending.append(
            pa.table(
                {"token_pos": tp, "review_idx": rv, "feature": f_local + self.f_lo, "value": v},
                schema=schema("activations"),
            )
        )
        self.pending_rows += total
        if self.pending_rows >= row_group("activations"):
            self.writer.write_table(pa.concat_tables(self.pending), row_group_size=row_group("activations"))
            self.pending, self.pending_rows = [], 0

    def close(self) -> list[dict]:
        """The activations file, finished: its manifest entries."""
        if self.pending:
            self.writer.write_table(pa.concat_tables(self.pending), row_group_size=row_group("activations"))
        self.writer.close()
        return [finished_file(self.ctx.out.root, self.path), self.token_stats.write(self.bucket)]

    def result(self, files: list[dict]) -> MergeResult:
        """The statistics of the bucket's last features; its top rows to their file."""
        ctx, f_lo = self.ctx, self.f_lo
        review_stats = self.pairs.finish()
        per, sum_max = self.pairs.per_star, self.pairs.sum_max
        n_star = len(ctx.star_values)
        nz = np.flatnonzero(per)
        tf, ttp, trv, tv, trank = self._top()
        write_top_part(ctx.work, self.bucket, tf + f_lo, trank, ttp, trv, tv)
        stars = (nz // n_star + f_lo, ctx.star_values[nz % n_star], per[nz], sum_max[nz])
        return _result(self.bucket, f_lo, self.n_active, self.pairs.n_reviews, self.maxes, self.sums, stars,
                       files, review_stats)


def merge_sorted(ctx: BuildContext, bucket: int, blocks: Iterable[tuple], n_rows: int) -> MergeResult:
    """`merge_bucket` for rows already in (feature, token_pos) order, as blocks of
    `_BucketMerge.rows`' arguments (feature offset, token_pos, review_idx, value,
    limit), instead of read from the spill files: the Spark engine (etl.spark), whose
    shuffle sorted them.  The same code computes the same statistics and files.
    `n_rows`: the bucket's rows, or an estimate (it only chooses how `TokenStats`
    counts, not what)."""
    f_lo, f_hi = ctx.bucket_features(bucket)
    merge = _BucketMerge(ctx, bucket, f_lo, f_hi - f_lo, n_rows)
    for f_local, tp, rv, v, limit in blocks:
        merge.rows(f_local, tp, rv, v, limit)
    return merge.result(merge.close())


def empty_bucket(ctx: BuildContext, bucket: int) -> MergeResult:
    """The result of a bucket without a row."""
    f_lo, f_hi = ctx.bucket_features(bucket)
    return _empty_result(bucket, f_lo, f_hi - f_lo)


def _empty_result(bucket: int, f_lo: int, width: int) -> MergeResult:
    """A bucket without a row: no file, no review statistics, zeros."""
    z = np.zeros(0, np.int64)
    no_stars = (z, z, z, z.astype(np.float64))
    n_active, n_reviews = np.zeros(width, np.int64), np.zeros(width, np.int64)
    return _result(bucket, f_lo, n_active, n_reviews, np.zeros(width, np.float32), np.zeros(width), no_stars)


def _result(bucket, f_lo, n_active, n_reviews, maxes, sums, stars, files=(), review_stats=None):
    return MergeResult(
        bucket=bucket,
        files=list(files),
        feature=np.arange(f_lo, f_lo + len(n_active)),
        n_active=n_active,
        n_reviews=n_reviews,
        max_value=maxes,
        sum_value=sums,
        stars_feature=stars[0],
        stars_value=stars[1],
        stars_n_active=stars[2],
        stars_sum_max=stars[3],
        review_stats=review_stats or {},
    )


def activation_writer(path: Path) -> pq.ParquetWriter:
    """The writer of an activations bucket file (its directory made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return parquet_writer("activations", path)


def write_top_part(work: WorkDir, bucket: int, tf, trank, ttp, trv, tv) -> None:
    """One bucket's top rows, as five uint32 rows (feature, rank, token_pos, review_idx
    and the value's bits); `finish.top_examples_table` adds what they need from the
    token arrays in one pass over them (per bucket, the lookups page-faulted ~25K pages
    of arrays mapped afresh: 1.7 of the merge's CPU-seconds at 5M tokens)."""
    part = np.empty((5, len(tf)), np.uint32)
    part[0], part[1], part[2], part[3] = tf, trank, ttp, trv
    part[4] = tv.astype(np.float32, copy=False).view(np.uint32)
    np.save(work.top(bucket), part)


# A bucket's (feature offset, review_idx, max value, token count) pairs, no entries.
_NO_PAIRS = (np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32), np.zeros(0, np.int64))


def _concat_pairs(parts: list[tuple]) -> tuple:
    return tuple(np.concatenate(col) for col in zip(_NO_PAIRS, *parts))


class BucketPairs:
    """A bucket's (feature, review) pairs, finalized as the merge's blocks arrive in
    feature order, and their statistics, computed in groups of whole features of at most
    `Tuning.pair_group` pairs.

    Held at once: the runs of the feature still open (a block's last feature may continue
    in the next) and the pairs of the complete features not yet in a whole group, about
    one block plus max(one feature's pairs, `pair_group`).  Holding all the bucket's
    pairs until its end grew with the reviews: ~600 MB per merge worker at 432K reviews.
    The statistics get the very arrays the whole bucket's pairs would give them (same
    groups, same order, same dtypes), so their float outputs do not change by a bit.
    """

    def __init__(self, ctx: BuildContext, f_lo: int, width: int) -> None:
        self.f_lo, self.width, self.ctx = f_lo, width, ctx
        self.n_star = len(ctx.star_values)
        self.open: list[tuple] = []  # runs of the features from `done` on, in arrival order
        self.ready: list[tuple] = []  # pairs of the features [start, done)
        self.start = 0  # the first feature whose statistics are not computed yet
        self.done = 0  # the features before it have all their pairs
        self.n_reviews = np.zeros(width, np.int64)
        self.per_star = np.zeros(width * self.n_star, np.int64)
        self.sum_max = np.zeros(width * self.n_star, np.float64)
        self.parts: list[dict] = []

    def add(self, f: np.ndarray, r: np.ndarray, m: np.ndarray, c: np.ndarray, limit: int) -> None:
        """One block's runs (feature offset, review_idx, max value, token count), in
        (feature, token_pos) order; the features before `limit` are then complete."""
        cut = int(np.searchsorted(f, limit))
        self.open.append((f[:cut], r[:cut], m[:cut], c[:cut]))
        if limit > self.done:
            self._complete(limit)
        self.open.append((f[cut:], r[cut:], m[cut:], c[cut:]))

    def finish(self) -> dict:
        """The statistics of all the bucket's features (arrays of length `width`)."""
        if self.done < self.width:
            self._complete(self.width)
        return {key: np.concatenate([part[key] for part in self.parts]) for key in self.parts[0]}

    def _complete(self, limit: int) -> None:
        """The open runs are all of features before `limit`: merge them into pairs."""
        rf, rr, rm, rc = _concat_pairs(self.open)
        self.open = []
        same_f = rf[1:] == rf[:-1]
        if np.any(same_f & (rr[1:] <= rr[:-1])):
            # A review's tokens were not contiguous (or a run crossed a block boundary):
            # merge its runs per (feature, review).
            rf, rr, rm, rc = combine_pairs(rf, rr, rm, rc)
        self.n_reviews[self.done : limit] = np.bincount(rf - self.done, minlength=limit - self.done)
        self.ready.append((rf, rr, rm, rc))
        self.done = limit
        self._flush()

    def _group_end(self) -> int | None:
        """The end of the group from `start`: the most features within `pair_group` pairs
        (at least one), or None while the features complete so far may all still fit."""
        cum = np.cumsum(self.n_reviews[self.start : self.done])
        fit = int(np.searchsorted(cum, self.ctx.settings.tuning.pair_group, "right"))
        if fit == len(cum) and self.done < self.width:
            return None
        return self.start + max(fit, 1)

    def _flush(self) -> None:
        """Compute the statistics of the groups that are whole, and drop their pairs."""
        if self.start == self.done or self._group_end() is None:
            return
        rf, rr, rm, rc = _concat_pairs(self.ready)
        at = 0
        while self.start < self.done and (b := self._group_end()) is not None:
            a = self.start
            n = int(self.n_reviews[a:b].sum())
            self._statistics(a, b, rf[at : at + n], rr[at : at + n], rm[at : at + n], rc[at : at + n])
            at += n
            self.start = b
        # A copy, so the pairs already done are freed now.
        self.ready = [tuple(x[at:].copy() for x in (rf, rr, rm, rc))]

    def _statistics(self, a: int, b: int, rf, rr, rm, rc) -> None:
        """`bucket_review_stats`, `pair_stats` and the per-star counts of the features
        [a, b) from their pairs (`rf`: feature offsets in the bucket, sorted)."""
        ctx, n_star = self.ctx, self.n_star
        f = rf - a
        part = bucket_review_stats(f, rr, rm, self.f_lo + a, b - a, ctx.star_code, ctx.star_values)
        self.per_star[a * n_star : b * n_star] = part.pop("per_star")
        self.sum_max[a * n_star : b * n_star] = part.pop("sum_max")
        part.update(pair_stats(f, rr, rc, b - a, ctx.groups))
        self.parts.append(part)
