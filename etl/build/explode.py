"""Phase 2, in each worker: a disjoint token range of the H5, exploded into per-bucket
spill files (for the merge), the `tokens` table, each review's strongest features
(`review_top_features`) and every feature active in it (`review_active_features`)."""

from __future__ import annotations

import errno
import os
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from etl.build.context import NO_TOKEN_ID, BuildContext, WorkDir, current
from etl.build.files import (
    NpyWriter,
    append,
    finished_file,
    open_texts,
    pwrite_all,
    raise_open_file_limit,
    texts_at,
)
from etl.build.kernels import (
    empty_review_active,
    empty_review_top,
    excl_cumsum,
    explode_chunk,
    rank_review_features,
    screen_chunk,
    sub_blocks,
)
from etl.inputs import validate_chunk
from etl.tokenizer import load_tokenizer
from warehouse.contract import BUCKET_WIDTH, DEFAULT_AFTER, DEFAULT_BEFORE, REVIEW_TOP
from warehouse.contract.parquet import parquet_writer, row_group, schema


@dataclass(frozen=True, eq=False)
class ExplodeResult:
    """What a worker's explode tells the build."""

    worker: int
    zeros: int  # zero slots dropped
    rows: int  # active slots spilled
    runs: int  # runs appended to its spill files (the merge reads their counts)
    feature_rows: np.ndarray  # active slots per feature
    # (review_idx, tokens of its text) of the reviews it tokenized; None: none.
    text_lens: tuple[np.ndarray, np.ndarray] | None
    files: list[dict]  # manifest entries of its Parquet files


def explode_task(worker: int, a: int, b: int) -> ExplodeResult:
    """The pool's entry point: `explode_range` with the installed context."""
    return explode_range(current(), worker, a, b)


def explode_range(ctx: BuildContext, worker: int, a: int, b: int) -> ExplodeResult:
    """Explode the tokens [a, b) of the H5 as worker number `worker`."""
    steps = explode_steps(ctx, worker, a, b)
    while True:
        try:
            ctx.counter.value += next(steps)
        except StopIteration as done:
            return done.value


def explode_steps(
    ctx: BuildContext, worker: int, a: int, b: int, spills=None
) -> Generator[int, None, ExplodeResult]:
    """`explode_range` a chunk at a time: yields each chunk's tokens once it is done,
    returns the result.  `spills` takes each run's rows instead of the spill files
    (anything with `_Spills`' `append_run`, `close` and `n_runs`): the Spark engine
    (etl.spark) hands them to Spark's shuffle between chunks."""
    import h5py

    state = _Explode(ctx, worker, spills)
    try:
        with h5py.File(ctx.h5, "r") as f:
            for s, idx, val in _read_chunks(f, a, b, ctx.settings.chunk):
                state.chunk(s, idx, val)
                yield len(idx)
    finally:
        state.close()
    return state.result()


def _read_chunks(f, a: int, b: int, chunk: int):
    """(start, feature indices, float32 values) of each chunk of the tokens [a, b),
    read into two buffers that are reused (each chunk's arrays are views of them)."""
    z_idx, z_val = f["z_idx"], f["z_val"]
    k = z_idx.shape[1]
    rows_max = max(0, min(chunk, b - a))
    idx_buf = np.empty((rows_max, k), z_idx.dtype)
    val_buf = np.empty((rows_max, k), z_val.dtype)
    for s in range(a, b, chunk):
        e = min(s + chunk, b)
        m = e - s
        idx, val = idx_buf[:m], val_buf[:m]
        if m:
            z_idx.read_direct(idx, np.s_[s:e], np.s_[0:m])
            z_val.read_direct(val, np.s_[s:e], np.s_[0:m])
        yield s, idx, val.astype(np.float32, copy=False)


class _Explode:
    """One worker's explode: its open files and what it has counted so far."""

    def __init__(self, ctx: BuildContext, worker: int, spills=None):
        self.ctx, self.worker = ctx, worker
        self.tok = load_tokenizer(ctx.settings.tokenizer)
        self.vocab = pa.array(self.tok.vocab_strings, pa.string())
        self.spills = spills if spills is not None else _Spills(ctx.work, worker, ctx.settings.n_latents)
        self.feature_rows = np.zeros(ctx.settings.n_latents, np.int64)
        self.text_lens: list[tuple[np.ndarray, np.ndarray]] = []
        self.partials: list[tuple] = []
        self.zeros = self.rows = 0
        self.tokens = parquet_writer("tokens", ctx.out.tokens_part(worker))
        self.review_top = parquet_writer("review_top_features", ctx.out.review_top_part(worker))
        self.review_active = parquet_writer("review_active_features", ctx.out.review_active_part(worker))
        self.bounds = NpyWriter(np.load(ctx.work.token_bounds, mmap_mode="r"))
        self.token_ids = NpyWriter(np.load(ctx.work.token_ids, mmap_mode="r"))

    def chunk(self, s: int, idx: np.ndarray, val: np.ndarray) -> None:
        """Spill, rank and tokenize the chunk of tokens starting at `s`."""
        ctx, work = self.ctx, self.ctx.work
        e = s + len(idx)
        if screen_chunk(idx, val, ctx.settings.n_latents):
            validate_chunk(ctx.h5, s, idx, val, ctx.settings.n_latents)
        # The token arrays are mapped per chunk: pages a mapping has touched
        # count in the worker's RSS until it is dropped (380 MB at 47M tokens).
        reviews = np.array(np.load(work.token_review, mmap_mode="r")[s:e])
        # Each sub-block (Tuning.sort_block_tokens) is a run of the spill files; cuts
        # fall on review boundaries so reviews stay whole for the ranking.
        blocks = [
            self._sub_block(s + lo, idx[lo:hi], val[lo:hi], reviews[lo:hi])
            for lo, hi in sub_blocks(reviews, ctx.settings.tuning.sort_block_tokens)
        ]
        if blocks:
            top = [np.concatenate(c) for c in zip(*(b[0] for b in blocks))]
            active = [np.concatenate(c) for c in zip(*(b[1] for b in blocks))]
        else:
            top, active = empty_review_top(), empty_review_active()
        self.review_active.write_table(
            pa.table(
                {"review_idx": active[0].astype(np.int32), "feature": active[1].astype(np.int32)},
                schema=schema("review_active_features"),
            ),
            row_group_size=row_group("review_active_features"),
        )
        self.review_top.write_table(
            pa.table(
                {
                    "review_idx": top[0].astype(np.int32),
                    "rank": top[1].astype(np.int32),
                    "feature": top[2].astype(np.int32),
                    "max_value": top[3],
                    "n_tokens_active": top[4],
                },
                schema=schema("review_top_features"),
            ),
            row_group_size=row_group("review_top_features"),
        )
        # Mapped per chunk, like the token arrays: the text pages this chunk read
        # leave the worker's RSS with the mapping.
        ctx.texts_ready.wait()
        lens = write_tokens(
            ctx,
            self.tokens,
            self.tok,
            self.vocab,
            open_texts(work.texts),
            s,
            reviews,
            np.array(np.load(work.token_position, mmap_mode="r")[s:e]),
            self.bounds,
            self.token_ids,
        )
        self.text_lens.append(lens)

    def _sub_block(self, s: int, idx: np.ndarray, val: np.ndarray, reviews: np.ndarray) -> tuple:
        """Spill the tokens from `s` as one run; rank the features of its whole reviews."""
        ctx = self.ctx
        counts, fs, tl, v, dup = explode_chunk(idx, val, ctx.settings.n_latents)
        if dup:
            validate_chunk(ctx.h5, s, idx, val, ctx.settings.n_latents)
        n_active = len(v)
        self.zeros += idx.size - n_active
        self.rows += n_active
        self.feature_rows += counts
        tp = np.empty(len(tl), np.uint32)
        np.add(tl, s, out=tp, casting="unsafe")
        # The merge writes review_idx beside token_pos: taken here from the
        # sub-block's 32K reviews (cache-resident), it costs the merge a
        # sequential read instead of a random gather from a token-sized map.
        rvs = np.take(reviews, tl)
        self.spills.append_run(counts, tp, v, rvs)
        del tp, rvs
        return rank_review_features(counts, fs, tl, v, reviews, ctx.n_tokens_of, self.partials, REVIEW_TOP)

    def close(self) -> None:
        self.tokens.close()
        self.review_top.close()
        self.review_active.close()
        self.spills.close()
        self.bounds.close()
        self.token_ids.close()

    def result(self) -> ExplodeResult:
        """Once closed: the run counts by bucket and the partial reviews' pairs to their
        files, and what the build learns from this worker."""
        ctx, worker, n_runs = self.ctx, self.worker, self.spills.n_runs
        if n_runs:
            runs_by_bucket(ctx.work, worker, n_runs, ctx.settings.n_latents, ctx.settings.tuning.runs_at_once)
        out = ctx.out
        parts = (out.tokens_part(worker), out.review_top_part(worker), out.review_active_part(worker))
        files = [finished_file(ctx.out.root, p) for p in parts]
        if self.partials:
            part = [np.concatenate(c) for c in zip(*self.partials)]
        else:
            part = [np.zeros(0, np.int64)] * 2 + [np.zeros(0, np.float32), np.zeros(0, np.int64)]
        np.savez(
            ctx.work.review_partials(worker), review=part[0], feature=part[1], value=part[2], count=part[3]
        )
        return ExplodeResult(
            worker=worker,
            zeros=self.zeros,
            rows=self.rows,
            runs=n_runs,
            feature_rows=self.feature_rows,
            text_lens=tuple(np.concatenate(c) for c in zip(*self.text_lens)) if self.text_lens else None,
            files=files,
        )


class _Spills:
    """A worker's spill files, one per bucket (opened at its first rows), and the file of
    its run counts.

    A spill file holds SPILL_COLUMNS columns per run (`WorkDir.spill`).  Each run's
    feature counts go to the runs file as they come,
    laid out by bucket at the end (`runs_by_bucket`): in a list they would grow with the
    input (98 KB a run, 70 MB per worker at 47M tokens).
    """

    def __init__(self, work: WorkDir, worker: int, n_latents: int):
        self.work, self.worker = work, worker
        self.bucket_edges = np.arange(0, n_latents + BUCKET_WIDTH, BUCKET_WIDTH).clip(max=n_latents)
        raise_open_file_limit(len(self.bucket_edges) - 1 + 16)
        self.fds: dict[int, int] = {}  # bucket -> file descriptor
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND
        self.runs_fd = os.open(work.runs(worker, by_bucket=False), flags, 0o666)
        self.n_runs = 0

    def append_run(self, counts: np.ndarray, tp: np.ndarray, v: np.ndarray, rvs: np.ndarray) -> None:
        """One run's rows, in (feature, token) order, and its counts per feature."""
        append(self.runs_fd, counts.astype(np.int32))
        self.n_runs += 1
        ends = np.cumsum(counts)[self.bucket_edges[1:] - 1]
        begins = np.append(0, ends[:-1])
        for bucket in np.flatnonzero(ends > begins).tolist():
            fd = self.fds.get(bucket)
            if fd is None:
                path = self.work.spill(self.worker, bucket)
                fd = self.fds[bucket] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
            lo, hi = begins[bucket], ends[bucket]
            append(fd, tp[lo:hi], v[lo:hi], rvs[lo:hi])

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        os.close(self.runs_fd)


def runs_by_bucket(work: WorkDir, worker: int, n_runs: int, n_latents: int, runs_at_once: int) -> None:
    """Rewrite a worker's run counts (one row of `n_latents` int32 per run, as the
    explode appends them) bucket by bucket: bucket b's (n_runs, BUCKET_WIDTH) counts
    become one contiguous block, which the merge reads with one pread.

    The merge used to map the row-major file and slice a bucket's columns out of every
    row: each row's page, and the kernel's fault-around with it, stayed in the worker's
    RSS for the whole bucket (~200 MB per merge worker at 47M tokens, 1,444 runs).
    """
    path = work.runs(worker, by_bucket=False)
    n_buckets = -(-n_latents // BUCKET_WIDTH)
    block_bytes = n_runs * BUCKET_WIDTH * 4
    grid = np.zeros((min(n_runs, runs_at_once), n_buckets * BUCKET_WIDTH), np.int32)
    with open(path, "rb", buffering=0) as rows, open(work.runs(worker), "wb") as out:
        for lo in range(0, n_runs, runs_at_once):
            m = min(runs_at_once, n_runs - lo)
            chunk = np.fromfile(rows, np.int32, m * n_latents)
            if len(chunk) != m * n_latents:
                raise OSError(errno.EIO, f"{path}: short read")
            grid[:m, :n_latents] = chunk.reshape(m, n_latents)
            by_bucket = np.ascontiguousarray(grid[:m].reshape(m, n_buckets, BUCKET_WIDTH).transpose(1, 0, 2))
            for b in range(n_buckets):
                pwrite_all(out.fileno(), by_bucket[b], b * block_bytes + lo * BUCKET_WIDTH * 4)
    path.unlink()


def write_tokens(
    ctx: BuildContext,
    writer: pq.ParquetWriter,
    tok,
    vocab: pa.Array,
    texts: pa.ChunkedArray,
    s: int,
    reviews: np.ndarray,
    pos: np.ndarray,
    bounds_out: NpyWriter,
    token_ids_out: NpyWriter,
) -> tuple[np.ndarray, np.ndarray]:
    """The chunk's `tokens` rows (tokens from `s`, of `reviews` at positions `pos`);
    also, into `token_bounds.npy` at the chunk's rows, each token's character offsets
    and those of its default context window (-1 when not trusted), from which
    `finish.top_examples_table` takes the top examples' contexts; and into
    `token_ids.npy` each token's id (NO_TOKEN_ID where `token_id` is NULL), from which
    the merge counts `token_feature_stats`.

    Returns (review_idx, tokens of its text) of the chunk's reviews that have a text.
    """
    n_tokens_of = ctx.n_tokens_of
    uniq, inv = np.unique(reviews, return_inverse=True)
    has_text = uniq < ctx.n_npz
    enc = tok.encode_flat(texts_at(texts, uniq[has_text]))
    lens = np.zeros(len(uniq), np.int64)
    lens[has_text] = enc.lens
    # Offsets are only trusted when the H5 tokens are a prefix of the text's tokens.
    n_h5 = n_tokens_of[uniq]
    aligned = has_text & (n_h5 <= lens)
    base = np.zeros(len(uniq), np.int64)
    base[has_text] = excl_cumsum(enc.lens)
    ids, starts, ends = enc.ids, enc.starts, enc.ends
    valid = aligned[inv] & (pos < lens[inv])
    mask = ~valid
    bounds = np.full((len(pos), 4), -1, np.int32)
    if len(ids):
        row = base[inv]
        gi = np.where(valid, row + pos, 0)
        tid, cs, ce = ids[gi], starts[gi], ends[gi]
        # The window: DEFAULT_BEFORE tokens before, DEFAULT_AFTER after, clipped to the
        # review's H5 tokens (a trusted review's are all within its text's).
        lo = np.where(valid, row + np.maximum(pos - DEFAULT_BEFORE, 0), 0)
        hi = np.where(valid, row + np.minimum(pos + DEFAULT_AFTER, n_h5[inv] - 1), 0)
        for j, col in enumerate((starts[lo], cs, ce, ends[hi])):
            np.copyto(bounds[:, j], col, where=valid)
    else:
        tid = cs = ce = np.zeros(len(pos), np.int32)
    bounds_out.write(s, bounds)
    token_ids_out.write(s, np.where(mask, NO_TOKEN_ID, tid).astype(np.int32))
    token_id = pa.array(tid, mask=mask)
    token = vocab.take(token_id)
    writer.write_table(
        pa.table(
            {
                "token_pos": np.arange(s, s + len(pos), dtype=np.int64),
                "review_idx": reviews.astype(np.int32),
                "position": pos.astype(np.int32),
                "token_id": token_id,
                "token": token,
                "char_start": pa.array(cs, mask=mask),
                "char_end": pa.array(ce, mask=mask),
            },
            schema=schema("tokens"),
        )
    )
    return uniq[has_text], np.asarray(enc.lens, np.int64)
